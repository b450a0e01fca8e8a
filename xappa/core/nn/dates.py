r"""Date encodings of Appa: year progress and local (or UTC) hour, as sines and cosines.

Dates are integer tensors whose last dimension is ``[year, month, day, hour]`` (UTC).

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["local_time_encoding", "vidit_date_features", "year_progress_encoding"]

import math

import torch
from torch import Tensor

_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)


def _check_date(date: Tensor) -> None:
    torch._check(
        date.shape[-1:] == (4,),
        lambda: f"date must have shape (*, 4) [year, month, day, hour]; found {tuple(date.shape)}",
    )


def year_progress_encoding(date: Tensor) -> Tensor:
    r"""Encode the progress through the year.

    With :math:`n` the hour of the year (from 0 at 1 January 00 UTC) and :math:`N` the number
    of hours in the year (8760 or 8784), the angle is :math:`2 \pi n / N`.

    Parameters
    ----------
    date : Tensor
        Integer dates ``[year, month, day, hour]``, with shape ``(*, 4)``.

    Returns
    -------
    Tensor
        ``[sin, cos]`` of the angle, float32 with shape ``(*, 2)``.
    """
    _check_date(date)
    year, month, day, hour = date.long().unbind(dim=-1)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    before = torch.as_tensor(_DAYS_BEFORE_MONTH, device=date.device)[month - 1]
    day_of_year = before + day - 1 + (leap & (month > 2)).long()
    hours = (day_of_year * 24 + hour).double()
    total = ((365 + leap.long()) * 24).double()
    angle = 2 * math.pi * hours / total
    return torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1).float()


def local_time_encoding(date: Tensor, longitude: Tensor) -> Tensor:
    r"""Encode the local solar hour at given longitudes.

    The local hour is :math:`(h_{UTC} + 24 \lambda / 360) \bmod 24` with :math:`\lambda`
    mapped to :math:`[0, 360)`, and the angle is :math:`2 \pi` times the local hour over 24.

    Parameters
    ----------
    date : Tensor
        Integer dates ``[year, month, day, hour]``, with shape ``(*, 4)``.
    longitude : Tensor
        Longitudes in degrees, with shape ``(N,)``.

    Returns
    -------
    Tensor
        ``[sin, cos]`` of the angle, float32 with shape ``(*, N, 2)``.
    """
    _check_date(date)
    lon = torch.as_tensor(longitude, device=date.device).double()
    lon = torch.where(lon < 0, lon + 360, lon)
    local = (date[..., -1:].double() + 24 * lon / 360) % 24
    angle = 2 * math.pi * local / 24
    return torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1).float()


def vidit_date_features(date: Tensor) -> Tensor:
    r"""Compute the date features of a window, as fed to ViDiT.

    For the :math:`K` frames of a window, the features are the year-progress
    ``(sin, cos)`` pairs of every frame, then the UTC-hour (local time at longitude 0)
    ``(sin, cos)`` pairs of every frame: :math:`4K` scalars.

    Parameters
    ----------
    date : Tensor
        Integer dates ``[year, month, day, hour]``, with shape ``(B, K, 4)``.

    Returns
    -------
    Tensor
        The features ``[s_1, c_1, ..., s_K, c_K, s'_1, c'_1, ..., s'_K, c'_K]``, float32 with
        shape ``(B, 4K)``.
    """
    year = year_progress_encoding(date).flatten(-2)
    zero = torch.zeros(1, device=date.device)
    hour = local_time_encoding(date, zero).squeeze(-2).flatten(-2)
    return torch.cat((year, hour), dim=-1)
