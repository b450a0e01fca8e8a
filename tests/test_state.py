import pickle

import dask
import dask.array
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xappa.state.convert import dataset_to_tensor, select_state, tensor_to_dataset
from xappa.state.spec import APPA_ERA5, ERA5_LEVELS, StateSpec, era5_spec
from xappa.testing import mock_era5

NLAT, NLON = 6, 12
SPEC = era5_spec(nlat=NLAT, nlon=NLON)


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return mock_era5(nlat=NLAT, nlon=NLON, ntime=3)


def small_spec(**kwargs) -> StateSpec:
    base = {
        "surface_variables": ["2m_temperature"],
        "level_variables": ["temperature"],
        "levels": [500, 850],
        "latitudes": SPEC.latitudes,
        "longitudes": SPEC.longitudes,
        "units": {"2m_temperature": "K", "temperature": "K"},
    }
    return StateSpec(**{**base, **kwargs})


# Appa's 71-channel layout


@pytest.mark.parametrize(
    ("channel", "variable", "level"),
    [
        (0, "2m_temperature", None),
        (3, "mean_sea_level_pressure", None),
        (5, "total_precipitation", None),
        (6, "temperature", 50.0),
        (16, "temperature", 850.0),
        (52, "geopotential", 500.0),
        (55, "geopotential", 850.0),
        (67, "specific_humidity", 700.0),
        (70, "specific_humidity", 1000.0),
    ],
    ids=["t2m", "msl", "tp", "t50", "t850", "z500", "z850", "q700", "q1000"],
)
def test_appa_channel_layout(channel, variable, level):
    assert APPA_ERA5.channels[channel] == (variable, level)
    assert APPA_ERA5.channel_index(variable, level) == channel


def test_appa_spec_formula_and_grid():
    n = len(ERA5_LEVELS)
    for v, name in enumerate(APPA_ERA5.level_variables):
        assert [APPA_ERA5.channel_index(name, lev) for lev in ERA5_LEVELS] == list(
            range(6 + n * v, 6 + n * (v + 1))
        )
    assert APPA_ERA5.n_channels == len(APPA_ERA5.channels) == 71
    assert APPA_ERA5.shape == (721, 1440)
    assert (APPA_ERA5.latitudes[0], APPA_ERA5.latitudes[-1]) == (90.0, -90.0)
    assert (APPA_ERA5.longitudes[0], APPA_ERA5.longitudes[-1]) == (0.0, 359.75)
    assert APPA_ERA5.latitude_order == "descending"
    assert APPA_ERA5.longitude_convention == "0..360"
    assert APPA_ERA5.time_step == pd.Timedelta("1h")
    assert APPA_ERA5 == era5_spec(0.25)
    assert hash(APPA_ERA5) == hash(era5_spec(0.25))


def test_surface_only_spec_like_shallow_water():
    spec = StateSpec(
        surface_variables=["geopotential", "u", "v"],
        latitudes=np.linspace(87.2, -87.2, 32),
        longitudes=np.linspace(-180, 180, 64, endpoint=False),
        time_step="1h",
        units={"geopotential": "m2 s-2", "u": "m s-1", "v": "m s-1"},
        name="shallow-water",
    )
    assert spec.channels == [("geopotential", None), ("u", None), ("v", None)]
    assert spec.longitude_convention == "-180..180"
    assert spec.channel_index("v") == 2
    with pytest.raises(KeyError, match="no channel"):
        spec.channel_index("u", 500)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"surface_variables": [], "level_variables": [], "levels": []}, ValueError, "at least"),
        ({"surface_variables": ["temperature"]}, ValueError, "unique"),
        ({"levels": []}, ValueError, "levels must be given"),
        ({"levels": [500, 500]}, ValueError, "levels must be unique"),
        ({"latitudes": (0.0, 10.0, 5.0)}, ValueError, "strictly monotonic"),
        ({"longitudes": (10.0, 0.0)}, ValueError, "strictly increasing"),
        ({"longitudes": (-10.0, 200.0)}, ValueError, "all in"),
        ({"time_step": "-1h"}, ValueError, "time_step must be positive"),
        ({"units": {"wind": "m s-1"}}, ValueError, "not in the spec"),
        ({"units": {"temperature": "furlong"}}, ValueError, "furlong"),
        ({"surface_variables": "2m_temperature"}, TypeError, "sequence of variable names"),
    ],
    ids=[
        "empty",
        "duplicate",
        "no-levels",
        "repeat-level",
        "latitude",
        "longitude",
        "mixed-convention",
        "step",
        "units-key",
        "units-value",
        "str",
    ],
)
def test_spec_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_spec(**kwargs)


# round trips


def flip_lat(ds):
    return ds.isel(latitude=slice(None, None, -1))


def to_180(ds):
    lon = (ds.longitude + 180) % 360 - 180
    return ds.assign_coords(longitude=lon.assign_attrs(ds.longitude.attrs)).sortby("longitude")


@pytest.mark.parametrize(
    "transform",
    [lambda d: d, flip_lat, to_180, lambda d: to_180(flip_lat(d))],
    ids=["n2s-0..360", "s2n-0..360", "n2s-180..180", "s2n-180..180"],
)
@pytest.mark.parametrize("chunks", [None, {"time": 1, "latitude": 4}], ids=["numpy", "dask"])
def test_round_trip_exact(ds, transform, chunks):
    data = transform(ds if chunks is None else ds.chunk(chunks))
    x, info = dataset_to_tensor(data, SPEC)
    assert x.shape == (3, 71, NLAT, NLON) and x.dtype == torch.float32
    reference, _ = dataset_to_tensor(ds, SPEC)
    assert torch.equal(x.nan_to_num(-1), reference.nan_to_num(-1))
    xr.testing.assert_identical(tensor_to_dataset(x, SPEC, info=info), data.compute())


def test_round_trip_other_names_order_and_units(ds):
    data = ds[["2m_temperature", "temperature"]].sel(level=[1000, 850, 500])
    data = data.rename(latitude="lat", longitude="lon", level="plev", time="t")
    data = data.transpose("t", "lon", "lat", "plev")
    data["plev"] = (data.plev * 100).assign_attrs(units="Pa", standard_name="air_pressure")
    data["2m_temperature"] = (data["2m_temperature"] - 273.15).assign_attrs(units="degC")
    spec = small_spec()
    x, info = dataset_to_tensor(data, spec, dtype=torch.float64)
    t850 = ds.temperature.sel(level=850).values
    np.testing.assert_allclose(x[:, spec.channel_index("temperature", 850)], t850)
    np.testing.assert_allclose(x[:, 0], ds["2m_temperature"].values, rtol=1e-6)
    back = tensor_to_dataset(x, spec, info=info)
    # only the spec's levels come back, in the input's order and units
    xr.testing.assert_allclose(back, data.sel(plev=[85000, 50000]), rtol=1e-6, atol=1e-4)
    assert back["2m_temperature"].attrs == data["2m_temperature"].attrs
    assert back.temperature.dims == data.temperature.dims
    assert back.temperature.dtype == np.float32


def test_tensor_to_dataset_without_info_and_members(ds):
    x, info = dataset_to_tensor(ds, SPEC)
    ens = torch.stack([x, x + 1])
    out = tensor_to_dataset(ens, SPEC, times=info.times)
    assert out.temperature.dims == ("member", "time", "level", "latitude", "longitude")
    assert out.temperature.attrs["units"] == "K"
    assert out.latitude.attrs["standard_name"] == "latitude"
    np.testing.assert_array_equal(out.temperature[1].values, ds.temperature.values + 1)


@pytest.mark.parametrize(
    ("tensor", "kwargs", "match"),
    [
        (torch.zeros(3, 70, NLAT, NLON), {}, "must have shape"),
        (torch.zeros(2, 71, NLAT, NLON), {}, "times must be given"),
        (torch.zeros(2, 71, NLAT, NLON), {"times": ["2021-01-01"]}, "one value per"),
    ],
    ids=["channels", "times-missing", "times-length"],
)
def test_tensor_to_dataset_rejects(ds, tensor, kwargs, match):
    _, info = dataset_to_tensor(ds, SPEC)
    with pytest.raises(ValueError, match=match):
        tensor_to_dataset(tensor, SPEC, info=info, **kwargs)


def test_select_state_is_lazy_and_converts_units(ds):
    lazy = ds.chunk({"time": 1})
    state, info = select_state(lazy, SPEC, times=ds.time.values[1:])
    assert isinstance(state.temperature.data, dask.array.Array)
    assert state.temperature.dims == ("time", "level", "latitude", "longitude")
    assert list(info.times) == list(pd.DatetimeIndex(ds.time.values[1:]))


def test_only_requested_times_are_computed(ds):
    def poison() -> np.ndarray:
        raise RuntimeError("an unrequested chunk was computed")

    data = ds.chunk({"time": 1})
    good = data.temperature.data[:2]
    bad = dask.array.from_delayed(dask.delayed(poison)(), good.shape[1:], dtype=good.dtype)
    data["temperature"] = data.temperature.copy(
        data=dask.array.concatenate([good, bad[None]], axis=0)
    )
    with pytest.raises(RuntimeError, match="unrequested"):
        data.temperature.values  # noqa: B018 (the poison works)
    x, _ = dataset_to_tensor(data, SPEC, times=ds.time.values[:2])
    expected, _ = dataset_to_tensor(ds, SPEC, times=ds.time.values[:2])
    assert torch.equal(x.nan_to_num(-1), expected.nan_to_num(-1))


# bad input


def drop_lat_metadata(ds):
    out = ds.rename(latitude="row")
    out["row"] = out.row.assign_attrs(standard_name="", units="", axis="", long_name="")
    return out


def shuffle_lat(ds):
    return ds.isel(latitude=[1, 0, *range(2, NLAT)])


def bad_units(ds):
    return ds.assign(temperature=ds.temperature.assign_attrs(units="m s-1"))


def no_units(ds):
    out = ds.copy()
    out["temperature"].attrs = {}
    return out


def duplicate_times(ds):
    return xr.concat([ds.isel(time=[0]), ds], dim="time")


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (lambda d: d.drop_vars("geopotential"), {}, KeyError, "missing variable.*geopotential"),
        (lambda d: d.sel(level=[500, 850]), {}, KeyError, "missing level 50 hPa"),
        (drop_lat_metadata, {}, KeyError, "no latitude coordinate"),
        (shuffle_lat, {}, ValueError, "latitude must be strictly monotonic"),
        (lambda d: d.isel(latitude=slice(1, None)), {}, ValueError, "does not match the spec"),
        (bad_units, {}, ValueError, "'temperature' has units 'm s-1'; expected .*'K'"),
        (no_units, {}, ValueError, "'temperature' has no units"),
        (duplicate_times, {}, ValueError, "unique values"),
        (lambda d: d.isel(time=[0, 2]), {}, ValueError, "time step must be the spec's 0 days 01"),
        (lambda d: d.isel(time=[1, 0]), {}, ValueError, "must be increasing"),
        (lambda d: d, {"times": ["2030-01-01"]}, KeyError, "no time"),
        (lambda d: d.temperature, {}, TypeError, "must be an xarray.Dataset"),
        (lambda d: d.expand_dims(member=2), {}, ValueError, "must have dimensions"),
    ],
    ids=[
        "missing-variable",
        "missing-level",
        "no-latitude",
        "non-monotonic-latitude",
        "other-grid",
        "unconvertible-units",
        "missing-units",
        "duplicate-times",
        "time-step",
        "decreasing-times",
        "missing-time",
        "dataarray",
        "extra-dimension",
    ],
)
def test_dataset_to_tensor_rejects(ds, make, kwargs, error, match):
    with pytest.raises(error, match=match):
        dataset_to_tensor(make(ds), SPEC, **kwargs)


def test_time_step_check_can_be_skipped(ds):
    x, info = dataset_to_tensor(ds.isel(time=[0, 2]), SPEC, check_step=False)
    assert x.shape[0] == 2 and len(info.times) == 2


def test_spec_in_other_conventions(ds):
    spec = era5_spec(nlat=NLAT, nlon=NLON)
    lon = np.sort(((np.asarray(spec.longitudes) + 180) % 360) - 180)
    other = StateSpec(
        surface_variables=spec.surface_variables,
        level_variables=spec.level_variables,
        levels=spec.levels,
        latitudes=spec.latitudes[::-1],
        longitudes=lon,
        units=spec.units,
    )
    assert (other.latitude_order, other.longitude_convention) == ("ascending", "-180..180")
    x, info = dataset_to_tensor(ds, other)
    expected = to_180(flip_lat(ds)).temperature.values
    np.testing.assert_array_equal(x[:, other.channel_index("temperature", 50)], expected[:, 0])
    xr.testing.assert_identical(tensor_to_dataset(x, other, info=info), ds)


def test_spec_and_info_pickle(ds):
    _, info = dataset_to_tensor(ds, SPEC)
    assert pickle.loads(pickle.dumps(APPA_ERA5)) == APPA_ERA5
    assert pickle.loads(pickle.dumps(info)).spec == SPEC
