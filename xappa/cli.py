"""The ``xappa`` command line: each sub-command lives in a module of :mod:`xappa.commands`."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

import xappa
import xappa.commands


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command of :mod:`xappa.commands`.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each sub-command sets ``func`` to the function that runs it.
    """
    parser = argparse.ArgumentParser(prog="xappa", description=__doc__)
    parser.add_argument("--version", action="version", version=f"xappa {xappa.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(xappa.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"xappa.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xappa`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
