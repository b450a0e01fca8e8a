"""Tests of the ViDiT backbone and the date encodings (tiny configs on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from xappa.core.diffusion.denoiser import PreconditionedDenoiser
from xappa.core.nn.configs import ViDiTConfig, vidit_config
from xappa.core.nn.dates import local_time_encoding, vidit_date_features, year_progress_encoding
from xappa.core.nn.layers import count_parameters
from xappa.core.nn.vidit import ViDiT

VIT_LARGE_SECTION = {
    "name": "vit_large",
    "arch": "vit",
    "mod_features": 256,
    "hid_channels": 1024,
    "hid_blocks": 16,
    "ffn_factor": 4,
    "attention_heads": 8,
    "qk_norm": True,
    "rope": True,
    "patch_size": [2, 1, 1],
    "window_size": None,
    "dropout": 0.0,
    "checkpointing": True,
    "blanket_size": 24,
}


def window_dates(batch: int, k: int, start: tuple[int, int, int, int]) -> torch.Tensor:
    y, m, d, h = start
    rows = [[y, m, d + (h + i) // 24, (h + i) % 24] for i in range(k)]
    return torch.tensor([rows] * batch)


@pytest.fixture
def tiny() -> ViDiT:
    torch.manual_seed(0)
    return ViDiT(vidit_config("tiny")).eval()


def test_published_parameter_count() -> None:
    with torch.device("meta"):
        net = ViDiT(vidit_config("vit_large", in_channels=64, blanket_size=24))
    assert abs(count_parameters(net) / 1e6 - 222.95) <= 0.01
    assert net.config.tokens == 12_972
    assert tuple(net.in_proj.weight.shape) == (1024, 320)
    assert tuple(net.blocks[0].theta.shape) == (3, 512)


def test_state_dict_names(tiny: ViDiT) -> None:
    keys = set(tiny.state_dict())
    expected = {
        "in_proj.weight",
        "out_proj.bias",
        "positional_embedding.0.freqs",
        "positional_embedding.2.weight",
        "diffusion_time_encoder.freqs",
        "blocks.1.ada_zero.0.weight",
        "blocks.1.ada_zero.2.bias",
        "blocks.1.msa.qkv_proj.weight",
        "blocks.1.msa.y_proj.bias",
        "blocks.1.theta",
        "blocks.1.ffn.0.weight",
        "blocks.1.ffn.3.bias",
    }
    assert expected <= keys
    assert "blocks.0.msa.qkv_proj.bias" not in keys


def test_from_appa_section() -> None:
    cfg = ViDiTConfig.from_appa(VIT_LARGE_SECTION, in_channels=64, shape=(23, 47))
    assert cfg == vidit_config("vit_large", checkpointing=True)


@pytest.mark.parametrize(
    ("key", "value", "exc"),
    [
        ("window_size", 8, ValueError),
        ("arch", "graph", ValueError),
        ("foo", 1, ValueError),
        ("blanket_size", None, KeyError),
    ],
    ids=["window", "arch", "unknown", "missing-blanket"],
)
def test_from_appa_rejects(key: str, value: object, exc: type[Exception]) -> None:
    section = {**VIT_LARGE_SECTION, key: value}
    if value is None:
        del section[key]
    with pytest.raises(exc, match=key):
        ViDiTConfig.from_appa(section, in_channels=64, shape=(23, 47))


def test_shapes_finite_deterministic(tiny: ViDiT) -> None:
    x = torch.randn(2, 4, 4, 8, 18)
    date = window_dates(2, 4, (2020, 2, 28, 21))
    c_noise = torch.tensor([-5.0, 20.0])
    y = tiny(x, c_noise, date=date)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert torch.equal(y, tiny(x, c_noise, date=date))


def test_date_changes_output(tiny: ViDiT) -> None:
    x = torch.randn(1, 4, 4, 8, 18)
    a = tiny(x, torch.zeros(1), date=window_dates(1, 4, (2020, 1, 1, 0)))
    b = tiny(x, torch.zeros(1), date=window_dates(1, 4, (2020, 7, 1, 12)))
    assert not torch.allclose(a, b)


def test_preconditioned_denoiser(tiny: ViDiT) -> None:
    denoiser = PreconditionedDenoiser(tiny)
    x = torch.randn(2, 4, 4, 8, 18, requires_grad=True)
    d = denoiser(x, torch.tensor([0.1, 10.0]), date=window_dates(2, 4, (2021, 3, 1, 0)))
    assert d.shape == x.shape and torch.isfinite(d).all()
    d.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in tiny.parameters())


def test_bad_date_shape(tiny: ViDiT) -> None:
    with pytest.raises(RuntimeError, match="date must have shape"):
        tiny(torch.randn(1, 4, 4, 8, 18), torch.zeros(1), date=torch.zeros(1, 3, 4).long())


@pytest.mark.parametrize(
    ("date", "fraction"),
    [
        ((2021, 1, 1, 0), 0.0),
        ((2021, 12, 31, 23), 8759 / 8760),
        ((2020, 7, 2, 0), 183 / 366),
        ((2020, 4, 1, 12), 91.5 / 366),
    ],
    ids=["new-year", "last-hour", "leap-july", "leap-april"],
)
def test_year_progress(date: tuple[int, ...], fraction: float) -> None:
    enc = year_progress_encoding(torch.tensor(date))
    angle = 2 * math.pi * fraction
    assert torch.allclose(enc, torch.tensor([math.sin(angle), math.cos(angle)]), atol=1e-6)


def test_local_time_and_vidit_features() -> None:
    date = torch.tensor([2021, 5, 5, 6])
    enc = local_time_encoding(date, torch.tensor([0.0, 90.0, -90.0]))
    expected = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    assert torch.allclose(enc, expected, atol=1e-6)
    feats = vidit_date_features(window_dates(1, 2, (2021, 1, 1, 0)))
    assert feats.shape == (1, 8)
    # year progress (sin, cos) per frame, then UTC hour (sin, cos) per frame
    assert torch.allclose(
        feats[0, 6:], torch.tensor([math.sin(math.pi / 12), math.cos(math.pi / 12)])
    )
