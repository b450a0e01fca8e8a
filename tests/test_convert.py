import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xappa.state.coords import (
    find_coord,
    grid_index,
    level_positions,
    longitude_convention,
    time_positions,
    wrap_longitude,
)
from xappa.testing import mock_era5

LAT = np.linspace(90, -90, 5)
LON = np.arange(8) * 45.0


def bare(**dims) -> xr.Dataset:
    """A Dataset whose coordinates carry no attributes, named by the keywords."""
    coords = {name: (name, np.arange(size, dtype=float)) for name, size in dims.items()}
    return xr.Dataset({"x": (tuple(dims), np.zeros(tuple(dims.values())))}, coords=coords)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("latitude", "latitude"),
        ("longitude", "longitude"),
        ("time", "time"),
        ("vertical", "level"),
    ],
    ids=["latitude", "longitude", "time", "vertical"],
)
def test_find_coord_by_cf_attributes(role, expected):
    ds = mock_era5(nlat=4, nlon=8, ntime=1, variables=["temperature"], levels=[500])
    renamed = ds.rename({expected: "c0"})
    assert find_coord(ds, role) == expected
    assert find_coord(renamed, role) == "c0"  # found by attributes, not by name


@pytest.mark.parametrize(
    ("dims", "role", "expected"),
    [
        ({"lat": 3, "lon": 4}, "latitude", "lat"),
        ({"lat": 3, "lon": 4}, "longitude", "lon"),
        ({"isobaricInhPa": 2, "lat": 3}, "vertical", "isobaricInhPa"),
        ({"plev": 2, "lat": 3}, "vertical", "plev"),
        ({"pressure_level": 2}, "vertical", "pressure_level"),
        ({"Latitude": 3}, "latitude", "Latitude"),
    ],
    ids=["lat", "lon", "isobaricInhPa", "plev", "pressure_level", "case"],
)
def test_find_coord_by_common_name(dims, role, expected):
    assert find_coord(bare(**dims), role) == expected


def test_find_coord_by_axis_attribute():
    ds = bare(a=3, b=4)
    ds["b"].attrs["axis"] = "Y"
    assert find_coord(ds, "latitude") == "b"


def test_find_coord_errors():
    with pytest.raises(KeyError, match="ds has no latitude coordinate; found dimension"):
        find_coord(bare(a=3), "latitude")
    both = bare(a=3, b=2)
    both["a"].attrs["standard_name"] = "latitude"
    both["b"].attrs["standard_name"] = "latitude"
    with pytest.raises(ValueError, match="several latitude coordinates"):
        find_coord(both, "latitude")
    with pytest.raises(ValueError, match="role must be one of"):
        find_coord(both, "height")


@pytest.mark.parametrize(
    ("convention", "expected"),
    [("0..360", [0, 90, 180, 270, 350]), ("-180..180", [0, 90, -180, -90, -10])],
    ids=["0..360", "-180..180"],
)
def test_wrap_longitude(convention, expected):
    np.testing.assert_array_equal(wrap_longitude([0, 90, 180, -90, 350], convention), expected)
    assert longitude_convention(wrap_longitude(LON, convention)) == convention


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (LAT, LON),
        (LAT[::-1], LON),
        (LAT, wrap_longitude(LON, "-180..180")),
        (LAT[::-1], np.sort(wrap_longitude(LON, "-180..180"))),
    ],
    ids=["same", "south-north", "-180..180-unsorted", "both"],
)
def test_grid_index(lat, lon):
    index = grid_index(lat, lon, LAT, LON)
    np.testing.assert_allclose(lat[index.lat_index], LAT)
    np.testing.assert_allclose(np.mod(lon[index.lon_index], 360), LON)
    np.testing.assert_array_equal(index.lat_index[index.lat_inverse], np.arange(len(LAT)))
    np.testing.assert_array_equal(index.lon_index[index.lon_inverse], np.arange(len(LON)))


@pytest.mark.parametrize(
    ("lat", "lon", "match"),
    [
        (LAT[[1, 0, 2, 3, 4]], LON, "strictly monotonic"),
        (LAT[:4], LON, "latitude does not match the spec grid: expected 5 values"),
        (LAT, LON + 1, "longitude does not match"),
        (LAT, np.r_[LON[:-1], 360.0], "repeated values"),
    ],
    ids=["non-monotonic", "fewer", "shifted", "repeated"],
)
def test_grid_index_rejects(lat, lon, match):
    with pytest.raises(ValueError, match=match):
        grid_index(lat, lon, LAT, LON)


def test_time_and_level_positions():
    ds = mock_era5(nlat=4, nlon=8, ntime=4, variables=["temperature"], levels=[1000, 500, 250])
    wanted = ds.time.values[[1, 2]]
    np.testing.assert_array_equal(time_positions(ds, "time", wanted, pd.Timedelta("1h")), [1, 2])
    with pytest.raises(ValueError, match="time step must be the spec's 0 days 02:00:00"):
        time_positions(ds, "time", None, pd.Timedelta("2h"))
    np.testing.assert_array_equal(level_positions(ds, "level", [250, 1000]), [2, 0])
    in_pa = ds.assign_coords(level=("level", [100000, 50000, 25000], {"units": "Pa"}))
    np.testing.assert_array_equal(level_positions(in_pa, "level", [500.0]), [1])
    with pytest.raises(KeyError, match="missing level 850 hPa"):
        level_positions(ds, "level", [850])
    no_units = in_pa.assign_coords(level=("level", [100000, 50000, 25000]))
    with pytest.raises(ValueError, match="no units"):
        level_positions(no_units, "level", [500.0])


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_time_step_check_any_datetime_unit(unit):
    # zarr stores read back as datetime64[ns]; the step check must not depend on the unit.
    times = pd.date_range("2000-01-01", periods=4, freq="1h").values.astype(f"datetime64[{unit}]")
    ds = xr.Dataset(coords={"time": times})
    np.testing.assert_array_equal(time_positions(ds, "time", None, pd.Timedelta("1h")), range(4))
    with pytest.raises(ValueError, match="time step must be the spec's"):
        time_positions(ds, "time", None, pd.Timedelta("2h"))
