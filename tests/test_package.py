import subprocess
import sys

import pytest

import xappa


def test_version():
    assert xappa.__version__.count(".") == 2


def test_core_does_not_import_xarray():
    code = (
        "import sys, xappa.core, xappa.core.diffusion.schedule, xappa.core.diffusion.denoiser;"
        "import pkgutil, importlib;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(xappa.core.__path__, 'xappa.core.')];"
        "print('xarray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
