r"""The score-based smoother: posterior samples of a whole trajectory given all observations.

A trajectory of :math:`L` frames is covered by windows of :math:`K` frames with stride
:math:`S`; each window's prior denoiser is guided by MMPS with the observations that fall in
that window, and the guided windows are folded back into a trajectory denoiser
(:class:`~xappa.core.diffusion.trajectory.TrajectoryDenoiser`, symmetrical fold), which any
sampler integrates. This is Appa's reanalysis, on states instead of latents.

References
----------
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["SmootherConfig", "smooth_ensemble", "window_observations"]

from dataclasses import dataclass

import torch
from torch import Tensor

from xappa.core.diffusion.denoiser import Denoiser
from xappa.core.diffusion.trajectory import TrajectoryDenoiser, padded_length, window_count
from xappa.core.guidance.observation import MaskOperator, Observation
from xappa.da.sampling import SamplingConfig


@dataclass(frozen=True, kw_only=True)
class SmootherConfig(SamplingConfig):
    r"""Creates the smoother settings.

    Attributes
    ----------
    window : int
        The prior's window length :math:`K`.
    stride : int or None
        The stride :math:`S` between windows (default :math:`\lceil K / 2 \rceil`).
    """

    window: int
    stride: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        stride = self.stride or -(-self.window // 2)
        if self.window < 1 or not 1 <= stride <= self.window:
            msg = f"SmootherConfig needs 1 <= stride <= window; found {self.stride}, {self.window}"
            raise ValueError(msg)
        object.__setattr__(self, "stride", stride)


def window_observations(
    values: Tensor, mask: Tensor, variance: Tensor | float, window: int, stride: int
) -> list[Observation | None]:
    """Cut dense observations into per-window :class:`Observation` objects.

    Parameters
    ----------
    values : Tensor
        Observed values, with shape ``(L, *frame)`` (any value where ``mask`` is false).
    mask : Tensor
        True where observed, with shape ``(L, *frame)``; ``L`` must be a valid trajectory
        length for ``window`` and ``stride``.
    variance : Tensor or float
        Observation-error variances, a scalar or with shape ``(L, *frame)``.
    window, stride : int
        The window length :math:`K` and stride :math:`S`.

    Returns
    -------
    list of Observation or None
        One entry per window (``None`` for a window without observations), for
        :class:`~xappa.core.guidance.mmps.MMPSDenoiser` with ``window_index``.
    """
    n = window_count(values.shape[0], window, stride)
    var = torch.as_tensor(variance, dtype=values.dtype).expand(values.shape)
    out: list[Observation | None] = []
    for w in range(n):
        part = slice(w * stride, w * stride + window)
        m = mask[part]
        if not bool(m.any()):
            out.append(None)
            continue
        op = MaskOperator(m).to(values.device)
        out.append(Observation(op, values[part][m], var[part][m]))
    return out


def smooth_ensemble(
    denoiser: Denoiser,
    values: Tensor,
    mask: Tensor,
    variance: Tensor | float,
    config: SmootherConfig,
    *,
    seed: int = 0,
) -> Tensor:
    """Draw an ensemble of trajectories from the posterior given all observations.

    Parameters
    ----------
    denoiser : Denoiser
        The window prior, taking windows of shape ``(N, K, *frame)``.
    values : Tensor
        Standardized observed values, with shape ``(L, *frame)``.
    mask : Tensor
        True where observed, with shape ``(L, *frame)``.
    variance : Tensor or float
        Standardized observation-error variances, a scalar or with shape ``(L, *frame)``.
    config : SmootherConfig
        The window, stride, ensemble size and sampler settings.
    seed : int
        The seed of the ensemble.

    Returns
    -------
    Tensor
        The ensemble, with shape ``(members, L, *frame)``.
    """
    if values.shape != mask.shape:
        msg = f"values and mask must have the same shape; found {values.shape} and {mask.shape}"
        raise ValueError(msg)
    k, s = config.window, int(config.stride or 1)
    length = values.shape[0]
    padded = padded_length(length, k, s)
    extra = padded - length
    var = torch.as_tensor(variance, dtype=values.dtype).expand(values.shape)
    pad = (*([0] * 2 * (values.ndim - 1)), 0, extra)
    values_p = torch.nn.functional.pad(values, pad)
    mask_p = torch.nn.functional.pad(mask, pad)
    var_p = torch.nn.functional.pad(var, pad, value=1.0)
    observations = window_observations(values_p, mask_p, var_p, k, s)
    guided = config.guided(denoiser, observations)
    trajectory = TrajectoryDenoiser(guided, k, s, pass_window_index=True)
    sampler = config.make_sampler(trajectory)
    shape = (config.members, padded, *values.shape[1:])
    x = sampler.sample(shape, seed=seed, dtype=values.dtype, device=values.device)
    return x[:, :length]
