"""Input and output helpers shared by the sub-commands."""

from __future__ import annotations

__all__ = ["check_output", "open_input", "write_output"]

import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

from xappa.io.integrity import open_zarr_store
from xappa.io.outputs import MARKER, check_parent, check_target, mark


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
    ValueError
        If it is neither a zarr store nor a netCDF file, or zarr refuses it (an unsafe
        codec: see :func:`xappa.io.integrity.open_zarr_store`).
    """
    p = Path(path)
    if not p.exists():
        msg = f"{role} {path!r} does not exist; expected a zarr store or a netCDF file"
        raise FileNotFoundError(msg)
    try:
        if p.is_dir() or p.suffix == ".zarr":
            ds = open_zarr_store(p, role=role, consolidated=False)
        else:
            ds = xr.open_dataset(p, chunks={})
    except OSError as err:  # ValueErrors of zarr stores name the store already
        msg = f"{role} {path!r} must be a zarr store or a netCDF file; found {err}"
        raise ValueError(msg) from err
    except ValueError as err:
        if p.is_dir() or p.suffix == ".zarr":
            raise
        msg = f"{role} {path!r} must be a zarr store or a netCDF file; found {err}"
        raise ValueError(msg) from err
    return ds[sorted(ds.data_vars)]


def _netcdf(path: Path) -> bool:
    return path.suffix in (".nc", ".nc4", ".netcdf")


def check_output(path: str, *, role: str, overwrite: bool) -> str:
    """Check, before any work, that a command may write its Dataset to ``path``.

    A zarr store (any path not ending in ``.nc``, ``.nc4`` or ``.netcdf``) may be new, an
    empty directory, or a store xappa wrote, replaced with ``overwrite``
    (:func:`xappa.io.outputs.check_target`); a netCDF file may be new, or an earlier xappa output
    (its ``xappa_output`` attribute), replaced with ``overwrite``. Nothing is written here.

    Parameters
    ----------
    path : str
        The output path.
    role : str
        The option, for messages (``"--out"``).
    overwrite : bool
        Whether an earlier xappa output may be replaced.

    Returns
    -------
    str
        ``"new"``, ``"empty"`` or ``"replace"``.

    Raises
    ------
    FileExistsError
        For data xappa did not write, a folder of xappa outputs that is not a store, or an
        earlier output without ``overwrite``.
    NotADirectoryError
        If ``path`` lies inside a file.
    ImportError
        For a netCDF path without the netCDF4 package.
    """
    p = Path(path)
    if not _netcdf(p):
        state = check_target(p, role=role, overwrite=True, hint="")
        if state == "store" and not overwrite:  # raises, saying how to replace it
            check_target(p, role=role, overwrite=False, hint="pass --overwrite")
        if state == "directory":  # an xappa report or demo folder: not a store to replace
            msg = (
                f"{role} {path!r} is a folder of xappa outputs, not a zarr store; choose a new"
                " path (a zarr store, or a .nc file)"
            )
            raise FileExistsError(msg)
        return "replace" if state == "store" else state
    try:
        import netCDF4  # noqa: F401
    except ImportError as err:
        msg = f"{role} {path!r} is a netCDF file, which needs netCDF4: pip install 'xappa[io]'"
        raise ImportError(msg) from err
    check_parent(p, role=role)
    if not p.exists() and not p.is_symlink():
        return "new"
    if not p.is_file():
        msg = f"{role} {path!r} exists and is not a file; expected a new path or an xappa .nc file"
        raise FileExistsError(msg)
    try:
        with xr.open_dataset(p) as ds:
            kind = ds.attrs.get(MARKER)
    except (OSError, ValueError):
        kind = None
    if kind is None:
        msg = f"{role} {path!r} is a file that xappa did not write; refusing to replace it"
        raise FileExistsError(msg)
    if not overwrite:
        msg = f"{role} {path!r} already holds an xappa {kind}; pass --overwrite to replace it"
        raise FileExistsError(msg)
    return "replace"


def write_output(ds: xr.Dataset, path: str, *, kind: str, state: str) -> Path:
    """Write ``ds`` (marked as an xappa ``kind``) to ``path``, whole or not at all.

    The Dataset is written next to ``path`` under a temporary name and moved into place
    only when complete, so an interrupted write never leaves a partial output that looks
    complete; an earlier output is replaced only then.

    Parameters
    ----------
    ds : Dataset
        What to write.
    path : str
        The zarr store or netCDF file, checked with :func:`check_output`.
    kind : str
        What it holds, recorded in its ``xappa_output`` attribute.
    state : str
        What :func:`check_output` returned.

    Returns
    -------
    Path
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out = ds.copy()
    for var in out.variables.values():
        var.encoding = {}  # the inputs' chunking and compression do not apply here
    out.attrs = mark(out.attrs, kind)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        if _netcdf(p):
            out.to_netcdf(tmp)
        else:
            out.to_zarr(tmp, mode="w-", consolidated=False)
        if state == "replace" and p.is_dir():
            shutil.rmtree(p)
        elif state == "empty":
            p.rmdir()
        os.replace(tmp, p)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
    return p
