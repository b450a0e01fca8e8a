"""Small, table-driven unit conversions for the state variables (no pint dependency).

A unit string in CF/UDUNITS spelling (``"m s-1"``, ``"m/s"``, ``"m**2 s**-2"``, ``"degC"``,
``"hPa"``, ``"g/kg"``) is parsed into a factor to SI-like base units and the exponents of those
bases. Two units convert when their bases match, with three known special cases: temperatures
in degrees Celsius (an offset), geopotential height (``m`` or ``gpm``) to geopotential
(``m2 s-2``, times standard gravity) and back, and dimensionless ratios such as ``g/kg``.

Examples
--------
>>> from xappa.state.units import units_conversion
>>> conv = units_conversion("degC", "K")
>>> float(conv.apply(15.0))
288.15
>>> units_conversion("gpm", "m2 s-2").scale
9.80665
"""

from __future__ import annotations

__all__ = ["STANDARD_GRAVITY", "UnitConversion", "parse_units", "units_conversion"]

import re
from dataclasses import dataclass
from typing import Any

from xappa.core.constants import STANDARD_GRAVITY

_TEMPERATURE = {"K": 1}
_CELSIUS_OFFSET = 273.15

# symbol -> (factor to the base units, base exponents)
_SYMBOLS: dict[str, tuple[float, dict[str, int]]] = {}


def _add(names: str, factor: float, base: dict[str, int]) -> None:
    for name in names.split():
        _SYMBOLS[name] = (factor, base)


_add("K kelvin Kelvin degK deg_K degree_K degrees_K", 1.0, _TEMPERATURE)
_add("m meter metre meters metres gpm", 1.0, {"m": 1})
_add("km", 1e3, {"m": 1})
_add("cm", 1e-2, {"m": 1})
_add("mm", 1e-3, {"m": 1})
_add("s sec second seconds", 1.0, {"s": 1})
_add("min minute minutes", 60.0, {"s": 1})
_add("h hr hour hours", 3600.0, {"s": 1})
_add("d day days", 86400.0, {"s": 1})
_add("kg", 1.0, {"kg": 1})
_add("g gram grams", 1e-3, {"kg": 1})
_add("Pa pascal", 1.0, {"Pa": 1})
_add("hPa mbar millibar millibars mb", 100.0, {"Pa": 1})
_add("kPa", 1e3, {"Pa": 1})
_add("bar", 1e5, {"Pa": 1})
_add("kt knot knots", 1852.0 / 3600.0, {"m": 1, "s": -1})
_add("% percent", 1e-2, {})
_add("1", 1.0, {})
_CELSIUS = {"degC", "deg_C", "celsius", "Celsius", "degree_Celsius", "degrees_Celsius", "°C"}
_GEOPOTENTIAL = {"m": 2, "s": -2}
_HEIGHT = {"m": 1}
_TOKEN = re.compile(r"^(?P<sym>[A-Za-z%°_]+|1)(?:\^|\*\*)?(?P<exp>[+-]?\d+)?$")


@dataclass(frozen=True)
class UnitConversion:
    r"""Creates an affine unit conversion :math:`y = a x + b`.

    Attributes
    ----------
    from_units : str
        The units of the input.
    to_units : str
        The units of the output.
    scale : float
        The factor :math:`a`.
    offset : float
        The offset :math:`b`.
    """

    from_units: str
    to_units: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def is_identity(self) -> bool:
        """Whether the conversion leaves values unchanged (then it is never applied)."""
        return self.scale == 1.0 and self.offset == 0.0

    def apply(self, x: Any) -> Any:
        """Convert ``x`` from ``from_units`` to ``to_units``.

        Parameters
        ----------
        x : array-like
            A number, NumPy or dask array, DataArray or Tensor, of any shape.

        Returns
        -------
        array-like
            The converted values, with the type, shape and float dtype of ``x``.
        """
        if self.is_identity:
            return x
        y = x * self.scale if self.scale != 1.0 else x
        return y + self.offset if self.offset != 0.0 else y

    def invert(self, y: Any) -> Any:
        """Convert ``y`` back from ``to_units`` to ``from_units``.

        Parameters
        ----------
        y : array-like
            A number, NumPy or dask array, DataArray or Tensor, of any shape.

        Returns
        -------
        array-like
            The values in ``from_units``.
        """
        if self.is_identity:
            return y
        x = y - self.offset if self.offset != 0.0 else y
        return x / self.scale if self.scale != 1.0 else x


def parse_units(units: str) -> tuple[float, dict[str, int], float]:
    """Parse a unit string into a factor, base exponents and an offset.

    Parameters
    ----------
    units : str
        A CF/UDUNITS unit string such as ``"m s-1"``, ``"m/s"``, ``"kg kg**-1"`` or ``"degC"``.

    Returns
    -------
    tuple
        ``(factor, base, offset)``: a value ``x`` in ``units`` is ``x * factor + offset`` in
        the base units whose exponents ``base`` gives (for example ``{"m": 1, "s": -1}``).

    Raises
    ------
    ValueError
        If a part of ``units`` is not in the table.
    """
    text = units.strip()
    if text in _CELSIUS:
        return 1.0, dict(_TEMPERATURE), _CELSIUS_OFFSET
    if text in ("", "-", "dimensionless"):
        return 1.0, {}, 0.0
    factor, base = 1.0, {}
    sign = 1
    for part in re.split(r"[\s.*]+", text.replace("**", "^").replace("/", " / ")):
        if not part:
            continue
        if part == "/":
            sign = -1
            continue
        match = _TOKEN.match(part)
        if match is None or match["sym"] not in _SYMBOLS:
            msg = f"unknown units {units!r}: cannot read {part!r}"
            raise ValueError(msg)
        f, b = _SYMBOLS[match["sym"]]
        exp = sign * int(match["exp"] or 1)
        factor *= f**exp
        for key, value in b.items():
            base[key] = base.get(key, 0) + value * exp
    return factor, {k: v for k, v in base.items() if v != 0}, 0.0


def units_conversion(from_units: str, to_units: str, *, name: str = "value") -> UnitConversion:
    """Return the conversion from ``from_units`` to ``to_units``.

    Parameters
    ----------
    from_units : str
        The units the data has.
    to_units : str
        The units wanted.
    name : str
        What is converted, for error messages (e.g. ``"variable 'temperature'"``).

    Returns
    -------
    UnitConversion
        The affine conversion; an identity when the two strings are equal or equivalent.

    Raises
    ------
    ValueError
        If either unit is unknown or the two are not convertible.
    """
    if from_units == to_units:
        return UnitConversion(from_units, to_units)
    try:
        f1, b1, o1 = parse_units(from_units)
        f2, b2, o2 = parse_units(to_units)
    except ValueError as err:
        msg = (
            f"{name} has units {from_units!r}; expected units convertible to {to_units!r} ({err})"
        )
        raise ValueError(msg) from None
    if b1 == b2:
        scale, offset = f1 / f2, (o1 - o2) / f2
    elif b1 == _HEIGHT and b2 == _GEOPOTENTIAL and o1 == o2 == 0.0:
        scale, offset = f1 * STANDARD_GRAVITY / f2, 0.0
    elif b1 == _GEOPOTENTIAL and b2 == _HEIGHT and o1 == o2 == 0.0:
        scale, offset = f1 / (STANDARD_GRAVITY * f2), 0.0
    else:
        msg = f"{name} has units {from_units!r}; expected units convertible to {to_units!r}"
        raise ValueError(msg)
    return UnitConversion(from_units, to_units, scale, offset)
