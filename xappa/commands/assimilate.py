"""``xappa assimilate``: assimilate observations into an ensemble, written to zarr or netCDF.

Runs :func:`xappa.assimilate` on observations read from zarr stores or netCDF files
(gridded, or points with ``time``, ``latitude`` and ``longitude`` coordinates; several
sources together, e.g. stations and a swath). The window is by default the observations'
span. Everything is checked before the model runs, and the ensemble is written whole or not
at all to ``--out``: a new path, or an earlier xappa output with ``--overwrite`` (never data
that xappa did not write). Before sampling, the planned cost is printed, then the expected
time once the first step has run (``--no-progress`` for silence).
"""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse

from xappa.commands._args import (
    add_observation_arguments,
    add_run_arguments,
    obs_error_from_args,
    positive_int,
    sampling_from_args,
)
from xappa.commands._io import check_output, open_input, write_output

#: The ``xappa_output`` attribute of what this command writes.
KIND = "assimilation ensemble"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``assimilate`` to the sub-commands of the ``xappa`` parser."""
    from xappa.assimilation import MODES

    parser = subparsers.add_parser(
        "assimilate",
        help="assimilate observations (zarr or netCDF) into an ensemble (zarr or netCDF)",
        description=__doc__,
    )
    parser.add_argument(
        "--obs", nargs="+", required=True, help="observations (zarr stores or netCDF files)"
    )
    add_run_arguments(parser, KIND)
    parser.add_argument(
        "--members", type=positive_int, default=8, help="ensemble size (default 8)"
    )
    add_observation_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="reanalysis",
        help="smooth over the window, or filter causally (default reanalysis)",
    )
    parser.add_argument(
        "--max-batch", type=positive_int, help="most windows per network call (memory)"
    )
    parser.add_argument(
        "--no-check-values",
        action="store_true",
        help="accept values that contradict their units (e.g. degC labelled K)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xappa assimilate`` with the parsed ``args``; return 0 (errors raise)."""
    import xappa

    state = check_output(args.out, role="--out", overwrite=args.overwrite)
    errors = obs_error_from_args(args.obs_error)
    sampling = sampling_from_args(args)
    obs = [open_input(path, "--obs") for path in args.obs]
    model = xappa.load_model(
        args.model, device=args.device, allow_unverified=args.allow_unverified
    )
    ds = xappa.assimilate(
        obs,
        model=model,
        window=args.window,
        members=args.members,
        sampling=sampling,
        mode=args.mode,
        stride=args.stride,
        seed=args.seed,
        obs_error=errors,
        check_values=not args.no_check_values,
        max_batch=args.max_batch,
        progress=not args.no_progress,
    )
    path = write_output(ds, args.out, kind=KIND, state=state)
    times = ds.indexes["time"]
    print(
        f"wrote {path}: {args.mode} of {ds.sizes['member']} members at {len(times)} times,"
        f" {times[0]} to {times[-1]}; observations used: {ds.attrs['xappa_n_obs']}"
    )
    return 0
