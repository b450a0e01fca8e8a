"""The ``xappa`` command line: ``demo`` and ``testbed shallow-water``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xappa.cli import build_parser, main
from xappa.commands import testbed
from xappa.commands._args import sampling_from_args
from xappa.io.outputs import MANIFEST, MARKER
from xappa.testbeds.shallow_water import simulate

DIMS = {"latitude": 32, "longitude": 64}


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("assimilate", "forecast", "demo", "evaluate", "reanalysis", "testbed"):
        assert command in out


def test_testbed_without_name_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testbed"]) == 2
    assert "shallow-water" in capsys.readouterr().out


@pytest.mark.parametrize("block", [8, 1], ids=["one-block", "appended-blocks"])
def test_testbed_shallow_water(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(testbed, "BLOCK", block)
    out = tmp_path / "swe.zarr"
    argv = ["testbed", "shallow-water", "--days", "0.5", "--trajectories", "2"]
    argv += ["--spinup-days", "0", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    ds = xr.open_zarr(out, consolidated=False)
    assert dict(ds.sizes) == {"trajectory": 2, "time": 12, **DIMS}
    assert ds.attrs.pop(MARKER) == "shallow-water testbed"
    assert ds.attrs["seed"] == 3
    assert ds["geopotential"].encoding["chunks"] == (1, 12, 32, 64)
    np.testing.assert_array_equal(ds.trajectory, [0, 1])
    expected = simulate(trajectories=2, days=0.5, spinup_days=0, seed=3)
    xr.testing.assert_identical(ds.load(), expected)


def test_testbed_replaces_only_its_own_store(tmp_path, capsys) -> None:
    argv = ["testbed", "shallow-water", "--days", "0.25", "--trajectories", "1"]
    small = ["--spinup-days", "0", "--nlat", "16", "--nlon", "32", "--no-forcing"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main([*argv, *small, "--out", str(mine), "--overwrite"]) == 2
    assert "holds data that xappa did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
    out = tmp_path / "swe.zarr"
    assert main([*argv, *small, "--out", str(out)]) == 0
    assert main([*argv, *small, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xappa testbed shallow-water: error: --out") and "--overwrite" in err
    assert main([*argv, *small, "--out", str(out), "--overwrite", "--seed", "5"]) == 0
    ds = xr.open_zarr(out, consolidated=False)
    assert dict(ds.sizes) == {"trajectory": 1, "time": 6, "latitude": 16, "longitude": 32}
    assert ds.attrs["forcing"] == "none" and ds.attrs["seed"] == 5


def test_demo(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A short demo run: the table, the posterior store and the figures (full run in CI)."""
    out_dir = tmp_path / "demo"
    argv = ["demo", "--out", str(out_dir), "--hours", "12", "--members", "2", "--steps", "2"]
    assert main([*argv, "--threads", "1"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # the demo talks while it runs: the planned cost, the expected time, a progress bar
    assert "assimilate (reanalysis): 1 window(s) x 2 member(s)" in captured.err
    assert "steps 1 and 2 of 2 took" not in captured.err  # two steps: nothing to estimate
    assert "assimilate: 100%" in captured.err
    for text in ("posterior", "prior", "climatology", "spread/skill", "stations", "satellite"):
        assert text in out
    lines = [line for line in out.splitlines() if line.startswith("geopotential [m2 s-2]")]
    assert len(lines) == 1
    numbers = [float(v) for v in lines[0].split()[3:]]
    assert len(numbers) == 6 and all(np.isfinite(numbers))
    assert numbers[0] < numbers[2]  # the posterior beats the climatology even so briefly
    path = out_dir / "posterior.zarr"
    assert str(path) in out
    ds = xr.open_zarr(path, consolidated=False)
    assert dict(ds.sizes) == {"member": 2, "time": 12, **DIMS}
    assert ds["geopotential"].attrs["units"] == "m2 s-2"
    for name in ("geopotential", "u_component_of_wind", "v_component_of_wind"):
        png = out_dir / f"{name}.png"
        assert png.stat().st_size > 10_000
        assert str(png) in out
    assert ds.attrs[MARKER] == "demo posterior"
    listed = (out_dir / MANIFEST).read_text()
    assert all(n in listed for n in ("posterior.zarr", "geopotential.png"))


def test_demo_default_arguments(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["demo"])
    assert args.out == "xappa-output"
    assert (args.hours, args.members, args.model) == (48, 8, "swe-default")
    assert args.seed != 0  # the training data of swe-default used seed 0
    config = sampling_from_args(args)
    assert (config.sampler, config.steps, config.schedule) == ("lms", 24, "loglogit")
    changed = sampling_from_args(build_parser().parse_args(["demo", "--steps", "3"]))
    assert changed == config.replace(steps=3)


def _status(argv: list[str]) -> int:
    """The exit status of ``xappa argv``: argparse exits, the commands return it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"xappa {command}: error: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "command", "match"),
    [
        (["demo", "--members", "0"], "demo", "argument --members: must be an int >= 1"),
        (["demo", "--hours", "two"], "demo", "argument --hours: must be an int >= 1"),
        (["demo", "--device", "cdua"], "demo", "argument --device: the device must be a torch"),
        (["demo", "--device", "cuda:7"], "demo", "'cuda:7' is not available on this machine"),
        (["demo", "--sampler", "euler"], "demo", "argument --sampler: invalid choice: 'euler'"),
        (["demo", "--model", "no-such-model"], "demo", "no-such-model"),
        (["demo", "--out", "{file}/sub"], "demo", "lies inside .* which is a file"),
        (["demo", "--out", "{file}"], "demo", "is an existing file"),
        (
            ["testbed", "shallow-water", "--trajectories", "0"],
            "testbed shallow-water",
            "argument --trajectories: must be an int >= 1",
        ),
        (
            ["reanalysis", "--obs", "x.nc", "--model", "m", "--start", "2021", "--end", "2021"],
            "reanalysis",
            "the following arguments are required: --out",
        ),
        (
            [
                "reanalysis",
                "--obs",
                "x",
                "--model",
                "m",
                "--start",
                "s",
                "--end",
                "e",
                "--members",
                "0",
            ],
            "reanalysis",
            "argument --members: must be an int >= 1",
        ),
        (["train", "autoencoder", "--data", "d", "--steps", "-1"], "train autoencoder", "--steps"),
        (
            ["evaluate", "--pred", "p", "--truth", "t", "--out", "o", "--region", "mars"],
            "evaluate",
            "argument --region: invalid choice: 'mars'",
        ),
    ],
    ids=[
        "members-0",
        "hours-not-int",
        "device-typo",
        "device-absent",
        "sampler-unknown",
        "model-unknown",
        "out-inside-a-file",
        "out-a-file",
        "trajectories-0",
        "missing-out",
        "reanalysis-members-0",
        "train-steps-negative",
        "evaluate-region-unknown",
    ],
)
def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, command, match) -> None:
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("keep me")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    if "--out" not in argv and argv[0] == "demo":
        argv += ["--out", str(tmp_path / "out")]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "out")]
    assert _status(argv) == 2
    assert re.search(match, _one_error_line(capsys, command))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written
    assert (tmp_path / "file").read_text() == "keep me"


def test_debug_shows_the_traceback(tmp_path) -> None:
    argv = ["demo", "--model", "no-such-model", "--out", str(tmp_path / "out")]
    with pytest.raises(KeyError, match="no-such-model"):
        main(["--debug", *argv])
    with pytest.raises(KeyError, match="no-such-model"):
        main([*argv, "--debug"])
    assert not (tmp_path / "out").exists()


def _all_parsers(parser=None):
    import argparse

    parser = parser or build_parser()
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def test_help_texts_are_plain_and_complete() -> None:
    from xappa.core.diffusion.sampler import _SAMPLERS
    from xappa.core.diffusion.schedule import SCHEDULE_NAMES

    parsers = {p.prog: p for p in _all_parsers()}
    for prog, parser in parsers.items():
        text = parser.format_help()
        for markup in (":func:", ":mod:", ":class:", ":data:", "``"):
            assert markup not in text, f"{prog} --help shows {markup!r}"
    for prog in ("xappa train autoencoder", "xappa train prior", "xappa train encode"):
        assert parsers[prog].description, f"{prog} has no description"
    options = {prog: {a.dest: a for a in parser._actions} for prog, parser in parsers.items()}
    for prog in (
        "xappa assimilate",
        "xappa forecast",
        "xappa demo",
        "xappa reanalysis",
        "xappa train autoencoder",
        "xappa train prior",
        "xappa train encode",
    ):
        assert "device" in options[prog], f"{prog} has no --device"
    for prog in ("xappa assimilate", "xappa forecast", "xappa demo", "xappa reanalysis"):
        assert sorted(options[prog]["sampler"].choices) == sorted(_SAMPLERS)
        assert tuple(options[prog]["schedule"].choices) == tuple(SCHEDULE_NAMES)
    assert "xappa.batch.reanalysis" in parsers["xappa reanalysis"].format_help()


def test_demo_validates_before_writing(tmp_path, capsys) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2,3")
    assert main(["demo", "--out", str(mine)]) == 2  # refused before the model is loaded
    assert "holds data that xappa did not write" in _one_error_line(capsys, "demo")
    assert sorted(p.name for p in mine.iterdir()) == ["data.csv"]
