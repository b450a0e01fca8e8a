"""How much of the prior's spread a sampler keeps: the default model's unconditioned samples.

The standardized latents of the truth have a standard deviation of about 1 (0.84-1.11 per
channel for fresh shallow-water trajectories). An ensemble that keeps less than that is
under-dispersed before any observation is assimilated. Two tables:

1. One window (K = 12 hourly frames) of the prior, 32 samples: the latent standard
   deviation for each sampler, step count and spacing of the noise levels (``schedule``).
2. A 48-hour trajectory composed of windows (8 samples, LMS 32 steps, logit spacing): the
   standard deviation over all frames and over the middle 12, for each stride and fold.
   Stride 12 (no overlap) samples independent windows: the window prior's own spread.

    python benchmarks/prior_spread.py --threads 2
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

import xappa
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import create_schedule
from xappa.core.diffusion.trajectory import TrajectoryDenoiser, padded_length

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
FOLDS = [
    (12, "symmetrical"),
    (6, "symmetrical"),
    (4, "symmetrical"),
    (6, "causal"),
    (6, "average"),
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
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = xappa.load_model(args.model)
    k, shape = model.window, model.latent_shape
    print(f"1. one window of {k} frames, 32 samples (seed 0)\n")
    print("| sampler | steps | schedule | latent std |")
    print("|---|---:|---|---:|")
    date = dates(k).expand(32, k, 4)
    for name, steps, schedule, extra in SAMPLERS:
        sampler = create_sampler(
            name, model.denoiser, steps=steps, schedule=create_schedule(schedule), **extra
        )
        with torch.no_grad():
            z = sampler.sample((32, k, *shape), seed=0, date=date)
        label = name + (f" ({extra['corrections']} corr.)" if extra else "")
        print(f"| {label} | {steps} | {schedule} | {z.std().item():.3f} |", flush=True)
    print("\n2. 48-hour trajectory, 8 samples, LMS 32 steps (loglogit)\n")
    print("| stride | fold | latent std, all frames | middle 12 frames |")
    print("|---:|---|---:|---:|")
    for stride, fold in FOLDS:
        length = padded_length(48, k, stride)
        traj = TrajectoryDenoiser(
            WindowPrior(model, length, stride), k, stride, mode=fold, pass_window_index=True
        )
        sampler = create_sampler("lms", traj, steps=32, schedule=create_schedule("loglogit"))
        with torch.no_grad():
            z = sampler.sample((8, length, *shape), seed=0)[:, :48]
        middle = z[:, 18:30].std().item()
        print(f"| {stride} | {fold} | {z.std().item():.3f} | {middle:.3f} |", flush=True)


if __name__ == "__main__":
    main()
