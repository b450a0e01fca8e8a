"""The model times of an assimilation window, from a duration, a (start, end) pair or the data.

:func:`window_times` is the one place that turns a user's ``window=`` into model times, for
:func:`xappa.assimilate`, :func:`xappa.forecast` and the batch reanalysis;
:func:`frame_dates` turns times into the date features of the networks.
"""

from __future__ import annotations

__all__ = ["frame_dates", "observation_times", "window_times"]

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor

from xappa.state.coords import find_coord


def observation_times(datasets: Sequence[xr.Dataset], *, name: str = "obs") -> np.ndarray:
    """Return every valid time of the observations, as ``datetime64[ns]``.

    Parameters
    ----------
    datasets : sequence of Dataset
        The observations.
    name : str
        Their argument name, for messages.

    Returns
    -------
    numpy.ndarray
        The times (NaT dropped), flattened, in no particular order.

    Raises
    ------
    KeyError
        If a Dataset has no time coordinate.
    """
    out = []
    for d in datasets:
        try:
            coord = find_coord(d, "time")
        except (KeyError, ValueError):
            coord = "time" if "time" in d.coords else None
        if coord is None:
            msg = f"{name} must have a time coordinate; found {sorted(map(str, d.coords))}"
            raise KeyError(msg)
        out.append(np.asarray(d[coord].values, dtype="datetime64[ns]").reshape(-1))
    times = np.concatenate(out) if out else np.array([], dtype="datetime64[ns]")
    return times[~np.isnat(times)]


def window_times(
    window: str | pd.Timedelta | tuple[Any, Any] | None,
    obs: Sequence[xr.Dataset],
    step: pd.Timedelta,
) -> pd.DatetimeIndex:
    """Return the model times of an assimilation window.

    Parameters
    ----------
    window : str, Timedelta, (start, end) or None
        None: the model times from the step of the first observation to the step of the
        last (each observation's nearest step, as they are assigned); a duration (``"7D"``: ``7D / step`` model times) starting at the
        first observation time floored to the model step; or explicit ``(start, end)``
        times, both included.
    obs : sequence of Dataset
        The observations (for a window taken from the data).
    step : pandas.Timedelta
        The model time step.

    Returns
    -------
    DatetimeIndex
        The ``L`` model times.

    Raises
    ------
    ValueError
        For a window shorter than one step or not a multiple of it, an end before its start,
        or observations without valid times when the window comes from them.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> obs = xr.Dataset(coords={"time": pd.to_datetime(["2021-01-01 00:20", "2021-01-01 02:40"])})
    >>> window_times(None, [obs], pd.Timedelta("1h")).hour.tolist()
    [0, 1, 2, 3]
    >>> len(window_times("1D", [obs], pd.Timedelta("1h")))
    24
    """
    if isinstance(window, tuple | list):
        if len(window) != 2:
            msg = f"window must be a duration or a (start, end) pair; found {len(window)} values"
            raise ValueError(msg)
        try:
            start, end = (pd.Timestamp(np.asarray(w, dtype="datetime64[ns]")[()]) for w in window)
        except (TypeError, ValueError) as err:
            msg = (
                "window must be (start, end) times such as ('2021-01-01', '2021-01-02T23');"
                f" found {tuple(window)!r} ({err})"
            )
            raise ValueError(msg) from err
        if end < start:
            msg = f"window end must not be before its start; found {start} to {end}"
            raise ValueError(msg)
        if (end - start) % step != pd.Timedelta(0):
            msg = f"window must be a multiple of the model time step {step}; found {end - start}"
            raise ValueError(msg)
        return pd.date_range(start, end, freq=step)
    length = None
    if window is not None:
        try:
            length = pd.Timedelta(window)
        except (TypeError, ValueError) as err:
            msg = (
                "window must be None, a duration like '7D' or a (start, end) pair; "
                f"found {window!r}"
            )
            raise ValueError(msg) from err
        if length < step or length % step != pd.Timedelta(0):
            msg = (
                f"window must last at least one model time step ({step}) and be a multiple of"
                f" it; found {length}"
            )
            raise ValueError(msg)
    times = observation_times(obs)
    if times.size == 0:
        msg = "obs have no valid times to place the window; give window=(start, end)"
        raise ValueError(msg)
    if length is None:  # the steps the observations are assigned to: nearest, half-way earlier
        half = step / 2 - pd.Timedelta(1, "ns")
        first, last = (pd.Timestamp(t + half).floor(step) for t in (times.min(), times.max()))
        return pd.date_range(first, last, freq=step)
    start = pd.Timestamp(times.min()).floor(step)
    return pd.date_range(start, periods=int(length // step), freq=step)


def frame_dates(times: pd.DatetimeIndex, device: torch.device) -> Tensor:
    """Return integer dates ``[year, month, day, hour]``, with shape ``(T, 4)``."""
    parts = np.stack([times.year, times.month, times.day, times.hour], axis=-1)
    return torch.as_tensor(parts.astype(np.int64), device=device)
