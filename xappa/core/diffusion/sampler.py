r"""Samplers that integrate the reverse diffusion from :math:`\sigma(t_{max})` to :math:`\sigma_{min}`.

Every sampler only needs a denoiser :math:`d(x_\sigma, \sigma) \approx E[x \mid x_\sigma]`,
called as ``denoiser(x, sigma, **cond)`` with ``x`` of shape ``(B, *)`` and ``sigma`` of shape
``(B,)`` (the same level for the whole batch). Guidance wraps a denoiser, so any sampler
composes with any guidance. Sampling runs under :func:`torch.no_grad`; a denoiser that needs
gradients (MMPS) enables them itself with :func:`torch.enable_grad`.

Two time grids are used, as in Appa:

* DDPM, DDIM and PC take ``steps`` jumps :math:`\sigma(t_k) \to \sigma(s_k)` with
  :math:`\Delta t = 1 / \mathrm{steps}`, :math:`t_k = \mathrm{linspace}(t_{max}, \Delta t,
  \mathrm{steps})` and :math:`s_k = t_k - \Delta t`. The last jump lands on
  :math:`\sigma(0) = \sigma_{min}`, with no extra final denoising. With :math:`t_{max} < 1`
  (Appa's bfloat16 setting) :math:`s_k \ne t_{k + 1}` and the state reached at
  :math:`\sigma(s_k)` is used as if it were at :math:`\sigma(t_{k + 1})`, as Appa does.
* LMS and Heun walk the grid :math:`\sigma_i = \sigma(\mathrm{linspace}(t_{max}, 0,
  \mathrm{steps} + 1))`, which also ends on :math:`\sigma_{min}`.

Coefficients are computed in float64 on the host; the state keeps the dtype of ``x1``.

The loop over noise levels, the progress callback and :func:`torch.no_grad` live once, in
:meth:`Sampler.__call__`; each sampler only writes :meth:`Sampler.step`, one move from
:math:`\sigma_t` to :math:`\sigma_s`. A sampler with memory (LMS's past derivatives) keeps it
in the :class:`Call` that :meth:`Sampler.__call__` creates afresh for every call, never on
the sampler, so a sampler can be called again, or from several threads.

References
----------
* Ho et al. (2020). Denoising Diffusion Probabilistic Models. https://arxiv.org/abs/2006.11239
* Song et al. (2021). Denoising Diffusion Implicit Models. https://arxiv.org/abs/2010.02502
* Song et al. (2021). Score-Based Generative Modeling through Stochastic Differential
  Equations. https://arxiv.org/abs/2011.13456
* Karras et al. (2022). Elucidating the Design Space of Diffusion-Based Generative Models.
  https://arxiv.org/abs/2206.00364
* Andry et al. (2025). Appa: Bending Weather Dynamics with Latent Diffusion Models for
  Global Data Assimilation. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = [
    "SAMPLER_NAMES",
    "Call",
    "DDIMSampler",
    "DDPMSampler",
    "HeunSampler",
    "LMSSampler",
    "PCSampler",
    "Sampler",
    "create_sampler",
    "lms_coefficients",
]

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from xappa.core.diffusion.denoiser import Denoiser
from xappa.core.diffusion.schedule import RectifiedSchedule, Schedule

Callback = Callable[[int, int], Any]


@dataclass
class Call:
    """What one call of :meth:`Sampler.__call__` passes to each of its steps.

    Attributes
    ----------
    generator : torch.Generator or None
        The source of the sampler's noise.
    cond : dict
        Conditioning passed to the denoiser.
    memory : dict
        What a sampler keeps from one step to the next of this call (LMS's past derivatives),
        empty at the first step; never kept on the sampler, so calls are independent.
    """

    generator: torch.Generator | None
    cond: dict[str, Any]
    memory: dict[str, Any] = field(default_factory=dict)


# Gauss-Legendre nodes and weights on [-1, 1]; n nodes integrate degree 2n - 1 exactly.
_GAUSS_LEGENDRE = {
    1: ((0.0,), (2.0,)),
    2: ((-1 / math.sqrt(3), 1 / math.sqrt(3)), (1.0, 1.0)),
}


class Sampler:
    r"""Creates a sampler of the reverse diffusion (base class).

    Parameters
    ----------
    denoiser : Denoiser
        The denoiser ``d(x, sigma, **cond)``, with ``x`` of shape ``(B, *)`` and ``sigma`` of
        shape ``(B,)``.
    schedule : Schedule
        The noise schedule :math:`\sigma(t)`.
    steps : int
        The number of integration steps.
    **kwargs
        Sampler-specific options; the base class accepts none.
    """

    name = "sampler"
    walks_grid = False
    """Whether the steps walk the grid of :meth:`levels` (LMS, Heun) rather than jump."""

    def __init__(
        self,
        denoiser: Denoiser,
        schedule: Schedule = RectifiedSchedule(),  # noqa: B008 (immutable)
        steps: int = 64,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            msg = f"{type(self).__name__} got unexpected options {sorted(kwargs)}"
            raise TypeError(msg)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            msg = f"steps must be a positive int; found {steps!r}"
            raise ValueError(msg)
        self.denoiser = denoiser
        self.schedule = schedule
        self.steps = steps

    @property
    def evaluations(self) -> int:
        """The number of denoiser calls per sample."""
        return self.steps

    def __call__(
        self,
        x1: Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
        **cond: Any,
    ) -> Tensor:
        r"""Integrate from the noisy state ``x1`` at :math:`\sigma(t_{max})` to :math:`\sigma_{min}`.

        Parameters
        ----------
        x1 : Tensor
            The initial state, with shape ``(B, *)``, usually
            :math:`\sigma(t_{max}) \, \epsilon` with :math:`\epsilon \sim \mathcal{N}(0, I)`.
        generator : torch.Generator, optional
            The source of the sampler's noise (DDPM and PC), drawn in a fixed order.
        callback : callable, optional
            Called as ``callback(step, total)`` after each step, with ``step`` from 1 to
            ``total = steps``.
        **cond
            Conditioning passed to the denoiser (for example ``date``).

        Returns
        -------
        Tensor
            The samples at :math:`\sigma_{min}`, with the shape and dtype of ``x1``.
        """
        torch._check(x1.ndim >= 1, lambda: f"x1 must have shape (B, *); found {tuple(x1.shape)}")
        x, call = x1, Call(generator, cond)
        with torch.no_grad():
            for k, (sigma_t, sigma_s) in enumerate(self.levels()):
                x = self.step(x, sigma_t, sigma_s, call)
                if callback is not None:
                    callback(k + 1, self.steps)
        return x

    def levels(self) -> list[tuple[float, float]]:
        r"""Return the noise levels of the steps, in order.

        Returns
        -------
        list of (float, float)
            ``steps`` float64 pairs :math:`(\sigma_t, \sigma_s)`: the jumps
            :math:`\sigma(t_k) \to \sigma(t_k - \Delta t)` (DDPM, DDIM, PC) or the
            consecutive levels of the grid :math:`\sigma(\mathrm{linspace}(t_{max}, 0,
            \mathrm{steps} + 1))` (LMS, Heun); see the module's description.
        """
        if self.walks_grid:
            t = torch.linspace(self.schedule.t_max, 0, self.steps + 1, dtype=torch.float64)
            return list(itertools.pairwise(self.schedule(t).tolist()))
        dt = 1 / self.steps
        t = torch.linspace(self.schedule.t_max, dt, self.steps, dtype=torch.float64)
        return list(zip(self.schedule(t).tolist(), self.schedule(t - dt).tolist(), strict=True))

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:
        r"""Move the state from :math:`\sigma_t` to :math:`\sigma_s < \sigma_t` (one step).

        :meth:`__call__` calls it once per pair of :meth:`levels`, under
        :func:`torch.no_grad`; each sampler writes only this.

        Parameters
        ----------
        x : Tensor
            The state at :math:`\sigma_t`, with shape ``(B, *)``.
        sigma_t, sigma_s : float
            The noise levels before and after the step.
        call : Call
            The call of :meth:`__call__` this step belongs to: its generator, conditioning
            and memory.

        Returns
        -------
        Tensor
            The state at :math:`\sigma_s`, with the shape and dtype of ``x``.
        """
        raise NotImplementedError

    def sample(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        callback: Callback | None = None,
        **cond: Any,
    ) -> Tensor:
        r"""Draw :math:`x_1 = \sigma(t_{max}) \, \epsilon` and integrate it.

        Parameters
        ----------
        shape : sequence of int
            The sample shape ``(B, *)``.
        generator : torch.Generator, optional
            The source of all randomness (initial noise first, then the sampler's noise).
        seed : int, optional
            Seed of a fresh generator on ``device``; exclusive with ``generator``.
        dtype : torch.dtype, optional
            The dtype of the samples (default: torch's default dtype).
        device : torch.device or str, optional
            The device of the samples (default: torch's default device).
        callback : callable, optional
            Called as ``callback(step, total)`` after each step.
        **cond
            Conditioning passed to the denoiser.

        Returns
        -------
        Tensor
            The samples, with shape ``shape``.
        """
        if generator is not None and seed is not None:
            msg = "pass either generator or seed to sample(), not both; found both"
            raise ValueError(msg)
        if seed is not None:
            generator = torch.Generator(device=device or "cpu").manual_seed(seed)
        noise = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        x1 = self.schedule.sigma_tmax * noise
        return self(x1, generator=generator, callback=callback, **cond)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r}, steps={self.steps})"

    # Internals -----------------------------------------------------------------------------

    def _denoise(self, x: Tensor, sigma: float, cond: dict[str, Any]) -> Tensor:
        return self.denoiser(x, x.new_full((x.shape[0],), sigma), **cond)


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class DDPMSampler(Sampler):
    r"""Creates the ancestral DDPM sampler.

    With :math:`\tau = 1 - \sigma_s^2 / \sigma_t^2`, each step is

    .. math:: x_s = x_t - \tau (x_t - d(x_t, \sigma_t)) + \sigma_s \sqrt{\tau} \, \epsilon.

    One denoiser call per step; see :class:`Sampler` for the parameters.
    """

    name = "ddpm"

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:  # noqa: D102
        tau = 1 - (sigma_s / sigma_t) ** 2
        x_hat = self._denoise(x, sigma_t, call.cond)
        return x - tau * (x - x_hat) + sigma_s * math.sqrt(tau) * _noise(x, call.generator)


class DDIMSampler(Sampler):
    r"""Creates the deterministic DDIM sampler.

    .. math:: x_s = x_t - (1 - \sigma_s / \sigma_t) (x_t - d(x_t, \sigma_t))

    which is the exact step of the probability-flow ODE when the denoiser is constant over
    the step. One denoiser call per step; see :class:`Sampler` for the parameters.
    """

    name = "ddim"

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:  # noqa: D102
        x_hat = self._denoise(x, sigma_t, call.cond)
        return x_hat + (sigma_s / sigma_t) * (x - x_hat)


class PCSampler(Sampler):
    r"""Creates the predictor-corrector sampler (Appa's, and xappa's default, for assimilation).

    At each step, ``corrections`` Langevin corrections at :math:`\sigma_t`,

    .. math:: x_t \leftarrow x_t + \delta (d(x_t, \sigma_t) - x_t)
        + \sqrt{2 \delta} \, \sigma_t \, \epsilon,

    then a DDIM predictor from :math:`\sigma_t` to :math:`\sigma_s`. The corrections are
    unadjusted Langevin steps of size :math:`\delta \sigma_t^2` on the (guided) score
    :math:`(d - x) / \sigma_t^2`: each one brings the noise-dominated directions a fraction
    :math:`\delta` of the way to equilibrium at :math:`\sigma_t`, so that errors of the
    predictor and of an approximate (guided) score are forgotten instead of carried along
    (see the guidance guide). With ``correct_below``, only the steps with
    :math:`\sigma_t \le` ``correct_below`` are corrected: above the data's scale (1 for
    standardized states) the noisy distribution is nearly Gaussian and the predictor alone is
    accurate. Costs ``corrections + 1`` denoiser calls per corrected step, one per other step.

    Parameters
    ----------
    denoiser : Denoiser
        The denoiser, see :class:`Sampler`.
    schedule : Schedule
        The noise schedule.
    steps : int
        The number of predictor steps.
    corrections : int
        The number of Langevin corrections per step (Appa: 2).
    delta : float
        The Langevin step size :math:`\delta` (Appa: 0.1).
    correct_below : float
        The largest noise level that is corrected (Appa: all, ``inf``).
    **kwargs
        Passed to :class:`Sampler`.
    """

    name = "pc"

    def __init__(
        self,
        denoiser: Denoiser,
        schedule: Schedule = RectifiedSchedule(),  # noqa: B008 (immutable)
        steps: int = 64,
        corrections: int = 2,
        delta: float = 0.1,
        correct_below: float = math.inf,
        **kwargs: Any,
    ) -> None:
        super().__init__(denoiser, schedule, steps, **kwargs)
        if isinstance(corrections, bool) or not isinstance(corrections, int) or corrections < 0:
            msg = f"corrections must be a non-negative int; found {corrections!r}"
            raise ValueError(msg)
        if not 0 < delta <= 1:
            msg = f"delta must be in (0, 1]; found {delta!r}"
            raise ValueError(msg)
        if not correct_below > 0:
            msg = f"correct_below must be a positive noise level; found {correct_below!r}"
            raise ValueError(msg)
        self.corrections = corrections
        self.delta = float(delta)
        self.correct_below = float(correct_below)

    @property
    def evaluations(self) -> int:  # noqa: D102
        corrected = sum(sigma_t <= self.correct_below for sigma_t, _ in self.levels())
        return self.steps + self.corrections * corrected

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:  # noqa: D102
        delta = self.delta
        for _ in range(self.corrections if sigma_t <= self.correct_below else 0):
            x_hat = self._denoise(x, sigma_t, call.cond)
            x = (
                x
                + delta * (x_hat - x)
                + math.sqrt(2 * delta) * sigma_t * _noise(x, call.generator)
            )
        x_hat = self._denoise(x, sigma_t, call.cond)
        return x_hat + (sigma_s / sigma_t) * (x - x_hat)

    def __repr__(self) -> str:
        return (
            f"PCSampler(schedule={self.schedule!r}, steps={self.steps},"
            f" corrections={self.corrections}, delta={self.delta:g},"
            f" correct_below={self.correct_below:g})"
        )


def lms_coefficients(sigmas: Sequence[float], i: int, order: int) -> list[float]:
    r"""Adams-Bashforth coefficients of the step :math:`\sigma_i \to \sigma_{i + 1}`.

    The derivative is interpolated by the Lagrange polynomial through the last ``order``
    nodes :math:`\sigma_i, \sigma_{i - 1}, \dots` and integrated over the step with
    :math:`\lfloor \mathrm{order} / 2 \rfloor + 1` Gauss-Legendre nodes (exact for these
    degrees), in float64:

    .. math:: c_j = \int_{\sigma_i}^{\sigma_{i + 1}} \prod_{k \ne j}
        \frac{\tau - \sigma_{i - k}}{\sigma_{i - j} - \sigma_{i - k}} \, d\tau.

    Parameters
    ----------
    sigmas : sequence of float
        The noise grid, with length at least ``i + 2``.
    i : int
        The step index; ``order <= i + 1``.
    order : int
        The number of nodes, 1 to 3.

    Returns
    -------
    list of float
        ``order`` coefficients; :math:`c_j` multiplies the derivative at :math:`\sigma_{i - j}`.
    """
    torch._check(
        1 <= order <= min(3, i + 1),
        lambda: f"order must be in [1, min(3, i + 1)]; found {order} at i = {i}",
    )
    nodes, weights = _GAUSS_LEGENDRE[order // 2 + 1]
    lo, hi = sigmas[i], sigmas[i + 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    coeffs = []
    for j in range(order):
        total = 0.0
        for u, w in zip(nodes, weights, strict=True):
            tau = mid + half * u
            prod = 1.0
            for k in range(order):
                if k != j:
                    prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
            total += w * prod
        coeffs.append(half * total)
    return coeffs


class LMSSampler(Sampler):
    r"""Creates the linear multistep (Adams-Bashforth in :math:`\sigma`) sampler.

    Integrates the probability-flow ODE :math:`dx / d\sigma = z(x, \sigma) = (x - d(x,
    \sigma)) / \sigma` on the grid :math:`\sigma_i = \sigma(\mathrm{linspace}(t_{max}, 0,
    \mathrm{steps} + 1))`, with :math:`x \leftarrow x + \sum_j c_j z_{i - j}` and the
    coefficients of :func:`lms_coefficients`. The order ramps up from 1 over the first steps.
    One denoiser call per step (Appa's default for unconditional generation).

    Parameters
    ----------
    denoiser : Denoiser
        The denoiser, see :class:`Sampler`.
    schedule : Schedule
        The noise schedule.
    steps : int
        The number of steps.
    order : int
        The multistep order, 1 to 3 (Appa: 3).
    **kwargs
        Passed to :class:`Sampler`.
    """

    name = "lms"
    walks_grid = True

    def __init__(
        self,
        denoiser: Denoiser,
        schedule: Schedule = RectifiedSchedule(),  # noqa: B008 (immutable)
        steps: int = 64,
        order: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(denoiser, schedule, steps, **kwargs)
        if order not in (1, 2, 3) or isinstance(order, bool):
            msg = f"order must be 1, 2 or 3; found {order!r}"
            raise ValueError(msg)
        self.order = order

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:  # noqa: D102
        z = (x - self._denoise(x, sigma_t, call.cond)) / sigma_t
        # The last `order` pairs (sigma_i, z_i), newest first; the per-call memory of LMS.
        memory = call.memory
        history = memory["history"] = [(sigma_t, z), *memory.get("history", [])[: self.order - 1]]
        nodes = [sigma for sigma, _ in reversed(history)] + [sigma_s]
        coeffs = lms_coefficients(nodes, len(history) - 1, len(history))
        return x + sum(c * z_j for c, (_, z_j) in zip(coeffs, history, strict=True))

    def __repr__(self) -> str:
        return f"LMSSampler(schedule={self.schedule!r}, steps={self.steps}, order={self.order})"


class HeunSampler(Sampler):
    r"""Creates EDM's deterministic second-order (Heun) sampler.

    Integrates the probability-flow ODE :math:`dx / d\sigma = (x - d(x, \sigma)) / \sigma` on
    the grid :math:`\sigma_i = \sigma(\mathrm{linspace}(t_{max}, 0, \mathrm{steps} + 1))`
    with the trapezoidal (Heun) correction at every step:

    .. math:: \tilde{x} = x_i + h_i z(x_i, \sigma_i), \qquad
        x_{i + 1} = x_i + \tfrac{h_i}{2} (z(x_i, \sigma_i) + z(\tilde{x}, \sigma_{i + 1}))

    with :math:`h_i = \sigma_{i + 1} - \sigma_i`. EDM's grid ends at :math:`\sigma = 0` and
    its last step is a plain Euler step; here the grid ends at :math:`\sigma_{min} > 0`, so
    the last step is corrected too. Two denoiser calls per step (Karras et al. 2022, Alg. 1
    without churn); see :class:`Sampler` for the parameters.
    """

    name = "heun"
    walks_grid = True

    @property
    def evaluations(self) -> int:  # noqa: D102
        return 2 * self.steps

    def step(self, x: Tensor, sigma_t: float, sigma_s: float, call: Call) -> Tensor:  # noqa: D102
        h = sigma_s - sigma_t
        z = (x - self._denoise(x, sigma_t, call.cond)) / sigma_t
        x_euler = x + h * z
        z_next = (x_euler - self._denoise(x_euler, sigma_s, call.cond)) / sigma_s
        return x + (h / 2) * (z + z_next)


_SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (PCSampler, LMSSampler, DDIMSampler, DDPMSampler, HeunSampler)
}
SAMPLER_NAMES = tuple(_SAMPLERS)
"""The names of the samplers, for :func:`create_sampler`."""


def create_sampler(name: str, denoiser: Denoiser, **kwargs: Any) -> Sampler:
    """Create a sampler by name.

    Parameters
    ----------
    name : str
        ``"ddpm"``, ``"ddim"``, ``"lms"``, ``"pc"`` or ``"heun"``.
    denoiser : Denoiser
        The denoiser ``d(x, sigma, **cond)``.
    **kwargs
        The sampler's options: ``schedule``, ``steps``, and ``order`` (LMS) or
        ``corrections``, ``delta`` and ``correct_below`` (PC).

    Returns
    -------
    Sampler
        The sampler.
    """
    if name not in _SAMPLERS:
        msg = f"sampler name must be one of {sorted(_SAMPLERS)}; found {name!r}"
        raise ValueError(msg)
    return _SAMPLERS[name](denoiser, **kwargs)
