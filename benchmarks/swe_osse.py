"""OSSE benchmark of the default model: independent reanalysis windows on several networks.

Each window draws a fresh truth (seeds ``--first-seed`` onwards; the training data used
seed 0, whose trajectories are seeded ``(0, k)``: disjoint), observes it with each observing
system of ``--systems`` (:data:`xappa.testbeds.osse.OBSERVING_SYSTEMS`: the demo's 64
stations and satellite swath, a sparse network, and networks that leave the winds or the
geopotential unobserved), assimilates with ``--members`` members and scores the posterior
mean against the truth, next to the prior ensemble (``--prior``) and the climatology shipped
with the model. The sampling settings are the library's defaults (``SamplingConfig()``), or
``--demo`` for ``xappa demo``'s, each changed by the options of ``xappa assimilate``.

    python benchmarks/swe_osse.py --windows 10 --hours 48 --threads 2 --figure ranks48.png
    python benchmarks/swe_osse.py --windows 5 --hours 168 --systems demo

Prints a Markdown table per observing system (per variable: posterior RMSE / climatology
RMSE, prior RMSE / climatology RMSE, spread/skill pooled over the windows, its range over
the windows, and CRPS) and the wall time per window; ``--figure`` draws the rank histograms
(pooled over windows, one panel per variable and a line per system) and ``--json`` writes the
per-window scores.
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
from xappa.commands._args import add_sampling_arguments, sampling_from_args
from xappa.commands.demo import DEMO_SAMPLING
from xappa.testbeds.osse import OBSERVING_SYSTEMS, load_climatology, run_osse
from xappa.verify.metrics import rank_histogram, spread


def window_scores(result, members: int) -> dict:
    """The scores of one window by variable, with the pieces needed to pool them."""
    table, post, truth = result.scores, result.posterior, result.truth
    names = [str(v) for v in table["variable"].values]
    ranks = rank_histogram(post[names], truth[names])
    spreads = spread(post[names])
    out = {}
    for v in names:
        row = {key: float(table[key].sel(variable=v)) for key in table.data_vars}
        row["spread"] = float(spreads[v])
        row["ranks"] = ranks[v].values.tolist()
        if "prior_rmse" in row:
            row["prior_vs_climatology"] = row["prior_rmse"] / row["climatology_rmse"]
        out[v] = row
    return out


def pooled_spread_skill(rows: list[dict], v: str, members: int) -> float:
    """Spread/skill over all windows: root-mean variances, with the (M + 1) / M factor."""
    var_spread = np.mean([r["scores"][v]["spread"] ** 2 for r in rows])
    mse = np.mean([r["scores"][v]["rmse"] ** 2 for r in rows])
    return float(np.sqrt((members + 1) / members * var_spread / mse))


def print_table(name: str, rows: list[dict], members: int) -> None:
    names = list(rows[0]["scores"])
    print(f"\n**{name}** ({rows[0]['n_obs']} observed values in the first window)\n")
    print(
        "| variable | posterior / climatology RMSE | prior / climatology RMSE "
        "| spread/skill (pooled) | spread/skill per window | CRPS |"
    )
    print("|---|---|---|---|---|---|")
    for v in names:

        def cell(key: str, fmt: str = ".2f", var: str = v) -> str:
            vals = np.array([r["scores"][var].get(key, np.nan) for r in rows])
            if np.isnan(vals).all():
                return "-"
            return f"{vals.mean():{fmt}} ({vals.min():{fmt}}-{vals.max():{fmt}})"

        print(
            f"| {v} | {cell('rmse_vs_climatology')} | {cell('prior_vs_climatology')} "
            f"| {pooled_spread_skill(rows, v, members):.2f} | {cell('spread_skill')} "
            f"| {cell('crps', '.4g')} |"
        )
    walls = np.array([r["seconds"]["assimilate"] for r in rows])
    print(
        f"\nassimilation wall time per window: {walls.mean():.1f} s "
        f"({walls.min():.1f}-{walls.max():.1f}); per member {walls.mean() / members:.2f} s"
    )


def rank_figure(results: dict[str, list[dict]], members: int, path: str, title: str) -> None:
    """Rank histograms pooled over windows: a panel per variable, a line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(results.values()))[0]["scores"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), layout="constrained")
    ranks = np.arange(members + 1)
    for ax, v in zip(np.atleast_1d(axes), names, strict=True):
        for system, rows in results.items():
            freq = np.mean([r["scores"][v]["ranks"] for r in rows], axis=0)
            ax.step(ranks, freq, where="mid", label=system)
        ax.axhline(1 / (members + 1), color="k", lw=0.8, ls="--", label="calibrated")
        ax.set_xticks(ranks)
        ax.set_xlabel("rank of the truth among the members")
        ax.set_title(v)
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("frequency (area-weighted)")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def prepare(args: argparse.Namespace) -> tuple:
    """The sampling (``--demo`` starts from the demo's), threads, model and climatology."""
    if args.demo and args.sampling is None:
        args.sampling_base = DEMO_SAMPLING
    sampling = sampling_from_args(args)
    torch.set_num_threads(args.threads)
    xappa.set_options(progress=False)
    return sampling, xappa.load_model(args.model), load_climatology(args.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swe-default")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=3000)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--systems", nargs="+", default=["demo"], choices=list(OBSERVING_SYSTEMS))
    parser.add_argument("--demo", action="store_true", help="start from xappa demo's sampling")
    parser.add_argument("--prior", action="store_true", help="also sample the prior ensemble")
    add_sampling_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figure", help="write the rank histograms to this PNG")
    parser.add_argument("--json", help="write the per-window scores to this file")
    args = parser.parse_args()
    sampling, model, climatology = prepare(args)
    results: dict[str, list[dict]] = {name: [] for name in args.systems}
    for k in range(args.windows):
        seed = args.first_seed + k
        for name in args.systems:
            t0 = time.perf_counter()
            result = run_osse(
                model,
                seed=seed,
                hours=args.hours,
                members=args.members,
                system=OBSERVING_SYSTEMS[name],
                climatology=climatology,
                prior=args.prior,
                sampling=sampling,
                progress=False,
            )
            scores = window_scores(result, args.members)
            results[name].append(
                {"seed": seed, "seconds": result.seconds, "n_obs": result.n_obs, "scores": scores}
            )
            ratio = ", ".join(f"{s['rmse_vs_climatology']:.2f}" for s in scores.values())
            ss = ", ".join(f"{s['spread_skill']:.2f}" for s in scores.values())
            print(
                f"window {k + 1}/{args.windows} (seed {seed}), {name}: posterior/climatology "
                f"{ratio}; spread/skill {ss}; {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = ", ".join(
        f"{k}={v}" for k, v in sampling.to_attrs().items() if k != "xappa_sampling"
    )
    print(
        f"\n{args.windows} windows of {args.hours} h (truth seeds {args.first_seed}-"
        f"{args.first_seed + args.windows - 1}), {args.members} members, {args.model} "
        f"(window K = {model.window}); {settings.replace('xappa_sampling_', '')}; "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{stamp}"
    )
    for name, rows in results.items():
        print_table(name, rows, args.members)
    if args.figure:
        title = (
            f"{args.model}: rank histograms, {args.windows} windows of {args.hours} h, "
            f"{args.members} members"
        )
        rank_figure(results, args.members, args.figure, title)
        print(f"\nfigure: {args.figure}")
    if args.json:
        with open(args.json, "w") as f:
            meta = {**vars(args), "sampling_base": None, "sampling": sampling.to_attrs()}
            json.dump({"args": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
