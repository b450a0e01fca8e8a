"""The old module paths of xappa, kept for one release with a :class:`DeprecationWarning`.

xappa 0.1 had its modules flat at the top of the package (``xappa.metrics``,
``xappa.hub``, ...); they now live in layer packages (:doc:`/design`). Importing an old path
gives the module at its new path, the very same object, after one warning that names the
new path. :func:`moved_attribute` does the same for names that moved out of a module that
stays (``xappa.state``, ``xappa.encoding``). Both go in the next release.
"""

from __future__ import annotations

__all__ = ["MOVED_MODULES", "install", "moved_attribute"]

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

MOVED_MODULES = {
    "xappa.align": "xappa.verify.align",
    "xappa.cards": "xappa.models.cards",
    "xappa.convert": "xappa.state.coords",
    "xappa.evaluation": "xappa.verify.evaluate",
    "xappa.hub": "xappa.models.hub",
    "xappa.integrity": "xappa.io.integrity",
    "xappa.metrics": "xappa.verify.metrics",
    "xappa.model": "xappa.models.model",
    "xappa.model_files": "xappa.models.files",
    "xappa.physics": "xappa.verify.physics",
    "xappa.plot": "xappa.verify.plot",
    "xappa.release": "xappa.models.release",
    "xappa.spectra": "xappa.verify.spectra",
    "xappa.stats": "xappa.state.stats",
    "xappa.units": "xappa.state.units",
    "xappa.windows": "xappa.state.times",
}
"""Each old module path and its new path."""


def _warn(old: str, new: str, stacklevel: int) -> None:
    msg = (
        f"{old} moved to {new}; import it from there (the old path is removed in the next"
        " release of xappa)"
    )
    warnings.warn(msg, DeprecationWarning, stacklevel=stacklevel)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths and loads each as the module at its new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        _warn(spec.name, new, 3)  # import machinery frames are skipped
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        return None


def install() -> None:
    """Let the old module paths be imported (once per process; called by ``import xappa``)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())  # before any finder that could see stale files


def moved_attribute(module: str, name: str, moved: Mapping[str, str]) -> Any:
    """Return ``name`` from its new module, with a warning, for a module's ``__getattr__``.

    Parameters
    ----------
    module : str
        The module asked, e.g. ``"xappa.state"``.
    name : str
        The attribute asked.
    moved : mapping of str to str
        Each moved name and the module that now holds it.

    Raises
    ------
    AttributeError
        If ``name`` did not move (as for any missing attribute).
    """
    if name not in moved:
        msg = f"module {module!r} has no attribute {name!r}"
        raise AttributeError(msg)
    _warn(f"{module}.{name}", f"{moved[name]}.{name}", 4)  # the caller of __getattr__
    return getattr(importlib.import_module(moved[name]), name)
