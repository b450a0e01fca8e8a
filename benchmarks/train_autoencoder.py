"""Train the tiny autoencoder on the shallow-water testbed: validation RMSE vs wall time.

Usage::

    python benchmarks/train_autoencoder.py                      # simulate 8 x 20 days
    python benchmarks/train_autoencoder.py --data swe.zarr      # or read a testbed store

Trains through :func:`xappa.train.autoencoder.train_autoencoder` (the generic loop) on
random snapshots of the first 7/8 of the trajectories (standardized with their statistics),
and every ``--eval-every`` steps prints the
reconstruction RMSE in standardized units on fixed snapshots of the held-out trajectory:
``rmse`` weighted by :math:`\\cos\\phi + 1/n_{lon}` normalised to mean 1 (an area mean), and
``rmse_unweighted`` over all grid points. It stops after ``--minutes`` of training or once
both are below ``--target``, and prints a JSON summary. The wall time counts training and
evaluation, not the simulation or the statistics. On a shared 2-core machine one torch
thread was fastest for this tiny model (two threads oversubscribe the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import xarray as xr

from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config
from xappa.state.stats import stats_to_tensors
from xappa.train.autoencoder import reconstruction_rmse, train_autoencoder
from xappa.train.data import RandomSnapshots, StateData, infer_spec, split_dataset, train_stats
from xappa.train.loop import TrainConfig


class _Done(Exception):
    """Raised by the callback to end training early."""


def _data(args: argparse.Namespace, tmp: str) -> tuple[xr.Dataset, float]:
    if args.data:
        return xr.open_zarr(args.data, consolidated=False), 0.0
    from xappa.testbeds.shallow_water import simulate, write_zarr

    tic = time.perf_counter()
    ds = simulate(args.trajectories, args.days, seed=args.seed)
    path = Path(tmp) / "swe.zarr"
    write_zarr(ds, path)
    return xr.open_zarr(path, consolidated=False), time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="testbed zarr store (default: simulate one)")
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--days", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--target", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ds, simulate_s = _data(args, tmp)
        spec = infer_spec(ds)
        train_ds, valid_ds = split_dataset(ds, 0.125)  # 7 trajectories of 8 for training
        mean, std = stats_to_tensors(train_stats(train_ds, spec), spec)
        train = StateData(train_ds, spec, mean, std).load()
        valid = StateData(valid_ds, spec, mean, std).load()
        valid_batches = RandomSnapshots(valid, 16, seed=-1).fixed(4)
        torch.manual_seed(args.seed)
        config = autoencoder_config("tiny", in_channels=spec.n_channels, shape=spec.shape)
        model = ConvAutoencoder.from_config(config)
        curve: list[dict[str, float]] = []
        start = time.perf_counter()

        def evaluate(step: int, loss: float) -> None:
            if step % args.eval_every:
                return
            rmse = reconstruction_rmse(model, valid_batches, train.latitudes)
            point = {"step": step, "seconds": round(time.perf_counter() - start, 1), **rmse}
            point["train_loss"] = loss
            curve.append(point)
            print(
                f"step {step:5d}  {point['seconds']:7.1f} s  train loss {loss:.5f}  valid RMSE"
                f" {rmse['rmse']:.4f} (unweighted {rmse['rmse_unweighted']:.4f})",
                flush=True,
            )
            elapsed = time.perf_counter() - start
            if max(rmse.values()) < args.target or elapsed > 60 * args.minutes:
                raise _Done

        loop = TrainConfig(steps=10**6, lr=args.lr, warmup=20, progress=False, seed=args.seed)
        try:
            train_autoencoder(model, train, loop, batch_size=args.batch_size, callback=evaluate)
        except _Done:
            pass
    last = curve[-1]
    summary = {
        "reached_target": max(last["rmse"], last["rmse_unweighted"]) < args.target,
        "target": args.target,
        "final": last,
        "simulate_seconds": round(simulate_s, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": args.threads,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
