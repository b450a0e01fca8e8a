r"""Power spectra of global fields: WB2's zonal energy spectrum and the spherical-harmonic one.

Two conventions are offered.

* :func:`zonal_energy_spectrum` follows WeatherBench 2's ``ZonalEnergySpectrum``: along each
  latitude circle of circumference :math:`C = 2\pi R\cos\varphi`, with
  :math:`F_k = \frac{1}{L}\sum_l f_l e^{-2\pi i k l / L}` (``norm="forward"``), the energy is
  :math:`S_0 = C|F_0|^2` and :math:`S_k = 2C|F_k|^2` for :math:`k > 0` (WB2 doubles the
  Nyquist term too). Then :math:`\sum_k S_k = \frac{C}{L}\sum_l f_l^2`, the discrete
  integral of :math:`f^2` around the circle. Coordinates: ``zonal_wavenumber`` :math:`k`,
  ``frequency`` :math:`k / C` (1/m) and ``wavelength`` :math:`C / k` (m), both per latitude.
* :func:`sh_power_spectrum` is the spherical-harmonic degree spectrum from
  ``torch_harmonics.RealSHT`` (orthonormal harmonics):
  :math:`E_l = |c_{l0}|^2 + 2\sum_{m>0} |c_{lm}|^2`, divided by :math:`4\pi` so that
  :math:`\sum_l E_l` is the area mean of :math:`f^2`. Appa's ``power_spectra.py`` summed over
  :math:`l` instead (a spectrum in the order :math:`m`); this sums over :math:`m` at fixed
  degree :math:`l`, whose wavelength is about :math:`2\pi R / \sqrt{l(l+1)}`.

References
----------
- Rasp et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
  global weather models. https://arxiv.org/abs/2308.15560
- Schaeffer (2013). Efficient spherical harmonic transforms aimed at pseudospectral
  numerical simulations. https://arxiv.org/abs/1202.6522
"""

from __future__ import annotations

__all__ = ["EARTH_RADIUS", "sh_power_spectrum", "spectra_by_source", "zonal_energy_spectrum"]

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import xarray as xr

from xappa.core.constants import EARTH_RADIUS
from xappa.verify.align import normalize_grid

T = TypeVar("T", xr.DataArray, xr.Dataset)


def _as_dataset(x: xr.DataArray | xr.Dataset) -> tuple[xr.Dataset, str | None]:
    if isinstance(x, xr.DataArray):
        name = x.name if x.name is not None else "__data__"
        return x.to_dataset(name=name), name
    return x, None


def _zonal_power(f: np.ndarray) -> np.ndarray:
    fk = np.fft.rfft(f, axis=-1, norm="forward")
    power = fk.real**2 + fk.imag**2
    power[..., 1:] *= 2.0
    return power


def zonal_energy_spectrum(x: T, *, radius: float = EARTH_RADIUS) -> T:
    """Return WB2's zonal energy spectrum along each latitude circle.

    Parameters
    ----------
    x : xarray.DataArray or xarray.Dataset
        Fields with ``latitude`` and ``longitude`` dimensions on a regular longitude grid
        that covers the full circle (any longitude convention).
    radius : float, default :data:`~xappa.core.constants.EARTH_RADIUS`
        Sphere radius in m.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Spectrum with ``longitude`` replaced by ``zonal_wavenumber`` (0 to ``L // 2``), and
        ``frequency`` and ``wavelength`` coordinates on ``(latitude, zonal_wavenumber)``.
        Units are ``m`` times the square of the input units.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lon = np.arange(0, 360, 30.0)
    >>> f = xr.DataArray(
    ...     np.cos(np.deg2rad(3 * lon))[None], dims=("latitude", "longitude"),
    ...     coords={"latitude": [0.0], "longitude": lon},
    ... )
    >>> int(zonal_energy_spectrum(f).isel(latitude=0).argmax("zonal_wavenumber"))
    3
    """
    ds, name = _as_dataset(x)
    ds = normalize_grid(ds)
    lon = ds["longitude"].values
    step = np.diff(lon)
    if lon.size < 2 or np.abs(step - step[0]).max() > 1e-3 or abs(step[0] * lon.size - 360) > 1e-3:
        msg = (
            "longitude must be regular and cover 360 degrees; found "
            f"{lon.size} values from {lon.min()} to {lon.max()}"
        )
        raise ValueError(msg)
    nk = lon.size // 2 + 1
    if ds.chunks and ds.chunks.get("longitude") and len(ds.chunks["longitude"]) > 1:
        ds = ds.chunk(longitude=-1)
    spec = xr.apply_ufunc(
        _zonal_power,
        ds,
        input_core_dims=[["longitude"]],
        output_core_dims=[["zonal_wavenumber"]],
        dask="parallelized",
        dask_gufunc_kwargs={"output_sizes": {"zonal_wavenumber": nk}},
        output_dtypes=[np.float64],
        keep_attrs=False,
    )
    circumference = 2 * np.pi * radius * np.cos(np.deg2rad(ds["latitude"]))
    k = xr.DataArray(np.arange(nk), dims="zonal_wavenumber")
    with np.errstate(divide="ignore"):
        wavelength = circumference / k
    spec = (spec * circumference).assign_coords(
        zonal_wavenumber=k.values,
        frequency=(k / circumference).assign_attrs(units="1 / m", long_name="zonal frequency"),
        wavelength=wavelength.assign_attrs(units="m", long_name="zonal wavelength"),
    )
    for v in spec.data_vars:
        units = ds[v].attrs.get("units")
        spec[v].attrs = {
            "long_name": f"zonal energy spectrum of {v}",
            "units": f"m ({units})**2" if units else "m",
        }
    return spec[name] if name is not None else spec


def _detect_grid(lat: np.ndarray) -> str:
    if np.isclose(abs(lat[0]), 90.0):
        return "equiangular"
    import torch_harmonics.quadrature as quad

    nodes = quad.legendre_gauss_weights(lat.size)[0]
    if np.allclose(np.sort(np.rad2deg(np.arcsin(nodes))), np.sort(lat), atol=1e-4):
        return "legendre-gauss"
    msg = (
        "cannot tell the grid: latitude must include the poles (equiangular) or be "
        f"Gauss-Legendre; found {lat.size} values from {lat.min()} to {lat.max()}"
    )
    raise ValueError(msg)


def sh_power_spectrum(x: T, *, grid: str | None = None) -> T:
    r"""Return the spherical-harmonic degree spectrum :math:`E_l` of global fields.

    :math:`E_l = (|c_{l0}|^2 + 2 \sum_{m=1}^{l} |c_{lm}|^2) / 4\pi` with :math:`c_{lm}` the
    orthonormal coefficients of ``torch_harmonics.RealSHT``; :math:`\sum_l E_l` equals the
    area mean of :math:`f^2` (up to truncation).

    Parameters
    ----------
    x : xarray.DataArray or xarray.Dataset
        Global fields with ``latitude`` (either order) and ``longitude`` dimensions.
    grid : {"equiangular", "legendre-gauss"}, optional
        The latitude grid; by default, ``"equiangular"`` when the latitudes include the
        poles and ``"legendre-gauss"`` when they are Gauss-Legendre nodes.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Spectrum with ``(latitude, longitude)`` replaced by ``degree`` (0 to ``nlat - 1``).
        Units are the square of the input units.
    """
    import torch
    from torch_harmonics import RealSHT

    ds, name = _as_dataset(x)
    ds = normalize_grid(ds).sortby("latitude", ascending=False)
    lat = ds["latitude"].values
    grid = grid or _detect_grid(lat)
    nlat, nlon = lat.size, ds.sizes["longitude"]
    sht = RealSHT(nlat, nlon, grid=grid).double()
    nl = sht.lmax

    def power(f: np.ndarray) -> np.ndarray:
        c = sht(torch.from_numpy(np.ascontiguousarray(f, dtype=np.float64)))
        p = c.real**2 + c.imag**2
        p[..., 1:] *= 2.0
        return (p.sum(-1) / (4 * np.pi)).numpy()

    if ds.chunks:
        ds = ds.chunk(latitude=-1, longitude=-1)
    spec = xr.apply_ufunc(
        power,
        ds,
        input_core_dims=[["latitude", "longitude"]],
        output_core_dims=[["degree"]],
        dask="parallelized",
        dask_gufunc_kwargs={"output_sizes": {"degree": nl}},
        output_dtypes=[np.float64],
    ).assign_coords(degree=np.arange(nl))
    for v in spec.data_vars:
        units = ds[v].attrs.get("units")
        spec[v].attrs = {
            "long_name": f"spherical-harmonic power spectrum of {v}",
            "units": f"({units})**2" if units else "1",
        }
    return spec[name] if name is not None else spec


def spectra_by_source(
    sources: Mapping[str, xr.DataArray | xr.Dataset], *, kind: str = "zonal"
) -> xr.Dataset:
    """Return the spectra of several fields side by side along a ``source`` dimension.

    Parameters
    ----------
    sources : mapping of str to xarray.DataArray or xarray.Dataset
        For example ``{"truth": era5, "reconstruction": ae_out, "sample": prior_draw}``,
        all on the same grid.
    kind : {"zonal", "sh"}, default "zonal"
        :func:`zonal_energy_spectrum` (mean over latitude, area-weighted) or
        :func:`sh_power_spectrum`.

    Returns
    -------
    xarray.Dataset
        Spectra with a ``source`` dimension labelled by the mapping's keys.
    """
    from xappa.verify.metrics import lat_weights

    if kind not in ("zonal", "sh"):
        msg = f"kind must be 'zonal' or 'sh'; found {kind!r}"
        raise ValueError(msg)
    out = []
    for label, field in sources.items():
        ds, _ = _as_dataset(field)
        if kind == "zonal":
            spec = zonal_energy_spectrum(ds)
            spec = spec.drop_vars(["frequency", "wavelength"])
            spec = spec.weighted(lat_weights(spec["latitude"])).mean("latitude")
        else:
            spec = sh_power_spectrum(ds)
        out.append(spec.expand_dims(source=[label]))
    return xr.concat(out, dim="source", join="outer")
