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
    "add_observation_arguments",
    "add_run_arguments",
    "add_sampling_arguments",
    "device",
    "duration",
    "nonnegative_int",
    "obs_error",
    "obs_error_from_args",
    "positive_float",
    "positive_int",
    "sampling_from_args",
    "timestamp",
    "window",
]

import argparse
from typing import Any

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


def duration(text: str) -> str:
    """Parse a positive duration such as ``3D``, ``48h`` or ``90min`` (``--lead``)."""
    import pandas as pd

    try:
        value = pd.Timedelta(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value <= pd.Timedelta(0):
        msg = f"must be a positive duration such as '3D', '48h' or '90min'; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return text


def timestamp(text: str) -> str:
    """Parse a time such as ``2021-01-01T06`` (``--init-time``)."""
    import pandas as pd

    try:
        value = pd.Timestamp(text)
    except (TypeError, ValueError):
        value = None
    if value is None or pd.isna(value):
        msg = f"must be a time such as 2021-01-01T06; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return text


def window(text: str) -> str | tuple[str, str]:
    """Parse an assimilation window: a duration (``48h``) or ``START/END`` (both included).

    Returns the duration as given, or the ``(start, end)`` pair, for ``window=`` of
    :func:`xappa.assimilate`.
    """
    import pandas as pd

    msg = (
        "must be a positive duration such as '48h', or START/END times such as"
        f" 2021-01-01T00/2021-01-02T23 (end not before start); found {text!r}"
    )
    if "/" not in text:
        try:
            return duration(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(msg) from None
    start, _, end = text.partition("/")
    try:
        first, last = pd.Timestamp(start), pd.Timestamp(end)
    except (TypeError, ValueError):
        first = last = None
    if first is None or last is None or pd.isna(first) or pd.isna(last) or last < first:
        raise argparse.ArgumentTypeError(msg)
    return start, end


def obs_error(text: str) -> tuple[str | None, float]:
    """Parse an observation error standard deviation: ``0.5`` or ``NAME=0.5`` (``--obs-error``).

    Returns ``(name, value)``, ``name`` None for every variable.
    """
    name, _, value = text.rpartition("=")
    try:
        std = float(value)
    except ValueError:
        std = float("nan")
    if not 0 < std < float("inf") or (_ and not name):
        msg = f"must be a number > 0, or VARIABLE=NUMBER; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return (name or None), std


def obs_error_from_args(pairs: list[tuple[str | None, float]] | None) -> Any:
    """Turn repeated ``--obs-error`` values into ``obs_error=`` (a float, a mapping or None).

    Raises
    ------
    ValueError
        If a plain number is mixed with per-variable values, or a variable is repeated.
    """
    if not pairs:
        return None
    names = [n for n, _ in pairs]
    if names == [None]:
        return pairs[0][1]
    if None in names or len(set(names)) != len(names):
        msg = (
            "--obs-error must be given once as a number, or once per variable as"
            f" VARIABLE=NUMBER; found {[f'{n}={v}' if n else v for n, v in pairs]}"
        )
        raise ValueError(msg)
    return dict(pairs)


def add_run_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """Add the options of a sub-command that runs a model and writes an ensemble.

    ``--model``, ``--allow-unverified``, ``--out``, ``--overwrite``, ``--members``, ``--seed``, ``--stride``,
    ``--no-progress``, ``--device`` and the sampling options.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    kind : str
        What ``--out`` holds, for help texts (e.g. ``"analysis ensemble"``).
    """
    parser.add_argument(
        "--model", required=True, help="model name (see xappa models) or local model path"
    )
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="load a named model whose files have no published hash (e.g. appa-workshop)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help=f"where to write the {kind}: a zarr store, or a netCDF file (.nc)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if xappa wrote it (never anything else)",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--stride", type=positive_int, help="frames between windows (default: half the window)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no cost estimate and no progress bar on stderr",
    )
    add_device_argument(parser)
    add_sampling_arguments(parser)


def add_observation_arguments(parser: argparse.ArgumentParser, only: str = "") -> None:
    """Add ``--window`` and ``--obs-error``, for a sub-command that assimilates observations.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    only : str
        A prefix of the help texts saying when they apply (e.g. ``"--obs: "``).
    """
    parser.add_argument(
        "--window",
        type=window,
        help=f"{only}the window: a duration from the first observation (48h), or START/END"
        " times, both included (default: the observations' span)",
    )
    parser.add_argument(
        "--obs-error",
        type=obs_error,
        action="append",
        help=f"{only}observation error std in the variable's units: NUMBER for all, or"
        " VARIABLE=NUMBER (repeatable; default: the inputs' ancillary variables)",
    )
