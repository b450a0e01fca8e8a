# %% [markdown]
# # Assimilating stations and a satellite swath on the shallow-water testbed
#
# This tutorial trains a tiny latent model on the shallow-water testbed (in about a minute on
# a CPU), observes a held-out trajectory with ground stations and a low-Earth-orbit swath,
# and assimilates them with `xappa.assimilate`. It plots the truth, the observations, the
# ensemble mean and the ensemble spread to a PNG.
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
import torch

import xappa
from xappa.observations import leo_swath, random_stations, sample_gridded, sample_points
from xappa.state import StateSpec
from xappa.testbeds.shallow_water import simulate
from xappa.testing import tiny_model

QUICK = "--quick" in sys.argv or os.environ.get("XAPPA_TUTORIAL_QUICK", "") not in ("", "0")
OUT = Path(os.environ.get("XAPPA_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="xappa-da-"))
OUT.mkdir(parents=True, exist_ok=True)
DAYS, TRAIN_STEPS, HOURS, MEMBERS, STEPS = (2, 60, 6, 4, 4) if QUICK else (4, 400, 24, 8, 16)
torch.set_num_threads(1)
xappa.set_options(progress=not QUICK)

# %% [markdown]
# ## Data and a tiny model
#
# Three trajectories on a 16 x 32 grid: two to train on, one held out as the truth. The
# model's state is the geopotential and the two wind components.

# %%
ds = simulate(3, DAYS, nlat=16, nlon=32, spinup_days=1, seed=0)
units = {"geopotential": "m2 s-2", "u_component_of_wind": "m s-1", "v_component_of_wind": "m s-1"}
spec = StateSpec(
    surface_variables=tuple(units),
    latitudes=ds.latitude.values,
    longitudes=ds.longitude.values,
    units=units,
    name="shallow-water",
)
model = tiny_model(
    spec, data=ds.isel(trajectory=slice(0, 2)), train_steps=TRAIN_STEPS, lr=3e-3, lat_channels=8
)
print(model)

# %% [markdown]
# ## Observations
#
# 40 random stations report the winds every hour with a 0.5 m/s error; a satellite in a
# 75 degree orbit sees the geopotential along its swath with a 50 m2/s2 error.

# %%
truth = ds.isel(trajectory=2, drop=True).isel(time=slice(0, HOURS))
sites = random_stations(40, seed=1)
winds = truth[["u_component_of_wind", "v_component_of_wind"]]
station_obs = sample_points(winds, sites, error_std=0.5, seed=0)
swath = leo_swath(truth.latitude.values, truth.longitude.values, truth.time.values, fov_deg=20.0)
satellite_obs = sample_gridded(truth[["geopotential"]], swath, error_std=50.0, seed=0)

# %% [markdown]
# ## Assimilation
#
# A reanalysis over the whole window; `mode="filter"` would use only past observations at
# each time.

# %%
window = (truth.time.values[0], truth.time.values[-1])
analysis = xappa.assimilate(
    [station_obs, satellite_obs], model=model, window=window, members=MEMBERS, steps=STEPS
)
print(analysis.attrs["xappa_n_obs"])

# %% [markdown]
# ## Plot
#
# Truth, observations, ensemble mean and spread of the geopotential at the last time.

# %%
t = -1
mean, spread = analysis.mean("member"), analysis.std("member")
fig, axes = plt.subplots(1, 4, figsize=(16, 3), constrained_layout=True)
z = "geopotential"
vmin, vmax = float(truth[z].min()), float(truth[z].max())
kw = {"vmin": vmin, "vmax": vmax, "cmap": "viridis"}
truth[z].isel(time=t).plot(ax=axes[0], **kw)
axes[0].set_title("truth")
satellite_obs[z].isel(time=t).plot(ax=axes[1], **kw)
axes[1].scatter(station_obs.longitude % 360, station_obs.latitude, s=8, c="r", label="stations")
axes[1].set_title("observations")
mean[z].isel(time=t).plot(ax=axes[2], **kw)
axes[2].set_title("ensemble mean")
spread[z].isel(time=t).plot(ax=axes[3], cmap="magma")
axes[3].set_title("ensemble spread")
figure = OUT / "assimilate_testbed.png"
fig.savefig(figure, dpi=80)
rmse = float(np.sqrt(((mean[z] - truth[z]) ** 2).mean()))
print(f"geopotential RMSE of the ensemble mean: {rmse:.1f} m2 s-2; figure: {figure}")
