"""Tests of Appa's convolutional autoencoder (tiny configs on CPU; published sizes on meta)."""

from __future__ import annotations

import pytest
import torch

from xappa.core.nn.autoencoder import ConvAutoencoder, saturate
from xappa.core.nn.configs import AutoencoderConfig, autoencoder_config
from xappa.core.nn.layers import count_parameters

CAE_F32_SECTION = {
    "name": "cae_f32c64",
    "shape": [721, 1440],
    "resize": 32,
    "saturation": "softclip2",
    "noise_level": 0.0,
    "lat_channels": 64,
    "hid_channels": [64, 128, 256, 512, 768, 1024],
    "hid_blocks": [3, 3, 3, 3, 3, 3],
    "pixel_shuffle": True,
    "ffn_factor": 1,
    "dropout": 0.0,
    "patch_size": [1, 1],
    "checkpointing": False,
    "identity_init": True,
    "in_channels": 71,
    "context_channels": 6,
    "latent_shape": [23, 47, 64],
}


@pytest.fixture
def tiny() -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder.from_config(autoencoder_config("tiny", noise_level=0.1)).eval()


def test_published_parameter_count() -> None:
    with torch.device("meta"):
        ae = ConvAutoencoder.from_config(autoencoder_config("cae_f32", in_channels=71))
    assert abs(count_parameters(ae) / 1e6 - 313.17) <= 0.01
    assert abs(count_parameters(ae.decoder) / 1e6 - 156.59) <= 0.01
    assert ae.latent_shape == (64, 23, 47)
    assert ae.config.padding == (15, 64)


def test_published_state_dict_names() -> None:
    with torch.device("meta"):
        ae = ConvAutoencoder.from_config(autoencoder_config("cae_f32"))
    keys = set(ae.state_dict())
    expected = {
        "encoder.descent.0.0.weight",  # input conv
        "encoder.descent.0.1.norm.eps",  # ResBlock LayerNorm buffer
        "encoder.descent.0.1.ffn.0.weight",
        "encoder.descent.0.3.ffn.3.bias",
        "encoder.descent.1.0.1.weight",  # Sequential(Patchify, Conv)
        "encoder.descent.5.4.weight",  # last depth: conv to latent at 1 + n_blocks
        "decoder.ascent.0.0.weight",  # conv from latent
        "decoder.ascent.0.4.0.weight",  # Sequential(Conv, Unpatchify)
        "decoder.ascent.5.3.weight",  # output conv
    }
    assert expected <= keys
    assert tuple(ae.state_dict()["encoder.descent.1.0.1.weight"].shape) == (128, 256, 3, 3)


def test_from_appa_section() -> None:
    cfg = AutoencoderConfig.from_appa(CAE_F32_SECTION)
    assert cfg == autoencoder_config("cae_f32")
    assert cfg.latent_shape == (23, 47, 64)


@pytest.mark.parametrize(
    ("key", "value", "exc"),
    [
        ("pixel_shuffle", False, ValueError),
        ("foo", 1, ValueError),
        ("latent_shape", [24, 47, 64], ValueError),
        ("saturation", "clip", ValueError),
    ],
    ids=["pixel_shuffle", "unknown", "latent_shape", "saturation"],
)
def test_from_appa_rejects(key: str, value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match=key):
        AutoencoderConfig.from_appa({**CAE_F32_SECTION, key: value})


def test_from_appa_missing_channels() -> None:
    section = {k: v for k, v in CAE_F32_SECTION.items() if k != "in_channels"}
    with pytest.raises(KeyError, match="in_channels"):
        AutoencoderConfig.from_appa(section)


def test_shapes_and_finite(tiny: ConvAutoencoder) -> None:
    x = torch.randn(2, 3, 32, 64)
    z = tiny.encode(x)
    assert z.shape == (2, 4, 8, 18)
    y = tiny.decode(z)
    assert y.shape == x.shape
    assert torch.isfinite(z).all() and torch.isfinite(y).all()


def test_decode_noise_only_when_asked(tiny: ConvAutoencoder) -> None:
    z = torch.randn(1, 4, 8, 18)
    assert torch.equal(tiny.decode(z), tiny.decode(z))
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(tiny.decode(z), tiny.decode(z, noise=True, generator=g))


def test_wrong_shape_names_argument(tiny: ConvAutoencoder) -> None:
    with pytest.raises(RuntimeError, match="x must have shape"):
        tiny.encode(torch.randn(1, 3, 30, 64))


def test_padding_is_circular_in_longitude(tiny: ConvAutoencoder) -> None:
    x = torch.arange(64.0).expand(1, 3, 32, 64)
    p = tiny.pad(x)
    assert p.shape == (1, 3, 32, 72)
    assert torch.equal(p[0, 0, 0, :4], torch.tensor([60.0, 61, 62, 63]))
    assert torch.equal(tiny.unpad(p), x)


def test_padding_is_zero_in_latitude() -> None:
    ae = ConvAutoencoder.from_config(autoencoder_config("tiny", shape=(29, 64)))
    p = ae.pad(torch.ones(1, 3, 29, 64))
    assert p.shape == (1, 3, 32, 72)
    assert p[..., 0, :].abs().sum() == 0 and p[..., -2:, :].abs().sum() == 0
    assert ae.encode(torch.randn(1, 3, 29, 64)).shape == (1, 4, 8, 18)


@pytest.mark.parametrize("kind", ["softclip2", "softclip", "tanh"])
def test_saturation_bound(kind: str) -> None:
    z = 100 * torch.randn(1000)
    assert saturate(z, kind, 5.0).abs().max() <= 5.0


def test_state_dict_round_trip(tiny: ConvAutoencoder) -> None:
    other = ConvAutoencoder.from_config(tiny.config).eval()
    other.load_state_dict(tiny.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 64)
    assert torch.equal(other.encode(x), tiny.encode(x))


def test_gradients_finite(tiny: ConvAutoencoder) -> None:
    _, y = tiny.train()(torch.randn(1, 3, 32, 64))
    y.square().mean().backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


# torch.func's first use scripts a helper with the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_decoder_jvp_matches_finite_differences(tiny: ConvAutoencoder) -> None:
    ae = tiny.double()
    z = torch.randn(1, 4, 8, 18, dtype=torch.float64)
    v = torch.randn_like(z)
    y, jv = torch.func.jvp(ae.decode, (z,), (v,))
    eps = 1e-6
    fd = (ae.decode(z + eps * v) - ae.decode(z - eps * v)) / (2 * eps)
    assert y.shape == jv.shape == (1, 3, 32, 64)
    assert torch.allclose(jv, fd, atol=1e-6)
