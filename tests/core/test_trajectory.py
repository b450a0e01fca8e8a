"""Trajectory denoiser: unfold/fold, batching, conditioning, and composition of exact windows."""

from __future__ import annotations

import pytest
import torch
from gaussian_propagation import propagate
from torch import Tensor, nn

from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import RectifiedSchedule
from xappa.core.diffusion.trajectory import (
    TrajectoryDenoiser,
    fold_windows,
    pad_frames,
    padded_length,
    unfold_windows,
    window_count,
)
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import MatrixOperator, Observation

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
MODES = ["symmetrical", "causal", "average"]
GEOMETRIES = [(8, 8, 4), (16, 8, 4), (48, 8, 4), (23, 8, 3), (10, 4, 1), (24, 24, 12), (9, 3, 3)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("length", "window", "stride"), GEOMETRIES, ids=str)
def test_fold_of_unfold_is_identity(mode, length, window, stride):
    x = torch.randn(2, length, 3, 2)
    windows = unfold_windows(x, window, stride)
    assert windows.shape == (2, window_count(length, window, stride), window, 3, 2)
    folded = fold_windows(windows, stride, mode)
    assert torch.equal(folded, x) if mode != "average" else torch.allclose(folded, x, atol=1e-6)


def _sources(mode: str, n: int, window: int, stride: int) -> list[float]:
    # Tag every window with its index; the fold tells where each frame comes from.
    tags = torch.arange(n, dtype=F64)[None, :, None].expand(1, n, window)
    return fold_windows(tags, stride, mode)[0].tolist()


def test_fold_symmetrical_sources():
    # K = 8, S = 4: i = 2, j = 6; window 0 gives [0, 6), window 1 [6, 10), window 2 [10, 16).
    assert _sources("symmetrical", 3, 8, 4) == [0] * 6 + [1] * 4 + [2] * 6
    # K = 24, S = 12 (Appa): i = 6, j = 18.
    assert _sources("symmetrical", 3, 24, 12) == [0] * 18 + [1] * 12 + [2] * 18


def test_fold_causal_and_average_sources():
    assert _sources("causal", 3, 8, 4) == [0] * 8 + [1] * 4 + [2] * 4
    assert _sources("average", 3, 8, 4) == [0] * 4 + [0.5] * 4 + [1.5] * 4 + [2] * 4


@pytest.mark.parametrize("mode", MODES)
def test_single_window_is_returned_unchanged(mode):
    w = torch.randn(2, 1, 8, 3)
    assert torch.equal(fold_windows(w, 4, mode), w[:, 0])


def test_non_tiling_lengths_raise_and_pad():
    with pytest.raises(ValueError, match=r"window \+ k \* stride = 8 \+ k \* 4 .* found 50.*52"):
        window_count(50, 8, 4)
    with pytest.raises(ValueError, match="found 6"):
        window_count(6, 8, 4)
    with pytest.raises(ValueError, match=r"stride must be in \[1, window=8\]; found 9"):
        window_count(17, 8, 9)
    assert [padded_length(n, 8, 4) for n in (1, 8, 9, 12, 13, 50)] == [8, 8, 12, 12, 16, 52]
    x = torch.randn(2, 50, 3)
    padded = pad_frames(x, padded_length(50, 8, 4))
    assert padded.shape == (2, 52, 3)
    assert torch.equal(padded[:, :50], x)
    assert torch.equal(padded[:, 51], x[:, 49])
    denoiser = TrajectoryDenoiser(lambda x, s: x, 8, 4)
    with pytest.raises(ValueError, match="found 50"):
        denoiser(x, torch.ones(2))
    assert denoiser(padded, torch.ones(2))[:, :50].shape == x.shape
    with pytest.raises(ValueError, match="mode must be one of"):
        TrajectoryDenoiser(lambda x, s: x, 8, 4, mode="mean")
    with pytest.raises(ValueError, match="max_batch must be a positive integer or None; found 0"):
        TrajectoryDenoiser(lambda x, s: x, 8, 4, max_batch=0)


class WindowNet(nn.Module):
    """A small non-linear window denoiser conditioned on sigma and per-frame dates."""

    def __init__(self, window: int = 8, dim: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        size = window * dim
        self.w1 = nn.Parameter(torch.randn(size + 4 * window + 1, 64, generator=g) / size**0.5)
        self.w2 = nn.Parameter(torch.randn(64, size, generator=g) / 8)
        self.calls: list[int] = []

    def forward(self, x: Tensor, sigma: Tensor, date: Tensor) -> Tensor:
        self.calls.append(x.shape[0])
        features = torch.cat([x.flatten(1), date.flatten(1), sigma.log()[:, None]], dim=1)
        return x / (1 + sigma[:, None, None] ** 2) + (
            torch.tanh(features @ self.w1) @ self.w2
        ).reshape(x.shape)


@pytest.fixture
def dates() -> Tensor:
    return torch.randn(3, 48, 4)


@pytest.mark.parametrize("max_batch", [1, 4, 11, 1000], ids=lambda m: f"max{m}")
def test_batched_equals_one_window_at_a_time(dates, max_batch):
    net = WindowNet()
    x = torch.randn(3, 48, 4)
    sigma = torch.tensor([0.3, 1.0, 5.0])
    reference = TrajectoryDenoiser(net, 8, 4, max_batch=1)(x, sigma, date=dates)
    assert net.calls == [1] * 33
    net.calls.clear()
    out = TrajectoryDenoiser(net, 8, 4, max_batch=max_batch)(x, sigma, date=dates)
    assert net.calls == [min(max_batch, 33 - k) for k in range(0, 33, max_batch)]
    assert torch.allclose(out, reference, atol=1e-5, rtol=0)


def test_sampling_batched_equals_sequential_and_is_seeded(dates):
    net = WindowNet()

    def draw(max_batch: int | None, seed: int) -> Tensor:
        traj = TrajectoryDenoiser(net, 8, 4, max_batch=max_batch)
        return create_sampler("pc", traj, steps=8).sample((3, 48, 4), seed=seed, date=dates)

    batched = draw(None, 0)
    assert torch.allclose(batched, draw(1, 0), atol=1e-5, rtol=0)
    assert torch.equal(batched, draw(None, 0))
    assert not torch.allclose(batched, draw(None, 1))


def test_each_window_gets_its_conditioning_and_index():
    seen = {}

    def window_denoiser(
        x: Tensor, sigma: Tensor, date: Tensor, window_index: Tensor, scale: float
    ) -> Tensor:
        seen.update(date=date, index=window_index, sigma=sigma, scale=scale)
        return x

    dates = torch.arange(2 * 16 * 4.0).reshape(2, 16, 4)
    traj = TrajectoryDenoiser(window_denoiser, 8, 4, pass_window_index=True)
    traj(torch.randn(2, 16, 5), torch.tensor([1.0, 2.0]), date=dates, scale=3.0)
    assert torch.equal(seen["index"], torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.equal(seen["sigma"], torch.tensor([1.0] * 3 + [2.0] * 3))
    assert torch.equal(seen["date"][4], dates[1, 4:12])
    assert seen["scale"] == 3.0


# Composition of exact window denoisers on a stationary AR(1) trajectory ---------------------

LENGTH, DIM, WINDOW, STRIDE, RHO = 48, 4, 8, 4, 0.9
SAMPLES = 8192


def ar1_cov(frames: int, rho: float) -> Tensor:
    lags = torch.arange(frames, dtype=F64)
    return rho ** (lags[:, None] - lags[None, :]).abs()


def window_denoiser(rho: float = RHO) -> GaussianDenoiser:
    """The exact denoiser of 8 consecutive frames (dims independent), on flat windows."""
    cov = torch.kron(ar1_cov(WINDOW, rho), torch.eye(DIM, dtype=F64))
    return GaussianDenoiser(torch.zeros(WINDOW * DIM, dtype=F64), cov)


def composed_affine(gauss: GaussianDenoiser, mode: str):
    """The composed denoiser's matrix, built by folding per-window matrices (independently)."""
    n = (LENGTH - WINDOW) // STRIDE + 1
    centre = (WINDOW - 1) / 2

    def affine(sigma: float) -> tuple[Tensor, Tensor]:
        gain, _ = gauss.affine(sigma)
        full = torch.zeros(LENGTH * DIM, LENGTH * DIM, dtype=F64)
        for frame in range(LENGTH):
            covering = [w for w in range(n) if 0 <= frame - w * STRIDE < WINDOW]
            if mode == "symmetrical":  # most central position, ties to the later window
                covering = [min(covering, key=lambda w: (abs(frame - w * STRIDE - centre), -w))]
            elif mode == "causal":  # the window where it has the most past (largest position)
                covering = [min(covering)]
            for w in covering:
                p = frame - w * STRIDE
                rows = gain[p * DIM : (p + 1) * DIM]
                cols = slice(w * STRIDE * DIM, (w * STRIDE + WINDOW) * DIM)
                full[frame * DIM : (frame + 1) * DIM, cols] += rows / len(covering)
        return full, torch.zeros(LENGTH * DIM, dtype=F64)

    return affine


class FlatWindows(nn.Module):
    def __init__(self, gauss: GaussianDenoiser) -> None:
        super().__init__()
        self.gauss = gauss

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.gauss(x.flatten(1), sigma).reshape(x.shape)


@pytest.mark.parametrize(
    ("mode", "sampler"), [("symmetrical", "ddpm"), ("causal", "ddim"), ("average", "ddpm")]
)
def test_composition_matches_propagated_law(mode, sampler):
    schedule, steps = RectifiedSchedule(), 16
    gauss = window_denoiser()
    traj = TrajectoryDenoiser(FlatWindows(gauss), WINDOW, STRIDE, mode=mode)
    x = create_sampler(sampler, traj, schedule=schedule, steps=steps).sample(
        (SAMPLES, LENGTH, DIM), seed=0, dtype=F64
    )
    mean, cov = propagate(sampler, composed_affine(gauss, mode), schedule, steps, LENGTH * DIM)
    # The composed law is the same for each of the 4 independent dims: pool them.
    block = cov[0::DIM, 0::DIM]
    assert torch.allclose(cov[1::DIM, 1::DIM], block, atol=1e-10)
    pooled = x.movedim(2, 1).reshape(SAMPLES * DIM, LENGTH)
    stderr = (block.diagonal() / (SAMPLES * DIM)).sqrt()
    assert ((pooled.mean(0) - mean[0::DIM]).abs() / stderr).max() < 4
    assert (torch.cov(pooled.T) - block).norm() / block.norm() < 0.03


@pytest.mark.parametrize("mode", MODES)
def test_composed_denoiser_equals_folded_matrix(mode):
    gauss = window_denoiser()
    traj = TrajectoryDenoiser(FlatWindows(gauss), WINDOW, STRIDE, mode=mode, max_batch=7)
    x = torch.randn(5, LENGTH, DIM, dtype=F64)
    gain, _ = composed_affine(gauss, mode)(0.8)
    expected = (x.flatten(1) @ gain.T).reshape(x.shape)
    assert torch.allclose(traj(x, torch.full((5,), 0.8, dtype=F64)), expected, atol=1e-12)


def test_guided_windows_fold_exact_posteriors():
    # Observe frame 5 (window 0 and 1) and frame 30 (windows 6 and 7): with exact solves, each
    # window's MMPS denoiser is the posterior denoiser of that window.
    gauss = window_denoiser()
    g = torch.Generator().manual_seed(0)
    obs: list[Observation | None] = [None] * 11
    posteriors = {}
    for frame in (5, 30):
        for w in range(11):
            p = frame - w * STRIDE
            if not 0 <= p < WINDOW:
                continue
            mat = torch.zeros(DIM, WINDOW * DIM, dtype=F64)
            mat[:, p * DIM : (p + 1) * DIM] = torch.eye(DIM, dtype=F64)
            obs[w] = Observation(
                MatrixOperator(mat), torch.randn(DIM, generator=g, dtype=F64), 0.1
            )
            prec = torch.linalg.inv(gauss.cov) + mat.T @ mat / 0.1
            cov = torch.linalg.inv(prec)
            posteriors[w] = GaussianDenoiser(cov @ mat.T @ obs[w].values / 0.1, (cov + cov.T) / 2)
    guided = MMPSDenoiser(FlatWindows(gauss), obs, iterations=DIM)
    traj = TrajectoryDenoiser(guided, WINDOW, STRIDE, pass_window_index=True, max_batch=5)
    x = torch.randn(2, LENGTH, DIM, dtype=F64, generator=g)
    sigma = torch.full((2,), 0.5, dtype=F64)
    windows = unfold_windows(x, WINDOW, STRIDE)
    expected = torch.stack(
        [
            FlatWindows(posteriors.get(w, gauss))(windows[:, w], sigma)
            for w in range(windows.shape[1])
        ],
        dim=1,
    )
    assert torch.allclose(traj(x, sigma), fold_windows(expected, STRIDE), atol=1e-10)
