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

__all__ = ["MEMBER_ATTRS", "decode", "decode_tensor", "encode", "output_attrs", "state_dataset"]

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
from xappa.models.hub import resolve_model
from xappa.models.model import Model
from xappa.state.convert import dataset_to_tensor, select_state, tensor_to_dataset
from xappa.state.stats import standardize, unstandardize

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
    ds_attrs = output_attrs(model, "xappa.encode")
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
            chunk = flat[start : start + batch_size].to(model.device, model.state_dtype)
            out.append(unstandardize(model.decode_standardized(chunk), model.mean, model.std))
    x = torch.cat(out) if out else flat.new_zeros(0, model.spec.n_channels, *model.spec.shape)
    return x.reshape(*lead, *x.shape[-3:])


MEMBER_ATTRS = {"standard_name": "realization", "long_name": "ensemble member", "units": "1"}
"""CF attributes of the ``member`` coordinate of every ensemble output."""


def output_attrs(model: Model, action: str | None = None) -> dict[str, str]:
    """Return the global attributes of an output Dataset: CF ``source`` and ``history``.

    Parameters
    ----------
    model : Model
        The model that made the output.
    action : str, optional
        What made it, for ``history`` (e.g. ``"xappa.assimilate (reanalysis)"``).

    Returns
    -------
    dict of str to str
        ``Conventions``, ``source`` (the model, its weight hash and xappa's version),
        ``history`` (``action`` and xappa's version, without a clock time, so that a seeded
        run gives an identical Dataset), the model's provenance and ``xappa_spec``.
    """
    from xappa import __version__

    return {
        "Conventions": "CF-1.8",
        "source": (
            f"xappa {__version__}, model {model.name!r} (state {model.spec.name!r},"
            f" weight hash {model.weight_hash})"
        ),
        "history": f"{action or 'made by xappa'} (xappa {__version__})",
        **model.provenance(),
        "xappa_spec": model.spec.name,
    }


def state_dataset(
    x: Tensor,
    model: Model,
    times: pd.DatetimeIndex,
    conventions: dict[str, str],
    *,
    members: Any = None,
    action: str | None = None,
) -> xr.Dataset:
    """Wrap physical states as a CF Dataset: the one place outputs get their coordinates.

    Parameters
    ----------
    x : Tensor
        Physical states, with shape ``(T, C, H, W)``, or ``(M, T, C, H, W)`` for ``M``
        ensemble members.
    model : Model
        The model that made them.
    times : pandas.DatetimeIndex
        The ``T`` valid times.
    conventions : dict of str to str
        The grid conventions to restore (:func:`xappa._sampling.grid_conventions`), or empty
        for the spec's.
    members : array-like, optional
        The ``M`` member labels of a 5-D ``x`` (default ``0, ..., M - 1``). The ``member``
        coordinate gets :data:`MEMBER_ATTRS` (CF ``standard_name: realization``).
    action : str, optional
        What made the states, recorded in the ``history`` attribute.

    Returns
    -------
    Dataset
        The spec's variables over ``([member,] time, [level,] latitude, longitude)``, with
        the attributes of :func:`output_attrs`.

    Raises
    ------
    ValueError
        If ``members`` is given for a 4-D ``x`` or does not have ``M`` labels.
    """
    if x.ndim == 5:
        labels = np.arange(x.shape[0]) if members is None else np.asarray(members)
        if labels.shape != (x.shape[0],):
            msg = f"members must have one label per member ({x.shape[0]}); found {labels.shape}"
            raise ValueError(msg)
    elif members is not None:
        msg = f"members is given, but x has no member dimension; found shape {tuple(x.shape)}"
        raise ValueError(msg)
    x = x.cpu() if x.dtype == torch.float64 else x.float().cpu()  # float64 models stay float64
    ds = tensor_to_dataset(x, model.spec, times=times)
    if x.ndim == 5:
        ds = ds.assign_coords(member=xr.Variable("member", labels, MEMBER_ATTRS))
    ds = restore_conventions(ds, conventions)
    ds.attrs = output_attrs(model, action)
    return ds


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
    x = decode_tensor(z, model, batch_size=batch_size)
    conventions = {k: latents.attrs.get(f"xappa_{k}") for k in _CONVENTION_KEYS}
    conventions = conventions if all(conventions.values()) else {}
    times = pd.DatetimeIndex(latents["time"].values)
    members = latents["member"].values if lead else None
    return state_dataset(  # type: ignore[arg-type]
        x, model, times, conventions, members=members, action="xappa.decode"
    )
