import ast
import pathlib
import subprocess
import sys

import pytest

import xappa


def test_version():
    assert xappa.__version__.count(".") == 2


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


CORE_MODULES = sorted((pathlib.Path(xappa.__file__).parent / "core").rglob("*.py"))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.stem)
def test_core_does_not_import_xarray(path):
    # The core is pure torch: no xarray (or pandas), and nothing from xappa outside xappa.core.
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in {"xarray", "pandas", "cf_xarray", "dask", "zarr"}, (
            f"{path} imports {name}"
        )
        if top == "xappa":
            assert name.startswith("xappa.core"), f"{path} imports {name}"


def test_set_options_rejects_unknown():
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        xappa.set_options(colour=True)


def test_set_options_context():
    with xappa.set_options(progress=False):
        assert xappa.get_options()["progress"] is False
    assert xappa.get_options()["progress"] is True


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "xappa.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert xappa.__version__ in out.stdout


def test_package_data_ships_every_data_file() -> None:
    """Every file under xappa/data is matched by a package-data glob (a wheel ships it)."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")
    root = pathlib.Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    globs = [g.split("/") for g in config["tool"]["setuptools"]["package-data"]["xappa"]]
    package = root / "xappa"
    files = [p for p in (package / "data").rglob("*") if p.is_file()]
    assert any("models" in p.parts for p in files)
    for path in files:
        parts = path.relative_to(package).parts
        matched = any(
            len(g) == len(parts)
            and all(fnmatch.fnmatch(a, b) for a, b in zip(parts, g, strict=True))
            for g in globs
        )
        assert matched, f"{path.relative_to(root)} is not shipped (tool.setuptools.package-data)"


def test_readme_python_runs(tmp_path) -> None:
    """The README's Python example runs as written (it shows the current API)."""
    import re
    import runpy

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    with xappa.set_options(progress=False):
        for i, block in enumerate(blocks):
            script = tmp_path / f"readme_{i}.py"
            script.write_text(block)
            namespace = runpy.run_path(str(script))
    assert namespace["analysis"].sizes["member"] == 4
    assert namespace["forecast"].sizes["prediction_timedelta"] == 3
