r"""Forecast from analyses, states or observations, with a lead-time dimension.

* **Autoregressive** (Appa's forecast): for each initial time, the ``context`` frames that
  end there are encoded to standardized latents and each member continues its own
  trajectory window by window (:func:`xappa.core.da.forecast_trajectories`): the last
  :math:`K - S` frames so far are observed as full states (variance
  :math:`(\sigma_z / s_{eff})^2`, at least ``1e-4``) and :math:`S` new frames are drawn.
  An ensemble ``initial`` (an analysis) gives each member its own start.
* **All-at-once**: one trajectory over the observation window and the lead, with the
  observations on the window's frames and a causal fold (:func:`xappa.core.da.smooth`); the
  initial time is the window's last time.

The output follows WeatherBench-2's forecast layout: ``time`` is the initial time,
``prediction_timedelta`` the lead, and ``valid_time`` their sum, so
:func:`xappa.verify.evaluate.evaluate` scores it per lead.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["forecast"]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xappa.core.da import SamplingConfig, as_config, forecast_trajectories, smooth
from xappa.core.da.precision import flush_denormal
from xappa.core.diffusion.trajectory import padded_length, window_count
from xappa.encoding import LATENT_VARIABLE, encode
from xappa.models.hub import resolve_model
from xappa.models.model import Model
from xappa.models.states import decode_tensor, state_dataset
from xappa.observations import prepare_observations
from xappa.options import check_positive_int, plan_line, progress_bar, resolve_device
from xappa.state.coords import find_coord, grid_conventions
from xappa.state.times import frame_dates, window_times

METHODS = ("autoregressive", "all-at-once")
"""The forecast methods."""

LEAD = "prediction_timedelta"
"""The name of the lead dimension (WeatherBench-2's)."""


def _init_times(initial: xr.Dataset, init_times: Any, context: int, model: Model) -> list:
    """Return the context frames of each initial time, checked to be in ``initial``."""
    name = find_coord(initial, "time", name="initial")
    have = pd.DatetimeIndex(initial[name].values)
    wanted = (
        [have[-1]] if init_times is None else list(pd.DatetimeIndex(np.atleast_1d(init_times)))
    )
    if not wanted:
        msg = "init_times must hold at least one time; found none"
        raise ValueError(msg)
    step = model.time_step
    out = []
    for t in wanted:
        frames = pd.date_range(end=t, periods=context, freq=step)
        missing = frames.difference(have)
        if len(missing):
            msg = (
                f"initial must hold the {context} context time(s) ending at init time {t}, "
                f"one time step ({step}) apart; missing {list(map(str, missing))}"
            )
            raise ValueError(msg)
        out.append(frames)
    return out


def _context(initial: xr.Dataset, frames: pd.DatetimeIndex, model: Model, members: int):
    """Encode the context frames: ``(members, P, C_lat, h, w)`` (one start or one per member)."""
    parts = (
        [initial]
        if "member" not in initial.dims
        else [initial.isel(member=i) for i in range(initial.sizes["member"])]
    )
    z = [
        torch.as_tensor(encode(p, model=model, times=frames)[LATENT_VARIABLE].values)
        for p in parts
    ]
    out = torch.stack(z).to(model.device, model.state_dtype)
    return out.expand(members, *out.shape[1:])


def _labelled(
    x: torch.Tensor, model: Model, init: pd.Timestamp, n_lead: int, conventions: dict
) -> xr.Dataset:
    """Wrap forecast states ``(M, n_lead, C, H, W)`` of one initial time with a lead axis."""
    step = model.time_step
    valid = pd.date_range(init + step, periods=n_lead, freq=step)
    ds = state_dataset(x, model, valid, conventions, action="xappa.forecast")
    leads = (valid - init).to_numpy()
    ds = ds.rename({"time": LEAD}).assign_coords({LEAD: leads})
    ds[LEAD].attrs = {"long_name": "forecast lead time", "standard_name": "forecast_period"}
    return ds.expand_dims(time=[init.to_datetime64()])


def forecast(
    initial: xr.Dataset | Sequence[xr.Dataset],
    *,
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
    r"""Forecast an ensemble from analyses, states or observations.

    Parameters
    ----------
    initial : Dataset or sequence of Dataset
        Autoregressive: the spec's variables over ``([member,] time, [level,] latitude,
        longitude)``, an analysis from :func:`xappa.assimilate` (each member continues its
        own state; then ``members`` must equal its member count) or states such as ERA5
        (lazy dask data is read only at the context times). All-at-once: observations, as
        for :func:`xappa.assimilate`.
    model : Model, str or None
        The model, a model name or path, or None for the ``model`` option.
    lead : str or Timedelta
        The longest lead time, a positive multiple of the time step.
    members : int
        The ensemble size.
    method : {"autoregressive", "all-at-once"}
        Appa's autoregressive forecast from states, or its all-at-once forecast from
        observations.
    init_times : array-like of datetime, optional
        Autoregressive: the initial times (default: the last time of ``initial``); each
        needs the ``context`` times that end at it.
    context : int
        Autoregressive: how many frames condition the forecast (Appa: 2); at most
        :math:`K - S`.
    window : str, Timedelta, (start, end) or None
        All-at-once: the assimilation window, as in :func:`xappa.assimilate`.
    obs_error : float or mapping of str to float, optional
        All-at-once: observation error standard deviations.
    sampling : SamplingConfig, str or None
        The sampling settings, a preset name or None (``SamplingConfig()``).
    stride : int, optional
        New frames per window, :math:`S` (default :math:`K / 2`).
    seed : int
        The seed; the forecast of initial time :math:`i` draws window :math:`j` with the key
        :math:`(i, j)`.
    device : torch.device or str, optional
        Where to sample.
    progress : bool, optional
        Show a progress bar, after a line with the planned cost and, once the first window
        (or step) has run, the expected time (default: the ``progress`` option).

    Returns
    -------
    Dataset
        The spec's variables over ``(member, time, prediction_timedelta, [level,] latitude,
        longitude)``: ``time`` is the initial time, ``prediction_timedelta`` the leads from
        one time step to ``lead``, and the coordinate ``valid_time`` their sum; physical
        units with CF attributes, in the grid conventions of ``initial``.

    Raises
    ------
    ValueError
        If ``lead`` is not a positive multiple of the time step, ``members < 1``, ``context``
        does not fit the window, the member counts differ or context times are missing.

    Examples
    --------
    >>> import xappa
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> state = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=2)
    >>> fast = xappa.SamplingConfig(sampler="ddim", steps=2)
    >>> fc = xappa.forecast(state, model=model, lead="3h", members=2, sampling=fast,
    ...                     progress=False)
    >>> dict(fc.sizes)["prediction_timedelta"], fc.valid_time.dt.hour.values.tolist()
    (3, [[2, 3, 4]])
    """
    model = resolve_model(model)
    members = check_positive_int(members, "members")
    context = check_positive_int(context, "context")
    config = as_config(sampling)
    if method not in METHODS:
        msg = f"method must be one of {list(METHODS)}; found {method!r}"
        raise ValueError(msg)
    if method == "autoregressive" and not isinstance(initial, xr.Dataset):
        msg = f"initial must be an xarray.Dataset; found {type(initial).__name__}"
        raise TypeError(msg)
    k = model.window
    stride = max(k // 2, 1) if stride is None else check_positive_int(stride, "stride")
    if stride >= k:
        msg = f"stride must be less than the model window {k}; found {stride}"
        raise ValueError(msg)
    if method == "autoregressive" and context > k - stride:
        msg = f"context must be at most window - stride = {k - stride}; found {context}"
        raise ValueError(msg)
    step = model.time_step
    try:
        lead_td = pd.Timedelta(lead)
    except (TypeError, ValueError) as err:
        msg = f"lead must be a duration like '3D'; found {lead!r}"
        raise ValueError(msg) from err
    if lead_td < step or lead_td % step != pd.Timedelta(0):
        msg = f"lead must be a positive multiple of the time step {step}; found {lead_td}"
        raise ValueError(msg)
    n_lead = int(lead_td // step)
    device = resolve_device(device, model.device)
    if method == "autoregressive":
        if initial.sizes.get("member", members) != members:  # type: ignore[union-attr]
            msg = (
                f"members must equal the member count of initial"
                f" ({initial.sizes['member']}); found {members}"  # type: ignore[union-attr]
            )
            raise ValueError(msg)
        starts = _init_times(initial, init_times, context, model)  # type: ignore[arg-type]
        conventions = grid_conventions(initial)  # type: ignore[arg-type]
    elif init_times is not None:
        msg = "init_times is for method='autoregressive'; all-at-once starts at the window end"
        raise ValueError(msg)
    model = model.on(device)
    parts = []
    with flush_denormal():
        if method == "autoregressive":
            total = len(starts) * -(-n_lead // stride)
            plan = plan_line(f"forecast ({len(starts)} start(s))", config, members, total)
            with progress_bar(total, "forecast", progress, plan=plan, unit="window") as bar:
                for i, frames in enumerate(starts):
                    z0 = _context(initial, frames, model, members)  # type: ignore[arg-type]

                    def cond(start: int, length: int, first=frames[0]) -> dict:
                        when = pd.date_range(first + start * step, periods=length, freq=step)
                        return {"date": frame_dates(when, device)}

                    z = forecast_trajectories(
                        model.prior_denoiser(), z0, lead=n_lead, window=k, stride=stride,
                        config=config, variance=model.full_state_variance[:, None, None],
                        seed=seed, key=(i,), cond=cond, device=device,
                        callback=lambda *_: bar(0, 0),
                    )  # fmt: skip
                    x = decode_tensor(z, model)
                    parts.append(_labelled(x, model, frames[-1], n_lead, conventions))
        else:
            datasets = [initial] if isinstance(initial, xr.Dataset) else list(initial)
            times = window_times(window, datasets, step)
            obs_set = prepare_observations(
                datasets, model.spec, (model.mean.cpu(), model.std.cpu()), times=times,
                obs_error=obs_error, dtype=model.state_dtype,
            ).to(device)  # fmt: skip
            length = len(times) + n_lead
            dates = frame_dates(pd.date_range(times[0], periods=length, freq=step), device)
            windows = window_count(padded_length(length, k, stride), k, stride)
            plan = plan_line("forecast (all-at-once)", config, members, windows)
            with progress_bar(config.steps, "forecast", progress, plan=plan) as bar:
                z = smooth(
                    model.prior_denoiser(), obs_set.frames(decode=model.decode_standardized),
                    members=members, length=length, frame=model.latent_shape, window=k,
                    stride=stride, config=config, seed=seed, cond={"date": dates},
                    fold="causal", device=device, dtype=model.state_dtype, callback=bar,
                )[:, len(times) :]  # fmt: skip
            x = decode_tensor(z, model)
            conventions = next((c for c in map(grid_conventions, datasets) if c), {})
            parts.append(_labelled(x, model, times[-1], n_lead, conventions))
    ds = xr.concat(parts, dim="time", combine_attrs="override") if len(parts) > 1 else parts[0]
    ds = ds.transpose("member", "time", LEAD, ...)
    ds = ds.assign_coords(valid_time=ds["time"] + ds[LEAD])
    ds["valid_time"].attrs = {"long_name": "valid time (initial time plus lead)"}
    ds.attrs.update(
        {
            "title": f"xappa {method} forecast ensemble",
            "xappa_method": method,
            "xappa_lead": str(lead_td),
            "xappa_context": context,
            **config.to_attrs(),
            "xappa_window": k,
            "xappa_stride": stride,
            "xappa_members": members,
            "xappa_seed": int(seed),
        }
    )
    return ds
