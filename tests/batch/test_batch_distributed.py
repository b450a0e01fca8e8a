"""A real local cluster gives the in-process result, even when a worker is killed mid-task.

The kill is placed with dask's own events, not with timing: a worker plugin holds each task
of window 2 and later at a gate and reports (on a dask Queue) which worker started it; a
scheduler plugin sets an Event when the scheduler forgets a task (the driver released it
once its window was written). The test kills a worker that is inside a held task and that
computed a finished window, then opens the gates.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xappa
import xappa.batch

from .conftest import FAST, N_WINDOWS, RUN, SEED, assert_same_states, open_store

distributed = pytest.importorskip("distributed")

STATE_VARIABLES = ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind")
WAIT = 120  # seconds: a failsafe on every wait, far above any step's duration


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


class Gate(distributed.WorkerPlugin):
    """Hold the tasks of windows ``>= first`` until their Event is set; report every start."""

    def __init__(self, token: str, first: int) -> None:
        self.token, self.first = token, first

    def setup(self, worker: Any) -> None:
        from xappa.batch import tasks

        original = tasks._assimilate
        token, first = self.token, self.first

        def gated(task: Any, model: Any) -> Any:
            distributed.Queue(f"{token}-started").put((task.window, os.getpid()))
            if task.window >= first:
                distributed.Event(f"{token}-go-{task.window}").wait()
            return original(task, model)

        gated.original = original
        tasks._assimilate = gated

    def teardown(self, worker: Any) -> None:
        from xappa.batch import tasks

        tasks._assimilate = getattr(tasks._assimilate, "original", tasks._assimilate)


class Released(distributed.diagnostics.plugin.SchedulerPlugin):
    """Set the Event ``{token}-released-{k}`` when the scheduler forgets window k's task."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        match = re.fullmatch(r"xappa-reanalysis-\w+-w(\d+)-g0", str(key))
        if match and finish == "forgotten":
            name = f"{self.token}-released-{match[1]}"
            self.scheduler.extensions["events"].event_set(name=name)


def _chunk_files(out: Path, windows: range) -> dict[str, tuple[int, int]]:
    """Inode and modification time (ns) of the chunk files written by ``windows``.

    All state chunks that exist (the held windows have written none yet) and the record
    chunks of ``windows`` (one per task, ``c/<window>/<group>``).
    """
    paths = [p for v in STATE_VARIABLES for p in (out / v / "c").rglob("*")]
    for name in ("window_complete", "window_n_obs"):
        paths += [p for k in windows for p in (out / name / "c" / str(k)).rglob("*")]
    files = [p for p in paths if p.is_file()]
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


@pytest.mark.timeout(300)
def test_worker_killed_rewrites_no_finished_window(
    client, reference, obs, model_dir, period, tmp_path
):
    out, token, held = tmp_path / "killed.zarr", f"t{uuid.uuid4().hex[:8]}", 2
    client.register_plugin(Released(token), name=f"{token}-released")
    client.register_plugin(Gate(token, held), name=f"{token}-gate")
    pids = client.run(os.getpid)  # {worker address: pid}
    starts = distributed.Queue(f"{token}-started", client=client)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["ds"] = xappa.batch.reanalysis(
                obs, model_dir, *period, **RUN, out=out, client=client, seed=SEED, **FAST
            )
        except BaseException as err:  # noqa: BLE001 (re-raised by the test below)
            result["error"] = err

    driver = threading.Thread(target=run)
    driver.start()
    try:
        seen: list[tuple[int, int]] = []
        while {0, 1} - {k for k, _ in seen}:
            seen.append(tuple(starts.get(timeout=WAIT)))
        for k in range(held):
            released = distributed.Event(f"{token}-released-{k}", client=client)
            assert released.wait(timeout=WAIT), f"the driver kept window {k}'s finished task"
        finished = _chunk_files(out, range(held))
        computed = {pid for k, pid in seen if k < held}
        while not any(k >= held and pid in computed for k, pid in seen):
            seen.append(tuple(starts.get(timeout=WAIT)))
        victim = next(pid for k, pid in seen if k >= held and pid in computed)
        os.kill(victim, signal.SIGKILL)  # inside a held task, after finishing a window
    finally:
        for k in range(held, N_WINDOWS):
            distributed.Event(f"{token}-go-{k}", client=client).set()
        driver.join(WAIT * 2)
        client.unregister_worker_plugin(f"{token}-gate")
        client.unregister_scheduler_plugin(f"{token}-released")
    if "error" in result:
        raise result["error"]
    assert result["ds"].attrs["xappa_computed_windows"] == list(range(N_WINDOWS))
    after = _chunk_files(out, range(held))
    assert len(finished) > 2 * held  # the blocks and records of windows 0 and 1
    assert {k: after[k] for k in finished} == finished  # none of them rewritten
    assert_same_states(out, reference)
    assert np.isfinite(open_store(out)["2m_temperature"].values).all()
    client.wait_for_workers(2, timeout=WAIT)
    assert victim not in client.run(os.getpid).values() and victim in pids.values()
