"""Batch reanalysis of long periods: windows as dask tasks, written into one zarr store.

:func:`reanalysis` runs :func:`xappa.assimilate` on overlapping windows of a long period,
in-process or on a dask ``distributed`` cluster, merges them by the central-frames rule
and writes them into a zarr store that a later run resumes; :func:`open_reanalysis` reads it
back, refusing (or warning about) windows an interrupted run did not write. See
:mod:`xappa.batch.reanalysis` for the store layout, seeds and fault tolerance, and
:mod:`xappa.batch.windows` for the window layout.
"""

from __future__ import annotations

__all__ = [
    "WindowLayout",
    "check_complete",
    "open_reanalysis",
    "plan_windows",
    "reanalysis",
    "task_seed",
]

from xappa.batch.reader import check_complete, open_reanalysis
from xappa.batch.reanalysis import reanalysis
from xappa.batch.tasks import task_seed
from xappa.batch.windows import WindowLayout, plan_windows
