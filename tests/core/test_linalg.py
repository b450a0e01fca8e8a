"""Fixed-iteration CG and GMRES against dense solves."""

from __future__ import annotations

import itertools

import pytest
import torch

from xappa.core.guidance.linalg import cg, gmres

F64 = torch.float64


def _system(n: int, m: int, *, spd: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, m, m, generator=g, dtype=F64)
    if spd:
        # Condition number ~5: with round-off, CG loses its finite termination on worse systems
        # (cond ~40, 24 unknowns: 2e-5 after 24 iterations, 2e-14 after 30); GMRES does not.
        mat = q @ q.mT / m + torch.eye(m, dtype=F64)
    else:
        mat = q / m**0.5 + 2 * torch.eye(m, dtype=F64)
    return mat, torch.randn(n, m, generator=g, dtype=F64)


def _matvec(mat: torch.Tensor):
    return lambda v: (mat.to(v.dtype) @ v[..., None])[..., 0]


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
@pytest.mark.parametrize("m", [1, 6, 24], ids=lambda m: f"M{m}")
def test_exact_with_as_many_iterations_as_unknowns(solver, m):
    mat, b = _system(5, m, spd=True)
    exact = torch.linalg.solve(mat, b)
    out = solver(_matvec(mat), b, m)
    assert out.dtype == F64
    assert torch.allclose(out, exact, atol=1e-10, rtol=0)


def test_gmres_non_symmetric():
    mat, b = _system(4, 12, spd=False, seed=1)
    out = gmres(_matvec(mat), b, 12)
    assert torch.allclose(out, torch.linalg.solve(mat, b), atol=1e-10, rtol=0)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_batched_equals_one_by_one(solver):
    mat, b = _system(6, 10, spd=True, seed=2)
    batched = solver(_matvec(mat), b, 4)
    single = torch.cat([solver(_matvec(mat[i : i + 1]), b[i : i + 1], 4) for i in range(6)])
    assert torch.allclose(batched, single, atol=1e-12, rtol=0)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_more_iterations_than_unknowns_and_zero_rhs(solver):
    mat, b = _system(3, 5, spd=True, seed=3)
    b[1] = 0
    out = solver(_matvec(mat), b, 9)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(5, dtype=F64))
    assert torch.allclose(out, torch.linalg.solve(mat, b), atol=1e-10, rtol=0)


def test_gmres_residual_decreases():
    mat, b = _system(2, 30, spd=False, seed=4)
    res = [(b - _matvec(mat)(gmres(_matvec(mat), b, k))).norm() for k in (1, 2, 4, 8, 16)]
    assert all(r1 <= r0 + 1e-12 for r0, r1 in itertools.pairwise(res))


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_float32_rhs_float64_internals(solver):
    mat, b = _system(2, 8, spd=True, seed=5)
    out = solver(_matvec(mat), b.float(), 8)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), torch.linalg.solve(mat, b), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
@pytest.mark.parametrize("iterations", [2, 4, 8, 20], ids=lambda k: f"it{k}")
def test_float32_products_with_more_iterations_than_unknowns(solver, iterations):
    """Once the Krylov space is exhausted, float32 round-off is no new direction."""
    mat, b = _system(64, 2, spd=True, seed=6)
    out = solver(_matvec(mat), b.float(), iterations)
    assert torch.isfinite(out).all()
    exact = torch.linalg.solve(mat, b)
    assert torch.allclose(out.double(), exact, atol=1e-4, rtol=1e-4), (
        (out.double() - exact).abs().max()
    )


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_x0_warm_start(solver):
    mat, b = _system(2, 6, spd=True, seed=6)
    exact = torch.linalg.solve(mat, b)
    out = solver(_matvec(mat), b, 6, x0=exact + 0.1)
    assert torch.allclose(out, exact, atol=1e-10, rtol=0)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_errors(solver):
    mat, b = _system(2, 4, spd=True)
    with pytest.raises(ValueError, match=r"b must have shape \(N, M\); found \(4,\)"):
        solver(_matvec(mat), b[0], 2)
    with pytest.raises(ValueError, match="iterations must be a positive integer; found 0"):
        solver(_matvec(mat), b, 0)
    with pytest.raises(ValueError, match="x0 must have the shape of b"):
        solver(_matvec(mat), b, 2, x0=b[:1])


def _with_image(mat: torch.Tensor, image: torch.Tensor, calls: list[int] | None = None):
    # v -> (A v, B v) with B v reshaped to (N, 3, P / 3), in the dtype of v.
    def matvec(v):
        if calls is not None:
            calls.append(v.shape[0])
        bv = (image.to(v.dtype) @ v[..., None])[..., 0]
        return _matvec(mat)(v), bv.unflatten(1, (3, -1))

    return matvec


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
@pytest.mark.parametrize("iterations", [1, 3, 8, 12])
def test_aux_image_is_B_of_the_solution(solver, iterations):
    mat, b = _system(5, 8, spd=True, seed=7)
    image = torch.randn(5, 12, 8, dtype=F64, generator=torch.Generator().manual_seed(8))
    u, bu = solver(_with_image(mat, image), b, iterations, aux=True)
    assert torch.equal(u, solver(_matvec(mat), b, iterations))
    assert bu.shape == (5, 3, 4) and bu.dtype == F64
    expected = (image @ u[..., None])[..., 0].unflatten(1, (3, -1))
    assert torch.allclose(bu, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_aux_image_keeps_its_dtype(solver):
    mat, b = _system(2, 8, spd=True, seed=9)
    image = torch.randn(2, 6, 8, dtype=F64, generator=torch.Generator().manual_seed(10))
    u, bu = solver(_with_image(mat, image), b.float(), 8, aux=True)
    assert u.dtype == bu.dtype == torch.float32
    expected = (image @ u.double()[..., None])[..., 0].unflatten(1, (3, -1))
    assert torch.allclose(bu.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
@pytest.mark.parametrize("aux", [False, True])
def test_one_matvec_per_iteration(solver, aux):
    # MMPS relies on it: its product frees the autograd graph at the last call.
    mat, b = _system(3, 6, spd=True, seed=11)
    calls: list[int] = []
    matvec = _with_image(mat, torch.ones(3, 3, 6, dtype=F64), calls)
    solver(matvec if aux else lambda v: matvec(v)[0], b, 4, aux=aux)
    assert calls == [3] * 4


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_aux_needs_a_zero_start(solver):
    mat, b = _system(2, 4, spd=True)
    matvec = _with_image(mat, torch.ones(2, 3, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"x0 must be None \(a zero start\) with aux=True"):
        solver(matvec, b, 2, x0=b, aux=True)


def _noise_plus_covariance(lam: torch.Tensor, noise: float, seed: int = 12):
    """A = noise I + Q diag(lam) Q^T, the MMPS system with a (possibly invalid) covariance."""
    m = lam.shape[0]
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=F64))
    mat = noise * torch.eye(m, dtype=F64) + q * lam @ q.T
    return (
        mat[None],
        torch.randn(1, m, generator=g, dtype=F64),
        torch.full((1, m), noise, dtype=F64),
    )


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_psd_floor_changes_nothing_on_a_valid_covariance(solver):
    """With C = A - D positive semi-definite, the safeguard never stops a row."""
    lam = torch.logspace(-6, 1, 10, dtype=F64)
    mat, b, floor = _noise_plus_covariance(lam, 1e-4)
    for k in (2, 10, 14):
        plain = solver(_matvec(mat), b, k)
        safe = solver(_matvec(mat), b, k, psd_floor=floor)
        assert torch.allclose(safe, plain, rtol=1e-10, atol=0)
    exact = torch.linalg.solve(mat, b[..., None])[..., 0]
    assert torch.allclose(gmres(_matvec(mat), b, 10, psd_floor=floor), exact, rtol=1e-8, atol=0)


@pytest.mark.parametrize("solver", [cg, gmres], ids=["cg", "gmres"])
def test_psd_floor_keeps_an_invalid_covariance_from_exploding(solver):
    """One eigenvalue of the 'covariance' is negative and nearly cancels the noise: A is
    almost singular. A converged solve amplifies that direction 10^4 times beyond what any
    covariance allows; the safeguard stops before it."""
    lam = torch.tensor([1.0, 0.5, 0.2, 0.1, 0.05, -0.99e-4], dtype=F64)
    mat, b, floor = _noise_plus_covariance(lam, 1e-4)
    bound = float(b.norm() / 1e-4)  # |u| <= |b| / min(noise) for a valid covariance
    loose = gmres(_matvec(mat), b, 6)
    assert float(loose.norm()) > 50 * bound  # the unsafe solve explodes
    for k in (1, 2, 6, 20):
        safe = solver(_matvec(mat), b, k, psd_floor=floor)
        assert torch.isfinite(safe).all()
        assert float(safe.norm()) <= bound, k
