"""Do conditioned windows follow the learned dynamics? Lorenz-96, one window, exact first frame.

The default Lorenz-96 prior (``benchmarks/train_lorenz96.py``, K = 10) draws one window
conditioned on its first frame only, observed almost exactly (variance 1e-4 in standardized
units, as a latent full state), for ``--starts`` held-out starts x ``--members`` members,
through the engine (:func:`xappa.core.da.smooth`). Reported, in model units:

* the ensemble-mean error by lead 1..K-1 (RMSE over sites, averaged over starts);
* the samples' one-step dynamical residual ``x[k+1] - rk4_step(x[k])`` (RMS), next to the
  residual of unconditioned prior samples drawn with the same settings;
* references from the true model: the RK4 integration of the observed first frame, and a
  true-model ensemble started with an error of standard deviation 0.5 per site (the error
  of its ensemble mean, and of its members).

Usage::

    python benchmarks/conditioned_dynamics.py --prior /tmp/l96/prior
    python benchmarks/conditioned_dynamics.py --prior /tmp/l96/prior --iterations 1 2 6 20
    python benchmarks/conditioned_dynamics.py --prior /tmp/l96/prior --iterations 6 20 --no-psd-floor
    python benchmarks/conditioned_dynamics.py --prior /tmp/l96/prior --preset default appa fast accurate
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import torch

from xappa.core.da import PRESETS, DenseObservations, SamplingConfig, smooth
from xappa.testbeds import lorenz96 as l96
from xappa.testbeds.lorenz96_prior import load_lorenz96_prior

STD = l96.CLIMATOLOGY_STD


def residual(x: torch.Tensor) -> float:
    """RMS of ``x[k+1] - rk4_step(x[k])`` in model units; x (..., K, N) in model units."""
    return float((x[..., 1:, :] - l96.rk4_step(x[..., :-1, :])).square().mean().sqrt())


def lead_error(ens: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Ensemble-mean RMSE by frame; ens (E, M, K, N), truth (E, K, N), model units."""
    return (ens.mean(1) - truth).square().mean(-1).sqrt().mean(0).tolist()


def diagnose(denoiser, truth_z: torch.Tensor, sigmas=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0)) -> None:
    """Print the Tweedie covariance sigma^2 J of the window denoiser at x = truth + sigma eps:
    the asymmetry |J - J^T| / |J| and the extreme eigenvalues of the symmetric part of its
    first-frame block, A sigma^2 J A^T (the MMPS system without the noise)."""
    k, n = truth_z.shape[1:]
    gen = torch.Generator().manual_seed(0)
    print("| sigma | asymmetry | frame-0 block: min eigenvalue | max eigenvalue |")
    print("|---:|---:|---:|---:|")
    for sigma in sigmas:
        x_t = truth_z[0] + sigma * torch.randn(k, n, generator=gen)
        level = torch.tensor([sigma])
        jac = torch.autograd.functional.jacobian(
            lambda v, level=level: denoiser(v.reshape(1, k, n), level).reshape(-1),
            x_t.reshape(-1),
        ).double()
        block = sigma**2 * jac[:n, :n]
        lam = torch.linalg.eigvalsh((block + block.T) / 2)
        asym = float((jac - jac.T).norm() / jac.norm())
        print(f"| {sigma:g} | {asym:.2f} | {float(lam[0]):.1e} | {float(lam[-1]):.1e} |")


def disable_psd_floor() -> None:
    """Make MMPS call its solvers without the psd_floor safeguard (diagnostic only)."""
    from xappa.core.guidance import mmps

    for name, solve in list(mmps._SOLVERS.items()):
        mmps._SOLVERS[name] = lambda *a, _solve=solve, psd_floor=None, **k: _solve(*a, **k)


def run(denoiser, config: SamplingConfig, args, truth_z, truth):
    e, k, n = truth_z.shape
    mask = torch.zeros(k, n, dtype=torch.bool)
    mask[0] = True
    gen = torch.Generator().manual_seed(args.seed + 1)
    noise = torch.randn(e, n, generator=gen).to(truth_z.dtype)
    observed = truth_z[:, 0] + args.variance**0.5 * noise
    obs = []
    for i in range(e):
        values = torch.zeros(k, n, dtype=truth_z.dtype)
        values[0] = observed[i]
        obs.append(DenseObservations(values, mask, args.variance))
    tic = time.perf_counter()
    z = smooth(
        denoiser,
        obs,
        members=args.members,
        length=k,
        frame=(n,),
        window=k,
        stride=k,
        config=config,
        seed=args.seed,
        dtype=truth_z.dtype,
    )
    seconds = time.perf_counter() - tic
    x = l96.unstandardize(z.double())
    prior = smooth(
        denoiser,
        obs,
        members=args.members,
        length=k,
        frame=(n,),
        window=k,
        stride=k,
        config=config.replace(guidance=None),
        seed=args.seed,
        dtype=truth_z.dtype,
    )
    return {
        "settings": dataclasses.asdict(config),
        "denoiser_calls": config.evaluations,
        "lead_error": lead_error(x, truth),
        "spread": x.var(1).mean(-1).sqrt().mean(0).tolist(),
        "residual": residual(x),
        "unconditioned_residual": residual(l96.unstandardize(prior.double())),
        "seconds": seconds,
    }, observed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True, help="directory from train_lorenz96.py")
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--variance", type=float, default=1e-4, help="standardized units")
    parser.add_argument(
        "--iterations",
        type=int,
        nargs="*",
        default=None,
        help="MMPS iteration counts to sweep (default: the library's)",
    )
    parser.add_argument(
        "--preset",
        nargs="*",
        default=None,
        help="presets to run instead of SamplingConfig() ('default' names SamplingConfig())",
    )
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--corrections", type=int, default=None)
    parser.add_argument("--delta", type=float, default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--diagnose", action="store_true", help="print the Jacobian table")
    parser.add_argument(
        "--no-psd-floor",
        action="store_true",
        help="switch MMPS's solver safeguard off (psd_floor=None), to measure what it does",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_psd_floor:
        disable_psd_floor()
    dtype = getattr(torch, args.dtype)
    denoiser = load_lorenz96_prior(args.prior).to(dtype)
    k = denoiser.backbone.frames
    truth = torch.from_numpy(
        l96.simulate(steps=k, trajectories=args.starts, seed=77_000 + args.seed).x.values
    )  # held out: training uses seeds 1 and 1001
    truth_z = l96.standardize(truth).to(dtype)
    if args.diagnose:
        diagnose(denoiser, truth_z)
        return
    changes = {
        f: getattr(args, f)
        for f in ("sampler", "steps", "corrections", "delta", "schedule")
        if getattr(args, f) is not None
    }
    named = {"default": SamplingConfig(), **PRESETS}
    bases = [named[p] for p in args.preset] if args.preset else [SamplingConfig()]
    results = []
    observed = None
    for base in bases:
        base = base.replace(**changes)
        for it in args.iterations or [base.iterations]:
            result, observed = run(denoiser, base.replace(iterations=it), args, truth_z, truth)
            results.append(result)
    # True-model references from the same starts.
    x0 = l96.unstandardize(observed.double())
    model_run = l96.integrate(x0, k - 1)  # (E, K, N)
    gen = torch.Generator().manual_seed(args.seed + 2)
    start = truth[:, None, 0] + 0.5 * torch.randn(
        args.starts, args.members, truth.shape[-1], generator=gen, dtype=torch.float64
    )
    model_ens = l96.integrate(start, k - 1)
    refs = {
        "true_model_from_observed_frame": (model_run - truth)
        .square()
        .mean(-1)
        .sqrt()
        .mean(0)
        .tolist(),
        "true_model_ensemble_mean_error_0.5": lead_error(model_ens, truth),
        "true_model_member_error_0.5": (model_ens - truth[:, None])
        .square()
        .mean(-1)
        .sqrt()
        .mean((0, 1))
        .tolist(),
        "typical_one_step_change": float((truth[:, 1:] - truth[:, :-1]).square().mean().sqrt()),
    }
    print(
        f"Lorenz-96, K = {k}: first frame observed (variance {args.variance:g}, standardized)"
        f", {args.starts} starts x {args.members} members; {platform.machine()},"
        f" load {os.getloadavg()[0]:.1f}"
    )
    print(
        "| settings | calls | "
        + " | ".join(f"lead {i}" for i in range(1, k))
        + " | residual | unconditioned | s |"
    )
    print("|---|---:|" + "---:|" * (k - 1) + "---:|---:|---:|")
    for r in results:
        s = r["settings"]
        below = "" if s["correct_below"] is None else f" (sigma<={s['correct_below']:g})"
        name = (
            f"{s['sampler']} {s['steps']}"
            + (f"x{s['corrections']}{below} d{s['delta']:g}" if s["sampler"] == "pc" else "")
            + f" {s['schedule']}, {s['solver']}"
            f" {s['iterations']}"
        )
        print(
            f"| {name} | {r['denoiser_calls']} | "
            + " | ".join(f"{v:.2f}" for v in r["lead_error"][1:])
            + f" | {r['residual']:.3f} | {r['unconditioned_residual']:.3f}"
            f" | {r['seconds']:.0f} |"
        )
    for name, values in refs.items():
        if isinstance(values, list):
            print(f"| {name} | | " + " | ".join(f"{v:.2f}" for v in values[1:]) + " | | | |")
    print(f"typical one-step change: {refs['typical_one_step_change']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "references": refs, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
