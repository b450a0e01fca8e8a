r"""Architecture configs of the conv autoencoder and ViDiT, with named sizes.

Named sizes: ``"tiny"`` (tests, CPU) and the published sizes ``"cae_f32"``, ``"cae_f64"``
(autoencoder) and ``"vit_large"`` (ViDiT). :meth:`AutoencoderConfig.from_appa` and
:meth:`ViDiTConfig.from_appa` parse the ``ae`` and ``backbone`` sections of Appa's
``config.yaml`` files and reject fields they do not support.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "AUTOENCODER_SIZES",
    "VIDIT_SIZES",
    "AutoencoderConfig",
    "ViDiTConfig",
    "autoencoder_config",
    "vidit_config",
]

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SATURATIONS = (None, "softclip", "softclip2", "tanh", "asinh", "rmsnorm")


def _pair(value: Any, key: str, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        msg = f"{key} must have {n} entries; found {list(out)}"
        raise ValueError(msg)
    return out


def _float(value: Any, key: str) -> float:
    # yaml.safe_load reads "1e-3" (no dot) as a string (YAML 1.1)
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        msg = f"{key} must be a number; found {value!r}"
        raise ValueError(msg) from err


@dataclass(frozen=True, kw_only=True)
class AutoencoderConfig:
    r"""Creates the architecture config of Appa's convolutional autoencoder.

    Attributes
    ----------
    in_channels : int
        The number of pixel channels :math:`C` (71 for the published model).
    lat_channels : int
        The number of latent channels :math:`C_{lat}`.
    shape : tuple of int
        The pixel grid ``(H, W)``.
    resize : int
        The total downsampling factor :math:`f`; must equal
        ``patch_size * 2 ** (len(hid_channels) - 1)``.
    hid_channels : tuple of int
        The channels at each depth.
    hid_blocks : tuple of int
        The number of residual blocks at each depth.
    saturation : str or None
        ``"softclip2"``, ``"softclip"``, ``"tanh"``, ``"asinh"``, ``"rmsnorm"`` or ``None``.
    saturation_bound : float
        The bound :math:`b` of the saturation.
    noise_level : float
        The latent noise :math:`\sigma_z` of training (``ae.noise_level``).
    kernel_size : int
        The kernel size of all convolutions.
    ffn_factor : int
        The channel factor inside residual blocks.
    patch_size : tuple of int
        The input patch size ``(h, w)``.
    periodic : bool
        Whether convolutions pad circularly (``False`` in Appa's configs).
    dropout : float or None
        The dropout rate in residual blocks.
    identity_init : bool
        Whether resampling and latent convolutions start near the identity.
    checkpointing : bool
        Whether residual blocks use gradient checkpointing while training.
    name : str
        A label.
    """

    in_channels: int
    lat_channels: int
    shape: tuple[int, int] = (721, 1440)
    resize: int = 32
    hid_channels: tuple[int, ...] = (64, 128, 256, 512, 768, 1024)
    hid_blocks: tuple[int, ...] = (3, 3, 3, 3, 3, 3)
    saturation: str | None = "softclip2"
    saturation_bound: float = 5.0
    noise_level: float = 0.0
    kernel_size: int = 3
    ffn_factor: int = 1
    patch_size: tuple[int, int] = (1, 1)
    periodic: bool = False
    dropout: float | None = 0.0
    identity_init: bool = True
    checkpointing: bool = False
    name: str = "cae"

    def __post_init__(self) -> None:
        for key in ("shape", "hid_channels", "hid_blocks", "patch_size"):
            object.__setattr__(self, key, tuple(int(v) for v in getattr(self, key)))
        if len(self.hid_channels) != len(self.hid_blocks) or not self.hid_channels:
            msg = (
                "hid_channels and hid_blocks must have the same non-zero length; found "
                f"{len(self.hid_channels)} and {len(self.hid_blocks)}"
            )
            raise ValueError(msg)
        if len(self.shape) != 2 or len(self.patch_size) != 2:
            msg = (
                f"shape and patch_size must have 2 entries; found {self.shape}, {self.patch_size}"
            )
            raise ValueError(msg)
        depth = 2 ** (len(self.hid_channels) - 1)
        if self.patch_size[0] * depth != self.resize or self.patch_size[1] * depth != self.resize:
            msg = (
                f"resize must equal patch_size * 2 ** (depths - 1) = "
                f"{tuple(p * depth for p in self.patch_size)}; found {self.resize}"
            )
            raise ValueError(msg)
        if self.saturation not in _SATURATIONS:
            msg = f"saturation must be one of {list(_SATURATIONS)}; found {self.saturation!r}"
            raise ValueError(msg)
        if self.kernel_size % 2 != 1:
            msg = f"kernel_size must be odd; found {self.kernel_size}"
            raise ValueError(msg)
        if self.noise_level < 0:
            msg = f"noise_level must be >= 0; found {self.noise_level}"
            raise ValueError(msg)

    @property
    def padding(self) -> tuple[int, int]:
        """The total padding ``(rows, columns)``: zeros in latitude, circular in longitude."""
        h, w = self.shape
        f = self.resize
        return -h % f, -w % f + 2 * f

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent shape ``(h, w, C_lat)`` (Appa's ``ae.latent_shape`` order)."""
        (h, w), (ph, pw) = self.shape, self.padding
        return (h + ph) // self.resize, (w + pw) // self.resize, self.lat_channels

    @classmethod
    def from_appa(cls, section: Mapping[str, Any]) -> AutoencoderConfig:
        """Parse the ``ae`` section of an Appa autoencoder ``config.yaml``.

        Parameters
        ----------
        section : Mapping
            The ``ae`` section, as read by ``yaml.safe_load``.

        Returns
        -------
        AutoencoderConfig
            The config.

        Raises
        ------
        KeyError
            If ``in_channels`` or ``lat_channels`` is missing.
        ValueError
            For an unknown field, an unsupported value (``pixel_shuffle: false``,
            ``stride != 2``, ``spatial != 2``, a non-conv ``name``) or a ``latent_shape``
            that disagrees with the architecture.
        """
        fields = dict(section)
        kwargs: dict[str, Any] = {}
        for key in ("in_channels", "lat_channels"):
            if key not in fields:
                msg = f"ae.{key} is missing from the autoencoder config"
                raise KeyError(msg)
        name = str(fields.pop("name", "cae"))
        if "ico" in name:
            msg = f"ae.name must name a conv autoencoder ('cae...'); found {name!r}"
            raise ValueError(msg)
        kwargs["name"] = name
        checks = {
            "pixel_shuffle": (True, lambda v: v is True),
            "stride": (2, lambda v: _pair(v, "ae.stride", 2) == (2, 2)),
            "spatial": (2, lambda v: v == 2),
        }
        for key, (expected, ok) in checks.items():
            if key in fields and not ok(value := fields.pop(key)):
                msg = f"ae.{key} must be {expected!r}; found {value!r}"
                raise ValueError(msg)
        fields.pop("context_channels", None)  # the conv AE ignores context
        latent_shape = fields.pop("latent_shape", None)
        if "kernel_size" in fields:
            ks = set(_pair(fields.pop("kernel_size"), "ae.kernel_size", 2))
            if len(ks) != 1:
                msg = f"ae.kernel_size must be square; found {sorted(ks)}"
                raise ValueError(msg)
            kwargs["kernel_size"] = ks.pop()
        if "patch_size" in fields:
            kwargs["patch_size"] = _pair(fields.pop("patch_size"), "ae.patch_size", 2)
        for key in ("saturation_bound", "noise_level"):
            if key in fields:
                kwargs[key] = _float(fields.pop(key), f"ae.{key}")
        if "dropout" in fields:
            value = fields.pop("dropout")
            kwargs["dropout"] = None if value is None else _float(value, "ae.dropout")
        known = {f.name for f in dataclasses.fields(cls)} - set(kwargs)
        for key, value in fields.items():
            if key not in known:
                msg = f"ae.{key} is not a supported autoencoder field (supported: {sorted(known)})"
                raise ValueError(msg)
            kwargs[key] = value
        config = cls(**kwargs)
        if latent_shape is not None and tuple(latent_shape) != config.latent_shape:
            msg = (
                f"ae.latent_shape must be {list(config.latent_shape)} for this architecture; "
                f"found {list(latent_shape)}"
            )
            raise ValueError(msg)
        return config


@dataclass(frozen=True, kw_only=True)
class ViDiTConfig:
    r"""Creates the architecture config of Appa's ViDiT backbone.

    Attributes
    ----------
    in_channels : int
        The number of latent channels :math:`C_{lat}`.
    blanket_size : int
        The window length :math:`K` (``train.blanket_size``).
    shape : tuple of int
        The latent grid ``(h, w)``.
    mod_features : int
        The width of the diffusion-time embedding.
    hid_channels : int
        The token width.
    hid_blocks : int
        The number of transformer blocks.
    ffn_factor : int
        The width factor of the block FFN.
    attention_heads : int
        The number of attention heads.
    qk_norm : bool
        Whether queries and keys are RMS-normalised per head.
    rope : bool
        Whether blocks use learned rotary position embeddings.
    patch_size : tuple of int
        The patch size ``(frames, rows, columns)``.
    dropout : float or None
        The dropout rate of the FFN.
    checkpointing : bool
        Whether blocks use gradient checkpointing while training.
    name : str
        A label.
    """

    in_channels: int
    blanket_size: int
    shape: tuple[int, int]
    mod_features: int = 256
    hid_channels: int = 1024
    hid_blocks: int = 16
    ffn_factor: int = 4
    attention_heads: int = 8
    qk_norm: bool = True
    rope: bool = True
    patch_size: tuple[int, int, int] = (2, 1, 1)
    dropout: float | None = 0.0
    checkpointing: bool = False
    name: str = "vit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "patch_size", _pair(self.patch_size, "patch_size", 3))
        sizes = (self.blanket_size, *self.shape)
        if len(self.shape) != 2 or any(s % p for s, p in zip(sizes, self.patch_size, strict=True)):
            msg = (
                f"(blanket_size, *shape) must be divisible by patch_size {self.patch_size}; "
                f"found {sizes}"
            )
            raise ValueError(msg)
        head = self.hid_channels // max(self.attention_heads, 1)
        if self.hid_channels % self.attention_heads or head % 2:
            msg = (
                "hid_channels must be divisible by attention_heads into even head widths; "
                f"found {self.hid_channels} and {self.attention_heads}"
            )
            raise ValueError(msg)
        if self.mod_features < 2 or self.mod_features % 2:
            msg = f"mod_features must be even and positive; found {self.mod_features}"
            raise ValueError(msg)

    @property
    def tokens(self) -> int:
        """The number of tokens of a window."""
        return math.prod(
            s // p for s, p in zip((self.blanket_size, *self.shape), self.patch_size, strict=True)
        )

    @classmethod
    def from_appa(
        cls, section: Mapping[str, Any], *, in_channels: int, shape: tuple[int, int]
    ) -> ViDiTConfig:
        """Parse the ``backbone`` section of an Appa denoiser ``config.yaml``.

        Parameters
        ----------
        section : Mapping
            The ``backbone`` section (with ``blanket_size``), as read by ``yaml.safe_load``.
        in_channels : int
            The latent channels (``ae.latent_shape[2]``).
        shape : tuple of int
            The latent grid (``ae.latent_shape[:2]``).

        Returns
        -------
        ViDiTConfig
            The config.

        Raises
        ------
        KeyError
            If ``blanket_size`` is missing.
        ValueError
            For an unknown field or an unsupported value (``arch`` other than ``"vit"``,
            a ``window_size``, ``cond_channels``, ``spatial != 3``, ``unpatch_size``).
        """
        fields = dict(section)
        if "blanket_size" not in fields:
            msg = "backbone.blanket_size is missing from the denoiser config"
            raise KeyError(msg)
        arch = fields.pop("arch", "vit")
        name = str(fields.pop("name", "vit"))
        if arch != "vit" or "vit" not in name:
            msg = f"backbone.arch must be 'vit' (ViDiT); found arch={arch!r}, name={name!r}"
            raise ValueError(msg)
        fixed = {"window_size": None, "cond_channels": 0, "spatial": 3}
        for key, expected in fixed.items():
            if key in fields and fields.pop(key) != expected:
                msg = f"backbone.{key} must be {expected!r}; found {section[key]!r}"
                raise ValueError(msg)
        kwargs: dict[str, Any] = {"name": name, "in_channels": in_channels, "shape": shape}
        patch = _pair(fields.pop("patch_size", (2, 1, 1)), "backbone.patch_size", 3)
        kwargs["patch_size"] = patch
        if "unpatch_size" in fields:
            value = fields.pop("unpatch_size")
            if value is not None and _pair(value, "backbone.unpatch_size", 3) != patch:
                msg = f"backbone.unpatch_size must be null or {list(patch)}; found {value!r}"
                raise ValueError(msg)
        if "dropout" in fields:
            value = fields.pop("dropout")
            kwargs["dropout"] = None if value is None else _float(value, "backbone.dropout")
        known = {f.name for f in dataclasses.fields(cls)} - set(kwargs)
        for key, value in fields.items():
            if key not in known:
                msg = f"backbone.{key} is not a supported ViDiT field (supported: {sorted(known)})"
                raise ValueError(msg)
            kwargs[key] = value
        return cls(**kwargs)


AUTOENCODER_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "in_channels": 3,
        "lat_channels": 4,
        "shape": (32, 64),
        "resize": 4,
        "hid_channels": (8, 16, 16),
        "hid_blocks": (1, 1, 1),
        "name": "tiny",
    },
    "cae_f32": {"in_channels": 71, "lat_channels": 64, "name": "cae_f32c64"},
    "cae_f64": {
        "in_channels": 71,
        "lat_channels": 256,
        "resize": 64,
        "hid_channels": (64, 128, 256, 512, 768, 1024, 1536),
        "hid_blocks": (3,) * 7,
        "name": "cae_f64c256",
    },
}
"""Named autoencoder sizes (keyword arguments of :class:`AutoencoderConfig`)."""

VIDIT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "in_channels": 4,
        "blanket_size": 4,
        "shape": (8, 18),
        "mod_features": 16,
        "hid_channels": 32,
        "hid_blocks": 2,
        "ffn_factor": 2,
        "attention_heads": 2,
        "name": "tiny",
    },
    "vit_large": {"in_channels": 64, "blanket_size": 24, "shape": (23, 47), "name": "vit_large"},
}
"""Named ViDiT sizes (keyword arguments of :class:`ViDiTConfig`)."""


def autoencoder_config(name: str, **overrides: Any) -> AutoencoderConfig:
    """Return a named autoencoder config, with optional overrides.

    Parameters
    ----------
    name : str
        One of :data:`AUTOENCODER_SIZES` (``"tiny"``, ``"cae_f32"``, ``"cae_f64"``).
    **overrides
        Fields to change, for example ``in_channels=71``.

    Returns
    -------
    AutoencoderConfig
        The config.
    """
    if name not in AUTOENCODER_SIZES:
        msg = f"unknown autoencoder size {name!r}; available: {sorted(AUTOENCODER_SIZES)}"
        raise KeyError(msg)
    return AutoencoderConfig(**{**AUTOENCODER_SIZES[name], **overrides})


def vidit_config(name: str, **overrides: Any) -> ViDiTConfig:
    """Return a named ViDiT config, with optional overrides.

    Parameters
    ----------
    name : str
        One of :data:`VIDIT_SIZES` (``"tiny"``, ``"vit_large"``).
    **overrides
        Fields to change, for example ``blanket_size=24``.

    Returns
    -------
    ViDiTConfig
        The config.
    """
    if name not in VIDIT_SIZES:
        msg = f"unknown ViDiT size {name!r}; available: {sorted(VIDIT_SIZES)}"
        raise KeyError(msg)
    return ViDiTConfig(**{**VIDIT_SIZES[name], **overrides})
