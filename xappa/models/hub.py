"""The model hub: named models fetched with Pooch, checked against SHA-256 hashes, cached.

:func:`load_model` reads a card from the packaged ``cards.yaml`` (:mod:`xappa.models.cards`),
downloads its files through one module-level :class:`pooch.Pooch` (:data:`POOCH`) into the OS
cache directory (or ``$XAPPA_DATA_DIR``), checks each against the packaged ``registry.txt``,
builds the modules and loads the weights. Files a card marks ``bundled`` ship inside the
package (``xappa/data/models``, the default ``swe-default`` model): they are never
downloaded, but their hash is checked against the same registry on every load. A local directory written by
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
    "DTYPES",
    "POOCH",
    "available_models",
    "check_dtype",
    "clear_cache",
    "fetch_model_files",
    "get_card",
    "load_appa_release",
    "load_model",
    "read_model_files",
    "read_training_runs",
    "resolve_model",
    "save_model_files",
]

import os
from collections import OrderedDict
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pooch
import torch
import xarray as xr

from xappa.io.integrity import check_sha256, inside
from xappa.models.cards import ModelCard, load_cards
from xappa.models.files import read_model_files, read_training_runs, save_model_files
from xappa.models.model import Model
from xappa.models.release import load_appa_release, resolve_release
from xappa.options import choose_device
from xappa.state.spec import StateSpec

#: Where xappa's own weight files are served from (a file's card ``url`` overrides it).
BASE_URL = "https://huggingface.co/datasets/xappa/models/resolve/main/"
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
    out = {f.name: _bundled(f.name, f.sha256, name) for f in card.files if f.bundled}
    remote = [f for f in card.files if not f.bundled]
    if _is_offline(offline):
        return out | {f.name: _cached(p, f.name, f.sha256, name) for f in remote}
    for f in remote:
        if not f.verified:
            p.registry[f.name] = None
        if f.url is not None:
            p.urls[f.name] = f.url
        out[f.name] = _download(p, f.name)
    return out


def _bundled(fname: str, sha256: str | None, model: str) -> Path:
    """Return the path of a file shipped in ``xappa/data/models``, after checking its hash."""
    models = Path(str(resources.files("xappa").joinpath("data", "models")))
    path = inside(models, fname, role=f"model {model!r} file")
    if not path.is_file():
        msg = (
            f"model {model!r} file {fname!r} should ship with the package at {str(path)!r}; "
            "found no file (a broken installation: reinstall xappa)"
        )
        raise FileNotFoundError(msg)
    advice = " (a modified installation: reinstall xappa)"
    check_sha256(path, str(sha256), role=f"model {model!r} bundled file", advice=advice)
    return path


def _cached(p: pooch.Pooch, fname: str, sha256: str | None, model: str) -> Path:
    path = inside(p.abspath, fname, role=f"model {model!r} file")
    if not path.is_file():
        msg = (
            f"offline mode: model {model!r} file {fname!r} is not in the cache {str(p.abspath)!r};"
            " fetch it first online (xappa fetch NAME) or unset XAPPA_OFFLINE"
        )
        raise FileNotFoundError(msg)
    if sha256 is not None:
        advice = "; delete it and fetch again online"
        check_sha256(path, sha256, role="offline mode: cached file", advice=advice)
    return path


def _download(p: pooch.Pooch, fname: str) -> Path:
    import requests

    inside(p.abspath, fname, role="model file")
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
    ``(name, device, dtype)``: the same object is returned to every caller, so never modify
    it in place; :meth:`Model.on(device) <xappa.models.model.Model.on>` gives it on another device
    without moving the cached one.

    Parameters
    ----------
    name_or_path : str or path-like
        A model name (see :func:`available_models`); a local directory or ``.yaml`` file in
        xappa's layout; or a prior run directory of ``xappa train prior`` (with
        ``prior.yaml``), read by :func:`read_training_runs`.
    device : str or torch.device, optional
        Where to put the model (default: ``xappa.get_options()["device"]``, else CUDA when
        available, else the CPU).
    dtype : torch.dtype or str, optional
        The dtype of the networks: ``torch.float32``, ``torch.float64`` or
        ``torch.bfloat16`` (default: as stored, float32). States, statistics and the
        guidance solver run in float64 for float64 weights, else in float32 (bfloat16
        networks compute in bfloat16); see :attr:`xappa.models.model.Model.state_dtype`.
    offline : bool, optional
        Never touch the network: use only cached, hash-verified files (default: true when the
        environment variable ``XAPPA_OFFLINE`` is ``1``).
    allow_unverified : bool
        Load files whose card has no hash (``sha256: null``, ``unverified: true``).
    stats : Dataset, optional
        Pixel statistics (:func:`xappa.state.stats.compute_stats` layout) in the spec's variable
        names, for an Appa release; by default the release's own
        ``data/stats_era5_*.zarr`` (:meth:`xappa.models.release.AppaModel.pixel_statistics`), when
        its tree in the cache holds one.
    spec : StateSpec, optional
        The pixel state of an Appa release (default: :data:`xappa.state.spec.APPA_ERA5`).
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
        As :func:`fetch_model_files`; ValueError also for a device that is not available
        here (:func:`xappa.options.check_device`).
    TypeError
        For a ``dtype`` that :func:`check_dtype` refuses.
    """
    dev = choose_device(device)
    dtype = check_dtype(dtype)
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
    from xappa.state.spec import APPA_ERA5

    some = next(iter(files.values()))
    name = next(iter(files))
    cache = Path(str(some)[: len(str(some)) - len(name)])
    root = inside(cache, str(card.root), role=f"card {card.name!r} root")
    if stats is None and resolve_release(root).pixel_stats is None:
        msg = (
            f"model {card.name!r} needs pixel statistics: pass stats= (compute_stats layout, "
            "variables named as xappa.state.spec.APPA_ERA5), or place the release's "
            f"data/stats_era5_*.zarr under {str(root)!r}; found neither"
        )
        raise ValueError(msg)
    release = load_appa_release(root, checkpoint=card.checkpoint, device=device)
    spec = spec if spec is not None else APPA_ERA5
    if spec.n_channels != release.autoencoder_config.in_channels:
        msg = (
            f"spec must have the release's {release.autoencoder_config.in_channels} channels; "
            f"found {spec.n_channels}"
        )
        raise ValueError(msg)
    if stats is None:
        stats = release.pixel_statistics().load()
    return Model.from_release(release, spec, stats, name=card.name)


#: The float dtypes a model's networks can be loaded in.
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """Return the networks' dtype that ``dtype`` asks for (None: as stored).

    Parameters
    ----------
    dtype : torch.dtype, str or None
        ``torch.float32``, ``torch.float64`` or ``torch.bfloat16``, or its name.

    Returns
    -------
    torch.dtype or None
        The dtype.

    Raises
    ------
    TypeError
        For any other value (an integer dtype, a NumPy dtype, float16, a misspelled name).
    """
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in DTYPES.values()):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    names = [f"torch.{n}" for n in DTYPES]
    msg = f"dtype must be None or one of {names} (or its name); found {dtype!r}"
    raise TypeError(msg)


def _cast(model: Model, dtype: torch.dtype | None) -> Model:
    if dtype is not None:
        model.autoencoder.to(dtype)
        model.denoiser.to(dtype)
    return model


def resolve_model(model: Model | str | os.PathLike | None, *, name: str = "model") -> Model:
    """Return the model a function should use: as given, loaded by name or path, or the default.

    Parameters
    ----------
    model : Model, str, path-like or None
        A :class:`~xappa.models.model.Model`; a model name or a local path, loaded with
        :func:`load_model` (so through its cache: every call with the same name shares one
        loaded model, which xappa never modifies); or None for the ``model`` option of
        :func:`xappa.set_options`.
    name : str
        The argument's name, for messages.

    Returns
    -------
    Model
        The model.

    Raises
    ------
    TypeError
        If ``model`` is none of these, or None with no ``model`` option set.
    KeyError
        For an unknown model name (listing the available ones).
    """
    from xappa.options import get_options

    if model is None:
        model = get_options()["model"]
        if model is None:
            msg = (
                f"{name} is required: pass a model name such as 'swe-default', a path or an "
                "xappa.Model, or set a default with xappa.set_options(model=...); found None"
            )
            raise TypeError(msg)
    if isinstance(model, Model):
        return model
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    msg = f"{name} must be an xappa.Model, a model name or a path; found {type(model).__name__}"
    raise TypeError(msg)


def clear_cache() -> None:
    """Empty the LRU cache of loaded named models."""
    _MODELS.clear()
