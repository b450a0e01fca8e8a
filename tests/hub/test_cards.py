"""Model cards: parsing, validation, and agreement with the packaged registry."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pooch
import pytest

from xappa.models.cards import CardFile, ModelCard, load_cards

HASH = "ab" * 32


def _entry(**changes: object) -> dict:
    entry = {
        "kind": "xappa",
        "description": "A test model.",
        "files": [{"name": "m.yaml", "sha256": HASH}, {"name": "m.safetensors", "sha256": HASH}],
    }
    entry.update(changes)
    return entry


def _packaged_registry() -> dict[str, str]:
    p = pooch.create(path="unused", base_url="http://127.0.0.1/", registry=None)
    with resources.as_file(resources.files("xappa").joinpath("data", "registry.txt")) as f:
        p.load_registry(f)
    return p.registry


def test_packaged_cards_parse() -> None:
    cards = load_cards()
    assert "appa-workshop" in cards
    assert all(isinstance(c, ModelCard) and c.name == n for n, c in cards.items())


@pytest.mark.parametrize("name", sorted(load_cards()), ids=str)
def test_every_card_file_is_registered_or_flagged(name: str) -> None:
    registry = _packaged_registry()
    for f in load_cards()[name].files:
        if f.verified:
            assert registry.get(f.name) == f.sha256, f.name
        else:
            assert f.name not in registry


def test_unpinned_revision_means_unverified() -> None:
    for card in load_cards().values():
        if not card.revision_pinned:
            assert not card.verified


def test_appa_card_points_at_hf_release() -> None:
    card = load_cards()["appa-workshop"]
    assert card.kind == "appa-release" and card.root == "appa-workshop"
    for f in card.files:
        assert f.url.startswith("https://huggingface.co/datasets/montefiore-sail/appa/resolve/")
        assert "autoencoders/workshop/0/" in f.url


def test_card_is_frozen() -> None:
    card = ModelCard.from_dict("m", _entry())
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    assert card.verified and card.files[0] == CardFile(name="m.yaml", sha256=HASH)


def test_sha256_prefix_is_accepted() -> None:
    files = [
        {"name": "m.yaml", "sha256": f"sha256:{HASH}"},
        {"name": "m.safetensors", "sha256": HASH},
    ]
    assert ModelCard.from_dict("m", _entry(files=files)).files[0].sha256 == HASH


def test_unverified_file_needs_explicit_flag() -> None:
    files = [{"name": "m.yaml", "sha256": None}, {"name": "m.safetensors", "sha256": HASH}]
    with pytest.raises(ValueError, match="unverified: true"):
        ModelCard.from_dict("m", _entry(files=files))
    files[0]["unverified"] = True
    card = ModelCard.from_dict("m", _entry(files=files))
    assert not card.verified and not card.files[0].verified


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"kind": "onnx"}, ValueError, "kind must be one of"),
        ({"files": [{"name": "m.yaml", "sha256": "abc"}]}, ValueError, "64 hex digits"),
        ({"files": [{"name": "m.yaml", "sha256": HASH}]}, ValueError, "one .yaml and one"),
        ({"colour": "red"}, ValueError, "unknown fields"),
        ({"license": 3}, TypeError, "must be a string"),
        ({"checkpoint": "first"}, ValueError, "checkpoint must be"),
        ({"kind": "appa-release"}, ValueError, "needs a root"),
    ],
    ids=["kind", "short-hash", "xappa-files", "unknown-field", "text-type", "checkpoint", "root"],
)
def test_card_validation(changes: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ModelCard.from_dict("m", _entry(**changes))


def test_missing_required_field() -> None:
    entry = _entry()
    del entry["description"]
    with pytest.raises(KeyError, match="description"):
        ModelCard.from_dict("m", entry)


def test_load_cards_from_file(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text(
        "models:\n  m:\n    kind: xappa\n    description: d\n    files:\n"
        f"      - {{name: m.yaml, sha256: {HASH}}}\n      - {{name: m.safetensors, sha256: {HASH}}}\n"
    )
    assert list(load_cards(path)) == ["m"]
