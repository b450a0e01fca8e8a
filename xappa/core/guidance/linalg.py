r"""Batched Krylov solvers with a fixed number of iterations, run in float64.

Both solvers approximate :math:`u = A^{-1} b` for a batch of systems given only the
matrix-vector product :math:`v \mapsto A v`. They never test for convergence: the iteration
count is fixed, so a batch costs the same every time and stays on the device (no host sync).
With as many iterations as unknowns, both are exact up to round-off (in exact arithmetic).

The vectors handed to ``matvec`` have the dtype of ``b`` (often float32, the dtype of the
network), while the Krylov basis, the Hessenberg matrix and the recurrences are kept in float64;
the solution is cast back to the dtype of ``b``.

With ``aux=True``, ``matvec`` returns a pair :math:`(A v, B v)` for a second linear map
:math:`B` with any output shape, and a solver returns :math:`(u, B u)`. From a zero start both
build :math:`u` as a combination of the vectors handed to ``matvec`` (GMRES: :math:`V_n y`; CG:
:math:`\sum_k \alpha_k p_k`), so :math:`B u` is the same combination of the images
:math:`B v_k`, with no further product: MMPS saves its final VJP through the denoiser this way
(:mod:`xappa.core.guidance.mmps`). The combination is summed in float64 and cast back to the
dtype of the images.

References
----------
* Saad & Schultz (1986). GMRES: A Generalized Minimal Residual Algorithm for Solving
  Nonsymmetric Linear Systems. https://doi.org/10.1137/0907058
* Hestenes & Stiefel (1952). Methods of Conjugate Gradients for Solving Linear Systems.
  https://doi.org/10.6028/jres.049.044
"""

from __future__ import annotations

__all__ = ["cg", "gmres"]

from collections.abc import Callable
from typing import Literal, overload

import torch
from torch import Tensor

_TINY = torch.finfo(torch.float64).tiny
#: A Krylov direction smaller than this many units of round-off of the products' dtype,
#: relative to the product it came from, is round-off: the space is exhausted (breakdown).
_BREAKDOWN_ULPS = 64.0


def _breakdown(dtype: torch.dtype) -> float:
    return _BREAKDOWN_ULPS * torch.finfo(dtype).eps
MatVec = Callable[[Tensor], Tensor]
MatVecAux = Callable[[Tensor], tuple[Tensor, Tensor]]


def _check(b: Tensor, iterations: int, x0: Tensor | None, aux: bool) -> None:
    if b.ndim != 2:
        msg = f"b must have shape (N, M); found {tuple(b.shape)}"
        raise ValueError(msg)
    if iterations < 1:
        msg = f"iterations must be a positive integer; found {iterations}"
        raise ValueError(msg)
    if x0 is not None and x0.shape != b.shape:
        msg = f"x0 must have the shape of b, {tuple(b.shape)}; found {tuple(x0.shape)}"
        raise ValueError(msg)
    if aux and x0 is not None:
        msg = "x0 must be None (a zero start) with aux=True; found a tensor"
        raise ValueError(msg)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    # num / den where den is not ~0, else 0 (a Krylov breakdown: the solution is exact).
    ok = den.abs() > _TINY
    return torch.where(ok, num / torch.where(ok, den, 1.0), 0.0)


def _wrap(
    matvec: MatVec | MatVecAux, dtype: torch.dtype, aux: bool
) -> Callable[[Tensor], tuple[Tensor, Tensor | None]]:
    # v (float64) -> (A v in float64, B v as returned or None), handing v over in `dtype`.
    def op(v: Tensor) -> tuple[Tensor, Tensor | None]:
        out = matvec(v.to(dtype))
        av, image = out if aux else (out, None)
        return av.to(torch.float64), image

    return op


def _scale(coef: Tensor, image: Tensor) -> Tensor:
    # coef (N,) times image (N, *shape), in float64.
    return coef.reshape(coef.shape + (1,) * (image.ndim - 1)) * image.to(torch.float64)


@overload
def cg(
    matvec: MatVec,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = ...,
    aux: Literal[False] = ...,
) -> Tensor: ...


@overload
def cg(
    matvec: MatVecAux, b: Tensor, iterations: int, *, x0: None = ..., aux: Literal[True]
) -> tuple[Tensor, Tensor]: ...


def cg(
    matvec: MatVec | MatVecAux,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = None,
    aux: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Solve :math:`A u = b` by conjugate gradients, for symmetric positive definite :math:`A`.

    Parameters
    ----------
    matvec : callable
        The batched product :math:`v \mapsto A v`, mapping shape ``(N, M)`` to ``(N, M)``;
        with ``aux=True``, :math:`v \mapsto (A v, B v)`.
    b : Tensor
        The right-hand sides, with shape ``(N, M)``.
    iterations : int
        The fixed number of iterations (matrix-vector products).
    x0 : Tensor, optional
        The initial guess, with shape ``(N, M)``; zero by default.
    aux : bool
        If true, ``matvec`` returns the pair :math:`(A v, B v)`, with :math:`B v` of any shape
        ``(N, *shape)``, and the solver also returns :math:`B u` at no extra product. Requires
        ``x0=None``.

    Returns
    -------
    Tensor
        The approximate solutions, with shape ``(N, M)`` and the dtype of ``b``.
    Tensor
        With ``aux=True`` only: :math:`B u`, with shape ``(N, *shape)`` and the dtype of the
        images :math:`B v`.
    """
    _check(b, iterations, x0, aux)
    dtype = b.dtype
    op = _wrap(matvec, dtype, aux)
    b = b.to(torch.float64)
    x = torch.zeros_like(b) if x0 is None else x0.to(torch.float64)
    r = b if x0 is None else b - op(x)[0]
    p = r
    rr = (r * r).sum(dim=1, keepdim=True)
    floor = (_breakdown(dtype) ** 2) * rr  # a residual below this is round-off: converged
    bx = 0.0  # with aux: B x = sum_k alpha_k B p_k, in float64
    for _ in range(iterations):
        p = torch.where(rr > floor, p, 0.0)  # a converged row takes no further step
        ap, bp = op(p)
        alpha = _safe_div(rr, (p * ap).sum(dim=1, keepdim=True))
        x = x + alpha * p
        if bp is not None:
            bx = bx + _scale(alpha[:, 0], bp)
        r = r - alpha * ap
        rr_new = (r * r).sum(dim=1, keepdim=True)
        p = r + _safe_div(rr_new, rr) * p
        rr = rr_new
    if not aux:
        return x.to(dtype)
    return x.to(dtype), bx.to(bp.dtype)


@overload
def gmres(
    matvec: MatVec,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = ...,
    aux: Literal[False] = ...,
) -> Tensor: ...


@overload
def gmres(
    matvec: MatVecAux, b: Tensor, iterations: int, *, x0: None = ..., aux: Literal[True]
) -> tuple[Tensor, Tensor]: ...


def gmres(
    matvec: MatVec | MatVecAux,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = None,
    aux: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Solve :math:`A u = b` by GMRES, for any non-singular :math:`A`.

    Arnoldi with modified Gram-Schmidt builds an orthonormal basis :math:`V_n` of the Krylov
    space :math:`\mathcal{K}_n(A, r_0)`; Givens rotations reduce the Hessenberg matrix to a
    triangle; the correction :math:`V_n y` minimises :math:`\lVert b - A u \rVert_2`. A
    breakdown (an invariant Krylov space, for example :math:`n` larger than the dimension)
    leaves the exact solution unchanged: a new direction smaller than 64 units of round-off
    of the products' dtype, relative to the product, is taken as zero, so that with more
    iterations than unknowns a float32 product cannot inject round-off as a new direction.

    Parameters
    ----------
    matvec : callable
        The batched product :math:`v \mapsto A v`, mapping shape ``(N, M)`` to ``(N, M)``;
        with ``aux=True``, :math:`v \mapsto (A v, B v)`.
    b : Tensor
        The right-hand sides, with shape ``(N, M)``.
    iterations : int
        The fixed number :math:`n` of iterations (matrix-vector products).
    x0 : Tensor, optional
        The initial guess, with shape ``(N, M)``; zero by default.
    aux : bool
        If true, ``matvec`` returns the pair :math:`(A v, B v)`, with :math:`B v` of any shape
        ``(N, *shape)``, and the solver also returns :math:`B u` at no extra product. Requires
        ``x0=None``.

    Returns
    -------
    Tensor
        The approximate solutions, with shape ``(N, M)`` and the dtype of ``b``.
    Tensor
        With ``aux=True`` only: :math:`B u`, with shape ``(N, *shape)`` and the dtype of the
        images :math:`B v`.
    """
    _check(b, iterations, x0, aux)
    dtype = b.dtype
    n = iterations
    op = _wrap(matvec, dtype, aux)
    b = b.to(torch.float64)
    x = torch.zeros_like(b) if x0 is None else x0.to(torch.float64)
    r = b if x0 is None else b - op(x)[0]
    beta = r.norm(dim=1)  # (N,)
    basis = [_safe_div(r, beta[:, None])]
    rows = b.shape[0]
    R = b.new_zeros(rows, n, n)  # the rotated Hessenberg matrix (upper triangular)
    g = b.new_zeros(rows, n + 1)
    g[:, 0] = beta
    cs, sn = [], []
    images = []  # B v_k, as returned by matvec
    for k in range(n):
        w, image = op(basis[k])
        images.append(image)
        norm_in = w.norm(dim=1)
        h = []
        for v in basis:  # modified Gram-Schmidt
            hk = (w * v).sum(dim=1)
            w = w - hk[:, None] * v
            h.append(hk)
        h_next = w.norm(dim=1)
        # Breakdown: what is left after orthogonalization is round-off of the product (the
        # Krylov space is exhausted and the solution exact). The next direction is zero, so
        # later columns are zero and change nothing.
        h_next = torch.where(h_next > _breakdown(dtype) * norm_in, h_next, 0.0)
        basis.append(_safe_div(w, h_next[:, None]))
        for j in range(k):  # apply the previous rotations to the new column
            h[j], h[j + 1] = cs[j] * h[j] + sn[j] * h[j + 1], -sn[j] * h[j] + cs[j] * h[j + 1]
        rho = torch.hypot(h[k], h_next)
        c = torch.where(rho > 0, _safe_div(h[k], rho), 1.0)
        s = _safe_div(h_next, rho)
        cs.append(c)
        sn.append(s)
        h[k] = rho
        R[:, : k + 1, k] = torch.stack(h, dim=1)
        g[:, k + 1] = -s * g[:, k]
        g[:, k] = c * g[:, k]
    eye = torch.eye(n, dtype=R.dtype, device=R.device)
    y = torch.linalg.solve_triangular(R + _TINY * eye, g[:, :n, None], upper=True)[..., 0]
    V = torch.stack(basis[:n], dim=1)  # (N, n, M)
    x = (x + torch.einsum("nk,nkm->nm", y, V)).to(dtype)
    if not aux:
        return x
    bx = sum(_scale(c, image) for c, image in zip(y.unbind(dim=1), images, strict=True))
    return x, bx.to(images[0].dtype)
