"""A flat table of validated observations in the spec's units, one row per observed value.

Gridded and point readers both produce an :class:`ObsTable`; the operator builder only reads
tables. Gridded rows carry the flat cell ``row * W + column`` of the spec grid; point rows
carry their latitude and longitude (cell ``-1``).
"""

from __future__ import annotations

__all__ = ["ObsTable"]

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ObsTable:
    """Creates a table of ``M`` observed values.

    Attributes
    ----------
    time : ndarray
        Observation times, datetime64[ns], with shape ``(M,)``.
    variable : ndarray
        Index of each value's variable in ``spec.variables``, with shape ``(M,)``.
    channel : ndarray
        Channel of each value, int64, with shape ``(M,)``.
    value : ndarray
        Values in the spec's units, float64, with shape ``(M,)``.
    error : ndarray
        Error standard deviations in the spec's units, float64, with shape ``(M,)``.
    cell : ndarray
        Flat spec-grid cell of gridded rows, ``-1`` for points, int64, with shape ``(M,)``.
    lat, lon : ndarray
        Point locations in degrees (NaN for gridded rows), float64, with shape ``(M,)``.
    dropped : dict of str to int
        Number of NaN values dropped per variable.
    sources : list of str
        One line per input Dataset, for provenance.
    """

    time: np.ndarray
    variable: np.ndarray
    channel: np.ndarray
    value: np.ndarray
    error: np.ndarray
    cell: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    @classmethod
    def concat(cls, tables: Sequence[ObsTable]) -> ObsTable:
        """Concatenate tables, adding their dropped counts.

        Parameters
        ----------
        tables : sequence of ObsTable
            The tables, at least one.

        Returns
        -------
        ObsTable
            All rows, in order.
        """
        dropped: dict[str, int] = {}
        for t in tables:
            for k, v in t.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        keys = ("time", "variable", "channel", "value", "error", "cell", "lat", "lon")
        arrays = {k: np.concatenate([getattr(t, k) for t in tables]) for k in keys}
        sources = [s for t in tables for s in t.sources]
        return cls(**arrays, dropped=dropped, sources=sources)

    @classmethod
    def from_rows(
        cls,
        *,
        time: np.ndarray,
        variable: int,
        channel: np.ndarray,
        value: np.ndarray,
        error: np.ndarray,
        cell: np.ndarray | None = None,
        lat: np.ndarray | None = None,
        lon: np.ndarray | None = None,
    ) -> ObsTable:
        """Build a table of one variable's rows, broadcasting scalars.

        Parameters
        ----------
        time, channel, value, error : ndarray
            As the attributes, each with shape ``(M,)`` or broadcastable.
        variable : int
            The variable's index in ``spec.variables``.
        cell : ndarray, optional
            Gridded cells; ``-1`` (points) when None.
        lat, lon : ndarray, optional
            Point locations; NaN (gridded) when None.

        Returns
        -------
        ObsTable
            The rows.
        """
        m = len(value)

        def full(x: object, dtype: object) -> np.ndarray:
            return np.broadcast_to(np.asarray(x, dtype=dtype), (m,)).copy()

        return cls(
            time=full(time, "datetime64[ns]"),
            variable=full(variable, np.int64),
            channel=full(channel, np.int64),
            value=full(value, np.float64),
            error=full(error, np.float64),
            cell=full(-1 if cell is None else cell, np.int64),
            lat=full(np.nan if lat is None else lat, np.float64),
            lon=full(np.nan if lon is None else lon, np.float64),
        )
