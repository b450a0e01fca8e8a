"""How well do composed windows reproduce a long AR(1) trajectory? Exact, no sampling.

A stationary Gaussian AR(1) trajectory of L = 48 scalar frames (correlation rho at lag 1) is
denoised by composing the exact denoisers of K consecutive frames with stride S (symmetrical
fold). The composed denoiser is linear, so the law of a sampler's output is Gaussian and is
propagated exactly (tests/core/gaussian_propagation.py). Printed: the mean over frames of the
output variance (truth 1; its minimum over frames in brackets) and of the lag-1 correlation
(truth rho).

Run: .venv/bin/python benchmarks/window_composition.py [--sampler ddpm --steps 256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from gaussian_propagation import propagate

from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.schedule import RectifiedSchedule
from xappa.core.diffusion.trajectory import TrajectoryDenoiser

F64 = torch.float64
LENGTH = 48


def ar1_cov(frames: int, rho: float) -> torch.Tensor:
    lags = torch.arange(frames, dtype=F64)
    return rho ** (lags[:, None] - lags[None, :]).abs()


def composed_affine(rho: float, window: int, stride: int, mode: str):
    gauss = GaussianDenoiser(torch.zeros(window, dtype=F64), ar1_cov(window, rho))

    def window_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return gauss(x.flatten(1), sigma).reshape(x.shape)

    traj = TrajectoryDenoiser(window_denoiser, window, stride, mode=mode)
    basis = torch.eye(LENGTH, dtype=F64).reshape(LENGTH, LENGTH, 1)

    def affine(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        cols = traj(basis, torch.full((LENGTH,), sigma, dtype=F64)).reshape(LENGTH, LENGTH)
        return cols.T, torch.zeros(LENGTH, dtype=F64)

    return affine


def summary(cov: torch.Tensor) -> tuple[float, float, float]:
    var = cov.diagonal()
    lag1 = cov.diagonal(1) / (var[:-1] * var[1:]).sqrt()
    return float(var.mean()), float(var.min()), float(lag1.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="ddpm")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--mode", default="symmetrical")
    args = parser.parse_args()
    schedule = RectifiedSchedule()
    geometries = [(8, 4), (8, 2), (12, 6), (16, 8), (24, 12)]
    rhos = [0.7, 0.9, 0.97]
    print(f"{args.sampler} {args.steps} steps, {args.mode} fold, L = {LENGTH}")
    header = " | ".join(f"rho = {r}: variance mean (min), lag-1" for r in rhos)
    print(f"| K, S | {header} |")
    print("|---|" + "---|" * len(rhos))
    for window, stride in [(LENGTH, LENGTH)] + geometries:
        cells = []
        for rho in rhos:
            affine = composed_affine(rho, window, stride, args.mode)
            _, cov = propagate(args.sampler, affine, schedule, args.steps, LENGTH)
            var, low, corr = summary(cov)
            cells.append(f"{var:.3f} ({low:.3f}), {corr:.3f}")
        name = "48 (one window, no composition)" if window == LENGTH else f"{window}, {stride}"
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
