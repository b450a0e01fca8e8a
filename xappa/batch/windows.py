r"""Split a long period into overlapping assimilation windows, each owning a block of times.

Window :math:`k` starts at ``start + k * (window - overlap)``; the last window is shifted back
so that it ends exactly at ``end`` (it then overlaps its predecessor by more than
``overlap``). Overlapping windows are merged by the **central-frames rule**: every time is
taken from the window whose centre is nearest, ties going to the earlier window. Each
window therefore *owns* a contiguous, disjoint block of times; the first owns from
``start``, the last up to ``end``. With model-step indices :math:`a_k` (window starts) and
:math:`w` (window length), window :math:`k + 1` owns from
:math:`\lfloor (a_k + a_{k+1} + w - 1) / 2 \rfloor + 1`.
"""

from __future__ import annotations

__all__ = ["WindowLayout", "plan_windows", "time_chunk"]

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class WindowLayout:
    """The windows of a batch reanalysis.

    Attributes
    ----------
    times : DatetimeIndex
        The ``N`` model times of the period, ``start`` to ``end`` included.
    starts, stops : ndarray of int
        Each window's first and one-past-last time index, with shape ``(n,)``.
    owned_starts, owned_stops : ndarray of int
        Each window's owned block, ``[owned_start, owned_stop)``, with shape ``(n,)``; the
        blocks tile ``[0, N)``.
    """

    times: pd.DatetimeIndex
    starts: np.ndarray
    stops: np.ndarray
    owned_starts: np.ndarray
    owned_stops: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def window_times(self, k: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Return the first and last model times of window ``k`` (both included)."""
        return self.times[self.starts[k]], self.times[self.stops[k] - 1]


def _duration(value: Any, name: str) -> pd.Timedelta:
    try:
        out = pd.Timedelta(value)
    except (TypeError, ValueError) as err:
        msg = f"{name} must be a duration like '2D' or '12h'; found {value!r}"
        raise ValueError(msg) from err
    if out is pd.NaT:
        msg = f"{name} must be a duration like '2D' or '12h'; found {value!r}"
        raise ValueError(msg)
    return out


def _steps(value: pd.Timedelta, step: pd.Timedelta, name: str) -> int:
    if value % step != pd.Timedelta(0):
        msg = f"{name} must be a multiple of the model time step {step}; found {value}"
        raise ValueError(msg)
    return int(value // step)


def _timestamp(value: Any, name: str) -> pd.Timestamp:
    try:
        out = pd.Timestamp(np.asarray(value, dtype="datetime64[ns]")[()])
    except (TypeError, ValueError) as err:
        msg = f"{name} must be a date like '2021-01-01T00'; found {value!r}"
        raise ValueError(msg) from err
    if out is pd.NaT:
        msg = f"{name} must be a valid date; found {value!r}"
        raise ValueError(msg)
    return out


def plan_windows(
    start: Any, end: Any, window: str | pd.Timedelta, overlap: str | pd.Timedelta, step: Any
) -> WindowLayout:
    """Split ``[start, end]`` into overlapping windows and their owned blocks.

    Parameters
    ----------
    start, end : datetime-like
        The first and last model times of the period (both included).
    window : str or Timedelta
        The length of a window: ``window / step`` model times (``"2D"`` at 1 h: 48 times).
    overlap : str or Timedelta
        The overlap of consecutive windows, in ``[0, window)``.
    step : str or Timedelta
        The model time step.

    Returns
    -------
    WindowLayout
        The windows.

    Raises
    ------
    ValueError
        If a duration is not a positive multiple of ``step`` (``overlap`` may be 0), the
        overlap is not shorter than the window, ``end`` is before ``start`` or not a whole
        number of steps after it, or the period is shorter than one window.

    Examples
    --------
    >>> layout = plan_windows("2021-01-01", "2021-01-02T06", "12h", "4h", "1h")
    >>> layout.starts.tolist(), layout.owned_starts.tolist()
    ([0, 8, 16, 19], [0, 10, 18, 24])
    """
    step = _duration(step, "step")
    start, end = _timestamp(start, "start"), _timestamp(end, "end")
    length, over = _duration(window, "window"), _duration(overlap, "overlap")
    w = _steps(length, step, "window")
    o = _steps(over, step, "overlap")
    if w < 1:
        msg = f"window must last at least one model time step ({step}); found {length}"
        raise ValueError(msg)
    if not 0 <= o < w:
        msg = f"overlap must be in [0, window) = [0, {length}); found {over}"
        raise ValueError(msg)
    if end < start or (end - start) % step != pd.Timedelta(0):
        msg = (
            f"end must be start or a whole number of model time steps ({step}) after it;"
            f" found start={start}, end={end}"
        )
        raise ValueError(msg)
    n_times = int((end - start) // step) + 1
    if n_times < w:
        msg = (
            f"window must not be longer than the period from start to end; expected at most"
            f" {n_times * step} ({n_times} model times); found {length}"
        )
        raise ValueError(msg)
    stride = w - o
    n = math.ceil((n_times - w) / stride) + 1
    starts = np.minimum(np.arange(n) * stride, n_times - w).astype(np.int64)
    bounds = (starts[:-1] + starts[1:] + w - 1) // 2 + 1
    owned_starts = np.concatenate([[0], bounds]).astype(np.int64)
    owned_stops = np.concatenate([bounds, [n_times]]).astype(np.int64)
    return WindowLayout(
        times=pd.date_range(start, periods=n_times, freq=step),
        starts=starts,
        stops=starts + w,
        owned_starts=owned_starts,
        owned_stops=owned_stops,
    )


def time_chunk(layout: WindowLayout, frame_bytes: int, target_bytes: int = 2**24) -> int:
    """Return a time chunk that never straddles two owned blocks.

    It is the largest divisor of every owned block's start (so each chunk lies in one
    block) whose chunks stay within ``target_bytes``; at least 1.

    Parameters
    ----------
    layout : WindowLayout
        The windows.
    frame_bytes : int
        The bytes of one time of one chunk (members of a group, levels, grid).
    target_bytes : int
        The largest chunk wanted (16 MiB by default).

    Returns
    -------
    int
        The chunk length along ``time``.
    """
    common = math.gcd(*(int(b) for b in layout.owned_starts[1:])) or len(layout.times)
    best = 1
    for d in range(1, common + 1):
        if common % d == 0 and d * frame_bytes <= target_bytes:
            best = d
    return best
