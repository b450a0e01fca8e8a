"""A model's states as labelled Datasets: decoding latents, coordinates and provenance.

:func:`decode_tensor` turns standardized latents into physical pixels; :func:`state_dataset`
is the one place where states become a CF Dataset (coordinates, member labels, the user's
grid conventions, ``source``/``history`` and the model's provenance from
:func:`output_attrs`). Used by :func:`xappa.decode`, :func:`xappa.assimilate`,
:func:`xappa.forecast` and the batch reanalysis store.
"""

from __future__ import annotations

__all__ = ["MEMBER_ATTRS", "decode_tensor", "output_attrs", "state_dataset"]

from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor

from xappa.models.model import Model
from xappa.state.convert import tensor_to_dataset
from xappa.state.coords import restore_conventions
from xappa.state.stats import unstandardize


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
        The grid conventions to restore (:func:`xappa.state.coords.grid_conventions`), or empty
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
