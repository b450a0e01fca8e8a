"""Tests of observing-network helpers: stations, LEO swaths and synthetic sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xappa.observations import (
    leo_swath,
    orbital_period,
    random_stations,
    sample_gridded,
    sample_points,
    stations,
)
from xappa.testing import mock_era5

LAT = np.linspace(90.0, -90.0, 181)
LON = np.arange(360) * 1.0
HOURS = pd.date_range("2021-03-21", periods=6, freq="1h")


@pytest.fixture(scope="module")
def swath():
    return leo_swath(LAT, LON, HOURS)


def test_orbital_period_matches_appa() -> None:
    assert orbital_period(800.0) == pytest.approx(1.679, abs=1e-3)


def test_leo_swath_covers_about_six_percent_per_hour(swath) -> None:
    fraction = swath.mean(("latitude", "longitude")).values
    assert swath.dims == ("time", "latitude", "longitude") and swath.dtype == bool
    assert np.all((fraction > 0.045) & (fraction < 0.075)), fraction
    assert 0.05 < fraction.mean() < 0.065


def test_leo_swath_stays_in_inclination_band(swath) -> None:
    lat = swath.latitude.broadcast_like(swath).where(swath)
    assert float(abs(lat).max()) <= 75.0 + 5.0 + 1.0
    assert float(abs(lat).max()) >= 75.0  # it reaches its highest latitude within 6 h


def test_leo_swath_is_grid_order_independent(swath) -> None:
    other = leo_swath(LAT[::-1], LON - 180.0, HOURS)
    back = other.isel(latitude=slice(None, None, -1)).roll(longitude=180)
    np.testing.assert_array_equal(back.values, swath.values)


def test_leo_swath_moves_and_phase_shifts(swath) -> None:
    assert not np.array_equal(swath[0].values, swath[1].values)
    shifted = leo_swath(LAT, LON, HOURS[:1], phase_deg=90.0)
    assert not np.array_equal(shifted[0].values, swath[0].values)


def test_leo_swath_bad_parameters() -> None:
    with pytest.raises(ValueError, match="fov_deg within"):
        leo_swath(LAT, LON, HOURS, fov_deg=0.0)


def test_stations_layout_and_errors() -> None:
    s = stations([0.0, 10.0], [350.0, -10.0], names=["a", "b"])
    assert s.latitude.dims == ("station",) and list(s.station.values) == ["a", "b"]
    with pytest.raises(ValueError, match="same length"):
        stations([0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"within \[-90, 90\]"):
        stations([91.0], [0.0])


@pytest.mark.slow  # importing global-land-mask loads its 1 km mask (about 10 s)
def test_random_stations_land_fraction() -> None:
    globe = pytest.importorskip("global_land_mask.globe", reason="needs global-land-mask")
    s = random_stations(40, seed=3, land_fraction=0.75)
    land = globe.is_land(s.latitude.values, s.longitude.values)
    assert land.sum() == 30
    assert random_stations(5, seed=1).identical(random_stations(5, seed=1))


def test_sample_points_noise_is_seeded_with_known_std() -> None:
    truth = mock_era5(variables=["2m_temperature"], nlat=10, nlon=16, ntime=2)
    sites = random_stations(500, seed=0)
    exact = sample_points(truth, sites, error_std=0.0)
    a = sample_points(truth, sites, error_std=2.0, seed=7)
    b = sample_points(truth, sites, error_std=2.0, seed=7)
    assert a.identical(b)
    noise = (a - exact)["2m_temperature"].values
    assert noise.std() == pytest.approx(2.0, rel=0.1)
    err = a["2m_temperature_error"]
    assert err.attrs["standard_name"] == "air_temperature standard_error"


def test_sample_gridded_keeps_mask_and_checks_grid() -> None:
    truth = mock_era5(variables=["2m_temperature"], nlat=10, nlon=16, ntime=2)
    mask = leo_swath(truth.latitude, truth.longitude, truth.time)
    obs = sample_gridded(truth, mask, error_std=1.0, seed=0)
    np.testing.assert_array_equal(obs["2m_temperature"].notnull().values, mask.values)
    with pytest.raises(ValueError, match="mask must have the coordinates of truth"):
        sample_gridded(truth, mask.assign_coords(latitude=mask.latitude + 1), error_std=1.0)
