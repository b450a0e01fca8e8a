"""Tests of xappa.verify.metrics: hand-computed values, independent implementations, laziness."""

from __future__ import annotations

import dask
import numpy as np
import properscoring
import pytest
import xarray as xr

from xappa.verify import metrics

LAT = np.array([60.0, 20.0, -20.0, -60.0])
LON = np.arange(0.0, 360.0, 45.0)


@pytest.fixture
def ens() -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(0)
    coords = {"time": np.arange(3), "level": [500, 850], "latitude": LAT, "longitude": LON}
    truth = xr.DataArray(
        rng.normal(size=(3, 2, 4, 8)),
        dims=("time", "level", "latitude", "longitude"),
        coords=coords,
    )
    pred = truth.values + rng.normal(size=(5, 3, 2, 4, 8)) * 0.7 + 0.2
    pred = xr.DataArray(pred, dims=("member", *truth.dims), coords=coords)
    return pred, truth


def _w(lat: np.ndarray = LAT) -> np.ndarray:
    """Independent cell-area weights for this regular grid, broadcast on (lat, lon)."""
    w = metrics.lat_weights(xr.DataArray(lat, dims="latitude")).values
    return w[:, None] * np.ones(LON.size)


def _space_mean(x: np.ndarray) -> np.ndarray:
    w = _w()
    return (x * w).sum((-2, -1)) / w.sum()


def test_lat_weights_hand_values() -> None:
    w = metrics.lat_weights(xr.DataArray([90.0, 0.0, -90.0], dims="latitude"))
    area = np.array([1 - np.sin(np.pi / 4), 2 * np.sin(np.pi / 4), 1 - np.sin(np.pi / 4)])
    np.testing.assert_allclose(w.values, area / area.mean())


@pytest.mark.parametrize("order", [1, -1], ids=["ascending", "descending"])
def test_lat_weights_proportional_to_cos_without_poles(order: int) -> None:
    lat = np.array([-67.5, -22.5, 22.5, 67.5])[::order]
    w = metrics.lat_weights(xr.DataArray(lat, dims="latitude", coords={"latitude": lat}))
    expected = np.cos(np.deg2rad(lat)) / np.cos(np.deg2rad(lat)).mean()
    np.testing.assert_allclose(w.values, expected, rtol=1e-12)
    assert float(w.mean()) == pytest.approx(1.0)


def test_lat_weights_rejects_repeats() -> None:
    with pytest.raises(ValueError, match="latitude must hold distinct"):
        metrics.lat_weights(xr.DataArray([10.0, 10.0], dims="latitude"))


def test_rmse_bias_mae_hand_example() -> None:
    lat = np.array([-45.0, 45.0])
    truth = xr.DataArray(
        np.zeros((2, 2)), dims=("latitude", "longitude"), coords={"latitude": lat}
    )
    pred = truth.copy(data=[[1.0, -1.0], [3.0, 3.0]])
    # equal weights by symmetry: errors 1, -1, 3, 3
    assert float(metrics.rmse(pred, truth)) == pytest.approx(np.sqrt((1 + 1 + 9 + 9) / 4))
    assert float(metrics.bias(pred, truth)) == pytest.approx(1.5)
    assert float(metrics.mae(pred, truth)) == pytest.approx(2.0)


def test_deterministic_metrics_match_numpy(ens: tuple) -> None:
    pred, truth = ens
    det = pred.isel(member=0)
    err = det.values - truth.values  # (time, level, lat, lon)
    expected_rmse = np.sqrt(_space_mean(err**2).mean(0))
    np.testing.assert_allclose(metrics.rmse(det, truth).values, expected_rmse, rtol=1e-10)
    np.testing.assert_allclose(metrics.bias(det, truth).values, _space_mean(err).mean(0))
    np.testing.assert_allclose(
        metrics.mae(det, truth).values, _space_mean(np.abs(err)).mean(0), rtol=1e-10
    )


def test_deterministic_metrics_match_xskillscore(ens: tuple) -> None:
    xs = pytest.importorskip("xskillscore")
    pred, truth = ens
    det = pred.isel(member=0)
    w = xr.DataArray(_w(), dims=("latitude", "longitude"))
    w = w.broadcast_like(truth.isel(level=0, drop=True))
    dims = ["time", "latitude", "longitude"]
    xr.testing.assert_allclose(metrics.rmse(det, truth), xs.rmse(det, truth, dims, weights=w))
    xr.testing.assert_allclose(metrics.mae(det, truth), xs.mae(det, truth, dims, weights=w))
    xr.testing.assert_allclose(metrics.bias(det, truth), xs.me(det, truth, dims, weights=w))


def test_ensemble_hand_example() -> None:
    pred = xr.DataArray([[0.0, 2.0, 4.0]], dims=("time", "member"))
    truth = xr.DataArray([1.0], dims="time")
    assert float(metrics.ensemble_mean_rmse(pred, truth)) == pytest.approx(1.0)
    assert float(metrics.spread(pred)) == pytest.approx(2.0)  # var with ddof=1 is 4
    ssr = float(metrics.spread_skill_ratio(pred, truth))
    assert ssr == pytest.approx(np.sqrt(4 / 3) * 2.0)
    # E|X-y| = (1 + 1 + 3) / 3; sum |xi - xj| = 2 * (2 + 4 + 2) = 16
    assert float(metrics.crps(pred, truth)) == pytest.approx(5 / 3 - 16 / (2 * 3 * 2))
    assert float(metrics.crps(pred, truth, fair=False)) == pytest.approx(5 / 3 - 16 / 18)
    hist = metrics.rank_histogram(pred, truth)
    np.testing.assert_allclose(hist.values, [0, 1, 0, 0])


def test_ensemble_metrics_match_numpy(ens: tuple) -> None:
    pred, truth = ens
    p, t = pred.values, truth.values
    skill = np.sqrt(_space_mean((p.mean(0) - t) ** 2).mean(0))
    spread = np.sqrt(_space_mean(p.var(0, ddof=1)).mean(0))
    np.testing.assert_allclose(metrics.ensemble_mean_rmse(pred, truth).values, skill)
    np.testing.assert_allclose(metrics.spread(pred).values, spread)
    np.testing.assert_allclose(
        metrics.spread_skill_ratio(pred, truth).values, np.sqrt(6 / 5) * spread / skill
    )


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "empirical"])
def test_crps_matches_properscoring(ens: tuple, fair: bool) -> None:
    pred, truth = ens
    m = pred.sizes["member"]
    ps = properscoring.crps_ensemble(truth.values, np.moveaxis(pred.values, 0, -1))
    if fair:  # fair = (M * empirical - E|X - y|) / (M - 1)
        mae = np.abs(pred.values - truth.values).mean(0)
        ps = (m * ps - mae) / (m - 1)
    expected = _space_mean(ps).mean(0)
    result = metrics.crps(pred, truth, fair=fair)
    np.testing.assert_allclose(result.values, expected, rtol=1e-10, atol=1e-12)


def test_crps_matches_xskillscore(ens: tuple) -> None:
    xs = pytest.importorskip("xskillscore")
    pred, truth = ens
    w = xr.DataArray(_w(), dims=("latitude", "longitude"))
    w = w.broadcast_like(truth.isel(level=0, drop=True))
    expected = xs.crps_ensemble(
        truth, pred, member_dim="member", dim=["time", "latitude", "longitude"], weights=w
    )
    xr.testing.assert_allclose(metrics.crps(pred, truth, fair=False), expected)


def test_rank_histogram_matches_counts(ens: tuple) -> None:
    pred, truth = ens
    ranks = (pred.values < truth.values).sum(0)
    hist = metrics.rank_histogram(pred, truth)
    assert hist.sizes["rank"] == 6
    expected = np.stack([_space_mean((ranks == r) * 1.0).mean(0) for r in range(6)])
    np.testing.assert_allclose(hist.values, expected)
    np.testing.assert_allclose(hist.sum("rank").values, 1.0)


def test_acc_hand_and_numpy(ens: tuple) -> None:
    pred, truth = ens
    clim = truth.mean("time")
    anomaly = truth - clim
    assert np.allclose(metrics.acc(clim + 2 * anomaly, truth, clim).values, 1.0)
    assert np.allclose(metrics.acc(clim - anomaly, truth, clim).values, -1.0)
    fa = pred.isel(member=0).values - clim.values
    oa = truth.values - clim.values
    expected = (_space_mean(fa * oa) / np.sqrt(_space_mean(fa**2) * _space_mean(oa**2))).mean(0)
    np.testing.assert_allclose(metrics.acc(pred.isel(member=0), truth, clim).values, expected)


METRICS = {
    "rmse": lambda p, t: metrics.rmse(p.isel(member=0), t),
    "acc": lambda p, t: metrics.acc(p.isel(member=0), t, t.mean("time")),
    "skill": metrics.ensemble_mean_rmse,
    "spread": lambda p, t: metrics.spread(p),
    "ssr": metrics.spread_skill_ratio,
    "crps": metrics.crps,
    "rank_histogram": metrics.rank_histogram,
}


@pytest.mark.parametrize("name", list(METRICS), ids=list(METRICS))
def test_dask_is_lazy_and_equal(ens: tuple, name: str) -> None:
    pred, truth = ens
    eager = METRICS[name](pred, truth)
    lazy = METRICS[name](pred.chunk(time=1, member=2), truth.chunk(time=1))
    assert dask.is_dask_collection(lazy)
    xr.testing.assert_allclose(lazy.compute(), eager)


def test_reduce_keeps_time(ens: tuple) -> None:
    pred, truth = ens
    out = metrics.rmse(pred.isel(member=0), truth, reduce=["latitude", "longitude"])
    assert set(out.dims) == {"time", "level"}
    with pytest.raises(ValueError, match="reduce names dimensions \\['lead'\\]"):
        metrics.rmse(pred, truth, reduce=["lead"])


def test_dataset_input(ens: tuple) -> None:
    pred, truth = ens
    out = metrics.crps(pred.to_dataset(name="z"), truth.to_dataset(name="z"))
    xr.testing.assert_allclose(out["z"], metrics.crps(pred, truth))


@pytest.mark.parametrize(
    ("name", "lat", "lon", "inside"),
    [
        ("tropics", 10.0, 0.0, 1.0),
        ("tropics", 30.0, 0.0, 0.0),
        ("extratropics", -30.0, 0.0, 1.0),
        ("northern_extratropics", -30.0, 0.0, 0.0),
        ("southern_extratropics", -30.0, 0.0, 1.0),
        # the first use of global-land-mask loads its mask (about 10 s)
        pytest.param("land", 0.0, 20.0, 1.0, marks=pytest.mark.slow),  # Gabon/Congo
        pytest.param("land", 0.0, 330.0, 0.0, marks=pytest.mark.slow),  # Atlantic, 0..360
        pytest.param("sea", 0.0, -30.0, 1.0, marks=pytest.mark.slow),  # Atlantic, -180..180
        ("global", 89.0, 1.0, 1.0),
    ],
    ids=lambda v: str(v),
)
def test_region_mask(name: str, lat: float, lon: float, inside: float) -> None:
    grid = xr.Dataset(coords={"latitude": [lat], "longitude": [lon]})
    assert float(metrics.region_mask(grid, name).squeeze()) == inside


def test_region_weights_a_subset(ens: tuple) -> None:
    pred, truth = ens
    det = pred.isel(member=0)
    mask = metrics.region_mask(truth, "tropics")
    expected = metrics.rmse(det.sel(latitude=[20.0, -20.0]), truth.sel(latitude=[20.0, -20.0]))
    xr.testing.assert_allclose(metrics.rmse(det, truth, region=mask), expected)


def test_errors(ens: tuple) -> None:
    pred, truth = ens
    with pytest.raises(ValueError, match="region must be one of"):
        metrics.region_mask(truth, "arctic")
    with pytest.raises(ValueError, match="missing the member dimension 'ens'"):
        metrics.spread(pred, member_dim="ens")
    with pytest.raises(ValueError, match="at least 2 members"):
        metrics.crps(pred.isel(member=[0]), truth)


# --- missing values: one policy (WB2 with skipna=True) in every metric -----------------------

NAN_DIMS = ["time", "latitude", "longitude"]


@pytest.fixture
def sst() -> tuple[xr.DataArray, xr.DataArray]:
    """An SST-like ensemble: the truth is NaN over a land block, one member NaN at a point."""
    rng = np.random.default_rng(3)
    coords = {"time": np.arange(3), "latitude": LAT, "longitude": LON}
    truth = xr.DataArray(
        290 + rng.normal(size=(3, 4, 8)), dims=("time", "latitude", "longitude"), coords=coords
    )
    pred = xr.DataArray(
        truth.values + rng.normal(size=(4, 3, 4, 8)), dims=("member", *truth.dims), coords=coords
    )
    truth[:, 1:3, 2:5] = np.nan  # land
    pred[2, 1, 0, 6] = np.nan  # one member missing at a sea point
    pred[:, 2, 3, 0] = np.nan  # a whole ensemble missing at another
    return pred, truth


def _policy(pred: xr.DataArray, truth: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """The documented policy, spelt out: a point with any NaN is left out of everything."""
    valid = truth.notnull() & pred.notnull().all("member")
    return pred.where(valid), truth.where(valid)


def _weights_like(truth: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(_w(), dims=("latitude", "longitude")).broadcast_like(truth)


def test_crps_nan_member_does_not_leak_the_level() -> None:
    pred = xr.DataArray([[300.0, 301.0, np.nan], [300.0, 301.0, 302.0]], dims=("longitude", "m"))
    truth = xr.DataArray([300.5, 300.5], dims="longitude")
    score = metrics.crps(pred, truth, member_dim="m")
    # the point with a missing member is left out: the score is the other point's
    alone = metrics.crps(pred.isel(longitude=[1]), truth.isel(longitude=[1]), member_dim="m")
    assert float(score) == pytest.approx(float(alone)) and float(score) < 1.0
    assert np.isnan(float(metrics.crps(pred.isel(longitude=[0]), truth[:1], member_dim="m")))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (metrics.rmse, "rmse"),
        (metrics.mae, "mae"),
        (metrics.bias, "me"),
        (metrics.mse, "mse"),
    ],
    ids=["rmse", "mae", "bias", "mse"],
)
def test_deterministic_with_nan_match_xskillscore(sst: tuple, ours, theirs: str) -> None:
    xs = pytest.importorskip("xskillscore")
    pred, truth = sst
    det = pred.isel(member=2, drop=True)  # NaN at one sea point, the truth NaN over land
    expected = getattr(xs, theirs)(det, truth, NAN_DIMS, weights=_weights_like(truth), skipna=True)
    xr.testing.assert_allclose(ours(det, truth), expected)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # properscoring, NaN
def test_crps_with_nan_matches_xskillscore(sst: tuple) -> None:
    xs = pytest.importorskip("xskillscore")
    pred, truth = sst
    p, t = _policy(pred, truth)
    expected = xs.crps_ensemble(t, p, dim=NAN_DIMS, weights=_weights_like(truth))
    xr.testing.assert_allclose(metrics.crps(pred, truth, fair=False), expected)
    # fair CRPS: properscoring's point values, corrected to the fair estimator by hand
    m = pred.sizes["member"]
    points = xs.crps_ensemble(t, p, dim=[])
    pairs = np.abs(p.values[:, None] - p.values[None, :]).sum((0, 1))
    fair = points + pairs / (2 * m * m) - pairs / (2 * m * (m - 1))
    expected = fair.weighted(_weights_like(truth)).mean(NAN_DIMS)
    xr.testing.assert_allclose(metrics.crps(pred, truth), expected)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # NaN
def test_rank_histogram_with_nan_matches_xskillscore(sst: tuple) -> None:
    xs = pytest.importorskip("xskillscore")
    pred, truth = sst
    lat = np.array([-45.0, 45.0])  # equal weights: frequencies are plain counts
    pred, truth = pred.isel(latitude=[0, 3]), truth.isel(latitude=[0, 3])
    pred, truth = pred.assign_coords(latitude=lat), truth.assign_coords(latitude=lat)
    p, t = _policy(pred, truth)
    counts = xs.rank_histogram(t, p, dim=NAN_DIMS)
    hist = metrics.rank_histogram(pred, truth)
    np.testing.assert_allclose(hist.values, counts.values / counts.values.sum())
    assert float(hist.sum()) == pytest.approx(1.0)  # NaN truths are not counted as rank 0


def test_acc_and_ssr_use_the_same_points_throughout(sst: tuple) -> None:
    pred, truth = sst
    clim = truth.mean("time") * 0 + 290.0
    det = pred.mean("member", skipna=False)  # NaN where any member is
    p, t = _policy(pred, truth)
    w = _w()
    ok = np.isfinite(t.values)

    def space(x: np.ndarray) -> np.ndarray:  # weighted mean over the valid points, per time
        return (np.where(ok, x, 0) * w).sum((-2, -1)) / (ok * w).sum((-2, -1))

    def total(x: np.ndarray) -> float:  # weighted mean over the valid points and times
        return float((np.where(ok, x, 0) * w).sum() / (ok * w).sum())

    fa, oa = (p.mean("member") - clim).values, (t - clim).values
    expected_acc = (space(fa * oa) / np.sqrt(space(fa**2) * space(oa**2))).mean()
    assert float(metrics.acc(det, truth, clim)) == pytest.approx(expected_acc, rel=1e-12)
    m = pred.sizes["member"]
    spread = np.sqrt(total(p.var("member", ddof=1).values))
    skill = np.sqrt(total((p.mean("member") - t).values ** 2))
    ssr = np.sqrt((m + 1) / m) * spread / skill
    assert float(metrics.spread_skill_ratio(pred, truth)) == pytest.approx(ssr, rel=1e-12)
    weight = metrics.valid_weight(t)
    assert float(weight) == pytest.approx((ok * w).sum())
