r"""The exact denoiser of a Gaussian prior, a known answer for testing samplers and guidance.

For :math:`x \sim \mathcal{N}(\mu, \Sigma)` and :math:`x_\sigma = x + \sigma \epsilon`,

.. math:: E[x \mid x_\sigma] = \mu + \Sigma (\Sigma + \sigma^2 I)^{-1} (x_\sigma - \mu),

an affine map :math:`M(\sigma) x_\sigma + m(\sigma)`.
"""

from __future__ import annotations

__all__ = ["GaussianDenoiser"]

from typing import Any

import torch
from torch import Tensor, nn


class GaussianDenoiser(nn.Module):
    r"""Creates the exact denoiser of :math:`\mathcal{N}(\mu, \Sigma)`.

    Parameters
    ----------
    mean : Tensor
        The prior mean, with shape ``(D,)``.
    cov : Tensor
        The prior covariance, with shape ``(D, D)``, symmetric positive definite.
    """

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        super().__init__()
        torch._check(cov.shape == (mean.shape[0],) * 2, lambda: "cov must have shape (D, D)")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("cov", cov.clone())
        evals, evecs = torch.linalg.eigh(cov.double())
        self.register_buffer("_evals", evals.to(cov.dtype))
        self.register_buffer("_evecs", evecs.to(cov.dtype))

    def affine(self, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`M(\sigma)` and :math:`m(\sigma)` with :math:`d(x) = M x + m`.

        Parameters
        ----------
        sigma : float or Tensor
            A scalar noise level.

        Returns
        -------
        tuple of Tensor
            ``M`` with shape ``(D, D)`` and ``m`` with shape ``(D,)``.
        """
        s2 = torch.as_tensor(sigma, dtype=self.cov.dtype, device=self.cov.device) ** 2
        gain = self._evecs * (self._evals / (self._evals + s2)) @ self._evecs.T
        return gain, self.mean - gain @ self.mean

    def forward(self, x_t: Tensor, sigma: Tensor | float, **kwargs: Any) -> Tensor:
        r"""Denoise ``x_t``.

        Parameters
        ----------
        x_t : Tensor
            Noisy samples, with shape ``(B, D)``.
        sigma : Tensor or float
            Noise levels, with shape ``(B,)`` or scalar.
        **kwargs
            Ignored conditioning.

        Returns
        -------
        Tensor
            The posterior means :math:`E[x \mid x_t]`, with shape ``(B, D)``.
        """
        sigma = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device)
        s2 = sigma.reshape(-1, 1) ** 2 if sigma.ndim else sigma**2
        # Diagonalise: x -> eigenbasis, shrink each mode by lambda / (lambda + sigma^2).
        z = (x_t - self.mean) @ self._evecs
        z = z * (self._evals / (self._evals + s2))
        return self.mean + z @ self._evecs.T
