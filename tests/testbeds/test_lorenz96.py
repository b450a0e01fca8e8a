"""Tests of the Lorenz-96 testbed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xappa.testbeds import lorenz96 as l96


def test_simulate_dims_coords_and_attrs():
    ds = l96.simulate(steps=12, seed=3, spinup=100)
    assert ds.x.dims == ("time", "site")
    assert ds.x.shape == (12, 40)
    np.testing.assert_allclose(ds.time.values, 0.05 * np.arange(12))
    np.testing.assert_array_equal(ds.site.values, np.arange(40))
    assert ds.attrs["seed"] == 3
    assert np.isfinite(ds.x.values).all()


def test_simulate_batched_is_seeded():
    a = l96.simulate(steps=5, trajectories=3, seed=1, spinup=50)
    b = l96.simulate(steps=5, trajectories=3, seed=1, spinup=50)
    c = l96.simulate(steps=5, trajectories=3, seed=2, spinup=50)
    assert a.x.dims == ("trajectory", "time", "site")
    np.testing.assert_array_equal(a.x.values, b.x.values)
    assert not np.allclose(a.x.values, c.x.values)


def test_advection_conserves_energy():
    # sum_i x_i (x_{i+1} - x_{i-2}) x_{i-1} = 0: the quadratic term only moves energy around.
    x = torch.randn(7, 40, dtype=torch.float64)
    advection = l96.tendency(x, forcing=0.0) + x
    torch.testing.assert_close((x * advection).sum(-1), torch.zeros(7, dtype=torch.float64))


def test_tendency_matches_explicit_loop():
    x = torch.randn(40, dtype=torch.float64)
    n = 40
    expected = torch.stack([(x[(i + 1) % n] - x[i - 2]) * x[i - 1] - x[i] + 8.0 for i in range(n)])
    torch.testing.assert_close(l96.tendency(x), expected)


def test_rk4_is_fourth_order():
    x0 = torch.from_numpy(l96.simulate(steps=1, seed=0, spinup=200).x.values[0])
    ref = l96.integrate(x0, 4, dt=0.05, substeps=64)[-1]
    err1 = (l96.integrate(x0, 4, dt=0.05, substeps=1)[-1] - ref).abs().max()
    err2 = (l96.integrate(x0, 4, dt=0.05, substeps=2)[-1] - ref).abs().max()
    assert err1 < 1e-2
    assert 10 < err1 / err2 < 24  # about 2^4


def test_climatology_constants():
    x = l96.simulate(steps=3000, trajectories=4, seed=5, spinup=500).x.values
    assert abs(x.mean() - l96.CLIMATOLOGY_MEAN) < 0.1
    assert abs(x.std() - l96.CLIMATOLOGY_STD) < 0.1
    z = l96.standardize(torch.from_numpy(x))
    torch.testing.assert_close(l96.unstandardize(z), torch.from_numpy(x))


def test_observe_subsets_and_noise():
    truth = l96.simulate(steps=400, seed=0, spinup=100)
    obs = l96.observe(truth, site_step=4, time_step=2, variance=0.5, seed=1)
    assert obs.y.dims == ("time", "site")
    assert obs.y.shape == (200, 10)
    np.testing.assert_array_equal(obs.site.values, np.arange(0, 40, 4))
    np.testing.assert_allclose(obs.time.values, truth.time.values[::2])
    err = obs.y - truth.x.sel(time=obs.time, site=obs.site)
    assert abs(float(err.var()) - 0.5) < 0.05
    assert obs.attrs["variance"] == 0.5
    again = l96.observe(truth, site_step=4, time_step=2, variance=0.5, seed=1)
    np.testing.assert_array_equal(obs.y.values, again.y.values)


def test_observe_offsets_pick_any_sublattice():
    truth = l96.simulate(steps=12, seed=0, spinup=10)
    kwargs = {"site_step": 4, "time_step": 3, "site_offset": 3, "time_offset": 2}
    obs = l96.observe(truth, **kwargs, variance=1e-8, seed=1)
    np.testing.assert_array_equal(obs.site.values, np.arange(3, 40, 4))
    np.testing.assert_allclose(obs.time.values, truth.time.values[2::3])
    assert (obs.attrs["site_offset"], obs.attrs["time_offset"]) == (3, 2)
    picked = truth.x.isel(time=slice(2, None, 3), site=slice(3, None, 4)).values
    np.testing.assert_allclose(obs.y.values, picked, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"site_step": 0}, "site_step >= 1"),
        ({"variance": 0.0}, "variance > 0"),
        ({"time_step": -1}, "time_step >= 1"),
        ({"site_step": 4, "site_offset": 4}, r"site_offset must be an int in \[0, 4\); found 4"),
        ({"time_step": 2, "time_offset": -1}, r"time_offset must be an int in \[0, 2\); found -1"),
        ({"site_offset": 0.0}, r"site_offset must be an int in \[0, 1\); found 0.0"),
    ],
    ids=["site_step", "variance", "time_step", "site_offset", "time_offset", "float_offset"],
)
def test_observe_rejects_bad_values(kwargs, match):
    truth = l96.simulate(steps=3, seed=0, spinup=10)
    with pytest.raises(ValueError, match=match):
        l96.observe(truth, **kwargs)


def test_observe_needs_x():
    truth = l96.simulate(steps=3, seed=0, spinup=10).rename(x="u")
    with pytest.raises(KeyError, match="missing variable 'x'"):
        l96.observe(truth)


def test_simulate_rejects_bad_values():
    with pytest.raises(ValueError, match="steps >= 1"):
        l96.simulate(steps=0)
