"""Synthetic observations sampled from a gridded truth, with seeded noise of known std.

The results are ordinary observation Datasets (points or gridded) with CF
``ancillary_variables`` holding the noise standard deviation, ready for
:func:`xappa.observations.prepare_observations`.
"""

from __future__ import annotations

__all__ = ["sample_gridded", "sample_points"]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xappa.core.operators import bilinear_stencil, nearest_stencil
from xappa.observations.validate import find_point_coord
from xappa.state.coords import find_coord


def _select(
    truth: xr.Dataset, variables: Sequence[str] | None, times: Any, levels: Any
) -> tuple[xr.Dataset, list[str]]:
    if not isinstance(truth, xr.Dataset):
        msg = f"truth must be an xarray.Dataset; found {type(truth).__name__}"
        raise TypeError(msg)
    names = [str(v) for v in truth.data_vars] if variables is None else list(variables)
    missing = [v for v in names if v not in truth.data_vars]
    if missing:
        msg = f"truth is missing variable(s) {missing}; found {sorted(map(str, truth.data_vars))}"
        raise KeyError(msg)
    truth = truth[names]
    if times is not None:
        truth = truth.sel({find_coord(truth, "time", name="truth"): times})
    if levels is not None:
        truth = truth.sel({find_coord(truth, "vertical", name="truth"): levels})
    return truth, names


def _error(error_std: float | Mapping[str, float], name: str) -> float:
    value = error_std.get(name) if isinstance(error_std, Mapping) else error_std
    if value is None or not np.isfinite(value) or value < 0:
        msg = f"error_std for variable {name!r} must be a non-negative number; found {value}"
        raise ValueError(msg)
    return float(value)


def _with_error(var: xr.DataArray, name: str, std: float) -> dict[str, xr.DataArray]:
    std_name = var.attrs.get("standard_name", name)
    err = xr.DataArray(
        std,
        attrs={
            "standard_name": f"{std_name} standard_error",
            "long_name": f"error standard deviation of {name}",
            **({"units": var.attrs["units"]} if "units" in var.attrs else {}),
        },
    )
    var.attrs = {**var.attrs, "ancillary_variables": f"{name}_error"}
    return {name: var, f"{name}_error": err}


def sample_points(
    truth: xr.Dataset,
    locations: xr.Dataset,
    *,
    error_std: float | Mapping[str, float],
    variables: Sequence[str] | None = None,
    times: Any = None,
    levels: Any = None,
    seed: int = 0,
    method: str = "bilinear",
) -> xr.Dataset:
    """Sample a gridded truth at locations and add Gaussian noise: synthetic point data.

    Parameters
    ----------
    truth : Dataset
        Gridded fields over ``(time, [level,] latitude, longitude)``; longitudes increasing.
    locations : Dataset
        Point locations along one dimension (e.g. from :func:`xappa.observations.stations`),
        with latitude and longitude coordinates.
    error_std : float or mapping of str to float
        The noise standard deviation in each variable's units. With 0 the values are exact,
        but the ancillary error is 0 too, which :func:`xappa.observations.prepare_observations` rejects: give it
        ``obs_error=`` then.
    variables : sequence of str, optional
        The variables to sample (all by default).
    times, levels : array-like, optional
        The times and levels to sample (all by default).
    seed : int
        The seed of the noise.
    method : {"bilinear", "nearest"}
        How the truth is read at the locations (as the observation operator does).

    Returns
    -------
    Dataset
        Variables over ``(time, <point dim>, [level])`` with the locations' coordinates, and
        ``<name>_error`` ancillary variables holding ``error_std``.

    Examples
    --------
    >>> from xappa.observations import stations
    >>> from xappa.testing import mock_era5
    >>> truth = mock_era5(variables=["2m_temperature"], nlat=8, nlon=16, ntime=2)
    >>> obs = sample_points(truth, stations([10.0], [20.0]), error_std=0.5, seed=0)
    >>> obs["2m_temperature"].dims, obs["2m_temperature"].attrs["ancillary_variables"]
    (('time', 'station'), '2m_temperature_error')
    """
    truth, names = _select(truth, variables, times, levels)
    lat_name = find_point_coord(locations, "latitude")
    lon_name = find_point_coord(locations, "longitude")
    (dim,) = locations[lat_name].dims
    glat, glon = find_coord(truth, "latitude", name="truth"), find_coord(truth, "longitude")
    plat = torch.as_tensor(locations[lat_name].values, dtype=torch.float64)
    plon = torch.as_tensor(locations[lon_name].values, dtype=torch.float64)
    grid = (torch.tensor(truth[glat].values), torch.tensor(truth[glon].values))
    if method == "nearest":
        cells, weights = nearest_stencil(plat, plon, *grid)[:, None], torch.ones(len(plat), 1)
    else:
        cells, weights = bilinear_stencil(plat, plon, *grid)
    cells, weights = cells.numpy(), weights.numpy()
    rng = np.random.default_rng(seed)
    data: dict[str, xr.DataArray] = {}
    for v in names:
        var = truth[v]
        lead = [d for d in var.dims if d not in (glat, glon)]
        values = var.transpose(*lead, glat, glon).values
        flat = values.reshape(*values.shape[:-2], -1).astype(np.float64)
        out = (flat[..., cells] * weights).sum(-1)
        std = _error(error_std, v)
        out = out + std * rng.standard_normal(out.shape)
        sampled = xr.DataArray(out.astype(var.dtype), dims=(*lead, dim), attrs=dict(var.attrs))
        sampled = sampled.assign_coords({d: var[d] for d in lead})
        order = [d for d in lead if d != "level"] + [dim] + [d for d in lead if d == "level"]
        data.update(_with_error(sampled.transpose(*order), v, std))
    out = xr.Dataset(data).assign_coords(locations.coords)
    out.attrs = {"featureType": "timeSeries", "source": "xappa.observations.sample_points"}
    return out


def sample_gridded(
    truth: xr.Dataset,
    mask: xr.DataArray,
    *,
    error_std: float | Mapping[str, float],
    variables: Sequence[str] | None = None,
    times: Any = None,
    levels: Any = None,
    seed: int = 0,
) -> xr.Dataset:
    """Keep a gridded truth where ``mask`` is true (NaN elsewhere) and add Gaussian noise.

    Parameters
    ----------
    truth : Dataset
        Gridded fields over ``(time, [level,] latitude, longitude)``.
    mask : DataArray
        Boolean, over ``(latitude, longitude)`` or ``(time, latitude, longitude)`` with the
        truth's coordinates (e.g. from :func:`xappa.observations.leo_swath`).
    error_std : float or mapping of str to float
        The noise standard deviation in each variable's units (0: see :func:`sample_points`).
    variables : sequence of str, optional
        The variables (all by default).
    times, levels : array-like, optional
        The times and levels (all by default).
    seed : int
        The seed of the noise.

    Returns
    -------
    Dataset
        The masked, noisy fields with ``<name>_error`` ancillary variables.

    Raises
    ------
    ValueError
        If the mask's coordinates differ from the truth's.

    Examples
    --------
    >>> from xappa.testing import mock_era5
    >>> truth = mock_era5(variables=["2m_temperature"], nlat=8, nlon=16, ntime=2)
    >>> obs = sample_gridded(truth, truth.latitude > 0, error_std=0.5)
    >>> int(obs["2m_temperature"].notnull().sum())
    128
    """
    truth, names = _select(truth, variables, times, levels)
    try:
        truth_aligned, mask = xr.align(truth, mask.astype(bool), join="exact")
    except ValueError as err:
        msg = f"mask must have the coordinates of truth (same grid and times); {err}"
        raise ValueError(msg) from None
    rng = np.random.default_rng(seed)
    data: dict[str, xr.DataArray] = {}
    for v in names:
        var = truth_aligned[v]
        std = _error(error_std, v)
        noise = std * rng.standard_normal(var.shape)
        noisy = (var + noise.astype(var.dtype)).where(mask)
        noisy.attrs = dict(var.attrs)
        data.update(_with_error(noisy.transpose(*var.dims), v, std))
    return xr.Dataset(data, attrs={"source": "xappa.observations.sample_gridded"})
