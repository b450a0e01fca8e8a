"""``xappa demo``: generate a small shallow-water dataset and summarize it (a few seconds).

This interim demo writes ``shallow_water.zarr`` under ``--out`` and prints its dimensions,
variables, ranges and peak wind. A full assimilation demo will replace it.
"""

from __future__ import annotations

__all__ = ["register", "run", "summary"]

import argparse
import time
from pathlib import Path

import xarray as xr


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    parser = subparsers.add_parser(
        "demo", help="generate and summarize a small shallow-water dataset", description=__doc__
    )
    parser.add_argument(
        "--out", default="xappa-output", help="output directory (default ./xappa-output)"
    )
    parser.add_argument("--trajectories", type=int, default=2, help="trajectories (default 2)")
    parser.add_argument("--days", type=float, default=3.0, help="days stored (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def summary(ds: xr.Dataset, path: str | Path | None = None) -> str:
    """Return a readable summary of a shallow-water testbed dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        The output of :func:`xappa.testbeds.shallow_water.simulate`.
    path : str or pathlib.Path, optional
        Where the dataset was written.

    Returns
    -------
    str
        Several lines: dimensions, time span, variables with units and ranges, diagnostics.
    """
    from xappa.testbeds.shallow_water import diagnose

    stats = diagnose(ds)
    times = ds["time"].values
    lat, lon = ds["latitude"].values, ds["longitude"].values
    grid = f"{lat.size} x {lon.size}, latitude {lat[0]:g} to {lat[-1]:g}"
    grid += f", longitude {lon[0]:g} to {lon[-1]:g}"
    lags = f"{stats['lag1h_correlation']:.3f} / {stats['lag24h_correlation']:.3f}"
    lines = [
        "xappa shallow-water testbed",
        "  dims:       " + ", ".join(f"{dim}={n}" for dim, n in ds.sizes.items()),
        f"  time:       {str(times[0])[:16]} to {str(times[-1])[:16]}, hourly",
        f"  grid:       {grid}",
        "  variables:",
    ]
    for name, var in ds.data_vars.items():
        lo, hi = float(var.min()), float(var.max())
        lines.append(f"    {name:<21} [{var.attrs.get('units', '?')}]  {lo:.4g} .. {hi:.4g}")
    lines += [
        f"  peak wind:  {stats['peak_wind']:.1f} m s-1",
        f"  lag-1 h / lag-24 h geopotential anomaly correlation: {lags}",
        f"  global-mean geopotential drift: {stats['mass_drift']:.1e} (relative)",
    ]
    if path is not None:
        lines.append(f"  written to: {path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``xappa demo``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    int
        0 on success.
    """
    from xappa.testbeds.shallow_water import simulate, write_zarr

    tic = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "shallow_water.zarr"
    ds = simulate(args.trajectories, args.days, spinup_days=2.0, seed=args.seed)
    write_zarr(ds, path, overwrite=True)
    print(summary(ds, path.resolve()))
    print(f"done in {time.perf_counter() - tic:.1f} s")
    return 0
