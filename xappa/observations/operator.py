r"""Per-time-step observation operators, values and variances on the standardized pixel state.

:func:`prepare_observations` validates observation Datasets once and returns an
:class:`ObservationSet`: for each model time step of the window, a linear operator
:math:`H_t` on the **standardized** pixel frame ``(C, H, W)`` (in the spec's latitude order
and longitude convention), the standardized values :math:`y_t = (y^{phys} - \mu_c) / s_c` and
variances :math:`(\sigma^{phys} / s_c)^2`, with :math:`\mu_c, s_c` the statistics of the value's
channel. Bilinear weights sum to one, so reading the standardized field equals standardizing
the field read.

With a latent model the full operator of frame :math:`t` is
:math:`A_t(z) = H_t(\mathrm{decode}(z_t s_z + \mu_z))` (Appa's "unstandardize the latent,
decode, observe"), where the decoder returns standardized pixels: the pixel operators
:math:`H_t` never unstandardize. :meth:`ObservationSet.observation` builds it for a window:
the window's observed frames decoded in one call, then one readout of all of them.
"""

from __future__ import annotations

__all__ = [
    "ObservationSet",
    "StepObservation",
    "WindowObservations",
    "build_steps",
    "stack_operators",
]

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor, nn

from xappa.core.guidance.observation import FramewiseOperator, Observation
from xappa.core.operators import (
    ConcatOperator,
    SparseOperator,
    bilinear_stencil,
    flat_index,
    nearest_stencil,
)
from xappa.observations.table import ObsTable
from xappa.state.spec import StateSpec


@dataclass(frozen=True)
class StepObservation:
    """Creates the observations of one model time step.

    Attributes
    ----------
    time : pandas.Timestamp
        The model time.
    operator : SparseOperator or ConcatOperator
        The linear operator, mapping standardized frames ``(..., C, H, W)`` to ``(..., M)``.
    values : Tensor
        Standardized values, with shape ``(M,)``.
    variances : Tensor
        Standardized error variances, with shape ``(M,)``.
    """

    time: pd.Timestamp
    operator: nn.Module
    values: Tensor
    variances: Tensor

    def __len__(self) -> int:
        return self.values.shape[0]

    def __repr__(self) -> str:
        return f"StepObservation(time={self.time}, values={len(self)})"


class ObservationSet:
    """Creates the validated observations of a window, one :class:`StepObservation` per step.

    Built by :func:`xappa.observations.prepare_observations`; indexing gives the step
    observation (None for a step without observations).

    Parameters
    ----------
    spec : StateSpec
        The model state.
    times : DatetimeIndex
        The model time steps of the window, with shape ``(T,)``.
    steps : sequence of StepObservation or None
        One entry per time.
    counts : Dataset
        ``n_obs`` over ``(time, variable)`` and ``n_nan`` over ``(variable,)``.
    method : str
        How points are read (``"bilinear"`` or ``"nearest"``).
    sources : list of str
        One line per input Dataset.
    """

    def __init__(
        self,
        spec: StateSpec,
        times: pd.DatetimeIndex,
        steps: Sequence[StepObservation | None],
        counts: xr.Dataset,
        *,
        method: str,
        sources: list[str],
    ) -> None:
        self.spec = spec
        self.times = times
        self.steps = list(steps)
        self.counts = counts
        self.method = method
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> StepObservation | None:
        return self.steps[index]

    def __iter__(self) -> Iterator[StepObservation | None]:
        return iter(self.steps)

    @property
    def n_obs(self) -> int:
        """The total number of observed values."""
        return sum(len(s) for s in self.steps if s is not None)

    def to(self, device: torch.device | str) -> ObservationSet:
        """Return a copy with operators, values and variances on ``device``.

        Parameters
        ----------
        device : torch.device or str
            The device.

        Returns
        -------
        ObservationSet
            The copy; this set is unchanged.
        """
        steps = [
            None
            if s is None
            else StepObservation(
                time=s.time,
                operator=copy.deepcopy(s.operator).to(device),
                values=s.values.to(device),
                variances=s.variances.to(device),
            )
            for s in self.steps
        ]
        return ObservationSet(
            self.spec, self.times, steps, self.counts, method=self.method, sources=self.sources
        )

    def describe(self) -> str:
        """Return a short, human-readable summary: window, counts per variable, sources.

        Returns
        -------
        str
            Several lines of text.
        """
        per_var = self.counts["n_obs"].sum("time")
        hours = pd.Timedelta(self.spec.time_step) / pd.Timedelta("1h")
        head = (
            f"ObservationSet for spec {self.spec.name!r}: {self.n_obs} values at"
            f" {sum(s is not None for s in self.steps)} of {len(self)} time steps"
            f" ({self.times[0]} to {self.times[-1]}, step {hours:g} h);"
            f" points read by {self.method}"
        )
        lines = [head]
        for v in self.counts["variable"].values:
            n, nan = int(per_var.sel(variable=v)), int(self.counts["n_nan"].sel(variable=v))
            if n or nan:
                lines.append(f"  {v}: {n} values ({nan} NaN dropped)")
        lines += [f"  source: {s}" for s in self.sources]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def apply(self, x: Tensor) -> Tensor:
        """Apply every step's operator to its frame and concatenate, frame by frame.

        Parameters
        ----------
        x : Tensor
            Standardized frames, with shape ``(..., T, C, H, W)``.

        Returns
        -------
        Tensor
            The values of all observed steps in time order, with shape ``(..., M)``.
        """
        torch._check(
            x.shape[-4] == len(self), lambda: f"x must have {len(self)} frames; found {x.shape}"
        )
        parts = [s.operator(x[..., t, :, :, :]) for t, s in enumerate(self.steps) if s]
        return torch.cat(parts, dim=-1) if parts else x.new_zeros(*x.shape[:-4], 0)

    def observation(
        self,
        steps: Sequence[int] | None = None,
        *,
        decode: Callable[[Tensor], Tensor] | None = None,
    ) -> Observation | None:
        r"""Return the guidance :class:`~xappa.core.guidance.observation.Observation` of steps.

        The operator maps a window ``(N, K, ...)`` of ``K = len(steps)`` frames to
        ``(N, M)``: the observed frames are decoded together in one call (when ``decode`` is
        given) to standardized pixels, and frame ``k`` is read by the operator of
        ``steps[k]``, all frames' reads merged into one (:func:`stack_operators`). It is a
        :class:`~xappa.core.guidance.observation.FramewiseOperator` whose inner map is
        ``decode``: the windows of one trajectory (and of all members) that share ``decode``
        are decoded in one call by the guidance, in forward, VJP and JVP alike.

        Parameters
        ----------
        steps : sequence of int, optional
            Indices into :attr:`times` of the window's frames (all steps when None); an
            index outside ``[0, len(self))`` is a frame without observations.
        decode : callable, optional
            ``decode(z)`` maps standardized latent frames ``(B, ...)`` to standardized pixels
            ``(B, C, H, W)``: latent unstandardization (:math:`z s_z + \mu_z`) then the
            decoder. Identity when None (pixel windows).

        Returns
        -------
        Observation or None
            None when the steps have no observation.
        """
        steps = list(range(len(self))) if steps is None else [int(s) for s in steps]
        inside = [(k, s) for k, s in enumerate(steps) if 0 <= s < len(self)]
        used = [(k, s, self.steps[s]) for k, s in inside if self.steps[s] is not None]
        if not used:
            return None

        readout = nn.Sequential(
            nn.Flatten(1, 2), stack_operators([o.operator for _, _, o in used])
        )
        operator = FramewiseOperator(decode, [k for k, _, _ in used], readout)
        values = torch.cat([obs.values for _, _, obs in used])
        variances = torch.cat([obs.variances for _, _, obs in used])
        return Observation(operator=operator, values=values, variances=variances)

    @property
    def observed_frames(self) -> list[int]:
        """The indices of the time steps with observations."""
        return [t for t, s in enumerate(self.steps) if s is not None]

    def frames(self, decode: Callable[[Tensor], Tensor] | None = None) -> WindowObservations:
        """Return this set as the engine's frame observations (``window(frames)``).

        Parameters
        ----------
        decode : callable, optional
            As in :meth:`observation`.

        Returns
        -------
        WindowObservations
            The view; :func:`xappa.core.da.smooth` and the filter take it.
        """
        return WindowObservations(self, decode)


class WindowObservations:
    """Creates the view of an :class:`ObservationSet` that the engine asks for windows.

    Parameters
    ----------
    observations : ObservationSet
        The observations.
    decode : callable, optional
        As in :meth:`ObservationSet.observation`.
    """

    def __init__(
        self, observations: ObservationSet, decode: Callable[[Tensor], Tensor] | None
    ) -> None:
        self.observations = observations
        self.decode = decode

    @property
    def observed_frames(self) -> list[int]:
        """The indices of the time steps with observations."""
        return self.observations.observed_frames

    def window(self, frames: Sequence[int]) -> Observation | None:
        """Return the observation of a window whose position ``k`` is step ``frames[k]``."""
        return self.observations.observation(frames, decode=self.decode)


def _sparse_parts(operator: nn.Module) -> list[SparseOperator]:
    if isinstance(operator, ConcatOperator):
        return list(operator.parts)
    if isinstance(operator, SparseOperator):
        return [operator]
    msg = f"operator must be a SparseOperator or ConcatOperator; found {type(operator).__name__}"
    raise TypeError(msg)


def stack_operators(operators: Sequence[nn.Module]) -> SparseOperator:
    """Merge the operators of ``m`` frames into one operator on the stacked frames.

    Parameters
    ----------
    operators : sequence of SparseOperator or ConcatOperator
        The operator of each frame, all on frames of one shape ``(C, H, W)``.

    Returns
    -------
    SparseOperator
        The operator on stacks ``(..., m C, H, W)`` (frame ``i`` in channels
        ``[i C, (i + 1) C)``) whose values are those of ``operators[i]`` on frame ``i``,
        concatenated in order. Entries of fewer points than the widest stencil read cell 0
        with weight 0.
    """
    parts = [(i, p) for i, op in enumerate(operators) for p in _sparse_parts(op)]
    c, h, w = parts[0][1].shape
    width = max(p.index.shape[1] for _, p in parts)
    weights = [p.weight for _, p in parts if p.weight is not None]
    if width == 1 and not weights:
        index = torch.cat([p.index + i * c * h * w for i, p in parts])
        return SparseOperator(index, (len(operators) * c, h, w))
    dtype = weights[0].dtype if weights else torch.float32
    index, weight = [], []
    for i, p in parts:
        m, k = p.index.shape
        index.append(nn.functional.pad(p.index + i * c * h * w, (0, width - k), value=0))
        ones = torch.ones(m, k, dtype=dtype)
        weight.append(
            nn.functional.pad(ones if p.weight is None else p.weight.to(dtype), (0, width - k))
        )
    return SparseOperator(torch.cat(index), (len(operators) * c, h, w), torch.cat(weight))


def _step_operator(
    rows: np.ndarray, table: ObsTable, spec: StateSpec, method: str, dtype: torch.dtype
) -> nn.Module:
    shape = (spec.n_channels, *spec.shape)
    grid_lat = torch.as_tensor(spec.latitudes, dtype=torch.float64)
    grid_lon = torch.as_tensor(spec.longitudes, dtype=torch.float64)
    parts = []
    gridded = rows[table.cell[rows] >= 0]
    if len(gridded):
        cell = torch.from_numpy(table.cell[gridded])
        parts.append(
            SparseOperator(
                flat_index(torch.from_numpy(table.channel[gridded]), cell, shape), shape
            )
        )
    points = rows[table.cell[rows] < 0]
    if len(points):
        channel = torch.from_numpy(table.channel[points])
        lat, lon = torch.from_numpy(table.lat[points]), torch.from_numpy(table.lon[points])
        if method == "nearest":
            cell = nearest_stencil(lat, lon, grid_lat, grid_lon)
            parts.append(SparseOperator(flat_index(channel, cell, shape), shape))
        else:
            cells, weights = bilinear_stencil(lat, lon, grid_lat, grid_lon)
            index = flat_index(channel, cells, shape)
            parts.append(SparseOperator(index, shape, weights.to(dtype)))
    return parts[0] if len(parts) == 1 else ConcatOperator(parts)


def build_steps(
    table: ObsTable,
    step: np.ndarray,
    spec: StateSpec,
    times: pd.DatetimeIndex,
    mean: Tensor,
    std: Tensor,
    *,
    method: str,
    dtype: torch.dtype,
) -> tuple[list[StepObservation | None], xr.Dataset]:
    """Build the step observations and counts from a validated table.

    Parameters
    ----------
    table : ObsTable
        The observations, ``M`` rows.
    step : ndarray
        The model step of each row, with shape ``(M,)``.
    spec : StateSpec
        The model state.
    times : DatetimeIndex
        The model times, with shape ``(T,)``.
    mean, std : Tensor
        Channel statistics in the spec's units, each with shape ``(C,)``.
    method : {"bilinear", "nearest"}
        How points are read.
    dtype : torch.dtype
        The dtype of values, variances and weights.

    Returns
    -------
    tuple
        The list of step observations (None where a step has none) and the counts Dataset.
    """
    # Gridded rows first, then points, within a step; stable otherwise.
    order = np.lexsort((table.cell < 0, step))
    bounds = np.searchsorted(step[order], np.arange(len(times) + 1))
    mean64, std64 = mean.double().numpy(), std.double().numpy()
    steps: list[StepObservation | None] = []
    n_obs = np.zeros((len(times), len(spec.variables)), dtype=np.int64)
    for t in range(len(times)):
        rows = order[bounds[t] : bounds[t + 1]]
        if len(rows) == 0:
            steps.append(None)
            continue
        rows = np.concatenate([rows[table.cell[rows] >= 0], rows[table.cell[rows] < 0]])
        ch = table.channel[rows]
        values = (table.value[rows] - mean64[ch]) / std64[ch]
        variances = (table.error[rows] / std64[ch]) ** 2
        n_obs[t] = np.bincount(table.variable[rows], minlength=len(spec.variables))
        steps.append(
            StepObservation(
                time=times[t],
                operator=_step_operator(rows, table, spec, method, dtype),
                values=torch.as_tensor(values, dtype=dtype),
                variances=torch.as_tensor(variances, dtype=dtype),
            )
        )
    variables = list(spec.variables)
    n_nan = [table.dropped.get(v, 0) for v in variables]
    counts = xr.Dataset(
        {
            "n_obs": (("time", "variable"), n_obs, {"long_name": "number of observed values"}),
            "n_nan": ("variable", np.asarray(n_nan, dtype=np.int64), {"long_name": "NaN dropped"}),
        },
        coords={"time": times.values, "variable": variables},
    )
    return steps, counts
