"""``xappa testbed``: generate testbed data with a known truth and write it to zarr.

Each testbed is a nested sub-command (``xappa testbed shallow-water ...``); add one by
writing a ``_register_<name>(testbeds)`` function and listing it in :data:`TESTBEDS`.
"""

from __future__ import annotations

__all__ = ["TESTBEDS", "register", "run_shallow_water"]

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from xappa.commands._args import nonnegative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``testbed`` sub-command and its testbeds.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    parser = subparsers.add_parser(
        "testbed",
        help="generate testbed data with a known truth",
        description="Generate testbed data with a known truth and write it to zarr.",
    )
    testbeds = parser.add_subparsers(dest="testbed", metavar="TESTBED")
    for add in TESTBEDS:
        add(testbeds)
    parser.set_defaults(func=lambda args: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    """Print the help of ``xappa testbed`` when no testbed is named."""
    parser.print_help()
    return 2


def _register_shallow_water(testbeds: argparse._SubParsersAction) -> None:
    """Add ``xappa testbed shallow-water``."""
    from xappa.testbeds import shallow_water

    parser = testbeds.add_parser(
        "shallow-water",
        help="hourly shallow-water trajectories on the sphere",
        description=(shallow_water.__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument(
        "--days", type=positive_float, default=10.0, help="days stored (default 10)"
    )
    parser.add_argument(
        "--trajectories",
        type=positive_int,
        default=4,
        help="independent trajectories (default 4)",
    )
    parser.add_argument("--out", required=True, help="zarr store to write, e.g. swe.zarr")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--nlat", type=positive_int, default=32, help="latitudes (default 32)")
    parser.add_argument("--nlon", type=positive_int, default=64, help="longitudes (default 64)")
    parser.add_argument(
        "--spinup-days", type=float, default=5.0, help="days discarded first (default 5)"
    )
    parser.add_argument("--start", default="2000-01-01", help="first date (default 2000-01-01)")
    parser.add_argument("--no-forcing", action="store_true", help="run the unforced solver")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing store (one xappa wrote)"
    )
    parser.set_defaults(func=run_shallow_water)


#: Trajectories simulated, then appended to the store, at a time (bounds the memory).
BLOCK = 8

#: The functions that add one testbed each to ``xappa testbed``.
TESTBEDS: list[Callable[[argparse._SubParsersAction], None]] = [_register_shallow_water]


def run_shallow_water(args: argparse.Namespace) -> int:
    """Run ``xappa testbed shallow-water``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    int
        0 on success.
    """
    from xappa.io.outputs import MARKER, check_target
    from xappa.options import set_options
    from xappa.testbeds.shallow_water import DEFAULT_FORCING, simulate, write_zarr

    out = Path(args.out)
    check_target(out, role="--out", overwrite=args.overwrite, hint="pass --overwrite")
    tic = time.perf_counter()
    for first in range(0, args.trajectories, BLOCK):
        count = min(BLOCK, args.trajectories - first)
        with set_options(progress=False):
            ds = simulate(
                count,
                args.days,
                nlat=args.nlat,
                nlon=args.nlon,
                spinup_days=args.spinup_days,
                seed=args.seed,
                start=args.start,
                forcing=None if args.no_forcing else DEFAULT_FORCING,
                first_trajectory=first,
            )
        ds.attrs[MARKER] = "shallow-water testbed"
        write_zarr(ds, out, overwrite=args.overwrite and first == 0, append=first > 0)
        done = first + count
        print(f"trajectories {done}/{args.trajectories} ({time.perf_counter() - tic:.1f} s)")
    sizes = ", ".join(f"{dim}={n}" for dim, n in {**ds.sizes, "trajectory": done}.items())
    print(f"wrote {out} ({sizes}) in {time.perf_counter() - tic:.1f} s")
    return 0
