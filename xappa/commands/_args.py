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
    "add_sampling_arguments",
    "device",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "sampling_from_args",
]

import argparse

from xappa.core.da import PRESETS, SamplingConfig, as_config
from xappa.core.diffusion.sampler import SAMPLER_NAMES
from xappa.core.diffusion.schedule import SCHEDULE_NAMES
from xappa.core.guidance.mmps import SOLVER_NAMES

#: The fields of :class:`~xappa.core.da.SamplingConfig` that have an option of their own.
_SAMPLING_OPTIONS = (
    "sampler",
    "steps",
    "schedule",
    "corrections",
    "delta",
    "solver",
    "iterations",
    "precision",
)


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


def unit_float(text: str) -> float:
    """Parse a float in (0, 1] (``--delta``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        msg = f"must be a number in (0, 1]; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_sampling_arguments(
    parser: argparse.ArgumentParser, default: SamplingConfig | None = None
) -> None:
    """Add ``--sampling`` (a preset) and one option per sampling setting.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    default : SamplingConfig, optional
        The settings the command starts from without ``--sampling`` (default:
        ``SamplingConfig()``).
    """
    base = as_config(default)
    parser.set_defaults(sampling_base=base)
    group = parser.add_argument_group(
        "sampling", "a preset, then any single setting changed (xappa.SamplingConfig)"
    )
    group.add_argument(
        "--sampling",
        choices=sorted(PRESETS),
        help="preset to start from (default: this command's settings, shown per option)",
    )
    group.add_argument("--sampler", choices=SAMPLER_NAMES, help=f"sampler ({base.sampler})")
    group.add_argument("--steps", type=positive_int, help=f"sampler steps ({base.steps})")
    group.add_argument(
        "--schedule", choices=SCHEDULE_NAMES, help=f"noise spacing ({base.schedule})"
    )
    group.add_argument(
        "--corrections",
        type=nonnegative_int,
        help=f"Langevin corrections, pc ({base.corrections})",
    )
    group.add_argument("--delta", type=unit_float, help=f"Langevin step size, pc ({base.delta})")
    group.add_argument("--guidance", choices=["mmps", "dps", "none"], help="guidance (mmps)")
    group.add_argument("--solver", choices=SOLVER_NAMES, help=f"MMPS solver ({base.solver})")
    group.add_argument(
        "--iterations", type=positive_int, help=f"MMPS solver iterations ({base.iterations})"
    )
    group.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        help=f"network autocast precision ({base.precision})",
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    """Return the :class:`~xappa.core.da.SamplingConfig` that the sampling options ask for.

    The options are those of :func:`add_sampling_arguments`.
    """
    config = as_config(args.sampling) if args.sampling else args.sampling_base
    changes = {f: getattr(args, f) for f in _SAMPLING_OPTIONS if getattr(args, f) is not None}
    if args.guidance is not None:
        changes["guidance"] = None if args.guidance == "none" else args.guidance
    return config.replace(**changes)
