"""The three latitude-weight conventions: equal to cos(lat) up to a factor inside, different
only where the table of :mod:`xappa.core.latitude` says (the pole rows, Appa's 1/n_lon)."""

import numpy as np
import pytest

from xappa.core.latitude import appa_weights, area_weights, cos_weights

LAT = np.linspace(90.0, -90.0, 13)  # 15 degrees, poles included
COS = np.cos(np.deg2rad(LAT))


def test_area_weights_are_cell_areas_with_mean_one():
    w = area_weights(LAT)
    assert w.mean() == pytest.approx(1.0, rel=1e-14)
    inside = slice(1, -1)  # the interior cells' area is 2 sin(7.5 deg) cos(lat)
    np.testing.assert_allclose(w[inside] / COS[inside], w[6], rtol=1e-12)
    half_cell = 1 - np.cos(np.deg2rad(7.5))  # a pole row covers the cap down to 82.5 degrees
    assert w[0] / w[6] == pytest.approx(half_cell / (2 * np.sin(np.deg2rad(7.5))), rel=1e-12)
    np.testing.assert_array_equal(area_weights(LAT[::-1]), w[::-1])  # any order


def test_cos_and_appa_weights_differ_at_the_poles_only_as_documented():
    np.testing.assert_allclose(cos_weights(LAT), np.clip(COS, 0, None), atol=1e-16)
    assert cos_weights(np.float32(30.0)).dtype == np.float32  # keeps the latitudes' dtype
    appa = appa_weights(LAT, 24)
    np.testing.assert_allclose(appa, np.clip(COS, 0, None) + 1 / 24, atol=1e-15)
    assert appa[0] == pytest.approx(1 / 24, abs=1e-15)  # a pole row weighs 1 / n_lon
    poles = appa_weights(LAT, 24, mode="poles-like-neighbours")
    assert (poles[0], poles[-1]) == (appa[1], appa[-2])
    np.testing.assert_array_equal(poles[1:-1], appa[1:-1])
    no_poles = LAT[1:-1]
    np.testing.assert_array_equal(
        appa_weights(no_poles, 24, mode="poles-like-neighbours"), appa_weights(no_poles, 24)
    )


def test_errors():
    with pytest.raises(ValueError, match="latitude must hold distinct values"):
        area_weights([10.0, 10.0])
    with pytest.raises(
        ValueError, match=r"latitude must be one-dimensional; found shape \(2, 2\)"
    ):
        area_weights(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="loss weights mode must be one of"):
        appa_weights(LAT, 24, mode="area")
