"""How much of the prior's spread a sampler keeps: the default model's unconditioned samples.

The standardized latents of the truth have a standard deviation of about 1 (printed first:
fresh shallow-water trajectories, seeds 3000-3002, encoded). An ensemble that keeps less than
that is under-dispersed before any observation is assimilated. Two tables:

1. One window (K hourly frames) of the prior, 32 samples: the latent standard deviation for
   each sampler, step count and spacing of the noise levels (``schedule``).
2. A trajectory of ``--hours`` frames composed of windows (8 samples, LMS 32 steps, logit
   spacing): the standard deviation over all frames and over the middle 12, for each stride
   (K: independent windows, the window prior's own spread; K/2, the default; K/3) and fold.

    python benchmarks/prior_spread.py --threads 2 [--hours 168] [--skip-samplers]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import Tensor, nn

import xappa
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import create_schedule
from xappa.core.diffusion.trajectory import TrajectoryDenoiser, padded_length
from xappa.testbeds.shallow_water import simulate

SAMPLERS = [
    ("pc", 8, "rectified", {"corrections": 1}),
    ("pc", 8, "loglogit", {"corrections": 1}),
    ("pc", 32, "rectified", {"corrections": 2}),
    ("ddpm", 16, "rectified", {}),
    ("ddpm", 16, "loglogit", {}),
    ("ddim", 16, "rectified", {}),
    ("ddim", 16, "loglogit", {}),
    ("lms", 16, "rectified", {}),
    ("lms", 16, "loglinear", {}),
    ("lms", 16, "loglogit", {}),
    ("lms", 24, "loglogit", {}),
    ("lms", 32, "loglogit", {}),
    ("lms", 64, "loglogit", {}),
    ("lms", 256, "rectified", {}),
]
def folds(k: int) -> list[tuple[int, str]]:
    """The strides and folds of table 2 for windows of ``k`` frames."""
    half = max(k // 2, 1)
    return [
        (k, "symmetrical"),
        (half, "symmetrical"),
        (max(k // 3, 1), "symmetrical"),
        (half, "causal"),
        (half, "average"),
    ]


def dates(n: int) -> Tensor:
    """Hourly ``[year, month, day, hour]`` from 2000-01-06 00:00, shape ``(n, 4)``."""
    return torch.tensor([[2000, 1, 6 + h // 24, h % 24] for h in range(n)])


class WindowPrior(nn.Module):
    """The model's denoiser on window ``window_index`` of a trajectory starting at ``start``."""

    def __init__(self, model: xappa.Model, length: int, stride: int) -> None:
        super().__init__()
        self.model, self.k = model, model.window
        days = dates(length)
        n = (length - self.k) // stride + 1
        self.dates = torch.stack([days[w * stride : w * stride + self.k] for w in range(n)])

    def forward(self, x: Tensor, sigma: Tensor, window_index: Tensor) -> Tensor:
        return self.model.denoiser(x, sigma, date=self.dates[window_index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swe-default")
    parser.add_argument("--hours", type=int, default=48, help="trajectory length, table 2")
    parser.add_argument("--skip-samplers", action="store_true", help="table 2 only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = xappa.load_model(args.model)
    k, shape = model.window, model.latent_shape
    truths = [
        simulate(1, 4, nlat=model.spec.shape[0], nlon=model.spec.shape[1], seed=s)
        for s in (3000, 3001, 3002)
    ]
    latents = [xappa.encode(t.isel(trajectory=0), model=model)["latent"] for t in truths]
    print(f"latent std of 3 fresh truths (4 days each): {float(np.std(latents)):.3f}\n")
    print(f"1. one window of {k} frames, 32 samples (seed 0)\n")
    print("| sampler | steps | schedule | latent std |")
    print("|---|---:|---|---:|")
    date = dates(k).expand(32, k, 4)
    for name, steps, schedule, extra in [] if args.skip_samplers else SAMPLERS:
        sampler = create_sampler(
            name, model.denoiser, steps=steps, schedule=create_schedule(schedule), **extra
        )
        with torch.no_grad():
            z = sampler.sample((32, k, *shape), seed=0, date=date)
        label = name + (f" ({extra['corrections']} corr.)" if extra else "")
        print(f"| {label} | {steps} | {schedule} | {z.std().item():.3f} |", flush=True)
    hours = args.hours
    print(f"\n2. {hours}-hour trajectory, 8 samples, LMS 32 steps (loglogit)\n")
    print("| stride | fold | latent std, all frames | middle 12 frames |")
    print("|---:|---|---:|---:|")
    for stride, fold in folds(k):
        length = padded_length(hours, k, stride)
        traj = TrajectoryDenoiser(
            WindowPrior(model, length, stride), k, stride, mode=fold, pass_window_index=True
        )
        sampler = create_sampler("lms", traj, steps=32, schedule=create_schedule("loglogit"))
        with torch.no_grad():
            z = sampler.sample((8, length, *shape), seed=0)[:, :hours]
        middle = z[:, hours // 2 - 6 : hours // 2 + 6].std().item()
        print(f"| {stride} | {fold} | {z.std().item():.3f} | {middle:.3f} |", flush=True)


if __name__ == "__main__":
    main()
