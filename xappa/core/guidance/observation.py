r"""Observations for guidance: an operator :math:`A`, values :math:`y` and variances.

The observation model of one window (or of a whole batch without windows) is

.. math:: y = A(x) + \eta, \qquad \eta \sim \mathcal{N}(0, \mathrm{diag}(\sigma_y^2)),

where :math:`A` maps a batch of states ``(N, *shape)`` to ``(N, M)`` and may be non-linear
(a decoder followed by a mask). Guidance differentiates :math:`A` both ways: reverse mode
(VJP) and forward mode (``torch.func.jvp``), so :math:`A` must be written in differentiable
torch operations.

Several windows of a trajectory each have their own :class:`Observation` (or none); they are
given as a sequence indexed by the window index, or a mapping from index to observation. A
guided denoiser batches all rows of a call together: each row is tied to a window by the
``window_index`` keyword, rows are grouped by window to apply each operator once, and the
residuals, of different lengths :math:`M_w`, are zero-padded to the longest. Padded entries
get unit variance and a zero operator, so the padded linear system is block diagonal with an
identity block and a zero right-hand side there: padding changes no solution.

The operators themselves (masks, matrices, sparse readouts, frame maps) are one family, in
:mod:`xappa.core.operators`; each declares whether it is linear, and guidance uses
:math:`A' v = A v` for a batch whose operators all are (:attr:`ObservationBatch.linear`).
Operators of different windows that share an expensive map of frames (a decoder) declare it:
a :class:`~xappa.core.operators.FramewiseOperator` is
:math:`A_w(x) = R_w(f(x_{k_1}), \dots, f(x_{k_m}))`, a map :math:`f` of single frames
followed by the window's own readout :math:`R_w` (a mask, points, a swath). The batch applies each shared :math:`f` once to every frame all its rows read, in
forward, VJP and JVP alike, then each window's readout to its rows.
"""

from __future__ import annotations

__all__ = [
    "Observation",
    "ObservationBatch",
    "Observations",
]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# The operators live in xappa.core.operators (one family); their names stay importable here.
from xappa.core.operators import (  # noqa: F401 (FramewiseOperator, MatrixOperator re-exported)
    Framewise,
    FramewiseOperator,
    MaskOperator,
    MatrixOperator,
    is_linear,
)


@dataclass(frozen=True)
class Observation:
    r"""Creates the observations of one window: :math:`y = A(x) + \eta`.

    Attributes
    ----------
    operator : callable
        :math:`A`, mapping states ``(N, *shape)`` to ``(N, M)``; linear or not, written in
        differentiable torch operations so that both VJP and ``torch.func.jvp`` work.
    values : Tensor
        The observed values :math:`y`, with shape ``(M,)``.
    variances : Tensor
        The noise variances :math:`\sigma_y^2`, with shape ``(M,)`` (or a scalar, broadcast).
        Zero is allowed with MMPS, where :math:`A \Sigma_x A^\top` regularises the system.
    """

    operator: Callable[[Tensor], Tensor]
    values: Tensor
    variances: Tensor | float

    def __post_init__(self) -> None:
        if not callable(self.operator):
            msg = f"operator must be callable; found {type(self.operator).__name__}"
            raise TypeError(msg)
        if self.values.ndim != 1:
            msg = f"values must have shape (M,); found {tuple(self.values.shape)}"
            raise ValueError(msg)
        var = torch.as_tensor(self.variances, dtype=self.values.dtype, device=self.values.device)
        if var.ndim > 1 or (var.ndim == 1 and var.shape != self.values.shape):
            msg = f"variances must have shape {tuple(self.values.shape)}; found {tuple(var.shape)}"
            raise ValueError(msg)
        if bool((var < 0).any()):
            msg = "variances must be non-negative; found negative entries"
            raise ValueError(msg)
        object.__setattr__(self, "variances", var.expand(self.values.shape))

    def __len__(self) -> int:
        return self.values.shape[0]


Observations = Observation | Sequence[Observation | None] | Mapping[int, Observation]
"""One observation for every row, or per-window observations indexed by window index."""


def _lookup(observations: Observations, index: int) -> Observation | None:
    if isinstance(observations, Observation):
        return observations
    if isinstance(observations, Mapping):
        return observations.get(index)
    return observations[index] if 0 <= index < len(observations) else None


class ObservationBatch:
    r"""Creates the observations of a batch of rows, grouped by window and padded.

    Parameters
    ----------
    observations : Observation, sequence or mapping
        One :class:`Observation` shared by all rows, or per-window observations: a sequence
        indexed by window (``None`` for a window without observations) or a mapping from
        window index to :class:`Observation`.
    rows : int
        The number ``N`` of rows of the batch.
    window_index : Tensor, optional
        The window of each row, with shape ``(N,)``. Required unless ``observations`` is a
        single :class:`Observation`.
    device : torch.device, optional
        The device of the padded tensors.
    dtype : torch.dtype, optional
        The dtype of the padded tensors.

    Attributes
    ----------
    groups : list of (Tensor, Observation)
        The row indices (shape ``(n_w,)``) of each observed window, and its observation.
    values : Tensor
        The padded values, with shape ``(N, M_max)`` (zero on padding).
    variances : Tensor
        The padded variances, with shape ``(N, M_max)`` (one on padding).
    mask : Tensor
        True on real observations, with shape ``(N, M_max)``.
    linear : bool
        Whether every operator is linear (:func:`~xappa.core.operators.is_linear`), so that
        :meth:`apply` is linear and its forward-mode derivative is :meth:`apply` itself.

    Notes
    -----
    When every window's operator is a :class:`~xappa.core.operators.MaskOperator` on states
    of one shape, :meth:`apply` reads all rows with a single gather of padded indices instead
    of one operator call per window; batched windows then cost no more operator calls than
    one. :class:`~xappa.core.operators.Framewise` operators with equal ``inner`` maps are
    applied with one call of that map on all the frames their rows read (one decoder pass for
    all windows), then each window's readout on its rows; any other operator is called once
    on its window's rows.
    """

    def __init__(
        self,
        observations: Observations,
        rows: int,
        window_index: Tensor | None = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if window_index is None:
            if not isinstance(observations, Observation):
                msg = (
                    "window_index is required with per-window observations; found None "
                    "(pass window_index=..., as TrajectoryDenoiser(pass_window_index=True) does)"
                )
                raise ValueError(msg)
            window_index = torch.zeros(rows, dtype=torch.long)
        window_index = torch.as_tensor(window_index).reshape(-1).cpu()
        torch._check(window_index.shape[0] == rows, lambda: "window_index must have shape (N,)")
        self.rows = rows
        self.groups: list[tuple[Tensor, Observation]] = []
        for w in torch.unique(window_index).tolist():
            obs = _lookup(observations, int(w))
            if obs is not None and len(obs) > 0:
                idx = torch.nonzero(window_index == w).squeeze(1)
                self.groups.append((idx.to(device), obs))
        self.size = max((len(obs) for _, obs in self.groups), default=0)
        self.values = torch.zeros(rows, self.size, device=device, dtype=dtype)
        self.variances = torch.ones(rows, self.size, device=device, dtype=dtype)
        self.mask = torch.zeros(rows, self.size, device=device, dtype=torch.bool)
        for idx, obs in self.groups:
            m = len(obs)
            self.values[idx, :m] = obs.values.to(self.values)
            self.variances[idx, :m] = obs.variances.to(self.values)
            self.mask[idx, :m] = True
        # Rows ordered by group, then unobserved rows; ``_inverse`` restores the batch order.
        order = [idx for idx, _ in self.groups]
        observed = torch.zeros(rows, dtype=torch.bool, device=device)
        for idx in order:
            observed[idx] = True
        order.append(torch.nonzero(~observed).squeeze(1))
        self._inverse = torch.argsort(torch.cat(order))
        operators = [obs.operator for _, obs in self.groups]
        self.linear = all(is_linear(op) for op in operators)
        # Masks of every window read by one gather: (N, M_max) flat indices, 0 on padding.
        self._gather: Tensor | None = None
        if len(self.groups) > 1 and all(type(op) is MaskOperator for op in operators):
            sizes = {tuple(op.mask.shape) for op in operators}
            if len(sizes) == 1:
                self._state_shape = sizes.pop()
                self._gather = torch.zeros(rows, self.size, device=device, dtype=torch.long)
                for idx, obs in self.groups:
                    self._gather[idx, : len(obs)] = obs.operator.index.to(device)
        self._shared = _shared_maps(self.groups) if self._gather is None else []

    def __bool__(self) -> bool:
        return len(self.groups) > 0

    def apply(self, x: Tensor) -> Tensor:
        r"""Apply every window's operator to its rows and pad.

        Differentiable in both modes (VJP and ``torch.func.jvp``).

        Parameters
        ----------
        x : Tensor
            States, with shape ``(N, *shape)``.

        Returns
        -------
        Tensor
            :math:`A_w(x_r)` for each row :math:`r` of window :math:`w`, zero-padded, with
            shape ``(N, M_max)``; zero for rows without observations.
        """
        if len(self.groups) == 1 and self.groups[0][0].shape[0] == self.rows:
            return self.groups[0][1].operator(x)  # all rows share one window: no regrouping
        if self._gather is not None:
            torch._check(
                tuple(x.shape[1:]) == self._state_shape,
                lambda: f"x must have shape (N, *{self._state_shape}); found {tuple(x.shape)}",
            )
            return torch.where(self.mask, x.flatten(1).gather(1, self._gather), 0.0)
        outputs: dict[int, Tensor] = {}
        for shared in self._shared:
            outputs.update(shared.apply(x, self.groups))
        parts = []
        count = 0
        for g, (idx, obs) in enumerate(self.groups):
            y = outputs[g] if g in outputs else obs.operator(x.index_select(0, idx))
            want, got = (idx.shape[0], len(obs)), tuple(y.shape)
            torch._check(got == want, lambda w=want, g=got: f"operator must return {w}; found {g}")
            parts.append(nn.functional.pad(y, (0, self.size - len(obs))))
            count += idx.shape[0]
        parts.append(x.new_zeros(self.rows - count, self.size))
        return torch.cat(parts).index_select(0, self._inverse)


class _SharedMap:
    """The groups of a batch whose :class:`~xappa.core.operators.Framewise` operators share one ``inner`` map."""

    def __init__(self, inner: Callable[[Tensor], Tensor] | None) -> None:
        self.inner = inner
        self.members: list[int] = []  # positions in ObservationBatch.groups
        self._rows: list[Tensor] = []
        self._frames: list[Tensor] = []

    def add(self, position: int, idx: Tensor, frames: Tensor) -> None:
        frames = torch.as_tensor(frames, dtype=torch.long, device=idx.device).reshape(-1)
        self.members.append(position)
        self._rows.append(idx.repeat_interleave(frames.shape[0]))
        self._frames.append(frames.repeat(idx.shape[0]))

    def finish(self) -> None:
        self.rows = torch.cat(self._rows)
        self.frames = torch.cat(self._frames)
        self.sizes = [r.shape[0] for r in self._rows]
        self.last = int(self.frames.max())  # every frame read must lie in the window
        del self._rows, self._frames

    def apply(self, x: Tensor, groups: list[tuple[Tensor, Observation]]) -> dict[int, Tensor]:
        """One call of the inner map on every frame read; each member's readout after it."""
        torch._check(
            x.ndim >= 2 and self.last < x.shape[1],
            lambda: f"x must have shape (N, K > {self.last}, ...); found {tuple(x.shape)}",
        )
        flat = self.rows * x.shape[1] + self.frames
        images = x.flatten(0, 1).index_select(0, flat)
        if self.inner is not None:
            images = self.inner(images)
        out = {}
        for g, chunk in zip(self.members, images.split(self.sizes), strict=True):
            idx, obs = groups[g]
            out[g] = obs.operator.readout(chunk.unflatten(0, (idx.shape[0], -1)))
        return out


def _shared_maps(groups: list[tuple[Tensor, Observation]]) -> list[_SharedMap]:
    """Group the :class:`~xappa.core.operators.Framewise` operators by equal ``inner``; keep maps with 2+ windows."""
    shared: list[_SharedMap] = []
    for g, (idx, obs) in enumerate(groups):
        op = obs.operator
        if not isinstance(op, Framewise):
            continue
        match = next((m for m in shared if m.inner is op.inner or m.inner == op.inner), None)
        if match is None:
            match = _SharedMap(op.inner)
            shared.append(match)
        match.add(g, idx, op.frames)
    shared = [m for m in shared if len(m.members) > 1]
    for m in shared:
        m.finish()
    return shared
