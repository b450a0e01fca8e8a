r"""The autoregressive forecast: each member continues its own trajectory, window by window.

As Appa's forecast: a window of :math:`K` frames whose first :math:`K - S` frames are the
member's last frames so far, observed as full states (variance ``variance``, the latent
noise of the autoencoder for a latent model), and whose last :math:`S` frames are new. The
window is drawn with the smoother (one window, each member its own experiment) and the new
frames are appended; the next window starts :math:`S` frames later. Window :math:`i` is
drawn with the key :math:`i` (after the forecast's own key). Before the trajectory holds :math:`K - S` frames, the past
sits just before the new frames and the window's first frames are free.

References
----------
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["forecast_trajectories"]

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.da.config import SamplingConfig
from xappa.core.da.observations import DenseObservations
from xappa.core.da.smoother import smooth


def forecast_trajectories(
    denoiser: nn.Module,
    context: Tensor,
    *,
    lead: int,
    window: int,
    stride: int,
    config: SamplingConfig,
    variance: Tensor | float,
    seed: int = 0,
    key: tuple[int, ...] = (),
    cond: Callable[[int, int], Mapping[str, Tensor]] | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[int, int], Any] | None = None,
) -> Tensor:
    r"""Continue trajectories by ``lead`` frames.

    Parameters
    ----------
    denoiser : nn.Module
        The prior window denoiser, on windows ``(N, K, *frame)``.
    context : Tensor
        The last frames of each member, with shape ``(M, P_0, *frame)`` and
        :math:`1 \le P_0 \le K - S`.
    lead : int
        The number of new frames.
    window, stride : int
        The window length :math:`K` and the new frames per window :math:`S < K`.
    config : SamplingConfig
        The sampling settings.
    variance : Tensor or float
        The error variance of the full-state observations of the past, broadcastable to
        a frame.
    seed : int
        The seed; window :math:`i` draws with the key ``(*key, i)``.
    key : tuple of int
        The key of this forecast (e.g. the index of its initial time).
    cond : callable, optional
        ``cond(start, length)`` returns the per-frame conditioning (e.g. ``date``) of the
        ``length`` frames from frame ``start``, each with shape ``(length, ...)``; frame 0 is
        the first context frame, and ``start`` may be negative (a window that starts before
        the context).
    device : torch.device or str, optional
        Where to sample (default: the device of ``context``).
    callback : callable, optional
        ``callback(window, windows)`` after each window.

    Returns
    -------
    Tensor
        The new frames, with shape ``(M, lead, *frame)``.
    """
    members, have = context.shape[:2]
    frame = tuple(context.shape[2:])
    past_size = window - stride
    if not 1 <= stride < window:
        msg = f"stride must be in [1, window - 1 = {window - 1}]; found {stride}"
        raise ValueError(msg)
    if not 1 <= have <= past_size:
        msg = f"context must hold 1 to window - stride = {past_size} frames; found {have}"
        raise ValueError(msg)
    if lead < 1:
        msg = f"lead must be a positive int; found {lead}"
        raise ValueError(msg)
    device = context.device if device is None else torch.device(device)
    variance = torch.as_tensor(variance, dtype=context.dtype, device=device)
    trajectory = context.to(device)
    total = -(-lead // stride)
    for i in range(total):
        past = trajectory[:, -past_size:]
        p = past.shape[1]
        first = past_size - p  # the past sits just before the new frames
        start = trajectory.shape[1] - p - first  # trajectory frame of the window's frame 0
        values = torch.zeros(members, window, *frame, dtype=context.dtype, device=device)
        mask = torch.zeros(window, *frame, dtype=torch.bool, device=device)
        values[:, first : first + p] = past
        mask[first : first + p] = True
        var = variance.expand(window, *frame)
        members_obs = [DenseObservations(values[m], mask, var) for m in range(members)]
        part = None if cond is None else dict(cond(start, window))
        x = smooth(
            denoiser,
            members_obs,
            members=1,
            length=window,
            frame=frame,
            window=window,
            stride=stride,
            config=config,
            seed=seed,
            key=(*key, i),
            cond=part,
            device=device,
            dtype=context.dtype,
        )[:, 0]  # (M, K, *frame)
        trajectory = torch.cat([trajectory, x[:, past_size:]], dim=1)
        if callback is not None:
            callback(i + 1, total)
    return trajectory[:, have : have + lead]
