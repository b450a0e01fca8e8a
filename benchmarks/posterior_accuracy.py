"""Accuracy versus cost of posterior sampling on linear-Gaussian problems with known answers.

Two parts, both on exact Gaussian denoisers (:mod:`xappa.core.diffusion.gaussian`), so that
every error is the sampler's or the guidance's, never a network's:

1. **Samplers at small posterior variances** (exact, no Monte Carlo): a 1-D posterior of
   variance 1 ... 1e-4 (prior N(0, 1), one point observation), every sampler x schedule x
   steps; the law of the output is propagated exactly (``tests/core/gaussian_propagation.py``)
   and the table gives the output variance over the posterior's.
2. **Guided sampling** on problems with 7, 64 and 256 mixed observations (point values,
   neighbour differences, dense rows; noise variances spread over a decade) of a smooth
   periodic field (D = 24, 96, 256), scaled so that the smallest posterior variance is
   1e-3 or 1e-4. Each :class:`~xappa.core.da.SamplingConfig` (sampler, steps, schedule,
   guidance, solver, iterations) draws ``--samples`` samples through ``config.guide`` and
   ``config.make_sampler``, in float32. The estimates use a control variate: the same noise
   through the same sampler driven by the exact posterior denoiser, whose output law is
   propagated exactly, so that ``mean = exact + mean(x - x_exact)`` and
   ``cov = exact + cov(x) - cov(x_exact)`` (unbiased; the Monte Carlo error is that of the
   difference, small when the guidance is nearly exact). Scored in the posterior's
   principal directions: the largest mean bias in posterior standard deviations, the
   smallest and largest variance ratio, and the RMS whitened covariance error.

Cost is counted per draw of one state: guided denoiser calls, network forwards and VJPs
(``SamplingConfig.cost``), and the wall time of the guided draws of all problems (column s;
compare rows of one run only).

Usage::

    python benchmarks/posterior_accuracy.py --part samplers
    python benchmarks/posterior_accuracy.py --part guided --grid full --json out.json
    python benchmarks/posterior_accuracy.py --part guided --grid defaults
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from gaussian_problems import LinearGaussian, exact_law, make_linear_gaussian, score

from xappa.core.da import PRESETS, SamplingConfig
from xappa.core.diffusion.gaussian import GaussianDenoiser

F64 = torch.float64
VARIANCES = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)


def problems() -> list[LinearGaussian]:
    """The guided-sampling problems (see the module docstring)."""
    out = []
    for min_variance in (1e-3, 1e-4):
        for dim, kinds in ((24, (3, 2, 2)), (96, (40, 12, 12)), (256, (160, 48, 48))):
            p, d, n = kinds
            out.append(
                make_linear_gaussian(
                    dim, points=p, differences=d, dense=n, min_variance=min_variance, seed=dim
                )
            )
    return out


def label(config: SamplingConfig) -> str:
    """A short name of the settings."""
    s = f"{config.sampler} {config.steps}"
    if config.sampler == "pc":
        s += f"x{config.corrections}"
        if config.correct_below is not None:
            s += f" (sigma<={config.correct_below:g})"
        s += f" d{config.delta:g}"
    s += f" {config.schedule}"
    if config.guidance == "mmps":
        s += f", {config.solver} {config.iterations}"
    elif config.guidance == "dps":
        s += f", dps {config.gamma:g}"
    return s


def _pc(**kw) -> SamplingConfig:
    return SamplingConfig(sampler="pc", **kw)


def samplers_table() -> str:
    """Part 1: output variance over posterior variance, 1-D, exact."""
    lines = [
        "| sampler | schedule | steps | calls | "
        + " | ".join(f"var {v:g}" for v in VARIANCES)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(VARIANCES),
    ]
    appa = {"corrections": 2, "delta": 0.1, "correct_below": None}
    configs = []
    for schedule in ("rectified", "loglinear", "loglogit"):
        configs += [_pc(steps=32, schedule=schedule, **appa)]
        configs += [_pc(steps=s, schedule=schedule) for s in (16, 24, 32)]
        configs += [SamplingConfig(sampler=n, steps=s, schedule=schedule) for n, s in SAMPLERS]
    for config in configs:
        cells = []
        for v in VARIANCES:
            prior = GaussianDenoiser(torch.zeros(1, dtype=F64), v * torch.eye(1, dtype=F64))
            _, c = exact_law(config, prior.affine, 1)
            cells.append(f"{float(c) / v:.3f}")
        name = label(config).split(",")[0].rsplit(" ", 1)[0]
        lines.append(
            f"| {name} | {config.schedule} | {config.steps} | {config.evaluations} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


SAMPLERS = (("ddim", 64), ("ddpm", 64), ("lms", 32), ("lms", 64), ("heun", 32))


def guided_grid(name: str) -> list[SamplingConfig]:
    """The settings of part 2: ``defaults`` (the default and presets) or ``full``."""
    configs = [SamplingConfig(), *PRESETS.values()]
    if name == "full":
        default = SamplingConfig()
        configs += [default.replace(iterations=k) for k in (1, 2, 3, 10)]
        configs += [default.replace(solver="cg", iterations=k) for k in (3, 6)]
        configs += [default.replace(schedule=s) for s in ("rectified", "loglinear")]
        configs += [default.replace(delta=0.1), default.replace(correct_below=None, steps=8)]
        configs += [SamplingConfig(sampler=n, steps=s) for n, s in SAMPLERS]
        configs += [default.replace(guidance="dps"), SamplingConfig(sampler="lms", guidance="dps")]
        configs += [PRESETS["appa"].replace(iterations=k) for k in (6, 10)]
    return list(dict.fromkeys(configs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("samplers", "guided"), default="guided")
    parser.add_argument("--grid", choices=("defaults", "full"), default="defaults")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--problems", nargs="*", default=None, help="problem names to keep")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "samplers":
        print("Output variance / posterior variance, 1-D, exact propagation:\n")
        print(samplers_table())
        return
    probs = [p for p in problems() if not args.problems or p.name in args.problems]
    print(
        f"{platform.machine()}, {args.samples} samples, load {os.getloadavg()[0]:.1f};"
        " problems: " + ", ".join(p.name for p in probs)
    )
    head = "| settings | calls | VJPs | " + " | ".join(p.name for p in probs) + " | s |"
    print(head)
    print("|---|---:|---:|" + "---|" * len(probs) + "---:|")
    results = []
    for config in guided_grid(args.grid):
        cost = config.cost()
        cells = []
        seconds = 0.0
        for p in probs:
            r = score(config, p, args.samples)
            seconds += r["seconds"]
            results.append({"settings": label(config), "problem": p.name, **cost, **r})
            if r["diverged"]:
                cells.append("diverged")
            else:
                cells.append(
                    f"{r['bias']:.2f} / {r['ratio_min']:.2f}-{r['ratio_max']:.2f} / {r['cov']:.2f}"
                )
        print(
            f"| {label(config)} | {cost['denoiser_calls']} | {cost['vjp']} | "
            + " | ".join(cells)
            + f" | {seconds:.1f} |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
