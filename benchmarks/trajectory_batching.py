"""Batched windows versus one window at a time: one MMPS + PC posterior draw of a trajectory.

A 168-frame latent trajectory (frames of 8 x 16 x 4) is covered by windows of K = 24 frames
with stride S = 12 (13 windows). The window denoiser is the EDM-preconditioned wrapper of a
small attention backbone written here (patches of 4 x 2 x 2 giving 192 tokens of width 64, 2
pre-norm blocks). Each frame observes a random 5% of its latent values (a linear mask, variance
0.01), so the windows have different numbers of observations (padded inside the guidance). One
posterior draw is PC (32 steps, 2 corrections, delta 0.1) with MMPS (2 GMRES iterations): 96
guided calls per window. Both ways run side by side from the same seed, in one process,
alternately ``--repeat`` times (denormals flushed, as :func:`xappa.assimilate` does); the best
and the median times are reported. ``--sweep`` instead prints the speed-up over backbone widths
and token counts per window (``SWEEP``), from windows so small that per-call overhead dominates
to windows whose kernels are already as efficient as they get here. ``--kernels`` instead
prints each kernel's self CPU time per guided window call both ways (``torch.profiler``, 2 PC
steps): which kernels batching makes cheaper per window, and which it does not.

Run: .venv/bin/python benchmarks/trajectory_batching.py [--steps 32 --members 1 --threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn
from torch._functorch import config as functorch_config
from torch.utils.flop_counter import FlopCounterMode

from xappa.core.da.precision import flush_denormal
from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.diffusion.sampler import PCSampler
from xappa.core.diffusion.trajectory import TrajectoryDenoiser, unfold_windows, window_count
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import MaskOperator, Observation

LENGTH, WINDOW, STRIDE = 168, 24, 12
FRAME = (8, 16, 4)  # H, W, C
PATCH = (4, 2, 2)  # frames, H, W: 6 x 4 x 8 = 192 tokens per window
#: The --sweep grid: (width, patch) pairs, from overhead-bound to compute-bound windows.
SWEEP = [
    (16, (4, 4, 4)),
    (32, (4, 4, 4)),
    (32, (4, 2, 2)),
    (64, (4, 4, 4)),
    (64, (4, 2, 2)),
    (128, (4, 2, 2)),
    (64, (2, 2, 2)),
]


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.out(y.transpose(1, 2).flatten(2))
        return x + self.ffn(self.norm2(x))


class TinyVideoTransformer(nn.Module):
    """F(x (N, K, H, W, C), c_noise (N,)) -> (N, K, H, W, C)."""

    def __init__(
        self, dim: int = 64, blocks: int = 2, heads: int = 4, patch: tuple[int, int, int] = PATCH
    ) -> None:
        super().__init__()
        self.patch = pt, ph, pw = patch
        c = FRAME[2]
        self.inp = nn.Linear(pt * ph * pw * c, dim)
        self.noise = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.tokens = tokens = (WINDOW // pt) * (FRAME[0] // ph) * (FRAME[1] // pw)
        self.pos = nn.Parameter(torch.randn(tokens, dim) / dim**0.5)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(blocks))
        self.outp = nn.Linear(dim, pt * ph * pw * c)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        n, k, h, w, c = x.shape
        pt, ph, pw = self.patch
        z = x.reshape(n, k // pt, pt, h // ph, ph, w // pw, pw, c)
        z = z.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(n, -1, pt * ph * pw * c)
        z = self.inp(z) + self.pos + self.noise(c_noise[:, None] / 10)[:, None]
        for block in self.blocks:
            z = block(z)
        z = self.outp(z).reshape(n, k // pt, h // ph, w // pw, pt, ph, pw, c)
        return z.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(x.shape)


def observations(generator: torch.Generator) -> list[Observation]:
    mask = torch.rand(LENGTH, *FRAME, generator=generator) < 0.05
    truth = torch.randn(LENGTH, *FRAME, generator=generator)
    out = []
    for w_mask, w_truth in zip(
        unfold_windows(mask[None], WINDOW, STRIDE)[0],
        unfold_windows(truth[None], WINDOW, STRIDE)[0],
        strict=True,
    ):
        out.append(Observation(MaskOperator(w_mask), w_truth[w_mask], 0.01))
    return out


def guided_call_flops(prior: nn.Module, iterations: int) -> int:
    """Floating-point operations of one MMPS call on one window: a forward and the VJPs."""
    x0 = torch.randn(1, WINDOW, *FRAME, requires_grad=True)
    x = x0 * 1.0  # a non-leaf input, as inside the sampler
    with FlopCounterMode(display=False) as counter:
        y = prior(x, torch.ones(1))
        for _ in range(iterations):
            torch.autograd.grad(y, x, torch.randn_like(y), retain_graph=True)
    return counter.get_total_flops()


def matmul_rate(n: int = 2048, repeat: int = 5) -> float:
    """This machine's float32 matmul throughput, in FLOP/s (best of ``repeat``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def guided_denoiser(backbone: nn.Module, args: argparse.Namespace) -> MMPSDenoiser:
    """The MMPS window denoiser of the draw: the backbone, preconditioned, and the observations."""
    return MMPSDenoiser(
        PreconditionedDenoiser(backbone),
        observations(torch.Generator().manual_seed(1)),
        iterations=args.iterations,
    )


def side_by_side(
    backbone: nn.Module, args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, Tensor]]:
    """Time one posterior draw both ways, alternately ``args.repeat`` times, same seed."""
    guided = guided_denoiser(torch.compile(backbone) if args.compile else backbone, args)
    shape = (args.members, LENGTH, *FRAME)
    ways = {"one window at a time": 1, "batched": None}
    samples, times = {}, {name: [] for name in ways}
    with flush_denormal():
        for _ in range(args.repeat):
            for name, max_batch in ways.items():
                traj = TrajectoryDenoiser(
                    guided, WINDOW, STRIDE, max_batch=max_batch, pass_window_index=True
                )
                sampler = PCSampler(traj, steps=args.steps, corrections=2, delta=0.1)
                start = time.perf_counter()
                samples[name] = sampler.sample(shape, seed=0)
                times[name].append(time.perf_counter() - start)
    return times, samples


def kernel_split(backbone: nn.Module, args: argparse.Namespace, steps: int = 2) -> None:
    """Print each kernel's self CPU time per guided window call, both ways (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    guided = guided_denoiser(backbone, args)
    calls = steps * 3 * window_count(LENGTH, WINDOW, STRIDE) * args.members
    shape = (args.members, LENGTH, *FRAME)
    per_call = {}
    with flush_denormal():
        for name, max_batch in (("one at a time", 1), ("batched", None)):
            traj = TrajectoryDenoiser(
                guided, WINDOW, STRIDE, max_batch=max_batch, pass_window_index=True
            )
            sampler = PCSampler(traj, steps=steps, corrections=2, delta=0.1)
            sampler.sample(shape, seed=0)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                sampler.sample(shape, seed=0)
            per_call[name] = {e.key: e.self_cpu_time_total / calls for e in prof.key_averages()}
    one, batched = per_call["one at a time"], per_call["batched"]
    print(f"self CPU time per guided window call (us), PC {steps} steps under torch.profiler:")
    print("| kernel | one at a time | batched | one / batched |")
    print("|---|---:|---:|---:|")
    top = sorted(one.keys() | batched.keys(), key=lambda k: -max(one.get(k, 0), batched.get(k, 0)))
    for key in top[:12]:
        a, b = one.get(key, 0.0), batched.get(key, 0.0)
        print(
            f"| {key.removeprefix('aten::')} | {a:.0f} | {b:.0f} | {a / b if b else float('inf'):.2f} |"
        )
    a, b = sum(one.values()), sum(batched.values())
    print(f"| all | {a:.0f} | {b:.0f} | {a / b:.2f} |")


def sweep(args: argparse.Namespace) -> None:
    """Print the batched / one-at-a-time ratio over backbone widths and token counts."""
    n = window_count(LENGTH, WINDOW, STRIDE)
    calls = args.steps * 3 * n * args.members
    print(
        "| width | tokens per window | MFLOP per guided call | one at a time | batched | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for dim, patch in SWEEP:
        torch.manual_seed(0)
        backbone = TinyVideoTransformer(dim, heads=dim // 16, patch=patch)
        backbone = backbone.eval().requires_grad_(False)
        times, _ = side_by_side(backbone, args)
        work = guided_call_flops(PreconditionedDenoiser(backbone), args.iterations)
        one, batched = min(times["one window at a time"]), min(times["batched"])
        print(
            f"| {dim} | {backbone.tokens} | {work / 1e6:.1f} | {one:.2f} s | {batched:.2f} s "
            f"| {one / batched:.2f}x |",
            flush=True,
        )
    print(f"\n{calls} guided window calls per draw; best of {args.repeat} each way")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the backbone (first repeat compiles)"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="only the speed-up over backbone widths and token counts (table of SWEEP)",
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="only each kernel's time per guided window call, both ways (torch.profiler)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compile:
        # MMPS backpropagates through one graph several times (retain_graph=True), which
        # compiled backward functions refuse while they donate their buffers.
        functorch_config.donated_buffer = False
    if args.sweep:
        sweep(args)
        return
    torch.manual_seed(0)
    backbone = TinyVideoTransformer().eval().requires_grad_(False)
    if args.kernels:
        kernel_split(backbone, args)
        return
    n = window_count(LENGTH, WINDOW, STRIDE)
    sizes = [len(o) for o in observations(torch.Generator().manual_seed(1))]
    print(
        f"trajectory {LENGTH} frames of {FRAME}, K={WINDOW}, S={STRIDE}: {n} windows x "
        f"{args.members} member(s); {min(sizes)}-{max(sizes)} observations per window; "
        f"PC {args.steps} steps, 2 corrections, MMPS GMRES {args.iterations}; "
        f"{torch.get_num_threads()} threads" + (", torch.compile" if args.compile else "")
    )
    times, samples = side_by_side(backbone, args)
    for name, t in times.items():
        print(
            f"{name:>22}: best {min(t):6.2f} s, median {statistics.median(t):6.2f} s "
            f"({', '.join(f'{v:.2f}' for v in t)})"
        )
    calls = args.steps * 3 * n * args.members  # PC: a predictor and 2 corrections per step
    work = guided_call_flops(PreconditionedDenoiser(backbone), args.iterations) * calls
    peak = matmul_rate()
    print(
        f"work: {work / 1e9:.1f} GFLOP ({work / calls / 1e6:.1f} MFLOP per guided window call); "
        f"float32 matmul 2048 x 2048: {peak / 1e9:.1f} GFLOP/s"
    )
    for name, t in times.items():
        rate = work / min(t)
        print(f"{name:>22}: {rate / 1e9:5.1f} GFLOP/s = {rate / peak:.0%} of the matmul rate")
    bound = min(times["one window at a time"]) * peak / work
    print(
        f"bound: at the matmul rate a draw would take {work / peak:.2f} s, so no batching can "
        f"beat one window at a time by more than {bound:.1f}x"
    )
    one, batched = samples["one window at a time"], samples["batched"]
    best = min(times["one window at a time"]) / min(times["batched"])
    median = statistics.median(times["one window at a time"]) / statistics.median(times["batched"])
    diff = float((one - batched).abs().max() / one.abs().max())
    print(
        f"speed-up batched / one at a time: {best:.2f}x (best), {median:.2f}x (median); "
        f"max relative difference {diff:.1e}"
    )


if __name__ == "__main__":
    main()
