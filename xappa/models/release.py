r"""Load the published Appa release (autoencoder, latent prior and statistics) from disk.

The release (the HuggingFace dataset ``montefiore-sail/appa``) is laid out as::

    <root>/
      data/stats_era5_1993-2021-1h-1440x721.zarr          pixel statistics (optional)
      autoencoders/<ae run>/<ae lap>/                     the autoencoder run
        config.yaml                                       sections ae, train, optim, ...
        latents/<dump>/                                   the latent directory
          ae/config.yaml, ae/model.pth                    the autoencoder used for the dump
          stats.pth                                       {"mean": (C,), "std": (C,)}
          denoisers/<run>/<lap>/                          the denoiser lap directory
            config.yaml                                   sections backbone, train, ...
            model_last.pth, model_best.pth or model.pth    the ViDiT state dict

:func:`load_appa_release` accepts the root or the denoiser lap directory. As in Appa, the
latent directory is two levels above the lap directory and the autoencoder run four.
Configs are read with :func:`yaml.safe_load` and state dicts with
``torch.load(weights_only=True)``: loading a release never runs code from it.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINTS",
    "AppaModel",
    "ReleasePaths",
    "find_checkpoint",
    "load_appa_release",
    "resolve_release",
]

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
from xappa.core.nn.layers import count_parameters
from xappa.core.nn.vidit import ViDiT
from xappa.io.integrity import load_torch_file, open_zarr_store, read_yaml
from xappa.options import choose_device

_LAP_PATTERN = "autoencoders/*/*/latents/*/denoisers/*/*/config.yaml"

#: The denoiser checkpoint files of a lap directory, by ``checkpoint=`` value, in the order
#: ``"auto"`` tries them (Appa writes ``model_last.pth`` and ``model_best.pth``; some copies of
#: the release hold a plain ``model.pth``).
CHECKPOINT_FILES = {"last": "model_last.pth", "best": "model_best.pth", "model": "model.pth"}

#: The accepted ``checkpoint=`` values of :func:`load_appa_release`.
CHECKPOINTS = ("auto", *CHECKPOINT_FILES)


@dataclass(frozen=True)
class ReleasePaths:
    """Creates the file paths of a release, resolved from its root or denoiser lap directory.

    Attributes
    ----------
    denoiser_dir : Path
        ``.../latents/<dump>/denoisers/<run>/<lap>``.
    latent_dir : Path
        ``.../latents/<dump>`` (``denoiser_dir.parents[2]``).
    autoencoder_run : Path
        The autoencoder run lap directory (``denoiser_dir.parents[4]``).
    root : Path or None
        The release root (``denoiser_dir.parents[7]``), when ``parents[6]`` is named
        ``autoencoders``.
    pixel_stats : Path or None
        ``<root>/data/stats_era5_*.zarr``, if present.
    """

    denoiser_dir: Path
    latent_dir: Path
    autoencoder_run: Path
    root: Path | None
    pixel_stats: Path | None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if not isinstance(data, dict):
        msg = f"{path.name} must hold a mapping; found {type(data).__name__}"
        raise TypeError(msg)
    return data


def resolve_release(path: str | Path) -> ReleasePaths:
    """Find the files of a release from its root or its denoiser lap directory.

    Parameters
    ----------
    path : str or Path
        The release root (with ``autoencoders/``) or a denoiser lap directory (with a
        ``config.yaml`` holding a ``backbone`` section).

    Returns
    -------
    ReleasePaths
        The resolved paths.

    Raises
    ------
    FileNotFoundError
        If no denoiser lap directory is found.
    ValueError
        If the root holds more than one denoiser lap directory.
    """
    path = Path(path).expanduser().resolve()
    config = path / "config.yaml"
    if config.is_file() and "backbone" in _read_yaml(config):
        lap = path
    else:
        found = sorted(path.glob(_LAP_PATTERN))
        if not found:
            msg = f"no denoiser found under {str(path)!r}: expected {_LAP_PATTERN!r}"
            raise FileNotFoundError(msg)
        if len(found) > 1:
            laps = [str(p.parent.relative_to(path)) for p in found]
            msg = f"{str(path)!r} holds {len(laps)} denoisers; pass one of {laps}"
            raise ValueError(msg)
        lap = found[0].parent
    parents = lap.parents
    if len(parents) < 5:
        msg = f"{str(lap)!r} is not inside <ae run>/<lap>/latents/<dump>/denoisers/<run>/<lap>"
        raise ValueError(msg)
    in_tree = len(parents) > 7 and parents[6].name == "autoencoders"
    root = parents[7] if in_tree else None
    stats = sorted((root / "data").glob("stats_era5_*.zarr")) if root is not None else []
    return ReleasePaths(
        denoiser_dir=lap,
        latent_dir=parents[2],
        autoencoder_run=parents[4],
        root=root,
        pixel_stats=stats[0] if stats else None,
    )


def _check_checkpoint(checkpoint: str) -> None:
    if checkpoint not in CHECKPOINTS:
        msg = f"checkpoint must be one of {list(CHECKPOINTS)}; found {checkpoint!r}"
        raise ValueError(msg)


def find_checkpoint(directory: str | Path, checkpoint: str = "auto") -> Path:
    """Return the denoiser checkpoint file of a lap directory.

    Parameters
    ----------
    directory : str or Path
        The denoiser lap directory.
    checkpoint : {"auto", "last", "best", "model"}
        ``"last"``, ``"best"`` and ``"model"`` name ``model_last.pth``, ``model_best.pth`` and
        ``model.pth``; ``"auto"`` takes the first of them that exists, in that order.

    Returns
    -------
    Path
        The checkpoint file.

    Raises
    ------
    ValueError
        If ``checkpoint`` is not one of :data:`CHECKPOINTS`.
    FileNotFoundError
        If the file is absent; the message lists the checkpoint files found and the
        ``checkpoint=`` value that would read each.
    """
    _check_checkpoint(checkpoint)
    directory = Path(directory)
    present = {k: f for k, f in CHECKPOINT_FILES.items() if (directory / f).is_file()}
    wanted = list(CHECKPOINT_FILES) if checkpoint == "auto" else [checkpoint]
    for key in wanted:
        if key in present:
            return directory / present[key]
    found = sorted(p.name for p in directory.glob("*.pth"))
    usable = ", ".join(f"{f} (checkpoint={k!r})" for k, f in present.items()) or "none"
    expected = [CHECKPOINT_FILES[k] for k in wanted]
    msg = (
        f"denoiser checkpoint {' or '.join(expected)} (checkpoint={checkpoint!r}) does not "
        f"exist in {str(directory)!r}; found .pth files {found}, readable as: {usable}"
    )
    raise FileNotFoundError(msg)


def _load_state(module: nn.Module, path: Path, role: str) -> None:
    """Load a state dict strictly with ``weights_only=True``, naming any bad key."""
    state = load_torch_file(path, role=f"{role} checkpoint")
    if not isinstance(state, Mapping):
        msg = f"{role} checkpoint {path.name} must hold a state dict; found {type(state).__name__}"
        raise TypeError(msg)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        msg = (
            f"{role} checkpoint {path.name} is missing key {missing[0]!r} ({len(missing)} missing)"
        )
        raise KeyError(msg)
    if unexpected:
        msg = (
            f"{role} checkpoint {path.name} has unexpected key {unexpected[0]!r} "
            f"({len(unexpected)} unexpected)"
        )
        raise KeyError(msg)
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, Tensor):
            msg = f"{role} checkpoint key {key!r} must be a tensor; found {type(value).__name__}"
            raise TypeError(msg)
        if value.shape != ref.shape:
            msg = (
                f"{role} checkpoint key {key!r} must have shape {tuple(ref.shape)}; "
                f"found {tuple(value.shape)}"
            )
            raise ValueError(msg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=True)


def _backbone_section(config: Mapping[str, Any]) -> dict[str, Any]:
    if "backbone" not in config:
        msg = "the denoiser config.yaml has no 'backbone' section"
        raise KeyError(msg)
    section = dict(config["backbone"])
    train = config.get("train") or {}
    if "blanket_size" in train:
        k = train["blanket_size"]
        if section.setdefault("blanket_size", k) != k:
            msg = (
                f"backbone.blanket_size must equal train.blanket_size {k}; "
                f"found {section['blanket_size']}"
            )
            raise ValueError(msg)
    return section


class AppaModel(nn.Module):
    r"""Creates the holder of a loaded Appa release: autoencoder, denoiser and statistics.

    Parameters
    ----------
    autoencoder : ConvAutoencoder
        ``encode(x)``: standardized pixels ``(B, C, H, W)`` to latents ``(B, C_lat, h, w)``;
        ``decode(z)`` back.
    denoiser : PreconditionedDenoiser
        ``denoiser(x_t, sigma, date=dates)`` on standardized latent windows
        ``(B, K, C_lat, h, w)`` with ``sigma`` ``(B,)`` and integer dates ``(B, K, 4)``.
    latent_mean : Tensor
        The latent mean, with shape ``(C_lat,)``.
    latent_std : Tensor
        The latent std inflated by the autoencoder noise,
        :math:`\sqrt{s^2 + \sigma_z^2}`, with shape ``(C_lat,)``.
    configs : dict
        The raw YAML configs: ``"autoencoder"`` (``ae/config.yaml``), ``"denoiser"`` and
        ``"autoencoder_run"`` (``None`` when absent).
    paths : ReleasePaths, optional
        Where the release was read from.
    checkpoint : Path, optional
        The denoiser checkpoint file read (e.g. ``.../model_best.pth``).
    """

    def __init__(
        self,
        autoencoder: ConvAutoencoder,
        denoiser: PreconditionedDenoiser,
        latent_mean: Tensor,
        latent_std: Tensor,
        *,
        configs: dict[str, Any] | None = None,
        paths: ReleasePaths | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.denoiser = denoiser
        self.register_buffer("latent_mean", latent_mean)
        self.register_buffer("latent_std", latent_std)
        self.configs = configs or {}
        self.paths = paths
        self.checkpoint = checkpoint

    @property
    def autoencoder_config(self) -> AutoencoderConfig:
        """The autoencoder architecture."""
        return self.autoencoder.config

    @property
    def backbone_config(self) -> ViDiTConfig:
        """The ViDiT architecture."""
        return self.denoiser.backbone.config

    @property
    def blanket_size(self) -> int:
        """The window length :math:`K` of the prior."""
        return self.backbone_config.blanket_size

    @property
    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: ``encoder``, ``decoder``, ``autoencoder``, ``denoiser``, ``total``."""
        counts = {
            "encoder": count_parameters(self.autoencoder.encoder),
            "decoder": count_parameters(self.autoencoder.decoder),
            "autoencoder": count_parameters(self.autoencoder),
            "denoiser": count_parameters(self.denoiser),
        }
        counts["total"] = counts["autoencoder"] + counts["denoiser"]
        return counts

    def standardize_latent(self, z: Tensor) -> Tensor:
        """Standardize latents with the latent statistics.

        Parameters
        ----------
        z : Tensor
            Latents, with shape ``(*, C_lat, h, w)``.

        Returns
        -------
        Tensor
            :math:`(z - m) / s`, with shape ``(*, C_lat, h, w)``.
        """
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def unstandardize_latent(self, z: Tensor) -> Tensor:
        """Undo :meth:`standardize_latent`.

        Parameters
        ----------
        z : Tensor
            Standardized latents, with shape ``(*, C_lat, h, w)``.

        Returns
        -------
        Tensor
            :math:`m + s z`, with shape ``(*, C_lat, h, w)``.
        """
        return self.latent_mean[:, None, None] + self.latent_std[:, None, None] * z

    def pixel_statistics(self) -> Any:
        """Open the pixel statistics zarr of the release, lazily (needs xarray and zarr).

        Returns
        -------
        xarray.Dataset
            The statistics, as stored (Appa's ``stats_era5_...zarr``).

        Raises
        ------
        FileNotFoundError
            If the release has no pixel statistics.
        ValueError
            If zarr refuses the store (e.g. a pickle codec); no code from it runs.
        """
        path = None if self.paths is None else self.paths.pixel_stats
        if path is None:
            msg = "this release has no data/stats_era5_*.zarr pixel statistics"
            raise FileNotFoundError(msg)
        # v2 stores written by Appa carry .zmetadata; otherwise read the plain metadata
        consolidated = (path / ".zmetadata").is_file()
        return open_zarr_store(path, role="pixel statistics", consolidated=consolidated)


def load_appa_release(
    path: str | Path,
    *,
    checkpoint: str = "auto",
    device: str | torch.device | None = None,
) -> AppaModel:
    """Load an Appa release directory: autoencoder, ViDiT denoiser and latent statistics.

    Parameters
    ----------
    path : str or Path
        The release root (the HuggingFace dataset snapshot, with ``autoencoders/``) or a
        denoiser lap directory ``.../latents/<dump>/denoisers/<run>/<lap>``.
    checkpoint : {"auto", "last", "best", "model"}
        Which denoiser checkpoint to read: ``model_last.pth``, ``model_best.pth`` or
        ``model.pth``; ``"auto"`` (the default) reads the first of these that exists (see
        :func:`find_checkpoint`). The file read is ``AppaModel.checkpoint``.
    device : str or torch.device, optional
        Where to put the model; by default ``xappa.get_options()["device"]``, else CUDA when
        available, else the CPU.

    Returns
    -------
    AppaModel
        The model in eval mode.

    Raises
    ------
    FileNotFoundError
        If a required file is absent; for the denoiser checkpoint, the message lists the
        checkpoint files that exist.
    KeyError
        If a config lacks a required field or a checkpoint misses or adds a key.
    ValueError
        If ``checkpoint`` is unknown, a config is not valid safe YAML, a config field is
        unsupported, a checkpoint tensor has the wrong shape, or a ``.pth`` file holds
        anything but tensors and plain containers (it is never unpickled) or is damaged.
    """
    _check_checkpoint(checkpoint)
    paths = resolve_release(path)
    checkpoint_file = find_checkpoint(paths.denoiser_dir, checkpoint)
    ae_yaml = _read_yaml(paths.latent_dir / "ae" / "config.yaml")
    den_yaml = _read_yaml(paths.denoiser_dir / "config.yaml")
    run_file = paths.autoencoder_run / "config.yaml"
    run_yaml = _read_yaml(run_file) if run_file.is_file() else None

    if "ae" not in ae_yaml:
        msg = "the autoencoder config.yaml has no 'ae' section"
        raise KeyError(msg)
    ae_cfg = AutoencoderConfig.from_appa(ae_yaml["ae"])
    if run_yaml is not None and "ae" in run_yaml:
        run_cfg = AutoencoderConfig.from_appa(run_yaml["ae"])
        for field in dataclasses.fields(AutoencoderConfig):
            if field.name in ("name", "checkpointing"):
                continue
            a, b = getattr(ae_cfg, field.name), getattr(run_cfg, field.name)
            if a != b:
                msg = (
                    f"ae.{field.name} differs between latents/<dump>/ae/config.yaml ({a!r}) "
                    f"and the autoencoder run config.yaml ({b!r})"
                )
                raise ValueError(msg)
    h, w, c = ae_cfg.latent_shape
    vit_cfg = ViDiTConfig.from_appa(_backbone_section(den_yaml), in_channels=c, shape=(h, w))

    with torch.device("meta"):
        autoencoder = ConvAutoencoder.from_config(ae_cfg)
        backbone = ViDiT(vit_cfg)
    _load_state(autoencoder, paths.latent_dir / "ae" / "model.pth", "autoencoder")
    _load_state(backbone, checkpoint_file, "denoiser")

    stats = load_torch_file(paths.latent_dir / "stats.pth", role="latent statistics")
    if not isinstance(stats, Mapping):
        msg = f"latent statistics stats.pth must hold a mapping; found {type(stats).__name__}"
        raise TypeError(msg)
    moments = []
    for key in ("mean", "std"):
        if key not in stats:
            msg = f"stats.pth is missing key {key!r}"
            raise KeyError(msg)
        value = torch.as_tensor(stats[key], dtype=torch.float32)
        if value.shape != (c,):
            msg = f"stats.pth key {key!r} must have shape ({c},); found {tuple(value.shape)}"
            raise ValueError(msg)
        moments.append(value)
    mean, std = moments
    std = torch.sqrt(std**2 + ae_cfg.noise_level**2)

    model = AppaModel(
        autoencoder,
        PreconditionedDenoiser(backbone),
        mean,
        std,
        configs={"autoencoder": ae_yaml, "denoiser": den_yaml, "autoencoder_run": run_yaml},
        paths=paths,
        checkpoint=checkpoint_file,
    )
    return model.to(choose_device(device)).eval()
