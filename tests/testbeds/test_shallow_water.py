"""The shallow-water testbed: layout, CF metadata, conservation, realism and errors."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import cf_xarray  # noqa: F401
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xappa.testbeds._shallow_water_core import (
    balanced_initial_condition,
    band_variance,
    make_solver,
    spectral_noise,
)
from xappa.testbeds.shallow_water import (
    StochasticForcing,
    area_weights,
    default_dt,
    diagnose,
    run_solver,
    simulate,
    write_zarr,
)

DIMS = ("trajectory", "time", "latitude", "longitude")
SMALL = {"nlat": 16, "nlon": 32, "spinup_days": 0}


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    """The default 32 x 64 testbed after a 4-day spin-up: 2 trajectories x 3 days."""
    return simulate(trajectories=2, days=3, spinup_days=4, seed=0, start="2001-03-01")


@pytest.fixture(scope="module")
def stats(ds: xr.Dataset) -> dict[str, float]:
    return diagnose(ds)


@pytest.mark.slow
def test_layout(ds: xr.Dataset) -> None:
    assert ds["geopotential"].dims == DIMS
    assert dict(ds.sizes) == {"trajectory": 2, "time": 72, "latitude": 32, "longitude": 64}
    for var in ds.data_vars.values():
        assert var.dtype == np.float32
        assert np.isfinite(var.values).all()
    np.testing.assert_allclose(ds.latitude, np.linspace(90, -90, 32), atol=1e-9)
    np.testing.assert_allclose(ds.longitude, np.arange(64) * 5.625)
    times = pd.DatetimeIndex(ds.time.values)
    assert times[0] == pd.Timestamp("2001-03-01")
    assert (np.diff(times) == pd.Timedelta("1h")).all()


@pytest.mark.slow
def test_cf_metadata(ds: xr.Dataset) -> None:
    assert ds.cf["latitude"].name == "latitude"
    assert ds.cf["longitude"].name == "longitude"
    assert ds.cf["time"].name == "time"
    assert ds.cf.axes == {"X": ["longitude"], "Y": ["latitude"], "T": ["time"]}
    assert ds.cf["eastward_wind"].name == "u_component_of_wind"
    assert ds.cf["northward_wind"].attrs["units"] == "m s-1"
    assert ds.cf["geopotential"].attrs["units"] == "m2 s-2"
    assert ds.attrs["dt_seconds"] == 600.0
    assert ds.attrs["seed"] == 0


@pytest.mark.slow
def test_global_mean_geopotential_is_conserved(ds: xr.Dataset, stats: dict) -> None:
    mean = ds["geopotential"].astype("f8").weighted(area_weights(ds))
    mean = mean.mean(("latitude", "longitude"))
    drift = abs(mean / mean.isel(time=0) - 1).max("time")
    assert (drift < 1e-6).all(), drift.values
    assert stats["mass_drift"] < 1e-6
    np.testing.assert_allclose(mean.isel(time=0), 9.80616e4, rtol=0.02)


@pytest.mark.slow
def test_flow_is_realistic(stats: dict) -> None:
    assert 15 <= stats["peak_wind"] <= 80, stats
    assert stats["lag1h_correlation"] >= 0.99, stats
    assert 0.3 <= stats["lag24h_correlation"] <= 0.9, stats
    assert 500 <= stats["geopotential_std"] <= 6000, stats


@pytest.mark.slow
def test_geostrophic_sign(ds: xr.Dataset) -> None:
    # Northern mid-latitudes: u ~ -(1 / f a) dPhi/dlat, so u and -dPhi/dlat correlate.
    band = ds.isel(trajectory=0, time=-1).sel(latitude=slice(70, 30))
    dphi = band["geopotential"].differentiate("latitude")
    corr = xr.corr(band["u_component_of_wind"], -dphi)
    assert float(corr) > 0.5


def test_seed_is_deterministic_and_trajectories_independent() -> None:
    one = simulate(trajectories=1, days=0.25, seed=5, **SMALL)
    two = simulate(trajectories=2, days=0.25, seed=5, **SMALL)
    xr.testing.assert_identical(one, two.isel(trajectory=[0]))
    assert not np.allclose(two.geopotential[0], two.geopotential[1])
    other = simulate(trajectories=1, days=0.25, seed=6, **SMALL)
    assert not np.allclose(one.geopotential, other.geopotential)


def test_unforced_conserves_mass() -> None:
    ds = simulate(trajectories=1, days=1, forcing=None, **SMALL)
    assert ds.attrs["forcing"] == "none"
    assert diagnose(ds)["mass_drift"] < 1e-6


def test_area_weights_are_exact() -> None:
    ds = simulate(trajectories=1, days=1 / 24, **SMALL)
    w = area_weights(ds)
    assert w.dims == ("latitude",)
    np.testing.assert_allclose(float(w.mean()), 1.0)
    sin2 = np.sin(np.deg2rad(ds.latitude)) ** 2 + 0 * ds.longitude
    np.testing.assert_allclose(float(sin2.weighted(w).mean()), 1 / 3, rtol=1e-12)


def test_write_zarr_round_trip(tmp_path) -> None:
    ds = simulate(trajectories=2, days=2, **SMALL)
    path = tmp_path / "swe.zarr"
    write_zarr(ds, path)
    back = xr.open_zarr(path, consolidated=False)
    assert back["geopotential"].encoding["chunks"] == (1, 24, 16, 32)
    xr.testing.assert_identical(back.load(), ds)
    with pytest.raises(FileExistsError):
        write_zarr(ds, path)
    write_zarr(ds.isel(time=slice(0, 5)), path, overwrite=True)
    assert xr.open_zarr(path, consolidated=False).sizes["time"] == 5


@pytest.mark.parametrize(
    ("nlat", "dt"), [(16, 1200.0), (32, 600.0), (64, 300.0), (48, 400.0)], ids=str
)
def test_default_dt(nlat: int, dt: float) -> None:
    assert default_dt(nlat) == dt


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"trajectories": 0}, ValueError, "trajectories must be >= 1; found 0"),
        ({"trajectories": 1.5}, TypeError, "trajectories must be an int; found float"),
        ({"days": 0.01}, ValueError, "days must be a whole number of hours"),
        ({"spinup_days": -1}, ValueError, "spinup_days must be a whole number"),
        ({"days": float("inf")}, ValueError, "days must be a whole number"),
        ({"nlat": 4}, ValueError, "nlat must be >= 8; found 4"),
        ({"nlon": 8}, ValueError, "nlon must be >= 16; found 8"),
        ({"peak_wind": -1.0}, ValueError, "peak_wind must be a positive speed"),
        ({"dt": 700.0}, ValueError, "dt must divide 3600 s; found 700.0"),
        ({"start": "someday"}, ValueError, "start must be a date like '2000-01-01'"),
        ({"forcing": "yes"}, TypeError, "forcing must be a StochasticForcing or None"),
        (
            {"forcing": StochasticForcing(band=(7, 9))},
            ValueError,
            r"forcing band must start at degree <= 5 at nlat=16",
        ),
    ],
    ids=[
        "trajectories",
        "trajectories-type",
        "days",
        "spinup",
        "days-inf",
        "nlat",
        "nlon",
        "wind",
        "dt",
        "start",
        "forcing-type",
        "band",
    ],
)
def test_simulate_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"nlat": 16, "nlon": 32, **kwargs}
    with pytest.raises(error, match=match):
        simulate(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"amplitude": -1.0}, "amplitude must be finite and >= 0"),
        ({"timescale": "soon"}, "timescale must be a duration"),
        ({"drag": "-1D"}, "drag must be a positive duration"),
        ({"band": (0, 3)}, "band must be"),
    ],
    ids=["amplitude", "timescale", "drag", "band"],
)
def test_forcing_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StochasticForcing(**kwargs)


def test_area_weights_rejects_other_grids() -> None:
    bad = xr.Dataset(coords={"latitude": np.linspace(-90, 90, 8)})
    with pytest.raises(ValueError, match="equiangular grid from 90 to -90"):
        area_weights(bad)
    with pytest.raises(KeyError, match="missing coordinate 'latitude'"):
        area_weights(xr.Dataset())


@pytest.mark.slow
def test_diagnose_rejects_missing_variables(ds: xr.Dataset) -> None:
    with pytest.raises(KeyError, match="missing variables"):
        diagnose(ds.drop_vars("geopotential"))


@pytest.mark.slow
def test_tutorial_runs_quick(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Path(__file__).parents[2] / "tutorials" / "shallow_water.py"
    if not script.exists():
        pytest.skip("tutorials/ is not part of this installation")
    monkeypatch.setenv("XAPPA_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(script), "--quick"])
    runpy.run_path(str(script), run_name="__main__")
    assert (tmp_path / "shallow_water.zarr").exists()


def test_blocks_of_trajectories_append(tmp_path) -> None:
    whole = simulate(trajectories=3, days=0.25, seed=2, **SMALL)
    path = tmp_path / "swe.zarr"
    write_zarr(simulate(trajectories=2, days=0.25, seed=2, **SMALL), path)
    block = simulate(trajectories=1, days=0.25, seed=2, first_trajectory=2, **SMALL)
    np.testing.assert_array_equal(block.trajectory, [2])
    write_zarr(block, path, append=True)
    xr.testing.assert_identical(xr.open_zarr(path, consolidated=False).load(), whole)
    with pytest.raises(ValueError, match="append=True or overwrite=True, not both"):
        write_zarr(block, path, append=True, overwrite=True)


def test_initial_condition_is_balanced() -> None:
    solver = make_solver(32, 64, 600.0, None)
    state = balanced_initial_condition(solver, np.random.default_rng(0), 40.0)
    assert state.shape == (3, 11, 11)
    assert float(state[2].abs().max()) == 0.0
    grid = solver.gethuv(state)
    np.testing.assert_allclose(float(grid[1:].square().sum(0).sqrt().max()), 40.0)
    ratios = []
    for _ in range(24):  # the divergence stays small: no gravity-wave burst
        state = solver.timestep(state, 6)
        vrt, div = solver.spec2grid(state[1:])
        ratios.append(float(div.square().mean().sqrt() / vrt.square().mean().sqrt()))
    assert max(ratios) < 0.15, ratios


def test_forcing_noise_has_unit_mean_square() -> None:
    solver = make_solver(32, 64, 600.0, StochasticForcing())
    rng = np.random.default_rng(0)
    variance = band_variance(solver, (3, 8))
    w = solver.quad_weights[:, 0] / solver.quad_weights.sum() / solver.nlon
    fields = [solver.spec2grid(spectral_noise(solver, rng, variance)) for _ in range(200)]
    mean_square = np.mean([float((f.square() * w[:, None]).sum()) for f in fields])
    np.testing.assert_allclose(mean_square, 1.0, rtol=0.1)


def test_run_solver_continues_a_trajectory_from_its_own_state() -> None:
    """From a state on the grid, the unforced solver gives back the unforced truth's next hours."""
    truth = simulate(1, 0.5, nlat=16, nlon=32, spinup_days=0, seed=3, forcing=None)
    truth = truth.isel(trajectory=0)
    out = run_solver(truth.isel(time=2), 5, forcing=None)
    np.testing.assert_array_equal(out["time"].values, truth["time"].values[3:8])
    for name in truth.data_vars:
        scale = float(np.abs(truth[name]).max())
        np.testing.assert_allclose(
            out[name], truth[name].isel(time=slice(3, 8)), atol=1e-6 * scale
        )
    forced = run_solver(truth.isel(time=2), 5, seed=1)  # drag and one forcing realization
    assert not np.allclose(forced["u_component_of_wind"], out["u_component_of_wind"])


def test_run_solver_rejects_bad_states() -> None:
    truth = simulate(1, 0.25, nlat=16, nlon=32, spinup_days=0, seed=3).isel(trajectory=0)
    with pytest.raises(ValueError, match="one time"):
        run_solver(truth, 2)
    with pytest.raises(KeyError, match="missing"):
        run_solver(truth.isel(time=0)[["geopotential"]], 2)
    with pytest.raises(ValueError, match="latitude 90 to -90"):
        run_solver(truth.isel(time=0).isel(latitude=slice(None, None, -1)), 2)
    with pytest.raises(ValueError, match="hours"):
        run_solver(truth.isel(time=0), 0)
