"""The ``.appa`` accessor on :class:`xarray.Dataset`: thin forwards to xappa's functions."""

from __future__ import annotations

__all__ = ["AppaAccessor"]

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from xappa.core.da import SamplingConfig
    from xappa.models.model import Model


@xr.register_dataset_accessor("appa")
class AppaAccessor:
    """Creates the ``.appa`` namespace of a Dataset; it holds only the Dataset.

    Parameters
    ----------
    obj : xarray.Dataset
        The Dataset the accessor is attached to.
    """

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def evaluate(
        self,
        *,
        truth: xr.Dataset,
        climatology: xr.Dataset | None = None,
        regions: Sequence[str] = ("global",),
        reduce: Sequence[str] | None = None,
        member_dim: str = "member",
        time_batch: int | None = None,
        complete: str = "raise",
    ) -> xr.Dataset:
        """Score this Dataset against ``truth``; see :func:`xappa.verify.evaluate.evaluate`.

        Returns
        -------
        xarray.Dataset
            The metrics Dataset (per lead for a forecast).
        """
        from xappa.verify.evaluate import evaluate

        return evaluate(
            self._obj, truth, climatology=climatology, regions=regions, reduce=reduce,
            member_dim=member_dim, time_batch=time_batch, complete=complete,
        )  # fmt: skip

    def encode(
        self,
        *,
        model: Model | str | None = None,
        times: Any = None,
        batch_size: int = 8,
        device: torch.device | str | None = None,
    ) -> xr.Dataset:
        """Encode this state Dataset to standardized latents; see :func:`xappa.encode`.

        Returns
        -------
        xarray.Dataset
            The standardized latents over ``(time, latent_channel, y, x)``.
        """
        from xappa.encoding import encode

        return encode(self._obj, model=model, times=times, batch_size=batch_size, device=device)

    def decode(
        self,
        *,
        model: Model | str | None = None,
        batch_size: int = 8,
        device: torch.device | str | None = None,
    ) -> xr.Dataset:
        """Decode this latent Dataset to physical states; see :func:`xappa.decode`.

        Returns
        -------
        xarray.Dataset
            The states in physical units.
        """
        from xappa.encoding import decode

        return decode(self._obj, model=model, batch_size=batch_size, device=device)

    def assimilate(
        self,
        *more: xr.Dataset,
        model: Model | str | None = None,
        window: str | pd.Timedelta | tuple[Any, Any] | None = None,
        members: int = 8,
        sampling: SamplingConfig | str | None = None,
        mode: str = "reanalysis",
        stride: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        obs_error: float | Mapping[str, float] | None = None,
        check_values: bool = True,
        max_batch: int | None = None,
        progress: bool | None = None,
    ) -> xr.Dataset:
        """Assimilate these observations (and ``more``); see :func:`xappa.assimilate`.

        ``obs.appa.assimilate(swath, model="swe-default")`` assimilates the stations of
        ``obs`` and a swath together.

        Returns
        -------
        xarray.Dataset
            The ensemble, with a ``member`` dimension.
        """
        from xappa.assimilation import assimilate

        return assimilate(
            [self._obj, *more], model=model, window=window, members=members, sampling=sampling,
            mode=mode, stride=stride, seed=seed, device=device, obs_error=obs_error,
            check_values=check_values, max_batch=max_batch, progress=progress,
        )  # fmt: skip

    def forecast(
        self,
        *more: xr.Dataset,
        model: Model | str | None = None,
        lead: str | pd.Timedelta = "3D",
        members: int = 8,
        method: str = "autoregressive",
        init_times: Any = None,
        context: int = 2,
        window: str | pd.Timedelta | tuple[Any, Any] | None = None,
        obs_error: float | Mapping[str, float] | None = None,
        sampling: SamplingConfig | str | None = None,
        stride: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool | None = None,
    ) -> xr.Dataset:
        """Forecast from this analysis, state or observations; see :func:`xappa.forecast`.

        ``more`` are further observation Datasets (all-at-once only).

        Returns
        -------
        xarray.Dataset
            The forecast ensemble over ``(member, time, prediction_timedelta, ...)``.
        """
        from xappa.forecasting import forecast

        initial = [self._obj, *more] if more else self._obj
        return forecast(
            initial, model=model, lead=lead, members=members, method=method,
            init_times=init_times, context=context, window=window, obs_error=obs_error,
            sampling=sampling, stride=stride, seed=seed, device=device, progress=progress,
        )  # fmt: skip
