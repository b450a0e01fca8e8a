"""Evaluate predictions against a truth, and write a report of plots and tables.

:func:`evaluate` aligns a prediction with its truth (:func:`xappa.align.align`) and returns a
tidy metrics Dataset; :func:`write_report` writes it to netCDF with PNG plots and a Markdown
summary.

Layout of the metrics Dataset:

- data variables are metrics: ``rmse``, ``bias``, ``mae`` and, with ``climatology``,
  ``acc``; with an ensemble also ``skill``, ``spread``, ``ssr``, ``crps`` and
  ``rank_histogram`` (extra ``rank`` dimension);
- dimensions ``region`` (names from :data:`xappa.metrics.REGIONS`), ``variable`` (one entry
  per variable and level, labelled ``"temperature_850"`` or ``"2m_temperature"``), the lead
  dimension if the prediction has one, and any dimension not in ``reduce``;
- coordinates on ``variable``: ``name`` (the data variable), ``level`` (hPa, NaN for
  surface fields) and ``units``.

With an ensemble, ``rmse``, ``bias`` and ``mae`` score the ensemble mean, so ``rmse`` equals
``skill``; ``rmse_member`` is the RMSE of single members (MSE averaged over members).
"""

from __future__ import annotations

__all__ = ["evaluate", "write_report"]

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from xappa import metrics as m
from xappa.align import align, find_lead_dim, normalize_grid

_LAYOUT = (
    "metrics per region and variable (one entry per variable and level); "
    "see xappa.evaluation for the layout"
)


def _metric_set(
    pred: xr.DataArray,
    truth: xr.DataArray,
    *,
    member_dim: str,
    reduce: Sequence[str] | None,
    region: xr.DataArray,
    climatology: xr.DataArray | None,
) -> dict[str, xr.DataArray]:
    kw = {"reduce": reduce, "region": region}
    ensemble = member_dim in pred.dims
    det = pred.mean(member_dim) if ensemble else pred
    out = {
        "rmse": m.rmse(det, truth, **kw),
        "bias": m.bias(det, truth, **kw),
        "mae": m.mae(det, truth, **kw),
    }
    if climatology is not None:
        out["acc"] = m.acc(det, truth, climatology, **kw)
    if ensemble:
        ek = {"member_dim": member_dim, **kw}
        out["rmse_member"] = np.sqrt(m.mse(pred, truth, **kw).mean(member_dim))
        out["skill"] = m.ensemble_mean_rmse(pred, truth, **ek)
        if pred.sizes[member_dim] > 1:
            out["spread"] = m.spread(pred, **ek)
            out["ssr"] = m.spread_skill_ratio(pred, truth, **ek)
            out["crps"] = m.crps(pred, truth, **ek)
        out["rank_histogram"] = m.rank_histogram(pred, truth, **ek)
    return out


def _climatology_at(clim: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    """Select a WB2-style ``(dayofyear[, hour], ...)`` climatology at the truth's times."""
    if "dayofyear" not in clim.dims:
        return clim
    when = truth["valid_time"] if "valid_time" in truth.coords else truth["time"]
    index = {"dayofyear": when.dt.dayofyear}
    if "hour" in clim.dims:
        index["hour"] = when.dt.hour
    for dim, wanted in index.items():
        missing = np.setdiff1d(np.unique(wanted.values), clim[dim].values)
        if missing.size:
            msg = f"climatology lacks {dim} values {missing.tolist()[:5]} of the valid times"
            raise KeyError(msg)
    return clim.sel(index).drop_vars(list(index))


def _channels(
    name: str, metrics: dict[str, xr.DataArray], units: str
) -> list[dict[str, xr.DataArray]]:
    """Split per-variable metrics into one entry per level, labelled for ``variable``."""
    first = next(iter(metrics.values()))
    levels = first["level"].values if "level" in first.dims else [None]
    out = []
    for level in levels:
        sel = (
            {k: v.sel(level=level, drop=True) for k, v in metrics.items()}
            if level is not None
            else metrics
        )
        label = name if level is None else f"{name}_{float(level):g}"
        coords = {
            "variable": [label],
            "name": ("variable", [name]),
            "level": ("variable", [np.nan if level is None else float(level)]),
            "units": ("variable", [units]),
        }
        out.append(
            {k: v.expand_dims(variable=[label]).assign_coords(coords) for k, v in sel.items()}
        )
    return out


def evaluate(
    pred: xr.Dataset,
    truth: xr.Dataset,
    *,
    climatology: xr.Dataset | None = None,
    regions: Sequence[str] = ("global",),
    reduce: Sequence[str] | None = None,
    member_dim: str = "member",
) -> xr.Dataset:
    """Score a prediction (deterministic or ensemble) against a truth.

    Parameters
    ----------
    pred : xarray.Dataset
        Prediction, optionally with ``member_dim`` members and a lead dimension (``lead`` or
        ``prediction_timedelta``, with ``time`` then the initialisation time).
    truth : xarray.Dataset
        Truth, for example ERA5 in WB2 layout or a testbed trajectory, on an overlapping
        grid; any latitude order and longitude convention.
    climatology : xarray.Dataset, optional
        Climatology for ``acc``: broadcastable against the aligned truth (e.g. a mean
        field), or laid out as WB2's ERA5 climatology with ``dayofyear`` (and ``hour``)
        dimensions, then read at the valid times.
    regions : sequence of str, default ("global",)
        Regions from :data:`xappa.metrics.REGIONS`, for example ``("global", "tropics",
        "land")``.
    reduce : sequence of str, optional
        Dimensions averaged over (default: those of ``time``, ``latitude``, ``longitude``
        present). Leave ``time`` out to get scores per time.
    member_dim : str, default "member"
        Name of the ensemble dimension.

    Returns
    -------
    xarray.Dataset
        The metrics, lazy when the inputs are dask-backed; the layout is described in
        :mod:`xappa.evaluation`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.Dataset(
    ...     {"z": (("time", "latitude", "longitude"), np.zeros((2, 3, 4)), {"units": "m"})},
    ...     coords={"time": [0, 1], "latitude": [60.0, 0.0, -60.0],
    ...             "longitude": [0.0, 90.0, 180.0, 270.0]},
    ... )
    >>> scores = evaluate(truth + 1.0, truth)
    >>> float(scores["rmse"].sel(region="global", variable="z"))
    1.0
    """
    pred_a, truth_a = align(pred, truth, member_dim=member_dim)
    # One weighted mean for all regions: the masks stacked along ``region``.
    masks = xr.concat(
        [m.region_mask(truth_a, name) for name in regions], dim="region"
    ).assign_coords(region=list(regions))
    entries: list[dict[str, xr.DataArray]] = []
    for name in pred_a.data_vars:
        clim = None
        if climatology is not None:
            if name not in climatology:
                msg = f"climatology has no variable {name!r}; found {list(climatology)}"
                raise KeyError(msg)
            clim = _climatology_at(normalize_grid(climatology[[name]])[name], truth_a[name])
        scores = _metric_set(
            pred_a[name],
            truth_a[name],
            member_dim=member_dim,
            reduce=reduce,
            region=masks,
            climatology=clim,
        )
        units = str(truth_a[name].attrs.get("units", pred_a[name].attrs.get("units", "")))
        entries.extend(_channels(name, scores, units))
    merged = {
        key: xr.concat([e[key] for e in entries], dim="variable", coords="minimal")
        for key in entries[0]
    }
    out = xr.Dataset(merged)
    out = out.transpose("region", "variable", ...)
    out = out.drop_vars([c for c in ("valid_time",) if c in out.coords])
    out.attrs = {
        "title": "xappa evaluation",
        "description": _LAYOUT,
        "lead_dim": find_lead_dim(pred_a) or "",
        "member_count": int(pred_a.sizes.get(member_dim, 0)),
        "latitude_weights": "WeatherBench 2 cell-area weights, mean 1",
    }
    for key, text in _DESCRIPTIONS.items():
        if key in out:
            out[key].attrs["long_name"] = text
    return out


_DESCRIPTIONS = {
    "rmse": "RMSE of the (ensemble-mean) prediction",
    "bias": "mean error of the (ensemble-mean) prediction",
    "mae": "mean absolute error of the (ensemble-mean) prediction",
    "acc": "anomaly correlation coefficient",
    "rmse_member": "RMSE of single members",
    "skill": "skill (RMSE of the ensemble mean)",
    "spread": "ensemble spread (sqrt of mean unbiased variance)",
    "ssr": "spread/skill ratio with sqrt((M+1)/M)",
    "crps": "fair CRPS",
    "rank_histogram": "rank histogram (area-weighted frequency)",
}


def write_report(
    metrics: xr.Dataset,
    out: str | Path,
    *,
    pred: xr.Dataset | None = None,
    truth: xr.Dataset | None = None,
    member_dim: str = "member",
) -> Path:
    """Write ``metrics.nc``, PNG plots and ``summary.md`` into a directory.

    Parameters
    ----------
    metrics : xarray.Dataset
        Output of :func:`evaluate` (computed here if lazy).
    out : str or pathlib.Path
        Output directory, created if needed.
    pred, truth : xarray.Dataset, optional
        The prediction and truth, for the spectra and error maps (skipped without them).
    member_dim : str, default "member"
        Name of the ensemble dimension of ``pred``.

    Returns
    -------
    pathlib.Path
        The path of ``summary.md``.
    """
    from xappa import plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = metrics.compute()
    metrics.to_netcdf(out / "metrics.nc")
    figures = plot.metric_figures(metrics, out)
    if pred is not None and truth is not None:
        pred_a, truth_a = align(pred, truth, member_dim=member_dim)
        figures += plot.field_figures(pred_a, truth_a, out, member_dim=member_dim)
    summary = out / "summary.md"
    summary.write_text(_markdown(metrics, figures))
    return summary


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.4g}"


def _markdown(metrics: xr.Dataset, figures: list[tuple[str, str]]) -> str:
    lead = metrics.attrs.get("lead_dim") or None
    names = [k for k in metrics.data_vars if "rank" not in metrics[k].dims]
    lines = ["# xappa evaluation", ""]
    n = metrics.attrs.get("member_count", 0)
    lines.append(
        f"{metrics.sizes['variable']} variables, regions {[str(r) for r in metrics['region'].values]}, "
        + (f"{n} members" if n else "deterministic")
        + (f", {metrics.sizes[lead]} lead times" if lead else "")
        + ". Scores are latitude-weighted (WeatherBench 2)"
        + ("; the table averages them over lead time." if lead else ".")
    )
    lines += ["", "| region | variable | units | " + " | ".join(names) + " |"]
    lines.append("|" + " --- |" * (3 + len(names)))
    for region in metrics["region"].values:
        for var in metrics["variable"].values:
            row = metrics.sel(region=region, variable=var)
            vals = [row[k].mean().item() for k in names]
            units = str(row["units"].values)
            lines.append(
                f"| {region} | {var} | {units} | " + " | ".join(_fmt(v) for v in vals) + " |"
            )
    lines.append("")
    for title, filename in figures:
        lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    lines.append("Metrics: `metrics.nc` (netCDF).")
    return "\n".join(lines) + "\n"
