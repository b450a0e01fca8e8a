r"""The one sampling configuration of the engine: sampler, noise spacing and guidance.

Every posterior draw of xappa (reanalysis, filter, forecast, batch reanalysis, the Lorenz-96
helpers) is configured by one frozen :class:`SamplingConfig`. It is validated when it is
made, before any work is done, and builds the two pieces a draw needs: the guided window
denoiser (:meth:`SamplingConfig.guide`) and the sampler around a (trajectory) denoiser
(:meth:`SamplingConfig.make_sampler`). Named presets (:data:`PRESETS`) give tested
settings; :func:`as_config` accepts a config, a preset name or None (the default).
"""

from __future__ import annotations

__all__ = [
    "GUIDANCE_NAMES",
    "PRECISIONS",
    "PRESETS",
    "PriorDenoiser",
    "SamplingConfig",
    "as_config",
]

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xappa.core.diffusion.sampler import SAMPLER_NAMES, Sampler, create_sampler
from xappa.core.diffusion.schedule import SCHEDULE_NAMES, create_schedule
from xappa.core.guidance.dps import DPSDenoiser
from xappa.core.guidance.mmps import SOLVER_NAMES, MMPSDenoiser
from xappa.core.guidance.observation import Observations

GUIDANCE_NAMES = ("mmps", "dps", None)
"""How observations condition the prior: MMPS, DPS/SDA, or not at all (the prior)."""

PRECISIONS = ("float32", "bfloat16", "float16")
"""The autocast precisions of the networks during sampling (see :mod:`xappa.core.da.precision`)."""


def _fail(field: str, expected: str, found: Any) -> None:
    msg = f"SamplingConfig.{field} must be {expected}; found {found!r}"
    raise ValueError(msg)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    r"""Creates the settings of a posterior draw.

    Attributes
    ----------
    sampler : str
        The integrator of the reverse diffusion: ``"pc"`` (predictor-corrector, Appa's for
        assimilation), ``"lms"``, ``"ddim"``, ``"ddpm"`` or ``"heun"``.
    steps : int
        The number of sampler steps.
    schedule : str
        The spacing of the noise levels: ``"rectified"`` (Appa's, uniform in :math:`t`),
        ``"loglinear"`` (uniform in :math:`\ln \sigma`) or ``"loglogit"``.
    corrections : int
        Langevin corrections per step (``"pc"`` only).
    delta : float
        The Langevin step size, in :math:`(0, 1]` (``"pc"`` only).
    correct_below : float or None
        Correct only the steps at noise levels :math:`\sigma \le` ``correct_below``
        (``"pc"`` only); None corrects every step (Appa's). Above the scale of the
        standardized states (1) the noisy distribution is nearly Gaussian and corrections
        change little; below it they keep guided samples on the prior's manifold (see the
        guidance guide).
    order : int
        The multistep order, 1 to 3 (``"lms"`` only).
    guidance : str or None
        ``"mmps"``, ``"dps"`` or None (sample the prior; observations are ignored).
    solver : str
        The MMPS linear solver, ``"gmres"`` or ``"cg"``.
    iterations : int
        The MMPS solver's fixed number of iterations.
    gamma : float
        The prior-variance weight of DPS's diagonal likelihood (``"dps"`` only), at least 1:
        :math:`\gamma = 1` is the Tweedie variance :math:`\sigma^2 / (1 + \sigma^2)` of a
        standardized coordinate; smaller values over-weight the observations and every
        sampler diverges.
    precision : str
        The autocast precision of the networks during sampling: ``"float32"`` (off, the
        default), ``"bfloat16"`` or ``"float16"``. It applies to the prior denoiser and to
        the frame maps (decoders) of the observation operators; the sampler, the readouts
        and the MMPS solver stay in full precision (:mod:`xappa.core.da.precision`).

    Examples
    --------
    >>> from xappa.core.da import SamplingConfig
    >>> config = SamplingConfig(sampler="lms", steps=16)
    >>> config.evaluations
    16
    >>> SamplingConfig().evaluations  # PC 16 steps, 8 corrections at the 8 below sigma = 1
    80
    >>> SamplingConfig(steps=0)
    Traceback (most recent call last):
        ...
    ValueError: SamplingConfig.steps must be a positive int; found 0
    """

    sampler: str = "pc"
    steps: int = 16
    schedule: str = "loglogit"
    corrections: int = 8
    delta: float = 0.5
    correct_below: float | None = 1.0
    order: int = 3
    guidance: str | None = "mmps"
    solver: str = "gmres"
    iterations: int = 6
    gamma: float = 1.0
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_NAMES:
            _fail("sampler", f"one of {list(SAMPLER_NAMES)}", self.sampler)
        if not _is_int(self.steps) or self.steps < 1:
            _fail("steps", "a positive int", self.steps)
        if self.schedule not in SCHEDULE_NAMES:
            _fail("schedule", f"one of {list(SCHEDULE_NAMES)}", self.schedule)
        if not _is_int(self.corrections) or self.corrections < 0:
            _fail("corrections", "a non-negative int", self.corrections)
        if isinstance(self.delta, bool) or not isinstance(self.delta, int | float):
            _fail("delta", "a float in (0, 1]", self.delta)
        if not 0 < self.delta <= 1:
            _fail("delta", "a float in (0, 1]", self.delta)
        if self.correct_below is not None and (
            isinstance(self.correct_below, bool)
            or not isinstance(self.correct_below, int | float)
            or not 0 < self.correct_below < math.inf
        ):
            _fail("correct_below", "a positive finite float or None", self.correct_below)
        if self.order not in (1, 2, 3) or not _is_int(self.order):
            _fail("order", "1, 2 or 3", self.order)
        if self.guidance not in GUIDANCE_NAMES:
            _fail("guidance", f"one of {list(GUIDANCE_NAMES)}", self.guidance)
        if self.solver not in SOLVER_NAMES:
            _fail("solver", f"one of {list(SOLVER_NAMES)}", self.solver)
        if not _is_int(self.iterations) or self.iterations < 1:
            _fail("iterations", "a positive int (solver iterations)", self.iterations)
        gamma_rule = "a float >= 1 (smaller values over-weight the observations and diverge)"
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, int | float):
            _fail("gamma", gamma_rule, self.gamma)
        if not 1 <= self.gamma < math.inf:
            _fail("gamma", gamma_rule, self.gamma)
        if self.precision not in PRECISIONS:
            _fail("precision", f"one of {list(PRECISIONS)}", self.precision)

    # Derived quantities -------------------------------------------------------------------

    @property
    def evaluations(self) -> int:
        """The number of (guided) denoiser calls per draw."""
        return self.make_sampler(_no_denoiser).evaluations

    def cost(self) -> dict[str, int]:
        """Count the network passes of one draw of one window.

        Returns
        -------
        dict of str to int
            ``denoiser_calls`` (guided calls), ``forward`` (denoiser forwards), ``vjp``
            (backward passes through the denoiser) and ``jvp`` (forward-mode passes through
            the observation operator).
        """
        calls = self.evaluations
        if self.guidance == "mmps":
            per_call = {"forward": 1, "vjp": self.iterations, "jvp": self.iterations}
        elif self.guidance == "dps":
            per_call = {"forward": 1, "vjp": 1, "jvp": 0}
        else:
            per_call = {"forward": 1, "vjp": 0, "jvp": 0}
        return {"denoiser_calls": calls, **{k: v * calls for k, v in per_call.items()}}

    def replace(self, **changes: Any) -> SamplingConfig:
        """Return a copy with some fields changed (validated again).

        Parameters
        ----------
        **changes
            Fields and their new values.

        Returns
        -------
        SamplingConfig
            The new config.
        """
        return dataclasses.replace(self, **changes)

    def to_attrs(self) -> dict[str, Any]:
        """Return the settings as netCDF-safe attributes (``xappa_sampling_*``, and JSON).

        Returns
        -------
        dict
            One attribute per field (None as ``"none"``) and ``xappa_sampling`` (JSON).
        """
        fields = dataclasses.asdict(self)
        out: dict[str, Any] = {
            f"xappa_sampling_{k}": "none" if v is None else v for k, v in fields.items()
        }
        out["xappa_sampling"] = json.dumps(fields, sort_keys=True)
        return out

    # Building blocks ----------------------------------------------------------------------

    def make_sampler(self, denoiser: nn.Module) -> Sampler:
        """Create the sampler around a (guided, trajectory) denoiser.

        Parameters
        ----------
        denoiser : nn.Module
            The denoiser ``d(x, sigma, **cond)``.

        Returns
        -------
        Sampler
            The sampler, on the noise range of the priors (Appa's :math:`[10^{-3}, 10^3]`).
        """
        kwargs: dict[str, Any] = {"schedule": create_schedule(self.schedule), "steps": self.steps}
        if self.sampler == "pc":
            below = math.inf if self.correct_below is None else float(self.correct_below)
            kwargs.update(
                corrections=self.corrections, delta=float(self.delta), correct_below=below
            )
        elif self.sampler == "lms":
            kwargs.update(order=self.order)
        return create_sampler(self.sampler, denoiser, **kwargs)

    def guide(self, denoiser: nn.Module, observations: Observations | None) -> nn.Module:
        """Wrap a window denoiser with the guidance on ``observations``.

        Parameters
        ----------
        denoiser : nn.Module
            The prior window denoiser ``d(x, sigma, **cond)``.
        observations : Observation, sequence, mapping or None
            As :class:`~xappa.core.guidance.mmps.MMPSDenoiser` takes them; None (or
            ``guidance=None``) gives the prior, which ignores ``window_index``.

        Returns
        -------
        nn.Module
            The guided denoiser, which accepts the ``window_index`` keyword.
        """
        if self.guidance is None or observations is None:
            return PriorDenoiser(denoiser)
        if self.guidance == "dps":
            return DPSDenoiser(denoiser, observations, gamma=float(self.gamma))
        return MMPSDenoiser(denoiser, observations, iterations=self.iterations, solver=self.solver)


def _no_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    raise NotImplementedError  # only the sampler's grid is read (SamplingConfig.evaluations)


class PriorDenoiser(nn.Module):
    """Creates the unguided window denoiser: the prior, ignoring ``window_index``.

    Parameters
    ----------
    denoiser : nn.Module
        The prior denoiser.
    """

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(
        self, x_t: Tensor, sigma: Tensor, window_index: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        """Denoise ``x_t`` of shape ``(N, *shape)`` at ``sigma`` ``(N,)`` with the prior."""
        with torch.no_grad():
            return self.denoiser(x_t, sigma, **kwargs)


PRESETS: Mapping[str, SamplingConfig] = {
    "fast": SamplingConfig(steps=16, corrections=4, iterations=3),
    "accurate": SamplingConfig(steps=32, corrections=6, iterations=6),
    "appa": SamplingConfig(
        sampler="pc",
        steps=32,
        schedule="rectified",
        corrections=2,
        delta=0.1,
        correct_below=None,
        solver="gmres",
        iterations=2,
    ),
}
"""Named settings; the default is ``SamplingConfig()``. See the guide on sampler accuracy for
what each costs and gets wrong: ``"fast"`` (a third of the default's network passes),
``"accurate"`` (1.6 times the default's) and ``"appa"`` (Appa's own settings, xappa's defaults
before they were chosen by measured accuracy)."""


def as_config(sampling: SamplingConfig | str | None) -> SamplingConfig:
    """Return a :class:`SamplingConfig` from a config, a preset name or None (the default).

    Parameters
    ----------
    sampling : SamplingConfig, str or None
        The settings.

    Returns
    -------
    SamplingConfig
        The settings.

    Raises
    ------
    ValueError
        For an unknown preset name.
    TypeError
        For any other type.
    """
    if sampling is None:
        return SamplingConfig()
    if isinstance(sampling, SamplingConfig):
        return sampling
    if isinstance(sampling, str):
        if sampling not in PRESETS:
            msg = f"sampling must be a SamplingConfig or one of {sorted(PRESETS)}; found {sampling!r}"
            raise ValueError(msg)
        return PRESETS[sampling]
    msg = f"sampling must be a SamplingConfig, a preset name or None; found {type(sampling).__name__}"
    raise TypeError(msg)
