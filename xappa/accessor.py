"""The ``.appa`` accessor on :class:`xarray.Dataset`: thin forwards to xappa's functions."""

from __future__ import annotations

__all__ = ["AppaAccessor"]

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from xappa.model import Model


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
    ) -> xr.Dataset:
        """Score this Dataset against ``truth``; see :func:`xappa.evaluation.evaluate`.

        Parameters
        ----------
        truth : xarray.Dataset
            The truth.
        climatology : xarray.Dataset, optional
            Climatology for the anomaly correlation.
        regions : sequence of str, default ("global",)
            Region names.
        reduce : sequence of str, optional
            Dimensions averaged over.
        member_dim : str, default "member"
            Name of the ensemble dimension.

        Returns
        -------
        xarray.Dataset
            The metrics Dataset.
        """
        from xappa.evaluation import evaluate

        return evaluate(
            self._obj,
            truth,
            climatology=climatology,
            regions=regions,
            reduce=reduce,
            member_dim=member_dim,
        )

    def encode(
        self,
        *,
        model: Model,
        times: Any = None,
        batch_size: int = 8,
        device: torch.device | str | None = None,
    ) -> xr.Dataset:
        """Encode this state Dataset to latents; see :func:`xappa.encode`.

        Parameters
        ----------
        model : Model
            The model.
        times : array-like of datetime, optional
            The times to encode (all by default).
        batch_size : int
            Frames per autoencoder call.
        device : torch.device or str, optional
            Where to compute.

        Returns
        -------
        xarray.Dataset
            The standardized latents over ``(time, latent_channel, y, x)``.
        """
        from xappa.encoding import encode

        return encode(self._obj, model=model, times=times, batch_size=batch_size, device=device)

    def decode(
        self, *, model: Model, batch_size: int = 8, device: torch.device | str | None = None
    ) -> xr.Dataset:
        """Decode this latent Dataset to physical states; see :func:`xappa.decode`.

        Parameters
        ----------
        model : Model
            The model.
        batch_size : int
            Frames per decoder call.
        device : torch.device or str, optional
            Where to compute.

        Returns
        -------
        xarray.Dataset
            The states in physical units.
        """
        from xappa.encoding import decode

        return decode(self._obj, model=model, batch_size=batch_size, device=device)

    def assimilate(
        self,
        *,
        model: Model,
        window: str | pd.Timedelta | tuple[Any, Any] = "7D",
        members: int = 8,
        steps: int = 32,
        sampler: str = "pc",
        corrections: int = 2,
        delta: float = 0.1,
        schedule: str = "rectified",
        guidance: str | None = "mmps",
        solver: str = "gmres",
        solver_iterations: int = 2,
        stride: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        mode: str = "reanalysis",
        obs_error: float | Mapping[str, float] | None = None,
        max_batch: int | None = None,
        progress: bool | None = None,
    ) -> xr.Dataset:
        """Assimilate these observations; see :func:`xappa.assimilate` for the parameters.

        Returns
        -------
        xarray.Dataset
            The ensemble, with a ``member`` dimension.
        """
        from xappa.assimilation import assimilate

        return assimilate(
            self._obj, model=model, window=window, members=members, steps=steps,
            sampler=sampler, corrections=corrections, delta=delta, schedule=schedule,
            guidance=guidance,
            solver=solver, solver_iterations=solver_iterations, stride=stride, seed=seed,
            device=device, mode=mode, obs_error=obs_error, max_batch=max_batch,
            progress=progress,
        )  # fmt: skip

    def forecast(
        self,
        *,
        model: Model,
        lead: str | pd.Timedelta = "3D",
        members: int = 8,
        method: str = "autoregressive",
        context: int = 2,
        window: str | pd.Timedelta | tuple[Any, Any] = "1D",
        obs_error: float | Mapping[str, float] | None = None,
        steps: int = 32,
        sampler: str = "pc",
        corrections: int = 2,
        delta: float = 0.1,
        schedule: str = "rectified",
        solver: str = "gmres",
        solver_iterations: int = 2,
        stride: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool | None = None,
    ) -> xr.Dataset:
        """Forecast from this analysis, state or observations; see :func:`xappa.forecast`.

        Returns
        -------
        xarray.Dataset
            The forecast ensemble, with a ``member`` dimension.
        """
        from xappa.forecasting import forecast

        return forecast(
            self._obj, model=model, lead=lead, members=members, method=method, context=context,
            window=window, obs_error=obs_error, steps=steps, sampler=sampler,
            corrections=corrections, delta=delta, schedule=schedule, solver=solver,
            solver_iterations=solver_iterations, stride=stride, seed=seed, device=device,
            progress=progress,
        )  # fmt: skip
