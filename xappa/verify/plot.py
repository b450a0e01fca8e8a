"""Report plots with matplotlib (Agg): error vs lead time, spread/skill, spectra, error maps.

:func:`metric_figures` and :func:`field_figures` write PNG files into a directory and return
``(title, filename)`` pairs for the Markdown summary. At most :data:`MAX_PANELS` variables
are drawn per figure, preferring the 500 and 850 hPa levels and surface fields.
:func:`draw_map` draws one latitude/longitude field with equal aspect (a degree of longitude
as wide as a degree of latitude is tall), and :func:`utc` formats valid times; ``xappa demo``
draws its maps with them too. Needs ``pip install 'xappa[plot]'``.
"""

from __future__ import annotations

__all__ = ["MAX_PANELS", "draw_map", "field_figures", "map_axes", "metric_figures", "utc"]

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xappa.verify.align import find_lead_dim

#: Largest number of variables (panels) drawn in one figure.
MAX_PANELS = 6


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        msg = "plotting requires matplotlib; pip install 'xappa[plot]'"
        raise ImportError(msg) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def utc(time: Any) -> str:
    """Format a time as ``"YYYY-MM-DD HH:MM UTC"``.

    Parameters
    ----------
    time : datetime-like
        A time (naive times are taken as UTC, as in ERA5 and xappa's outputs).

    Returns
    -------
    str
        The time to the minute, with its zone.
    """
    return pd.Timestamp(time).strftime("%Y-%m-%d %H:%M UTC")


def draw_map(
    ax: Any, field: xr.DataArray, *, title: str, colorbar: str | None = None, **kwargs: Any
) -> Any:
    """Draw a latitude/longitude field on equal-aspect axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes.
    field : xarray.DataArray
        The field over ``(latitude, longitude)`` in degrees, either order.
    title : str
        The panel title.
    colorbar : str, optional
        A colour bar label; no colour bar when None.
    **kwargs
        Passed to ``pcolormesh`` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns
    -------
    matplotlib.collections.QuadMesh
        The mesh, for a shared colour bar.
    """
    field = field.transpose("latitude", "longitude").sortby("latitude")
    lon, lat = field["longitude"].values, field["latitude"].values
    mesh = ax.pcolormesh(lon, lat, field.values, shading="auto", **kwargs)
    map_axes(ax, lon, title)
    if colorbar is not None:
        ax.figure.colorbar(mesh, ax=ax, label=colorbar, shrink=0.8)
    return mesh


def map_axes(ax: Any, lon: np.ndarray, title: str) -> None:
    """Set up equal-aspect latitude/longitude axes over the globe, with labels and a title.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes.
    lon : ndarray
        The longitudes drawn, in degrees east, with shape ``(W,)``.
    title : str
        The panel title.
    """
    step = float(np.median(np.diff(lon))) if lon.size > 1 else 0.0
    ax.set_xlim(float(lon.min()) - step / 2, float(lon.max()) + step / 2)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xlabel("longitude [degrees east]")
    ax.set_ylabel("latitude [degrees north]")


def _pick(metrics: xr.Dataset) -> list[str]:
    """Return up to MAX_PANELS variable labels, preferring 500/850 hPa and surface."""
    labels = list(metrics["variable"].values)
    level = metrics["level"].values
    preferred = [
        v for v, lv in zip(labels, level, strict=True) if np.isnan(lv) or lv in (500, 850)
    ]
    rest = [v for v in labels if v not in preferred]
    return (preferred + rest)[:MAX_PANELS]


def _grid(plt: Any, n: int, title: str) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    fig.suptitle(title)
    return fig, flat[:n]


def _hours(lead: xr.DataArray) -> np.ndarray:
    values = lead.values
    if np.issubdtype(values.dtype, np.timedelta64):
        return values / np.timedelta64(1, "h")
    return values.astype(np.float64)


def _lines(
    plt: Any,
    metrics: xr.Dataset,
    keys: dict[str, str],
    title: str,
    path: Path,
    region: str,
    quantity: str,
) -> None:
    lead = metrics.attrs.get("lead_dim") or None
    labels = _pick(metrics)
    fig, axes = _grid(plt, len(labels), f"{title} (region: {region})")
    for ax, label in zip(axes, labels, strict=True):
        row = metrics.sel(variable=label, region=region)
        units = str(row["units"].values) or "1"
        present = [k for k in keys if k in row]
        if lead:
            x = _hours(row[lead])
            for k in present:
                extra = [d for d in row[k].dims if d != lead]
                ax.plot(x, row[k].mean(extra).values, marker="o", label=keys[k])
            ax.set_xlabel("lead time [h]")
        else:
            ax.bar([keys[k] for k in present], [float(row[k].mean()) for k in present])
            # right-aligned at the tick, so long neighbouring labels do not overlap
            plt.setp(ax.get_xticklabels(), rotation=25, ha="right", rotation_mode="anchor")
        ax.set_title(label)
        ax.set_ylabel(f"{quantity} [{units}]")
        if lead:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metric_figures(
    metrics: xr.Dataset, out: Path, *, region: str | None = None
) -> list[tuple[str, str]]:
    """Plot errors vs lead time, spread vs skill and rank histograms.

    Parameters
    ----------
    metrics : xarray.Dataset
        Computed output of :func:`xappa.verify.evaluate.evaluate`.
    out : pathlib.Path
        Directory for the PNG files.
    region : str, optional
        Region to draw (default: the first).

    Returns
    -------
    list of tuple of str
        ``(title, filename)`` for each figure written.
    """
    plt = _pyplot()
    region = region or str(metrics["region"].values[0])
    figures: list[tuple[str, str]] = []
    ensemble = metrics.attrs.get("member_count", 0) > 0
    errors = {"rmse": "RMSE (ensemble mean)" if ensemble else "RMSE"}
    errors |= {"rmse_member": "RMSE (single member)"}
    errors |= {"crps": "CRPS", "mae": "MAE"}
    title = "Error vs lead time" if metrics.attrs.get("lead_dim") else "Errors"
    _lines(plt, metrics, errors, title, out / "error_vs_lead.png", region, "error")
    figures.append((title, "error_vs_lead.png"))
    if "spread" in metrics:
        keys = {"skill": "skill (ens.-mean RMSE)", "spread": "spread"}
        _lines(
            plt,
            metrics,
            keys,
            "Spread and skill",
            out / "spread_skill.png",
            region,
            "spread, skill",
        )
        figures.append(("Spread and skill", "spread_skill.png"))
    if "rank_histogram" in metrics:
        labels = _pick(metrics)
        fig, axes = _grid(plt, len(labels), f"Rank histogram (region: {region})")
        for ax, label in zip(axes, labels, strict=True):
            h = metrics["rank_histogram"].sel(variable=label, region=region)
            h = h.mean([d for d in h.dims if d != "rank"])
            ax.bar(h["rank"].values, h.values, label="truth rank")
            ax.axhline(1 / h.sizes["rank"], color="k", ls="--", label="flat (calibrated)")
            ax.set_title(label)
            ax.set_xlabel("rank of truth among members")
            ax.set_ylabel("frequency [1]")
            ax.set_ylim(0, 1.35 * max(float(h.max()), 1 / h.sizes["rank"]))
            ax.legend(fontsize="small", loc="upper right", ncols=2)
        fig.tight_layout()
        fig.savefig(out / "rank_histogram.png", dpi=100)
        plt.close(fig)
        figures.append(("Rank histogram", "rank_histogram.png"))
    return figures


def _labelled_fields(ds: xr.Dataset) -> dict[str, tuple[str, Any]]:
    out = {}
    for name in ds.data_vars:
        if "level" in ds[name].dims:
            for level in ds["level"].values:
                out[f"{name}_{float(level):g}"] = (name, level)
        else:
            out[str(name)] = (name, None)
    return out


def field_figures(
    pred: xr.Dataset, truth: xr.Dataset, out: Path, *, member_dim: str = "member"
) -> list[tuple[str, str]]:
    """Plot zonal energy spectra and maps of the RMSE of the (ensemble-mean) prediction.

    Parameters
    ----------
    pred, truth : xarray.Dataset
        Aligned prediction and truth (see :func:`xappa.verify.align.align`).
    out : pathlib.Path
        Directory for the PNG files.
    member_dim : str, default "member"
        Name of the ensemble dimension.

    Returns
    -------
    list of tuple of str
        ``(title, filename)`` for each figure written.
    """
    from xappa.verify.metrics import lat_weights
    from xappa.verify.spectra import zonal_energy_spectrum

    plt = _pyplot()
    fields = _labelled_fields(truth)
    preferred = [k for k, (_, lv) in fields.items() if lv is None or lv in (500, 850)]
    labels = (preferred + [k for k in fields if k not in preferred])[:MAX_PANELS]
    det = pred.mean(member_dim) if member_dim in pred.dims else pred

    def select(ds: xr.Dataset, label: str) -> xr.DataArray:
        name, level = fields[label]
        da = ds[name]
        return da.sel(level=level) if level is not None else da

    def spectrum(da: xr.DataArray) -> xr.DataArray:
        band = da.where(abs(da["latitude"]) < 89.0, drop=True)
        s = zonal_energy_spectrum(band).drop_vars(["frequency", "wavelength"])
        s = s.weighted(lat_weights(s["latitude"])).mean("latitude")
        return s.mean([d for d in s.dims if d != "zonal_wavenumber"]).compute()

    fig, axes = _grid(plt, len(labels), "Zonal energy spectra (time and latitude mean)")
    for ax, label in zip(axes, labels, strict=True):
        units = truth[fields[label][0]].attrs.get("units", "1")
        sources = {"truth": select(truth, label), "prediction (mean)": select(det, label)}
        if member_dim in pred.dims:
            sources["single member"] = select(pred, label).isel({member_dim: 0})
        top = 0.0
        for name, da in sources.items():
            s = spectrum(da)
            k = s["zonal_wavenumber"].values
            ax.loglog(k[1:], s.values[1:], label=name)
            top = max(top, float(np.nanmax(s.values[1:])))
        if top > 0:  # exact zeros (e.g. analytic fields) would stretch the axis to 1e-30
            ax.set_ylim(bottom=top * 1e-8)
        ax.set_title(label)
        ax.set_xlabel("zonal wavenumber [1]")
        ax.set_ylabel(f"energy [m ({units})$^2$]")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "spectra.png", dpi=100)
    plt.close(fig)

    lead = find_lead_dim(pred)
    over = f"time and {lead}" if lead else "time"
    model = pred.attrs.get("xappa_model")
    times = truth["time"].values if "time" in truth.coords else np.array([])
    when = f", {utc(times.min())} to {utc(times.max())}" if times.size else ""
    fig, axes = _grid(
        plt,
        len(labels),
        f"RMSE maps of the (ensemble-mean) prediction{f' of {model}' if model else ''},"
        f" over {over}{when}",
    )
    for ax, label in zip(axes, labels, strict=True):
        units = truth[fields[label][0]].attrs.get("units", "1")
        err = (select(det, label) - select(truth, label)) ** 2
        err = np.sqrt(err.mean([d for d in err.dims if d not in ("latitude", "longitude")]))
        draw_map(ax, err.compute(), title=label, colorbar=f"RMSE [{units}]")
    fig.tight_layout()
    fig.savefig(out / "error_maps.png", dpi=100)
    plt.close(fig)
    return [("Zonal energy spectra", "spectra.png"), ("Error maps", "error_maps.png")]
