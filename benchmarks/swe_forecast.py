"""Forecast skill of the default model by lead time, from analyses of the shallow-water testbed.

For each start (truth seeds ``--first-seed`` onwards, disjoint from the training data's
seed 0): a fresh truth is observed for ``--hours`` hours by an observing system (the demo's by
default), assimilated with :func:`xappa.assimilate`, and forecast with :func:`xappa.forecast`
(autoregressive: each member continues its own analysis) for ``--lead`` hours. Scored with
:func:`xappa.verify.evaluate.evaluate` against the truth at every lead (lead 0 is the analysis at the initial
time), next to three references:

* persistence: the analysis mean at the initial time, held;
* climatology: the climatological mean shipped with the model;
* the testbed's solver run from the analysis mean
  (:func:`xappa.testbeds.shallow_water.run_solver`: the true dynamics and drag, without the
  truth's unknown stochastic forcing).

RMSE (area-weighted over the grid, root of the mean square over the starts) and spread/skill
(pooled the same way, with the finite-ensemble factor) by lead, as a Markdown table and
(``--figure``) a PNG.

    python benchmarks/swe_forecast.py --starts 10 --threads 2 --figure forecast.png
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import torch
import xarray as xr
from swe_osse import prepare  # benchmarks/ is the script's folder

import xappa
from xappa.commands._args import add_sampling_arguments
from xappa.forecasting import LEAD
from xappa.testbeds.osse import OBSERVING_SYSTEMS, observe
from xappa.testbeds.shallow_water import run_solver, simulate
from xappa.verify.evaluate import evaluate

REFERENCES = ("persistence", "climatology", "solver")


def as_forecast(states: xr.Dataset, init: pd.Timestamp) -> xr.Dataset:
    """Label states over ``time`` (valid times after ``init``) as a forecast from ``init``."""
    leads = (pd.DatetimeIndex(states["time"].values) - init).to_numpy()
    out = states.rename({"time": LEAD}).assign_coords({LEAD: leads})
    return out.expand_dims(time=[init.to_datetime64()])


def scores_by_lead(pred: xr.Dataset, truth: xr.Dataset) -> dict[str, dict[str, list[float]]]:
    """Mean squared error and spread by lead and variable (xappa.evaluate, global)."""
    table = evaluate(pred, truth).sel(region="global")
    out = {}
    for v in table["variable"].values:
        row = table.sel(variable=v)
        key = "skill" if "skill" in row else "rmse"
        out[str(v)] = {"mse": (row[key] ** 2).values.tolist()}
        if "spread" in row:
            out[str(v)]["spread2"] = (row["spread"] ** 2).values.tolist()
    return out


def one_start(model, climatology, seed: int, args, sampling) -> dict:
    """Analyse, forecast and score one start."""
    hours, lead = args.hours, args.lead
    truth = simulate(1, (hours + lead) / 24, nlat=32, nlon=64, spinup_days=5, seed=seed)
    truth = truth.isel(trajectory=0, drop=True)[list(model.spec.variables)]
    window = truth.isel(time=slice(0, hours))
    obs = observe(window, OBSERVING_SYSTEMS[args.system], seed=seed)
    t0 = time.perf_counter()
    analysis = xappa.assimilate(
        list(obs.values()),
        model=model,
        window=(window.time.values[0], window.time.values[-1]),
        members=args.members,
        sampling=sampling,
        seed=seed,
        progress=False,
    )
    seconds = {"assimilate": time.perf_counter() - t0}
    init = pd.Timestamp(window.time.values[-1])
    t0 = time.perf_counter()
    fc = xappa.forecast(
        analysis,
        model=model,
        lead=f"{lead}h",
        members=args.members,
        sampling=sampling,
        seed=seed,
        progress=False,
    )
    seconds["forecast"] = time.perf_counter() - t0
    start = analysis.isel(time=[-1]).assign_coords(time=[init.to_datetime64()])
    ens = xr.concat([as_forecast(start, init), fc.drop_vars("valid_time")], dim=LEAD)
    mean = analysis.isel(time=-1).mean("member")
    leads = ens[LEAD].values
    valid = init + pd.to_timedelta(leads)
    held = xr.concat([mean] * len(leads), dim="time").assign_coords(time=valid.values)
    clim = climatology[list(model.spec.variables)].broadcast_like(held)
    t0 = time.perf_counter()
    first = mean.drop_vars("time").expand_dims(time=[init.to_datetime64()])
    solver = xr.concat([first, run_solver(mean, lead)], "time")
    seconds["solver"] = time.perf_counter() - t0
    preds = {
        "xappa": ens,
        "persistence": as_forecast(held, init),
        "climatology": as_forecast(clim, init),
        "solver": as_forecast(solver[list(model.spec.variables)], init),
    }
    return {
        "seed": seed,
        "seconds": seconds,
        "leads_h": (leads / np.timedelta64(1, "h")).astype(int).tolist(),
        "scores": {k: scores_by_lead(p, truth) for k, p in preds.items()},
    }


def pooled(rows: list[dict], who: str, v: str, key: str) -> np.ndarray:
    return np.mean([r["scores"][who][v][key] for r in rows], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swe-default")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=4000)
    parser.add_argument("--hours", type=int, default=48, help="observed hours before the start")
    parser.add_argument("--lead", type=int, default=72, help="longest lead in hours")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--system", default="demo", choices=list(OBSERVING_SYSTEMS))
    parser.add_argument("--demo", action="store_true", help="start from xappa demo's sampling")
    add_sampling_arguments(parser)
    parser.add_argument("--every", type=int, default=6, help="table rows every this many hours")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figure", help="write RMSE and spread/skill by lead to this PNG")
    parser.add_argument("--json", help="write the per-start scores to this file")
    args = parser.parse_args()
    sampling, model, climatology = prepare(args)
    rows = []
    for k in range(args.starts):
        t0 = time.perf_counter()
        rows.append(one_start(model, climatology, args.first_seed + k, args, sampling))
        secs = rows[-1]["seconds"]
        print(
            f"start {k + 1}/{args.starts} (seed {args.first_seed + k}): analysis "
            f"{secs['assimilate']:.0f} s, forecast {secs['forecast']:.0f} s, "
            f"total {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    leads = np.array(rows[0]["leads_h"])
    names = list(rows[0]["scores"]["xappa"])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{args.starts} starts (truth seeds {args.first_seed}-"
        f"{args.first_seed + args.starts - 1}), {args.hours} h of {args.system} observations, "
        f"{args.members} members, {args.model} (K = {model.window}); {sampling}; "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{stamp}\n"
    )
    shown = leads % args.every == 0
    print(
        "| variable | lead (h) | xappa RMSE | persistence | climatology | solver from the "
        "analysis mean | xappa spread/skill |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    m = args.members
    for v in names:
        rmse = {w: np.sqrt(pooled(rows, w, v, "mse")) for w in ("xappa", *REFERENCES)}
        ratio = np.sqrt((m + 1) / m * pooled(rows, "xappa", v, "spread2") / rmse["xappa"] ** 2)
        for i in np.flatnonzero(shown):
            cells = " | ".join(f"{rmse[w][i]:.4g}" for w in ("xappa", *REFERENCES))
            print(f"| {v} | {leads[i]} | {cells} | {ratio[i]:.2f} |")
    for v in names:
        rmse = {w: np.sqrt(pooled(rows, w, v, "mse")) for w in ("xappa", "persistence")}
        ratio = np.sqrt((m + 1) / m * pooled(rows, "xappa", v, "spread2") / rmse["xappa"] ** 2)
        late = leads >= 6
        beats = bool((rmse["xappa"][late] < rmse["persistence"][late]).all())
        print(
            f"{v}: beats persistence at every lead from 6 h: {beats}; spread/skill from "
            f"{ratio.min():.2f} to {ratio.max():.2f} over leads 0-{leads[-1]} h"
        )
    walls = {key: np.mean([r["seconds"][key] for r in rows]) for key in rows[0]["seconds"]}
    print("wall time per start: " + ", ".join(f"{k} {s:.1f} s" for k, s in walls.items()))
    if args.figure:
        figure(rows, names, leads, m, args.figure, f"{args.model}: {args.starts} starts")
        print(f"figure: {args.figure}")
    if args.json:
        with open(args.json, "w") as f:
            meta = {**vars(args), "sampling_base": None, "sampling": sampling.to_attrs()}
            json.dump({"args": meta, "starts": rows}, f, indent=1)


def figure(rows, names, leads, members, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(names), figsize=(4.4 * len(names), 6), layout="constrained")
    for j, v in enumerate(names):
        ax = axes[0, j]
        for who in ("xappa", *REFERENCES):
            rmse = np.sqrt(pooled(rows, who, v, "mse"))
            label = "solver from the analysis mean" if who == "solver" else who
            ax.plot(leads, rmse, label=label, lw=2 if who == "xappa" else 1)
        units = "m2 s-2" if v == "geopotential" else "m s-1"
        ax.set_title(v)
        ax.set_ylabel(f"RMSE [{units}]")
        ax.grid(alpha=0.3)
        ax = axes[1, j]
        mse = pooled(rows, "xappa", v, "mse")
        ratio = np.sqrt((members + 1) / members * pooled(rows, "xappa", v, "spread2") / mse)
        ax.plot(leads, ratio, color="C0", lw=2)
        ax.axhspan(0.8, 1.2, color="0.9")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_ylim(0, 1.6)
        ax.set_xlabel("lead time [h]")
        ax.set_ylabel("spread/skill")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
