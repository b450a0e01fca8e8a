"""OSSE helpers: the observing system, observation counts and scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xappa.testbeds.osse import (
    OBSERVING_SYSTEMS,
    ObservingSystem,
    observe,
    observing_system,
    score,
)
from xappa.testbeds.shallow_water import simulate
from xappa.verify.metrics import lat_weights


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return simulate(1, 0.25, nlat=16, nlon=32, spinup_days=0, seed=4).isel(trajectory=0)


def test_observe_counts_and_errors(truth: xr.Dataset) -> None:
    system = ObservingSystem(stations=10, fov_deg=30.0)
    obs = observe(truth, system, seed=1)
    stations, sat = obs["stations"], obs["satellite"]
    assert stations.sizes["time"] == truth.sizes["time"]
    for name in ("geopotential", "u_component_of_wind", "v_component_of_wind"):
        assert int(stations[name].notnull().sum()) == 10 * truth.sizes["time"]
    assert next(iter(sat.data_vars)) == "geopotential"
    seen = int(sat["geopotential"].notnull().sum())
    assert 0 < seen < truth["geopotential"].size
    # the noise has the stated error: residuals of the swath against the truth
    resid = (sat["geopotential"] - truth["geopotential"]).values
    resid = resid[np.isfinite(resid)]
    assert abs(resid.std() / 100.0 - 1) < 0.1
    again = observe(truth, system, seed=1)
    xr.testing.assert_identical(again["satellite"], sat)


def test_observing_system_validation() -> None:
    with pytest.raises(ValueError, match="stations must be >= 0"):
        ObservingSystem(stations=-1)
    with pytest.raises(ValueError, match="station_errors must be positive"):
        ObservingSystem(station_errors={"geopotential": 0.0})
    with pytest.raises(ValueError, match="missing"):
        ObservingSystem(swath_variables=("u_component_of_wind",))


@pytest.mark.parametrize(
    ("name", "unobserved"),
    [
        ("demo", set()),
        ("sparse", set()),
        ("geopotential-only", {"u_component_of_wind", "v_component_of_wind"}),
        ("winds-only", {"geopotential"}),
    ],
)
def test_named_observing_systems_leave_out_what_they_say(truth, name, unobserved) -> None:
    system = observing_system(name)
    assert system is OBSERVING_SYSTEMS[name]
    obs = observe(truth, system, seed=2)
    seen = {str(v) for ds in obs.values() for v in ds.data_vars if ds[v].notnull().any()}
    seen = {v for v in seen if v in truth.data_vars}
    assert seen == set(truth.data_vars) - unobserved
    with pytest.raises(ValueError, match="observing system must be one of"):
        observing_system("radiosondes")


def test_score_known_answers(truth: xr.Dataset) -> None:
    c1, c2 = 3.0, 1.0
    posterior = xr.concat([truth + c1, truth + c2], dim="member")
    table = score(posterior, truth, prior=posterior + 1.0, climatology=truth.isel(time=0) * 0)
    shifted = score(posterior, truth, climatology=truth.mean("time"))
    for v in truth.data_vars:
        row = table.sel(variable=v)
        np.testing.assert_allclose(float(row["rmse"]), (c1 + c2) / 2, rtol=1e-5)
        np.testing.assert_allclose(float(row["prior_rmse"]), (c1 + c2) / 2 + 1, rtol=1e-5)
        spread = abs(c1 - c2) / np.sqrt(2)
        np.testing.assert_allclose(
            float(row["spread_skill"]), np.sqrt(3 / 2) * spread / ((c1 + c2) / 2), rtol=1e-5
        )
        # fair CRPS of two members at +3 and +1: mean |x - y| = 2, minus
        # sum_ij |x_i - x_j| / (2 M (M - 1)) = 4 / 4
        np.testing.assert_allclose(float(row["crps"]), 2.0 - 1.0, rtol=1e-4)
        assert float(row["rmse_vs_climatology"]) == pytest.approx(
            float(row["rmse"]) / float(row["climatology_rmse"])
        )
        clim = float(shifted.sel(variable=v)["climatology_rmse"])
        sq = ((truth[v] - truth[v].mean("time")) ** 2).mean(("time", "longitude"))
        expected = float(np.sqrt((sq * lat_weights(truth.latitude)).mean()))
        np.testing.assert_allclose(clim, expected, rtol=1e-4)
    assert table.attrs["units_geopotential"] == "m2 s-2"
