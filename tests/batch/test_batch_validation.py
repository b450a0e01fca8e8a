"""Bad arguments and mismatched stores raise built-in exceptions that say what was expected."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import xarray as xr

import xappa.batch
from xappa.cli import main

from .conftest import FAST, RUN, SAMPLING, SEED, open_store


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"window": "abc"}, ValueError, r"window must be a duration like '2D'.*found 'abc'"),
        ({"window": "90min"}, ValueError, r"window must be a multiple of the model time step"),
        ({"window": "0h"}, ValueError, r"window must last at least one model time step"),
        ({"overlap": "8h"}, ValueError, r"overlap must be in \[0, window\).*found 0 days 08"),
        ({"overlap": "-1h"}, ValueError, r"overlap must be in \[0, window\).*found -1 days"),
        (
            {"window": "2D"},
            ValueError,
            r"window must not be longer than the period.*at most 1 days 07:00:00.*found 2 days",
        ),
        ({"members": 0}, ValueError, r"members must be a positive int.*found 0"),
        ({"member_groups": 3}, ValueError, r"member_groups must divide members \(2\).*found 3"),
        ({"seed": -1}, ValueError, r"seed must be an int >= 0; found -1"),
        ({"retries": -1}, ValueError, r"retries must be an int >= 0; found -1"),
        ({"stepz": 2}, TypeError, r"unknown keyword argument\(s\) \['stepz'\]; expected"),
        ({"mode": "filter"}, ValueError, r"mode must be 'reanalysis'.*found 'filter'"),
        (
            {"sampling": "euler"},
            ValueError,
            r"sampling must be a SamplingConfig or one of .*'euler'",
        ),
        ({"model": 3}, TypeError, r"model must be an xappa.Model or a model name.*found int"),
        ({"obs_error": {"geopotential": 1.0}}, KeyError, r"\['geopotential'\] not observed"),
    ],
)
def test_bad_arguments(obs, model_dir, period, tmp_path, change, error, match):
    kwargs = {"model": model_dir, **RUN, "seed": SEED, **FAST, **change}
    out = tmp_path / "never.zarr"
    with pytest.raises(error, match=match):
        xappa.batch.reanalysis(obs, start=period[0], end=period[1], out=out, **kwargs)
    assert not out.exists()


def test_bad_period(obs, model_dir, period, tmp_path):
    end = period[0] - np.timedelta64(1, "h")
    with pytest.raises(ValueError, match=r"end must be start or a whole number of model time"):
        xappa.batch.reanalysis(obs, model_dir, period[0], end, **RUN, out=tmp_path / "a.zarr")
    with pytest.raises(ValueError, match=r"start must be a date.*found 'soon'"):
        xappa.batch.reanalysis(obs, model_dir, "soon", end, **RUN, out=tmp_path / "a.zarr")


def test_obs_without_time(obs, model_dir, period, tmp_path):
    bad = obs[0].rename({"time": "when"}).swap_dims({"when": "when"})
    bad = bad.drop_vars("when").rename({"when": "step"})
    with pytest.raises(KeyError, match=r"obs\[0\] must have a time coordinate; found"):
        xappa.batch.reanalysis(bad, model_dir, *period, **RUN, out=tmp_path / "a.zarr", **FAST)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seed": SEED + 1}, r"attribute xappa_seed: expected 8, found 7"),
        ({"members": 4}, r"member size: expected 4, found 2"),
        ({"window": "6h"}, r"window size: expected 10, found 6"),
        (
            {"window": "9h", "overlap": "4h"},
            r"window_start: expected 2021-01-01T22:00.*, found 2021-01-01T23:00.* \(entry 5\)",
        ),
        (
            {"sampling": xappa.SamplingConfig(**SAMPLING | {"steps": 3})},
            r'xappa_sampler_settings: expected .*"steps": 3.*found .*"steps": 2',
        ),
    ],
)
def test_mismatched_store(reference, obs, model_dir, period, change, match):
    before = open_store(reference)["2m_temperature"].values
    kwargs = {**RUN, "seed": SEED, **FAST, **change}
    with pytest.raises(ValueError, match=match) as info:
        xappa.batch.reanalysis(obs, model_dir, *period, out=reference, **kwargs)
    assert "overwrite=True" in str(info.value)
    ds = open_store(reference)
    assert (ds.window_complete.values == 1).all()
    np.testing.assert_array_equal(ds["2m_temperature"].values, before)


def test_out_is_a_file(obs, model_dir, period, tmp_path):
    out = tmp_path / "file.zarr"
    out.write_text("not a store")
    with pytest.raises(ValueError, match=r"out must be a zarr store or a new path; found a file"):
        xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, **FAST)


@pytest.mark.parametrize("kind", ["files", "zarr-store"], ids=["directory", "foreign-zarr"])
def test_overwrite_refuses_what_xappa_did_not_write(obs, model_dir, period, tmp_path, kind):
    out = tmp_path / "mine"
    if kind == "files":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    else:
        xr.Dataset({"x": ("t", np.arange(3.0))}).to_zarr(out, consolidated=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match=r"holds data that xappa did not write"):
        xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, overwrite=True, **FAST)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    if kind == "files":
        assert (out / "thesis.tex").read_text() == "years of work"


def test_out_inside_a_file(obs, model_dir, period, tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    out = tmp_path / "notes.txt" / "ra.zarr"
    with pytest.raises(NotADirectoryError, match=r"lies inside .*notes.txt.*which is a file"):
        xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, **FAST)
    assert (tmp_path / "notes.txt").read_text() == "keep"


@pytest.mark.timeout(60)
def test_overwrite(obs, model_dir, period, tmp_path):
    out = tmp_path / "one.zarr"
    end = period[0] + np.timedelta64(7, "h")
    first = xappa.batch.reanalysis(obs, model_dir, period[0], end, "8h", "0h", 2, out, **FAST)
    first = first["2m_temperature"].values
    with pytest.raises(ValueError, match="xappa_seed"):
        xappa.batch.reanalysis(obs, model_dir, period[0], end, "8h", "0h", 2, out, seed=1, **FAST)
    second = xappa.batch.reanalysis(
        obs, model_dir, period[0], end, "8h", "0h", 2, out, seed=1, overwrite=True, **FAST
    )
    assert second.attrs["xappa_computed_windows"] == [0] and second.attrs["xappa_seed"] == 1
    assert second.attrs["xappa_output"] == "batch reanalysis" and second.attrs["xappa_complete"]
    assert not np.array_equal(first, second["2m_temperature"].values)


def test_distributed_missing(obs, model_dir, period, tmp_path, monkeypatch, obs_paths):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"client= needs dask.distributed.*xappa\[distributed\]"):
        xappa.batch.reanalysis(
            obs, model_dir, *period, **RUN, out=tmp_path / "a.zarr", client=object()
        )
    argv = ["reanalysis", "--obs", *obs_paths, "--model", model_dir, "--workers", "2"]
    argv += ["--start", str(period[0]), "--end", str(period[1]), "--out", str(tmp_path / "b")]
    with pytest.raises(ImportError, match=r"--workers needs dask.distributed.*pip install"):
        main(["--debug", *argv])
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b").exists()


def test_client_must_be_a_client(obs, model_dir, period, tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(TypeError, match=r"client must be a distributed.Client or None; found"):
        xappa.batch.reanalysis(
            obs, model_dir, *period, **RUN, out=tmp_path / "a.zarr", client="tcp://x", **FAST
        )
    assert not (tmp_path / "a.zarr").exists()


def test_cli(obs_paths, model_dir, period, tmp_path, capsys):
    end = period[0] + np.timedelta64(11, "h")
    out = tmp_path / "cli.zarr"
    argv = ["reanalysis", "--obs", *obs_paths, "--model", model_dir, "--members", "2"]
    argv += ["--start", str(period[0]), "--end", str(end), "--window", "6h", "--overlap", "0h"]
    argv += ["--out", str(out), "--seed", "3", "--steps", "2", "--sampler", "ddim"]
    assert main(argv) == 0
    assert "2 window(s) computed, 0 already complete" in capsys.readouterr().out
    ds = open_store(out)
    assert ds.sizes["time"] == 12 and ds.attrs["xappa_seed"] == 3
    assert not np.isnan(ds["2m_temperature"].values).any()
    assert main(argv) == 0
    assert "0 window(s) computed, 2 already complete" in capsys.readouterr().out
    assert isinstance(ds, xr.Dataset)


def _slow_exit() -> int:
    """Make this worker process take 4.5 s to exit, as torch does on a loaded machine."""
    import atexit
    import time

    atexit.register(time.sleep, 4.5)
    return os.getpid()


def test_cli_cluster_closes_without_killing_a_worker(capfd, caplog):
    """A worker slow to exit is waited for, not killed (dask's own close allows it 4 s)."""
    pytest.importorskip("distributed")
    import argparse
    import logging

    from xappa.commands.reanalysis import _client

    args = argparse.Namespace(scheduler=None, workers=1)
    with caplog.at_level(logging.WARNING, logger="distributed"), _client(args) as client:
        pid = client.submit(_slow_exit, pure=False).result()
    # dask logs the kill ("Worker process still alive after 4.0 seconds, killing"); under
    # pytest the record reaches caplog, not stderr, so both are checked
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "still alive" not in logged and "killing" not in logged, logged
    err = capfd.readouterr().err
    assert "still alive" not in err and "killing" not in err
    assert "leaked semaphore" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker process has exited
