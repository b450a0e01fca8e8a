"""OSSE benchmark of the default model: many independent 48-hour reanalysis windows.

Each window draws a fresh truth (seeds ``--first-seed`` onwards; the training data used
seed 0), observes it as ``xappa demo`` does (64 stations, one satellite swath), assimilates
with ``--members`` members (by default with the demo's sampler) and scores the posterior
mean against the truth, next to the prior ensemble and the climatology shipped with the model.

    python benchmarks/swe_osse.py --windows 10 --threads 2

Prints a Markdown table (per variable: posterior RMSE / climatology RMSE, spread/skill,
CRPS, prior RMSE / climatology RMSE, each as mean and range over the windows) and the wall
time per window and per member; ``--json`` also writes the raw per-window scores.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

import xappa
from xappa.commands.demo import DEMO_SAMPLER
from xappa.testbeds.osse import ObservingSystem, load_climatology, run_osse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swe-default")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=3000)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--sampler", default=DEMO_SAMPLER["sampler"])
    parser.add_argument("--steps", type=int, default=DEMO_SAMPLER["steps"])
    parser.add_argument("--schedule", default=DEMO_SAMPLER["schedule"])
    parser.add_argument("--corrections", type=int, default=2, help="pc only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the per-window scores to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    xappa.set_options(progress=False)
    model = xappa.load_model(args.model)
    climatology = load_climatology(args.model)
    rows, walls = [], []
    for k in range(args.windows):
        seed = args.first_seed + k
        t0 = time.perf_counter()
        result = run_osse(
            model,
            seed=seed,
            hours=args.hours,
            members=args.members,
            system=ObservingSystem(),
            climatology=climatology,
            sampler=args.sampler,
            steps=args.steps,
            schedule=args.schedule,
            corrections=args.corrections,
            progress=False,
        )
        walls.append(result.seconds["assimilate"])
        table = result.scores
        rows.append(
            {
                "seed": seed,
                "seconds": result.seconds,
                "n_obs": result.n_obs,
                **{
                    key: {str(v): float(table[key].sel(variable=v)) for v in table.variable.values}
                    for key in table.data_vars
                },
            }
        )
        ratio = ", ".join(f"{v:.2f}" for v in table["rmse_vs_climatology"].values)
        print(
            f"window {k + 1}/{args.windows} (seed {seed}): posterior/climatology {ratio}; "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    names = list(rows[0]["rmse"])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{args.windows} windows of {args.hours} h, {args.members} members, {args.sampler} "
        f"{args.steps} steps ({args.schedule}"
        + (f", {args.corrections} corrections" if args.sampler == "pc" else "")
        + f"), {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{stamp}\n"
    )
    print(
        "| variable | posterior / climatology RMSE | prior / climatology RMSE "
        "| spread/skill | CRPS |"
    )
    print("|---|---|---|---|---|")
    for v in names:

        def cell(key: str, var: str = v, fmt: str = ".2f") -> str:
            vals = np.array([r[key][var] for r in rows])
            return f"{vals.mean():{fmt}} ({vals.min():{fmt}}-{vals.max():{fmt}})"

        prior = np.array([r["prior_rmse"][v] / r["climatology_rmse"][v] for r in rows])
        print(
            f"| {v} | {cell('rmse_vs_climatology')} | {prior.mean():.2f} "
            f"({prior.min():.2f}-{prior.max():.2f}) | {cell('spread_skill')} "
            f"| {cell('crps', fmt='.4g')} |"
        )
    walls = np.array(walls)
    print(
        f"\nassimilation wall time per window: {walls.mean():.1f} s "
        f"({walls.min():.1f}-{walls.max():.1f}); per member {walls.mean() / args.members:.2f} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "windows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
