"""Open WeatherBench 2's ERA5 zarr stores lazily, in a model's variables, levels and times.

:func:`open_era5` opens a store with any fsspec URL (by default Appa's hourly 0.25 degree,
37-level WeatherBench 2 store on Google Cloud Storage, read anonymously) and selects the
variables, levels and times of a model's :class:`~xappa.state.spec.StateSpec`. Nothing but the
metadata and the coordinates is read when it returns: the data stay dask arrays, and only
the chunks of the selected times are read when they are computed (by :func:`xappa.encode`,
which loads one batch of times at a time, or by :func:`xappa.verify.evaluate.evaluate`).

Reading ``gs://`` needs ``gcsfs`` and ``http(s)://`` needs ``aiohttp``:
``pip install 'xappa[era5]'``.

References
----------
* Rasp et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
  global weather models. https://arxiv.org/abs/2308.15560
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["APPA_ERA5_STORE", "WB2_ERA5", "open_era5"]

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import xarray as xr

from xappa.models.hub import resolve_model
from xappa.models.model import Model
from xappa.state.convert import select_state
from xappa.state.coords import find_coord
from xappa.state.spec import StateSpec

WB2_ERA5 = "gs://weatherbench2/datasets/era5"
"""The bucket folder of WeatherBench 2's ERA5 stores."""

APPA_ERA5_STORE = "1959-2022-full_37-1h-0p25deg-chunk-1.zarr-v2"
"""The store Appa was trained on: hourly, 37 levels, 721 x 1440 with poles, 1 h chunks."""


def _spec(model: Any) -> StateSpec:
    if isinstance(model, StateSpec):
        return model
    if model is None or isinstance(model, Model | str | os.PathLike):
        return resolve_model(model).spec
    msg = (
        "model must be an xappa.Model, a model name or path, or a StateSpec; found"
        f" {type(model).__name__}"
    )
    raise TypeError(msg)


def _check_protocol(url: str) -> None:
    """Raise ImportError now, before any work, when the URL's filesystem is not installed."""
    import fsspec

    protocol = fsspec.utils.get_protocol(url)
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        msg = f"reading {protocol}:// URLs requires more packages; pip install 'xappa[era5]'"
        raise ImportError(msg) from err


def _times(ds: xr.Dataset, times: Any) -> Any:
    """Turn a ``slice`` of datetimes into the store's times inside it (inclusive)."""
    if not isinstance(times, slice):
        return times
    if times.step is not None:
        msg = f"times must be a slice without a step; found step {times.step!r}"
        raise ValueError(msg)
    index = pd.DatetimeIndex(ds.indexes[find_coord(ds, "time")])
    selected = index[index.slice_indexer(times.start, times.stop)]
    if len(selected) == 0:
        msg = (
            f"times {times.start} to {times.stop} select no time of the store; found"
            f" {index[0]} to {index[-1]}"
        )
        raise KeyError(msg)
    return selected.values


def open_era5(
    model: Model | str | os.PathLike | StateSpec | None = None,
    *,
    times: Any = None,
    url: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open ERA5 lazily in a model's variables, levels, grid and units.

    Parameters
    ----------
    model : Model, str, path-like, StateSpec or None
        The model whose state (``model.spec``) is selected: a model, a model name
        (``"appa-workshop"``) or path, None for the ``model`` option of
        :func:`xappa.set_options`, or the spec itself.
    times : slice or array-like of datetime, optional
        The times: a ``slice("2021-03-21", "2021-03-22T23")`` (inclusive, as
        ``Dataset.sel``), or the times themselves; all of the store's when None.
    url : str, optional
        Any fsspec URL of a zarr store laid out as WeatherBench 2's ERA5 (variables over
        ``(time, [level,] latitude, longitude)``): ``gs://...``, ``https://...``,
        ``http://127.0.0.1:8000/era5.zarr`` or a local path. Default:
        ``f"{WB2_ERA5}/{APPA_ERA5_STORE}"``.
    storage_options : Mapping, optional
        Passed to fsspec; by default ``{"token": "anon"}`` for ``gs://`` (anonymous reads)
        and nothing otherwise.
    chunks : Mapping of str to int, optional
        Dask chunks (default: the store's own, one hour per chunk in Appa's store).

    Returns
    -------
    Dataset
        The spec's variables over ``(time, [level,] latitude, longitude)``, dask-backed, in
        the spec's grid order and units, with CF coordinates; ``attrs["source"]`` holds the
        URL. Ready for :func:`xappa.encode` and :func:`xappa.verify.evaluate.evaluate`.

    Raises
    ------
    ImportError
        If the URL's filesystem (``gcsfs``, ``aiohttp``) is not installed.
    KeyError
        If a variable, level or time of the request is not in the store.
    ValueError
        If the store's grid, dimensions or units do not fit the spec.
    TypeError
        If ``model`` is none of these (or None without a ``model`` option).

    Examples
    --------
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/era5.zarr"
    >>> era5 = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=6)
    >>> _ = era5.to_zarr(path, consolidated=True, zarr_format=2)
    >>> ds = open_era5(model, url=path, times=slice(None, "2021-01-01T02"))
    >>> ds.sizes["time"], type(ds["2m_temperature"].data).__module__.split(".")[0]
    (3, 'dask')
    """
    spec = _spec(model)
    url = f"{WB2_ERA5}/{APPA_ERA5_STORE}" if url is None else str(url)
    _check_protocol(url)
    options = dict(storage_options) if storage_options is not None else None
    if options is None and url.startswith("gs://"):
        options = {"token": "anon"}
    ds = xr.open_zarr(url, storage_options=options, chunks=chunks if chunks else {})
    missing = [v for v in spec.variables if v not in ds.data_vars]
    if missing:
        found = sorted(map(str, ds.data_vars))
        msg = f"the store at {url!r} has no variable(s) {missing}; found {found}"
        raise KeyError(msg)
    subset = ds[list(spec.variables)]
    state, _ = select_state(subset, spec, times=_times(subset, times), check_step=False)
    state.attrs["source"] = f"ERA5 (ECMWF) from {url}"
    return state
