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

import torch
from torch import Tensor

from xappa.core.diffusion.denoiser import Denoiser
from xappa.core.guidance.base import GuidedDenoiser
from xappa.core.guidance.observation import ObservationBatch, Observations


class DPSDenoiser(GuidedDenoiser):
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
        The weight :math:`\gamma` of the prior-variance term of the likelihood. With
        :math:`\gamma = 1` (default) it is the Tweedie variance :math:`\sigma^2 / (1 + \sigma^2)`
        of a standardized coordinate, and DPS is exact for one point observation of a
        standard normal prior; SDA's ``1e-2`` over-weights the observations of standardized
        states, the guided denoiser's gain turns negative and every sampler diverges (see the
        sampler-accuracy guide).
    """

    def __init__(self, denoiser: Denoiser, observations: Observations, *, gamma: float = 1.0):
        super().__init__(denoiser, observations)
        if not gamma >= 0:
            msg = f"gamma must be non-negative; found {gamma}"
            raise ValueError(msg)
        self.gamma = float(gamma)

    def guide(self, x: Tensor, x_hat: Tensor, s2: Tensor, batch: ObservationBatch) -> Tensor:
        """Return the gradient of the diagonal log-likelihood (see :class:`GuidedDenoiser`)."""
        s2_obs = s2.reshape(x.shape[0], 1)
        y_hat = batch.apply(x_hat)
        var = batch.variances + self.gamma * s2_obs / (1 + s2_obs)
        err = torch.where(batch.mask, (batch.values - y_hat) ** 2 / var, 0.0)
        return torch.autograd.grad(-0.5 * err.sum(), x)[0]
