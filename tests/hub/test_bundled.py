"""The bundled default model (swe-default): shipped in the package, still hash-checked."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pooch
import pytest

import xappa
from xappa.models import hub
from xappa.models.cards import CardFile, ModelCard, load_cards
from xappa.models.hub import fetch_model_files, load_model
from xappa.testbeds.shallow_water import simulate

NAME = "swe-default"


def _models_dir() -> Path:
    return Path(str(resources.files("xappa").joinpath("data", "models")))


def _registry() -> dict[str, str]:
    out = {}
    text = resources.files("xappa").joinpath("data", "registry.txt").read_text()
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, digest = line.split()
            out[name] = digest
    return out


def test_card_files_are_bundled_registered_and_match() -> None:
    card = load_cards()[NAME]
    registry = _registry()
    assert card.kind == "xappa"
    assert card.files and all(f.bundled for f in card.files)
    for f in card.files:
        path = _models_dir() / f.name
        assert path.is_file(), f.name
        assert registry[f.name] == f.sha256
        assert pooch.file_hash(str(path), alg="sha256") == f.sha256
        assert path.stat().st_size < 5_000_000  # "a few MB at most"


def test_loads_offline_without_touching_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XAPPA_OFFLINE", "1")
    monkeypatch.setenv("XAPPA_DATA_DIR", str(tmp_path / "cache"))
    model = load_model(NAME, device="cpu", cache=False)
    assert model.spec.shape == (32, 64)
    assert model.spec.name == "shallow-water"  # named by its recipe (data.name)
    assert "spec='shallow-water'" in repr(model)
    assert set(model.spec.variables) == {
        "geopotential",
        "u_component_of_wind",
        "v_component_of_wind",
    }
    assert model.window == 48  # 48-hour windows (recipes/swe-default/prior.yaml)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_modified_bundled_file_is_refused(tmp_path: Path) -> None:
    card = load_cards()[NAME]
    wrong = "0" * 64
    files = tuple(
        CardFile(
            name=f.name,
            sha256=wrong if f.name.endswith(".safetensors") else f.sha256,
            bundled=True,
        )
        for f in card.files
    )
    cards = {"tampered": ModelCard(name="tampered", kind="xappa", description="x", files=files)}
    registry = {f.name: f.sha256 for f in files}
    with pytest.raises(ValueError, match="must have sha256 0000"):
        fetch_model_files("tampered", cards=cards, registry=registry, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (
            {"name": "m/a.safetensors", "bundled": True, "sha256": None, "unverified": True},
            "needs a sha256",
        ),
        (
            {"name": "m/a.safetensors", "bundled": True, "sha256": "a" * 64, "url": "http://x/a"},
            "no url",
        ),
        ({"name": "m/a.safetensors", "bundled": "yes", "sha256": "a" * 64}, "must be a bool"),
    ],
)
def test_bundled_entries_are_validated(entry: dict, match: str) -> None:
    data = {
        "kind": "xappa",
        "description": "x",
        "files": [entry, {"name": "m/a.yaml", "sha256": "b" * 64}],
    }
    with pytest.raises((ValueError, TypeError), match=match):
        ModelCard.from_dict("m", data)


def test_reconstructs_a_fresh_state() -> None:
    """The shipped autoencoder reconstructs a state from a seed not used in training."""
    hub.clear_cache()
    model = load_model(NAME, device="cpu")
    truth = simulate(1, 0.25, nlat=32, nlon=64, spinup_days=2, seed=777).isel(trajectory=0)
    truth = truth[list(model.spec.variables)]
    latents = xappa.encode(truth, model=model)
    back = xappa.decode(latents, model=model)
    for name in model.spec.variables:
        err = float(np.sqrt(((back[name] - truth[name]) ** 2).mean()))
        std = float(truth[name].std())
        assert err < 0.1 * std, (name, err, std)  # measured about 0.01 x std in training
