"""Checks shared by gridded and point observations: coordinates, variables, units, times.

Every check raises a built-in exception whose message names the argument, what was expected
and what was found. Nothing here mutates its input.
"""

from __future__ import annotations

__all__ = [
    "PLAUSIBLE_SIGMAS",
    "assign_steps",
    "check_latitudes",
    "check_plausible",
    "find_point_coord",
    "is_gridded",
    "level_channels",
    "model_times",
    "observed_variables",
    "value_conversion",
]

from collections.abc import Sequence
from typing import Any

import cf_xarray  # noqa: F401 (registers the .cf accessor)
import numpy as np
import pandas as pd
import xarray as xr

from xappa.observations.table import ObsTable
from xappa.state.coords import COMMON_NAMES, find_coord
from xappa.state.spec import StateSpec
from xappa.state.units import UnitConversion, units_conversion

PLAUSIBLE_SIGMAS = 10.0
"""How far from the climatological mean, in climatological standard deviations, a value is
implausible.

The model's statistics are global per-channel moments (over space and time), so real values
stay well inside: the coldest 2 m temperature ever measured, -89 degC, lies about 4.5
standard deviations below ERA5's global mean, and a 900 hPa hurricane centre about 10 below
the mean sea-level pressure. The common unit mistakes land much farther: degC numbers labelled
K sit 12 to 15 standard deviations below the mean of 2 m temperature (about 30 aloft), hPa
labelled Pa about 90, geopotential height labelled geopotential about 20 at 500 hPa, g/kg
labelled kg/kg hundreds. A variable is refused only when more than half of its values lie
farther than this, so a few genuine extremes never trigger it."""

_LIKELY_UNITS = ("K", "degC", "Pa", "hPa", "kPa", "m2 s-2", "m", "kg kg-1", "g kg-1", "m s-1")
"""Units tried as the likely intended ones when values are implausible."""


def is_gridded(ds: xr.Dataset) -> bool:
    """Return whether ``ds`` has latitude and longitude as dimension coordinates.

    Parameters
    ----------
    ds : Dataset
        The observations.

    Returns
    -------
    bool
        True for gridded observations, False for scattered points.
    """
    try:
        find_coord(ds, "latitude", name="obs")
        find_coord(ds, "longitude", name="obs")
    except KeyError:
        return False
    return True


def find_point_coord(ds: xr.Dataset, role: str, *, required: bool = True) -> str | None:
    """Return the coordinate of ``role`` in point observations, by CF metadata or name.

    Parameters
    ----------
    ds : Dataset
        Point observations.
    role : {"latitude", "longitude", "time", "vertical"}
        The coordinate wanted.
    required : bool
        Whether a missing coordinate raises (else None is returned).

    Returns
    -------
    str or None
        The coordinate's name.

    Raises
    ------
    KeyError
        If no coordinate plays ``role`` and ``required``.
    ValueError
        If several do.
    """
    names = [str(n) for n in ds.coords]
    found = [n for n in ds.cf.coordinates.get(role, []) if n in names]
    if not found:
        lowered = {n.lower(): n for n in names}
        found = [lowered[c.lower()] for c in COMMON_NAMES[role] if c.lower() in lowered][:1]
    if len(found) > 1:
        msg = f"obs has several {role} coordinates {found}; expected one"
        raise ValueError(msg)
    if not found:
        if not required:
            return None
        msg = f"obs has no {role} coordinate; found coordinates {names}"
        raise KeyError(msg)
    return found[0]


def check_latitudes(lat: np.ndarray, *, name: str = "obs") -> None:
    """Check that latitudes are finite and within ``[-90, 90]``.

    Parameters
    ----------
    lat : ndarray
        Latitudes in degrees north, any shape.
    name : str
        What they belong to, for messages.

    Raises
    ------
    ValueError
        If a latitude is NaN or outside ``[-90, 90]``.
    """
    lat = np.asarray(lat, dtype=np.float64)
    bad = ~np.isfinite(lat) | (np.abs(lat) > 90.0)
    if bad.any():
        first = lat[bad].ravel()[0]
        msg = (
            f"{name} latitude must lie within [-90, 90] degrees north; found {first:g}"
            f" ({int(bad.sum())} value(s) outside)"
        )
        raise ValueError(msg)


def observed_variables(ds: xr.Dataset, spec: StateSpec) -> list[str]:
    """Return the variables of ``ds`` that are observations (not ancillary variables).

    Parameters
    ----------
    ds : Dataset
        The observations.
    spec : StateSpec
        The model state; every observed variable must be one of its variables.

    Returns
    -------
    list of str
        The observed variables, in the spec's order.

    Raises
    ------
    KeyError
        If a variable is not in the spec (and is no ancillary variable).
    ValueError
        If ``ds`` has no variable.
    """
    ancillary = set()
    for var in ds.data_vars.values():
        ancillary |= set(str(var.attrs.get("ancillary_variables", "")).split())
    names = [str(v) for v in ds.data_vars if str(v) not in ancillary]
    unknown = [v for v in names if v not in spec.variables]
    if unknown:
        msg = (
            f"obs variable(s) {unknown} are not in spec {spec.name!r}; expected among"
            f" {list(spec.variables)}"
        )
        raise KeyError(msg)
    if not names:
        msg = f"obs must hold at least one variable of spec {spec.name!r}; found none"
        raise ValueError(msg)
    return [v for v in spec.variables if v in names]


def value_conversion(var: xr.DataArray, name: str, spec: StateSpec) -> UnitConversion | None:
    """Return the conversion of an observed variable's units to the spec's.

    Parameters
    ----------
    var : DataArray
        The observed variable, with a ``units`` attribute when the spec has units for it.
    name : str
        Its name.
    spec : StateSpec
        The model state.

    Returns
    -------
    UnitConversion or None
        None when the spec gives no units for the variable.

    Raises
    ------
    ValueError
        If units are missing, unknown or not convertible.
    """
    if name not in spec.units:
        return None
    if "units" not in var.attrs:
        msg = (
            f"obs variable {name!r} has no units attribute; expected units convertible to"
            f" {spec.units[name]!r}"
        )
        raise ValueError(msg)
    return units_conversion(str(var.attrs["units"]), spec.units[name], name=f"obs {name!r}")


def level_channels(
    values: np.ndarray, units: str | None, variable: str, spec: StateSpec
) -> np.ndarray:
    """Return the channel of ``variable`` at each level, after converting the level units.

    Parameters
    ----------
    values : ndarray
        Levels, with shape ``(L,)``.
    units : str or None
        Their units; the spec's ``level_units`` when None.
    variable : str
        A level variable of the spec.
    spec : StateSpec
        The model state.

    Returns
    -------
    ndarray
        Channel indices, int64, with shape ``(L,)``.

    Raises
    ------
    KeyError
        If a level is not one of the spec's.
    ValueError
        If the level units do not convert to the spec's.
    """
    conv = units_conversion(units or spec.level_units, spec.level_units, name="obs level")
    found = conv.apply(np.asarray(values, dtype=np.float64))
    levels = np.asarray(spec.levels)
    out = np.empty(found.shape, dtype=np.int64)
    for i, level in enumerate(found):
        hit = np.flatnonzero(np.isclose(levels, level, rtol=1e-6, atol=1e-9))
        if hit.size == 0:
            msg = (
                f"obs variable {variable!r} has level {level:g} {spec.level_units}, not a level"
                f" of spec {spec.name!r}; expected among {list(spec.levels)}"
            )
            raise KeyError(msg)
        out[i] = spec.channel_index(variable, float(levels[hit[0]]))
    return out


def model_times(spec: StateSpec, window: Any = None, times: Any = None) -> pd.DatetimeIndex:
    """Return the model time steps of an assimilation window.

    Parameters
    ----------
    spec : StateSpec
        The model state, for its time step.
    window : tuple of datetime-like, optional
        ``(start, end)``, both included; ``end - start`` must be a multiple of the time step.
    times : array-like of datetime, optional
        The model times, unique and increasing, instead of ``window``.

    Returns
    -------
    DatetimeIndex
        The model times, with shape ``(T,)``.

    Raises
    ------
    ValueError
        If neither or both of ``window`` and ``times`` are given, or they are inconsistent.
    """
    if (window is None) == (times is None):
        msg = "give exactly one of window=(start, end) and times=[...]; found " + (
            "both" if window is not None else "neither"
        )
        raise ValueError(msg)
    step = pd.Timedelta(spec.time_step)
    if window is not None:
        if isinstance(window, str) or not isinstance(window, Sequence) or len(window) != 2:
            msg = f"window must be a (start, end) pair; found {type(window).__name__}"
            raise ValueError(msg)
        start, end = (pd.Timestamp(np.asarray(w, dtype="datetime64[ns]")[()]) for w in window)
        if end < start or (end - start) % step != pd.Timedelta(0):
            msg = (
                f"window must have end >= start, a multiple of the time step {step} apart;"
                f" found {start} to {end}"
            )
            raise ValueError(msg)
        return pd.date_range(start, end, freq=step)
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
    if len(index) == 0 or index.has_duplicates or not index.is_monotonic_increasing:
        msg = f"times must be unique, increasing and not empty; found {len(index)} value(s)"
        raise ValueError(msg)
    return index


def assign_steps(
    times: np.ndarray, steps: pd.DatetimeIndex, time_step: pd.Timedelta
) -> np.ndarray:
    """Return the model step of each observation time: the nearest, within half a step.

    An observation exactly half-way between two steps goes to the earlier one.

    Parameters
    ----------
    times : ndarray
        Observation times (datetime64), with shape ``(M,)``.
    steps : DatetimeIndex
        The model times, increasing, with shape ``(T,)``.
    time_step : pandas.Timedelta
        The model time step.

    Returns
    -------
    ndarray
        Step indices in ``[0, T)``, int64, with shape ``(M,)``.

    Raises
    ------
    ValueError
        If a time is missing (NaT) or farther than half a step from every model time (outside
        the window).
    """
    t = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    if np.isnat(np.asarray(times, dtype="datetime64[ns]")).any():
        msg = "obs times must all be valid datetimes; found NaT"
        raise ValueError(msg)
    s = steps.values.astype("datetime64[ns]").astype(np.int64)
    half = pd.Timedelta(time_step).value / 2
    k = np.clip(np.searchsorted(s, t, side="left"), 1, max(len(s) - 1, 1))
    if len(s) == 1:
        k = np.zeros_like(t)
    else:
        earlier = (t - s[k - 1]) <= (s[k] - t)
        k = np.where(earlier, k - 1, k)
    outside = np.abs(t - s[k]) > half
    if outside.any():
        first = pd.Timestamp(np.asarray(times, dtype="datetime64[ns]")[outside][0])
        msg = (
            f"obs have {int(outside.sum())} value(s) outside the window {steps[0]} to"
            f" {steps[-1]} (each must lie within half a time step, {pd.Timedelta(half)}, of a"
            f" model time); found {first}. Select them first, e.g. obs.sel(time=slice(start,"
            " end))"
        )
        raise ValueError(msg)
    return k.astype(np.int64)


def _far(values: np.ndarray, mean: np.ndarray, std: np.ndarray, sigmas: float) -> float:
    """Return the fraction of ``values`` more than ``sigmas`` standard deviations away."""
    return float(np.mean(np.abs(values - mean) / std > sigmas))


def _likely_units(
    values: np.ndarray,
    conv: UnitConversion,
    mean: np.ndarray,
    std: np.ndarray,
    sigmas: float,
) -> tuple[str, float] | None:
    """Return the common units that would put most values in range, and that fraction."""
    raw = conv.invert(values)
    best = None
    for units in _LIKELY_UNITS:
        try:
            other = units_conversion(units, conv.to_units)
        except ValueError:
            continue
        if np.isclose(other.scale, conv.scale) and np.isclose(other.offset, conv.offset):
            continue
        inside = 1.0 - _far(other.apply(raw), mean, std, sigmas)
        if inside > 0.5 and (best is None or inside > best[1]):
            best = (units, inside)
    return best


def check_plausible(
    table: ObsTable,
    ds: xr.Dataset,
    spec: StateSpec,
    mean: Any,
    std: Any,
    *,
    sigmas: float = PLAUSIBLE_SIGMAS,
) -> None:
    r"""Refuse a variable whose values mostly lie far from the model's climatology.

    After unit conversion, a value :math:`y` of channel :math:`c` is implausible when
    :math:`|y - \mu_c| > N s_c` (:data:`PLAUSIBLE_SIGMAS`, :math:`N = 10`). A variable with more
    than half of its values implausible almost always carries a wrong ``units`` attribute;
    the message then names the common units (K/degC, Pa/hPa, m2 s-2/m, kg kg-1/g kg-1, ...)
    that would put most of them in range.

    Parameters
    ----------
    table : ObsTable
        The observations of ``ds``, converted to the spec's units.
    ds : Dataset
        The observations as given, for the units each variable claims.
    spec : StateSpec
        The model state.
    mean, std : array-like
        The channel statistics in the spec's units, each with shape ``(C,)``.
    sigmas : float
        :math:`N`.

    Raises
    ------
    ValueError
        If more than half of a variable's values are implausible; the message names the
        variable, its units, and the likely mistake.
    """
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    for index in np.unique(table.variable):
        name = spec.variables[int(index)]
        rows = table.variable == index
        values, ch = table.value[rows], table.channel[rows]
        far = _far(values, mean[ch], std[ch], sigmas)
        if far <= 0.5:
            continue
        distance = float(np.median(np.abs(values - mean[ch]) / std[ch]))
        claimed = ds[name].attrs.get("units")
        conv = value_conversion(ds[name], name, spec)
        likely = None if conv is None else _likely_units(values, conv, mean[ch], std[ch], sigmas)
        if likely is not None:
            hint = (
                f"they look like values in {likely[0]!r} (read so, {likely[1]:.0%} of them lie "
                f"in range): set the units attribute to {likely[0]!r}"
            )
        else:
            hint = (
                "no common unit mistake (K/degC, Pa/hPa, m2 s-2/m, kg kg-1/g kg-1) explains "
                "them: check the data"
            )
        msg = (
            f"obs variable {name!r} has units {claimed!r}, but {far:.0%} of its {len(values)}"
            f" value(s) lie more than {sigmas:g} standard deviations from the model's"
            f" climatological mean (median distance {distance:.3g}); {hint}, or pass"
            " check_values=False to use them as they are"
        )
        raise ValueError(msg)
