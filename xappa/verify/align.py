"""Match predictions with a truth dataset by time, latitude, longitude and level.

Predictions come with an optional ensemble dimension (``member``), a ``time`` dimension (the
valid time, or the initialisation time when there is a lead dimension) and optionally a
lead dimension (``lead`` or WB2's ``prediction_timedelta``). The truth is laid out as
WeatherBench 2's ERA5 (``time``, ``level`` in hPa, ``latitude`` 90 -> -90, ``longitude``
0 -> 360) or as a testbed trajectory. Either may use ``lat``/``lon`` names, any latitude
order and longitudes in [0, 360) or [-180, 180).
"""

from __future__ import annotations

__all__ = ["LEAD_DIMS", "align", "find_lead_dim", "normalize_grid"]

import warnings

import numpy as np
import xarray as xr

#: Names recognised as the lead-time dimension, in order of preference.
LEAD_DIMS = ("lead", "prediction_timedelta", "lead_time")

_RENAMES = {"lat": "latitude", "lon": "longitude"}
_DECIMALS = 6


def find_lead_dim(ds: xr.Dataset | xr.DataArray) -> str | None:
    """Return the name of the lead-time dimension of ``ds``, or None.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        A prediction.

    Returns
    -------
    str or None
        The first of :data:`LEAD_DIMS` that ``ds`` has as a dimension.
    """
    return next((d for d in LEAD_DIMS if d in ds.dims), None)


def normalize_grid(ds: xr.Dataset) -> xr.Dataset:
    """Rename ``lat``/``lon``, wrap longitudes to [0, 360) and sort them ascending.

    Latitude order is kept. The input is not modified.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with ``latitude``/``longitude`` (or ``lat``/``lon``) coordinates.

    Returns
    -------
    xarray.Dataset
        The dataset on longitudes in [0, 360), ascending.
    """
    ds = ds.rename({k: v for k, v in _RENAMES.items() if k in ds.dims and v not in ds.dims})
    for name in ("latitude", "longitude"):
        if name not in ds.dims:
            msg = f"dataset is missing dimension {name!r}; found {list(ds.dims)}"
            raise ValueError(msg)
    lon = np.round(np.mod(ds["longitude"].values.astype(np.float64), 360.0), _DECIMALS)
    ds = ds.assign_coords(longitude=np.where(lon >= 360.0, 0.0, lon))
    return ds.sortby("longitude")


def _overlap(name: str, pred: xr.Dataset, truth: xr.Dataset) -> np.ndarray:
    """Return the coordinate values of ``name`` shared by both, or raise."""
    p = pred[name].values
    t = truth[name].values
    if np.issubdtype(p.dtype, np.floating):
        p, t = np.round(p, _DECIMALS), np.round(t, _DECIMALS)
    common = np.intersect1d(p, t)
    if common.size == 0:
        msg = (
            f"pred and truth share no {name!r} values; pred has {p.size} from {p.min()} "
            f"to {p.max()}, truth has {t.size} from {t.min()} to {t.max()}"
        )
        raise ValueError(msg)
    if common.size < np.unique(p).size:
        warnings.warn(
            f"only {common.size} of pred's {p.size} {name!r} values are in truth "
            f"(truth spans {t.min()} to {t.max()}); the others are left out",
            stacklevel=3,
        )
    return common


def _select(ds: xr.Dataset, name: str, values: np.ndarray) -> xr.Dataset:
    coord = ds[name].values
    if np.issubdtype(coord.dtype, np.floating):
        coord = np.round(coord, _DECIMALS)
    return ds.isel({name: np.flatnonzero(np.isin(coord, values))})


def align(
    pred: xr.Dataset, truth: xr.Dataset, *, member_dim: str = "member"
) -> tuple[xr.Dataset, xr.Dataset]:
    """Return ``pred`` and ``truth`` on their shared variables, grid, levels and times.

    Both are renamed to ``latitude``/``longitude`` with longitudes in [0, 360), ascending,
    and the latitudes in the truth's order. Levels are matched when both have ``level``.
    Without a lead dimension, ``time`` is matched directly. With a lead dimension (see
    :data:`LEAD_DIMS`), ``time`` is the initialisation time and the truth is taken at the
    valid times ``time + lead``: the returned truth then has the dims ``(time, lead)`` and a
    ``valid_time`` coordinate; initialisation times whose valid times are not all in the
    truth are left out with a warning. Prediction points missing from the truth are
    left out with a warning; nothing shared is a :class:`ValueError`.

    Parameters
    ----------
    pred : xarray.Dataset
        Prediction, optionally with ``member_dim`` and a lead dimension.
    truth : xarray.Dataset
        Truth on a grid that overlaps the prediction's.
    member_dim : str, default "member"
        Name of the ensemble dimension of ``pred``; it must not be in ``truth``.

    Returns
    -------
    tuple of xarray.Dataset
        The aligned ``(pred, truth)``, lazily indexed when the inputs are dask-backed.

    Raises
    ------
    KeyError
        If the two share no data variable.
    ValueError
        If a coordinate (``latitude``, ``longitude``, ``level``, ``time``) does not overlap;
        the message names it and the ranges found.
    """
    if not isinstance(pred, xr.Dataset) or not isinstance(truth, xr.Dataset):
        msg = f"pred and truth must be xarray.Dataset; found {type(pred).__name__} and "
        msg += type(truth).__name__
        raise TypeError(msg)
    if member_dim in truth.dims:
        msg = f"truth must not have the member dimension {member_dim!r}"
        raise ValueError(msg)
    names = [v for v in pred.data_vars if v in truth.data_vars]
    if not names:
        msg = (
            f"pred and truth share no data variable; pred has {list(pred.data_vars)}, "
            f"truth has {list(truth.data_vars)}"
        )
        raise KeyError(msg)
    extra = [v for v in pred.data_vars if v not in truth.data_vars]
    if extra:
        warnings.warn(f"pred variables {extra} are not in truth; not evaluated", stacklevel=2)
    pred = normalize_grid(pred[names])
    truth = normalize_grid(truth[names])
    for name in ("latitude", "longitude", "level"):
        if name == "level" and not ("level" in pred.dims and "level" in truth.dims):
            if "level" in pred.dims:
                msg = "pred has dimension 'level' but truth does not"
                raise ValueError(msg)
            continue
        common = _overlap(name, pred, truth)
        pred, truth = _select(pred, name, common), _select(truth, name, common)
    # Same order on both: the truth's latitudes, ascending longitudes and levels.
    pred = pred.reindex(latitude=truth["latitude"].values, method="nearest", tolerance=1e-5)
    pred = pred.assign_coords(latitude=truth["latitude"].values)
    if "level" in pred.dims:
        pred = pred.assign_coords(level=truth["level"].values)
    if "time" not in pred.dims or "time" not in truth.dims:
        return pred, truth
    lead = find_lead_dim(pred)
    if lead is None:
        common = _overlap("time", pred, truth)
        return _select(pred, "time", common), _select(truth, "time", common)
    return _align_leads(pred, truth, lead)


def _align_leads(pred: xr.Dataset, truth: xr.Dataset, lead: str) -> tuple[xr.Dataset, xr.Dataset]:
    valid = pred["time"] + pred[lead]
    ok = valid.isin(truth["time"].values).all(lead)
    if not bool(ok.any()):
        v = valid.values
        t = truth["time"].values
        msg = (
            f"pred valid times ('time' + {lead!r}) from {v.min()} to {v.max()} are not in "
            f"truth 'time' ({t.size} values from {t.min()} to {t.max()})"
        )
        raise ValueError(msg)
    if not bool(ok.all()):
        warnings.warn(
            f"{int((~ok).sum())} of {ok.size} initial times have valid times outside truth "
            "'time'; they are left out",
            stacklevel=3,
        )
        pred = pred.isel(time=np.flatnonzero(ok.values))
        valid = valid.isel(time=np.flatnonzero(ok.values))
    indexer = valid.rename(time="_init").drop_vars(["_init", lead])
    matched = truth.sel(time=indexer).rename({"time": "valid_time"}).rename(_init="time")
    matched = matched.assign_coords(time=pred["time"].values, **{lead: pred[lead].values})
    return pred, matched.transpose("time", lead, ...)
