import dask.array
import numpy as np
import pytest
import xarray as xr

from xappa.state.spec import ERA5_LEVEL_VARIABLES, ERA5_SURFACE_VARIABLES
from xappa.testing import mock_dataset, mock_era5


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return mock_era5(nlat=9, nlon=16, ntime=3)


def test_layout_and_attributes(ds):
    assert list(ds.data_vars) == [*ERA5_SURFACE_VARIABLES, *ERA5_LEVEL_VARIABLES]
    assert ds.temperature.dims == ("time", "level", "latitude", "longitude")
    assert ds["2m_temperature"].dims == ("time", "latitude", "longitude")
    assert ds.latitude.values[0] == 90 and ds.latitude.values[-1] == -90
    assert ds.longitude.values[0] == 0 and ds.longitude.values[-1] == 360 - 360 / 16
    assert ds.level.values.tolist()[:2] == [50, 100] and ds.level.attrs["units"] == "hPa"
    for name in ds.data_vars:
        assert {"standard_name", "units", "long_name"} <= set(ds[name].attrs)
    assert ds.cf.axes == {"T": ["time"], "Z": ["level"], "Y": ["latitude"], "X": ["longitude"]}
    assert ds.geopotential.attrs["units"] == "m2 s-2"
    assert ds.temperature.dtype == np.float32


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("temperature", 195.0, 305.0),
        ("2m_temperature", 220.0, 310.0),
        ("geopotential", -1e3, 2.5e5),
        ("u_component_of_wind", -60.0, 60.0),
        ("v_component_of_wind", -40.0, 40.0),
        ("specific_humidity", 0.0, 0.03),
        ("mean_sea_level_pressure", 9.5e4, 1.07e5),
        ("sea_surface_temperature", 270.0, 305.0),
        ("total_precipitation", 0.0, 0.01),
    ],
    ids=["t", "t2m", "z", "u", "v", "q", "msl", "sst", "tp"],
)
def test_magnitudes(ds, name, low, high):
    values = ds[name].values
    assert low <= np.nanmin(values) and np.nanmax(values) <= high


def test_vertical_and_meridional_structure(ds):
    t = ds.temperature.mean(("time", "longitude"))
    assert float(t.sel(level=1000).max()) > float(t.sel(level=200).max())
    assert float(t.sel(level=1000, latitude=0)) > float(t.sel(level=1000, latitude=90))
    z = ds.geopotential.mean(("time", "latitude", "longitude"))
    assert (np.diff(z.values) < 0).all()  # levels go down: z decreases with pressure
    assert 5.0e4 < float(z.sel(level=500)) < 6.0e4
    q = ds.specific_humidity.sel(level=850)
    assert 1e-3 < float(q.max()) < 2e-2
    assert np.isnan(ds.sea_surface_temperature.values).any()
    assert not np.isnan(ds.sea_surface_temperature.values).all()
    assert not np.isnan(ds["2m_temperature"].values).any()
    assert (ds.total_precipitation.values == 0).any()


def test_seeded(ds):
    xr.testing.assert_identical(mock_era5(nlat=9, nlon=16, ntime=3), ds)
    other = mock_era5(nlat=9, nlon=16, ntime=3, seed=1)
    assert not np.allclose(other.temperature.values, ds.temperature.values)


def test_lazy_equals_eager(ds):
    lazy = mock_era5(nlat=9, nlon=16, ntime=3, chunks={"time": 1, "latitude": 4})
    assert isinstance(lazy.temperature.data, dask.array.Array)
    assert lazy.temperature.data.chunks[0] == (1, 1, 1)
    xr.testing.assert_identical(lazy.compute(), ds)


def test_quarter_degree_is_lazy():
    chunks = {"time": 1, "level": 1, "latitude": 100}
    ds = mock_era5(resolution=0.25, ntime=2, chunks=chunks, variables=["temperature"])
    assert dict(ds.sizes) == {"time": 2, "level": 13, "latitude": 721, "longitude": 1440}
    assert ds.temperature.data.npartitions == 2 * 13 * 8
    assert ds.longitude.values[-1] == 359.75
    assert np.isfinite(ds.temperature.isel(time=0, level=7, latitude=360).values).all()


def test_selection_and_mock_dataset():
    ds = mock_era5(variables=["2m_temperature"], nlat=4, nlon=8, ntime=2)
    assert list(ds.data_vars) == ["2m_temperature"] and "level" not in ds.coords
    small = mock_dataset(variables=["geopotential"], levels=[500, 850], ntime=2)
    assert dict(small.sizes) == {"time": 2, "level": 2, "latitude": 8, "longitude": 16}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"variables": ["vorticity"]}, KeyError, "no variable.*vorticity"),
        ({"nlat": 1, "nlon": 8}, ValueError, "nlat, nlon >= 2"),
        ({"resolution": 0.7}, ValueError, "resolution must divide 180"),
        ({"chunks": {"lat": 2}}, ValueError, "chunks keys must be among"),
    ],
    ids=["variable", "size", "resolution", "chunks"],
)
def test_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        mock_era5(**kwargs)
