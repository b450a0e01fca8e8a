"""Shared data of the batch reanalysis tests: a saved tiny model, observations on disk and an
in-process reference run.

The period has 31 hourly times and 6 windows of 8 h overlapping by 3 h (the last one shifted
back to end at the period's end). Observations: points at four stations for times 0-20 (the
u wind unobserved from time 12 on, so it is all NaN in later windows) in netCDF, and gridded
2 m temperature for times 0-9 on a -180..180 grid in zarr. Windows 2-4 have no gridded
observations and window 5 has none at all (the prior is sampled there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xappa
import xappa.batch
from xappa.models.hub import save_model_files
from xappa.observations import sample_gridded, sample_points, stations
from xappa.testing import mock_era5, tiny_model

SEED = 7
N_TIMES = 31
RUN = {"window": "8h", "overlap": "3h", "members": 2}
SAMPLING = {"steps": 2, "sampler": "ddim"}
FAST = {"sampling": xappa.SamplingConfig(**SAMPLING), "progress": False}
N_WINDOWS = 6


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("model")
    save_model_files(tiny_model(seed=2), path, show=False)
    return str(path)


@pytest.fixture(scope="session")
def truth() -> xr.Dataset:
    variables = ["2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind"]
    return mock_era5(variables=variables, nlat=16, nlon=32, ntime=N_TIMES, levels=[])


@pytest.fixture(scope="session")
def obs_paths(truth: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("obs")
    sites = stations([48.8, -33.9, 10.0, 60.0], [2.35, 151.2, 250.0, 100.0])
    points = sample_points(truth.isel(time=slice(0, 21)), sites, error_std=0.5, seed=0)
    points["10m_u_component_of_wind"][12:] = np.nan
    grid = truth.isel(time=slice(0, 10))
    grid = grid.assign_coords(longitude=(grid.longitude + 180) % 360 - 180).sortby("longitude")
    rng = np.random.default_rng(0)
    mask = xr.DataArray(
        rng.random((16, 32)) < 0.05,
        dims=("latitude", "longitude"),
        coords={"latitude": grid.latitude, "longitude": grid.longitude},
    )
    gridded = sample_gridded(grid, mask, error_std=0.5, variables=["2m_temperature"], seed=1)
    points.to_netcdf(root / "points.nc")
    gridded.to_zarr(root / "gridded.zarr", consolidated=False)
    return [str(root / "points.nc"), str(root / "gridded.zarr")]


def open_obs(paths: list[str]) -> list[xr.Dataset]:
    """Open the observations lazily, as a user (or the CLI) would."""
    return [
        xr.open_zarr(p, consolidated=False) if p.endswith(".zarr") else xr.open_dataset(p)
        for p in paths
    ]


@pytest.fixture
def obs(obs_paths: list[str]) -> Iterator[list[xr.Dataset]]:
    # closed after each test: netCDF handles left to the garbage collector can crash HDF5
    datasets = open_obs(obs_paths)
    yield datasets
    for d in datasets:
        d.close()


@pytest.fixture(scope="session")
def period(truth: xr.Dataset) -> tuple[np.datetime64, np.datetime64]:
    return truth.time.values[0], truth.time.values[-1]


@pytest.fixture(scope="session")
def reference(
    model_dir: str, obs_paths: list[str], period: tuple, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The in-process run (client=None) every other run is compared with."""
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    obs = open_obs(obs_paths)
    ds = xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, seed=SEED, **FAST)
    for d in obs:
        d.close()
    assert ds.attrs["xappa_computed_windows"] == list(range(N_WINDOWS))
    return out


def open_store(path: Path | str) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False)


def assert_same_states(path: Path | str, ref: Path | str, **isel: slice) -> None:
    """Assert that two stores hold identical states and records (on ``isel`` if given)."""
    a, b = open_store(path), open_store(ref)
    for v in b.data_vars:
        x, y = a[v].isel(isel) if isel else a[v], b[v].isel(isel) if isel else b[v]
        np.testing.assert_array_equal(x.values, y.values, err_msg=str(v))


def complete_mask(out: Path | str) -> np.ndarray | None:
    """Read ``window_complete`` while a run may be writing the store (None before it exists)."""
    import zarr

    try:
        return np.asarray(zarr.open_group(str(out), mode="r")["window_complete"][:]).ravel()
    except (FileNotFoundError, KeyError, ValueError):
        return None
