"""The old module paths (xappa 0.1's flat modules) still import, warn once and give the new module."""

from __future__ import annotations

import importlib
import sys

import pytest

import xappa
from xappa._moved import MOVED_MODULES


@pytest.fixture
def forget(monkeypatch):
    """Forget an old path, so that importing it runs the alias again (and is undone after)."""

    def run(old: str) -> None:
        monkeypatch.delitem(sys.modules, old, raising=False)
        monkeypatch.delattr(xappa, old.rpartition(".")[2], raising=False)

    return run


@pytest.mark.parametrize(
    "old", ["xappa.metrics", "xappa.hub", "xappa.model_files", "xappa.evaluation", "xappa.convert"]
)
def test_an_old_path_warns_and_is_the_new_module(old, forget):
    new = MOVED_MODULES[old]
    forget(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}.*next release") as rec:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert len(rec) == 1
    forget(old)
    name = old.rpartition(".")[2]
    with pytest.warns(DeprecationWarning, match=f"moved to {new}") as rec:
        package = __import__("xappa", fromlist=[name])  # from xappa import <name>
    module = getattr(package, name)
    assert module is importlib.import_module(new)
    assert rec[0].filename == __file__  # the warning points at the importing code


def test_an_old_path_gives_the_same_objects(forget):
    forget("xappa.spectra")
    with pytest.warns(DeprecationWarning):
        from xappa.spectra import zonal_energy_spectrum
    from xappa.verify.spectra import zonal_energy_spectrum as new

    assert zonal_energy_spectrum is new


def test_every_new_path_exists():
    for new in MOVED_MODULES.values():
        importlib.import_module(new)


def test_moved_names_of_kept_modules_warn():
    import xappa.encoding
    import xappa.models.states
    import xappa.state
    import xappa.state.convert
    import xappa.state.spec

    with pytest.warns(DeprecationWarning, match=r"xappa.state.StateSpec moved to xappa.state.spec"):
        from xappa.state import StateSpec
    assert StateSpec is xappa.state.spec.StateSpec
    with pytest.warns(DeprecationWarning, match=r"xappa.state.select_state moved") as rec:
        assert xappa.state.select_state is xappa.state.convert.select_state
    assert rec[0].filename == __file__
    with pytest.warns(DeprecationWarning, match=r"xappa.encoding.state_dataset moved"):
        assert xappa.encoding.state_dataset is xappa.models.states.state_dataset


def test_an_unknown_name_is_still_an_attribute_error():
    import xappa.state

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        xappa.state.nothing  # noqa: B018
