"""Diagnostics of the shallow-water testbed: exact area weights, energy, persistence, mass.

Re-exported by :mod:`xappa.testbeds.shallow_water`.
"""

from __future__ import annotations

__all__ = ["area_weights", "diagnose"]

import math

import numpy as np
import xarray as xr
from torch_harmonics.quadrature import clenshaw_curtiss_weights

DIMS = ("trajectory", "time", "latitude", "longitude")
VARIABLES = {
    "geopotential": ("geopotential", "m2 s-2", "Geopotential (full field)"),
    "u_component_of_wind": ("eastward_wind", "m s-1", "Eastward wind"),
    "v_component_of_wind": ("northward_wind", "m s-1", "Northward wind"),
}


def area_weights(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Return the exact quadrature weights of the solver's grid, with mean 1 over latitude.

    ``ds.weighted(area_weights(ds)).mean(("latitude", "longitude"))`` is then the exact
    global mean of any field the solver resolves (Clenshaw-Curtis quadrature); cosine weights
    are only approximate on a grid that includes the poles.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Data on the testbed grid, with a ``latitude`` coordinate from 90 to -90.

    Returns
    -------
    xarray.DataArray
        The weights, with dimension ``latitude``.

    Examples
    --------
    >>> from xappa.testbeds.shallow_water import area_weights, simulate
    >>> ds = simulate(trajectories=1, days=1 / 24, nlat=16, nlon=32, spinup_days=0)
    >>> mean = ds.geopotential.weighted(area_weights(ds)).mean(("latitude", "longitude"))
    >>> round(float(mean.isel(trajectory=0, time=0)))  # g times the mean depth of 10 km
    98062
    """
    if "latitude" not in ds.coords:
        msg = f"ds is missing coordinate 'latitude'; found {list(ds.coords)}"
        raise KeyError(msg)
    lat = np.asarray(ds["latitude"], dtype=np.float64)
    expected = np.linspace(90.0, -90.0, lat.size)
    if lat.size < 2 or not np.allclose(lat, expected, atol=1e-6):
        msg = (
            f"ds latitude must be the equiangular grid from 90 to -90 with {lat.size} points; "
            f"found {lat[:2].tolist()} ... {lat[-1:].tolist()}"
        )
        raise ValueError(msg)
    _, weights = clenshaw_curtiss_weights(lat.size, -1, 1)
    weights = np.asarray(weights, dtype=np.float64)[::-1]
    return xr.DataArray(weights / weights.mean(), coords={"latitude": ds["latitude"]})


def diagnose(ds: xr.Dataset) -> dict[str, float]:
    """Summarize a testbed dataset: winds, energy, persistence and mass conservation.

    Geopotential anomalies are departures from the climatology, estimated as the mean over
    trajectories, time and longitude at each latitude (the statistics of the testbed are
    zonally symmetric, and this estimate stays unbiased on short samples); lag correlations
    pool all trajectories, times and grid points with area weights.

    Parameters
    ----------
    ds : xarray.Dataset
        The output of :func:`xappa.testbeds.shallow_water.simulate` (or its zarr copy).

    Returns
    -------
    dict
        ``peak_wind`` (m s-1), ``kinetic_energy`` (area- and time-mean, J kg-1),
        ``geopotential_std`` (m2 s-2), ``lag1h_correlation``, ``lag24h_correlation`` (NaN
        when the trajectories are too short) and ``mass_drift`` (the largest relative change
        of the global-mean geopotential in any trajectory).

    Examples
    --------
    >>> from xappa.testbeds.shallow_water import diagnose, simulate
    >>> stats = diagnose(simulate(trajectories=1, days=0.5, nlat=16, nlon=32, spinup_days=0))
    >>> round(stats["peak_wind"]), stats["mass_drift"] < 1e-6
    (40, True)
    """
    missing = [name for name in VARIABLES if name not in ds]
    if missing:
        msg = f"ds is missing variables {missing}; found {list(ds.data_vars)}"
        raise KeyError(msg)
    w = area_weights(ds).values[:, None] / ds.sizes["longitude"] / ds.sizes["latitude"]
    phi, u, v = (ds[name].transpose(*DIMS).values.astype(np.float64) for name in VARIABLES)
    mean = (phi * w).sum((-2, -1))
    anomaly = phi - phi.mean((0, 1, 3))[:, None]

    def lag_correlation(lag: int) -> float:
        if lag >= phi.shape[1]:
            return math.nan
        a, b = anomaly[:, :-lag], anomaly[:, lag:]
        cov = (a * b * w).sum()
        return float(cov / math.sqrt((a * a * w).sum() * (b * b * w).sum()))

    return {
        "peak_wind": float(np.sqrt(u**2 + v**2).max()),
        "kinetic_energy": float((0.5 * (u**2 + v**2) * w).sum((-2, -1)).mean()),
        "geopotential_std": float(np.sqrt((anomaly**2 * w).sum((-2, -1)).mean())),
        "lag1h_correlation": lag_correlation(1),
        "lag24h_correlation": lag_correlation(24),
        "mass_drift": float(np.abs(mean / mean[:, :1] - 1).max()),
    }
