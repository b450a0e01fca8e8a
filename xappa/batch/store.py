"""The zarr store of a batch reanalysis: created up front, checked on resume, written by region.

The layout is described in :mod:`xappa.batch.reanalysis`. The driver creates the store
(metadata, coordinates and the per-window records; no state value) before any task runs.
Every task writes its owned block of times for its member group, then its records; no two
tasks ever write the same chunk.
"""

from __future__ import annotations

__all__ = [
    "COMPLETE_ATTR",
    "KIND",
    "RECORD_VARIABLES",
    "StoreConfig",
    "build_template",
    "check_store",
    "create_store",
    "mark_complete",
    "open_store",
    "read_complete",
    "write_block",
    "write_record",
]

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import dask.array
import numpy as np
import torch
import xarray as xr

from xappa.batch.windows import WindowLayout, time_chunk
from xappa.io.outputs import check_parent, mark
from xappa.models.model import Model
from xappa.models.states import state_dataset

RECORD_VARIABLES = ("window_complete", "window_n_obs")
"""The per-task records, over ``(window, member_group)``."""

KIND = "batch reanalysis"
"""The ``xappa_output`` marker of a batch reanalysis store."""

COMPLETE_ATTR = "xappa_complete"
"""The global attribute that says whether every task of the store is complete (1) or not (0)."""

_WINDOW_COORDS = ("window_start", "window_end", "owned_start", "owned_end")


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """What identifies a batch reanalysis store (all compared on resume).

    Attributes
    ----------
    layout : WindowLayout
        The windows and their owned blocks.
    members, member_groups : int
        The ensemble size and the number of member groups (tasks per window).
    seed : int
        The base seed.
    seeds : ndarray of int
        The seed of each task, with shape ``(n, G)``.
    settings : str
        The sampler settings, as sorted JSON.
    conventions : dict of str to str
        The grid conventions of the output (those of the first gridded observations).
    """

    layout: WindowLayout
    members: int
    member_groups: int
    seed: int
    seeds: np.ndarray
    settings: str
    conventions: Mapping[str, str]

    @property
    def group_size(self) -> int:
        """The members of one group."""
        return self.members // self.member_groups


def _template_frame(model: Model, config: StoreConfig) -> xr.Dataset:
    """One zero frame in the output layout, for coordinates and CF attributes."""
    c, (h, w) = model.spec.n_channels, model.spec.shape
    x = torch.zeros(1, c, h, w)
    return state_dataset(x, model, config.layout.times[:1], dict(config.conventions))


def _state_variables(frame: xr.Dataset, config: StoreConfig) -> dict[str, xr.Variable]:
    n_times, m = len(config.layout.times), config.members
    sizes = [int(np.prod([frame.sizes[d] for d in frame[v].dims if d != "time"])) for v in frame]
    frame_bytes = max(sizes) * config.group_size * 4
    chunk = time_chunk(config.layout, frame_bytes)
    out = {}
    for v in frame.data_vars:
        var = frame[v]
        rest = [frame.sizes[d] for d in var.dims[1:]]
        data = dask.array.full(
            (m, n_times, *rest),
            np.nan,
            dtype=np.float32,
            chunks=(config.group_size, chunk, *rest),
        )
        out[str(v)] = xr.Variable(("member", *var.dims), data, dict(var.attrs))
    return out


def _record_variables(config: StoreConfig) -> dict[str, xr.Variable]:
    n, g = len(config.layout), config.member_groups
    dims = ("window", "member_group")
    return {
        "window_complete": xr.Variable(
            dims,
            np.zeros((n, g), dtype=np.int8),
            {"long_name": "task complete (its owned block and records are written)"},
        ),
        "window_n_obs": xr.Variable(
            dims,
            np.full((n, g), -1, dtype=np.int64),
            {"long_name": "observations assimilated by the task (-1: not yet run)"},
        ),
    }


def _window_coords(config: StoreConfig) -> dict[str, xr.Variable]:
    lay, times = config.layout, config.layout.times.values
    values = {
        "window_start": times[lay.starts],
        "window_end": times[lay.stops - 1],
        "owned_start": times[lay.owned_starts],
        "owned_end": times[lay.owned_stops - 1],
    }
    names = {
        "window_start": "first time of the window",
        "window_end": "last time of the window",
        "owned_start": "first time written by the window",
        "owned_end": "last time written by the window",
    }
    out = {k: xr.Variable("window", v, {"long_name": names[k]}) for k, v in values.items()}
    out["window"] = xr.Variable("window", np.arange(len(lay)), {"long_name": "window index"})
    out["member_group"] = xr.Variable(
        "member_group", np.arange(config.member_groups), {"long_name": "member group index"}
    )
    out["task_seed"] = xr.Variable(
        ("window", "member_group"),
        np.asarray(config.seeds, dtype=np.int64),
        {"long_name": "seed of xappa.assimilate for the task"},
    )
    return out


def build_template(model: Model, config: StoreConfig, attrs: Mapping[str, Any]) -> xr.Dataset:
    """Return the store's template: NaN states (dask, unwritten) and initial records.

    Parameters
    ----------
    model : Model
        The model (its spec, grid and provenance).
    config : StoreConfig
        The reanalysis.
    attrs : mapping
        Extra global attributes.

    Returns
    -------
    Dataset
        The template, lazily all NaN for the states.
    """
    frame = _template_frame(model, config)
    data = {**_state_variables(frame, config), **_record_variables(config)}
    coords = {k: v for k, v in frame.coords.items() if k != "time"}
    coords["time"] = xr.Variable("time", config.layout.times.values, frame["time"].attrs)
    coords["member"] = xr.Variable(
        "member", np.arange(config.members), {"long_name": "ensemble member"}
    )
    coords.update(_window_coords(config))
    return xr.Dataset(data, coords=coords, attrs={**frame.attrs, **attrs})


def create_store(out: Any, template: xr.Dataset) -> None:
    """Write the template's metadata, coordinates and records (no state value) to ``out``.

    The store is marked as an xappa output (:mod:`xappa.io.outputs`) and as incomplete
    (``xappa_complete = 0``) until :func:`mark_complete`.

    Parameters
    ----------
    out : str or path-like
        The zarr store; replaced if it exists (the caller checks that xappa wrote it).
    template : Dataset
        From :func:`build_template`.
    """
    encoding = {v: {"chunks": (1, 1)} for v in RECORD_VARIABLES}
    template = template.assign_attrs(mark({**template.attrs, COMPLETE_ATTR: 0}, KIND))
    template.to_zarr(out, mode="w", compute=False, consolidated=False, encoding=encoding)


def mark_complete(out: Any) -> None:
    """Set the store's ``xappa_complete`` attribute to 1 (every task is complete).

    Parameters
    ----------
    out : str or path-like
        The store, whose ``window_complete`` records are all 1.
    """
    import zarr

    zarr.open_group(str(out), mode="r+").attrs[COMPLETE_ATTR] = 1


def open_store(out: Any) -> xr.Dataset | None:
    """Open an existing store lazily, or return None when ``out`` holds nothing.

    Raises
    ------
    ValueError
        If ``out`` exists but is not a zarr store.
    NotADirectoryError
        If ``out`` lies inside a file.
    """
    path = os.fspath(out)
    check_parent(path, role="out")
    if os.path.isfile(path):
        msg = f"out must be a zarr store or a new path; found a file {path!r}"
        raise ValueError(msg)
    try:
        return xr.open_zarr(path, consolidated=False)
    except FileNotFoundError as err:
        if os.path.isdir(path) and os.listdir(path):
            msg = f"out must be a zarr store or a new path; found a non-empty directory {path!r}"
            raise ValueError(msg) from err
        return None


def _grid_dims(ds: xr.Dataset) -> list[str]:
    own = ("time", "member", "window", "member_group")
    return [str(d) for d in ds.dims if d not in own and d in ds.coords]


def _differences(store: xr.Dataset, template: xr.Dataset) -> list[str]:
    found: list[str] = []
    names = sorted(map(str, template.data_vars))
    have = sorted(map(str, store.data_vars))
    if have != names:
        return [f"variables: expected {names}, found {have}"]
    for dim in ("time", "member", "member_group", "window"):
        if store.sizes.get(dim) != template.sizes[dim]:
            found.append(
                f"{dim} size: expected {template.sizes[dim]}, found {store.sizes.get(dim)}"
            )
    if found:
        return found
    for name in ("time", *_WINDOW_COORDS, "task_seed"):
        a, b = template[name].values, store[name].values
        if not np.array_equal(a, b):
            first = int(np.flatnonzero(np.asarray(a != b).ravel())[0])
            found.append(
                f"{name}: expected {a.ravel()[first]}, found {b.ravel()[first]} (entry {first})"
            )
    for name in template.coords:
        if name not in store.coords:
            found.append(f"coordinate {name!r}: expected it, found none")
        elif name in _grid_dims(template) and not np.array_equal(
            template[name].values, store[name].values
        ):
            a, b = template[name].values, store[name].values
            found.append(f"{name}: expected {a}, found {b}")
    for key in ("xappa_seed", "xappa_weight_hash", "xappa_sampler_settings"):
        a, b = template.attrs.get(key), store.attrs.get(key)
        if a != b:
            found.append(f"attribute {key}: expected {a!r}, found {b!r}")
    return found


def check_store(store: xr.Dataset, template: xr.Dataset, out: Any) -> None:
    """Check that an existing store holds the reanalysis that ``template`` describes.

    Raises
    ------
    ValueError
        Listing what differs (times, members, variables, windows, seeds, model, settings).
    """
    found = _differences(store, template)
    if found:
        msg = (
            f"out {str(out)!r} holds another reanalysis than the one asked for: "
            + "; ".join(found)
            + ". Pass overwrite=True to replace it, or choose another out"
        )
        raise ValueError(msg)


def read_complete(out: Any) -> np.ndarray:
    """Return which tasks are complete, a bool array with shape ``(n, G)``."""
    with xr.open_zarr(out, consolidated=False) as ds:
        return np.asarray(ds["window_complete"].values) == 1


def _plain(ds: xr.Dataset) -> xr.Dataset:
    """Return the data variables alone: no coordinate, attribute or encoding to write."""
    return xr.Dataset({v: (ds[v].dims, np.asarray(ds[v].values)) for v in ds.data_vars})


def write_block(out: Any, ds: xr.Dataset, members: slice, times: slice) -> None:
    """Write states over ``(member, time, ...)`` into their region of the store.

    Parameters
    ----------
    out : str or path-like
        The store.
    ds : Dataset
        The spec's variables over ``(member, time, [level,] latitude, longitude)``, in the
        store's grid order.
    members, times : slice
        The region, in store indices.
    """
    block = _plain(ds).astype(np.float32)
    block.to_zarr(out, region={"member": members, "time": times}, consolidated=False)


def write_record(out: Any, window: int, group: int, n_obs: int) -> None:
    """Write a task's observation count, then mark it complete.

    Parameters
    ----------
    out : str or path-like
        The store.
    window, group : int
        The task.
    n_obs : int
        The observations it assimilated.
    """
    region = {"window": slice(window, window + 1), "member_group": slice(group, group + 1)}
    dims = ("window", "member_group")
    count = xr.Dataset({"window_n_obs": (dims, np.full((1, 1), n_obs, dtype=np.int64))})
    count.to_zarr(out, region=region, consolidated=False)
    done = xr.Dataset({"window_complete": (dims, np.ones((1, 1), dtype=np.int8))})
    done.to_zarr(out, region=region, consolidated=False)
