"""Where xappa writes: a new path, an empty directory, or an earlier output of xappa itself.

xappa marks everything it creates. A zarr store carries the global attribute
``xappa_output`` (what it holds, e.g. ``"batch reanalysis"``); a directory of files (an
evaluation report, the demo's output) holds a manifest, ``.xappa-output.json``, that lists
the entries xappa wrote there. :func:`check_target` lets xappa replace only what is so marked,
and only when asked to; it refuses a file, a path inside a file and anything unmarked, so
that no command deletes data that xappa did not write. Paths are local.
"""

from __future__ import annotations

__all__ = [
    "MANIFEST",
    "MARKER",
    "check_parent",
    "check_target",
    "clear_directory",
    "mark",
    "write_manifest",
]

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MARKER = "xappa_output"
"""The global attribute that every zarr store written by xappa carries: what it holds."""

MANIFEST = ".xappa-output.json"
"""The file that lists what xappa wrote into a directory of files."""


def mark(attrs: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Return ``attrs`` with the marker of an xappa output of ``kind`` added.

    Parameters
    ----------
    attrs : mapping
        Global attributes of the store to write.
    kind : str
        What the store holds, e.g. ``"batch reanalysis"``.

    Returns
    -------
    dict
        A new mapping, with ``xappa_output = kind``.
    """
    return {**attrs, MARKER: kind}


def _is_store(path: Path) -> bool:
    return any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray"))


def _store_kind(path: Path) -> str | None:
    import zarr

    try:
        kind = zarr.open_group(str(path), mode="r").attrs.get(MARKER)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kind if isinstance(kind, str) else None


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and isinstance(manifest.get("files"), list)
    return manifest if ok else None


def check_parent(path: str | os.PathLike, *, role: str) -> None:
    """Check that ``path`` does not lie inside a file (its nearest existing parent is a dir).

    Parameters
    ----------
    path : str or path-like
        The path to write.
    role : str
        What it is, for messages.

    Raises
    ------
    NotADirectoryError
        If a parent of ``path`` is a file.
    """
    parent = next((a for a in Path(path).parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        msg = (
            f"{role} {str(path)!r} lies inside {str(parent)!r}, which is a file; expected a"
            " path in a directory"
        )
        raise NotADirectoryError(msg)


def check_target(path: str | os.PathLike, *, role: str, overwrite: bool, hint: str) -> str:
    """Check that xappa may write ``path``: new, empty, or an earlier xappa output to replace.

    Nothing is written or removed here.

    Parameters
    ----------
    path : str or path-like
        The store or directory to write.
    role : str
        What it is, for messages (e.g. ``"--out"``).
    overwrite : bool
        Whether an earlier xappa output at ``path`` may be replaced.
    hint : str
        How to allow replacing, for messages (e.g. ``"pass --overwrite"``).

    Returns
    -------
    str
        ``"new"`` (nothing there), ``"empty"`` (an empty directory), ``"store"`` (an xappa
        zarr store, to be replaced) or ``"directory"`` (a directory with an xappa manifest,
        whose listed entries are to be replaced).

    Raises
    ------
    NotADirectoryError
        If ``path`` lies inside a file.
    FileExistsError
        If ``path`` is a file, holds data that xappa did not write, or holds an earlier xappa
        output and ``overwrite`` is false.
    """
    p = Path(path)
    text = str(path)
    check_parent(p, role=role)
    if not p.exists() and not p.is_symlink():
        return "new"
    if not p.is_dir():
        msg = (
            f"{role} {text!r} is an existing file; expected a new path, an empty directory or"
            " an earlier output of xappa"
        )
        raise FileExistsError(msg)
    if not any(p.iterdir()):
        return "empty"
    store = _is_store(p)
    if store:
        kind = _store_kind(p)
    else:
        manifest = _manifest(p)
        kind = None if manifest is None else str(manifest.get("kind", "output"))
    if kind is None:
        msg = (
            f"{role} {text!r} holds data that xappa did not write (no {MARKER!r} attribute and"
            f" no {MANIFEST} file); refusing to replace it: remove it yourself or choose"
            " another path"
        )
        raise FileExistsError(msg)
    if not overwrite:
        msg = f"{role} {text!r} already holds an xappa {kind}; {hint} to replace it"
        raise FileExistsError(msg)
    return "store" if store else "directory"


def clear_directory(path: str | os.PathLike) -> None:
    """Remove the entries that the manifest of ``path`` lists, then the manifest.

    Other entries (which xappa did not write) are left alone. Call it only after
    :func:`check_target` returned ``"directory"``.

    Parameters
    ----------
    path : str or path-like
        A directory with an xappa manifest.
    """
    p = Path(path)
    for name in (_manifest(p) or {"files": []})["files"]:
        entry = p / str(name)
        if entry.parent != p:  # a manifest names entries of p only
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    (p / MANIFEST).unlink(missing_ok=True)


def write_manifest(path: str | os.PathLike, kind: str, files: Iterable[str | os.PathLike]) -> None:
    """Record that xappa wrote ``files`` (entries of the directory ``path``).

    Parameters
    ----------
    path : str or path-like
        The directory.
    kind : str
        What the directory holds, e.g. ``"evaluation report"``.
    files : iterable of str or path-like
        The entries written (names in ``path``, or paths inside it).
    """
    p = Path(path)
    names = sorted({Path(f).name for f in files})
    (p / MANIFEST).write_text(json.dumps({"kind": kind, "files": names}, indent=1) + "\n")
