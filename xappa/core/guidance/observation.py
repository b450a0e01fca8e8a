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
"""

from __future__ import annotations

__all__ = ["MaskOperator", "MatrixOperator", "Observation", "ObservationBatch", "Observations"]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class MaskOperator(nn.Module):
    r"""Creates the operator selecting the entries of a state where a mask is true.

    Parameters
    ----------
    mask : Tensor
        A boolean mask with the shape ``shape`` of one state (one window), with ``M`` true
        entries.
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.register_buffer("index", torch.nonzero(mask.flatten()).squeeze(1))

    def forward(self, x: Tensor) -> Tensor:
        """Select the masked entries.

        Parameters
        ----------
        x : Tensor
            States, with shape ``(N, *shape)``.

        Returns
        -------
        Tensor
            The selected values, with shape ``(N, M)`` in row-major order of ``mask``.
        """
        return x.flatten(1).index_select(1, self.index)


class MatrixOperator(nn.Module):
    r"""Creates the linear operator :math:`x \mapsto H \, \mathrm{vec}(x)`.

    Parameters
    ----------
    matrix : Tensor
        The matrix :math:`H`, with shape ``(M, D)`` where ``D`` is the size of one state.
    """

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the matrix.

        Parameters
        ----------
        x : Tensor
            States, with shape ``(N, *shape)`` and ``prod(shape) = D``.

        Returns
        -------
        Tensor
            The observations, with shape ``(N, M)``.
        """
        return x.flatten(1) @ self.matrix.T.to(x.dtype)


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
        Whether every operator is a :class:`MaskOperator` or :class:`MatrixOperator`, so that
        :meth:`apply` is linear and its forward-mode derivative is :meth:`apply` itself.

    Notes
    -----
    When every window's operator is a :class:`MaskOperator` on states of one shape,
    :meth:`apply` reads all rows with a single gather of padded indices instead of one
    operator call per window; batched windows then cost no more operator calls than one.
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
        self.linear = all(type(op) in (MaskOperator, MatrixOperator) for op in operators)
        # Masks of every window read by one gather: (N, M_max) flat indices, 0 on padding.
        self._gather: Tensor | None = None
        if len(self.groups) > 1 and all(type(op) is MaskOperator for op in operators):
            sizes = {tuple(op.mask.shape) for op in operators}
            if len(sizes) == 1:
                self._state_shape = sizes.pop()
                self._gather = torch.zeros(rows, self.size, device=device, dtype=torch.long)
                for idx, obs in self.groups:
                    self._gather[idx, : len(obs)] = obs.operator.index.to(device)

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
        parts = []
        count = 0
        for idx, obs in self.groups:
            y = obs.operator(x.index_select(0, idx))
            want, got = (idx.shape[0], len(obs)), tuple(y.shape)
            torch._check(got == want, lambda w=want, g=got: f"operator must return {w}; found {g}")
            parts.append(nn.functional.pad(y, (0, self.size - len(obs))))
            count += idx.shape[0]
        parts.append(x.new_zeros(self.rows - count, self.size))
        return torch.cat(parts).index_select(0, self._inverse)
