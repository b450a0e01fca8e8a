"""Mock data for tests, doctests and demos: ERA5 in WeatherBench 2 layout, made offline.

The fields are smooth, seeded functions of time, level, latitude and longitude with
realistic magnitudes, so the same seed always gives the same values, whatever the chunking.
With ``chunks=`` they are dask arrays built lazily from the coordinates: even the 0.25 degree
grid (721 x 1440) costs nothing until computed.
"""

from __future__ import annotations

__all__ = ["mock_dataset", "mock_era5", "tiny_model"]

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from xappa.state.coords import COORD_ATTRS
from xappa.state.spec import ERA5_ATTRS, ERA5_LEVEL_VARIABLES, ERA5_LEVELS, ERA5_SURFACE_VARIABLES

if TYPE_CHECKING:
    from xappa.models.model import Model
    from xappa.state.spec import StateSpec

_DIMS = ("time", "level", "latitude", "longitude")


def _waves(rng: np.random.Generator, t: Any, p: Any, phi: Any, lam: Any, n: int = 3) -> Any:
    """Return a sum of ``n`` travelling waves, each within ``[-1/n, 1/n]``."""
    total = 0.0
    for k in range(1, n + 1):
        a, b = rng.uniform(0, 2 * np.pi, size=2)
        m = rng.integers(1, 4)
        speed = rng.uniform(-0.05, 0.1)
        phase = k * lam + a + speed * t + 0.3 * np.log(1000.0 / p)
        total = total + np.cos(phi) * np.sin(phase) * np.cos(m * phi + b) / n
    return total


def _field(name: str, rng: np.random.Generator, t: Any, p: Any, phi: Any, lam: Any) -> Any:
    s2, c = np.sin(phi) ** 2, np.cos(phi)
    w = _waves(rng, t, p, phi, lam)
    height = np.log(1000.0 / p)
    jet = np.exp(-(np.log(p / 250.0) ** 2) / 0.5)
    if name == "temperature":
        return np.maximum((288.0 - 45.0 * s2) * (p / 1000.0) ** 0.19, 205.0 + 10 * s2) + 4 * w
    if name == "2m_temperature":
        return 288.0 - 45.0 * s2 + 3.0 * c * np.cos(lam + 2 * np.pi * t / 24.0) + 5 * w
    if name == "sea_surface_temperature":
        land = np.sin(2 * lam + rng.uniform(0, 6)) * np.cos(3 * phi + rng.uniform(0, 6)) > 0.3
        return np.where(land, np.nan, 271.5 + 30.0 * c**2 + w)
    if name == "u_component_of_wind":
        return (8.0 + 27.0 * jet) * np.sin(2 * phi) ** 2 - 4.0 * c**8 + 8 * w
    if name == "v_component_of_wind":
        return 10.0 * (1.0 + jet) * w
    if name == "10m_u_component_of_wind":
        return -5.0 * np.cos(3 * phi) + 4 * w
    if name == "10m_v_component_of_wind":
        return 4 * w
    if name == "geopotential":
        return 287.0 * (280.0 - 30.0 * s2) * height + 900.0 + 800.0 * (1.0 + height) * w
    if name == "specific_humidity":
        return (0.018 * c**3 * (p / 1000.0) ** 3 + 2e-6) * (1.0 + 0.3 * w)
    if name == "mean_sea_level_pressure":
        return 101325.0 + 1000.0 * np.cos(4 * phi) + 2000.0 * w
    if name == "total_precipitation":
        return 2e-3 * np.maximum(w, 0.0) ** 2
    msg = f"no mock field for variable {name!r}"  # pragma: no cover (names checked before)
    raise KeyError(msg)


def _block(
    t: np.ndarray,
    *args: np.ndarray,
    variable: str,
    seed: tuple[int, int],
    out_dtype: str,
) -> np.ndarray:
    """Compute one block of a variable from its 1-D coordinates (p, when given, in hPa)."""
    rng = np.random.default_rng(seed)
    if len(args) == 3:
        p, phi, lam = args
        grid = (t[:, None, None, None], p[None, :, None, None])
        grid += (phi[None, None, :, None], lam[None, None, None, :])
    else:
        phi, lam = args
        grid = (t[:, None, None], 1000.0, phi[None, :, None], lam[None, None, :])
    shape = (len(t), *(len(a) for a in args))
    return np.broadcast_to(_field(variable, rng, *grid), shape).astype(out_dtype)


def mock_era5(
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] = ERA5_LEVELS,
    nlat: int | None = None,
    nlon: int | None = None,
    resolution: float | None = None,
    ntime: int = 4,
    start: str = "2021-01-01",
    freq: str = "1h",
    seed: int = 0,
    chunks: Mapping[str, int] | None = None,
    dtype: str = "float32",
) -> xr.Dataset:
    """Return a mock ERA5 Dataset in WeatherBench 2 layout, with CF attributes.

    Variables have dimensions ``(time, [level,] latitude, longitude)``; ``level`` is in hPa,
    latitude goes from 90 to -90 and longitude from 0 up to 360 (excluded). Temperature
    decreases with height and toward the poles; geopotential grows with height (about
    5.5e4 m2 s-2 at 500 hPa); sea-surface temperature is NaN over some "land" cells;
    precipitation is small and non-negative.

    Parameters
    ----------
    variables : sequence of str, optional
        WeatherBench 2 names among Appa's 11 state variables (all by default).
    levels : sequence of float
        Pressure levels in hPa (Appa's 13 by default).
    nlat, nlon : int, optional
        The grid size (8 x 16 when neither these nor ``resolution`` are given).
    resolution : float, optional
        The grid spacing in degrees (0.25 gives 721 x 1440), instead of ``nlat``/``nlon``.
    ntime : int
        The number of time steps.
    start, freq : str
        The first time and the time step.
    seed : int
        The seed of the random wave phases.
    chunks : dict of str to int, optional
        Dask chunk sizes by dimension name (unnamed dimensions in one chunk); NumPy when None.
    dtype : str
        The float dtype of the variables.

    Returns
    -------
    Dataset
        The mock data.

    Raises
    ------
    KeyError
        If a variable has no mock.
    ValueError
        If a size or chunk name is bad.

    Examples
    --------
    >>> ds = mock_era5(variables=["geopotential"], levels=[500], nlat=4, nlon=8, ntime=2)
    >>> dict(ds.sizes)
    {'time': 2, 'level': 1, 'latitude': 4, 'longitude': 8}
    >>> 4.5e4 < float(ds.geopotential.mean()) < 6.5e4
    True
    """
    names = tuple(variables) if variables is not None else ERA5_SURFACE_VARIABLES
    if variables is None:
        names += ERA5_LEVEL_VARIABLES
    unknown = [v for v in names if v not in ERA5_ATTRS]
    if unknown:
        msg = f"mock_era5 has no variable(s) {unknown}; choose among {list(ERA5_ATTRS)}"
        raise KeyError(msg)
    if resolution is not None:
        if not 0 < resolution <= 90 or (180 / resolution) % 1:
            msg = f"resolution must divide 180 degrees; found {resolution}"
            raise ValueError(msg)
        nlat, nlon = round(180 / resolution) + 1, round(360 / resolution)
    nlat, nlon = nlat or 8, nlon or 16
    if nlat < 2 or nlon < 2 or ntime < 1:
        msg = f"mock_era5 needs nlat, nlon >= 2 and ntime >= 1; found {nlat}, {nlon}, {ntime}"
        raise ValueError(msg)
    chunks = dict(chunks) if chunks is not None else None
    if chunks is not None and set(chunks) - set(_DIMS):
        msg = f"chunks keys must be among {list(_DIMS)}; found {sorted(chunks)}"
        raise ValueError(msg)
    level_values = np.asarray(levels, dtype=np.float64)
    level_coord = level_values.astype(np.int64) if (level_values % 1 == 0).all() else level_values
    coords = {
        "time": pd.date_range(start, periods=ntime, freq=freq),
        "level": level_coord,
        "latitude": np.linspace(90.0, -90.0, nlat),
        "longitude": np.arange(nlon) * (360.0 / nlon),
    }
    axes = {
        "time": np.asarray((coords["time"] - coords["time"][0]) / pd.Timedelta("1h")),
        "level": level_values,
        "latitude": np.deg2rad(coords["latitude"]),
        "longitude": np.deg2rad(coords["longitude"]),
    }
    data = {}
    for i, name in enumerate(names):
        dims = _DIMS if name in ERA5_LEVEL_VARIABLES else ("time", "latitude", "longitude")
        kwargs = {"variable": name, "seed": (seed, i), "out_dtype": dtype}
        if chunks is None:
            values = _block(*(axes[d] for d in dims), **kwargs)
        else:
            pairs = []
            for d in dims:
                pairs += [dask.array.from_array(axes[d], chunks=chunks.get(d, -1)), (d,)]
            with warnings.catch_warnings():  # one block per chunk is the point here
                warnings.simplefilter("ignore", dask.array.PerformanceWarning)
                values = dask.array.blockwise(
                    _block, dims, *pairs, dtype=np.dtype(dtype), concatenate=True, **kwargs
                )
        data[name] = xr.Variable(dims, values, ERA5_ATTRS[name])
    out_coords = {d: xr.Variable(d, v, COORD_ATTRS[d]) for d, v in coords.items()}
    if not any(v in ERA5_LEVEL_VARIABLES for v in names):
        del out_coords["level"]
    attrs = {"title": "mock ERA5 in WeatherBench 2 layout", "source": "xappa.testing.mock_era5"}
    return xr.Dataset(data, coords=out_coords, attrs={**attrs, "Conventions": "CF-1.8"})


def mock_dataset(
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] = ERA5_LEVELS,
    nlat: int = 8,
    nlon: int = 16,
    ntime: int = 4,
    seed: int = 0,
) -> xr.Dataset:
    """Return a tiny in-memory mock ERA5 Dataset; see :func:`mock_era5`.

    Parameters
    ----------
    variables : sequence of str, optional
        WeatherBench 2 variable names (Appa's 11 by default).
    levels : sequence of float
        Pressure levels in hPa.
    nlat, nlon, ntime : int
        The sizes.
    seed : int
        The seed.

    Returns
    -------
    Dataset
        The mock data.
    """
    return mock_era5(
        variables=variables, levels=levels, nlat=nlat, nlon=nlon, ntime=ntime, seed=seed
    )


TINY_VARIABLES = ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind")
"""The variables of :func:`tiny_model`'s default spec."""


def _frames(data: xr.Dataset, spec: StateSpec) -> list[Any]:
    """Return one ``(T, C, H, W)`` tensor (and its times) per trajectory of ``data``."""
    from xappa.state.convert import dataset_to_tensor

    parts = (
        [data]
        if "trajectory" not in data.dims
        else [data.isel(trajectory=i) for i in range(data.sizes["trajectory"])]
    )
    out = []
    for part in parts:
        x, info = dataset_to_tensor(part, spec, check_step=False)
        out.append((x.float(), info.times))
    return out


def _stats_dataset(mean: Any, std: Any, spec: StateSpec) -> xr.Dataset:
    """Return statistics in :func:`xappa.state.stats.compute_stats`'s layout from ``(C,)`` arrays."""
    data, start = {}, 0
    for v in spec.variables:
        n = len(spec.levels) if v in spec.level_variables else 1
        values = np.stack(
            [np.asarray(mean[start : start + n]), np.asarray(std[start : start + n])]
        )
        start += n
        attrs = {"units": spec.units[v]} if v in spec.units else {}
        if v in spec.level_variables:
            data[v] = xr.Variable(("statistic", "level"), values.astype(np.float64), attrs)
        else:
            data[v] = xr.Variable(("statistic",), values[:, 0].astype(np.float64), attrs)
    coords: dict[str, Any] = {"statistic": ["mean", "std"]}
    if spec.level_variables:
        coords["level"] = np.asarray(spec.levels)
    return xr.Dataset(data, coords=coords)


def tiny_model(
    spec: StateSpec | None = None,
    *,
    seed: int = 0,
    train_steps: int = 0,
    data: xr.Dataset | None = None,
    window: int = 4,
    lat_channels: int = 4,
    noise_level: float = 0.0,
    batch_size: int = 16,
    lr: float = 2e-3,
    name: str = "tiny",
) -> Model:
    r"""Return a tiny latent model for tests, doctests and demos, random or quickly trained.

    The autoencoder is the ``"tiny"`` size (a factor 4 down, ``lat_channels`` latent
    channels) and the prior a 2-block ViDiT over windows of ``window`` frames. With
    ``train_steps = 0`` the weights are random (seeded) and the statistics are those of
    ``data``; otherwise the autoencoder, then the prior on the encoded ``data``, are trained
    for ``train_steps`` AdamW steps each (a few seconds per hundred steps on a CPU).

    Parameters
    ----------
    spec : StateSpec, optional
        The state; by default :data:`TINY_VARIABLES` on a 16 x 32 grid at 1 h.
    seed : int
        The seed of the weights and of the training draws.
    train_steps : int
        AdamW steps for the autoencoder and for the prior (0: random weights).
    data : Dataset, optional
        The training data (with a ``trajectory`` dimension or not): the spec's variables over
        ``([trajectory,] time, latitude, longitude)``; by default :func:`mock_era5` over
        four days.
    window : int
        The prior's window length :math:`K` (even).
    lat_channels : int
        The latent channels.
    noise_level : float
        The autoencoder's latent noise :math:`\sigma_z`, used in training.
    batch_size : int
        Frames (autoencoder) or windows (prior) per step.
    lr : float
        The learning rate.
    name : str
        The model name.

    Returns
    -------
    Model
        The model, on the CPU, in evaluation mode.

    Examples
    --------
    >>> model = tiny_model()
    >>> model.spec.variables
    ('2m_temperature', '10m_u_component_of_wind', '10m_v_component_of_wind')
    """
    import torch

    from xappa.core.diffusion.denoiser import PreconditionedDenoiser, denoiser_loss
    from xappa.core.diffusion.schedule import RectifiedSchedule
    from xappa.core.nn.autoencoder import ConvAutoencoder
    from xappa.core.nn.configs import autoencoder_config, vidit_config
    from xappa.core.nn.vidit import ViDiT
    from xappa.models.model import Model
    from xappa.state.spec import era5_spec

    if spec is None:
        spec = era5_spec(nlat=16, nlon=32, surface_variables=TINY_VARIABLES, level_variables=())
        spec = dataclasses.replace(spec, name="tiny")
    if data is None:
        ntime = 96 if train_steps else 8
        data = mock_era5(
            variables=spec.variables,
            levels=spec.levels or ERA5_LEVELS,
            nlat=len(spec.latitudes),
            nlon=len(spec.longitudes),
            ntime=ntime,
            freq=spec.time_step,
            seed=seed,
        )
    frames = _frames(data, spec)
    allx = torch.cat([x for x, _ in frames])
    flat = allx.transpose(0, 1).flatten(1)
    mean = torch.nanmean(flat, dim=1)
    std = torch.sqrt(torch.nanmean((flat - mean[:, None]) ** 2, dim=1)).clamp_min(1e-6)
    stats = _stats_dataset(mean.double().numpy(), std.double().numpy(), spec)
    torch.manual_seed(seed)
    cfg = autoencoder_config(
        "tiny",
        in_channels=spec.n_channels,
        lat_channels=lat_channels,
        shape=spec.shape,
        noise_level=noise_level,
    )
    ae = ConvAutoencoder.from_config(cfg)
    c_lat, h, w = ae.latent_shape
    backbone = ViDiT(vidit_config("tiny", in_channels=c_lat, blanket_size=window, shape=(h, w)))
    denoiser = PreconditionedDenoiser(backbone)
    g = torch.Generator().manual_seed(seed)

    def standardized(x: Any) -> Any:
        z = (x - mean[:, None, None]) / std[:, None, None]
        return torch.nan_to_num(z)

    if train_steps:
        opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=0.0)
        ae.train()
        for _ in range(train_steps):
            idx = torch.randint(allx.shape[0], (batch_size,), generator=g)
            x = standardized(allx[idx])
            z = ae.encode(x)
            loss = (ae.decode(z, noise=True, generator=g) - x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    ae.eval()
    with torch.no_grad():
        latents = [(ae.encode(standardized(x)), t) for x, t in frames]
    zall = torch.cat([z for z, _ in latents]).transpose(0, 1).flatten(1)
    latent_mean, latent_std = zall.mean(dim=1), zall.std(dim=1).clamp_min(1e-3)
    model = Model(
        name=name,
        spec=spec,
        stats=stats,
        autoencoder=ae,
        denoiser=denoiser,
        latent_mean=latent_mean,
        latent_std=latent_std,
        window=window,
        inflate=True,
    )
    if train_steps:
        schedule = RectifiedSchedule()
        wins, dates = [], []
        for z, times in latents:
            zs = model.standardize_latent(z)
            d = np.stack([times.year, times.month, times.day, times.hour], axis=-1)
            d = torch.as_tensor(d.astype(np.int64))
            for s in range(z.shape[0] - window + 1):
                wins.append(zs[s : s + window])
                dates.append(d[s : s + window])
        wins_t, dates_t = torch.stack(wins), torch.stack(dates)
        opt = torch.optim.AdamW(denoiser.parameters(), lr=lr, weight_decay=0.0)
        denoiser.train()
        for _ in range(train_steps):
            idx = torch.randint(wins_t.shape[0], (batch_size,), generator=g)
            loss = denoiser_loss(denoiser, wins_t[idx], schedule, generator=g, date=dates_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        denoiser.eval()
        model._hash = None
    return model
