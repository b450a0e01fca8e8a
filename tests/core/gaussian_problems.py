r"""Linear-Gaussian posterior problems with a closed-form answer, for guidance and samplers.

A prior :math:`x \sim \mathcal{N}(\mu, \Sigma)` in standardized units (unit marginal
variances, as xappa's latents), observations :math:`y = H x + \eta` with
:math:`\eta \sim \mathcal{N}(0, \mathrm{diag}(r))` and a mixed operator :math:`H`: point
values, differences of neighbours and dense rows (averages over the state, like radiances),
with unequal noise. The posterior is :math:`\mathcal{N}(\mu_y, \Sigma_y)` with
:math:`\Sigma_y = (\Sigma^{-1} + H^\top R^{-1} H)^{-1}`. The noise variances are scaled so
that the smallest posterior variance is a chosen value (for example :math:`10^{-3}`), the
largest staying near the prior's 1 in unobserved directions.

:func:`score` draws guided samples with a :class:`~xappa.core.da.SamplingConfig` and
estimates their mean and covariance with a control variate: the same noise through the same
sampler driven by the exact posterior denoiser, whose output law is propagated exactly
(:func:`exact_law`). :func:`whitened_errors` scores a sampled law against the posterior in its eigenbasis: the
bias of the mean in posterior standard deviations and the variance ratio in every principal
direction, and the whitened covariance error.
"""

from __future__ import annotations

__all__ = [
    "LinearGaussian",
    "exact_law",
    "make_linear_gaussian",
    "score",
    "smooth_covariance",
    "whitened_errors",
]

import math
from dataclasses import dataclass

import torch
from gaussian_propagation import propagate
from torch import Tensor

from xappa.core.da import SamplingConfig
from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.schedule import create_schedule
from xappa.core.guidance.observation import MatrixOperator, Observation

F64 = torch.float64


def smooth_covariance(dim: int, length: float = 3.0, nugget: float = 0.05) -> Tensor:
    """A periodic squared-exponential covariance with unit marginal variance, (D, D) float64."""
    i = torch.arange(dim, dtype=F64)
    d = (i[:, None] - i[None, :]).abs()
    d = torch.minimum(d, dim - d)
    cov = (1 - nugget) * torch.exp(-0.5 * (d / length) ** 2) + nugget * torch.eye(dim, dtype=F64)
    return (cov + cov.T) / 2


def mixed_operator(
    dim: int, points: int, differences: int, dense: int, gen: torch.Generator
) -> Tensor:
    """Rows of point values, neighbour differences and dense averages, (M, D) float64."""
    rows = []
    sites = torch.randperm(dim, generator=gen)
    for k in range(points):
        row = torch.zeros(dim, dtype=F64)
        row[sites[k % dim]] = 1.0
        rows.append(row)
    for k in range(differences):
        row = torch.zeros(dim, dtype=F64)
        j = int(sites[(points + k) % dim])
        row[j], row[(j + 1) % dim] = 1.0, -1.0
        rows.append(row)
    for _ in range(dense):
        rows.append(torch.randn(dim, generator=gen, dtype=F64) / dim**0.5)
    return torch.stack(rows)


def _posterior(cov: Tensor, h: Tensor, noise: Tensor) -> Tensor:
    gain_in = h @ cov @ h.T + torch.diag(noise)
    k = cov @ h.T @ torch.linalg.inv(gain_in)
    post = cov - k @ h @ cov
    return (post + post.T) / 2


@dataclass
class LinearGaussian:
    """A linear-Gaussian problem: prior, observations and the exact posterior (float64)."""

    name: str
    mean: Tensor
    cov: Tensor
    matrix: Tensor
    noise: Tensor
    values: Tensor
    post_mean: Tensor
    post_cov: Tensor

    @property
    def dim(self) -> int:
        """The state dimension D."""
        return self.mean.shape[0]

    def prior(self, dtype: torch.dtype = F64) -> GaussianDenoiser:
        """The exact prior denoiser, in ``dtype``."""
        return GaussianDenoiser(self.mean.to(dtype), self.cov.to(dtype))

    def posterior(self, dtype: torch.dtype = F64) -> GaussianDenoiser:
        """The exact posterior denoiser, in ``dtype``."""
        return GaussianDenoiser(self.post_mean.to(dtype), self.post_cov.to(dtype))

    def observation(self, dtype: torch.dtype = F64) -> Observation:
        """The observations :math:`y = H x + \\eta`, in ``dtype``."""
        return Observation(
            MatrixOperator(self.matrix.to(dtype)), self.values.to(dtype), self.noise.to(dtype)
        )


def make_linear_gaussian(
    dim: int,
    *,
    points: int = 0,
    differences: int = 0,
    dense: int = 0,
    min_variance: float = 1e-3,
    noise_spread: float = 10.0,
    seed: int = 0,
    name: str | None = None,
) -> LinearGaussian:
    """Build a problem whose smallest posterior variance is ``min_variance``.

    Parameters
    ----------
    dim : int
        The state dimension D (a periodic field with a smooth, unit-variance prior).
    points, differences, dense : int
        The numbers of each kind of observation row.
    min_variance : float
        The smallest posterior variance; the noise variances are scaled to reach it.
    noise_spread : float
        The ratio of the largest to the smallest noise variance (log-uniform in between).
    seed : int
        The seed of the sites, dense rows, noise and observed values.
    name : str, optional
        A label.
    """
    gen = torch.Generator().manual_seed(seed)
    cov = smooth_covariance(dim)
    mean = 0.5 * torch.randn(dim, generator=gen, dtype=F64)
    h = mixed_operator(dim, points, differences, dense, gen)
    shape = noise_spread ** torch.rand(h.shape[0], generator=gen, dtype=F64)

    def smallest(log_scale: float) -> float:
        return float(torch.linalg.eigvalsh(_posterior(cov, h, shape * math.exp(log_scale)))[0])

    lo, hi = math.log(1e-12), math.log(1e3)  # bisection on log(noise scale)
    target = math.log(min_variance)
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.log(smallest(mid)) < target:
            lo = mid
        else:
            hi = mid
    noise = shape * math.exp((lo + hi) / 2)
    truth = mean + torch.linalg.cholesky(cov) @ torch.randn(dim, generator=gen, dtype=F64)
    values = h @ truth + noise.sqrt() * torch.randn(h.shape[0], generator=gen, dtype=F64)
    post_cov = _posterior(cov, h, noise)
    post_mean = mean + post_cov @ h.T @ ((values - h @ mean) / noise)
    label = name or f"D{dim}-M{h.shape[0]}-{min_variance:g}"
    return LinearGaussian(label, mean, cov, h, noise, values, post_mean, post_cov)


def whitened_errors(
    mean: Tensor, cov: Tensor, post_mean: Tensor, post_cov: Tensor
) -> dict[str, float]:
    """Score a law (mean (D,), covariance (D, D)) against the posterior, float64.

    Returns
    -------
    dict
        ``bias``: the largest :math:`|v_i^\\top (m - \\mu_y)| / \\sqrt{\\lambda_i}` over the
        posterior's principal directions :math:`(\\lambda_i, v_i)`; ``ratio_min`` and
        ``ratio_max``: the extreme variance ratios :math:`v_i^\\top C v_i / \\lambda_i`;
        ``cov``: the RMS whitened covariance error
        :math:`\\lVert \\Lambda^{-1/2} V^\\top (C - \\Sigma_y) V \\Lambda^{-1/2} \\rVert_F /
        \\sqrt{D}`.
    """
    lam, vec = torch.linalg.eigh(post_cov.to(F64))
    scale = lam.rsqrt()
    bias = (vec.T @ (mean.to(F64) - post_mean.to(F64))) * scale
    white = scale[:, None] * (vec.T @ cov.to(F64) @ vec) * scale[None, :]
    ratio = white.diagonal()
    eye = torch.eye(lam.shape[0], dtype=F64)
    return {
        "bias": float(bias.abs().max()),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "cov": float((white - eye).norm() / lam.shape[0] ** 0.5),
    }


def exact_law(config: SamplingConfig, affine, dim: int) -> tuple[Tensor, Tensor]:
    """The exact output law (mean, covariance) of ``config``'s sampler with an affine denoiser."""
    return propagate(
        config.sampler,
        affine,
        create_schedule(config.schedule),
        config.steps,
        dim,
        corrections=config.corrections,
        delta=config.delta,
        correct_below=math.inf if config.correct_below is None else config.correct_below,
        order=config.order,
    )


def score(config: SamplingConfig, problem: LinearGaussian, samples: int, seed: int = 0) -> dict:
    """Draw ``samples`` guided samples in float32 and score them against the posterior.

    The estimates are ``mean = m_exact + mean(x - x_exact)`` and
    ``cov = C_exact + cov(x) - cov(x_exact)``, with ``x_exact`` the same noise through the
    sampler driven by the exact posterior denoiser and ``(m_exact, C_exact)`` its exact law:
    unbiased, with the Monte Carlo error of the difference only. Returns
    :func:`whitened_errors` plus ``diverged`` (non-finite or beyond 1e6) and ``seconds``.
    """
    import time

    guided = config.guide(problem.prior(torch.float32), problem.observation(torch.float32))
    tic = time.perf_counter()
    x = config.make_sampler(guided).sample((samples, problem.dim), seed=seed).double()
    seconds = time.perf_counter() - tic
    if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 1e6:
        return {"diverged": True, "seconds": seconds}
    exact = problem.posterior(torch.float32)
    x_exact = config.make_sampler(exact).sample((samples, problem.dim), seed=seed).double()
    m0, c0 = exact_law(config, problem.posterior().affine, problem.dim)
    cov = c0 + torch.cov(x.T) - torch.cov(x_exact.T)
    out = whitened_errors(
        m0 + (x - x_exact).mean(0), (cov + cov.T) / 2, problem.post_mean, problem.post_cov
    )
    out.update(diverged=False, seconds=seconds)
    return out
