r"""Denoise long trajectories with a window denoiser: unfold, denoise in batches, fold.

A trajectory of :math:`L` frames, ``x`` of shape ``(B, L, *frame)``, is covered by
:math:`n = (L - K) / S + 1` windows of :math:`K` frames with stride :math:`S` (unfold). Each
window is denoised by a window denoiser trained on :math:`K`-frame windows, and the denoised
windows are folded back into a trajectory:

* ``"symmetrical"`` (Appa's default): with :math:`i = \lfloor (K - S) / 2 \rfloor` and
  :math:`j = i + S`, window 0 gives its frames :math:`[0, j)`, the middle windows their frames
  :math:`[i, j)` and the last window its frames :math:`[i, K)`: every frame comes from the
  window where it is most central.
* ``"causal"``: window 0 gives all its frames, every later window its last :math:`S` frames:
  every frame comes from the window where it has the most past context.
* ``"average"``: every frame is the mean over the windows covering it.

With :math:`n = 1` the window is returned unchanged. Folding denoised estimates at every
sampler call composes the window scores, since :math:`s = (d - x) / \sigma^2`.

Unlike Appa, which denoises one window at a time, :class:`TrajectoryDenoiser` stacks the
windows of all ensemble members into one batch of :math:`B n` windows and calls the window
denoiser on chunks of at most ``max_batch`` windows.

References
----------
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "FOLD_MODES",
    "TrajectoryDenoiser",
    "fold_windows",
    "pad_frames",
    "padded_length",
    "unfold_windows",
    "window_count",
]

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.diffusion.denoiser import Denoiser

FOLD_MODES = ("symmetrical", "causal", "average")


def window_count(length: int, window: int, stride: int) -> int:
    r"""Count the windows, :math:`n = (L - K) / S + 1`, covering a trajectory.

    Parameters
    ----------
    length : int
        The trajectory length :math:`L`.
    window : int
        The window size :math:`K`.
    stride : int
        The stride :math:`S`, with :math:`1 \le S \le K`.

    Returns
    -------
    int
        The number of windows.

    Raises
    ------
    ValueError
        If :math:`L < K` or :math:`(L - K) \bmod S \ne 0`; :func:`padded_length` gives the next
        valid length.
    """
    if not 1 <= stride <= window:
        msg = f"stride must be in [1, window={window}]; found {stride}"
        raise ValueError(msg)
    if length < window or (length - window) % stride:
        msg = (
            f"trajectory length must be window + k * stride = {window} + k * {stride} "
            f"(k >= 0); found {length}. Pad to padded_length(...) = "
            f"{padded_length(length, window, stride)} frames with pad_frames and trim after"
        )
        raise ValueError(msg)
    return (length - window) // stride + 1


def padded_length(length: int, window: int, stride: int) -> int:
    r"""Return the smallest valid trajectory length :math:`L' \ge L`.

    Parameters
    ----------
    length : int
        The wanted length :math:`L`.
    window : int
        The window size :math:`K`.
    stride : int
        The stride :math:`S`.

    Returns
    -------
    int
        :math:`L' = K + \lceil \max(L - K, 0) / S \rceil S`.
    """
    extra = max(length - window, 0)
    return window + -(-extra // stride) * stride


def pad_frames(x: Tensor, length: int, dim: int = 1) -> Tensor:
    r"""Pad a trajectory (or its per-frame conditioning) to ``length`` frames.

    The last frame is repeated. Typical use: sample a trajectory of
    ``padded_length(L, K, S)`` frames with ``pad_frames`` applied to the per-frame conditioning
    (dates) and observations defined on the first :math:`L` frames only, then keep
    ``x[:, :L]``. Repeated dates are harmless conditioning for frames that are discarded.

    Parameters
    ----------
    x : Tensor
        A tensor with :math:`L \le` ``length`` frames along ``dim``, e.g. ``(B, L, *frame)``.
    length : int
        The padded number of frames.
    dim : int
        The frame dimension.

    Returns
    -------
    Tensor
        ``x`` with ``length`` frames along ``dim``.
    """
    have = x.shape[dim]
    if length < have:
        msg = f"length must be at least the {have} frames of x; found {length}"
        raise ValueError(msg)
    last = x.narrow(dim, have - 1, 1)
    reps = [1] * x.ndim
    reps[dim] = length - have
    return torch.cat([x, last.repeat(reps)], dim=dim)


def unfold_windows(x: Tensor, window: int, stride: int) -> Tensor:
    """Cut trajectories into overlapping windows.

    Parameters
    ----------
    x : Tensor
        Trajectories, with shape ``(B, L, *frame)``.
    window : int
        The window size ``K``.
    stride : int
        The stride ``S``.

    Returns
    -------
    Tensor
        The windows, with shape ``(B, n, K, *frame)`` (a view of ``x``).
    """
    window_count(x.shape[1], window, stride)
    return x.unfold(1, window, stride).movedim(-1, 2)


def _fold_index(n: int, window: int, stride: int, mode: str) -> tuple[list[int], list[int]]:
    # For each output frame, the window it is taken from and its position in that window.
    if n == 1:
        return [0] * window, list(range(window))
    if mode == "symmetrical":
        i = (window - stride) // 2
        j = i + stride
        spans = [(0, j)] + [(i, j)] * (n - 2) + [(i, window)]
    else:  # causal
        spans = [(0, window)] + [(window - stride, window)] * (n - 1)
    wins, pos = [], []
    for w, (a, b) in enumerate(spans):
        wins += [w] * (b - a)
        pos += list(range(a, b))
    return wins, pos


def fold_windows(windows: Tensor, stride: int, mode: str = "symmetrical") -> Tensor:
    """Assemble overlapping windows into trajectories.

    Parameters
    ----------
    windows : Tensor
        The windows, with shape ``(B, n, K, *frame)``.
    stride : int
        The stride ``S``.
    mode : str
        ``"symmetrical"`` (default), ``"causal"`` or ``"average"``.

    Returns
    -------
    Tensor
        The trajectories, with shape ``(B, L, *frame)`` and :math:`L = (n - 1) S + K`, on the
        device of ``windows``.
    """
    if mode not in FOLD_MODES:
        msg = f"mode must be one of {FOLD_MODES}; found {mode!r}"
        raise ValueError(msg)
    b, n, k = windows.shape[:3]
    if not 1 <= stride <= k:
        msg = f"stride must be in [1, window={k}]; found {stride}"
        raise ValueError(msg)
    length = (n - 1) * stride + k
    if mode == "average" and n > 1:
        frame = windows.shape[3:]
        target = (
            torch.arange(n, device=windows.device)[:, None] * stride
            + torch.arange(k, device=windows.device)
        ).flatten()
        out = windows.new_zeros(b, length, *frame)
        out = out.index_add(1, target, windows.reshape(b, n * k, *frame))
        count = torch.bincount(target, minlength=length).to(windows.dtype)
        return out / count.reshape(length, *[1] * len(frame))
    wins, pos = _fold_index(n, k, stride, mode)
    dev = windows.device
    return windows[:, torch.tensor(wins, device=dev), torch.tensor(pos, device=dev)]


class TrajectoryDenoiser(nn.Module):
    r"""Creates a trajectory denoiser from a window denoiser.

    The trajectory keeps its frame axis: the denoiser takes ``x_t`` of shape
    ``(B, L, *frame)``, which every sampler accepts (samplers treat ``x`` as ``(B, *)``).
    Sample with ``sampler.sample((B, L, *frame))``. The window denoiser receives windows of
    shape ``(N, K, *frame)``; flatten inside it if the network wants ``(N, K D)``.

    Parameters
    ----------
    denoiser : Denoiser
        The window denoiser ``d(x (N, K, *frame), sigma (N,), **cond)``, possibly guided.
    window : int
        The window size :math:`K`.
    stride : int
        The stride :math:`S`, with :math:`1 \le S \le K`.
    mode : str
        The fold: ``"symmetrical"`` (default), ``"causal"`` or ``"average"``.
    max_batch : int, optional
        The most windows per denoiser call, bounding the memory of one call. The
        :math:`B n` windows of all members are cut into chunks of this size; ``None`` (default)
        denoises them all in one call and ``1`` reproduces Appa's one window at a time.
    frame_keys : collection of str
        Conditioning keywords that are per frame, with shape ``(B, L, ...)`` (default
        ``("date",)``): they are unfolded like ``x`` to ``(B n, K, ...)``, so every window gets
        its own conditioning. Other keywords are passed unchanged to every call.
    pass_window_index : bool
        Pass ``window_index``, a long tensor of shape ``(N,)`` with each window's index in
        :math:`[0, n)`, to the window denoiser; guided denoisers use it to select each
        window's observations. With the keyword ``trajectory_index`` (a long tensor of shape
        ``(B,)``) at call time, window :math:`w` of trajectory :math:`b` gets the index
        ``trajectory_index[b] * n + w`` instead, so trajectories of different experiments
        select their own observations.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        window: int,
        stride: int,
        *,
        mode: str = "symmetrical",
        max_batch: int | None = None,
        frame_keys: Collection[str] = ("date",),
        pass_window_index: bool = False,
    ) -> None:
        super().__init__()
        if mode not in FOLD_MODES:
            msg = f"mode must be one of {FOLD_MODES}; found {mode!r}"
            raise ValueError(msg)
        if not 1 <= stride <= window:
            msg = f"stride must be in [1, window={window}]; found {stride}"
            raise ValueError(msg)
        if max_batch is not None and max_batch < 1:
            msg = f"max_batch must be a positive integer or None; found {max_batch}"
            raise ValueError(msg)
        self.denoiser = denoiser
        self.window = int(window)
        self.stride = int(stride)
        self.mode = mode
        self.max_batch = max_batch
        self.frame_keys = frozenset(frame_keys)
        self.pass_window_index = bool(pass_window_index)

    def forward(
        self,
        x_t: Tensor,
        sigma: Tensor | float,
        trajectory_index: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        r"""Denoise trajectories window by window and fold.

        Parameters
        ----------
        x_t : Tensor
            Noisy trajectories, with shape ``(B, L, *frame)``.
        sigma : Tensor or float
            Noise levels, with shape ``(B,)`` or scalar.
        trajectory_index : Tensor, optional
            The experiment of each trajectory, with shape ``(B,)`` (see ``pass_window_index``).
        **kwargs
            Conditioning: per-frame entries (``frame_keys``) with shape ``(B, L, ...)``, and
            others passed unchanged.

        Returns
        -------
        Tensor
            The denoised trajectories, with shape ``(B, L, *frame)``.
        """
        b, length = x_t.shape[:2]
        n = window_count(length, self.window, self.stride)
        k, s = self.window, self.stride
        windows = unfold_windows(x_t, k, s).flatten(0, 1).contiguous()  # (B n, K, *frame)
        sig = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device)
        sig = sig.expand(b) if sig.ndim == 0 else sig.reshape(b)
        sig = sig.repeat_interleave(n)
        cond = {}
        for key, value in kwargs.items():
            if key in self.frame_keys:
                if value.shape[:2] != (b, length):
                    msg = f"{key} must have shape ({b}, {length}, ...); found {tuple(value.shape)}"
                    raise ValueError(msg)
                value = unfold_windows(value, k, s).flatten(0, 1).contiguous()
            cond[key] = value
        index = torch.arange(n, device=x_t.device).repeat(b)
        if trajectory_index is not None:
            torch._check(
                tuple(trajectory_index.shape) == (b,),
                lambda: f"trajectory_index must have shape ({b},); found {trajectory_index.shape}",
            )
            index = index + trajectory_index.to(index).repeat_interleave(n) * n
        rows = b * n
        chunk = rows if self.max_batch is None else self.max_batch
        outs = []
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            extra = {"window_index": index[part]} if self.pass_window_index else {}
            args = {key: v[part] if key in self.frame_keys else v for key, v in cond.items()}
            outs.append(self.denoiser(windows[part], sig[part], **args, **extra))
        denoised = torch.cat(outs).unflatten(0, (b, n))
        return fold_windows(denoised, s, self.mode)
