"""Gridded observations: fields on ``(time, [level,] latitude, longitude)``, NaN where unobserved.

On the spec grid (in either latitude order and longitude convention), each finite value is a
``(channel, cell)`` pair. On another rectilinear grid, the fields are first regridded to the
spec grid with xESMF when it is importable, else with xarray-regrid; NaN spreads to the target
cells whose interpolation touches an unobserved source cell, and those are dropped (counted).
A malformed grid (latitudes that repeat or are out of order, longitudes that repeat once
wrapped to ``[0, 360)``) is an error, never regridded.
"""

from __future__ import annotations

__all__ = ["REGRID_METHODS", "check_grid", "gridded_table", "regrid_to_spec"]

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
from xappa.state.coords import COORD_ATTRS, find_coord, grid_index
from xappa.state.spec import StateSpec

REGRID_METHODS = ("linear", "nearest", "cubic", "conservative")
"""Regridding methods (xarray-regrid names; xESMF gets the matching ones)."""

_XESMF_METHODS = {"linear": "bilinear", "nearest": "nearest_s2d", "conservative": "conservative"}


def _backend(backend: str) -> str:
    if backend not in ("auto", "xesmf", "xarray-regrid"):
        msg = f"regrid_backend must be 'auto', 'xesmf' or 'xarray-regrid'; found {backend!r}"
        raise ValueError(msg)
    if backend in ("auto", "xesmf"):
        try:
            import xesmf  # noqa: F401
        except ImportError as err:
            if backend == "xesmf":
                msg = (
                    "regridding obs with regrid_backend='xesmf' requires xESMF; install it"
                    " with conda (conda install -c conda-forge xesmf)"
                )
                raise ImportError(msg) from err
        else:
            return "xesmf"
    try:
        import xarray_regrid  # noqa: F401
    except ImportError as err:
        msg = (
            "regridding obs to the spec grid requires xarray-regrid; pip install"
            " 'xappa[regrid]' (or xarray-regrid), or give obs on the spec grid"
        )
        raise ImportError(msg) from err
    return "xarray-regrid"


def regrid_to_spec(
    ds: xr.Dataset, spec: StateSpec, *, method: str = "linear", backend: str = "auto"
) -> xr.Dataset:
    """Regrid gridded observations (and their ancillary variables) to the spec grid.

    Parameters
    ----------
    ds : Dataset
        Gridded observations on a rectilinear latitude/longitude grid, with a time dimension.
    spec : StateSpec
        The model state whose grid is the target.
    method : {"linear", "nearest", "cubic", "conservative"}
        The interpolation.
    backend : {"auto", "xesmf", "xarray-regrid"}
        ``"auto"`` uses xESMF when importable, else xarray-regrid.

    Returns
    -------
    Dataset
        The observations on the spec grid, with dimensions named ``latitude`` and
        ``longitude`` in the spec's order; attributes are kept.

    Raises
    ------
    ImportError
        If no regridding backend can be imported.
    ValueError
        If ``method`` or ``backend`` is unknown.
    """
    if method not in REGRID_METHODS:
        msg = f"regrid must be one of {list(REGRID_METHODS)} or None; found {method!r}"
        raise ValueError(msg)
    name = _backend(backend)
    lat, lon = find_coord(ds, "latitude", name="obs"), find_coord(ds, "longitude", name="obs")
    time = find_coord(ds, "time", name="obs")
    src = ds.rename({lat: "latitude", lon: "longitude"})
    target = xr.Dataset(
        coords={
            "latitude": ("latitude", np.asarray(spec.latitudes), COORD_ATTRS["latitude"]),
            "longitude": ("longitude", np.asarray(spec.longitudes), COORD_ATTRS["longitude"]),
        }
    )
    if name == "xesmf":  # pragma: no cover (xESMF cannot be installed on the CI machines)
        import xesmf

        if method not in _XESMF_METHODS:
            msg = f"regrid={method!r} has no xESMF equivalent; use {sorted(_XESMF_METHODS)}"
            raise ValueError(msg)
        regridder = xesmf.Regridder(src, target, _XESMF_METHODS[method], periodic=True)
        out = regridder(src, keep_attrs=True)
    else:
        out = getattr(src.regrid, method)(target, time_dim=time)
    for v in out.data_vars:
        out[v].attrs = dict(ds[v].attrs)
    return out.transpose(*[d for d in ds.dims if d not in (lat, lon)], "latitude", "longitude")


def check_grid(latitude: np.ndarray, longitude: np.ndarray) -> None:
    """Check that gridded observations lie on a well-formed rectilinear grid.

    Parameters
    ----------
    latitude : ndarray
        The latitudes in degrees north, with shape ``(H,)``.
    longitude : ndarray
        The longitudes in degrees east, with shape ``(W,)``, in either convention.

    Raises
    ------
    ValueError
        If latitudes repeat or are not in one order (ascending or descending), or if
        longitudes repeat once wrapped to ``[0, 360)``; the message names the first one.
    """
    lat = np.asarray(latitude, dtype=np.float64)
    step = np.diff(lat)
    bad = np.flatnonzero(step <= 0) if lat.size > 1 and step[0] > 0 else np.flatnonzero(step >= 0)
    if lat.size > 1 and bad.size:
        i = int(bad[0]) + 1
        msg = (
            "obs latitude must be strictly monotonic (each value once, in one order) to be a"
            f" grid; found {lat[i]:g} after {lat[i - 1]:g} at position {i}"
        )
        raise ValueError(msg)
    lon = np.round(np.mod(np.asarray(longitude, dtype=np.float64), 360.0), 6) % 360.0
    values, counts = np.unique(lon, return_counts=True)
    if (counts > 1).any():
        first = values[counts > 1][0]
        msg = (
            "obs longitude must hold each meridian once to be a grid; found"
            f" {int(counts.max())} values at {first:g} degrees east (after wrapping to [0, 360))"
        )
        raise ValueError(msg)


def _time_dim(ds: xr.Dataset) -> tuple[xr.Dataset, str]:
    try:
        return ds, find_coord(ds, "time", name="obs")
    except KeyError:
        name = find_point_coord(ds, "time")  # a scalar time coordinate: one time
        if ds[name].ndim != 0:
            msg = f"obs time coordinate {name!r} must be a dimension or a scalar"
            raise ValueError(msg) from None
        return ds.expand_dims(name), str(name)


def gridded_table(
    ds: xr.Dataset,
    spec: StateSpec,
    obs_error: ObsError = None,
    *,
    regrid: str | None = "linear",
    regrid_backend: str = "auto",
) -> ObsTable:
    """Validate gridded observations and list their finite values in the spec's units.

    Parameters
    ----------
    ds : Dataset
        Variables of ``spec`` over ``(time, [level,] latitude, longitude)`` with NaN where
        unobserved; ``time`` may be a scalar coordinate.
    spec : StateSpec
        The model state.
    obs_error : float, mapping or None
        Error standard deviations in the variables' units (see
        :mod:`xappa.observations.errors`).
    regrid : str or None
        The regridding method when the grid is not the spec's; None raises instead.
    regrid_backend : {"auto", "xesmf", "xarray-regrid"}
        The regridding backend.

    Returns
    -------
    ObsTable
        One row per finite value.

    Raises
    ------
    KeyError, ValueError, ImportError
        On bad input (see :func:`xappa.observations.prepare_observations`).
    """
    names = observed_variables(ds, spec)
    ds, time = _time_dim(ds)
    lat, lon = find_coord(ds, "latitude", name="obs"), find_coord(ds, "longitude", name="obs")
    check_latitudes(ds[lat].values)
    check_grid(ds[lat].values, ds[lon].values)  # malformed: an error, not a regrid
    source = f"gridded {names} on {ds.sizes[lat]}x{ds.sizes[lon]}"
    try:
        grid = grid_index(ds[lat].values, ds[lon].values, spec.latitudes, spec.longitudes)
    except ValueError as err:
        if regrid is None:
            msg = f"{err}; pass regrid='linear' (or another method) to regrid obs"
            raise ValueError(msg) from None
        ds = regrid_to_spec(ds, spec, method=regrid, backend=regrid_backend)
        lat, lon = "latitude", "longitude"
        grid = grid_index(ds[lat].values, ds[lon].values, spec.latitudes, spec.longitudes)
        source += f", regridded ({regrid}) to {spec.shape[0]}x{spec.shape[1]}"
    ds = ds.isel({lat: grid.lat_index, lon: grid.lon_index})
    times = ds[time].values.astype("datetime64[ns]")
    width = spec.shape[1]
    parts, dropped = [], {}
    for v in names:
        var = ds[v]
        level = v in spec.level_variables
        vertical = find_coord(ds, "vertical", name="obs") if level else None
        need = {time, lat, lon} | ({vertical} if vertical else set())
        if set(var.dims) != need:
            msg = f"obs variable {v!r} must have dimensions {sorted(need)}; found {list(var.dims)}"
            raise ValueError(msg)
        order = [time, vertical, lat, lon] if vertical else [time, lat, lon]
        var = var.transpose(*order)
        if vertical:
            coord = ds[vertical]
            channels = level_channels(coord.values, coord.attrs.get("units"), v, spec)
        else:
            channels = np.asarray([spec.channel_index(v)])
        conv = value_conversion(var, v, spec)
        scale = abs(conv.scale) if conv is not None else 1.0
        err = error_std(ds, v, obs_error)
        if isinstance(err, xr.DataArray):
            err = err.broadcast_like(var).transpose(*order)
        n_nan = 0
        for i in range(var.sizes[time]):
            values = np.asarray(var[i].values, dtype=np.float64).reshape(-1, *spec.shape)
            finite = np.isfinite(values)
            n_nan += int(finite.size - finite.sum())
            lev, row, col = np.nonzero(finite)
            if isinstance(err, xr.DataArray):
                e = np.asarray(err[i].values, dtype=np.float64).reshape(values.shape)[finite]
            else:
                e = np.full(len(lev), err)
            check_errors(e, v)
            value = values[finite]
            parts.append(
                ObsTable.from_rows(
                    time=times[i],
                    variable=spec.variables.index(v),
                    channel=channels[lev],
                    value=conv.apply(value) if conv is not None else value,
                    error=e * scale,
                    cell=row * width + col,
                )
            )
        if n_nan == var.size:
            msg = f"obs variable {v!r} is all NaN; expected at least one observed value"
            raise ValueError(msg)
        dropped[v] = n_nan
    return dataclasses.replace(ObsTable.concat(parts), dropped=dropped, sources=[source])
