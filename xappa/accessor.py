"""The ``.appa`` accessor on :class:`xarray.Dataset`: thin forwards to xappa's functions."""

from __future__ import annotations

__all__ = ["AppaAccessor"]

from collections.abc import Sequence

import xarray as xr


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
