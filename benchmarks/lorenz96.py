"""Lorenz-96 benchmark: learned-prior filter and smoother against DAPPER's published figures.

Setting of Sakov & Oke (2008): N = 40, F = 8, RK4 with dt = 0.05, every site observed every
step with error variance 1 (``--setting sakov``); ``--setting sparse`` observes every 4th
site. Reports DAPPER's ``rmse.a`` (RMSE of the ensemble mean, averaged over the analysis
times after spin-up) and the ensemble spread (square root of the site-mean ensemble variance,
averaged likewise), for the xappa filter and smoother and climatology, next to DAPPER's
published figures. Test trajectories use seeds disjoint from training (training: 1, 1001).

Usage::

    python benchmarks/lorenz96.py --prior /tmp/l96/prior --setting sakov --experiments 8 \\
        --cycles 150 --spinup 20 --out /tmp/l96/bench_sakov.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from xappa.da import FilterConfig, SmootherConfig, filter_ensemble, smooth_ensemble
from xappa.da.lorenz96 import load_lorenz96_prior, observation_tensors
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96

# dapper/mods/Lorenz96/sakov2008.py (rmse.a), DAPPER docs; not run here.
PUBLISHED = {
    "LETKF N=7 (DAPPER)": 0.22,
    "EnKF-Sqrt N=24 (DAPPER)": 0.18,
    "3D-Var (DAPPER)": 0.41,
    "OptInterp (DAPPER)": 0.95,
    "Climatology (DAPPER)": 3.6,
}
SITE_STEP = {"sakov": 1, "sparse": 4}


def scores(ensemble: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, list[float]]:
    """RMSE of the mean and spread in model units; ensemble (E, M, L, N), truth (E, L, N)."""
    std = l96.CLIMATOLOGY_STD
    rmse = ((ensemble.mean(1) - truth) ** 2).mean(-1).sqrt() * std  # (E, L)
    spread = ensemble.var(1).mean(-1).sqrt() * std
    return float(rmse.mean()), float(spread.mean()), rmse.mean(0).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True, help="directory from train_lorenz96.py")
    parser.add_argument("--setting", choices=sorted(SITE_STEP), default="sakov")
    parser.add_argument("--experiments", type=int, default=8, help="independent filter runs")
    parser.add_argument("--cycles", type=int, default=150, help="analysis times per run")
    parser.add_argument("--spinup", type=int, default=20, help="cycles left out of the scores")
    parser.add_argument("--smoother-length", type=int, default=1000)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--corrections", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--inflation", type=float, default=1.0)
    parser.add_argument("--smoother-steps", type=int, default=10)
    parser.add_argument("--stride", type=int, default=None, help="smoother window stride")
    parser.add_argument("--skip", choices=["filter", "smoother"], action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_options(progress=False)
    denoiser = load_lorenz96_prior(args.prior)
    window = denoiser.backbone.frames
    variance = 1.0 / l96.CLIMATOLOGY_STD**2
    common = {
        "members": args.members,
        "sampler": args.sampler,
        "steps": args.steps,
        "corrections": args.corrections,
        "iterations": args.iterations,
    }
    results: dict[str, object] = {
        "setting": args.setting,
        "site_step": SITE_STEP[args.setting],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": args.threads,
        "args": vars(args),
    }
    rows = []

    if "filter" not in args.skip:
        truth_ds = l96.simulate(steps=args.cycles, trajectories=args.experiments, seed=args.seed)
        values, masks, truths = [], [], []
        for e in range(args.experiments):
            one = truth_ds.isel(trajectory=e)
            obs = l96.observe(one, site_step=SITE_STEP[args.setting], seed=args.seed + 100 + e)
            v, m = observation_tensors(obs)
            values.append(v)
            masks.append(m)
            truths.append(l96.standardize(torch.from_numpy(one.x.values)).float())
        values_t, masks_t, truth_t = torch.stack(values), torch.stack(masks), torch.stack(truths)
        config = FilterConfig(window=window, inflation=args.inflation, **common)
        start = time.perf_counter()

        def progress(t: int, analysis: torch.Tensor) -> None:
            if t % 10 == 0:
                rmse = ((analysis.mean(1) - truth_t[:, t]) ** 2).mean(-1).sqrt().mean()
                elapsed = time.perf_counter() - start
                print(f"filter t={t} rmse={float(rmse) * l96.CLIMATOLOGY_STD:.3f} {elapsed:.0f}s")

        ens = filter_ensemble(denoiser, values_t, masks_t, variance, config, callback=progress)
        seconds = time.perf_counter() - start
        s = args.spinup
        rmse, spread, curve = scores(ens[:, :, s:], truth_t[:, s:])
        clim = float(((truth_t[:, s:]) ** 2).mean(-1).sqrt().mean() * l96.CLIMATOLOGY_STD)
        n_times = args.experiments * (args.cycles - s)
        results["filter"] = {
            "rmse_a": rmse,
            "spread_a": spread,
            "spread_over_rmse": spread / rmse,
            "analysis_times": n_times,
            "seconds": seconds,
            "config": repr(config),
            "rmse_by_cycle": curve,
        }
        results["climatology_filter_times"] = clim
        rows += [
            ("xappa filter", rmse, spread, n_times, seconds),
            ("climatology", clim, 3.64, n_times, None),
        ]

    if "smoother" not in args.skip:
        length = args.smoother_length
        one = l96.simulate(steps=length, seed=args.seed + 7)
        obs = l96.observe(one, site_step=SITE_STEP[args.setting], seed=args.seed + 8)
        v, m = observation_tensors(obs)
        truth = l96.standardize(torch.from_numpy(one.x.values)).float()
        config = SmootherConfig(
            window=window, stride=args.stride, **(common | {"steps": args.smoother_steps})
        )
        start = time.perf_counter()
        ens = smooth_ensemble(denoiser, v, m, variance, config, seed=args.seed)
        seconds = time.perf_counter() - start
        rmse, spread, _ = scores(ens[None], truth[None])
        results["smoother"] = {
            "rmse": rmse,
            "spread": spread,
            "spread_over_rmse": spread / rmse,
            "times": length,
            "seconds": seconds,
            "config": repr(config),
        }
        rows.append(("xappa smoother", rmse, spread, length, seconds))

    print(f"\nLorenz-96, setting {args.setting!r} (every {SITE_STEP[args.setting]} site(s))")
    print("| method | rmse.a | spread.a | spread/rmse | analysis times | wall s |")
    print("|---|---|---|---|---|---|")
    for name, rmse, spread, n, wall in rows:
        wall_s = "" if wall is None else f"{wall:.0f}"
        print(f"| {name} | {rmse:.3f} | {spread:.3f} | {spread / rmse:.2f} | {n} | {wall_s} |")
    if args.setting == "sakov":
        for name, value in PUBLISHED.items():
            print(f"| {name} | {value} | | | published | |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
