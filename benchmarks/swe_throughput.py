"""Throughput of the default model on this machine, against its measured matmul limit.

    python benchmarks/swe_throughput.py --threads 2

1. The machine's float32 matmul throughput (square matrices of ``--matmul-size``), the
   physical limit of dense network code here.
2. The swe-default denoiser forward on a batch of windows (as one sampler call of
   ``xappa demo`` gives: 8 members x 7 windows of 12 frames): its FLOPs, counted by
   ``torch.utils.flop_counter``, over its wall time, as a fraction of (1).
3. One reanalysis of ``xappa demo`` (48 h, 8 members, MMPS, DDIM ``--steps``) with all
   windows batched versus one window at a time (``max_batch=1``, as Appa), side by side from
   the same seed, and the model-hours assimilated per wall-second of each.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import datetime, timezone

import torch
from torch.utils.flop_counter import FlopCounterMode

import xappa
from xappa.core.da import SamplingConfig
from xappa.testbeds.osse import ObservingSystem, observe
from xappa.testbeds.shallow_water import simulate


def best_of(fn, repeats: int = 3) -> float:
    """Return the best wall time of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Run the three measurements and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    xappa.set_options(progress=False)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{stamp}\n")

    n = args.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = 2 * n**3 / best_of(lambda: a @ b) / 1e9

    model = xappa.load_model("swe-default", device="cpu")
    c, h, w = model.latent_shape
    k = model.window
    x = torch.randn(56, k, c, h, w)
    sigma = torch.full((56,), 1.0)
    date = torch.zeros(56, k, 4, dtype=torch.long)
    with torch.no_grad():
        seconds = best_of(lambda: model.denoiser(x, sigma, date=date))
        with FlopCounterMode(display=False) as counter:
            model.denoiser(x, sigma, date=date)
    flops = counter.get_total_flops()
    rate = flops / seconds / 1e9
    print("| measure | value |")
    print("|---|---|")
    print(f"| float32 matmul {n} x {n} | {matmul:.1f} GFLOP/s |")
    print(
        f"| swe-default denoiser forward, 56 windows x {k} frames | {flops / 1e9:.2f} GFLOP "
        f"in {seconds * 1e3:.0f} ms = {rate:.1f} GFLOP/s |"
    )
    print(f"| fraction of the matmul throughput | {rate / matmul:.0%} |")

    truth = simulate(1, 2.0, nlat=32, nlon=64, spinup_days=5, seed=4000).isel(trajectory=0)
    truth = truth[list(model.spec.variables)]
    obs = list(observe(truth, ObservingSystem(), seed=4000).values())
    window = (truth.time.values[0], truth.time.values[-1])
    sampling = SamplingConfig(sampler="ddim", steps=args.steps)
    kwargs = {"members": 8, "sampling": sampling, "seed": 1, "progress": False}
    rows = []
    outputs = {}
    for label, max_batch in (("one window at a time (max_batch=1)", 1), ("batched", None)):
        t0 = time.perf_counter()
        outputs[label] = xappa.assimilate(
            obs, model=model, window=window, max_batch=max_batch, **kwargs
        )
        rows.append((label, time.perf_counter() - t0))
    one, batched = rows[0][1], rows[1][1]
    diff = max(
        float(abs(outputs[rows[0][0]][v] - outputs[rows[1][0]][v]).max() / truth[v].std())
        for v in truth.data_vars
    )
    hours = truth.sizes["time"]
    print(f"\nReanalysis of 48 h, 8 members, MMPS, DDIM {args.steps} steps:\n")
    print("| way | wall time | model-hours per wall-second |")
    print("|---|---|---|")
    for label, secs in rows:
        print(f"| {label} | {secs:.1f} s | {hours / secs:.2f} |")
    print(f"| ratio | **{one / batched:.2f}x** | |")
    print(f"\nlargest difference between the two ensembles: {diff:.1e} x the truth's std")


if __name__ == "__main__":
    main()
