"""Tests of loading a release laid out as Appa's (tiny configs, random weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from xappa.core.nn.autoencoder import ConvAutoencoder
from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
from xappa.core.nn.vidit import ViDiT
from xappa.models.hub import load_appa_release
from xappa.models.release import resolve_release

AE_RUN = Path("autoencoders/tiny/0")
LATENTS = AE_RUN / "latents/dump"
LAP = LATENTS / "denoisers/prior/0"

AE_YAML: dict[str, Any] = {
    "ae": {
        "name": "cae_f4c4",
        "shape": [32, 64],
        "resize": 4,
        "saturation": "softclip2",
        "noise_level": 0.1,
        "lat_channels": 4,
        "hid_channels": [8, 16, 16],
        "hid_blocks": [1, 1, 1],
        "pixel_shuffle": True,
        "ffn_factor": 1,
        "dropout": 0.0,
        "patch_size": [1, 1],
        "checkpointing": False,
        "identity_init": True,
        "in_channels": 3,
        "context_channels": 6,
        "latent_shape": [8, 18, 4],
    },
    "optim": {"optimizer": "soap", "learning_rate": "3e-5", "scheduler": "linear"},
    "train": {"update_steps": 10, "precision": "float32", "sub_pressure_levels": True},
    "valid": {"log_interval": 16384, "n_valid_samples": 64},
    "loss": {"error": "mse", "latitude_weighting": True},
    "slurm_account": "sail",
    "wandb_entity": "montefiore_sail",
    "num_model_params": 0,
    "path": "/path/to/appa/autoencoders/tiny/0",
    "hardware": {"gpus": 1},
}

DENOISER_YAML: dict[str, Any] = {
    "backbone": {
        "name": "vit_tiny",
        "arch": "vit",
        "mod_features": 16,
        "hid_channels": 32,
        "hid_blocks": 2,
        "ffn_factor": 2,
        "attention_heads": 2,
        "qk_norm": True,
        "rope": True,
        "patch_size": [2, 1, 1],
        "window_size": None,
        "dropout": 0.0,
        "checkpointing": True,
        "blanket_size": 4,
    },
    "optim": {"optimizer": "adamw", "learning_rate": "1e-4"},
    "train": {"blanket_size": 4, "noise_schedule": "rectified", "sigma_min": "1e-3"},
    "loss": {"sigma_min_penalty": 0},
    "valid": {"denoising_steps": 64},
    "ae_run": "tiny/0",
    "latent_dump": "dump",
    "latent_data": "era5.h5",
    "slurm_account": "sail",
    "wandb_entity": "montefiore_sail",
}


def write_release(root: Path, ae_yaml: dict = AE_YAML, den_yaml: dict = DENOISER_YAML) -> Path:
    """Write Appa's release layout with random weights; return the root."""
    torch.manual_seed(0)
    ae_cfg = AutoencoderConfig.from_appa(ae_yaml["ae"])
    vit_cfg = ViDiTConfig.from_appa(den_yaml["backbone"], in_channels=4, shape=(8, 18))
    for d in (LATENTS / "ae", LAP, Path("data")):
        (root / d).mkdir(parents=True, exist_ok=True)
    for path, data in [
        (AE_RUN / "config.yaml", ae_yaml),
        (LATENTS / "ae/config.yaml", ae_yaml),
        (LAP / "config.yaml", den_yaml),
    ]:
        (root / path).write_text(yaml.safe_dump(data))
    ae = ConvAutoencoder.from_config(ae_cfg)
    torch.save(ae.state_dict(), root / AE_RUN / "model_last.pth")
    torch.save(ae.state_dict(), root / LATENTS / "ae/model.pth")
    torch.save(ViDiT(vit_cfg).state_dict(), root / LAP / "model_last.pth")
    stats = {"mean": torch.linspace(-1, 1, 4), "std": torch.full((4,), 2.0)}
    torch.save(stats, root / LATENTS / "stats.pth")
    return root


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return write_release(tmp_path)


def edit_checkpoint(path: Path, fn: Any) -> None:
    state = torch.load(path, weights_only=True)
    fn(state)
    torch.save(state, path)


@pytest.mark.parametrize("sub", [".", str(LAP)], ids=["root", "lap-dir"])
def test_load_and_run(release: Path, sub: str) -> None:
    model = load_appa_release(release / sub, device="cpu")
    assert model.paths.denoiser_dir == (release / LAP).resolve()
    x = torch.randn(2, 3, 32, 64)
    z = model.autoencoder.encode(x)
    assert z.shape == (2, 4, 8, 18)
    assert model.autoencoder.decode(z).shape == x.shape
    window = torch.randn(2, 4, 4, 8, 18)
    date = torch.tensor([[[2021, 1, 1, h] for h in range(4)]] * 2)
    d = model.denoiser(window, torch.tensor([0.5, 5.0]), date=date)
    assert d.shape == window.shape
    assert all(torch.isfinite(t).all() for t in (z, d))
    assert not model.training


def test_statistics_configs_and_counts(release: Path) -> None:
    model = load_appa_release(release, device="cpu")
    expected_std = torch.sqrt(torch.tensor(4.0 + 0.01)).expand(4)
    assert torch.allclose(model.latent_std, expected_std)
    assert torch.allclose(model.latent_mean, torch.linspace(-1, 1, 4))
    z = torch.randn(1, 4, 8, 18)
    assert torch.allclose(model.unstandardize_latent(model.standardize_latent(z)), z, atol=1e-6)
    assert model.blanket_size == 4
    assert model.autoencoder_config.noise_level == 0.1
    assert model.configs["autoencoder_run"]["train"]["sub_pressure_levels"] is True
    counts = model.num_parameters
    assert counts["total"] == counts["autoencoder"] + counts["denoiser"] > 0


def test_loaded_weights_match_files(release: Path) -> None:
    model = load_appa_release(release, device="cpu")
    state = torch.load(release / LAP / "model_last.pth", weights_only=True)
    for key, value in model.denoiser.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pixel_statistics(release: Path) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    model = load_appa_release(release, device="cpu")
    with pytest.raises(FileNotFoundError, match="stats_era5"):
        model.pixel_statistics()
    path = release / "data/stats_era5_1993-2021-1h-1440x721.zarr"
    xr.Dataset({"t2m": ("stat", [280.0, 20.0])}).to_zarr(path, consolidated=False)
    model = load_appa_release(release, device="cpu")
    assert float(model.pixel_statistics()["t2m"][0]) == 280.0


def test_unsupported_config_field(release: Path) -> None:
    bad = {**DENOISER_YAML, "backbone": {**DENOISER_YAML["backbone"], "window_size": 4}}
    (release / LAP / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="backbone.window_size"):
        load_appa_release(release, device="cpu")


def test_unknown_autoencoder_field(release: Path) -> None:
    bad = {**AE_YAML, "ae": {**AE_YAML["ae"], "graph_hops": 3}}
    (release / LATENTS / "ae/config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="ae.graph_hops"):
        load_appa_release(release, device="cpu")


def test_missing_key(release: Path) -> None:
    edit_checkpoint(release / LAP / "model_last.pth", lambda s: s.pop("blocks.1.theta"))
    with pytest.raises(KeyError, match="blocks.1.theta"):
        load_appa_release(release, device="cpu")


def test_unexpected_key(release: Path) -> None:
    def add(state: dict) -> None:
        state["module.extra.weight"] = torch.zeros(1)

    edit_checkpoint(release / LATENTS / "ae/model.pth", add)
    with pytest.raises(KeyError, match="module.extra.weight"):
        load_appa_release(release, device="cpu")


def test_shape_mismatch(release: Path) -> None:
    def shrink(state: dict) -> None:
        state["encoder.descent.1.0.1.weight"] = torch.zeros(16, 8, 3, 3)

    edit_checkpoint(release / LATENTS / "ae/model.pth", shrink)
    with pytest.raises(ValueError, match=r"encoder\.descent\.1\.0\.1\.weight"):
        load_appa_release(release, device="cpu")


def test_missing_blanket_size(release: Path) -> None:
    backbone = {k: v for k, v in DENOISER_YAML["backbone"].items() if k != "blanket_size"}
    bad = {**DENOISER_YAML, "backbone": backbone, "train": {}}
    (release / LAP / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(KeyError, match="blanket_size"):
        load_appa_release(release, device="cpu")


def test_best_checkpoint_absent(release: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model_best.pth"):
        load_appa_release(release, checkpoint="best", device="cpu")
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        load_appa_release(release, checkpoint="ema", device="cpu")


def _checkpoints(release: Path, names: list[str]) -> dict[str, dict]:
    """Replace the lap's checkpoints by ``names``, each with its own random weights."""
    (release / LAP / "model_last.pth").unlink()
    vit_cfg = ViDiTConfig.from_appa(DENOISER_YAML["backbone"], in_channels=4, shape=(8, 18))
    states = {}
    for i, name in enumerate(names):
        torch.manual_seed(100 + i)
        states[name] = ViDiT(vit_cfg).state_dict()
        torch.save(states[name], release / LAP / name)
    return states


@pytest.mark.parametrize(
    ("present", "read"),
    [
        (["model_best.pth"], "model_best.pth"),
        (["model.pth"], "model.pth"),
        (["model_last.pth"], "model_last.pth"),
        (["model_best.pth", "model_last.pth"], "model_last.pth"),
        (["model.pth", "model_best.pth"], "model_best.pth"),
    ],
    ids=["only-best", "only-plain", "only-last", "last-over-best", "best-over-plain"],
)
def test_default_checkpoint_is_the_file_that_exists(
    release: Path, present: list[str], read: str
) -> None:
    states = _checkpoints(release, present)
    model = load_appa_release(release, device="cpu")
    assert model.checkpoint == (release / LAP / read).resolve()
    for key, value in model.denoiser.backbone.state_dict().items():
        assert torch.equal(value, states[read][key]), key


def test_plain_model_pth_by_name(release: Path) -> None:
    states = _checkpoints(release, ["model.pth", "model_best.pth"])
    model = load_appa_release(release, checkpoint="model", device="cpu")
    assert model.checkpoint.name == "model.pth"
    weight = next(iter(states["model.pth"]))
    assert torch.equal(model.denoiser.backbone.state_dict()[weight], states["model.pth"][weight])


def test_missing_checkpoint_says_which_exist(release: Path) -> None:
    _checkpoints(release, ["model_best.pth"])
    with pytest.raises(
        FileNotFoundError,
        match=r"model_last.pth \(checkpoint='last'\) does not exist in .*"
        r"found .pth files \['model_best.pth'\], readable as: model_best.pth \(checkpoint='best'\)",
    ):
        load_appa_release(release, checkpoint="last", device="cpu")
    (release / LAP / "model_best.pth").rename(release / LAP / "old.pth")
    with pytest.raises(
        FileNotFoundError,
        match=r"model_last.pth or model_best.pth or model.pth \(checkpoint='auto'\).*"
        r"found .pth files \['old.pth'\], readable as: none",
    ):
        load_appa_release(release, device="cpu")


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_checkpoint_cannot_run_code(release: Path) -> None:
    torch.save({"x": _Payload()}, release / LAP / "model_last.pth")
    with pytest.raises(ValueError, match=r"model_last.pth' must hold only tensors.*'print'"):
        load_appa_release(release, device="cpu")


def test_positional_dates_equal_keyword_dates(release: Path) -> None:
    model = load_appa_release(release, device="cpu")
    window = torch.randn(2, 4, 4, 8, 18, generator=torch.Generator().manual_seed(1))
    date = torch.tensor([[[2021, 12, 31, 20 + h] for h in range(4)]] * 2)
    sigma = torch.tensor([0.5, 5.0])
    with torch.no_grad():
        positional = model.denoiser(window, sigma, date)
        keyword = model.denoiser(window, sigma, date=date)
    assert torch.equal(positional, keyword)
    with pytest.raises(TypeError, match="multiple values for argument 'date'"):
        model.denoiser(window, sigma, date, date=date)


def test_several_denoisers_are_ambiguous(release: Path) -> None:
    other = release / LATENTS / "denoisers/prior/1"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text(yaml.safe_dump(DENOISER_YAML))
    with pytest.raises(ValueError, match="2 denoisers"):
        resolve_release(release)
    assert resolve_release(other).denoiser_dir == other.resolve()


def test_no_denoiser(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no denoiser"):
        load_appa_release(tmp_path, device="cpu")


def test_autoencoder_run_config_must_agree(release: Path) -> None:
    bad = {**AE_YAML, "ae": {**AE_YAML["ae"], "noise_level": 0.2}}
    (release / AE_RUN / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="ae.noise_level"):
        load_appa_release(release, device="cpu")
