r"""Verification metrics on xarray objects, after WeatherBench 2.

Every function takes :class:`xarray.DataArray` or :class:`xarray.Dataset` inputs that are
already aligned (see :func:`xappa.align.align`), reduces the dimensions named by ``reduce``
and keeps all the others (``level``, ``lead``, ``prediction_timedelta``, ...). By default
``reduce`` is every dimension among ``time``, ``latitude`` and ``longitude`` that the input
has. Nothing is computed: dask-backed inputs give dask-backed results.

Averages over ``latitude`` use WeatherBench 2's cell-area weights (:func:`lat_weights`);
an optional ``region`` mask (:func:`region_mask`) multiplies these weights. Ensemble
metrics take the members along ``member_dim`` (``"member"`` by default).

**Missing values (NaN).** Every metric follows one policy, WeatherBench 2's evaluation with
``skipna=True``: a NaN is a missing value, never a number. A point (one time, level and grid
cell) is missing when the truth is NaN there, or the prediction, or any member of an
ensemble, or the climatology (for :func:`acc`); NaN propagates along the member dimension,
as in WB2's ensemble metrics. A missing point is left out of every term of a metric alike:
the numerator and the denominator of :func:`acc`, the spread and the skill of
:func:`spread_skill_ratio`, every rank of :func:`rank_histogram`, both terms of
:func:`crps`. The averages over ``reduce`` are then taken over the remaining points, their
weights renormalised, so a field that is NaN over land (sea-surface temperature) is scored
over the sea. A score is NaN only where no point is left. :func:`mask_missing` applies the
policy; :func:`valid_weight` gives the total weight of the points that are scored.

References
----------
- Rasp et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
  global weather models. https://arxiv.org/abs/2308.15560
- Zamo and Naveau (2018). Estimation of the continuous ranked probability score with
  limited information and applications to ensemble weather forecasts.
  https://doi.org/10.1007/s11004-017-9709-7
"""

from __future__ import annotations

__all__ = [
    "REGIONS",
    "acc",
    "bias",
    "crps",
    "ensemble_mean_rmse",
    "lat_weights",
    "mae",
    "mask_missing",
    "mse",
    "rank_histogram",
    "region_mask",
    "rmse",
    "spread",
    "spread_skill",
    "spread_skill_ratio",
    "valid_weight",
]

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from xappa.core.latitude import area_weights

T = TypeVar("T", xr.DataArray, xr.Dataset)

DEFAULT_REDUCE = ("time", "latitude", "longitude")

#: Latitude bands and surface types accepted by :func:`region_mask` (bands as in WB2).
REGIONS = (
    "global",
    "tropics",
    "extratropics",
    "northern_extratropics",
    "southern_extratropics",
    "land",
    "sea",
)


def lat_weights(latitude: xr.DataArray) -> xr.DataArray:
    r"""Return WeatherBench 2's area weights for a latitude coordinate.

    Each latitude is the centre of a cell bounded by the midpoints to its neighbours and by
    the poles; its weight is the cell area :math:`\sin\varphi_{+} - \sin\varphi_{-}`,
    normalised to mean 1 (:func:`xappa.core.latitude.area_weights`, whose table says which
    weights each part of xappa uses). Away from the poles this equals :math:`\cos\varphi` up
    to a constant; a row *at* a pole gets the area of its half cell instead of zero. The
    latitudes may come in any order. Like WB2, the outer bounds are the poles, so the
    weights are meant for global grids.

    Parameters
    ----------
    latitude : xarray.DataArray
        One-dimensional latitude coordinate, in degrees north.

    Returns
    -------
    xarray.DataArray
        Weights with mean 1, on the same coordinate.

    Examples
    --------
    >>> import xarray as xr
    >>> lat = xr.DataArray([90.0, 0.0, -90.0], dims="latitude", name="latitude")
    >>> lat_weights(lat).values.round(3)
    array([0.439, 2.121, 0.439])
    """
    if latitude.ndim != 1:
        msg = f"latitude must be one-dimensional; found dims {list(latitude.dims)}"
        raise ValueError(msg)
    return xr.DataArray(
        area_weights(latitude.values),
        dims=latitude.dims,
        coords={latitude.dims[0]: latitude.values},
    ).rename("lat_weight")


def region_mask(like: xr.DataArray | xr.Dataset, name: str) -> xr.DataArray:
    """Return a 0/1 mask on ``like``'s latitude and longitude for a named region.

    Parameters
    ----------
    like : xarray.DataArray or xarray.Dataset
        Object with ``latitude`` and ``longitude`` coordinates (degrees).
    name : str
        One of :data:`REGIONS`: ``"global"``; the bands ``"tropics"`` (``abs(lat) <= 20``),
        ``"extratropics"`` (``abs(lat) >= 20``), ``"northern_extratropics"`` (lat >= 20),
        ``"southern_extratropics"`` (lat <= -20); or ``"land"`` / ``"sea"`` from the
        ``global-land-mask`` package (``pip install 'xappa[geo]'``).

    Returns
    -------
    xarray.DataArray
        Float mask with dims ``(latitude, longitude)``: 1 inside the region, 0 outside.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> grid = xr.Dataset(coords={"latitude": [60.0, 0.0, -60.0], "longitude": [0.0, 180.0]})
    >>> region_mask(grid, "tropics").values
    array([[0., 0.],
           [1., 1.],
           [0., 0.]])
    """
    lat, lon = xr.broadcast(like["latitude"], like["longitude"])
    if name == "global":
        inside = xr.ones_like(lat, dtype=bool)
    elif name == "tropics":
        inside = abs(lat) <= 20
    elif name == "extratropics":
        inside = abs(lat) >= 20
    elif name == "northern_extratropics":
        inside = lat >= 20
    elif name == "southern_extratropics":
        inside = lat <= -20
    elif name in ("land", "sea"):
        try:
            from global_land_mask import globe
        except ImportError as err:
            msg = "region 'land'/'sea' requires global-land-mask; pip install 'xappa[geo]'"
            raise ImportError(msg) from err
        lon180 = (lon.values + 180.0) % 360.0 - 180.0
        land = globe.is_land(np.clip(lat.values, -90, 90), lon180)
        inside = lat.copy(data=land if name == "land" else ~land)
    else:
        msg = f"region must be one of {list(REGIONS)}; found {name!r}"
        raise ValueError(msg)
    return inside.astype(np.float64).drop_vars(
        [c for c in inside.coords if c not in ("latitude", "longitude")]
    )


def _reduce_dims(x: xr.DataArray | xr.Dataset, reduce: Sequence[str] | None) -> list[str]:
    if reduce is None:
        return [d for d in DEFAULT_REDUCE if d in x.dims]
    if isinstance(reduce, str):
        reduce = [reduce]
    missing = [d for d in reduce if d not in x.dims]
    if missing:
        msg = f"reduce names dimensions {missing} that the input lacks; found {list(x.dims)}"
        raise ValueError(msg)
    return list(reduce)


def mask_missing(*arrays: T, member_dim: str | None = None) -> tuple[T, ...]:
    """Apply the NaN policy: mask every input where any input is NaN (any member, too).

    Parameters
    ----------
    *arrays : xarray.DataArray or xarray.Dataset
        Inputs that broadcast against each other (prediction, truth, climatology).
    member_dim : str, optional
        The ensemble dimension, along which one NaN member makes the whole point missing.

    Returns
    -------
    tuple
        The inputs, NaN at every missing point (broadcast to the dimensions of all).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> pred = xr.DataArray([[1.0, np.nan], [2.0, 3.0]], dims=("longitude", "member"))
    >>> truth = xr.DataArray([1.5, 2.5], dims="longitude")
    >>> mask_missing(pred, truth, member_dim="member")[1].values
    array([nan, 2.5])
    """
    valid = arrays[0].notnull()
    for a in arrays[1:]:
        valid = valid & a.notnull()
    if member_dim is not None and member_dim in valid.dims:
        valid = valid.all(member_dim)
    return tuple(a.where(valid) for a in arrays)


def _weights(
    x: xr.DataArray | xr.Dataset, dims: Sequence[str], region: xr.DataArray | None
) -> xr.DataArray | None:
    """Return the latitude-area weights (if ``latitude`` is reduced) times the region."""
    weights = lat_weights(x["latitude"]) if "latitude" in dims else None
    if region is not None:
        weights = region if weights is None else weights * region
    return weights


def _mean(x: T, dims: Sequence[str], region: xr.DataArray | None) -> T:
    """Average over ``dims`` with latitude-area weights and an optional region mask.

    Missing (NaN) points are skipped and the weights renormalised over the others.
    """
    weights = _weights(x, dims, region)
    if weights is None:
        return x.mean(dims, skipna=True)
    return x.weighted(weights).mean(dims, skipna=True)


def valid_weight(
    x: T, *, reduce: Sequence[str] | None = None, region: xr.DataArray | None = None
) -> T:
    """Return the total weight of the points of ``x`` that are not missing, over ``reduce``.

    The weights are those of every average here (latitude-area weights times the region
    mask; a count of points when ``latitude`` is not reduced). Weighted by it, means over
    parts of ``reduce`` (e.g. per time) combine exactly into the mean over all of it.

    Parameters
    ----------
    x : xarray.DataArray or xarray.Dataset
        Values, NaN where missing (e.g. a truth already masked by the NaN policy).
    reduce : sequence of str, optional
        Dimensions summed over (default: those of ``time``, ``latitude``, ``longitude``
        present).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The sum of the weights of the valid points.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray([1.0, np.nan, 3.0], dims="longitude")
    >>> float(valid_weight(x))
    2.0
    """
    dims = _reduce_dims(x, reduce)
    present = x.notnull().astype(np.float64)
    weights = _weights(x, dims, region)
    return (present if weights is None else present * weights).sum(dims)


def mse(
    pred: T, truth: T, *, reduce: Sequence[str] | None = None, region: xr.DataArray | None = None
) -> T:
    """Return the latitude-weighted mean squared error.

    Parameters
    ----------
    pred, truth : xarray.DataArray or xarray.Dataset
        Aligned prediction and truth.
    reduce : sequence of str, optional
        Dimensions to average over (default: those of ``time``, ``latitude``,
        ``longitude`` present).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The mean squared error over ``reduce``.
    """
    pred, truth = mask_missing(pred, truth)
    err = (pred - truth) ** 2
    return _mean(err, _reduce_dims(err, reduce), region)


def rmse(
    pred: T, truth: T, *, reduce: Sequence[str] | None = None, region: xr.DataArray | None = None
) -> T:
    r"""Return the latitude-weighted root mean squared error.

    The square root is taken after averaging over all of ``reduce``, time included
    (WB2's ``RMSESqrtAfterTimeAvg``): :math:`\sqrt{\overline{w (x - y)^2}}`.

    Parameters
    ----------
    pred, truth : xarray.DataArray or xarray.Dataset
        Aligned prediction and truth.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The RMSE over ``reduce``, in the units of the input.

    Examples
    --------
    >>> import xarray as xr
    >>> truth = xr.DataArray([[1.0, 2.0], [3.0, 4.0]], dims=("time", "longitude"))
    >>> float(rmse(truth + 2.0, truth))
    2.0
    """
    return np.sqrt(mse(pred, truth, reduce=reduce, region=region))


def bias(
    pred: T, truth: T, *, reduce: Sequence[str] | None = None, region: xr.DataArray | None = None
) -> T:
    """Return the latitude-weighted mean error ``pred - truth``.

    Parameters
    ----------
    pred, truth : xarray.DataArray or xarray.Dataset
        Aligned prediction and truth.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The mean error, positive where ``pred`` is too high.
    """
    pred, truth = mask_missing(pred, truth)
    err = pred - truth
    return _mean(err, _reduce_dims(err, reduce), region)


def mae(
    pred: T, truth: T, *, reduce: Sequence[str] | None = None, region: xr.DataArray | None = None
) -> T:
    """Return the latitude-weighted mean absolute error.

    Parameters
    ----------
    pred, truth : xarray.DataArray or xarray.Dataset
        Aligned prediction and truth.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The mean absolute error.
    """
    pred, truth = mask_missing(pred, truth)
    err = abs(pred - truth)
    return _mean(err, _reduce_dims(err, reduce), region)


def acc(
    pred: T,
    truth: T,
    climatology: T,
    *,
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    r"""Return the anomaly correlation coefficient against a climatology.

    As in WB2, the correlation is taken over space for each remaining step (time, ...) and
    then averaged over the non-spatial dimensions of ``reduce``:

    .. math:: \mathrm{ACC} = \overline{\frac{\langle f' o' \rangle}
        {\sqrt{\langle f'^2 \rangle \langle o'^2 \rangle}}}

    with :math:`f' = f - c`, :math:`o' = o - c` and :math:`\langle\cdot\rangle` the
    area-weighted spatial mean.

    Parameters
    ----------
    pred, truth : xarray.DataArray or xarray.Dataset
        Aligned prediction and truth.
    climatology : xarray.DataArray or xarray.Dataset
        The climatology, broadcastable against ``truth`` (for example a time-mean field, or
        a WB2 climatology already selected at the valid times).
    reduce : sequence of str, optional
        Dimensions to reduce (see :func:`mse`); the spatial ones among them carry the
        correlation.
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ACC, between -1 and 1.
    """
    pred, truth, climatology = mask_missing(pred, truth, climatology)
    fa = pred - climatology
    oa = truth - climatology
    dims = _reduce_dims(fa, reduce)
    space = [d for d in dims if d in ("latitude", "longitude")]
    rest = [d for d in dims if d not in space]
    if not space:
        msg = f"acc needs latitude or longitude among reduce; found {dims}"
        raise ValueError(msg)
    corr = _mean(fa * oa, space, region) / np.sqrt(
        _mean(fa**2, space, region) * _mean(oa**2, space, region)
    )
    return corr.mean(rest, skipna=True) if rest else corr


def _members(pred: xr.DataArray | xr.Dataset, member_dim: str, least: int) -> int:
    if member_dim not in pred.dims:
        msg = f"pred is missing the member dimension {member_dim!r}; found {list(pred.dims)}"
        raise ValueError(msg)
    m = pred.sizes[member_dim]
    if m < least:
        msg = f"pred needs at least {least} members along {member_dim!r}; found {m}"
        raise ValueError(msg)
    return m


def ensemble_mean_rmse(
    pred: T,
    truth: T,
    *,
    member_dim: str = "member",
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    """Return the skill: the RMSE of the ensemble mean (WB2 ``EnsembleMeanRMSE``).

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Ensemble prediction with a ``member_dim`` dimension.
    truth : xarray.DataArray or xarray.Dataset
        Aligned truth, without members.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ensemble-mean RMSE.
    """
    _members(pred, member_dim, 1)
    pred, truth = mask_missing(pred, truth, member_dim=member_dim)
    return rmse(pred.mean(member_dim, skipna=False), truth, reduce=reduce, region=region)


def spread(
    pred: T,
    *,
    member_dim: str = "member",
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    r"""Return the ensemble spread: :math:`\sqrt{\overline{w\,\mathrm{Var}_m(x)}}`.

    The variance across members is unbiased (ddof = 1), as WB2's ``EnsembleVariance``; the
    square root is taken after averaging.

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Ensemble prediction with at least two members along ``member_dim``.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The spread, in the units of the input.
    """
    _members(pred, member_dim, 2)
    (pred,) = mask_missing(pred, member_dim=member_dim)
    var = pred.var(member_dim, ddof=1, skipna=False)
    return np.sqrt(_mean(var, _reduce_dims(var, reduce), region))


def spread_skill_ratio(
    pred: T,
    truth: T,
    *,
    member_dim: str = "member",
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    r"""Return the spread/skill ratio :math:`\sqrt{(M+1)/M}\,\mathrm{spread}/\mathrm{skill}`.

    The factor :math:`\sqrt{(M+1)/M}` for :math:`M` members makes a perfectly calibrated
    finite ensemble score 1, as Appa and WB2 report it.

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Ensemble prediction with at least two members along ``member_dim``.
    truth : xarray.DataArray or xarray.Dataset
        Aligned truth, without members.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ratio; below 1 means under-dispersive.
    """
    m = _members(pred, member_dim, 2)
    pred, truth = mask_missing(pred, truth, member_dim=member_dim)
    kwargs = {"member_dim": member_dim, "reduce": reduce, "region": region}
    return spread_skill(spread(pred, **kwargs), ensemble_mean_rmse(pred, truth, **kwargs), m)


def spread_skill(spread: T, skill: T, members: int) -> T:
    r"""Return the spread/skill ratio :math:`\sqrt{(M+1)/M}\,\mathrm{spread}/\mathrm{skill}`.

    Parameters
    ----------
    spread : xarray.DataArray or xarray.Dataset
        The spread (:func:`spread`).
    skill : xarray.DataArray or xarray.Dataset
        The skill on the same points (:func:`ensemble_mean_rmse`).
    members : int
        The ensemble size :math:`M`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ratio (see :func:`spread_skill_ratio`).
    """
    return np.sqrt((members + 1) / members) * (spread / skill)


def _sort_members(x: xr.DataArray, member_dim: str) -> xr.DataArray:
    if x.chunks is not None:
        x = x.chunk({member_dim: -1})
    return xr.apply_ufunc(
        np.sort,
        x,
        input_core_dims=[[member_dim]],
        output_core_dims=[[member_dim]],
        kwargs={"axis": -1},
        dask="parallelized",
        output_dtypes=[x.dtype],
    )


def _pairwise_abs_sum(x: xr.DataArray, member_dim: str) -> xr.DataArray:
    r"""Return :math:`\sum_{i,j} |x_i - x_j|` over members, in O(M log M) from sorting."""
    m = x.sizes[member_dim]
    coef = xr.DataArray(2.0 * (2.0 * np.arange(m) - m + 1), dims=member_dim)
    ordered = _sort_members(x, member_dim).drop_vars(member_dim, errors="ignore")
    return (ordered * coef).sum(member_dim, skipna=False)


def crps(
    pred: T,
    truth: T,
    *,
    member_dim: str = "member",
    fair: bool = True,
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    r"""Return the ensemble CRPS, fair by default (WB2 ``CRPS``).

    Per grid point, with members :math:`x_1, \dots, x_M` and truth :math:`y`,

    .. math:: \mathrm{CRPS} = \frac{1}{M} \sum_i |x_i - y|
        - \frac{1}{2 M (M - 1)} \sum_{i, j} |x_i - x_j| ,

    then averaged with latitude weights. ``fair=False`` divides the second term by
    :math:`M^2` instead, which gives the CRPS of the empirical distribution of the members
    (``properscoring.crps_ensemble``). The pairwise sum is computed from sorted members.

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Ensemble prediction along ``member_dim`` (at least two members when ``fair``).
    truth : xarray.DataArray or xarray.Dataset
        Aligned truth, without members.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    fair : bool, default True
        Use the fair (unbiased for finite ensembles) estimator.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The CRPS, in the units of the input.

    Examples
    --------
    >>> import xarray as xr
    >>> pred = xr.DataArray([[0.0, 2.0]], dims=("time", "member"))
    >>> truth = xr.DataArray([1.0], dims="time")
    >>> float(crps(pred, truth)), float(crps(pred, truth, fair=False))
    (0.0, 0.5)
    """
    m = _members(pred, member_dim, 2 if fair else 1)
    pred, truth = mask_missing(pred, truth, member_dim=member_dim)
    skill = abs(pred - truth).mean(member_dim, skipna=False)
    if isinstance(pred, xr.Dataset):
        pairs = pred.map(_pairwise_abs_sum, member_dim=member_dim)
    else:
        pairs = _pairwise_abs_sum(pred, member_dim)
    score = skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)
    return _mean(score, _reduce_dims(score, reduce), region)


def rank_histogram(
    pred: T,
    truth: T,
    *,
    member_dim: str = "member",
    reduce: Sequence[str] | None = None,
    region: xr.DataArray | None = None,
) -> T:
    """Return the rank histogram: how often the truth falls at each rank among members.

    The rank of the truth is the number of members strictly below it, from 0 to ``M``;
    ties (rare for continuous fields) count as "above". Frequencies are area-weighted over
    ``reduce`` and sum to 1 along the new ``rank`` dimension; a calibrated ensemble gives
    a flat histogram at ``1 / (M + 1)``.

    Parameters
    ----------
    pred : xarray.DataArray or xarray.Dataset
        Ensemble prediction along ``member_dim``.
    truth : xarray.DataArray or xarray.Dataset
        Aligned truth, without members.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    reduce : sequence of str, optional
        Dimensions to average over (see :func:`mse`).
    region : xarray.DataArray, optional
        A 0/1 mask from :func:`region_mask`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Frequencies with a ``rank`` dimension of length ``M + 1``.
    """
    m = _members(pred, member_dim, 1)
    pred, truth = mask_missing(pred, truth, member_dim=member_dim)
    ranks = (pred < truth).sum(member_dim)
    dims = _reduce_dims(ranks, reduce)
    scored = truth.notnull()
    freq = [
        _mean((ranks == r).astype(np.float64).where(scored), dims, region) for r in range(m + 1)
    ]
    return xr.concat(freq, dim="rank").assign_coords(rank=np.arange(m + 1))
