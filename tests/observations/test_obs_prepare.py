"""Tests of xappa.observations.prepare_observations: layouts, units, errors, times."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xappa.core.guidance.observation import Observation
from xappa.observations import (
    ObservationSet,
    prepare_observations,
    sample_gridded,
    sample_points,
    stations,
)
from xappa.state.convert import dataset_to_tensor
from xappa.state.spec import StateSpec, era5_spec
from xappa.state.stats import compute_stats, standardize, stats_to_tensors
from xappa.testing import mock_era5

NLAT, NLON = 10, 16
SURFACE = ("2m_temperature", "mean_sea_level_pressure", "sea_surface_temperature")
LEVEL = ("temperature", "geopotential")
LEVELS = (500.0, 850.0)


def make_spec(lat_order: str = "descending") -> StateSpec:
    spec = era5_spec(
        nlat=NLAT, nlon=NLON, surface_variables=SURFACE, level_variables=LEVEL, levels=LEVELS
    )
    if lat_order == "ascending":
        spec = dataclasses.replace(spec, latitudes=spec.latitudes[::-1])
    return spec


SPEC = make_spec()
TRUTH = mock_era5(variables=[*SURFACE, *LEVEL], levels=LEVELS, nlat=NLAT, nlon=NLON, ntime=3)
STATS = compute_stats(TRUTH, SPEC)
WINDOW = (TRUTH.time.values[0], TRUTH.time.values[-1])
SITES = stations([45.0, -33.9, 10.0, 80.0], [2.0, 151.2, 359.5, -100.0])


def standardized_truth(spec: StateSpec = SPEC) -> torch.Tensor:
    x, _ = dataset_to_tensor(TRUTH, spec, dtype=torch.float64)
    mean, std = stats_to_tensors(STATS, spec, dtype=torch.float64)
    return standardize(x, mean, std)[0]


def check_exact(o: ObservationSet, x: torch.Tensor) -> None:
    for t, step in enumerate(o):
        if step is not None:
            got = step.operator(x[t])
            torch.testing.assert_close(got, step.values.double(), rtol=1e-5, atol=1e-5)


def test_gridded_on_model_grid_is_gather_of_finite_cells() -> None:
    mask = TRUTH.latitude > 20
    obs = sample_gridded(TRUTH, mask, error_std=0.0, variables=["temperature"])
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    n_cells = int(mask.sum()) * NLON * len(LEVELS)
    assert [len(s) for s in o] == [n_cells] * 3
    x = standardized_truth()
    check_exact(o, x)
    step = o[1]
    channels = step.operator.index[:, 0] // (NLAT * NLON)
    assert set(channels.tolist()) == {SPEC.channel_index("temperature", lev) for lev in LEVELS}
    assert int(o.counts["n_nan"].sel(variable="temperature")) == 3 * 2 * NLAT * NLON - 3 * n_cells


def flip(ds: xr.Dataset) -> xr.Dataset:
    """Reverse latitude and move longitude to -180..180 (unsorted is fine)."""
    lon = ((ds.longitude + 180) % 360) - 180
    return ds.isel(latitude=slice(None, None, -1)).assign_coords(longitude=lon)


@pytest.mark.parametrize("layout", ["gridded", "points"])
def test_input_order_and_convention_do_not_matter(layout: str) -> None:
    if layout == "gridded":
        obs = sample_gridded(
            TRUTH, TRUTH.longitude < 100, error_std=0.5, variables=["2m_temperature"]
        )
        other = flip(obs)
    else:
        obs = sample_points(TRUTH, SITES, error_std=0.5, variables=["2m_temperature"])
        lon = ((obs.longitude + 180) % 360) - 180
        other = obs.assign_coords(longitude=lon)
    a = prepare_observations(obs, SPEC, STATS, window=WINDOW)
    b = prepare_observations(other, SPEC, STATS, window=WINDOW)
    x = standardized_truth()
    for sa, sb in zip(a, b, strict=True):
        torch.testing.assert_close(sa.values, sb.values)
        torch.testing.assert_close(sa.operator(x[0]), sb.operator(x[0]))


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_spec_latitude_order_gives_the_same_values(method: str) -> None:
    obs = sample_points(TRUTH, SITES, error_std=0.0, variables=["2m_temperature"])
    outs = []
    for order in ("descending", "ascending"):
        spec = make_spec(order)
        o = prepare_observations(obs, spec, STATS, window=WINDOW, method=method, obs_error=1.0)
        outs.append(o[2].operator(standardized_truth(spec)[2]))
    torch.testing.assert_close(outs[0], outs[1])


def test_points_bilinear_reproduce_sampled_truth() -> None:
    obs = sample_points(TRUTH, SITES, error_std=0.0, variables=["2m_temperature", "temperature"])
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    assert o.n_obs == 3 * 4 * (1 + len(LEVELS))
    check_exact(o, standardized_truth())
    assert o.counts["n_obs"].sel(variable="temperature").values.tolist() == [8, 8, 8]


def test_points_nearest_reads_the_nearest_cell() -> None:
    site = stations([41.0], [24.0])  # nearest cell: 50N? no: grid lat step 20, so 30N or 50N
    obs = sample_points(
        TRUTH, site, error_std=1.0, variables=["2m_temperature"], times=TRUTH.time[:1]
    )
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, method="nearest")
    cell = int(o[0].operator.index[0, 0]) % (NLAT * NLON)
    lat, lon = SPEC.latitudes[cell // NLON], SPEC.longitudes[cell % NLON]
    dlat = np.abs(np.asarray(SPEC.latitudes) - 41.0).min()
    assert abs(lat - 41.0) == pytest.approx(dlat)
    assert lon == 22.5


def test_gridded_other_grid_is_regridded() -> None:
    coarse = mock_era5(variables=["2m_temperature"], nlat=7, nlon=12, ntime=3)
    linear = coarse.latitude * 0.5 + 280.0 + 0 * coarse.longitude + 0 * coarse["2m_temperature"]
    coarse["2m_temperature"] = linear.transpose(*coarse["2m_temperature"].dims).assign_attrs(
        units="K"
    )
    o = prepare_observations(coarse, SPEC, STATS, window=WINDOW, obs_error=1.0)
    assert "regridded (linear)" in o.describe()
    mean, std = stats_to_tensors(STATS, SPEC, dtype=torch.float64)
    c = SPEC.channel_index("2m_temperature")
    phys = o[0].values.double() * std[c] + mean[c]
    cells = o[0].operator.index[:, 0] % (NLAT * NLON)
    lat = torch.tensor(SPEC.latitudes, dtype=torch.float64)[cells // NLON]
    torch.testing.assert_close(phys, lat * 0.5 + 280.0, rtol=1e-6, atol=1e-3)


def test_regrid_without_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xarray_regrid", None)
    monkeypatch.setitem(sys.modules, "xesmf", None)
    coarse = mock_era5(variables=["2m_temperature"], nlat=7, nlon=12, ntime=1)
    with pytest.raises(
        ImportError, match=r"requires xarray-regrid; pip install 'xappa\[regrid\]'"
    ):
        prepare_observations(coarse, SPEC, STATS, window=WINDOW, obs_error=1.0)


def test_regrid_none_raises_on_other_grid() -> None:
    coarse = mock_era5(variables=["2m_temperature"], nlat=7, nlon=12, ntime=1)
    with pytest.raises(ValueError, match="does not match the spec grid.*pass regrid="):
        prepare_observations(coarse, SPEC, STATS, window=WINDOW, obs_error=1.0, regrid=None)


def _malformed(kind: str) -> xr.Dataset:
    coarse = mock_era5(variables=["2m_temperature"], nlat=7, nlon=12, ntime=1)
    lat, lon = coarse.latitude.values.copy(), coarse.longitude.values.copy()
    if kind == "repeated-latitude":
        lat[3] = lat[2]
    elif kind == "unordered-latitude":
        lat[[2, 4]] = lat[[4, 2]]
    elif kind == "repeated-longitude-after-wrapping":
        lon[-1] = lon[0] + 360.0
    elif kind == "spec-shaped-repeated-latitude":
        ds = TRUTH[["2m_temperature"]].isel(time=[0])
        bad = ds.latitude.values.copy()
        bad[1] = bad[0]
        return ds.assign_coords(latitude=bad)
    return coarse.assign_coords(latitude=lat, longitude=lon)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("repeated-latitude", r"latitude must be strictly monotonic.*found .* at position 3"),
        ("unordered-latitude", r"latitude must be strictly monotonic.*at position 3"),
        ("spec-shaped-repeated-latitude", r"latitude must be strictly monotonic.*position 1"),
        ("repeated-longitude-after-wrapping", r"longitude must hold each meridian once.*2 values"),
    ],
    ids=["repeated-lat", "unordered-lat", "spec-shaped-repeated-lat", "repeated-lon"],
)
@pytest.mark.parametrize("regrid", ["linear", None], ids=["regrid", "no-regrid"])
def test_malformed_grid_is_an_error_not_a_regrid(kind: str, match: str, regrid) -> None:
    with pytest.raises(ValueError, match=match):
        prepare_observations(
            _malformed(kind), SPEC, STATS, window=WINDOW, obs_error=1.0, regrid=regrid
        )


@pytest.mark.parametrize(
    ("variable", "units", "convert"),
    [
        ("2m_temperature", "degC", lambda v: v - 273.15),
        ("mean_sea_level_pressure", "hPa", lambda v: v / 100.0),
    ],
    ids=["degC", "hPa"],
)
def test_units_are_converted(variable: str, units: str, convert) -> None:
    obs = sample_points(TRUTH, SITES, error_std=0.0, variables=[variable])
    ref = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    other = obs.drop_vars(f"{variable}_error")
    other[variable] = convert(obs[variable].astype("float64")).assign_attrs(units=units)
    err = 1.0 if units == "degC" else 0.01  # 1 K and 1 Pa
    o = prepare_observations(other, SPEC, STATS, window=WINDOW, obs_error={variable: err})
    torch.testing.assert_close(o[0].values, ref[0].values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o[0].variances, ref[0].variances)


Q_SPEC = era5_spec(
    nlat=NLAT,
    nlon=NLON,
    surface_variables=(),
    level_variables=("specific_humidity",),
    levels=LEVELS,
)
Q_TRUTH = mock_era5(variables=["specific_humidity"], levels=LEVELS, nlat=NLAT, nlon=NLON, ntime=3)


@pytest.mark.parametrize(
    ("variable", "claimed", "numbers", "likely"),
    [
        ("2m_temperature", "K", lambda v: v - 273.15, "degC"),
        ("temperature", "degC", lambda v: v, "K"),
        ("mean_sea_level_pressure", "Pa", lambda v: v / 100.0, "hPa"),
        ("geopotential", "m2 s-2", lambda v: v / 9.80665, "m"),
        ("specific_humidity", "kg kg-1", lambda v: v * 1000.0, "g kg-1"),
    ],
    ids=["degC-as-K", "K-as-degC", "hPa-as-Pa", "height-as-geopotential", "g/kg-as-kg/kg"],
)
def test_values_that_contradict_their_units_are_refused(
    variable: str, claimed: str, numbers, likely: str
) -> None:
    spec, truth = (Q_SPEC, Q_TRUTH) if variable == "specific_humidity" else (SPEC, TRUTH)
    stats = compute_stats(truth, spec)
    obs = sample_points(truth, SITES, error_std=0.0, variables=[variable])
    obs = obs.drop_vars(f"{variable}_error")
    ref = prepare_observations(obs, spec, stats, window=WINDOW, obs_error=1.0)
    lying = obs.copy()
    lying[variable] = numbers(obs[variable].astype("float64")).assign_attrs(units=claimed)
    with pytest.raises(
        ValueError,
        match=rf"obs variable '{variable}' has units '{claimed}', but 100% of its"
        rf" {ref.n_obs} value\(s\) lie more than 10 standard deviations.*"
        rf"look like values in '{likely}'.*pass check_values=False",
    ):
        prepare_observations(lying, spec, stats, window=WINDOW, obs_error=1.0)
    # an expert may insist; the suggested units give back the true values
    forced = prepare_observations(
        lying, spec, stats, window=WINDOW, obs_error=1.0, check_values=False
    )
    assert forced.n_obs == ref.n_obs
    fixed = lying.copy()
    fixed[variable].attrs["units"] = likely
    o = prepare_observations(fixed, spec, stats, window=WINDOW, obs_error=1.0)
    torch.testing.assert_close(o[0].values, ref[0].values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n_extreme", "refused"), [(6, False), (7, True)], ids=["half", "most"])
def test_extreme_values_are_refused_only_when_most_are(n_extreme: int, refused: bool) -> None:
    v = "mean_sea_level_pressure"
    obs = sample_points(TRUTH, SITES, error_std=1.0, variables=[v])
    mean, std = (float(STATS[v].sel(statistic=k)) for k in ("mean", "std"))
    values = obs[v].values.copy()
    values.flat[:n_extreme] = mean - 30 * std  # e.g. a deep cyclone, far outside the mock's
    obs[v] = obs[v].copy(data=values)
    assert obs[v].size == 12
    if not refused:
        assert prepare_observations(obs, SPEC, STATS, window=WINDOW).n_obs == 12
        return
    with pytest.raises(ValueError, match=r"58% of its 12 value\(s\).*no common unit mistake"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW)


def test_error_std_sources() -> None:
    obs = sample_points(TRUTH, SITES, error_std=2.0, variables=["2m_temperature"])
    std = float(STATS["2m_temperature"].sel(statistic="std"))
    from_anc = prepare_observations(obs, SPEC, STATS, window=WINDOW)
    torch.testing.assert_close(from_anc[0].variances, torch.full((4,), (2.0 / std) ** 2))
    scalar = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=3.0)
    torch.testing.assert_close(scalar[0].variances, torch.full((4,), (3.0 / std) ** 2))
    mapping = prepare_observations(
        obs, SPEC, STATS, window=WINDOW, obs_error={"2m_temperature": 4}
    )
    torch.testing.assert_close(mapping[0].variances, torch.full((4,), (4.0 / std) ** 2))
    per_point = obs.copy()
    per_point["2m_temperature_error"] = xr.DataArray(
        [1.0, 2.0, 3.0, 4.0], dims="station"
    ).assign_attrs(obs["2m_temperature_error"].attrs)
    o = prepare_observations(per_point, SPEC, STATS, window=WINDOW)
    torch.testing.assert_close(o[0].variances, (torch.arange(1.0, 5.0) / std) ** 2)


def test_times_snap_to_nearest_step_within_half_a_step() -> None:
    t0 = pd.Timestamp(WINDOW[0])
    times = [t0 + pd.Timedelta(m, "min") for m in (20, 30, 40, 150)]
    obs = xr.Dataset(
        {"2m_temperature": ("obs", [280.0, 281.0, 282.0, 283.0], {"units": "K"})},
        coords={
            "time": ("obs", times),
            "latitude": ("obs", [0.0] * 4),
            "longitude": ("obs", [0.0] * 4),
        },
    )
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    assert o.counts["n_obs"].sum("variable").values.tolist() == [2, 1, 1]
    late = obs.assign_coords(time=("obs", [t0 + pd.Timedelta(m, "min") for m in (0, 0, 0, 151)]))
    with pytest.raises(ValueError, match="outside the window"):
        prepare_observations(late, SPEC, STATS, window=WINDOW, obs_error=1.0)


def test_observation_for_guidance_reads_frames() -> None:
    obs = sample_points(
        TRUTH, SITES, error_std=0.0, variables=["2m_temperature"], times=TRUTH.time[1:]
    )
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0).to("cpu")
    assert o[0] is None
    x = standardized_truth()[None]  # (1, T, C, H, W)
    guidance = o.observation()
    assert isinstance(guidance, Observation)
    torch.testing.assert_close(guidance.operator(x), o.apply(x))
    torch.testing.assert_close(
        guidance.operator(x)[0].float(), guidance.values, atol=1e-5, rtol=1e-5
    )
    v = torch.randn_like(x)
    _, tangent = torch.func.jvp(guidance.operator, (x,), (v,))
    torch.testing.assert_close(tangent, guidance.operator(v))
    decoded = o.observation([1, 2], decode=lambda z: 2 * z)
    assert decoded.operator(x[:, 1:]).shape == (1, 8)
    assert o.observation([0]) is None


def test_mixed_inputs_and_describe() -> None:
    points = sample_points(TRUTH, SITES, error_std=0.5, variables=["2m_temperature"])
    grid = sample_gridded(TRUTH, TRUTH.latitude < 0, error_std=1.0, variables=["geopotential"])
    o = prepare_observations([points, grid], SPEC, STATS, times=TRUTH.time.values)
    text = o.describe()
    assert "2m_temperature: 12 values" in text and "geopotential" in text
    assert o.n_obs == 12 + 3 * 2 * NLON * 5


# -- bad input: each message is matched ------------------------------------------------------


def point_obs(**attrs) -> xr.Dataset:
    return xr.Dataset(
        {"2m_temperature": ("obs", [280.0, 281.0], {"units": "K", **attrs})},
        coords={
            "time": ("obs", [pd.Timestamp(WINDOW[0])] * 2),
            "latitude": ("obs", [10.0, 20.0]),
            "longitude": ("obs", [0.0, 30.0]),
        },
    )


def test_bad_variable_not_in_spec() -> None:
    obs = point_obs().rename({"2m_temperature": "relative_humidity"})
    with pytest.raises(KeyError, match=r"\['relative_humidity'\] are not in spec 'era5'"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)


@pytest.mark.parametrize(
    ("units", "match"),
    [("furlongs", "has units 'furlongs'"), ("m s-1", "has units 'm s-1'; expected units")],
    ids=["unknown", "inconsistent"],
)
def test_bad_units(units: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prepare_observations(point_obs(units=units), SPEC, STATS, window=WINDOW, obs_error=1.0)


def test_bad_missing_units() -> None:
    obs = point_obs()
    del obs["2m_temperature"].attrs["units"]
    with pytest.raises(ValueError, match="has no units attribute"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)


@pytest.mark.parametrize("layout", ["points", "gridded"])
def test_bad_all_nan(layout: str) -> None:
    if layout == "points":
        obs = point_obs()
        obs["2m_temperature"][:] = np.nan
    else:
        obs = sample_gridded(
            TRUTH, TRUTH.latitude > 100, error_std=1.0, variables=["2m_temperature"]
        )
    with pytest.raises(ValueError, match="'2m_temperature' is all NaN"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)


@pytest.mark.parametrize("value", [0.0, -1.0], ids=["zero", "negative"])
def test_bad_error_std(value: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        prepare_observations(point_obs(), SPEC, STATS, window=WINDOW, obs_error=value)
    obs = sample_points(TRUTH, SITES, error_std=value if value >= 0 else 0.0)
    with pytest.raises(ValueError, match="must be positive and finite where a value is observed"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW)


def test_bad_missing_error_std() -> None:
    with pytest.raises(ValueError, match="no error standard deviation"):
        prepare_observations(point_obs(), SPEC, STATS, window=WINDOW)
    with pytest.raises(KeyError, match="obs_error names variable"):
        prepare_observations(point_obs(), SPEC, STATS, window=WINDOW, obs_error={"foo": 1.0})


def test_bad_latitude() -> None:
    obs = point_obs().assign_coords(latitude=("obs", [10.0, 95.0]))
    with pytest.raises(ValueError, match=r"latitude must lie within \[-90, 90\].*found 95"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)


def test_bad_level() -> None:
    obs = sample_points(TRUTH, SITES, error_std=1.0, variables=["temperature"]).assign_coords(
        level=[500, 700]
    )
    with pytest.raises(KeyError, match="level 700 hPa, not a level of spec"):
        prepare_observations(obs, SPEC, STATS, window=WINDOW)


def test_bad_window_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one of window"):
        prepare_observations(point_obs(), SPEC, STATS, obs_error=1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        prepare_observations(point_obs(), SPEC, STATS, window=WINDOW, method="cubic")


def test_cf_point_data_with_level_coordinate() -> None:
    t = pd.Timestamp(WINDOW[0])
    obs = xr.Dataset(
        {"temperature": ("obs", [250.0, 270.0, np.nan], {"units": "K"})},
        coords={
            "time": ("obs", [t, t, t]),
            "latitude": ("obs", [0.0, 10.0, 20.0]),
            "longitude": ("obs", [0.0, 10.0, 20.0]),
            "level": ("obs", [50000.0, 85000.0, 50000.0], {"units": "Pa"}),
        },
    )
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    channels = (o[0].operator.index[:, 0] // (NLAT * NLON)).tolist()
    assert channels == [
        SPEC.channel_index("temperature", 500),
        SPEC.channel_index("temperature", 850),
    ]
    assert int(o.counts["n_nan"].sel(variable="temperature")) == 1


def test_gridded_scalar_time_and_level_subset() -> None:
    field = TRUTH["temperature"].isel(time=1).sel(level=[850])
    obs = xr.Dataset({"temperature": field.where(field.latitude > 0)})
    o = prepare_observations(obs, SPEC, STATS, window=WINDOW, obs_error=1.0)
    assert [s is None for s in o] == [True, False, True]
    assert len(o[1]) == 5 * NLON
    check_exact(o, standardized_truth())
