"""``xappa assimilate`` and ``xappa forecast``: zarr and netCDF in and out, the same ensembles
as the API, user errors as one line with exit status 2 and nothing written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xappa
from xappa.cli import main
from xappa.io.outputs import MARKER
from xappa.models.hub import load_model, save_model_files
from xappa.observations import sample_points, stations
from xappa.testing import mock_era5, tiny_model
from xappa.verify.metrics import rmse

FAST = ["--sampler", "ddim", "--steps", "2", "--no-progress"]
CONFIG = xappa.SamplingConfig(sampler="ddim", steps=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A saved tiny model, a truth store (10 hours) and station observations (first 6 hours)."""
    root = tmp_path_factory.mktemp("inputs")
    model = tiny_model()
    save_model_files(model, root / "model", stem="tiny", show=False)
    truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=10)
    truth.to_zarr(root / "truth.zarr", consolidated=False)
    sites = stations([48.8, -33.9, 5.0], [2.35, 151.2, 280.0], names=["a", "b", "c"])
    obs = sample_points(truth.isel(time=slice(0, 6)), sites, error_std=0.5, seed=0)
    obs.to_netcdf(root / "obs.nc")
    obs.to_zarr(root / "obs.zarr", consolidated=False)
    return {
        "model": str(root / "model"),
        "truth": str(root / "truth.zarr"),
        "obs": str(root / "obs.nc"),
        "obs_zarr": str(root / "obs.zarr"),
    }


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own errors
        return int(stop.code)


def _without_marker(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    assert ds.attrs.pop(MARKER) in ("assimilation ensemble", "forecast ensemble")
    return ds


@pytest.mark.parametrize("out_name", ["analysis.zarr", "analysis.nc"])
def test_assimilate_writes_what_the_api_returns(files, tmp_path, capsys, out_name) -> None:
    out = tmp_path / out_name
    argv = ["assimilate", "--obs", files["obs"], "--model", files["model"], "--out", str(out)]
    argv += ["--members", "2", "--seed", "3", "--window", "6h", *FAST]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    opened = (
        xr.open_zarr(out, consolidated=False) if out.suffix == ".zarr" else xr.open_dataset(out)
    )
    got = opened.load()
    want = xappa.assimilate(
        xr.open_dataset(files["obs"]).load(),
        model=load_model(files["model"], device="cpu"),
        window="6h",
        members=2,
        seed=3,
        sampling=CONFIG,
        progress=False,
    )
    xr.testing.assert_allclose(_without_marker(got), want)
    assert got.attrs == {**want.attrs, MARKER: "assimilation ensemble"}
    assert got["member"].attrs["standard_name"] == "realization"


def test_assimilate_takes_several_sources_window_and_errors(files, tmp_path) -> None:
    out = tmp_path / "analysis.zarr"
    argv = ["assimilate", "--obs", files["obs"], files["obs_zarr"]]
    argv += ["--model", files["model"], "--out", str(out), "--members", "2", *FAST]
    argv += ["--window", "2021-01-01T00/2021-01-01T05", "--obs-error", "2m_temperature=2"]
    argv += ["--obs-error", "10m_u_component_of_wind=1", "--mode", "filter"]
    argv += ["--obs-error", "10m_v_component_of_wind=1"]
    assert main(argv) == 0
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["xappa_mode"] == "filter"
    assert list(ds.indexes["time"].hour) == [0, 1, 2, 3, 4, 5]
    assert ds["2m_temperature"].attrs["xappa_n_obs"] == 2 * 3 * 6  # two sources, 3 sites


def test_forecast_from_an_analysis_and_scored_per_lead(files, tmp_path, capsys) -> None:
    analysis = tmp_path / "analysis.zarr"
    argv = ["assimilate", "--obs", files["obs"], "--model", files["model"]]
    assert main([*argv, "--out", str(analysis), "--members", "3", *FAST]) == 0
    forecast = tmp_path / "forecast.nc"
    argv = ["forecast", "--initial", str(analysis), "--model", files["model"]]
    argv += ["--out", str(forecast), "--lead", "3h", "--init-time", "2021-01-01T04"]
    argv += ["--init-time", "2021-01-01T05", *FAST]
    assert main(argv) == 0  # members: the analysis's three
    fc = xr.open_dataset(forecast).load()
    assert dict(fc.sizes)["member"] == 3
    assert list(fc.indexes["time"].hour) == [4, 5]
    leads = pd.to_timedelta(fc["prediction_timedelta"].values)
    assert list(leads) == list(pd.to_timedelta([1, 2, 3], "h"))
    # `xappa evaluate` scores a forecast per lead by default
    report = tmp_path / "report"
    argv = ["evaluate", "--pred", str(forecast), "--truth", files["truth"], "--out", str(report)]
    assert main(argv) == 0
    scores = xr.open_dataset(report / "metrics.nc").load()
    assert scores["rmse"].sizes["prediction_timedelta"] == 3
    truth = xr.open_zarr(files["truth"], consolidated=False).load()
    for i, lead in enumerate(leads):
        mean = fc["2m_temperature"].isel(prediction_timedelta=i).mean("member")
        valid = truth["2m_temperature"].sel(time=mean["valid_time"].values)
        mean = mean.drop_vars(["valid_time", "prediction_timedelta"])
        expected = rmse(mean.assign_coords(time=valid["time"].values), valid)
        got = scores["rmse"].sel(variable="2m_temperature", prediction_timedelta=lead)
        assert float(got.squeeze()) == pytest.approx(float(expected), rel=1e-5)


def test_forecast_all_at_once_from_observations(files, tmp_path) -> None:
    out = tmp_path / "forecast.zarr"
    argv = ["forecast", "--obs", files["obs"], "--model", files["model"], "--out", str(out)]
    assert main([*argv, "--lead", "2h", "--members", "2", "--window", "6h", *FAST]) == 0
    fc = xr.open_zarr(out, consolidated=False)
    assert fc.attrs["xappa_method"] == "all-at-once"
    assert list(fc.indexes["time"].hour) == [5]  # the end of the 6 h window
    assert fc.sizes["prediction_timedelta"] == 2


def test_overwrite_replaces_only_an_xappa_output(files, tmp_path, capsys) -> None:
    out = tmp_path / "analysis.zarr"
    argv = ["assimilate", "--obs", files["obs"], "--model", files["model"], "--out", str(out)]
    argv += ["--members", "2", "--window", "6h", *FAST]
    assert main(argv) == 0
    first = xr.open_zarr(out, consolidated=False).load()
    assert main(argv) == 2
    assert "already holds an xappa assimilation ensemble; pass --overwrite" in (
        capsys.readouterr().err
    )
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    second = xr.open_zarr(out, consolidated=False).load()
    assert second.attrs["xappa_seed"] == 1
    assert not np.allclose(first["2m_temperature"], second["2m_temperature"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis.zarr"]  # no leftovers


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"xappa {command}: error: "), err
    return err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("command", "extra", "match"),
    [
        ("assimilate", ["--window", "two days"], r"argument --window: must be a positive dur"),
        ("assimilate", ["--window", "2021-01-02/2021-01-01"], r"end not before start"),
        ("assimilate", ["--obs-error", "-1"], r"argument --obs-error: must be a number > 0"),
        (
            "assimilate",
            ["--obs-error", "1", "--obs-error", "2m_temperature=2"],
            r"--obs-error must be given once as a number, or once per variable",
        ),
        ("assimilate", ["--mode", "smoother"], r"argument --mode: invalid choice: 'smoother'"),
        ("assimilate", ["--members", "0"], r"argument --members: must be an int >= 1"),
        ("assimilate", ["--device", "cuda:7"], r"'cuda:7' is not available on this machine"),
        ("assimilate", ["--steps", "0"], r"argument --steps: must be an int >= 1"),
        ("assimilate", ["--solver", "lu"], r"argument --solver: invalid choice: 'lu'"),
        ("assimilate", ["--delta", "2"], r"argument --delta: must be a number in \(0, 1\]"),
        ("assimilate", ["--obs", "{tmp}/none.nc"], r"--obs '.*none.nc' does not exist"),
        ("assimilate", ["--model", "no-such-model"], r"no-such-model"),
        ("assimilate", ["--out", "{tmp}/mine"], r"--out '.*mine' holds data that xappa did not"),
        ("assimilate", ["--out", "{tmp}/mine.nc"], r"--out '.*mine.nc' is a file that xappa"),
        ("assimilate", ["--out", "{tmp}/mine.nc/a.zarr"], r"lies inside .*mine.nc.*a file"),
        ("assimilate", ["--out", "{tmp}/report"], r"is a folder of xappa outputs, not a zarr"),
        (
            "assimilate",
            ["--obs", "{tmp}/mine"],
            r"--obs .*mine. must be a zarr store; found no zarr metadata",
        ),
        ("forecast", ["--lead=-3h"], r"argument --lead: must be a positive duration"),
        ("forecast", ["--lead", "90min"], r"lead must be a positive multiple of the time step"),
        ("forecast", ["--init-time", "2021-01-01T00"], r"initial must hold the 2 context time"),
        ("forecast", ["--init-time", "noon"], r"argument --init-time: must be a time such as"),
        ("forecast", ["--obs", "{obs}"], r"argument --obs: not allowed with argument --initial"),
        ("forecast", ["--window", "4h"], r"--window apply only without --obs"),
        ("forecast", ["--context", "3"], r"context must be at most window - stride = 2"),
    ],
    ids=[
        "window-text",
        "window-reversed",
        "obs-error-negative",
        "obs-error-mixed",
        "mode-unknown",
        "members-0",
        "device-absent",
        "steps-0",
        "solver-unknown",
        "delta-above-1",
        "obs-missing",
        "model-unknown",
        "out-not-xappa",
        "out-netcdf-not-xappa",
        "out-inside-a-file",
        "out-a-report-folder",
        "obs-not-a-store",
        "lead-negative",
        "lead-not-a-step-multiple",
        "init-time-without-context",
        "init-time-text",
        "initial-and-obs",
        "window-with-initial",
        "context-too-long",
    ],
)
def test_user_errors_exit_2_and_write_nothing(
    files, tmp_path, monkeypatch, capsys, command, extra, match
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/data.csv").write_text("1,2,3")
    (tmp_path / "mine.nc").write_text("not xappa's")
    (tmp_path / "report").mkdir()
    (tmp_path / "report/.xappa-output.json").write_text('{"kind": "report", "files": []}')
    before = _tree(tmp_path)
    extra = [e.replace("{tmp}", str(tmp_path)).replace("{obs}", files["obs"]) for e in extra]
    source = ["--obs", files["obs"]] if command == "assimilate" else ["--initial", files["truth"]]
    argv = [command, *source, "--model", files["model"], "--out", str(tmp_path / "out.zarr")]
    argv = [*argv, *FAST]
    # a later option replaces an earlier one of the same name (argparse keeps the last)
    assert _status([*argv, *extra]) == 2
    assert re.search(match, _one_error_line(capsys, command))
    assert _tree(tmp_path) == before  # nothing written, nothing changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mine.nc", "report"]
