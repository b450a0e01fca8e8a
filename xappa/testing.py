"""Mock data for tests, doctests and demos: ERA5 in WeatherBench 2 layout, made offline.

The fields are smooth, seeded functions of time, level, latitude and longitude with
realistic magnitudes, so the same seed always gives the same values, whatever the chunking.
With ``chunks=`` they are dask arrays built lazily from the coordinates: even the 0.25 degree
grid (721 x 1440) costs nothing until computed.
"""

from __future__ import annotations

__all__ = ["mock_dataset", "mock_era5"]

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from xappa.convert import COORD_ATTRS
from xappa.state import ERA5_ATTRS, ERA5_LEVEL_VARIABLES, ERA5_LEVELS, ERA5_SURFACE_VARIABLES

_DIMS = ("time", "level", "latitude", "longitude")


def _waves(rng: np.random.Generator, t: Any, p: Any, phi: Any, lam: Any, n: int = 3) -> Any:
    """Return a sum of ``n`` travelling waves, each within ``[-1/n, 1/n]``."""
    total = 0.0
    for k in range(1, n + 1):
        a, b = rng.uniform(0, 2 * np.pi, size=2)
        m = rng.integers(1, 4)
        speed = rng.uniform(-0.05, 0.1)
        phase = k * lam + a + speed * t + 0.3 * np.log(1000.0 / p)
        total = total + np.cos(phi) * np.sin(phase) * np.cos(m * phi + b) / n
    return total


def _field(name: str, rng: np.random.Generator, t: Any, p: Any, phi: Any, lam: Any) -> Any:
    s2, c = np.sin(phi) ** 2, np.cos(phi)
    w = _waves(rng, t, p, phi, lam)
    height = np.log(1000.0 / p)
    jet = np.exp(-(np.log(p / 250.0) ** 2) / 0.5)
    if name == "temperature":
        return np.maximum((288.0 - 45.0 * s2) * (p / 1000.0) ** 0.19, 205.0 + 10 * s2) + 4 * w
    if name == "2m_temperature":
        return 288.0 - 45.0 * s2 + 3.0 * c * np.cos(lam + 2 * np.pi * t / 24.0) + 5 * w
    if name == "sea_surface_temperature":
        land = np.sin(2 * lam + rng.uniform(0, 6)) * np.cos(3 * phi + rng.uniform(0, 6)) > 0.3
        return np.where(land, np.nan, 271.5 + 30.0 * c**2 + w)
    if name == "u_component_of_wind":
        return (8.0 + 27.0 * jet) * np.sin(2 * phi) ** 2 - 4.0 * c**8 + 8 * w
    if name == "v_component_of_wind":
        return 10.0 * (1.0 + jet) * w
    if name == "10m_u_component_of_wind":
        return -5.0 * np.cos(3 * phi) + 4 * w
    if name == "10m_v_component_of_wind":
        return 4 * w
    if name == "geopotential":
        return 287.0 * (280.0 - 30.0 * s2) * height + 900.0 + 800.0 * (1.0 + height) * w
    if name == "specific_humidity":
        return (0.018 * c**3 * (p / 1000.0) ** 3 + 2e-6) * (1.0 + 0.3 * w)
    if name == "mean_sea_level_pressure":
        return 101325.0 + 1000.0 * np.cos(4 * phi) + 2000.0 * w
    if name == "total_precipitation":
        return 2e-3 * np.maximum(w, 0.0) ** 2
    msg = f"no mock field for variable {name!r}"  # pragma: no cover (names checked before)
    raise KeyError(msg)


def _block(
    t: np.ndarray,
    *args: np.ndarray,
    variable: str,
    seed: tuple[int, int],
    out_dtype: str,
) -> np.ndarray:
    """Compute one block of a variable from its 1-D coordinates (p, when given, in hPa)."""
    rng = np.random.default_rng(seed)
    if len(args) == 3:
        p, phi, lam = args
        grid = (t[:, None, None, None], p[None, :, None, None])
        grid += (phi[None, None, :, None], lam[None, None, None, :])
    else:
        phi, lam = args
        grid = (t[:, None, None], 1000.0, phi[None, :, None], lam[None, None, :])
    shape = (len(t), *(len(a) for a in args))
    return np.broadcast_to(_field(variable, rng, *grid), shape).astype(out_dtype)


def mock_era5(
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] = ERA5_LEVELS,
    nlat: int | None = None,
    nlon: int | None = None,
    resolution: float | None = None,
    ntime: int = 4,
    start: str = "2021-01-01",
    freq: str = "1h",
    seed: int = 0,
    chunks: Mapping[str, int] | None = None,
    dtype: str = "float32",
) -> xr.Dataset:
    """Return a mock ERA5 Dataset in WeatherBench 2 layout, with CF attributes.

    Variables have dimensions ``(time, [level,] latitude, longitude)``; ``level`` is in hPa,
    latitude goes from 90 to -90 and longitude from 0 up to 360 (excluded). Temperature
    decreases with height and toward the poles; geopotential grows with height (about
    5.5e4 m2 s-2 at 500 hPa); sea-surface temperature is NaN over some "land" cells;
    precipitation is small and non-negative.

    Parameters
    ----------
    variables : sequence of str, optional
        WeatherBench 2 names among Appa's 11 state variables (all by default).
    levels : sequence of float
        Pressure levels in hPa (Appa's 13 by default).
    nlat, nlon : int, optional
        The grid size (8 x 16 when neither these nor ``resolution`` are given).
    resolution : float, optional
        The grid spacing in degrees (0.25 gives 721 x 1440), instead of ``nlat``/``nlon``.
    ntime : int
        The number of time steps.
    start, freq : str
        The first time and the time step.
    seed : int
        The seed of the random wave phases.
    chunks : dict of str to int, optional
        Dask chunk sizes by dimension name (unnamed dimensions in one chunk); NumPy when None.
    dtype : str
        The float dtype of the variables.

    Returns
    -------
    Dataset
        The mock data.

    Raises
    ------
    KeyError
        If a variable has no mock.
    ValueError
        If a size or chunk name is bad.

    Examples
    --------
    >>> ds = mock_era5(variables=["geopotential"], levels=[500], nlat=4, nlon=8, ntime=2)
    >>> dict(ds.sizes)
    {'time': 2, 'level': 1, 'latitude': 4, 'longitude': 8}
    >>> 4.5e4 < float(ds.geopotential.mean()) < 6.5e4
    True
    """
    names = tuple(variables) if variables is not None else ERA5_SURFACE_VARIABLES
    if variables is None:
        names += ERA5_LEVEL_VARIABLES
    unknown = [v for v in names if v not in ERA5_ATTRS]
    if unknown:
        msg = f"mock_era5 has no variable(s) {unknown}; choose among {list(ERA5_ATTRS)}"
        raise KeyError(msg)
    if resolution is not None:
        if not 0 < resolution <= 90 or (180 / resolution) % 1:
            msg = f"resolution must divide 180 degrees; found {resolution}"
            raise ValueError(msg)
        nlat, nlon = round(180 / resolution) + 1, round(360 / resolution)
    nlat, nlon = nlat or 8, nlon or 16
    if nlat < 2 or nlon < 2 or ntime < 1:
        msg = f"mock_era5 needs nlat, nlon >= 2 and ntime >= 1; found {nlat}, {nlon}, {ntime}"
        raise ValueError(msg)
    chunks = dict(chunks) if chunks is not None else None
    if chunks is not None and set(chunks) - set(_DIMS):
        msg = f"chunks keys must be among {list(_DIMS)}; found {sorted(chunks)}"
        raise ValueError(msg)
    level_values = np.asarray(levels, dtype=np.float64)
    level_coord = level_values.astype(np.int64) if (level_values % 1 == 0).all() else level_values
    coords = {
        "time": pd.date_range(start, periods=ntime, freq=freq),
        "level": level_coord,
        "latitude": np.linspace(90.0, -90.0, nlat),
        "longitude": np.arange(nlon) * (360.0 / nlon),
    }
    axes = {
        "time": np.asarray((coords["time"] - coords["time"][0]) / pd.Timedelta("1h")),
        "level": level_values,
        "latitude": np.deg2rad(coords["latitude"]),
        "longitude": np.deg2rad(coords["longitude"]),
    }
    data = {}
    for i, name in enumerate(names):
        dims = _DIMS if name in ERA5_LEVEL_VARIABLES else ("time", "latitude", "longitude")
        kwargs = {"variable": name, "seed": (seed, i), "out_dtype": dtype}
        if chunks is None:
            values = _block(*(axes[d] for d in dims), **kwargs)
        else:
            pairs = []
            for d in dims:
                pairs += [dask.array.from_array(axes[d], chunks=chunks.get(d, -1)), (d,)]
            with warnings.catch_warnings():  # one block per chunk is the point here
                warnings.simplefilter("ignore", dask.array.PerformanceWarning)
                values = dask.array.blockwise(
                    _block, dims, *pairs, dtype=np.dtype(dtype), concatenate=True, **kwargs
                )
        data[name] = xr.Variable(dims, values, ERA5_ATTRS[name])
    out_coords = {d: xr.Variable(d, v, COORD_ATTRS[d]) for d, v in coords.items()}
    if not any(v in ERA5_LEVEL_VARIABLES for v in names):
        del out_coords["level"]
    attrs = {"title": "mock ERA5 in WeatherBench 2 layout", "source": "xappa.testing.mock_era5"}
    return xr.Dataset(data, coords=out_coords, attrs={**attrs, "Conventions": "CF-1.8"})


def mock_dataset(
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] = ERA5_LEVELS,
    nlat: int = 8,
    nlon: int = 16,
    ntime: int = 4,
    seed: int = 0,
) -> xr.Dataset:
    """Return a tiny in-memory mock ERA5 Dataset; see :func:`mock_era5`.

    Parameters
    ----------
    variables : sequence of str, optional
        WeatherBench 2 variable names (Appa's 11 by default).
    levels : sequence of float
        Pressure levels in hPa.
    nlat, nlon, ntime : int
        The sizes.
    seed : int
        The seed.

    Returns
    -------
    Dataset
        The mock data.
    """
    return mock_era5(
        variables=variables, levels=levels, nlat=nlat, nlon=nlon, ntime=ntime, seed=seed
    )
