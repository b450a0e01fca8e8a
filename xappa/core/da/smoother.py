r"""The smoother: posterior samples of whole trajectories given all their observations.

A trajectory of :math:`L` frames is padded to a valid window layout (:math:`K` frames per
window, stride :math:`S`), each window's prior denoiser is guided by the observations of its
frames, and the guided windows are folded back into a trajectory denoiser
(:class:`~xappa.core.diffusion.trajectory.TrajectoryDenoiser`), which the configured sampler
integrates for all members (and experiments) in one batch. This is Appa's reanalysis
(symmetrical fold) and, with the causal fold and observations on the first frames only, its
all-at-once forecast. The filter and the autoregressive forecast of this package are built
from it.

References
----------
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["smooth"]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.da.config import SamplingConfig
from xappa.core.da.observations import FrameObservations
from xappa.core.da.precision import with_precision
from xappa.core.da.seeds import generator
from xappa.core.diffusion.trajectory import (
    FOLD_MODES,
    TrajectoryDenoiser,
    pad_frames,
    padded_length,
    window_count,
)
from xappa.core.guidance.observation import Observation


def _check(members: int, length: int, window: int, stride: int, fold: str) -> None:
    for name, value in (("members", members), ("length", length), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive int; found {value!r}"
            raise ValueError(msg)
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= window:
        msg = f"stride must be an int in [1, window={window}]; found {stride!r}"
        raise ValueError(msg)
    if fold not in FOLD_MODES:
        msg = f"fold must be one of {list(FOLD_MODES)}; found {fold!r}"
        raise ValueError(msg)


def smooth(
    denoiser: nn.Module,
    observations: FrameObservations | Sequence[FrameObservations],
    *,
    members: int,
    length: int,
    frame: Sequence[int],
    window: int,
    stride: int,
    config: SamplingConfig,
    seed: int = 0,
    key: Sequence[int] = (),
    cond: Mapping[str, Tensor] | None = None,
    fold: str = "symmetrical",
    max_batch: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], Any] | None = None,
) -> Tensor:
    r"""Draw posterior trajectories given the observations of their frames.

    Parameters
    ----------
    denoiser : nn.Module
        The prior window denoiser ``d(x, sigma, **cond)``, on windows ``(N, K, *frame)``.
    observations : FrameObservations or sequence of them
        The observations of the trajectory, or one per independent experiment (then all
        experiments are sampled in one batch).
    members : int
        Trajectories drawn per experiment.
    length : int
        The trajectory length :math:`L` (padded internally, trimmed on return); the
        observations of frames from :math:`L` on are not used.
    frame : sequence of int
        The frame shape.
    window, stride : int
        The prior's window length :math:`K` and the stride :math:`S` between windows.
    config : SamplingConfig
        The sampling settings.
    seed : int
        The seed; the draw uses :func:`~xappa.core.da.seeds.generator` of ``(seed, *key)``.
    key : sequence of int
        The key of this draw (e.g. a filter cycle).
    cond : mapping of str to Tensor, optional
        Per-frame conditioning of the prior (e.g. ``date``), each with shape ``(L, ...)``.
    fold : {"symmetrical", "causal", "average"}
        How windows are folded into the trajectory.
    max_batch : int, optional
        The most windows per network call (all at once by default).
    device : torch.device or str, optional
        Where to sample (default: the device of the denoiser's first parameter, else CPU).
    dtype : torch.dtype
        The dtype of the samples.
    callback : callable, optional
        ``callback(step, total)`` after each sampler step (progress).

    Returns
    -------
    Tensor
        The trajectories, with shape ``(M, L, *frame)``, or ``(E, M, L, *frame)`` for a
        sequence of ``E`` experiments.
    """
    _check(members, length, window, stride, fold)
    if device is None:
        first = next(iter(denoiser.parameters()), None)
        device = torch.device("cpu") if first is None else first.device
    many = not isinstance(observations, FrameObservations) and isinstance(observations, Sequence)
    experiments = list(observations) if many else [observations]
    padded = padded_length(length, window, stride)
    n = window_count(padded, window, stride)
    # The padding frames [L, L') are no part of the trajectory: they have no data (a filter
    # cycle ending at t must not see the observations after t).
    per_window: list[Observation | None] = [
        obs.window([f if f < length else -1 for f in range(w * stride, w * stride + window)])
        for obs in experiments
        for w in range(n)
    ]
    denoiser, per_window = with_precision(denoiser, per_window, config.precision)
    guided = config.guide(denoiser, per_window if any(per_window) else None)
    keys = tuple((cond or {}).keys())
    trajectory = TrajectoryDenoiser(
        guided,
        window,
        stride,
        mode=fold,
        max_batch=max_batch,
        frame_keys=keys,
        pass_window_index=True,
    )
    sampler = config.make_sampler(trajectory)
    rows = len(experiments) * members
    extra: dict[str, Any] = {}
    for name, value in (cond or {}).items():
        if value.shape[0] != length:
            msg = f"cond[{name!r}] must have {length} frames first; found {tuple(value.shape)}"
            raise ValueError(msg)
        value = pad_frames(value.to(device), padded, dim=0)
        extra[name] = value.expand(rows, *value.shape)
    index = torch.arange(len(experiments), device=device).repeat_interleave(members)
    x = sampler.sample(
        (rows, padded, *frame),
        generator=generator(seed, *key, device=device),
        dtype=dtype,
        device=device,
        callback=callback,
        trajectory_index=index,
        **extra,
    )[:, :length]
    return x.unflatten(0, (len(experiments), members)) if many else x
