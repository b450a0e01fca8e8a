"""Tutorials: ``--quick`` runs, and the docs render each percent-script as a page."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def conf() -> dict:
    path = ROOT / "docs" / "conf.py"
    if not path.is_file():
        pytest.skip("docs/ is not part of this installation")
    return runpy.run_path(str(path))


def test_percent_script_renders_as_myst(conf):
    script = """# %% [markdown]
# # Title
#
# Some *text*.

# %%
x = 1

# %%

# %% [markdown]
# ## Next
"""
    page = conf["percent_to_myst"](script, "demo")
    assert page.startswith("# Title\n")
    assert "`tutorials/demo.py`" in page and "shown without running it" in page
    assert "Some *text*." in page
    assert "```python\nx = 1\n```" in page
    assert page.count("```python") == 1  # the empty cell is left out
    assert page.rstrip().endswith("## Next")


@pytest.mark.parametrize("name", ["shallow_water", "assimilate_testbed", "lorenz96"])
def test_every_tutorial_has_a_page(name):
    assert (ROOT / "docs" / "tutorials" / f"{name}.md").is_file()
    assert (ROOT / "tutorials" / f"{name}.py").is_file()


@pytest.mark.slow
def test_lorenz96_honours_quick_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("XAPPA_TUTORIAL_QUICK", raising=False)
    monkeypatch.setenv("XAPPA_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["lorenz96.py", "--quick"])
    namespace = runpy.run_path(str(ROOT / "tutorials" / "lorenz96.py"))
    assert namespace["QUICK"] is True
    assert "trained 60 steps" in capsys.readouterr().out
    assert (tmp_path / "lorenz96_tutorial.png").stat().st_size > 0
