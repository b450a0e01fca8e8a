"""An ensemble's spread tells the truth about its error: spread/skill near 1 where it must be.

A tiny latent model whose posterior is known: a linear autoencoder (2 x 2 averages, decoded by
repeating them) and the exact denoiser of a Gaussian prior over windows of latent frames
(correlated in time and space). Truths are drawn from that prior and decoded, so the model is
perfect: an exact posterior ensemble has a spread/skill of 1 in expectation. Through
:func:`xappa.assimilate` (observation preparation, guidance, composition of windows, sampler,
decoding) with the library's default sampling and with the demo's, the spread/skill of every
variable must stay within a loose band of 1, so that a change which collapses (or blows up)
the ensemble fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

import xappa
from xappa.commands.demo import DEMO_SAMPLING
from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.models.model import Model
from xappa.models.states import state_dataset
from xappa.observations import random_stations, sample_points
from xappa.state.spec import era5_spec
from xappa.testing import TINY_VARIABLES, _stats_dataset
from xappa.verify.metrics import ensemble_mean_rmse, spread

F64 = torch.float64
WINDOW, LENGTH, MEMBERS, EXPERIMENTS = 4, 8, 8, 4
MEAN, STD = np.array([280.0, 0.0, 0.0]), np.array([10.0, 5.0, 5.0])


class Averages(nn.Module):
    """A linear autoencoder: 2 x 2 averages, decoded by repeating each over its 2 x 2 cell."""

    def __init__(self, channels: int, shape: tuple[int, int]) -> None:
        super().__init__()
        self.latent_shape = (channels, shape[0] // 2, shape[1] // 2)
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)  # gives it a device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=2, mode="nearest") * self.scale


def gaussian_prior(frame: tuple[int, int, int], rho: float = 0.5, length: float = 1.5):
    """A Gaussian over windows: AR(1) in time, squared-exponential in space, channels apart."""
    c, h, w = frame
    lag = torch.arange(WINDOW, dtype=F64)
    time = rho ** (lag[:, None] - lag[None]).abs()
    y, x = torch.arange(h, dtype=F64), torch.arange(w, dtype=F64)
    dy = y[:, None] - y[None]
    dx = x[:, None] - x[None]
    rows, cols = torch.exp(-(dy**2) / (2 * length**2)), torch.exp(-(dx**2) / (2 * length**2))
    space = torch.kron(rows, cols) + 1e-2 * torch.eye(h * w, dtype=F64)
    cov = torch.kron(time, torch.kron(torch.eye(c, dtype=F64), space))
    return torch.zeros(cov.shape[0], dtype=F64), cov


class WindowPrior(nn.Module):
    """The exact denoiser of windows ``(B, K, C, h, w)``; dates are ignored."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        self.exact = GaussianDenoiser(mean, cov)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.exact(x.flatten(1).double(), sigma.double()).reshape(x.shape).to(x.dtype)


def make_perfect_model():
    spec = era5_spec(nlat=8, nlon=16, surface_variables=TINY_VARIABLES, level_variables=())
    autoencoder = Averages(spec.n_channels, spec.shape)
    mean, cov = gaussian_prior(autoencoder.latent_shape)
    model = Model(
        name="perfect",
        spec=spec,
        stats=_stats_dataset(MEAN, STD, spec),
        autoencoder=autoencoder,
        denoiser=WindowPrior(mean, cov),
        latent_mean=torch.zeros(spec.n_channels),
        latent_std=torch.ones(spec.n_channels),
        window=WINDOW,
    )
    return model, cov


@pytest.fixture(scope="module")
def perfect_model():
    return make_perfect_model()


def ratios(model: Model, cov: torch.Tensor, sampling, experiments: int = EXPERIMENTS) -> dict:
    """Spread/skill of each variable, pooled over experiments (variances averaged)."""
    spread2, error2 = {}, {}
    for e in range(experiments):
        truth = truth_trajectory(model, cov, seed=e)
        sites = random_stations(6, seed=100 + e)
        errors = {"2m_temperature": 2.0, "10m_u_component_of_wind": 1.0}  # v: not observed
        obs = sample_points(truth[list(errors)], sites, error_std=errors, seed=200 + e)
        ens = xappa.assimilate(
            obs, model=model, members=MEMBERS, sampling=sampling, seed=e, progress=False
        )
        s, r = spread(ens), ensemble_mean_rmse(ens, truth)
        for v in truth.data_vars:
            spread2[v] = spread2.get(v, 0.0) + float(s[v]) ** 2 / experiments
            error2[v] = error2.get(v, 0.0) + float(r[v]) ** 2 / experiments
    return {v: ((MEMBERS + 1) / MEMBERS * spread2[v] / error2[v]) ** 0.5 for v in spread2}


def truth_trajectory(model: Model, cov: torch.Tensor, seed: int) -> xr.Dataset:
    """A truth from the model's own prior over LENGTH frames (AR(1) windows chained)."""
    gen = torch.Generator().manual_seed(seed)
    frame = model.latent_shape
    d = int(np.prod(frame))
    chol = torch.linalg.cholesky(cov[:d, :d])
    rho = float(cov[d, 0] / cov[0, 0])  # the lag-1 correlation of the AR(1) in time
    z = [chol @ torch.randn(d, generator=gen, dtype=F64)]
    for _ in range(LENGTH - 1):
        fresh = chol @ torch.randn(d, generator=gen, dtype=F64)
        z.append(rho * z[-1] + (1 - rho**2) ** 0.5 * fresh)
    z = torch.stack(z).reshape(LENGTH, *frame).float()
    x = model.autoencoder.decode(z)  # standardized pixels, exactly in the decoder's range
    x = (
        torch.as_tensor(MEAN, dtype=x.dtype)[:, None, None]
        + torch.as_tensor(STD, dtype=x.dtype)[:, None, None] * x
    )
    times = np.datetime64("2021-01-01T00") + np.arange(LENGTH) * np.timedelta64(1, "h")
    return state_dataset(x[None], model, times, {}).isel(member=0, drop=True)


@pytest.mark.parametrize("sampling", [None, DEMO_SAMPLING], ids=["library-default", "demo"])
def test_ensemble_spread_matches_its_error_on_a_perfect_model(perfect_model, sampling):
    found = ratios(*perfect_model, sampling)
    assert all(0.8 < r < 1.25 for r in found.values()), found
