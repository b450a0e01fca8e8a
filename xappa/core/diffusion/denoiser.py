r"""The preconditioned (EDM) denoiser with Appa's coefficients, and its training loss.

With standardized data (:math:`\sigma_{data} = 1`) and noise level :math:`\sigma`:

.. math:: d(x_\sigma) = c_{skip} x_\sigma + c_{out} F(c_{in} x_\sigma, c_{noise})

with :math:`c_{skip} = 1 / (\sigma^2 + 1)`, :math:`c_{out} = \sigma / \sqrt{\sigma^2 + 1}`,
:math:`c_{in} = 1 / \sqrt{\sigma^2 + 1}` and :math:`c_{noise} = 10 \ln \sigma`.

References
----------
* Karras et al. (2022). Elucidating the Design Space of Diffusion-Based Generative Models.
   https://arxiv.org/abs/2206.00364
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["Denoiser", "PreconditionedDenoiser", "denoiser_loss", "expand_sigma"]

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from xappa.core.diffusion.schedule import Schedule


class Denoiser(Protocol):
    r"""A denoiser :math:`d(x_t, \sigma) \approx E[x \mid x_t]`.

    Any callable ``d(x_t, sigma, **conditioning)`` with ``x_t`` of shape ``(B, *)`` and
    ``sigma`` of shape ``(B,)`` returning a tensor of the shape of ``x_t``.
    """

    def __call__(self, x_t: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor: ...  # noqa: D102


def expand_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast noise levels against a batch.

    Parameters
    ----------
    sigma : Tensor or float
        A scalar, or one noise level per sample with shape ``(B,)``.
    x : Tensor
        The batch, with shape ``(B, *)``.

    Returns
    -------
    Tensor
        ``sigma`` with shape ``(B, 1, ..., 1)`` (as many ones as ``x`` has trailing dims).
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


class PreconditionedDenoiser(nn.Module):
    r"""Creates the EDM-preconditioned denoiser of Appa around a backbone.

    Parameters
    ----------
    backbone : nn.Module
        A network ``F(x, c_noise, **conditioning)`` with ``x`` of shape ``(B, *)`` and
        ``c_noise`` of shape ``(B,)``, returning the shape of ``x``.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(
        self, x_t: Tensor, sigma: Tensor | float, date: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        r"""Denoise ``x_t``.

        Parameters
        ----------
        x_t : Tensor
            Noisy samples, with shape ``(B, *)``.
        sigma : Tensor or float
            Noise levels, with shape ``(B,)`` or scalar.
        date : Tensor, optional
            Integer dates ``[year, month, day, hour]`` of each frame, with shape ``(B, K, 4)``,
            passed to the backbone as ``date=``; given by position (as Appa's
            ``denoiser(x_t, sigma, dates)``) or by keyword. Omitted for backbones without
            dates.
        **kwargs
            Other conditioning passed to the backbone.

        Returns
        -------
        Tensor
            The denoised estimate, with shape ``(B, *)``.
        """
        if date is not None:
            kwargs["date"] = date
        s = expand_sigma(sigma, x_t)
        c_skip = 1 / (s**2 + 1)
        c_out = s / torch.sqrt(s**2 + 1)
        c_in = 1 / torch.sqrt(s**2 + 1)
        c_noise = 10 * torch.log(s).reshape(x_t.shape[0])
        return c_skip * x_t + c_out * self.backbone(c_in * x_t, c_noise, **kwargs)


def denoiser_loss(
    denoiser: Denoiser,
    x: Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    sigma_min_penalty: float = 0.0,
    **kwargs: Any,
) -> Tensor:
    r"""Appa's denoising loss.

    With :math:`t \sim U[0, 1)`, :math:`\sigma = \sigma(t)` and
    :math:`x_\sigma = x + \sigma \epsilon`:

    .. math:: \ell = \frac{1}{B} \sum_b \lambda(\sigma_b)
        \, \mathrm{mean}\, (d(x_\sigma) - x)^2_b, \qquad
        \lambda(\sigma) = \frac{1}{(\sigma + \sigma_{pen})^2} + 1

    Parameters
    ----------
    denoiser : Denoiser
        The denoiser to train.
    x : Tensor
        Clean samples, with shape ``(B, *)``.
    schedule : Schedule
        The noise schedule.
    generator : torch.Generator, optional
        The source of randomness for ``t`` and the noise.
    sigma_min_penalty : float
        Appa's ``loss.sigma_min_penalty`` (0 in its configs).
    **kwargs
        Conditioning passed to the denoiser.

    Returns
    -------
    Tensor
        The scalar loss.
    """
    t = torch.rand(x.shape[0], dtype=x.dtype, device=x.device, generator=generator)
    sigma = schedule(t)
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    x_t = x + expand_sigma(sigma, x) * noise
    x_hat = denoiser(x_t, sigma, **kwargs)
    weight = 1 / (sigma + sigma_min_penalty) ** 2 + 1
    err = (x_hat - x).square().flatten(1).mean(dim=1)
    return (weight * err).mean()
