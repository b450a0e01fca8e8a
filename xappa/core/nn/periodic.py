r"""A small diffusion backbone for windows of states on a periodic 1-D site axis.

A window of :math:`K` consecutive states of :math:`N` sites (Lorenz-96, a latitude circle) is
read as a 1-D signal over the sites with the :math:`K \times C` frame values as channels, so
every layer mixes all frames of the window while convolutions wrap around the site axis
(circular padding). The noise level enters through adaptive scale, shift and gate
modulations, as in Appa's ViDiT blocks.

References
----------
* Peebles & Xie (2023). Scalable Diffusion Models with Transformers.
  https://arxiv.org/abs/2212.09748
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["PeriodicConvNet", "SineEncoding"]

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class SineEncoding(nn.Module):
    r"""Creates a sinusoidal encoding of scalars.

    Parameters
    ----------
    features : int
        The number of output features (even).
    omega : float
        The largest period: frequencies are :math:`\omega^{-u}` for :math:`u \in [0, 1]`.
    """

    def __init__(self, features: int, omega: float = 1e3) -> None:
        super().__init__()
        if features % 2:
            msg = f"SineEncoding features must be even; found {features}"
            raise ValueError(msg)
        freqs = omega ** -torch.linspace(0, 1, features // 2)
        self.register_buffer("freqs", freqs)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x`` with shape ``(B,)`` into features with shape ``(B, features)``."""
        x = x[..., None] * self.freqs
        return torch.cat((torch.sin(x), torch.cos(x)), dim=-1)


class _Block(nn.Module):
    def __init__(self, channels: int, emb: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, affine=False)
        self.modulation = nn.Linear(emb, 3 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        pad = dilation * (kernel_size // 2)
        self.conv1 = nn.Conv1d(
            channels,
            2 * channels,
            kernel_size,
            padding=pad,
            dilation=dilation,
            padding_mode="circular",
        )
        self.conv2 = nn.Conv1d(2 * channels, channels, 1)
        nn.init.normal_(self.conv2.weight, std=1e-2 / math.sqrt(2 * channels))
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift, gate = self.modulation(emb)[..., None].chunk(3, dim=1)
        y = self.norm(h) * (1 + scale) + shift
        y = self.conv2(nn.functional.silu(self.conv1(y)))
        return h + (1 + gate) * y


class PeriodicConvNet(nn.Module):
    r"""Creates a 1-D convolutional backbone over a periodic site axis for windows of states.

    It is a backbone ``F(x, c_noise)`` for
    :class:`xappa.core.diffusion.denoiser.PreconditionedDenoiser`.

    Parameters
    ----------
    frames : int
        The window length :math:`K`.
    channels : int
        The number of variables per site :math:`C` (1 for Lorenz-96).
    hidden : int
        The hidden width.
    blocks : int
        The number of residual blocks.
    kernel_size : int
        The (odd) convolution width over sites.
    dilations : sequence of int
        Dilations cycled over the blocks (wider receptive field at the same cost).
    emb_features : int
        The width of the noise embedding.

    Examples
    --------
    >>> import torch
    >>> net = PeriodicConvNet(frames=8, hidden=16, blocks=2)
    >>> net(torch.randn(3, 8, 40), torch.zeros(3)).shape
    torch.Size([3, 8, 40])
    """

    def __init__(
        self,
        frames: int,
        channels: int = 1,
        hidden: int = 64,
        blocks: int = 4,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2),
        emb_features: int = 64,
    ) -> None:
        super().__init__()
        if frames < 1 or channels < 1 or hidden < 1 or blocks < 1 or kernel_size % 2 == 0:
            msg = (
                "PeriodicConvNet needs frames, channels, hidden, blocks >= 1 and an odd "
                f"kernel_size; found {frames}, {channels}, {hidden}, {blocks} and {kernel_size}"
            )
            raise ValueError(msg)
        self.frames, self.channels = frames, channels
        features = frames * channels
        self.embedding = nn.Sequential(
            SineEncoding(emb_features),
            nn.Linear(emb_features, emb_features),
            nn.SiLU(),
            nn.Linear(emb_features, emb_features),
        )
        self.lift = nn.Conv1d(features, hidden, 3, padding=1, padding_mode="circular")
        self.blocks = nn.ModuleList(
            _Block(hidden, emb_features, kernel_size, dilations[i % len(dilations)])
            for i in range(blocks)
        )
        self.norm = nn.GroupNorm(1, hidden, affine=False)
        self.project = nn.Conv1d(hidden, features, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """Apply the network.

        Parameters
        ----------
        x : Tensor
            Windows, with shape ``(B, K, N)`` when ``channels == 1`` or ``(B, K, N, C)``.
        c_noise : Tensor
            The encoded noise levels, with shape ``(B,)``.

        Returns
        -------
        Tensor
            The output, with the shape of ``x``.
        """
        shape = x.shape
        squeeze = x.ndim == 3
        torch._check(
            x.shape[1] == self.frames and (squeeze or x.ndim == 4 and shape[-1] == self.channels),
            lambda: f"x must have shape (B, {self.frames}, N[, {self.channels}]); found {shape}",
        )
        h = x[..., None] if squeeze else x
        b, k, n, c = h.shape
        h = h.permute(0, 1, 3, 2).reshape(b, k * c, n)
        emb = self.embedding(c_noise.to(x.dtype))
        h = self.lift(h)
        for block in self.blocks:
            h = block(h, emb)
        h = self.project(nn.functional.silu(self.norm(h)))
        h = h.reshape(b, k, c, n).permute(0, 1, 3, 2)
        return h.reshape(shape)
