"""Batch reanalysis: throughput with 1 and 2 workers, and peak memory of one task.

**Throughput.** The same period (``--days``, windows of ``--window`` overlapping by
``--overlap``) is reanalysed twice with :func:`xappa.batch.reanalysis`, on a
``distributed.LocalCluster`` of 1 then 2 worker processes with 1 thread each, into fresh
stores. Workers are started and warmed up (xappa imported, the model loaded) before the
clock starts; the time covers submitting, sampling and writing every window. The rate is in
model-hours of the period per wall-clock second (all members together).

**Memory.** For each window length of ``--memory-windows`` (2, 7 and 14 days by default), a
fresh process (spawned) runs one task: a reanalysis whose period is one window, in-process.
It reports its RSS before the task (imports, model and observations loaded) and its peak RSS
(``ru_maxrss``) after it; the difference is the task's peak memory.

The model is :func:`xappa.testing.tiny_model` (random weights; 16 x 32 grid, hourly) unless
``--model`` names a hub model or model directory. Observations are 2 m temperature and 10 m
winds at ``--stations`` random stations every hour, from :func:`xappa.testing.mock_era5` (on
the model's grid when the model is the tiny one), written to a zarr store and opened lazily.

Run: .venv/bin/python benchmarks/batch_reanalysis.py [--days 2 --window 12h --overlap 3h
     --members 2 --steps 2 --sampler ddim --memory-windows 2D 7D 14D --model PATH]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import xarray as xr

START = pd.Timestamp("2021-01-01")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="hub name or model directory (default: a tiny model)")
    p.add_argument("--days", type=float, default=2.0, help="throughput period (default 2)")
    p.add_argument("--window", default="12h", help="throughput window (default 12h)")
    p.add_argument("--overlap", default="3h", help="throughput overlap (default 3h)")
    p.add_argument("--members", type=int, default=2, help="ensemble size (default 2)")
    p.add_argument("--steps", type=int, default=2, help="sampler steps (default 2)")
    p.add_argument("--sampler", default="ddim", help="sampler (default ddim)")
    p.add_argument("--stations", type=int, default=20, help="observing stations (default 20)")
    p.add_argument(
        "--memory-windows",
        nargs="*",
        default=["2D", "7D", "14D"],
        help="window lengths of the memory table (default 2D 7D 14D)",
    )
    p.add_argument("--workers", nargs="*", type=int, default=[1, 2], help="worker counts")
    return p.parse_args()


def _model_and_obs(args: argparse.Namespace, root: Path, hours: int) -> tuple[str, str]:
    """Write the model (when tiny) and hourly observations over ``hours``; return paths."""
    import xappa
    from xappa.models.hub import save_model_files
    from xappa.observations import random_stations, sample_points
    from xappa.testing import TINY_VARIABLES, mock_era5, tiny_model

    if args.model is None:
        save_model_files(tiny_model(), root / "model", show=False)
        model_path = str(root / "model")
    else:
        model_path = args.model
    spec = xappa.load_model(model_path, device="cpu").spec
    variables = [v for v in TINY_VARIABLES if v in spec.variables] or [spec.variables[0]]
    nlat, nlon = spec.shape
    truth = mock_era5(variables=variables, nlat=nlat, nlon=nlon, ntime=hours + 1, levels=[])
    truth = truth.assign_coords(time=pd.date_range(START, periods=hours + 1, freq="1h"))
    obs = sample_points(truth, random_stations(args.stations, seed=0), error_std=0.5, seed=0)
    obs.to_zarr(root / "obs.zarr", mode="w", consolidated=False)
    return model_path, str(root / "obs.zarr")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": args.steps, "sampler": args.sampler, "progress": False}


def _warm(model_path: str) -> int:
    """Import xappa and load the model on a worker (outside the timed run)."""
    import torch

    from xappa.batch.tasks import resolve_model

    resolve_model(model_path)
    return torch.get_num_threads()


def _throughput(args: argparse.Namespace, root: Path, model_path: str, obs_path: str) -> list:
    import distributed

    import xappa.batch

    hours = round(args.days * 24)
    end = START + pd.Timedelta(hours=hours)
    rows = []
    for n in args.workers:
        cluster = distributed.LocalCluster(
            n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None
        )
        with cluster, distributed.Client(cluster) as client:
            threads = set(client.run(_warm, model_path).values())
            obs = xr.open_zarr(obs_path, consolidated=False)
            out = root / f"throughput-{n}.zarr"
            tic = time.perf_counter()
            ds = xappa.batch.reanalysis(
                obs,
                model_path,
                START,
                end,
                args.window,
                args.overlap,
                args.members,
                out,
                client,
                seed=0,
                overwrite=True,
                **_settings(args),
            )
            seconds = time.perf_counter() - tic
            step = pd.Timedelta(ds.time.values[1] - ds.time.values[0])
            model_hours = ds.sizes["time"] * step / pd.Timedelta("1h")
            rows.append((n, threads, ds.sizes["window"], model_hours, seconds))
            ds.close()
            obs.close()
            shutil.rmtree(out)
    return rows


def _one_task(args: argparse.Namespace, model_path: str, obs_path: str, window: str) -> dict:
    """Run one window in this (fresh) process; report RSS before and peak RSS after, MiB."""
    import psutil

    import xappa.batch
    from xappa.batch.tasks import resolve_model

    torch.set_num_threads(1)
    resolve_model(model_path)
    length = pd.Timedelta(window)
    end = START + length - pd.Timedelta("1h")
    obs = xr.open_zarr(obs_path, consolidated=False).sel(time=slice(START, end)).load()
    before = psutil.Process().memory_info().rss / 2**20
    out = tempfile.mkdtemp(prefix="xappa-bench-")
    tic = time.perf_counter()
    ds = xappa.batch.reanalysis(
        obs,
        model_path,
        START,
        end,
        window,
        "0h",
        args.members,
        f"{out}/one.zarr",
        **_settings(args),
    )
    seconds = time.perf_counter() - tic
    frames = ds.sizes["time"]
    ds.close()
    shutil.rmtree(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    return {"window": window, "frames": frames, "before": before, "peak": peak, "seconds": seconds}


def _memory(args: argparse.Namespace, model_path: str, obs_path: str) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for window in args.memory_windows:
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_one_task, (args, model_path, obs_path, window)))
    return rows


def _header(args: argparse.Namespace) -> None:
    import xappa

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    print(f"- date: {stamp}")
    print(f"- machine: {platform.node()}, {cpu}, {os.cpu_count()} cores, {platform.system()}")
    versions = f"python {platform.python_version()}, torch {torch.__version__}"
    print(f"- {versions}, xappa {xappa.__version__}")
    print(f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`")
    print(
        f"- settings: model {args.model or 'tiny (random weights)'}, {args.members} members,"
        f" sampler {args.sampler} with {args.steps} steps, {args.stations} stations hourly"
    )
    print()


def _print_throughput(args: argparse.Namespace, rows: list) -> None:
    title = f"{args.days:g} days, windows of {args.window} overlapping by {args.overlap}"
    print(f"### Throughput: {title}")
    print()
    print(
        "| workers | torch threads per worker | windows | model-hours | wall s"
        " | model-hours / s | speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0][4]
    for n, threads, windows, hours, seconds in rows:
        t = ",".join(map(str, sorted(threads)))
        rate, speedup = hours / seconds, base / seconds
        print(
            f"| {n} | {t} | {windows} | {hours:g} | {seconds:.1f} | {rate:.2f} | {speedup:.2f} |"
        )
    print()


def _print_memory(args: argparse.Namespace, rows: list[dict]) -> None:
    print(f"### Peak memory of one task ({args.members} members, in-process, 1 thread)")
    print()
    print("| window | frames | RSS before task MiB | peak RSS MiB | task peak MiB | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['window']} | {r['frames']} | {r['before']:.0f} | {r['peak']:.0f} |"
            f" {r['peak'] - r['before']:.0f} | {r['seconds']:.1f} |"
        )
    print()


def main() -> None:
    args = _parse()
    _header(args)
    lengths = [pd.Timedelta(w) / pd.Timedelta("1h") for w in args.memory_windows]
    hours = round(max([args.days * 24, *lengths]))
    with tempfile.TemporaryDirectory(prefix="xappa-bench-") as tmp:
        root = Path(tmp)
        model_path, obs_path = _model_and_obs(args, root, hours)
        if args.workers:
            _print_throughput(args, _throughput(args, root, model_path, obs_path))
        if args.memory_windows:
            _print_memory(args, _memory(args, model_path, obs_path))


if __name__ == "__main__":
    main()
