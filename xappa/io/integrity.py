"""Checks on the files xappa reads: safe relative names, SHA-256 hashes and safe YAML.

Model cards name files that the hub writes into its cache, model YAML files record the hashes
of their weights, and configs come from other people's directories. The checks live here, in
one place:

* :func:`check_name` refuses a file name that could leave its directory (absolute, ``..``,
  backslashes, NUL), and :func:`inside` also resolves it (symbolic links included) and
  refuses a path outside the directory;
* :func:`check_sha256` compares a file with its expected SHA-256 digest;
* :func:`read_yaml` and :func:`parse_yaml` read YAML with :func:`yaml.safe_load` only (no tag
  builds a Python object) and report the file and the parse error;
* :func:`load_torch_file` reads a ``.pth`` file with ``torch.load(weights_only=True)`` (never
  unpickling an object) and reports a refused or damaged file by name;
* :func:`open_zarr_store` opens a zarr store and reports one that zarr refuses (e.g. a pickle
  codec, which the zarr and numcodecs floors of xappa never decode) by name.

Every check raises a built-in exception whose message names the file.
"""

from __future__ import annotations

__all__ = [
    "check_name",
    "check_sha256",
    "file_sha256",
    "inside",
    "load_torch_file",
    "open_zarr_store",
    "parse_yaml",
    "read_yaml",
]

import os
import pickle
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pooch
import yaml


def check_name(name: str, *, role: str = "file name") -> str:
    r"""Check that a file name stays inside the directory it is joined to.

    Parameters
    ----------
    name : str
        A relative file name, ``/``-separated (e.g. ``"swe-default/swe-default.yaml"``).
    role : str
        What the name is, for messages (e.g. ``"card 'x' file"``).

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is empty, absolute (``/x``, ``C:\x``, ``\\server\x``), holds a ``..``
        part, a backslash or a NUL character.
    """
    if not isinstance(name, str):
        msg = f"{role} must be a string; found {type(name).__name__}"
        raise TypeError(msg)
    if not name.strip():
        msg = f"{role} must be a non-empty relative path; found {name!r}"
        raise ValueError(msg)
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive:
        msg = f"{role} must be a relative path inside its directory; found absolute {name!r}"
        raise ValueError(msg)
    if "\\" in name or "\x00" in name:
        msg = f"{role} must be a '/'-separated relative path; found {name!r}"
        raise ValueError(msg)
    if ".." in PurePosixPath(name).parts:
        msg = f"{role} must stay inside its directory; found '..' in {name!r}"
        raise ValueError(msg)
    return name


def inside(directory: str | os.PathLike, name: str, *, role: str = "file name") -> Path:
    """Join a checked file name to a directory, refusing a result outside the directory.

    Parameters
    ----------
    directory : str or path-like
        The directory (it need not exist yet).
    name : str
        A relative file name, checked by :func:`check_name`.
    role : str
        What the name is, for messages.

    Returns
    -------
    Path
        ``directory / name``.

    Raises
    ------
    ValueError
        If ``name`` fails :func:`check_name`, or ``directory / name`` resolves (following
        symbolic links) outside ``directory``.
    """
    check_name(name, role=role)
    base = Path(directory)
    resolved, root = (base / name).resolve(), base.resolve()
    if not resolved.is_relative_to(root):
        msg = (
            f"{role} {name!r} must resolve inside {str(root)!r}; found {str(resolved)!r} "
            "(through a symbolic link)"
        )
        raise ValueError(msg)
    return base / name


def file_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file, read in chunks.

    Parameters
    ----------
    path : str or path-like
        The file to hash.

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    return pooch.file_hash(os.fspath(path), alg="sha256")


def check_sha256(
    path: str | os.PathLike, expected: str, *, role: str = "file", advice: str = ""
) -> None:
    """Check that a file has the expected SHA-256 digest.

    Parameters
    ----------
    path : str or path-like
        The file.
    expected : str
        The expected hex digest (an optional ``"sha256:"`` prefix is ignored).
    role : str
        What the file is, for messages (e.g. ``"model weights"``).
    advice : str
        Appended to the message (e.g. ``"; delete it and fetch again"``).

    Raises
    ------
    ValueError
        If the digests differ; the message names the file and both digests.
    """
    want = str(expected).removeprefix("sha256:").lower()
    found = file_sha256(path)
    if found != want:
        msg = f"{role} {os.fspath(path)!r} must have sha256 {want}; found {found}{advice}"
        raise ValueError(msg)


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text with :func:`yaml.safe_load`, naming the source on error.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        Where it comes from (a file name), for messages.

    Returns
    -------
    object
        The parsed document (plain dicts, lists, strings, numbers, booleans and None).

    Raises
    ------
    ValueError
        If the text is not valid YAML, or uses a tag that safe loading refuses (e.g.
        ``!!python/object``); the message names the source, the problem and its line.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        mark = getattr(err, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        msg = f"{source} is not valid YAML for yaml.safe_load: {problem}{where}"
        raise ValueError(msg) from err


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with :func:`yaml.safe_load`.

    Parameters
    ----------
    path : str or path-like
        The YAML file to read.

    Returns
    -------
    object
        The parsed document.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        As :func:`parse_yaml`.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"YAML file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    return parse_yaml(path.read_text(), source=repr(str(path)))


def load_torch_file(path: str | os.PathLike, *, role: str = "torch file") -> Any:
    """Read a ``.pth`` file with ``torch.load(weights_only=True)``, onto the CPU.

    Parameters
    ----------
    path : str or path-like
        The file.
    role : str
        What the file is, for messages (e.g. ``"denoiser checkpoint"``).

    Returns
    -------
    object
        Tensors in plain containers (dicts, lists, tuples, numbers, strings).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file holds a pickled object that ``weights_only`` refuses (it is never
        unpickled, so no code runs; the message names the refused global), or is truncated
        or damaged.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        msg = f"{role} {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"the global {found[1]!r}" if found else "a pickled object"
        msg = (
            f"{role} {str(path)!r} must hold only tensors and plain containers (read with "
            f"torch.load(weights_only=True), never unpickled); found {what}"
        )
        raise ValueError(msg) from err
    except (RuntimeError, EOFError) as err:
        msg = f"{role} {str(path)!r} must be a complete torch file; found a damaged one ({err})"
        raise ValueError(msg) from err


def open_zarr_store(path: str | os.PathLike, *, role: str = "zarr store", **kwargs: Any) -> Any:
    """Open a zarr store lazily with :func:`xarray.open_zarr`, naming it if zarr refuses it.

    zarr (3.1 and later) refuses pickle codecs in array metadata, and numcodecs (0.16.6 and
    later) refuses to unpickle chunks, so a crafted store never runs code; this reports the
    refusal with the store's path.

    Parameters
    ----------
    path : str or path-like
        The store.
    role : str
        What the store is, for messages (e.g. ``"latent store"``).
    **kwargs
        Passed to :func:`xarray.open_zarr` (e.g. ``consolidated=False``).

    Returns
    -------
    xarray.Dataset
        The store, lazily.

    Raises
    ------
    ValueError
        If zarr or numcodecs refuses the store (an unknown or unsafe codec or data type),
        or ``path`` holds no zarr store.
    """
    import xarray as xr

    try:
        return xr.open_zarr(path, **kwargs)
    except FileNotFoundError as err:  # zarr's GroupNotFoundError: no zarr metadata there
        msg = f"{role} {os.fspath(path)!r} must be a zarr store; found no zarr metadata ({err})"
        raise ValueError(msg) from err
    except (ValueError, RuntimeError) as err:
        msg = (
            f"{role} {os.fspath(path)!r} must be a zarr store that reads without running "
            f"code; found {type(err).__name__}: {err}"
        )
        raise ValueError(msg) from err
