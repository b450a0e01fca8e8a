# %% [markdown]
# # Assimilating stations and a satellite swath on the shallow-water testbed
#
# This tutorial loads `swe-default`, the small latent model that ships with xappa (trained on
# the shallow-water testbed at 32 x 64, hourly), simulates a fresh truth it has never seen,
# observes it with ground stations and a low-Earth-orbit swath, and assimilates the
# observations with `xappa.assimilate`. It plots the truth, the observations, the ensemble
# mean and the ensemble spread to a PNG. It takes one to two minutes on two CPU cores.
#
# Run it as a script (`python tutorials/assimilate_testbed.py`), or cell by cell in an editor
# that understands `# %%`. `--quick` (or `XAPPA_TUTORIAL_QUICK=1`) shrinks everything to a
# few seconds, for tests; `XAPPA_TUTORIAL_OUT` sets the output folder.

# %%
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import xappa
from xappa.observations import leo_swath, random_stations, sample_gridded, sample_points
from xappa.testbeds.osse import load_climatology
from xappa.testbeds.shallow_water import simulate

QUICK = "--quick" in sys.argv or os.environ.get("XAPPA_TUTORIAL_QUICK", "") not in ("", "0")
OUT = Path(os.environ.get("XAPPA_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="xappa-da-"))
OUT.mkdir(parents=True, exist_ok=True)
HOURS, MEMBERS, STEPS = (12, 2, 4) if QUICK else (24, 8, 24)
xappa.set_options(progress=not QUICK)

# %% [markdown]
# ## The model and a truth it has not seen
#
# `load_model` reads the weights through the hub, which checks their sha256 hash. The
# model's state is the geopotential and the two wind components on its 32 x 64 grid. The
# truth is a testbed trajectory from a seed that was not used to make the training data
# (seed 0), after 5 days of spin-up.

# %%
model = xappa.load_model("swe-default")
print(model)
lat, lon = model.spec.latitudes, model.spec.longitudes
truth = simulate(1, HOURS / 24, nlat=len(lat), nlon=len(lon), spinup_days=5, seed=7)
truth = truth.isel(trajectory=0, drop=True)[list(model.spec.surface_variables)]

# %% [markdown]
# ## Observations
#
# 40 random stations report the winds every hour with a 0.5 m/s error; a satellite in a
# 75 degree orbit sees the geopotential along its swath with a 50 m2/s2 error.

# %%
sites = random_stations(40, seed=1)
winds = truth[["u_component_of_wind", "v_component_of_wind"]]
station_obs = sample_points(winds, sites, error_std=0.5, seed=0)
swath = leo_swath(truth.latitude.values, truth.longitude.values, truth.time.values, fov_deg=20.0)
satellite_obs = sample_gridded(truth[["geopotential"]], swath, error_std=50.0, seed=0)

# %% [markdown]
# ## Assimilation
#
# A reanalysis over the whole window, with the sampler settings of `xappa demo`;
# `mode="filter"` would use only past observations at each time.

# %%
window = (truth.time.values[0], truth.time.values[-1])
analysis = xappa.assimilate(
    [station_obs, satellite_obs],
    model=model,
    window=window,
    members=MEMBERS,
    sampling=xappa.SamplingConfig(sampler="lms", steps=STEPS, schedule="loglogit"),
    seed=0,
)
print(analysis.attrs["xappa_n_obs"])

# %% [markdown]
# ## Scores and plot
#
# The ensemble mean's RMSE against the truth, next to that of the model's climatology (its
# training data's mean state); then truth, observations, ensemble mean and spread of the
# geopotential at the last time, the first three on one colour scale.

# %%
mean, spread = analysis.mean("member"), analysis.std("member")
z = "geopotential"
rmse = float(np.sqrt(((mean[z] - truth[z]) ** 2).mean()))
climatology = load_climatology("swe-default")
clim_rmse = float(np.sqrt(((climatology[z] - truth[z]) ** 2).mean()))
print(f"geopotential RMSE: ensemble mean {rmse:.1f} m2 s-2, climatology {clim_rmse:.1f} m2 s-2")

t = -1
fig, axes = plt.subplots(1, 4, figsize=(17, 3), constrained_layout=True)
vmin, vmax = float(truth[z].min()), float(truth[z].max())
kw = {"vmin": vmin, "vmax": vmax, "cmap": "viridis"}
truth[z].isel(time=t).plot(ax=axes[0], **kw)
axes[0].set_title("truth")
satellite_obs[z].isel(time=t).plot(ax=axes[1], **kw)
axes[1].scatter(
    station_obs.longitude % 360, station_obs.latitude, s=10, c="r", label="wind stations"
)
axes[1].legend(loc="lower left", fontsize="small")
axes[1].set_title("observations (swath: geopotential)")
mean[z].isel(time=t).plot(ax=axes[2], **kw)
axes[2].set_title("ensemble mean")
spread[z].isel(time=t).plot(ax=axes[3], cmap="magma")
axes[3].set_title("ensemble spread (std)")
figure = OUT / "assimilate_testbed.png"
fig.savefig(figure, dpi=80)
print(f"figure: {figure}")
