"""Process-wide defaults (device, progress bars, default model), set with :func:`set_options`.

Also the helpers of xappa's functions that read them: :func:`resolve_device` (the ``device``
option), :func:`progress_bar` and :func:`plan_line` (the ``progress`` option: a bar and the
cost of a run), and :func:`check_positive_int`, the argument check they share with
:func:`check_device`.
"""

from __future__ import annotations

__all__ = [
    "available_devices",
    "check_device",
    "check_positive_int",
    "choose_device",
    "get_options",
    "plan_line",
    "progress_bar",
    "resolve_device",
    "set_options",
]

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch

    from xappa.core.da import SamplingConfig

_OPTIONS: dict[str, Any] = {
    "device": None,
    "progress": True,
    "model": None,
}


def available_devices() -> list[str]:
    """Return the devices torch can run on here, e.g. ``["cpu", "cuda:0", "cuda:1"]``.

    Returns
    -------
    list of str
        ``"cpu"``, then each CUDA device, then ``"mps"`` when available.
    """
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    return ["cpu", *(f"cuda:{i}" for i in range(cuda)), *(["mps"] if mps else [])]


def check_device(device: str | torch.device, *, name: str = "device") -> torch.device:
    """Return ``device`` as a :class:`torch.device` if torch can run on it here, else raise.

    Parameters
    ----------
    device : str or torch.device
        A device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` (``"meta"``,
        torch's device without data, is available everywhere).
    name : str
        What it is, for messages (e.g. ``"--device"``).

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    ValueError
        If torch cannot parse ``device``, or it is not available on this machine (the
        message lists the devices that are).
    TypeError
        If ``device`` is neither a str nor a torch.device.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            dev = None
        if dev is None:
            msg = (
                f"{name} must be a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps';"
                f" found {device!r} (available here: {available_devices()})"
            )
            raise ValueError(msg)
    else:
        msg = f"{name} must be a str or a torch.device; found {type(device).__name__}"
        raise TypeError(msg)
    here = available_devices()
    if dev.type in ("cpu", "meta") or (dev.type == "mps" and "mps" in here):
        return dev
    cuda = [d for d in here if d.startswith("cuda")]
    if dev.type == "cuda" and cuda and (dev.index is None or dev.index < len(cuda)):
        return dev
    msg = f"{name} {str(device)!r} is not available on this machine; available: {here}"
    raise ValueError(msg)


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """Return where to load a model: ``device``, else the ``device`` option, else a default.

    Parameters
    ----------
    device : str or torch.device, optional
        The device asked for.

    Returns
    -------
    torch.device
        ``device`` or the ``device`` option, checked with :func:`check_device`; without
        either, CUDA when available, else the CPU.

    Raises
    ------
    ValueError, TypeError
        As :func:`check_device`.
    """
    import torch

    if device is None:
        device = _OPTIONS["device"]
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def _valid_device(value: Any) -> bool:
    if value is not None:
        check_device(value)  # raises with a message that lists the available devices
    return True


def _valid_model(value: Any) -> bool:
    import os

    # A Model instance exists only once its module is imported; looking it up here keeps the
    # options below the models layer (no import of it).
    module = sys.modules.get("xappa.models.model")
    is_model = module is not None and isinstance(value, module.Model)
    return value is None or is_model or isinstance(value, str | os.PathLike)


_VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device": (_valid_device, "None or an available device like 'cpu'"),
    "progress": (lambda v: isinstance(v, bool), "a bool"),
    "model": (_valid_model, "None, a model name or path (str), or an xappa.Model"),
}


def get_options() -> dict[str, Any]:
    """Return a copy of the current process-wide options.

    Returns
    -------
    dict
        The option names and their current values.
    """
    return dict(_OPTIONS)


class set_options:
    """Set process-wide options, globally or as a context manager.

    Parameters
    ----------
    **kwargs
        ``device`` (``None`` picks CUDA when available, else CPU; otherwise a device that
        is available here, see :func:`check_device`), ``progress`` (show progress bars on
        long work) and ``model`` (the model used when a function gets ``model=None``: a
        name or path, loaded through the hub's cache, or a :class:`~xappa.models.model.Model`).
        A model's float dtype is chosen when it is loaded
        (``xappa.load_model(name, dtype=...)``), not here.

    Raises
    ------
    ValueError
        For an unknown option or a bad value (e.g. a device that is not available).
    TypeError
        For a device that is neither a str nor a torch.device.

    Examples
    --------
    >>> import xappa
    >>> with xappa.set_options(progress=False):
    ...     xappa.get_options()["progress"]
    False
    """

    def __init__(self, **kwargs: Any) -> None:
        self._old: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in _OPTIONS:
                msg = (
                    f"set_options got an unknown option {key!r}; expected one of {list(_OPTIONS)}"
                )
                raise ValueError(msg)
            valid, expected = _VALIDATORS[key]
            if not valid(value):
                msg = f"option {key!r} must be {expected}; found {value!r}"
                raise ValueError(msg)
            self._old[key] = _OPTIONS[key]
        _OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        _OPTIONS.update(self._old)


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is a positive int, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"{name} must be a positive int (>= 1); found {value!r}"
        raise ValueError(msg)
    return int(value)


def resolve_device(device: torch.device | str | None, default: torch.device) -> torch.device:
    """Return the device to run on: the argument, the ``device`` option, or ``default``.

    A device asked for is checked with :func:`xappa.options.check_device`: a ValueError
    names it and the devices available, where torch would raise its own errors later.
    """
    if device is None:
        device = get_options()["device"]
    return default if device is None else check_device(device)


def plan_line(what: str, config: SamplingConfig, members: int, windows: int) -> str:
    """Say what a draw costs in network passes, before it starts.

    Parameters
    ----------
    what : str
        The call, e.g. ``"assimilate (reanalysis)"``.
    config : SamplingConfig
        The sampling settings (:meth:`~xappa.core.da.SamplingConfig.cost`).
    members : int
        The ensemble size.
    windows : int
        How many windows of :math:`K` frames are drawn, per member.

    Returns
    -------
    str
        One line: windows, members, denoiser calls and VJPs per window, and the
        window-evaluations of the denoiser in all.
    """
    cost = config.cost()
    calls = cost["denoiser_calls"]
    return (
        f"{what}: {windows} window(s) x {members} member(s), {calls} denoiser calls"
        f" ({cost['vjp']} VJPs) per window: {windows * members * calls} window evaluations"
        f" of the denoiser ({config.sampler}, {config.steps} steps, guidance {config.guidance})"
    )


#: The clock of the cost estimate (a test replaces it).
_clock = time.perf_counter


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.1f} s"
    if value < 90 * 60:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@contextmanager
def progress_bar(
    total: int,
    desc: str,
    enabled: bool | None = None,
    *,
    plan: str | None = None,
    unit: str = "step",
) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback ``(i, n)`` that advances a tqdm bar (hidden when progress is off).

    With a ``plan`` (:func:`plan_line`), the cost of a long run is stated on stderr: the
    plan before it starts, then, once the first two of the ``total`` units of work have run
    (the probe), the time they took and the time expected in all: the first unit's, plus the
    second's for each later unit (the units cost about the same; the first also pays for
    what runs once, such as building the observation operators).

    Parameters
    ----------
    total : int
        The units of work (sampler steps, filter cycles, forecast windows).
    desc : str
        The bar's label.
    enabled : bool, optional
        Show the bar and the cost (default: the ``progress`` option).
    plan : str, optional
        The cost in network passes, printed before the work starts.
    unit : str
        What a unit of work is, for the estimate.
    """
    show = get_options()["progress"] if enabled is None else bool(enabled)
    if show and plan:
        tqdm.write(plan, file=sys.stderr)
    bar = tqdm(total=total, desc=desc, disable=not show, leave=False)
    ends = [_clock()]

    def advance(step: int, steps: int) -> None:
        bar.update(1)
        if show and plan and bar.n <= 2 and total > 2:
            ends.append(_clock())
        if len(ends) == 3 and bar.n == 2:
            first, second = ends[1] - ends[0], ends[2] - ends[1]
            tqdm.write(
                f"{desc}: {unit}s 1 and 2 of {total} took {_seconds(first)} and"
                f" {_seconds(second)}; expect about {_seconds(first + second * (total - 1))}"
                " in all",
                file=sys.stderr,
            )

    try:
        yield advance
    finally:
        bar.close()
