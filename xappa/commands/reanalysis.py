"""``xappa reanalysis``: reanalyse a long period window by window into a zarr store.

Runs :func:`xappa.batch.reanalysis` in-process, on a new local cluster (``--workers N``) or
on a running dask scheduler (``--scheduler ADDRESS``). Run the same command again to resume
an interrupted run: complete windows are skipped. ``--overwrite`` replaces a store that
xappa wrote, never anything else.
"""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from xappa.commands._args import (
    add_device_argument,
    add_sampling_arguments,
    nonnegative_int,
    positive_int,
    sampling_from_args,
)
from xappa.commands._io import open_input


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reanalysis`` sub-command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The sub-parsers of the ``xappa`` parser.
    """
    parser = subparsers.add_parser(
        "reanalysis",
        help="reanalyse a long period window by window into a zarr store (resumable)",
        description=__doc__,
    )
    parser.add_argument(
        "--obs", nargs="+", required=True, help="observations (zarr stores or netCDF files)"
    )
    parser.add_argument("--model", required=True, help="model name or path")
    parser.add_argument("--start", required=True, help="first time, e.g. 2021-01-01T00")
    parser.add_argument("--end", required=True, help="last time (included)")
    parser.add_argument("--window", default="2D", help="window length (default 2D)")
    parser.add_argument("--overlap", default="12h", help="window overlap (default 12h)")
    parser.add_argument(
        "--members", type=positive_int, default=8, help="ensemble size (default 8)"
    )
    parser.add_argument(
        "--member-groups", type=positive_int, default=1, help="tasks per window (default 1)"
    )
    parser.add_argument("--out", required=True, help="zarr store to write or resume")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running dask scheduler")
    where.add_argument(
        "--workers", type=positive_int, help="start a local cluster of N worker processes"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="base seed (default 0)")
    add_sampling_arguments(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out (a store xappa wrote) instead of resuming it",
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """Yield a distributed client for ``--scheduler`` or ``--workers``, else None."""
    if args.scheduler is None and args.workers is None:
        yield None
        return
    flag = "--scheduler" if args.scheduler is not None else "--workers"
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        msg = (
            f"{flag} needs dask.distributed, which is not installed; install it with"
            " pip install 'xappa[distributed]'"
        )
        raise ImportError(msg) from err
    if args.scheduler is not None:
        with Client(args.scheduler) as client:
            yield client
        return
    cluster = LocalCluster(n_workers=args.workers, processes=True, threads_per_worker=1)
    with cluster, Client(cluster) as client:
        print(f"started a local cluster of {args.workers} worker processes")
        try:
            yield client
        finally:
            cluster.sync(_close_workers, cluster, WORKER_EXIT_TIMEOUT)


#: Seconds a local worker process may take to exit before it is killed. A worker that has
#: imported torch takes seconds to exit on a loaded machine (measured: 4-7 s at load average
#: 8 on 2 cores), beyond the 4 s that dask's own close allows it; then dask kills it, with
#: warnings ("Worker process still alive ... killing", leaked semaphores).
WORKER_EXIT_TIMEOUT = 60.0


async def _close_workers(cluster: Any, timeout: float) -> None:
    """Close the workers of a local cluster, each given ``timeout`` seconds to exit."""
    import asyncio

    await asyncio.gather(*(w.close(timeout=timeout) for w in list(cluster.workers.values())))


def run(args: argparse.Namespace) -> int:
    """Run ``xappa reanalysis``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    int
        0 on success.
    """
    from xappa.batch import reanalysis

    with _client(args) as client, contextlib.ExitStack() as stack:
        obs = [stack.enter_context(open_input(p, "--obs")) for p in args.obs]
        ds = reanalysis(
            obs,
            args.model,
            args.start,
            args.end,
            args.window,
            args.overlap,
            args.members,
            args.out,
            client,
            member_groups=args.member_groups,
            seed=args.seed,
            overwrite=args.overwrite,
            sampling=sampling_from_args(args),
            device=args.device,
        )
    computed, skipped = ds.attrs["xappa_computed_windows"], ds.attrs["xappa_skipped_windows"]
    print(
        f"wrote {args.out}: {len(computed)} window(s) computed, {len(skipped)} already complete"
        f" ({ds.sizes['time']} times, {ds.sizes['member']} members)"
    )
    ds.close()
    return 0
