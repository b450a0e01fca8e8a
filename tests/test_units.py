import numpy as np
import pytest
import torch

from xappa.state.units import STANDARD_GRAVITY, parse_units, units_conversion


@pytest.mark.parametrize(
    ("source", "target", "value", "expected"),
    [
        ("degC", "K", 15.0, 288.15),
        ("degrees_Celsius", "K", -273.15, 0.0),
        ("K", "degC", 273.15, 0.0),
        ("hPa", "Pa", 850.0, 85000.0),
        ("millibars", "Pa", 1.0, 100.0),
        ("m", "m2 s-2", 1.0, STANDARD_GRAVITY),
        ("gpm", "m**2 s**-2", 100.0, 100.0 * STANDARD_GRAVITY),
        ("m2 s-2", "gpm", STANDARD_GRAVITY, 1.0),
        ("mm", "m", 5.0, 5e-3),
        ("g/kg", "kg kg-1", 10.0, 1e-2),
        ("g kg**-1", "1", 10.0, 1e-2),
        ("km/h", "m s-1", 36.0, 10.0),
        ("kt", "m/s", 1.0, 1852 / 3600),
        ("%", "1", 50.0, 0.5),
    ],
    ids=[
        "degC-K",
        "celsius-K",
        "K-degC",
        "hPa-Pa",
        "mbar-Pa",
        "height-geopotential",
        "gpm-geopotential",
        "geopotential-gpm",
        "mm-m",
        "g/kg",
        "g/kg-1",
        "km/h",
        "knot",
        "percent",
    ],
)
def test_known_conversions(source, target, value, expected):
    conv = units_conversion(source, target)
    assert conv.apply(value) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert conv.invert(conv.apply(value)) == pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("source", "target"),
    [("m/s", "m s-1"), ("m^2/s^2", "m2 s-2"), ("kg kg**-1", "kg/kg"), ("K", "K")],
    ids=["slash", "caret", "ratio", "same"],
)
def test_equivalent_spellings_are_identities(source, target):
    conv = units_conversion(source, target)
    assert conv.is_identity
    x = np.array([1.5], dtype=np.float32)
    assert conv.apply(x) is x


def test_apply_keeps_dtype_and_type():
    conv = units_conversion("degC", "K")
    assert conv.apply(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert conv.apply(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32


def test_parse_units():
    assert parse_units("m s-1") == (1.0, {"m": 1, "s": -1}, 0.0)
    assert parse_units("kg kg-1") == (1.0, {}, 0.0)


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        ("furlong", "m", "variable 'x' has units 'furlong'; expected units convertible to 'm'"),
        ("K", "m s-1", "variable 'x' has units 'K'; expected units convertible to 'm s-1'"),
        ("degC", "m2 s-2", "has units 'degC'"),
        ("m s-1", "Pa", "expected units convertible to 'Pa'"),
    ],
    ids=["unknown", "incompatible", "offset", "pressure"],
)
def test_unconvertible(source, target, match):
    with pytest.raises(ValueError, match=match):
        units_conversion(source, target, name="variable 'x'")
