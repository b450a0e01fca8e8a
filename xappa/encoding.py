r"""Encode states to the model's latent space and decode latents back to physical states.

:func:`encode` turns a state Dataset (any latitude order, either longitude convention, any
known units) into **standardized** latents, the space of the latent prior:
:math:`z = (E((x - \mu) / s) - m) / s_{eff}`. :func:`decode` inverts it to a state Dataset
in physical units with CF attributes, in the grid conventions recorded by :func:`encode`.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["decode", "decode_tensor", "encode"]

from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor

from xappa._sampling import (
    check_positive_int,
    grid_conventions,
    resolve_device,
    restore_conventions,
)
from xappa.model import Model
from xappa.state import dataset_to_tensor, tensor_to_dataset
from xappa.stats import standardize, unstandardize

LATENT_VARIABLE = "latent"
"""The name of the latent variable of :func:`encode`'s output."""

_CONVENTION_KEYS = ("latitude_name", "longitude_name", "latitude_order", "longitude_convention")


def _check_model(model: Any) -> Model:
    if not isinstance(model, Model):
        msg = f"model must be an xappa.Model; found {type(model).__name__}"
        raise TypeError(msg)
    return model


def encode(
    ds: xr.Dataset,
    *,
    model: Model,
    times: Any = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> xr.Dataset:
    r"""Encode a state Dataset to standardized latents.

    Parameters
    ----------
    ds : Dataset
        Holds every variable of ``model.spec`` over ``(time, [level,] latitude, longitude)``,
        in either latitude order and either longitude convention, in units convertible to
        the spec's. NaN (e.g. SST over land) become the channel mean, as in Appa.
    model : Model
        The model.
    times : array-like of datetime, optional
        The times to encode (all by default); they need not be regular.
    batch_size : int
        Frames per autoencoder call.
    device : torch.device or str, optional
        Where to compute (default: the ``device`` option, else the model's device).

    Returns
    -------
    Dataset
        ``latent`` over ``(time, latent_channel, y, x)``, float32, with shape
        ``(T, C_lat, h, w)``; attributes name the model, its weight hash and the grid
        conventions of ``ds`` (restored by :func:`decode`).

    Raises
    ------
    KeyError
        If a variable, level or time of the spec is missing.
    ValueError
        If the grid, dimensions or units do not match the spec.

    Examples
    --------
    >>> import xappa
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> ds = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=3)
    >>> z = xappa.encode(ds, model=model)
    >>> z.latent.dims, z.latent.shape
    (('time', 'latent_channel', 'y', 'x'), (3, 4, 4, 10))
    """
    model = _check_model(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(ds, xr.Dataset):
        msg = f"ds must be an xarray.Dataset; found {type(ds).__name__}"
        raise TypeError(msg)
    x, info = dataset_to_tensor(ds, model.spec, times=times, check_step=False)
    device = resolve_device(device, model.device)
    model.to(device)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].to(device=device, dtype=torch.float32)
            xs, _ = standardize(chunk, model.mean, model.std)
            out.append(model.encode_standardized(xs).float().cpu())
    z = torch.cat(out).numpy()
    c, h, w = model.latent_shape
    attrs = {
        "long_name": "standardized latent state",
        "units": "1",
        "description": "(E((x - mean) / std) - latent_mean) / latent_std",
    }
    coords = {
        "time": info.times.values,
        "latent_channel": np.arange(c),
        "y": np.arange(h),
        "x": np.arange(w),
    }
    conventions = grid_conventions(ds)
    ds_attrs = {**model.provenance(), "xappa_spec": model.spec.name}
    ds_attrs.update({f"xappa_{k}": v for k, v in conventions.items()})
    var = xr.Variable(("time", "latent_channel", "y", "x"), z, attrs)
    return xr.Dataset({LATENT_VARIABLE: var}, coords=coords, attrs=ds_attrs)


def decode_tensor(z: Tensor, model: Model, *, batch_size: int = 8) -> Tensor:
    """Decode standardized latents to physical pixels, frame batch by frame batch.

    Parameters
    ----------
    z : Tensor
        Standardized latents, with shape ``(..., C_lat, h, w)``.
    model : Model
        The model.
    batch_size : int
        Frames per decoder call.

    Returns
    -------
    Tensor
        Physical states on the model's device, with shape ``(..., C, H, W)``.
    """
    lead = z.shape[:-3]
    flat = z.reshape(-1, *z.shape[-3:])
    out = []
    with torch.no_grad():
        for start in range(0, flat.shape[0], batch_size):
            chunk = flat[start : start + batch_size].to(device=model.device, dtype=torch.float32)
            out.append(unstandardize(model.decode_standardized(chunk), model.mean, model.std))
    x = torch.cat(out) if out else flat.new_zeros(0, model.spec.n_channels, *model.spec.shape)
    return x.reshape(*lead, *x.shape[-3:])


def state_dataset(
    x: Tensor, model: Model, times: pd.DatetimeIndex, conventions: dict[str, str]
) -> xr.Dataset:
    """Wrap physical states ``(T, C, H, W)`` or ``(M, T, C, H, W)`` as a CF Dataset."""
    ds = tensor_to_dataset(x.float().cpu(), model.spec, times=times)
    ds = restore_conventions(ds, conventions)
    ds.attrs = {"Conventions": "CF-1.8", **model.provenance(), "xappa_spec": model.spec.name}
    return ds


def decode(
    latents: xr.Dataset,
    *,
    model: Model,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> xr.Dataset:
    """Decode standardized latents to a state Dataset in physical units.

    Parameters
    ----------
    latents : Dataset
        As :func:`encode` returns: ``latent`` over ``([member,] time, latent_channel, y, x)``.
    model : Model
        The model (the one that encoded them).
    batch_size : int
        Frames per decoder call.
    device : torch.device or str, optional
        Where to compute (default: the ``device`` option, else the model's device).

    Returns
    -------
    Dataset
        The spec's variables over ``([member,] time, [level,] latitude, longitude)``, in the
        spec's units with CF attributes, in the grid conventions that :func:`encode`
        recorded (else the spec's), with the model's provenance.

    Raises
    ------
    KeyError
        If ``latents`` has no ``latent`` variable.
    ValueError
        If its dimensions or shape do not fit the model.

    Examples
    --------
    >>> import xappa
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> ds = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=2)
    >>> out = xappa.decode(xappa.encode(ds, model=model), model=model)
    >>> out["2m_temperature"].dims, out["2m_temperature"].attrs["units"]
    (('time', 'latitude', 'longitude'), 'K')
    """
    model = _check_model(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(latents, xr.Dataset) or LATENT_VARIABLE not in latents.data_vars:
        found = sorted(map(str, latents.data_vars)) if isinstance(latents, xr.Dataset) else None
        msg = f"latents must be a Dataset with a {LATENT_VARIABLE!r} variable; found {found}"
        raise KeyError(msg)
    var = latents[LATENT_VARIABLE]
    dims = ("time", "latent_channel", "y", "x")
    lead = ("member",) if "member" in var.dims else ()
    if set(var.dims) != set(lead + dims):
        msg = (
            f"latents.latent must have dimensions ([member,] {', '.join(dims)}); found {var.dims}"
        )
        raise ValueError(msg)
    var = var.transpose(*lead, *dims)
    if tuple(var.shape[-3:]) != model.latent_shape:
        msg = (
            f"latents.latent frames must have shape {model.latent_shape} for model"
            f" {model.name!r}; found {tuple(var.shape[-3:])}"
        )
        raise ValueError(msg)
    model.to(resolve_device(device, model.device))
    z = torch.as_tensor(np.asarray(var.values, dtype=np.float32))
    x = decode_tensor(z, model, batch_size=batch_size)
    conventions = {k: latents.attrs.get(f"xappa_{k}") for k in _CONVENTION_KEYS}
    conventions = conventions if all(conventions.values()) else {}
    times = pd.DatetimeIndex(latents["time"].values)
    ds = state_dataset(x, model, times, conventions)  # type: ignore[arg-type]
    if lead:
        ds = ds.assign_coords(member=latents["member"].values)
    return ds
