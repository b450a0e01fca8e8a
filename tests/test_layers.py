"""The import rules between xappa's layers (docs/design.md), read from the source with ast.

Every import counts: at the top of a module, inside a function (lazy) and under
``TYPE_CHECKING``. A layer imports only layers below it, and modules of its own layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xappa
from xappa._moved import MOVED_MODULES

ROOT = Path(xappa.__file__).parent

#: The layers, bottom (0) to top. A module imports only from a lower layer or its own.
LAYERS = {
    "core": 0,  # pure torch: the networks, diffusion, guidance and the engine (core.da)
    "io": 0,  # safe reading and writing of files
    "_moved": 0,  # the old module paths (one release)
    "options": 1,  # process-wide defaults and the helpers that read them
    "state": 2,  # the state as xarray sees it: spec, conversion, coordinates, units, stats
    "observations": 3,
    "models": 3,  # the Model, its weights, the hub
    "api": 4,  # the public functions: encode/decode, assimilate, forecast, open_era5
    "batch": 5,
    "train": 5,
    "verify": 6,  # scores, spectra, physics, plots and reports (reads batch stores)
    "testbeds": 7,
    "top": 8,  # the package, the accessor, the command line and the test data
}
API = {"encoding", "assimilation", "forecasting", "era5"}
TOP = {"commands", "accessor", "cli", "testing"}

#: What the core never imports (it is pure torch: labelled arrays stay outside it).
CORE_FORBIDDEN = {"xarray", "cf_xarray", "pandas", "dask", "zarr"}


def layer_of(module: str) -> str:
    """Return the layer of a dotted module name inside xappa, e.g. ``xappa.core.da``."""
    parts = module.split(".")
    if parts == ["xappa"] or parts[1] in TOP:
        return "top"
    return "api" if parts[1] in API else parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str, str | None]]:
    """Return ``(line, imported module, imported name)`` for every import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            found += [(node.lineno, base, alias.name) for alias in node.names]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Return the imports of ``module`` (its ``source``) that break the layer rules."""
    here = layer_of(module)
    out = []
    for line, target, name in imports(source, module, is_package):
        top = target.split(".")[0]
        if here == "core" and top in CORE_FORBIDDEN:
            out.append(f"{module}:{line}: the core imports {target}")
            continue
        if top != "xappa":
            continue
        if target == "xappa" and name is not None:
            if name == "__version__":  # package metadata, readable from every layer
                continue
            if name in LAYERS or name in API | TOP or f"xappa.{name}" in MOVED_MODULES:
                target = f"xappa.{name}"  # a module, not a name of the package
        there = layer_of(target)
        if there not in LAYERS:
            out.append(f"{module}:{line}: imports {target}, which is in no layer")
        elif there != here and LAYERS[there] >= LAYERS[here]:
            out.append(
                f"{module}:{line}: {here} (layer {LAYERS[here]}) imports {target}"
                f" ({there}, layer {LAYERS[there]})"
            )
    return out


def sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "_vendor" not in p.parts)


def test_every_module_is_in_a_layer():
    missing = {module_name(p) for p in sources() if layer_of(module_name(p)) not in LAYERS}
    assert not missing, f"modules in no layer of tests/test_layers.py: {sorted(missing)}"


def test_no_import_reaches_upward():
    found = []
    for path in sources():
        found += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not found, "imports against the layers (docs/design.md):\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("xappa.core.da.filter", "import xarray as xr", "the core imports xarray"),
        ("xappa.core.nn.vidit", "from pandas import Timestamp", "the core imports pandas"),
        ("xappa.core.da.smoother", "from xappa.state.spec import StateSpec", "imports xappa"),
        ("xappa.core.nn.layers", "def f():\n    from xappa.options import get_options", "core"),
        ("xappa.models.files", "from xappa.train.autoencoder import load_autoencoder", "train"),
        ("xappa.state.stats", "from xappa import metrics", "xappa.metrics"),
        ("xappa.io.outputs", "from xappa.options import get_options", "options"),
        ("xappa.state.stats", "from ..models.model import Model", "xappa.models.model"),
        ("xappa.encoding", "from xappa.batch import reanalysis", "batch"),
        ("xappa.models.hub", "from xappa.observations import prepare_observations", "models"),
    ],
)
def test_a_violation_is_found(module, source, expected):
    """The checker itself: each of these imports breaks a rule and is reported."""
    found = violations(source, module)
    assert len(found) == 1
    assert expected in found[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("xappa.core.da.filter", "from xappa.core.da.smoother import smooth"),
        ("xappa.train.autoencoder", "from xappa.models.runs import load_autoencoder"),
        ("xappa.models.model", "from xappa import __version__"),
        ("xappa.verify.physics", "from .metrics import lat_weights"),
        ("xappa.commands.demo", "import xappa"),
    ],
)
def test_an_allowed_import_passes(module, source):
    assert violations(source, module) == []
