r"""A latent assimilation model: state spec, statistics, autoencoder and latent prior in one object.

:class:`Model` bundles what :func:`xappa.encode`, :func:`xappa.decode`,
:func:`xappa.assimilate` and :func:`xappa.forecast` need: the :class:`~xappa.state.spec.StateSpec`
of the pixel state, its standardization statistics, the autoencoder, the latent statistics
(the standard deviation inflated by the autoencoder's latent noise,
:math:`s_{eff} = \sqrt{s^2 + \sigma_z^2}`, as Appa does), and the preconditioned prior
denoiser over windows of :math:`K` latent frames. It stays on its device between calls.

A model may be shared (:func:`xappa.load_model` caches one object per name, device and
dtype), so xappa's functions never move it: :meth:`Model.on` returns it on another device as
a new model, leaving the original where it is. :meth:`Model.to` moves a model in place, like
:meth:`torch.nn.Module.to`, for code that owns it.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["Model"]

import copy
import hashlib
import itertools
import weakref
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor, nn

from xappa.options import check_device
from xappa.state.spec import StateSpec
from xappa.state.stats import stats_to_tensors

_STATISTICS = ("mean", "std", "latent_mean", "latent_std")


def _canonical_device(device: torch.device | str) -> torch.device:
    """Return ``device`` with an explicit index (``cuda`` is the current CUDA device)."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.index is None:
        cuda = device.type == "cuda" and torch.cuda.is_available()
        return torch.device(device.type, torch.cuda.current_device() if cuda else 0)
    return device


def _module_on(module: nn.Module, device: torch.device) -> nn.Module:
    """Return a deep copy of ``module`` with every parameter and buffer copied to ``device``."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        if id(t) not in memo:
            moved = t.detach().to(device, copy=True)
            if isinstance(t, nn.Parameter):
                moved = nn.Parameter(moved, requires_grad=t.requires_grad)
            memo[id(t)] = moved
    return copy.deepcopy(module, memo).to(device)


def _as_vector(value: Any, name: str, size: int | None = None) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).detach().reshape(-1).clone()
    if size is not None and t.shape != (size,):
        msg = f"{name} must have shape ({size},); found {tuple(t.shape)}"
        raise ValueError(msg)
    if not bool(torch.isfinite(t).all()):
        msg = f"{name} must be finite; found non-finite entries"
        raise ValueError(msg)
    return t


class _Cast(nn.Module):
    """Run a denoiser in its weights' dtype on states of another dtype."""

    def __init__(self, denoiser: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.dtype = dtype

    def forward(self, x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        out = self.denoiser(x.to(self.dtype), sigma.to(self.dtype), **kwargs)
        return out.to(x.dtype)


class Model:
    r"""Creates a latent assimilation model from built modules and statistics.

    Parameters
    ----------
    name : str
        A short name, written to the provenance of every output.
    spec : StateSpec
        The pixel state: channels, grid and time step.
    stats : Dataset
        Per-channel standardization statistics, as :func:`xappa.state.stats.compute_stats` returns.
    autoencoder : nn.Module
        ``encode(x)`` maps standardized pixels ``(B, C, H, W)`` to latents
        ``(B, C_lat, h, w)``; ``decode(z)`` maps them back. It has a ``latent_shape``
        ``(C_lat, h, w)`` and a ``config.noise_level`` :math:`\sigma_z` (0 when absent).
    denoiser : nn.Module
        The preconditioned prior denoiser ``denoiser(x_t, sigma, date=date)`` on standardized
        latent windows ``(B, K, C_lat, h, w)``, with ``sigma`` ``(B,)`` and integer dates
        ``[year, month, day, hour]`` ``(B, K, 4)``.
    latent_mean : Tensor
        The latent mean, with shape ``(C_lat,)``.
    latent_std : Tensor
        The latent standard deviation, with shape ``(C_lat,)``; the effective one
        :math:`\sqrt{s^2 + \sigma_z^2}` unless ``inflate=True``.
    window : int
        The prior's window length :math:`K`.
    inflate : bool
        Whether to inflate ``latent_std`` by the autoencoder noise here.
    device : torch.device or str, optional
        Where to put the model (default: where the modules are).

    Attributes
    ----------
    mean, std : Tensor
        The pixel statistics in the spec's channel order, each with shape ``(C,)``.

    Examples
    --------
    >>> from xappa.testing import tiny_model
    >>> model = tiny_model()
    >>> model.window, model.latent_shape, len(model.weight_hash)
    (4, (4, 4, 10), 16)
    """

    def __init__(
        self,
        *,
        name: str,
        spec: StateSpec,
        stats: xr.Dataset,
        autoencoder: nn.Module,
        denoiser: nn.Module,
        latent_mean: Tensor,
        latent_std: Tensor,
        window: int,
        inflate: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(spec, StateSpec):
            msg = f"spec must be a StateSpec; found {type(spec).__name__}"
            raise TypeError(msg)
        if not isinstance(stats, xr.Dataset):
            msg = f"stats must be an xarray.Dataset of statistics; found {type(stats).__name__}"
            raise TypeError(msg)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            msg = f"window must be a positive int; found {window!r}"
            raise ValueError(msg)
        self.name = str(name)
        self.spec = spec
        self.stats = stats
        self.mean, self.std = stats_to_tensors(stats, spec)
        if not bool((self.std > 0).all()):
            msg = "stats std must be positive for every channel; found zero or negative entries"
            raise ValueError(msg)
        self.autoencoder = autoencoder.eval()
        self.denoiser = denoiser.eval()
        c_lat = self.latent_shape[0]
        self.latent_mean = _as_vector(latent_mean, "latent_mean", c_lat)
        std = _as_vector(latent_std, "latent_std", c_lat)
        if inflate:
            std = torch.sqrt(std**2 + self.noise_level**2)
        if not bool((std > 0).all()):
            msg = "latent_std must be positive; found zero or negative entries"
            raise ValueError(msg)
        self.latent_std = std
        self.window = window
        self._hash: tuple[tuple[tuple[Any, ...], ...], str] | None = None
        first = next(iter(self.denoiser.parameters()), None)
        self.device = torch.device("cpu") if first is None else first.device
        self.to(device if device is not None else self.device)

    @classmethod
    def from_release(
        cls, release: Any, spec: StateSpec, stats: xr.Dataset, *, name: str = "appa"
    ) -> Model:
        """Adapt a loaded published release (:class:`xappa.models.release.AppaModel`).

        Parameters
        ----------
        release : AppaModel
            The release, from :func:`xappa.models.release.load_appa_release`; its latent std is
            already inflated by the autoencoder noise.
        spec : StateSpec
            The pixel state of the release (:func:`xappa.state.spec.era5_spec` for Appa's).
        stats : Dataset
            The pixel statistics, e.g. ``release.pixel_statistics()`` renamed to the spec's
            variables.
        name : str
            The model name for provenance.

        Returns
        -------
        Model
            The model, on the release's device.
        """
        return cls(
            name=name,
            spec=spec,
            stats=stats,
            autoencoder=release.autoencoder,
            denoiser=release.denoiser,
            latent_mean=release.latent_mean.cpu(),
            latent_std=release.latent_std.cpu(),
            window=int(release.blanket_size),
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent frame shape ``(C_lat, h, w)``."""
        return tuple(int(s) for s in self.autoencoder.latent_shape)  # type: ignore[return-value]

    @property
    def noise_level(self) -> float:
        r"""The autoencoder's latent noise :math:`\sigma_z` (0 when it has none)."""
        config = getattr(self.autoencoder, "config", None)
        return float(getattr(config, "noise_level", 0.0) or 0.0)

    @property
    def time_step(self) -> pd.Timedelta:
        """The model time step."""
        return pd.Timedelta(self.spec.time_step)

    @property
    def full_state_variance(self) -> Tensor:
        r"""The variance of a latent "full-state" observation, :math:`(\sigma_z / s_{eff})^2`.

        With shape ``(C_lat,)``, at least ``1e-4`` (a floor when :math:`\sigma_z = 0`).
        """
        return ((self.noise_level / self.latent_std) ** 2).clamp_min(1e-4)

    def _tensors(self) -> list[tuple[str, Tensor]]:
        """Every tensor that :attr:`weight_hash` covers, by name."""
        named = [
            (f"{prefix}.{key}", value)
            for prefix, module in (("autoencoder", self.autoencoder), ("denoiser", self.denoiser))
            for key, value in itertools.chain(
                module.named_parameters(remove_duplicate=False),
                module.named_buffers(remove_duplicate=False),
            )
        ]
        named += [(key, getattr(self, key)) for key in _STATISTICS]
        return named

    def _hash_key(self) -> tuple[tuple[Any, ...], ...]:
        """Return a cheap key that changes when a hashed tensor is replaced or written in place.

        For each tensor: a weak reference (a replaced tensor is another object), its
        ``_version`` counter (bumped by every in-place operation, ``load_state_dict`` and
        optimizer steps included), and its storage pointer, dtype, shape and device (changed
        by ``.to()`` and ``param.data = ...``).
        """
        return tuple(
            (name, weakref.ref(t), t._version, t.data_ptr(), t.dtype, tuple(t.shape), t.device)
            for name, t in self._tensors()
        )

    @staticmethod
    def _same_key(a: tuple[tuple[Any, ...], ...], b: tuple[tuple[Any, ...], ...]) -> bool:
        return len(a) == len(b) and all(
            x[0] == y[0] and x[1]() is y[1]() and x[2:] == y[2:] for x, y in zip(a, b, strict=True)
        )

    @property
    def weight_hash(self) -> str:
        """The first 16 hex digits of a SHA-256 of all weights and statistics.

        The digest covers the autoencoder's and the denoiser's state dicts (names and bytes)
        and the pixel and latent statistics. It is cached under a key of every hashed
        tensor's identity, ``_version`` counter, storage, dtype, shape and device, checked on
        each access (for ``swe-default`` on two CPU cores, about 1 ms against 13 ms for the
        hash itself), so it is recomputed after any in-place change of a weight:
        ``load_state_dict``, an optimizer step, an in-place operation under
        :func:`torch.no_grad`, ``.to(dtype)``, or a replaced tensor. Writes through ``tensor.data`` or a NumPy view bypass PyTorch's
        version counters (autograd does not see them either) and are not detected.
        """
        key = self._hash_key()
        cached = self._hash
        if cached is not None and self._same_key(cached[0], key):
            return cached[1]
        digest = hashlib.sha256()
        modules = (("autoencoder", self.autoencoder), ("denoiser", self.denoiser))
        for prefix, module in modules:
            for name, value in sorted(module.state_dict().items()):
                digest.update(f"{prefix}.{name}".encode())
                # the raw bytes, whatever the dtype (NumPy has no bfloat16)
                raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                digest.update(raw.numpy().tobytes())
        for t in (self.mean, self.std, self.latent_mean, self.latent_std):
            digest.update(np.asarray(t.cpu(), dtype=np.float64).tobytes())
        value = digest.hexdigest()[:16]
        self._hash = (key, value)
        return value

    def __getstate__(self) -> dict[str, Any]:
        # The hash cache holds weak references (not picklable) to tensors that a copy or an
        # unpickled model does not share: drop it.
        return {**self.__dict__, "_hash": None}

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype of the networks' weights (``xappa.load_model(..., dtype=...)``)."""
        first = next(iter(self.denoiser.parameters()), None)
        return torch.float32 if first is None else first.dtype

    @property
    def state_dtype(self) -> torch.dtype:
        """The dtype of states while encoding, decoding and sampling.

        float64 for float64 weights, else float32: with bfloat16 or float16 weights the
        networks compute in their dtype and the states, the solver and the statistics stay
        in float32.
        """
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def prior_denoiser(self) -> nn.Module:
        """Return the latent prior denoiser taking states of :attr:`state_dtype`.

        Returns
        -------
        nn.Module
            :attr:`denoiser` itself, or, for weights in another dtype, a wrapper that casts
            its inputs to the weights' dtype and its output back (differentiably).
        """
        if self.dtype == self.state_dtype:
            return self.denoiser
        return _Cast(self.denoiser, self.dtype)

    def on(self, device: torch.device | str) -> Model:
        """Return this model on ``device``, without changing this one.

        Use it on shared models (those :func:`xappa.load_model` caches): the model is never
        moved, so other holders keep it where it was.

        Parameters
        ----------
        device : torch.device or str
            The device (``"cuda"`` means the current CUDA device).

        Returns
        -------
        Model
            ``self`` when it is already on ``device``; otherwise a new model whose networks,
            statistics tensors and statistics Dataset are copies on ``device``, sharing
            nothing mutable with this one (the frozen spec is shared). Its weights are
            copied straight to ``device``, without a second copy on the current one.
        """
        target = _canonical_device(check_device(device))
        if target == _canonical_device(self.device):
            return self
        new = copy.copy(self)
        new.autoencoder = _module_on(self.autoencoder, target)
        new.denoiser = _module_on(self.denoiser, target)
        for key in _STATISTICS:
            setattr(new, key, getattr(self, key).detach().to(target, copy=True))
        new.stats = self.stats.copy(deep=True)
        new.device = target
        new._hash = None
        if self._hash is not None and self._same_key(self._hash[0], self._hash_key()):
            new._hash = (new._hash_key(), self._hash[1])
        return new

    def to(self, device: torch.device | str) -> Model:
        """Move the networks and statistics to ``device``, in place.

        Like :meth:`torch.nn.Module.to`, this changes the model for every holder of it.
        xappa's own functions never call it on a model they are given; to use a shared
        model (e.g. one from :func:`xappa.load_model`) on another device, use :meth:`on`.

        Parameters
        ----------
        device : torch.device or str
            The device.

        Returns
        -------
        Model
            This model.
        """
        device = check_device(device)
        self.autoencoder.to(device)
        self.denoiser.to(device)
        for key in _STATISTICS:
            setattr(self, key, getattr(self, key).to(device))
        self.device = device
        return self

    def standardize_latent(self, z: Tensor) -> Tensor:
        """Standardize latents.

        Parameters
        ----------
        z : Tensor
            Latents, with shape ``(..., C_lat, h, w)``.

        Returns
        -------
        Tensor
            :math:`(z - m) / s_{eff}`, with the shape of ``z``.
        """
        return (z - self.latent_mean.to(z)[:, None, None]) / self.latent_std.to(z)[:, None, None]

    def unstandardize_latent(self, z: Tensor) -> Tensor:
        """Undo :meth:`standardize_latent`.

        Parameters
        ----------
        z : Tensor
            Standardized latents, with shape ``(..., C_lat, h, w)``.

        Returns
        -------
        Tensor
            :math:`m + s_{eff} z`, with the shape of ``z``.
        """
        return self.latent_mean.to(z)[:, None, None] + self.latent_std.to(z)[:, None, None] * z

    def decode_standardized(self, z: Tensor) -> Tensor:
        """Decode standardized latents to standardized pixels, differentiably.

        Parameters
        ----------
        z : Tensor
            Standardized latents, with shape ``(B, C_lat, h, w)``.

        Returns
        -------
        Tensor
            Standardized pixels, with shape ``(B, C, H, W)``.
        """
        z = self.unstandardize_latent(z)
        return self.autoencoder.decode(z.to(self.dtype)).to(z.dtype)

    def encode_standardized(self, x: Tensor) -> Tensor:
        """Encode standardized pixels to standardized latents.

        Parameters
        ----------
        x : Tensor
            Standardized pixels (NaN already replaced by 0), with shape ``(B, C, H, W)``.

        Returns
        -------
        Tensor
            Standardized latents, with shape ``(B, C_lat, h, w)``.
        """
        return self.standardize_latent(self.autoencoder.encode(x.to(self.dtype)).to(x.dtype))

    def provenance(self) -> dict[str, str]:
        """Return the provenance attributes of outputs made with this model.

        Returns
        -------
        dict of str to str
            ``xappa_model``, ``xappa_weight_hash`` and ``xappa_version``.
        """
        from xappa import __version__

        return {
            "xappa_model": self.name,
            "xappa_weight_hash": self.weight_hash,
            "xappa_version": __version__,
        }

    def __repr__(self) -> str:
        c, h, w = self.latent_shape
        return (
            f"Model(name={self.name!r}, spec={self.spec.name!r}, channels={self.spec.n_channels},"
            f" grid={self.spec.shape[0]}x{self.spec.shape[1]}, latent={c}x{h}x{w},"
            f" window={self.window}, time_step={self.time_step}, device={self.device})"
        )
