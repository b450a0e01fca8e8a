r"""The products of an observation operator linearised at the denoised state, primals reused.

MMPS's solver applies, several times per guided call, the same linearisation of the
observation operator :math:`A` at :math:`\hat{x} = d(x_t)`: the adjoint product
:math:`J_d^\top A'^\top u` (reverse mode, through the graph of :math:`\hat{y} = A(\hat{x})`
kept from the forward) and the tangent product :math:`A' v`. ``torch.func.jvp`` computes
:math:`A' v` by running the operator forward again with dual numbers: each call recomputes
the primal and, in torch's forward-mode formula of a convolution, a product with the zero
tangent of the weights, about three convolutions per layer for the one :math:`A' v` needs.

:class:`Linearization` instead takes the first adjoint product with ``create_graph=True``:
:math:`w \mapsto A'^\top w` is then a graph that is linear in :math:`w`, and its own VJP is
:math:`v \mapsto A' v` (the transpose of the transpose), one pass of the derivative ops per
layer, without the primal. Its first tangent product is checked against
``torch.func.jvp``, to which operators whose ops have no second derivative in torch fall back;
linear operators are their own derivative (:math:`A' v = A v`). The graph of
:math:`A'^\top w` is kept for the whole guided call: for a convolutional decoder it holds
about 2.6 times the tensors of the forward graph (``cae_f32``, measured on a reduced grid),
memory that forward mode does not keep; :class:`~xappa.core.guidance.mmps.MMPSDenoiser`
chooses (``tangents=``).
"""

from __future__ import annotations

__all__ = ["MODES", "Linearization", "jvp"]

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


def jvp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    r"""Forward-mode product :math:`J_{fn}(x) v`, safe with attention on CPU.

    Runs ``torch.func.jvp`` under ``sdpa_kernel(SDPBackend.MATH)``: torch's fused CPU
    attention kernel has no forward-mode derivative, the math kernel has (at a few times the
    cost). Operators without attention (masks, convolutional decoders) are unaffected.

    Parameters
    ----------
    fn : callable
        The function, mapping shape ``(N, *shape)`` to ``(N, M)``.
    x : Tensor
        The linearisation point, with shape ``(N, *shape)``.
    v : Tensor
        The tangent, with shape ``(N, *shape)``.

    Returns
    -------
    Tensor
        :math:`J v`, with shape ``(N, M)``.
    """
    with sdpa_kernel(SDPBackend.MATH):
        return torch.func.jvp(fn, (x,), (v,))[1]


MODES = ("check", "reverse", "forward")
"""How tangent products are taken: reverse mode after a check against forward mode, reverse
mode, or forward mode (``torch.func.jvp``)."""


def _agree(a: Tensor, b: Tensor) -> bool:
    # Reverse and forward mode differ by round-off of the products' dtype; a part of the
    # operator that reverse mode cannot differentiate twice shows as a much larger gap.
    tol = 1e-3 if a.dtype in (torch.float16, torch.bfloat16) else 1e-4
    return bool((a - b).norm() <= tol * b.norm() + torch.finfo(b.dtype).tiny)


class Linearization:
    r"""Creates the products of an operator :math:`A` linearised at :math:`\hat{x}`.

    Parameters
    ----------
    apply : callable
        :math:`A`, mapping states ``(N, *shape)`` to ``(N, M)``.
    linear : bool
        Whether :math:`A` is linear (then :math:`A' v = A v`, no graph needed).
    x : Tensor
        The noisy states, requiring grad, with shape ``(N, *shape)``.
    x_hat : Tensor
        The denoiser output at ``x``, with its graph, with shape ``(N, *shape)``.
    y_hat : Tensor
        :math:`A(\hat{x})`, with its graph, with shape ``(N, M)``.
    mode : {"check", "reverse", "forward"}
        How tangent products are taken (:data:`MODES`). ``"check"`` takes the first one both
        ways and keeps reverse mode if they agree, else forward mode: an operator some of
        whose ops have no second derivative in torch (a custom ``autograd.Function`` marked
        ``once_differentiable``, whose second derivative silently vanishes) gets the right
        product. A guided denoiser checks once, then passes the :attr:`mode` found.
    """

    def __init__(
        self,
        apply: Callable[[Tensor], Tensor],
        linear: bool,
        x: Tensor,
        x_hat: Tensor,
        y_hat: Tensor,
        *,
        mode: str = "check",
    ) -> None:
        if mode not in MODES:
            msg = f"mode must be one of {list(MODES)}; found {mode!r}"
            raise ValueError(msg)
        self.apply = apply
        self.linear = linear
        self.x, self.x_hat, self.y_hat = x, x_hat, y_hat
        self.mode = mode
        self._cotangent: Tensor | None = None  # w, requiring grad
        self._adjoint: Tensor | None = None  # A'^T w, with its graph (linear in w)

    def _linearize(self, w: Tensor) -> Tensor:
        w = w.detach().requires_grad_(True)
        (adjoint,) = torch.autograd.grad(self.y_hat, self.x_hat, w, create_graph=True)
        self._cotangent, self._adjoint = w, adjoint
        return adjoint.detach()

    def adjoint(self, u: Tensor, *, denoiser: bool = True, retain: bool = True) -> Tensor:
        r"""Return :math:`J_d^\top A'^\top u` (or :math:`A'^\top u` with ``denoiser=False``).

        Parameters
        ----------
        u : Tensor
            The cotangent, with shape ``(N, M)``.
        denoiser : bool
            Whether to continue through the denoiser, to :math:`x_t`.
        retain : bool
            Whether to keep the graphs of :math:`\hat{x}` and :math:`\hat{y}` for later
            products (False on the last one frees them).

        Returns
        -------
        Tensor
            The product, with shape ``(N, *shape)``.
        """
        if self.linear or self._adjoint is not None or self.mode == "forward":
            target = self.x if denoiser else self.x_hat
            return torch.autograd.grad(self.y_hat, target, u, retain_graph=retain)[0]
        try:
            at_u = self._linearize(u)  # the first adjoint product doubles as the linearisation
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:  # no graph of the adjoint: forward mode for tangents
            self.mode = "forward"
            return self.adjoint(u, denoiser=denoiser, retain=retain)
        if not denoiser:
            return at_u
        return torch.autograd.grad(self.x_hat, self.x, at_u, retain_graph=retain)[0]

    def _reverse(self, v: Tensor) -> Tensor:
        if self._adjoint is None:
            self._linearize(torch.zeros_like(self.y_hat))
        return torch.autograd.grad(self._adjoint, self._cotangent, v, retain_graph=True)[0]

    def tangent(self, v: Tensor) -> Tensor:
        r"""Return :math:`A' v`.

        Parameters
        ----------
        v : Tensor
            The tangent, with shape ``(N, *shape)``.

        Returns
        -------
        Tensor
            The product, with shape ``(N, M)``.
        """
        if self.linear:
            return self.apply(v)
        if self.mode != "forward":
            try:
                out = self._reverse(v)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError:  # an op without a second derivative in torch
                self.mode = "forward"
            else:
                if self.mode == "reverse":
                    return out
                ref = jvp(self.apply, self.x_hat.detach(), v)
                self.mode = "reverse" if _agree(out, ref) else "forward"
                return ref
        return jvp(self.apply, self.x_hat.detach(), v)
