"""Train the Lorenz-96 window prior through the generic training loop.

Usage::

    python benchmarks/train_lorenz96.py --out /tmp/l96_prior --steps 6000 --threads 2

Run with ``torchrun --nproc-per-node 2 benchmarks/train_lorenz96.py ...`` for DDP (gloo on
CPU). Resumes from ``--out`` when it holds a checkpoint. Training trajectories use seed
``--seed`` (default 1); benchmarks and tests evaluate on other seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from xappa.testbeds.lorenz96_prior import (
    Lorenz96Prior,
    lorenz96_training_data,
    train_lorenz96_prior,
)
from xappa.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="checkpoint directory")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--trajectories", type=int, default=64)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = Lorenz96Prior(window=args.window, hidden=args.hidden, blocks=args.blocks)
    data = lorenz96_training_data(
        trajectories=args.trajectories, steps=args.length, seed=args.seed
    )
    valid = lorenz96_training_data(trajectories=4, steps=500, seed=args.seed + 1000)
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup=200,
        lr_schedule="cosine",
        ema_decay=0.999,
        valid_every=max(args.steps // 10, 1),
        checkpoint_every=500,
        checkpoint_dir=args.out,
        progress=not args.no_progress,
    )
    start = time.perf_counter()
    _, result = train_lorenz96_prior(
        prior, data, config, valid_data=valid, batch_size=args.batch_size
    )
    summary = {
        "steps": result.step,
        "seconds_this_call": round(time.perf_counter() - start, 1),
        "final_loss_avg100": sum(result.losses[-100:]) / max(len(result.losses[-100:]), 1),
        "valid": result.valid_losses,
    }
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
