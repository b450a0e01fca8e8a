r"""Tensor core of the shallow-water testbed: forcing, balanced initial states, integration.

The dynamics are those of torch-harmonics' spectral ``ShallowWaterSolver`` (vorticity,
divergence and geopotential on the sphere, third-order Adams-Bashforth steps and implicit
hyperdiffusion of vorticity and divergence). This module adds an optional stochastic vorticity
forcing and a linear drag on the wind, a balanced random initial state, and an hourly loop.
Spectral states have shape ``(3, lmax, mmax)`` and hold the coefficients of
:math:`(\Phi, \zeta, \delta)`; grid states have shape ``(3, nlat, nlon)`` and hold
:math:`(\Phi, u, v)`. Everything is in float64 / complex128 and SI units.

References
----------
* Galewsky et al. (2004). An initial-value problem for testing numerical models of the global
  shallow-water equations. https://doi.org/10.1111/j.1600-0870.2004.00071.x
* Bonev et al. (2023). Spherical Fourier Neural Operators: Learning Stable Dynamics on the
  Sphere. https://arxiv.org/abs/2306.03838
"""

from __future__ import annotations

__all__ = [
    "ForcedShallowWaterSolver",
    "StochasticForcing",
    "balanced_initial_condition",
    "band_variance",
    "integrate",
    "make_solver",
    "spectral_noise",
]

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_harmonics.examples import ShallowWaterSolver

#: Degree at which the kinetic-energy spectrum of the initial states peaks.
SPECTRUM_PEAK = 4.0


@dataclass(frozen=True, kw_only=True)
class StochasticForcing:
    r"""Creates the settings of a stochastic vorticity forcing with a linear drag.

    The vorticity tendency gains :math:`F - \zeta / \tau_d` and the divergence tendency
    :math:`-\delta / \tau_d` (a Rayleigh drag on the wind). :math:`F` is red noise in time
    (an Ornstein-Uhlenbeck process, held constant within each hour) and white in the
    spherical-harmonic coefficients of degrees ``band[0]`` to ``band[1]``. The geopotential
    equation is untouched, so its global mean (the mass) is still conserved exactly.

    Attributes
    ----------
    amplitude : float
        Root-mean-square of :math:`F` over the sphere, in s-2.
    timescale : str
        Correlation time of :math:`F`, parsed with :class:`pandas.Timedelta`.
    drag : str
        Drag time :math:`\tau_d`, parsed with :class:`pandas.Timedelta`.
    band : tuple of int
        The first and last spherical-harmonic degree forced.
    """

    amplitude: float = 1e-10
    timescale: str = "1D"
    drag: str = "10D"
    band: tuple[int, int] = (3, 8)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.amplitude) and self.amplitude >= 0):
            msg = f"forcing amplitude must be finite and >= 0 (s-2); found {self.amplitude!r}"
            raise ValueError(msg)
        for name in ("timescale", "drag"):
            value = getattr(self, name)
            try:
                seconds = pd.Timedelta(value).total_seconds()
            except (TypeError, ValueError) as err:
                msg = f"forcing {name} must be a duration like '1D'; found {value!r}"
                raise ValueError(msg) from err
            if not seconds > 0:
                msg = f"forcing {name} must be a positive duration; found {value!r}"
                raise ValueError(msg)
        if len(self.band) != 2 or not 1 <= self.band[0] <= self.band[1]:
            msg = (
                "forcing band must be (first, last) degrees with 1 <= first <= last; "
                f"found {self.band!r}"
            )
            raise ValueError(msg)

    @property
    def timescale_s(self) -> float:
        """The correlation time of the forcing in seconds."""
        return pd.Timedelta(self.timescale).total_seconds()

    @property
    def drag_s(self) -> float:
        """The drag time in seconds."""
        return pd.Timedelta(self.drag).total_seconds()


class ForcedShallowWaterSolver(ShallowWaterSolver):
    r"""Creates torch-harmonics' shallow-water solver with an optional forcing and drag.

    Parameters
    ----------
    nlat, nlon : int
        The equiangular grid, poles included.
    dt : float
        The time step in seconds.
    drag : float, optional
        The drag time in seconds (default: no drag).
    """

    def __init__(self, nlat: int, nlon: int, dt: float, drag: float | None = None) -> None:
        lmax = math.ceil(nlat / 3)
        super().__init__(nlat, nlon, dt, lmax=lmax, mmax=lmax, grid="equiangular")
        self.drag = drag
        #: Vorticity forcing with shape ``(lmax, mmax)``, or ``None``; set between calls.
        self.forcing: Tensor | None = None

    def dudtspec(self, uspec: Tensor) -> Tensor:
        """Return the tendencies of the spectral state, forcing and drag included.

        Parameters
        ----------
        uspec : Tensor
            The spectral state, with shape ``(3, lmax, mmax)``.

        Returns
        -------
        Tensor
            The tendencies, with shape ``(3, lmax, mmax)``.
        """
        dudt = super().dudtspec(uspec)
        if self.forcing is not None:
            dudt[1] = dudt[1] + self.forcing
        if self.drag is not None:
            dudt[1:] = dudt[1:] - uspec[1:] / self.drag
        return dudt


def make_solver(
    nlat: int, nlon: int, dt: float, forcing: StochasticForcing | None
) -> ForcedShallowWaterSolver:
    """Build the solver, with ``lmax = mmax = ceil(nlat / 3)`` (stable in torch-harmonics 0.7.4).

    Parameters
    ----------
    nlat, nlon : int
        The grid.
    dt : float
        The time step in seconds.
    forcing : StochasticForcing or None
        The forcing settings, or ``None`` for the unforced solver.

    Returns
    -------
    ForcedShallowWaterSolver
        The solver.
    """
    drag = None if forcing is None else forcing.drag_s
    return ForcedShallowWaterSolver(nlat, nlon, dt, drag=drag)


def spectral_noise(
    solver: ShallowWaterSolver, rng: np.random.Generator, variance: np.ndarray
) -> Tensor:
    """Draw complex Gaussian coefficients of a real field with a variance per degree.

    Parameters
    ----------
    solver : ShallowWaterSolver
        Gives ``lmax`` and ``mmax``.
    rng : numpy.random.Generator
        The random generator.
    variance : numpy.ndarray
        The expected squared modulus per degree, with shape ``(lmax,)``.

    Returns
    -------
    Tensor
        The coefficients, complex128 with shape ``(lmax, mmax)``, zero for ``m > l`` and real
        for ``m = 0``.
    """
    shape = (solver.lmax, solver.mmax)
    z = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2)
    z[:, 0] = z[:, 0].real * math.sqrt(2)
    coeffs = np.tril(np.sqrt(variance)[:, None] * z)
    return torch.as_tensor(coeffs, dtype=torch.complex128)


def band_variance(solver: ShallowWaterSolver, band: tuple[int, int]) -> np.ndarray:
    """Return the per-degree variance of white noise over ``band`` with unit mean square.

    Parameters
    ----------
    solver : ShallowWaterSolver
        Gives ``lmax`` and ``mmax``.
    band : tuple of int
        The first and last degree with noise.

    Returns
    -------
    numpy.ndarray
        The variance per coefficient, with shape ``(lmax,)``: zero outside ``band``, and such
        that :func:`spectral_noise` gives fields whose area-mean square is 1 on average.
    """
    degrees = np.arange(solver.lmax)
    inside = (degrees >= band[0]) & (degrees <= band[1])
    # Orthonormal real SHT: mean square = (sum_l |c_l0|^2 + 2 sum_{m>0} |c_lm|^2) / (4 pi).
    terms = np.where(inside, 1 + 2 * np.minimum(degrees, solver.mmax - 1), 0).sum()
    return inside * (4 * math.pi / max(terms, 1))


def balanced_initial_condition(
    solver: ShallowWaterSolver, rng: np.random.Generator, peak_wind: float
) -> Tensor:
    r"""Draw a random, non-divergent state in nonlinear balance.

    The streamfunction has a red spectrum: kinetic energy per degree
    :math:`E(l) \propto l / (1 + (l / 4)^4)`, so it peaks at degree 4 and falls as
    :math:`l^{-3}` beyond. The wind is scaled so that its largest speed is ``peak_wind``. The
    geopotential solves the nonlinear balance equation
    :math:`\nabla^2 \Phi = \nabla \times ((\zeta + f) \mathbf{u}) - \nabla^2 |\mathbf{u}|^2 / 2`
    (the divergence equation with zero divergence), as the solver's Galewsky case does, and
    has global mean :math:`g H` with :math:`H` the solver's ``havg``.

    Parameters
    ----------
    solver : ShallowWaterSolver
        The solver.
    rng : numpy.random.Generator
        The random generator.
    peak_wind : float
        The largest wind speed in m s-1.

    Returns
    -------
    Tensor
        The spectral state :math:`(\Phi, \zeta, \delta)`, complex128 with shape
        ``(3, lmax, mmax)``.
    """
    degrees = np.arange(solver.lmax, dtype=np.float64)
    energy = degrees / (1 + (degrees / SPECTRUM_PEAK) ** 4)
    # E(l) = l (l + 1) / a^2 * sum_m |psi_lm|^2, with 2 l + 1 coefficients per degree.
    variance = np.zeros_like(degrees)
    variance[1:] = energy[1:] / (degrees[1:] * (degrees[1:] + 1)) / (2 * degrees[1:] + 1)
    psi = spectral_noise(solver, rng, variance)
    vrtdiv = torch.stack([solver.lap * psi, torch.zeros_like(psi)])
    wind = solver.getuv(vrtdiv)
    scale = peak_wind / float(wind.square().sum(0).sqrt().max())
    vrtdiv, wind = vrtdiv * scale, wind * scale
    vorticity = solver.spec2grid(vrtdiv[0])
    flux = solver.vrtdivspec(wind * (vorticity + solver.coriolis))
    phi = solver.invlap * flux[0] - solver.grid2spec(0.5 * wind.square().sum(0))
    mean = solver.gravity * solver.havg * torch.ones(solver.nlat, solver.nlon, dtype=torch.float64)
    phi[0, 0] = solver.grid2spec(mean)[0, 0]
    return torch.tril(torch.stack([phi, vrtdiv[0], vrtdiv[1]]))


def integrate(
    solver: ForcedShallowWaterSolver,
    state: Tensor,
    hours: int,
    *,
    spinup_hours: int = 0,
    forcing: StochasticForcing | None = None,
    rng: np.random.Generator | None = None,
) -> Tensor:
    r"""Integrate a spectral state and return hourly grid states.

    Parameters
    ----------
    solver : ForcedShallowWaterSolver
        The solver; ``3600 / solver.dt`` must be an integer.
    state : Tensor
        The initial spectral state, with shape ``(3, lmax, mmax)``.
    hours : int
        The number of hourly states returned, the first one after the spin-up.
    spinup_hours : int
        Hours integrated, and discarded, first.
    forcing : StochasticForcing, optional
        The forcing; it starts in its stationary distribution. ``None`` means no forcing.
        The drag is the solver's own (see :func:`make_solver`).
    rng : numpy.random.Generator, optional
        The generator of the forcing noise; needed with ``forcing``.

    Returns
    -------
    Tensor
        The grid states :math:`(\Phi, u, v)`, float64 with shape ``(hours, 3, nlat, nlon)``.
    """
    steps = round(3600 / solver.dt)
    if forcing is not None:
        torch._check(rng is not None, lambda: "integrate needs rng when forcing is given")
        variance = band_variance(solver, forcing.band) * forcing.amplitude**2
        decay = math.exp(-3600 / forcing.timescale_s)
        solver.forcing = spectral_noise(solver, rng, variance)
    out = torch.empty(hours, 3, solver.nlat, solver.nlon, dtype=torch.float64)
    for hour in range(spinup_hours + hours):
        if hour >= spinup_hours:
            out[hour - spinup_hours] = solver.gethuv(state)
        if hour == spinup_hours + hours - 1:
            break
        state = solver.timestep(state, steps)
        if forcing is not None:
            noise = spectral_noise(solver, rng, variance)
            solver.forcing = decay * solver.forcing + math.sqrt(1 - decay**2) * noise
    solver.forcing = None
    return out
