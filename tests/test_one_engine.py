"""One engine: every public path draws exactly the samples of a direct call of xappa.core.da.

`assimilate` (reanalysis and filter), `forecast` (autoregressive and all-at-once) and the
batch reanalysis are compared, bit for bit, with the engine function called directly on the
same observations, config and seed (the Lorenz-96 helpers: tests/test_lorenz96_da.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xappa
import xappa.batch
from xappa.batch import task_seed
from xappa.core.da import filter_analyses, forecast_trajectories, smooth
from xappa.core.da.precision import flush_denormal
from xappa.encoding import LATENT_VARIABLE, encode
from xappa.models.states import decode_tensor, state_dataset
from xappa.observations import prepare_observations, sample_points, stations
from xappa.state.times import frame_dates, window_times
from xappa.testing import mock_era5, tiny_model

CONFIG = xappa.SamplingConfig(sampler="pc", steps=2, corrections=1, iterations=2)
SEED = 11
MEMBERS = 2


@pytest.fixture(scope="module")
def case() -> tuple[xappa.Model, xr.Dataset, xr.Dataset]:
    """The tiny model, a mock truth and station observations of it."""
    model = tiny_model(seed=5)
    truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=6)
    sites = stations([48.8, -33.9, 10.0], [2.35, 151.2, 250.0], names=["a", "b", "c"])
    obs = sample_points(truth, sites, error_std=0.5, seed=0)
    obs["2m_temperature"][1::2] = np.nan  # t2m every other hour: filter cycles differ
    return model, truth, obs


def _engine_inputs(model: xappa.Model, obs: xr.Dataset):
    times = window_times(None, [obs], model.time_step)
    obs_set = prepare_observations(
        [obs], model.spec, (model.mean.cpu(), model.std.cpu()), times=times,
        dtype=model.state_dtype,
    )  # fmt: skip
    frames = obs_set.frames(decode=model.decode_standardized)
    when = pd.date_range(times[0], periods=len(times) + model.window, freq=model.time_step)
    return times, frames, frame_dates(when, torch.device("cpu"))


def _assert_same(out: xr.Dataset, z: torch.Tensor, model: xappa.Model, times) -> None:
    """``out`` (forecasts: of their one initial time) holds the decoded latents ``z``."""
    expected = state_dataset(decode_tensor(z, model), model, times, {})
    assert list(out.data_vars) == list(expected.data_vars)
    for name in expected.data_vars:
        found = out[name].isel(time=0) if "prediction_timedelta" in out.dims else out[name]
        np.testing.assert_array_equal(found.values, expected[name].values, err_msg=name)


def _common(model: xappa.Model) -> dict:
    return {
        "members": MEMBERS, "frame": model.latent_shape, "window": model.window,
        "config": CONFIG, "seed": SEED, "device": torch.device("cpu"),
        "dtype": model.state_dtype,
    }  # fmt: skip


def test_assimilate_reanalysis_is_the_engine(case):
    model, _, obs = case
    out = xappa.assimilate(
        obs, model=model, members=MEMBERS, sampling=CONFIG, seed=SEED, progress=False
    )
    times, frames, dates = _engine_inputs(model, obs)
    with flush_denormal():
        z = smooth(
            model.prior_denoiser(), frames, length=len(times), stride=model.window // 2,
            cond={"date": dates[: len(times)]}, **_common(model),
        )  # fmt: skip
    _assert_same(out, z, model, times)


def test_assimilate_filter_is_the_engine(case):
    model, _, obs = case
    out = xappa.assimilate(
        obs, model=model, members=MEMBERS, sampling=CONFIG, seed=SEED, mode="filter",
        progress=False,
    )  # fmt: skip
    times, frames, dates = _engine_inputs(model, obs)
    with flush_denormal():
        z = filter_analyses(
            model.prior_denoiser(), frames, stride=model.window // 2, cond={"date": dates},
            min_variance=model.full_state_variance[:, None, None], **_common(model),
        )  # fmt: skip
    assert z.shape[1] == len(frames.observed_frames) == 6
    _assert_same(out, z, model, times[frames.observed_frames])


def test_forecast_autoregressive_is_the_engine(case):
    model, truth, _ = case
    state = truth.isel(time=slice(0, 3))
    out = xappa.forecast(
        state, model=model, lead="3h", members=MEMBERS, sampling=CONFIG, seed=SEED,
        progress=False,
    )  # fmt: skip
    step = model.time_step
    context = pd.DatetimeIndex(state.time.values[-2:])
    z0 = torch.as_tensor(encode(state, model=model, times=context)[LATENT_VARIABLE].values)
    z0 = z0[None].expand(MEMBERS, *z0.shape)

    def cond(start: int, length: int) -> dict:
        when = pd.date_range(context[0] + start * step, periods=length, freq=step)
        return {"date": frame_dates(when, torch.device("cpu"))}

    with flush_denormal():
        z = forecast_trajectories(
            model.prior_denoiser(), z0, lead=3, window=model.window,
            stride=model.window // 2, config=CONFIG,
            variance=model.full_state_variance[:, None, None], seed=SEED, key=(0,), cond=cond,
        )  # fmt: skip
    valid = pd.date_range(context[-1] + step, periods=3, freq=step)
    _assert_same(out, z, model, valid)


def test_forecast_all_at_once_is_the_engine(case):
    model, _, obs = case
    out = xappa.forecast(
        obs, model=model, lead="2h", members=MEMBERS, method="all-at-once", sampling=CONFIG,
        seed=SEED, progress=False,
    )  # fmt: skip
    times, frames, _ = _engine_inputs(model, obs)
    length = len(times) + 2
    when = pd.date_range(times[0], periods=length, freq=model.time_step)
    with flush_denormal():
        z = smooth(
            model.prior_denoiser(), frames, length=length, stride=model.window // 2,
            cond={"date": frame_dates(when, torch.device("cpu"))}, fold="causal",
            **_common(model),
        )[:, len(times) :]  # fmt: skip
    valid = when[len(times) :]
    _assert_same(out, z, model, valid)


@pytest.mark.timeout(120)
def test_batch_reanalysis_is_the_engine(case, tmp_path):
    model, _, obs = case
    start, end = obs.time.values[0], obs.time.values[-1]
    ds = xappa.batch.reanalysis(
        obs, model, start, end, window="6h", overlap="0h", members=MEMBERS,
        out=str(tmp_path / "store.zarr"), seed=SEED, sampling=CONFIG, progress=False,
    )  # fmt: skip
    times, frames, dates = _engine_inputs(model, obs)
    with flush_denormal():
        z = smooth(
            model.prior_denoiser(), frames, length=len(times), stride=model.window // 2,
            cond={"date": dates[: len(times)]},
            **{**_common(model), "seed": task_seed(SEED, 0, 0)},
        )  # fmt: skip
    _assert_same(ds[list(model.spec.variables)].load(), z, model, times)
