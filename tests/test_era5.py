"""open_era5 against a WeatherBench-2-layout zarr store served over HTTP on 127.0.0.1.

The test writes a small store laid out as WB2's ERA5 (zarr v2, consolidated metadata, one
hour per chunk, latitude north first, extra variables, levels and a static field), serves it
with ``http.server`` in a thread, and reads it through fsspec's HTTP filesystem. The server
records every GET, so the test can say exactly which chunks were read.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading

import numpy as np
import pytest
import xarray as xr

import xappa
from xappa.models.hub import save_model_files
from xappa.state.spec import era5_spec
from xappa.testing import mock_era5, tiny_model

pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp (xappa[era5])")

SURFACE = ("2m_temperature",)
LEVEL = ("temperature",)
LEVELS = (500.0, 850.0)
STORE_LEVELS = [250.0, 500.0, 850.0, 1000.0]
NTIME = 12


@pytest.fixture(scope="module")
def model() -> xappa.Model:
    spec = era5_spec(
        nlat=16, nlon=32, surface_variables=SURFACE, level_variables=LEVEL, levels=LEVELS
    )
    return tiny_model(spec, seed=3)


@pytest.fixture(scope="module")
def era5() -> xr.Dataset:
    variables = ["2m_temperature", "10m_u_component_of_wind", "temperature", "geopotential"]
    ds = mock_era5(variables=variables, levels=STORE_LEVELS, nlat=16, nlon=32, ntime=NTIME)
    ds["land_sea_mask"] = xr.zeros_like(ds["2m_temperature"].isel(time=0, drop=True))
    ds["level"] = ds["level"].astype("int64")  # WB2 stores levels as integers (hPa)
    return ds


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, requests: list[str], **kwargs):
        self._requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(era5, tmp_path_factory):
    """Serve the store; yield ``(url, requests)``, the list of paths of every GET."""
    root = tmp_path_factory.mktemp("wb2")
    era5.chunk({"time": 1}).to_zarr(root / "era5.zarr", zarr_format=2, consolidated=True)
    requests: list[str] = []
    handler = functools.partial(_Handler, directory=str(root), requests=requests)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/era5.zarr", requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _chunks_read(requests: list[str], variables: list[str]) -> dict[str, list[str]]:
    """Return the chunk keys read of each data variable (``"3.0.0"`` style, v2 keys)."""
    out: dict[str, list[str]] = {v: [] for v in variables}
    for path in requests:
        m = re.fullmatch(r"/era5\.zarr/([^/]+)/(\d+(?:\.\d+)*)", path)
        if m and m.group(1) in out:
            out[m.group(1)].append(m.group(2))
    return out


def test_only_the_chunks_of_the_requested_times_are_read(model, era5, server):
    url, requests = server
    times = era5.time.values[[3, 4, 7]]
    ds = xappa.open_era5(model, url=url, times=times)
    assert all(ds[v].chunks is not None for v in ds.data_vars)  # lazy: dask-backed
    del requests[:]
    z = xappa.encode(ds, model=model, batch_size=2)
    read = _chunks_read(requests, [str(v) for v in era5.data_vars])
    assert sorted(read["2m_temperature"]) == ["3.0.0", "4.0.0", "7.0.0"]
    assert sorted(read["temperature"]) == ["3.0.0.0", "4.0.0.0", "7.0.0.0"]
    assert read["10m_u_component_of_wind"] == read["geopotential"] == []
    assert read["land_sea_mask"] == []
    # the same latents as from the data in memory
    expected = xappa.encode(era5, model=model, times=times, batch_size=2)
    np.testing.assert_array_equal(z.latent.values, expected.latent.values)


def test_opening_reads_no_data_chunk(model, era5, server):
    url, requests = server
    del requests[:]
    ds = xappa.open_era5(model, url=url, times=slice("2021-01-01T02", "2021-01-01T05"))
    read = _chunks_read(requests, [str(v) for v in era5.data_vars])
    assert all(keys == [] for keys in read.values())
    assert ds.sizes["time"] == 4
    assert ds.attrs["source"].endswith(url)


def test_selects_variables_levels_and_units(model, era5, server):
    url, _ = server
    ds = xappa.open_era5(model.spec, url=url, times=era5.time.values[:2])
    assert sorted(ds.data_vars) == sorted(SURFACE + LEVEL)
    np.testing.assert_array_equal(ds["level"].values, LEVELS)
    assert ds["temperature"].dims == ("time", "level", "latitude", "longitude")
    expected = era5["temperature"].isel(time=[0, 1]).sel(level=list(LEVELS))
    np.testing.assert_array_equal(ds["temperature"].values, expected.values)


def test_output_is_scored_by_evaluate(model, era5, server):
    url, _ = server
    ds = xappa.open_era5(model, url=url, times=era5.time.values[:3])
    pred = xappa.decode(xappa.encode(ds, model=model), model=model)
    scores = pred.appa.evaluate(truth=ds).compute()
    assert np.isfinite(scores["rmse"].values).all()


def test_missing_variable_names_it(era5, server):
    url, _ = server
    spec = era5_spec(
        nlat=16, nlon=32, surface_variables=("mean_sea_level_pressure",), level_variables=()
    )
    with pytest.raises(KeyError, match="mean_sea_level_pressure"):
        xappa.open_era5(spec, url=url)


def test_missing_time_is_a_key_error(model, server):
    url, _ = server
    with pytest.raises(KeyError, match="select no time"):
        xappa.open_era5(model, url=url, times=slice("2030-01-01", "2030-01-02"))


def test_model_by_path_or_option_selects_the_same(model, era5, server, tmp_path):
    url, _ = server
    save_model_files(model, tmp_path / "model", stem="m", show=False)
    expected = xappa.open_era5(model, url=url, times=era5.time.values[:2])
    xr.testing.assert_identical(
        xappa.open_era5(str(tmp_path / "model"), url=url, times=era5.time.values[:2]), expected
    )
    with xappa.set_options(model=model):
        xr.testing.assert_identical(xappa.open_era5(url=url, times=era5.time.values[:2]), expected)


def test_model_must_be_a_model_name_or_spec(server):
    url, _ = server
    with pytest.raises(TypeError, match=r"model must be an xappa.Model, a model name or path"):
        xappa.open_era5(3, url=url)
    with pytest.raises(KeyError, match="no-such-model"):
        xappa.open_era5("no-such-model", url=url)
