"""Accuracy of mixed-precision sampling against float32: a Gaussian posterior and a testbed.

1. **Linear-Gaussian posterior** (known answer). One window of K = 3 frames of 8 values, an
   exact Gaussian prior denoiser (log-spaced eigenvalues over [0.05, 3]); every frame is
   decoded by a linear map to 16 values (a frame map under autocast, as a decoder) and
   ``--observed`` of them are read (variance ``--variance``, 1e-2 by default). ``--members``
   draws with MMPS (as many GMRES iterations as observed values: the exact solve) and LMS
   (64 steps, log-linear spacing) in each precision; the table gives the largest error of
   the posterior mean in posterior standard deviations, the range of the variance ratio
   (sample / exact) and the largest difference of the draws from the float32 draws of the
   same seed.
2. **Testbed posterior** (``--windows`` > 0): the shallow-water OSSE of ``xappa demo``
   (swe-default, 64 stations and a satellite swath, the demo's sampler) on ``--windows``
   truths (seeds 3000 onwards), ``--osse-members`` members, assimilated in each precision:
   scores, and the difference of the posterior ensemble mean from float32's in units of the
   truth's standard deviation.

    python benchmarks/precision_accuracy.py --windows 2 --hours 12 --osse-members 4
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import Tensor, nn

from xappa.core.da import SamplingConfig, smooth
from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.guidance.observation import FramewiseOperator, MaskOperator, Observation

PRECISIONS = ("float32", "bfloat16", "float16")
K, N, IMAGE = 3, 8, 16


class Window(GaussianDenoiser):
    """The exact Gaussian denoiser of windows ``(B, K, N)``."""

    def forward(self, x: Tensor, sigma: Tensor, **kwargs) -> Tensor:
        return super().forward(x.flatten(1), sigma).reshape(x.shape)


class Frames:
    """Frame observations: each frame decoded by ``decoder``, then ``mask`` read."""

    def __init__(self, decoder: nn.Module, mask: Tensor, values: Tensor, variance: float) -> None:
        self.decoder, self.mask, self.values, self.variance = decoder, mask, values, variance

    def window(self, frames):
        op = FramewiseOperator(self.decoder, list(range(len(frames))), MaskOperator(self.mask))
        return Observation(op, self.values, self.variance)


def gaussian_problem(observed: int, variance: float, seed: int = 0):
    """The prior, the observations and the exact posterior (mean, covariance), float64."""
    g = torch.Generator().manual_seed(seed)
    d = K * N
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    cov = q * torch.logspace(np.log10(0.05), np.log10(3.0), d, dtype=torch.float64) @ q.T
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    decoder = nn.Linear(N, IMAGE, bias=False)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(IMAGE, N, generator=g) / N**0.5)
    mask = torch.zeros(K, IMAGE, dtype=torch.bool)
    mask.view(-1)[torch.randperm(K * IMAGE, generator=g)[:observed]] = True
    full = torch.block_diag(*[decoder.weight.double()] * K)  # (K * IMAGE, K * N)
    h = full[mask.flatten()]
    truth = mean + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=torch.float64)
    y = h @ truth + variance**0.5 * torch.randn(observed, generator=g, dtype=torch.float64)
    gain = (
        cov
        @ h.T
        @ torch.linalg.inv(h @ cov @ h.T + variance * torch.eye(observed, dtype=torch.float64))
    )
    post_mean = mean + gain @ (y - h @ mean)
    post_cov = cov - gain @ h @ cov
    prior = Window(mean.float(), cov.float())
    obs = Frames(decoder.requires_grad_(False), mask, y.float(), variance)
    return prior, obs, post_mean, post_cov


def gaussian_table(args: argparse.Namespace) -> None:
    prior, obs, post_mean, post_cov = gaussian_problem(args.observed, args.variance)
    sd = post_cov.diagonal().sqrt()
    draws = {}
    print(
        f"Linear-Gaussian posterior: K={K} frames of {N}, {args.observed} values read through a "
        f"linear frame map (variance {args.variance:g}), {args.members} members, LMS 64 steps (log-linear), MMPS GMRES {args.observed}\n"
    )
    print(
        "| precision | max mean error / posterior sd | variance ratio | max draw - float32 draw |"
    )
    print("|---|---:|---|---:|")
    for precision in PRECISIONS:
        config = SamplingConfig(
            sampler="lms",
            steps=64,
            schedule="loglinear",
            iterations=args.observed,
            precision=precision,
        )
        x = smooth(
            prior, obs, members=args.members, length=K, frame=(N,), window=K, stride=K,
            config=config, seed=0,
        ).flatten(1).double()  # fmt: skip
        draws[precision] = x
        err = ((x.mean(0) - post_mean).abs() / sd).max()
        ratio = x.var(0) / post_cov.diagonal()
        diff = (x - draws["float32"]).abs().max()
        print(
            f"| {precision} | {err:.3f} | {ratio.min():.3f}-{ratio.max():.3f} | {diff:.2e} |",
            flush=True,
        )
    print(f"\n(sampling noise of the mean: about {4 / args.members**0.5:.3f} sd at 4 sigma)\n")


def testbed_table(args: argparse.Namespace) -> None:
    import xappa
    from xappa.commands.demo import DEMO_SAMPLING
    from xappa.testbeds.osse import ObservingSystem, load_climatology, run_osse

    xappa.set_options(progress=False)
    model = xappa.load_model("swe-default")
    climatology = load_climatology("swe-default")
    print(
        f"Testbed posterior: swe-default, {args.windows} window(s) of {args.hours} h, "
        f"{args.members} members, {DEMO_SAMPLING.sampler} {DEMO_SAMPLING.steps} steps "
        f"({DEMO_SAMPLING.schedule}); load average {os.getloadavg()[0]:.1f}\n"
    )
    rows: dict[str, list] = {p: [] for p in PRECISIONS}
    for k in range(args.windows):
        means = {}
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            result = run_osse(
                model,
                seed=3000 + k,
                hours=args.hours,
                members=args.members,
                system=ObservingSystem(),
                climatology=climatology,
                prior=False,
                sampling=DEMO_SAMPLING.replace(precision=precision),
                progress=False,
            )
            post = result.posterior.mean("member")
            means[precision] = post
            diff = max(
                float(abs(post[v] - means["float32"][v]).max() / result.truth[v].std())
                for v in post.data_vars
            )
            scores = result.scores
            rows[precision].append(
                (
                    scores["rmse_vs_climatology"].values,
                    scores["spread_skill"].values,
                    diff,
                    time.perf_counter() - t0,
                )
            )
            print(f"window {k + 1}, {precision}: {time.perf_counter() - t0:.1f} s", flush=True)
    names = ", ".join(str(v) for v in result.scores.variable.values)
    print(
        f"\n| precision | posterior / climatology RMSE ({names}) | spread/skill "
        "| max abs(mean - float32 mean) / truth sd | s per window |"
    )
    print("|---|---|---|---:|---:|")
    for precision, r in rows.items():
        rmse = np.mean([x[0] for x in r], axis=0)
        ss = np.mean([x[1] for x in r], axis=0)
        diff = max(x[2] for x in r)
        sec = np.mean([x[3] for x in r])
        print(
            f"| {precision} | {', '.join(f'{v:.3f}' for v in rmse)} | "
            f"{', '.join(f'{v:.2f}' for v in ss)} | {diff:.3f} | {sec:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4096)
    parser.add_argument("--observed", type=int, default=12)
    parser.add_argument("--variance", type=float, default=1e-2)
    parser.add_argument("--windows", type=int, default=0)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--osse-members", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    gaussian_table(args)
    if args.windows:
        args.members = args.osse_members
        testbed_table(args)


if __name__ == "__main__":
    main()
