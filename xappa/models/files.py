"""xappa's own model files: write and read a model as YAML (configs, spec) + safetensors.

:func:`save_model_files` publishes a :class:`~xappa.models.model.Model` in the layout that
:func:`xappa.models.hub.load_model` fetches through the registry; :func:`read_model_files` reads it
back, and :func:`read_training_runs` assembles a model from the run directories written by
``xappa train``.

The YAML file records the SHA-256 of its weights file (``sha256: {<stem>.safetensors:
<hex>}``), and :func:`read_model_files` checks it before reading a byte of the weights, so a
modified or damaged local model is refused. A YAML file without the record (written by an
older xappa) loads with a warning.
"""

from __future__ import annotations

__all__ = ["FORMAT", "read_model_files", "read_training_runs", "save_model_files"]

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import xarray as xr
import yaml

from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
from xappa.core.nn.vidit import ViDiT
from xappa.io.integrity import check_sha256, file_sha256, open_zarr_store, read_yaml
from xappa.models.model import Model
from xappa.state.spec import StateSpec

FORMAT = "xappa-model"


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _spec_dict(spec: StateSpec) -> dict[str, Any]:
    return {
        "surface_variables": list(spec.surface_variables),
        "level_variables": list(spec.level_variables),
        "levels": [float(v) for v in spec.levels],
        "latitudes": [float(v) for v in spec.latitudes],
        "longitudes": [float(v) for v in spec.longitudes],
        "time_step": str(spec.time_step),
        "units": dict(spec.units),
        "level_units": spec.level_units,
        "name": spec.name,
    }


def _stats_dataset(mean: torch.Tensor, std: torch.Tensor, spec: StateSpec) -> xr.Dataset:
    """Return statistics in :func:`xappa.state.stats.compute_stats`'s layout from ``(C,)`` vectors."""
    pair = np.stack([mean.double().numpy(), std.double().numpy()])
    data, start = {}, 0
    for v in spec.variables:
        n = len(spec.levels) if v in spec.level_variables else 1
        attrs = {"units": spec.units[v]} if v in spec.units else {}
        block = pair[:, start : start + n]
        start += n
        if v in spec.level_variables:
            data[v] = xr.Variable(("statistic", "level"), block, attrs)
        else:
            data[v] = xr.Variable(("statistic",), block[:, 0], attrs)
    coords: dict[str, Any] = {"statistic": ["mean", "std"]}
    if spec.level_variables:
        coords["level"] = np.asarray(spec.levels, dtype=np.float64)
    return xr.Dataset(data, coords=coords)


def save_model_files(
    model: Model, directory: str | os.PathLike, *, stem: str | None = None, show: bool = True
) -> dict[str, str]:
    """Write a model in xappa's layout, ready to publish, and return the files' hashes.

    Writes ``<stem>.safetensors`` (the weights and the pixel and latent statistics), then
    ``<stem>.yaml`` (the configs, the state spec and the weights' SHA-256, checked by
    :func:`read_model_files`). Weight files are immutable: publish a new model under a new
    stem (e.g. ``"era5-64x32-v2"``).

    Parameters
    ----------
    model : Model
        The model; its autoencoder must be a
        :class:`~xappa.core.nn.autoencoder.ConvAutoencoder` and its denoiser a
        :class:`~xappa.core.diffusion.denoiser.PreconditionedDenoiser` around a
        :class:`~xappa.core.nn.vidit.ViDiT`.
    directory : str or path-like
        The output directory (created).
    stem : str, optional
        The file name stem (default: the model name).
    show : bool
        Print the ``registry.txt`` lines (``file sha256``).

    Returns
    -------
    dict of str to str
        The SHA-256 of each written file, by file name.

    Raises
    ------
    TypeError
        If the networks have no architecture config.
    """
    ae_cfg = getattr(model.autoencoder, "config", None)
    backbone = getattr(model.denoiser, "backbone", None)
    vit_cfg = getattr(backbone, "config", None)
    if not isinstance(ae_cfg, AutoencoderConfig) or not isinstance(vit_cfg, ViDiTConfig):
        msg = (
            "model must have a ConvAutoencoder and a ViDiT denoiser with configs; found "
            f"{type(model.autoencoder).__name__} and {type(backbone).__name__}"
        )
        raise TypeError(msg)
    stem = stem or model.name
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": 1,
        "name": model.name,
        "window": int(model.window),
        "autoencoder": _plain(dataclasses.asdict(ae_cfg)),
        "backbone": _plain(dataclasses.asdict(vit_cfg)),
        "state": _spec_dict(model.spec),
    }
    tensors = {f"autoencoder.{k}": v for k, v in model.autoencoder.state_dict().items()}
    tensors |= {f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()}
    tensors |= {
        "latent_mean": model.latent_mean,
        "latent_std": model.latent_std,
        "pixel_mean": model.mean,
        "pixel_std": model.std,
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    yaml_path, weights_path = out / f"{stem}.yaml", out / f"{stem}.safetensors"
    safetensors.torch.save_file(tensors, str(weights_path), metadata={"format": FORMAT})
    meta["sha256"] = {weights_path.name: file_sha256(weights_path)}
    yaml_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    hashes = {p.name: file_sha256(p) for p in (yaml_path, weights_path)}
    if show:
        for fname, digest in hashes.items():
            print(f"{fname} {digest}")
    return hashes


def read_model_files(
    path: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
) -> Model:
    """Read a model in xappa's layout (as :func:`save_model_files` writes it).

    Parameters
    ----------
    path : str or path-like
        The ``.yaml`` file, or a directory holding exactly one ``.yaml`` file of format
        ``xappa-model``.
    weights : str or path-like, optional
        The weights (default: the ``.safetensors`` file next to the YAML file, same stem).
    device : str or torch.device, optional
        Where to put the model (default: the CPU).

    Returns
    -------
    Model
        The model, in evaluation mode.

    Raises
    ------
    FileNotFoundError
        If the YAML or weights file is missing.
    ValueError
        If the YAML file is not valid safe YAML (the message names it and the parse error) or
        not in xappa's format, the directory holds no or several model YAML files, or the
        weights' SHA-256 differs from the one the YAML file records (the message names the
        file and both hashes).

    Warns
    -----
    UserWarning
        If the YAML file records no SHA-256 of its weights (written by an older xappa): the
        weights are then loaded unchecked.
    """
    path = Path(path)
    if path.is_dir():
        path = _only_model_yaml(path)
    if not path.is_file():
        msg = f"model file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    weights = Path(weights) if weights is not None else path.with_suffix(".safetensors")
    if not weights.is_file():
        msg = f"model weights {str(weights)!r} do not exist"
        raise FileNotFoundError(msg)
    meta = read_yaml(path)
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        found_fmt = meta.get("format") if isinstance(meta, Mapping) else type(meta).__name__
        msg = f"{path.name} must have format {FORMAT!r}; found {found_fmt!r}"
        raise ValueError(msg)
    _check_weights(meta, path, weights)
    spec = StateSpec(**meta["state"])
    autoencoder = ConvAutoencoder.from_config(AutoencoderConfig(**_tuples(meta["autoencoder"])))
    denoiser = PreconditionedDenoiser(ViDiT(ViDiTConfig(**_tuples(meta["backbone"]))))
    tensors = safetensors.torch.load_file(str(weights))
    for prefix, module in (("autoencoder.", autoencoder), ("denoiser.", denoiser)):
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
    for key in ("latent_mean", "latent_std", "pixel_mean", "pixel_std"):
        if key not in tensors:
            msg = f"model weights {weights.name} are missing tensor {key!r}"
            raise KeyError(msg)
    return Model(
        name=str(meta.get("name", path.stem)),
        spec=spec,
        stats=_stats_dataset(tensors["pixel_mean"], tensors["pixel_std"], spec),
        autoencoder=autoencoder,
        denoiser=denoiser,
        latent_mean=tensors["latent_mean"],
        latent_std=tensors["latent_std"],
        window=int(meta["window"]),
        device=device if device is not None else "cpu",
    )


def _only_model_yaml(directory: Path) -> Path:
    """Return the one YAML file of format :data:`FORMAT` in ``directory``."""
    found, broken = [], []
    for candidate in sorted(directory.glob("*.yaml")):
        try:
            meta = read_yaml(candidate)
        except ValueError as err:
            broken.append(str(err))
            continue
        if isinstance(meta, Mapping) and meta.get("format") == FORMAT:
            found.append(candidate)
    if len(found) != 1:
        unread = f"; could not read {'; '.join(broken)}" if broken else ""
        msg = (
            f"model directory {str(directory)!r} must hold one .yaml file of format "
            f"{FORMAT!r}; found {[p.name for p in found]}{unread}"
        )
        raise ValueError(msg)
    return found[0]


def _check_weights(meta: Mapping[str, Any], path: Path, weights: Path) -> None:
    """Check the weights against the SHA-256 that the YAML file records, or warn."""
    recorded = meta.get("sha256")
    if recorded is None:
        msg = (
            f"{path.name} records no sha256 of its weights (written by an older xappa): "
            f"{weights.name} is loaded unchecked; save the model again with save_model_files "
            "to record it"
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
        return
    if not isinstance(recorded, Mapping) or weights.name not in recorded:
        names = sorted(recorded) if isinstance(recorded, Mapping) else type(recorded).__name__
        msg = (
            f"{path.name} must record the sha256 of weights {weights.name!r} (sha256: "
            f"{{{weights.name}: <hex>}}); found {names}"
        )
        raise ValueError(msg)
    advice = f" (recorded in {path.name}): the weights were modified or damaged"
    check_sha256(weights, str(recorded[weights.name]), role="model weights", advice=advice)


def _find(value: str | os.PathLike, base: Path, role: str) -> Path:
    path = Path(value).expanduser()
    for candidate in (path, base / path, base.parent / path):
        if candidate.exists():
            return candidate
    msg = (
        f"{role} {str(path)!r} does not exist (also tried relative to {str(base)!r} "
        "and its parent)"
    )
    raise FileNotFoundError(msg)


def read_training_runs(
    prior: str | os.PathLike,
    *,
    latents: str | os.PathLike | None = None,
    autoencoder: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Model:
    r"""Assemble a model from the run directories of ``xappa train``.

    ``xappa train prior`` writes ``prior.yaml`` with the latent store it trained on
    (``data``, a path tried as given, then relative to the prior run directory and its
    parent) and the latent noise :math:`\sigma_z` (``noise_level``); ``xappa train
    encode`` writes the autoencoder run into the store's attributes (``autoencoder``). The
    effective latent std is :math:`\sqrt{s^2 + \sigma_z^2}`, as in training.

    Parameters
    ----------
    prior : str or path-like
        The prior run directory (``prior.yaml``, ``model.safetensors``, maybe
        ``ema.safetensors``, which is preferred).
    latents : str or path-like, optional
        The latent store (default: ``prior.yaml``'s ``data``).
    autoencoder : str or path-like, optional
        The autoencoder run directory (default: the latent store's ``autoencoder`` attribute);
        its ``ema.safetensors`` is preferred when present.
    device : str or torch.device, optional
        Where to put the model (default: the CPU).

    Returns
    -------
    Model
        The model, in evaluation mode, named after the prior directory.

    Raises
    ------
    FileNotFoundError
        If a run directory or the latent store cannot be found.
    KeyError
        If the latent store has no ``autoencoder`` attribute and none is given.
    """
    from xappa.models.runs import load_autoencoder, load_latent_prior

    prior = Path(prior)
    denoiser, meta = load_latent_prior(prior)
    if latents is None and "data" not in meta:
        msg = f"{prior / 'prior.yaml'} has no 'data' (the latent store); pass latents="
        raise KeyError(msg)
    store = _find(latents if latents is not None else meta["data"], prior, "latent store")
    with open_zarr_store(store, role="latent store", consolidated=False) as ds:
        mean = torch.as_tensor(ds["latent_mean"].values).float()
        std = torch.as_tensor(ds["latent_std"].values).float()
        ae_run = autoencoder if autoencoder is not None else ds.attrs.get("autoencoder")
    if ae_run is None:
        msg = f"latent store {str(store)!r} has no 'autoencoder' attribute; pass autoencoder="
        raise KeyError(msg)
    ae_dir = _find(ae_run, prior, "autoencoder run")
    ae, spec, pixel_mean, pixel_std = load_autoencoder(
        ae_dir, ema=(ae_dir / "ema.safetensors").is_file()
    )
    noise = float(meta.get("noise_level", 0.0) or 0.0)
    return Model(
        name=prior.resolve().name,
        spec=spec,
        stats=_stats_dataset(pixel_mean, pixel_std, spec),
        autoencoder=ae,
        denoiser=denoiser,
        latent_mean=mean,
        latent_std=torch.sqrt(std**2 + noise**2),
        window=int(meta.get("window", denoiser.backbone.config.blanket_size)),
        device=device if device is not None else "cpu",
    )
