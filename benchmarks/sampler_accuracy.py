"""Exact accuracy of the discretized samplers on a Gaussian prior (prints Markdown tables).

With the exact denoiser of N(mu, Sigma) every sampler step is affine plus Gaussian noise, so
the law of the output is computed exactly (``tests/core/gaussian_propagation.py``): the
numbers below carry no Monte Carlo error and do not depend on the machine.

Run: ``python benchmarks/sampler_accuracy.py`` (a few seconds on a laptop CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from gaussian_propagation import propagate, random_gaussian

from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import RectifiedSchedule

SAMPLERS = ["ddpm", "ddim", "pc", "lms", "heun"]
STEPS = [16, 32, 64, 128, 256]
DIM = 32


def evaluations(name: str, steps: int) -> int:
    return create_sampler(name, lambda x, s: x, steps=steps).evaluations


def table(title: str, rows: dict[str, list[str]]) -> str:
    head = f"| {title} | " + " | ".join(f"{s} steps" for s in STEPS) + " |"
    rule = "|---|" + "---:|" * len(STEPS)
    body = [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    return "\n".join([head, rule, *body])


def main() -> None:
    torch.set_num_threads(1)
    schedule = RectifiedSchedule()
    mean, cov = random_gaussian(DIM, seed=0)
    prior = GaussianDenoiser(mean, cov)
    unit = GaussianDenoiser(torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))

    cov_rows, mean_rows, var_rows, nfe_rows = {}, {}, {}, {}
    for name in SAMPLERS:
        cov_err, mean_err, var_ratio, nfe = [], [], [], []
        for steps in STEPS:
            m, c = propagate(name, prior.affine, schedule, steps, DIM)
            cov_err.append(f"{float(torch.linalg.norm(c - cov) / torch.linalg.norm(cov)):.2%}")
            mean_err.append(f"{float(torch.linalg.norm(m - mean) / torch.linalg.norm(mean)):.2%}")
            _, v = propagate(name, unit.affine, schedule, steps, 1)
            var_ratio.append(f"{float(v):.4f}")
            nfe.append(str(evaluations(name, steps)))
        label = f"{name} ({'2 corr., delta 0.1' if name == 'pc' else 'order 3' if name == 'lms' else ''})"
        label = label.replace(" ()", "")
        cov_rows[label], mean_rows[label] = cov_err, mean_err
        var_rows[label], nfe_rows[label] = var_ratio, nfe

    print(f"Prior: D = {DIM}, dense Sigma with eigenvalues log-spaced over [0.1, 10], seed 0;")
    print("rectified schedule, sigma_min = 1e-3, sigma_max = 1e3, t_max = 1.\n")
    print("Relative Frobenius error of the output covariance, |C - Sigma|_F / |Sigma|_F:\n")
    print(table("sampler", cov_rows), end="\n\n")
    print("Relative error of the output mean, |m - mu| / |mu|:\n")
    print(table("sampler", mean_rows), end="\n\n")
    print("Output variance for a unit-variance 1-D Gaussian (exact: 1):\n")
    print(table("sampler", var_rows), end="\n\n")
    print("Denoiser evaluations per sample:\n")
    print(table("sampler", nfe_rows))


if __name__ == "__main__":
    main()
