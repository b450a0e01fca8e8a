"""The part every guided denoiser shares: selecting each row's observations.

A guided denoiser wraps a prior denoiser; rows whose window has no observations get the plain
prior output, and the others go to the method's own :meth:`GuidedDenoiser.guide` step.
"""

from __future__ import annotations

__all__ = ["GuidedDenoiser"]

from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import Denoiser, expand_sigma
from xappa.core.guidance.observation import ObservationBatch, Observations


class GuidedDenoiser(nn.Module):
    r"""Creates the base of a posterior denoiser around a prior denoiser.

    Parameters
    ----------
    denoiser : Denoiser
        The prior denoiser :math:`d(x_t, \sigma, **cond)`.
    observations : Observation, sequence or mapping
        One :class:`~xappa.core.guidance.observation.Observation` for every row, or
        per-window observations selected by the ``window_index`` keyword (see
        :mod:`xappa.core.guidance.observation`). Rows of windows without observations get
        the plain denoiser output.
    """

    def __init__(self, denoiser: Denoiser, observations: Observations) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.observations = observations

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
            The guided estimate of :math:`E[x \mid x_t, y]`, with shape ``(N, *shape)``,
            detached.
        """
        batch = ObservationBatch(
            self.observations, x_t.shape[0], window_index, device=x_t.device, dtype=x_t.dtype
        )
        if not batch:
            with torch.no_grad():
                return self.denoiser(x_t, sigma, **kwargs)
        s2 = expand_sigma(sigma, x_t) ** 2
        with torch.enable_grad():
            x = x_t.detach().contiguous().requires_grad_(True)
            x_hat = self.denoiser(x, sigma, **kwargs)
            score = self.guide(x, x_hat, s2, batch)
        return (x_hat + s2 * score).detach()

    def guide(self, x: Tensor, x_hat: Tensor, s2: Tensor, batch: ObservationBatch) -> Tensor:
        r"""Return the likelihood score :math:`\nabla_{x_t} \log p(y \mid x_t)`.

        Parameters
        ----------
        x : Tensor
            The noisy states, requiring grad, with shape ``(N, *shape)``.
        x_hat : Tensor
            The prior denoiser output at ``x``, with its graph, with shape ``(N, *shape)``.
        s2 : Tensor
            The noise variances :math:`\sigma^2`, broadcastable to ``x``.
        batch : ObservationBatch
            The observations of the rows.

        Returns
        -------
        Tensor
            The score, with shape ``(N, *shape)``.
        """
        raise NotImplementedError
