# %% [markdown]
# # The shallow-water testbed
#
# xappa ships a small "atmosphere with a known truth": torch-harmonics' spectral
# shallow-water solver on the sphere, started from balanced random states and kept
# statistically stationary by a weak stochastic forcing. This tutorial generates a few
# trajectories, looks at them with xarray and cf-xarray, checks the diagnostics the testbed
# promises, and writes them to zarr for training.
#
# Run it as a script (`python tutorials/shallow_water.py`), or cell by cell in an editor that
# understands `# %%`. `--quick` (or `XAPPA_TUTORIAL_QUICK=1`) shrinks everything to a few
# seconds, for tests.

# %%
import os
import sys
import tempfile
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from xappa.testbeds.shallow_water import area_weights, diagnose, simulate, write_zarr

QUICK = "--quick" in sys.argv or os.environ.get("XAPPA_TUTORIAL_QUICK", "") not in ("", "0")
TRAJECTORIES, DAYS, SPINUP = (2, 2, 1) if QUICK else (4, 10, 5)
OUT = Path(os.environ.get("XAPPA_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="xappa-swe-"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Generate trajectories
#
# Each trajectory starts from its own balanced random state (seeded by `(seed, k)`), is
# integrated for `spinup_days` while its energy adjusts to the forcing, and is then stored
# every hour from `start`. At 32 x 64 this takes about 12 ms per simulated hour and trajectory
# on one core.

# %%
ds = simulate(trajectories=TRAJECTORIES, days=DAYS, spinup_days=SPINUP, seed=0)
print(ds)

# %% [markdown]
# The layout follows WeatherBench 2: latitude from 90 to -90 (the poles are grid points),
# longitude from 0, full geopotential in m2 s-2 and winds in m s-1, with CF attributes that
# cf-xarray understands.

# %%
print(ds.cf)
print("latitude:", ds.cf["latitude"].values[[0, 1, -1]], ds.cf["latitude"].attrs["units"])
print("winds by standard name:", ds.cf[["eastward_wind", "northward_wind"]].data_vars)

# %% [markdown]
# ## Diagnostics
#
# The global mean geopotential (the mass) is conserved to round-off; use `area_weights`, the
# solver's exact quadrature, rather than cosine weights for global means. The flow is slow and
# persistent: lag-1 h correlation of geopotential anomalies above 0.99, lag-24 h between 0.3
# and 0.9.

# %%
weights = area_weights(ds)
global_mean = ds["geopotential"].astype("f8").weighted(weights).mean(("latitude", "longitude"))
print("global-mean geopotential drift:", float(abs(global_mean / global_mean[:, 0] - 1).max()))
for name, value in diagnose(ds).items():
    print(f"{name:>20}: {value:.4g}")

# %% [markdown]
# ## A map
#
# Geopotential anomalies from the zonal mean, with the wind, for the last hour of the first
# trajectory (matplotlib is optional).

# %%
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

if plt is not None:
    snap = ds.isel(trajectory=0, time=-1)
    anomaly = snap["geopotential"] - snap["geopotential"].mean("longitude")
    fig, ax = plt.subplots(figsize=(8, 4))
    anomaly.plot(ax=ax, cmap="RdBu_r", cbar_kwargs={"label": "geopotential anomaly (m2 s-2)"})
    step = 2
    ax.quiver(
        snap.longitude[::step],
        snap.latitude[::step],
        snap["u_component_of_wind"][::step, ::step],
        snap["v_component_of_wind"][::step, ::step],
    )
    ax.set_title(f"trajectory 0, {np.datetime_as_string(snap.time.values, unit='h')}")
    fig.savefig(OUT / "shallow_water_map.png", dpi=80)
    plt.close(fig)
    print("map:", OUT / "shallow_water_map.png")

# %% [markdown]
# ## Write to zarr
#
# `write_zarr` chunks by trajectory and by 24 hours; the same store comes from the command
# line with `xappa testbed shallow-water --days 10 --trajectories 4 --out swe.zarr`.

# %%
path = OUT / "shallow_water.zarr"
write_zarr(ds, path, overwrite=True)
back = xr.open_zarr(path, consolidated=False)
print(back["geopotential"].encoding["chunks"], dict(back.sizes))
xr.testing.assert_identical(back.load(), ds)
