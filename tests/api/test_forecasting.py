"""forecast: layout, times, determinism, ensemble initial states and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xappa
from xappa.testing import mock_era5, tiny_model

FAST = {"members": 2, "sampling": xappa.SamplingConfig(steps=2, corrections=1), "progress": False}


@pytest.fixture(scope="module")
def model() -> xappa.Model:
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def state(model: xappa.Model) -> xr.Dataset:
    return mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=3)


def test_forecast_layout_and_times(model, state):
    fc = xappa.forecast(state, model=model, lead="5h", **FAST)
    dims = ("member", "time", "prediction_timedelta", "latitude", "longitude")
    assert fc["2m_temperature"].dims == dims
    init = pd.Timestamp(state.time.values[-1])
    np.testing.assert_array_equal(fc.time.values, [init.to_datetime64()])
    leads = pd.timedelta_range("1h", periods=5, freq="1h")
    np.testing.assert_array_equal(fc.prediction_timedelta.values, leads.values)
    np.testing.assert_array_equal(fc.valid_time.values[0], (init + leads).values)
    assert fc.prediction_timedelta.attrs["standard_name"] == "forecast_period"
    assert fc.attrs["xappa_weight_hash"] == model.weight_hash
    assert fc["2m_temperature"].attrs["units"] == "K"
    assert all(np.isfinite(fc[v].values).all() for v in fc.data_vars)


def test_forecast_same_seed_same_output(model, state):
    a = xappa.forecast(state, model=model, lead="3h", seed=1, **FAST)
    b = xappa.forecast(state, model=model, lead="3h", seed=1, **FAST)
    xr.testing.assert_identical(a, b)


def test_forecast_schedule(model, state):
    # With 2 steps both spacings visit sigma = 1000 and 1 only; with 4 they differ.
    config = xappa.SamplingConfig(steps=4, corrections=1, schedule="rectified")
    kw = {**FAST, "lead": "3h", "seed": 1}
    a = xappa.forecast(
        state, model=model, **kw | {"sampling": config.replace(schedule="loglogit")}
    )
    b = xappa.forecast(state, model=model, **kw | {"sampling": config})
    schedules = (a.attrs["xappa_sampling_schedule"], b.attrs["xappa_sampling_schedule"])
    assert schedules == ("loglogit", "rectified")
    assert float(abs(a["2m_temperature"] - b["2m_temperature"]).max()) > 1e-2


def test_forecast_from_an_ensemble_analysis(model, state):
    analysis = xr.concat([state, state + 1.0], dim="member").assign_coords(member=[0, 1])
    for v in analysis.data_vars:
        analysis[v].attrs = state[v].attrs
    fc = xappa.forecast(analysis, model=model, lead="2h", **FAST)
    assert fc.sizes["member"] == 2


def test_forecast_keeps_conventions(model, state):
    flipped = state.isel(latitude=slice(None, None, -1))
    fc = xappa.forecast(flipped, model=model, lead="2h", **FAST)
    assert fc.latitude.values[0] < fc.latitude.values[-1]


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"lead": "30min"}, "lead must be a positive multiple"),
        ({"members": 0}, "members must be a positive int"),
        ({"context": 3}, "context must be at most"),
        ({"stride": 4}, "stride must be less than"),
        ({"method": "ensemble"}, "method must be one of"),
        ({"members": 3}, "member count of initial"),
    ],
    ids=["lead", "members", "context", "stride", "method", "member-count"],
)
def test_forecast_errors(model, state, option, match):
    options = {**FAST, "lead": "2h", **option}
    initial = state
    if "member count" in match:
        initial = xr.concat([state, state], dim="member")
    with pytest.raises(ValueError, match=match):
        xappa.forecast(initial, model=model, **options)


def test_all_at_once_from_observations(model, state):
    from xappa.observations import sample_points, stations

    obs = sample_points(state, stations([10.0, -40.0], [20.0, 200.0]), error_std=0.5, seed=0)
    fc = xappa.forecast(obs, model=model, method="all-at-once", window="3h", lead="4h", **FAST)
    expected = pd.date_range(pd.Timestamp(state.time.values[-1]), periods=5, freq="1h")[1:]
    np.testing.assert_array_equal(fc.time.values, [state.time.values[-1]])
    np.testing.assert_array_equal(fc.valid_time.values[0], expected.values)
    assert fc.attrs["xappa_method"] == "all-at-once"
    assert all(np.isfinite(fc[v].values).all() for v in fc.data_vars)
    again = xappa.forecast(obs, model=model, method="all-at-once", window="3h", lead="4h", **FAST)
    xr.testing.assert_identical(fc, again)


def test_all_at_once_rejects_obs_outside_window(model, state):
    from xappa.observations import sample_points, stations

    obs = sample_points(state, stations([10.0], [20.0]), error_std=0.5, seed=0)
    with pytest.raises(ValueError, match="outside the window"):
        xappa.forecast(obs, model=model, method="all-at-once", window="2h", lead="2h", **FAST)
