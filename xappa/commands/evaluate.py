"""``xappa evaluate``: score a prediction against a truth and write a report.

The report (metrics.nc, PNG plots, summary.md) goes into ``--out``: a new or empty
directory, or an earlier report, replaced with ``--overwrite``. A batch reanalysis store
with windows an interrupted run did not write is refused (see ``--complete``).
"""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse

from xappa.batch.reader import COMPLETE_CHOICES
from xappa.commands._io import open_input
from xappa.verify.metrics import REGIONS

_HINT = "pass --overwrite"


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
    parser.add_argument("--out", required=True, help="output directory (new, or a report)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the earlier report in --out"
    )
    parser.add_argument("--climatology", help="climatology for the ACC (zarr or netCDF)")
    parser.add_argument(
        "--region",
        action="append",
        dest="regions",
        choices=REGIONS,
        help="region to score (repeatable; default: global)",
    )
    parser.add_argument("--member-dim", default="member", help="ensemble dimension name")
    parser.add_argument(
        "--complete",
        choices=COMPLETE_CHOICES,
        default="raise",
        help="what to do with an incomplete batch reanalysis: refuse it (raise, the"
        " default), warn, or ignore",
    )
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
    from xappa.batch import check_complete
    from xappa.io.outputs import check_target
    from xappa.verify.evaluate import evaluate, write_report

    check_target(args.out, role="--out", overwrite=args.overwrite, hint=_HINT)
    inputs = {"--pred": args.pred, "--truth": args.truth, "--climatology": args.climatology}
    opened = {}
    for role, path in inputs.items():
        if path is not None:
            opened[role] = open_input(path, role)
            check_complete(opened[role], args.complete, name=f"{role} {path!r}")
    pred, truth = opened["--pred"], opened["--truth"]
    metrics = evaluate(
        pred,
        truth,
        climatology=opened.get("--climatology"),
        regions=args.regions or ["global"],
        member_dim=args.member_dim,
        complete="ignore",  # checked above, with the paths in the message
    )
    summary = write_report(
        metrics,
        args.out,
        pred=pred,
        truth=truth,
        member_dim=args.member_dim,
        overwrite=args.overwrite,
    )
    print(f"wrote {summary}")
    return 0
