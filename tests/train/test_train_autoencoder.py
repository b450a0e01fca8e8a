"""Tests of the training data, the autoencoder training and the ``xappa train`` CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import xarray as xr

from xappa.cli import main
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config
from xappa.state.stats import stats_to_tensors
from xappa.testing import mock_era5
from xappa.train.autoencoder import (
    autoencoder_loss,
    latitude_weights,
    load_autoencoder,
    reconstruction_rmse,
    train_autoencoder,
)
from xappa.train.data import (
    RandomDatedWindows,
    RandomSnapshots,
    StateData,
    infer_spec,
    split_dataset,
    time_to_dates,
    train_stats,
)
from xappa.train.loop import TrainConfig


def identity_data(ds: xr.Dataset) -> StateData:
    spec = infer_spec(ds)
    return StateData(ds, spec, torch.zeros(spec.n_channels), torch.ones(spec.n_channels))


def test_infer_spec_and_state_data_on_era5_layout():
    ds = mock_era5(nlat=8, nlon=16, ntime=5, chunks={"time": 1})
    spec = infer_spec(ds, variables=["2m_temperature", "temperature"], levels=[500.0, 850.0])
    assert spec.channels == [
        ("2m_temperature", None),
        ("temperature", 500.0),
        ("temperature", 850.0),
    ]
    data = identity_data(ds[["2m_temperature", "temperature"]].sel(level=[500, 850]))
    assert isinstance(data.array, type(data.array)) and data.array.shape == (1, 5, 3, 8, 16)
    x = data.read(np.zeros(2, int), np.array([4, 1]))
    expected = ds["temperature"].sel(level=850).isel(time=1).values
    torch.testing.assert_close(x[1, 2], torch.as_tensor(expected, dtype=torch.float32))
    assert data.dates.shape == (5, 4)


def test_windows_stay_inside_trajectories(ramp_dataset):
    data = identity_data(ramp_dataset(ntraj=3, ntime=12))
    windows, dates = RandomDatedWindows(data, window=5, batch_size=64, seed=1)(0)
    assert windows.shape == (64, 5, 2, 8, 16) and dates.shape == (64, 5, 4)
    value = windows[:, :, 0, 0, 0]  # 1000 * trajectory + time index
    traj, start = value[:, 0] // 1000, value[:, 0] % 1000
    torch.testing.assert_close(value, 1000 * traj[:, None] + start[:, None] + torch.arange(5.0))
    assert (start + 4 < 12).all() and set(traj.tolist()) == {0.0, 1.0, 2.0}
    torch.testing.assert_close(
        dates, time_to_dates(data.times)[start.long()[:, None] + torch.arange(5)]
    )
    assert dates[0, 0].tolist()[:2] in ([2001, 12], [2002, 1])


def test_samplers_are_reproducible_per_step(ramp_dataset):
    data = identity_data(ramp_dataset())
    a, b = RandomSnapshots(data, 4, seed=3), RandomSnapshots(data, 4, seed=3)
    torch.testing.assert_close(a(7), b(7), rtol=0, atol=0)
    assert not torch.equal(a(7), a(8))


@pytest.mark.parametrize(("n", "expected"), [(3, (2, 1)), (1, (1, 1))], ids=["traj", "time"])
def test_split(ramp_dataset, n, expected):
    data = identity_data(ramp_dataset(ntraj=n, ntime=10))
    train, valid = data.split(0.2)
    assert (train.n_trajectories, valid.n_trajectories) == expected
    if n == 1:
        assert (train.n_times, valid.n_times) == (8, 2)
        assert valid.dates[0].tolist() == time_to_dates(data.times[8:9])[0].tolist()
    train_ds, valid_ds = split_dataset(ramp_dataset(ntraj=n, ntime=10), 0.2)
    dim = "trajectory" if n > 1 else "time"
    assert (train_ds.sizes[dim], valid_ds.sizes[dim]) == (expected if n > 1 else (8, 2))
    with pytest.raises(ValueError, match="valid_fraction"):
        split_dataset(train_ds, 1.0)


def test_train_stats_pools_trajectories(ramp_dataset):
    ds = ramp_dataset(ntraj=2, ntime=4)
    stats = train_stats(ds, infer_spec(ds))
    values = ds["geopotential"].values.astype(np.float64)
    assert math.isclose(float(stats["geopotential"].sel(statistic="mean")), values.mean())
    assert math.isclose(float(stats["geopotential"].sel(statistic="std")), values.std())


def test_latitude_weighted_loss():
    lat = torch.tensor([90.0, 0.0, -60.0])
    w = latitude_weights(lat, 4)
    torch.testing.assert_close(w[:, 0], torch.tensor([0.25, 1.25, 0.75]), atol=1e-7, rtol=0)

    class Shift(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x + self.p

    value = autoencoder_loss(lat, 4)(Shift(), torch.zeros(2, 3, 3, 4)).detach()
    assert math.isclose(float(value), (0.25 + 1.25 + 0.75) / 3, rel_tol=1e-6)


def test_pole_rows_can_be_weighted_like_their_neighbours():
    lat = torch.tensor([90.0, 60.0, 0.0, -60.0, -90.0])
    appa = latitude_weights(lat, 4)[:, 0]
    poles = latitude_weights(lat, 4, mode="poles-like-neighbours")[:, 0]
    torch.testing.assert_close(poles, torch.tensor([0.75, 0.75, 1.25, 0.75, 0.75]))
    torch.testing.assert_close(poles[1:-1], appa[1:-1])
    inner = torch.tensor([85.0, 0.0, -85.0])  # no pole rows: nothing changes
    torch.testing.assert_close(
        latitude_weights(inner, 4, mode="poles-like-neighbours"), latitude_weights(inner, 4)
    )
    with pytest.raises(ValueError, match="poles-like-neighbours"):
        latitude_weights(lat, 4, mode="cosine")


def tiny_setup(store: str) -> tuple[ConvAutoencoder, StateData]:
    ds = xr.open_zarr(store, consolidated=False)
    spec = infer_spec(ds)
    mean, std = stats_to_tensors(train_stats(ds, spec), spec)
    torch.manual_seed(0)
    config = autoencoder_config("tiny", in_channels=3, shape=(16, 32), noise_level=0.1)
    return ConvAutoencoder.from_config(config), StateData(ds, spec, mean, std)


def test_resume_gives_identical_losses(swe_store, tmp_path):
    common = {"lr": 3e-3, "lr_schedule": "cosine", "ema_decay": 0.9, "progress": False}
    model, data = tiny_setup(swe_store)
    straight = train_autoencoder(model, data, TrainConfig(steps=6, **common), batch_size=2)

    config = TrainConfig(steps=6, checkpoint_dir=str(tmp_path), checkpoint_every=3, **common)

    def interrupt(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    model, data = tiny_setup(swe_store)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(model, data, config, batch_size=2, callback=interrupt)
    model, data = tiny_setup(swe_store)  # new objects, as a new process would build
    resumed = train_autoencoder(model, data, config, batch_size=2)
    assert len(resumed.losses) == 6
    assert resumed.losses == straight.losses  # exactly


def test_reconstruction_rmse_of_identity_is_zero(swe_store):
    model, data = tiny_setup(swe_store)

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return z

    batches = RandomSnapshots(data, 2).fixed(2)
    assert reconstruction_rmse(Identity(), batches, data.latitudes)["rmse"] == 0
    rmse = reconstruction_rmse(model, batches, data.latitudes)
    assert 0 < rmse["rmse"] < 10 and math.isfinite(rmse["rmse_unweighted"])


def test_cli_train_autoencoder_and_resume(swe_store, tmp_path, capsys):
    # A constant schedule: a run extended from 2 to 3 steps equals a straight 3-step run.
    config = tmp_path / "ae.yaml"
    config.write_text("model: tiny\nbatch_size: 2\ntrain: {lr: 3.0e-3, warmup: 2}\n")
    out = tmp_path / "ae"
    args = ["train", "autoencoder", "--data", swe_store, "--config", str(config), "--no-progress"]
    assert main([*args, "--out", str(out), "--steps", "2"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "autoencoder.yaml",
        "model.safetensors",
        "state.pt",
        "stats.zarr",
    }
    with pytest.raises(FileExistsError, match="--resume"):
        main(["--debug", *args, "--out", str(out), "--steps", "3"])
    assert main([*args, "--out", str(out), "--steps", "3", "--resume"]) == 0
    resumed = torch.load(out / "state.pt", weights_only=True)
    assert resumed["step"] == 3
    assert main([*args, "--out", str(tmp_path / "straight"), "--steps", "3"]) == 0
    straight = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    assert resumed["extra"]["losses"] == straight["extra"]["losses"]
    model, spec, mean, std = load_autoencoder(out)
    assert spec.shape == (16, 32) and mean.shape == std.shape == (3,)
    assert spec.name == Path(swe_store).stem  # without data.name, the data's file name
    saved = safetensors.torch.load_file(out / "model.safetensors")
    torch.testing.assert_close(model.state_dict(), saved)


def test_cli_config_yaml(swe_store, tmp_path):
    config = tmp_path / "ae.yaml"
    config.write_text(
        "model: {name: tiny, lat_channels: 2}\nbatch_size: 2\nprecision: bf16\n"
        "train: {steps: 1, lr: 1.0e-3}\ndata: {name: shallow-water}\n"
    )
    out = tmp_path / "ae"
    args = ["train", "autoencoder", "--data", swe_store, "--out", str(out), "--no-progress"]
    assert main([*args, "--config", str(config)]) == 0
    model, spec, *_ = load_autoencoder(out)
    assert model.latent_shape[0] == 2
    assert spec.name == "shallow-water"
    config.write_text("optimizer: soap\n")
    with pytest.raises(ValueError, match="unknown keys"):
        main(["--debug", *args, "--config", str(config), "--resume"])
    with pytest.raises(ValueError, match="recipe name or|one of"):
        main(["--debug", *args, "--config", "huge", "--resume"])


def test_cli_on_an_era5_layout_store(tmp_path, capsys):
    store = tmp_path / "era5.zarr"
    ds = mock_era5(nlat=8, nlon=16, ntime=6).sel(level=[500, 850])
    ds.to_zarr(store, consolidated=False)
    spec = infer_spec(xr.open_zarr(store, consolidated=False))
    assert spec.n_channels == 16 and spec.channels[6] == ("temperature", 500.0)
    out = tmp_path / "ae"
    args = ["train", "autoencoder", "--data", str(store), "--out", str(out), "--no-progress"]
    config = tmp_path / "periods.yaml"
    config.write_text(
        "batch_size: 2\ndata: {train_period: [null, '2021-01-01T03'],"
        " valid_period: ['2021-01-01T04', null]}\n"
    )
    assert main([*args, "--steps", "2", "--config", str(config)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    model, spec, _, std = load_autoencoder(out)
    assert model.config.in_channels == 16 and torch.isfinite(std).all()


KILLABLE = """
import os, sys, torch
torch.set_num_threads(1)
import xarray as xr
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config
from xappa.state.stats import stats_to_tensors
from xappa.train.autoencoder import train_autoencoder
from xappa.train.data import StateData, infer_spec, train_stats
from xappa.train.loop import TrainConfig

store, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = xr.open_zarr(store, consolidated=False)
spec = infer_spec(ds)
mean, std = stats_to_tensors(train_stats(ds, spec), spec)
torch.manual_seed(0)
config = autoencoder_config("tiny", in_channels=3, shape=(16, 32), noise_level=0.1)
model = ConvAutoencoder.from_config(config)
loop = TrainConfig(steps=6, lr=3e-3, lr_schedule="cosine", ema_decay=0.9, progress=False,
                   checkpoint_dir=out, checkpoint_every=3)

def kill(step, loss):
    if step == kill_at:
        os._exit(9)  # no cleanup at all, as SIGKILL

train_autoencoder(model, StateData(ds, spec, mean, std), loop, batch_size=2, callback=kill)
"""


@pytest.mark.slow
def test_killed_process_resumes_with_identical_losses(swe_store, tmp_path):
    out = str(tmp_path / "run")
    command = [sys.executable, "-c", KILLABLE, swe_store, out]
    opts = {"capture_output": True, "text": True, "timeout": 300}
    killed = subprocess.run([*command, "3"], check=False, **opts)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert torch.load(f"{out}/state.pt", weights_only=True)["step"] == 3
    resumed = subprocess.run([*command, "0"], check=False, **opts)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    losses = torch.load(f"{out}/state.pt", weights_only=True)["extra"]["losses"]
    model, data = tiny_setup(swe_store)
    config = TrainConfig(steps=6, lr=3e-3, lr_schedule="cosine", ema_decay=0.9, progress=False)
    straight = train_autoencoder(model, data, config, batch_size=2)
    assert losses == straight.losses  # exactly
