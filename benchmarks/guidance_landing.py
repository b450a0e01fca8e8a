"""Where do cheap guidance settings land on a linear-Gaussian problem with a known posterior?

The problem of tests/core/test_guidance.py: a D = 32 Gaussian prior (eigenvalues log-spaced
over [0.1, 10]), M = 8 random linear observations with known noise variances, the exact prior
denoiser. Each guidance drives the PC sampler (32 steps, 2 corrections, delta 0.1, Appa's
setting) and the output is compared with the analytic posterior: relative error of the mean
and relative Frobenius error of the covariance. DPS is affine here, so its output law is
propagated exactly; MMPS with a truncated solve is not, so it is sampled (8192 samples; the
"exact posterior denoiser, sampled" row gives the sampling-noise floor of that estimate).

Run: .venv/bin/python benchmarks/guidance_landing.py [--samples 8192]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from gaussian_propagation import propagate
from test_guidance import make_problem

from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import RectifiedSchedule
from xappa.core.guidance.mmps import MMPSDenoiser

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    p = make_problem()
    schedule, steps = RectifiedSchedule(), args.steps
    post = p.posterior
    rows = []

    def exact(name: str, affine) -> None:
        mean, cov = propagate("pc", affine, schedule, steps, 32)
        rows.append((name, "exact propagation", rel(mean, post.mean), rel(cov, post.cov)))

    def sampled(name: str, denoiser) -> None:
        draw = create_sampler("pc", denoiser, schedule=schedule, steps=steps)
        x = draw.sample((args.samples, 32), seed=0, dtype=F64)
        rows.append(
            (
                name,
                f"{args.samples} samples",
                rel(x.mean(0), post.mean),
                rel(torch.cov(x.T), post.cov),
            )
        )

    exact("prior (no guidance)", p.prior.affine)
    exact("exact posterior denoiser (= MMPS, 8 iterations)", post.affine)
    sampled("exact posterior denoiser, sampled", post)
    a, r = p.matrix, p.noise
    for gamma in (1e-2, 1.0):

        def dps_affine(sigma: float, gamma: float = gamma):
            gain, shift = p.prior.affine(sigma)
            s2 = sigma**2
            w = torch.diag(1 / (r + gamma * s2 / (1 + s2)))
            # x_hat + s2 J^T A^T W (y - A x_hat), with x_hat = gain x + shift and J = gain.
            k = s2 * gain @ a.T @ w
            return gain - k @ a @ gain, shift + k @ (p.obs.values - a @ shift)

        exact(f"DPS/SDA, gamma = {gamma:g}", dps_affine)
    for solver in ("gmres", "cg"):
        for iterations in (1, 2):
            guided = MMPSDenoiser(p.prior, p.obs, iterations=iterations, solver=solver)
            sampled(f"MMPS, {solver.upper()} {iterations} iteration(s)", guided)
    print(f"PC {steps} steps, 2 corrections; errors relative to the analytic posterior")
    print("| guidance | law | mean error | covariance error |")
    print("|---|---|---|---|")
    for name, law, em, ec in rows:
        print(f"| {name} | {law} | {em:.3f} | {ec:.3f} |")


if __name__ == "__main__":
    main()
