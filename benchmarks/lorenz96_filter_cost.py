"""Lorenz-96 filter cost per observation cycle: the engine's filter against an older tree's.

Times the engine's filter (:func:`xappa.core.da.filter_analyses`: one draw per observation
cycle) over ``--cycles`` observation cycles of a setting of ``benchmarks/lorenz96.py``, then,
with ``--baseline TREE``, the filter of xappa at f0d0cde (``xappa.da.filter_ensemble``: one
guided window per model step) on the same observations, prior and sampler settings, in a
subprocess of the same Python with ``PYTHONPATH=TREE``, one after the other in one run.
Prints the seconds per observation cycle of both, their ratio and the load average (the
schedule does not change the cost: the baseline always uses its ``rectified`` one).

Usage::

    git worktree add --detach /tmp/xappa-f0d0cde f0d0cde
    python benchmarks/lorenz96_filter_cost.py --prior /tmp/l96/prior --setting longgap \\
        --cycles 6 --baseline /tmp/xappa-f0d0cde
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from lorenz96 import SETTINGS, observations  # benchmarks/lorenz96.py

from xappa.core.da import SamplingConfig, filter_analyses
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96
from xappa.testbeds.lorenz96_prior import load_lorenz96_prior

# Runs in the baseline tree (xappa at f0d0cde): its filter samples one window per model step.
BASELINE = """
import json, sys, time, torch
torch.set_num_threads(1)
from xappa.da import FilterConfig, filter_ensemble
from xappa.da.lorenz96 import load_lorenz96_prior
from xappa.options import set_options
set_options(progress=False)
a = json.loads(sys.argv[1])
d = load_lorenz96_prior(a["prior"])
values = torch.tensor(a["values"])[None]
mask = torch.tensor(a["mask"])[None]
config = FilterConfig(window=d.backbone.frames, members=a["members"], **a["sampling"])
tic = time.perf_counter()
filter_ensemble(d, values, mask, a["variance"], config, seed=a["seed"])
print(json.dumps({"seconds": time.perf_counter() - tic}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True, help="directory from train_lorenz96.py")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="longgap")
    parser.add_argument("--cycles", type=int, default=6, help="observation cycles timed")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--corrections", type=int, default=1)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--past", type=int, default=1, help="the engine filter's belief frames")
    parser.add_argument("--baseline", default=None, help="a checkout of xappa at f0d0cde")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    set_options(progress=False)
    fields = ("sampler", "steps", "corrections", "delta", "iterations")
    sampling = {f: getattr(args, f) for f in fields}
    config = SamplingConfig(schedule="rectified", **sampling)
    denoiser = load_lorenz96_prior(args.prior)
    window = denoiser.backbone.frames
    time_step = SETTINGS[args.setting][1]
    length = (args.cycles - 1) * time_step + 1  # observation times 0, dto, ..., last
    truth = l96.simulate(steps=length, seed=args.seed)
    obs = observations(truth, args.setting, args.seed + 100, length)
    tic = time.perf_counter()
    filter_analyses(
        denoiser, obs, members=args.members, frame=(40,), window=window, config=config,
        past=args.past, floor=1.0, seed=args.seed,
    )  # fmt: skip
    engine = (time.perf_counter() - tic) / args.cycles
    result = {
        "setting": args.setting,
        "cycles": args.cycles,
        "members": args.members,
        "sampling": sampling,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average_before": os.getloadavg()[0],
        "engine_seconds_per_cycle": engine,
    }
    if args.baseline:
        payload = {
            "prior": args.prior,
            "values": obs.values.tolist(),
            "mask": obs.mask.tolist(),
            "variance": float(obs.variance.flatten()[0]),
            "members": args.members,
            "sampling": sampling,
            "seed": args.seed,
        }
        env = {**os.environ, "PYTHONPATH": args.baseline, "OMP_NUM_THREADS": "1"}
        run = subprocess.run(
            [sys.executable, "-c", BASELINE, json.dumps(payload)],
            env=env, cwd=args.baseline, capture_output=True, text=True, check=True,
        )  # fmt: skip
        base = json.loads(run.stdout.strip().splitlines()[-1])["seconds"] / args.cycles
        result.update(baseline_seconds_per_cycle=base, baseline_over_engine=base / engine)
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
