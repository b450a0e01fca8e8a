r"""Exact law of a discretized sampler's output when the denoiser is affine.

If :math:`d(x, \sigma) = M(\sigma) x + m(\sigma)` (the exact denoiser of a Gaussian prior, or a
linear-Gaussian posterior) and :math:`x_1` is Gaussian, every sampler step is an affine map
plus Gaussian noise, so the output is Gaussian and its mean and covariance follow from matrix
recursions. This module derives them from the update formulas alone and shares no code with
:mod:`xappa.core.diffusion.sampler`: the tests compare the code against the maths.

* DDPM, DDIM, PC: :math:`x \leftarrow A x + b + \mathcal{N}(0, q I)`, so
  :math:`\mu \leftarrow A \mu + b` and :math:`C \leftarrow A C A^\top + q I`.
* LMS, Heun (deterministic, multistep): the output is :math:`G x_1 + g`; :math:`(G, g)` and
  the stored derivatives :math:`z = P x_1 + p` are tracked as affine maps of :math:`x_1`, and
  the LMS weights are the Lagrange basis polynomials integrated exactly with numpy.
"""

from __future__ import annotations

__all__ = ["propagate", "random_gaussian", "time_grids"]

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64


def random_gaussian(
    dim: int, *, seed: int = 0, low: float = 0.1, high: float = 10.0
) -> tuple[Tensor, Tensor]:
    r"""A seeded test prior: mean (D,) ~ N(0, I) and a dense covariance (D, D), float64.

    The covariance is :math:`Q \Lambda Q^\top` with a random orthogonal ``Q`` and eigenvalues
    log-spaced over ``[low, high]``.
    """
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    evals = torch.logspace(np.log10(low), np.log10(high), dim, dtype=F64)
    cov = q * evals @ q.T
    mean = torch.randn(dim, generator=gen, dtype=F64)
    return mean, (cov + cov.T) / 2


def time_grids(schedule, steps: int) -> tuple[list[tuple[float, float]], list[float]]:
    """Noise grids from the written formulas (not from the sampler code).

    Returns the DDPM/DDIM/PC jumps ``[(sigma(t_k), sigma(t_k - 1/steps))]`` with ``t_k`` evenly
    spaced from ``t_max`` to ``1/steps``, and the LMS/Heun levels ``sigma(t_max (1 - i/steps))``
    for ``i = 0..steps``.
    """
    t_max = schedule.t_max
    dt = 1.0 / steps
    if steps == 1:
        ts = [t_max]
    else:
        ts = [t_max + k * (dt - t_max) / (steps - 1) for k in range(steps)]

    def sig(t: float) -> float:
        return float(schedule(torch.tensor(t, dtype=F64)))

    jumps = [(sig(t), sig(t - dt)) for t in ts]
    levels = [sig(t_max * (1 - i / steps)) for i in range(steps + 1)]
    return jumps, levels


def _lagrange_integrals(nodes: list[float], lo: float, hi: float) -> list[float]:
    """Integrate each Lagrange basis polynomial of ``nodes`` over [lo, hi], exactly."""
    out = []
    P = np.polynomial.Polynomial
    for j, node in enumerate(nodes):
        others = [s for k, s in enumerate(nodes) if k != j]
        basis = (
            P.fromroots(others) / float(np.prod([node - s for s in others])) if others else P(1)
        )
        antiderivative = basis.integ()
        out.append(float(antiderivative(hi) - antiderivative(lo)))
    return out


def propagate(
    sampler: str,
    affine: Callable[[float], tuple[Tensor, Tensor]],
    schedule,
    steps: int,
    dim: int,
    *,
    corrections: int = 2,
    delta: float = 0.1,
    correct_below: float = float("inf"),
    order: int = 3,
    init_mean: Tensor | None = None,
    init_cov: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact mean (D,) and covariance (D, D), float64, of a sampler's output.

    Parameters
    ----------
    sampler : str
        ``"ddpm"``, ``"ddim"``, ``"pc"``, ``"lms"`` or ``"heun"``.
    affine : callable
        ``affine(sigma) -> (M, m)`` with ``M`` (D, D) and ``m`` (D,): the denoiser is
        :math:`d(x, \sigma) = M(\sigma) x + m(\sigma)`.
    schedule : Schedule
        The noise schedule (``t_max``, ``__call__``).
    steps : int
        The number of sampler steps.
    dim : int
        The dimension D.
    corrections, delta, correct_below : int, float, float
        The PC corrector settings (corrections at the steps with sigma_t <= correct_below).
    order : int
        The LMS order.
    init_mean, init_cov : Tensor, optional
        The law of :math:`x_1`; default :math:`\mathcal{N}(0, \sigma(t_{max})^2 I)`.

    Returns
    -------
    tuple of Tensor
        The mean with shape ``(D,)`` and the covariance with shape ``(D, D)``.
    """
    eye = torch.eye(dim, dtype=F64)
    jumps, levels = time_grids(schedule, steps)
    s_max = float(schedule(torch.tensor(schedule.t_max, dtype=F64)))
    mu = torch.zeros(dim, dtype=F64) if init_mean is None else init_mean.to(F64).clone()
    cov = s_max**2 * eye if init_cov is None else init_cov.to(F64).clone()

    def aff(sigma: float) -> tuple[Tensor, Tensor]:
        M, m = affine(sigma)
        return M.to(F64), m.to(F64)

    def step(A: Tensor, b: Tensor, q: float) -> None:
        nonlocal mu, cov
        mu = A @ mu + b
        cov = A @ cov @ A.T + q * eye
        cov = (cov + cov.T) / 2

    if sampler in ("ddpm", "ddim", "pc"):
        for sigma_t, sigma_s in jumps:
            M, m = aff(sigma_t)
            if sampler == "ddpm":
                # x_s = (1 - tau) x + tau (M x + m) + sigma_s sqrt(tau) eps
                tau = 1 - sigma_s**2 / sigma_t**2
                step((1 - tau) * eye + tau * M, tau * m, sigma_s**2 * tau)
                continue
            if sampler == "pc":
                # x <- (1 - delta) x + delta (M x + m) + sqrt(2 delta) sigma_t eps
                for _ in range(corrections if sigma_t <= correct_below else 0):
                    step((1 - delta) * eye + delta * M, delta * m, 2 * delta * sigma_t**2)
            # DDIM: x_s = r x + (1 - r) (M x + m) with r = sigma_s / sigma_t
            r = sigma_s / sigma_t
            step(r * eye + (1 - r) * M, (1 - r) * m, 0.0)
        return mu, cov

    if sampler not in ("lms", "heun"):
        raise ValueError(f"unknown sampler {sampler!r}")

    # Deterministic: x = G x1 + g; derivative z(x, sigma) = ((I - M) x - m) / sigma.
    G, g = eye.clone(), torch.zeros(dim, dtype=F64)

    def deriv(G: Tensor, g: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        M, m = aff(sigma)
        return (eye - M) @ G / sigma, ((eye - M) @ g - m) / sigma

    history: list[tuple[Tensor, Tensor]] = []  # newest first
    for i in range(steps):
        lo, hi = levels[i], levels[i + 1]
        P, p = deriv(G, g, lo)
        if sampler == "heun":
            Ge, ge = G + (hi - lo) * P, g + (hi - lo) * p
            Pe, pe = deriv(Ge, ge, hi)
            G, g = G + (hi - lo) / 2 * (P + Pe), g + (hi - lo) / 2 * (p + pe)
            continue
        history = [(P, p), *history][: min(order, i + 1)]
        nodes = [levels[i - j] for j in range(len(history))]
        for c, (Pj, pj) in zip(_lagrange_integrals(nodes, lo, hi), history, strict=True):
            G, g = G + c * Pj, g + c * pj
    return G @ mu + g, G @ cov @ G.T
