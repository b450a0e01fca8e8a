"""Dataset <-> tensor conversion in a :class:`~xappa.state.spec.StateSpec`'s layout.

:func:`dataset_to_tensor` turns a Dataset into a tensor with shape ``(T, C, H, W)`` in the
spec's conventions and returns a :class:`StateInfo` with which :func:`tensor_to_dataset`
restores the input's names, order, conventions, units and attributes; :func:`select_state`
does the selection and conforming lazily.
"""

from __future__ import annotations

__all__ = [
    "StateInfo",
    "VariableInfo",
    "dataset_to_tensor",
    "select_state",
    "tensor_to_dataset",
]

from dataclasses import dataclass
from typing import Any

import dask.array
import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor

from xappa.state.coords import (
    COORD_ATTRS,
    GridIndex,
    find_coord,
    grid_index,
    level_positions,
    time_positions,
)
from xappa.state.spec import ERA5_ATTRS, StateSpec
from xappa.state.units import UnitConversion, units_conversion


@dataclass(frozen=True)
class VariableInfo:
    """Creates the record of one converted variable.

    Attributes
    ----------
    dims : tuple of str
        Its dimensions in the input, in order.
    dtype : numpy.dtype
        Its input dtype.
    attrs, encoding : dict
        Its input attributes and encoding.
    conversion : UnitConversion or None
        The unit conversion applied, if any.
    """

    dims: tuple[str, ...]
    dtype: np.dtype
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    conversion: UnitConversion | None


@dataclass(frozen=True)
class StateInfo:
    """Creates the record of a Dataset-to-state conversion, to invert it exactly.

    Attributes
    ----------
    spec : StateSpec
        The spec converted to.
    names : dict of str to str or None
        The input's names of the ``time``, ``latitude``, ``longitude`` and ``vertical``
        coordinates.
    coords : dict of str to xarray.Variable
        The input's coordinates (selected times and levels), with attributes and encoding.
    grid : GridIndex
        The latitude/longitude reordering from the input grid to the spec's.
    level_order : ndarray or None
        For each output level (in the input's order), its position in ``spec.levels``.
    variables : dict of str to VariableInfo
        What was recorded for each variable.
    attrs : dict
        The input Dataset's attributes.
    """

    spec: StateSpec
    names: dict[str, str | None]
    coords: dict[str, xr.Variable]
    grid: GridIndex
    level_order: np.ndarray | None
    variables: dict[str, VariableInfo]
    attrs: dict[str, Any]

    @property
    def times(self) -> pd.DatetimeIndex:
        """The converted times."""
        return pd.DatetimeIndex(self.coords[self.names["time"]].values)


def _spec_coords(spec: StateSpec, times: np.ndarray) -> dict[str, xr.Variable]:
    coords = {"time": xr.Variable("time", times, COORD_ATTRS["time"])}
    for name, values in (("latitude", spec.latitudes), ("longitude", spec.longitudes)):
        coords[name] = xr.Variable(name, np.asarray(values), COORD_ATTRS[name])
    if spec.level_variables:
        attrs = {**COORD_ATTRS["level"], "units": spec.level_units}
        coords["level"] = xr.Variable("level", np.asarray(spec.levels), attrs)
    return coords


def select_state(
    ds: xr.Dataset, spec: StateSpec, *, times: Any = None, check_step: bool = True
) -> tuple[xr.Dataset, StateInfo]:
    """Select and conform a Dataset to a spec, lazily: names, order, grid and units.

    Only the requested times are indexed, so dask-backed data stays lazy and unrequested
    chunks are never read.

    Parameters
    ----------
    ds : Dataset
        Holds every variable of ``spec`` with dimensions (time, [vertical,] latitude,
        longitude) in any order and any names that CF metadata or common names identify.
        Either latitude order and either longitude convention works.
    spec : StateSpec
        The state wanted.
    times : array-like of datetime, optional
        The times to select (all when None).
    check_step : bool
        Whether consecutive selected times must be exactly ``spec.time_step`` apart.

    Returns
    -------
    tuple
        A Dataset with the spec's variables over ``(time, [level,] latitude, longitude)`` in
        the spec's grid, level order and units, with CF coordinates; and the
        :class:`StateInfo` to invert the conversion.

    Raises
    ------
    KeyError
        If a variable, a level, a coordinate or a requested time is missing.
    ValueError
        If the grid, dimensions, units or time step do not match the spec.
    TypeError
        If ``ds`` is not a Dataset or its time is not datetimes.

    Examples
    --------
    >>> from xappa.state.spec import era5_spec
    >>> from xappa.testing import mock_era5
    >>> ds = mock_era5(nlat=8, nlon=16, ntime=4, chunks={"time": 1})
    >>> ds = ds.isel(latitude=slice(None, None, -1))  # south to north
    >>> state, info = select_state(ds, era5_spec(nlat=8, nlon=16), times=ds.time[2:])
    >>> float(state.latitude[0]), state.sizes["time"]
    (90.0, 2)
    """
    if not isinstance(ds, xr.Dataset):
        msg = f"ds must be an xarray.Dataset; found {type(ds).__name__}"
        raise TypeError(msg)
    missing = [v for v in spec.variables if v not in ds.data_vars]
    if missing:
        found = sorted(map(str, ds.data_vars))
        msg = f"ds is missing variable(s) {missing} of spec {spec.name!r}; found {found}"
        raise KeyError(msg)
    names: dict[str, str | None] = {
        r: find_coord(ds, r) for r in ("time", "latitude", "longitude")
    }
    names["vertical"] = find_coord(ds, "vertical") if spec.level_variables else None
    time, lat, lon, lev = names["time"], names["latitude"], names["longitude"], names["vertical"]
    t_pos = time_positions(ds, time, times, spec.time_step if check_step else None)
    grid = grid_index(ds[lat].values, ds[lon].values, spec.latitudes, spec.longitudes)
    index = {
        time: GridIndex.as_indexer(t_pos, ds.sizes[time]),
        lat: GridIndex.as_indexer(grid.lat_index, ds.sizes[lat]),
    }
    shift = GridIndex.rotation(grid.lon_index)  # a change of convention is a roll: cheaper
    if shift is None:
        index[lon] = grid.lon_index
    coords = {time: ds[time].variable[t_pos], lat: ds[lat].variable, lon: ds[lon].variable}
    level_order = None
    if lev is not None:
        l_pos = level_positions(ds, lev, spec.levels, spec.level_units)
        level_order = np.argsort(l_pos)
        coords[lev] = ds[lev].variable[np.sort(l_pos)]
    data, records = {}, {}
    for v in spec.variables:
        var = ds[v].variable
        need = {time, lat, lon} | ({lev} if v in spec.level_variables else set())
        if set(var.dims) != need:
            msg = f"variable {v!r} must have dimensions {sorted(need)}; found {list(var.dims)}"
            raise ValueError(msg)
        conversion = None
        if v in spec.units:
            if "units" not in var.attrs:
                msg = (
                    f"variable {v!r} has no units attribute; expected units convertible to"
                    f" {spec.units[v]!r}"
                )
                raise ValueError(msg)
            conversion = units_conversion(
                str(var.attrs["units"]), spec.units[v], name=f"variable {v!r}"
            )
        records[v] = VariableInfo(
            tuple(map(str, var.dims)), var.dtype, dict(var.attrs), dict(var.encoding), conversion
        )
        sel = dict(index)
        order = [time, lat, lon]
        if lev is not None and lev in var.dims:
            sel[lev] = l_pos
            order.insert(1, lev)
        out = var.isel(sel)
        out = (out.roll({lon: -shift}) if shift else out).transpose(*order)
        values = out.data if conversion is None else conversion.apply(out.data)
        attrs = {**ERA5_ATTRS.get(v, {}), **var.attrs}
        if v in spec.units:
            attrs["units"] = spec.units[v]
        dims = ("time", "level", "latitude", "longitude")
        data[v] = xr.Variable(dims if len(order) == 4 else dims[:1] + dims[2:], values, attrs)
    out_coords = _spec_coords(spec, coords[time].values)
    state = xr.Dataset(data, coords=out_coords, attrs={"xappa_spec": spec.name})
    info = StateInfo(spec, names, coords, grid, level_order, records, dict(ds.attrs))
    return state, info


def dataset_to_tensor(
    ds: xr.Dataset,
    spec: StateSpec,
    *,
    times: Any = None,
    dtype: torch.dtype | None = None,
    check_step: bool = True,
) -> tuple[Tensor, StateInfo]:
    """Convert a Dataset to a state tensor in the spec's channel order, grid and units.

    Parameters
    ----------
    ds : Dataset
        As in :func:`select_state`.
    spec : StateSpec
        The state wanted.
    times : array-like of datetime, optional
        The times to convert (all when None); only these are read from dask-backed data.
    dtype : torch.dtype, optional
        The tensor dtype; by default the data's float dtype (float32 or wider).
    check_step : bool
        Whether consecutive times must be exactly ``spec.time_step`` apart.

    Returns
    -------
    tuple
        The state with shape ``(T, C, H, W)`` (NaN kept where the data has NaN), and the
        :class:`StateInfo` for :func:`tensor_to_dataset`.

    Examples
    --------
    >>> from xappa.state.spec import era5_spec
    >>> from xappa.testing import mock_era5
    >>> spec = era5_spec(nlat=8, nlon=16)
    >>> x, info = dataset_to_tensor(mock_era5(nlat=8, nlon=16, ntime=3), spec)
    >>> tuple(x.shape)
    (3, 71, 8, 16)
    """
    state, info = select_state(ds, spec, times=times, check_step=check_step)
    arrays = []
    for v in spec.variables:
        values = state[v].data
        arrays.append(values if values.ndim == 4 else values[:, None])
    np_dtype = np.result_type(np.float32, *[a.dtype for a in arrays])
    if any(isinstance(a, dask.array.Array) for a in arrays):
        stacked = np.asarray(dask.array.concatenate(arrays, axis=1).astype(np_dtype).compute())
    else:
        stacked = np.concatenate([np.asarray(a, dtype=np_dtype) for a in arrays], axis=1)
    tensor = torch.from_numpy(np.ascontiguousarray(stacked))
    return (tensor if dtype is None else tensor.to(dtype)), info


def _as_times(times: Any, n: int) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
    if len(index) != n:
        msg = f"times must have one value per tensor time step ({n}); found {len(index)}"
        raise ValueError(msg)
    return index


def tensor_to_dataset(
    tensor: Tensor, spec: StateSpec, *, info: StateInfo | None = None, times: Any = None
) -> xr.Dataset:
    """Convert a state tensor back to a Dataset.

    Parameters
    ----------
    tensor : Tensor
        The state, with shape ``(T, C, H, W)`` or ``(M, T, C, H, W)`` for ``M`` ensemble
        members (then the Dataset gets a leading ``member`` dimension).
    spec : StateSpec
        The spec of the channels.
    info : StateInfo, optional
        The record from :func:`dataset_to_tensor`: the result then has the input's names,
        dimension order, grid order, longitude convention, units, dtypes and attributes.
        Without it, the result is in the spec's conventions with CF attributes.
    times : array-like of datetime, optional
        The times of the ``T`` steps; by default those recorded in ``info``.

    Returns
    -------
    Dataset
        One variable per spec variable.

    Raises
    ------
    ValueError
        If the tensor's shape, ``info`` or ``times`` do not fit the spec.

    Examples
    --------
    >>> from xappa.state.spec import era5_spec
    >>> from xappa.testing import mock_era5
    >>> spec = era5_spec(nlat=8, nlon=16)
    >>> ds = mock_era5(nlat=8, nlon=16, ntime=2)
    >>> x, info = dataset_to_tensor(ds, spec)
    >>> tensor_to_dataset(x, spec, info=info).identical(ds)
    True
    >>> tensor_to_dataset(x[None], spec, times=info.times).temperature.dims
    ('member', 'time', 'level', 'latitude', 'longitude')
    """
    if not isinstance(tensor, Tensor):
        msg = f"tensor must be a torch.Tensor; found {type(tensor).__name__}"
        raise TypeError(msg)
    h, w = spec.shape
    if tensor.ndim not in (4, 5) or tuple(tensor.shape[-3:]) != (spec.n_channels, h, w):
        msg = (
            f"tensor must have shape (T, {spec.n_channels}, {h}, {w}) or (M, T, ...) for spec"
            f" {spec.name!r}; found {tuple(tensor.shape)}"
        )
        raise ValueError(msg)
    if info is not None and info.spec != spec:
        msg = f"info was recorded for spec {info.spec.name!r}, not for the spec given"
        raise ValueError(msg)
    n_time = tensor.shape[-4]
    if times is None:
        if info is None or len(info.times) != n_time:
            msg = f"times must be given for a tensor with {n_time} time steps"
            raise ValueError(msg)
    else:
        times = _as_times(times, n_time)
    x = tensor.detach().cpu()
    x = (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy()
    lead = ("member",) if x.ndim == 5 else ()
    if info is None:
        names: dict[str, str | None] = {"time": "time", "latitude": "latitude"}
        names.update(longitude="longitude", vertical="level")
        coords = _spec_coords(spec, times.values)
    else:
        names, coords = info.names, dict(info.coords)
        if times is not None:
            old = coords[names["time"]]
            coords[names["time"]] = xr.Variable(old.dims, times.values, old.attrs, old.encoding)
    time, lat, lon, lev = names["time"], names["latitude"], names["longitude"], names["vertical"]
    data = {}
    start = 0
    for v in spec.variables:
        n = len(spec.levels) if v in spec.level_variables else 1
        values = x[..., start : start + n, :, :]
        start += n
        if info is not None:
            record = info.variables[v]
            if record.conversion is not None:
                values = record.conversion.invert(values)
            values = np.take(values, info.grid.lat_inverse, axis=-2)
            values = np.take(values, info.grid.lon_inverse, axis=-1)
            if v in spec.level_variables:
                values = np.take(values, info.level_order, axis=-3)
        dims = (*lead, time, lev, lat, lon) if v in spec.level_variables else None
        if dims is None:
            values = values[..., 0, :, :]
            dims = (*lead, time, lat, lon)
        if info is None:
            attrs = {
                **ERA5_ATTRS.get(v, {}),
                **({"units": spec.units[v]} if v in spec.units else {}),
            }
            data[v] = xr.Variable(dims, np.array(values), attrs)  # a copy, not a view
        else:
            var = xr.Variable(dims, values.astype(record.dtype, copy=False), record.attrs)
            var = var.transpose(*lead, *record.dims)
            var.encoding = dict(record.encoding)
            data[v] = var
    attrs = {"xappa_spec": spec.name} if info is None else dict(info.attrs)
    return xr.Dataset(data, coords=coords, attrs=attrs)
