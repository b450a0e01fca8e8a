"""Tests of xappa.verify.spectra: peaks, normalisation, smoothing loss, laziness."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch
import xarray as xr
from torch_harmonics import InverseRealSHT

from xappa.verify import spectra
from xappa.verify.metrics import lat_weights

NLAT, NLON = 17, 32
LAT = np.linspace(90.0, -90.0, NLAT)
LON = np.arange(NLON) * 360.0 / NLON


def _field(values: np.ndarray, lon: np.ndarray = LON) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"latitude": LAT, "longitude": lon},
        name="z",
        attrs={"units": "m2 s-2"},
    )


def _wave(k: int) -> xr.DataArray:
    lon = np.deg2rad(LON)
    values = np.cos(k * lon + 0.3)[None, None, :] * np.cos(np.deg2rad(LAT))[None, :, None]
    return _field(values)


def _random_sh(seed: int = 0, lband: int = 7) -> tuple[np.ndarray, xr.DataArray]:
    """Random coefficients up to degree ``lband`` (m <= l) and their field on the grid."""
    rng = np.random.default_rng(seed)
    lmax, mmax = NLAT, NLON // 2 + 1
    coeffs = rng.normal(size=(lmax, mmax)) + 1j * rng.normal(size=(lmax, mmax))
    coeffs *= np.tril(np.ones((lmax, mmax))) * (np.arange(lmax) <= lband)[:, None]
    coeffs[:, 0] = coeffs[:, 0].real
    return coeffs, _synth(coeffs)


def _synth(coeffs: np.ndarray) -> xr.DataArray:
    isht = InverseRealSHT(NLAT, NLON, lmax=NLAT, mmax=NLON // 2 + 1, grid="equiangular")
    return _field(isht.double()(torch.from_numpy(coeffs)).numpy()[None])


def _running_mean(f: xr.DataArray) -> xr.DataArray:
    return (f.roll(longitude=1) + f + f.roll(longitude=-1)) / 3


@pytest.mark.parametrize("k", [1, 4, 9], ids=["k1", "k4", "k9"])
def test_zonal_spectrum_peaks_at_wavenumber(k: int) -> None:
    spec = spectra.zonal_energy_spectrum(_wave(k)).isel(time=0, latitude=NLAT // 2)
    assert int(spec.argmax("zonal_wavenumber")) == k


def test_zonal_spectrum_wb2_normalisation() -> None:
    f = _wave(3) + 2.0
    spec = spectra.zonal_energy_spectrum(f, radius=1.0).isel(time=0)
    circ = 2 * np.pi * np.cos(np.deg2rad(LAT))
    # S_0 = C * mean^2, S_k = 2 C |F_k|^2 with |F_3| = cos(lat) / 2
    np.testing.assert_allclose(spec.sel(zonal_wavenumber=0), circ * 4.0, atol=1e-12)
    np.testing.assert_allclose(
        spec.sel(zonal_wavenumber=3), circ * 2 * (np.cos(np.deg2rad(LAT)) / 2) ** 2, atol=1e-12
    )
    # Parseval: sum_k S_k = (C / L) sum_l f_l^2
    parseval = circ / NLON * (f.isel(time=0) ** 2).sum("longitude")
    np.testing.assert_allclose(spec.sum("zonal_wavenumber"), parseval, rtol=1e-12)
    eq = spec.sel(latitude=0.0)
    np.testing.assert_allclose(eq["wavelength"].sel(zonal_wavenumber=4), 2 * np.pi / 4)
    assert spec.attrs["units"] == "m (m2 s-2)**2"


def test_zonal_spectrum_any_longitude_convention() -> None:
    f = _wave(2)
    shifted = f.assign_coords(longitude=(LON + 180) % 360 - 180).sortby("longitude")
    xr.testing.assert_allclose(
        spectra.zonal_energy_spectrum(shifted), spectra.zonal_energy_spectrum(f)
    )


def test_smoothing_loses_small_scales() -> None:
    _, rough = _random_sh()
    smooth = _running_mean(_running_mean(rough))
    both = spectra.spectra_by_source({"truth": rough, "smoothed": smooth})
    ratio = (both["z"].sel(source="smoothed") / both["z"].sel(source="truth")).isel(time=0)
    k = ratio["zonal_wavenumber"].values[1:8]  # the field has no energy beyond k = 7
    transfer = ((1 + 2 * np.cos(2 * np.pi * k / NLON)) / 3) ** 4
    np.testing.assert_allclose(ratio.isel(zonal_wavenumber=slice(1, 8)), transfer, rtol=1e-6)
    assert float(ratio.sel(zonal_wavenumber=1)) > 0.9
    assert (ratio.sel(zonal_wavenumber=slice(6, 7)) < 0.2).all()


def test_sh_smoothing_loses_small_scales() -> None:
    coeffs, rough = _random_sh()
    damping = np.exp(-((np.arange(NLAT) / 3.0) ** 2))[:, None]
    smooth = _synth(coeffs * damping)
    sh = spectra.spectra_by_source({"truth": rough, "smoothed": smooth}, kind="sh")
    ratio = (sh["z"].sel(source="smoothed") / sh["z"].sel(source="truth")).isel(time=0)
    np.testing.assert_allclose(ratio.sel(degree=slice(0, 7)), damping[:8, 0] ** 2, rtol=1e-6)
    assert float(ratio.sel(degree=1)) > 0.75
    assert (ratio.sel(degree=slice(4, 7)) < 0.2).all()


def test_sh_spectrum_degree_convention() -> None:
    coeffs, field = _random_sh(seed=1)
    spec = spectra.sh_power_spectrum(field).isel(time=0)
    assert spec.sizes["degree"] == NLAT
    p = np.abs(coeffs) ** 2
    expected = (p[:, 0] + 2 * p[:, 1:].sum(1)) / (4 * np.pi)
    np.testing.assert_allclose(spec.values[:8], expected[:8], rtol=1e-6)
    np.testing.assert_allclose(spec.values[8:], 0.0, atol=1e-3 * expected.max())
    # sum_l E_l is the area mean of f^2 (cell-area quadrature, so only approximately)
    mean_sq = (field.isel(time=0) ** 2).weighted(lat_weights(field["latitude"])).mean()
    np.testing.assert_allclose(float(spec.sum()), float(mean_sq), rtol=0.05)
    # a pure degree-2 zonal harmonic P_2(sin lat) puts all power at l = 2
    mu = np.sin(np.deg2rad(LAT))
    p2 = _field(np.broadcast_to((1.5 * mu**2 - 0.5)[None, :, None], (1, NLAT, NLON)).copy())
    e = spectra.sh_power_spectrum(p2).isel(time=0)
    assert int(e.argmax("degree")) == 2
    assert float(e.sel(degree=2) / e.sum()) > 0.999


@pytest.mark.parametrize("kind", ["zonal", "sh"], ids=["zonal", "sh"])
def test_dask_is_lazy_and_equal(kind: str) -> None:
    _, rough = _random_sh()
    f = xr.concat([rough, 2 * rough], dim="time")
    fn = spectra.zonal_energy_spectrum if kind == "zonal" else spectra.sh_power_spectrum
    lazy = fn(f.chunk(time=1, longitude=8))
    assert dask.is_dask_collection(lazy)
    xr.testing.assert_allclose(lazy.compute(), fn(f))


def test_dataset_input() -> None:
    f = _wave(2)
    out = spectra.zonal_energy_spectrum(f.to_dataset())
    xr.testing.assert_allclose(out["z"], spectra.zonal_energy_spectrum(f))


def test_errors() -> None:
    f = _wave(2).isel(longitude=slice(0, 20))
    with pytest.raises(ValueError, match="longitude must be regular and cover 360"):
        spectra.zonal_energy_spectrum(f)
    g = _wave(2).isel(latitude=slice(1, -1))
    with pytest.raises(ValueError, match="cannot tell the grid"):
        spectra.sh_power_spectrum(g)
    with pytest.raises(ValueError, match="kind must be"):
        spectra.spectra_by_source({"a": _wave(1)}, kind="wavelet")
