"""Private helpers shared by encoding, assimilation and forecasting.

Positive-int checks, devices, progress bars with the planned cost, the denormal flag, frame dates and the
conventions of the user's grid. Seeds live with the engine (:mod:`xappa.core.da.seeds`).
"""

from __future__ import annotations

__all__ = [
    "check_positive_int",
    "frame_dates",
    "grid_conventions",
    "plan_line",
    "progress_bar",
    "resolve_device",
    "restore_conventions",
]

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from xappa.core.da import SamplingConfig
from xappa.options import check_device, get_options
from xappa.state.coords import find_coord


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is a positive int, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"{name} must be a positive int (>= 1); found {value!r}"
        raise ValueError(msg)
    return int(value)


def resolve_device(device: torch.device | str | None, default: torch.device) -> torch.device:
    """Return the device to run on: the argument, the ``device`` option, or ``default``.

    A device asked for is checked with :func:`xappa.options.check_device`: a ValueError
    names it and the devices available, where torch would raise its own errors later.
    """
    if device is None:
        device = get_options()["device"]
    return default if device is None else check_device(device)


def plan_line(what: str, config: SamplingConfig, members: int, windows: int) -> str:
    """Say what a draw costs in network passes, before it starts.

    Parameters
    ----------
    what : str
        The call, e.g. ``"assimilate (reanalysis)"``.
    config : SamplingConfig
        The sampling settings (:meth:`~xappa.core.da.SamplingConfig.cost`).
    members : int
        The ensemble size.
    windows : int
        How many windows of :math:`K` frames are drawn, per member.

    Returns
    -------
    str
        One line: windows, members, denoiser calls and VJPs per window, and the
        window-evaluations of the denoiser in all.
    """
    cost = config.cost()
    calls = cost["denoiser_calls"]
    return (
        f"{what}: {windows} window(s) x {members} member(s), {calls} denoiser calls"
        f" ({cost['vjp']} VJPs) per window: {windows * members * calls} window evaluations"
        f" of the denoiser ({config.sampler}, {config.steps} steps, guidance {config.guidance})"
    )


#: The clock of the cost estimate (a test replaces it).
_clock = time.perf_counter


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.1f} s"
    if value < 90 * 60:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@contextmanager
def progress_bar(
    total: int,
    desc: str,
    enabled: bool | None = None,
    *,
    plan: str | None = None,
    unit: str = "step",
) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback ``(i, n)`` that advances a tqdm bar (hidden when progress is off).

    With a ``plan`` (:func:`plan_line`), the cost of a long run is stated on stderr: the
    plan before it starts, then, once the first two of the ``total`` units of work have run
    (the probe), the time they took and the time expected in all: the first unit's, plus the
    second's for each later unit (the units cost about the same; the first also pays for
    what runs once, such as building the observation operators).

    Parameters
    ----------
    total : int
        The units of work (sampler steps, filter cycles, forecast windows).
    desc : str
        The bar's label.
    enabled : bool, optional
        Show the bar and the cost (default: the ``progress`` option).
    plan : str, optional
        The cost in network passes, printed before the work starts.
    unit : str
        What a unit of work is, for the estimate.
    """
    show = get_options()["progress"] if enabled is None else bool(enabled)
    if show and plan:
        tqdm.write(plan, file=sys.stderr)
    bar = tqdm(total=total, desc=desc, disable=not show, leave=False)
    ends = [_clock()]

    def advance(step: int, steps: int) -> None:
        bar.update(1)
        if show and plan and bar.n <= 2 and total > 2:
            ends.append(_clock())
        if len(ends) == 3 and bar.n == 2:
            first, second = ends[1] - ends[0], ends[2] - ends[1]
            tqdm.write(
                f"{desc}: {unit}s 1 and 2 of {total} took {_seconds(first)} and"
                f" {_seconds(second)}; expect about {_seconds(first + second * (total - 1))}"
                " in all",
                file=sys.stderr,
            )

    try:
        yield advance
    finally:
        bar.close()


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while sampling, then restore the default.

    Trained networks produce some denormal activations, and x86 CPUs process denormals
    slowly. Measured on the default shallow-water model, one thread: decoding 192 frames
    took 0.15 s instead of 0.22 s, their JVP 0.42 s instead of 0.50 s. The flag is set on
    the calling thread. torch has no getter for it, so it is set back to torch's default
    (off) afterwards.
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


def frame_dates(times: pd.DatetimeIndex, device: torch.device) -> Tensor:
    """Return integer dates ``[year, month, day, hour]``, with shape ``(T, 4)``."""
    parts = np.stack([times.year, times.month, times.day, times.hour], axis=-1)
    return torch.as_tensor(parts.astype(np.int64), device=device)


def grid_conventions(ds: xr.Dataset) -> dict[str, str]:
    """Return the latitude order, longitude convention and coordinate names of a grid.

    Empty when ``ds`` has no 1-D latitude/longitude dimension coordinates (point data).
    """
    try:
        lat, lon = find_coord(ds, "latitude"), find_coord(ds, "longitude")
    except (KeyError, ValueError):
        return {}
    if lat not in ds.dims or lon not in ds.dims or ds[lat].size < 2:
        return {}
    la, lo = np.asarray(ds[lat].values, float), np.asarray(ds[lon].values, float)
    return {
        "latitude_name": str(lat),
        "longitude_name": str(lon),
        "latitude_order": "descending" if la[0] > la[-1] else "ascending",
        "longitude_convention": "-180..180" if lo.min() < 0 else "0..360",
    }


def restore_conventions(ds: xr.Dataset, conventions: dict[str, str]) -> xr.Dataset:
    """Reorder, rename and wrap the ``latitude``/``longitude`` of ``ds`` to ``conventions``."""
    if not conventions:
        return ds
    lat = ds["latitude"].values
    want = conventions["latitude_order"]
    if (want == "descending") != bool(lat[0] > lat[-1]):
        ds = ds.isel(latitude=slice(None, None, -1))
    lon = ds["longitude"]
    if conventions["longitude_convention"] == "-180..180" and float(lon.max()) >= 180:
        ds = ds.assign_coords(longitude=((lon + 180) % 360 - 180).assign_attrs(lon.attrs))
    elif conventions["longitude_convention"] == "0..360" and float(lon.min()) < 0:
        ds = ds.assign_coords(longitude=(lon % 360).assign_attrs(lon.attrs))
    ds = ds.sortby("longitude")
    names = {"latitude": conventions["latitude_name"], "longitude": conventions["longitude_name"]}
    return ds.rename({k: v for k, v in names.items() if k != v})
