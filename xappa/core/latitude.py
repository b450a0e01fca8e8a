r"""Latitude weights: one function per convention, and which use takes which.

On a regular latitude/longitude grid a row at latitude :math:`\varphi` covers an area
proportional to :math:`\cos\varphi`, so a plain mean over the grid cells over-counts the polar
rows. xappa weights rows in three ways, each chosen for its use:

.. list-table::
   :header-rows: 1
   :widths: 30 25 45

   * - use
     - weights
     - why
   * - verification: :mod:`xappa.verify.metrics`, :mod:`xappa.verify.physics`, the latitude means of
       :mod:`xappa.verify.spectra` and :mod:`xappa.verify.plot`
     - :func:`area_weights`: cell area :math:`\sin\varphi_+ - \sin\varphi_-`, mean 1
     - scores comparable with WeatherBench 2 (its weights); a row on a pole keeps the area
       of its half cell instead of zero
   * - standardization statistics, :func:`xappa.state.stats.compute_stats` with
       ``weighting="cos_lat"``
     - :func:`cos_weights`: :math:`\cos\varphi`, not normalised
     - an area mean of each channel (the default there is Appa's unweighted mean, which the
       published statistics use)
   * - the autoencoder's training loss and
       :func:`~xappa.train.autoencoder.reconstruction_rmse`
     - :func:`appa_weights`: :math:`\cos\varphi + 1 / n_{lon}`, not normalised
     - Appa's loss, so that an autoencoder trained here is trained like Appa's; the
       ``"poles-like-neighbours"`` variant stops the pole rows (weight :math:`1/n_{lon}`)
       from being learnt several times worse than the rest

A weighted mean divides by the sum of the weights, so a constant factor never matters; the
three conventions differ in the polar rows (area, zero, :math:`1/n_{lon}`) and, for Appa's,
by the added :math:`1/n_{lon}` everywhere. All take latitudes in degrees north, in any order,
as NumPy arrays (the callers convert), and return float64 arrays of the same shape (the
cosine weights keep the latitudes' float dtype, as the statistics always did).

References
----------
* Rasp et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
  global weather models. https://arxiv.org/abs/2308.15560
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["APPA_MODES", "appa_weights", "area_weights", "cos_weights"]

import numpy as np
from numpy.typing import ArrayLike

APPA_MODES = ("appa", "poles-like-neighbours")
"""The variants of :func:`appa_weights`: Appa's, or Appa's with each pole row weighted like
the row next to it."""


def area_weights(latitude: ArrayLike) -> np.ndarray:
    r"""Return WeatherBench 2's cell-area weights, normalised to mean 1.

    Each latitude is the centre of a cell bounded by the midpoints to its neighbours and by
    the poles; its weight is the cell area :math:`\sin\varphi_{+} - \sin\varphi_{-}`. Away
    from the poles this equals :math:`\cos\varphi` up to a constant; a row *at* a pole gets
    the area of its half cell instead of zero. Like WB2, the outer bounds are the poles, so
    the weights are meant for global grids.

    Parameters
    ----------
    latitude : array-like
        Distinct latitudes in degrees north, in any order, with shape ``(H,)``.

    Returns
    -------
    numpy.ndarray
        The float64 weights, with shape ``(H,)`` and mean 1.
    """
    lat = np.asarray(latitude, dtype=np.float64)
    if lat.ndim != 1:
        msg = f"latitude must be one-dimensional; found shape {lat.shape}"
        raise ValueError(msg)
    order = np.argsort(lat)
    phi = np.deg2rad(lat[order])
    if np.any(np.diff(phi) <= 0) or np.abs(phi).max() > np.pi / 2 + 1e-9:
        msg = "latitude must hold distinct values in [-90, 90]; found repeated or out of range"
        raise ValueError(msg)
    bounds = np.concatenate([[-np.pi / 2], (phi[:-1] + phi[1:]) / 2, [np.pi / 2]])
    area = np.empty_like(phi)
    area[order] = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    return area / area.mean()


def cos_weights(latitude: ArrayLike) -> np.ndarray:
    r"""Return :math:`\max(\cos\varphi, 0)`, not normalised.

    Parameters
    ----------
    latitude : array-like
        Latitudes in degrees north, any shape.

    Returns
    -------
    numpy.ndarray
        The weights, with the shape of ``latitude`` and its float dtype.
    """
    return np.cos(np.deg2rad(np.asarray(latitude))).clip(min=0.0)


def appa_weights(latitude: ArrayLike, n_lon: int, *, mode: str = "appa") -> np.ndarray:
    r"""Return Appa's loss weights :math:`\cos\varphi + 1 / n_{lon}`, not normalised.

    Parameters
    ----------
    latitude : array-like
        The latitudes :math:`\varphi` in degrees north, one per grid row, with shape ``(H,)``.
    n_lon : int
        The number of longitudes.
    mode : {"appa", "poles-like-neighbours"}
        ``"appa"``: :math:`\max(\cos\varphi, 0) + 1 / n_{lon}`. ``"poles-like-neighbours"``:
        the same, but a row on a pole (:math:`|\varphi| = 90`) gets the weight of the row
        next to it (grids without pole rows are unchanged).

    Returns
    -------
    numpy.ndarray
        The float64 weights, with shape ``(H,)``.
    """
    if mode not in APPA_MODES:
        msg = f"loss weights mode must be one of {list(APPA_MODES)}; found {mode!r}"
        raise ValueError(msg)
    lat = np.asarray(latitude, dtype=np.float64)
    weights = cos_weights(lat) + 1 / n_lon
    if mode == "poles-like-neighbours" and lat.size > 1:
        pole = np.abs(lat) >= 90.0 - 1e-6
        rows = np.arange(lat.size)
        neighbour = np.where(rows == 0, 1, rows - 1)  # the first row's neighbour is below
        weights = np.where(pole, weights[neighbour], weights)
    return weights
