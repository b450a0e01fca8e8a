"""Evaluate predictions against a truth, and write a report of plots and tables.

:func:`evaluate` aligns a prediction with its truth (:func:`xappa.verify.align.align`) and returns a
tidy metrics Dataset; :func:`write_report` writes it to netCDF with PNG plots and a Markdown
summary.

Layout of the metrics Dataset:

- data variables are metrics: ``rmse``, ``bias``, ``mae`` and, with ``climatology``,
  ``acc``; with an ensemble also ``skill``, ``spread``, ``ssr``, ``crps`` and
  ``rank_histogram`` (extra ``rank`` dimension);
- dimensions ``region`` (names from :data:`xappa.verify.metrics.REGIONS`), ``variable`` (one entry
  per variable and level, labelled ``"temperature_850"`` or ``"2m_temperature"``), the lead
  dimension if the prediction has one, and any dimension not in ``reduce``;
- coordinates on ``variable``: ``name`` (the data variable), ``level`` (hPa, NaN for
  surface fields) and ``units``.

With an ensemble, ``rmse``, ``bias`` and ``mae`` score the ensemble mean, so ``rmse`` equals
``skill``; ``rmse_member`` is the RMSE of single members (MSE averaged over members).
"""

from __future__ import annotations

__all__ = ["evaluate", "write_report"]

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from xappa.batch.reader import check_complete
from xappa.batch.store import RECORD_VARIABLES
from xappa.io.outputs import check_target, clear_directory, write_manifest
from xappa.options import check_positive_int
from xappa.state.units import units_conversion
from xappa.verify import metrics as m
from xappa.verify.align import align, find_lead_dim, normalize_grid

#: The bytes of prediction and truth that one time batch of dask-backed inputs holds, at most
#: (or one time, when a time alone is larger).
BATCH_BYTES = 256 * 2**20

#: What :func:`write_report` writes (the kind recorded in the directory's manifest).
REPORT = "evaluation report"

_LAYOUT = (
    "metrics per region and variable (one entry per variable and level); "
    "see xappa.verify.evaluate for the layout"
)


def _partials(
    pred: xr.DataArray,
    truth: xr.DataArray,
    *,
    member_dim: str,
    reduce: list[str],
    region: xr.DataArray,
    climatology: xr.DataArray | None,
) -> dict[str, xr.DataArray]:
    """Return the parts of every metric over ``reduce`` (time kept), and their weight.

    Means (not their square roots) over ``reduce``, so that those of successive time
    batches combine exactly, weighted by ``weight`` (:func:`xappa.verify.metrics.valid_weight`).
    """
    ensemble = member_dim in pred.dims
    pred, truth = m.mask_missing(pred, truth, member_dim=member_dim if ensemble else None)
    kw = {"reduce": reduce, "region": region}
    det = pred.mean(member_dim, skipna=False) if ensemble else pred
    out = {
        "weight": m.valid_weight(truth, **kw),
        "mse": m.mse(det, truth, **kw),
        "bias": m.bias(det, truth, **kw),
        "mae": m.mae(det, truth, **kw),
    }
    if climatology is not None:
        out["acc"] = m.acc(det, truth, climatology, **kw)
    if ensemble:
        ek = {"member_dim": member_dim, **kw}
        out["mse_member"] = m.mse(pred, truth, **kw)
        if pred.sizes[member_dim] > 1:
            out["variance"] = m.spread(pred, **ek) ** 2
            out["crps"] = m.crps(pred, truth, **ek)
        out["rank_histogram"] = m.rank_histogram(pred, truth, **ek)
    return out


def _metric_set(
    parts: dict[str, xr.DataArray], *, over_time: bool, member_dim: str, members: int
) -> dict[str, xr.DataArray]:
    """Return the metrics from their parts, averaged over time when ``over_time``."""
    weight = parts["weight"]
    total = weight.sum("time") if over_time else weight

    def mean(x: xr.DataArray) -> xr.DataArray:
        if not over_time:
            return x
        return (x.fillna(0.0) * weight).sum("time") / total.where(total > 0)

    out = {"rmse": np.sqrt(mean(parts["mse"])), "bias": mean(parts["bias"])}
    out["mae"] = mean(parts["mae"])
    if "acc" in parts:
        out["acc"] = parts["acc"].mean("time", skipna=True) if over_time else parts["acc"]
    if "mse_member" in parts:
        out["rmse_member"] = np.sqrt(mean(parts["mse_member"]).mean(member_dim))
        out["skill"] = out["rmse"]
        if "variance" in parts:
            out["spread"] = np.sqrt(mean(parts["variance"]))
            out["ssr"] = m.spread_skill(out["spread"], out["skill"], members)
            out["crps"] = mean(parts["crps"])
        out["rank_histogram"] = mean(parts["rank_histogram"])
    return out


def _in_units_of(ds: xr.Dataset, like: xr.Dataset, role: str) -> xr.Dataset:
    """Return ``ds`` with each variable converted to the units of ``like``'s, or raise."""
    for name in ds.data_vars:
        have, want = ds[name].attrs.get("units"), like[name].attrs.get("units")
        if have is None or want is None or str(have) == str(want):
            continue
        try:
            conv = units_conversion(str(have), str(want), name=f"{role} variable {name!r}")
        except ValueError as err:
            msg = f"{err}, the units of truth variable {name!r}"
            raise ValueError(msg) from None
        attrs = {**ds[name].attrs, "units": str(want)}
        ds[name] = conv.apply(ds[name]).assign_attrs(attrs)
    return ds


def _aligned(
    pred: xr.Dataset, truth: xr.Dataset, member_dim: str, *, quiet: bool = False
) -> tuple[xr.Dataset, xr.Dataset]:
    """Align the scored variables (no batch-store records), the prediction in truth's units."""
    pred, truth = (d.drop_vars([v for v in RECORD_VARIABLES if v in d]) for d in (pred, truth))
    with warnings.catch_warnings():
        if quiet:  # a batch of what was aligned (and warned about) as a whole
            warnings.simplefilter("ignore")
        pred_a, truth_a = align(pred, truth, member_dim=member_dim)
    return _in_units_of(pred_a, truth_a, "pred"), truth_a


def _label_slice(ds: xr.Dataset, first: object, last: object) -> xr.Dataset:
    """Select ``first`` to ``last`` of ``ds``'s times: a slice if they are sorted."""
    index = ds.indexes["time"]
    if index.is_monotonic_increasing:
        return ds.sel(time=slice(first, last))
    return ds.isel(time=np.flatnonzero((index >= first) & (index <= last)))


def _raw_batch(
    pred: xr.Dataset, truth: xr.Dataset, pred_a: xr.Dataset, part: slice
) -> tuple[xr.Dataset, xr.Dataset]:
    """Return the inputs over the times of ``pred_a.isel(time=part)`` (valid times for truth)."""
    times = pred_a["time"].values[part]
    lead = find_lead_dim(pred_a)
    valid = times if lead is None else (times[:, None] + pred_a[lead].values[None, :]).ravel()
    return (
        _label_slice(pred, times.min(), times.max()),
        _label_slice(truth, valid.min(), valid.max()),
    )


def _time_batches(pred: xr.Dataset, truth: xr.Dataset, time_batch: int | None) -> list[slice]:
    """Return the time slices to compute one after the other (all at once for numpy data)."""
    if "time" not in pred.dims or "time" not in truth.dims:
        return [slice(None)]
    lazy = any(v.chunks is not None for d in (pred, truth) for v in d.data_vars.values())
    if time_batch is None and not lazy:
        return [slice(None)]
    n = pred.sizes["time"]
    if time_batch is None:
        per_time = sum(d.nbytes for d in (pred, truth)) / max(n, 1)
        time_batch = max(1, int(BATCH_BYTES // max(per_time, 1)))
    time_batch = check_positive_int(time_batch, "time_batch")
    return [slice(i, i + time_batch) for i in range(0, n, time_batch)]


def _concat_time(batches: list[dict[str, xr.DataArray]]) -> dict[str, xr.DataArray]:
    if len(batches) == 1:
        return batches[0]
    return {k: xr.concat([b[k] for b in batches], dim="time") for k in batches[0]}


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
    time_batch: int | None = None,
    complete: str = "raise",
) -> xr.Dataset:
    """Score a prediction (deterministic or ensemble) against a truth.

    Values are compared in the truth's units: a prediction (or climatology) in other,
    convertible units (``K`` and ``degC``, ``Pa`` and ``hPa``, ...) is converted first.
    Missing values follow the NaN policy of :mod:`xappa.verify.metrics`. Dask-backed inputs are
    streamed: computed ``time_batch`` times at a time, so that memory holds one batch, not
    the whole input.

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
        Regions from :data:`xappa.verify.metrics.REGIONS`, for example ``("global", "tropics",
        "land")``.
    reduce : sequence of str, optional
        Dimensions averaged over (default: those of ``time``, ``latitude``, ``longitude``
        present). Leave ``time`` out to get scores per time.
    member_dim : str, default "member"
        Name of the ensemble dimension.
    time_batch : int, optional
        Times computed at once (default: all for in-memory inputs; for dask-backed ones, as
        many as fit in :data:`BATCH_BYTES`).
    complete : {"raise", "warn", "ignore"}
        What to do when ``pred`` or ``truth`` is a batch reanalysis store (or a part of one)
        with windows an interrupted run did not write (see
        :func:`xappa.batch.check_complete`).

    Returns
    -------
    xarray.Dataset
        The metrics, computed; the layout is described in :mod:`xappa.verify.evaluate`.

    Raises
    ------
    ValueError
        If a variable's units in ``pred`` (or ``climatology``) differ from the truth's and
        cannot be converted (the message names the variable and both units), if the inputs
        do not overlap, or if a batch reanalysis is incomplete and ``complete="raise"``.
    KeyError
        If ``pred`` and ``truth`` share no variable, or ``climatology`` lacks one.

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
    check_complete(pred, complete, name="pred")
    check_complete(truth, complete, name="truth")
    pred_a, truth_a = _aligned(pred, truth, member_dim)
    clims = {}
    if climatology is not None:
        for name in pred_a.data_vars:
            if name not in climatology:
                msg = f"climatology has no variable {name!r}; found {list(climatology)}"
                raise KeyError(msg)
        clims = _in_units_of(
            normalize_grid(climatology[list(pred_a.data_vars)]), truth_a, "climatology"
        )
    # One weighted mean for all regions: the masks stacked along ``region``.
    masks = xr.concat(
        [m.region_mask(truth_a, name) for name in regions], dim="region"
    ).assign_coords(region=list(regions))
    wanted = (
        m.DEFAULT_REDUCE if reduce is None else [reduce] if isinstance(reduce, str) else reduce
    )
    over_time = "time" in wanted and "time" in truth_a.dims
    inner = [d for d in wanted if not (d == "time" and over_time)]
    if reduce is None:
        inner = [d for d in inner if d in truth_a.dims]
    names = list(pred_a.data_vars)
    batches: dict[str, list[dict[str, xr.DataArray]]] = {name: [] for name in names}
    for part in _time_batches(pred_a, truth_a, time_batch):
        if part == slice(None):
            p, t = pred_a, truth_a
        else:  # align the batch alone: reads only its times, even from one big dask chunk
            p, t = _aligned(*_raw_batch(pred, truth, pred_a, part), member_dim, quiet=True)
        c = {name: _climatology_at(clims[name], t[name]) for name in names} if clims else {}
        p, t, c = dask.compute(p, t, c)  # one batch in memory, read in one pass
        for name in names:
            batches[name].append(
                _partials(
                    p[name],
                    t[name],
                    member_dim=member_dim,
                    reduce=inner,
                    region=masks,
                    climatology=c.get(name),
                )
            )
    entries: list[dict[str, xr.DataArray]] = []
    for name in names:
        scores = _metric_set(
            _concat_time(batches[name]),
            over_time=over_time,
            member_dim=member_dim,
            members=int(pred_a.sizes.get(member_dim, 0)),
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
    overwrite: bool = False,
) -> Path:
    """Write ``metrics.nc``, PNG plots and ``summary.md`` into a directory.

    The directory must be new, empty, or an earlier report (replaced when ``overwrite``);
    its manifest (:mod:`xappa.io.outputs`) lists what was written, so that nothing else in
    it is ever replaced.

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
    overwrite : bool, default False
        Replace an earlier report in ``out``.

    Returns
    -------
    pathlib.Path
        The path of ``summary.md``.

    Raises
    ------
    FileExistsError
        If ``out`` is a file, holds files that xappa did not write, or holds an earlier
        report and ``overwrite`` is false.
    NotADirectoryError
        If ``out`` lies inside a file.
    """
    from xappa.verify import plot
    out = Path(out)
    state = check_target(out, role="out", overwrite=overwrite, hint="pass overwrite=True")
    metrics = metrics.compute()
    if state == "directory":
        clear_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(out))
    try:
        metrics.to_netcdf(out / "metrics.nc")
        figures = plot.metric_figures(metrics, out)
        if pred is not None and truth is not None:
            pred_a, truth_a = _aligned(pred, truth, member_dim)
            figures += plot.field_figures(pred_a, truth_a, out, member_dim=member_dim)
        summary = out / "summary.md"
        summary.write_text(_markdown(metrics, figures))
    finally:
        write_manifest(out, REPORT, set(os.listdir(out)) - before)
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
