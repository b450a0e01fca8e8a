"""The ``xappa`` command line: each sub-command lives in a module of ``xappa.commands``.

A user error (a bad argument, a missing or existing path, a missing optional package)
prints one line on stderr, ``xappa <command>: error: <message>``, and exits with status 2;
``--debug`` shows the Python traceback instead.
"""

from __future__ import annotations

__all__ = ["USER_ERRORS", "build_parser", "main", "plain_text"]

import argparse
import importlib
import pkgutil
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import xappa
import xappa.commands

#: The exceptions that report a user's mistake: printed as one line, exit status 2.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError)

_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`~?([^`<]*?)\s*(?:<[^>]*>)?`")


def plain_text(text: str | None) -> str | None:
    """Return a docstring without its reST markup, for a help text.

    Roles (``:func:`x.y```, ``:mod:`~x.y```) become their target, inline literals
    (````x````) their text.

    Parameters
    ----------
    text : str, optional
        A docstring.

    Returns
    -------
    str or None
        The plain text (None for None).

    Examples
    --------
    >>> plain_text("Runs :func:`xappa.batch.reanalysis` with ``--out``.")
    'Runs xappa.batch.reanalysis with --out.'
    """
    if text is None:
        return None

    def target(match: re.Match[str]) -> str:
        name = match[1]
        return name.rsplit(".", 1)[-1] if match[0].split("`")[1].startswith("~") else name

    text = _ROLE.sub(target, text)
    return re.sub(r"``([^`]+)``", r"\1", text).strip()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help texts are plain text and whose errors are one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["description"] = plain_text(kwargs.get("description"))
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """Add an argument, its help text made plain."""
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = plain_text(kwargs["help"])
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> None:
        """Print one line, ``<prog>: error: <message>``, and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Yield the sub-parsers of ``parser``, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command of :mod:`xappa.commands`.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each sub-command sets ``func`` to the function that runs it.
    """
    parser = _Parser(prog="xappa", description=__doc__)
    parser.add_argument("--version", action="version", version=f"xappa {xappa.__version__}")
    debug = "show the Python traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug)
    parser.set_defaults(command_prog="xappa")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(xappa.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"xappa.commands.{info.name}")
        module.register(sub)
    for child in _parsers(parser):
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
        child.set_defaults(command_prog=child.prog)
    return parser


def _message(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xappa`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a user error (see :data:`USER_ERRORS`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"{args.command_prog}: error: {_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
