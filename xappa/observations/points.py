"""Scattered point observations, laid out like CF point or time-series data.

Values live along one or more dimensions (``obs``; or ``(time, station)``; or ``(obs, level)``)
and ``latitude``, ``longitude``, ``time`` and, for level variables, ``level`` coordinates give
each value's place, found by CF metadata or common names. The coordinates are broadcast against
each variable, so every value gets its own time, location and level. Points are read at their
exact location by the operator (bilinear, or the nearest cell).
"""

from __future__ import annotations

__all__ = ["points_table"]

import dataclasses

import numpy as np
import xarray as xr

from xappa.observations.errors import ObsError, check_errors, error_std
from xappa.observations.table import ObsTable
from xappa.observations.validate import (
    check_latitudes,
    find_point_coord,
    level_channels,
    observed_variables,
    value_conversion,
)
from xappa.state.spec import StateSpec


def _flat(coord: xr.DataArray, var: xr.DataArray, role: str) -> np.ndarray:
    extra = [d for d in coord.dims if d not in var.dims]
    if extra:
        msg = (
            f"obs {role} coordinate {coord.name!r} has dimension(s) {extra} that variable"
            f" {var.name!r} lacks; expected among {list(var.dims)}"
        )
        raise ValueError(msg)
    return np.asarray(coord.broadcast_like(var).transpose(*var.dims).values).ravel()


def points_table(ds: xr.Dataset, spec: StateSpec, obs_error: ObsError = None) -> ObsTable:
    """Validate point observations and list their finite values in the spec's units.

    Parameters
    ----------
    ds : Dataset
        Variables of ``spec`` along point dimensions, with latitude, longitude and time
        coordinates (and a vertical one for level variables); NaN where not observed.
    spec : StateSpec
        The model state.
    obs_error : float, mapping or None
        Error standard deviations in the variables' units (see
        :mod:`xappa.observations.errors`).

    Returns
    -------
    ObsTable
        One row per finite value, with its latitude and longitude.

    Raises
    ------
    KeyError, ValueError
        On bad input (see :func:`xappa.observations.prepare_observations`).
    """
    names = observed_variables(ds, spec)
    lat, lon = find_point_coord(ds, "latitude"), find_point_coord(ds, "longitude")
    time = find_point_coord(ds, "time")
    vertical = find_point_coord(ds, "vertical", required=False)
    parts, dropped = [], {}
    for v in names:
        var = ds[v]
        values = np.asarray(var.values, dtype=np.float64).ravel()
        finite = np.isfinite(values)
        if not finite.any():
            msg = f"obs variable {v!r} is all NaN; expected at least one observed value"
            raise ValueError(msg)
        dropped[v] = int(values.size - finite.sum())
        lat_v = _flat(ds[lat], var, "latitude").astype(np.float64)[finite]
        lon_v = _flat(ds[lon], var, "longitude").astype(np.float64)[finite]
        check_latitudes(lat_v, name=f"obs {v!r} point")
        if not np.isfinite(lon_v).all():
            msg = f"obs {v!r} point longitude must be finite; found NaN or inf"
            raise ValueError(msg)
        time_v = _flat(ds[time], var, "time").astype("datetime64[ns]")[finite]
        if v in spec.level_variables:
            if vertical is None:
                msg = (
                    f"obs variable {v!r} has levels in spec {spec.name!r}; obs needs a vertical"
                    " coordinate (e.g. 'level' in hPa)"
                )
                raise KeyError(msg)
            level_v = _flat(ds[vertical], var, "vertical").astype(np.float64)[finite]
            unique, inverse = np.unique(level_v, return_inverse=True)
            units = ds[vertical].attrs.get("units")
            channel = level_channels(unique, units, v, spec)[inverse.reshape(-1)]
        else:
            channel = np.int64(spec.channel_index(v))
        conv = value_conversion(var, v, spec)  # the variable's own units first
        err = error_std(ds, v, obs_error)
        if isinstance(err, xr.DataArray):
            e = _flat(err, var, "error").astype(np.float64)[finite]
        else:
            e = np.full(len(lat_v), err)
        check_errors(e, v)
        value = values[finite]
        parts.append(
            ObsTable.from_rows(
                time=time_v,
                variable=spec.variables.index(v),
                channel=channel,
                value=conv.apply(value) if conv is not None else value,
                error=e * (abs(conv.scale) if conv is not None else 1.0),
                lat=lat_v,
                lon=lon_v,
            )
        )
    n = int(sum(len(p) for p in parts))
    source = f"points {names}: {n} values"
    return dataclasses.replace(ObsTable.concat(parts), dropped=dropped, sources=[source])
