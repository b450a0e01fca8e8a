r"""The filter: causal analyses at observation times, cycling an ensemble.

Cycle :math:`i` makes the analysis of time :math:`t_i` from the observations up to
:math:`t_i` only. It starts from the belief left by an earlier cycle :math:`b < i`, the
earliest one whose analysis time and ``past`` frames still fit in one window with
:math:`t_i` (at most ``lag`` cycles back; the previous cycle when the gap is longer than a
window), and draws, for every member in one batch, a trajectory over frames
:math:`[t_b - P + 1, t_i]` with the smoother of :mod:`xappa.core.da.smoother`:

* its first frames, up to :math:`t_b`, are observed as the Gaussian belief
  :math:`\mathcal{N}(\mu, \Sigma)` of cycle :math:`b`: the mean and the full (low-rank)
  covariance of that cycle's ensemble over those :math:`P` frames, plus a diagonal floor
  (:class:`~xappa.core.da.observations.GaussianFrames`);
* its later frames, :math:`(t_b, t_i]`, get the raw observations of those frames.

With a Gaussian belief and a linear-Gaussian model this is Bayes' rule exactly,

.. math:: p(x_{t_b - P + 1 : t_i} \mid y_{\le t_i}) \propto
    \mathcal{N}(x_{t_b - P + 1 : t_b}; \mu, \Sigma) \,
    p(x_{t_b + 1 : t_i} \mid x_{\le t_b}) \prod_{t_b < s \le t_i} p(y_s \mid x_s),

with the dynamics given by the learned prior (up to the prior's own density on the belief
frames, which is broad next to :math:`\Sigma`); within the chain of cycles
:math:`\dots \to b \to i` no observation is counted twice. Starting from :math:`b` rather
than :math:`i - 1` lets one guided window see every observed frame since :math:`t_b`
instead of a single new one: measured on Lorenz-96 (Sakov setting, one trajectory, 40
cycles, DDIM 10, GMRES 6, 16 members), 0.34 against 0.88 for the previous-cycle start, at
the same cost per cycle; where only one observation time fits in a window (a long gap) the
two are the same. The cycles therefore form interleaved chains (as many as observation
times fit in a window). Frame :math:`t_i` of each drawn trajectory is the analysis; its
last :math:`P` frames are its belief. Cycle :math:`i` is seeded with the key :math:`i`, and
the frames after :math:`t_i` carry no observation, so a change of the observations after
:math:`t_i` leaves the analyses up to :math:`t_i` unchanged, bit for bit.

The analyses are made at the observation times (or the times asked for), one draw per
cycle, whatever the gap between them: a gap longer than a window is covered by several
windows of the same draw. Several independent experiments run in one batch.

References
----------
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
* Evensen (1994). Sequential data assimilation with a nonlinear quasi-geostrophic model
  using Monte Carlo methods to forecast error statistics. https://doi.org/10.1029/94JC00572
"""

from __future__ import annotations

__all__ = ["filter_analyses"]

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.da.config import SamplingConfig
from xappa.core.da.observations import FrameObservations, GaussianFrames, Joined, Shifted
from xappa.core.da.smoother import smooth


def _times(observations: Sequence[FrameObservations], analysis: Sequence[int] | None) -> list[int]:
    if analysis is None:
        try:
            found = {int(t) for obs in observations for t in obs.observed_frames}  # type: ignore[attr-defined]
        except AttributeError as err:
            msg = "analysis times are required for observations without observed_frames"
            raise TypeError(msg) from err
        analysis = sorted(found)
    times = [int(t) for t in analysis]
    if not times or any(b <= a for a, b in itertools.pairwise(times)) or times[0] < 0:
        msg = f"analysis must be non-empty, increasing frame indices >= 0; found {times[:10]}"
        raise ValueError(msg)
    return times


def _background_cycle(
    times: Sequence[int], i: int, window: int, past: int, lag: int | None
) -> int | None:
    """Return the cycle whose belief cycle ``i`` starts from (None: raw data from frame 0)."""
    if times[i] + 1 <= window:
        return None
    first = i - 1
    while first > 0 and times[i] - times[first - 1] + past <= window:
        if lag is not None and i - (first - 1) > lag:
            break
        first -= 1
    return first


def filter_analyses(
    denoiser: nn.Module,
    observations: FrameObservations | Sequence[FrameObservations],
    *,
    members: int,
    frame: Sequence[int],
    window: int,
    config: SamplingConfig,
    analysis: Sequence[int] | None = None,
    past: int = 1,
    lag: int | None = None,
    stride: int | None = None,
    inflation: float = 1.0,
    floor: float = 0.0,
    min_variance: Tensor | float = 1e-4,
    seed: int = 0,
    cond: Mapping[str, Tensor] | None = None,
    max_batch: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], Any] | None = None,
) -> Tensor:
    r"""Filter observations causally and return the analysis ensembles.

    Parameters
    ----------
    denoiser : nn.Module
        The prior window denoiser, on windows ``(N, K, *frame)``.
    observations : FrameObservations or sequence of them
        The observations, or one per independent experiment (sharing the analysis times).
    members : int
        The ensemble size (at least 2: the ensemble carries the covariance).
    frame : sequence of int
        The frame shape.
    window : int
        The prior's window length :math:`K` (at least 2).
    config : SamplingConfig
        The sampling settings.
    analysis : sequence of int, optional
        The analysis times (frame indices, increasing); by default every frame with an
        observation.
    past : int
        :math:`P`, the frames ending at the background's analysis time carried as the
        Gaussian belief.
    lag : int, optional
        The most earlier cycles whose raw observations a cycle assimilates again (from the
        belief of the cycle before them); by default as many as fit in one window with the
        belief, at least one.
    stride : int, optional
        The stride of the windows of a cycle that spans more than one (default
        :math:`\lceil K / 2 \rceil`).
    inflation : float
        The factor on the ensemble covariance of the belief.
    floor : float
        The belief's diagonal floor, relative to the ensemble variance.
    min_variance : Tensor or float
        The belief's absolute diagonal floor, broadcastable to ``(P, *frame)``.
    seed : int
        The seed; cycle :math:`i` draws with the key :math:`i`.
    cond : mapping of str to Tensor, optional
        Per-frame conditioning of the prior, each with shape ``(L, ...)`` where ``L`` is at
        least the last analysis time plus one.
    max_batch : int, optional
        The most windows per network call.
    device : torch.device or str, optional
        Where to sample.
    dtype : torch.dtype
        The dtype of the samples.
    callback : callable, optional
        ``callback(cycle, cycles)`` after each cycle.

    Returns
    -------
    Tensor
        The analyses, with shape ``(M, A, *frame)`` for ``A`` analysis times, or
        ``(E, M, A, *frame)`` for a sequence of ``E`` experiments.
    """
    many = not isinstance(observations, FrameObservations) and isinstance(observations, Sequence)
    experiments = list(observations) if many else [observations]
    if members < 2 or window < 2:
        msg = (
            "the filter needs members >= 2 (the ensemble carries the covariance) and window "
            f">= 2; found members={members} and window={window}"
        )
        raise ValueError(msg)
    if not 1 <= past <= window - 1:
        msg = f"past must be in [1, window - 1 = {window - 1}]; found {past}"
        raise ValueError(msg)
    if lag is not None and lag < 1:
        msg = f"lag must be a positive int or None; found {lag}"
        raise ValueError(msg)
    stride = -(-window // 2) if stride is None else int(stride)
    times = _times(experiments, analysis)
    out: list[Tensor] = []
    tails: list[Tensor] = []  # per cycle: its last `past` frames, (E, M, P, *frame)
    for i, t in enumerate(times):
        b = _background_cycle(times, i, window, past, lag)
        cycle = []
        if b is None:
            start, hide = 0, 0
        else:
            start, hide = times[b] - tails[b].shape[2] + 1, times[b] + 1
        for e, obs in enumerate(experiments):
            raw = Shifted(obs, offset=start, hide_before=hide)
            if b is None:
                cycle.append(raw)
                continue
            belief = GaussianFrames(
                tails[b][e], 0, inflation=inflation, floor=floor, min_variance=min_variance
            )
            cycle.append(Joined([belief, raw]))
        length = t - start + 1
        part = {k: v[start : t + 1] for k, v in (cond or {}).items()}
        x = smooth(
            denoiser,
            cycle,
            members=members,
            length=length,
            frame=frame,
            window=window,
            stride=min(stride, window),
            config=config,
            seed=seed,
            key=(i,),
            cond=part,
            max_batch=max_batch,
            device=device,
            dtype=dtype,
        )  # (E, M, length, *frame)
        out.append(x[:, :, -1])
        tails.append(x[:, :, -min(past, length) :])
        if callback is not None:
            callback(i + 1, len(times))
    analyses = torch.stack(out, dim=2)
    return analyses if many else analyses[0]
