"""Device validation, in one place: set_options and every function that takes ``device=``."""

from __future__ import annotations

import pytest
import torch

import xappa
from xappa.options import available_devices, check_device, resolve_device


@pytest.mark.parametrize(
    ("device", "error", "match"),
    [
        ("cdua", ValueError, r"device must be a torch device such as 'cpu'.*found 'cdua'"),
        ("tpu", ValueError, r"found 'tpu' \(available here: \['cpu'"),
        ("cuda:7", ValueError, r"device 'cuda:7' is not available on this machine; available"),
        (3, TypeError, r"device must be a str or a torch.device; found int"),
    ],
    ids=["typo", "unknown-type", "absent-index", "not-a-string"],
)
def test_bad_devices_are_refused_everywhere(device, error, match) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(error, match=match):
        xappa.set_options(device=device)
    assert xappa.get_options()["device"] is None  # nothing changed
    with pytest.raises(error, match=match):
        resolve_device(device, torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_a_gpu_names_what_is_available() -> None:
    with pytest.raises(ValueError, match=r"'cuda' is not available.*available: \['cpu'"):
        check_device("cuda", name="device")


def test_good_devices() -> None:
    assert "cpu" in available_devices()
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    with xappa.set_options(device="cpu"):
        assert resolve_device(None, torch.device("meta")) == torch.device("cpu")
    assert resolve_device(None, torch.device("meta")) == torch.device("meta")
