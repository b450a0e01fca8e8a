"""The driver killed mid-run leaves a consistent store; a rerun computes only what is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import xappa.batch

from .conftest import (
    FAST,
    N_WINDOWS,
    RUN,
    SEED,
    assert_same_states,
    complete_mask,
    open_store,
)

DRIVER = """
import json, sys
import torch
torch.set_num_threads(1)
import xarray as xr
import xappa.batch
a = json.loads(sys.argv[1])
obs = [
    xr.open_zarr(p, consolidated=False) if p.endswith(".zarr") else xr.open_dataset(p)
    for p in a["obs"]
]
xappa.batch.reanalysis(
    obs, a["model"], a["start"], a["end"], out=a["out"], seed=a["seed"], **a["run"], **a["fast"]
)
"""


@pytest.mark.timeout(180)
def test_driver_killed_and_resumed(reference, obs_paths, obs, model_dir, period, tmp_path):
    out = tmp_path / "resumed.zarr"
    args = {
        "obs": obs_paths,
        "model": model_dir,
        "start": str(period[0]),
        "end": str(period[1]),
        "out": str(out),
        "seed": SEED,
        "run": RUN,
        "fast": FAST,
    }
    log = (tmp_path / "driver.log").open("w")
    cmd = [sys.executable, "-c", DRIVER, json.dumps(args)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            done = complete_mask(out)
            if done is not None and done.sum() >= 1:
                break
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
        log.close()
    done = complete_mask(out)
    assert done is not None, (tmp_path / "driver.log").read_text()
    n_done = int(done.sum())
    assert 1 <= n_done < N_WINDOWS, f"{n_done} windows were complete when the driver was killed"

    # every window marked complete holds exactly the reference's owned block and count
    ds, ref = open_store(out), open_store(reference)
    for k in np.flatnonzero(done):
        block = slice(ds.owned_start.values[k], ds.owned_end.values[k])
        for v in ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind"):
            a = ds[v].sel(time=block).values
            np.testing.assert_array_equal(a, ref[v].sel(time=block).values, err_msg=f"{v} {k}")
        assert ds.window_n_obs.values[k, 0] == ref.window_n_obs.values[k, 0]

    again = xappa.batch.reanalysis(obs, model_dir, *period, **RUN, out=out, seed=SEED, **FAST)
    assert again.attrs["xappa_computed_windows"] == np.flatnonzero(~done.astype(bool)).tolist()
    assert again.attrs["xappa_skipped_windows"] == np.flatnonzero(done).tolist()
    assert_same_states(out, reference)
