"""Lorenz-96 benchmark: the engine's filter and smoother against DAPPER's methods.

Settings (N = 40, F = 8, RK4 with dt = 0.05, observation error variance 1):

* ``sakov``: every site every step (Sakov & Oke 2008);
* ``sparse``: every 4th site every step;
* ``longgap``: every 2nd site every 5 steps.

Reports DAPPER's ``rmse.a`` (RMSE of the ensemble mean over the analysis times after
spin-up) and the ensemble spread (square root of the site-mean ensemble variance, averaged
likewise) for the filter (:func:`xappa.core.da.filter_analyses`) and the smoother
(:func:`xappa.core.da.smooth`), climatology, the cost per observation cycle, and DAPPER's
methods run live on the same setting (``--dapper-json``, written by
``benchmarks/lorenz96_dapper.py`` in a scratch environment). Test trajectories use seeds
disjoint from training (training: 1, 1001).

Usage::

    python benchmarks/lorenz96.py --prior /tmp/l96/prior --setting sakov --experiments 8 \\
        --cycles 145 --spinup 20 --out /tmp/l96/bench_sakov.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from xappa.core.da import DenseObservations, SamplingConfig, filter_analyses, smooth
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96
from xappa.testbeds.lorenz96_prior import load_lorenz96_prior, observation_tensors

#: (site_step, time_step) of each setting.
SETTINGS = {"sakov": (1, 1), "sparse": (4, 1), "longgap": (2, 5)}


def scores(ensemble: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """RMSE of the mean and spread in model units; ensemble (E, M, A, N), truth (E, A, N)."""
    std = l96.CLIMATOLOGY_STD
    rmse = ((ensemble.mean(1) - truth) ** 2).mean(-1).sqrt() * std  # (E, A)
    spread = ensemble.var(1).mean(-1).sqrt() * std
    return float(rmse.mean()), float(spread.mean())


def observations(truth_ds, setting: str, seed: int, length: int) -> DenseObservations:
    """Observations of one trajectory over all its ``length`` steps."""
    site_step, time_step = SETTINGS[setting]
    obs = l96.observe(truth_ds, site_step=site_step, time_step=time_step, seed=seed)
    v, m = observation_tensors(obs)
    values = torch.zeros(length, v.shape[1])
    mask = torch.zeros(length, v.shape[1], dtype=torch.bool)
    values[: v.shape[0]], mask[: m.shape[0]] = v, m
    return DenseObservations(values, mask, float(obs.attrs["variance"]) / l96.CLIMATOLOGY_STD**2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True, help="directory from train_lorenz96.py")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="sakov")
    parser.add_argument("--experiments", type=int, default=8, help="independent filter runs")
    parser.add_argument("--cycles", type=int, default=145, help="analysis times per run")
    parser.add_argument("--spinup", type=int, default=20, help="cycles left out of the scores")
    parser.add_argument("--smoother-length", type=int, default=1000, help="model steps")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--corrections", type=int, default=None)
    parser.add_argument("--delta", type=float, default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--past", type=int, default=1, help="filter: belief frames")
    parser.add_argument("--inflation", type=float, default=1.0)
    parser.add_argument("--floor", type=float, default=1.0, help="belief diagonal floor")
    parser.add_argument("--stride", type=int, default=None, help="window stride")
    parser.add_argument("--skip", choices=["filter", "smoother"], action="append", default=[])
    parser.add_argument("--dapper-json", default=None, help="DAPPER results of this setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_options(progress=False)
    denoiser = load_lorenz96_prior(args.prior)
    window = denoiser.backbone.frames
    stride = args.stride or -(-window // 2)
    fields = ("sampler", "steps", "corrections", "delta", "schedule", "iterations")
    config = SamplingConfig().replace(
        **{f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    )
    site_step, time_step = SETTINGS[args.setting]
    results: dict[str, object] = {
        "setting": args.setting,
        "site_step": site_step,
        "time_step": time_step,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average": os.getloadavg()[0],
        "torch_threads": args.threads,
        "sampling": config.to_attrs()["xappa_sampling"],
        "args": vars(args),
    }
    rows = []
    if "filter" not in args.skip:
        steps = args.cycles * time_step
        truth_ds = l96.simulate(steps=steps, trajectories=args.experiments, seed=args.seed)
        obs = [
            observations(truth_ds.isel(trajectory=e), args.setting, args.seed + 100 + e, steps)
            for e in range(args.experiments)
        ]
        truth = l96.standardize(torch.from_numpy(truth_ds.x.values)).float()
        start = time.perf_counter()

        def progress(i: int, total: int) -> None:
            if i % 20 == 0:
                print(f"filter cycle {i}/{total} {time.perf_counter() - start:.0f}s", flush=True)

        ens = filter_analyses(
            denoiser, obs, members=args.members, frame=(40,), window=window, config=config,
            past=args.past, stride=stride, inflation=args.inflation,
            floor=args.floor, seed=args.seed, callback=progress,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        times = obs[0].observed_frames
        s = args.spinup
        rmse, spread = scores(ens[:, :, s:], truth[:, times][:, s:])
        clim = float((truth[:, times][:, s:] ** 2).mean(-1).sqrt().mean() * l96.CLIMATOLOGY_STD)
        n_times = args.experiments * (len(times) - s)
        per_cycle = seconds / len(times)
        results["filter"] = {
            "rmse_a": rmse,
            "spread_a": spread,
            "spread_over_rmse": spread / rmse,
            "analysis_times": n_times,
            "seconds": seconds,
            "seconds_per_cycle": per_cycle,
            "denoiser_calls_per_cycle": config.evaluations,
        }
        rows += [
            ("xappa filter", rmse, spread, n_times, seconds, per_cycle),
            ("climatology", clim, l96.CLIMATOLOGY_STD, n_times, None, None),
        ]
    if "smoother" not in args.skip:
        length = args.smoother_length
        one = l96.simulate(steps=length, seed=args.seed + 7)
        obs_one = observations(one, args.setting, args.seed + 8, length)
        truth = l96.standardize(torch.from_numpy(one.x.values)).float()
        start = time.perf_counter()
        ens = smooth(
            denoiser, obs_one, members=args.members, length=length, frame=(40,),
            window=window, stride=stride, config=config, seed=args.seed,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        rmse, spread = scores(ens[None], truth[None])
        results["smoother"] = {
            "rmse": rmse,
            "spread": spread,
            "spread_over_rmse": spread / rmse,
            "times": length,
            "seconds": seconds,
        }
        rows.append(("xappa smoother", rmse, spread, length, seconds, None))
    print(
        f"\nLorenz-96, setting {args.setting!r} (every {site_step} site(s), every"
        f" {time_step} step(s)), {args.members} members, {config}"
    )
    print("| method | rmse.a | spread.a | spread/rmse | analysis times | wall s | s per cycle |")
    print("|---|---|---|---|---|---|---|")
    for name, rmse, spread, n, wall, cycle in rows:
        wall_s = "" if wall is None else f"{wall:.0f}"
        cycle_s = "" if cycle is None else f"{cycle:.2f}"
        print(
            f"| {name} | {rmse:.3f} | {spread:.3f} | {spread / rmse:.2f} | {n} | {wall_s}"
            f" | {cycle_s} |"
        )
    if args.dapper_json:
        with open(args.dapper_json) as f:
            dapper = json.load(f)
        for run in dapper.get("results", []):
            if "grid" in run.get("group", "") and not run.get("selected"):
                continue  # a point of a tuning grid: only the selected one is shown
            params = ", ".join(f"{k}={v}" for k, v in run.get("params", {}).items())
            label = f"DAPPER {run['method']} N={run['N']} ({params})"
            if run.get("status") != "ok":
                print(f"| {label} | diverged | | | | | |")
                continue
            print(
                f"| {label} | {run['rmse.a']:.3f} | {run['spread.a']:.3f} |"
                f" {run['spread.a'] / run['rmse.a']:.2f} | | | |"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
