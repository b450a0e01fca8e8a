r"""Noise schedules :math:`\sigma(t)` for :math:`t \in [0, 1]`, as in Appa.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
   Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "SCHEDULE_NAMES",
    "LogLinearSchedule",
    "LogLogitSchedule",
    "RectifiedSchedule",
    "Schedule",
    "create_schedule",
]

import math

import torch
from torch import Tensor


class Schedule:
    r"""Creates a noise schedule :math:`\sigma(t)` between ``sigma_min`` and ``sigma_max``.

    Parameters
    ----------
    sigma_min : float
        The noise at :math:`t = 0`.
    sigma_max : float
        The noise at :math:`t = 1`.
    t_max : float
        The time at which sampling starts (1, or :math:`1 - 1/256` in bfloat16).
    """

    name = "schedule"

    def __init__(
        self, sigma_min: float = 1e-3, sigma_max: float = 1e3, t_max: float = 1.0
    ) -> None:
        if not 0 < sigma_min < sigma_max:
            msg = f"schedule needs 0 < sigma_min < sigma_max; found {sigma_min} and {sigma_max}"
            raise ValueError(msg)
        if not 0 < t_max <= 1:
            msg = f"schedule needs 0 < t_max <= 1; found {t_max}"
            raise ValueError(msg)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.t_max = float(t_max)

    def __call__(self, t: Tensor) -> Tensor:
        r"""Return :math:`\sigma(t)`.

        Parameters
        ----------
        t : Tensor
            Times in :math:`[0, 1]`, with any shape.

        Returns
        -------
        Tensor
            The noise levels, with the shape of ``t``.
        """
        raise NotImplementedError

    @property
    def sigma_tmax(self) -> float:
        r"""The noise :math:`\sigma(t_{max})` that scales the initial sample."""
        return float(self(torch.tensor(self.t_max, dtype=torch.float64)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g},"
            f" t_max={self.t_max:g})"
        )


class RectifiedSchedule(Schedule):
    r"""Creates Appa's rectified schedule (the default).

    .. math:: \sigma(t) = \frac{t + (1 - t) \sigma_{min}}{t (1 / \sigma_{max} - 1) + 1}

    so that :math:`\sigma(0) = \sigma_{min}`, :math:`\sigma(1/2) \approx 1` and
    :math:`\sigma(1) = \sigma_{max}`: the variance-exploding counterpart of rectified flow.
    """

    name = "rectified"

    def __call__(self, t: Tensor) -> Tensor:  # noqa: D102
        return (t + (1 - t) * self.sigma_min) / (t * (1 / self.sigma_max - 1) + 1)


class LogLinearSchedule(Schedule):
    r"""Creates a log-linear schedule.

    .. math:: \sigma(t) = \exp(\ln \sigma_{min} + (\ln \sigma_{max} - \ln \sigma_{min}) t)
    """

    name = "loglinear"

    def __call__(self, t: Tensor) -> Tensor:  # noqa: D102
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return torch.exp(lo + (hi - lo) * t)


class LogLogitSchedule(Schedule):
    r"""Creates a log-logit schedule.

    .. math:: \sigma(t) = \sqrt{\sigma_{min} \sigma_{max}}
        \exp(\rho \, \mathrm{logit}(t (1 - 2 \epsilon) + \epsilon))

    with :math:`\rho = 2` and :math:`\epsilon = (\sigma_{min} / \sigma_{max})^{1 / (2 \rho)}`.
    """

    name = "loglogit"

    def __init__(
        self, sigma_min: float = 1e-3, sigma_max: float = 1e3, t_max: float = 1.0, rho: float = 2.0
    ) -> None:
        super().__init__(sigma_min, sigma_max, t_max)
        self.rho = float(rho)
        self.eps = (self.sigma_min / self.sigma_max) ** (1 / (2 * self.rho))

    def __call__(self, t: Tensor) -> Tensor:  # noqa: D102
        u = t * (1 - 2 * self.eps) + self.eps
        return math.sqrt(self.sigma_min * self.sigma_max) * torch.exp(self.rho * torch.logit(u))


_SCHEDULES = {cls.name: cls for cls in (RectifiedSchedule, LogLinearSchedule, LogLogitSchedule)}

#: The names :func:`create_schedule` accepts.
SCHEDULE_NAMES = tuple(_SCHEDULES)


def create_schedule(
    name: str = "rectified",
    *,
    sigma_min: float = 1e-3,
    sigma_max: float = 1e3,
    bfloat16: bool = False,
) -> Schedule:
    """Create a schedule by name, as Appa's configs do.

    Parameters
    ----------
    name : str
        ``"rectified"`` (default), ``"loglinear"`` or ``"loglogit"``.
    sigma_min, sigma_max : float
        The noise range.
    bfloat16 : bool
        Start sampling at :math:`t_{max} = 1 - 1/256` (Appa's bfloat16 setting).

    Returns
    -------
    Schedule
        The schedule.
    """
    if name not in _SCHEDULES:
        msg = f"schedule name must be one of {sorted(_SCHEDULES)}; found {name!r}"
        raise ValueError(msg)
    t_max = 1 - 1 / 256 if bfloat16 else 1.0
    return _SCHEDULES[name](sigma_min=sigma_min, sigma_max=sigma_max, t_max=t_max)
