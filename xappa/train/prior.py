"""Train a diffusion prior over windows of :math:`K` consecutive (latent) states.

The prior is a :class:`~xappa.core.diffusion.denoiser.PreconditionedDenoiser` trained with
Appa's :func:`~xappa.core.diffusion.denoiser.denoiser_loss` on random windows drawn from
standardized trajectories, through the generic :func:`xappa.train.loop.train`.

References
----------
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["RandomWindows", "prior_loss", "train_prior"]

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import PreconditionedDenoiser, denoiser_loss
from xappa.core.diffusion.schedule import Schedule, create_schedule
from xappa.train.loop import TrainConfig, TrainResult, train


class RandomWindows:
    r"""Creates a sampler of random windows of consecutive frames, reproducible per step.

    The windows of step ``s`` on rank ``r`` are drawn from a generator seeded with
    ``(seed, s, r)``, so a resumed or distributed run sees the same data as an uninterrupted
    one.

    Parameters
    ----------
    data : Tensor
        Trajectories, with shape ``(T, L, *frame)`` (``T`` trajectories of ``L`` frames).
    window : int
        The window length :math:`K \le L`.
    batch_size : int
        Windows per batch.
    seed : int
        The base seed.
    """

    def __init__(self, data: Tensor, window: int, batch_size: int, seed: int = 0) -> None:
        if data.ndim < 2 or not 1 <= window <= data.shape[1] or batch_size < 1:
            msg = (
                "RandomWindows needs data of shape (T, L, *frame), 1 <= window <= L and "
                f"batch_size >= 1; found {tuple(data.shape)}, {window} and {batch_size}"
            )
            raise ValueError(msg)
        self.data, self.window, self.batch_size, self.seed = data, window, batch_size, seed

    def __call__(self, step: int) -> Tensor:
        """Return the windows of ``step``, with shape ``(batch_size, K, *frame)``."""
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        gen = torch.Generator().manual_seed(hash((self.seed, step, rank)) % 2**62)
        t, length = self.data.shape[:2]
        traj = torch.randint(t, (self.batch_size,), generator=gen)
        start = torch.randint(length - self.window + 1, (self.batch_size,), generator=gen)
        idx = start[:, None] + torch.arange(self.window)
        return self.data[traj[:, None], idx]

    def fixed(self, count: int, seed: int = -1) -> list[Tensor]:
        """Return ``count`` fixed batches (for validation) drawn with another seed."""
        other = RandomWindows(self.data, self.window, self.batch_size, seed=seed)
        return [other(i) for i in range(count)]


def prior_loss(schedule: Schedule | None = None) -> Callable[[nn.Module, Tensor], Tensor]:
    """Return the loss ``loss(denoiser, windows)`` of :func:`denoiser_loss`.

    Parameters
    ----------
    schedule : Schedule, optional
        The noise schedule (default: Appa's rectified schedule).

    Returns
    -------
    callable
        ``loss(denoiser, windows) -> Tensor``, with ``windows`` of shape ``(B, K, *frame)``.
    """
    schedule = schedule or create_schedule("rectified")

    def loss(denoiser: nn.Module, windows: Tensor) -> Tensor:
        device = next(iter(denoiser.parameters())).device
        return denoiser_loss(denoiser, windows.to(device), schedule)

    return loss


def train_prior(
    backbone: nn.Module,
    data: Tensor,
    config: TrainConfig,
    *,
    window: int,
    batch_size: int = 64,
    valid_data: Tensor | None = None,
    valid_batches: int = 8,
    schedule: Schedule | None = None,
    seed: int = 0,
) -> tuple[PreconditionedDenoiser, TrainResult]:
    """Train a window prior :math:`p(x_{1:K})` on standardized trajectories.

    Parameters
    ----------
    backbone : nn.Module
        The backbone ``F(x, c_noise)`` for windows of shape ``(B, K, *frame)``.
    data : Tensor
        Standardized training trajectories, with shape ``(T, L, *frame)``.
    config : TrainConfig
        The loop settings (steps, learning rate, EMA, checkpoints, ...).
    window : int
        The window length :math:`K`.
    batch_size : int
        Windows per step (per process under DDP).
    valid_data : Tensor, optional
        Held-out trajectories, with shape ``(T', L', *frame)``, for the validation loss.
    valid_batches : int
        The number of fixed validation batches.
    schedule : Schedule, optional
        The noise schedule (default: rectified).
    seed : int
        The seed of the window draws.

    Returns
    -------
    tuple of PreconditionedDenoiser and TrainResult
        The denoiser (with the EMA weights when ``config.ema_decay`` is set) and the record.
    """
    denoiser = PreconditionedDenoiser(backbone)
    loss = prior_loss(schedule)
    batches = RandomWindows(data, window, batch_size, seed=seed)
    valid: Sequence[Tensor] | None = None
    if valid_data is not None:
        valid = RandomWindows(valid_data, window, batch_size, seed=seed).fixed(valid_batches)
    result = train(denoiser, loss, batches, config, valid_batches=valid)
    if result.ema is not None:
        denoiser.load_state_dict(result.ema.state_dict())
    return denoiser.eval(), result
