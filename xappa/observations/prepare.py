"""Validate observation Datasets once and build the per-step operators of a window."""

from __future__ import annotations

__all__ = ["prepare_observations"]

from collections.abc import Sequence
from typing import Any

import torch
import xarray as xr
from torch import Tensor

from xappa.observations.errors import ObsError, check_mapping
from xappa.observations.gridded import gridded_table
from xappa.observations.operator import ObservationSet, build_steps
from xappa.observations.points import points_table
from xappa.observations.table import ObsTable
from xappa.observations.validate import (
    assign_steps,
    check_plausible,
    is_gridded,
    model_times,
    observed_variables,
)
from xappa.state.spec import StateSpec
from xappa.state.stats import stats_to_tensors

_METHODS = ("bilinear", "nearest")


def _stats(stats: xr.Dataset | tuple[Any, Any], spec: StateSpec) -> tuple[Tensor, Tensor]:
    if isinstance(stats, xr.Dataset):
        return stats_to_tensors(stats, spec, dtype=torch.float64)
    if not isinstance(stats, tuple | list) or len(stats) != 2:
        msg = f"stats must be a Dataset or a (mean, std) pair; found {type(stats).__name__}"
        raise TypeError(msg)
    mean, std = (torch.as_tensor(s, dtype=torch.float64).reshape(-1) for s in stats)
    c = spec.n_channels
    if mean.shape != (c,) or std.shape != (c,):
        msg = (
            f"stats mean and std must each have shape ({c},); found {tuple(mean.shape)} and"
            f" {tuple(std.shape)}"
        )
        raise ValueError(msg)
    if not bool((std > 0).all()):
        msg = "stats std must be positive for every channel; found zero or negative entries"
        raise ValueError(msg)
    return mean, std


def prepare_observations(
    obs: xr.Dataset | Sequence[xr.Dataset],
    spec: StateSpec,
    stats: xr.Dataset | tuple[Any, Any],
    *,
    window: tuple[Any, Any] | None = None,
    times: Any = None,
    obs_error: ObsError = None,
    method: str = "bilinear",
    regrid: str | None = "linear",
    regrid_backend: str = "auto",
    dtype: torch.dtype = torch.float32,
    check_values: bool = True,
) -> ObservationSet:
    r"""Validate observations once and build, per model time step, operator, values, variances.

    Two layouts are accepted, alone or mixed in a list:

    * **gridded**: variables over ``(time, [level,] latitude, longitude)`` with NaN where not
      observed, on the spec grid (either latitude order, either longitude convention) or on
      another rectilinear grid, regridded to the spec's (xESMF when importable, else
      xarray-regrid);
    * **points**: variables along point dimensions (``obs``, or ``(time, station)``, ...) with
      ``time``, ``latitude``, ``longitude`` and, for level variables, ``level`` coordinates, as
      CF point data; read at their exact location by bilinear interpolation (longitude seam
      included; poleward of the outermost grid latitude, that row's values), or from the
      nearest cell.

    Each observation is assigned to the nearest model time step, within half a step (exact
    half-way times go to the earlier step); farther ones raise. NaN values are dropped and
    counted (``counts["n_nan"]``); an all-NaN variable raises. Values and error standard
    deviations are converted to the spec's units, then standardized with the channel's mean
    and std. A variable whose values mostly lie more than 10 standard deviations from the
    channel's mean (a units attribute that does not match the numbers, e.g. degC values
    labelled ``K``) raises, unless ``check_values=False``
    (:func:`~xappa.observations.validate.check_plausible`).

    Parameters
    ----------
    obs : Dataset or sequence of Dataset
        The observations. Variables must be spec variables; error standard deviations may be
        CF ancillary variables (``standard_name`` ``"<name> standard_error"``).
    spec : StateSpec
        The model state.
    stats : Dataset or (mean, std)
        Standardization statistics: a Dataset as :func:`xappa.state.stats.compute_stats` returns,
        or tensors with shape ``(C,)`` each, in the spec's units.
    window : (start, end), optional
        The window's first and last model times (both included).
    times : array-like of datetime, optional
        The model times, instead of ``window``.
    obs_error : float or mapping of str to float, optional
        Error standard deviations in each variable's units (in the obs Dataset); they take
        precedence over ancillary variables.
    method : {"bilinear", "nearest"}
        How points are read.
    regrid : str or None
        Regridding method for gridded obs off the spec grid (``"linear"``, ``"nearest"``,
        ``"cubic"``, ``"conservative"``); None raises instead.
    regrid_backend : {"auto", "xesmf", "xarray-regrid"}
        The regridding backend.
    dtype : torch.dtype
        The dtype of values, variances and interpolation weights.
    check_values : bool
        Refuse variables whose values mostly lie more than
        :data:`~xappa.observations.validate.PLAUSIBLE_SIGMAS` standard deviations from the
        statistics' mean; pass False to use values you know are right (e.g. an extreme
        event far outside the training climate).

    Returns
    -------
    ObservationSet
        One :class:`~xappa.observations.StepObservation` (or None) per model time, and counts.

    Raises
    ------
    KeyError
        If a variable or level is not in the spec, a coordinate is missing, or ``obs_error``
        names a variable that is not observed.
    ValueError
        For observations outside the window, unknown or inconsistent units, all-NaN
        variables, missing, zero or negative error standard deviations, latitudes outside
        ``[-90, 90]``, a grid that differs from the spec's with ``regrid=None``, or (with
        ``check_values``) values mostly far from the climatology; that message names the
        variable, its units and the likely unit mistake.
    ImportError
        If gridded obs need regridding and neither xESMF nor xarray-regrid is importable.

    Examples
    --------
    >>> from xappa.observations import sample_points, stations
    >>> from xappa.state.spec import era5_spec
    >>> from xappa.state.stats import compute_stats
    >>> from xappa.testing import mock_era5
    >>> spec = era5_spec(nlat=8, nlon=16, level_variables=(), surface_variables=["2m_temperature"])
    >>> truth = mock_era5(variables=["2m_temperature"], nlat=8, nlon=16, ntime=2)
    >>> sites = stations([48.8, -33.9], [2.35, 151.2], names=["paris", "sydney"])
    >>> obs = sample_points(truth, sites, error_std=0.5, seed=0)
    >>> stats = compute_stats(truth, spec)
    >>> o = prepare_observations(obs, spec, stats, window=(truth.time[0], truth.time[-1]))
    >>> o.n_obs, tuple(o[0].operator.index.shape)
    (4, (2, 4))
    """
    if method not in _METHODS:
        msg = f"method must be one of {list(_METHODS)}; found {method!r}"
        raise ValueError(msg)
    datasets = [obs] if isinstance(obs, xr.Dataset) else list(obs)
    if not datasets or not all(isinstance(d, xr.Dataset) for d in datasets):
        msg = "obs must be an xarray.Dataset or a non-empty sequence of them"
        raise TypeError(msg)
    steps_times = model_times(spec, window, times)
    names = set()
    for d in datasets:
        names |= set(observed_variables(d, spec))
    check_mapping(obs_error, names)
    mean, std = _stats(stats, spec)
    tables = []
    for d in datasets:
        if is_gridded(d):
            part = gridded_table(d, spec, obs_error, regrid=regrid, regrid_backend=regrid_backend)
        else:
            part = points_table(d, spec, obs_error)
        if check_values:
            check_plausible(part, d, spec, mean, std)
        tables.append(part)
    table = ObsTable.concat(tables)
    step = assign_steps(table.time, steps_times, spec.time_step)
    steps, counts = build_steps(
        table, step, spec, steps_times, mean, std, method=method, dtype=dtype
    )
    counts.attrs["sources"] = "; ".join(table.sources)
    return ObservationSet(spec, steps_times, steps, counts, method=method, sources=table.sources)
