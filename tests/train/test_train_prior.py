"""Tests of the latent encoding, the latent data and the prior training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xappa.cli import main
from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import autoencoder_config, vidit_config
from xappa.core.nn.vidit import ViDiT
from xappa.state.stats import stats_to_tensors
from xappa.train.data import (
    LatentData,
    RandomDatedWindows,
    StateData,
    infer_spec,
    time_to_dates,
    train_stats,
)
from xappa.train.encode import encode_dataset, latent_stats
from xappa.train.latent_prior import latent_prior_loss, load_latent_prior, train_latent_prior
from xappa.train.loop import TrainConfig


def latent_dataset(values: np.ndarray, mean: float = 0.0, std: float = 1.0) -> xr.Dataset:
    """A latent store in memory, from latents with shape ``(N, T, C, h, w)``."""
    t, c = values.shape[1:3]
    return xr.Dataset(
        {
            "latent": (("trajectory", "time", "channel", "y", "x"), values.astype(np.float32)),
            "latent_mean": ("channel", np.full(c, mean, np.float32)),
            "latent_std": ("channel", np.full(c, std, np.float32)),
        },
        coords={"time": pd.date_range("2020-02-28", periods=t, freq="h")},
    )


@pytest.fixture(scope="module")
def states(swe_store: str) -> StateData:
    ds = xr.open_zarr(swe_store, consolidated=False)
    spec = infer_spec(ds)
    mean, std = stats_to_tensors(train_stats(ds, spec), spec)
    return StateData(ds, spec, mean, std)


def test_encoding_chunk_by_chunk_equals_encoding_at_once(states, tmp_path):
    torch.manual_seed(0)
    model = ConvAutoencoder.from_config(autoencoder_config("tiny", shape=(16, 32))).eval()
    ds = encode_dataset(
        model,
        states,
        tmp_path / "z.zarr",
        chunk=5,
        batch_size=3,
        device="cpu",
        attrs={"autoencoder": "runs/ae"},
    )
    assert ds.attrs["autoencoder"] == "runs/ae"  # kept through the statistics' append
    assert ds["latent"].dims == ("trajectory", "time", "channel", "y", "x")
    assert ds["latent"].data.chunksize[:2] == (1, 5)
    x = states.read(np.arange(3)[:, None], np.arange(24)[None, :])  # (3, 24, C, H, W)
    with torch.no_grad():
        whole = model.encode(x.flatten(0, 1)).unflatten(0, (3, 24))
    got = torch.as_tensor(ds["latent"].values)
    torch.testing.assert_close(got, whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        torch.as_tensor(ds["date"].values).long(), time_to_dates(states.times)
    )
    flat = whole.transpose(0, 2).flatten(1).double()  # (C, everything)
    torch.testing.assert_close(torch.as_tensor(ds["latent_mean"].values), flat.mean(1).float())
    torch.testing.assert_close(
        torch.as_tensor(ds["latent_std"].values),
        flat.std(1, correction=0).float(),
        rtol=1e-4,
        atol=1e-6,
    )
    with pytest.raises(FileExistsError, match="overwrite"):
        encode_dataset(model, states, tmp_path / "z.zarr")


def test_latent_stats_needs_channel():
    with pytest.raises(ValueError, match="channel"):
        latent_stats(xr.DataArray(np.zeros((2, 3)), dims=("time", "x")))


def test_latent_data_standardizes_and_injects_noise():
    values = np.full((1, 6, 2, 2, 4), 3.0)
    data = LatentData(latent_dataset(values, mean=1.0, std=4.0))
    torch.testing.assert_close(
        data.read(np.zeros(1, int), np.zeros(1, int)), torch.full((1, 2, 2, 4), 0.5)
    )
    noisy = LatentData(latent_dataset(values, mean=1.0, std=math.sqrt(7.0)), noise_level=3.0)
    z = noisy.read(
        np.zeros(500, int), np.zeros(500, int), generator=torch.Generator().manual_seed(0)
    )
    assert abs(float(z.mean()) - 0.5) < 0.05 and abs(float(z.std()) - 0.75) < 0.05
    windows, dates = RandomDatedWindows(data, window=4, batch_size=3)(0)
    assert windows.shape == (3, 4, 2, 2, 4) and dates.shape == (3, 4, 4)
    assert dates[:, 0, 1].tolist() == [2] * 3  # February 2020


def tiny_backbone(window: int = 4) -> ViDiT:
    torch.manual_seed(0)
    return ViDiT(vidit_config("tiny", in_channels=2, shape=(2, 4), blanket_size=window))


def test_prior_loss_passes_dates():
    data = LatentData(latent_dataset(np.random.default_rng(0).normal(size=(2, 8, 2, 2, 4))))
    batch = RandomDatedWindows(data, window=4, batch_size=2)(0)
    from xappa.core.diffusion.denoiser import PreconditionedDenoiser

    denoiser = PreconditionedDenoiser(tiny_backbone())
    value = latent_prior_loss()(denoiser, batch).detach()
    assert value.ndim == 0 and math.isfinite(float(value))
    with pytest.raises(RuntimeError, match="date"):
        latent_prior_loss()(denoiser, (batch[0], batch[1][:, :2]))


def test_prior_learns_a_trivial_dataset(tmp_path):
    # Every window is the same constant field: a denoiser can learn it quickly.
    data = LatentData(latent_dataset(np.full((2, 16, 2, 2, 4), 0.5)))
    config = TrainConfig(steps=40, lr=1e-2, ema_decay=0.9, progress=False, valid_every=20)
    denoiser, result = train_latent_prior(
        tiny_backbone(), data, config, window=4, batch_size=8, valid_data=data, valid_batches=2
    )
    losses = np.array(result.losses)
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.5 * losses[:10].mean()
    assert sorted(result.valid_losses) == [20, 40]
    assert result.valid_losses[40] < result.valid_losses[20]
    assert not denoiser.training


def test_cli_encode_and_prior(swe_store, tmp_path, capsys):
    ae, latents, prior = tmp_path / "ae", tmp_path / "z.zarr", tmp_path / "prior"
    base = ["--no-progress", "--batch-size", "2"]
    assert (
        main(
            ["train", "autoencoder", "--data", swe_store, "--out", str(ae), "--steps", "1", *base]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "encode",
                "--autoencoder",
                str(ae),
                "--data",
                swe_store,
                "--out",
                str(latents),
            ]
        )
        == 0
    )
    args = ["train", "prior", "--data", str(latents), "--out", str(prior), *base]
    assert main([*args, "--steps", "2", "--window", "2", "--ema-decay", "0.5"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert {p.name for p in prior.iterdir()} == {
        "ema.safetensors",
        "model.safetensors",
        "prior.yaml",
        "state.pt",
    }
    denoiser, meta = load_latent_prior(prior)
    assert meta["window"] == 2 and denoiser.backbone.config.shape == (4, 10)
