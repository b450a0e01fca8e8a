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

from xappa.core.da import DenseObservations, SamplingConfig, filter_analyses, smooth
from xappa.options import set_options
from xappa.testbeds import lorenz96 as l96
from xappa.testbeds.lorenz96_prior import (
    Lorenz96Prior,
    assimilate_lorenz96,
    load_lorenz96_prior,
    lorenz96_training_data,
    observation_tensors,
    train_lorenz96_prior,
)
from xappa.train import TrainConfig

WINDOW = 4
VARIANCE = 1.0 / l96.CLIMATOLOGY_STD**2  # observation error variance 1, standardized
FAST = SamplingConfig(sampler="ddim", steps=8, iterations=2)


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


def _obs(values, mask):
    return DenseObservations(values, mask, VARIANCE)


def test_smoother_beats_climatology(denoiser, held_out):
    truth, values, mask = held_out
    ens = smooth(
        denoiser, _obs(values, mask), members=8, length=12, frame=(40,), window=WINDOW,
        stride=2, config=FAST, seed=0,
    )  # fmt: skip
    assert ens.shape == (8, 12, 40)
    rmse = float((ens.mean(0) - truth).square().mean().sqrt())
    climatology = float(truth.square().mean().sqrt())  # climatological mean is 0
    assert rmse < 0.4 * climatology, (rmse, climatology)


def test_smoother_is_seeded(denoiser, held_out):
    _, values, mask = held_out
    config = FAST.replace(steps=3)
    kwargs = {"members": 2, "length": 12, "frame": (40,), "window": WINDOW, "stride": 2}
    a = smooth(denoiser, _obs(values, mask), config=config, seed=3, **kwargs)
    b = smooth(denoiser, _obs(values, mask), config=config, seed=3, **kwargs)
    c = smooth(denoiser, _obs(values, mask), config=config, seed=4, **kwargs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("changed_frame", [1, 4, 7])
def test_filter_is_causal(denoiser, held_out, changed_frame):
    """A changed observation at frame s moves no analysis before s, and moves the one at s."""
    truth, values, mask = held_out
    config = FAST.replace(steps=4)
    values, mask = values[:9], mask[:9]
    changed = values.clone()
    changed[changed_frame] += 3.0
    kwargs = {"members": 4, "frame": (40,), "window": WINDOW, "config": config, "seed": 0}
    a = filter_analyses(denoiser, _obs(values, mask), **kwargs)
    b = filter_analyses(denoiser, _obs(changed, mask), **kwargs)
    assert a.shape == (4, 9, 40)
    torch.testing.assert_close(a[:, :changed_frame], b[:, :changed_frame], rtol=0, atol=0)
    assert not torch.allclose(a[:, changed_frame], b[:, changed_frame])
    rmse = float((a.mean(0) - truth[:9]).square().mean().sqrt())
    assert rmse < 0.5 * float(truth[:9].square().mean().sqrt())


def test_filter_analyses_only_at_observation_times(denoiser):
    """Observations every 3 steps: one analysis (one draw) per observation time."""
    truth = l96.simulate(steps=13, seed=4343)
    values, mask = observation_tensors(l96.observe(truth, time_step=3, seed=1))
    assert values.shape[0] == 13
    draws = []
    out = filter_analyses(
        denoiser, _obs(values, mask), members=3, frame=(40,), window=WINDOW,
        config=FAST.replace(steps=2), callback=lambda i, n: draws.append((i, n)),
    )  # fmt: skip
    assert out.shape == (3, 5, 40)  # times 0, 3, 6, 9, 12
    assert draws == [(i, 5) for i in range(1, 6)]


def test_filter_batches_experiments(denoiser, held_out):
    _, values, mask = held_out
    config = FAST.replace(steps=2)
    obs = [_obs(values[:6], mask[:6]), _obs(-values[:6], mask[:6])]
    both = filter_analyses(denoiser, obs, members=2, frame=(40,), window=WINDOW, config=config)
    assert both.shape == (2, 2, 6, 40)
    assert not torch.allclose(both[0], both[1])
    alone = filter_analyses(denoiser, obs[0], members=2, frame=(40,), window=WINDOW, config=config)
    torch.testing.assert_close(both[0], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["smoother", "filter"])
def test_assimilate_lorenz96_is_the_engine(denoiser, method):
    truth = l96.simulate(steps=8, seed=11)
    obs = l96.observe(truth, site_step=4, site_offset=1, variance=1.0, seed=1)
    with set_options(progress=False):
        out = assimilate_lorenz96(obs, denoiser, method=method, members=3, sampling=FAST, seed=5)
    assert out.x.dims == ("member", "time", "site")
    assert out.x.shape == (3, 8, 40)
    np.testing.assert_allclose(out.time.values, truth.time.values)
    assert set(out.data_vars) == {"x", "ensemble_mean", "ensemble_spread"}
    np.testing.assert_allclose(out.ensemble_mean, out.x.mean("member"))
    values, mask = observation_tensors(obs)
    assert mask[:, 1::4].all() and not mask[:, 0::4].any()
    common = {"members": 3, "frame": (40,), "window": WINDOW, "config": FAST, "seed": 5}
    if method == "smoother":
        direct = smooth(denoiser, _obs(values, mask), length=8, stride=2, **common)
    else:
        direct = filter_analyses(denoiser, _obs(values, mask), stride=2, **common)
    np.testing.assert_array_equal(out.x.values, l96.unstandardize(direct.double()).numpy())


def test_observation_tensors_sparse():
    truth = l96.simulate(steps=6, seed=0, spinup=10)
    values, mask = observation_tensors(l96.observe(truth, site_step=4, time_step=2, seed=0))
    assert values.shape == mask.shape == (5, 40)
    assert int(mask.sum()) == 3 * 10
    assert mask[0, ::4].all() and not mask[1].any()


def test_prior_config_rejects_bad_values():
    with pytest.raises(ValueError, match="window must be positive"):
        Lorenz96Prior(window=0)


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
