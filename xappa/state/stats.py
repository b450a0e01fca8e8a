r"""Per-channel standardization statistics, computed lazily with dask, and their use on tensors.

By default the statistics follow Appa: for each time step, the unweighted spatial NaN-mean of
:math:`x` and of :math:`x^2`; both averaged over time; then
:math:`\mu = E[x]` and :math:`s = \sqrt{\max(E[x^2] - E[x]^2, 0)}`, at least ``min_std``.
Cells that are NaN (e.g. sea-surface temperature over land) are ignored. Weighting by
:math:`\cos(\text{latitude})` is an option.

The result is a small Dataset laid out like Appa's statistics store: one variable per state
variable, over ``(statistic,)`` or ``(statistic, level)``, with ``statistic = ["mean", "std"]``.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
   Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "compute_stats",
    "read_stats",
    "standardize",
    "stats_to_tensors",
    "unstandardize",
    "write_stats",
]

import os
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from xappa.core.latitude import cos_weights
from xappa.state.convert import select_state
from xappa.state.spec import StateSpec
from xappa.state.units import units_conversion

_WEIGHTINGS = ("none", "cos_lat")


def compute_stats(
    ds: xr.Dataset,
    spec: StateSpec,
    *,
    times: Any = None,
    weighting: str = "none",
    min_std: float = 1e-32,
    compute: bool = True,
) -> xr.Dataset:
    r"""Compute per-channel means and standard deviations of a Dataset, chunk by chunk.

    Parameters
    ----------
    ds : Dataset
        The data, as for :func:`xappa.state.select_state` (NumPy or dask backed; the time
        step is not checked). Values are converted to the spec's units first.
    spec : StateSpec
        The state whose channels get statistics.
    times : array-like of datetime, optional
        The times to average over (all by default).
    weighting : {"none", "cos_lat"}
        Appa's unweighted spatial means, or area weights :math:`\cos(\text{latitude})`
        (:func:`xappa.core.latitude.cos_weights`).
    min_std : float
        The smallest standard deviation returned.
    compute : bool
        Whether to compute the result (else it stays a lazy dask-backed Dataset).

    Returns
    -------
    Dataset
        One float64 variable per spec variable, over ``(statistic,)`` or
        ``(statistic, level)``, with ``statistic = ["mean", "std"]`` and the variable's units.

    Examples
    --------
    >>> from xappa.state.spec import era5_spec
    >>> from xappa.testing import mock_era5
    >>> spec = era5_spec(nlat=8, nlon=16, level_variables=[])
    >>> stats = compute_stats(mock_era5(nlat=8, nlon=16, chunks={"time": 1}), spec)
    >>> stats["2m_temperature"].dims, list(stats.statistic.values)
    (('statistic',), ['mean', 'std'])
    """
    if weighting not in _WEIGHTINGS:
        msg = f"weighting must be one of {list(_WEIGHTINGS)}; found {weighting!r}"
        raise ValueError(msg)
    if not min_std >= 0:
        msg = f"min_std must be non-negative; found {min_std}"
        raise ValueError(msg)
    state, info = select_state(ds, spec, times=times, check_step=False)
    space = ("latitude", "longitude")
    lat = state["latitude"]
    weights = xr.DataArray(cos_weights(lat.values), coords=lat.coords, dims=lat.dims)
    out = {}
    for v in spec.variables:
        x = state[v].astype(np.float64)
        if weighting == "none":
            m1, m2 = x.mean(space, skipna=True), (x**2).mean(space, skipna=True)
        else:
            m1 = x.weighted(weights).mean(space, skipna=True)
            m2 = (x**2).weighted(weights).mean(space, skipna=True)
        mean, square = m1.mean("time", skipna=True), m2.mean("time", skipna=True)
        std = np.sqrt((square - mean**2).clip(min=0.0)).clip(min=min_std)
        stat = xr.concat([mean, std], dim="statistic", coords="minimal", compat="override")
        attrs = {k: state[v].attrs[k] for k in ("units", "long_name") if k in state[v].attrs}
        out[v] = stat.assign_attrs(attrs).drop_vars("time", errors="ignore")
    stats = xr.Dataset(out).assign_coords(statistic=np.array(["mean", "std"], dtype=object))
    stats.statistic.attrs["long_name"] = "statistic"
    times_used = info.times
    stats.attrs.update(
        xappa_spec=spec.name,
        weighting=weighting,
        time_start=str(times_used[0]) if len(times_used) else "",
        time_end=str(times_used[-1]) if len(times_used) else "",
        n_times=len(times_used),
        method="time mean of spatial NaN-means of x and x**2; std = sqrt(E[x2] - E[x]**2)",
    )
    return stats.compute() if compute else stats


def _engine(path: str | os.PathLike[str]) -> str:
    suffix = os.fspath(path).rstrip("/").rsplit(".", 1)[-1].lower()
    if suffix in ("nc", "nc4", "netcdf"):
        return "netcdf"
    if suffix == "zarr":
        return "zarr"
    msg = f"path must end in .nc or .zarr; found {os.fspath(path)!r}"
    raise ValueError(msg)


def write_stats(stats: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write statistics to netCDF (``.nc``) or zarr (``.zarr``), replacing what is there.

    Parameters
    ----------
    stats : Dataset
        As returned by :func:`compute_stats`.
    path : str or path-like
        The file or store.
    """
    if _engine(path) == "netcdf":
        try:
            import netCDF4  # noqa: F401
        except ImportError as err:
            msg = "writing statistics to netCDF requires netCDF4; pip install 'xappa[io]'"
            raise ImportError(msg) from err
        stats.to_netcdf(path)
    else:
        # zarr v3 has no stable fixed-width string type: store string coordinates as objects.
        strings = {k: v.astype(object) for k, v in stats.coords.items() if v.dtype.kind == "U"}
        stats.assign_coords(strings).to_zarr(path, mode="w", consolidated=False)


def read_stats(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read statistics written by :func:`write_stats` (or Appa's statistics zarr) into memory.

    Parameters
    ----------
    path : str or path-like
        A ``.nc`` file or ``.zarr`` store.

    Returns
    -------
    Dataset
        The statistics, loaded.

    Raises
    ------
    KeyError
        If the data has no ``statistic`` coordinate with ``mean`` and ``std``.
    """
    if _engine(path) == "netcdf":
        with xr.open_dataset(path) as opened:
            stats = opened.load()
    else:
        stats = xr.open_zarr(path, consolidated=False).load()
    found = [str(s) for s in stats.coords.get("statistic", xr.DataArray([])).values]
    if not {"mean", "std"} <= set(found):
        msg = f"statistics must have a 'statistic' coordinate with 'mean' and 'std'; found {found}"
        raise KeyError(msg)
    return stats


def stats_to_tensors(
    stats: xr.Dataset, spec: StateSpec, *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Return the mean and standard deviation of each channel of ``spec``.

    Statistics stored in other (known) units than the spec's are converted.

    Parameters
    ----------
    stats : Dataset
        As returned by :func:`compute_stats` or :func:`read_stats`; extra variables and
        levels are allowed.
    spec : StateSpec
        The channel layout.
    dtype : torch.dtype
        The tensors' dtype.

    Returns
    -------
    tuple of Tensor
        ``mean`` and ``std``, each with shape ``(C,)``.

    Raises
    ------
    KeyError
        If a variable or level of the spec has no statistics.
    """
    parts = []
    for v in spec.variables:
        if v not in stats.data_vars:
            found = sorted(map(str, stats.data_vars))
            msg = f"stats are missing variable {v!r}; found {found}"
            raise KeyError(msg)
        da = stats[v]
        pair = da.sel(statistic=["mean", "std"])
        if v in spec.level_variables:
            levels = np.asarray(da["level"].values, dtype=np.float64)
            positions = []
            for level in spec.levels:
                hit = np.flatnonzero(np.isclose(levels, level))
                if hit.size == 0:
                    msg = f"stats of {v!r} are missing level {level:g}; found {levels.tolist()}"
                    raise KeyError(msg)
                positions.append(int(hit[0]))
            values = pair.transpose("statistic", "level").values[:, positions]
        else:
            values = pair.values.reshape(2, 1)
        values = values.astype(np.float64)
        if v in spec.units and "units" in da.attrs:
            conv = units_conversion(str(da.attrs["units"]), spec.units[v], name=f"stats {v!r}")
            values = np.stack([conv.apply(values[0]), values[1] * abs(conv.scale)])
        parts.append(values)
    mean, std = np.concatenate(parts, axis=1)
    return torch.as_tensor(mean, dtype=dtype), torch.as_tensor(std, dtype=dtype)


def _check_channels(x: Tensor, mean: Tensor, std: Tensor, name: str) -> None:
    c = mean.shape[0] if mean.ndim == 1 else -1
    if x.ndim < 3 or mean.ndim != 1 or std.shape != mean.shape or x.shape[-3] != c:
        msg = (
            f"{name} must have shape (..., C, H, W) with mean and std of shape (C,); found"
            f" {tuple(x.shape)}, {tuple(mean.shape)} and {tuple(std.shape)}"
        )
        raise ValueError(msg)


def standardize(x: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    r"""Standardize a state, :math:`(x - \mu) / s`, then set NaN to 0 as Appa does.

    Parameters
    ----------
    x : Tensor
        The state in physical units, with shape ``(..., C, H, W)``.
    mean : Tensor
        The channel means, with shape ``(C,)``.
    std : Tensor
        The channel standard deviations, with shape ``(C,)``.

    Returns
    -------
    tuple of Tensor
        The standardized state with NaN replaced by 0 (the channel mean), with the shape of
        ``x``; and the boolean NaN mask, with the same shape, to report or restore them.
    """
    _check_channels(x, mean, std, "x")
    m = mean.to(x)[:, None, None]
    s = std.to(x)[:, None, None]
    z = (x - m) / s
    nan = torch.isnan(z)
    return z.masked_fill(nan, 0.0), nan


def unstandardize(
    z: Tensor, mean: Tensor, std: Tensor, *, nan_mask: Tensor | None = None
) -> Tensor:
    r"""Invert :func:`standardize`: :math:`x = \mu + s z`.

    Parameters
    ----------
    z : Tensor
        The standardized state, with shape ``(..., C, H, W)``.
    mean : Tensor
        The channel means, with shape ``(C,)``.
    std : Tensor
        The channel standard deviations, with shape ``(C,)``.
    nan_mask : Tensor, optional
        Where to put NaN back, boolean, broadcastable to the shape of ``z``.

    Returns
    -------
    Tensor
        The state in physical units, with the shape of ``z``.
    """
    _check_channels(z, mean, std, "z")
    x = z * std.to(z)[:, None, None] + mean.to(z)[:, None, None]
    return x if nan_mask is None else x.masked_fill(nan_mask, float("nan"))
