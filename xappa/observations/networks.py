r"""Realistic observing networks: station locations and low-Earth-orbit satellite swaths.

:func:`leo_swath` follows Appa's synthetic polar orbiter. The orbital period is
:math:`T = 2\pi \sqrt{R^3 / GM}` with :math:`R` = 6371.0088 km + altitude and
:math:`GM` = 3.986004415e14 m3 s-2 (:mod:`xappa.core.constants`; about 100.7 min at 800 km). The sub-satellite point at
elapsed time :math:`e` starts on the meridian at latitude :math:`-360 e / T` degrees, is rotated
about the x axis by :math:`90° - i` (inclination :math:`i`) and about the z axis by the phase,
and the Earth's rotation (:math:`360 e / 24` degrees per hour) is subtracted from its
longitude. Every grid cell within a great-circle arc ``fov_deg`` of a sample is observed.
Appa wrapped the longitude as :math:`(\lambda \bmod 360) - 180`, a 180° offset; here the
longitude is the true one (the swath is shifted by 180° from Appa's for the same phase).

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["leo_swath", "orbital_period", "random_stations", "stations"]

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.spatial import cKDTree

from xappa.core.constants import EARTH_GM, EARTH_RADIUS
from xappa.observations.validate import check_latitudes
from xappa.state.coords import COORD_ATTRS


def stations(
    lat: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    *,
    names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Return station locations as a Dataset along a ``station`` dimension.

    Parameters
    ----------
    lat : sequence of float
        Latitudes in degrees north, within ``[-90, 90]``, with shape ``(S,)``.
    lon : sequence of float
        Longitudes in degrees east (any convention), with shape ``(S,)``.
    names : sequence of str, optional
        Station names (``"s0"``, ``"s1"``, ... when None).

    Returns
    -------
    Dataset
        No variables; coordinates ``station``, ``latitude`` and ``longitude`` (CF attributes).

    Raises
    ------
    ValueError
        If lengths differ or a latitude is outside ``[-90, 90]``.

    Examples
    --------
    >>> s = stations([48.8, -33.9], [2.35, 151.2], names=["paris", "sydney"])
    >>> s.sizes["station"], float(s.latitude[1])
    (2, -33.9)
    """
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    names = [f"s{i}" for i in range(len(lat))] if names is None else [str(n) for n in names]
    if lat.ndim != 1 or lat.shape != lon.shape or len(names) != len(lat):
        msg = (
            f"lat, lon and names must have the same length; found {lat.shape}, {lon.shape} and"
            f" {len(names)}"
        )
        raise ValueError(msg)
    check_latitudes(lat, name="stations")
    if not np.isfinite(lon).all():
        msg = "stations longitude must be finite; found NaN or inf"
        raise ValueError(msg)
    coords = {
        "station": ("station", np.asarray(names, dtype=object)),
        "latitude": ("station", lat, COORD_ATTRS["latitude"]),
        "longitude": ("station", lon, COORD_ATTRS["longitude"]),
    }
    return xr.Dataset(coords=coords, attrs={"featureType": "timeSeries"})


def random_stations(n: int, *, seed: int = 0, land_fraction: float | None = None) -> xr.Dataset:
    """Return ``n`` stations drawn uniformly on the sphere, optionally biased to land.

    Parameters
    ----------
    n : int
        The number of stations.
    seed : int
        The random seed.
    land_fraction : float, optional
        The fraction of stations on land (the rest at sea), using the 1 km GLOBE mask of
        ``global-land-mask``; uniform over land and sea alike when None.

    Returns
    -------
    Dataset
        As :func:`stations`.

    Raises
    ------
    ValueError
        If ``n`` or ``land_fraction`` is out of range.
    ImportError
        If ``land_fraction`` is given and global-land-mask is missing.

    Examples
    --------
    >>> random_stations(5, seed=1).sizes["station"]
    5
    """
    if n < 1:
        msg = f"n must be at least 1; found {n}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.rad2deg(np.arcsin(rng.uniform(-1, 1, k))), rng.uniform(-180, 180, k)

    if land_fraction is None:
        lat, lon = draw(n)
        return stations(lat, lon)
    if not 0 <= land_fraction <= 1:
        msg = f"land_fraction must lie within [0, 1]; found {land_fraction}"
        raise ValueError(msg)
    try:
        from global_land_mask import globe
    except ImportError as err:
        msg = "random_stations(land_fraction=...) requires global-land-mask; pip install 'xappa[geo]'"
        raise ImportError(msg) from err
    want = {True: round(n * land_fraction), False: n - round(n * land_fraction)}
    got: dict[bool, list[np.ndarray]] = {True: [], False: []}
    while any(sum(len(a) for a in got[k]) < want[k] for k in (True, False)):
        lat, lon = draw(4 * n)
        land = globe.is_land(lat, lon)
        for k in (True, False):
            pick = land == k
            got[k].append(np.stack([lat[pick], lon[pick]], axis=-1))
    points = np.concatenate([np.concatenate(got[k])[: want[k]] for k in (True, False)])
    return stations(points[:, 0], points[:, 1])


def orbital_period(altitude_km: float) -> float:
    """Return the period in hours of a circular orbit at ``altitude_km`` above the Earth.

    Parameters
    ----------
    altitude_km : float
        The altitude in km.

    Returns
    -------
    float
        The period in hours (about 1.679 at 800 km).
    """
    radius = EARTH_RADIUS + altitude_km * 1e3
    return 2 * np.pi * np.sqrt(radius**3 / EARTH_GM) / 3600.0


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


def _subsatellite(
    hours: np.ndarray, period: float, inclination: float, phase: float
) -> np.ndarray:
    arc = np.deg2rad(-360.0 * hours / period)
    x, y, z = np.cos(arc), np.zeros_like(arc), np.sin(arc)
    theta = np.deg2rad(90.0 - inclination)
    y, z = y * np.cos(theta) - z * np.sin(theta), y * np.sin(theta) + z * np.cos(theta)
    p = np.deg2rad(phase)
    x, y = x * np.cos(p) - y * np.sin(p), x * np.sin(p) + y * np.cos(p)
    lat = np.rad2deg(np.arcsin(np.clip(z, -1, 1)))
    lon = np.rad2deg(np.arctan2(y, x)) - 360.0 * hours / 24.0
    return _unit(lat, lon)


def leo_swath(
    latitudes: Sequence[float] | np.ndarray,
    longitudes: Sequence[float] | np.ndarray,
    times: Any,
    *,
    altitude_km: float = 800.0,
    inclination_deg: float = 75.0,
    fov_deg: float = 5.0,
    phase_deg: float = 0.0,
    samples_per_hour: int = 60,
    duration: str | pd.Timedelta | None = None,
    epoch: Any = None,
) -> xr.DataArray:
    """Return the cells seen by a low-Earth-orbit satellite around each time.

    The swath of time ``t`` gathers the samples taken during ``[t - duration / 2,
    t + duration / 2)``, so each observation lies within half a step of its model time.

    Parameters
    ----------
    latitudes : sequence of float
        The grid latitudes in degrees north (either order), with shape ``(H,)``.
    longitudes : sequence of float
        The grid longitudes in degrees east (any convention), with shape ``(W,)``.
    times : array-like of datetime
        The times, with shape ``(T,)``.
    altitude_km, inclination_deg, fov_deg, phase_deg : float
        The orbit (Appa: 800 km, 75 degrees, 5 degrees, 0).
    samples_per_hour : int
        Sub-satellite points per hour (Appa: 60).
    duration : str or pandas.Timedelta, optional
        The span of each swath; the spacing of ``times`` (1 h for a single time) when None.
    epoch : datetime-like, optional
        The time of the orbit's origin (phase 0, latitude 0); by default the start of the
        first swath, ``times[0] - duration / 2``.

    Returns
    -------
    DataArray
        Boolean, over ``(time, latitude, longitude)``; the orbit parameters are attributes.

    Raises
    ------
    ValueError
        If a parameter is out of range.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> lat, lon = np.linspace(90, -90, 91), np.arange(180) * 2.0
    >>> mask = leo_swath(lat, lon, pd.date_range("2021-01-01", periods=2, freq="1h"))
    >>> mask.dims, 0.03 < float(mask.mean()) < 0.09
    (('time', 'latitude', 'longitude'), True)
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    lon = np.asarray(longitudes, dtype=np.float64)
    check_latitudes(lat, name="grid")
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
    if altitude_km <= 0 or not 0 <= inclination_deg <= 180 or not 0 < fov_deg < 180:
        msg = (
            "altitude_km must be positive, inclination_deg within [0, 180] and fov_deg within"
            f" (0, 180); found {altitude_km}, {inclination_deg} and {fov_deg}"
        )
        raise ValueError(msg)
    if samples_per_hour < 1 or len(index) == 0:
        msg = (
            f"samples_per_hour and len(times) must be >= 1; found {samples_per_hour}, {len(index)}"
        )
        raise ValueError(msg)
    if duration is None:
        duration = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta("1h")
    duration = pd.Timedelta(duration)
    if duration <= pd.Timedelta(0):
        msg = f"duration must be positive; found {duration}"
        raise ValueError(msg)
    epoch = index[0] - duration / 2 if epoch is None else pd.Timestamp(epoch)
    span = duration / pd.Timedelta("1h")
    n = max(1, round(span * samples_per_hour))
    period = orbital_period(altitude_km)
    grid = _unit(*np.meshgrid(lat, np.mod(lon, 360.0), indexing="ij")).reshape(-1, 3)
    tree = cKDTree(grid)
    radius = 2 * np.sin(np.deg2rad(fov_deg) / 2)
    mask = np.zeros((len(index), grid.shape[0]), dtype=bool)
    for i, t in enumerate(index):
        start = (t - duration / 2 - epoch) / pd.Timedelta("1h")
        points = _subsatellite(start + np.arange(n) * span / n, period, inclination_deg, phase_deg)
        hits = tree.query_ball_point(points, radius, return_sorted=False)
        mask[i, np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])] = True
    attrs = {
        "long_name": "cells seen by a low-Earth-orbit satellite",
        "altitude_km": altitude_km,
        "inclination_deg": inclination_deg,
        "fov_deg": fov_deg,
        "phase_deg": phase_deg,
        "samples_per_hour": samples_per_hour,
        "duration": str(duration),
        "epoch": str(epoch),
    }
    coords = {
        "time": ("time", index.values, COORD_ATTRS["time"]),
        "latitude": ("latitude", lat, COORD_ATTRS["latitude"]),
        "longitude": ("longitude", lon, COORD_ATTRS["longitude"]),
    }
    data = mask.reshape(len(index), len(lat), len(lon))
    return xr.DataArray(data, dims=("time", "latitude", "longitude"), coords=coords, attrs=attrs)
