"""``xappa evaluate``: score a prediction against a truth and write a report."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse

from xappa.commands._io import open_input


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="score a prediction against a truth; write metrics.nc, plots and summary.md",
        description=__doc__,
    )
    parser.add_argument("--pred", required=True, help="prediction (zarr or netCDF)")
    parser.add_argument("--truth", required=True, help="truth, e.g. ERA5 (zarr or netCDF)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--climatology", help="climatology for the ACC (zarr or netCDF)")
    parser.add_argument(
        "--region",
        action="append",
        dest="regions",
        help="region to score (repeatable; default: global), e.g. tropics, land",
    )
    parser.add_argument("--member-dim", default="member", help="ensemble dimension name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xappa evaluate``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    int
        0 on success.
    """
    from xappa.evaluation import evaluate, write_report

    pred, truth = open_input(args.pred, "--pred"), open_input(args.truth, "--truth")
    climatology = open_input(args.climatology, "--climatology") if args.climatology else None
    metrics = evaluate(
        pred,
        truth,
        climatology=climatology,
        regions=args.regions or ["global"],
        member_dim=args.member_dim,
    )
    summary = write_report(metrics, args.out, pred=pred, truth=truth, member_dim=args.member_dim)
    print(f"wrote {summary}")
    return 0
