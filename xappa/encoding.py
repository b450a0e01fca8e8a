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

__all__ = ["decode", "encode"]

from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xappa.models import states
from xappa.models.hub import resolve_model
from xappa.models.model import Model
from xappa.options import check_positive_int, resolve_device
from xappa.state.convert import dataset_to_tensor, select_state
from xappa.state.coords import grid_conventions
from xappa.state.stats import standardize

LATENT_VARIABLE = "latent"
"""The name of the latent variable of :func:`encode`'s output."""

_CONVENTION_KEYS = ("latitude_name", "longitude_name", "latitude_order", "longitude_convention")


def encode(
    ds: xr.Dataset,
    *,
    model: Model | str | None = None,
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
    model : Model, str or None
        The model, a model name or path (loaded through the hub's cache), or None for the
        ``model`` option.
    times : array-like of datetime, optional
        The times to encode (all by default); they need not be regular.
    batch_size : int
        Frames per autoencoder call, and per read: a dask-backed ``ds`` (e.g. from
        :func:`xappa.open_era5`) is computed one batch of times at a time, so memory is
        bounded by the batch, not by the number of times.
    device : torch.device or str, optional
        Where to compute (default: the ``device`` option, else the model's device).

    Returns
    -------
    Dataset
        ``latent`` over ``(time, latent_channel, y, x)``, with shape ``(T, C_lat, h, w)``,
        in the model's :attr:`~xappa.models.model.Model.state_dtype` (float32; float64 for a model
        loaded with ``dtype=torch.float64``); attributes name the model, its weight hash and the grid
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
    model = resolve_model(model)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(ds, xr.Dataset):
        msg = f"ds must be an xarray.Dataset; found {type(ds).__name__}"
        raise TypeError(msg)
    state, info = select_state(ds, model.spec, times=times, check_step=False)
    device = resolve_device(device, model.device)
    model = model.on(device)
    c, h, w = model.latent_shape
    out = [torch.zeros(0, c, h, w, dtype=model.state_dtype)]
    with torch.no_grad():
        for start in range(0, state.sizes["time"], batch_size):
            # one batch of times is read (from dask: computed) at a time: memory stays bounded
            batch = state.isel(time=slice(start, start + batch_size))
            x, _ = dataset_to_tensor(batch, model.spec, check_step=False)
            xs, _ = standardize(x.to(device, model.state_dtype), model.mean, model.std)
            out.append(model.encode_standardized(xs).cpu())
    z = torch.cat(out).numpy()
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
    ds_attrs = states.output_attrs(model, "xappa.encode")
    ds_attrs.update({f"xappa_{k}": v for k, v in conventions.items()})
    var = xr.Variable(("time", "latent_channel", "y", "x"), z, attrs)
    return xr.Dataset({LATENT_VARIABLE: var}, coords=coords, attrs=ds_attrs)


def decode(
    latents: xr.Dataset,
    *,
    model: Model | str | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> xr.Dataset:
    """Decode standardized latents to a state Dataset in physical units.

    Parameters
    ----------
    latents : Dataset
        As :func:`encode` returns: ``latent`` over ``([member,] time, latent_channel, y, x)``.
    model : Model, str or None
        The model that encoded them (or its name or path; None: the ``model`` option).
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
    model = resolve_model(model)
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
    model = model.on(resolve_device(device, model.device))
    z = torch.as_tensor(np.asarray(var.values))
    x = states.decode_tensor(z, model, batch_size=batch_size)
    conventions = {k: latents.attrs.get(f"xappa_{k}") for k in _CONVENTION_KEYS}
    conventions = conventions if all(conventions.values()) else {}
    times = pd.DatetimeIndex(latents["time"].values)
    members = latents["member"].values if lead else None
    return states.state_dataset(  # type: ignore[arg-type]
        x, model, times, conventions, members=members, action="xappa.decode"
    )


_MOVED = dict.fromkeys(
    ("MEMBER_ATTRS", "decode_tensor", "output_attrs", "state_dataset"), "xappa.models.states"
)


def __getattr__(name: str) -> Any:
    # The helpers that moved to xappa.models.states, for one release with a warning.
    from xappa._moved import moved_attribute

    return moved_attribute(__name__, name, _MOVED)
