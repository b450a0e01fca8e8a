r"""Train Appa's convolutional autoencoder on standardized states, through the generic loop.

The loss is Appa's latitude-weighted mean squared error: with
:math:`w(\phi) = \cos \phi + 1 / n_{lon}` (not normalised),

.. math:: \ell = \mathrm{mean}_{b, c, i, j}\; w(\phi_i)\,(\hat{x}_{bcij} - x_{bcij})^2 .

On a grid with rows on the poles these weights give each pole row :math:`1/n_{lon}`, a few
times less than its neighbour, and a decoder trained with them reconstructs the pole rows
several times worse than the rest; ``loss_weights="poles-like-neighbours"`` gives each pole row
the weight of the row next to it (:data:`LOSS_WEIGHTS`).

Training runs through :func:`xappa.train.loop.train` (AdamW, warm-up and schedule, gradient
clipping, EMA, validation, resumable safetensors checkpoints, DDP under ``torchrun``);
mixed precision is an autocast around the forward pass. A trained run directory holds the
loop's checkpoint plus ``autoencoder.yaml`` (architecture and state spec) and
``stats.zarr`` (the pixel statistics), which :func:`load_autoencoder` reads back.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "LOSS_WEIGHTS",
    "autocast",
    "autoencoder_loss",
    "latitude_weights",
    "load_autoencoder",
    "reconstruction_rmse",
    "save_autoencoder_files",
    "train_autoencoder",
]

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import xarray as xr
import yaml
from torch import Tensor, nn

from xappa.core.latitude import APPA_MODES, appa_weights
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig
from xappa.models.runs import load_autoencoder
from xappa.state.spec import StateSpec
from xappa.state.stats import write_stats
from xappa.train.data import RandomSnapshots, StateData
from xappa.train.loop import TrainConfig, TrainResult, train

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

LOSS_WEIGHTS = APPA_MODES
"""The latitude weights of the autoencoder loss: Appa's, or Appa's with each pole row weighted
like the row next to it (:data:`xappa.core.latitude.APPA_MODES`)."""


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed forward pass in mixed precision.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16"}
        ``"fp32"`` does nothing; the others autocast to bfloat16 or float16.
    device : torch.device
        The device of the computation.
    """
    if precision not in _PRECISIONS:
        msg = f"precision must be one of {list(_PRECISIONS)}; found {precision!r}"
        raise ValueError(msg)
    dtype = _PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def latitude_weights(latitudes: Tensor, n_lon: int, *, mode: str = "appa") -> Tensor:
    r"""Return the loss weights of each latitude row (:func:`xappa.core.latitude.appa_weights`).

    Parameters
    ----------
    latitudes : Tensor
        The latitudes :math:`\phi` in degrees, with shape ``(H,)``.
    n_lon : int
        The number of longitudes.
    mode : {"appa", "poles-like-neighbours"}
        ``"appa"``: :math:`\cos \phi + 1 / n_{lon}`. ``"poles-like-neighbours"``: the same,
        but a row on a pole (:math:`|\phi| = 90`) gets the weight of the row next to it, so
        the decoder learns the pole rows as well as their neighbours (grids without pole
        rows are unchanged).

    Returns
    -------
    Tensor
        The weights, with shape ``(H, 1)`` (broadcast over longitude).
    """
    weights = appa_weights(latitudes.detach().cpu().double().numpy(), n_lon, mode=mode)
    return torch.from_numpy(weights).float()[:, None].to(latitudes.device)


def autoencoder_loss(
    latitudes: Tensor, n_lon: int, *, precision: str = "fp32", weights: str = "appa"
) -> Callable[[nn.Module, Tensor], Tensor]:
    """Return the latitude-weighted MSE ``loss(autoencoder, x)`` for the loop.

    Parameters
    ----------
    latitudes : Tensor
        The grid's latitudes in degrees, with shape ``(H,)``.
    n_lon : int
        The number of longitudes.
    precision : {"fp32", "bf16", "fp16"}
        The autocast of the forward pass; the loss is computed in float32.
    weights : {"appa", "poles-like-neighbours"}
        The latitude weights (:func:`latitude_weights`).

    Returns
    -------
    callable
        ``loss(model, x) -> Tensor`` of shape ``()``, with ``x`` standardized states of shape
        ``(B, C, H, W)`` and ``model(x)`` returning ``(z, x_hat)``.
    """
    row_weights = latitude_weights(latitudes, n_lon, mode=weights)

    def loss(model: nn.Module, x: Tensor) -> Tensor:
        device = next(iter(model.parameters())).device
        x = x.to(device)
        with autocast(precision, device):
            _, x_hat = model(x)
        return (row_weights.to(device) * (x_hat.float() - x).square()).mean()

    return loss


@torch.no_grad()
def reconstruction_rmse(
    model: ConvAutoencoder, batches: Iterable[Tensor], latitudes: Tensor
) -> dict[str, float]:
    r"""Return the reconstruction RMSE in standardized units.

    Parameters
    ----------
    model : ConvAutoencoder
        The autoencoder (evaluated without latent noise).
    batches : iterable of Tensor
        Standardized states, each with shape ``(B, C, H, W)``.
    latitudes : Tensor
        The latitudes in degrees, with shape ``(H,)``.

    Returns
    -------
    dict
        ``rmse``: weighted by :math:`\cos \phi + 1/n_{lon}` normalised to mean 1 (an area
        mean); ``rmse_unweighted``: over all elements.
    """
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    weighted = plain = weight = count = 0.0
    for x in batches:
        x = x.to(device)
        w = latitude_weights(latitudes, x.shape[-1]).to(device)
        err = (model.decode(model.encode(x)).float() - x).square()
        weighted += float((w * err).sum())
        plain += float(err.sum())
        weight += float(w.sum()) * x.shape[-1] * x.shape[0] * x.shape[1]
        count += err.numel()
    model.train(was_training)
    return {"rmse": (weighted / weight) ** 0.5, "rmse_unweighted": (plain / count) ** 0.5}


def train_autoencoder(
    model: ConvAutoencoder,
    data: StateData,
    config: TrainConfig,
    *,
    batch_size: int = 8,
    valid_data: StateData | None = None,
    valid_batches: int = 4,
    precision: str = "fp32",
    loss_weights: str = "appa",
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train an autoencoder on random standardized snapshots.

    Parameters
    ----------
    model : ConvAutoencoder
        The autoencoder, trained in place; its ``config.shape`` and ``in_channels`` must match
        the data's frames ``(C, H, W)``.
    data : StateData
        The training states.
    config : TrainConfig
        The loop settings (steps, learning rate, clipping, EMA, checkpoints, device).
    batch_size : int
        Snapshots per step (per process under DDP).
    valid_data : StateData, optional
        Held-out states for the validation loss.
    valid_batches : int
        The number of fixed validation batches.
    precision : {"fp32", "bf16", "fp16"}
        The autocast of the forward pass (Appa trains its autoencoder in fp32).
    loss_weights : {"appa", "poles-like-neighbours"}
        The latitude weights of the loss (:func:`latitude_weights`).
    seed : int
        The seed of the snapshot draws.
    callback : callable, optional
        ``callback(step, loss)``, as in :func:`~xappa.train.loop.train`.

    Returns
    -------
    TrainResult
        The losses; the validation loss is the training loss on ``valid_data``.
    """
    cfg = model.config
    if (cfg.in_channels, *cfg.shape) != data.frame_shape:
        msg = (
            f"model expects frames of shape ({cfg.in_channels}, {cfg.shape[0]}, {cfg.shape[1]});"
            f" found data frames of shape {data.frame_shape}"
        )
        raise ValueError(msg)
    if loss_weights not in LOSS_WEIGHTS:
        msg = f"loss_weights must be one of {list(LOSS_WEIGHTS)}; found {loss_weights!r}"
        raise ValueError(msg)
    loss = autoencoder_loss(
        data.latitudes, data.frame_shape[-1], precision=precision, weights=loss_weights
    )
    batches = RandomSnapshots(data, batch_size, seed=seed)
    valid = None
    if valid_data is not None:
        valid = RandomSnapshots(valid_data, batch_size, seed=seed).fixed(valid_batches)
    return train(model, loss, batches, config, valid_batches=valid, callback=callback)


def save_autoencoder_files(
    directory: str | os.PathLike,
    config: AutoencoderConfig,
    spec: StateSpec,
    stats: xr.Dataset,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``autoencoder.yaml`` and ``stats.zarr`` next to a checkpoint.

    Parameters
    ----------
    directory : str or path
        The run directory (created).
    config : AutoencoderConfig
        The architecture.
    spec : StateSpec
        The channels, grid and time step of the states.
    stats : Dataset
        The pixel statistics (:func:`xappa.train.data.train_stats`).
    extra : dict, optional
        More plain data for the YAML file (the training settings, ...).
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        "surface_variables": list(spec.surface_variables),
        "level_variables": list(spec.level_variables),
        "levels": list(spec.levels),
        "latitudes": list(spec.latitudes),
        "longitudes": list(spec.longitudes),
        "time_step": str(spec.time_step),
        "units": dict(spec.units),
        "level_units": spec.level_units,
        "name": spec.name,
    }
    model = {k: _plain(v) for k, v in dataclasses.asdict(config).items()}
    text = yaml.safe_dump({"model": model, "state": state, **(extra or {})}, sort_keys=False)
    (path / "autoencoder.yaml").write_text(text)
    write_stats(stats, path / "stats.zarr")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
