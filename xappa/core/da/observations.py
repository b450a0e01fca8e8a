r"""Observations of trajectory frames, as the engine asks for them: one window at a time.

The engine covers a trajectory of :math:`L` frames with windows and asks, for each window,
for the :class:`~xappa.core.guidance.observation.Observation` of its frames. Anything with a
``window(frames)`` method (:class:`FrameObservations`) can answer: ``frames[k]`` is the
trajectory frame at position :math:`k` of the window, and frames outside :math:`[0, L)`
(negative, or past the end) have no data. Three kinds are here:

* :class:`DenseObservations`: values and a mask over the frames (Lorenz-96, pixel states);
* :class:`GaussianFrames`: a Gaussian belief about a block of consecutive frames, with the
  full covariance of an ensemble (low rank) plus a diagonal floor :math:`D`, observed
  through the whitening :math:`W = \Sigma^{-1/2}` rescaled by :math:`D^{1/2}`:
  :math:`D^{1/2} W x = D^{1/2} W \mu + \eta` with :math:`\eta \sim \mathcal{N}(0, D)`. This is how a filter hands its previous analysis
  ensemble to the next window without losing the covariance between sites and frames;
* :class:`Joined`: several of them on the same trajectory; a window's observation
  concatenates theirs.

The labelled layer's :class:`~xappa.observations.ObservationSet` answers ``window(frames)``
too, with operators through the decoder.
"""

from __future__ import annotations

__all__ = ["DenseObservations", "FrameObservations", "GaussianFrames", "Joined", "Shifted"]

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from xappa.core.guidance.observation import Observation
from xappa.core.operators import MaskOperator, Operator, is_linear


@runtime_checkable
class FrameObservations(Protocol):
    """What the engine needs from observations: the observation of a window's frames."""

    def window(self, frames: Sequence[int]) -> Observation | None:
        """Return the observation of a window, or None without data.

        Position ``k`` of the window is trajectory frame ``frames[k]``; frames out of range
        have no data.
        """


class DenseObservations:
    r"""Creates frame observations from dense values and a mask.

    Parameters
    ----------
    values : Tensor
        Observed values, with shape ``(L, *frame)`` (any value where ``mask`` is false).
    mask : Tensor
        True where observed, with shape ``(L, *frame)``.
    variance : Tensor or float
        Observation-error variances, a scalar or with shape ``(L, *frame)``.
    """

    def __init__(self, values: Tensor, mask: Tensor, variance: Tensor | float) -> None:
        if values.shape != mask.shape or values.ndim < 2:
            msg = (
                "values and mask must have the same shape (L, *frame); found "
                f"{tuple(values.shape)} and {tuple(mask.shape)}"
            )
            raise ValueError(msg)
        var = torch.as_tensor(variance, dtype=values.dtype, device=values.device)
        self.values = values
        self.mask = mask.to(torch.bool)
        self.variance = var.expand(values.shape)
        if bool((self.variance[self.mask] < 0).any()):
            msg = "variance must be non-negative where observed; found negative entries"
            raise ValueError(msg)

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def observed_frames(self) -> list[int]:
        """The frames with at least one observed value."""
        return torch.nonzero(self.mask.flatten(1).any(1)).squeeze(1).tolist()

    def window(self, frames: Sequence[int]) -> Observation | None:
        """Return the masked observation of ``frames`` (see :class:`FrameObservations`)."""
        length = len(self)
        inside = [0 <= f < length for f in frames]
        if not any(inside):
            return None
        index = torch.tensor([f if ok else 0 for f, ok in zip(frames, inside, strict=True)])
        keep = torch.tensor(inside, device=self.mask.device)
        keep = keep.reshape(-1, *[1] * (self.mask.ndim - 1))
        mask = self.mask[index.to(self.mask.device)] & keep
        if not bool(mask.any()):
            return None
        values = self.values[index.to(self.values.device)][mask]
        variances = self.variance[index.to(self.values.device)][mask]
        return Observation(MaskOperator(mask).to(self.values.device), values, variances)


class WhitenedBlock(Operator):
    r"""Creates the linear operator :math:`x \mapsto D^{1/2} W \, \mathrm{vec}(x_{a:b})`.

    :math:`W = (I + Q \, \mathrm{diag}(c) \, Q^\top) D^{-1/2}` is the inverse square root of
    :math:`\Sigma = D + U U^\top` (see :class:`GaussianFrames`), so the observation error
    of :math:`D^{1/2} W x` has the diagonal covariance :math:`D`: the entries keep the scale
    of the frames (the solver's convergence depends on it) and reduce to the plain entries
    when :math:`U = 0`.

    Parameters
    ----------
    start, stop : int
        The window positions :math:`[a, b)` of the block.
    scale : Tensor
        :math:`D^{-1/2}`, with shape ``(P,)`` (``P`` entries of the block).
    basis : Tensor
        :math:`Q`, orthonormal columns, with shape ``(P, r)``.
    coef : Tensor
        :math:`c = (1 + s^2)^{-1/2} - 1`, with shape ``(r,)``.
    """

    linear = True

    def __init__(self, start: int, stop: int, scale: Tensor, basis: Tensor, coef: Tensor):
        super().__init__()
        self.start, self.stop = int(start), int(stop)
        self.register_buffer("scale", scale)
        self.register_buffer("basis", basis)
        self.register_buffer("coef", coef)

    def forward(self, x: Tensor) -> Tensor:
        """Whiten the block of windows ``x`` ``(N, K, *frame)``; returns ``(N, P)``."""
        scale = self.scale.to(x.dtype)
        v = x[:, self.start : self.stop].flatten(1) * scale
        q = self.basis.to(x.dtype)
        return (v + ((v @ q) * self.coef.to(x.dtype)) @ q.T) / scale


class GaussianFrames:
    r"""Creates a Gaussian belief about consecutive frames, from an ensemble.

    The frames :math:`[f_0, f_0 + P)` of the trajectory are
    :math:`\mathcal{N}(\mu, \Sigma)` with :math:`\mu` the ensemble mean and

    .. math:: \Sigma = \alpha \, \frac{X X^\top}{M - 1} + \mathrm{diag}(\beta \, v + v_0),

    where :math:`X` are the ensemble anomalies, :math:`v` the ensemble variances,
    :math:`\alpha` the inflation, :math:`\beta` the relative floor and :math:`v_0` the
    absolute floor. A window sees the marginal of the frames it covers, through its
    rescaled whitening, so the observation model stays diagonal as guidance wants.

    Parameters
    ----------
    ensemble : Tensor
        The ensemble of the frames, with shape ``(M, P, *frame)`` and ``M >= 2``.
    first : int
        The trajectory frame :math:`f_0` of the first frame.
    inflation : float
        :math:`\alpha`, the factor on the ensemble covariance.
    floor : float
        :math:`\beta`, the diagonal floor relative to the ensemble variance.
    min_variance : Tensor or float
        :math:`v_0`, broadcastable to ``(P, *frame)``.
    """

    def __init__(
        self,
        ensemble: Tensor,
        first: int,
        *,
        inflation: float = 1.0,
        floor: float = 0.0,
        min_variance: Tensor | float = 1e-4,
    ) -> None:
        if ensemble.ndim < 3 or ensemble.shape[0] < 2:
            msg = f"ensemble must have shape (M >= 2, P, *frame); found {tuple(ensemble.shape)}"
            raise ValueError(msg)
        if not (inflation > 0 and floor >= 0):
            msg = f"inflation must be > 0 and floor >= 0; found {inflation} and {floor}"
            raise ValueError(msg)
        self.first = int(first)
        self.frames = ensemble.shape[1]
        self.frame_shape = tuple(ensemble.shape[2:])
        ens = ensemble.detach().to(torch.float64)
        bad = int((~torch.isfinite(ens)).sum())
        if bad:
            msg = (
                f"ensemble must be finite; found {bad} non-finite values of {ens.numel()} "
                "(the sampling that drew it diverged)"
            )
            raise ValueError(msg)
        self.mean = ens.mean(0)  # (P, *frame)
        self.anomalies = (ens - self.mean) * (inflation / (ens.shape[0] - 1)) ** 0.5
        v0 = torch.as_tensor(min_variance, dtype=torch.float64, device=ens.device)
        self.diagonal = floor * ens.var(0) + v0.expand(self.mean.shape)
        if not bool((self.diagonal > 0).all()):
            msg = "the diagonal floor must be positive; pass min_variance > 0"
            raise ValueError(msg)

    def window(self, frames: Sequence[int]) -> Observation | None:
        """Return the whitened observation of the block's frames inside ``frames``."""
        pos = [k for k, f in enumerate(frames) if self.first <= f < self.first + self.frames]
        if not pos:
            return None
        start, stop = pos[0], pos[-1] + 1
        if stop - start != len(pos) or frames[start] + len(pos) - 1 != frames[stop - 1]:
            msg = f"GaussianFrames needs consecutive window frames; found {list(frames)}"
            raise ValueError(msg)
        block = slice(frames[start] - self.first, frames[start] - self.first + len(pos))
        mean = self.mean[block].flatten()
        scale = self.diagonal[block].flatten().rsqrt()
        u = self.anomalies[:, block].flatten(1).T * scale[:, None]  # D^{-1/2} U, (P, M)
        basis, s, _ = torch.linalg.svd(u, full_matrices=False)
        coef = (1 + s**2).rsqrt() - 1
        op = WhitenedBlock(start, stop, scale, basis, coef)
        v = mean * scale
        values = (v + ((v @ basis) * coef) @ basis.T) / scale
        return Observation(op, values, self.diagonal[block].flatten())


class Shifted:
    """Creates frame observations read ``offset`` frames later: frame ``f`` is ``f + offset``.

    Parameters
    ----------
    observations : FrameObservations
        The observations of the full trajectory.
    offset : int
        The trajectory frame of this view's frame 0.
    hide_before : int
        Frames (of the full trajectory) before this one have no data in the view.
    """

    def __init__(self, observations: FrameObservations, offset: int, hide_before: int = 0):
        self.observations = observations
        self.offset = int(offset)
        self.hide_before = int(hide_before)

    def window(self, frames: Sequence[int]) -> Observation | None:  # noqa: D102
        shifted = [f + self.offset for f in frames]
        return self.observations.window([f if f >= self.hide_before else -1 for f in shifted])


class Joined:
    """Creates the union of several frame observations of one trajectory.

    Parameters
    ----------
    parts : sequence of FrameObservations
        The observations; a window's observation concatenates theirs, in this order.
    """

    def __init__(self, parts: Sequence[FrameObservations]) -> None:
        self.parts = list(parts)

    def window(self, frames: Sequence[int]) -> Observation | None:  # noqa: D102
        found = [o for o in (p.window(frames) for p in self.parts) if o is not None]
        if len(found) <= 1:
            return found[0] if found else None
        operator = _Concatenated([o.operator for o in found])
        values = torch.cat([o.values for o in found])
        variances = torch.cat([torch.as_tensor(o.variances).to(values) for o in found])
        return Observation(operator, values, variances)


class _Concatenated(Operator):
    """The values of several operators of the same windows, concatenated; linear if all are."""

    def __init__(self, parts: Sequence[Callable[[Tensor], Tensor]]) -> None:
        super().__init__()
        self.parts = list(parts)

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return all(is_linear(op) for op in self.parts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([op(x) for op in self.parts], dim=-1)
