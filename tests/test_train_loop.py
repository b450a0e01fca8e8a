"""Tests of the generic training loop."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import safetensors.torch
import torch
from torch import nn

from xappa.train import EMA, TrainConfig, load_checkpoint, train

TRUE_W = torch.tensor([[1.5, -2.0, 0.5]])


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: one thread avoids spinning thread barriers on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(16, 3, generator=gen)
    return x, x @ TRUE_W.T


def noisy_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    # Uses the global RNG, so resuming must restore the random state.
    return (model(x + 0.01 * torch.randn_like(x)) - y).square().mean()


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_train_reduces_loss_and_validates():
    model = make_model()
    config = TrainConfig(steps=200, lr=5e-2, valid_every=100, progress=False)
    result = train(model, noisy_loss, batches, config, valid_batches=[batches(-1)])
    assert result.step == 200
    assert len(result.losses) == 200
    assert result.losses[-1] < 0.01 * result.losses[0]
    assert sorted(result.valid_losses) == [100, 200]
    torch.testing.assert_close(model.weight.detach(), TRUE_W, atol=0.05, rtol=0)


def test_iterable_batches():
    model = make_model()
    config = TrainConfig(steps=5, progress=False)
    result = train(model, noisy_loss, (batches(i) for i in range(5)), config)
    assert result.step == 5


def test_resume_matches_uninterrupted_run(tmp_path):
    common = {"lr": 1e-2, "ema_decay": 0.9, "progress": False, "lr_schedule": "cosine"}
    straight = make_model()
    train(straight, noisy_loss, batches, TrainConfig(steps=20, **common))

    ckpt = str(tmp_path / "ckpt")
    config = TrainConfig(steps=20, checkpoint_dir=ckpt, checkpoint_every=10, **common)

    def interrupt(step: int, loss: float) -> None:
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make_model(), noisy_loss, batches, config, callback=interrupt)
    assert torch.load(f"{ckpt}/state.pt", weights_only=True)["step"] == 10
    fresh = make_model()  # a new process would rebuild the model from scratch
    result = train(fresh, noisy_loss, batches, config)
    assert result.step == 20
    assert len(result.losses) == 20
    for a, b in zip(straight.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_checkpoint_files(tmp_path):
    model = make_model()
    config = TrainConfig(steps=3, ema_decay=0.5, checkpoint_dir=str(tmp_path), progress=False)
    result = train(model, noisy_loss, batches, config)
    assert {p.name for p in tmp_path.iterdir()} == {
        "model.safetensors",
        "ema.safetensors",
        "state.pt",
    }
    weights = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    torch.testing.assert_close(weights["weight"], model.weight.detach())
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 3
    ema = EMA(make_model(), 0.5)
    load_checkpoint(tmp_path, make_model(), ema=ema, restore_rng=False)
    torch.testing.assert_close(ema.model.weight, result.ema.weight)
    assert not torch.equal(ema.model.weight, model.weight.detach())


def test_load_checkpoint_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_checkpoint(tmp_path, make_model())


def test_loss_must_be_scalar():
    config = TrainConfig(steps=1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train(make_model(), lambda m, b: m(b[0]), batches, config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
    ],
    ids=["steps", "lr", "ema", "clip", "schedule"],
)
def test_config_rejects_bad_values(kwargs, match):
    args = {"steps": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        TrainConfig(**args)


def test_lr_schedule():
    config = TrainConfig(steps=100, lr=1.0, warmup=10, lr_schedule="cosine")
    assert config.lr_at(0) == pytest.approx(0.1)
    assert config.lr_at(50) == pytest.approx(0.5)
    assert config.lr_at(100) == pytest.approx(0.0)


def _ddp_worker(rank: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model = make_model()

    def rank_batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return batches(2 * step + rank)

    config = TrainConfig(steps=5, lr=1e-2, checkpoint_dir=path, progress=False, device="cpu")
    train(model, noisy_loss, rank_batches, config)
    torch.save(model.state_dict(), f"{path}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_stay_in_sync(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key])
    assert (tmp_path / "model.safetensors").is_file()
    assert not torch.equal(w0["weight"], make_model().weight.detach())
