"""assimilate: outputs, provenance, determinism, causality of the filter and input errors."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xappa
from xappa.core.diffusion.schedule import create_schedule
from xappa.observations import sample_gridded, sample_points, stations
from xappa.testing import mock_era5, tiny_model

CONFIG = xappa.SamplingConfig(steps=2, corrections=1)
FAST = {"members": 2, "sampling": CONFIG, "progress": False}


def _mask(ds: xr.Dataset, fraction: float, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    shape = (ds.sizes["latitude"], ds.sizes["longitude"])
    return xr.DataArray(
        rng.random(shape) < fraction,
        dims=("latitude", "longitude"),
        coords={"latitude": ds.latitude, "longitude": ds.longitude},
    )


@pytest.fixture(scope="module")
def model() -> xappa.Model:
    return tiny_model(seed=2)


@pytest.fixture(scope="module")
def truth(model: xappa.Model) -> xr.Dataset:
    return mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=6)


@pytest.fixture(scope="module")
def obs(truth: xr.Dataset) -> xr.Dataset:
    sites = stations([48.8, -33.9, 10.0], [2.35, 151.2, 250.0], names=["a", "b", "c"])
    return sample_points(truth, sites, error_std=0.5, seed=0)


def test_output_layout_units_and_provenance(model, truth, obs):
    out = xappa.assimilate(obs, model=model, window="6h", **FAST)
    assert out["2m_temperature"].dims == ("member", "time", "latitude", "longitude")
    assert dict(out.sizes) == {"member": 2, "time": 6, "latitude": 16, "longitude": 32}
    np.testing.assert_array_equal(out.time.values, truth.time.values)
    np.testing.assert_array_equal(out.member.values, [0, 1])
    assert out["2m_temperature"].attrs["units"] == "K"
    assert out["10m_v_component_of_wind"].attrs["standard_name"] == "northward_wind"
    assert out["2m_temperature"].attrs["xappa_n_obs"] == 18
    attrs = out.attrs
    assert attrs["xappa_model"] == "tiny"
    assert attrs["xappa_weight_hash"] == model.weight_hash
    assert attrs["xappa_version"] == xappa.__version__
    sampling = (attrs["xappa_sampling_sampler"], attrs["xappa_sampling_steps"])
    assert (*sampling, attrs["xappa_sampling_corrections"]) == ("pc", 2, 1)
    assert attrs["xappa_sampling_guidance"] == "mmps"
    assert xappa.SamplingConfig(**json.loads(attrs["xappa_sampling"])) == CONFIG
    assert "2m_temperature: 18" in attrs["xappa_n_obs"]
    assert all(np.isfinite(out[v].values).all() for v in out.data_vars)
    assert 150 < float(out["2m_temperature"].mean()) < 350


def test_schedule_spaces_the_noise_levels(model, obs, monkeypatch):
    """``schedule`` picks the noise levels the sampler visits, and is recorded."""
    import xappa.core.diffusion.sampler as sampler_module

    visited: dict[str, list[float]] = {}
    for name in ("rectified", "loglogit"):
        seen = visited.setdefault(name, [])
        original = sampler_module.Sampler._denoise

        def spy(self, x, sigma, cond, seen=seen, original=original):
            seen.append(float(sigma))
            return original(self, x, sigma, cond)

        monkeypatch.setattr(sampler_module.Sampler, "_denoise", spy)
        kw = {**FAST, "sampling": CONFIG.replace(sampler="ddim", steps=4, schedule=name)}
        out = xappa.assimilate(obs, model=model, window="6h", **kw)
        monkeypatch.undo()
        assert out.attrs["xappa_sampling_schedule"] == name
    t = torch.linspace(1, 0, 5, dtype=torch.float64)[:-1]
    for name, seen in visited.items():
        expected = create_schedule(name)(t).tolist()
        np.testing.assert_allclose(seen, expected, rtol=1e-5)


def test_same_seed_same_output(model, obs):
    a = xappa.assimilate(obs, model=model, window="6h", seed=3, **FAST)
    b = xappa.assimilate(obs, model=model, window="6h", seed=3, **FAST)
    c = xappa.assimilate(obs, model=model, window="6h", seed=4, **FAST)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a["2m_temperature"].values, c["2m_temperature"].values)


def test_explicit_window_and_stride(model, truth, obs):
    window = (truth.time.values[0], truth.time.values[-1])
    kw = {**FAST, "sampling": CONFIG.replace(guidance="dps")}
    out = xappa.assimilate(obs, model=model, window=window, stride=1, **kw)
    assert out.sizes["time"] == 6
    assert out.attrs["xappa_stride"] == 1


@pytest.mark.parametrize("order", ["descending", "ascending"], ids=["north-first", "south-first"])
def test_gridded_obs_conventions_out(model, truth, order):
    grid = truth if order == "descending" else truth.isel(latitude=slice(None, None, -1))
    grid = grid.assign_coords(longitude=((grid.longitude + 180) % 360 - 180)).sortby("longitude")
    gobs = sample_gridded(grid, _mask(grid, 0.05), error_std=0.5, seed=0)
    out = xappa.assimilate(gobs, model=model, window="6h", **FAST)
    lat = out.latitude.values
    assert (lat[0] > lat[-1]) == (order == "descending")
    assert float(out.longitude.min()) < 0
    np.testing.assert_array_equal(out.longitude.values, grid.longitude.values)


def test_filter_is_causal(model, truth, obs):
    kwargs = {"window": "6h", "mode": "filter", "seed": 5, **FAST}
    a = xappa.assimilate(obs, model=model, **kwargs)
    later = obs.copy(deep=True)
    later["2m_temperature"][4:] += 10.0  # change the observations of times 4 and 5
    b = xappa.assimilate(later, model=model, **kwargs)
    xr.testing.assert_identical(a.isel(time=slice(0, 4)), b.isel(time=slice(0, 4)))
    assert not np.allclose(a["2m_temperature"][:, 4:].values, b["2m_temperature"][:, 4:].values)
    assert a.attrs["xappa_mode"] == "filter"


def test_reanalysis_is_not_causal(model, obs):
    kwargs = {"window": "6h", "seed": 5, **FAST}
    a = xappa.assimilate(obs, model=model, **kwargs)
    later = obs.copy(deep=True)
    later["2m_temperature"][4:] += 10.0
    b = xappa.assimilate(later, model=model, **kwargs)
    assert not np.array_equal(a["2m_temperature"][:, :2].values, b["2m_temperature"][:, :2].values)


def _bad(obs: xr.Dataset, truth: xr.Dataset, kind: str) -> tuple[xr.Dataset, dict]:
    t2m = "2m_temperature"
    o = obs.copy(deep=True)
    kwargs: dict = {"window": "6h"}
    if kind == "outside":
        kwargs["window"] = (truth.time.values[0], truth.time.values[3])
    elif kind == "variable":
        o["sea_surface_temperature"] = o[t2m].copy()
    elif kind == "unknown-units":
        o[t2m].attrs["units"] = "furlongs"
    elif kind == "inconsistent-units":
        o[t2m].attrs["units"] = "m s-1"
    elif kind == "all-nan":
        o[t2m][:] = np.nan
    elif kind in ("zero-error", "negative-error"):
        o[f"{t2m}_error"] = o[f"{t2m}_error"] * (0.0 if kind == "zero-error" else -1.0)
    elif kind == "latitude":
        o = o.assign_coords(latitude=("station", [95.0, 0.0, 10.0]))
    elif kind == "short-window":
        kwargs["window"] = "30min"
    elif kind == "reversed-window":
        kwargs["window"] = (truth.time.values[3], truth.time.values[0])
    elif kind == "members":
        kwargs["members"] = 0
    return o, kwargs


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("outside", ValueError, "outside the window"),
        ("variable", KeyError, "not in spec"),
        ("unknown-units", ValueError, "unknown units"),
        ("inconsistent-units", ValueError, "'2m_temperature' has units 'm s-1'; expected .* 'K'"),
        ("all-nan", ValueError, "all NaN"),
        ("zero-error", ValueError, "must be positive"),
        ("negative-error", ValueError, "must be positive"),
        ("latitude", ValueError, r"latitude must lie within \[-90, 90\]"),
        ("short-window", ValueError, r"at least one model time step \(0 days 01:00:00\)"),
        ("reversed-window", ValueError, "end must not be before its start"),
        ("members", ValueError, r"members must be a positive int \(>= 1\); found 0"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.islower() and " " not in v else "",
)
def test_bad_input(model, truth, obs, kind, error, match):
    o, kwargs = _bad(obs, truth, kind)
    options = {**FAST, **kwargs}
    with pytest.raises(error, match=match):
        xappa.assimilate(o, model=model, **options)


def test_regrid_without_backend(model, truth, monkeypatch):
    coarse = truth.isel(latitude=slice(None, None, 2), longitude=slice(None, None, 2))
    gobs = sample_gridded(coarse, _mask(coarse, 0.2), error_std=0.5, seed=0)
    monkeypatch.setitem(sys.modules, "xesmf", None)
    monkeypatch.setitem(sys.modules, "xarray_regrid", None)
    with pytest.raises(ImportError, match="requires xarray-regrid"):
        xappa.assimilate(gobs, model=model, window="6h", **FAST)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"mode": "smoother"}, "mode must be one of"),
        ({"stride": 9}, "stride must be at most"),
        ({"window": "soon"}, "window must be None, a duration"),
        ({"sampling": "slowest"}, "sampling must be a SamplingConfig or one of"),
    ],
    ids=["mode", "stride", "window", "preset"],
)
def test_bad_settings(model, obs, option, match):
    options = {**FAST, "window": "6h", **option}
    with pytest.raises(ValueError, match=match):
        xappa.assimilate(obs, model=model, **options)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("sampler", "euler", r"SamplingConfig.sampler must be one of \[.*'pc'.*\]; found 'euler'"),
        ("guidance", "magic", r"SamplingConfig.guidance must be one of .*; found 'magic'"),
        ("schedule", "cosine", r"SamplingConfig.schedule must be one of .*; found 'cosine'"),
    ],
    ids=["sampler", "guidance", "schedule"],
)
def test_bad_sampling_fields(field, value, match):
    with pytest.raises(ValueError, match=match):
        xappa.SamplingConfig(**{field: value})


def test_obs_error_argument_and_window_start(model, truth):
    sites = stations([0.0], [90.0])
    o = sample_points(truth.isel(time=slice(2, 5)), sites, error_std=1.0, seed=0)
    o = o.drop_vars([v for v in o.data_vars if str(v).endswith("_error")])
    out = xappa.assimilate(o, model=model, window="3h", obs_error=0.5, **FAST)
    assert pd.Timestamp(out.time.values[0]) == pd.Timestamp(truth.time.values[2])


# A model trained for a few seconds on the shallow-water testbed --------------------------


@pytest.fixture(scope="module")
def testbed() -> tuple[xappa.Model, xr.Dataset]:
    from xappa.state.spec import StateSpec
    from xappa.testbeds.shallow_water import simulate

    with xappa.set_options(progress=False):
        ds = simulate(3, 4, nlat=16, nlon=32, spinup_days=2, seed=0)
    units = {"geopotential": "m2 s-2", "u_component_of_wind": "m s-1"}
    units["v_component_of_wind"] = "m s-1"
    spec = StateSpec(
        surface_variables=tuple(units),
        latitudes=ds.latitude.values,
        longitudes=ds.longitude.values,
        units=units,
        name="shallow-water",
    )
    train = ds.isel(trajectory=slice(0, 2))
    model = tiny_model(
        spec, data=train, train_steps=200, batch_size=8, lr=3e-3, lat_channels=8, name="sw"
    )
    return model, ds.isel(trajectory=2, drop=True)


@pytest.mark.slow
def test_trained_round_trip(testbed):
    model, truth = testbed
    out = xappa.decode(xappa.encode(truth, model=model), model=model)
    for v in model.spec.variables:
        rmse = float(np.sqrt(((out[v] - truth[v]) ** 2).mean()))
        assert rmse < 0.7 * float(truth[v].std()), v


@pytest.mark.slow
def test_trained_posterior_contracts_at_observations(testbed):
    model, truth = testbed
    truth = truth.isel(time=slice(10, 16))
    sites = stations([45.0, 30.0, 20.0, 60.0], [30.0, 200.0, 100.0, 300.0])
    error = {"geopotential": 20.0, "u_component_of_wind": 0.3, "v_component_of_wind": 0.3}
    obs = sample_points(truth, sites, error_std=error, seed=0)
    kwargs = {"window": (truth.time.values[0], truth.time.values[-1]), "members": 8}
    config = xappa.SamplingConfig(steps=8, corrections=1)
    kwargs.update(seed=0, progress=False)
    post = xappa.assimilate(obs, model=model, sampling=config, **kwargs)
    prior = xappa.assimilate(obs, model=model, sampling=config.replace(guidance=None), **kwargs)

    def at(d: xr.Dataset, v: str) -> xr.DataArray:
        return d[v].interp(latitude=obs.latitude, longitude=obs.longitude)

    for v in model.spec.variables:
        post_err = float(np.abs(at(post, v).mean("member") - obs[v]).mean())
        prior_err = float(np.abs(at(prior, v).mean("member") - obs[v]).mean())
        assert post_err < 0.5 * prior_err, v
        assert float(at(post, v).std("member").mean()) < float(at(prior, v).std("member").mean())
        far = {"latitude": slice(-50, -90)}  # the southern cap, far from every station
        far_post = float(post[v].sel(far).std("member").mean())
        far_prior = float(prior[v].sel(far).std("member").mean())
        assert far_post > 0.3 * far_prior, v


@pytest.mark.slow
def test_tutorial_runs_quick(tmp_path, monkeypatch):
    script = Path(__file__).parents[2] / "tutorials" / "assimilate_testbed.py"
    if not script.exists():
        pytest.skip("tutorials/ is not part of this installation")
    monkeypatch.setenv("XAPPA_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(script), "--quick"])
    runpy.run_path(str(script), run_name="__main__")
    assert (tmp_path / "assimilate_testbed.png").stat().st_size > 0


def test_single_time_window(model, truth):
    one = sample_points(truth.isel(time=[2]), stations([0.0], [90.0]), error_std=0.5, seed=0)
    out = xappa.assimilate(one, model=model, window="1h", **FAST)
    assert out.sizes["time"] == 1
    assert pd.Timestamp(out.time.values[0]) == pd.Timestamp(truth.time.values[2])


def test_max_batch_gives_the_same_ensemble(model, obs):
    a = xappa.assimilate(obs, model=model, window="6h", **FAST)
    b = xappa.assimilate(obs, model=model, window="6h", max_batch=1, **FAST)
    xr.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("guidance", ["dps", None], ids=["dps", "prior"])
def test_filter_with_other_guidance(model, obs, guidance):
    kw = {**FAST, "sampling": CONFIG.replace(guidance=guidance)}
    out = xappa.assimilate(obs, model=model, window="6h", mode="filter", **kw)
    assert out.sizes["time"] == 6
    assert all(np.isfinite(out[v].values).all() for v in out.data_vars)


@pytest.mark.parametrize("show", [True, False], ids=["progress", "quiet"])
def test_progress_bar_follows_the_option(model, obs, capsys, show):
    options = {**FAST, "progress": None}
    with xappa.set_options(progress=show):
        xappa.assimilate(obs, model=model, window="6h", **options)
    assert ("assimilate" in capsys.readouterr().err) == show


def test_a_run_states_its_cost_before_it_starts(model, obs, capsys, monkeypatch):
    """The plan (windows, members, denoiser calls) comes first; the first steps are the probe."""
    import xappa.options

    clock = iter([100.0, 102.5, 103.0])  # entering the bar, the ends of steps 1 and 2
    monkeypatch.setattr(xappa.options, "_clock", lambda: next(clock))
    config = CONFIG.replace(steps=4)
    xappa.assimilate(
        obs, model=model, window="6h", **{**FAST, "sampling": config, "progress": True}
    )
    err = capsys.readouterr().err
    calls = config.cost()["denoiser_calls"]  # 4 steps x (1 + 1 correction)
    plan = (
        f"assimilate (reanalysis): 2 window(s) x 2 member(s), {calls} denoiser calls"
        f" ({config.cost()['vjp']} VJPs) per window: {2 * 2 * calls} window evaluations"
    )
    assert plan in err
    # 2.5 s for the first step, then 0.5 s for each of the three others
    estimate = "assimilate: steps 1 and 2 of 4 took 2.5 s and 0.5 s; expect about 4.0 s in all"
    assert estimate in err
    assert err.index(plan) < err.index(estimate)


def test_denormals_flushed_only_while_sampling(model, obs, monkeypatch):
    import torch

    from xappa import assimilation

    tiny = torch.tensor([1e-40])  # a float32 denormal: zero when flushed
    seen = []
    original = assimilation._draw

    def spy(*args, **kwargs):
        seen.append(float(tiny * 1.0))
        return original(*args, **kwargs)

    monkeypatch.setattr(assimilation, "_draw", spy)
    xappa.assimilate(obs, model=model, window="6h", **FAST)
    assert seen == [0.0]
    assert float(tiny * 1.0) > 0  # restored afterwards
