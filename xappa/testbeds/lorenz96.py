r"""The Lorenz-96 model: a 40-variable chaotic testbed with known truth.

.. math:: \frac{d x_i}{d t} = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F,
    \qquad i = 0, \dots, N - 1 \ (\mathrm{mod}\ N)

integrated with one fourth-order Runge-Kutta step per time step :math:`\Delta t = 0.05`, as in
DAPPER's ``Lorenz96`` model and the set-up of Sakov & Oke (2008): :math:`N = 40`,
:math:`F = 8`, every site observed every step with error variance 1.

The tensor functions (:func:`tendency`, :func:`rk4_step`, :func:`integrate`) work on any
leading batch shape. :func:`simulate` and :func:`observe` return labelled
:class:`xarray.Dataset` objects with dimensions ``time`` and ``site``.

References
----------
* Lorenz (1996). Predictability: a problem partly solved. ECMWF Seminar on Predictability.
* Sakov & Oke (2008). A deterministic formulation of the ensemble Kalman filter: an
  alternative to ensemble square root filters. Tellus A 60(2), 361-371.
  https://doi.org/10.1111/j.1600-0870.2007.00299.x
* Raanes et al. (2024). DAPPER: Data Assimilation with Python: a Package for Experimental
  Research. JOSS 9(94), 5150. https://doi.org/10.21105/joss.05150
"""

from __future__ import annotations

__all__ = [
    "CLIMATOLOGY_MEAN",
    "CLIMATOLOGY_STD",
    "DT",
    "FORCING",
    "N_SITES",
    "integrate",
    "observe",
    "rk4_step",
    "simulate",
    "standardize",
    "tendency",
    "unstandardize",
]

import numpy as np
import torch
import xarray as xr
from torch import Tensor

N_SITES = 40
FORCING = 8.0
DT = 0.05
#: Climatological mean and standard deviation of one site for N = 40, F = 8 (from a
#: 10^5-step run after spin-up), used to standardize states so that :math:`\sigma_{data} = 1`.
CLIMATOLOGY_MEAN = 2.34
CLIMATOLOGY_STD = 3.64


def tendency(x: Tensor, forcing: float = FORCING) -> Tensor:
    r"""Return the Lorenz-96 tendency :math:`dx/dt`.

    Parameters
    ----------
    x : Tensor
        States, with shape ``(*, N)`` (the site axis last, periodic).
    forcing : float
        The forcing :math:`F`.

    Returns
    -------
    Tensor
        The tendency, with shape ``(*, N)``.
    """
    return (torch.roll(x, -1, -1) - torch.roll(x, 2, -1)) * torch.roll(x, 1, -1) - x + forcing


def rk4_step(x: Tensor, dt: float = DT, forcing: float = FORCING) -> Tensor:
    """Advance states by one fourth-order Runge-Kutta step.

    Parameters
    ----------
    x : Tensor
        States, with shape ``(*, N)``.
    dt : float
        The time step.
    forcing : float
        The forcing :math:`F`.

    Returns
    -------
    Tensor
        The states after ``dt``, with shape ``(*, N)``.
    """
    k1 = tendency(x, forcing)
    k2 = tendency(x + dt / 2 * k1, forcing)
    k3 = tendency(x + dt / 2 * k2, forcing)
    k4 = tendency(x + dt * k3, forcing)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(
    x0: Tensor, steps: int, *, dt: float = DT, forcing: float = FORCING, substeps: int = 1
) -> Tensor:
    """Integrate states and return the whole trajectory.

    Parameters
    ----------
    x0 : Tensor
        Initial states, with shape ``(*, N)``.
    steps : int
        The number of time steps of length ``dt`` to take.
    dt : float
        The time step between returned states.
    forcing : float
        The forcing :math:`F`.
    substeps : int
        Runge-Kutta steps per time step (1 as in DAPPER).

    Returns
    -------
    Tensor
        The trajectory including ``x0``, with shape ``(*, steps + 1, N)``.
    """
    if steps < 0 or substeps < 1:
        msg = f"integrate needs steps >= 0 and substeps >= 1; found {steps} and {substeps}"
        raise ValueError(msg)
    states = [x0]
    x = x0
    for _ in range(steps):
        for _ in range(substeps):
            x = rk4_step(x, dt / substeps, forcing)
        states.append(x)
    return torch.stack(states, dim=-2)


def standardize(x: Tensor) -> Tensor:
    """Map physical states to standardized ones with the climatological mean and std.

    Parameters
    ----------
    x : Tensor
        States in model units, with any shape.

    Returns
    -------
    Tensor
        ``(x - CLIMATOLOGY_MEAN) / CLIMATOLOGY_STD``, with the shape of ``x``.
    """
    return (x - CLIMATOLOGY_MEAN) / CLIMATOLOGY_STD


def unstandardize(z: Tensor) -> Tensor:
    """Map standardized states back to model units.

    Parameters
    ----------
    z : Tensor
        Standardized states, with any shape.

    Returns
    -------
    Tensor
        ``z * CLIMATOLOGY_STD + CLIMATOLOGY_MEAN``, with the shape of ``z``.
    """
    return z * CLIMATOLOGY_STD + CLIMATOLOGY_MEAN


def simulate(
    *,
    steps: int,
    trajectories: int | None = None,
    n_sites: int = N_SITES,
    forcing: float = FORCING,
    dt: float = DT,
    spinup: int = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """Simulate Lorenz-96 trajectories from random states after a spin-up.

    Parameters
    ----------
    steps : int
        The number of time steps after spin-up; the trajectory holds ``steps`` states.
    trajectories : int, optional
        If given, simulate this many independent trajectories along a leading dimension
        ``trajectory``.
    n_sites : int
        The number of sites :math:`N` (at least 4).
    forcing : float
        The forcing :math:`F`.
    dt : float
        The time step.
    spinup : int
        Steps integrated and discarded to reach the attractor.
    seed : int
        The seed of the random initial states.

    Returns
    -------
    xarray.Dataset
        A dataset with variable ``x`` of dims ``(time, site)`` (or ``(trajectory, time,
        site)``), in float64, with ``time`` in model time units starting at 0.

    Examples
    --------
    >>> from xappa.testbeds.lorenz96 import simulate
    >>> simulate(steps=10, seed=1).x.shape
    (10, 40)
    """
    if steps < 1 or spinup < 0 or n_sites < 4:
        msg = (
            "simulate needs steps >= 1, spinup >= 0 and n_sites >= 4; "
            f"found {steps}, {spinup} and {n_sites}"
        )
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    batch = () if trajectories is None else (trajectories,)
    x0 = forcing + torch.randn(*batch, n_sites, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        x = integrate(x0, spinup, dt=dt, forcing=forcing)[..., -1, :]
        x = integrate(x, steps - 1, dt=dt, forcing=forcing)
    dims = ("time", "site") if trajectories is None else ("trajectory", "time", "site")
    coords = {"time": np.arange(steps) * dt, "site": np.arange(n_sites)}
    ds = xr.Dataset({"x": (dims, x.numpy())}, coords=coords)
    ds.x.attrs.update(long_name="Lorenz-96 state", forcing=forcing)
    ds.time.attrs.update(units="model time units", dt=dt)
    ds.attrs.update(model="Lorenz-96", integrator="RK4", seed=seed, spinup=spinup)
    return ds


def observe(
    truth: xr.Dataset,
    *,
    site_step: int = 1,
    time_step: int = 1,
    site_offset: int = 0,
    time_offset: int = 0,
    variance: float = 1.0,
    seed: int = 0,
) -> xr.Dataset:
    """Simulate noisy observations of every ``site_step``-th site every ``time_step``-th step.

    Parameters
    ----------
    truth : xarray.Dataset
        A dataset from :func:`simulate`, with variable ``x`` and dims ``time`` and ``site``.
    site_step : int
        Observe sites ``site_offset, site_offset + site_step, ...`` (1: all sites).
    time_step : int
        Observe times ``time_offset, time_offset + time_step, ...`` (1: every step).
    site_offset : int
        The first observed site, in ``[0, site_step)``.
    time_offset : int
        The first observed time index, in ``[0, time_step)``.
    variance : float
        The Gaussian observation-error variance, in model units squared.
    seed : int
        The seed of the observation errors.

    Returns
    -------
    xarray.Dataset
        A dataset with variable ``y`` on the observed ``time`` and ``site`` coordinates, and
        ``variance`` in its attrs.

    Examples
    --------
    >>> from xappa.testbeds.lorenz96 import observe, simulate
    >>> observe(simulate(steps=8), site_step=4, time_step=2).y.shape
    (4, 10)
    >>> observe(simulate(steps=8), site_step=4, site_offset=1).site.values[:3].tolist()
    [1, 5, 9]
    """
    if "x" not in truth.data_vars:
        msg = f"truth is missing variable 'x'; found {list(truth.data_vars)}"
        raise KeyError(msg)
    missing = {"time", "site"} - set(truth.x.dims)
    if missing:
        msg = f"truth.x is missing dimensions {sorted(missing)}; found {list(truth.x.dims)}"
        raise ValueError(msg)
    if site_step < 1 or time_step < 1 or not variance > 0:
        msg = (
            "observe needs site_step >= 1, time_step >= 1 and variance > 0; "
            f"found {site_step}, {time_step} and {variance}"
        )
        raise ValueError(msg)
    for name, offset, step in (
        ("site_offset", site_offset, site_step),
        ("time_offset", time_offset, time_step),
    ):
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < step:
            msg = f"{name} must be an int in [0, {step}); found {offset!r}"
            raise ValueError(msg)
    x = truth.x.isel(
        time=slice(time_offset, None, time_step), site=slice(site_offset, None, site_step)
    )
    rng = np.random.default_rng(seed)
    y = x + np.sqrt(variance) * rng.standard_normal(x.shape)
    y.attrs = {"long_name": "Lorenz-96 observation", "variance": float(variance)}
    ds = y.to_dataset(name="y")
    ds.attrs.update(
        variance=float(variance),
        site_step=site_step,
        time_step=time_step,
        site_offset=site_offset,
        time_offset=time_offset,
        seed=seed,
    )
    return ds
