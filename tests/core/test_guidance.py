"""MMPS and DPS guidance on a linear-Gaussian problem whose posterior is known exactly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from gaussian_propagation import propagate
from torch import Tensor

from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.sampler import create_sampler
from xappa.core.diffusion.schedule import RectifiedSchedule
from xappa.core.guidance.dps import DPSDenoiser
from xappa.core.guidance.linalg import cg, gmres
from xappa.core.guidance.mmps import MMPSDenoiser, jvp
from xappa.core.guidance.observation import (
    MaskOperator,
    MatrixOperator,
    Observation,
    ObservationBatch,
)
from xappa.core.operators import (
    ConcatOperator,
    FramewiseOperator,
    SparseOperator,
    is_linear,
)

F64 = torch.float64
SAMPLES = 8192
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


@dataclass
class Problem:
    prior: GaussianDenoiser
    posterior: GaussianDenoiser
    obs: Observation
    matrix: Tensor
    noise: Tensor


def make_problem(
    dim: int = 32, rows: int = 8, seed: int = 0, matrix: Tensor | None = None
) -> Problem:
    """A Gaussian prior (eigenvalues log-spaced over [0.1, 10]) and M random linear rows
    (or the rows of ``matrix``, of shape ``(rows, dim)``)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    cov = q * torch.logspace(-1, 1, dim, dtype=F64) @ q.T
    mean = torch.randn(dim, generator=g, dtype=F64)
    mat = torch.randn(rows, dim, generator=g, dtype=F64) / dim**0.5
    mat = mat if matrix is None else matrix
    noise = 0.05 + 0.45 * torch.rand(rows, generator=g, dtype=F64)
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(dim, generator=g, dtype=F64)
    y = mat @ x + noise.sqrt() * torch.randn(rows, generator=g, dtype=F64)
    post_cov = torch.linalg.inv(torch.linalg.inv(cov) + mat.T @ (mat / noise[:, None]))
    post_cov = (post_cov + post_cov.T) / 2
    post_mean = post_cov @ (torch.linalg.solve(cov, mean) + mat.T @ (y / noise))
    return Problem(
        prior=GaussianDenoiser(mean, cov),
        posterior=GaussianDenoiser(post_mean, post_cov),
        obs=Observation(MatrixOperator(mat), y, noise),
        matrix=mat,
        noise=noise,
    )


@pytest.fixture(scope="module")
def problem() -> Problem:
    return make_problem()


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver", ["gmres", "cg"])
@pytest.mark.parametrize("sigma", [1e-3, 0.1, 1.0, 10.0, 1e3], ids=lambda s: f"sigma{s:g}")
def test_mmps_is_the_exact_posterior_denoiser(problem, solver, sigma):
    g = torch.Generator().manual_seed(1)
    x_t = problem.posterior.mean + (1 + sigma) * torch.randn(6, 32, generator=g, dtype=F64)
    sig = torch.full((6,), sigma, dtype=F64)
    guided = MMPSDenoiser(problem.prior, problem.obs, iterations=8, solver=solver)
    out = guided(x_t, sig)
    expected = problem.posterior(x_t, sig)
    assert torch.allclose(out, expected, atol=1e-8 * (1 + sigma), rtol=0)
    assert not out.requires_grad


# With an exact solve, MMPS is the posterior denoiser to ~1e-14 at every sigma (above), so a
# sampler driven by MMPS gives, for the same seed, the samples of that sampler driven by the
# posterior's exact denoiser. Checking that equality on a few hundred samples is deterministic
# and cheap; the statistics of the posterior-driven samples are then checked against the exact
# propagation with 4 x 8192 samples (the noise floor of 8192 samples, ~4% Frobenius for this
# spectrum, exceeds the 3% bound, as in the unconditional sampler tests).
SAMPLERS = [("gmres", "pc", 32), ("cg", "ddim", 32), ("gmres", "ddpm", 32), ("cg", "lms", 64)]


@pytest.mark.parametrize(
    ("solver", "sampler", "steps"), SAMPLERS, ids=[f"{a}-{b}{c}" for a, b, c in SAMPLERS]
)
def test_mmps_sampling_equals_posterior_sampling(problem, solver, sampler, steps):
    guided = MMPSDenoiser(problem.prior, problem.obs, iterations=8, solver=solver)
    mmps = create_sampler(sampler, guided, steps=steps).sample((256, 32), seed=0, dtype=F64)
    exact = create_sampler(sampler, problem.posterior, steps=steps)
    assert torch.allclose(mmps, exact.sample((256, 32), seed=0, dtype=F64), atol=1e-7, rtol=0)


@pytest.mark.parametrize(("sampler", "steps"), [("pc", 32), ("ddim", 32), ("ddpm", 32)])
def test_posterior_samples_match_propagated_posterior(problem, sampler, steps):
    schedule = RectifiedSchedule()
    draw = create_sampler(sampler, problem.posterior, schedule=schedule, steps=steps)
    x = draw.sample((4 * SAMPLES, 32), seed=1, dtype=F64)
    mean, cov = propagate(sampler, problem.posterior.affine, schedule, steps, 32)
    stderr = (cov.diagonal() / x.shape[0]).sqrt()
    assert ((x.mean(0) - mean).abs() / stderr).max() < 4
    assert _rel(torch.cov(x.T), cov) < 0.03


def test_lms256_matches_analytic_posterior(problem):
    post = problem.posterior
    x = create_sampler("lms", post, steps=256).sample((2 * SAMPLES, 32), seed=2, dtype=F64)
    assert _rel(x.mean(0), post.mean) < 0.05
    assert _rel(torch.cov(x.T), post.cov) < 0.05
    mean, cov = propagate("lms", post.affine, RectifiedSchedule(), 256, 32)
    assert _rel(mean, post.mean) < 0.01
    assert _rel(cov, post.cov) < 0.01


def test_tweedie_covariance_false_uses_scaled_identity(problem):
    sigma = 0.7
    x_t = torch.randn(3, 32, dtype=F64, generator=torch.Generator().manual_seed(2))
    sig = torch.full((3,), sigma, dtype=F64)
    out = MMPSDenoiser(problem.prior, problem.obs, iterations=8, tweedie_covariance=False)(
        x_t, sig
    )
    gain, shift = problem.prior.affine(sigma)
    x_hat = x_t @ gain.T + shift
    a, r, s2 = problem.matrix, problem.noise, sigma**2
    system = torch.diag(r) + s2 / (1 + s2) * a @ a.T
    u = torch.linalg.solve(system, (problem.obs.values - x_hat @ a.T).T).T
    expected = x_hat + s2 * u @ a @ gain  # sigma^2 J^T A^T u with J = gain (symmetric)
    assert torch.allclose(out, expected, atol=1e-10, rtol=0)


def test_dps_formula(problem):
    sigma, gamma = 0.5, 0.3
    x_t = torch.randn(3, 32, dtype=F64, generator=torch.Generator().manual_seed(3))
    out = DPSDenoiser(problem.prior, problem.obs, gamma=gamma)(
        x_t, torch.full((3,), sigma, dtype=F64)
    )
    gain, shift = problem.prior.affine(sigma)
    x_hat = x_t @ gain.T + shift
    s2 = sigma**2
    weight = 1 / (problem.noise + gamma * s2 / (1 + s2))
    grad = ((problem.obs.values - x_hat @ problem.matrix.T) * weight) @ problem.matrix @ gain
    assert torch.allclose(out, x_hat + s2 * grad, atol=1e-10, rtol=0)


def _window_problem() -> tuple[GaussianDenoiser, list[Observation | None], Tensor]:
    g = torch.Generator().manual_seed(4)
    prior = make_problem(dim=12, rows=2, seed=5).prior
    obs: list[Observation | None] = []
    for rows in (3, 0, 5, None):
        if rows is None:
            obs.append(None)
            continue
        mat = torch.randn(rows, 12, generator=g, dtype=F64)
        obs.append(Observation(MatrixOperator(mat), torch.randn(rows, dtype=F64), 0.1))
    index = torch.tensor([0, 1, 2, 3, 2, 0, 3, 1])
    return prior, obs, index


@pytest.mark.parametrize("guidance", ["mmps", "dps"])
def test_per_window_observations_padding_is_exact(guidance):
    prior, obs, index = _window_problem()
    x_t = torch.randn(8, 12, dtype=F64, generator=torch.Generator().manual_seed(6))
    sig = torch.full((8,), 0.8, dtype=F64)

    def make(o):
        if guidance == "mmps":
            return MMPSDenoiser(prior, o, iterations=5)
        return DPSDenoiser(prior, o)

    batched = make(obs)(x_t, sig, window_index=index)
    for row, w in enumerate(index.tolist()):
        o = obs[w]
        ref = prior(x_t[row : row + 1], sig[:1])
        if o is not None and len(o):
            ref = make(o)(x_t[row : row + 1], sig[:1])
        assert torch.allclose(batched[row : row + 1], ref, atol=1e-12, rtol=0), (row, w)


def test_mapping_observations_and_unobserved_batch(problem):
    x_t = torch.randn(4, 32, dtype=F64)
    sig = torch.full((4,), 2.0, dtype=F64)
    guided = MMPSDenoiser(problem.prior, {5: problem.obs})
    assert torch.equal(guided(x_t, sig, window_index=torch.zeros(4)), problem.prior(x_t, sig))
    out = guided(x_t, sig, window_index=torch.tensor([5, 0, 5, 0]))
    assert torch.equal(out[1], problem.prior(x_t, sig)[1])
    assert not torch.allclose(out[0], problem.prior(x_t, sig)[0])


class AttentionDecoder(torch.nn.Module):
    """A non-linear operator with CPU attention (fused kernel: no forward-mode AD)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(4, 12)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x.reshape(x.shape[0], 8, 4)).unflatten(-1, (3, 4)).movedim(2, 0)
        out = torch.nn.functional.scaled_dot_product_attention(h[0], h[1], torch.tanh(h[2]))
        return out.flatten(1)[:, ::5]


def test_mmps_nonlinear_operator_with_attention():
    prior = make_problem(dim=32, rows=2, seed=7).prior.float()
    op = AttentionDecoder()
    obs = Observation(op, torch.randn(7), 0.01)
    out = MMPSDenoiser(prior, obs, iterations=2)(torch.randn(3, 32), torch.full((3,), 0.5))
    assert out.shape == (3, 32)
    assert torch.isfinite(out).all()


class _Wrapped(torch.nn.Module):
    """The same map as ``op``, but not a known linear operator: no gather, no linear shortcut."""

    def __init__(self, op: torch.nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


def _mask_windows(wrap: bool) -> list[Observation | None]:
    g = torch.Generator().manual_seed(8)
    obs: list[Observation | None] = []
    for p in (0.3, 0.0, 0.6, None, 0.1):
        if p is None:
            obs.append(None)
            continue
        mask = torch.rand(3, 4, generator=g) < p
        op = MaskOperator(mask)
        values = torch.randn(int(mask.sum()), generator=g, dtype=F64)
        obs.append(Observation(_Wrapped(op) if wrap else op, values, 0.05))
    return obs


def test_mask_windows_read_by_one_gather():
    """Masks of many windows are read by one gather, equal to one operator call per window
    in values, VJP and JVP, with rows out of order, repeated, and unobserved."""
    index = torch.tensor([4, 0, 3, 2, 1, 0, 4])
    fast = ObservationBatch(_mask_windows(False), 7, index, dtype=F64)
    slow = ObservationBatch(_mask_windows(True), 7, index, dtype=F64)
    assert fast._gather is not None and slow._gather is None
    assert fast.linear and not slow.linear
    assert torch.equal(fast.mask, slow.mask) and torch.equal(fast.values, slow.values)
    x = torch.randn(7, 3, 4, dtype=F64, requires_grad=True)
    y_fast, y_slow = fast.apply(x), slow.apply(x)
    assert torch.equal(y_fast, y_slow)
    assert not y_fast[~fast.mask].any()  # padding and unobserved rows read nothing
    u = torch.randn_like(y_fast)
    (g_fast,) = torch.autograd.grad(y_fast, x, u)
    (g_slow,) = torch.autograd.grad(y_slow, x, u)
    assert torch.equal(g_fast, g_slow)
    v = torch.randn(7, 3, 4, dtype=F64)
    assert torch.equal(jvp(fast.apply, x.detach(), v), jvp(slow.apply, x.detach(), v))
    assert torch.equal(fast.apply(v), jvp(slow.apply, x.detach(), v))  # linear: A v = J v
    with pytest.raises(RuntimeError, match=r"x must have shape \(N, \*\(3, 4\)\)"):
        fast.apply(torch.zeros(7, 4, 3, dtype=F64))


@pytest.mark.parametrize("tweedie", [True, False])
def test_mmps_linear_shortcut_equals_jvp(tweedie):
    """Masks (gathered, A v without torch.func) give the MMPS output of the generic path."""
    prior = make_problem(dim=12, rows=2, seed=5).prior
    index = torch.tensor([0, 2, 4, 3, 1, 2])
    x_t = torch.randn(6, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(9))
    sig = torch.full((6,), 0.7, dtype=F64)

    class Flat(torch.nn.Module):
        def forward(self, x, sigma):
            return prior(x.flatten(1), sigma).reshape(x.shape)

    outs = [
        MMPSDenoiser(Flat(), _mask_windows(wrap), iterations=3, tweedie_covariance=tweedie)(
            x_t, sig, window_index=index
        )
        for wrap in (False, True)
    ]
    assert torch.allclose(outs[0], outs[1], atol=1e-12, rtol=0)
    assert not torch.allclose(outs[0][0], prior(x_t[:1].flatten(1), sig[:1]).reshape(3, 4))


FRAME = (2, 4, 4)  # one pixel frame (C, H, W) of 32 entries


def _sparse_problem() -> tuple[SparseOperator, Problem]:
    """Bilinear-like reads (4 weighted cells per value) and the problem of their dense matrix."""
    g = torch.Generator().manual_seed(11)
    index = torch.randint(0, 32, (8, 4), generator=g)
    weight = torch.rand(8, 4, generator=g, dtype=F64)
    dense = torch.zeros(8, 32, dtype=F64)
    dense.index_put_((torch.arange(8)[:, None].expand(8, 4), index), weight, accumulate=True)
    return SparseOperator(index, FRAME, weight), make_problem(seed=3, matrix=dense)


class _Frames(torch.nn.Module):
    """The flat prior on states of any shape ``(N, *shape)`` with ``prod(shape) = 32``."""

    def __init__(self, prior: GaussianDenoiser) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.prior(x.flatten(1), sigma).reshape(x.shape)


@pytest.mark.parametrize("kind", ["sparse", "concat", "framewise", "matrix"])
@pytest.mark.parametrize("sigma", [1e-2, 1.0, 100.0], ids=lambda s: f"sigma{s:g}")
def test_sparse_operators_take_the_linear_path(kind, sigma, monkeypatch):
    """Sparse reads of pixel frames are linear operators: MMPS never differentiates them
    forward (A' v = A v) and lands on the exact posterior of their dense matrix."""
    sparse, problem = _sparse_problem()
    state = (1, *FRAME) if kind == "framewise" else FRAME
    operator = {
        "sparse": sparse,
        "concat": ConcatOperator(
            [
                SparseOperator(sparse.index[:5], FRAME, sparse.weight[:5]),
                SparseOperator(sparse.index[5:], FRAME, sparse.weight[5:]),
            ]
        ),
        "framewise": FramewiseOperator(
            None, [0], torch.nn.Sequential(torch.nn.Flatten(1, 2), sparse)
        ),
        "matrix": problem.obs.operator,
    }[kind]
    obs = Observation(operator, problem.obs.values, problem.obs.variances)
    assert is_linear(operator)
    assert ObservationBatch(obs, 6).linear

    def no_forward_mode(*args, **kwargs):
        raise AssertionError("a linear operator was differentiated in forward mode")

    monkeypatch.setattr(torch.func, "jvp", no_forward_mode)
    g = torch.Generator().manual_seed(12)
    x_t = problem.posterior.mean + (1 + sigma) * torch.randn(6, 32, generator=g, dtype=F64)
    sig = torch.full((6,), sigma, dtype=F64)
    guided = MMPSDenoiser(_Frames(problem.prior), obs, iterations=8)
    out = guided(x_t.reshape(6, *state), sig).flatten(1)
    assert torch.allclose(out, problem.posterior(x_t, sig), atol=1e-8 * (1 + sigma), rtol=0)
    assert not torch.allclose(out, problem.prior(x_t, sig), atol=1e-3, rtol=0)


def test_linearity_is_declared_or_derived():
    sparse, problem = _sparse_problem()
    readout = torch.nn.Sequential(torch.nn.Flatten(1, 2), sparse)

    class HasLinearLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(32, 8)  # a layer called "linear" is no declaration

    assert is_linear(MaskOperator(torch.ones(3, dtype=torch.bool)))
    assert is_linear(problem.obs.operator) and is_linear(sparse) and is_linear(readout)
    assert is_linear(FramewiseOperator(sparse, [0], MaskOperator(torch.ones(1, 8).bool())))
    assert not is_linear(FramewiseOperator(torch.tanh, [0], readout))
    assert not is_linear(
        FramewiseOperator(None, [0], torch.nn.Sequential(readout, torch.nn.Tanh()))
    )
    assert not is_linear(_Wrapped(sparse))  # undeclared: differentiated, always safe
    assert not is_linear(lambda x: x.flatten(1)) and not is_linear(HasLinearLayer())
    assert not ObservationBatch(Observation(_Wrapped(sparse), problem.obs.values, 0.1), 2).linear


def test_mask_operator():
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[0, 1] = mask[1, 2] = True
    x = torch.arange(12.0).reshape(2, 2, 3)
    assert torch.equal(MaskOperator(mask)(x), torch.tensor([[1.0, 5.0], [7.0, 11.0]]))


def test_errors(problem):
    with pytest.raises(ValueError, match="solver must be one of"):
        MMPSDenoiser(problem.prior, problem.obs, solver="lu")
    with pytest.raises(ValueError, match="iterations must be a positive integer; found 0"):
        MMPSDenoiser(problem.prior, problem.obs, iterations=0)
    with pytest.raises(ValueError, match="gamma must be non-negative"):
        DPSDenoiser(problem.prior, problem.obs, gamma=-1.0)
    with pytest.raises(ValueError, match="window_index is required"):
        ObservationBatch([problem.obs], 3)
    with pytest.raises(ValueError, match=r"values must have shape \(M,\); found \(2, 4\)"):
        Observation(MatrixOperator(torch.eye(4)), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match=r"variances must have shape \(4,\); found \(3,\)"):
        Observation(MatrixOperator(torch.eye(4)), torch.zeros(4), torch.ones(3))
    with pytest.raises(ValueError, match="variances must be non-negative"):
        Observation(MatrixOperator(torch.eye(4)), torch.zeros(4), -1.0)
    with pytest.raises(TypeError, match="operator must be callable; found int"):
        Observation(3, torch.zeros(4), 1.0)


def test_mmps_solve_keeps_no_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an operator that has trainable parameters (a decoder), the solver's output must
    carry no autograd graph: such graphs built up call after call (a memory leak)."""
    import gc
    import weakref

    from xappa.core.guidance import mmps

    p = make_problem()
    layer = torch.nn.Linear(32, 8, dtype=F64)  # parameters require grad, like a decoder's
    obs = Observation(layer, p.obs.values, p.obs.variances)
    solved: list[weakref.ref] = []
    grad_modes: list[bool] = []
    original = mmps._SOLVERS["gmres"]

    def spy(matvec, b, iterations, **kwargs):
        grad_modes.append(torch.is_grad_enabled())
        out = original(matvec, b, iterations, **kwargs)
        for u in out if isinstance(out, tuple) else (out,):
            assert u.grad_fn is None
            solved.append(weakref.ref(u))
        return out

    monkeypatch.setitem(mmps._SOLVERS, "gmres", spy)
    guided = MMPSDenoiser(p.prior, obs, iterations=3)
    x = torch.randn(4, 32, dtype=F64)
    out = guided(x, torch.full((4,), 0.7, dtype=F64))
    assert out.grad_fn is None and grad_modes == [False]
    gc.collect()
    assert solved and all(ref() is None for ref in solved)


class _CountVJP(torch.autograd.Function):
    """The identity, counting the backward passes that reach it in ``owner.vjps``."""

    @staticmethod
    def forward(ctx, x: Tensor, owner: MLPDenoiser) -> Tensor:
        ctx.owner = owner
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        ctx.owner.vjps += 1
        return grad, None


class MLPDenoiser(torch.nn.Module):
    """A small non-linear denoiser (non-symmetric Jacobian) that counts its VJPs and keeps
    its last input and output, with their graph."""

    def __init__(self, dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, 64), torch.nn.Tanh(), torch.nn.Linear(64, dim)
        ).to(dtype)
        self.vjps = 0
        self.last: tuple[Tensor, Tensor] | None = None

    def forward(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        h = _CountVJP.apply(x_t, self)
        s2 = sigma[:, None] ** 2
        out = h / (1 + s2) + self.net(torch.cat([h, sigma[:, None].log()], dim=1))
        self.last = (x_t, out)
        return out


class OldMMPS(MMPSDenoiser):
    """MMPS as before the solver returned J_d^T A^T u: two VJPs per iteration (through the
    operator, then the denoiser), then a final VJP through both."""

    def guide(self, x: Tensor, x_hat: Tensor, s2: Tensor, batch: ObservationBatch) -> Tensor:
        y_hat = batch.apply(x_hat)
        point = x_hat.detach()

        def matvec(u: Tensor) -> Tensor:
            at_u = torch.autograd.grad(y_hat, x_hat, u, retain_graph=True)[0]
            cov = s2 * torch.autograd.grad(x_hat, x, at_u, retain_graph=True)[0]
            return batch.variances * u + jvp(batch.apply, point, cov)

        residual = torch.where(batch.mask, batch.values - y_hat.detach(), 0.0)
        with torch.no_grad():
            solve = {"gmres": gmres, "cg": cg}[self.solver]
            u = solve(matvec, residual, self.iterations, psd_floor=batch.variances)
        return torch.autograd.grad(y_hat, x, u)[0]


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("solver", ["gmres", "cg"])
@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_mmps_one_denoiser_vjp_per_iteration(dtype, solver, iterations):
    torch.manual_seed(1)
    operator = torch.nn.Sequential(torch.nn.Linear(16, 6), torch.nn.Tanh()).to(dtype)
    obs = Observation(operator, torch.randn(6, dtype=dtype), 0.1)
    x_t = torch.randn(4, 16, dtype=dtype)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=dtype)
    outs = []
    for cls, vjps in [(MMPSDenoiser, iterations), (OldMMPS, iterations + 1)]:
        prior = MLPDenoiser(16, dtype)
        outs.append(cls(prior, obs, iterations=iterations, solver=solver)(x_t, sigma))
        assert prior.vjps == vjps
        x, x_hat = prior.last
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            torch.autograd.grad(x_hat, x, torch.ones_like(x_hat))  # the graph was freed
    assert _rel(outs[0], outs[1]) < (1e-5 if dtype == torch.float32 else 1e-12)
    assert _rel(outs[0], MLPDenoiser(16, dtype)(x_t, sigma).detach()) > 1e-3  # guided


def test_mmps_scaled_identity_covariance_one_denoiser_vjp():
    torch.manual_seed(2)
    obs = Observation(torch.nn.Linear(16, 6, dtype=F64), torch.randn(6, dtype=F64), 0.1)
    prior = MLPDenoiser(16, F64)
    MMPSDenoiser(prior, obs, iterations=3, tweedie_covariance=False)(
        torch.randn(2, 16, dtype=F64), torch.full((2,), 0.5, dtype=F64)
    )
    assert prior.vjps == 1


# The library's defaults against closed-form posteriors with small posterior variances and
# many observations (tests/core/gaussian_problems.py, as benchmarks/posterior_accuracy.py).
# The bar: mean bias <= 0.1 posterior standard deviations and variance ratios within
# 0.85-1.15 in every principal direction, down to posterior variances of 1e-3. Appa's
# settings (the old defaults) miss it: bias 0.3-1.0, ratios 0.5-2.0 on these problems.
@pytest.mark.parametrize(
    ("dim", "kinds"),
    [(24, (3, 2, 2)), (96, (40, 12, 12))],
    ids=["M7", "M64"],
)
def test_default_sampling_lands_on_small_posterior_variances(dim, kinds):
    from gaussian_problems import make_linear_gaussian, score

    from xappa.core.da import SamplingConfig

    p, d, n = kinds
    problem = make_linear_gaussian(
        dim, points=p, differences=d, dense=n, min_variance=1e-3, seed=dim
    )
    assert float(torch.linalg.eigvalsh(problem.post_cov)[0]) == pytest.approx(1e-3, rel=1e-6)
    result = score(SamplingConfig(), problem, samples=1024)
    assert not result["diverged"]
    assert result["bias"] <= 0.1, result
    assert 0.85 <= result["ratio_min"] and result["ratio_max"] <= 1.15, result


def test_dps_with_lms_lands_on_the_posterior():
    """Prior N(0, 1), one observation of variance 0.01, LMS 16 steps: SDA's gamma = 0.01
    over-weights the observation (the guided gain turns negative) and the draw diverged to a
    mean of -4e5; gamma = 1 (the default) is the exact posterior denoiser here."""
    from xappa.core.da import SamplingConfig

    prior = GaussianDenoiser(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))
    obs = Observation(
        MatrixOperator(torch.eye(1, dtype=F64)), torch.tensor([0.5], dtype=F64), 0.01
    )
    config = SamplingConfig(sampler="lms", steps=16, guidance="dps")
    x = config.make_sampler(config.guide(prior, obs)).sample((4096, 1), seed=0, dtype=F64)
    assert abs(float(x.mean()) - 0.5 / 1.01) < 4 * (0.01 / 4096) ** 0.5
    assert 0.8 < float(x.var()) / (0.01 / 1.01) < 1.2
