"""Tests of xappa.verify.evaluate, the .appa accessor and the ``xappa evaluate`` command."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xappa.accessor  # noqa: F401  (registers .appa)
from xappa.cli import main
from xappa.commands._io import open_input
from xappa.verify import metrics
from xappa.verify.align import align
from xappa.verify.evaluate import evaluate

LAT = np.linspace(90.0, -90.0, 9)
LON = np.arange(0.0, 360.0, 22.5)
TIMES = pd.date_range("2021-03-21", periods=8, freq="6h")
LEADS = pd.to_timedelta([0, 6, 12], "h")


@pytest.fixture
def truth() -> xr.Dataset:
    rng = np.random.default_rng(0)
    n = (TIMES.size, LAT.size, LON.size)
    return xr.Dataset(
        {
            "geopotential": (
                ("time", "level", "latitude", "longitude"),
                5e4 + 100 * rng.normal(size=(n[0], 2, *n[1:])),
                {"units": "m2 s-2"},
            ),
            "2m_temperature": (
                ("time", "latitude", "longitude"),
                280 + rng.normal(size=n),
                {"units": "K"},
            ),
        },
        coords={"time": TIMES, "level": [500, 850], "latitude": LAT, "longitude": LON},
    )


def _forecast(truth: xr.Dataset, members: int = 3, seed: int = 1) -> xr.Dataset:
    """Ensemble forecasts from 4 initial times: truth at valid times plus growing noise."""
    rng = np.random.default_rng(seed)
    init = TIMES[:4]
    out = {}
    for name, da in truth.data_vars.items():
        valid = da.sel(time=(init.values[:, None] + LEADS.values[None, :]).ravel())
        base = valid.values.reshape((init.size, LEADS.size) + valid.shape[1:])
        scale = (1.0 + np.arange(LEADS.size)).reshape((1, -1) + (1,) * (base.ndim - 2))
        noise = rng.normal(size=(members, *base.shape)) * scale
        out[name] = (("member", "time", "lead") + da.dims[1:], base + noise, da.attrs)
    pred = xr.Dataset(
        out,
        coords={
            "time": init,
            "lead": LEADS,
            "level": [500, 850],
            "latitude": LAT,
            "longitude": LON,
        },
    )
    # the other longitude convention and latitude order, to exercise alignment
    pred = pred.assign_coords(longitude=(LON + 180) % 360 - 180).sortby("longitude")
    return pred.sortby("latitude")


def test_deterministic_layout_and_values(truth: xr.Dataset) -> None:
    pred = truth + 1.0
    pred["geopotential"].attrs["units"] = "m2 s-2"
    out = evaluate(pred, truth, regions=["global", "tropics"])
    assert set(out.data_vars) == {"rmse", "bias", "mae"}
    assert dict(out.sizes) == {"region": 2, "variable": 3}
    assert list(out["variable"].values) == [
        "geopotential_500",
        "geopotential_850",
        "2m_temperature",
    ]
    assert list(out["name"].values) == ["geopotential", "geopotential", "2m_temperature"]
    np.testing.assert_array_equal(out["level"].values, [500, 850, np.nan])
    assert list(out["units"].values) == ["m2 s-2", "m2 s-2", "K"]
    np.testing.assert_allclose(out["rmse"].values, 1.0)
    np.testing.assert_allclose(out["bias"].values, 1.0)


def test_ensemble_with_leads(truth: xr.Dataset) -> None:
    pred = _forecast(truth)
    out = evaluate(pred.chunk(time=2), truth.chunk(time=4), regions=["global", "tropics"])
    assert not dask.is_dask_collection(out["crps"])  # computed, batch by batch
    eager = evaluate(pred, truth, regions=["global", "tropics"])
    xr.testing.assert_allclose(out, eager)
    xr.testing.assert_allclose(
        evaluate(pred, truth, regions=["global", "tropics"], time_batch=3), eager
    )
    for name in ("rmse", "skill", "spread", "ssr", "crps", "rmse_member", "rank_histogram"):
        assert name in out
    assert out["crps"].dims == ("region", "variable", "lead")
    assert out["rank_histogram"].sizes["rank"] == 4
    # equal to the metric functions on the aligned data
    p, t = align(pred, truth)
    expected = metrics.crps(p["2m_temperature"], t["2m_temperature"])
    np.testing.assert_allclose(
        out["crps"].sel(region="global", variable="2m_temperature").values, expected.values
    )
    expected = metrics.spread_skill_ratio(
        p["geopotential"].sel(level=850), t["geopotential"].sel(level=850)
    )
    np.testing.assert_allclose(
        out["ssr"].sel(region="global", variable="geopotential_850").values, expected.values
    )
    # errors grow with lead time
    assert (out["skill"].diff("lead") > 0).all()


def test_reduce_keeps_time_and_climatology(truth: xr.Dataset) -> None:
    clim = truth.mean("time")
    pred = clim + 2.0 * (truth - clim)  # anomalies twice as large: ACC is exactly 1
    out = evaluate(pred, truth, climatology=clim, reduce=["latitude", "longitude"])
    assert out["rmse"].dims == ("region", "variable", "time")
    assert "acc" in out
    np.testing.assert_allclose(out["acc"].values, 1.0)
    with pytest.raises(KeyError, match="climatology has no variable '2m_temperature'"):
        evaluate(pred, truth, climatology=truth[["geopotential"]].mean("time"))


def test_accessor_matches_function_and_pickles(truth: xr.Dataset) -> None:
    pred = _forecast(truth)
    via_accessor = pred.appa.evaluate(truth=truth)
    xr.testing.assert_identical(via_accessor, evaluate(pred, truth))
    assert pickle.loads(pickle.dumps(pred)).identical(pred)


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
def test_cli_writes_report(truth: xr.Dataset, tmp_path: Path) -> None:
    pred_path, truth_path, out = tmp_path / "pred.zarr", tmp_path / "truth.nc", tmp_path / "out"
    _forecast(truth).to_zarr(pred_path, consolidated=False)
    truth.to_netcdf(truth_path)
    args = ["evaluate", "--pred", str(pred_path), "--truth", str(truth_path), "--out", str(out)]
    assert main([*args, "--region", "global", "--region", "tropics"]) == 0
    pngs = [
        "error_vs_lead.png",
        "spread_skill.png",
        "rank_histogram.png",
        "spectra.png",
        "error_maps.png",
    ]
    for name in ["metrics.nc", "summary.md", *pngs]:
        assert (out / name).stat().st_size > 0
    with xr.open_dataset(out / "metrics.nc") as ds:
        assert {"skill", "spread", "ssr", "crps"} <= set(ds.data_vars)
        assert list(ds["region"].values) == ["global", "tropics"]
    summary = (out / "summary.md").read_text()
    for name in pngs:
        assert f"]({name})" in summary
    assert "| global | geopotential_500 | m2 s-2 |" in summary


def test_cli_deterministic_without_leads(truth: xr.Dataset, tmp_path: Path) -> None:
    (truth + 1.0).to_netcdf(tmp_path / "pred.nc")
    truth.to_netcdf(tmp_path / "truth.nc")
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--pred",
        str(tmp_path / "pred.nc"),
        "--truth",
        str(tmp_path / "truth.nc"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert (out / "error_vs_lead.png").exists() and not (out / "spread_skill.png").exists()
    with xr.open_dataset(out / "metrics.nc") as ds:
        np.testing.assert_allclose(ds["rmse"].values, 1.0)


def test_cli_inputs_in_a_fixed_variable_order(truth: xr.Dataset, tmp_path: Path) -> None:
    names = ["v_wind", "geopotential", "u_wind", "2m_temperature"]
    field = truth["2m_temperature"]
    xr.Dataset({n: field for n in names}).to_zarr(tmp_path / "pred.zarr", consolidated=False)
    ds = open_input(str(tmp_path / "pred.zarr"), "--pred")
    assert list(ds.data_vars) == sorted(names)
    assert all(ds[n].attrs == field.attrs for n in names)


def test_cli_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    args = ["evaluate", "--pred", str(tmp_path / "nope.zarr"), "--truth", "x", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("xappa evaluate: error: --pred") and "nope.zarr" in err
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        main(["--debug", *args])


def _wb2_climatology(truth: xr.Dataset) -> xr.Dataset:
    """A WB2-style climatology: (hour, dayofyear, ...) with a known day/hour signal."""
    mean = truth.mean("time")
    doy = xr.DataArray(
        np.arange(1, 367), dims="dayofyear", coords={"dayofyear": np.arange(1, 367)}
    )
    hour = xr.DataArray([0, 6, 12, 18], dims="hour", coords={"hour": [0, 6, 12, 18]})
    return mean + 0.01 * doy + 0.1 * hour


def test_wb2_climatology_with_leads(truth: xr.Dataset, tmp_path: Path) -> None:
    clim = _wb2_climatology(truth)
    pred = _forecast(truth, members=2)
    _, t = align(pred, truth)
    when = t["valid_time"]
    at = clim.sel(dayofyear=when.dt.dayofyear, hour=when.dt.hour).drop_vars(["dayofyear", "hour"])
    # anomalies twice those of the truth w.r.t. the climatology at the valid time
    pred2 = (at + 2 * (t - at)).expand_dims(member=2).transpose("member", ...)
    out = evaluate(pred2, truth, climatology=clim)
    np.testing.assert_allclose(out["acc"].values, 1.0)
    with pytest.raises(KeyError, match="climatology lacks hour values \\[6, 18\\]"):
        evaluate(pred, truth, climatology=clim.sel(hour=[0, 12]))
    # and through the command line
    pred2.to_netcdf(tmp_path / "pred.nc")
    truth.to_netcdf(tmp_path / "truth.nc")
    clim.to_netcdf(tmp_path / "clim.nc")
    args = ["evaluate", "--pred", str(tmp_path / "pred.nc"), "--truth", str(tmp_path / "truth.nc")]
    out = tmp_path / "report"
    assert main([*args, "--climatology", str(tmp_path / "clim.nc"), "--out", str(out)]) == 0
    with xr.open_dataset(out / "metrics.nc") as ds:
        np.testing.assert_allclose(ds["acc"].values, 1.0)


def test_units_converted_to_the_truths(truth: xr.Dataset) -> None:
    pred = truth.copy()
    pred["2m_temperature"] = (truth["2m_temperature"] - 273.15 + 1.0).assign_attrs(units="degC")
    out = evaluate(pred, truth)  # degC against K: converted, not scored as 273.15 off
    score = out.sel(region="global", variable="2m_temperature")
    assert float(score["rmse"]) == pytest.approx(1.0)
    assert str(score["units"].values) == "K"
    clim = truth.mean("time")
    clim["2m_temperature"] = (clim["2m_temperature"] - 273.15).assign_attrs(units="degC")
    np.testing.assert_allclose(evaluate(truth, truth, climatology=clim)["acc"], 1.0)


@pytest.mark.parametrize(
    ("units", "match"),
    [
        (
            "hPa",
            (
                r"pred variable '2m_temperature' has units 'hPa'; expected units convertible"
                r" to 'K'.*the units of truth variable '2m_temperature'"
            ),
        ),
        ("furlongs", r"pred variable '2m_temperature' has units 'furlongs'.*'K'"),
    ],
    ids=["not-convertible", "unknown"],
)
def test_units_refused(truth: xr.Dataset, units: str, match: str) -> None:
    pred = truth.copy()
    pred["2m_temperature"] = pred["2m_temperature"].assign_attrs(units=units)
    with pytest.raises(ValueError, match=match):
        evaluate(pred, truth)


def _peak_bytes(pred: xr.Dataset, truth: xr.Dataset, **kwargs: object) -> tuple:
    import tracemalloc

    tracemalloc.start()
    try:
        return evaluate(pred, truth, **kwargs), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streams_dask_inputs_in_time_batches(tmp_path: Path) -> None:
    """Inputs held in one dask chunk each are read and scored a batch of times at a time."""
    rng = np.random.default_rng(0)
    times = pd.date_range("2021-01-01", periods=24, freq="h")
    coords = {"time": times, "latitude": np.linspace(89.0, -89.0, 181), "longitude": LON}
    shape = (times.size, 181, LON.size)
    truth = xr.Dataset({"t": (tuple(coords), 280 + rng.normal(size=shape))}, coords=coords)
    pred = truth + rng.normal(size=shape)
    pred.to_netcdf(tmp_path / "pred.nc")
    truth.to_netcdf(tmp_path / "truth.nc")
    eager = evaluate(pred, truth)
    with (
        xr.open_dataset(tmp_path / "pred.nc", chunks={}) as p,
        xr.open_dataset(tmp_path / "truth.nc", chunks={}) as t,
    ):
        assert p["t"].data.numblocks[1] == 1  # one chunk over all times
        evaluate(p.isel(time=[0]), t)  # first use: imports and caches, not counted
        whole, whole_peak = _peak_bytes(p, t, time_batch=24)
        batched, batched_peak = _peak_bytes(p, t, time_batch=8)
    xr.testing.assert_allclose(batched, eager)
    xr.testing.assert_allclose(whole, eager)
    assert batched_peak < whole_peak / 2, f"{batched_peak} bytes in batches of 8 of 24 times"


def test_report_never_replaces_what_xappa_did_not_write(truth: xr.Dataset, tmp_path: Path) -> None:
    from xappa.verify.evaluate import write_report

    scores = evaluate(truth + 1.0, truth)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.nc").write_text("my own file")
    with pytest.raises(FileExistsError, match=r"holds data that xappa did not write"):
        write_report(scores, mine)
    assert (mine / "metrics.nc").read_text() == "my own file"
    with pytest.raises(FileExistsError, match=r"is an existing file"):
        write_report(scores, mine / "metrics.nc")
    with pytest.raises(NotADirectoryError, match=r"lies inside .*metrics.nc.*which is a file"):
        write_report(scores, mine / "metrics.nc" / "report")
    report = tmp_path / "report"
    write_report(scores, report)
    (report / "notes.txt").write_text("mine")  # the user's, next to the report
    with pytest.raises(FileExistsError, match=r"already holds an xappa evaluation report"):
        write_report(scores, report)
    write_report(scores * 2, report, overwrite=True)
    with xr.open_dataset(report / "metrics.nc") as ds:
        np.testing.assert_allclose(ds["rmse"].values, 2.0)
    assert (report / "notes.txt").read_text() == "mine"


def test_cli_out_onto_a_file(truth: xr.Dataset, tmp_path: Path, capsys) -> None:
    truth.to_netcdf(tmp_path / "truth.nc")
    (tmp_path / "report.txt").write_text("keep me")
    args = [
        "evaluate",
        "--pred",
        str(tmp_path / "truth.nc"),
        "--truth",
        str(tmp_path / "truth.nc"),
    ]
    assert main([*args, "--out", str(tmp_path / "report.txt")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"xappa evaluate: error: --out {str(tmp_path / 'report.txt')!r} is an existing file; expected a new path, an empty directory or an earlier output of xappa\n"
    )
    assert (tmp_path / "report.txt").read_text() == "keep me"
