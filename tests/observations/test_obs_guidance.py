"""The observations compose with MMPS: exact posterior mean for a Gaussian prior."""

from __future__ import annotations

import torch

from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.observations import prepare_observations, sample_points, stations
from xappa.state.spec import era5_spec
from xappa.state.stats import compute_stats
from xappa.testing import mock_era5


def test_mmps_with_point_observations_is_exact_for_gaussian_prior() -> None:
    spec = era5_spec(nlat=6, nlon=8, surface_variables=["2m_temperature"], level_variables=())
    truth = mock_era5(variables=["2m_temperature"], nlat=6, nlon=8, ntime=2)
    sites = stations([10.0, -40.0, 70.0], [359.0, 100.0, 200.0])
    obs = sample_points(truth, sites, error_std=1.0, seed=0)
    o = prepare_observations(
        obs, spec, compute_stats(truth, spec), times=truth.time.values, dtype=torch.float64
    )
    guidance = o.observation()
    sigma = 0.7

    def prior(x_t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # N(0, I) prior, exact
        return x_t / (1 + s**2)

    x_t = torch.randn(
        1, 2, 1, 6, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    mmps = MMPSDenoiser(prior, guidance, iterations=len(guidance), solver="cg")
    got = mmps(x_t, torch.tensor(sigma, dtype=torch.float64))
    # Dense posterior mean: m + P H^T (H P H^T + R)^-1 (y - H m), with P = s2 / (1 + s2) I.
    n = x_t[0].numel()
    h = torch.func.jacrev(lambda v: guidance.operator(v.reshape(1, *x_t.shape[1:]))[0])(
        torch.zeros(n, dtype=torch.float64)
    )
    m = x_t.flatten() / (1 + sigma**2)
    p = sigma**2 / (1 + sigma**2)
    gain = (
        p
        * h.T
        @ torch.linalg.solve(
            p * h @ h.T + torch.diag(guidance.variances), torch.eye(len(h), dtype=torch.float64)
        )
    )
    want = m + gain @ (guidance.values - h @ m)
    torch.testing.assert_close(got.flatten(), want, rtol=1e-6, atol=1e-8)
