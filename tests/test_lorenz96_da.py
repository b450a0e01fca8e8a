"""CI-sized tests of learned-prior data assimilation on Lorenz-96 (tiny prior, few steps)."""

from __future__ import annotations

import contextlib
import os
import runpy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from xappa.da import FilterConfig, SmootherConfig, filter_ensemble, smooth_ensemble
from xappa.da.lorenz96 import (
    Lorenz96Prior,
    assimilate_lorenz96,
    load_lorenz96_prior,
    lorenz96_training_data,
    observation_tensors,
    train_lorenz96_prior,
)
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96
from xappa.train import TrainConfig

WINDOW = 4
VARIANCE = 1.0 / l96.CLIMATOLOGY_STD**2  # observation error variance 1, standardized
FAST = {"members": 8, "sampler": "ddim", "steps": 8, "iterations": 2, "solver": "gmres"}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    # These networks are tiny: one thread is as fast as two on an idle machine and about ten
    # times faster on a loaded one (thread barriers spin).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with one_thread():
        yield _train_prior(tmp_path_factory)


def _train_prior(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("l96_prior")
    prior = Lorenz96Prior(window=WINDOW, hidden=24, blocks=2)
    data = lorenz96_training_data(trajectories=8, steps=400, seed=1)
    config = TrainConfig(
        steps=300, lr=3e-3, ema_decay=0.9, checkpoint_dir=str(path), progress=False
    )
    train_lorenz96_prior(prior, data, config, batch_size=32)
    return str(path)


@pytest.fixture(scope="module")
def denoiser(prior_dir: str) -> torch.nn.Module:
    return load_lorenz96_prior(prior_dir)


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    truth = l96.simulate(steps=12, seed=4242)  # training used seed 1
    values, mask = observation_tensors(l96.observe(truth, variance=1.0, seed=7))
    return l96.standardize(torch.from_numpy(truth.x.values)).float(), values, mask


def test_load_prior_round_trip(prior_dir, denoiser):
    assert denoiser.prior == Lorenz96Prior(window=WINDOW, hidden=24, blocks=2)
    x = torch.randn(2, WINDOW, 40)
    with torch.no_grad():
        out = denoiser(x, torch.full((2,), 0.5))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_smoother_beats_climatology(denoiser, held_out):
    truth, values, mask = held_out
    config = SmootherConfig(window=WINDOW, **FAST)
    ens = smooth_ensemble(denoiser, values, mask, VARIANCE, config, seed=0)
    assert ens.shape == (8, 12, 40)
    rmse = float((ens.mean(0) - truth).square().mean().sqrt())
    climatology = float(truth.square().mean().sqrt())  # climatological mean is 0
    assert rmse < 0.4 * climatology, (rmse, climatology)


def test_smoother_is_seeded(denoiser, held_out):
    _, values, mask = held_out
    config = SmootherConfig(window=WINDOW, **(FAST | {"members": 2, "steps": 3}))
    a = smooth_ensemble(denoiser, values, mask, VARIANCE, config, seed=3)
    b = smooth_ensemble(denoiser, values, mask, VARIANCE, config, seed=3)
    torch.testing.assert_close(a, b)


def test_filter_is_causal(denoiser, held_out):
    truth, values, mask = held_out
    config = FilterConfig(window=WINDOW, **(FAST | {"members": 4, "steps": 4}))
    values, mask = values[None, :9], mask[None, :9]
    changed = values.clone()
    changed[0, 7] += 3.0  # a future observation
    a = filter_ensemble(denoiser, values, mask, VARIANCE, config, seed=0)
    b = filter_ensemble(denoiser, changed, mask, VARIANCE, config, seed=0)
    assert a.shape == (1, 4, 9, 40)
    torch.testing.assert_close(a[:, :, :7], b[:, :, :7], rtol=0, atol=0)
    assert not torch.allclose(a[:, :, 7], b[:, :, 7])
    rmse = float((a[0].mean(0) - truth[:9]).square().mean().sqrt())
    assert rmse < 0.5 * float(truth[:9].square().mean().sqrt())


def test_filter_batches_experiments(denoiser, held_out):
    _, values, mask = held_out
    config = FilterConfig(window=WINDOW, **(FAST | {"members": 2, "steps": 2}))
    both = filter_ensemble(
        denoiser,
        torch.stack([values[:6], -values[:6]]),
        mask[None, :6].expand(2, 6, 40),
        VARIANCE,
        config,
    )
    assert both.shape == (2, 2, 6, 40)
    assert not torch.allclose(both[0], both[1])


def test_assimilate_lorenz96_labels(denoiser):
    truth = l96.simulate(steps=8, seed=11)
    obs = l96.observe(truth, site_step=4, variance=1.0, seed=1)
    with set_options(progress=False):
        out = assimilate_lorenz96(obs, denoiser, method="smoother", **(FAST | {"members": 3}))
    assert out.x.dims == ("member", "time", "site")
    assert out.x.shape == (3, 8, 40)
    np.testing.assert_allclose(out.time.values, truth.time.values)
    assert set(out.data_vars) == {"x", "mean", "spread"}
    assert np.isfinite(out.x.values).all()


def test_observation_tensors_sparse():
    truth = l96.simulate(steps=6, seed=0, spinup=10)
    values, mask = observation_tensors(l96.observe(truth, site_step=4, time_step=2, seed=0))
    assert values.shape == mask.shape == (5, 40)
    assert int(mask.sum()) == 3 * 10
    assert mask[0, ::4].all() and not mask[1].any()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FilterConfig(window=1), "window >= 2"),
        (lambda: FilterConfig(window=4, members=1), "members >= 2"),
        (lambda: FilterConfig(window=4, sampler="euler"), "sampler must be one of"),
        (lambda: SmootherConfig(window=4, stride=5), "stride <= window"),
        (lambda: Lorenz96Prior(window=0), "window must be positive"),
    ],
    ids=["window1", "members", "sampler", "stride", "window"],
)
def test_configs_reject_bad_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_assimilate_rejects_unknown_method(denoiser):
    obs = l96.observe(l96.simulate(steps=4, seed=0, spinup=10))
    with pytest.raises(ValueError, match="method must be"):
        assimilate_lorenz96(obs, denoiser, method="4dvar")


@pytest.mark.slow
def test_tutorial_quick_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("XAPPA_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("XAPPA_TUTORIAL_OUT", str(tmp_path))
    with one_thread():
        runpy.run_path(str(Path(__file__).parents[1] / "tutorials" / "lorenz96.py"))
    assert (tmp_path / "lorenz96_tutorial.png").stat().st_size > 0
    assert (tmp_path / "lorenz96_tutorial_site.png").stat().st_size > 0
    assert os.environ["XAPPA_TUTORIAL_QUICK"] == "1"
