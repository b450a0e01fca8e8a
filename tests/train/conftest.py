"""Small data sets shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr


def ramp_dataset(ntraj: int = 3, ntime: int = 12, nlat: int = 8, nlon: int = 16) -> xr.Dataset:
    """Testbed-layout data whose value is ``1000 * trajectory + time index`` everywhere."""
    value = 1000.0 * np.arange(ntraj)[:, None] + np.arange(ntime)[None, :]
    field = np.broadcast_to(value[:, :, None, None], (ntraj, ntime, nlat, nlon))
    dims = ("trajectory", "time", "latitude", "longitude")
    coords = {
        "trajectory": np.arange(ntraj),
        "time": pd.date_range("2001-12-31T20", periods=ntime, freq="h"),
        "latitude": np.linspace(90.0, -90.0, nlat),
        "longitude": np.arange(nlon) * 360.0 / nlon,
    }
    data = {
        "geopotential": (dims, field.astype(np.float32), {"units": "m2 s-2"}),
        "u_component_of_wind": (dims, -field.astype(np.float32), {"units": "m s-1"}),
    }
    return xr.Dataset(data, coords)


@pytest.fixture(name="ramp_dataset")
def _ramp_dataset() -> Callable[..., xr.Dataset]:
    """The function :func:`ramp_dataset`."""
    return ramp_dataset


@pytest.fixture(scope="session")
def swe_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small shallow-water testbed store: 3 trajectories x 1 day on 16 x 32."""
    from xappa.testbeds.shallow_water import simulate, write_zarr

    path = tmp_path_factory.mktemp("swe") / "swe.zarr"
    write_zarr(simulate(3, 1.0, nlat=16, nlon=32, spinup_days=0.0), path, time_chunk=8)
    return str(path)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and the machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
