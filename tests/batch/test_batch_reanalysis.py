"""In-process batch reanalysis: window layout, store layout, agreement with assimilate, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xappa
import xappa.batch
from xappa.batch import plan_windows, task_seed

from .conftest import FAST, N_TIMES, N_WINDOWS, RUN, SEED, open_store

VARIABLES = ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind")


@pytest.mark.parametrize(
    ("n_times", "window", "overlap", "starts", "owned"),
    [
        (31, 8, 3, [0, 5, 10, 15, 20, 23], [0, 7, 12, 17, 22, 26]),  # last window shifted
        (24, 8, 0, [0, 8, 16], [0, 8, 16]),  # no overlap: each window owns itself
        (8, 8, 4, [0], [0]),  # the period is one window
        (12, 4, 3, list(range(9)), [0, *range(3, 11)]),  # 4 windows overlap; ties: earlier
    ],
)
def test_plan_windows(n_times, window, overlap, starts, owned):
    end = pd.Timestamp("2021-01-01") + pd.Timedelta(hours=n_times - 1)
    lay = plan_windows("2021-01-01", end, f"{window}h", f"{overlap}h", "1h")
    assert lay.starts.tolist() == starts
    assert lay.owned_starts.tolist() == owned
    assert (lay.stops - lay.starts == window).all() and lay.stops[-1] == n_times
    assert lay.owned_stops[-1] == n_times and (lay.owned_stops[:-1] == lay.owned_starts[1:]).all()
    # every time is owned by the window whose centre is nearest (ties: the earlier one)
    centres = (lay.starts + lay.stops - 1) / 2
    for t in range(n_times):
        k = int(np.searchsorted(lay.owned_starts, t, side="right") - 1)
        assert lay.starts[k] <= t < lay.stops[k]
        assert abs(t - centres[k]) == np.abs(t - centres).min()


@pytest.mark.timeout(120)
def test_store_layout(reference, truth, model_dir):
    ds = open_store(reference)
    assert dict(ds.sizes) == {
        "member": 2,
        "time": N_TIMES,
        "latitude": 16,
        "longitude": 32,
        "window": N_WINDOWS,
        "member_group": 1,
    }
    np.testing.assert_array_equal(ds.time.values, truth.time.values)
    lay = plan_windows(truth.time.values[0], truth.time.values[-1], "8h", "3h", "1h")
    np.testing.assert_array_equal(ds.owned_start.values, truth.time.values[lay.owned_starts])
    np.testing.assert_array_equal(ds.window_end.values, truth.time.values[lay.stops - 1])
    assert ds.window_complete.values.ravel().tolist() == [1] * N_WINDOWS
    n_obs = ds.window_n_obs.values.ravel()
    assert (n_obs[:5] > 0).all() and n_obs[5] == 0  # the last window has no observation
    assert ds.task_seed.values[3, 0] == task_seed(SEED, 3, 0)
    # the grid of the gridded observations (longitudes -180..180), CF attributes, no NaN
    assert float(ds.longitude.min()) < 0 and (np.diff(ds.longitude.values) > 0).all()
    assert ds["2m_temperature"].attrs["units"] == "K"
    assert ds["10m_v_component_of_wind"].attrs["standard_name"] == "northward_wind"
    assert ds.attrs["xappa_weight_hash"] == xappa.load_model(model_dir).weight_hash
    assert ds.attrs["xappa_seed"] == SEED
    for v in VARIABLES:
        assert ds[v].dims == ("member", "time", "latitude", "longitude")
        assert ds[v].encoding["chunks"][0] == 2
        assert not np.isnan(ds[v].values).any()
        assert 150 < float(ds["2m_temperature"].mean()) < 350


def _window_obs(obs: list[xr.Dataset], t0, t1) -> list[xr.Dataset]:
    out = [d.sel(time=slice(t0, t1)).load() for d in obs]
    out = [d for d in out if d.sizes["time"]]
    return [d.drop_vars([v for v in d.data_vars if v.startswith("10m_u")]) for d in out]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("k", [1, 3], ids=["with-gridded-obs", "points-only-u-unobserved"])
def test_owned_block_is_assimilate_of_its_window(reference, obs, model_dir, k):
    ds = open_store(reference)
    t0, t1 = ds.window_start.values[k], ds.window_end.values[k]
    window_obs = _window_obs(obs, t0, t1)
    if k == 1:  # u is observed in window 1: keep it
        window_obs = [d.sel(time=slice(t0, t1)).load() for d in obs]
    seed = task_seed(SEED, k, 0)
    model = xappa.load_model(model_dir)
    direct = xappa.assimilate(
        window_obs, model=model, window=(t0, t1), members=2, seed=seed, **FAST
    )
    direct = direct.assign_coords(longitude=(direct.longitude + 180) % 360 - 180)
    direct = direct.sortby("longitude").sel(time=slice(ds.owned_start[k], ds.owned_end[k]))
    stored = ds.sel(time=direct.time)
    for v in VARIABLES:
        np.testing.assert_array_equal(stored[v].values, direct[v].values, err_msg=v)
    assert int(ds.window_n_obs[k, 0]) == sum(direct[v].attrs["xappa_n_obs"] for v in VARIABLES)


@pytest.mark.timeout(60)
def test_rerun_computes_nothing(reference, obs, model_dir, period):
    before = open_store(reference).load()
    ds = xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=reference, seed=SEED, **FAST)
    assert ds.attrs["xappa_computed_windows"] == []
    assert ds.attrs["xappa_skipped_windows"] == list(range(N_WINDOWS))
    xr.testing.assert_identical(ds.load().drop_attrs(), before.drop_attrs())


@pytest.mark.timeout(120)
def test_member_groups(obs, model_dir, period, tmp_path):
    start = period[0]
    end = start + np.timedelta64(7, "h")
    ds = xappa.batch.reanalysis(
        obs,
        model_dir,
        start,
        end,
        "8h",
        "0h",
        2,
        tmp_path / "g.zarr",
        member_groups=2,
        seed=SEED,
        **FAST,
    )
    assert ds.sizes["member_group"] == 2 and ds.sizes["member"] == 2
    assert ds["2m_temperature"].encoding["chunks"][:2] == (1, 8)
    assert ds.window_complete.values.tolist() == [[1, 1]]
    model = xappa.load_model(model_dir)
    window_obs = [d.sel(time=slice(start, end)).load() for d in obs]
    group1 = xappa.assimilate(
        window_obs, model=model, window=(start, end), members=1, seed=task_seed(SEED, 0, 1), **FAST
    )
    stored = ds["2m_temperature"].isel(member=1).values
    direct = group1["2m_temperature"].sortby("longitude")
    direct = direct.assign_coords(longitude=(direct.longitude + 180) % 360 - 180)
    np.testing.assert_array_equal(stored, direct.sortby("longitude").isel(member=0).values)
    assert not np.array_equal(stored, ds["2m_temperature"].isel(member=0).values)
