"""Read back the networks that ``xappa train`` wrote: an autoencoder run and a prior run.

The models layer reads what training writes (:func:`xappa.models.files.read_training_runs`
assembles a :class:`~xappa.models.model.Model` from them), so the readers live here and
:mod:`xappa.train` imports them, never the reverse.
"""

from __future__ import annotations

__all__ = ["load_autoencoder", "load_latent_prior"]

import os
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor

from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
from xappa.core.nn.vidit import ViDiT
from xappa.io.integrity import read_yaml
from xappa.state.spec import StateSpec
from xappa.state.stats import read_stats, stats_to_tensors


def load_autoencoder(
    directory: str | os.PathLike, *, ema: bool = False
) -> tuple[ConvAutoencoder, StateSpec, Tensor, Tensor]:
    """Load a trained autoencoder run written by ``xappa train autoencoder``.

    Parameters
    ----------
    directory : str or path
        The run directory, with ``autoencoder.yaml``, ``stats.zarr`` and
        ``model.safetensors`` (or ``ema.safetensors``).
    ema : bool
        Load the EMA weights.

    Returns
    -------
    tuple
        The autoencoder (in eval mode), its state spec, and the channel mean and std, each
        with shape ``(C,)``.
    """
    path = Path(directory)
    weights = path / ("ema.safetensors" if ema else "model.safetensors")
    for needed in (path / "autoencoder.yaml", path / "stats.zarr", weights):
        if not needed.exists():
            msg = f"autoencoder run {str(path)!r} is missing {needed.name}"
            raise FileNotFoundError(msg)
    meta = read_yaml(path / "autoencoder.yaml")
    config = AutoencoderConfig(**meta["model"])
    spec = StateSpec(**meta["state"])
    model = ConvAutoencoder.from_config(config)
    safetensors.torch.load_model(model, str(weights))
    mean, std = stats_to_tensors(read_stats(path / "stats.zarr"), spec)
    return model.eval(), spec, mean, std


def load_latent_prior(
    directory: str | os.PathLike, *, ema: bool = True
) -> tuple[PreconditionedDenoiser, dict[str, Any]]:
    """Load a prior run written by ``xappa train prior``.

    Parameters
    ----------
    directory : str or path
        The run directory, with ``prior.yaml`` and ``model.safetensors``.
    ema : bool
        Load ``ema.safetensors`` when present.

    Returns
    -------
    tuple
        The denoiser around a :class:`~xappa.core.nn.vidit.ViDiT` (in eval mode), and the
        contents of ``prior.yaml``.
    """
    path = Path(directory)
    if not (path / "prior.yaml").is_file() or not (path / "model.safetensors").is_file():
        msg = f"prior run {str(path)!r} must hold prior.yaml and model.safetensors"
        raise FileNotFoundError(msg)
    meta = read_yaml(path / "prior.yaml")
    denoiser = PreconditionedDenoiser(ViDiT(ViDiTConfig(**meta["backbone"])))
    weights = path / "ema.safetensors"
    if not (ema and weights.is_file()):
        weights = path / "model.safetensors"
    safetensors.torch.load_model(denoiser, str(weights))
    return denoiser.eval(), meta
