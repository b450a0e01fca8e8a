"""Samplers against the exact law of their discretization on a Gaussian prior."""

import itertools
import math

import pytest
import torch
from gaussian_propagation import propagate, random_gaussian, time_grids

from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.sampler import (
    DDIMSampler,
    DDPMSampler,
    HeunSampler,
    LMSSampler,
    PCSampler,
    Sampler,
    create_sampler,
    lms_coefficients,
)
from xappa.core.diffusion.schedule import RectifiedSchedule, create_schedule

F64 = torch.float64
SAMPLERS = ["ddpm", "ddim", "lms", "pc", "heun"]
DETERMINISTIC = ["ddim", "lms", "heun"]
DIM = 32
# The issue asks for 8192 samples and a 3% covariance error, but with these eigenvalues the
# sampling noise alone is E|S - C|_F / |C|_F = sqrt((tr(C)^2 + |C|_F^2) / N) ~ 4.2% at N = 8192:
# a 3% bound would fail on most seeds. We draw 4 x 8192 samples (noise floor ~2.1%) and keep
# the 3% bound unchanged.
SAMPLES = 4 * 8192


@pytest.fixture(scope="module")
def prior():
    mean, cov = random_gaussian(DIM, seed=0)
    return mean, cov, GaussianDenoiser(mean, cov)


def relative_frobenius(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.slow
@pytest.mark.parametrize("steps", [32, 256], ids=lambda s: f"{s}steps")
@pytest.mark.parametrize("name", SAMPLERS)
def test_samples_match_exact_law(prior, name, steps):
    _, _, denoiser = prior
    schedule = RectifiedSchedule()
    sampler = create_sampler(name, denoiser, schedule=schedule, steps=steps)
    x = sampler.sample((SAMPLES, DIM), seed=1234, dtype=F64)
    mean, cov = propagate(name, denoiser.affine, schedule, steps, DIM)

    stderr = (torch.diagonal(cov) / SAMPLES).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * stderr).all()
    assert relative_frobenius(torch.cov(x.T), cov) < 0.03


@pytest.mark.parametrize("name", SAMPLERS)
def test_one_dimensional_variance_is_sharp(name):
    # In 1-D, 2^18 samples pin the variance to 1.1% (4 standard errors of 0.28%), sharper than
    # the ~4% noise floor of the D = 32 covariance above.
    n = 2**18
    one = torch.ones(1, 1, dtype=F64)
    denoiser = GaussianDenoiser(torch.full((1,), 0.5, dtype=F64), 2.0 * one)
    schedule = RectifiedSchedule()
    x = create_sampler(name, denoiser, schedule=schedule, steps=16).sample(
        (n, 1), seed=3, dtype=F64
    )
    mean, var = (t.reshape(()) for t in propagate(name, denoiser.affine, schedule, 16, 1))
    tol = 4 * math.sqrt(2 / n)
    assert abs(float(x.mean()) - float(mean)) < 4 * math.sqrt(float(var) / n)
    assert abs(float(x.var()) / float(var) - 1) < tol


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_paths_are_exact(prior, name):
    # DDIM, LMS and Heun map x1 to G x1 + g: compare single paths with the formulas.
    _, _, denoiser = prior
    schedule = RectifiedSchedule()
    x1 = 1e3 * torch.randn(2, DIM, dtype=F64, generator=torch.Generator().manual_seed(5))
    out = create_sampler(name, denoiser, schedule=schedule, steps=24)(x1)
    zero = torch.zeros(DIM, DIM, dtype=F64)
    for b in range(2):
        mean, cov = propagate(
            name, denoiser.affine, schedule, 24, DIM, init_mean=x1[b], init_cov=zero
        )
        torch.testing.assert_close(out[b], mean, rtol=1e-10, atol=1e-10)
        assert float(cov.abs().max()) == 0.0


@pytest.mark.parametrize("name", SAMPLERS)
def test_covariance_error_shrinks_with_steps(prior, name):
    _, cov, denoiser = prior
    errors = [
        relative_frobenius(propagate(name, denoiser.affine, RectifiedSchedule(), s, DIM)[1], cov)
        for s in (16, 32, 64, 128, 256)
    ]
    assert errors[-1] < errors[0]
    if name == "pc":
        # The DDIM predictor under-disperses and the fixed-delta Langevin corrector
        # over-disperses: beyond 64 steps the two nearly cancel and the error hovers around
        # 0.2-0.5% instead of shrinking monotonically.
        assert errors[0] > errors[1] > errors[2]
        assert max(errors[2:]) < errors[1]
    else:
        assert all(a > b for a, b in itertools.pairwise(errors)), errors


class Recorder:
    """An affine dummy denoiser that records sigma and the conditioning."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, **cond):
        self.calls.append((sigma.clone(), dict(cond)))
        return 0.5 * x


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("bfloat16", [False, True], ids=["tmax1", "bf16-tmax"])
def test_noise_levels_and_conditioning(name, bfloat16):
    schedule = create_schedule("rectified", bfloat16=bfloat16)
    recorder = Recorder()
    sampler = create_sampler(name, recorder, schedule=schedule, steps=5)
    sampler.sample((3, 2), seed=0, dtype=F64, date="d")
    assert len(recorder.calls) == sampler.evaluations
    sigmas = [s for s, _ in recorder.calls]
    assert all(s.shape == (3,) and (s == s[0]).all() for s in sigmas)
    assert all(cond == {"date": "d"} for _, cond in recorder.calls)
    seen = [float(s[0]) for s in sigmas]
    jumps, levels = time_grids(schedule, 5)
    if name in ("ddpm", "ddim"):
        expected = [t for t, _ in jumps]
    elif name == "pc":
        expected = [t for t, _ in jumps for _ in range(3)]
    elif name == "lms":
        expected = levels[:-1]
    else:
        expected = [s for pair in itertools.pairwise(levels) for s in pair]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[0] == pytest.approx(schedule.sigma_tmax, rel=1e-12)


def test_grids_end_on_sigma_min():
    jumps, levels = time_grids(RectifiedSchedule(), 7)
    assert jumps[-1][1] == pytest.approx(1e-3, rel=1e-12)
    assert levels[-1] == pytest.approx(1e-3, rel=1e-12)


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_samples(prior, name):
    _, _, denoiser = prior
    sampler = create_sampler(name, denoiser, steps=6)
    a = sampler.sample((16, DIM), seed=7, dtype=F64)
    b = sampler.sample((16, DIM), seed=7, dtype=F64)
    c = sampler.sample((16, DIM), generator=torch.Generator().manual_seed(7), dtype=F64)
    d = sampler.sample((16, DIM), seed=8, dtype=F64)
    assert torch.equal(a, b)
    assert torch.equal(a, c)
    assert not torch.equal(a, d)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("name", SAMPLERS)
def test_dtype_shape_and_callback(prior, name):
    mean, cov, _ = prior
    denoiser = GaussianDenoiser(mean.float(), cov.float())
    progress = []
    sampler = create_sampler(name, denoiser, steps=4)
    x = sampler.sample((5, DIM), seed=0, callback=lambda k, n: progress.append((k, n)))
    assert x.dtype == torch.float32
    assert x.shape == (5, DIM)
    assert torch.isfinite(x).all()
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_call_integrates_given_state(prior):
    _, _, denoiser = prior
    sampler = DDIMSampler(denoiser, steps=8)
    gen = torch.Generator().manual_seed(3)
    x1 = sampler.schedule.sigma_tmax * torch.randn(4, DIM, dtype=F64, generator=gen)
    torch.testing.assert_close(sampler(x1), sampler.sample((4, DIM), seed=3, dtype=F64))


@pytest.mark.parametrize("name", SAMPLERS)
def test_levels_follow_the_written_grids(name):
    schedule = create_schedule("rectified", bfloat16=True)
    jumps, levels = time_grids(schedule, 6)
    expected = list(itertools.pairwise(levels)) if name in ("lms", "heun") else jumps
    got = create_sampler(name, Recorder(), schedule=schedule, steps=6).levels()
    assert len(got) == 6
    assert [s for pair in got for s in pair] == pytest.approx(
        [s for pair in expected for s in pair], rel=1e-12
    )


class EulerSampler(Sampler):
    """A sampler written as its step only: Euler on the LMS/Heun grid."""

    walks_grid = True

    def step(self, x, sigma_t, sigma_s, call):
        call.memory["seen"] = call.memory.get("seen", 0) + 1
        assert call.memory["seen"] == len(self.calls) + 1  # a fresh memory for every call
        self.calls.append(sigma_t)
        return x + (sigma_s - sigma_t) * (x - self._denoise(x, sigma_t, call.cond)) / sigma_t


def test_the_base_loop_runs_any_step(prior):
    # Euler in sigma is LMS of order 1; the loop, callback and no_grad come from the base.
    _, _, denoiser = prior
    euler = EulerSampler(denoiser, steps=7)
    for _ in range(2):
        euler.calls, progress = [], []
        x = euler.sample(
            (4, DIM), seed=5, dtype=F64, callback=lambda k, n, p=progress: p.append((k, n))
        )
        assert progress == [(k, 7) for k in range(1, 8)]
        assert euler.calls == [sigma_t for sigma_t, _ in euler.levels()]
    lms = LMSSampler(denoiser, steps=7, order=1).sample((4, DIM), seed=5, dtype=F64)
    torch.testing.assert_close(x, lms, rtol=1e-12, atol=1e-12)


def test_no_grad_during_sampling():
    def denoiser(x, sigma):
        assert not torch.is_grad_enabled()
        return 0 * x

    DDIMSampler(denoiser, steps=2).sample((2, 3), seed=0)


def test_constructors():
    d = Recorder()
    assert isinstance(create_sampler("ddpm", d), DDPMSampler)
    assert isinstance(create_sampler("heun", d), HeunSampler)
    lms = create_sampler("lms", d, steps=10, order=2)
    assert isinstance(lms, LMSSampler)
    assert (lms.steps, lms.order, lms.evaluations) == (10, 2, 10)
    pc = create_sampler("pc", d, steps=10, corrections=1, delta=0.2)
    assert isinstance(pc, PCSampler)
    assert (pc.corrections, pc.delta, pc.evaluations) == (1, 0.2, 20)
    assert HeunSampler(d, steps=10).evaluations == 20
    assert "steps=10" in repr(pc)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda d: create_sampler("euler", d), ValueError, "sampler name must be one of"),
        (lambda d: create_sampler("ddim", d, order=2), TypeError, "unexpected options"),
        (lambda d: DDIMSampler(d, steps=0), ValueError, "steps must be a positive int"),
        (lambda d: DDIMSampler(d, steps=2.5), ValueError, "steps must be a positive int"),
        (lambda d: LMSSampler(d, order=4), ValueError, "order must be 1, 2 or 3"),
        (lambda d: PCSampler(d, corrections=-1), ValueError, "corrections must be"),
        (lambda d: PCSampler(d, delta=0.0), ValueError, "delta must be in"),
        (
            lambda d: DDIMSampler(d).sample((2,), seed=0, generator=torch.Generator()),
            ValueError,
            "either generator or seed",
        ),
    ],
    ids=["name", "option", "steps-zero", "steps-float", "order", "corrections", "delta", "seed"],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(Recorder())


@pytest.mark.parametrize(
    ("order", "expected"),
    [(1, [1.0]), (2, [1.5, -0.5]), (3, [23 / 12, -16 / 12, 5 / 12])],
    ids=["euler", "ab2", "ab3"],
)
def test_lms_coefficients_uniform_grid(order, expected):
    # On a uniform grid of step h the coefficients are the classical Adams-Bashforth ones.
    h = -0.25
    sigmas = [3.0 + h * k for k in range(6)]
    coeffs = lms_coefficients(sigmas, 3, order)
    assert coeffs == pytest.approx([h * c for c in expected], rel=1e-12)


def test_lms_coefficients_integrate_quadratics():
    # Non-uniform grid: the weights integrate any polynomial of degree 2 exactly.
    sigmas = [80.0, 20.0, 3.0, 0.7, 0.1]
    coeffs = lms_coefficients(sigmas, 2, 3)

    def f(s):
        return 1 - 2 * s + 0.3 * s**2

    def antiderivative(s):
        return s - s**2 + 0.1 * s**3

    exact = antiderivative(sigmas[3]) - antiderivative(sigmas[2])
    approx = sum(c * f(sigmas[2 - j]) for j, c in enumerate(coeffs))
    assert approx == pytest.approx(exact, rel=1e-12)
