"""One task of a batch reanalysis: assimilate one window for one member group, write it.

The same function runs in-process (``client=None``) and on dask workers. A task gets only
its window's observations, loads its model at most once per process (a name or path is
loaded through an LRU cache; a :class:`~xappa.models.model.Model` arrives deserialized once per
worker by ``client.scatter``), calls :func:`xappa.assimilate` with its own seed, writes its
owned block, then its records.
"""

from __future__ import annotations

__all__ = ["WindowTask", "resolve_model", "run_window", "task_seed"]

import dataclasses
import functools
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xappa.batch.obs import load_window_obs, prior_placeholder
from xappa.batch.store import write_block, write_record
from xappa.models.model import Model
from xappa.state.coords import grid_conventions, restore_conventions


def task_seed(seed: int, window: int, group: int) -> int:
    """Return the seed of a task, from the base seed, the window and the member group.

    Parameters
    ----------
    seed : int
        The base seed (non-negative).
    window, group : int
        The task.

    Returns
    -------
    int
        A 32-bit seed, the same whatever the scheduling.

    Examples
    --------
    >>> task_seed(0, 3, 0) == task_seed(0, 3, 0) != task_seed(0, 4, 0)
    True
    """
    return int(np.random.SeedSequence([seed, window, group]).generate_state(1)[0])


class WindowTask:
    """What one task needs: its window, members, seed, observations and store region.

    A plain class (not a tuple, dict or dataclass), so that dask passes it to the task as it
    is, without looking inside it for collections or futures.

    Parameters
    ----------
    window, group : int
        The window and member group indices.
    t0, t1 : Timestamp
        The window's first and last model times.
    owned : slice
        The owned block, in store time indices.
    offset : int
        The store time index of ``t0``.
    members : slice
        The group's members, in store indices.
    seed : int
        The task seed.
    obs : list of Dataset
        The window's observations (lazy or in memory).
    out : str
        The store.
    conventions : dict of str to str
        The store's grid conventions.
    settings : dict
        Keyword arguments of :func:`xappa.assimilate`.
    """

    def __init__(
        self,
        *,
        window: int,
        group: int,
        t0: pd.Timestamp,
        t1: pd.Timestamp,
        owned: slice,
        offset: int,
        members: slice,
        seed: int,
        obs: list[xr.Dataset],
        out: str,
        conventions: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> None:
        self.window, self.group = window, group
        self.t0, self.t1 = t0, t1
        self.owned, self.offset, self.members = owned, offset, members
        self.seed, self.obs, self.out = seed, obs, out
        self.conventions, self.settings = dict(conventions), dict(settings)

    @property
    def key(self) -> tuple[int, int]:
        """``(window, group)``."""
        return self.window, self.group

    def __repr__(self) -> str:
        return f"WindowTask(window={self.window}, group={self.group}, {self.t0} to {self.t1})"


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """What a task reports: its key, observation count and duration in seconds."""

    window: int
    group: int
    n_obs: int
    seconds: float


@functools.lru_cache(maxsize=2)
def _load(name: str, device: str | None) -> Model:
    from xappa.models.hub import load_model

    return load_model(name, device=device)


def resolve_model(model: Model | str, device: Any = None) -> Model:
    """Return the model: as given, or loaded once per process from a name or path.

    Raises
    ------
    TypeError
        If ``model`` is neither a Model nor a str.
    """
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return _load(model, None if device is None else str(device))
    msg = (
        f"model must be an xappa.Model or a model name or path (str); found {type(model).__name__}"
    )
    raise TypeError(msg)


def _to_store_grid(ds: xr.Dataset, obs: list[xr.Dataset], store: Mapping[str, str]) -> xr.Dataset:
    """Put ``ds`` in the store's grid conventions (this window may lack the gridded obs)."""
    used = next((c for c in map(grid_conventions, obs) if c), {})
    if used == dict(store):
        return ds
    names = {used.get("latitude_name", "latitude"): "latitude"}
    names[used.get("longitude_name", "longitude")] = "longitude"
    ds = ds.rename({k: v for k, v in names.items() if k != v})
    return restore_conventions(ds, dict(store)) if store else ds


def _assimilate(task: WindowTask, model: Model) -> tuple[xr.Dataset, int, list[xr.Dataset]]:
    from xappa.assimilation import assimilate

    obs = load_window_obs(task.obs)
    settings = dict(task.settings)
    placeholder = not obs
    if obs:
        names = {str(v) for d in obs for v in d.data_vars}
        if isinstance(settings.get("obs_error"), Mapping):
            settings["obs_error"] = {
                k: v for k, v in settings["obs_error"].items() if k in names
            } or None
    else:
        obs = [prior_placeholder(model.spec, model.mean.cpu(), task.t0)]
        settings.update(sampling=settings["sampling"].replace(guidance=None), obs_error=1.0)
    n = task.members.stop - task.members.start
    ds = assimilate(
        obs,
        model=model,
        window=(task.t0, task.t1),
        members=n,
        seed=task.seed,
        progress=False,
        **settings,
    )
    n_obs = sum(int(ds[v].attrs.get("xappa_n_obs", 0)) for v in ds.data_vars)
    return ds, 0 if placeholder else n_obs, obs


def run_window(task: WindowTask, model: Model | str) -> TaskResult:
    """Run one task: assimilate its window, write its owned block, then its records.

    Parameters
    ----------
    task : WindowTask
        The task.
    model : Model or str
        The model, or its name or path (loaded once per process).

    Returns
    -------
    TaskResult
        The task's key, observation count and duration.
    """
    tic = time.perf_counter()
    model = resolve_model(model, task.settings.get("device"))
    ds, n_obs, obs = _assimilate(task, model)
    ds = _to_store_grid(ds, obs, task.conventions)
    own = slice(task.owned.start - task.offset, task.owned.stop - task.offset)
    write_block(task.out, ds.isel(time=own), task.members, task.owned)
    write_record(task.out, task.window, task.group, n_obs)
    return TaskResult(task.window, task.group, n_obs, time.perf_counter() - tic)
