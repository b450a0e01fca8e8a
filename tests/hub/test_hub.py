"""The model hub: real pooch downloads from a local HTTP server, hashes, cache and offline mode.

Every server here is bound to 127.0.0.1, started and stopped by the test itself.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pooch
import pytest
import torch
import yaml

from xappa.cli import main
from xappa.models import hub
from xappa.models.cards import CardFile, ModelCard, load_cards
from xappa.models.hub import fetch_model_files, load_model, read_model_files, save_model_files
from xappa.models.model import Model
from xappa.testing import tiny_model


class _Server:
    """A quiet threaded HTTP server on 127.0.0.1 serving one directory."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.running = False


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Model, Path, dict[str, str]]:
    model = tiny_model()
    directory = tmp_path_factory.mktemp("served")
    hashes = save_model_files(model, directory, stem="tiny-v1", show=False)
    return model, directory, hashes


@pytest.fixture
def server(published: tuple[Model, Path, dict[str, str]]) -> Iterator[_Server]:
    srv = _Server(published[1])
    yield srv
    srv.stop()


def _cards(hashes: dict[str, str], **files: str | None) -> dict[str, ModelCard]:
    entries = tuple(CardFile(name=k, sha256=v) for k, v in {**hashes, **files}.items())
    card = ModelCard(
        name="tiny-test", kind="xappa", description="A tiny test model.", files=entries
    )
    return {"tiny-test": card}


def _same_decode(a: Model, b: Model) -> bool:
    z = torch.randn(2, *a.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.decode_standardized(z), b.decode_standardized(z))


def _load(hashes: dict[str, str], url: str, cache: Path, **kwargs: object) -> Model:
    return load_model(
        "tiny-test",
        cards=kwargs.pop("cards", _cards(hashes)),
        registry=kwargs.pop("registry", hashes),
        base_url=url,
        data_dir=cache,
        device="cpu",
        **kwargs,
    )


def test_save_model_files_hashes(
    published: tuple[Model, Path, dict[str, str]], capsys: pytest.CaptureFixture
) -> None:
    model, directory, hashes = published
    assert set(hashes) == {"tiny-v1.yaml", "tiny-v1.safetensors"}
    for fname, digest in hashes.items():
        assert pooch.file_hash(str(directory / fname), alg="sha256") == digest
    again = save_model_files(model, directory / "again", stem="tiny-v1")
    assert again == hashes  # deterministic files
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{k} {v}" for k, v in hashes.items()]


def test_local_directory_loads(published: tuple[Model, Path, dict[str, str]]) -> None:
    model, directory, _ = published
    loaded = load_model(directory, device="cpu")
    assert loaded.weight_hash == model.weight_hash
    assert loaded.spec == model.spec and loaded.window == model.window
    assert _same_decode(model, loaded)


def test_saved_yaml_records_the_weights_hash(
    published: tuple[Model, Path, dict[str, str]],
) -> None:
    _, directory, hashes = published
    meta = yaml.safe_load((directory / "tiny-v1.yaml").read_text())
    assert meta["sha256"] == {"tiny-v1.safetensors": hashes["tiny-v1.safetensors"]}


def test_yaml_without_hashes_loads_with_a_warning(
    published: tuple[Model, Path, dict[str, str]], tmp_path: Path
) -> None:
    model, directory, _ = published
    shutil.copytree(directory, tmp_path / "old", ignore=shutil.ignore_patterns("again"))
    meta = yaml.safe_load((tmp_path / "old/tiny-v1.yaml").read_text())
    del meta["sha256"]
    (tmp_path / "old/tiny-v1.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.warns(UserWarning, match="tiny-v1.yaml records no sha256 of its weights") as rec:
        loaded = read_model_files(tmp_path / "old")
    assert rec[0].filename == __file__  # attributed to the caller
    assert loaded.weight_hash == model.weight_hash


def _copy(directory: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(directory, out, ignore=shutil.ignore_patterns("again"))
    return out


@pytest.mark.parametrize(
    ("text", "where"),
    [("format: xappa-model\nname: [unclosed\n", "line 3"), ("format: [a, b\n", "line 2")],
    ids=["unclosed-list", "unclosed-flow"],
)
def test_malformed_model_yaml_names_the_file_and_the_error(
    published: tuple[Model, Path, dict[str, str]], tmp_path: Path, text: str, where: str
) -> None:
    out = _copy(published[1], tmp_path)
    (out / "tiny-v1.yaml").write_text(text)
    with pytest.raises(ValueError, match=rf"tiny-v1.yaml' is not valid YAML for .*{where}"):
        read_model_files(out / "tiny-v1.yaml")
    with pytest.raises(
        ValueError,
        match=rf"found \[\]; could not read '.*tiny-v1.yaml' is not valid YAML.*{where}",
    ):
        load_model(out, device="cpu")


def test_download_cache_and_load(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    model, _, hashes = published
    loaded = _load(hashes, server.url, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(hashes)
    assert loaded.weight_hash == model.weight_hash
    assert _same_decode(model, loaded)


def test_cache_dir_from_env(
    published: tuple[Model, Path, dict[str, str]],
    server: _Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, hashes = published
    monkeypatch.setenv("XAPPA_DATA_DIR", str(tmp_path / "env-cache"))
    files = fetch_model_files(
        "tiny-test", cards=_cards(hashes), registry=hashes, base_url=server.url
    )
    assert all(p.parent == tmp_path / "env-cache" for p in files.values())


def test_wrong_hash_raises_and_leaves_nothing(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    _, _, hashes = published
    bad = {**hashes, "tiny-v1.safetensors": "ab" * 32}
    with pytest.raises(ValueError, match=r"tiny-v1\.safetensors.*does not match"):
        _load(bad, server.url, tmp_path, cards=_cards(bad))
    assert not (tmp_path / "tiny-v1.safetensors").exists()


def test_missing_file_names_file_and_url(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    _, _, hashes = published
    files = {"tiny-v1.yaml": hashes["tiny-v1.yaml"], "gone.safetensors": "cd" * 32}
    with pytest.raises(FileNotFoundError, match=rf"gone\.safetensors.*{server.url}.*404"):
        _load(files, server.url, tmp_path, cards={"tiny-test": _cards(files)["tiny-test"]})


def test_stopped_server_cached_model_loads_offline(
    published: tuple[Model, Path, dict[str, str]],
    server: _Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _, hashes = published
    _load(hashes, server.url, tmp_path)
    server.stop()
    assert _same_decode(model, _load(hashes, server.url, tmp_path, offline=True))
    monkeypatch.setenv("XAPPA_OFFLINE", "1")
    assert _same_decode(model, _load(hashes, server.url, tmp_path))
    monkeypatch.delenv("XAPPA_OFFLINE")
    # online, with the server gone, verified cached files are still used
    assert _same_decode(model, _load(hashes, server.url, tmp_path))


def test_stopped_server_empty_cache_is_connection_error(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    _, _, hashes = published
    server.stop()
    with pytest.raises(ConnectionError, match=r"tiny-v1\.(yaml|safetensors).*offline"):
        _load(hashes, server.url, tmp_path)


def test_offline_empty_cache_is_clear_error(
    published: tuple[Model, Path, dict[str, str]], tmp_path: Path
) -> None:
    _, _, hashes = published
    with pytest.raises(FileNotFoundError, match="offline mode.*not in the cache"):
        _load(hashes, "http://127.0.0.1:9/", tmp_path, offline=True)


def test_offline_corrupt_cache_is_refused(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    _, _, hashes = published
    _load(hashes, server.url, tmp_path)
    (tmp_path / "tiny-v1.yaml").write_text("tampered: true\n")
    with pytest.raises(ValueError, match="must have sha256"):
        _load(hashes, server.url, tmp_path, offline=True)


def test_card_and_registry_must_agree(
    published: tuple[Model, Path, dict[str, str]], tmp_path: Path
) -> None:
    _, _, hashes = published
    with pytest.raises(ValueError, match="not in the registry"):
        _load(hashes, "http://127.0.0.1:9/", tmp_path, registry={})
    other = {**hashes, "tiny-v1.yaml": "ef" * 32}
    with pytest.raises(ValueError, match="in the registry"):
        _load(hashes, "http://127.0.0.1:9/", tmp_path, registry=other)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'nope'.*appa-workshop"):
        load_model("nope")


def test_unverified_refused_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub tried to download")

    monkeypatch.setattr(pooch.Pooch, "fetch", no_network)
    with pytest.raises(ValueError, match="allow_unverified=True"):
        load_model("appa-workshop", data_dir=tmp_path, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_unverified_loads_with_opt_in(
    published: tuple[Model, Path, dict[str, str]], server: _Server, tmp_path: Path
) -> None:
    model, _, hashes = published
    files = (
        CardFile(name="tiny-v1.yaml", sha256=hashes["tiny-v1.yaml"]),
        CardFile(name="tiny-v1.safetensors", url=f"{server.url}tiny-v1.safetensors"),
    )
    cards = {"u": ModelCard(name="u", kind="xappa", description="d", files=files)}
    kwargs = {"cards": cards, "registry": hashes, "base_url": server.url, "data_dir": tmp_path}
    with pytest.raises(ValueError, match="without a known sha256"):
        load_model("u", device="cpu", **kwargs)
    loaded = load_model("u", device="cpu", allow_unverified=True, **kwargs)
    assert _same_decode(model, loaded)


def test_lru_cache_by_name_device_dtype(
    published: tuple[Model, Path, dict[str, str]],
    server: _Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, hashes = published
    test_pooch = pooch.create(path=tmp_path, base_url=server.url, registry=dict(hashes))
    monkeypatch.setattr(hub, "load_cards", lambda path=None: _cards(hashes))
    monkeypatch.setattr(hub, "_make_pooch", lambda *args: test_pooch)
    hub.clear_cache()
    try:
        first = load_model("tiny-test", device="cpu")
        assert load_model("tiny-test", device="cpu") is first
        assert load_model("tiny-test", device="cpu", cache=False) is not first
        assert load_model("tiny-test", device="cpu", dtype=torch.float64) is not first
    finally:
        hub.clear_cache()


def test_cli_models(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "appa-workshop" in out and "UNVERIFIED" in out
    assert "swe-default  [xappa, 3 files, verified]" in out
    assert main(["models", "-v"]) == 0
    out = capsys.readouterr().out
    quality = load_cards()["swe-default"].quality
    for key in ("posterior_rmse_over_climatology", "spread_skill", "wall_time"):
        assert f"quality, {key}: {quality[key]}".strip() in out
    assert "quality: not measured yet" in out  # appa-workshop
    assert "architecture, backbone: ViDiT" in out


def test_cli_fetch_refuses_unverified(capsys: pytest.CaptureFixture) -> None:
    assert main(["fetch", "appa-workshop"]) == 2
    assert "--allow-unverified" in capsys.readouterr().err


_AE = {
    "name": "cae_f4c4",
    "shape": [16, 32],
    "resize": 4,
    "saturation": "softclip2",
    "noise_level": 0.1,
    "lat_channels": 4,
    "hid_channels": [8, 8, 8],
    "hid_blocks": [1, 1, 1],
    "ffn_factor": 1,
    "dropout": 0.0,
    "patch_size": [1, 1],
    "identity_init": True,
    "in_channels": 3,
    "latent_shape": [4, 10, 4],
}
_BACKBONE = {
    "mod_features": 16,
    "hid_channels": 16,
    "hid_blocks": 1,
    "ffn_factor": 2,
    "attention_heads": 2,
    "patch_size": [2, 1, 1],
    "dropout": 0.0,
    "blanket_size": 4,
}
_LAP = "autoencoders/r/0/latents/d/denoisers/p/0"


def _write_release(root: Path) -> list[str]:
    """Write a tiny release in Appa's layout under ``root/rel``; return the file names."""
    import yaml

    from xappa.core.nn.autoencoder import ConvAutoencoder
    from xappa.core.nn.configs import AutoencoderConfig, ViDiTConfig
    from xappa.core.nn.vidit import ViDiT

    torch.manual_seed(0)
    latents = root / "rel/autoencoders/r/0/latents/d"
    (latents / "ae").mkdir(parents=True)
    (root / "rel" / _LAP).mkdir(parents=True)
    (latents / "ae/config.yaml").write_text(yaml.safe_dump({"ae": _AE}))
    (root / "rel" / _LAP / "config.yaml").write_text(
        yaml.safe_dump({"backbone": _BACKBONE, "train": {"blanket_size": 4}})
    )
    ae = ConvAutoencoder.from_config(AutoencoderConfig.from_appa(_AE))
    vit = ViDiT(ViDiTConfig.from_appa(_BACKBONE, in_channels=4, shape=(4, 10)))
    torch.save(ae.state_dict(), latents / "ae/model.pth")
    torch.save(vit.state_dict(), root / "rel" / _LAP / "model_best.pth")
    torch.save({"mean": torch.zeros(4), "std": torch.ones(4)}, latents / "stats.pth")
    return sorted(str(p.relative_to(root)) for p in (root / "rel").rglob("*") if p.is_file())


@pytest.mark.filterwarnings("ignore:The data type:FutureWarning")  # write_stats (zarr v3)
def test_appa_release_kind_loads_unverified(tmp_path: Path) -> None:
    from xappa.state.spec import era5_spec
    from xappa.state.stats import write_stats

    names = _write_release(tmp_path / "served")
    srv = _Server(tmp_path / "served")
    try:
        files = tuple(CardFile(name=n, url=f"{srv.url}{n}") for n in names)
        card = ModelCard(
            name="rel",
            kind="appa-release",
            description="d",
            files=files,
            root="rel",
            checkpoint="best",
            revision_pinned=False,
        )
        spec = era5_spec(
            nlat=16, nlon=32, surface_variables=tiny_model().spec.variables, level_variables=()
        )
        stats = tiny_model().stats
        kwargs = {"cards": {"rel": card}, "data_dir": tmp_path / "cache", "spec": spec}
        with pytest.raises(ValueError, match="allow_unverified"):
            load_model("rel", device="cpu", stats=stats, **kwargs)
        assert not (tmp_path / "cache").exists()
        with pytest.raises(ValueError, match="needs pixel statistics: pass stats="):
            load_model("rel", device="cpu", allow_unverified=True, **kwargs)
        model = load_model("rel", device="cpu", allow_unverified=True, stats=stats, **kwargs)
    finally:
        srv.stop()
    assert model.name == "rel" and model.window == 4 and model.latent_shape == (4, 4, 10)
    offline = load_model(
        "rel", device="cpu", allow_unverified=True, stats=stats, offline=True, **kwargs
    )
    assert offline.weight_hash == model.weight_hash
    # the release's own statistics store, as a snapshot of the tree holds it, is used
    shifted = stats.copy(deep=True)
    for v in shifted.data_vars:
        shifted[v].loc[{"statistic": "mean"}] = shifted[v].sel(statistic="mean") + 1.0
    write_stats(shifted, tmp_path / "cache/rel/data/stats_era5_1993-2021-1h-1440x721.zarr")
    own = load_model("rel", device="cpu", allow_unverified=True, offline=True, **kwargs)
    torch.testing.assert_close(own.mean, model.mean + 1.0)
    torch.testing.assert_close(own.std, model.std)


@pytest.mark.filterwarnings("ignore:The data type:FutureWarning")  # write_stats (zarr v3)
def test_training_run_directories_load(tmp_path: Path) -> None:
    import safetensors.torch
    import xarray as xr

    from xappa.train.autoencoder import save_autoencoder_files
    from xappa.train.latent_prior import save_prior_files

    model = tiny_model()
    ae_dir, prior_dir, store = tmp_path / "ae", tmp_path / "prior", tmp_path / "latents.zarr"
    save_autoencoder_files(ae_dir, model.autoencoder.config, model.spec, model.stats)
    safetensors.torch.save_model(model.autoencoder, str(ae_dir / "model.safetensors"))
    latent_stats = xr.Dataset(
        {
            "latent_mean": ("channel", model.latent_mean.numpy()),
            "latent_std": ("channel", model.latent_std.numpy()),
        },
        attrs={"autoencoder": str(ae_dir)},
    )
    latent_stats.to_zarr(store, consolidated=False)
    extra = {"data": "latents.zarr", "window": model.window, "noise_level": 0.0}
    save_prior_files(prior_dir, model.denoiser.backbone.config, extra=extra)
    safetensors.torch.save_model(model.denoiser, str(prior_dir / "model.safetensors"))
    loaded = load_model(prior_dir, device="cpu")
    assert loaded.name == "prior" and loaded.spec == model.spec
    assert loaded.weight_hash == model.weight_hash
    assert _same_decode(model, loaded)
