"""Find coordinates by CF metadata and put a grid in a given latitude order and longitude convention.

Coordinates are found with cf-xarray (``standard_name``, ``axis``, ``units``, ``positive``)
and, failing that, by common names (``lat``/``latitude``, ``lon``/``longitude``,
``level``/``plev``/``pressure_level``/``isobaricInhPa``, ...). Only one-dimensional
dimension coordinates count.
"""

from __future__ import annotations

__all__ = [
    "COMMON_NAMES",
    "COORD_ATTRS",
    "GridIndex",
    "find_coord",
    "grid_conventions",
    "grid_index",
    "level_positions",
    "longitude_convention",
    "restore_conventions",
    "time_positions",
    "wrap_longitude",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cf_xarray  # noqa: F401 (registers the .cf accessor)
import numpy as np
import pandas as pd
import xarray as xr

from xappa.state.units import units_conversion

COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "latitude": ("latitude", "lat", "nav_lat", "y", "rlat"),
    "longitude": ("longitude", "lon", "nav_lon", "x", "rlon"),
    "time": ("time", "valid_time", "t", "datetime", "date"),
    "vertical": (
        "level",
        "plev",
        "pressure_level",
        "isobaricInhPa",
        "pressure",
        "lev",
        "air_pressure",
    ),
}
"""Names tried, case-insensitively, when CF metadata finds no coordinate of a role."""

_AXES = {"latitude": "Y", "longitude": "X", "time": "T", "vertical": "Z"}


COORD_ATTRS: dict[str, dict[str, str]] = {
    "time": {"standard_name": "time", "long_name": "time", "axis": "T"},
    "level": {
        "standard_name": "air_pressure",
        "long_name": "pressure level",
        "units": "hPa",
        "axis": "Z",
        "positive": "down",
    },
    "latitude": {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
        "axis": "Y",
    },
    "longitude": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
    },
}
"""CF attributes of the coordinates of Datasets in a spec's conventions."""


def find_coord(ds: xr.Dataset | xr.DataArray, role: str, *, name: str = "ds") -> str:
    """Return the name of the dimension coordinate that plays ``role`` in ``ds``.

    Parameters
    ----------
    ds : Dataset or DataArray
        The data to search.
    role : {"latitude", "longitude", "time", "vertical"}
        The coordinate wanted.
    name : str
        What ``ds`` is, for error messages.

    Returns
    -------
    str
        The coordinate's name, which is also a dimension of ``ds``.

    Raises
    ------
    KeyError
        If no coordinate plays ``role``.
    ValueError
        If several do, or ``role`` is unknown.

    Examples
    --------
    >>> from xappa.testing import mock_era5
    >>> find_coord(mock_era5(), "vertical")
    'level'
    """
    if role not in _AXES:
        msg = f"role must be one of {list(_AXES)}; found {role!r}"
        raise ValueError(msg)
    dims = [d for d in ds.dims if d in ds.coords and ds[d].ndim == 1]
    found = set(ds.cf.coordinates.get(role, [])) | set(ds.cf.axes.get(_AXES[role], []))
    found = [d for d in dims if d in found]
    if not found:
        lowered = {str(d).lower(): d for d in dims}
        found = [lowered[n.lower()] for n in COMMON_NAMES[role] if n.lower() in lowered][:1]
    if not found:
        msg = f"{name} has no {role} coordinate; found dimension coordinates {dims}"
        raise KeyError(msg)
    if len(found) > 1:
        msg = f"{name} has several {role} coordinates {found}; expected one"
        raise ValueError(msg)
    return str(found[0])


def longitude_convention(longitudes: Sequence[float] | np.ndarray) -> str:
    """Return ``"-180..180"`` if any longitude is negative, else ``"0..360"``.

    Parameters
    ----------
    longitudes : sequence of float
        Longitudes in degrees east, with shape ``(W,)``.

    Returns
    -------
    str
        The convention name.
    """
    return "-180..180" if np.min(longitudes) < 0 else "0..360"


def wrap_longitude(longitudes: np.ndarray, convention: str) -> np.ndarray:
    """Map longitudes to ``[0, 360)`` or ``[-180, 180)``.

    Parameters
    ----------
    longitudes : ndarray
        Longitudes in degrees east, with any shape.
    convention : {"0..360", "-180..180"}
        The convention wanted.

    Returns
    -------
    ndarray
        The wrapped longitudes, with the shape of ``longitudes``.
    """
    lon = np.asarray(longitudes, dtype=np.float64)
    if convention == "0..360":
        return np.mod(lon, 360.0)
    if convention == "-180..180":
        return np.mod(lon + 180.0, 360.0) - 180.0
    msg = f"convention must be '0..360' or '-180..180'; found {convention!r}"
    raise ValueError(msg)


@dataclass(frozen=True)
class GridIndex:
    """Creates the positions that reorder an input grid onto a target grid.

    ``data.isel({lat: lat_index, lon: lon_index})`` is on the target grid, and
    ``target_data.isel({lat: lat_inverse, lon: lon_inverse})`` is back on the input grid.

    Attributes
    ----------
    lat_index, lon_index : ndarray
        Input positions of each target latitude and longitude, with shapes ``(H,)``, ``(W,)``.
    lat_inverse, lon_inverse : ndarray
        The inverse permutations, with shapes ``(H,)`` and ``(W,)``.
    """

    lat_index: np.ndarray
    lon_index: np.ndarray

    @property
    def lat_inverse(self) -> np.ndarray:
        """Target positions of each input latitude."""
        return np.argsort(self.lat_index)

    @property
    def lon_inverse(self) -> np.ndarray:
        """Target positions of each input longitude."""
        return np.argsort(self.lon_index)

    @staticmethod
    def as_indexer(index: np.ndarray, size: int) -> slice | np.ndarray:
        """Return ``index`` as a slice when it is the identity or a reversal (cheaper in dask).

        Parameters
        ----------
        index : ndarray
            Integer positions, with shape ``(N,)``.
        size : int
            The length of the indexed dimension.

        Returns
        -------
        slice or ndarray
            An equivalent indexer.
        """
        if len(index) == size and np.array_equal(index, np.arange(size)):
            return slice(None)
        if len(index) == size and np.array_equal(index, np.arange(size)[::-1]):
            return slice(None, None, -1)
        return index

    @staticmethod
    def rotation(index: np.ndarray) -> int | None:
        """Return ``k`` when ``index`` is ``(arange(n) + k) % n`` (a longitude roll), else None.

        Parameters
        ----------
        index : ndarray
            Integer positions, with shape ``(N,)``.

        Returns
        -------
        int or None
            The shift ``k``; reindexing by ``index`` is then ``numpy.roll(x, -k)``.
        """
        n = len(index)
        k = int(index[0]) if n else 0
        return k if np.array_equal(index, (np.arange(n) + k) % n) else None


def grid_index(
    latitude: np.ndarray,
    longitude: np.ndarray,
    target_latitude: Sequence[float],
    target_longitude: Sequence[float],
    *,
    name: str = "ds",
    atol: float = 1e-6,
) -> GridIndex:
    """Match an input latitude/longitude grid to a target grid, up to order and convention.

    Parameters
    ----------
    latitude : ndarray
        The input latitudes in degrees north, with shape ``(H,)``, strictly monotonic in either
        order.
    longitude : ndarray
        The input longitudes in degrees east, with shape ``(W,)``, in either convention.
    target_latitude : sequence of float
        The target latitudes, with shape ``(H,)``.
    target_longitude : sequence of float
        The target longitudes, with shape ``(W,)``.
    name : str
        What the input is, for error messages.
    atol : float
        The tolerance, in degrees, on matching coordinates.

    Returns
    -------
    GridIndex
        The positions that reorder the input onto the target grid.

    Raises
    ------
    ValueError
        If latitudes are not strictly monotonic, longitudes repeat, or the grids differ.
    """
    lat = np.asarray(latitude, dtype=np.float64)
    step = np.diff(lat)
    if not (np.all(step > 0) or np.all(step < 0)):
        msg = f"{name} latitude must be strictly monotonic (either order); found {lat[:6]}..."
        raise ValueError(msg)
    target_lat = np.asarray(target_latitude, dtype=np.float64)
    descending = len(target_lat) > 1 and target_lat[0] > target_lat[-1]
    lat_index = np.argsort(-lat if descending else lat, kind="stable")
    if lat.shape != target_lat.shape or not np.allclose(lat[lat_index], target_lat, atol=atol):
        msg = (
            f"{name} latitude does not match the spec grid: expected {len(target_lat)} values"
            f" from {target_lat[0]:g} to {target_lat[-1]:g}; found {len(lat)} values from"
            f" {lat.min():g} to {lat.max():g}"
        )
        raise ValueError(msg)
    target_lon = np.asarray(target_longitude, dtype=np.float64)
    lon = wrap_longitude(longitude, longitude_convention(target_lon))
    lon_index = np.argsort(lon, kind="stable")
    if len(np.unique(lon)) != len(lon):
        msg = f"{name} longitude has repeated values (after wrapping); found {len(lon)} values"
        raise ValueError(msg)
    if lon.shape != target_lon.shape or not np.allclose(lon[lon_index], target_lon, atol=atol):
        msg = (
            f"{name} longitude does not match the spec grid: expected {len(target_lon)} values"
            f" from {target_lon[0]:g} to {target_lon[-1]:g}; found {len(lon)} values from"
            f" {lon.min():g} to {lon.max():g}"
        )
        raise ValueError(msg)
    return GridIndex(lat_index=lat_index, lon_index=lon_index)


def time_positions(
    ds: xr.Dataset, name: str, times: Any = None, time_step: pd.Timedelta | None = None
) -> np.ndarray:
    """Return the positions of ``times`` in the time coordinate ``name`` of ``ds``.

    Parameters
    ----------
    ds : Dataset
        The data.
    name : str
        Its time coordinate, which must be unique, increasing datetimes.
    times : array-like of datetime, optional
        The times wanted, unique; all when None.
    time_step : pandas.Timedelta, optional
        When given, consecutive selected times must be exactly this far apart.

    Returns
    -------
    ndarray
        Integer positions, with shape ``(T,)``.

    Raises
    ------
    KeyError
        If a requested time is missing.
    ValueError
        If times repeat, decrease or are not ``time_step`` apart.
    TypeError
        If the time coordinate does not hold datetimes.
    """
    try:
        index = pd.DatetimeIndex(ds.indexes[name])
    except (TypeError, ValueError):
        msg = f"ds time coordinate {name!r} must hold datetimes; found dtype {ds[name].dtype}"
        raise TypeError(msg) from None
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        msg = f"ds time coordinate {name!r} must have unique values; found {dup} twice or more"
        raise ValueError(msg)
    if not index.is_monotonic_increasing:
        msg = f"ds time coordinate {name!r} must be increasing; sort it with ds.sortby({name!r})"
        raise ValueError(msg)
    if times is None:
        positions = np.arange(len(index))
    else:
        wanted = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
        if wanted.has_duplicates:
            msg = f"times must be unique; found {wanted[wanted.duplicated()][0]} twice or more"
            raise ValueError(msg)
        positions = index.get_indexer(wanted)
        if (positions < 0).any():
            missing = [str(t) for t in wanted[positions < 0][:3]]
            msg = f"ds has no time(s) {missing} in {name!r}; found {index[0]} to {index[-1]}"
            raise KeyError(msg)
    # Compare as pandas Timedeltas: the times may be stored in any datetime64 unit.
    steps = pd.to_timedelta(np.unique(np.diff(index[positions].values)))
    if time_step is not None and len(positions) > 1 and list(steps) != [pd.Timedelta(time_step)]:
        found = [str(s) for s in steps[:3]]
        msg = f"ds time step must be the spec's {time_step}; found steps {found}"
        raise ValueError(msg)
    return positions


def level_positions(
    ds: xr.Dataset, name: str, levels: Sequence[float], units: str = "hPa"
) -> np.ndarray:
    """Return the positions of ``levels`` in the vertical coordinate ``name`` of ``ds``.

    Parameters
    ----------
    ds : Dataset
        The data.
    name : str
        Its vertical coordinate; its ``units`` attribute is converted to ``units`` (when absent,
        values are taken to be in ``units``).
    levels : sequence of float
        The levels wanted, in ``units``.
    units : str
        The units of ``levels``.

    Returns
    -------
    ndarray
        Integer positions, with shape ``(L,)``, in the order of ``levels``.

    Raises
    ------
    KeyError
        If a level is missing.
    ValueError
        If the coordinate's units are not convertible to ``units``.
    """
    values = np.asarray(ds[name].values, dtype=np.float64)
    found_units = ds[name].attrs.get("units")
    if found_units is None:
        if values.max() > 1100 and units == "hPa":
            msg = f"ds vertical coordinate {name!r} has no units and values above 1100 hPa"
            raise ValueError(msg)
        found_units = units
    conversion = units_conversion(found_units, units, name=f"coordinate {name!r}")
    found = conversion.apply(values)
    positions = []
    for level in levels:
        match = np.flatnonzero(np.isclose(found, level, rtol=1e-6, atol=1e-9))
        if match.size == 0:
            msg = (
                f"ds is missing level {level:g} {units} in coordinate {name!r};"
                f" found {found.tolist()}"
            )
            raise KeyError(msg)
        positions.append(int(match[0]))
    return np.asarray(positions)


def grid_conventions(ds: xr.Dataset) -> dict[str, str]:
    """Return the latitude order, longitude convention and coordinate names of a grid.

    Empty when ``ds`` has no 1-D latitude/longitude dimension coordinates (point data).
    """
    try:
        lat, lon = find_coord(ds, "latitude"), find_coord(ds, "longitude")
    except (KeyError, ValueError):
        return {}
    if lat not in ds.dims or lon not in ds.dims or ds[lat].size < 2:
        return {}
    la, lo = np.asarray(ds[lat].values, float), np.asarray(ds[lon].values, float)
    return {
        "latitude_name": str(lat),
        "longitude_name": str(lon),
        "latitude_order": "descending" if la[0] > la[-1] else "ascending",
        "longitude_convention": "-180..180" if lo.min() < 0 else "0..360",
    }


def restore_conventions(ds: xr.Dataset, conventions: dict[str, str]) -> xr.Dataset:
    """Reorder, rename and wrap the ``latitude``/``longitude`` of ``ds`` to ``conventions``."""
    if not conventions:
        return ds
    lat = ds["latitude"].values
    want = conventions["latitude_order"]
    if (want == "descending") != bool(lat[0] > lat[-1]):
        ds = ds.isel(latitude=slice(None, None, -1))
    lon = ds["longitude"]
    if conventions["longitude_convention"] == "-180..180" and float(lon.max()) >= 180:
        ds = ds.assign_coords(longitude=((lon + 180) % 360 - 180).assign_attrs(lon.attrs))
    elif conventions["longitude_convention"] == "0..360" and float(lon.min()) < 0:
        ds = ds.assign_coords(longitude=(lon % 360).assign_attrs(lon.attrs))
    ds = ds.sortby("longitude")
    names = {"latitude": conventions["latitude_name"], "longitude": conventions["longitude_name"]}
    return ds.rename({k: v for k, v in names.items() if k != v})
