r"""Diagonal-likelihood guidance in the style of DPS and SDA.

At noise level :math:`\sigma`, with :math:`\hat{x} = d(x_t, \sigma)`, the likelihood is
approximated with a diagonal covariance,

.. math:: \log p(y \mid x_t) \approx -\frac{1}{2} \sum_i
    \frac{(y_i - A(\hat{x})_i)^2}{\sigma_{y,i}^2 + \gamma \sigma^2 / (1 + \sigma^2)},

its gradient taken with respect to :math:`x_t` through the denoiser (one VJP), and the output
is :math:`\hat{x} + \sigma^2 \nabla_{x_t} \log p(y \mid x_t)`. It costs one forward and one
backward pass per call, with no linear solve and no forward-mode AD, but it is biased: the
covariance of :math:`A \hat{x}` is replaced by a multiple of the identity (see the landing
points in the guidance guide).

References
----------
* Chung et al. (2023). Diffusion Posterior Sampling for General Noisy Inverse Problems.
  https://arxiv.org/abs/2209.14687
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
"""

from __future__ import annotations

__all__ = ["DPSDenoiser"]

from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import Denoiser, expand_sigma
from xappa.core.guidance.observation import ObservationBatch, Observations


class DPSDenoiser(nn.Module):
    r"""Creates the DPS/SDA posterior denoiser around a prior denoiser.

    Parameters
    ----------
    denoiser : Denoiser
        The prior denoiser :math:`d(x_t, \sigma, **cond)`.
    observations : Observation, sequence or mapping
        One :class:`~xappa.core.guidance.observation.Observation` for every row, or
        per-window observations selected by the ``window_index`` keyword. Rows of windows
        without observations get the plain denoiser output.
    gamma : float
        The weight :math:`\gamma` of the prior-variance term of the likelihood (SDA uses
        ``1e-2``).
    """

    def __init__(self, denoiser: Denoiser, observations: Observations, *, gamma: float = 1e-2):
        super().__init__()
        if not gamma >= 0:
            msg = f"gamma must be non-negative; found {gamma}"
            raise ValueError(msg)
        self.denoiser = denoiser
        self.observations = observations
        self.gamma = float(gamma)

    def forward(
        self,
        x_t: Tensor,
        sigma: Tensor | float,
        window_index: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        r"""Denoise ``x_t`` given the observations.

        Parameters
        ----------
        x_t : Tensor
            Noisy states, with shape ``(N, *shape)``.
        sigma : Tensor or float
            Noise levels, with shape ``(N,)`` or scalar.
        window_index : Tensor, optional
            The window of each row, with shape ``(N,)``, selecting its observations.
        **kwargs
            Conditioning passed to the prior denoiser.

        Returns
        -------
        Tensor
            The guided estimate, with shape ``(N, *shape)``, detached.
        """
        rows = x_t.shape[0]
        batch = ObservationBatch(
            self.observations, rows, window_index, device=x_t.device, dtype=x_t.dtype
        )
        if not batch:
            with torch.no_grad():
                return self.denoiser(x_t, sigma, **kwargs)
        s2 = expand_sigma(sigma, x_t) ** 2
        s2_obs = s2.reshape(rows, 1)
        with torch.enable_grad():
            x = x_t.detach().contiguous().requires_grad_(True)
            x_hat = self.denoiser(x, sigma, **kwargs)
            y_hat = batch.apply(x_hat)
            var = batch.variances + self.gamma * s2_obs / (1 + s2_obs)
            err = torch.where(batch.mask, (batch.values - y_hat) ** 2 / var, 0.0)
            log_p = -0.5 * err.sum()
            score = torch.autograd.grad(log_p, x)[0]
        return (x_hat + s2 * score).detach()
