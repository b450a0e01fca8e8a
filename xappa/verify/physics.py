r"""Physical consistency checks: geostrophic balance, hydrostatic thickness, mass drift.

These are the diagnostics of Appa's ``experiments/physics/physical_consistency.py``, with its
quirks fixed: the zonal derivative carries the :math:`1/(R\cos\varphi)` metric, the
geostrophic wind is the textbook one, :math:`u_g = -\frac{1}{fR}\partial_\varphi\Phi`,
:math:`v_g = \frac{1}{fR\cos\varphi}\partial_\lambda\Phi` with :math:`f = 2\Omega\sin\varphi`,
and the tropics (where :math:`f \to 0`) are left out. Variables are looked up by their WB2
names first, then by short names (``z``, ``u``, ``v``, ``t``).

References
----------
- Holton and Hakim (2013). An Introduction to Dynamic Meteorology, 5th ed., sections 3.1-3.2
  (hypsometric equation, geostrophic wind). https://doi.org/10.1016/C2009-0-63394-8
- Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for Global
  Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "EARTH_RADIUS",
    "GRAVITY",
    "OMEGA",
    "R_DRY",
    "geostrophic_balance",
    "geostrophic_wind",
    "hydrostatic_consistency",
    "mass_drift",
]

from collections.abc import Sequence

import numpy as np
import xarray as xr

from xappa.core.constants import EARTH_RADIUS, OMEGA, R_DRY
from xappa.core.constants import STANDARD_GRAVITY as GRAVITY
from xappa.verify.metrics import lat_weights

_ALIASES = {
    "geopotential": ("geopotential", "z"),
    "u": ("u_component_of_wind", "u"),
    "v": ("v_component_of_wind", "v"),
    "temperature": ("temperature", "t"),
}


def _find(ds: xr.Dataset, role: str, name: str | None) -> xr.DataArray:
    candidates = (name,) if name is not None else _ALIASES[role]
    for c in candidates:
        if c in ds.data_vars:
            return ds[c]
    msg = f"dataset has no {role} variable; looked for {list(candidates)}, found {list(ds)}"
    raise KeyError(msg)


def geostrophic_wind(
    geopotential: xr.DataArray, *, radius: float = EARTH_RADIUS, omega: float = OMEGA
) -> tuple[xr.DataArray, xr.DataArray]:
    r"""Return the geostrophic wind :math:`(u_g, v_g)` from a geopotential field.

    Centred differences: periodic in longitude, one-sided at the latitude edges. Where
    :math:`f = 0` (the equator) the result is infinite or NaN; mask the tropics before use.

    Parameters
    ----------
    geopotential : xarray.DataArray
        Geopotential :math:`\Phi` in m2/s2 on ``latitude`` and a regular full-circle
        ``longitude`` (degrees).
    radius : float, default :data:`~xappa.core.constants.EARTH_RADIUS`
        Sphere radius in m.
    omega : float, default :data:`~xappa.core.constants.OMEGA`
        Rotation rate in rad/s.

    Returns
    -------
    tuple of xarray.DataArray
        ``(u_g, v_g)`` in m/s, on the input's coordinates.
    """
    phi = np.deg2rad(geopotential["latitude"])
    f = 2 * omega * np.sin(phi)
    dlon = np.deg2rad(float(geopotential["longitude"].diff("longitude").mean()))
    east = geopotential.roll(longitude=-1, roll_coords=False)
    west = geopotential.roll(longitude=1, roll_coords=False)
    dphi_dlon = (east - west) / (2 * dlon)
    dphi_dlat = geopotential.differentiate("latitude") * (180 / np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        ug = -dphi_dlat / (f * radius)
        vg = dphi_dlon / (f * radius * np.cos(phi))
    ug.attrs = {"long_name": "geostrophic eastward wind", "units": "m s-1"}
    vg.attrs = {"long_name": "geostrophic northward wind", "units": "m s-1"}
    return ug.rename("u_geostrophic"), vg.rename("v_geostrophic")


def geostrophic_balance(
    ds: xr.Dataset,
    *,
    min_latitude: float = 20.0,
    max_latitude: float = 85.0,
    reduce: Sequence[str] = ("latitude", "longitude"),
    geopotential: str | None = None,
    u: str | None = None,
    v: str | None = None,
) -> xr.Dataset:
    r"""Compare the wind with the geostrophic wind outside the tropics.

    Over the points with ``min_latitude <= |lat| <= max_latitude``, area-weighted:

    - ``correlation``: pattern correlation between :math:`(u, v)` and :math:`(u_g, v_g)`,
      both components together, :math:`\langle \mathbf{V}\cdot\mathbf{V}_g\rangle /
      \sqrt{\langle|\mathbf{V}|^2\rangle\langle|\mathbf{V}_g|^2\rangle}`;
    - ``relative_error``: :math:`\sqrt{\langle|\mathbf{V} - \mathbf{V}_g|^2\rangle /
      \langle|\mathbf{V}|^2\rangle}`;
    - ``cos_angle``: mean cosine of the angle between the two vectors.

    Parameters
    ----------
    ds : xarray.Dataset
        Geopotential (m2/s2) and wind components (m/s) on the same grid, any other dims.
    min_latitude, max_latitude : float, default 20 and 85
        The band kept in each hemisphere, in degrees.
    reduce : sequence of str, default ("latitude", "longitude")
        Dimensions to average over; add ``"time"`` to average in time too.
    geopotential, u, v : str, optional
        Variable names (default: WB2 names, then ``z``, ``u``, ``v``).

    Returns
    -------
    xarray.Dataset
        ``correlation``, ``relative_error`` and ``cos_angle``, with the dims not reduced.
    """
    z = _find(ds, "geopotential", geopotential)
    uu, vv = _find(ds, "u", u), _find(ds, "v", v)
    ug, vg = geostrophic_wind(z)
    band = (abs(z["latitude"]) >= min_latitude) & (abs(z["latitude"]) <= max_latitude)
    weights = lat_weights(z["latitude"]) * band

    def mean(x: xr.DataArray) -> xr.DataArray:
        return x.where(band, 0.0).weighted(weights).mean(list(reduce))

    dot = uu * ug + vv * vg
    speed2, gspeed2 = uu**2 + vv**2, ug**2 + vg**2
    out = xr.Dataset(
        {
            "correlation": mean(dot) / np.sqrt(mean(speed2) * mean(gspeed2)),
            "relative_error": np.sqrt(mean((uu - ug) ** 2 + (vv - vg) ** 2) / mean(speed2)),
            "cos_angle": mean(dot / np.sqrt(speed2 * gspeed2)),
        }
    )
    out.attrs["description"] = (
        f"wind vs geostrophic wind for {min_latitude} <= |latitude| <= {max_latitude}"
    )
    return out


def hydrostatic_consistency(
    ds: xr.Dataset,
    *,
    reduce: Sequence[str] = ("latitude", "longitude"),
    geopotential: str | None = None,
    temperature: str | None = None,
) -> xr.Dataset:
    r"""Compare layer thicknesses from geopotential with the hypsometric estimate.

    For each pair of adjacent pressure levels :math:`p_t < p_b`, the thickness from the
    geopotential, :math:`(\Phi_t - \Phi_b)/g`, is compared with
    :math:`\frac{R_d}{g}\int T\,d\ln p \approx \frac{R_d}{g}\frac{T_t + T_b}{2}\ln(p_b/p_t)`
    (trapezoid in :math:`\ln p`). Temperature stands in for virtual temperature, so moist
    lower layers show a small negative bias (about 0.5%) even in a consistent analysis.

    Parameters
    ----------
    ds : xarray.Dataset
        Geopotential (m2/s2) and temperature (K) with a ``level`` dimension in hPa.
    reduce : sequence of str, default ("latitude", "longitude")
        Dimensions to average over (area-weighted).
    geopotential, temperature : str, optional
        Variable names (default: WB2 names, then ``z``, ``t``).

    Returns
    -------
    xarray.Dataset
        Over a ``layer`` dimension (coords ``p_top``, ``p_bottom`` in hPa):
        ``thickness`` and ``thickness_hypsometric`` (mean, m), ``bias`` and ``rmse``
        (m) and ``relative_rmse`` of the geopotential thickness minus the estimate.
    """
    z = _find(ds, "geopotential", geopotential)
    t = _find(ds, "temperature", temperature)
    if "level" not in z.dims or z.sizes["level"] < 2:
        msg = f"geopotential needs a 'level' dimension with 2 or more levels; found {z.dims}"
        raise ValueError(msg)
    z, t = z.sortby("level"), t.sortby("level")
    p = z["level"].values.astype(np.float64)
    top = {"level": slice(None, -1)}
    bottom = {"level": slice(1, None)}
    layer = {"layer": np.arange(p.size - 1)}

    def pair(x: xr.DataArray, sel: dict) -> xr.DataArray:
        return x.isel(sel).rename(level="layer").assign_coords(layer)

    thick = (pair(z, top) - pair(z, bottom)) / GRAVITY
    log_ratio = xr.DataArray(np.log(p[1:] / p[:-1]), dims="layer", coords=layer)
    hyps = R_DRY / GRAVITY * 0.5 * (pair(t, top) + pair(t, bottom)) * log_ratio
    weights = lat_weights(z["latitude"]) if "latitude" in reduce else None

    def mean(x: xr.DataArray) -> xr.DataArray:
        return x.weighted(weights).mean(list(reduce)) if weights is not None else x.mean(reduce)

    err = thick - hyps
    out = xr.Dataset(
        {
            "thickness": mean(thick).assign_attrs(units="m"),
            "thickness_hypsometric": mean(hyps).assign_attrs(units="m"),
            "bias": mean(err).assign_attrs(units="m"),
            "rmse": np.sqrt(mean(err**2)).assign_attrs(units="m"),
            "relative_rmse": np.sqrt(mean(err**2) / mean(thick**2)).assign_attrs(units="1"),
        }
    )
    return out.assign_coords(
        p_top=("layer", p[:-1], {"units": "hPa"}), p_bottom=("layer", p[1:], {"units": "hPa"})
    )


def mass_drift(
    ds: xr.Dataset | xr.DataArray,
    *,
    geopotential: str | None = None,
    time_dim: str = "time",
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    r"""Return the drift of the area-weighted global mean geopotential over time.

    For the shallow-water testbed the geopotential :math:`\Phi = g h` is proportional to the
    fluid depth, so its global mean is the total mass and must stay constant.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Geopotential on ``latitude``/``longitude``, or a Dataset that holds it.
    geopotential : str, optional
        Variable name in a Dataset (default: ``geopotential``, then ``z``).
    time_dim : str, default "time"
        The time dimension.
    weights : xarray.DataArray, optional
        Area weights over ``latitude`` (default: WB2's cell-area weights). Pass the model's
        own quadrature weights to check conservation to round-off, for example
        :func:`xappa.testbeds.shallow_water.area_weights` for the shallow-water testbed (WB2
        weights are only accurate to about 1e-5 relative on its grid with poles).

    Returns
    -------
    xarray.Dataset
        ``global_mean`` per time and ``relative_drift`` :math:`(m(t) - m(t_0)) / m(t_0)`.
    """
    z = ds if isinstance(ds, xr.DataArray) else _find(ds, "geopotential", geopotential)
    if time_dim not in z.dims:
        msg = f"geopotential is missing dimension {time_dim!r}; found {list(z.dims)}"
        raise ValueError(msg)
    w = lat_weights(z["latitude"]) if weights is None else weights
    m = z.weighted(w).mean(["latitude", "longitude"])
    m0 = m.isel({time_dim: 0})
    return xr.Dataset(
        {
            "global_mean": m.assign_attrs(z.attrs),
            "relative_drift": ((m - m0) / m0).assign_attrs(units="1"),
        }
    )
