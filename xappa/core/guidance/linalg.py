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
from typing import Any, Literal, Protocol, cast, overload

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


class _Solver(Protocol):
    """The call signature of :func:`cg` and :func:`gmres`: ``aux=True`` returns a pair."""

    @overload
    def __call__(
        self,
        matvec: MatVec,
        b: Tensor,
        iterations: int,
        *,
        x0: Tensor | None = ...,
        aux: Literal[False] = ...,
        psd_floor: Tensor | None = ...,
    ) -> Tensor: ...

    @overload
    def __call__(
        self,
        matvec: MatVecAux,
        b: Tensor,
        iterations: int,
        *,
        x0: None = ...,
        aux: Literal[True],
        psd_floor: Tensor | None = ...,
    ) -> tuple[Tensor, Tensor]: ...


def _solver(func: Callable[..., Any]) -> _Solver:
    # The function itself, typed with the overloads of _Solver (written once for both).
    return cast(_Solver, func)


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


@_solver
def cg(
    matvec: MatVec | MatVecAux,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = None,
    aux: bool = False,
    psd_floor: Tensor | None = None,
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
    psd_floor : Tensor, optional
        The diagonal :math:`D` of a split :math:`A = D + C` in which :math:`C` must be
        symmetric positive semi-definite, with shape ``(N, M)``. A row stops at the first
        direction :math:`p` of negative curvature of :math:`C`,
        :math:`p^\top A p < p^\top D p` (truncated CG, as in trust-region methods), and
        keeps the steps taken before.

    Returns
    -------
    Tensor
        The approximate solutions, with shape ``(N, M)`` and the dtype of ``b``.
    Tensor
        With ``aux=True`` only: :math:`B u`, with shape ``(N, *shape)`` and the dtype of the
        images :math:`B v`.

    References
    ----------
    * Steihaug (1983). The Conjugate Gradient Method and Trust Regions in Large Scale
      Optimization. https://doi.org/10.1137/0720042
    """
    _check(b, iterations, x0, aux)
    dtype = b.dtype
    op = _wrap(matvec, dtype, aux)
    b = b.to(torch.float64)
    x = torch.zeros_like(b) if x0 is None else x0.to(torch.float64)
    r = b if x0 is None else b - op(x)[0]
    p = r
    rr = (r * r).sum(dim=1, keepdim=True)
    converged = (_breakdown(dtype) ** 2) * rr  # a residual below this is round-off
    active = torch.ones_like(rr, dtype=torch.bool)
    bx = 0.0  # with aux: B x = sum_k alpha_k B p_k, in float64
    for _ in range(iterations):
        p = torch.where(active & (rr > converged), p, 0.0)  # a stopped row takes no step
        ap, bp = op(p)
        pap = (p * ap).sum(dim=1, keepdim=True)
        if psd_floor is not None:
            pdp = (p * p * psd_floor.to(torch.float64)).sum(dim=1, keepdim=True)
            active = active & (pap - pdp >= -_breakdown(dtype) * pap.abs())
            p = torch.where(active, p, 0.0)
            pap = torch.where(active, pap, 0.0)
        alpha = _safe_div(rr, pap)
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


@_solver
def gmres(
    matvec: MatVec | MatVecAux,
    b: Tensor,
    iterations: int,
    *,
    x0: Tensor | None = None,
    aux: bool = False,
    psd_floor: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Solve :math:`A u = b` by GMRES, for any non-singular :math:`A`.

    Arnoldi with modified Gram-Schmidt builds an orthonormal basis :math:`V_n` of the Krylov
    space :math:`\mathcal{K}_n(A, r_0)` and the Hessenberg matrix
    :math:`\bar{H}_n = V_{n + 1}^\top A V_n`; the correction :math:`V_n y` minimises
    :math:`\lVert b - A u \rVert_2`, :math:`y` being the least-squares solution of
    :math:`\bar{H}_n y = \beta e_1` (a QR factorization, in float64). A breakdown (an
    invariant Krylov space, for example :math:`n` larger than the dimension) leaves the exact
    solution unchanged: a new direction smaller than 64 units of round-off of the products'
    dtype, relative to the product, is taken as zero, so that with more iterations than
    unknowns a float32 product cannot inject round-off as a new direction.

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
    psd_floor : Tensor, optional
        The diagonal :math:`D` of a split :math:`A = D + C` in which :math:`C` must be
        symmetric positive semi-definite, with shape ``(N, M)`` (MMPS: :math:`D = \Sigma_y`,
        :math:`C = A \Sigma_x A^\top`). The Krylov space of a row then stops growing at the
        first direction where the symmetric part of the projected :math:`C`,
        :math:`V_k^\top C V_k`, is not positive semi-definite: beyond it the model of
        :math:`C` is not a covariance, and solving it would amplify its error (see the
        guidance guide). The directions taken before are kept.

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
    rows = b.shape[0]
    basis = [_safe_div(r, beta[:, None])]
    hess = b.new_zeros(rows, n + 1, n)  # the Hessenberg matrix V_{n+1}^T A V_n
    noise = b.new_zeros(rows, n, n) if psd_floor is not None else None  # V_n^T D V_n
    floor = None if psd_floor is None else psd_floor.to(torch.float64)
    used = beta > 0  # (N,): the current column is used; false once a row stops
    count = torch.zeros(rows, dtype=torch.long, device=b.device)  # columns used per row
    images = []  # B v_k, as returned by matvec
    tol = _breakdown(dtype)
    for k in range(n):
        w, image = op(basis[k])
        images.append(image)
        norm_in = w.norm(dim=1)
        for j, v in enumerate(basis):  # modified Gram-Schmidt
            hess[:, j, k] = (w * v).sum(dim=1)
            w = w - hess[:, j, k, None] * v
        h_next = w.norm(dim=1)
        # Breakdown: what is left after orthogonalization is round-off of the product (the
        # Krylov space is exhausted and the solution exact). The next direction is zero.
        h_next = torch.where(h_next > tol * norm_in, h_next, 0.0)
        hess[:, k + 1, k] = h_next
        if noise is not None:
            dv = floor * basis[k]
            for j, v in enumerate(basis[: k + 1]):
                noise[:, j, k] = noise[:, k, j] = (v * dv).sum(dim=1)
            used = used & _projected_psd(
                hess[:, : k + 1, : k + 1], noise[:, : k + 1, : k + 1], tol
            )
        count = count + used.long()
        used = used & (h_next > 0)
        basis.append(_safe_div(w, h_next[:, None]))
    y = _least_squares(hess, beta, count)
    V = torch.stack(basis[:n], dim=1)  # (N, n, M)
    x = (x + torch.einsum("nk,nkm->nm", y, V)).to(dtype)
    if not aux:
        return x
    bx = sum(_scale(c, image) for c, image in zip(y.unbind(dim=1), images, strict=True))
    return x, bx.to(images[0].dtype)


def _projected_psd(hess: Tensor, noise: Tensor, tol: float) -> Tensor:
    """Whether the symmetric part of ``hess - noise`` (N, k, k) is PSD up to round-off (N,)."""
    sym = (hess + hess.mT) / 2
    lam = torch.linalg.eigvalsh(sym - noise)
    scale = torch.linalg.eigvalsh(sym).abs().amax(dim=1)
    return lam[:, 0] >= -tol * scale


def _least_squares(hess: Tensor, beta: Tensor, count: Tensor) -> Tensor:
    r"""Minimise :math:`\lVert \beta e_1 - \bar{H} y \rVert` over the first ``count`` columns.

    ``hess`` has shape ``(N, n + 1, n)``, ``beta`` and ``count`` shape ``(N,)``; the columns
    past ``count`` get :math:`y_j = 0` (a unit row appended below each keeps the batched QR
    of full rank).
    """
    rows, n1, n = hess.shape
    keep = torch.arange(n, device=hess.device)[None, :] < count[:, None]  # (N, n)
    mat = torch.cat([hess * keep[:, None, :], torch.diag_embed((~keep).to(hess.dtype))], dim=1)
    rhs = hess.new_zeros(rows, n1 + n)
    rhs[:, 0] = beta
    q, r = torch.linalg.qr(mat)
    qb = (q.mT @ rhs[..., None])[..., 0]
    diag = r.diagonal(dim1=1, dim2=2)
    # A zero column (a zero right-hand side) gives a zero diagonal: its y is zero.
    safe = r + torch.diag_embed((diag.abs() <= _TINY).to(r.dtype))
    y = torch.linalg.solve_triangular(safe, qb[..., None], upper=True)[..., 0]
    return torch.where(keep, y, 0.0)
