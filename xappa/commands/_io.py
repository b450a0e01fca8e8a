"""Input helpers shared by the sub-commands."""

from __future__ import annotations

__all__ = ["open_input"]

from pathlib import Path

import xarray as xr


def open_input(path: str, role: str) -> xr.Dataset:
    """Open a zarr store (a directory or ``*.zarr``) or a netCDF file, lazily.

    Parameters
    ----------
    path : str
        The store or file.
    role : str
        What it is, for the error message (e.g. ``"--obs"``).

    Returns
    -------
    Dataset
        The dataset, dask-backed, its data variables in alphabetical order (a zarr store
        lists its arrays in no fixed order, and reports should not change between runs).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    p = Path(path)
    if not p.exists():
        msg = f"{role} {path!r} does not exist; expected a zarr store or a netCDF file"
        raise FileNotFoundError(msg)
    if p.is_dir() or p.suffix == ".zarr":
        ds = xr.open_zarr(p, consolidated=False)
    else:
        ds = xr.open_dataset(p, chunks={})
    return ds[sorted(ds.data_vars)]
