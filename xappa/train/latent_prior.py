r"""Train the latent prior: a denoiser of :math:`K`-frame latent windows conditioned on dates.

The prior is a :class:`~xappa.core.diffusion.denoiser.PreconditionedDenoiser` around a
backbone ``F(x, c_noise, date=date)`` (Appa's :class:`~xappa.core.nn.vidit.ViDiT`), trained
with the core's :func:`~xappa.core.diffusion.denoiser.denoiser_loss` on random windows of
standardized latents and their dates ``[year, month, day, hour]``
(:class:`~xappa.train.data.RandomDatedWindows`), through the generic loop
:func:`xappa.train.loop.train` (optional EMA, clipping, validation, checkpoints, DDP).
A run directory holds the loop's checkpoint (the denoiser's weights, keys ``backbone.*``)
and ``prior.yaml`` with the backbone architecture, read back by :func:`load_latent_prior`.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Karras et al. (2022). Elucidating the Design Space of Diffusion-Based Generative Models.
  https://arxiv.org/abs/2206.00364
"""

from __future__ import annotations

__all__ = ["latent_prior_loss", "load_latent_prior", "save_prior_files", "train_latent_prior"]

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import PreconditionedDenoiser, denoiser_loss
from xappa.core.diffusion.schedule import Schedule, create_schedule
from xappa.core.nn.configs import ViDiTConfig
from xappa.models.runs import load_latent_prior
from xappa.train.autoencoder import autocast
from xappa.train.data import LatentData, RandomDatedWindows
from xappa.train.loop import TrainConfig, TrainResult, train


def latent_prior_loss(
    schedule: Schedule | None = None, *, precision: str = "fp32"
) -> Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor]:
    """Return the loss ``loss(denoiser, (windows, dates))`` of :func:`denoiser_loss`.

    Parameters
    ----------
    schedule : Schedule, optional
        The noise schedule (default: Appa's rectified schedule, σ in [1e-3, 1e3]).
    precision : {"fp32", "bf16", "fp16"}
        The autocast of the denoiser's forward pass; the loss is computed in float32.

    Returns
    -------
    callable
        ``loss(denoiser, (windows, dates)) -> Tensor`` of shape ``()``, with ``windows`` of
        shape ``(B, K, C, h, w)`` and integer ``dates`` of shape ``(B, K, 4)``.
    """
    schedule = schedule or create_schedule("rectified")

    def loss(denoiser: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        windows, dates = batch
        device = next(iter(denoiser.parameters())).device
        windows, dates = windows.to(device), dates.to(device)

        def call(x_t: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
            with autocast(precision, device):
                return denoiser(x_t, sigma, **kwargs).float()

        return denoiser_loss(call, windows, schedule, date=dates)

    return loss


def train_latent_prior(
    backbone: nn.Module,
    data: LatentData,
    config: TrainConfig,
    *,
    window: int,
    batch_size: int = 8,
    valid_data: LatentData | None = None,
    valid_batches: int = 4,
    schedule: Schedule | None = None,
    precision: str = "fp32",
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[PreconditionedDenoiser, TrainResult]:
    """Train a prior over windows of standardized latents with their dates.

    Parameters
    ----------
    backbone : nn.Module
        The backbone ``F(x, c_noise, date=date)`` for windows of shape ``(B, K, C, h, w)``
        (e.g. :class:`~xappa.core.nn.vidit.ViDiT` with ``blanket_size = K``).
    data : LatentData
        The training latents.
    config : TrainConfig
        The loop settings (steps, learning rate, ``ema_decay``, checkpoints, device).
    window : int
        The window length :math:`K`.
    batch_size : int
        Windows per step (per process under DDP).
    valid_data : LatentData, optional
        Held-out latents for the validation loss.
    valid_batches : int
        The number of fixed validation batches.
    schedule : Schedule, optional
        The noise schedule (default: rectified).
    precision : {"fp32", "bf16", "fp16"}
        The autocast of the forward pass (Appa trains its prior with fp16).
    seed : int
        The seed of the window draws.
    callback : callable, optional
        ``callback(step, loss)``, as in :func:`~xappa.train.loop.train`.

    Returns
    -------
    tuple of PreconditionedDenoiser and TrainResult
        The denoiser (with the EMA weights when ``config.ema_decay`` is set, in eval mode)
        and the record.
    """
    denoiser = PreconditionedDenoiser(backbone)
    loss = latent_prior_loss(schedule, precision=precision)
    batches = RandomDatedWindows(data, window, batch_size, seed=seed)
    valid = None
    if valid_data is not None:
        valid = RandomDatedWindows(valid_data, window, batch_size, seed=seed).fixed(valid_batches)
    result = train(denoiser, loss, batches, config, valid_batches=valid, callback=callback)
    if result.ema is not None:
        denoiser.load_state_dict(result.ema.state_dict())
    return denoiser.eval(), result


def save_prior_files(
    directory: str | os.PathLike, config: ViDiTConfig, *, extra: dict[str, Any] | None = None
) -> None:
    """Write ``prior.yaml`` (the backbone architecture and more) next to a checkpoint.

    Parameters
    ----------
    directory : str or path
        The run directory (created).
    config : ViDiTConfig
        The backbone architecture.
    extra : dict, optional
        More plain data (latent store, noise level, training settings, ...).
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    backbone = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
    text = yaml.safe_dump({"backbone": backbone, **(extra or {})}, sort_keys=False)
    (path / "prior.yaml").write_text(text)
