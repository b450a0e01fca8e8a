"""Reading a batch reanalysis store, with a check that the times read were all written.

A store is created before any of its tasks runs, so an interrupted run leaves a store that
opens without error and holds NaN where windows were not written (and xarray's reductions
skip NaN by default, so means over it look plausible). The store records its completeness:
``window_complete(window, member_group)`` per task and the global attribute
``xappa_complete`` (1 once every task is complete). :func:`open_reanalysis` and
:func:`check_complete` (used by :func:`xappa.verify.evaluate.evaluate`) read them and refuse, or
warn about, data from windows that are not complete.
"""

from __future__ import annotations

__all__ = ["COMPLETE_CHOICES", "check_complete", "open_reanalysis"]

import os
import warnings

import numpy as np
import xarray as xr

from xappa.batch.store import COMPLETE_ATTR, KIND
from xappa.io.outputs import MARKER

COMPLETE_CHOICES = ("raise", "warn", "ignore")
"""What to do with an incomplete store: raise a ValueError, warn, or nothing."""


def _check_choice(complete: str) -> None:
    if complete not in COMPLETE_CHOICES:
        msg = f"complete must be one of {list(COMPLETE_CHOICES)}; found {complete!r}"
        raise ValueError(msg)


def _missing(ds: xr.Dataset) -> str | None:
    """Describe the incomplete windows whose times ``ds`` holds, or return None."""
    if "window_complete" not in ds.variables:
        return None if ds.attrs.get(COMPLETE_ATTR, 1) else "its tasks are not all complete"
    done = np.asarray(ds["window_complete"].values).reshape(ds.sizes["window"], -1).all(axis=1)
    windows = np.flatnonzero(~done)
    if windows.size and "time" in ds.coords and "owned_start" in ds.coords:
        times = ds["time"].values
        start, end = ds["owned_start"].values, ds["owned_end"].values
        windows = [k for k in windows if ((times >= start[k]) & (times <= end[k])).any()]
    if not len(windows):
        return None
    k = int(windows[0])
    first = ""
    if "owned_start" in ds.coords:
        t0, t1 = (str(ds[c].values[k])[:16] for c in ("owned_start", "owned_end"))
        first = f"; window {k} owns {t0} to {t1}"
    shown = [int(w) for w in windows[:8]] + (["..."] if len(windows) > 8 else [])
    return f"{len(windows)} of its {ds.sizes['window']} windows are not written ({shown}{first})"


def check_complete(ds: xr.Dataset, complete: str = "raise", *, name: str = "ds") -> None:
    """Check that a batch reanalysis (or a selection of it) holds only complete windows.

    A Dataset that is no batch reanalysis store passes. For a store, the windows checked are
    those that own one of the times ``ds`` holds, so a selection of complete windows passes.

    Parameters
    ----------
    ds : Dataset
        The data, e.g. opened with :func:`xarray.open_zarr` from a batch reanalysis store.
    complete : {"raise", "warn", "ignore"}
        What to do when windows are missing.
    name : str
        What ``ds`` is, for messages.

    Raises
    ------
    ValueError
        If ``complete="raise"`` and ``ds`` holds times of windows that were not written, or
        ``complete`` is not one of the choices.
    """
    _check_choice(complete)
    if complete == "ignore":
        return
    missing = _missing(ds)
    if missing is None:
        return
    msg = (
        f"{name} is an incomplete batch reanalysis: {missing}. Run the same reanalysis again"
        " to complete it, or pass complete='warn' or 'ignore' to use it as it is"
    )
    if complete == "raise":
        raise ValueError(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)


def open_reanalysis(path: str | os.PathLike, *, complete: str = "raise") -> xr.Dataset:
    """Open a batch reanalysis store lazily, checking that it is complete.

    Parameters
    ----------
    path : str or path-like
        The store written by :func:`xappa.batch.reanalysis`.
    complete : {"raise", "warn", "ignore"}
        What to do if some windows were not written (an interrupted run): raise a
        ValueError, warn, or open it as it is (NaN where not written).

    Returns
    -------
    Dataset
        The store (layout in :mod:`xappa.batch.reanalysis`), dask-backed.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is no batch reanalysis store, or is incomplete and
        ``complete="raise"``.

    Examples
    --------
    >>> import xappa.batch
    >>> ds = xappa.batch.open_reanalysis("ra.zarr", complete="warn")  # doctest: +SKIP
    """
    _check_choice(complete)
    if not os.path.exists(path):
        msg = f"path {str(path)!r} does not exist; expected a batch reanalysis store"
        raise FileNotFoundError(msg)
    ds = xr.open_zarr(path, consolidated=False)
    if ds.attrs.get(MARKER) != KIND:
        ds.close()
        msg = (
            f"path {str(path)!r} is no batch reanalysis store; expected the attribute"
            f" {MARKER}={KIND!r}, found {ds.attrs.get(MARKER)!r}"
        )
        raise ValueError(msg)
    check_complete(ds, complete, name=f"store {str(path)!r}")
    return ds
