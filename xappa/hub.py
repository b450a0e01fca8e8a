"""The model hub: named models fetched with Pooch, checked against SHA-256 hashes, cached.

:func:`load_model` reads a card from the packaged ``cards.yaml`` (:mod:`xappa.cards`),
downloads its files through one module-level :class:`pooch.Pooch` (:data:`POOCH`) into the OS
cache directory (or ``$XAPPA_DATA_DIR``), checks each against the packaged ``registry.txt``,
builds the modules and loads the weights. A local directory written by
:func:`save_model_files`, or a prior run of ``xappa train`` (:func:`read_training_runs`),
loads directly. With ``offline=True`` (or ``XAPPA_OFFLINE=1``) the
network is never touched: only cached files whose hash matches are used. Files without a
known hash are refused unless ``allow_unverified=True``, before anything is downloaded.

xappa's own layout is two files: ``<stem>.yaml`` (format, name, autoencoder and backbone
configs, state spec, window) and ``<stem>.safetensors`` (``autoencoder.*``, ``denoiser.*``,
``latent_mean``, ``latent_std``, ``pixel_mean``, ``pixel_std``).
"""

from __future__ import annotations

__all__ = [
    "POOCH",
    "available_models",
    "clear_cache",
    "fetch_model_files",
    "get_card",
    "load_appa_release",
    "load_model",
    "read_model_files",
    "read_training_runs",
    "save_model_files",
]

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import safetensors.torch
import torch
import xarray as xr
import yaml

from xappa.cards import ModelCard, load_cards
from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
from xappa.core.nn.vidit import ViDiT
from xappa.model import Model
from xappa.release import load_appa_release
from xappa.state import StateSpec

#: Where xappa's own weight files are served from (a file's card ``url`` overrides it).
BASE_URL = "https://huggingface.co/datasets/xappa/models/resolve/main/"
FORMAT = "xappa-model"
_CACHE_SIZE = 4

#: The module-level Pooch; its registry is read from the packaged ``registry.txt`` on first use.
POOCH = pooch.create(
    path=pooch.os_cache("xappa"), base_url=BASE_URL, env="XAPPA_DATA_DIR", registry=None
)
_STATE: dict[str, Any] = {"registry": False}
_MODELS: OrderedDict[tuple[str, str, str], Model] = OrderedDict()


def _packaged_registry() -> pooch.Pooch:
    if not _STATE["registry"]:
        with resources.as_file(resources.files("xappa").joinpath("data", "registry.txt")) as p:
            POOCH.load_registry(p)
        _STATE["registry"] = True
    return POOCH


def _cards(cards: Mapping[str, ModelCard] | str | Path | None) -> Mapping[str, ModelCard]:
    if cards is None or isinstance(cards, (str, Path)):
        return load_cards(cards)
    return cards


def available_models(cards: Mapping[str, ModelCard] | str | Path | None = None) -> list[str]:
    """Return the names of the models with a card.

    Parameters
    ----------
    cards : mapping or path, optional
        Cards (or a cards file) to use instead of the packaged ones.

    Returns
    -------
    list of str
        The sorted names.
    """
    return sorted(_cards(cards))


def get_card(name: str, cards: Mapping[str, ModelCard] | str | Path | None = None) -> ModelCard:
    """Return the card of a named model.

    Parameters
    ----------
    name : str
        The model name.
    cards : mapping or path, optional
        Cards (or a cards file) to use instead of the packaged ones.

    Returns
    -------
    ModelCard
        The card.

    Raises
    ------
    KeyError
        If no card has that name; the message lists the known names.
    """
    known = _cards(cards)
    if name not in known:
        msg = f"unknown model {name!r}; known models are {sorted(known)}"
        raise KeyError(msg)
    return known[name]


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("XAPPA_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _make_pooch(
    registry: Mapping[str, str] | str | Path | None,
    base_url: str | None,
    data_dir: str | Path | None,
) -> pooch.Pooch:
    if registry is None and base_url is None and data_dir is None:
        return _packaged_registry()
    p = pooch.create(
        path=data_dir if data_dir is not None else pooch.os_cache("xappa"),
        base_url=base_url or BASE_URL,
        env=None if data_dir is not None else "XAPPA_DATA_DIR",
        registry=None,
    )
    if registry is None:
        with resources.as_file(resources.files("xappa").joinpath("data", "registry.txt")) as f:
            p.load_registry(f)
    elif isinstance(registry, (str, Path)):
        p.load_registry(registry)
    else:
        p.registry.update(registry)
    return p


def fetch_model_files(
    name: str,
    *,
    offline: bool | None = None,
    allow_unverified: bool = False,
    cards: Mapping[str, ModelCard] | str | Path | None = None,
    registry: Mapping[str, str] | str | Path | None = None,
    base_url: str | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Download (or find in the cache) and verify the files of a named model.

    Parameters
    ----------
    name : str
        The model name.
    offline : bool, optional
        Use only cached files and never touch the network (default: ``XAPPA_OFFLINE``).
    allow_unverified : bool
        Accept files whose card has ``sha256: null`` (``unverified: true``).
    cards : mapping or path, optional
        Cards to use instead of the packaged ones.
    registry : mapping or path, optional
        A ``{file: sha256}`` mapping or registry file instead of the packaged ``registry.txt``.
    base_url : str, optional
        The base URL of files without their own URL.
    data_dir : str or Path, optional
        The cache directory (default: ``$XAPPA_DATA_DIR``, else the OS cache dir).

    Returns
    -------
    dict of str to Path
        The local path of each file.

    Raises
    ------
    KeyError
        If the model is unknown (the message lists the known names).
    ValueError
        If a file is unverified and ``allow_unverified`` is false (checked before any
        download), if a file's hash is missing from the registry or differs from the card's,
        or if a downloaded or cached file does not match its hash (the download is deleted).
    FileNotFoundError
        If the server has no such file (HTTP 404), or, offline, a file is not cached.
    ConnectionError
        If the server cannot be reached.
    """
    card = get_card(name, cards)
    unverified = [f.name for f in card.files if not f.verified]
    if unverified and not allow_unverified:
        msg = (
            f"model {name!r} has {len(unverified)} file(s) without a known sha256 (first "
            f"{unverified[0]!r}); expected verified files: pass allow_unverified=True "
            "(xappa fetch --allow-unverified) to accept them"
        )
        raise ValueError(msg)
    p = _make_pooch(registry, base_url, data_dir)
    for f in card.files:
        if f.verified:
            listed = p.registry.get(f.name)
            if listed is None:
                msg = f"model {name!r} file {f.name!r} is not in the registry; found no entry"
                raise ValueError(msg)
            if str(listed).removeprefix("sha256:").lower() != f.sha256:
                msg = (
                    f"model {name!r} file {f.name!r} has sha256 {f.sha256} in its card; "
                    f"found {listed} in the registry"
                )
                raise ValueError(msg)
    if _is_offline(offline):
        return {f.name: _cached(p, f.name, f.sha256, name) for f in card.files}
    out = {}
    for f in card.files:
        if not f.verified:
            p.registry[f.name] = None
        if f.url is not None:
            p.urls[f.name] = f.url
        out[f.name] = _download(p, f.name)
    return out


def _cached(p: pooch.Pooch, fname: str, sha256: str | None, model: str) -> Path:
    path = Path(p.abspath) / fname
    if not path.is_file():
        msg = (
            f"offline mode: model {model!r} file {fname!r} is not in the cache {str(p.abspath)!r};"
            " fetch it first online (xappa fetch NAME) or unset XAPPA_OFFLINE"
        )
        raise FileNotFoundError(msg)
    if sha256 is not None:
        found = pooch.file_hash(str(path), alg="sha256")
        if found != sha256:
            msg = (
                f"offline mode: cached file {str(path)!r} must have sha256 {sha256}; "
                f"found {found}; delete it and fetch again online"
            )
            raise ValueError(msg)
    return path


def _download(p: pooch.Pooch, fname: str) -> Path:
    import requests

    url = p.get_url(fname)
    try:
        return Path(p.fetch(fname))
    except requests.exceptions.HTTPError as err:
        status = getattr(err.response, "status_code", None)
        msg = f"could not download {fname!r} from {url!r}: HTTP {status}"
        if status == 404:
            raise FileNotFoundError(msg) from err
        raise ConnectionError(msg) from err
    except requests.exceptions.RequestException as err:
        msg = (
            f"could not download {fname!r} from {url!r}: {type(err).__name__}; "
            "for cached files use offline=True or XAPPA_OFFLINE=1"
        )
        raise ConnectionError(msg) from err
    except ValueError as err:
        msg = (
            f"downloaded {fname!r} from {url!r} does not match its registered sha256 "
            f"{p.registry.get(fname)}; the file was deleted ({err})"
        )
        raise ValueError(msg) from err


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        from xappa.options import get_options

        device = get_options().get("device")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    offline: bool | None = None,
    allow_unverified: bool = False,
    stats: xr.Dataset | None = None,
    spec: StateSpec | None = None,
    cache: bool = True,
    cards: Mapping[str, ModelCard] | str | Path | None = None,
    registry: Mapping[str, str] | str | Path | None = None,
    base_url: str | None = None,
    data_dir: str | Path | None = None,
) -> Model:
    """Load a named model from the hub, or a model directory written by :func:`save_model_files`.

    A name is looked up in the cards; its files are fetched through Pooch (or taken from the
    cache) and checked against their SHA-256 hashes, then the modules are built from the
    configs and the weights loaded. Named models are kept in an LRU cache keyed by
    ``(name, device, dtype)`` (the same object is returned; do not modify it in place).

    Parameters
    ----------
    name_or_path : str or path-like
        A model name (see :func:`available_models`); a local directory or ``.yaml`` file in
        xappa's layout; or a prior run directory of ``xappa train prior`` (with
        ``prior.yaml``), read by :func:`read_training_runs`.
    device : str or torch.device, optional
        Where to put the model (default: ``xappa.get_options()["device"]``, else CUDA when
        available, else the CPU).
    dtype : torch.dtype, optional
        The dtype of the networks (default: as stored, float32).
    offline : bool, optional
        Never touch the network: use only cached, hash-verified files (default: true when the
        environment variable ``XAPPA_OFFLINE`` is ``1``).
    allow_unverified : bool
        Load files whose card has no hash (``sha256: null``, ``unverified: true``).
    stats : Dataset, optional
        Pixel statistics (:func:`xappa.stats.compute_stats` layout) in the spec's variable
        names; required for the Appa release, whose statistics store is not fetched.
    spec : StateSpec, optional
        The pixel state of an Appa release (default: :data:`xappa.state.APPA_ERA5`).
    cache : bool
        Use the LRU cache of named models.
    cards, registry, base_url, data_dir
        Overrides of the packaged cards and registry, the base URL and the cache directory
        (see :func:`fetch_model_files`); mostly for tests.

    Returns
    -------
    Model
        The model, in evaluation mode.

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.
    ValueError, FileNotFoundError, ConnectionError
        As :func:`fetch_model_files`.
    """
    dev = _resolve_device(device)
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    is_name = isinstance(name_or_path, str) and name in _cards(cards)
    if not is_name and path.is_dir() and (path / "prior.yaml").is_file():
        return _cast(read_training_runs(path, device=dev), dtype)
    if not is_name and (path.suffix == ".yaml" or path.is_dir()):
        return _cast(read_model_files(path, device=dev), dtype)
    overrides = any(v is not None for v in (cards, registry, base_url, data_dir, stats, spec))
    key = (name, str(dev), str(dtype))
    if cache and not overrides and key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key]
    card = get_card(name, cards)
    files = fetch_model_files(
        name,
        offline=offline,
        allow_unverified=allow_unverified,
        cards=cards,
        registry=registry,
        base_url=base_url,
        data_dir=data_dir,
    )
    if card.kind == "xappa":
        yaml_file = next(v for k, v in files.items() if k.endswith(".yaml"))
        weights = next(v for k, v in files.items() if k.endswith(".safetensors"))
        model = read_model_files(yaml_file, weights, device=dev)
    else:
        model = _from_release(card, files, stats, spec, dev)
    model = _cast(model, dtype)
    if cache and not overrides:
        _MODELS[key] = model
        while len(_MODELS) > _CACHE_SIZE:
            _MODELS.popitem(last=False)
    return model


def _from_release(
    card: ModelCard,
    files: Mapping[str, Path],
    stats: xr.Dataset | None,
    spec: StateSpec | None,
    device: torch.device,
) -> Model:
    from xappa.state import APPA_ERA5

    if stats is None:
        msg = (
            f"model {card.name!r} needs stats=: the pixel statistics (compute_stats layout, "
            f"variables named as xappa.state.APPA_ERA5); found None ({card.statistics})"
        )
        raise ValueError(msg)
    some = next(iter(files.values()))
    name = next(iter(files))
    root = Path(str(some)[: len(str(some)) - len(name)]) / card.root
    release = load_appa_release(root, checkpoint=card.checkpoint, device=device)
    spec = spec if spec is not None else APPA_ERA5
    if spec.n_channels != release.autoencoder_config.in_channels:
        msg = (
            f"spec must have the release's {release.autoencoder_config.in_channels} channels; "
            f"found {spec.n_channels}"
        )
        raise ValueError(msg)
    return Model.from_release(release, spec, stats, name=card.name)


def _cast(model: Model, dtype: torch.dtype | None) -> Model:
    if dtype is not None:
        model.autoencoder.to(dtype)
        model.denoiser.to(dtype)
    return model


def clear_cache() -> None:
    """Empty the LRU cache of loaded named models."""
    _MODELS.clear()


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
    """Return statistics in :func:`xappa.stats.compute_stats`'s layout from ``(C,)`` vectors."""
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

    Writes ``<stem>.yaml`` (the configs and state spec) and ``<stem>.safetensors`` (the
    weights and the pixel and latent statistics). Weight files are immutable: publish a new
    model under a new stem (e.g. ``"era5-64x32-v2"``).

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
    yaml_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    safetensors.torch.save_file(tensors, str(weights_path), metadata={"format": FORMAT})
    hashes = {p.name: pooch.file_hash(str(p), alg="sha256") for p in (yaml_path, weights_path)}
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
        If the YAML file is not in xappa's format, or the directory holds several.
    """
    path = Path(path)
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.yaml")) if _format(p) == FORMAT]
        if len(found) != 1:
            msg = (
                f"model directory {str(path)!r} must hold one .yaml file of format {FORMAT!r}; "
                f"found {[p.name for p in found]}"
            )
            raise ValueError(msg)
        path = found[0]
    if not path.is_file():
        msg = f"model file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    weights = Path(weights) if weights is not None else path.with_suffix(".safetensors")
    if not weights.is_file():
        msg = f"model weights {str(weights)!r} do not exist"
        raise FileNotFoundError(msg)
    meta = yaml.safe_load(path.read_text())
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        found_fmt = meta.get("format") if isinstance(meta, Mapping) else type(meta).__name__
        msg = f"{path.name} must have format {FORMAT!r}; found {found_fmt!r}"
        raise ValueError(msg)
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


def _format(path: Path) -> Any:
    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return meta.get("format") if isinstance(meta, Mapping) else None


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
    from xappa.train.autoencoder import load_autoencoder
    from xappa.train.latent_prior import load_latent_prior

    prior = Path(prior)
    denoiser, meta = load_latent_prior(prior)
    if latents is None and "data" not in meta:
        msg = f"{prior / 'prior.yaml'} has no 'data' (the latent store); pass latents="
        raise KeyError(msg)
    store = _find(latents if latents is not None else meta["data"], prior, "latent store")
    with xr.open_zarr(store, consolidated=False) as ds:
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
