"""Training data: standardized states or latents, read lazily with dask, and random batches.

A state dataset is an ERA5-layout Dataset (``time, [level,] latitude, longitude``) or the
shallow-water testbed (``trajectory, time, latitude, longitude``). :class:`StateData`
conforms it to a :class:`~xappa.state.spec.StateSpec` with :func:`xappa.state.convert.select_state`, once
and lazily, into a dask array with shape ``(N, T, C, H, W)`` (``N = 1`` without a
``trajectory`` dimension); a batch then reads only its own chunks. :class:`LatentData` does
the same for a latent store written by :func:`xappa.train.encode.encode_dataset`.

Batches are drawn by :class:`RandomSnapshots` (single frames, for the autoencoder) and
:class:`RandomDatedWindows` (``K`` consecutive frames with their dates, for the prior). Both
draw step ``s`` on rank ``r`` from a generator seeded with ``(seed, s, r)``: a resumed or
distributed run sees exactly the data of an uninterrupted one, and windows never cross
trajectories.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "APPA_VARIABLES",
    "LatentData",
    "RandomDatedWindows",
    "RandomSnapshots",
    "StateData",
    "infer_spec",
    "split_dataset",
    "time_to_dates",
    "train_stats",
]

import math
from collections.abc import Sequence
from typing import Any, Self

import dask
import dask.array as da
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import xarray as xr
from torch import Tensor

from xappa.state.convert import select_state
from xappa.state.coords import find_coord
from xappa.state.spec import ERA5_LEVEL_VARIABLES, ERA5_SURFACE_VARIABLES, StateSpec
from xappa.state.stats import compute_stats, standardize
from xappa.state.units import parse_units

APPA_VARIABLES = (*ERA5_SURFACE_VARIABLES, *ERA5_LEVEL_VARIABLES)
"""Appa's ERA5 variables in channel order: the default of :func:`infer_spec` when present."""


def time_to_dates(times: Any) -> Tensor:
    """Return the integer dates ``[year, month, day, hour]`` of datetimes.

    Parameters
    ----------
    times : array-like of datetime
        ``T`` times (UTC).

    Returns
    -------
    Tensor
        The dates, int64 with shape ``(T, 4)``.
    """
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
    parts = np.stack([index.year, index.month, index.day, index.hour], axis=-1)
    return torch.as_tensor(parts.astype(np.int64))


def infer_spec(
    ds: xr.Dataset,
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    name: str = "data",
) -> StateSpec:
    """Return the state spec of a dataset's own grid, variables and time step.

    Parameters
    ----------
    ds : Dataset
        ERA5-layout or testbed data.
    variables : sequence of str, optional
        The variables, in channel order. By default, Appa's 11 ERA5 variables in Appa's order
        when ``ds`` has them all (other variables are then left out), else every variable
        with time, latitude and longitude dimensions, sorted by name.
    levels : sequence of float, optional
        The levels of the level variables (default: all of the vertical coordinate).
    name : str
        The spec's name.

    Returns
    -------
    StateSpec
        Channels: the surface variables, then each level variable at each level.
    """
    time, lat, lon = (find_coord(ds, role) for role in ("time", "latitude", "longitude"))
    if variables is None:
        variables = sorted(str(v) for v in ds.data_vars if {time, lat, lon} <= set(ds[v].dims))
        if set(APPA_VARIABLES) <= set(variables):
            variables = list(APPA_VARIABLES)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing or not variables:
        msg = f"variables {list(missing)} are not in ds; found {sorted(map(str, ds.data_vars))}"
        raise KeyError(msg)
    extra = {d for v in variables for d in ds[v].dims} - {time, lat, lon, "trajectory"}
    vertical = find_coord(ds, "vertical") if extra else None
    level_vars = [v for v in variables if vertical in ds[v].dims]
    surface = [v for v in variables if v not in level_vars]
    level_units = "hPa"
    if vertical is not None:
        level_units = str(ds[vertical].attrs.get("units", "hPa"))
        levels = ds[vertical].values.tolist() if levels is None else list(levels)
    units = {}
    for v in variables:
        try:
            parse_units(str(ds[v].attrs["units"]))
            units[v] = str(ds[v].attrs["units"])
        except (KeyError, ValueError):
            continue
    steps = np.diff(ds[time].values[:2])
    return StateSpec(
        surface_variables=tuple(surface),
        level_variables=tuple(level_vars),
        levels=tuple(levels) if level_vars else (),
        latitudes=tuple(ds[lat].values.tolist()),
        longitudes=tuple(np.sort(ds[lon].values).tolist()),
        time_step=pd.Timedelta(steps[0]) if steps.size else "1h",
        units=units,
        level_units=level_units,
        name=name,
    )


def _trajectories(ds: xr.Dataset) -> list[xr.Dataset]:
    if "trajectory" not in ds.dims:
        return [ds]
    return [ds.isel(trajectory=k) for k in range(ds.sizes["trajectory"])]


def train_stats(ds: xr.Dataset, spec: StateSpec, **kwargs: Any) -> xr.Dataset:
    """Compute standardization statistics over all trajectories of a dataset.

    Per trajectory, :func:`xappa.state.stats.compute_stats`; then the moments :math:`E[x]` and
    :math:`E[x^2]` are averaged with equal weights (trajectories have the same length).

    Parameters
    ----------
    ds : Dataset
        ERA5-layout data, or testbed data with a ``trajectory`` dimension.
    spec : StateSpec
        The channels.
    **kwargs
        Passed to :func:`~xappa.state.stats.compute_stats` (``times``, ``weighting``, ...).

    Returns
    -------
    Dataset
        As :func:`~xappa.state.stats.compute_stats`.
    """
    parts = [compute_stats(part, spec, **kwargs) for part in _trajectories(ds)]
    if len(parts) == 1:
        return parts[0]
    first, second = [], []
    for s in parts:
        mean, std = s.sel(statistic="mean"), s.sel(statistic="std")
        first.append(mean)
        second.append(std**2 + mean**2)
    mean = sum(first) / len(parts)
    std = np.sqrt((sum(second) / len(parts) - mean**2).clip(min=0.0))
    out = xr.concat([mean, std], dim="statistic", coords="minimal", compat="override")
    out = out.assign_coords(statistic=parts[0].statistic)
    for v in out.data_vars:
        out[v].attrs = parts[0][v].attrs
    out.attrs = {**parts[0].attrs, "n_trajectories": len(parts)}
    return out


def split_dataset(ds: xr.Dataset, valid_fraction: float) -> tuple[xr.Dataset, xr.Dataset]:
    """Split a dataset into training and validation parts, lazily.

    With a ``trajectory`` dimension of size :math:`N > 1`, the last
    ``ceil(valid_fraction * N)`` trajectories are held out; otherwise the last
    ``ceil(valid_fraction * T)`` times (the rule of :meth:`StateData.split`).

    Parameters
    ----------
    ds : Dataset
        ERA5-layout or testbed data.
    valid_fraction : float
        The held-out fraction, in ``(0, 1)``.

    Returns
    -------
    tuple of Dataset
        The training and the validation parts.
    """
    if not 0 < valid_fraction < 1:
        msg = f"valid_fraction must be in (0, 1); found {valid_fraction!r}"
        raise ValueError(msg)
    if ds.sizes.get("trajectory", 1) > 1:
        dim = "trajectory"
    else:
        dim = find_coord(ds, "time")
    n = ds.sizes[dim]
    k = n - math.ceil(valid_fraction * n)
    return ds.isel({dim: slice(0, k)}), ds.isel({dim: slice(k, n)})


class _Frames:
    """Common part of :class:`StateData` and :class:`LatentData`: frames ``(N, T, *frame)``."""

    array: Any
    dates: Tensor
    times: pd.DatetimeIndex

    @property
    def n_trajectories(self) -> int:
        """The number of independent trajectories ``N``."""
        return int(self.array.shape[0])

    @property
    def n_times(self) -> int:
        """The number of frames per trajectory ``T``."""
        return int(self.array.shape[1])

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The shape of one frame, e.g. ``(C, H, W)``."""
        return tuple(int(n) for n in self.array.shape[2:])

    def _raw(self, traj: np.ndarray, time: np.ndarray) -> Tensor:
        if isinstance(self.array, Tensor):
            return self.array[torch.as_tensor(traj), torch.as_tensor(time)]
        values = self.array.vindex[traj, time]
        with dask.config.set(scheduler="synchronous"):
            return torch.from_numpy(np.ascontiguousarray(values.compute()))

    def _subset(self, trajectories: slice, times: slice) -> Self:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.array = self.array[trajectories, times]
        other.dates = self.dates[times]
        other.times = self.times[times]
        return other

    def split(self, valid_fraction: float) -> tuple[Self, Self]:
        """Split into training and validation data.

        With several trajectories, the last ``ceil(valid_fraction * N)`` trajectories are held
        out; with one, the last ``ceil(valid_fraction * T)`` times.

        Parameters
        ----------
        valid_fraction : float
            The held-out fraction, in ``(0, 1)``.

        Returns
        -------
        tuple
            The training and the validation data, of the same type.
        """
        if not 0 < valid_fraction < 1:
            msg = f"valid_fraction must be in (0, 1); found {valid_fraction!r}"
            raise ValueError(msg)
        n, t = self.n_trajectories, self.n_times
        if n > 1:
            k = n - math.ceil(valid_fraction * n)
            everything = slice(None)
            return self._subset(slice(0, k), everything), self._subset(slice(k, n), everything)
        k = t - math.ceil(valid_fraction * t)
        return self._subset(slice(None), slice(0, k)), self._subset(slice(None), slice(k, t))

    def load(self) -> Self:
        """Read everything into memory (for small data sets); returns ``self``."""
        if not isinstance(self.array, Tensor):
            with dask.config.set(scheduler="synchronous"):
                self.array = torch.from_numpy(np.ascontiguousarray(self.array.compute()))
        return self


class StateData(_Frames):
    """Creates a standardized, lazily read view of a state dataset.

    Parameters
    ----------
    ds : Dataset
        ERA5-layout data, or testbed data with a leading ``trajectory`` dimension; dask-backed
        data (``xr.open_zarr``) stays lazy.
    spec : StateSpec
        The channels and grid (see :func:`infer_spec`).
    mean, std : Tensor
        The channel statistics, each with shape ``(C,)`` (see :func:`train_stats`).

    Attributes
    ----------
    array : dask.array.Array or Tensor
        The conformed, unstandardized frames, with shape ``(N, T, C, H, W)``.
    dates : Tensor
        The dates ``[year, month, day, hour]`` of the ``T`` times, with shape ``(T, 4)``.
    times : pandas.DatetimeIndex
        The ``T`` times.
    has_trajectory : bool
        Whether ``ds`` has a ``trajectory`` dimension.
    """

    def __init__(self, ds: xr.Dataset, spec: StateSpec, mean: Tensor, std: Tensor) -> None:
        arrays = []
        for part in _trajectories(ds):
            # The time step is checked here: select_state's check fails on datetime64[ns].
            state, info = select_state(part, spec, check_step=False)
            fields = [state[v].data for v in spec.variables]
            fields = [f if f.ndim == 4 else f[:, None] for f in fields]
            dtype = np.result_type(np.float32, *[f.dtype for f in fields])
            arrays.append(da.concatenate([da.asarray(f) for f in fields], axis=1).astype(dtype))
        steps = pd.TimedeltaIndex(np.diff(info.times.values))
        if len(steps) and not (steps == spec.time_step).all():
            msg = f"ds time step must be the spec's {spec.time_step}; found {steps.unique()[:3]}"
            raise ValueError(msg)
        self.array = da.stack(arrays)
        self.times = info.times
        self.dates = time_to_dates(self.times)
        self.has_trajectory = "trajectory" in ds.dims
        self.spec, self.mean, self.std = spec, mean.float(), std.float()
        self.latitudes = torch.tensor(spec.latitudes)

    def read(self, traj: np.ndarray, time: np.ndarray) -> Tensor:
        """Read standardized frames (NaN set to 0).

        Parameters
        ----------
        traj, time : ndarray
            Integer trajectory and time positions, broadcastable to a shape ``S``.

        Returns
        -------
        Tensor
            The frames, float32 with shape ``(*S, C, H, W)``.
        """
        z, _ = standardize(self._raw(traj, time).float(), self.mean, self.std)
        return z


class LatentData(_Frames):
    r"""Creates a standardized, lazily read view of a latent store.

    Latents are standardized per channel with :math:`\mu` and
    :math:`\sqrt{s^2 + \sigma_z^2}`, after adding :math:`\sigma_z \epsilon` when
    ``noise_level`` :math:`\sigma_z > 0` (Appa's injection of the autoencoder's noise).

    Parameters
    ----------
    ds : Dataset
        As written by :func:`xappa.train.encode.encode_dataset`: ``latent`` with dimensions
        ``([trajectory,] time, channel, y, x)``, and ``latent_mean``/``latent_std``.
    noise_level : float
        The latent noise :math:`\sigma_z`.

    Attributes
    ----------
    array : dask.array.Array or Tensor
        The raw latents, with shape ``(N, T, C, h, w)``.
    dates : Tensor
        The dates of the ``T`` times, with shape ``(T, 4)``.
    times : pandas.DatetimeIndex
        The ``T`` times.
    """

    def __init__(self, ds: xr.Dataset, *, noise_level: float = 0.0) -> None:
        for name in ("latent", "latent_mean", "latent_std"):
            if name not in ds.data_vars:
                msg = f"latent store is missing variable {name!r}; found {list(ds.data_vars)}"
                raise KeyError(msg)
        if noise_level < 0:
            msg = f"noise_level must be >= 0; found {noise_level}"
            raise ValueError(msg)
        latent = ds["latent"]
        if "trajectory" not in latent.dims:
            latent = latent.expand_dims("trajectory")
        latent = latent.transpose("trajectory", "time", "channel", "y", "x")
        self.array = da.asarray(latent.data)
        self.times = pd.DatetimeIndex(ds["time"].values)
        self.dates = time_to_dates(self.times)
        self.noise_level = float(noise_level)
        self.mean = torch.as_tensor(ds["latent_mean"].values).float()
        std = torch.as_tensor(ds["latent_std"].values).float()
        self.std = torch.sqrt(std**2 + self.noise_level**2)

    def read(
        self, traj: np.ndarray, time: np.ndarray, generator: torch.Generator | None = None
    ) -> Tensor:
        """Read standardized latents, with the injected noise.

        Parameters
        ----------
        traj, time : ndarray
            Integer trajectory and time positions, broadcastable to a shape ``S``.
        generator : torch.Generator, optional
            The source of the injected noise.

        Returns
        -------
        Tensor
            The latents, float32 with shape ``(*S, C, h, w)``.
        """
        z = self._raw(traj, time).float()
        if self.noise_level > 0:
            z = z + self.noise_level * torch.randn(z.shape, generator=generator)
        return (z - self.mean[:, None, None]) / self.std[:, None, None]


def _generator(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    rng = np.random.default_rng([seed % 2**32, step % 2**63, rank])
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


class RandomSnapshots:
    """Creates a sampler of random single frames, reproducible per step and rank.

    Parameters
    ----------
    data : StateData or LatentData
        The frames.
    batch_size : int
        Frames per batch.
    seed : int
        The base seed.
    """

    def __init__(self, data: _Frames, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1; found {batch_size}"
            raise ValueError(msg)
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def __call__(self, step: int) -> Tensor:
        """Return the frames of ``step``, with shape ``(batch_size, C, H, W)``."""
        rng, gen = _generator(self.seed, step)
        traj = rng.integers(self.data.n_trajectories, size=self.batch_size)
        time = rng.integers(self.data.n_times, size=self.batch_size)
        if isinstance(self.data, LatentData):
            return self.data.read(traj, time, generator=gen)
        return self.data.read(traj, time)

    def fixed(self, count: int, seed: int = -1) -> list[Tensor]:
        """Return ``count`` fixed batches (for validation), drawn with another seed."""
        other = type(self)(self.data, self.batch_size, seed=seed)
        return [other(i) for i in range(count)]


class RandomDatedWindows:
    r"""Creates a sampler of random windows of :math:`K` consecutive frames and their dates.

    Windows lie inside one trajectory. Step ``s`` on rank ``r`` is reproducible.

    Parameters
    ----------
    data : StateData or LatentData
        The frames, with ``T >= K``.
    window : int
        The window length :math:`K`.
    batch_size : int
        Windows per batch.
    seed : int
        The base seed.
    """

    def __init__(self, data: _Frames, window: int, batch_size: int, seed: int = 0) -> None:
        if not 1 <= window <= data.n_times or batch_size < 1:
            msg = (
                f"window must be in [1, {data.n_times}] and batch_size >= 1; found {window}"
                f" and {batch_size}"
            )
            raise ValueError(msg)
        self.data, self.window, self.batch_size, self.seed = data, window, batch_size, seed

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        """Return the windows of ``step``.

        Returns
        -------
        tuple of Tensor
            Windows with shape ``(batch_size, K, C, h, w)`` and their dates
            ``[year, month, day, hour]``, int64 with shape ``(batch_size, K, 4)``.
        """
        rng, gen = _generator(self.seed, step)
        traj = rng.integers(self.data.n_trajectories, size=self.batch_size)
        start = rng.integers(self.data.n_times - self.window + 1, size=self.batch_size)
        time = start[:, None] + np.arange(self.window)
        if isinstance(self.data, LatentData):
            frames = self.data.read(traj[:, None], time, generator=gen)
        else:
            frames = self.data.read(traj[:, None], time)
        return frames, self.data.dates[torch.as_tensor(time)]

    def fixed(self, count: int, seed: int = -1) -> list[tuple[Tensor, Tensor]]:
        """Return ``count`` fixed batches (for validation), drawn with another seed."""
        other = type(self)(self.data, self.window, self.batch_size, seed=seed)
        return [other(i) for i in range(count)]
