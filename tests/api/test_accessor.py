"""The .appa accessor forwards to xappa's functions and keeps Datasets picklable."""

from __future__ import annotations

import pickle

import pytest
import xarray as xr

import xappa
from xappa.observations import sample_points, stations
from xappa.testing import mock_era5, tiny_model

FAST = {"members": 2, "sampling": xappa.SamplingConfig(steps=2, corrections=1), "progress": False}


@pytest.fixture(scope="module")
def model() -> xappa.Model:
    return tiny_model(seed=4)


@pytest.fixture(scope="module")
def truth(model: xappa.Model) -> xr.Dataset:
    return mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=4)


@pytest.fixture(scope="module")
def obs(truth: xr.Dataset) -> xr.Dataset:
    return sample_points(truth, stations([10.0, -40.0], [20.0, 200.0]), error_std=0.5, seed=0)


def test_encode_decode(model, truth):
    z = truth.appa.encode(model=model)
    xr.testing.assert_identical(z, xappa.encode(truth, model=model))
    xr.testing.assert_identical(z.appa.decode(model=model), xappa.decode(z, model=model))


@pytest.mark.parametrize("mode", ["reanalysis", "filter"])
def test_assimilate(model, obs, mode):
    a = obs.appa.assimilate(model=model, window="4h", mode=mode, **FAST)
    xr.testing.assert_identical(
        a, xappa.assimilate(obs, model=model, window="4h", mode=mode, **FAST)
    )


def test_forecast(model, truth):
    a = truth.appa.forecast(model=model, lead="2h", **FAST)
    xr.testing.assert_identical(a, xappa.forecast(truth, model=model, lead="2h", **FAST))


def test_pickle_after_accessor_use(model, truth, obs):
    truth.appa.encode(model=model)
    obs.appa.assimilate(model=model, window="4h", **FAST)
    for ds in (truth, obs):
        xr.testing.assert_identical(pickle.loads(pickle.dumps(ds)), ds)


def test_accessor_holds_only_the_dataset(truth):
    assert vars(truth.appa) == {"_obj": truth}


def test_forecast_all_at_once(model, obs):
    options = {"method": "all-at-once", "window": "4h", "lead": "2h", **FAST}
    a = obs.appa.forecast(model=model, **options)
    xr.testing.assert_identical(a, xappa.forecast(obs, model=model, **options))


def test_stations_and_a_swath_together_with_the_default_model(model, truth, obs):
    """The mission's call: obs.appa.assimilate(swath) with the model option, window from obs."""
    from xappa.observations import leo_swath, sample_gridded

    swath = sample_gridded(
        truth,
        leo_swath(truth.latitude, truth.longitude, truth.time),
        error_std=0.5,
        variables=["2m_temperature"],
        seed=1,
    )
    with xappa.set_options(model=model):
        a = obs.appa.assimilate(swath, **FAST)
    b = xappa.assimilate([obs, swath], model=model, **FAST)
    xr.testing.assert_identical(a, b)
    assert a.sizes["time"] == truth.sizes["time"]  # the window spans the observations
    assert "points" in a.attrs["xappa_obs_sources"] and "gridded" in a.attrs["xappa_obs_sources"]
