"""A real local cluster gives the in-process result, even when a worker is killed mid-run."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xappa
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

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.timeout(180)
def test_cluster_matches_in_process(client, reference, obs, model_dir, period, tmp_path):
    model = xappa.load_model(model_dir)  # a Model object: scattered once to every worker
    out = tmp_path / "cluster.zarr"
    ds = xappa.batch.reanalysis(
        obs, model, *period, **RUN, out=out, client=client, seed=SEED, **FAST
    )
    assert ds.attrs["xappa_computed_windows"] == list(range(N_WINDOWS))
    assert (ds.window_complete.values == 1).all()
    assert_same_states(out, reference)


@pytest.mark.timeout(240)
def test_worker_killed_mid_run(client, reference, obs, model_dir, period, tmp_path):
    out = tmp_path / "killed.zarr"
    pids = client.run(os.getpid)  # {worker address: pid}
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    run = executor.submit(
        xappa.batch.reanalysis,
        obs,
        model_dir,
        *period,
        **RUN,
        out=out,
        client=client,
        seed=SEED,
        **FAST,
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and not run.done() and time.monotonic() < deadline:
        mask = complete_mask(out)
        done = 0 if mask is None else int(mask.sum())
        if done >= 1:
            busy = [a for a, keys in client.processing().items() if keys and a in pids]
            address = busy[0] if busy else next(iter(pids))
            os.kill(pids[address], signal.SIGKILL)
            killed = (address, done, bool(busy))
        time.sleep(0.02)
    ds = run.result(timeout=150)  # raises the run's error, if any
    executor.shutdown()
    assert killed is not None, "no window completed before the run ended or timed out"
    assert killed[1] < N_WINDOWS, "the run was already complete when the worker was killed"
    assert killed[2], "the killed worker had no task"
    assert ds.attrs["xappa_computed_windows"] == list(range(N_WINDOWS))
    assert_same_states(out, reference)
    client.wait_for_workers(2, timeout=60)
    after = client.run(os.getpid)
    assert pids[killed[0]] not in after.values()  # the nanny started a new worker
    assert np.isfinite(open_store(out)["2m_temperature"].values).all()
