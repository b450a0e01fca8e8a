"""The observations of one window: selected lazily on the driver, loaded on the worker.

The driver reads only the time coordinate of each observation Dataset and selects, without
loading any value, the observations of a window ``[t0, t1]``: those whose time is in
``(t0 - step / 2, t1 + step / 2]``, i.e. whose nearest model time (half-way times going to
the earlier one, as in :func:`xappa.observations.prepare_observations`) is in the window.
The worker loads them, drops the variables that are all NaN in this window (with their
ancillary variables) and the Datasets left without any variable. A window without any
observation is sampled from the prior (see :func:`prior_placeholder`).
"""

from __future__ import annotations

__all__ = [
    "as_datasets",
    "load_window_obs",
    "observed_names",
    "prior_placeholder",
    "select_window",
    "time_coordinates",
]

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xappa.observations.validate import find_point_coord, is_gridded, observed_variables
from xappa.state.coords import find_coord
from xappa.state.spec import StateSpec


def as_datasets(obs: xr.Dataset | Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """Return ``obs`` as a non-empty list of Datasets.

    Raises
    ------
    TypeError
        If ``obs`` is not a Dataset or a non-empty sequence of them.
    """
    datasets = [obs] if isinstance(obs, xr.Dataset) else list(obs)
    if not datasets or not all(isinstance(d, xr.Dataset) for d in datasets):
        msg = (
            "obs must be an xarray.Dataset or a non-empty sequence of them; found"
            f" {type(obs).__name__}"
        )
        raise TypeError(msg)
    return datasets


def observed_names(datasets: Sequence[xr.Dataset], spec: StateSpec) -> set[str]:
    """Return the observed (non-ancillary) variables of all Datasets, checked against ``spec``.

    Raises
    ------
    KeyError
        If a variable is not in the spec (and is no ancillary variable).
    ValueError
        If a Dataset has no variable.
    """
    names: set[str] = set()
    for d in datasets:
        names |= set(observed_variables(d, spec))
    return names


def _time_name(ds: xr.Dataset, i: int) -> str:
    if is_gridded(ds):
        try:
            return find_coord(ds, "time", name=f"obs[{i}]")
        except KeyError:
            pass
    try:
        return str(find_point_coord(ds, "time"))
    except KeyError as err:
        msg = f"obs[{i}] must have a time coordinate; found coordinates {list(ds.coords)}"
        raise KeyError(msg) from err


def time_coordinates(datasets: Sequence[xr.Dataset]) -> list[xr.DataArray]:
    """Load the time coordinate of each Dataset (its values only, as ``datetime64[ns]``).

    Parameters
    ----------
    datasets : sequence of Dataset
        The observations.

    Returns
    -------
    list of DataArray
        One time coordinate per Dataset, with its dimensions.

    Raises
    ------
    KeyError
        If a Dataset has no time coordinate.
    """
    out = []
    for i, d in enumerate(datasets):
        name = _time_name(d, i)
        coord = d[name].variable
        values = np.asarray(coord.values).astype("datetime64[ns]")
        out.append(xr.DataArray(values, dims=coord.dims, name=name))
    return out


def _as_index(mask: np.ndarray) -> slice | np.ndarray:
    """Return a slice when the selected positions are contiguous, else their indices."""
    index = np.flatnonzero(mask)
    if index.size and index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def select_window(
    datasets: Sequence[xr.Dataset],
    times: Sequence[xr.DataArray],
    t0: pd.Timestamp,
    t1: pd.Timestamp,
    step: pd.Timedelta,
) -> list[xr.Dataset]:
    """Select, lazily, the observations whose nearest model time is in ``[t0, t1]``.

    Parameters
    ----------
    datasets : sequence of Dataset
        The observations.
    times : sequence of DataArray
        Their time coordinates, from :func:`time_coordinates`.
    t0, t1 : Timestamp
        The first and last model times of the window.
    step : Timedelta
        The model time step.

    Returns
    -------
    list of Dataset
        The selected part of each Dataset with at least one time in the window. A time
        coordinate over several dimensions is cut to the smallest box holding the window's
        times; the observed values outside the window in that box become NaN.
    """
    lo = np.datetime64(t0 - step / 2, "ns")
    hi = np.datetime64(t1 + step / 2, "ns")
    out = []
    for d, t in zip(datasets, times, strict=True):
        mask = (t.values > lo) & (t.values <= hi)
        if not mask.any():
            continue
        if t.ndim == 0:
            out.append(d)
            continue
        box = {}
        for axis, dim in enumerate(t.dims):
            others = tuple(a for a in range(t.ndim) if a != axis)
            box[dim] = _as_index(mask.any(axis=others) if others else mask)
        part = d.isel(box)
        if t.ndim > 1:
            inside = xr.DataArray(mask, dims=t.dims).isel(box)
            for v in _observed(part):
                part[v] = part[v].where(inside)
        out.append(part)
    return out


def _ancillary(ds: xr.Dataset, names: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for v in names:
        out |= set(str(ds[v].attrs.get("ancillary_variables", "")).split())
    return out


def _observed(ds: xr.Dataset) -> list[str]:
    ancillary = _ancillary(ds, [str(v) for v in ds.data_vars])
    return [str(v) for v in ds.data_vars if str(v) not in ancillary]


def _drop_empty(ds: xr.Dataset) -> xr.Dataset | None:
    """Drop the observed variables without any finite value (and their ancillaries)."""
    observed = _observed(ds)
    empty = [v for v in observed if not bool(ds[v].notnull().any())]
    if not empty:
        return ds
    kept = [v for v in observed if v not in empty]
    if not kept:
        return None
    unused = _ancillary(ds, empty) - _ancillary(ds, kept) - set(kept)
    return ds.drop_vars([*empty, *(v for v in unused if v in ds.variables)])


def load_window_obs(datasets: Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """Load a window's observations and drop what holds no observed value.

    Dask-backed data are computed with the synchronous scheduler (inside a worker, without
    submitting tasks to the cluster).

    Parameters
    ----------
    datasets : sequence of Dataset
        The window's observations, from :func:`select_window`.

    Returns
    -------
    list of Dataset
        In-memory Datasets, each with at least one observed value; empty when the window
        has no observation.
    """
    import dask

    with dask.config.set(scheduler="synchronous"):
        loaded = [d.load() for d in datasets]
    return [d for d in map(_drop_empty, loaded) if d is not None]


def prior_placeholder(spec: StateSpec, mean: Any, time: pd.Timestamp) -> xr.Dataset:
    """Return one point observation at ``time``, valid for ``spec``, to sample the prior.

    :func:`xappa.assimilate` needs observations even with ``guidance=None``, where they are
    validated and counted but not used. This is the spec's first variable (first level) at
    its channel mean, at latitude 0 and longitude 0, in the spec's units.

    Parameters
    ----------
    spec : StateSpec
        The model state.
    mean : array-like
        The channel means, with shape ``(C,)``.
    time : Timestamp
        A time of the window.

    Returns
    -------
    Dataset
        The placeholder.
    """
    name = spec.variables[0]
    level = spec.levels[0] if name in spec.level_variables else None
    value = float(np.asarray(mean, dtype=np.float64)[spec.channel_index(name, level)])
    attrs = {"units": spec.units[name]} if name in spec.units else {}
    coords: dict[str, Any] = {
        "time": ("obs", [np.datetime64(time, "ns")]),
        "latitude": ("obs", [0.0], {"units": "degrees_north", "standard_name": "latitude"}),
        "longitude": ("obs", [0.0], {"units": "degrees_east", "standard_name": "longitude"}),
    }
    if level is not None:
        coords["level"] = ("obs", [float(level)], {"units": spec.level_units})
    return xr.Dataset({name: ("obs", [value], attrs)}, coords=coords)
