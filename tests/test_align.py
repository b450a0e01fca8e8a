"""Tests of xappa.verify.align: orders, longitude conventions, leads and clear errors."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xappa.verify.align import align, find_lead_dim, normalize_grid

LAT = np.linspace(90.0, -90.0, 7)
LON = np.arange(0.0, 360.0, 45.0)
TIMES = pd.date_range("2021-01-01", periods=8, freq="6h")


@pytest.fixture
def truth() -> xr.Dataset:
    rng = np.random.default_rng(0)
    shape = (TIMES.size, 2, LAT.size, LON.size)
    return xr.Dataset(
        {
            "geopotential": (("time", "level", "latitude", "longitude"), rng.normal(size=shape)),
            "2m_temperature": (
                ("time", "latitude", "longitude"),
                rng.normal(size=shape[:1] + shape[2:]),
            ),
        },
        coords={"time": TIMES, "level": [500, 850], "latitude": LAT, "longitude": LON},
    )


def _zero(pred: xr.Dataset, truth: xr.Dataset) -> None:
    for name in pred.data_vars:
        diff = (pred[name] - truth[name]).compute()
        assert diff.size > 0
        np.testing.assert_array_equal(diff.values, 0.0)


@pytest.mark.parametrize("lat_order", [1, -1], ids=["lat-descending", "lat-ascending"])
@pytest.mark.parametrize("lon_convention", ["0-360", "-180-180"], ids=["lon360", "lon180"])
def test_orders_and_conventions(truth: xr.Dataset, lat_order: int, lon_convention: str) -> None:
    pred = truth.isel(latitude=slice(None, None, lat_order))
    if lon_convention == "-180-180":
        pred = pred.assign_coords(longitude=(LON + 180) % 360 - 180).sortby("longitude")
    pred = pred.transpose("longitude", "latitude", ...)  # any dimension order
    p, t = align(pred, truth)
    np.testing.assert_array_equal(p["latitude"].values, LAT)
    np.testing.assert_array_equal(p["longitude"].values, LON)
    _zero(p, t)


def test_truth_in_other_convention_and_short_names(truth: xr.Dataset) -> None:
    other = truth.rename(latitude="lat", longitude="lon")
    other = other.assign_coords(lon=(LON + 180) % 360 - 180).sortby("lon")
    p, t = align(truth.isel(time=slice(0, 3)), other)
    assert t.sizes["time"] == 3
    _zero(p, t)


def test_ensemble_with_leads_is_lazy(truth: xr.Dataset) -> None:
    init = TIMES[:3]
    leads = pd.to_timedelta([0, 6, 12], "h")
    valid = (init.values[:, None] + leads.values[None, :]).ravel()
    z = truth["geopotential"].sel(time=valid).values.reshape(3, 3, 2, LAT.size, LON.size)
    pred = xr.Dataset(
        {"geopotential": (("time", "lead", "level", "latitude", "longitude"), z)},
        coords={
            "time": init,
            "lead": leads,
            "level": [500, 850],
            "latitude": LAT,
            "longitude": LON,
        },
    ).expand_dims(member=2)
    assert find_lead_dim(pred) == "lead"
    p, t = align(pred, truth.chunk(time=2))
    assert dask.is_dask_collection(t["geopotential"])
    assert t["geopotential"].dims[:2] == ("time", "lead")
    np.testing.assert_array_equal(t["valid_time"].values.ravel(), valid)
    _zero(p, t)


def test_partial_overlap_warns(truth: xr.Dataset) -> None:
    pred = truth.assign_coords(time=TIMES + pd.Timedelta("36h"))
    with pytest.warns(UserWarning, match="only 2 of pred's 8 'time' values are in truth"):
        p, _ = align(pred, truth)
    assert p.sizes["time"] == 2


def test_leads_past_truth_are_left_out(truth: xr.Dataset) -> None:
    pred = truth.isel(time=slice(4, 8)).expand_dims(lead=pd.to_timedelta([0, 12], "h"))
    with pytest.warns(UserWarning, match="2 of 4 initial times"):
        p, _ = align(pred, truth)
    assert p.sizes["time"] == 2


def test_extra_variable_warns(truth: xr.Dataset) -> None:
    pred = truth.assign(extra=truth["2m_temperature"])
    with pytest.warns(UserWarning, match="\\['extra'\\] are not in truth"):
        p, _ = align(pred, truth)
    assert "extra" not in p


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            lambda d: d.assign_coords(latitude=d.latitude * 0 + 1.5 + np.arange(7)),
            ValueError,
            "share no 'latitude' values; pred has 7 from 1.5 to 7.5",
        ),
        (
            lambda d: d.assign_coords(longitude=d.longitude + 10),
            ValueError,
            "share no 'longitude' values",
        ),
        (lambda d: d.assign_coords(level=[1, 2]), ValueError, "share no 'level' values"),
        (
            lambda d: d.assign_coords(time=d.time + pd.Timedelta("1000D")),
            ValueError,
            "share no 'time' values; pred has 8 from 2023",
        ),
        (
            lambda d: d.rename(geopotential="z", **{"2m_temperature": "t2m"}),
            KeyError,
            "share no data variable",
        ),
        (
            lambda d: d.expand_dims(lead=pd.to_timedelta([300], "D")),
            ValueError,
            "valid times \\('time' \\+ 'lead'\\)",
        ),
        (lambda d: d.rename(latitude="y"), ValueError, "missing dimension 'latitude'"),
    ],
    ids=["latitude", "longitude", "level", "time", "variables", "lead", "no-latitude"],
)
def test_mismatch_errors(truth: xr.Dataset, change: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        align(change(truth), truth)


def test_level_only_in_pred(truth: xr.Dataset) -> None:
    with pytest.raises(ValueError, match="pred has dimension 'level' but truth does not"):
        align(truth[["geopotential"]], truth[["geopotential"]].isel(level=0, drop=True))


def test_member_in_truth(truth: xr.Dataset) -> None:
    with pytest.raises(ValueError, match="truth must not have the member dimension"):
        align(truth, truth.expand_dims(member=2))


def test_normalize_grid_does_not_mutate(truth: xr.Dataset) -> None:
    shifted = truth.assign_coords(longitude=(LON + 180) % 360 - 180)
    before = shifted["longitude"].values.copy()
    out = normalize_grid(shifted)
    np.testing.assert_array_equal(shifted["longitude"].values, before)
    assert out["longitude"].values.min() >= 0 and np.all(np.diff(out["longitude"].values) > 0)
