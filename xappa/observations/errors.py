"""Observation error standard deviations: from an argument or CF ``ancillary_variables``.

For each observed variable the error standard deviation, in the variable's own units, is
looked up in this order:

1. ``obs_error[name]`` when ``obs_error`` is a mapping that names the variable;
2. ``obs_error`` itself when it is a number (the same for every variable);
3. a variable listed in the variable's ``ancillary_variables`` attribute whose
   ``standard_name`` ends with ``standard_error`` (the CF standard-name modifier), broadcast
   against the values and converted from its own ``units`` when it has some.

Without any of these the variable is rejected: a guess would weigh it arbitrarily.
"""

from __future__ import annotations

__all__ = ["ObsError", "ancillary_error", "check_errors", "check_mapping", "error_std"]

import numbers
from collections.abc import Mapping

import numpy as np
import xarray as xr

from xappa.state.units import units_conversion

ObsError = float | Mapping[str, float] | None
"""An ``obs_error=`` argument: one standard deviation, one per variable, or None."""

_SUFFIX = "standard_error"


def ancillary_error(ds: xr.Dataset, name: str) -> xr.DataArray | None:
    """Return the CF ``standard_error`` ancillary variable of ``ds[name]``, if any.

    Parameters
    ----------
    ds : Dataset
        The observations.
    name : str
        An observed variable.

    Returns
    -------
    DataArray or None
        The error standard deviation, in the units of ``ds[name]``.

    Raises
    ------
    KeyError
        If ``ancillary_variables`` names a variable that ``ds`` lacks.
    ValueError
        If units do not convert.
    """
    var = ds[name]
    for anc in str(var.attrs.get("ancillary_variables", "")).split():
        if anc not in ds.variables:
            msg = f"obs variable {name!r} lists ancillary variable {anc!r}, which obs lacks"
            raise KeyError(msg)
        err = ds[anc]
        if not str(err.attrs.get("standard_name", "")).endswith(_SUFFIX):
            continue
        units, target = err.attrs.get("units"), var.attrs.get("units")
        if units is not None and target is not None and units != target:
            # A standard deviation scales but has no offset (1 degC of error is 1 K).
            scale = abs(units_conversion(str(units), str(target), name=f"obs {anc!r}").scale)
            err = err * scale
        return err
    return None


def error_std(ds: xr.Dataset, name: str, obs_error: ObsError) -> xr.DataArray | float:
    """Return the error standard deviation of ``ds[name]`` in its own units.

    Parameters
    ----------
    ds : Dataset
        The observations.
    name : str
        An observed variable.
    obs_error : float, mapping of str to float, or None
        The ``obs_error=`` argument (see the module docstring for the precedence).

    Returns
    -------
    DataArray or float
        The standard deviation, broadcastable against ``ds[name]``.

    Raises
    ------
    ValueError
        If no error is given for the variable, or a given one is not positive.
    TypeError
        If ``obs_error`` has a bad type.
    """
    value: object = None
    if isinstance(obs_error, Mapping):
        value = obs_error.get(name)
    elif isinstance(obs_error, numbers.Real):
        value = obs_error
    elif obs_error is not None:
        msg = f"obs_error must be a number or a mapping; found {type(obs_error).__name__}"
        raise TypeError(msg)
    if value is not None:
        if not isinstance(value, numbers.Real):
            msg = f"obs_error[{name!r}] must be a number; found {type(value).__name__}"
            raise TypeError(msg)
        if not np.isfinite(value) or value <= 0:
            msg = f"obs_error for obs variable {name!r} must be positive; found {value}"
            raise ValueError(msg)
        return float(value)
    err = ancillary_error(ds, name)
    if err is None:
        msg = (
            f"obs variable {name!r} has no error standard deviation: give obs_error= (a number"
            " or a mapping by variable) or a CF ancillary variable with standard_name"
            " '<name> standard_error'"
        )
        raise ValueError(msg)
    return err


def check_errors(error: np.ndarray, name: str) -> None:
    """Check that error standard deviations (where values are observed) are positive.

    Parameters
    ----------
    error : ndarray
        Error standard deviations of the observed (finite) values, any shape.
    name : str
        The variable, for messages.

    Raises
    ------
    ValueError
        If an error is NaN, zero or negative.
    """
    bad = ~(error > 0) | ~np.isfinite(error)
    if bad.any():
        first = np.asarray(error)[bad].ravel()[0]
        msg = (
            f"error standard deviation of obs variable {name!r} must be positive and finite"
            f" where a value is observed; found {first:g} ({int(bad.sum())} value(s))"
        )
        raise ValueError(msg)


def check_mapping(obs_error: ObsError, names: set[str]) -> None:
    """Check that an ``obs_error`` mapping names only observed variables.

    Parameters
    ----------
    obs_error : float, mapping or None
        The ``obs_error=`` argument.
    names : set of str
        All observed variables.

    Raises
    ------
    KeyError
        If the mapping names a variable that is not observed.
    """
    if isinstance(obs_error, Mapping):
        unknown = sorted(set(obs_error) - names)
        if unknown:
            msg = f"obs_error names variable(s) {unknown} not observed; found {sorted(names)}"
            raise KeyError(msg)
