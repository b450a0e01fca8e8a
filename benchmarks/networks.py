"""Time the networks: forward and forward+backward of the autoencoder and ViDiT.

Usage::

    .venv/bin/python benchmarks/networks.py              # tiny networks (seconds)
    .venv/bin/python benchmarks/networks.py --published  # + cae_f32 forward, batch 1 (minutes)

Published-size ViDiT (vit_large, 12,972 tokens, 16 blocks of full attention; about 16 TFLOP
per forward) is timed only on a GPU. GPU figures are printed when CUDA is available.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.guidance.linearization import Linearization
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config, vidit_config
from xappa.core.nn.layers import count_parameters
from xappa.core.nn.vidit import ViDiT


def timeit(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median wall time of ``fn``; one warm-up call first unless ``repeat`` is 1."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if repeat > 1:
        fn()  # warm-up
        sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(label: str, seconds: float | None, note: str = "") -> None:
    figure = "not measured" if seconds is None else f"{seconds * 1e3:10.1f} ms"
    print(f"  {label:<44} {figure:>14} {note}")


def bench_autoencoder(name: str, batch: int, device: torch.device, repeat: int, backward: bool):
    torch.manual_seed(0)
    ae = ConvAutoencoder.from_config(autoencoder_config(name)).to(device)
    cfg = ae.config
    print(
        f"autoencoder {name}: {count_parameters(ae) / 1e6:.2f} M parameters, "
        f"x {(batch, cfg.in_channels, *cfg.shape)} -> z {(batch, *ae.latent_shape)}"
    )
    x = torch.randn(batch, cfg.in_channels, *cfg.shape, device=device)
    z = torch.randn(batch, *ae.latent_shape, device=device)
    with torch.no_grad():
        report("encode forward", timeit(lambda: ae.encode(x), device, repeat))
        report("decode forward", timeit(lambda: ae.decode(z), device, repeat))
    if backward:

        def step() -> None:
            ae.zero_grad(set_to_none=True)
            _, y = ae(x)
            (y - x).square().mean().backward()

        report("encode+decode forward+backward", timeit(step, device, repeat))
        v = torch.randn_like(z)
        report(
            "decode jvp (torch.func)",
            timeit(lambda: torch.func.jvp(ae.decode, (z,), (v,)), device, repeat),
        )
        # The tangent product as MMPS takes it on a CPU: reverse mode through the graph of
        # the first adjoint product (xappa.core.guidance.linearization), primal not recomputed.
        ae.requires_grad_(False)
        z_in = z.clone().requires_grad_(True)
        y = ae.decode(z_in * 1.0)
        lin = Linearization(ae.decode, False, z_in, z_in, y, mode="reverse")
        lin.adjoint(torch.randn_like(y), denoiser=False)
        report(
            "decode tangent (reverse mode, linearised)",
            timeit(lambda: lin.tangent(v), device, repeat),
        )


def bench_vidit(name: str, batch: int, device: torch.device, repeat: int):
    torch.manual_seed(0)
    net = ViDiT(vidit_config(name)).to(device)
    den = PreconditionedDenoiser(net)
    cfg = net.config
    print(
        f"ViDiT {name}: {count_parameters(net) / 1e6:.2f} M parameters, "
        f"window {(batch, cfg.blanket_size, cfg.in_channels, *cfg.shape)}, "
        f"{cfg.tokens} tokens"
    )
    x = torch.randn(batch, cfg.blanket_size, cfg.in_channels, *cfg.shape, device=device)
    date = torch.tensor([[[2021, 6, 1, h % 24] for h in range(cfg.blanket_size)]] * batch)
    date = date.to(device)
    sigma = torch.full((batch,), 1.0, device=device)
    with torch.no_grad():
        report("denoiser forward", timeit(lambda: den(x, sigma, date=date), device, repeat))

    def step() -> None:
        net.zero_grad(set_to_none=True)
        (den(x, sigma, date=date) - x).square().mean().backward()

    report("denoiser forward+backward", timeit(step, device, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--published",
        action="store_true",
        help="also time the published-size autoencoder (batch 1, slow on CPU)",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPU load average (1, 5, 15 min): {load}; figures are noisy on a shared machine")

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        print(f"== {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        bench_autoencoder("tiny", 8, device, args.repeat, backward=True)
        bench_vidit("tiny", 8, device, args.repeat)
        if device.type == "cuda":
            bench_autoencoder("cae_f32", 1, device, args.repeat, backward=True)
            bench_vidit("vit_large", 1, device, args.repeat)
        elif args.published:
            bench_autoencoder("cae_f32", 1, device, 1, backward=False)
            print("ViDiT vit_large: 12972 tokens x 16 full-attention blocks")
            report("denoiser forward", None, "(too slow for 2 CPU cores)")
        else:
            print("published sizes: not measured on CPU (pass --published for the autoencoder)")
    if not torch.cuda.is_available():
        print("== cuda: not available on this machine (no GPU lent): GPU figures not measured")


if __name__ == "__main__":
    main()
