"""Real-world mistakes, across the API and the command line: each is refused before any work.

Every case asserts the exception type, that the message names the argument (or option) at
fault and what was found, and that nothing was written or changed: the working directory
(a fresh one per case, holding a file and a folder that are not xappa's) is unchanged, the
inputs are identical to copies taken before, the model's weights and device are unchanged,
and the process-wide options are as they were. Command-line cases run with ``--debug``, so
the exception itself is checked (without it the same errors print one line and exit with
status 2, see ``tests/test_cli.py``); errors of argparse's own types exit with status 2 and
name the option on stderr.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

import xappa
from xappa.batch import reanalysis
from xappa.cli import main
from xappa.models.hub import load_model, save_model_files
from xappa.observations import sample_points, stations
from xappa.testing import mock_era5, tiny_model
from xappa.verify.evaluate import evaluate, write_report

FAST = xappa.SamplingConfig(sampler="ddim", steps=2)
CLI_FAST = "--sampler ddim --steps 2 --no-progress"


@dataclass(frozen=True)
class Inputs:
    """What the mistakes are made with; ``copies`` are checked against them afterwards."""

    model: xappa.Model
    path: str  # the model saved as a directory
    truth: xr.Dataset
    obs: xr.Dataset
    gridded: xr.Dataset
    store: str  # the truth as a zarr store
    obs_file: str  # the observations as a netCDF file


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    model = tiny_model()
    save_model_files(model, root / "model", stem="tiny", show=False)
    truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=6)
    sites = stations([48.8, -33.9, 5.0], [2.35, 151.2, 280.0], names=["a", "b", "c"])
    obs = sample_points(truth, sites, error_std=0.5, seed=0)
    gridded = truth.where(truth["latitude"] > 30).assign(
        {f"{v}_error": 0.5 for v in truth.data_vars}
    )
    for v in truth.data_vars:
        gridded[v].attrs["ancillary_variables"] = f"{v}_error"
    truth.to_zarr(root / "truth.zarr", consolidated=False)
    obs.to_netcdf(root / "obs.nc")
    return Inputs(
        model, str(root / "model"), truth, obs, gridded, str(root / "truth.zarr"),
        str(root / "obs.nc"),
    )  # fmt: skip


# -- ways to make each mistake ----------------------------------------------------------------


def _units(ds: xr.Dataset, name: str, units: str | None, scale: float = 1.0, shift=0.0):
    out = ds.copy(deep=True)
    out[name] = out[name] * scale + shift
    out[name].attrs = dict(ds[name].attrs)
    if units is None:
        out[name].attrs.pop("units", None)
    else:
        out[name].attrs["units"] = units
    return out


def _latitudes(ds: xr.Dataset, values: np.ndarray) -> xr.Dataset:
    return ds.assign_coords(latitude=("latitude", values, ds["latitude"].attrs))


def _repeat_first(values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=float)
    out[1] = out[0]
    return out


def _swap_two(values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=float)
    out[[2, 5]] = out[[5, 2]]
    return out


def _assimilate(i: Inputs, obs: Any = None, **kwargs: Any) -> Any:
    options = {"model": i.model, "members": 2, "sampling": FAST, "progress": False}
    return xappa.assimilate(i.obs if obs is None else obs, **{**options, **kwargs})


def _forecast(i: Inputs, initial: Any = None, **kwargs: Any) -> Any:
    options = {"model": i.model, "members": 2, "sampling": FAST, "progress": False}
    return xappa.forecast(i.truth if initial is None else initial, **{**options, **kwargs})


def _cli(command: str) -> Callable[[Inputs], Any]:
    """``xappa --debug command``, with ``{model}``, ``{obs}``, ``{store}``, ``{fast}`` filled in."""

    def run(i: Inputs) -> Any:
        words = command.format(model=i.path, obs=i.obs_file, store=i.store, fast=CLI_FAST)
        return main(["--debug", *words.split()])

    return run


def _report_onto_foreign_folder(i: Inputs) -> Any:
    metrics = evaluate(i.truth + 1.0, i.truth)
    return write_report(metrics, "foreign", overwrite=True)


@dataclass(frozen=True)
class Mistake:
    call: Callable[[Inputs], Any]
    error: type[BaseException]
    match: str


# Each regular expression names the argument (or option) and says what was found.
MISTAKES: dict[str, Mistake] = {
    # units
    "obs-degC-labelled-K": Mistake(
        lambda i: _assimilate(i, _units(i.obs, "2m_temperature", "K", shift=-273.15)),
        ValueError,
        r"obs variable '2m_temperature' has units 'K', but 100% .* look like values in 'degC'",
    ),
    "obs-unknown-units": Mistake(
        lambda i: _assimilate(i, _units(i.obs, "2m_temperature", "kelvinn")),
        ValueError,
        r"obs '2m_temperature' has units 'kelvinn'; expected units convertible to 'K'",
    ),
    "obs-without-units": Mistake(
        lambda i: _assimilate(i, _units(i.obs, "10m_u_component_of_wind", None)),
        ValueError,
        r"obs variable '10m_u_component_of_wind' has no units attribute",
    ),
    "obs-wind-units-that-are-temperature": Mistake(
        lambda i: _assimilate(i, _units(i.obs, "10m_v_component_of_wind", "K")),
        ValueError,
        r"obs '10m_v_component_of_wind' has units 'K'; expected .* 'm s-1'",
    ),
    "encode-units-of-another-quantity": Mistake(
        lambda i: xappa.encode(_units(i.truth, "2m_temperature", "m s-1"), model=i.model),
        ValueError,
        r"variable '2m_temperature' has units 'm s-1'; expected units convertible to 'K'",
    ),
    "evaluate-units-unconvertible": Mistake(
        lambda i: evaluate(_units(i.truth, "2m_temperature", "m"), i.truth),
        ValueError,
        r"pred variable '2m_temperature' has units 'm'; expected .* 'K'",
    ),
    # grids
    "gridded-repeated-latitude": Mistake(
        lambda i: _assimilate(
            i, _latitudes(i.gridded, _repeat_first(i.gridded["latitude"].values))
        ),
        ValueError,
        r"obs latitude must be strictly monotonic .*found 90 after 90",
    ),
    "gridded-unordered-latitude": Mistake(
        lambda i: _assimilate(i, _latitudes(i.gridded, _swap_two(i.gridded["latitude"].values))),
        ValueError,
        r"latitude.*(order|monoton|sorted)",
    ),
    "gridded-repeated-longitude": Mistake(
        lambda i: _assimilate(
            i,
            i.gridded.assign_coords(longitude=_repeat_first(i.gridded["longitude"].values)),
        ),
        ValueError,
        r"obs longitude must hold each meridian once .*found 2 values at 0 degrees",
    ),
    "points-latitude-beyond-the-pole": Mistake(
        lambda i: _assimilate(i, i.obs.assign_coords(latitude=("station", [48.8, -95.0, 5.0]))),
        ValueError,
        r"latitude.*\[-90, 90\].*-95",
    ),
    "encode-another-grid": Mistake(
        lambda i: xappa.encode(i.truth.isel(latitude=slice(0, 8)), model=i.model),
        ValueError,
        r"ds latitude does not match the spec grid: expected 16 values .* found 8 values",
    ),
    "obs-without-coordinates": Mistake(
        lambda i: _assimilate(i, i.obs.drop_vars(["latitude", "longitude"])),
        KeyError,
        r"obs has no latitude coordinate; found coordinates \['time', 'station'\]",
    ),
    # times
    "obs-without-time": Mistake(
        lambda i: _assimilate(i, i.obs.isel(time=0, drop=True)),
        KeyError,
        r"obs must have a time coordinate; found \['latitude', 'longitude', 'station'\]",
    ),
    "encode-times-not-in-the-data": Mistake(
        lambda i: xappa.encode(i.truth, model=i.model, times=["2030-01-01"]),
        KeyError,
        r"time.*2030-01-01",
    ),
    "forecast-init-time-without-context": Mistake(
        lambda i: _forecast(i, init_times=["2021-01-01T00"]),
        ValueError,
        r"initial must hold the 2 context time\(s\) ending at init time 2021-01-01 00:00:00",
    ),
    "forecast-lead-not-a-step-multiple": Mistake(
        lambda i: _forecast(i, lead="90min"),
        ValueError,
        r"lead must be a positive multiple of the time step 0 days 01:00:00; found 0 days 01:30",
    ),
    "forecast-lead-text": Mistake(
        lambda i: _forecast(i, lead="soon"), ValueError, r"lead must be a duration.*'soon'"
    ),
    # windows
    "window-zero": Mistake(
        lambda i: _assimilate(i, window="0h"), ValueError, r"window must last at least one"
    ),
    "window-text": Mistake(
        lambda i: _assimilate(i, window="a week"), ValueError, r"window must be None, a dur"
    ),
    "window-end-before-start": Mistake(
        lambda i: _assimilate(i, window=("2021-01-02", "2021-01-01")),
        ValueError,
        r"window end must not be before its start",
    ),
    "window-three-values": Mistake(
        lambda i: _assimilate(i, window=("2021-01-01", "2021-01-02", "2021-01-03")),
        ValueError,
        r"window must be a duration or a \(start, end\) pair; found 3 values",
    ),
    "window-unparseable-start": Mistake(
        lambda i: _assimilate(i, window=("yesterday", "2021-01-01")),
        ValueError,
        r"window.*'yesterday'",
    ),
    "obs-outside-the-window": Mistake(
        lambda i: _assimilate(i, window=("2021-01-01T00", "2021-01-01T02")),
        ValueError,
        r"obs have \d+ value\(s\) outside the window",
    ),
    "stride-longer-than-the-window": Mistake(
        lambda i: _assimilate(i, stride=5), ValueError, r"stride must be at most the model window"
    ),
    "forecast-context-too-long": Mistake(
        lambda i: _forecast(i, context=3), ValueError, r"context must be at most window - stride"
    ),
    # settings, SamplingConfig fields included
    "sampler-unknown": Mistake(
        lambda i: xappa.SamplingConfig(sampler="euler"),
        ValueError,
        r"SamplingConfig.sampler must be one of .*; found 'euler'",
    ),
    "steps-zero": Mistake(
        lambda i: xappa.SamplingConfig(steps=0),
        ValueError,
        r"SamplingConfig.steps must be a positive int; found 0",
    ),
    "schedule-unknown": Mistake(
        lambda i: xappa.SamplingConfig(schedule="cosine"), ValueError, r"schedule.*'cosine'"
    ),
    "delta-above-one": Mistake(
        lambda i: xappa.SamplingConfig(delta=2.0),
        ValueError,
        r"SamplingConfig.delta must be a float in \(0, 1\]; found 2.0",
    ),
    "guidance-unknown": Mistake(
        lambda i: xappa.SamplingConfig(guidance="enkf"), ValueError, r"guidance.*'enkf'"
    ),
    "solver-unknown": Mistake(
        lambda i: xappa.SamplingConfig(solver="lu"), ValueError, r"solver.*'lu'"
    ),
    "precision-unknown": Mistake(
        lambda i: xappa.SamplingConfig(precision="float8"), ValueError, r"precision.*'float8'"
    ),
    "sampling-preset-unknown": Mistake(
        lambda i: _assimilate(i, sampling="fastest"), ValueError, r"sampling.*'fastest'"
    ),
    "sampling-not-a-config": Mistake(
        lambda i: _assimilate(i, sampling={"steps": 2}), TypeError, r"sampling.*dict"
    ),
    "members-zero": Mistake(
        lambda i: _assimilate(i, members=0), ValueError, r"members must be a positive int.*0"
    ),
    "members-fraction": Mistake(
        lambda i: _assimilate(i, members=2.5), ValueError, r"members must be a positive int.*2.5"
    ),
    "filter-with-one-member": Mistake(
        lambda i: _assimilate(i, mode="filter", members=1),
        ValueError,
        r"members must be at least 2 to filter",
    ),
    "mode-unknown": Mistake(
        lambda i: _assimilate(i, mode="smoother"), ValueError, r"mode must be one of.*'smoother'"
    ),
    "max-batch-zero": Mistake(
        lambda i: _assimilate(i, max_batch=0), ValueError, r"max_batch must be a positive int"
    ),
    "obs-error-zero": Mistake(
        lambda i: _assimilate(i, obs_error=0.0),
        ValueError,
        r"obs_error for obs variable '2m_temperature' must be positive; found 0.0",
    ),
    "obs-error-unknown-variable": Mistake(
        lambda i: _assimilate(i, obs_error={"2m_temperatur": 1.0}),
        KeyError,
        r"obs_error.*2m_temperatur",
    ),
    "forecast-method-unknown": Mistake(
        lambda i: _forecast(i, method="ensemble"), ValueError, r"method must be one of"
    ),
    "option-unknown": Mistake(
        lambda i: xappa.set_options(progres=False), ValueError, r"unknown option 'progres'"
    ),
    "option-progress-not-a-bool": Mistake(
        lambda i: xappa.set_options(progress="yes"), ValueError, r"option 'progress' must be"
    ),
    "encode-batch-size-zero": Mistake(
        lambda i: xappa.encode(i.truth, model=i.model, batch_size=0),
        ValueError,
        r"batch_size must be a positive int",
    ),
    # containers
    "obs-a-dataarray": Mistake(
        lambda i: _assimilate(i, i.obs["2m_temperature"]), TypeError, r"obs must be an xarray"
    ),
    "obs-an-empty-list": Mistake(lambda i: _assimilate(i, []), TypeError, r"obs must be .*list"),
    "encode-a-numpy-array": Mistake(
        lambda i: xappa.encode(i.truth["2m_temperature"].values, model=i.model),
        TypeError,
        r"ds must be an xarray.Dataset; found ndarray",
    ),
    "decode-states-not-latents": Mistake(
        lambda i: xappa.decode(i.truth, model=i.model),
        KeyError,
        r"latents must be a Dataset with a 'latent' variable",
    ),
    "forecast-a-list-of-states": Mistake(
        lambda i: _forecast(i, [i.truth]), TypeError, r"initial must be an xarray.Dataset"
    ),
    "model-an-int": Mistake(
        lambda i: _assimilate(i, model=3), TypeError, r"model must be an xappa.Model"
    ),
    "model-missing": Mistake(
        lambda i: _assimilate(i, model=None), TypeError, r"model is required"
    ),
    # paths
    "model-path-missing": Mistake(
        lambda i: load_model("no/such/model.yaml", device="cpu"),
        FileNotFoundError,
        r"no/such/model.yaml",
    ),
    "model-name-unknown": Mistake(
        lambda i: load_model("swe-defualt", device="cpu"), KeyError, r"swe-defualt.*swe-default"
    ),
    "report-onto-a-folder-xappa-did-not-write": Mistake(
        _report_onto_foreign_folder, FileExistsError, r"'foreign' holds data that xappa did not"
    ),
    "batch-out-inside-a-file": Mistake(
        lambda i: reanalysis(
            i.obs, i.model, "2021-01-01", "2021-01-01T05", "4h", "2h", 2, "notes.txt/run.zarr"
        ),
        NotADirectoryError,
        r"out 'notes.txt/run.zarr' lies inside 'notes.txt', which is a file",
    ),
    "cli-evaluate-out-onto-a-file": Mistake(
        _cli("evaluate --pred {store} --truth {store} --out notes.txt"),
        FileExistsError,
        r"--out 'notes.txt' is an existing file",
    ),
    "cli-assimilate-out-onto-a-foreign-folder": Mistake(
        _cli("assimilate --obs {obs} --model {model} --out foreign --overwrite {fast}"),
        FileExistsError,
        r"--out 'foreign' holds data that xappa did not write",
    ),
    "cli-obs-missing": Mistake(
        _cli("assimilate --obs obs.nc --model {model} --out a.zarr"),
        FileNotFoundError,
        r"--obs 'obs.nc' does not exist",
    ),
    "cli-forecast-init-time-with-obs": Mistake(
        _cli("forecast --obs {obs} --model {model} --out f.zarr --init-time 2021-01-01T03 {fast}"),
        ValueError,
        r"--init-time apply only without --initial",
    ),
    "cli-members-zero": Mistake(
        _cli("demo --members 0 --out demo"), SystemExit, r"argument --members"
    ),
    "cli-window-reversed": Mistake(
        _cli("assimilate --obs {obs} --model {model} --out a.zarr --window 2021-01-02/2021-01-01"),
        SystemExit,
        r"argument --window: .*end not before start",
    ),
    # devices
    "device-absent-gpu": Mistake(
        lambda i: _assimilate(i, device="cuda:7"),
        ValueError,
        r"device 'cuda:7' is not available on this machine; available: \['cpu'",
    ),
    "device-unknown-type": Mistake(
        lambda i: load_model(i.path, device="tpu"), ValueError, r"device must be a torch device"
    ),
    "device-an-int": Mistake(
        lambda i: xappa.encode(i.truth, model=i.model, device=0),
        TypeError,
        r"device must be a str or a torch.device; found int",
    ),
    "device-typo-in-options": Mistake(
        lambda i: xappa.set_options(device="cdua"), ValueError, r"found 'cdua'"
    ),
    "model-on-an-absent-gpu": Mistake(
        lambda i: i.model.on("cuda:7"), ValueError, r"device 'cuda:7' is not available"
    ),
    "cli-device-absent": Mistake(
        _cli("demo --device cuda:7 --out demo"), SystemExit, r"argument --device"
    ),
    # dtypes
    "dtype-integer": Mistake(
        lambda i: load_model(i.path, device="cpu", dtype=torch.int64),
        TypeError,
        r"dtype must be None or one of .*torch.int64",
    ),
    "dtype-numpy": Mistake(
        lambda i: load_model(i.path, device="cpu", dtype=np.float64),
        TypeError,
        r"dtype must be None or one of",
    ),
    "dtype-misspelled": Mistake(
        lambda i: load_model(i.path, device="cpu", dtype="float46"),
        TypeError,
        r"dtype must be None or one of .*'float46'",
    ),
    "precision-a-torch-dtype": Mistake(
        lambda i: xappa.SamplingConfig(precision=torch.float64),
        ValueError,
        r"SamplingConfig.precision must be one of .*; found torch.float64",
    ),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _state(i: Inputs) -> tuple:
    params = [t.detach().clone() for t in i.model.denoiser.parameters()]
    return i.model.weight_hash, i.model.device, params, xappa.get_options()


def test_there_are_at_least_forty_distinct_mistakes() -> None:
    assert len(MISTAKES) >= 40
    assert len({(m.error, m.match) for m in MISTAKES.values()}) == len(MISTAKES)


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_is_refused_naming_the_argument_and_changing_nothing(
    name: str, inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    mistake = MISTAKES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/data.csv").write_text("1,2,3")
    files = _tree(tmp_path)
    copies = {k: copy.deepcopy(getattr(inputs, k)) for k in ("truth", "obs", "gridded")}
    weights, device, params, options = _state(inputs)
    with pytest.raises(mistake.error) as caught:
        mistake.call(inputs)
    if mistake.error is SystemExit:  # argparse: status 2, the option named on stderr
        assert caught.value.code == 2
        message = capsys.readouterr().err
    else:
        message = caught.value.args[0] if caught.value.args else ""
    assert re.search(mistake.match, str(message)), message
    assert _tree(tmp_path) == files  # nothing written
    for key, value in copies.items():
        xr.testing.assert_identical(getattr(inputs, key), value)
    assert inputs.model.weight_hash == weights and inputs.model.device == device
    assert all(
        torch.equal(a, b) for a, b in zip(inputs.model.denoiser.parameters(), params, strict=True)
    )
    assert xappa.get_options() == options
