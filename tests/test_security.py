"""Security: no loader runs code from a file, trusts a changed byte, or writes outside its place.

Every payload here creates a sentinel directory if it runs (the control tests show that it
does, through the unsafe loaders). Each test asserts the exception type, that the message
names the file or argument, and that nothing was written: no sentinel, no file outside the
cache, no file in the cache that looks complete. HTTP servers are bound to 127.0.0.1 and
started and stopped by the tests.
"""

from __future__ import annotations

import functools
import http.server
import importlib.metadata
import json
import os
import pickle
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numcodecs
import pytest
import safetensors.torch
import tomllib
import torch
import xarray as xr
import yaml
from numcodecs.errors import UnsafeDecodeError
from packaging.requirements import Requirement
from test_release import LAP, LATENTS, write_release

from xappa.commands._io import open_input
from xappa.io.integrity import file_sha256
from xappa.models.cards import CardFile, ModelCard, load_cards
from xappa.models.files import read_model_files, read_training_runs
from xappa.models.hub import fetch_model_files, load_model, save_model_files
from xappa.models.release import load_appa_release
from xappa.state.stats import read_stats
from xappa.testing import tiny_model
from xappa.train.latent_prior import save_prior_files
from xappa.train.loop import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class _Mkdir:
    """Pickles to ``os.mkdir(path)``: unpickling it creates the sentinel."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def _yaml_payload(sentinel: Path) -> str:
    return f"!!python/object/apply:os.mkdir [{json.dumps(str(sentinel))}]"


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a payload ran"


def test_control_the_payloads_run_when_loaded_unsafely(tmp_path: Path) -> None:
    pickled, yamled = tmp_path / "by-pickle", tmp_path / "by-yaml"
    pickle.loads(pickle.dumps(_Mkdir(pickled)))  # the control
    yaml.unsafe_load(_yaml_payload(yamled))
    assert pickled.is_dir() and yamled.is_dir()


# -- torch .pth files: weights_only=True everywhere ------------------------------------------


@pytest.mark.parametrize(
    ("where", "role"),
    [
        (LATENTS / "ae/model.pth", "autoencoder checkpoint"),
        (LAP / "model_last.pth", "denoiser checkpoint"),
        (LATENTS / "stats.pth", "latent statistics"),
    ],
    ids=["autoencoder", "denoiser", "latent-stats"],
)
def test_release_pth_files_cannot_run_code(
    tmp_path: Path, sentinel: Path, where: Path, role: str
) -> None:
    release = write_release(tmp_path / "release")
    torch.save({"mean": _Mkdir(sentinel)}, release / where)
    with pytest.raises(
        ValueError, match=rf"{role} '.*{re.escape(where.name)}' must hold only tensors.*mkdir"
    ):
        load_appa_release(release, device="cpu")


def test_training_state_sidecar_cannot_run_code(tmp_path: Path, sentinel: Path) -> None:
    model = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "run", model, step=3)
    torch.save({"step": _Mkdir(sentinel), "extra": {}}, tmp_path / "run/state.pt")
    with pytest.raises(ValueError, match=r"training state '.*state.pt' must hold only tensors"):
        load_checkpoint(tmp_path / "run", model)


def test_truncated_pth_is_a_clear_error(tmp_path: Path) -> None:
    release = write_release(tmp_path / "release")
    path = release / LAP / "model_last.pth"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"model_last.pth' must be a complete torch file"):
        load_appa_release(release, device="cpu")


# -- zarr stores with a pickle codec ---------------------------------------------------------


def _v2_array(root: Path, name: str, meta: dict, chunk: bytes) -> None:
    (root / name).mkdir(parents=True)
    base = {"zarr_format": 2, "shape": [2], "chunks": [2], "fill_value": None, "order": "C"}
    (root / name / ".zarray").write_text(json.dumps(base | meta))
    (root / name / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": [name]}))
    (root / name / "0").write_bytes(chunk)


def _store_v2_compressor(root: Path, payload: bytes) -> None:
    root.mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    meta = {"dtype": "<f8", "compressor": {"id": "pickle", "protocol": 5}, "filters": None}
    _v2_array(root, "level", meta, payload)


def _store_v2_object_filter(root: Path, payload: bytes) -> None:
    root.mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    meta = {"dtype": "|O", "compressor": None, "filters": [{"id": "pickle", "protocol": 5}]}
    _v2_array(root, "level", meta, payload)


def _store_v3_codec(root: Path, payload: bytes) -> None:
    (root / "level/c").mkdir(parents=True)
    (root / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
    )
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [2],
        "data_type": "float64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "numcodecs.pickle", "configuration": {"protocol": 5}},
        ],
        "attributes": {},
        "dimension_names": ["level"],
    }
    (root / "level/zarr.json").write_text(json.dumps(meta))
    (root / "level/c/0").write_bytes(payload)


def _open_plain(store: Path, tmp_path: Path) -> object:
    return xr.open_zarr(store, consolidated=False)


def _open_read_stats(store: Path, tmp_path: Path) -> object:
    return read_stats(store)


def _open_pixel_statistics(store: Path, tmp_path: Path) -> object:
    release = write_release(tmp_path / "release")
    shutil.move(store, release / "data/stats_era5_1993-2021-1h-1440x721.zarr")
    return load_appa_release(release, device="cpu").pixel_statistics()


def _open_command_input(store: Path, tmp_path: Path) -> object:
    return open_input(str(store), "--pred")  # every sub-command's --obs, --pred, --truth, ...


def _open_latent_store(store: Path, tmp_path: Path) -> object:
    model = tiny_model()
    extra = {"data": str(store), "window": model.window, "noise_level": 0.0}
    save_prior_files(tmp_path / "prior", model.denoiser.backbone.config, extra=extra)
    safetensors.torch.save_model(model.denoiser, str(tmp_path / "prior/model.safetensors"))
    return read_training_runs(tmp_path / "prior")


@pytest.mark.parametrize(
    "build",
    [_store_v2_compressor, _store_v2_object_filter, _store_v3_codec],
    ids=["v2-compressor", "v2-object-filter", "v3-codec"],
)
@pytest.mark.parametrize(
    ("loader", "named"),
    [
        (_open_plain, None),
        (_open_read_stats, None),
        (_open_pixel_statistics, "pixel statistics"),
        (_open_latent_store, "latent store"),
        (_open_command_input, "--pred"),
    ],
    ids=["xr.open_zarr", "read_stats", "pixel_statistics", "read_training_runs", "cli-input"],
)
def test_zarr_pickle_codec_is_refused(
    tmp_path: Path,
    sentinel: Path,
    build: Callable[[Path, bytes], None],
    loader: Callable[[Path, Path], object],
    named: str | None,
) -> None:
    store = tmp_path / "evil.zarr"
    build(store, pickle.dumps(_Mkdir(sentinel), protocol=5))
    # zarr's own message names the codec; xappa's loaders add the store's path
    store_named = rf"{named} '.*\.zarr' must be a zarr store that reads without running code"
    match = "pickle" if named is None else rf"{store_named}; found .*pickle"
    with pytest.raises(ValueError, match=match):
        loader(store, tmp_path)


def test_numcodecs_refuses_to_unpickle(sentinel: Path) -> None:
    codec = numcodecs.get_codec({"id": "pickle"})
    with pytest.raises(UnsafeDecodeError, match="Pickle.decode is disabled"):
        codec.decode(pickle.dumps(_Mkdir(sentinel)))


def _dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("numcodecs", "0.13.1"),  # unpickles chunks, with zarr 2.18 (the report)
        ("numcodecs", "0.16.5"),
        ("numcodecs", "0.17.0"),  # the fix is in 0.15.2, 0.16.6 and 0.17.1
        ("zarr", "2.18.7"),  # needs numcodecs < 0.16 and reads pickle codecs
        ("zarr", "3.0.10"),  # before zarr's data types, which refuse pickle codecs
    ],
    ids=lambda v: str(v),
)
def test_dependency_floors_exclude_versions_that_unpickle(name: str, version: str) -> None:
    requirement = _dependencies()[name]
    assert not requirement.specifier.contains(version)
    assert requirement.specifier.contains(importlib.metadata.version(name))


# -- YAML: safe_load everywhere, tags refused with the file's name ---------------------------


def _yaml_model(tmp_path: Path, text: str) -> Callable[[], object]:
    save_model_files(tiny_model(), tmp_path / "model", stem="tiny", show=False)
    path = tmp_path / "model/tiny.yaml"
    path.write_text(path.read_text() + f"extra: {text}\n")
    return lambda: read_model_files(path)


def _yaml_cards(tmp_path: Path, text: str) -> Callable[[], object]:
    path = tmp_path / "cards.yaml"
    path.write_text(f"models:\n  evil: {text}\n")
    return lambda: load_cards(path)


def _yaml_release(tmp_path: Path, text: str) -> Callable[[], object]:
    release = write_release(tmp_path / "release")
    path = release / LAP / "config.yaml"
    path.write_text(path.read_text() + f"extra: {text}\n")
    return lambda: load_appa_release(release / LAP, device="cpu")


def _yaml_prior(tmp_path: Path, text: str) -> Callable[[], object]:
    model = tiny_model()
    save_prior_files(tmp_path / "prior", model.denoiser.backbone.config, extra={"window": 4})
    safetensors.torch.save_model(model.denoiser, str(tmp_path / "prior/model.safetensors"))
    path = tmp_path / "prior/prior.yaml"
    path.write_text(path.read_text() + f"extra: {text}\n")
    return lambda: read_training_runs(tmp_path / "prior")


@pytest.mark.parametrize(
    ("setup", "fname"),
    [
        (_yaml_model, "tiny.yaml"),
        (_yaml_cards, "cards.yaml"),
        (_yaml_release, "config.yaml"),
        (_yaml_prior, "prior.yaml"),
    ],
    ids=["model-yaml", "cards", "release-config", "training-run"],
)
def test_yaml_python_tags_are_refused(
    tmp_path: Path, sentinel: Path, setup: Callable[[Path, str], Callable], fname: str
) -> None:
    load = setup(tmp_path, _yaml_payload(sentinel))
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(fname)}' is not valid YAML for yaml.safe_load: could not determine"
        r" a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.mkdir' at line",
    ):
        load()


# -- downloads: tampered, truncated or cut files leave nothing that looks complete -----------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``cut`` names files whose body stops half-way (connection closed)."""

    cut: frozenset[str] = frozenset()

    def copyfile(self, source, outputfile) -> None:
        data = source.read()
        if Path(self.path).name in self.cut:
            outputfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        outputfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str], type[_Handler]]]:
    """A tiny model's files served on 127.0.0.1; yields the directory, URL, hashes, handler."""
    directory = tmp_path / "served"
    hashes = save_model_files(tiny_model(), directory, stem="tiny", show=False)
    handler = type("Handler", (_Handler,), {"cut": frozenset()})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield directory, f"http://127.0.0.1:{httpd.server_address[1]}/", hashes, handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _card(hashes: dict[str, str], **names: str) -> dict[str, ModelCard]:
    files = tuple(CardFile(name=names.get(k, k), sha256=v) for k, v in hashes.items())
    return {"tiny": ModelCard(name="tiny", kind="xappa", description="d", files=files)}


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_flip_byte, _truncate], ids=["tampered", "truncated"])
def test_damaged_download_is_refused_and_deleted(
    tmp_path: Path, served: tuple, damage: Callable[[Path], None]
) -> None:
    directory, url, hashes, _ = served
    damage(directory / "tiny.safetensors")
    cache = tmp_path / "cache"
    with pytest.raises(
        ValueError,
        match=rf"downloaded 'tiny.safetensors' from '{re.escape(url)}tiny.safetensors' does not"
        rf" match its registered sha256 {hashes['tiny.safetensors']}",
    ):
        fetch_model_files(
            "tiny", cards=_card(hashes), registry=hashes, base_url=url, data_dir=cache
        )
    assert "tiny.safetensors" not in _files(cache)


def test_download_cut_short_leaves_no_file(tmp_path: Path, served: tuple) -> None:
    _, url, hashes, handler = served
    handler.cut = frozenset({"tiny.safetensors"})
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError, match=r"could not download 'tiny.safetensors' from"):
        fetch_model_files(
            "tiny", cards=_card(hashes), registry=hashes, base_url=url, data_dir=cache
        )
    assert _files(cache) == ["tiny.yaml"]  # the complete one; no partial weights


def test_tampered_local_weights_are_refused(tmp_path: Path) -> None:
    hashes = save_model_files(tiny_model(), tmp_path / "model", stem="tiny", show=False)
    weights = tmp_path / "model/tiny.safetensors"
    _flip_byte(weights)
    found = file_sha256(weights)
    with pytest.raises(
        ValueError,
        match=rf"model weights '.*tiny.safetensors' must have sha256 {hashes['tiny.safetensors']};"
        rf" found {found} \(recorded in tiny.yaml\)",
    ):
        load_model(tmp_path / "model", device="cpu")


# -- path traversal: card file names stay inside the cache -----------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../escaped.safetensors", "found '..' in '../escaped.safetensors'"),
        ("sub/../../escaped.safetensors", "found '..' in 'sub/../../escaped.safetensors'"),
        ("ABSOLUTE", "found absolute '/"),
        ("C:\\escaped.safetensors", "found absolute 'C:"),
    ],
    ids=["parent", "nested-parent", "absolute", "windows-drive"],
)
def test_card_file_names_cannot_leave_the_cache(
    tmp_path: Path, served: tuple, name: str, match: str
) -> None:
    directory, url, hashes, _ = served
    name = str(tmp_path / "escaped.safetensors") if name == "ABSOLUTE" else name
    shutil.copy(directory / "tiny.safetensors", directory / "escaped.safetensors")
    entries = [{"name": "tiny.yaml", "sha256": hashes["tiny.yaml"]}]
    entries.append({"name": name, "sha256": hashes["tiny.safetensors"]})
    cards = tmp_path / "cards.yaml"
    card = {"kind": "xappa", "description": "d", "files": entries}
    cards.write_text(yaml.safe_dump({"models": {"evil": card}}))
    registry = {"tiny.yaml": hashes["tiny.yaml"], name: hashes["tiny.safetensors"]}
    with pytest.raises(ValueError, match=rf"card file name must .*{re.escape(match)}"):
        load_model(
            "evil",
            cards=cards,
            registry=registry,
            base_url=url,
            data_dir=tmp_path / "cache",
            device="cpu",
        )
    assert not (tmp_path / "escaped.safetensors").exists()
    assert not (tmp_path / "cache").exists()


def test_card_file_through_a_symlink_out_of_the_cache_is_refused(
    tmp_path: Path, served: tuple
) -> None:
    directory, url, hashes, _ = served
    (directory / "link").mkdir()
    shutil.copy(directory / "tiny.safetensors", directory / "link/tiny.safetensors")
    outside, cache = tmp_path / "outside", tmp_path / "cache"
    outside.mkdir()
    cache.mkdir()
    (cache / "link").symlink_to(outside, target_is_directory=True)
    cards = _card(hashes, **{"tiny.safetensors": "link/tiny.safetensors"})
    registry = {f.name: f.sha256 for f in cards["tiny"].files}
    with pytest.raises(
        ValueError, match=r"model file 'link/tiny.safetensors' must resolve inside '.*cache'"
    ):
        fetch_model_files("tiny", cards=cards, registry=registry, base_url=url, data_dir=cache)
    assert list(outside.iterdir()) == []


def test_card_root_cannot_leave_the_cache() -> None:
    files = (CardFile(name="rel/config.yaml"),)
    with pytest.raises(ValueError, match=r"card 'r' root must stay inside .*'\.\./elsewhere'"):
        ModelCard(name="r", kind="appa-release", description="d", files=files, root="../elsewhere")
