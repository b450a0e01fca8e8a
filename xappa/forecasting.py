r"""Forecast from an analysis or a state: autoregressive windows of the latent prior.

As Appa's autoregressive forecast (facts §6.4): the last ``context`` frames of ``initial``
are encoded to standardized latents and observed as "full states" (variance
:math:`(\sigma_z / s_{eff})^2`, at least ``1e-4``) on the frames of a :math:`K`-frame window
that precede the first forecast frame; the window's later frames are sampled with MMPS. Each
next window starts :math:`S` frames later and observes the :math:`K - S` last frames made so
far, and so on until the lead time is covered. Members are sampled in one batch, each one
continuing its own trajectory (an ensemble ``initial`` gives each member its own start).

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["forecast"]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor, nn

from xappa._sampling import (
    check_positive_int,
    flush_denormal,
    frame_dates,
    generator,
    grid_conventions,
    resolve_device,
    sampler_kwargs,
)
from xappa._sampling import (
    progress as progress_bar,
)
from xappa.assimilation import _reanalysis, window_times
from xappa.convert import find_coord
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import Observation
from xappa.encoding import _check_model, decode_tensor, state_dataset
from xappa.model import Model
from xappa.observations import prepare_observations
from xappa.options import set_options
from xappa.state import dataset_to_tensor
from xappa.stats import standardize

_METHODS = ("autoregressive", "all-at-once")


def _latent_observation(past: Tensor, variance: Tensor, first: int) -> Observation:
    """Observe frames ``[first, first + P)`` of a window as the full states ``past``.

    ``past`` has shape ``(M, P, C_lat, h, w)``; rows are members (``window_index``).
    """
    n = past.shape[1]

    def operator(x: Tensor) -> Tensor:
        return x[:, first : first + n].flatten(1)

    var = variance[:, None, None].expand(past.shape[2:]).expand(past.shape[1:]).flatten()
    return Observation(operator=operator, values=past.flatten(), variances=var.to(past))


def _initial_latents(
    initial: xr.Dataset, model: Model, context: int, device: torch.device
) -> tuple[Tensor, pd.Timestamp]:
    """Encode the last ``context`` frames: ``(M0, P, C_lat, h, w)`` with M0 = 1 or members."""
    time = find_coord(initial, "time", name="initial")
    times = pd.DatetimeIndex(initial[time].values)
    if len(times) < context:
        msg = f"initial must have at least context={context} times; found {len(times)}"
        raise ValueError(msg)
    times = times[-context:]
    if context > 1 and (np.diff(times.values) != model.time_step.to_timedelta64()).any():
        msg = (
            f"the last {context} times of initial must be {model.time_step} apart; found"
            f" {list(map(str, times))}"
        )
        raise ValueError(msg)
    parts = (
        [initial]
        if "member" not in initial.dims
        else [initial.isel(member=i) for i in range(initial.sizes["member"])]
    )
    out = []
    with torch.no_grad():
        for part in parts:
            x, _ = dataset_to_tensor(part, model.spec, times=times, dtype=torch.float32)
            xs, _ = standardize(x.to(device), model.mean, model.std)
            out.append(model.encode_standardized(xs))
    return torch.stack(out), times[-1]


def _autoregressive(
    model: Model,
    z0: Tensor,
    n_lead: int,
    stride: int,
    t0: pd.Timestamp,
    seed: int,
    make_sampler: Callable[[nn.Module], Any],
    solver: str,
    iterations: int,
    device: torch.device,
) -> Tensor:
    """Continue the context latents ``z0`` ``(M, A, C_lat, h, w)`` by ``n_lead`` frames."""
    k, step = model.window, model.time_step
    members, context = z0.shape[:2]
    past_size = k - stride
    variance = model.full_state_variance.to(device)
    traj = z0  # (M, n, C_lat, h, w): the frames made so far, the context first
    index = torch.arange(members, device=device)
    n_windows = -(-n_lead // stride)
    with progress_bar(n_windows, "forecast") as callback:
        i = 0
        while traj.shape[1] - context < n_lead:
            past = traj[:, -past_size:]
            p = past.shape[1]
            first = past_size - p  # the past sits just before the new frames
            start = t0 - (p - 1 + first) * step
            dates = frame_dates(pd.date_range(start, periods=k, freq=step), device)
            obs = [_latent_observation(past[m : m + 1], variance, first) for m in range(members)]
            guided = MMPSDenoiser(model.denoiser, obs, iterations=iterations, solver=solver)
            z = make_sampler(guided).sample(
                (members, k, *model.latent_shape),
                generator=generator(seed, i, device=device),
                device=device,
                dtype=torch.float32,
                date=dates.expand(members, k, 4),
                window_index=index,
            )
            traj = torch.cat([traj, z[:, past_size:]], dim=1)
            t0 = t0 + stride * step
            i += 1
            callback(i, n_windows)
    return traj[:, context : context + n_lead]


def forecast(
    initial: xr.Dataset | Sequence[xr.Dataset],
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
    r"""Forecast an ensemble from the last times of an analysis or a state.

    Parameters
    ----------
    initial : Dataset or sequence of Dataset
        Autoregressive: the spec's variables over ``([member,] time, [level,] latitude,
        longitude)``, an analysis from :func:`xappa.assimilate` (each member continues its
        own state; then ``members`` must equal its member count) or states such as ERA5.
        All-at-once: observations, as for :func:`xappa.assimilate`.
    model : Model
        The model.
    lead : str or Timedelta
        The forecast length after the last time of ``initial`` (autoregressive) or of
        ``window`` (all-at-once); a multiple of the time step.
    members : int
        The ensemble size.
    method : {"autoregressive", "all-at-once"}
        Appa's autoregressive forecast from states, or its all-at-once forecast from
        observations: one trajectory over ``window`` and ``lead`` with the observations on
        the window's frames and a causal fold (each frame from the window where it is
        latest).
    context : int
        Autoregressive: how many of the last frames of ``initial`` condition the forecast
        (Appa: 2); at most :math:`K - S`.
    window : str, Timedelta or (start, end)
        All-at-once: the assimilation window, as in :func:`xappa.assimilate`.
    obs_error : float or mapping of str to float, optional
        All-at-once: observation error standard deviations.
    steps, sampler, corrections, delta, schedule
        The sampler settings, as in :func:`xappa.assimilate`.
    solver, solver_iterations
        The MMPS solver settings, as in :func:`xappa.assimilate`.
    stride : int, optional
        New frames per window, :math:`S` (default :math:`K / 2`).
    seed : int
        The seed; window ``i`` draws from ``(seed, i)``.
    device : torch.device or str, optional
        Where to sample.
    progress : bool, optional
        Show a progress bar (default: the ``progress`` option).

    Returns
    -------
    Dataset
        The spec's variables over ``(member, time, [level,] latitude, longitude)`` at the
        ``lead / time_step`` times after the initial time (attribute ``xappa_init_time``), in
        physical units with CF attributes, in the grid conventions of ``initial``.

    Raises
    ------
    ValueError
        If ``lead`` is not a positive multiple of the time step, ``members < 1``, ``context``
        does not fit the window, or the member counts differ.

    Examples
    --------
    >>> import xappa
    >>> from xappa.testing import mock_era5, tiny_model
    >>> model = tiny_model()
    >>> state = mock_era5(variables=model.spec.variables, nlat=16, nlon=32, ntime=2)
    >>> fc = xappa.forecast(
    ...     state, model=model, lead="3h", members=2, steps=2, corrections=0, progress=False
    ... )
    >>> fc.sizes["member"], fc.time.dt.hour.values.tolist()
    (2, [2, 3, 4])
    """
    model = _check_model(model)
    members = check_positive_int(members, "members")
    context = check_positive_int(context, "context")
    solver_iterations = check_positive_int(solver_iterations, "solver_iterations")
    if method not in _METHODS:
        msg = f"method must be one of {list(_METHODS)}; found {method!r}"
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
    if method == "autoregressive" and initial.sizes.get("member", members) != members:
        msg = (
            f"members must equal the member count of initial ({initial.sizes['member']});"
            f" found {members}"
        )
        raise ValueError(msg)
    kwargs = sampler_kwargs(sampler, steps, corrections, delta, schedule)
    device = resolve_device(device, model.device)
    model.to(device)
    n_lead = int(lead_td // step)
    show = {} if progress is None else {"progress": bool(progress)}
    with set_options(**show), flush_denormal():
        if method == "autoregressive":
            z0, t_init = _initial_latents(initial, model, context, device)  # type: ignore[arg-type]
            z = _autoregressive(
                model, z0.expand(members, *z0.shape[1:]), n_lead, stride, t_init, seed,
                lambda d: create_sampler(sampler, d, **kwargs),
                solver, solver_iterations, device,
            )  # fmt: skip
            conventions = grid_conventions(initial)  # type: ignore[arg-type]
        else:
            datasets = [initial] if isinstance(initial, xr.Dataset) else list(initial)
            times = window_times(window, datasets, step)
            obs_set = prepare_observations(
                datasets, model.spec, (model.mean.cpu(), model.std.cpu()), times=times,
                obs_error=obs_error,
            ).to(device)  # fmt: skip

            def guide(denoiser: nn.Module, observations: Any) -> nn.Module:
                return MMPSDenoiser(
                    denoiser, observations, iterations=solver_iterations, solver=solver
                )

            z = _reanalysis(
                model, obs_set, times, members, stride,
                lambda d: create_sampler(sampler, d, **kwargs), guide, seed, device,
                total=len(times) + n_lead, fold="causal",
            )[:, len(times) :]  # fmt: skip
            t_init = times[-1]
            conventions = next((c for c in map(grid_conventions, datasets) if c), {})
    x = decode_tensor(z, model)
    times = pd.date_range(t_init + step, periods=n_lead, freq=step)
    ds = state_dataset(x, model, times, conventions)
    ds = ds.assign_coords(member=np.arange(members))
    ds.attrs.update(
        {
            "title": f"xappa {method} forecast ensemble",
            "xappa_method": method,
            "xappa_init_time": str(t_init),
            "xappa_lead": str(lead_td),
            "xappa_context": context,
            "xappa_sampler": sampler,
            "xappa_steps": int(kwargs["steps"]),
            "xappa_schedule": schedule,
            "xappa_window": k,
            "xappa_stride": stride,
            "xappa_members": members,
            "xappa_seed": int(seed),
        }
    )
    return ds
