r"""A shallow-water atmosphere on the sphere: hourly trajectories with a known truth.

:func:`simulate` runs torch-harmonics' spectral shallow-water solver from balanced random
initial states (a red-spectrum streamfunction, zero divergence, the geopotential from the
nonlinear balance equation), so that slow, Rossby-wave dynamics dominate as in the real
mid-troposphere. A weak stochastic vorticity forcing with a 10-day drag
(:class:`StochasticForcing`) keeps the climate statistically stationary; without it the
solver's hyperdiffusion drains the kinetic energy within days. The result is an
:class:`xarray.Dataset` laid out like WeatherBench 2 / ERA5:

* dimensions ``(trajectory, time, latitude, longitude)``, hourly real datetimes shared by all
  trajectories, which are independent (each has its own initial state and forcing);
* ``geopotential`` (m2 s-2, the full field, global mean about :math:`g H = 98\,062`),
  ``u_component_of_wind`` and ``v_component_of_wind`` (m s-1), float32, with CF attributes;
* the equiangular grid of the solver, poles included: ``latitude`` from 90 to -90 in steps
  of :math:`180 / (n_{lat} - 1)` degrees (WeatherBench 2's ``equiangular_with_poles``), and
  ``longitude`` from 0 in steps of :math:`360 / n_{lon}` degrees.

References
----------
* Galewsky et al. (2004). An initial-value problem for testing numerical models of the global
  shallow-water equations. https://doi.org/10.1111/j.1600-0870.2004.00071.x
* Bonev et al. (2023). Spherical Fourier Neural Operators: Learning Stable Dynamics on the
  Sphere. https://arxiv.org/abs/2306.03838
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_FORCING",
    "StochasticForcing",
    "area_weights",
    "default_dt",
    "diagnose",
    "run_solver",
    "simulate",
    "write_zarr",
]

import math
import os
from importlib.metadata import version

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from xappa.options import get_options
from xappa.testbeds._shallow_water_core import (
    SPECTRUM_PEAK,
    StochasticForcing,
    balanced_initial_condition,
    integrate,
    make_solver,
)
from xappa.testbeds._shallow_water_diagnostics import DIMS as _DIMS
from xappa.testbeds._shallow_water_diagnostics import VARIABLES as _VARIABLES
from xappa.testbeds._shallow_water_diagnostics import area_weights, diagnose

#: The forcing :func:`simulate` uses unless told otherwise.
DEFAULT_FORCING = StochasticForcing()


def default_dt(nlat: int) -> float:
    """Return the default time step: the largest divisor of an hour up to ``600 * 32 / nlat``.

    Parameters
    ----------
    nlat : int
        The number of latitudes.

    Returns
    -------
    float
        The time step in seconds (600 at 32 latitudes, 300 at 64).
    """
    limit = 600 * 32 / nlat
    return float(max(d for d in range(1, 3601) if 3600 % d == 0 and d <= limit))


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        msg = f"{name} must be an int; found {type(value).__name__}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{name} must be >= {minimum}; found {value}"
        raise ValueError(msg)
    return int(value)


def _hours(name: str, days: float, minimum: int) -> int:
    hours = round(days * 24) if math.isfinite(days) else -1
    if abs(hours - days * 24) > 1e-9 or hours < minimum:
        msg = f"{name} must be a whole number of hours, at least {minimum} h; found {days!r} days"
        raise ValueError(msg)
    return hours


def simulate(
    trajectories: int = 4,
    days: float = 10.0,
    *,
    nlat: int = 32,
    nlon: int = 64,
    spinup_days: float = 5.0,
    seed: int = 0,
    start: str | pd.Timestamp = "2000-01-01",
    peak_wind: float = 40.0,
    forcing: StochasticForcing | None = DEFAULT_FORCING,
    dt: float | None = None,
    threads: int = 1,
    first_trajectory: int = 0,
) -> xr.Dataset:
    r"""Simulate independent hourly shallow-water trajectories.

    Trajectory ``k`` draws its initial state and forcing from
    ``numpy.random.default_rng((seed, k))``, so it does not depend on how many trajectories
    are asked for, and blocks of trajectories made separately (``first_trajectory``, in
    several processes say) concatenate into one dataset. Each one is integrated for
    ``spinup_days``, then stored hourly for ``days`` from ``start``.

    Parameters
    ----------
    trajectories : int
        The number of independent trajectories.
    days : float
        The stored length; ``days * 24`` hourly states per trajectory.
    nlat, nlon : int
        The equiangular grid, poles included (default 32 x 64, about 5.6 degrees).
    spinup_days : float
        Days integrated and discarded first, while the energy adjusts to the forcing.
    seed : int
        The random seed.
    start : str or pandas.Timestamp
        The date of the first stored state.
    peak_wind : float
        The largest wind speed of the initial states, in m s-1.
    forcing : StochasticForcing or None
        The forcing and drag; ``None`` runs the unforced solver, whose energy decays.
    dt : float, optional
        The time step in seconds; it must divide an hour (default :func:`default_dt`).
    threads : int
        Torch threads while integrating (restored after); the transforms are small, so one
        thread is fastest and several processes scale better. A progress bar over
        trajectories shows when ``xappa.set_options(progress=True)`` (the default).
    first_trajectory : int
        The index ``k`` of the first trajectory; the others follow.

    Returns
    -------
    xarray.Dataset
        ``geopotential``, ``u_component_of_wind`` and ``v_component_of_wind`` with dimensions
        ``(trajectory, time, latitude, longitude)``.

    Examples
    --------
    >>> from xappa.testbeds.shallow_water import simulate
    >>> ds = simulate(trajectories=1, days=0.25, nlat=16, nlon=32, spinup_days=0)
    >>> dict(ds.sizes)
    {'trajectory': 1, 'time': 6, 'latitude': 16, 'longitude': 32}
    """
    trajectories = _check_int("trajectories", trajectories, 1)
    nlat = _check_int("nlat", nlat, 8)
    nlon = _check_int("nlon", nlon, nlat)
    seed = _check_int("seed", seed, 0)
    first_trajectory = _check_int("first_trajectory", first_trajectory, 0)
    threads = _check_int("threads", threads, 1)
    hours = _hours("days", days, 1)
    spinup_hours = _hours("spinup_days", spinup_days, 0)
    if not (math.isfinite(peak_wind) and peak_wind > 0):
        msg = f"peak_wind must be a positive speed in m s-1; found {peak_wind!r}"
        raise ValueError(msg)
    if forcing is not None and not isinstance(forcing, StochasticForcing):
        msg = f"forcing must be a StochasticForcing or None; found {type(forcing).__name__}"
        raise TypeError(msg)
    try:
        start = pd.Timestamp(start)
    except (TypeError, ValueError) as err:
        msg = f"start must be a date like '2000-01-01'; found {start!r}"
        raise ValueError(msg) from err
    if start is pd.NaT:
        msg = f"start must be a date like '2000-01-01'; found {start!r}"
        raise ValueError(msg)
    dt = default_dt(nlat) if dt is None else float(dt)
    if not (dt > 0 and abs(3600 / dt - round(3600 / dt)) < 1e-9):
        msg = f"dt must divide 3600 s; found {dt!r}"
        raise ValueError(msg)
    solver = make_solver(nlat, nlon, dt, forcing)
    if forcing is not None and forcing.band[0] > solver.lmax - 1:
        msg = (
            f"forcing band must start at degree <= {solver.lmax - 1} at nlat={nlat}; "
            f"found {forcing.band!r}"
        )
        raise ValueError(msg)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        states = []
        progress = get_options()["progress"] and trajectories > 1
        indices = range(first_trajectory, first_trajectory + trajectories)
        for k in tqdm(indices, desc="trajectories", disable=not progress):
            rng = np.random.default_rng((seed, k))
            state = balanced_initial_condition(solver, rng, peak_wind)
            kwargs = {"spinup_hours": spinup_hours, "forcing": forcing, "rng": rng}
            states.append(integrate(solver, state, hours, **kwargs).to(torch.float32))
    finally:
        torch.set_num_threads(old_threads)
    data = torch.stack(states).numpy()
    if not np.isfinite(data).all():
        msg = f"the solver blew up (non-finite values) with dt={dt} s at {nlat} x {nlon}"
        raise RuntimeError(msg)
    facts = {"seed": seed, "spinup_days": spinup_days, "peak_wind": peak_wind}
    return _to_dataset(data, indices, solver, start, forcing, facts)


def run_solver(
    state: xr.Dataset,
    hours: int,
    *,
    forcing: StochasticForcing | None = DEFAULT_FORCING,
    seed: int | None = None,
    dt: float | None = None,
) -> xr.Dataset:
    r"""Integrate the testbed's solver from a given state: a forecast with the true dynamics.

    The state (for example an analysis mean) is projected on the solver's spectral
    truncation: the geopotential directly, the winds through their vorticity and divergence.

    Parameters
    ----------
    state : Dataset
        ``geopotential``, ``u_component_of_wind`` and ``v_component_of_wind`` on the
        testbed's grid (latitude from 90 to -90, longitude from 0), over
        ``(latitude, longitude)`` or with one ``time``.
    hours : int
        The number of hourly states returned after the initial one.
    forcing : StochasticForcing or None
        The forcing settings: the solver has their drag. ``None`` runs the bare solver.
    seed : int, optional
        With a forcing: the seed of one realization of its stochastic part; by default
        none is added (the forcing's mean, zero, as a forecast that does not know it).
    dt : float, optional
        The time step in seconds (default :func:`default_dt`).

    Returns
    -------
    xarray.Dataset
        The states at ``hours`` hourly times after the initial one, over ``(time, latitude,
        longitude)`` (``time`` continues from the state's own time, else from 2000-01-01).

    Examples
    --------
    >>> from xappa.testbeds.shallow_water import run_solver, simulate
    >>> truth = simulate(1, 0.25, nlat=16, nlon=32, spinup_days=0).isel(trajectory=0)
    >>> run_solver(truth.isel(time=-1), 3).sizes["time"]
    3
    """
    hours = _check_int("hours", hours, 1)
    if "time" in state.dims:
        if state.sizes["time"] != 1:
            msg = f"state must hold one time; found {state.sizes['time']}"
            raise ValueError(msg)
        state = state.isel(time=0)
    names = list(_VARIABLES)
    missing = [v for v in names if v not in state.data_vars]
    if missing:
        msg = f"state must hold {names}; missing {missing}"
        raise KeyError(msg)
    grid = np.stack([state[v].transpose("latitude", "longitude").values for v in names])
    nlat, nlon = grid.shape[1:]
    lat = np.asarray(state["latitude"].values, dtype=float)
    if nlat < 8 or not (np.isclose(lat[0], 90.0) and np.isclose(lat[-1], -90.0)):
        msg = f"state must be on the testbed's grid, latitude 90 to -90; found {lat[[0, -1]]}"
        raise ValueError(msg)
    dt = default_dt(nlat) if dt is None else float(dt)
    solver = make_solver(nlat, nlon, dt, forcing)
    x = torch.as_tensor(grid, dtype=torch.float64)
    spectral = torch.cat([solver.grid2spec(x[0])[None], solver.vrtdivspec(x[1:])])
    rng = np.random.default_rng(seed) if forcing is not None and seed is not None else None
    states = integrate(solver, spectral, hours + 1, forcing=forcing if rng else None, rng=rng)
    start = pd.Timestamp(state["time"].values) if "time" in state.coords else None
    start = start or pd.Timestamp("2000-01-01")
    out = _to_dataset(
        states[1:].to(torch.float32).numpy()[None],
        range(1),
        solver,
        start + pd.Timedelta(hours=1),
        forcing,
        {"seed": -1 if seed is None else seed, "spinup_days": 0.0, "peak_wind": float("nan")},
    )
    out.attrs["initial_condition"] = "a given state (xappa.testbeds.shallow_water.run_solver)"
    return out.isel(trajectory=0, drop=True)


def _to_dataset(
    data: np.ndarray,
    trajectories: range,
    solver: torch.nn.Module,
    start: pd.Timestamp,
    forcing: StochasticForcing | None,
    facts: dict[str, float],
) -> xr.Dataset:
    """Label an array with shape ``(trajectory, time, 3, nlat, nlon)``."""
    ntime = data.shape[1]
    time = pd.date_range(start, periods=ntime, freq="h").as_unit("ns")
    coords = {
        "trajectory": ("trajectory", np.array(trajectories), {"long_name": "trajectory index"}),
        "time": ("time", time, {"standard_name": "time", "long_name": "time", "axis": "T"}),
        "latitude": (
            "latitude",
            np.degrees(solver.lats.numpy()),
            {
                "standard_name": "latitude",
                "long_name": "latitude",
                "units": "degrees_north",
                "axis": "Y",
            },
        ),
        "longitude": (
            "longitude",
            np.degrees(solver.lons.numpy()),
            {
                "standard_name": "longitude",
                "long_name": "longitude",
                "units": "degrees_east",
                "axis": "X",
            },
        ),
    }
    data_vars = {
        name: (_DIMS, data[:, :, i], {"standard_name": sn, "units": units, "long_name": ln})
        for i, (name, (sn, units, ln)) in enumerate(_VARIABLES.items())
    }
    attrs = {
        "title": "xappa shallow-water testbed",
        "Conventions": "CF-1.8",
        "source": f"torch-harmonics {version('torch-harmonics')} ShallowWaterSolver",
        "grid": "equiangular with poles",
        "dt_seconds": float(solver.dt),
        "lmax": int(solver.lmax),
        "mmax": int(solver.mmax),
        "radius_m": float(solver.radius),
        "omega_per_second": float(solver.omega),
        "gravity_m_per_s2": float(solver.gravity),
        "mean_depth_m": float(solver.havg),
        "seed": int(facts["seed"]),
        "spinup_days": float(facts["spinup_days"]),
        "initial_peak_wind_m_per_s": float(facts["peak_wind"]),
        "initial_spectrum_peak_degree": SPECTRUM_PEAK,
        "initial_condition": "random streamfunction, zero divergence, nonlinear balance",
        "forcing": "none" if forcing is None else "stochastic vorticity forcing, linear drag",
    }
    if forcing is not None:
        attrs |= {
            "forcing_amplitude_per_s2": forcing.amplitude,
            "forcing_timescale": forcing.timescale,
            "forcing_drag": forcing.drag,
            "forcing_band": list(forcing.band),
        }
    return xr.Dataset(data_vars, coords, attrs)


def write_zarr(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    time_chunk: int = 24,
    overwrite: bool = False,
    append: bool = False,
) -> None:
    """Write a testbed dataset to zarr, one chunk per trajectory and ``time_chunk`` hours.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset, with dimensions ``(trajectory, time, latitude, longitude)``.
    path : str or os.PathLike
        The zarr store; open it with ``xr.open_zarr(path, consolidated=False)``.
    time_chunk : int
        Hours per chunk.
    overwrite : bool
        Replace an existing store instead of raising.
    append : bool
        Append the trajectories of ``ds`` to an existing store with the same times and grid
        (for example the next block from ``simulate(first_trajectory=...)``).
    """
    time_chunk = _check_int("time_chunk", time_chunk, 1)
    missing = [dim for dim in _DIMS if dim not in ds.dims]
    if missing:
        msg = f"ds is missing dimensions {missing}; found {list(ds.dims)}"
        raise ValueError(msg)
    if append and overwrite:
        msg = "write_zarr takes append=True or overwrite=True, not both; found both True"
        raise ValueError(msg)
    if append:
        ds.drop_encoding().to_zarr(path, append_dim="trajectory", consolidated=False)
        return
    chunks = {"trajectory": 1, "time": min(time_chunk, ds.sizes["time"])}
    encoding = {
        name: {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in var.dims)}
        for name, var in ds.data_vars.items()
    }
    encoding["time"] = {"units": f"hours since {pd.Timestamp(ds['time'].values[0])}"}
    ds.drop_encoding().to_zarr(
        path, mode="w" if overwrite else "w-", encoding=encoding, consolidated=False
    )
