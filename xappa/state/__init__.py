"""The model state as xarray sees it: spec, Dataset <-> tensor, coordinates, units, statistics.

:mod:`~xappa.state.spec` (:class:`~xappa.state.spec.StateSpec`: channels, grid, time step),
:mod:`~xappa.state.convert` (Dataset <-> tensor ``(T, C, H, W)``),
:mod:`~xappa.state.coords` (finding coordinates, latitude order, longitude conventions),
:mod:`~xappa.state.units` (unit conversions), :mod:`~xappa.state.stats` (standardization
statistics) and :mod:`~xappa.state.times` (model times of a window, date features). The
only layer, with :mod:`xappa.observations`, that knows both xarray and torch.

The names of the former module ``xappa.state`` (e.g. ``xappa.state.StateSpec``) are still
read from here, with a :class:`DeprecationWarning`, until the next release.
"""

from __future__ import annotations

from typing import Any

from xappa.state import convert, spec

# The names of the former module xappa.state, and the modules that now hold them.
_MOVED = {name: module.__name__ for module in (spec, convert) for name in module.__all__}


def __getattr__(name: str) -> Any:
    from xappa._moved import moved_attribute

    return moved_attribute(__name__, name, _MOVED)
