r"""The score-based filter: sequential windows conditioned on the previous analysis.

At time :math:`t \ge K - 1` the window covers frames :math:`[t - K + 1, t]`. Its first frame
is observed as a full state: the mean of the analysis ensemble of time :math:`t - K + 1`
(which used the observations up to that time only), with the ensemble variance times
``inflation`` plus ``min_variance`` (a diagonal Gaussian approximation of the filtering
distribution). Its other :math:`K - 1` frames get the raw observations
:math:`y_{t - K + 2}, \dots, y_t`. MMPS samples the window and the last frame of each member
is the analysis at :math:`t`. With the Gaussian approximation, this is Bayes' rule exactly,

.. math:: p(x_{t - K + 1:t} \mid y_{\le t}) \propto p(x_{t - K + 1} \mid y_{\le t - K + 1})
    \, p(x_{t - K + 2:t} \mid x_{t - K + 1}) \prod_{s = t - K + 2}^{t} p(y_s \mid x_s),

with the dynamics given by the learned window prior; no observation is counted twice. Before
:math:`K - 1` the first window :math:`[0, K)` is sampled with the raw observations of frames
:math:`0, \dots, t`. Each analysis depends only on the observations up to its own time: the
filter is causal by construction. It is the autoregressive scheme of Appa's forecasts
(previous analysis frames observed as full states, new frames generated), with one new frame
per window and the new observations inside the window.

Several independent experiments (trajectories) run in one batch, each with its own
observations, through MMPS's per-window observations (``window_index`` = experiment).

References
----------
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
* Rozet et al. (2024). Learning Diffusion Priors from Observations by Expectation
  Maximization. https://arxiv.org/abs/2405.13712
"""

from __future__ import annotations

__all__ = ["FilterConfig", "filter_ensemble"]

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from xappa.core.diffusion.denoiser import Denoiser
from xappa.core.guidance.observation import MaskOperator, Observation
from xappa.da.sampling import SamplingConfig
from xappa.options import get_options


@dataclass(frozen=True, kw_only=True)
class FilterConfig(SamplingConfig):
    r"""Creates the filter settings.

    Attributes
    ----------
    window : int
        The prior's window length :math:`K` (at least 2).
    inflation : float
        Factor on the variance of the previous analysis ensemble used as the error variance
        of the full-state observation of the window's first frame.
    min_variance : float
        Added to the full-state variances (standardized units).
    """

    window: int
    inflation: float = 1.0
    min_variance: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 2 or self.members < 2:
            msg = (
                "FilterConfig needs window >= 2 and members >= 2 (the ensemble variance is the "
                f"background variance); found {self.window} and {self.members}"
            )
            raise ValueError(msg)
        if not (self.inflation > 0 and self.min_variance >= 0):
            msg = (
                "FilterConfig needs inflation > 0 and min_variance >= 0; "
                f"found {self.inflation} and {self.min_variance}"
            )
            raise ValueError(msg)


def _observation(frame_mask: Tensor, values: Tensor, variances: Tensor) -> Observation | None:
    if not bool(frame_mask.any()):
        return None
    return Observation(MaskOperator(frame_mask).to(values.device), values, variances)


def filter_ensemble(
    denoiser: Denoiser,
    values: Tensor,
    mask: Tensor,
    variance: Tensor | float,
    config: FilterConfig,
    *,
    seed: int = 0,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Filter observations sequentially and return the analysis ensembles.

    Parameters
    ----------
    denoiser : Denoiser
        The window prior, taking windows of shape ``(N, K, *frame)``.
    values : Tensor
        Standardized observed values of ``E`` experiments, with shape ``(E, L, *frame)``.
    mask : Tensor
        True where observed, with shape ``(E, L, *frame)``.
    variance : Tensor or float
        Standardized observation-error variances, a scalar or with shape ``(E, L, *frame)``.
    config : FilterConfig
        The window, conditioning, ensemble and sampler settings.
    seed : int
        The seed; step :math:`t` uses ``seed + t``, so analyses are reproducible step by step.
    callback : callable, optional
        Called as ``callback(t, analysis)`` with the analysis ensemble of shape
        ``(E, members, *frame)`` after each step.

    Returns
    -------
    Tensor
        The analysis ensembles, with shape ``(E, members, L, *frame)``.
    """
    if values.shape != mask.shape or values.ndim < 3:
        msg = (
            "values and mask must have the same shape (E, L, *frame); "
            f"found {tuple(values.shape)} and {tuple(mask.shape)}"
        )
        raise ValueError(msg)
    e, length = values.shape[:2]
    frame = values.shape[2:]
    k, m = config.window, config.members
    var = torch.as_tensor(variance, dtype=values.dtype).expand(values.shape)
    index = torch.arange(e, device=values.device).repeat_interleave(m)
    out = values.new_zeros(e, m, length, *frame)
    bar = tqdm(range(length), disable=not get_options()["progress"], desc="filter")
    for t in bar:
        start = max(t - k + 1, 0)
        observations: list[Observation | None] = []
        for i in range(e):
            frame_mask = torch.zeros(k, *frame, dtype=torch.bool, device=values.device)
            first = 0 if start == 0 else 1  # window frames that get raw observations
            raw_mask = mask[i, start + first : t + 1]
            frame_mask[first : t + 1 - start] = raw_mask
            raw_values = values[i, start + first : t + 1][raw_mask]
            raw_var = var[i, start + first : t + 1][raw_mask]
            if start > 0:
                background = out[i, :, start]  # (M, *frame), analysis of time start
                frame_mask[0] = True
                b_var = background.var(dim=0) * config.inflation + config.min_variance
                raw_values = torch.cat([background.mean(dim=0).flatten(), raw_values])
                raw_var = torch.cat([b_var.flatten(), raw_var])
            observations.append(_observation(frame_mask, raw_values, raw_var))
        sampler = config.make_sampler(config.guided(denoiser, observations))
        generator = torch.Generator(device=values.device).manual_seed(seed + t)
        x = sampler.sample(
            (e * m, k, *frame),
            generator=generator,
            dtype=values.dtype,
            device=values.device,
            window_index=index,
        ).unflatten(0, (e, m))
        out[:, :, t] = x[:, :, t - start]
        if callback is not None:
            callback(t, out[:, :, t])
    return out
