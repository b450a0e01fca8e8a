"""Learned-prior data assimilation for the Lorenz-96 testbed.

The prior is a diffusion model over windows of :math:`K` consecutive standardized states
(no autoencoder: the latent is the state), with the periodic backbone
:class:`~xappa.core.nn.periodic.PeriodicConvNet`. :func:`assimilate_lorenz96` runs the
smoother or the filter of the engine (:mod:`xappa.core.da`) on a labelled observation
dataset from :func:`xappa.testbeds.lorenz96.observe` and returns a labelled ensemble.

References
----------
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
"""

from __future__ import annotations

__all__ = [
    "Lorenz96Prior",
    "assimilate_lorenz96",
    "load_lorenz96_prior",
    "lorenz96_training_data",
    "observation_tensors",
    "train_lorenz96_prior",
]

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import xarray as xr
from torch import Tensor

from xappa.core.da import DenseObservations, SamplingConfig, as_config, filter_analyses, smooth
from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.periodic import PeriodicConvNet
from xappa.testbeds import lorenz96 as l96
from xappa.train.loop import TrainConfig, TrainResult
from xappa.train.prior import train_prior


@dataclass(frozen=True, kw_only=True)
class Lorenz96Prior:
    r"""Creates the architecture of a Lorenz-96 window prior.

    Attributes
    ----------
    window : int
        The window length :math:`K` (frames of :math:`\Delta t = 0.05`).
    n_sites : int
        The number of sites :math:`N`.
    hidden : int
        The backbone width.
    blocks : int
        The number of residual blocks.
    kernel_size : int
        The convolution width over sites.
    """

    window: int = 10
    n_sites: int = l96.N_SITES
    hidden: int = 64
    blocks: int = 4
    kernel_size: int = 5

    def __post_init__(self) -> None:
        for name in ("window", "n_sites", "hidden", "blocks", "kernel_size"):
            if getattr(self, name) < 1:
                msg = f"Lorenz96Prior.{name} must be positive; found {getattr(self, name)}"
                raise ValueError(msg)

    def build(self) -> PreconditionedDenoiser:
        """Build the (untrained) denoiser for windows of shape ``(B, K, N)``."""
        net = PeriodicConvNet(
            self.window, hidden=self.hidden, blocks=self.blocks, kernel_size=self.kernel_size
        )
        return PreconditionedDenoiser(net)


def lorenz96_training_data(*, trajectories: int, steps: int, seed: int) -> Tensor:
    """Simulate standardized Lorenz-96 trajectories for training, in float32.

    Parameters
    ----------
    trajectories : int
        The number of independent trajectories.
    steps : int
        Their length after spin-up.
    seed : int
        The seed of the initial states (use different seeds for training and testing).

    Returns
    -------
    Tensor
        Standardized states, with shape ``(trajectories, steps, 40)``.
    """
    ds = l96.simulate(steps=steps, trajectories=trajectories, seed=seed)
    return l96.standardize(torch.from_numpy(ds.x.values)).float()


def train_lorenz96_prior(
    prior: Lorenz96Prior,
    data: Tensor,
    config: TrainConfig,
    *,
    valid_data: Tensor | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[PreconditionedDenoiser, TrainResult]:
    """Train a Lorenz-96 window prior with :func:`xappa.train.prior.train_prior`.

    Parameters
    ----------
    prior : Lorenz96Prior
        The architecture; written as ``prior.json`` next to the checkpoint.
    data : Tensor
        Standardized trajectories, with shape ``(T, L, N)``.
    config : TrainConfig
        The training loop settings.
    valid_data : Tensor, optional
        Held-out standardized trajectories, with shape ``(T', L', N)``.
    batch_size : int
        Windows per step.
    seed : int
        The seed of the window draws.

    Returns
    -------
    tuple of PreconditionedDenoiser and TrainResult
        The trained denoiser (EMA weights when kept) and the training record.
    """
    if config.checkpoint_dir is not None:
        path = Path(config.checkpoint_dir)
        path.mkdir(parents=True, exist_ok=True)
        (path / "prior.json").write_text(json.dumps(asdict(prior)))
    denoiser = prior.build()
    return train_prior(
        denoiser.backbone,
        data,
        config,
        window=prior.window,
        batch_size=batch_size,
        valid_data=valid_data,
        seed=seed,
    )


def load_lorenz96_prior(directory: str | Path, *, ema: bool = True) -> PreconditionedDenoiser:
    """Load a prior written by :func:`train_lorenz96_prior`.

    Parameters
    ----------
    directory : str or path
        The checkpoint directory with ``prior.json`` and ``model.safetensors``.
    ema : bool
        Load the EMA weights (``ema.safetensors``) when present.

    Returns
    -------
    PreconditionedDenoiser
        The denoiser in eval mode, with its architecture as ``denoiser.prior``.
    """
    path = Path(directory)
    if not (path / "prior.json").is_file():
        msg = f"prior directory {str(path)!r} has no prior.json"
        raise FileNotFoundError(msg)
    prior = Lorenz96Prior(**json.loads((path / "prior.json").read_text()))
    denoiser = prior.build()
    weights = path / "ema.safetensors"
    if not (ema and weights.is_file()):
        weights = path / "model.safetensors"
    safetensors.torch.load_model(denoiser, str(weights))
    denoiser.prior = prior
    return denoiser.eval().requires_grad_(False)


def observation_tensors(obs: xr.Dataset, n_sites: int = l96.N_SITES) -> tuple[Tensor, Tensor]:
    """Turn observations from :func:`~xappa.testbeds.lorenz96.observe` into dense tensors.

    Parameters
    ----------
    obs : xarray.Dataset
        Observations ``y`` with dims ``time`` and ``site`` on a regular time grid.
    n_sites : int
        The number of sites of the model.

    Returns
    -------
    tuple of Tensor
        Standardized values and the boolean mask of observed entries, both with shape
        ``(L, N)`` over every model step from the first to the last observed time (unobserved
        entries hold 0).
    """
    if "y" not in obs.data_vars:
        msg = f"obs is missing variable 'y'; found {list(obs.data_vars)}"
        raise KeyError(msg)
    step = int(obs.attrs.get("time_step", 1))
    y = obs.y.transpose("time", "site")
    length = (y.sizes["time"] - 1) * step + 1
    values = torch.zeros(length, n_sites, dtype=torch.float64)
    mask = torch.zeros(length, n_sites, dtype=torch.bool)
    sites = torch.as_tensor(np.array(y.site.values), dtype=torch.long)
    rows = torch.arange(y.sizes["time"]) * step
    values[rows[:, None], sites] = l96.standardize(torch.from_numpy(np.asarray(y.values)))
    mask[rows[:, None], sites] = True
    return values.float(), mask


def assimilate_lorenz96(
    obs: xr.Dataset,
    denoiser: PreconditionedDenoiser,
    *,
    method: str = "filter",
    members: int = 16,
    sampling: SamplingConfig | str | None = None,
    stride: int | None = None,
    seed: int = 0,
    **filter_options: Any,
) -> xr.Dataset:
    r"""Assimilate Lorenz-96 observations with a learned window prior, through the engine.

    Parameters
    ----------
    obs : xarray.Dataset
        Observations from :func:`xappa.testbeds.lorenz96.observe`.
    denoiser : PreconditionedDenoiser
        The window prior, e.g. from :func:`load_lorenz96_prior`.
    method : {"filter", "smoother"}
        ``"filter"``: causal analyses at the observation times
        (:func:`xappa.core.da.filter_analyses`); ``"smoother"``: every step given all the
        observations (:func:`xappa.core.da.smooth`).
    members : int
        The ensemble size.
    sampling : SamplingConfig or str, optional
        The sampling settings or a preset name (default: ``SamplingConfig()``).
    stride : int, optional
        The stride between windows (default :math:`\lceil K / 2 \rceil`).
    seed : int
        The seed of the ensemble.
    **filter_options
        Options of :func:`xappa.core.da.filter_analyses` (``past``, ``lag``, ``inflation``,
        ``floor``, ``min_variance``).

    Returns
    -------
    xarray.Dataset
        ``x`` with dims ``(member, time, site)`` in model units (the analysis times for the
        filter, every step for the smoother), and ``ensemble_mean`` and ``ensemble_spread``
        (standard deviation over members) with dims ``(time, site)``.
    """
    if "variance" not in obs.attrs:
        msg = f"obs.attrs is missing 'variance' (set by observe); found {sorted(obs.attrs)}"
        raise KeyError(msg)
    if method not in ("filter", "smoother"):
        msg = f"method must be 'filter' or 'smoother'; found {method!r}"
        raise ValueError(msg)
    if method == "smoother" and filter_options:
        msg = f"filter options are for method='filter'; found {sorted(filter_options)}"
        raise TypeError(msg)
    config = as_config(sampling)
    values, mask = observation_tensors(obs)
    variance = float(obs.attrs["variance"]) / l96.CLIMATOLOGY_STD**2
    observations = DenseObservations(values, mask, variance)
    window = denoiser.backbone.frames
    stride = -(-window // 2) if stride is None else int(stride)
    common = {"members": members, "frame": (values.shape[1],), "window": window}
    if method == "filter":
        frames = observations.observed_frames
        ens = filter_analyses(
            denoiser, observations, config=config, stride=stride, seed=seed, **common,
            **filter_options,
        )  # fmt: skip
    else:
        frames = list(range(values.shape[0]))
        ens = smooth(
            denoiser, observations, length=values.shape[0], stride=stride, config=config,
            seed=seed, **common,
        )  # fmt: skip
    x = l96.unstandardize(ens.double()).numpy()
    dt = obs.time.attrs.get("dt")
    if dt is None:
        step = int(obs.attrs.get("time_step", 1))
        times = obs.time.values
        dt = float(times[1] - times[0]) / step if len(times) > 1 else l96.DT
    time = float(obs.time.values[0]) + float(dt) * np.asarray(frames, dtype=float)
    coords = {"time": time, "site": np.arange(x.shape[2]), "member": np.arange(x.shape[0])}
    ds = xr.Dataset({"x": (("member", "time", "site"), x)}, coords=coords)
    ds["member"].attrs = {"standard_name": "realization", "long_name": "ensemble member"}
    ds["ensemble_mean"] = ds.x.mean("member")
    ds["ensemble_spread"] = ds.x.std("member", ddof=1)
    ds.attrs.update(method=method, members=members, seed=seed, **config.to_attrs())
    return ds
