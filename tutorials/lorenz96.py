# %% [markdown]
# # Lorenz-96: learned-prior data assimilation from scratch
#
# This tutorial runs the whole loop on a CPU in a few minutes:
#
# 1. simulate Lorenz-96 trajectories (N = 40, F = 8, RK4, dt = 0.05) and noisy observations;
# 2. train a small diffusion prior over windows of K consecutive states;
# 3. assimilate held-out observations with the smoother and the (causal) filter;
# 4. plot truth, observations and posterior.
#
# Run it with `python tutorials/lorenz96.py` (about 5 minutes on 2 cores), or with `--quick`
# (or `XAPPA_TUTORIAL_QUICK=1`) for a seconds-long smoke run (used by the test suite). The
# figure goes to `$XAPPA_TUTORIAL_OUT` (default: the current directory).

# %%
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import xappa
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96
from xappa.testbeds.lorenz96_prior import (
    Lorenz96Prior,
    assimilate_lorenz96,
    lorenz96_training_data,
    train_lorenz96_prior,
)
from xappa.train import TrainConfig

QUICK = "--quick" in sys.argv or os.environ.get("XAPPA_TUTORIAL_QUICK", "") not in ("", "0")
OUT = Path(os.environ.get("XAPPA_TUTORIAL_OUT", "."))
torch.set_num_threads(1)  # the networks are small: one thread is the fastest on a shared CPU
torch.manual_seed(0)

# %% [markdown]
# ## 1. Truth and observations
#
# Training trajectories (seed 1) are disjoint from the test trajectory (seed 2024). States are
# standardized with the climatological mean and standard deviation, so the prior sees data of
# unit variance. Here every site is observed every step with error variance 1 (the setting
# of Sakov & Oke 2008); try `site_step=4` for a sparse network.

# %%
train = lorenz96_training_data(
    trajectories=8 if QUICK else 32, steps=300 if QUICK else 1000, seed=1
)
truth = l96.simulate(steps=16 if QUICK else 60, seed=2024)
obs = l96.observe(truth, site_step=1, variance=1.0, seed=0)
print(train.shape, dict(truth.sizes), dict(obs.sizes))

# %% [markdown]
# ## 2. A small window prior
#
# The prior is a diffusion model over windows of K = 8 consecutive standardized states: a
# `(K, 40)` image whose site axis is periodic. The backbone is a 1-D convolutional network
# with circular padding over the sites and the K frames as channels. Training goes through
# the same loop as the atmospheric models (`xappa.train.train`).

# %%
prior = Lorenz96Prior(window=8, hidden=24 if QUICK else 48, blocks=2 if QUICK else 4)
config = TrainConfig(
    steps=60 if QUICK else 1500,
    lr=2e-3,
    warmup=50,
    lr_schedule="cosine",
    ema_decay=0.99,
    progress=not QUICK,
)
denoiser, record = train_lorenz96_prior(prior, train, config, batch_size=64)
print(f"trained {record.step} steps in {record.seconds:.0f} s, last loss {record.losses[-1]:.3f}")

# %% [markdown]
# ## 3. Assimilation
#
# The smoother samples whole trajectories given all observations; the filter makes an
# analysis at each observation time from the observations up to that time only, starting
# each window from the previous analysis ensemble. Both return an ensemble, with
# `ensemble_mean` and `ensemble_spread` (`ds.mean` would be the Dataset's method).

# %%
members = 4 if QUICK else 16
sampling = xappa.SamplingConfig(sampler="ddim", steps=4) if QUICK else None  # None: defaults
with set_options(progress=not QUICK):
    smooth = assimilate_lorenz96(
        obs, denoiser, method="smoother", members=members, sampling=sampling
    )
    filt = assimilate_lorenz96(obs, denoiser, method="filter", members=members, sampling=sampling)


def rmse(mean):
    return float(((mean - truth.x) ** 2).mean("site").mean("time") ** 0.5)


print(
    f"RMSE: smoother {rmse(smooth.ensemble_mean):.2f}, filter {rmse(filt.ensemble_mean):.2f} (with its "
    f"spin-up), climatology {rmse(l96.CLIMATOLOGY_MEAN + 0 * truth.x):.2f}, observations 1.0"
)

# %% [markdown]
# ## 4. Plot

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.5), sharey=True)
panels = [
    ("truth", truth.x),
    ("observations", obs.y),
    ("smoother mean", smooth.ensemble_mean),
    ("filter mean", filt.ensemble_mean),
]
for ax, (title, field) in zip(axes, panels, strict=True):
    image = field.plot(
        ax=ax, x="site", y="time", vmin=-8, vmax=12, cmap="RdBu_r", add_colorbar=False
    )
    ax.set_title(title)
    ax.set_ylabel("")
axes[0].set_ylabel("time [model time units]")
axes[0].invert_yaxis()
fig.tight_layout()
fig.colorbar(image, ax=list(axes), label="x", fraction=0.02, pad=0.01)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "lorenz96_tutorial.png", dpi=80, bbox_inches="tight")

fig, ax = plt.subplots(figsize=(7, 3))
site = 0
ax.plot(truth.time, truth.x.sel(site=site), "k", label="truth")
ax.plot(obs.time, obs.y.sel(site=site), "k.", ms=3, label="observations")
for name, ds in (("smoother", smooth), ("filter", filt)):
    mean, spread = ds.ensemble_mean.sel(site=site), ds.ensemble_spread.sel(site=site)
    line = ax.plot(ds.time, mean, label=name)[0]
    ax.fill_between(ds.time, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
ax.set_xlabel("time [model time units]")
ax.set_ylabel(f"x at site {site}")
ax.set_title("posterior mean and spread (mean ± 1 std) at one site")
ax.legend(ncol=4, fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "lorenz96_tutorial_site.png", dpi=80)
print("figures written to", OUT.resolve())
