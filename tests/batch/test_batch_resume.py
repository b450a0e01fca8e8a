"""The driver killed mid-task leaves a store that says it is incomplete; a rerun completes it.

The driver runs in a subprocess whose third task stops between writing its block and
writing its records, and says so on a pipe: the test kills it then, at a known point, with
no polling or sleep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

import xappa.batch
from xappa.batch.store import COMPLETE_ATTR
from xappa.cli import main
from xappa.verify.evaluate import evaluate

from .conftest import (
    FAST,
    N_WINDOWS,
    RUN,
    SAMPLING,
    SEED,
    assert_same_states,
    complete_mask,
    open_store,
)

STOP_AT = 2

DRIVER = """
import json, sys
import torch
torch.set_num_threads(1)
import xarray as xr
import xappa.batch
import xappa.batch.tasks as tasks

a = json.loads(sys.argv[1])
write_record = tasks.write_record

def stop_before_the_record(out, window, group, n_obs):
    if window == a["stop_at"]:  # the block is written: say so, then wait to be killed
        print("block written", flush=True)
        sys.stdin.read()
    write_record(out, window, group, n_obs)

tasks.write_record = stop_before_the_record
obs = [
    xr.open_zarr(p, consolidated=False) if p.endswith(".zarr") else xr.open_dataset(p)
    for p in a["obs"]
]
sampling = xappa.SamplingConfig(**a["sampling"])
xappa.batch.reanalysis(
    obs, a["model"], a["start"], a["end"], out=a["out"], seed=a["seed"], **a["run"],
    sampling=sampling, progress=False,
)
"""


def _kill_inside_a_task(obs_paths, model_dir, period, out, log):
    """Run the driver until task ``STOP_AT`` has written its block (not its records); kill it."""
    args = {"obs": obs_paths, "model": model_dir, "start": str(period[0]), "end": str(period[1])}
    args |= {"out": str(out), "seed": SEED, "run": RUN, "sampling": SAMPLING, "stop_at": STOP_AT}
    with log.open("w") as err:
        cmd = [sys.executable, "-c", DRIVER, json.dumps(args)]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            line = proc.stdout.readline()  # blocks until the task stops (or the driver dies)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert line == "block written\n", log.read_text()


@pytest.mark.timeout(180)
def test_driver_killed_and_resumed(
    reference, truth, obs_paths, obs, model_dir, period, tmp_path, capsys
):
    out = tmp_path / "resumed.zarr"
    _kill_inside_a_task(obs_paths, model_dir, period, out, tmp_path / "driver.log")
    done = complete_mask(out)
    assert done.tolist() == [1] * STOP_AT + [0] * (N_WINDOWS - STOP_AT)
    ds, ref = open_store(out), open_store(reference)
    assert ds.attrs[COMPLETE_ATTR] == 0
    for k in range(STOP_AT + 1):  # complete windows, and the block of the killed task
        block = slice(ds.owned_start.values[k], ds.owned_end.values[k])
        for v in ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind"):
            a = ds[v].sel(time=block).values
            np.testing.assert_array_equal(a, ref[v].sel(time=block).values, err_msg=f"{v} {k}")
    assert ds.window_n_obs.values[STOP_AT, 0] == -1
    complete_times = int(np.flatnonzero(ds.time.values == ds.owned_start.values[STOP_AT])[0])
    ds.close()

    # the incomplete store is refused, or opened with a warning, by the reader and evaluate
    with pytest.raises(ValueError, match=r"incomplete batch reanalysis: 4 of its 6 windows"):
        xappa.batch.open_reanalysis(out)
    with pytest.warns(UserWarning, match=r"window 2 owns 2021-01-01T12:00 to 2021-01-01T16:00"):
        xappa.batch.open_reanalysis(out, complete="warn").close()
    stored = xappa.batch.open_reanalysis(out, complete="ignore")
    with pytest.raises(ValueError, match=r"pred is an incomplete batch reanalysis"):
        evaluate(stored, truth)
    scores = evaluate(stored.isel(time=slice(0, complete_times)), truth)  # complete windows
    assert np.isfinite(scores["rmse"].values).all()
    stored.close()
    truth_path = tmp_path / "truth.zarr"
    truth.to_zarr(truth_path, consolidated=False)
    report = tmp_path / "report"
    argv = ["evaluate", "--pred", str(out), "--truth", str(truth_path), "--out", str(report)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xappa evaluate: error: --pred") and "incomplete" in err
    assert len(err.splitlines()) == 1 and not report.exists()

    # a rerun computes exactly the windows that are not complete
    again = xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, seed=SEED, **FAST)
    assert again.attrs["xappa_computed_windows"] == list(range(STOP_AT, N_WINDOWS))
    assert again.attrs["xappa_skipped_windows"] == list(range(STOP_AT))
    assert again.attrs[COMPLETE_ATTR] == 1
    again.close()
    assert_same_states(out, reference)
    xappa.batch.open_reanalysis(out).close()
