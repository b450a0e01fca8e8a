r"""Batch reanalysis at scale: one task per window, written into one zarr store, resumable.

:func:`reanalysis` splits a long period into overlapping windows
(:mod:`xappa.batch.windows`), assimilates each with :func:`xappa.assimilate` (one task per
window and member group, in-process or on a dask ``distributed`` cluster) and merges them
by the central-frames rule: every time comes from the window where it is most central, so
each window owns a contiguous, disjoint block of times and writes only that block.

**Seeds.** The task of window :math:`k` and member group :math:`g` samples with the seed
``numpy.random.SeedSequence([seed, k, g]).generate_state(1)[0]`` (``task_seed``): results
depend neither on the scheduling nor on the number of workers, and a resumed run draws
exactly what an uninterrupted one would have.

**Observations.** A task gets only the observations whose nearest model time is in its
window, selected lazily on the driver (the driver loads only time coordinates). Variables
that are all NaN in a window are dropped there; a window without any observation is
sampled from the prior (``guidance=None``; its ``window_n_obs`` is 0).

**Store layout.** The store is created up front, before any task runs:

* the spec's variables over ``(member, time, [level,] latitude, longitude)``, float32, in
  physical units with the CF attributes of :func:`xappa.assimilate`, NaN until written.
  Chunks are ``(members / member_groups, c, [levels,] latitude, longitude)``, with ``c``
  dividing the start of every owned block (:func:`xappa.batch.windows.time_chunk`), so no
  two tasks ever write the same chunk;
* ``window_complete(window, member_group)``, int8, one chunk per task: 1 once the task has
  written its block and its observation count; 0 before;
* ``window_n_obs(window, member_group)``, int64: the observations the task assimilated
  (-1 before it ran);
* coordinates ``window_start``, ``window_end`` (each window's first and last time),
  ``owned_start``, ``owned_end`` (its owned block, both included) over ``window``, and
  ``task_seed(window, member_group)``;
* global attributes: the model's provenance, ``xappa_seed``, ``xappa_members``,
  ``xappa_member_groups``, ``xappa_batch_window``, ``xappa_batch_overlap``,
  ``xappa_sampler_settings`` (the effective :func:`xappa.assimilate` settings as JSON),
  ``xappa_output = "batch reanalysis"`` (the mark of a store xappa wrote, see
  :mod:`xappa.io.outputs`) and ``xappa_complete`` (0 until every task is complete, then 1;
  :func:`xappa.batch.open_reanalysis` refuses an incomplete store).

**Resuming.** Run again with the same arguments: the store is checked against them (times,
members and groups, variables, grid, windows, seeds, model weights and sampler settings;
``device`` and ``max_batch`` may change), complete tasks are skipped and the others run.
``overwrite=True`` replaces a store that xappa wrote, and refuses anything else.
A task writes its block, then its records, so a task marked complete is fully written; a
task that was killed half-way is simply run again (writes are idempotent).

**Fault tolerance.** On a cluster, tasks are submitted with ``retries``; a worker that dies
has its running tasks rescheduled by ``distributed``. Each task's future is released as soon
as its window is written, so no finished result stays pinned on a worker, and losing a
worker never recomputes (or rewrites) a complete window. The first task that still fails
cancels the others and its error is raised; what was complete stays complete.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
"""

from __future__ import annotations

__all__ = ["reanalysis"]

import dataclasses
import inspect
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xappa.assimilation import assimilate
from xappa.batch.obs import as_datasets, observed_names, select_window, time_coordinates
from xappa.batch.store import (
    StoreConfig,
    build_template,
    check_store,
    create_store,
    mark_complete,
    open_store,
    read_complete,
)
from xappa.batch.tasks import TaskResult, WindowTask, resolve_model, run_window, task_seed
from xappa.batch.windows import WindowLayout, plan_windows
from xappa.core.da import as_config
from xappa.io.outputs import check_target
from xappa.models.model import Model
from xappa.observations.errors import check_mapping
from xappa.options import check_positive_int, progress_bar
from xappa.state.coords import grid_conventions

_SET_HERE = ("obs", "model", "window", "members", "seed", "progress")
_RUNTIME = ("device", "max_batch")
_INSTALL = "pip install 'xappa[distributed]' (or pip install distributed)"


def _require_distributed(what: str) -> Any:
    try:
        import distributed
    except ImportError as err:
        msg = f"{what} needs dask.distributed, which is not installed; install it with {_INSTALL}"
        raise ImportError(msg) from err
    return distributed


def _check_client(client: Any) -> Any:
    distributed = _require_distributed("client=")
    if not isinstance(client, distributed.Client):
        msg = f"client must be a distributed.Client or None; found {type(client).__name__}"
        raise TypeError(msg)
    return distributed


def _settings(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Check the :func:`xappa.assimilate` settings; return them and their identity (JSON)."""
    params = inspect.signature(assimilate).parameters
    allowed = [p for p in params if p not in _SET_HERE]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        msg = (
            f"reanalysis got unknown keyword argument(s) {unknown}; expected settings of"
            f" xappa.assimilate among {allowed}"
        )
        raise TypeError(msg)
    effective = {p: params[p].default for p in allowed} | dict(kwargs)
    if effective["mode"] != "reanalysis":
        msg = f"mode must be 'reanalysis' for a batch reanalysis; found {effective['mode']!r}"
        raise ValueError(msg)
    config = as_config(effective["sampling"])  # validated before any task or write
    identity = {k: v for k, v in effective.items() if k not in _RUNTIME}
    identity["sampling"] = dataclasses.asdict(config)
    return dict(kwargs) | {"sampling": config}, json.dumps(identity, sort_keys=True, default=str)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        msg = f"{name} must be an int >= {minimum}; found {value!r}"
        raise ValueError(msg)
    return int(value)


def _groups(members: int, member_groups: int) -> int:
    members = check_positive_int(members, "members")
    member_groups = check_positive_int(member_groups, "member_groups")
    if members % member_groups:
        msg = (
            f"member_groups must divide members ({members}) into equal groups; found"
            f" {member_groups}"
        )
        raise ValueError(msg)
    return member_groups


def _config(
    layout: WindowLayout,
    members: int,
    member_groups: int,
    seed: int,
    identity: str,
    conventions: Mapping[str, str],
) -> StoreConfig:
    seeds = np.array(
        [[task_seed(seed, k, g) for g in range(member_groups)] for k in range(len(layout))],
        dtype=np.int64,
    )
    return StoreConfig(layout, members, member_groups, seed, seeds, identity, conventions)


def _attrs(config: StoreConfig, window: Any, overlap: Any) -> dict[str, Any]:
    return {
        "title": "xappa batch reanalysis ensemble",
        "xappa_mode": "reanalysis",
        "xappa_seed": int(config.seed),
        "xappa_members": int(config.members),
        "xappa_member_groups": int(config.member_groups),
        "xappa_batch_window": str(pd.Timedelta(window)),
        "xappa_batch_overlap": str(pd.Timedelta(overlap)),
        "xappa_sampler_settings": config.settings,
    }


def _prepare_store(out: str, template: xr.Dataset, overwrite: bool) -> None:
    if overwrite:
        check_target(out, role="out", overwrite=True, hint="")
        create_store(out, template)
        return
    existing = open_store(out)
    if existing is None:
        create_store(out, template)
        return
    try:
        check_store(existing, template, out)
    finally:
        existing.close()


def _tasks(
    todo: Sequence[tuple[int, int]],
    config: StoreConfig,
    obs: list[xr.Dataset],
    step: pd.Timedelta,
    out: str,
    settings: Mapping[str, Any],
) -> list[WindowTask]:
    if not todo:
        return []
    layout, size = config.layout, config.group_size
    times = time_coordinates(obs)
    selected: dict[int, list[xr.Dataset]] = {}
    tasks = []
    for k, g in todo:
        t0, t1 = layout.window_times(k)
        if k not in selected:
            selected[k] = select_window(obs, times, t0, t1, step)
        tasks.append(
            WindowTask(
                window=k,
                group=g,
                t0=t0,
                t1=t1,
                owned=slice(int(layout.owned_starts[k]), int(layout.owned_stops[k])),
                offset=int(layout.starts[k]),
                members=slice(g * size, (g + 1) * size),
                seed=int(config.seeds[k, g]),
                obs=selected[k],
                out=out,
                conventions=config.conventions,
                settings=settings,
            )
        )
    return tasks


def _run_local(
    tasks: Sequence[WindowTask], model: Model, advance: Callable[[], None]
) -> list[TaskResult]:
    results = []
    for task in tasks:
        results.append(run_window(task, model))
        advance()
    return results


def _run_distributed(
    client: Any,
    tasks: Sequence[WindowTask],
    model: Model | str,
    retries: int,
    advance: Callable[[], None],
) -> list[TaskResult]:
    distributed = _check_client(client)
    arg = client.scatter(model, broadcast=True, hash=False) if isinstance(model, Model) else model
    token = uuid.uuid4().hex[:8]
    pending = {
        client.submit(
            run_window,
            task,
            arg,
            key=f"xappa-reanalysis-{token}-w{task.window}-g{task.group}",
            retries=retries,
            pure=False,
        )
        for task in tasks
    }
    results = []
    try:
        for future in distributed.as_completed(list(pending)):
            results.append(future.result())
            # Written: release it, so that the loss of the worker that holds its result
            # does not make the scheduler recompute (and rewrite) the window.
            pending.discard(future)
            future.release()
            advance()
    except BaseException:
        client.cancel(list(pending))
        raise
    return results


def reanalysis(
    obs: xr.Dataset | Sequence[xr.Dataset],
    model: Model | str,
    start: Any,
    end: Any,
    window: str | pd.Timedelta,
    overlap: str | pd.Timedelta,
    members: int,
    out: str | os.PathLike,
    client: Any = None,
    *,
    member_groups: int = 1,
    seed: int = 0,
    overwrite: bool = False,
    retries: int = 2,
    progress: bool | None = None,
    **assimilate_kwargs: Any,
) -> xr.Dataset:
    """Reanalyse a long period window by window into a zarr store; resumable.

    Parameters
    ----------
    obs : Dataset or sequence of Dataset
        Observations, gridded or points, as for :func:`xappa.assimilate`; lazily opened
        (dask or backend arrays) is best: only each window's part is ever loaded, by its
        task. On a cluster their files must be readable by every worker.
    model : Model or str
        The model, or a hub name or model path loaded by :func:`xappa.load_model` (once per
        process: on the driver and on each worker).
    start, end : datetime-like
        The first and last model times of the period (both included).
    window : str or Timedelta
        The window length, e.g. ``"2D"`` (``window / time_step`` model times).
    overlap : str or Timedelta
        The overlap of consecutive windows, e.g. ``"12h"``, in ``[0, window)``. Window
        ``k`` starts at ``start + k * (window - overlap)``; the last one is shifted back to
        end exactly at ``end``.
    members : int
        The ensemble size.
    out : str or path-like
        The zarr store (created, or resumed when it exists). On a cluster it must be
        writable by every worker.
    client : distributed.Client, optional
        Run the tasks on this cluster; None runs them in-process, one after the other,
        with the same results.
    member_groups : int
        Tasks per window, each sampling ``members / member_groups`` members (must divide).
    seed : int
        The base seed (>= 0); each task's seed derives from it, its window and group.
    overwrite : bool
        Replace an existing store instead of resuming it (only a store that xappa wrote).
    retries : int
        Retries of a failing task on a cluster (a dead worker's tasks are rescheduled
        anyway).
    progress : bool, optional
        Show a progress bar over the tasks (default: the ``progress`` option).
    **assimilate_kwargs
        Settings of :func:`xappa.assimilate`: ``sampling`` (a
        :class:`~xappa.core.da.SamplingConfig` or a preset name), ``stride``, ``obs_error``,
        ``check_values``, ``device``, ``max_batch``; ``mode`` must be ``"reanalysis"``.

    Returns
    -------
    Dataset
        The store, opened lazily (see the module docstring for its layout). Attributes
        ``xappa_computed_windows`` and ``xappa_skipped_windows`` (lists of window indices,
        not stored) tell which windows this call computed and which were already complete.

    Raises
    ------
    ValueError
        For a bad window, overlap, period, member count or seed, or an existing store that
        holds another reanalysis (the message lists what differs).
    FileExistsError
        If ``overwrite`` and ``out`` holds data that xappa did not write.
    NotADirectoryError
        If ``out`` lies inside a file.
    TypeError
        For unknown keyword arguments or a bad ``model``, ``obs`` or ``client``.
    KeyError
        If observations lack a time coordinate or hold variables the model lacks.
    ImportError
        If ``client`` is given and ``distributed`` is not installed.
    Exception
        A task's own error (e.g. from :func:`xappa.assimilate`), once its retries are spent;
        the other tasks are cancelled and the complete ones stay complete.

    Examples
    --------
    >>> import xappa.batch
    >>> from xappa.observations import sample_points, stations
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=8)
    >>> obs = sample_points(truth, stations([45.0], [10.0]), error_std=0.5, seed=0)
    >>> start, end = truth.time.values[0], truth.time.values[-1]
    >>> ds = xappa.batch.reanalysis(
    ...     obs, model, start, end, "4h", "0h", 2, "ra.zarr",
    ...     sampling=xappa.SamplingConfig(sampler="ddim", steps=2),
    ... )  # doctest: +SKIP
    >>> ds.sizes["time"], ds.sizes["window"], ds.attrs["xappa_computed_windows"]  # doctest: +SKIP
    (8, 2, [0, 1])
    """
    settings, identity = _settings(assimilate_kwargs)
    member_groups = _groups(members, member_groups)
    seed = _check_int(seed, "seed", 0)
    retries = _check_int(retries, "retries", 0)
    if client is not None:
        _check_client(client)
    device = settings.get("device")
    local = resolve_model(model, device)
    datasets = as_datasets(obs)
    check_mapping(settings.get("obs_error"), observed_names(datasets, local.spec))
    layout = plan_windows(start, end, window, overlap, local.time_step)
    conventions = next((c for c in map(grid_conventions, datasets) if c), {})
    config = _config(layout, members, member_groups, seed, identity, conventions)
    template = build_template(local, config, _attrs(config, window, overlap))
    path = os.fspath(out)
    _prepare_store(path, template, overwrite)
    done = read_complete(path)
    todo = [(k, g) for k in range(len(layout)) for g in range(member_groups) if not done[k, g]]
    tasks = _tasks(todo, config, datasets, local.time_step, path, settings)
    with progress_bar(len(tasks), "reanalysis", enabled=progress) as callback:
        count = iter(range(1, len(tasks) + 1))

        def advance() -> None:
            callback(next(count), len(tasks))

        if client is None:
            _run_local(tasks, local, advance)
        else:
            _run_distributed(client, tasks, model, retries, advance)
    if read_complete(path).all():
        mark_complete(path)
    result = xr.open_zarr(path, consolidated=False)
    computed = sorted({k for k, _ in todo})
    result.attrs["xappa_computed_windows"] = computed
    result.attrs["xappa_skipped_windows"] = sorted(set(range(len(layout))) - set(computed))
    return result
