"""Sphinx configuration for xappa's documentation (build: python -m sphinx -b html docs docs/_build/html)."""

from pathlib import Path

import xappa

project = "xappa"
author = "The xappa developers"
release = version = xappa.__version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "colon_fence"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"
suppress_warnings = ["myst.header"]

# Tutorials: each page docs/tutorials/<name>.md is rendered from the percent-script
# tutorials/<name>.py when the docs are built (the scripts are never executed here): markdown
# cells become text, code cells become Python blocks.
TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def percent_to_myst(text: str, name: str) -> str:
    """Return the MyST page of a percent-format script (``# %%`` and ``# %% [markdown]``)."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    parts = []
    for kind, lines in cells:
        if kind == "markdown":
            parts.append(
                "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            )
        elif "\n".join(lines).strip():
            parts.append("```python\n" + "\n".join(lines).strip("\n") + "\n```")
    body = "\n\n".join(p.strip("\n") for p in parts)
    head, _, rest = body.partition("\n")
    note = (
        f"```{{note}}\nThis page is the script `tutorials/{name}.py`, shown without running it."
        f" Run it with `python tutorials/{name}.py`, or with `--quick` for a short smoke"
        " run.\n```"
    )
    return f"{head}\n\n{note}\n{rest}\n"


def _render_tutorial(app, docname: str, source: list[str]) -> None:
    if not docname.startswith("tutorials/"):
        return
    script = TUTORIALS / f"{docname.split('/', 1)[1]}.py"
    app.env.note_dependency(str(script))
    source[0] = percent_to_myst(script.read_text(), script.stem)


def setup(app):
    app.connect("source-read", _render_tutorial)
    return {"parallel_read_safe": True}
