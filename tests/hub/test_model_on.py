"""Shared models are never moved (Model.on) and their weight hash never goes stale."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
import torch

from xappa.models.hub import clear_cache, load_model
from xappa.models.model import Model, _module_on
from xappa.testing import tiny_model


def _fresh_hash(model: Model) -> str:
    """The hash recomputed from scratch, ignoring any cache."""
    model._hash = None
    return model.weight_hash


@pytest.mark.parametrize(
    "device", ["cpu", torch.device("cpu"), "cpu:0"], ids=["str", "torch.device", "indexed"]
)
def test_on_the_same_device_is_the_same_model(device: str | torch.device) -> None:
    model = tiny_model()
    assert model.on(device) is model


def test_on_another_device_copies_and_leaves_the_original() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.denoiser.state_dict().items()}
    moved = model.on("meta")  # a device without storage: exercises the move on CPU machines
    assert moved is not model and moved.device == torch.device("meta", 0)
    assert model.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in model.denoiser.parameters())
    assert all(p.device.type == "meta" for p in moved.denoiser.parameters())
    assert all(p.device.type == "meta" for p in moved.autoencoder.parameters())
    assert moved.latent_std.device.type == "meta" and model.latent_std.device.type == "cpu"
    assert moved.stats is not model.stats and moved.spec == model.spec
    assert moved.denoiser is not model.denoiser and moved.autoencoder is not model.autoencoder
    for key, value in model.denoiser.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_module_copies_share_no_storage() -> None:
    # Model.on copies each network with _module_on; on a CPU-only machine, copy to the CPU
    model = tiny_model()
    copy = _module_on(model.denoiser, torch.device("cpu"))
    ours = {t.untyped_storage().data_ptr() for t in model.denoiser.state_dict().values()}
    theirs = {t.untyped_storage().data_ptr() for t in copy.state_dict().values()}
    assert not ours & theirs
    theirs_state = copy.state_dict()
    for key, value in model.denoiser.state_dict().items():
        assert torch.equal(value, theirs_state[key]), key
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert model.weight_hash == _fresh_hash(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_a_copy_on_the_gpu_shares_nothing() -> None:
    model = tiny_model()
    hash_before = model.weight_hash
    moved = model.on("cuda")
    assert moved is not model and moved.on("cuda") is moved
    assert moved.weight_hash == hash_before
    with torch.no_grad():
        next(moved.denoiser.parameters()).add_(1.0)
        moved.latent_mean.add_(1.0)
    assert moved.weight_hash != hash_before
    assert model.weight_hash == hash_before == _fresh_hash(model)
    moved.stats.attrs["changed"] = 1
    assert "changed" not in model.stats.attrs


def test_the_cached_model_is_never_moved() -> None:
    clear_cache()
    try:
        shared = load_model("swe-default", device="cpu")
        elsewhere = shared.on("meta")
        again = load_model("swe-default", device="cpu")
        assert again is shared and shared.device == torch.device("cpu")
        assert next(shared.denoiser.parameters()).device.type == "cpu"
        assert elsewhere.device.type == "meta"
    finally:
        clear_cache()


def _load_state_dict(m: Model) -> None:
    state = {k: torch.full_like(v, 0.5) for k, v in m.denoiser.state_dict().items()}
    m.denoiser.load_state_dict(state)


def _optimizer_step(m: Model) -> None:
    params = list(m.autoencoder.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1)
    loss = m.autoencoder.decode(torch.ones(1, *m.latent_shape)).square().mean()
    loss.backward()
    optimizer.step()


def _in_place(m: Model) -> None:
    with torch.no_grad():
        next(m.denoiser.parameters()).mul_(2.0)


def _to_double(m: Model) -> None:
    m.denoiser.to(torch.float64)


def _replace_statistic(m: Model) -> None:
    m.latent_std = m.latent_std * 2


def _replace_parameter(m: Model) -> None:
    name, param = next(iter(m.autoencoder.named_parameters()))
    module = m.autoencoder.get_submodule(name.rpartition(".")[0])
    setattr(module, name.rpartition(".")[2], torch.nn.Parameter(param.detach() + 1))


def _assign_data(m: Model) -> None:
    param = next(m.denoiser.parameters())
    param.data = param.detach() + 1


@pytest.mark.parametrize(
    "change",
    [
        _load_state_dict,
        _optimizer_step,
        _in_place,
        _to_double,
        _replace_statistic,
        _replace_parameter,
        _assign_data,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_weight_hash_follows_in_place_changes(change: Callable[[Model], None]) -> None:
    model = tiny_model()
    before = model.weight_hash
    change(model)
    after = model.weight_hash
    assert after != before
    assert after == _fresh_hash(model)


def test_a_model_pickles_with_its_hash_cache_dropped() -> None:
    model = tiny_model()
    digest = model.weight_hash
    again = pickle.loads(pickle.dumps(model))
    assert again._hash is None and again.weight_hash == digest
    assert model._hash is not None  # pickling does not change the original


def test_weight_hash_is_cached_while_nothing_changes() -> None:
    model = tiny_model()
    first = model.weight_hash
    key = model._hash
    assert model.weight_hash == first and model._hash is key
    with torch.no_grad():
        param = next(model.denoiser.parameters())
        param.copy_(param.clone())  # the same values again: a new version, the same hash
    assert model.weight_hash == first and model._hash is not key
