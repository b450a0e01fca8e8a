"""benchmarks/gpu.py runs end to end at a tiny size on the CPU, so that it works the first
time a GPU is there."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_benchmark() -> dict:
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not part of this installation")
    return runpy.run_path(str(SCRIPT))


def test_tiny_run_measures_everything(gpu_benchmark, tmp_path, capsys):
    out = tmp_path / "tiny.json"
    argv = ["--size", "tiny", "--device", "cpu", "--repeat", "1", "--steps", "1"]
    doc = gpu_benchmark["main"]([*argv, "--stations", "16", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == doc
    measures = [(r["precision"], r["measure"]) for r in doc["rows"]]
    for precision in ("float32", "bfloat16"):
        for measure in ("denoiser", "guided-forward", "guided-reverse", "guided-batched", "draw"):
            assert (precision, measure) in measures
    assert all(r["status"] == "ok" and r["best_s"] > 0 for r in doc["rows"])
    batched = next(r for r in doc["rows"] if r["measure"] == "guided-batched")
    assert batched["windows"] == 2 and batched["max_rel_diff_vs_one"] < 1e-5
    assert doc["observations_per_window"] > 0
    printed = capsys.readouterr().out
    assert "| float32 | guided-batched | 2 |" in printed and "| bfloat16 | draw | 1 |" in printed


def test_short_budget_scales_the_draw_down(gpu_benchmark, tmp_path):
    argv = ["--size", "tiny", "--device", "cpu", "--repeat", "1", "--precisions", "float32"]
    doc = gpu_benchmark["main"]([*argv, "--budget", "0.5", "--out", str(tmp_path / "t.json")])
    draw = next(r for r in doc["rows"] if r["measure"] == "draw")
    assert draw["status"].startswith("skipped") or "extrapolated_s" in draw
