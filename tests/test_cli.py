"""The ``xappa`` command line: ``demo`` and ``testbed shallow-water``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xappa.cli import build_parser, main
from xappa.commands import testbed
from xappa.testbeds.shallow_water import simulate

DIMS = {"latitude": 32, "longitude": 64}


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out
    assert "testbed" in out


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
    assert ds.attrs["seed"] == 3
    assert ds["geopotential"].encoding["chunks"] == (1, 12, 32, 64)
    np.testing.assert_array_equal(ds.trajectory, [0, 1])
    expected = simulate(trajectories=2, days=0.5, spinup_days=0, seed=3)
    xr.testing.assert_identical(ds.load(), expected)


def test_testbed_refuses_to_overwrite(tmp_path) -> None:
    out = tmp_path / "swe.zarr"
    out.mkdir()
    argv = ["testbed", "shallow-water", "--days", "0.25", "--trajectories", "1"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        main([*argv, "--out", str(out)])
    small = ["--spinup-days", "0", "--nlat", "16", "--nlon", "32", "--no-forcing"]
    assert main([*argv, *small, "--out", str(out), "--overwrite"]) == 0
    ds = xr.open_zarr(out, consolidated=False)
    assert dict(ds.sizes) == {"trajectory": 1, "time": 6, "latitude": 16, "longitude": 32}
    assert ds.attrs["forcing"] == "none"


def test_demo(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A short demo run: the table, the posterior store and the figures (full run in CI)."""
    out_dir = tmp_path / "demo"
    argv = ["demo", "--out", str(out_dir), "--hours", "12", "--members", "2", "--steps", "2"]
    assert main([*argv, "--threads", "1"]) == 0
    out = capsys.readouterr().out
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


def test_demo_default_arguments(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["demo"])
    assert args.out == "xappa-output"
    assert (args.hours, args.members, args.model) == (48, 8, "swe-default")
    assert args.seed != 0  # the training data of swe-default used seed 0
    assert (args.sampler, args.steps, args.schedule) == ("lms", 24, "loglogit")
