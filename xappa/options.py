"""Process-wide defaults (device, dtype, progress bars), set with :func:`set_options`."""

from __future__ import annotations

__all__ = ["get_options", "set_options"]

from collections.abc import Callable
from typing import Any

_OPTIONS: dict[str, Any] = {
    "device": None,
    "progress": True,
    "dtype": "float32",
}

_VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "device": (lambda v: v is None or isinstance(v, str), "None or a device string like 'cpu'"),
    "progress": (lambda v: isinstance(v, bool), "a bool"),
    "dtype": (lambda v: v in ("float32", "float64", "bfloat16", "float16"), "a float dtype name"),
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
        ``device`` (``None`` picks CUDA when available, else CPU), ``progress`` (show
        progress bars on long work) and ``dtype`` (the default float dtype for models).

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
