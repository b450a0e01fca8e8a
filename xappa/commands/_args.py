"""Argument types and fixed choices shared by the sub-commands.

Each type checks one value at parse time, so that a bad argument stops the command (with
one line, ``xappa <command>: error: argument --members: ...``) before anything is read or
written.
"""

from __future__ import annotations

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULE_NAMES",
    "add_device_argument",
    "device",
    "nonnegative_int",
    "positive_float",
    "positive_int",
]

import argparse

from xappa.core.diffusion.sampler import _SAMPLERS
from xappa.core.diffusion.schedule import SCHEDULE_NAMES

#: The sampler names ``--sampler`` accepts (those of the core's sampler table).
SAMPLER_NAMES = tuple(sorted(_SAMPLERS))


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        msg = f"must be an int >= {minimum}; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def positive_int(text: str) -> int:
    """Parse an int >= 1 (e.g. ``--members``)."""
    return _int(text, 1)


def nonnegative_int(text: str) -> int:
    """Parse an int >= 0 (e.g. ``--seed``)."""
    return _int(text, 0)


def positive_float(text: str) -> float:
    """Parse a finite float > 0 (e.g. ``--days``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        msg = f"must be a number > 0; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def device(text: str) -> str:
    """Parse a torch device that is available here (see :func:`xappa.options.check_device`)."""
    from xappa.options import check_device

    try:
        check_device(text, name="the device")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` to the parser of a sub-command that runs a model.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser; the value lands in ``args.device`` (None by default).
    """
    parser.add_argument(
        "--device",
        type=device,
        help="torch device, e.g. cpu, cuda, cuda:1 or mps (default: CUDA when available)",
    )
