"""Tests of xappa.verify.physics on analytic balanced fields."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xappa.verify import physics

LAT = np.linspace(90.0, -90.0, 73)
LON = np.arange(0.0, 360.0, 2.5)
PHI, LAM = np.meshgrid(np.deg2rad(LAT), np.deg2rad(LON), indexing="ij")
R, OMEGA = physics.EARTH_RADIUS, physics.OMEGA


def _balanced(u0: float = 20.0, b: float = 2e4) -> xr.Dataset:
    """Solid-body zonal flow plus a zonal wave, with the geopotential in exact balance."""
    z = 5.5e4 - OMEGA * R * u0 * np.sin(PHI) ** 2 + b * np.sin(2 * LAM) * np.cos(PHI) ** 2
    u = u0 * np.cos(PHI)
    f = 2 * OMEGA * np.sin(PHI)
    with np.errstate(divide="ignore", invalid="ignore"):
        # -(1/(fR)) d/dphi of the wave; (1/(fR cos)) d/dlambda of it
        u = u + b * np.sin(2 * LAM) * 2 * np.cos(PHI) * np.sin(PHI) / (f * R)
        v = 2 * b * np.cos(2 * LAM) * np.cos(PHI) ** 2 / (f * R * np.cos(PHI))
    dims = ("latitude", "longitude")
    return xr.Dataset(
        {
            "geopotential": (dims, z),
            "u_component_of_wind": (dims, u),
            "v_component_of_wind": (dims, v),
        },
        coords={"latitude": LAT, "longitude": LON},
    )


def test_geostrophic_wind_matches_analytic() -> None:
    ds = _balanced()
    ug, vg = physics.geostrophic_wind(ds["geopotential"])
    band = (abs(ds.latitude) >= 20) & (abs(ds.latitude) <= 80)
    scale = float(np.sqrt(ds.u_component_of_wind**2 + ds.v_component_of_wind**2).where(band).max())
    assert float(abs(ug - ds.u_component_of_wind).where(band).max()) < 0.01 * scale
    assert float(abs(vg - ds.v_component_of_wind).where(band).max()) < 0.01 * scale


def test_geostrophic_balance_scores() -> None:
    ds = _balanced()
    good = physics.geostrophic_balance(ds)
    assert float(good["correlation"]) > 0.999
    assert float(good["relative_error"]) < 0.01
    assert float(good["cos_angle"]) > 0.999
    rng = np.random.default_rng(0)
    noisy = ds.assign(u_component_of_wind=ds.u_component_of_wind + rng.normal(size=PHI.shape) * 30)
    bad = physics.geostrophic_balance(noisy)
    assert float(bad["relative_error"]) > 0.3 and float(bad["correlation"]) < 0.95


def test_geostrophic_balance_short_names_and_time() -> None:
    ds = _balanced().rename(geopotential="z", u_component_of_wind="u", v_component_of_wind="v")
    ds = xr.concat([ds, ds], dim="time")
    out = physics.geostrophic_balance(ds)
    assert out["correlation"].dims == ("time",)
    out = physics.geostrophic_balance(ds, reduce=["time", "latitude", "longitude"])
    assert out["correlation"].dims == ()


def _isothermal(t0: float = 250.0, offset: float = 0.0) -> xr.Dataset:
    levels = np.array([1000.0, 850.0, 500.0, 250.0])
    z = 1000.0 - physics.R_DRY * t0 * np.log(levels / 1000.0)
    shape = (levels.size, 5, 8)
    zz = np.broadcast_to(z[:, None, None], shape).copy()
    zz[2:] += offset
    return xr.Dataset(
        {
            "geopotential": (("level", "latitude", "longitude"), zz),
            "temperature": (("level", "latitude", "longitude"), np.full(shape, t0)),
        },
        coords={
            "level": levels,
            "latitude": np.linspace(80, -80, 5),
            "longitude": np.arange(0, 360, 45.0),
        },
    )


def test_hydrostatic_consistency_isothermal() -> None:
    out = physics.hydrostatic_consistency(_isothermal())
    assert out.sizes["layer"] == 3
    np.testing.assert_allclose(out["p_top"], [250, 500, 850])
    np.testing.assert_allclose(out["bias"], 0.0, atol=1e-9)
    expected = physics.R_DRY * 250 / physics.GRAVITY * np.log([500 / 250, 850 / 500, 1000 / 850])
    np.testing.assert_allclose(out["thickness_hypsometric"], expected)
    # raising the 500 hPa and 250 hPa surfaces thickens only the 850-500 layer
    shifted = physics.hydrostatic_consistency(_isothermal(offset=98.0665))
    np.testing.assert_allclose(shifted["bias"], [0.0, 10.0, 0.0], atol=1e-9)


def test_hydrostatic_needs_levels() -> None:
    ds = _isothermal().isel(level=[0])
    with pytest.raises(ValueError, match="2 or more levels"):
        physics.hydrostatic_consistency(ds)
    with pytest.raises(KeyError, match="no temperature variable"):
        physics.hydrostatic_consistency(_isothermal().drop_vars("temperature"))


def test_mass_drift() -> None:
    base = _balanced()["geopotential"]
    wave = 1e3 * np.cos(3 * LAM) * np.cos(PHI)  # zero global mean
    z = xr.concat([base, base + wave, base * 1.01], dim="time")
    out = physics.mass_drift(z)
    np.testing.assert_allclose(out["relative_drift"], [0.0, 0.0, 0.01], atol=1e-12)
    with pytest.raises(ValueError, match="missing dimension 'time'"):
        physics.mass_drift(base)


def test_mass_drift_on_shallow_water_with_exact_weights() -> None:
    from xappa.testbeds.shallow_water import area_weights, simulate

    ds = simulate(trajectories=1, days=1, nlat=16, nlon=32, spinup_days=0).isel(trajectory=0)
    exact = physics.mass_drift(ds.astype("float64"), weights=area_weights(ds))
    assert float(abs(exact["relative_drift"]).max()) < 1e-6
