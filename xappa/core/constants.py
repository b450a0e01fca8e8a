r"""Physical constants of the Earth and its atmosphere, one documented value each.

Plain Python floats in SI units (no torch, no numpy), so that every layer can import them.
Every module that needs one of these values imports it from here; the public names they had
before (``xappa.verify.spectra.EARTH_RADIUS``, ``xappa.verify.physics.EARTH_RADIUS``,
``OMEGA``, ``GRAVITY`` and ``R_DRY`` there, ``xappa.state.units.STANDARD_GRAVITY``) are these
same objects.

==================== ================ ========== =============================================
name                 value            unit       source
==================== ================ ========== =============================================
``EARTH_RADIUS``     6,371,008.8      m          IUGG mean radius :math:`R_1 = (2a + b) / 3`
                                                 of the GRS80 ellipsoid (6,371,008.7714 m)
``EARTH_GM``         3.986004415e14   m3 s-2     geocentric gravitational constant (EGM96)
``OMEGA``            7.292115e-5      rad s-1    rotation rate, defining constant of GRS80
``STANDARD_GRAVITY`` 9.80665          m s-2      standard gravity :math:`g_n` (exact)
``R_DRY``            287.05           J kg-1 K-1 gas constant of dry air, :math:`R^* / M_d`
==================== ================ ========== =============================================

Why these values:

* **Earth radius.** A sphere that stands for the Earth should have the Earth's mean radius, and
  the IUGG mean radius is the geodetic convention for it (Moritz 2000). It is also the value
  of Appa's orbit model (``6371.0088 km``). Other codes use other spheres: ECMWF's IFS (which
  produced ERA5) uses 6,371,229 m, torch-harmonics' shallow-water solver (xappa's testbed)
  6,371,220 m, WeatherBench 2's spectra 6,367,500 m; these differ by at most 6e-4 relative,
  far below what the diagnostics that use the radius resolve. The shallow-water testbed keeps
  its solver's own planet (radius, rotation and gravity), which defines its data.
* **Rotation rate.** The sidereal rotation rate that GRS80 defines with the same ellipsoid;
  :math:`f = 2 \Omega \sin\varphi`.
* **Gravity.** Standard gravity (CGPM 1901), the value that defines geopotential height (WMO) and that
  ERA5's geopotential in ``m2 s-2`` is converted with.
* **Dry air.** The molar gas constant :math:`R^* = 8.314462618` J mol-1 K-1 (exact in the SI
  since 2019) over the molar mass of dry air :math:`M_d \approx 28.965` g mol-1: the
  customary 287.05 (IFS: 287.0597).

References
----------
* Moritz, H. (2000). Geodetic Reference System 1980. Journal of Geodesy 74, 128-133.
  https://doi.org/10.1007/s001900050278
* Lemoine, F. G. et al. (1998). The development of the joint NASA GSFC and NIMA geopotential
  model EGM96. NASA/TP-1998-206861.
* BIPM (2019). The International System of Units (SI), 9th ed. (standard acceleration of
  gravity; the exact gas constant).
"""

from __future__ import annotations

__all__ = ["EARTH_GM", "EARTH_RADIUS", "OMEGA", "R_DRY", "STANDARD_GRAVITY"]

EARTH_RADIUS = 6_371_008.8
"""Mean Earth radius in m (IUGG mean radius of the GRS80 ellipsoid)."""

EARTH_GM = 3.986004415e14
"""Geocentric gravitational constant :math:`GM` in m3 s-2 (EGM96)."""

OMEGA = 7.292115e-5
"""Earth's rotation rate in rad s-1 (GRS80)."""

STANDARD_GRAVITY = 9.80665
"""Standard gravity in m s-2 (exact); turns geopotential height into geopotential."""

R_DRY = 287.05
"""Gas constant of dry air in J kg-1 K-1."""
