"""``xappa forecast``: forecast an ensemble by lead time, written to zarr or netCDF.

Runs :func:`xappa.forecast`. From states or an analysis (``--initial``, e.g. ERA5 or the
output of ``xappa assimilate``; each member of an analysis continues its own state), the
forecast is autoregressive and starts at each ``--init-time`` (default: the last time of
``--initial``). From observations (``--obs``), it is Appa's all-at-once forecast, which starts
at the end of the observation window. The output has WeatherBench 2's layout: ``time`` is
the initial time and ``prediction_timedelta`` the lead. It is written whole or not at all to
``--out``: a new path, or an earlier xappa output with ``--overwrite`` (never data that xappa
did not write).
"""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse

from xappa.commands._args import (
    add_observation_arguments,
    add_run_arguments,
    duration,
    obs_error_from_args,
    positive_int,
    sampling_from_args,
    timestamp,
)
from xappa.commands._io import check_output, open_input, write_output

#: The ``xappa_output`` attribute of what this command writes.
KIND = "forecast ensemble"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``forecast`` to the sub-commands of the ``xappa`` parser."""
    parser = subparsers.add_parser(
        "forecast",
        help="forecast an ensemble by lead time from states, an analysis or observations",
        description=__doc__,
    )
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--initial",
        help="states or an analysis ensemble to start from (zarr or netCDF): autoregressive",
    )
    start.add_argument(
        "--obs", nargs="+", help="observations (zarr or netCDF): all-at-once forecast"
    )
    add_run_arguments(parser, KIND)
    parser.add_argument(
        "--lead", type=duration, default="3D", help="longest lead time (default 3D)"
    )
    parser.add_argument(
        "--members",
        type=positive_int,
        help="ensemble size (default: the member count of an --initial analysis, else 8)",
    )
    parser.add_argument(
        "--init-time",
        type=timestamp,
        action="append",
        dest="init_times",
        help="--initial: an initial time (repeatable; default: its last time)",
    )
    parser.add_argument(
        "--context",
        type=positive_int,
        default=2,
        help="--initial: frames that condition the forecast (default 2)",
    )
    add_observation_arguments(parser, only="--obs: ")
    parser.set_defaults(func=run)


def _refuse(args: argparse.Namespace, flags: dict[str, str], source: str) -> None:
    """Refuse options that do not apply to the forecast ``source`` asks for."""
    given = [flag for flag, dest in flags.items() if getattr(args, dest) is not None]
    if given:
        msg = f"{', '.join(given)} apply only without {source}; found {source} and {given}"
        raise ValueError(msg)


def run(args: argparse.Namespace) -> int:
    """Run ``xappa forecast`` with the parsed ``args``; return 0 (errors raise)."""
    import xappa

    state = check_output(args.out, role="--out", overwrite=args.overwrite)
    sampling = sampling_from_args(args)
    common = {"lead": args.lead, "sampling": sampling, "stride": args.stride, "seed": args.seed}
    if args.initial is not None:
        _refuse(args, {"--window": "window", "--obs-error": "obs_error"}, "--obs")
        initial = open_input(args.initial, "--initial")
        members = args.members or initial.sizes.get("member", 8)
        options = {"init_times": args.init_times, "context": args.context}
        method = "autoregressive"
    else:
        _refuse(args, {"--init-time": "init_times"}, "--initial")
        initial = [open_input(path, "--obs") for path in args.obs]
        members = args.members or 8
        options = {"window": args.window, "obs_error": obs_error_from_args(args.obs_error)}
        method = "all-at-once"
    model = xappa.load_model(
        args.model, device=args.device, allow_unverified=args.allow_unverified
    )
    ds = xappa.forecast(
        initial,
        model=model,
        members=members,
        method=method,
        progress=not args.no_progress,
        **common,
        **options,
    )
    path = write_output(ds, args.out, kind=KIND, state=state)
    inits = ds.indexes["time"]
    print(
        f"wrote {path}: {method} forecast of {ds.sizes['member']} members from"
        f" {len(inits)} initial time(s) ({inits[0]} to {inits[-1]}),"
        f" {ds.sizes['prediction_timedelta']} leads up to {args.lead}"
    )
    return 0
