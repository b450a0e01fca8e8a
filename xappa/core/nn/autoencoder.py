r"""Appa's convolutional autoencoder: pixel-unshuffle encoder, pixel-shuffle decoder.

The input grid ``(H, W)`` is padded to multiples of the resize factor :math:`f`:
zeros in latitude (rows), circular in longitude (columns) with :math:`f` extra columns on
each side. For the published ``cae_f32`` on 721 x 1440 pixels, this gives 736 x 1504
padded pixels and a 23 x 47 x 64 latent.

Tensor layout differs from the reference implementation: xappa takes and returns images
``(B, C, H, W)`` and latents ``(B, C_lat, h, w)``; Appa flattens both channel-last,
``(B, H W, C)`` and ``(B, h w, C_lat)``. The parameters are the same, so Appa's state dicts
load with ``strict=True``.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Shi et al. (2016). Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network. https://arxiv.org/abs/1609.05158
"""

from __future__ import annotations

__all__ = ["ConvAutoencoder", "ConvDecoder", "ConvEncoder", "saturate"]

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xappa.core.nn.configs import AutoencoderConfig
from xappa.core.nn.layers import Patchify, ResBlock, Unpatchify, conv2d


def saturate(z: Tensor, kind: str | None, bound: float = 5.0) -> Tensor:
    r"""Bound latents smoothly.

    ``"softclip2"``: :math:`z / \sqrt{1 + (z/b)^2}`; ``"softclip"``: :math:`z / (1 + |z|/b)`;
    ``"tanh"``: :math:`b \tanh(z/b)`; ``"asinh"``: :math:`\operatorname{asinh} z`;
    ``"rmsnorm"``: division by the RMS over channels; ``None``: identity.

    Parameters
    ----------
    z : Tensor
        Latents, with shape ``(B, C_lat, h, w)``.
    kind : str or None
        The saturation.
    bound : float
        The bound :math:`b`.

    Returns
    -------
    Tensor
        The saturated latents, with shape ``(B, C_lat, h, w)``.
    """
    if kind is None:
        return z
    if kind == "softclip2":
        return z * torch.rsqrt(1 + torch.square(z / bound))
    if kind == "softclip":
        return z / (1 + z.abs() / bound)
    if kind == "tanh":
        return torch.tanh(z / bound) * bound
    if kind == "asinh":
        return torch.arcsinh(z)
    if kind == "rmsnorm":
        return z * torch.rsqrt(torch.mean(torch.square(z), dim=1, keepdim=True) + 1e-5)
    msg = f"saturation must be softclip2, softclip, tanh, asinh, rmsnorm or None; found {kind!r}"
    raise ValueError(msg)


class ConvEncoder(nn.Module):
    r"""Creates the encoder: convolutions, residual blocks and pixel-unshuffle descents.

    Modules ``descent.{i}.{k}``: at depth 0, ``k = 0`` is the input convolution; at depth
    :math:`i > 0`, ``k = 0`` is ``Sequential(Patchify(2, 2), Conv)``; then the residual
    blocks; the last depth ends with the convolution to ``lat_channels``.

    Parameters
    ----------
    config : AutoencoderConfig
        The architecture.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        cfg = config
        conv = {"kernel_size": cfg.kernel_size, "periodic": cfg.periodic}
        hid = cfg.hid_channels
        self.patch = Patchify(cfg.patch_size)
        self.descent = nn.ModuleList()
        for i, n_blocks in enumerate(cfg.hid_blocks):
            blocks = nn.ModuleList()
            if i == 0:
                c_in = cfg.in_channels * cfg.patch_size[0] * cfg.patch_size[1]
                blocks.append(conv2d(c_in, hid[0], **conv))
            else:
                down = conv2d(4 * hid[i - 1], hid[i], identity_init=cfg.identity_init, **conv)
                blocks.append(nn.Sequential(Patchify((2, 2)), down))
            blocks.extend(_res_blocks(cfg, hid[i], n_blocks))
            if i + 1 == len(hid):
                out = conv2d(hid[i], cfg.lat_channels, identity_init=cfg.identity_init, **conv)
                blocks.append(out)
            self.descent.append(blocks)

    def forward(self, x: Tensor) -> Tensor:
        """Encode padded images.

        Parameters
        ----------
        x : Tensor
            Padded images, with shape ``(B, C, f h, f w)``.

        Returns
        -------
        Tensor
            Unsaturated latents, with shape ``(B, C_lat, h, w)``.
        """
        x = self.patch(x)
        for blocks in self.descent:
            for block in blocks:
                x = block(x)
        return x


class ConvDecoder(nn.Module):
    r"""Creates the decoder: convolutions, residual blocks and pixel-shuffle ascents.

    Modules ``ascent.{j}.{k}`` with ``j = 0`` the deepest level: there, ``k = 0`` is the
    convolution from ``lat_channels``; then the residual blocks; then
    ``Sequential(Conv, Unpatchify(2, 2))``, or at the shallowest level the output
    convolution.

    Parameters
    ----------
    config : AutoencoderConfig
        The architecture.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        cfg = config
        conv = {"kernel_size": cfg.kernel_size, "periodic": cfg.periodic}
        hid = cfg.hid_channels
        self.unpatch = Unpatchify(cfg.patch_size)
        self.ascent = nn.ModuleList()
        for i in reversed(range(len(hid))):
            blocks = nn.ModuleList()
            if i + 1 == len(hid):
                inp = conv2d(cfg.lat_channels, hid[i], identity_init=cfg.identity_init, **conv)
                blocks.append(inp)
            blocks.extend(_res_blocks(cfg, hid[i], cfg.hid_blocks[i]))
            if i > 0:
                up = conv2d(hid[i], 4 * hid[i - 1], identity_init=cfg.identity_init, **conv)
                blocks.append(nn.Sequential(up, Unpatchify((2, 2))))
            else:
                c_out = cfg.in_channels * cfg.patch_size[0] * cfg.patch_size[1]
                blocks.append(conv2d(hid[0], c_out, **conv))
            self.ascent.append(blocks)

    def forward(self, z: Tensor) -> Tensor:
        """Decode latents to padded images.

        Parameters
        ----------
        z : Tensor
            Latents, with shape ``(B, C_lat, h, w)``.

        Returns
        -------
        Tensor
            Padded images, with shape ``(B, C, f h, f w)``.
        """
        for blocks in self.ascent:
            for block in blocks:
                z = block(z)
        return self.unpatch(z)


def _res_blocks(config: AutoencoderConfig, channels: int, n: int) -> list[nn.Module]:
    return [
        ResBlock(
            channels,
            ffn_factor=config.ffn_factor,
            kernel_size=config.kernel_size,
            periodic=config.periodic,
            dropout=config.dropout,
            checkpointing=config.checkpointing,
        )
        for _ in range(n)
    ]


class ConvAutoencoder(nn.Module):
    r"""Creates Appa's convolutional autoencoder around an encoder and a decoder.

    .. math:: z = \mathrm{sat}(E(\mathrm{pad}(x))), \qquad
        \hat{x} = \mathrm{unpad}(D(z + \sigma_z \epsilon))

    where the latent noise :math:`\sigma_z \epsilon` is added only when asked for
    (``decode(z, noise=True)``, as in training). The reference implementation adds it
    whenever :math:`\sigma_z > 0`, even in evaluation; xappa never does so implicitly.

    Parameters
    ----------
    encoder : nn.Module
        The encoder (:class:`ConvEncoder`), ``(B, C, f h, f w) -> (B, C_lat, h, w)``.
    decoder : nn.Module
        The decoder (:class:`ConvDecoder`), ``(B, C_lat, h, w) -> (B, C, f h, f w)``.
    config : AutoencoderConfig
        The architecture (grid, resize factor, saturation and latent noise).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: AutoencoderConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = config

    @classmethod
    def from_config(cls, config: AutoencoderConfig) -> ConvAutoencoder:
        """Build the autoencoder of a config, with fresh weights.

        Parameters
        ----------
        config : AutoencoderConfig
            The architecture.

        Returns
        -------
        ConvAutoencoder
            The autoencoder (build it under ``torch.device("meta")`` to count parameters
            without memory).
        """
        return cls(ConvEncoder(config), ConvDecoder(config), config)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent shape ``(C_lat, h, w)``."""
        h, w, c = self.config.latent_shape
        return c, h, w

    def pad(self, x: Tensor) -> Tensor:
        """Pad images: circular in longitude, then zeros in latitude.

        Parameters
        ----------
        x : Tensor
            Images, with shape ``(B, C, H, W)``.

        Returns
        -------
        Tensor
            Padded images, with shape ``(B, C, H + p_h, W + p_w)``.
        """
        ph, pw = self.config.padding
        x = F.pad(x, (pw // 2, pw - pw // 2, 0, 0), mode="circular")
        return F.pad(x, (0, 0, ph // 2, ph - ph // 2))

    def unpad(self, x: Tensor) -> Tensor:
        """Crop the margins added by :meth:`pad`.

        Parameters
        ----------
        x : Tensor
            Padded images, with shape ``(B, C, H + p_h, W + p_w)``.

        Returns
        -------
        Tensor
            Images, with shape ``(B, C, H, W)``.
        """
        (h, w), (ph, pw) = self.config.shape, self.config.padding
        return x[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]

    def encode(self, x: Tensor) -> Tensor:
        """Encode standardized images.

        Parameters
        ----------
        x : Tensor
            Standardized pixels (NaN already replaced by 0), with shape ``(B, C, H, W)``.

        Returns
        -------
        Tensor
            Saturated latents, with shape ``(B, C_lat, h, w)``.
        """
        cfg = self.config
        torch._check(
            x.ndim == 4 and tuple(x.shape[1:]) == (cfg.in_channels, *cfg.shape),
            lambda: (
                f"x must have shape (B, {cfg.in_channels}, {cfg.shape[0]}, "
                f"{cfg.shape[1]}); found {tuple(x.shape)}"
            ),
        )
        z = self.encoder(self.pad(x))
        return saturate(z, cfg.saturation, cfg.saturation_bound)

    def decode(
        self, z: Tensor, *, noise: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Decode latents to standardized images.

        Parameters
        ----------
        z : Tensor
            Latents, with shape ``(B, C_lat, h, w)``.
        noise : bool
            Whether to add the training latent noise :math:`\sigma_z \epsilon` first
            (``config.noise_level``); off by default, also in training mode.
        generator : torch.Generator, optional
            The source of the latent noise.

        Returns
        -------
        Tensor
            Standardized pixels, with shape ``(B, C, H, W)``.
        """
        torch._check(
            z.ndim == 4 and tuple(z.shape[1:]) == self.latent_shape,
            lambda: (
                f"z must have shape (B, {', '.join(map(str, self.latent_shape))}); "
                f"found {tuple(z.shape)}"
            ),
        )
        if noise and self.config.noise_level > 0:
            eps = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
            z = z + self.config.noise_level * eps
        return self.unpad(self.decoder(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encode and decode; the latent noise is added in training mode only.

        Parameters
        ----------
        x : Tensor
            Standardized pixels, with shape ``(B, C, H, W)``.

        Returns
        -------
        tuple of Tensor
            The latents ``(B, C_lat, h, w)`` and the reconstruction ``(B, C, H, W)``.
        """
        z = self.encode(x)
        return z, self.decode(z, noise=self.training)
