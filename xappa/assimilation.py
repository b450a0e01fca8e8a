r"""Assimilate observations with a latent diffusion prior: reanalysis and filtering ensembles.

**Reanalysis** (Appa's smoother, facts §6.3): the :math:`L` model times of the window are one
latent trajectory, padded to a valid window layout (:math:`K` frames per window, stride
:math:`S = K / 2` by default) and trimmed after sampling. A sampler (the predictor-corrector
by default) integrates the reverse diffusion of the whole trajectory; at every call each
window is denoised by the prior with MMPS guidance and the windows are folded
symmetrically. The observation operator of a window is, for each observed frame,
:math:`A_t(z) = H_t(D(z_t s_{eff} + m))`: unstandardize the latent, decode to standardized
pixels, read the observed cells or points. All members are sampled in one batch.

**Filtering** is causal: the analysis at time :math:`t` uses the observations up to
:math:`t` only. For each :math:`t`, a window starts :math:`P = \min(t, K - S)` frames
before :math:`t`; its first :math:`P` frames are observed as latent full states (each
member's own previous analyses, with variance :math:`(\sigma_z / s_{eff})^2`, at least
``1e-4``), frame :math:`t` gets the observations of :math:`t`, and later frames are free.
Frame :math:`t` of the sampled window is the analysis. Step :math:`t` is seeded from
``(seed, t)``, so changing observations after :math:`t` leaves earlier analyses unchanged.

References
----------
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
* Rozet & Louppe (2023). Score-based Data Assimilation. https://arxiv.org/abs/2306.10574
* Rozet et al. (2024). Learning Diffusion Priors from Observations by Expectation
  Maximization. https://arxiv.org/abs/2405.13712
"""

from __future__ import annotations

__all__ = ["assimilate"]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import Tensor, nn

from xappa._sampling import (
    check_positive_int,
    extend_times,
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
from xappa.convert import find_coord
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.trajectory import TrajectoryDenoiser, padded_length
from xappa.core.guidance.dps import DPSDenoiser
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import Observation
from xappa.encoding import _check_model, decode_tensor, state_dataset
from xappa.model import Model
from xappa.observations import ObservationSet, prepare_observations

_GUIDANCE = ("mmps", "dps", None)
_MODES = ("reanalysis", "filter")


def _obs_times(datasets: Sequence[xr.Dataset]) -> np.ndarray:
    out = []
    for d in datasets:
        try:
            name = find_coord(d, "time")
        except (KeyError, ValueError):
            name = "time" if "time" in d.coords else None
        if name is None:
            msg = "obs must have a time coordinate; found none"
            raise KeyError(msg)
        out.append(np.asarray(d[name].values, dtype="datetime64[ns]").reshape(-1))
    times = np.concatenate(out)
    return times[~np.isnat(times)]


def window_times(
    window: str | pd.Timedelta | tuple[Any, Any],
    obs: Sequence[xr.Dataset],
    step: pd.Timedelta,
) -> pd.DatetimeIndex:
    """Return the model times of an assimilation window.

    Parameters
    ----------
    window : str, Timedelta or (start, end)
        A duration (``"7D"``: ``7D / step`` model times) starting at the first observation
        time floored to the model step, or explicit ``(start, end)`` times, both included.
    obs : sequence of Dataset
        The observations (for the start of a duration window).
    step : pandas.Timedelta
        The model time step.

    Returns
    -------
    DatetimeIndex
        The ``L`` model times.
    """
    if isinstance(window, tuple | list):
        if len(window) != 2:
            msg = f"window must be a duration or a (start, end) pair; found {len(window)} values"
            raise ValueError(msg)
        start, end = (pd.Timestamp(np.asarray(w, dtype="datetime64[ns]")[()]) for w in window)
        if end < start:
            msg = f"window end must not be before its start; found {start} to {end}"
            raise ValueError(msg)
        if (end - start) % step != pd.Timedelta(0):
            msg = f"window must be a multiple of the model time step {step}; found {end - start}"
            raise ValueError(msg)
        return pd.date_range(start, end, freq=step)
    try:
        length = pd.Timedelta(window)
    except (TypeError, ValueError) as err:
        msg = f"window must be a duration like '7D' or a (start, end) pair; found {window!r}"
        raise ValueError(msg) from err
    if length < step or length % step != pd.Timedelta(0):
        msg = (
            f"window must last at least one model time step ({step}) and be a multiple of it;"
            f" found {length}"
        )
        raise ValueError(msg)
    times = _obs_times(obs)
    if times.size == 0:
        msg = "obs have no valid times to start the window from; give window=(start, end)"
        raise ValueError(msg)
    start = pd.Timestamp(times.min()).floor(step)
    return pd.date_range(start, periods=int(length // step), freq=step)


def _guided(
    denoiser: nn.Module,
    observations: Sequence[Observation | None] | Observation,
    guidance: str | None,
    solver: str,
    iterations: int,
) -> nn.Module:
    if guidance == "mmps":
        return MMPSDenoiser(denoiser, observations, iterations=iterations, solver=solver)
    if guidance == "dps":
        return DPSDenoiser(denoiser, observations)
    return denoiser


class _Unused(nn.Module):
    """Drop the ``window_index`` keyword for an unguided prior."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: Tensor, sigma: Tensor, window_index: Any = None, **kw: Any) -> Tensor:
        return self.denoiser(x, sigma, **kw)


def _decoder(model: Model) -> Callable[[Tensor], Tensor]:
    return model.decode_standardized


def _reanalysis(
    model: Model,
    obs: ObservationSet,
    times: pd.DatetimeIndex,
    members: int,
    stride: int,
    make_sampler: Callable[[nn.Module], Any],
    guide: Callable[[nn.Module, Any], nn.Module],
    seed: int,
    device: torch.device,
    *,
    total: int | None = None,
    fold: str = "symmetrical",
    max_batch: int | None = None,
) -> Tensor:
    """Sample ``(M, total, C_lat, h, w)`` latents; observations on the first ``len(times)``."""
    k, length = model.window, len(times)
    total = length if total is None else total
    padded = padded_length(total, k, stride)
    n = (padded - k) // stride + 1
    decode = _decoder(model)
    windows = []
    for w in range(n):
        steps = [s for s in range(w * stride, w * stride + k) if s < length]
        windows.append(obs.observation(steps, decode=decode) if steps else None)
    dates = frame_dates(extend_times(times, padded, model.time_step), device)
    window_denoiser = guide(model.denoiser, windows)
    traj = TrajectoryDenoiser(
        window_denoiser, k, stride, mode=fold, max_batch=max_batch, pass_window_index=True
    )
    sampler = make_sampler(traj)
    with progress_bar(sampler.steps, "assimilate") as callback:
        z = sampler.sample(
            (members, padded, *model.latent_shape),
            generator=generator(seed, device=device),
            device=device,
            dtype=torch.float32,
            callback=callback,
            date=dates.expand(members, padded, 4),
        )
    return z[:, :total]


def _full_state(
    past: Tensor, variance: Tensor, pixel: Observation | None, n_past: int
) -> Observation:
    """One member's window observation: ``n_past`` latent full states, then frame ``t``."""

    def operator(x: Tensor) -> Tensor:
        parts = [x[:, :n_past].flatten(1)]
        if pixel is not None:
            parts.append(pixel.operator(x[:, n_past : n_past + 1]))
        return torch.cat(parts, dim=1)

    var = variance[:, None, None].expand(past.shape[1:]).expand(past.shape).flatten()
    values, variances = [past.flatten()], [var.to(past)]
    if pixel is not None:
        values.append(pixel.values.to(past))
        variances.append(pixel.variances.to(past))
    return Observation(operator=operator, values=torch.cat(values), variances=torch.cat(variances))


def _filter(
    model: Model,
    obs: ObservationSet,
    times: pd.DatetimeIndex,
    members: int,
    stride: int,
    make_sampler: Callable[[nn.Module], Any],
    guide: Callable[[nn.Module, Any], nn.Module],
    seed: int,
    device: torch.device,
) -> Tensor:
    k, length = model.window, len(times)
    max_past = max(min(k - stride, k - 1), 0)
    decode = _decoder(model)
    variance = model.full_state_variance.to(device)
    out = torch.zeros(members, length, *model.latent_shape, device=device)
    index = torch.arange(members, device=device)
    with progress_bar(length, "filter") as callback:
        for t in range(length):
            n_past = min(t, max_past)
            start = t - n_past
            pixel = obs.observation([t], decode=decode)
            observations: list[Observation | None] | Observation | None
            if n_past == 0:
                observations = pixel
            else:
                observations = [
                    _full_state(out[m, start:t], variance, pixel, n_past) for m in range(members)
                ]
            wtimes = pd.date_range(times[start], periods=k, freq=model.time_step)
            dates = frame_dates(wtimes, device).expand(members, k, 4)
            if observations is None:
                denoiser: nn.Module = model.denoiser
                extra = {}
            else:
                denoiser = guide(model.denoiser, observations)
                extra = {} if isinstance(observations, Observation) else {"window_index": index}
            sampler = make_sampler(denoiser)
            z = sampler.sample(
                (members, k, *model.latent_shape),
                generator=generator(seed, t, device=device),
                device=device,
                dtype=torch.float32,
                date=dates,
                **extra,
            )
            out[:, t] = z[:, n_past]
            callback(t + 1, length)
    return out


def assimilate(
    obs: xr.Dataset | Sequence[xr.Dataset],
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
    r"""Sample an ensemble of states given observations over a time window.

    Parameters
    ----------
    obs : Dataset or sequence of Dataset
        Observations of spec variables: gridded (NaN where unobserved, any rectilinear grid)
        or scattered points with ``time``, ``latitude``, ``longitude`` (and ``level``)
        coordinates; see :func:`xappa.observations.prepare_observations`. Error standard
        deviations come from CF ``ancillary_variables`` or ``obs_error``.
    model : Model
        The model.
    window : str, Timedelta or (start, end)
        The assimilation window: a duration starting at the first observation time (floored
        to the model step) or ``(start, end)``, both included. It spans ``L`` model times.
    members : int
        The ensemble size.
    steps : int
        The sampler steps (Appa: 32).
    sampler : str
        ``"pc"`` (Appa's predictor-corrector), ``"ddim"``, ``"ddpm"``, ``"lms"`` or ``"heun"``.
    corrections : int
        Langevin corrections per step (``"pc"``; Appa: 2).
    delta : float
        The Langevin step size (``"pc"``; Appa: 0.1).
    schedule : {"rectified", "loglinear", "loglogit"}
        The spacing of the sampler's noise levels: ``"rectified"`` (Appa's, uniform in
        :math:`t`) or steps uniform in :math:`\ln \sigma` (``"loglinear"``) or in
        :math:`\mathrm{logit}\, t` (``"loglogit"``), which keep more of the ensemble spread
        with few steps; see the guide on samplers.
    guidance : {"mmps", "dps", None}
        How the observations condition the prior; None samples the prior (no observations
        are used, but they are still validated and counted).
    solver : {"gmres", "cg"}
        The MMPS linear solver.
    solver_iterations : int
        Its fixed number of iterations (Appa: 2).
    stride : int, optional
        The window stride :math:`S` (default :math:`K / 2`); in filter mode, the window
        keeps :math:`K - S` past frames.
    seed : int
        The seed of all random draws: the same seed gives the same ensemble.
    device : torch.device or str, optional
        Where to sample (default: the ``device`` option, else the model's device).
    mode : {"reanalysis", "filter"}
        Smooth over the whole window, or filter causally (each analysis time uses the
        observations up to that time only).
    obs_error : float or mapping of str to float, optional
        Observation error standard deviations in each variable's units; they take
        precedence over ancillary variables.
    max_batch : int, optional
        Reanalysis: the most windows (of all members) denoised per network call, bounding
        the memory of a call; all at once by default, ``1`` is Appa's one window at a time.
    progress : bool, optional
        Show a progress bar (default: the ``progress`` option).

    Returns
    -------
    Dataset
        The spec's variables over ``(member, time, [level,] latitude, longitude)``, with
        ``M = members`` and the ``L`` window times, in physical units with CF attributes.
        The grid follows the conventions of the first gridded observations (else the
        spec's). Attributes record the model name and weight hash, the xappa version, the
        sampler settings and the observation counts (``xappa_n_obs`` per variable).

    Raises
    ------
    KeyError
        If an observed variable or level is not in the model, or a coordinate is missing.
    ValueError
        For a window shorter than one model step, observations outside the window, unknown
        or inconsistent units, all-NaN variables, zero or negative error standard deviations,
        latitudes outside ``[-90, 90]``, ``members < 1`` or unknown settings.
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
    >>> out = xappa.assimilate(
    ...     obs, model=model, window="4h", members=2, steps=2, corrections=0, progress=False
    ... )
    >>> out["2m_temperature"].dims, out.sizes["member"], out.attrs["xappa_model"]
    (('member', 'time', 'latitude', 'longitude'), 2, 'tiny')
    """
    model = _check_model(model)
    members = check_positive_int(members, "members")
    solver_iterations = check_positive_int(solver_iterations, "solver_iterations")
    if guidance not in _GUIDANCE:
        msg = f"guidance must be one of {list(_GUIDANCE)}; found {guidance!r}"
        raise ValueError(msg)
    if mode not in _MODES:
        msg = f"mode must be one of {list(_MODES)}; found {mode!r}"
        raise ValueError(msg)
    k = model.window
    stride = max(k // 2, 1) if stride is None else check_positive_int(stride, "stride")
    if stride > k:
        msg = f"stride must be at most the model window {k}; found {stride}"
        raise ValueError(msg)
    kwargs = sampler_kwargs(sampler, steps, corrections, delta, schedule)
    create_sampler(sampler, model.denoiser, **kwargs)  # validate the settings early
    datasets = [obs] if isinstance(obs, xr.Dataset) else list(obs)
    if not datasets or not all(isinstance(d, xr.Dataset) for d in datasets):
        msg = "obs must be an xarray.Dataset or a non-empty sequence of them"
        raise TypeError(msg)
    times = window_times(window, datasets, model.time_step)
    obs_set = prepare_observations(
        datasets, model.spec, (model.mean.cpu(), model.std.cpu()), times=times, obs_error=obs_error
    )
    device = resolve_device(device, model.device)
    model.to(device)
    obs_set = obs_set.to(device)

    def guide(denoiser: nn.Module, observations: Any) -> nn.Module:
        if guidance is None:
            return _Unused(denoiser)
        return _guided(denoiser, observations, guidance, solver, solver_iterations)

    def make_sampler(denoiser: nn.Module) -> Any:
        return create_sampler(sampler, denoiser, **kwargs)

    if max_batch is not None:
        max_batch = check_positive_int(max_batch, "max_batch")
    run = _reanalysis if mode == "reanalysis" else _filter
    extra = {"max_batch": max_batch} if mode == "reanalysis" else {}
    from xappa.options import set_options

    show = progress if progress is not None else None
    with set_options(**({} if show is None else {"progress": bool(show)})), flush_denormal():
        z = run(model, obs_set, times, members, stride, make_sampler, guide, seed, device, **extra)
        x = decode_tensor(z, model)
    conventions = next((c for c in map(grid_conventions, datasets) if c), {})
    ds = state_dataset(x, model, times, conventions)
    ds = ds.assign_coords(member=np.arange(members))
    ds["member"].attrs = {"long_name": "ensemble member"}
    per_var = obs_set.counts["n_obs"].sum("time")
    counts = {str(v): int(per_var.sel(variable=v)) for v in obs_set.counts["variable"].values}
    for v in ds.data_vars:
        ds[v].attrs["xappa_n_obs"] = counts.get(str(v), 0)
    ds.attrs.update(
        {
            "title": f"xappa {mode} ensemble",
            "xappa_mode": mode,
            "xappa_sampler": sampler,
            "xappa_steps": int(kwargs["steps"]),
            "xappa_corrections": int(corrections) if sampler == "pc" else 0,
            "xappa_delta": float(delta) if sampler == "pc" else 0.0,
            "xappa_schedule": schedule,
            "xappa_guidance": str(guidance),
            "xappa_solver": solver,
            "xappa_solver_iterations": solver_iterations,
            "xappa_window": int(k),
            "xappa_stride": int(stride),
            "xappa_members": members,
            "xappa_seed": int(seed),
            "xappa_n_obs": "; ".join(f"{v}: {n}" for v, n in counts.items()),
            "xappa_obs_sources": "; ".join(obs_set.sources),
        }
    )
    return ds
