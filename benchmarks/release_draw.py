"""A posterior draw of a tiny release-like problem: this code against a baseline checkout.

The problem (issue 20's): a latent model shaped like a tiny Appa release, 71 pixel channels
on a 33 x 64 grid, a convolutional autoencoder down by 8 to latents 8 x 5 x 10, a ViDiT prior
of width 64 (4 blocks) over windows of K = 4 frames; a 24-hour trajectory of hourly frames
covered with stride 2 (11 windows, symmetrical fold); every hour, 64 station cells observed
in all 71 channels through decoder and readout (4544 values per frame, variance 1e-2); PC
sampler, 32 steps, 2 corrections, MMPS with 2 GMRES iterations. The weights are random
(seeded) and written once to a temporary directory, so that both checkouts load the same.

Each draw runs in its own subprocess (``--threads`` threads each, one at a time, the ways
alternating ``--repeat`` times): this checkout through the engine (:func:`xappa.core.da.smooth`)
and, with ``--baseline DIR``, the checkout in ``DIR`` (e.g. a worktree of commit f0d0cde) through
the guided trajectory denoiser directly, with the same generator, so the samples must agree
to float32 round-off. Each way is timed batched (all windows per network call) and one window
at a time (``max_batch=1``, as Appa). ``--profile`` instead runs one batched draw of each
checkout with its denoiser forwards, operator forwards, adjoint and tangent products timed
(CPU seconds of all threads) and prints where the time goes.

Run: python benchmarks/release_draw.py --baseline ../speed-base --repeat 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

HOURS, WINDOW, STRIDE = 24, 4, 2
CHANNELS, GRID = 71, (33, 64)
STATIONS, VARIANCE = 64, 1e-2
AUTOENCODER = {
    "in_channels": CHANNELS,
    "lat_channels": 8,
    "shape": GRID,
    "resize": 8,
    "hid_channels": (16, 32, 64, 64),
    "hid_blocks": (1, 1, 1, 1),
    "name": "release-like",
}
VIDIT = {
    "in_channels": 8,
    "blanket_size": WINDOW,
    "shape": (5, 10),
    "mod_features": 64,
    "hid_channels": 64,
    "hid_blocks": 4,
    "ffn_factor": 2,
    "attention_heads": 4,
    "name": "release-like",
}
SAMPLING = {"steps": 32, "corrections": 2, "delta": 0.1, "iterations": 2}
#: What --profile times, as (module, attribute, label); a call inside another one counts
#: for the outer one (a JVP's decoder forward is JVP time). Missing attributes are skipped.
PROFILED = [
    ("xappa.core.diffusion.denoiser", "PreconditionedDenoiser.forward", "denoiser forward"),
    ("xappa.core.guidance.observation", "ObservationBatch.apply", "operator forward (A(x))"),
    ("torch.autograd", "grad", "adjoint products (VJPs through operator and denoiser)"),
    ("xappa.core.guidance.mmps", "jvp", "tangent products A v (torch.func.jvp)"),
    ("xappa.core.guidance.linearization", "Linearization.tangent", "tangent products A v"),
]


class Timer:
    """CPU seconds spent in labelled calls, each counted for the outermost labelled call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.active: str | None = None

    def wrap(self, fn, label: str):
        def timed(*args, **kwargs):
            if self.active is not None:
                return fn(*args, **kwargs)
            self.active, start = label, time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.process_time() - start
                self.active = None

        return timed

    def install(self) -> None:
        import importlib

        for module, attribute, label in PROFILED:
            try:
                owner = importlib.import_module(module)
            except ImportError:
                continue
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            if owner is not None and hasattr(owner, name):
                setattr(owner, name, self.wrap(getattr(owner, name), label))


def networks() -> tuple[nn.Module, nn.Module]:
    """The autoencoder and the prior denoiser, with this checkout's classes."""
    from xappa.core.diffusion.denoiser import PreconditionedDenoiser
    from xappa.core.nn.autoencoder import ConvAutoencoder
    from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
    from xappa.core.nn.vidit import ViDiT

    ae = ConvAutoencoder.from_config(AutoencoderConfig(**AUTOENCODER))
    prior = PreconditionedDenoiser(ViDiT(ViDiTConfig(**VIDIT)))
    return ae.eval().requires_grad_(False), prior.eval().requires_grad_(False)


def write_problem(path: Path) -> None:
    """Write seeded weights, station cells and values to ``path`` (read by every worker)."""
    torch.manual_seed(0)
    ae, prior = networks()
    g = torch.Generator().manual_seed(1)
    cells = torch.randperm(GRID[0] * GRID[1], generator=g)[:STATIONS]
    values = torch.randn(HOURS, STATIONS * CHANNELS, generator=g)
    torch.save(
        {"ae": ae.state_dict(), "prior": prior.state_dict(), "cells": cells, "values": values},
        path,
    )


class Decode(nn.Module):
    """Standardized latents to standardized pixels: unstandardize, then decode."""

    def __init__(self, ae: nn.Module, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.ae = ae
        self.register_buffer("mean", mean[:, None, None])
        self.register_buffer("std", std[:, None, None])

    def forward(self, z: Tensor) -> Tensor:
        return self.ae.decode(z * self.std + self.mean)


def load_problem(path: Path) -> tuple[nn.Module, nn.Module, object, Tensor]:
    """The prior, the decoder, the observation set and the dates, with the importable xappa."""
    import pandas as pd
    import xarray as xr

    from xappa.core.operators import SparseOperator, flat_index
    from xappa.observations.operator import ObservationSet, StepObservation
    from xappa.state.spec import era5_spec
    from xappa.state.times import frame_dates

    data = torch.load(path, weights_only=True)
    ae, prior = networks()
    ae.load_state_dict(data["ae"])
    prior.load_state_dict(data["prior"])
    c_lat = AUTOENCODER["lat_channels"]
    decode = Decode(ae, torch.linspace(-0.5, 0.5, c_lat), torch.full((c_lat,), 2.0))
    spec = era5_spec(nlat=GRID[0], nlon=GRID[1])
    shape = (spec.n_channels, *spec.shape)
    channel = torch.arange(CHANNELS).repeat_interleave(STATIONS)
    cell = data["cells"].repeat(CHANNELS)
    times = pd.date_range("2000-01-01", periods=HOURS, freq="1h")
    steps = [
        StepObservation(
            time=t,
            operator=SparseOperator(flat_index(channel, cell, shape), shape),
            values=data["values"][i],
            variances=torch.full((STATIONS * CHANNELS,), VARIANCE),
        )
        for i, t in enumerate(times)
    ]
    obs = ObservationSet(spec, times, steps, xr.Dataset(), method="nearest", sources=[])
    return prior, decode, obs, frame_dates(times, torch.device("cpu"))


def draw(prior: nn.Module, decode: nn.Module, obs: object, dates: Tensor, args) -> Tensor:
    """One posterior draw with the importable xappa: the engine, or the old pieces."""
    max_batch = 1 if args.way == "one" else None
    frame = (AUTOENCODER["lat_channels"], *VIDIT["shape"])
    try:
        from xappa.core.da import SamplingConfig, smooth
    except ImportError:  # before the engine (f0d0cde): the pieces it was built from
        from xappa.core.diffusion.sampler import create_sampler
        from xappa.core.diffusion.schedule import create_schedule
        from xappa.core.diffusion.trajectory import TrajectoryDenoiser
        from xappa.core.guidance.mmps import MMPSDenoiser

        n = (HOURS - WINDOW) // STRIDE + 1
        windows = [
            obs.observation(list(range(w * STRIDE, w * STRIDE + WINDOW)), decode=decode)
            for w in range(n)
        ]
        guided = MMPSDenoiser(prior, windows, iterations=SAMPLING["iterations"])
        trajectory = TrajectoryDenoiser(
            guided, WINDOW, STRIDE, max_batch=max_batch, pass_window_index=True
        )
        sampler = create_sampler(
            "pc",
            trajectory,
            schedule=create_schedule("rectified"),
            steps=args.steps,
            corrections=SAMPLING["corrections"],
            delta=SAMPLING["delta"],
        )
        generator = torch.Generator().manual_seed(args.generator_seed)
        return sampler.sample(
            (1, HOURS, *frame), generator=generator, dtype=torch.float32, date=dates[None]
        )
    config = SamplingConfig(
        sampler="pc",
        steps=args.steps,
        corrections=SAMPLING["corrections"],
        delta=SAMPLING["delta"],
        iterations=SAMPLING["iterations"],
        **({"precision": args.precision} if args.precision != "float32" else {}),
    )
    return smooth(
        prior,
        obs.frames(decode=decode),
        members=1,
        length=HOURS,
        frame=frame,
        window=WINDOW,
        stride=STRIDE,
        config=config,
        seed=0,
        cond={"date": dates},
        max_batch=max_batch,
    )


def disable(change: str) -> None:
    """Undo one change of this checkout, to measure each on its own (``--without``)."""
    if change == "grouping":  # every window's operator called on its own rows
        from xappa.core.guidance import observation

        observation._shared_maps = lambda groups: []
    elif change == "linearization":  # tangent products by torch.func.jvp, as before
        from xappa.core.guidance.linearization import Linearization

        init = Linearization.__init__
        Linearization.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "mode": "forward"})


def worker(args: argparse.Namespace) -> None:
    """Time one draw (after a one-step warm-up) and save the sample; print one JSON line."""
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    for change in filter(None, args.without.split(",")):
        disable(change)
    prior, decode, obs, dates = load_problem(Path(args.problem))
    steps = args.steps
    args.steps = 1
    draw(prior, decode, obs, dates, args)  # warm-up
    args.steps = steps
    timer = Timer()
    if args.profile:
        timer.install()
    start, cpu = time.perf_counter(), time.process_time()
    sample = draw(prior, decode, obs, dates, args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    report = [(label, t, 0) for label, t in timer.seconds.items()]
    if args.profile:
        report.append(("other (sampler, solver, folding)", cpu - sum(timer.seconds.values()), 0))
    torch.save(sample.reshape(HOURS, -1), args.out)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "profile": report}))


def run(code: str, way: str, args: argparse.Namespace, out: Path) -> dict:
    """Run one worker draw of ``code`` ("this", "this-X" without change X, or "baseline")."""
    root = Path(__file__).resolve().parents[1] if code != "baseline" else Path(args.baseline)
    without = code.removeprefix("this-without-") if code.startswith("this-without-") else ""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--problem",
        str(args.problem),
        "--way",
        way,
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
        "--generator-seed",
        str(args.generator_seed),
        "--precision",
        args.precision,
        "--without",
        without,
    ] + (["--profile"] if args.profile else [])
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{code} {way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout of the code to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=SAMPLING["steps"])
    parser.add_argument("--ways", default="batched,one", help="batched and/or one")
    parser.add_argument("--precision", default="float32", help="this checkout's precision")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--without",
        default="",
        help="also run this checkout batched without each change of a comma-separated list: "
        "grouping (one decoder pass for all windows), linearization (reverse-mode tangents)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--problem", help=argparse.SUPPRESS)
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--generator-seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from xappa.core.da.seeds import generator

    args.generator_seed = generator(0).initial_seed()  # what smooth(seed=0) draws from
    codes = ["this"] + (["baseline"] if args.baseline else [])
    ways = ["batched"] if args.profile else args.ways.split(",")
    variants = [f"this-without-{c}" for c in filter(None, args.without.split(","))]
    repeat = 1 if args.profile else args.repeat
    print(
        f"{HOURS} frames, K={WINDOW}, S={STRIDE}: {(HOURS - WINDOW) // STRIDE + 1} windows; "
        f"{STATIONS} cells x {CHANNELS} channels every hour through the decoder; PC "
        f"{args.steps} steps x {SAMPLING['corrections']} corrections, MMPS GMRES "
        f"{SAMPLING['iterations']}; {args.threads} threads; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        args.problem = Path(tmp) / "problem.pt"
        write_problem(args.problem)
        times: dict[tuple[str, str], list[float]] = {}
        samples: dict[tuple[str, str], Tensor] = {}
        for r in range(repeat):
            for way in ways:
                for code in codes + (variants if way == "batched" else []):
                    out = Path(tmp) / f"{code}-{way}.pt"
                    result = run(code, way, args, out)
                    times.setdefault((code, way), []).append(result["seconds"])
                    samples[code, way] = torch.load(out, weights_only=True)
                    print(
                        f"repeat {r + 1}: {code:>8} {way:>7}: {result['seconds']:7.2f} s, CPU "
                        f"{result['cpu_seconds']:7.2f} s (load average {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
                    for label, total, _ in result["profile"]:
                        share = total / result["cpu_seconds"]
                        print(f"    {label:<58} {total:8.2f} CPU s {share:6.1%}")
    print("\n| code | way | best | median | all |\n|---|---|---:|---:|---|")
    for (code, way), t in times.items():
        runs = ", ".join(f"{v:.1f}" for v in t)
        print(f"| {code} | {way} | {min(t):.2f} s | {statistics.median(t):.2f} s | {runs} |")
    ref = samples["this", ways[0]]
    for key, sample in samples.items():
        diff = float((sample - ref).abs().max() / ref.abs().max())
        print(f"max |{'/'.join(key)} - this/{ways[0]}| / max |this/{ways[0]}|: {diff:.1e}")
    pairs = [
        (("this", "one"), ("this", "batched")),
        (("baseline", "one"), ("this", "one")),
        (("baseline", "batched"), ("this", "batched")),
    ]
    pairs += [((v, "batched"), ("this", "batched")) for v in variants]
    for a, b in pairs:
        if a in times and b in times:
            print(
                f"{'/'.join(a)} over {'/'.join(b)}: {min(times[a]) / min(times[b]):.2f}x (best), "
                f"{statistics.median(times[a]) / statistics.median(times[b]):.2f}x (median)"
            )


if __name__ == "__main__":
    main()
