r"""Observing-system simulation experiments (OSSEs) on the shallow-water testbed.

One experiment draws a fresh truth with :func:`xappa.testbeds.shallow_water.simulate`,
observes it with an :class:`ObservingSystem` (ground stations reporting every variable, and
a low-Earth-orbit satellite seeing the geopotential along its swath, both with Gaussian
noise), assimilates the observations over the window with :func:`xappa.assimilate`, samples
the unconditioned prior with the same settings, and scores both against the truth next to
a climatology (:func:`score`). ``xappa demo`` runs one experiment; ``benchmarks/swe_osse.py``
runs many.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Rasp et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
  global weather models. https://arxiv.org/abs/2308.15560
"""

from __future__ import annotations

__all__ = [
    "OBSERVING_SYSTEMS",
    "ObservingSystem",
    "OsseResult",
    "load_climatology",
    "observe",
    "observing_system",
    "run_osse",
    "score",
]

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import xarray as xr

from xappa.core.da import SamplingConfig, as_config
from xappa.models.model import Model
from xappa.observations import leo_swath, random_stations, sample_gridded, sample_points
from xappa.verify.metrics import crps, ensemble_mean_rmse, rmse, spread_skill_ratio

_Z, _U, _V = "geopotential", "u_component_of_wind", "v_component_of_wind"


@dataclass(frozen=True, kw_only=True)
class ObservingSystem:
    """Creates the description of a synthetic observing system.

    Attributes
    ----------
    stations : int
        The number of ground stations, drawn uniformly on the sphere.
    station_errors : Mapping of str to float
        The error standard deviation of each variable the stations report, in its units.
    swath_variables : tuple of str
        The variables the satellite sees.
    swath_errors : Mapping of str to float
        Their error standard deviations.
    fov_deg : float
        The satellite's field of view (the swath width, in degrees of arc).
    """

    stations: int = 64
    station_errors: Mapping[str, float] = field(
        default_factory=lambda: {_Z: 100.0, _U: 1.0, _V: 1.0}
    )
    swath_variables: tuple[str, ...] = (_Z,)
    swath_errors: Mapping[str, float] = field(default_factory=lambda: {_Z: 100.0})
    fov_deg: float = 20.0

    def __post_init__(self) -> None:
        if self.stations < 0:
            msg = f"stations must be >= 0; found {self.stations}"
            raise ValueError(msg)
        for name in ("station_errors", "swath_errors"):
            errors = dict(getattr(self, name))
            bad = {k: v for k, v in errors.items() if not v > 0}
            if bad:
                msg = f"{name} must be positive; found {bad}"
                raise ValueError(msg)
            object.__setattr__(self, name, MappingProxyType(errors))
        missing = sorted(set(self.swath_variables) - set(self.swath_errors))
        if missing:
            msg = f"swath_errors must give every swath variable; missing {missing}"
            raise ValueError(msg)


OBSERVING_SYSTEMS: Mapping[str, ObservingSystem] = MappingProxyType(
    {
        # xappa demo's: 64 stations reporting every variable, one swath of geopotential
        "demo": ObservingSystem(),
        # a sparse network: 16 stations, no satellite
        "sparse": ObservingSystem(stations=16, swath_variables=()),
        # the winds are not observed: the prior must infer them from the geopotential
        "geopotential-only": ObservingSystem(station_errors={_Z: 100.0}),
        # the geopotential is not observed: the prior must infer it from the winds
        "winds-only": ObservingSystem(station_errors={_U: 1.0, _V: 1.0}, swath_variables=()),
    }
)
"""Named observing systems of the OSSE benchmark (``benchmarks/swe_osse.py --systems``)."""


def observing_system(name: str) -> ObservingSystem:
    """Return a named observing system of :data:`OBSERVING_SYSTEMS`.

    Parameters
    ----------
    name : str
        ``"demo"``, ``"sparse"``, ``"geopotential-only"`` or ``"winds-only"``.

    Returns
    -------
    ObservingSystem
        The system.
    """
    if name not in OBSERVING_SYSTEMS:
        msg = f"observing system must be one of {list(OBSERVING_SYSTEMS)}; found {name!r}"
        raise ValueError(msg)
    return OBSERVING_SYSTEMS[name]


def observe(truth: xr.Dataset, system: ObservingSystem, *, seed: int = 0) -> dict[str, xr.Dataset]:
    """Observe a gridded truth with stations and a satellite swath.

    Parameters
    ----------
    truth : Dataset
        The truth over ``(time, latitude, longitude)``.
    system : ObservingSystem
        What is observed, where and with which errors.
    seed : int
        The seed of the station sites, the orbit phase and the noise.

    Returns
    -------
    dict of str to Dataset
        ``"stations"`` (points) and ``"satellite"`` (gridded, NaN outside the swath), each
        with CF ancillary error variables; absent when the system has none.
    """
    out: dict[str, xr.Dataset] = {}
    rng = np.random.default_rng((seed, 1))
    if system.stations and system.station_errors:
        sites = random_stations(system.stations, seed=int(rng.integers(2**31)))
        out["stations"] = sample_points(
            truth[list(system.station_errors)],
            sites,
            error_std=dict(system.station_errors),
            seed=int(rng.integers(2**31)),
        )
    if system.swath_variables:
        swath = leo_swath(
            truth.latitude.values,
            truth.longitude.values,
            truth.time.values,
            fov_deg=system.fov_deg,
            phase_deg=float(rng.uniform(0.0, 360.0)),
        )
        out["satellite"] = sample_gridded(
            truth[list(system.swath_variables)],
            swath,
            error_std=dict(system.swath_errors),
            seed=int(rng.integers(2**31)),
        )
    return out


def score(
    posterior: xr.Dataset,
    truth: xr.Dataset,
    *,
    prior: xr.Dataset | None = None,
    climatology: xr.Dataset | None = None,
) -> xr.Dataset:
    """Score an ensemble against the truth, next to the prior ensemble and a climatology.

    All scores are latitude-weighted means over time and the grid (WeatherBench 2).

    Parameters
    ----------
    posterior : Dataset
        The ensemble, over ``(member, time, latitude, longitude)``.
    truth : Dataset
        The truth, over ``(time, latitude, longitude)``.
    prior : Dataset, optional
        The unconditioned ensemble, scored as ``prior_rmse``.
    climatology : Dataset, optional
        The climatological mean over ``(latitude, longitude)``, scored as
        ``climatology_rmse``.

    Returns
    -------
    Dataset
        Over ``variable``: ``rmse`` (of the posterior mean), ``spread_skill``, ``crps``, and
        ``prior_rmse``, ``climatology_rmse`` and ``rmse_vs_climatology`` when given.
    """
    names = [v for v in truth.data_vars if v in posterior.data_vars]
    pieces = {
        "rmse": ensemble_mean_rmse(posterior[names], truth[names]),
        "spread_skill": spread_skill_ratio(posterior[names], truth[names]),
        "crps": crps(posterior[names], truth[names]),
    }
    if prior is not None:
        pieces["prior_rmse"] = ensemble_mean_rmse(prior[names], truth[names])
    if climatology is not None:
        clim = climatology[names].broadcast_like(truth[names])
        pieces["climatology_rmse"] = rmse(clim, truth[names])
    table = xr.Dataset(
        {
            key: xr.DataArray(
                [float(ds[v]) for v in names], dims="variable", coords={"variable": names}
            )
            for key, ds in pieces.items()
        }
    )
    if climatology is not None:
        table["rmse_vs_climatology"] = table["rmse"] / table["climatology_rmse"]
    for v in names:
        table.attrs[f"units_{v}"] = truth[v].attrs.get("units", "")
    return table


@dataclass(frozen=True)
class OsseResult:
    """Holds one experiment: the truth, observations, ensembles, scores and timings.

    Attributes
    ----------
    truth : Dataset
        The truth over the window.
    observations : dict of str to Dataset
        The observations by source.
    posterior, prior : Dataset
        The assimilated and unconditioned ensembles.
    scores : Dataset
        :func:`score` of the posterior.
    n_obs : dict of str to int
        The number of observed values by source.
    seconds : dict of str to float
        Wall times of ``"truth"``, ``"observe"``, ``"assimilate"``, ``"prior"``.
    """

    truth: xr.Dataset
    observations: dict[str, xr.Dataset]
    posterior: xr.Dataset
    prior: xr.Dataset | None
    scores: xr.Dataset
    n_obs: dict[str, int]
    seconds: dict[str, float]


def _count(ds: xr.Dataset) -> int:
    """Count the observed values: variables with a CF ``ancillary_variables`` error."""
    names = [v for v in ds.data_vars if "ancillary_variables" in ds[v].attrs]
    return int(sum(int(ds[v].notnull().sum()) for v in names))


def load_climatology(model: str) -> xr.Dataset | None:
    """Return the climatology shipped with a model (``*.climatology.nc``), if any.

    Parameters
    ----------
    model : str
        A hub name (its card's files) or a model directory.

    Returns
    -------
    Dataset or None
        The climatological mean state over ``(latitude, longitude)``.
    """
    from pathlib import Path

    from xappa.models.hub import available_models, fetch_model_files

    if model in available_models():
        files = [p for n, p in fetch_model_files(model).items() if n.endswith(".nc")]
    else:
        path = Path(model)
        files = sorted((path if path.is_dir() else path.parent).glob("*.climatology.nc"))
    return xr.load_dataset(files[0]) if files else None


def run_osse(
    model: Model,
    *,
    seed: int,
    hours: int = 48,
    members: int = 8,
    system: ObservingSystem | None = None,
    climatology: xr.Dataset | None = None,
    prior: bool = True,
    spinup_days: float = 5.0,
    sampling: SamplingConfig | str | None = None,
    **assimilate_kwargs: object,
) -> OsseResult:
    """Run one experiment: simulate a truth, observe it, assimilate it and score it.

    Parameters
    ----------
    model : Model
        A model of the shallow-water state (``geopotential``, ``u_component_of_wind``,
        ``v_component_of_wind``) on the testbed's grid.
    seed : int
        The seed of the truth (:func:`~xappa.testbeds.shallow_water.simulate`), the
        observations and the sampling. Use one not used to make the training data.
    hours : int
        The window length: ``hours`` hourly times.
    members : int
        The ensemble size.
    system : ObservingSystem, optional
        The observing system (default :class:`ObservingSystem()`).
    climatology : Dataset, optional
        The climatological mean, to score against.
    prior : bool
        Also sample and score the unconditioned prior ensemble.
    spinup_days : float
        The truth's spin-up before the window.
    sampling : SamplingConfig, str or None
        The sampling settings of :func:`xappa.assimilate` (the prior ensemble uses them
        without guidance).
    **assimilate_kwargs
        Passed to :func:`xappa.assimilate` (e.g. ``device``, ``progress``).

    Returns
    -------
    OsseResult
        The experiment.
    """
    from xappa.assimilation import assimilate
    from xappa.testbeds.shallow_water import simulate

    system = system or ObservingSystem()
    seconds = {}
    t0 = time.perf_counter()
    lat, lon = np.asarray(model.spec.latitudes), np.asarray(model.spec.longitudes)
    truth = simulate(
        1, hours / 24, nlat=lat.size, nlon=lon.size, spinup_days=spinup_days, seed=seed
    ).isel(trajectory=0, drop=True)
    truth = truth[[v for v in model.spec.surface_variables if v in truth.data_vars]]
    seconds["truth"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs = observe(truth, system, seed=seed)
    n_obs = {k: _count(v) for k, v in obs.items()}
    seconds["observe"] = time.perf_counter() - t0
    window = (truth.time.values[0], truth.time.values[-1])
    kwargs = {"members": members, "seed": seed, **assimilate_kwargs}
    config = as_config(sampling)
    t0 = time.perf_counter()
    posterior = assimilate(
        list(obs.values()), model=model, window=window, sampling=config, **kwargs
    )
    seconds["assimilate"] = time.perf_counter() - t0
    prior_ens = None
    if prior:
        t0 = time.perf_counter()
        prior_ens = assimilate(
            list(obs.values()),
            model=model,
            window=window,
            sampling=config.replace(guidance=None),
            **kwargs,
        )
        seconds["prior"] = time.perf_counter() - t0
    table = score(posterior, truth, prior=prior_ens, climatology=climatology)
    return OsseResult(truth, obs, posterior, prior_ens, table, n_obs, seconds)
