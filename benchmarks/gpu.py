"""Speed and memory of a posterior draw with the published model sizes, on one GPU.

Self-contained (random weights, no downloads): builds the autoencoder ``cae_f32`` (71
channels on 721 x 1440, latents 64 x 23 x 47) and the prior ``vit_large`` (K = 24) on
``--device``, and times, in each of ``--precisions`` (autocast of the networks, the solver in
float64):

1. ``denoiser``: one prior denoiser call on a 24-hour window (no graph);
2. ``guided-forward`` and ``guided-reverse``: one MMPS-guided call (Tweedie covariance, 2
   GMRES iterations) on one window observed by ground stations (``--stations`` cells x 6
   channels, variance 1e-4) and a satellite swath (Appa's orbit, 65 channels, variance
   1e-2) through the decoder on every ``--every``-th hour, with the operator's tangent
   products by forward mode (``torch.func.jvp``, the default on a GPU) or by reverse mode
   (``MMPSDenoiser(tangents=...)``, the default on a CPU): which is faster and what each
   holds in memory decides the GPU default;
3. ``guided-batched`` and ``guided-one``: the guided call (default tangents) on ``--windows``
   windows at once, and the same windows one at a time (Appa's way), with the largest
   difference of their outputs;
4. ``draw``: a full 24-hour posterior draw with Appa's settings (PC, 32 steps, 2
   corrections, delta 0.1, MMPS with 2 GMRES iterations) through :func:`xappa.core.da.smooth`.
   When the time left of ``--budget`` seconds cannot hold it (estimated from the guided call),
   it runs ``--steps`` scaled down and reports the time per step and the full draw
   extrapolated, marked as such.

Each measurement is the best of ``--repeat`` after a warm-up, with the peak device memory
(``torch.cuda.max_memory_allocated``, GPU only); a measurement that runs out of memory is
reported as such and the others go on. One table is printed and written as JSON to ``--out``.
``--size tiny`` runs the same steps with tiny networks, e.g. on a CPU (as the test suite does).

    python benchmarks/gpu.py --out gpu.json                      # one H100/H200, < 5 minutes
    python benchmarks/gpu.py --size tiny --device cpu --out tiny.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from xappa.core.da import SamplingConfig, smooth
from xappa.core.da.precision import with_precision
from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import FramewiseOperator, Observation
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config, vidit_config
from xappa.core.nn.vidit import ViDiT
from xappa.core.operators import ConcatOperator, SparseOperator, flat_index
from xappa.observations.networks import leo_swath
from xappa.observations.operator import stack_operators

#: Network sizes: the published ones, and tiny ones for a CPU check.
SIZES: dict[str, dict[str, Any]] = {
    "published": {
        "autoencoder": autoencoder_config("cae_f32"),
        "vidit": vidit_config("vit_large"),
    },
    "tiny": {
        "autoencoder": autoencoder_config(
            "tiny", in_channels=71, lat_channels=8, shape=(16, 32), hid_channels=(8, 8, 16)
        ),
        "vidit": vidit_config("tiny", in_channels=8, blanket_size=6, shape=(4, 10)),
    },
}
STATION_CHANNELS = range(6)  # Appa: the 6 surface variables
SATELLITE_CHANNELS = range(6, 71)  # Appa: the 65 atmospheric channels
TANGENTS = ("forward", "reverse")  # how the guided call takes A v (MMPSDenoiser(tangents=))


class Decode(nn.Module):
    """Standardized latent frames ``(B, C_lat, h, w)`` to pixels ``(B, C, H, W)``."""

    def __init__(self, autoencoder: ConvAutoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode(z)


class Frames:
    """Frame observations of a trajectory: hourly readouts after the shared decoder."""

    def __init__(self, decode: nn.Module, readouts: dict[int, nn.Module], values: dict) -> None:
        self.decode, self.readouts, self.values = decode, readouts, values

    def window(self, frames: Sequence[int]) -> Observation | None:
        used = [(k, f) for k, f in enumerate(frames) if f in self.readouts]
        if not used:
            return None
        readout = nn.Sequential(
            nn.Flatten(1, 2), stack_operators([self.readouts[f] for _, f in used])
        )
        op = FramewiseOperator(self.decode, [k for k, _ in used], readout)
        values = torch.cat([self.values[f][0] for _, f in used])
        variances = torch.cat([self.values[f][1] for _, f in used])
        return Observation(op, values, variances)


def build(size: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """The networks, the observations of ``hours`` hourly frames and the dates."""
    torch.manual_seed(0)
    ae_cfg, vit_cfg = SIZES[size]["autoencoder"], SIZES[size]["vidit"]
    autoencoder = ConvAutoencoder.from_config(ae_cfg).eval().requires_grad_(False)
    decode = Decode(autoencoder).to(device)
    prior = PreconditionedDenoiser(ViDiT(vit_cfg)).eval().requires_grad_(False).to(device)
    k = vit_cfg.blanket_size
    args.hours = max(args.hours, k)
    hours = max(args.hours, k + (args.windows - 1) * max(k // 2, 1))  # the batched windows'
    h, w = ae_cfg.shape
    shape = (ae_cfg.in_channels, h, w)
    g = torch.Generator().manual_seed(1)
    cells = torch.randperm(h * w, generator=g)[: min(args.stations, h * w)]
    station_index = flat_index(
        torch.tensor(STATION_CHANNELS).repeat(len(cells)), cells.repeat_interleave(6), shape
    )
    lat = np.linspace(90.0, -90.0, h)
    lon = np.arange(w) * 360.0 / w
    times = pd.date_range("2021-06-21", periods=hours, freq="1h")
    swath = leo_swath(lat, lon, times).values.reshape(hours, -1)
    readouts, values = {}, {}
    for t in range(0, hours, args.every):
        seen = torch.from_numpy(np.flatnonzero(swath[t]))
        channels = torch.tensor(SATELLITE_CHANNELS)
        sat = flat_index(channels.repeat(len(seen)), seen.repeat_interleave(len(channels)), shape)
        readouts[t] = ConcatOperator(
            [SparseOperator(station_index, shape), SparseOperator(sat, shape)]
        )
        m = readouts[t].n_obs
        variances = torch.cat(
            [torch.full((len(station_index),), 1e-4), torch.full((len(sat),), 1e-2)]
        )
        values[t] = (torch.randn(m, generator=g).to(device), variances.to(device))
    readouts = {t: op.to(device) for t, op in readouts.items()}
    dates = torch.zeros(hours, 4, dtype=torch.long, device=device)
    dates[:, 0], dates[:, 1], dates[:, 2] = 2021, 6, 21
    dates[:, 3] = torch.arange(hours, device=device) % 24
    latent = (ae_cfg.latent_shape[2], *ae_cfg.latent_shape[:2])
    return {
        "prior": prior,
        "frames": Frames(decode, readouts, values),
        "dates": dates,
        "k": k,
        "hours": hours,
        "latent": latent,
        "n_obs": sum(len(v[0]) for t, v in values.items() if t < k),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], Any], device: torch.device, repeat: int
) -> tuple[dict[str, Any], Any]:
    """Best and median seconds of ``repeat`` calls after a warm-up, and the peak memory."""
    try:
        out = fn()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"status": "out of memory"}, None
    row: dict[str, Any] = {
        "status": "ok",
        "best_s": min(times),
        "median_s": float(np.median(times)),
    }
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row, out


def guided_rows(
    problem: dict[str, Any], precision: str, device: torch.device, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The guided call on one window, and on ``--windows`` windows batched and one at a time."""
    k, (c, h, w) = problem["k"], problem["latent"]
    n = args.windows
    stride = max(k // 2, 1)
    windows = [problem["frames"].window(list(range(i * stride, i * stride + k))) for i in range(n)]
    prior, windows = with_precision(problem["prior"], windows, precision)
    guided = MMPSDenoiser(prior, windows, iterations=2)  # tangents="auto"
    modes = {t: MMPSDenoiser(prior, windows, iterations=2, tangents=t) for t in TANGENTS}
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, k, c, h, w, generator=g, device=device)
    sigma = torch.full((n,), 0.5, device=device)
    dates = torch.stack([problem["dates"][i * stride : i * stride + k] for i in range(n)])
    index = torch.arange(n, device=device)

    def one_window(guided: MMPSDenoiser) -> Tensor:
        return guided(x[:1], sigma[:1], window_index=index[:1], date=dates[:1])

    def batched() -> Tensor:
        return guided(x, sigma, window_index=index, date=dates)

    def one_at_a_time() -> Tensor:
        return torch.cat(
            [
                guided(
                    x[i : i + 1],
                    sigma[i : i + 1],
                    window_index=index[i : i + 1],
                    date=dates[i : i + 1],
                )
                for i in range(n)
            ]
        )

    rows = []
    for tangents, model in modes.items():
        row, _ = measure(lambda model=model: one_window(model), device, args.repeat)
        rows.append({"measure": f"guided-{tangents}", "windows": 1, **row})
    row_b, out_b = measure(batched, device, args.repeat)
    row_o, out_o = measure(one_at_a_time, device, args.repeat)
    if out_b is not None and out_o is not None:
        diff = float((out_b - out_o).abs().max() / out_o.abs().max())
        row_b["max_rel_diff_vs_one"] = diff
    rows.append({"measure": "guided-batched", "windows": n, **row_b})
    rows.append({"measure": "guided-one", "windows": n, **row_o})
    return rows


def draw_row(
    problem: dict[str, Any],
    precision: str,
    device: torch.device,
    args: argparse.Namespace,
    seconds_left: float,
    per_call: float | None,
) -> dict[str, Any]:
    """A full 24-hour draw (PC 32 x 2, MMPS GMRES 2), or fewer steps if time is short."""
    k, hours = problem["k"], args.hours
    calls_per_step = 3  # PC: a predictor and 2 corrections
    steps = args.steps
    if per_call is not None and steps * calls_per_step * per_call * 1.2 > seconds_left:
        steps = max(1, int(seconds_left / (1.2 * calls_per_step * per_call)))
    if per_call is not None and seconds_left < 1.2 * calls_per_step * per_call:
        return {"measure": "draw", "status": "skipped (time budget)", "steps": 0}
    config = SamplingConfig(
        sampler="pc", steps=steps, corrections=2, delta=0.1, iterations=2, precision=precision
    )

    def draw() -> Tensor:
        return smooth(
            problem["prior"],
            problem["frames"],
            members=1,
            length=hours,
            frame=problem["latent"],
            window=k,
            stride=max(k // 2, 1),
            config=config,
            seed=0,
            cond={"date": problem["dates"][:hours]},
            device=device,
        )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        start = time.perf_counter()
        draw()
        sync(device)
        seconds = time.perf_counter() - start
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"measure": "draw", "status": "out of memory", "steps": steps}
    row: dict[str, Any] = {"measure": "draw", "status": "ok", "steps": steps, "best_s": seconds}
    if steps != args.steps:
        row["status"] = f"ok, {steps} of {args.steps} steps"
        row["extrapolated_s"] = seconds * args.steps / steps
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements; returns the JSON document."""
    start = time.perf_counter()
    device = torch.device(args.device)
    problem = build(args.size, device, args)
    k, (c, h, w) = problem["k"], problem["latent"]
    head = {
        "size": args.size,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "window": k,
        "latent": [c, h, w],
        "observations_per_window": problem["n_obs"],
        "observed_every_hours": args.every,
        "budget_s": args.budget,
    }
    rows: list[dict[str, Any]] = []
    for precision in args.precisions.split(","):
        prior = with_precision(problem["prior"], [], precision)[0]
        g = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(1, k, c, h, w, generator=g, device=device)
        dates = problem["dates"][None, :k]

        def denoise(prior: nn.Module = prior, x: Tensor = x, dates: Tensor = dates) -> Tensor:
            with torch.no_grad():
                return prior(x, torch.ones(1, device=device), date=dates)

        row, _ = measure(denoise, device, args.repeat)
        rows.append({"precision": precision, "measure": "denoiser", "windows": 1, **row})
        guided = guided_rows(problem, precision, device, args)
        rows += [{"precision": precision, **r} for r in guided]
    for precision in args.precisions.split(","):
        per_call = min(
            (
                r["best_s"]
                for r in rows
                if r["precision"] == precision
                and r["measure"].startswith("guided-")
                and r["windows"] == 1
                and "best_s" in r
            ),
            default=None,
        )
        left = args.budget - (time.perf_counter() - start)
        left /= max(
            1, len(args.precisions.split(",")) - args.precisions.split(",").index(precision)
        )
        rows.append(
            {"precision": precision, **draw_row(problem, precision, device, args, left, per_call)}
        )
    return {**head, "seconds": time.perf_counter() - start, "rows": rows}


def table(doc: dict[str, Any]) -> str:
    """The Markdown table of a JSON document of :func:`run`."""
    title = (
        f"{doc['size']} networks on {doc['device']} (torch {doc['torch']}): window K = "
        f"{doc['window']}, latents {doc['latent']}, {doc['observations_per_window']} observed "
        f"values per window (every {doc['observed_every_hours']} h); {doc['seconds']:.0f} s in all"
    )
    lines = [
        title,
        "",
        "| precision | measure | windows | best | median | peak memory | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in doc["rows"]:
        best = f"{r['best_s']:.3f} s" if "best_s" in r else "-"
        median = f"{r['median_s']:.3f} s" if "median_s" in r else "-"
        peak = f"{r['peak_gib']:.1f} GiB" if "peak_gib" in r else "-"
        note = r["status"]
        if "extrapolated_s" in r:
            note += f"; full draw about {r['extrapolated_s']:.0f} s"
        if "max_rel_diff_vs_one" in r:
            note += f"; max rel. diff. from one at a time {r['max_rel_diff_vs_one']:.1e}"
        lines.append(
            f"| {r['precision']} | {r['measure']} | {r.get('windows', 1)} | {best} | {median} "
            f"| {peak} | {note} |"
        )
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="published")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--hours", type=int, default=24, help="the draw's length (at least K)")
    parser.add_argument("--every", type=int, default=6, help="observed every this many hours")
    parser.add_argument("--stations", type=int, default=10277, help="station cells (Appa 11k)")
    parser.add_argument("--windows", type=int, default=2, help="windows of the batched call")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for everything")
    parser.add_argument("--threads", type=int, help="CPU threads (CPU runs)")
    parser.add_argument("--out", default="gpu.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if math.prod((args.windows, args.repeat, args.steps)) < 1:
        raise ValueError("--windows, --repeat and --steps must be positive")
    doc = run(args)
    print(table(doc))
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    return doc


if __name__ == "__main__":
    main()
