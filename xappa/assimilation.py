r"""Assimilate observations with a latent diffusion prior: reanalysis and filtering ensembles.

The labelled layer of the engine (:mod:`xappa.core.da`): validate the observations once,
turn them into per-step operators on the standardized pixel state, and draw latent
trajectories with the engine, observed through the decoder,
:math:`A_t(z) = H_t(D(z_t s_{eff} + m))`; then decode them to physical states.

* **Reanalysis** (Appa's smoother): the :math:`L` model times of the window are one latent
  trajectory, covered by windows of :math:`K` frames with stride :math:`S` (default
  :math:`K / 2`), each guided by the observations of its frames and folded symmetrically
  (:func:`xappa.core.da.smooth`).
* **Filtering** is causal (:func:`xappa.core.da.filter_analyses`): an analysis at each
  observation time, from the observations up to that time only; the previous analysis
  ensemble enters as a Gaussian belief with its full (low-rank) covariance.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
"""

from __future__ import annotations

__all__ = ["assimilate", "window_times"]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xappa.core.da import SamplingConfig, as_config, filter_analyses, smooth
from xappa.core.da.precision import flush_denormal
from xappa.core.diffusion.trajectory import padded_length, window_count
from xappa.models.hub import resolve_model
from xappa.models.model import Model
from xappa.models.states import decode_tensor, state_dataset
from xappa.observations import ObservationSet, prepare_observations
from xappa.options import check_positive_int, plan_line, progress_bar, resolve_device
from xappa.state.coords import grid_conventions
from xappa.state.times import frame_dates, window_times

MODES = ("reanalysis", "filter")
"""The assimilation modes."""


def _datasets(obs: Any) -> list[xr.Dataset]:
    datasets = [obs] if isinstance(obs, xr.Dataset) else list(obs) if obs is not None else []
    if not datasets or not all(isinstance(d, xr.Dataset) for d in datasets):
        found = type(obs).__name__
        msg = f"obs must be an xarray.Dataset or a non-empty sequence of them; found {found}"
        raise TypeError(msg)
    return datasets


def _stride(stride: int | None, window: int) -> int:
    stride = max(window // 2, 1) if stride is None else check_positive_int(stride, "stride")
    if stride > window:
        msg = f"stride must be at most the model window {window}; found {stride}"
        raise ValueError(msg)
    return stride


def _draw(
    model: Model,
    obs_set: ObservationSet,
    times: pd.DatetimeIndex,
    *,
    mode: str,
    members: int,
    stride: int,
    config: SamplingConfig,
    seed: int,
    device: torch.device,
    max_batch: int | None,
    show: bool | None,
) -> tuple[torch.Tensor, list[int]]:
    """Draw latents ``(M, T', C_lat, h, w)`` and return them with their time indices."""
    observations = obs_set.frames(decode=model.decode_standardized)
    k, length = model.window, len(times)
    step = model.time_step
    dates = frame_dates(pd.date_range(times[0], periods=length + k, freq=step), device)
    common = {
        "members": members,
        "frame": model.latent_shape,
        "window": k,
        "config": config,
        "seed": seed,
        "max_batch": max_batch,
        "device": device,
        "dtype": model.state_dtype,
    }
    if mode == "reanalysis":
        windows = window_count(padded_length(length, k, stride), k, stride)
        plan = plan_line(f"assimilate ({mode})", config, members, windows)
        with progress_bar(config.steps, "assimilate", show, plan=plan) as bar:
            z = smooth(
                model.prior_denoiser(),
                observations,
                length=length,
                stride=stride,
                cond={"date": dates[:length]},
                callback=bar,
                **common,
            )
        return z, list(range(length))
    frames = observations.observed_frames
    plan = plan_line(f"assimilate ({mode})", config, members, len(frames))
    with progress_bar(len(frames), "assimilate", show, plan=plan, unit="cycle") as bar:
        z = filter_analyses(
            model.prior_denoiser(),
            observations,
            stride=stride,
            min_variance=model.full_state_variance.to(device)[:, None, None],
            cond={"date": dates},
            callback=bar,
            **common,
        )
    return z, frames


def assimilate(
    obs: xr.Dataset | Sequence[xr.Dataset],
    *,
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
    r"""Sample an ensemble of states given observations over a time window.

    Parameters
    ----------
    obs : Dataset or sequence of Dataset
        Observations of spec variables: gridded (NaN where unobserved, any rectilinear grid)
        or scattered points with ``time``, ``latitude``, ``longitude`` (and ``level``)
        coordinates, alone or together (stations and a swath); see
        :func:`xappa.observations.prepare_observations`. Error standard deviations come from
        CF ``ancillary_variables`` or ``obs_error``.
    model : Model, str or None
        The model, a model name (``"swe-default"``) or path, or None for the ``model``
        option of :func:`xappa.set_options`.
    window : str, Timedelta, (start, end) or None
        The assimilation window: by default the model times from the first to the last
        observation; a duration starting at the first observation time (floored to the
        model step); or ``(start, end)``, both included. It spans ``L`` model times.
    members : int
        The ensemble size (at least 2 to filter).
    sampling : SamplingConfig, str or None
        The sampling settings (sampler, steps, noise spacing, guidance and solver), a
        preset name (:data:`xappa.core.da.PRESETS`), or None for ``SamplingConfig()``.
    mode : {"reanalysis", "filter"}
        Smooth over the whole window, or filter causally: an analysis at each observation
        time, from the observations up to that time only.
    stride : int, optional
        The stride :math:`S` between windows (default :math:`K / 2`).
    seed : int
        The seed of all random draws: the same seed gives the same ensemble.
    device : torch.device or str, optional
        Where to sample (default: the ``device`` option, else the model's device). The model
        given is never moved: it is copied there if it lives elsewhere.
    obs_error : float or mapping of str to float, optional
        Observation error standard deviations in each variable's units; they take
        precedence over ancillary variables.
    check_values : bool
        Refuse observed values that contradict their units (most of a variable more than 10
        climatological standard deviations away, e.g. degC labelled K); False lets an expert
        through.
    max_batch : int, optional
        Reanalysis: the most windows (of all members) denoised per network call, bounding
        the memory of a call; all at once by default, ``1`` is Appa's one window at a time.
    progress : bool, optional
        Show a progress bar, after a line with the planned cost (windows, members,
        denoiser calls) and, once the first sampler step (or filter cycle) has run, the
        expected time (default: the ``progress`` option).

    Returns
    -------
    Dataset
        The spec's variables over ``(member, time, [level,] latitude, longitude)`` with
        ``M = members``: the ``L`` window times (reanalysis) or the analysis times
        (filter), in physical units with CF attributes. The grid follows the conventions of
        the first gridded observations (else the spec's). Attributes record the model name
        and weight hash, the xappa version, the sampling settings (``xappa_sampling_*``) and
        the observation counts (``xappa_n_obs`` per variable).

    Raises
    ------
    KeyError
        If an observed variable or level is not in the model, or a coordinate is missing.
    ValueError
        For a window shorter than one model step, observations outside the window, unknown
        or inconsistent units, implausible values, all-NaN variables, zero or negative error
        standard deviations, latitudes outside ``[-90, 90]``, ``members < 1`` or unknown
        settings.
    TypeError
        For ``obs`` that are not Datasets, or a bad ``model`` or ``sampling``.
    ImportError
        If gridded observations need regridding and no backend is installed.

    Examples
    --------
    >>> import xappa
    >>> from xappa.observations import sample_points, stations
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> truth = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=4)
    >>> sites = stations([48.8, -33.9], [2.35, 151.2], names=["paris", "sydney"])
    >>> obs = sample_points(truth, sites, error_std=0.5, seed=0)
    >>> fast = xappa.SamplingConfig(sampler="ddim", steps=2)
    >>> out = xappa.assimilate(obs, model=model, members=2, sampling=fast, progress=False)
    >>> out["2m_temperature"].dims, out.sizes["member"], out.attrs["xappa_model"]
    (('member', 'time', 'latitude', 'longitude'), 2, 'tiny')
    """
    model = resolve_model(model)
    members = check_positive_int(members, "members")
    config = as_config(sampling)
    if mode not in MODES:
        msg = f"mode must be one of {list(MODES)}; found {mode!r}"
        raise ValueError(msg)
    if mode == "filter" and members < 2:
        msg = f"members must be at least 2 to filter (the ensemble is the belief); found {members}"
        raise ValueError(msg)
    stride = _stride(stride, model.window)
    if max_batch is not None:
        max_batch = check_positive_int(max_batch, "max_batch")
    datasets = _datasets(obs)
    device = resolve_device(device, model.device)
    times = window_times(window, datasets, model.time_step)
    obs_set = prepare_observations(
        datasets,
        model.spec,
        (model.mean.cpu(), model.std.cpu()),
        times=times,
        obs_error=obs_error,
        check_values=check_values,
        dtype=model.state_dtype,
    )
    model = model.on(device)
    obs_set = obs_set.to(device)
    with flush_denormal():
        z, index = _draw(
            model, obs_set, times, mode=mode, members=members, stride=stride, config=config,
            seed=seed, device=device, max_batch=max_batch, show=progress,
        )  # fmt: skip
        x = decode_tensor(z, model)
    conventions = next((c for c in map(grid_conventions, datasets) if c), {})
    ds = state_dataset(
        x,
        model,
        times[index],
        conventions,
        members=np.arange(members),
        action=f"xappa.assimilate ({mode})",
    )
    per_var = obs_set.counts["n_obs"].sum("time")
    counts = {str(v): int(per_var.sel(variable=v)) for v in obs_set.counts["variable"].values}
    for v in ds.data_vars:
        ds[v].attrs["xappa_n_obs"] = counts.get(str(v), 0)
    ds.attrs.update(
        {
            "title": f"xappa {mode} ensemble",
            "xappa_mode": mode,
            **config.to_attrs(),
            "xappa_window": int(model.window),
            "xappa_stride": int(stride),
            "xappa_members": members,
            "xappa_seed": int(seed),
            "xappa_n_obs": "; ".join(f"{v}: {n}" for v, n in counts.items()),
            "xappa_obs_sources": "; ".join(obs_set.sources),
        }
    )
    return ds
