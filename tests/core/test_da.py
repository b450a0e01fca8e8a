"""The engine's building blocks against known answers: seeds, frame observations, beliefs."""

from __future__ import annotations

import pytest
import torch

from xappa.core.da import (
    DenseObservations,
    GaussianFrames,
    Joined,
    SamplingConfig,
    Shifted,
    filter_analyses,
    generator,
    smooth,
)
from xappa.core.diffusion.gaussian import GaussianDenoiser

F64 = torch.float64


def test_generator_is_reproducible_and_keys_are_independent():
    draw = lambda *key: torch.randn(4, generator=generator(7, *key), dtype=F64)
    torch.testing.assert_close(draw(), draw(), rtol=0, atol=0)
    torch.testing.assert_close(draw(3), draw(3), rtol=0, atol=0)
    assert not torch.allclose(draw(3), draw(4))
    assert not torch.allclose(draw(3), draw())
    with pytest.raises(TypeError, match="seed must be an int"):
        generator(1.5)


def test_dense_observations_read_the_frames_asked_for():
    values = torch.arange(12.0).reshape(4, 3)
    mask = torch.zeros(4, 3, dtype=torch.bool)
    mask[1, 0] = mask[3, 2] = True
    obs = DenseObservations(values, mask, 0.5)
    assert obs.observed_frames == [1, 3]
    assert obs.window([0, 2]) is None
    o = obs.window([-1, 1, 2, 3, 4])  # out-of-range frames have no data
    x = torch.zeros(2, 5, 3)
    x[:, 1, 0], x[:, 3, 2] = 10.0, 20.0
    torch.testing.assert_close(o.operator(x), torch.tensor([[10.0, 20.0], [10.0, 20.0]]))
    torch.testing.assert_close(o.values, torch.tensor([3.0, 11.0]))
    torch.testing.assert_close(o.variances, torch.tensor([0.5, 0.5]))


def test_shifted_and_joined_views():
    values = torch.arange(10.0).reshape(5, 2)
    obs = DenseObservations(values, torch.ones(5, 2, dtype=torch.bool), 1.0)
    view = Shifted(obs, offset=2, hide_before=3)  # frames 0, 1, 2 of the view: 2 (hidden), 3, 4
    o = view.window([0, 1, 2])
    torch.testing.assert_close(o.values, values[3:].flatten())
    both = Joined([view, Shifted(obs, offset=0)]).window([0, 1, 2])
    assert len(both) == 4 + 6


def _ensemble(members: int, frames: int, sites: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(frames * sites, frames * sites, generator=gen, dtype=F64) / 4
    x = torch.randn(members, frames * sites, generator=gen, dtype=F64) @ mix.T
    return (x + 1.0).reshape(members, frames, sites)


@pytest.mark.parametrize(("inflation", "floor"), [(1.0, 0.0), (1.5, 0.3)], ids=["plain", "hybrid"])
def test_gaussian_frames_is_the_belief_with_a_diagonal_error(inflation, floor):
    """The rescaled whitening: N(A x; A mu, D) equals N(x; mu, Sigma) up to a constant."""
    ens = _ensemble(6, 2, 5)
    belief = GaussianFrames(ens, first=3, inflation=inflation, floor=floor, min_variance=1e-2)
    obs = belief.window([2, 3, 4, 5])  # the block sits at window positions 1, 2
    x = torch.randn(7, 4, 5, dtype=F64)
    d = torch.as_tensor(obs.variances)
    quad_obs = ((obs.operator(x) - obs.values) ** 2 / d).sum(1)
    anomalies = (ens - ens.mean(0)).flatten(1)
    sigma = inflation * anomalies.T @ anomalies / (ens.shape[0] - 1)
    sigma = sigma + torch.diag(floor * ens.var(0).flatten() + 1e-2)
    r = x[:, 1:3].flatten(1) - ens.mean(0).flatten()
    quad_belief = (r @ torch.linalg.inv(sigma) * r).sum(1)
    torch.testing.assert_close(quad_obs, quad_belief, rtol=1e-9, atol=1e-9)
    assert belief.window([0, 1, 2]) is None
    with pytest.raises(ValueError, match="consecutive"):
        belief.window([3, 0, 4])


def test_smooth_lands_on_the_exact_posterior():
    """One window, an exact Gaussian prior and a near-exact sampler: the engine's posterior."""
    gen = torch.Generator().manual_seed(1)
    k, n = 3, 2
    q, _ = torch.linalg.qr(torch.randn(k * n, k * n, generator=gen, dtype=F64))
    cov = q * torch.logspace(-1, 0.5, k * n, dtype=F64) @ q.T
    mean = torch.randn(k * n, generator=gen, dtype=F64)

    class Window(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.exact = GaussianDenoiser(mean, cov)

        def forward(self, x, sigma, **kwargs):
            return self.exact(x.flatten(1), sigma).reshape(x.shape)

    values = torch.zeros(k, n, dtype=F64)
    mask = torch.zeros(k, n, dtype=torch.bool)
    values[0, 0], values[2, 1] = 1.5, -0.5
    mask[0, 0] = mask[2, 1] = True
    obs = DenseObservations(values, mask, 0.05)
    config = SamplingConfig(sampler="lms", steps=128, schedule="loglinear", iterations=4)
    x = smooth(
        Window(), obs, members=4096, length=k, frame=(n,), window=k, stride=k,
        config=config, seed=0, dtype=F64,
    ).flatten(1)  # fmt: skip
    h = torch.zeros(2, k * n, dtype=F64)
    h[0, 0] = h[1, 2 * n + 1] = 1.0
    gain = cov @ h.T @ torch.linalg.inv(h @ cov @ h.T + 0.05 * torch.eye(2, dtype=F64))
    post_mean = mean + gain @ (torch.tensor([1.5, -0.5], dtype=F64) - h @ mean)
    post_cov = cov - gain @ h @ cov
    sd = post_cov.diagonal().sqrt()
    assert ((x.mean(0) - post_mean).abs() / sd).max() < 4 / 4096**0.5 * 1.5 + 0.05
    ratio = x.var(0) / post_cov.diagonal()
    assert ratio.min() > 0.9 and ratio.max() < 1.1, ratio


@pytest.mark.parametrize("past", [1, 2])
def test_filter_is_the_kalman_filter(past):
    """A linear-Gaussian AR(1) model with its exact window prior: the Kalman filter's moments.

    The observation error (0.01) is small next to the prior variance (about 1), so the
    prior's own density on the belief frames, which the filter keeps, changes the answer by
    about 1 %; every site is unobserved at frame 3 and one at frame 5.
    """
    k, n, r, length, members = 3, 2, 0.01, 6, 256
    a = torch.tensor([[0.8, 0.3], [-0.2, 0.7]], dtype=F64)
    q = 0.3 * torch.eye(n, dtype=F64)
    s = torch.eye(n, dtype=F64)
    for _ in range(300):  # the stationary covariance
        s = a @ s @ a.T + q
    cov = torch.empty(k * n, k * n, dtype=F64)
    for i in range(k):
        for j in range(k):
            block = torch.linalg.matrix_power(a, abs(i - j)) @ s
            cov[i * n : (i + 1) * n, j * n : (j + 1) * n] = block if i >= j else block.T

    class Window(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.exact = GaussianDenoiser(torch.zeros(k * n, dtype=F64), cov)

        def forward(self, x, sigma, **kwargs):
            return self.exact(x.flatten(1), sigma).reshape(x.shape)

    gen = torch.Generator().manual_seed(0)
    values = 1.5 * torch.randn(length, n, generator=gen, dtype=F64)
    mask = torch.ones(length, n, dtype=torch.bool)
    mask[3], mask[5, 0] = False, False
    config = SamplingConfig(sampler="lms", steps=32, schedule="loglinear", iterations=2 * n)
    x = filter_analyses(
        Window(), DenseObservations(values, mask, r), members=members, frame=(n,), window=k,
        config=config, past=past, min_variance=1e-8, analysis=list(range(length)), dtype=F64,
    )  # fmt: skip
    mean, var = torch.zeros(n, dtype=F64), s.clone()
    for t in range(length):
        if t > 0:
            mean, var = a @ mean, a @ var @ a.T + q
        h = torch.eye(n, dtype=F64)[mask[t]]
        gain = var @ h.T @ torch.linalg.inv(h @ var @ h.T + r * torch.eye(len(h), dtype=F64))
        mean, var = mean + gain @ (values[t][mask[t]] - h @ mean), var - gain @ h @ var
        sd = var.diagonal().sqrt()
        assert ((x[:, t].mean(0) - mean).abs() / sd).max() < 0.35, t
        ratio = x[:, t].var(0) / var.diagonal()
        assert 0.7 < ratio.min() and ratio.max() < 1.4, (t, ratio)
