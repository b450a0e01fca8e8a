r"""Shared layers of Appa's networks.

Convolutions, channel LayerNorm, residual blocks, sine encodings and patch rearrangements.

Parameter and buffer names follow Appa's reference implementation, so that its published
state dicts load without renaming.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Ba et al. (2016). Layer Normalization. https://arxiv.org/abs/1607.06450
* Vaswani et al. (2017). Attention Is All You Need. https://arxiv.org/abs/1706.03762
"""

from __future__ import annotations

__all__ = [
    "ChannelLayerNorm",
    "Patchify",
    "ResBlock",
    "SineEncoding",
    "Unpatchify",
    "conv2d",
    "count_parameters",
]

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv2d(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    periodic: bool = False,
    identity_init: bool = False,
) -> nn.Conv2d:
    r"""Return a "same"-padded 2-d convolution, optionally initialised near the identity.

    With ``identity_init``, the weight becomes :math:`10^{-2} W + I`, where :math:`I` maps
    output channel :math:`i` to input channel :math:`i \bmod C_i` at the kernel centre.

    Parameters
    ----------
    in_channels : int
        The number of input channels :math:`C_i`.
    out_channels : int
        The number of output channels :math:`C_o`.
    kernel_size : int
        The (odd) kernel size; the padding is ``kernel_size // 2``.
    periodic : bool
        Whether the padding is circular (``True``) or zeros (``False``, Appa's configs).
    identity_init : bool
        Whether to initialise the layer as a pseudo-identity.

    Returns
    -------
    nn.Conv2d
        The layer, mapping ``(B, C_i, H, W)`` to ``(B, C_o, H, W)``.
    """
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        padding_mode="circular" if periodic else "zeros",
    )
    if identity_init:
        with torch.no_grad():
            eye = torch.zeros_like(conv.weight)
            centre = kernel_size // 2
            rows = torch.arange(out_channels)
            eye[rows, rows % in_channels, centre, centre] = 1
            conv.weight.mul_(1e-2).add_(eye)
    return conv


class ChannelLayerNorm(nn.Module):
    r"""Creates a layer that standardizes features along the channel dimension.

    .. math:: y = \frac{x - \mathbb{E}[x]}{\sqrt{\mathbb{V}[x] + \epsilon}}

    The statistics are computed in float32 (or float64) and there are no affine parameters.
    :math:`\epsilon` is a buffer named ``eps``, saved in the state dict as in Appa.

    Parameters
    ----------
    dim : int
        The dimension to standardize (``-3`` for images ``(B, C, H, W)``).
    eps : float
        A numerical stability term.
    """

    def __init__(self, dim: int = -3, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("eps", torch.as_tensor(eps))

    def extra_repr(self) -> str:  # noqa: D102
        return f"dim={self.dim}"

    def forward(self, x: Tensor) -> Tensor:
        """Standardize ``x``.

        Parameters
        ----------
        x : Tensor
            The input, with shape ``(*, C, H, W)`` (for ``dim=-3``).

        Returns
        -------
        Tensor
            The standardized input, with the shape and dtype of ``x``.
        """
        x32 = x if x.dtype in (torch.float32, torch.float64) else x.float()
        variance, mean = torch.var_mean(x32, dim=self.dim, keepdim=True)
        return ((x32 - mean) * torch.rsqrt(variance + self.eps)).to(x.dtype)


class ResBlock(nn.Module):
    r"""Creates a convolutional residual block.

    .. math:: y = x + \mathrm{Conv}(\mathrm{Dropout}(\mathrm{SiLU}(\mathrm{Conv}(\mathrm{LN}(x)))))

    The modules are ``norm`` (:class:`ChannelLayerNorm`) and ``ffn`` (a Sequential whose
    indices 0 and 3 are the convolutions). The second convolution's weight is scaled by
    :math:`10^{-2}` at initialisation.

    Parameters
    ----------
    channels : int
        The number of channels :math:`C`.
    ffn_factor : int
        The channel factor of the hidden layer.
    kernel_size : int
        The kernel size of both convolutions.
    periodic : bool
        Whether the convolutions pad circularly.
    dropout : float or None
        The dropout rate; ``None`` puts an identity in its place.
    checkpointing : bool
        Whether to use gradient checkpointing while training.
    """

    def __init__(
        self,
        channels: int,
        *,
        ffn_factor: int = 1,
        kernel_size: int = 3,
        periodic: bool = False,
        dropout: float | None = None,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.norm = ChannelLayerNorm(dim=-3)
        hidden = ffn_factor * channels
        self.ffn = nn.Sequential(
            conv2d(channels, hidden, kernel_size=kernel_size, periodic=periodic),
            nn.SiLU(),
            nn.Identity() if dropout is None else nn.Dropout(dropout),
            conv2d(hidden, channels, kernel_size=kernel_size, periodic=periodic),
        )
        with torch.no_grad():
            self.ffn[-1].weight.mul_(1e-2)

    def _forward(self, x: Tensor) -> Tensor:
        return x + self.ffn(self.norm(x))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor
            The input, with shape ``(B, C, H, W)``.

        Returns
        -------
        Tensor
            The output, with shape ``(B, C, H, W)``.
        """
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class Patchify(nn.Module):
    r"""Creates a parameter-free layer that folds 2-d patches into channels.

    ``(B, C, H h, W w)`` becomes ``(B, C h w, H, W)``, with the channel index ordered
    ``(C, h, w)`` as einops' ``"... C (H h) (W w) -> ... (C h w) H W"`` (and as
    :func:`torch.nn.functional.pixel_unshuffle` when ``h = w``).

    Parameters
    ----------
    patch_size : sequence of int
        The patch size ``(h, w)``.
    """

    def __init__(self, patch_size: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)

    def extra_repr(self) -> str:  # noqa: D102
        return f"patch_size={self.patch_size}"

    def forward(self, x: Tensor) -> Tensor:
        """Fold the patches.

        Parameters
        ----------
        x : Tensor
            The input, with shape ``(*, C, H h, W w)``.

        Returns
        -------
        Tensor
            The output, with shape ``(*, C h w, H, W)``.
        """
        h, w = self.patch_size
        if h == w == 1:
            return x
        *lead, c, hh, ww = x.shape
        x = x.reshape(*lead, c, hh // h, h, ww // w, w)
        n = len(lead)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        return x.reshape(*lead, c * h * w, hh // h, ww // w)


class Unpatchify(nn.Module):
    r"""Creates a parameter-free layer that unfolds channels into 2-d patches.

    The inverse of :class:`Patchify`: ``(B, C h w, H, W)`` becomes ``(B, C, H h, W w)``.

    Parameters
    ----------
    patch_size : sequence of int
        The patch size ``(h, w)``.
    """

    def __init__(self, patch_size: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)

    def extra_repr(self) -> str:  # noqa: D102
        return f"patch_size={self.patch_size}"

    def forward(self, x: Tensor) -> Tensor:
        """Unfold the patches.

        Parameters
        ----------
        x : Tensor
            The input, with shape ``(*, C h w, H, W)``.

        Returns
        -------
        Tensor
            The output, with shape ``(*, C, H h, W w)``.
        """
        h, w = self.patch_size
        if h == w == 1:
            return x
        *lead, chw, hh, ww = x.shape
        c = chw // (h * w)
        x = x.reshape(*lead, c, h, w, hh, ww)
        n = len(lead)
        x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        return x.reshape(*lead, c, hh * h, ww * w)


class SineEncoding(nn.Module):
    r"""Creates a sinusoidal encoding of scalars.

    .. math:: e = \left[\sin(f_0 x), \dots, \sin(f_{F/2-1} x),
        \cos(f_0 x), \dots, \cos(f_{F/2-1} x)\right],
        \qquad f_i = \omega^{-i / (F/2 - 1)}

    The frequencies are a float32 buffer named ``freqs`` (saved in the state dict).

    Parameters
    ----------
    features : int
        The number of features :math:`F` (even).
    omega : float
        The largest period :math:`\omega`.
    """

    def __init__(self, features: int, omega: float = 1e2) -> None:
        super().__init__()
        if features % 2 != 0 or features < 2:
            msg = f"features must be even and positive; found {features}"
            raise ValueError(msg)
        freqs = omega ** -torch.linspace(0, 1, features // 2, dtype=torch.float64)
        self.register_buffer("freqs", freqs.to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x``.

        Parameters
        ----------
        x : Tensor
            The scalars, with shape ``(*)``.

        Returns
        -------
        Tensor
            The encodings, with shape ``(*, F)``.
        """
        fx = self.freqs * x[..., None]
        return torch.cat((torch.sin(fx), torch.cos(fx)), dim=-1)


def count_parameters(module: nn.Module) -> int:
    """Count the parameters of a module (buffers excluded); works on the meta device.

    Parameters
    ----------
    module : nn.Module
        The module.

    Returns
    -------
    int
        The number of parameter elements.
    """
    return sum(p.numel() for p in module.parameters())
