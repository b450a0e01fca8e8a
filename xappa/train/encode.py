"""Encode a whole state dataset to a latent zarr store, chunk by chunk, with its dates.

The store holds ``latent`` with dimensions ``([trajectory,] time, channel, y, x)`` (the
``trajectory`` dimension only when the states have one), float32, one zarr chunk per
trajectory and ``chunk`` times; ``date`` with dimensions ``(time, date_field)``, the integer
``[year, month, day, hour]`` of each time (Appa's ``dates``); and the per-channel latent
statistics ``latent_mean`` and ``latent_std`` (Appa's ``stats.pth``), over every latent
position of every time. Only one chunk of states is in memory at a time.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["encode_dataset", "latent_stats"]

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from xappa.options import get_options
from xappa.train.data import StateData

_DATE_FIELDS = np.array(["year", "month", "day", "hour"], dtype=object)


def latent_stats(latent: xr.DataArray) -> xr.Dataset:
    r"""Compute per-channel latent statistics, chunk by chunk with dask.

    :math:`\mu_c = E[z_c]` and :math:`s_c = \sqrt{E[z_c^2] - \mu_c^2}` over every dimension
    but ``channel`` (in float64).

    Parameters
    ----------
    latent : DataArray
        Latents with a ``channel`` dimension of size ``C``.

    Returns
    -------
    Dataset
        ``latent_mean`` and ``latent_std``, float32 with dimension ``channel``.
    """
    if "channel" not in latent.dims:
        msg = f"latent must have a 'channel' dimension; found {list(latent.dims)}"
        raise ValueError(msg)
    others = [d for d in latent.dims if d != "channel"]
    z = latent.astype(np.float64)
    mean = z.mean(others)
    square = (z**2).mean(others)
    std = np.sqrt((square - mean**2).clip(min=0.0))
    attrs = {"long_name": "per-channel statistic of the latents"}
    return xr.Dataset(
        {
            "latent_mean": mean.astype(np.float32).assign_attrs(attrs),
            "latent_std": std.astype(np.float32).assign_attrs(attrs),
        }
    ).compute()


def encode_dataset(
    autoencoder: nn.Module,
    data: StateData,
    path: str | os.PathLike,
    *,
    chunk: int = 24,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Encode every frame of a dataset into a latent zarr store, one chunk at a time.

    Parameters
    ----------
    autoencoder : nn.Module
        Has ``encode(x)`` from standardized states ``(B, C, H, W)`` to latents
        ``(B, C_lat, h, w)`` and ``latent_shape = (C_lat, h, w)`` (e.g.
        :class:`~xappa.core.nn.autoencoder.ConvAutoencoder`).
    data : StateData
        The standardized states, with shape ``(N, T, C, H, W)``.
    path : str or path
        The zarr store to write.
    chunk : int
        Times per chunk (read, encoded and written together).
    batch_size : int
        Frames per forward pass.
    device : str or torch.device, optional
        Where to encode (default: the ``device`` option, else CUDA when available).
    overwrite : bool
        Replace an existing store instead of raising.
    attrs : dict, optional
        Attributes of the store (the autoencoder run, ...).

    Returns
    -------
    Dataset
        The store, opened lazily.
    """
    if chunk < 1 or batch_size < 1:
        msg = f"chunk and batch_size must be >= 1; found {chunk} and {batch_size}"
        raise ValueError(msg)
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"path {str(path)!r} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    name = device or get_options()["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    autoencoder = autoencoder.to(torch.device(name)).eval()
    param = next(iter(autoencoder.parameters()))
    c, h, w = autoencoder.latent_shape
    n, t = data.n_trajectories, data.n_times
    lead = ("trajectory", "time") if data.has_trajectory else ("time",)
    shape = (n, t) if data.has_trajectory else (t,)
    chunks = (1, chunk) if data.has_trajectory else (chunk,)
    dims = (*lead, "channel", "y", "x")
    template = xr.Dataset(
        {
            "latent": (
                dims,
                da.zeros((*shape, c, h, w), dtype=np.float32, chunks=(*chunks, c, h, w)),
            ),
            "date": (("time", "date_field"), data.dates.numpy().astype(np.int32)),
        },
        coords={
            "time": ("time", data.times.values),
            "channel": ("channel", np.arange(c)),
            "date_field": ("date_field", _DATE_FIELDS),
        },
        attrs=dict(attrs or {}),
    )
    if data.has_trajectory:
        template = template.assign_coords(trajectory=("trajectory", np.arange(n)))
    template.to_zarr(path, mode="w", compute=False, consolidated=False)
    jobs = [(k, s) for k in range(n) for s in range(0, t, chunk)]
    show = get_options()["progress"]
    for k, start in tqdm(jobs, desc="encode", disable=not show):
        stop = min(start + chunk, t)
        x = data.read(np.full(stop - start, k), np.arange(start, stop))
        with torch.no_grad():
            parts = [
                autoencoder.encode(b.to(param.device, param.dtype)).float().cpu()
                for b in x.split(batch_size)
            ]
        z = torch.cat(parts).numpy()
        region = {"time": slice(start, stop)}
        if data.has_trajectory:
            region["trajectory"] = slice(k, k + 1)
            z = z[None]
        xr.Dataset({"latent": (dims, z)}).to_zarr(path, region=region, consolidated=False)
    opened = xr.open_zarr(path, consolidated=False)
    # appending replaces the store's attributes: write them again
    stats = latent_stats(opened["latent"]).assign_attrs(template.attrs)
    stats.to_zarr(path, mode="a", consolidated=False)
    return xr.open_zarr(path, consolidated=False)
