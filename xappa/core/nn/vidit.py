r"""ViDiT: Appa's video diffusion transformer over windows of latent states.

A window of :math:`K` latent states ``(B, K, C, h, w)`` is treated as a video: the
:math:`4K` date features of :func:`~xappa.core.nn.dates.vidit_date_features` are broadcast
to every voxel and concatenated after the :math:`C` latent channels, the video is cut into
``patch_size`` patches (``(2, 1, 1)`` by default), projected to tokens, and processed by
AdaLN-Zero transformer blocks conditioned on the noise embedding.

Each block computes, with :math:`(a, b, c, d)` from the noise embedding,

.. math::
    y &= (1 + a) \mathrm{LN}(x) + b \\
    y &= \mathrm{FFN}(y + \mathrm{MHSA}(y)) \\
    y &= (x + c y) / \sqrt{1 + c^2} \\
    y &= (y + d s) / \sqrt{1 + d^2}

where :math:`s` is the token embedding before the positional embedding. Note that the FFN
output *replaces* the attention branch, as in the reference implementation. Attention uses
per-head RMS-normalised queries and keys and learned rotary frequencies
:math:`\Theta \in \mathbb{R}^{3 \times D/2}` on the integer token coordinates
:math:`(t, i, j)`.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Peebles and Xie (2023). Scalable Diffusion Models with Transformers.
  https://arxiv.org/abs/2212.09748
* Heo et al. (2024). Rotary Position Embedding for Vision Transformer.
  https://arxiv.org/abs/2403.13298
"""

from __future__ import annotations

__all__ = ["MultiheadSelfAttention", "ViDiT", "ViDiTBlock", "apply_rope"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xappa.core.nn.configs import ViDiTConfig
from xappa.core.nn.dates import vidit_date_features
from xappa.core.nn.layers import SineEncoding


def apply_rope(x: Tensor, theta: Tensor) -> Tensor:
    r"""Rotate consecutive feature pairs of ``x`` by the angles ``theta``.

    Parameters
    ----------
    x : Tensor
        Queries or keys, with shape ``(*, L, D)``.
    theta : Tensor
        Angles, with shape ``(*, L, D/2)`` (broadcastable).

    Returns
    -------
    Tensor
        The rotated tensor, with shape ``(*, L, D)``.
    """
    x = x.unflatten(-1, (-1, 2))
    real, imag = x[..., 0], x[..., 1]
    cos, sin = torch.cos(theta), torch.sin(theta)
    return torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1).flatten(-2)


class MultiheadSelfAttention(nn.Module):
    r"""Creates multi-head self-attention with RMS-normalised queries and keys.

    Modules: ``qkv_proj`` (no bias) and ``y_proj``. Attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Parameters
    ----------
    channels : int
        The token width :math:`D = H \times D_h`.
    attention_heads : int
        The number of heads :math:`H`.
    qk_norm : bool
        Whether to RMS-normalise queries and keys per head (eps :math:`10^{-5}`).
    dropout : float or None
        The attention dropout rate while training.
    """

    def __init__(
        self,
        channels: int,
        *,
        attention_heads: int = 1,
        qk_norm: bool = True,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.qkv_proj = nn.Linear(channels, 3 * channels, bias=False)
        self.y_proj = nn.Linear(channels, channels)
        self.heads = attention_heads
        self.qk_norm = qk_norm
        self.dropout = 0.0 if dropout is None else dropout

    def forward(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        r"""Attend.

        Parameters
        ----------
        x : Tensor
            Tokens, with shape ``(B, L, D)``.
        theta : Tensor, optional
            Rotary angles, with shape ``(L, D/2)``.

        Returns
        -------
        Tensor
            Tokens, with shape ``(B, L, D)``.
        """
        b, n, d = x.shape
        qkv = self.qkv_proj(x).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, D_h)
        if self.qk_norm:
            q = F.rms_norm(q, q.shape[-1:], eps=1e-5)
            k = F.rms_norm(k, k.shape[-1:], eps=1e-5)
        if theta is not None:
            theta = theta.unflatten(-1, (self.heads, -1)).transpose(-3, -2)  # (H, L, D_h/2)
            q, k = apply_rope(q, theta), apply_rope(k, theta)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.y_proj(y.transpose(1, 2).reshape(b, n, d))


class ViDiTBlock(nn.Module):
    r"""Creates a ViDiT block: AdaLN-Zero modulation, attention, FFN and skip mixing.

    Modules and parameters: ``ada_zero`` (Linear, SiLU, Linear to :math:`4D`), ``msa``
    (:class:`MultiheadSelfAttention`), ``theta`` (rotary frequencies, shape ``(3, D/2)``,
    when ``rope``) and ``ffn`` (Linear, SiLU, Dropout, Linear).

    Parameters
    ----------
    channels : int
        The token width :math:`D`.
    mod_features : int
        The width of the noise embedding.
    ffn_factor : int
        The FFN width factor.
    attention_heads : int
        The number of heads.
    qk_norm : bool
        Whether queries and keys are RMS-normalised.
    rope : bool
        Whether to use learned rotary embeddings.
    dropout : float or None
        The dropout rate of the FFN (and attention).
    checkpointing : bool
        Whether to use gradient checkpointing while training.
    """

    def __init__(
        self,
        channels: int,
        *,
        mod_features: int,
        ffn_factor: int = 4,
        attention_heads: int = 1,
        qk_norm: bool = True,
        rope: bool = True,
        dropout: float | None = None,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.ada_zero = nn.Sequential(
            nn.Linear(mod_features, mod_features),
            nn.SiLU(),
            nn.Linear(mod_features, 4 * channels),
        )
        with torch.no_grad():
            self.ada_zero[-1].weight.mul_(1e-2)
        self.msa = MultiheadSelfAttention(
            channels, attention_heads=attention_heads, qk_norm=qk_norm, dropout=dropout
        )
        if rope:
            amplitude = 1e2 ** -torch.rand(channels // 2)
            direction = F.normalize(torch.randn(3, channels // 2), dim=0)
            self.theta = nn.Parameter(amplitude * direction)
        else:
            self.theta = None
        self.ffn = nn.Sequential(
            nn.Linear(channels, ffn_factor * channels),
            nn.SiLU(),
            nn.Identity() if dropout is None else nn.Dropout(dropout),
            nn.Linear(ffn_factor * channels, channels),
        )

    def _forward(self, x: Tensor, mod: Tensor, coords: Tensor, skip: Tensor) -> Tensor:
        theta = None if self.theta is None else coords @ self.theta
        a, b, c, d = self.ada_zero(mod).unsqueeze(-2).chunk(4, dim=-1)  # (B, 1, D) each
        y = (a + 1) * F.layer_norm(x, x.shape[-1:]) + b
        y = y + self.msa(y, theta)
        y = self.ffn(y)
        y = (x + c * y) * torch.rsqrt(1 + c * c)
        return (y + d * skip) * torch.rsqrt(1 + d * d)

    def forward(self, x: Tensor, mod: Tensor, coords: Tensor, skip: Tensor) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor
            Tokens, with shape ``(B, L, D)``.
        mod : Tensor
            The noise embedding, with shape ``(B, D_mod)``.
        coords : Tensor
            Token coordinates ``(t, i, j)``, with shape ``(L, 3)``.
        skip : Tensor
            The token embedding before positional embedding, with shape ``(B, L, D)``.

        Returns
        -------
        Tensor
            Tokens, with shape ``(B, L, D)``.
        """
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(
                self._forward, x, mod, coords, skip, use_reentrant=False
            )
        return self._forward(x, mod, coords, skip)


class ViDiT(nn.Module):
    r"""Creates the ViDiT backbone :math:`F(x, c_{noise}, \mathrm{date})` of Appa's prior.

    Use it inside :class:`~xappa.core.diffusion.denoiser.PreconditionedDenoiser`, which calls
    ``F(c_in x_t, c_noise, date=date)``. Parameter names match Appa's ``ViDiT``
    (``in_proj``, ``positional_embedding.{0,2}``, ``diffusion_time_encoder``,
    ``blocks.{i}.*``, ``out_proj``).

    Parameters
    ----------
    config : ViDiTConfig
        The architecture.
    """

    def __init__(self, config: ViDiTConfig) -> None:
        super().__init__()
        cfg = self.config = config
        width = cfg.hid_channels
        patch = math.prod(cfg.patch_size)
        self.in_proj = nn.Linear(patch * (cfg.in_channels + 4 * cfg.blanket_size), width)
        self.out_proj = nn.Linear(width, patch * cfg.in_channels)
        self.positional_embedding = nn.Sequential(
            SineEncoding(width),
            nn.Flatten(-2),
            nn.Linear(3 * width, width),
        )
        self.blocks = nn.ModuleList(
            ViDiTBlock(
                width,
                mod_features=cfg.mod_features,
                ffn_factor=cfg.ffn_factor,
                attention_heads=cfg.attention_heads,
                qk_norm=cfg.qk_norm,
                rope=cfg.rope,
                dropout=cfg.dropout,
                checkpointing=cfg.checkpointing,
            )
            for _ in range(cfg.hid_blocks)
        )
        self.diffusion_time_encoder = SineEncoding(cfg.mod_features)

    def _patchify(self, x: Tensor) -> Tensor:
        # (B, C, K, h, w) -> (B, K', h', w', C pt ph pw): einops "C (L l) (H h) (W w)"
        pt, ph, pw = self.config.patch_size
        b, c, k, h, w = x.shape
        x = x.reshape(b, c, k // pt, pt, h // ph, ph, w // pw, pw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(b, k // pt, h // ph, w // pw, c * pt * ph * pw)

    def _unpatchify(self, x: Tensor) -> Tensor:
        # (B, K', h', w', C pt ph pw) -> (B, K, C, h, w)
        pt, ph, pw = self.config.patch_size
        b, kk, hh, ww, _ = x.shape
        x = x.reshape(b, kk, hh, ww, -1, pt, ph, pw)
        x = x.permute(0, 1, 5, 4, 2, 6, 3, 7)
        return x.reshape(b, kk * pt, -1, hh * ph, ww * pw)

    def forward(self, x: Tensor, c_noise: Tensor, *, date: Tensor) -> Tensor:
        r"""Apply the backbone to a window.

        Parameters
        ----------
        x : Tensor
            The (preconditioned) window, with shape ``(B, K, C, h, w)``.
        c_noise : Tensor
            The noise conditioning :math:`c_{noise} = 10 \ln \sigma`, with shape ``(B,)``
            or ``()``.
        date : Tensor
            Integer dates ``[year, month, day, hour]`` of each frame, with shape
            ``(B, K, 4)``.

        Returns
        -------
        Tensor
            The output, with shape ``(B, K, C, h, w)``.
        """
        cfg = self.config
        expected = (cfg.blanket_size, cfg.in_channels, *cfg.shape)
        torch._check(
            x.ndim == 5 and tuple(x.shape[1:]) == expected,
            lambda: (
                f"x must have shape (B, {', '.join(map(str, expected))}); found {tuple(x.shape)}"
            ),
        )
        torch._check(
            tuple(date.shape) == (x.shape[0], cfg.blanket_size, 4),
            lambda: (
                f"date must have shape ({x.shape[0]}, {cfg.blanket_size}, 4); "
                f"found {tuple(date.shape)}"
            ),
        )
        b, k, _, h, w = x.shape
        feats = vidit_date_features(date).to(x.dtype)  # (B, 4K)
        cond = feats[:, :, None, None, None].expand(b, 4 * k, k, h, w)
        x = torch.cat((x.transpose(1, 2), cond), dim=1)  # (B, C + 4K, K, h, w)
        x = self.in_proj(self._patchify(x))
        grid = x.shape[1:4]
        coords = torch.cartesian_prod(*(torch.arange(n, device=x.device) for n in grid))
        coords = coords.to(x.dtype)
        x = skip = x.flatten(1, 3)
        x = x + self.positional_embedding(coords)
        mod = self.diffusion_time_encoder(c_noise.to(x.dtype).expand(b))
        for block in self.blocks:
            x = block(x, mod, coords, skip)
        x = self.out_proj(x.unflatten(1, grid))
        return self._unpatchify(x)
