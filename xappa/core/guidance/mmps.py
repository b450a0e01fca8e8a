r"""Moment matching posterior sampling (MMPS): a posterior denoiser from a prior denoiser.

At noise level :math:`\sigma`, with prior denoiser :math:`d` and observations
:math:`y = A(x) + \eta`, :math:`\eta \sim \mathcal{N}(0, \Sigma_y)`:

1. :math:`\hat{x} = d(x_t, \sigma)`, keeping the autograd graph, and :math:`\hat{y} = A(\hat{x})`;
2. Tweedie's covariance :math:`\Sigma_x v = \sigma^2 J_d^\top v` with
   :math:`J_d = \partial \hat{x} / \partial x_t`, one VJP through the denoiser (or
   :math:`\Sigma_x = \sigma^2 / (1 + \sigma^2) I` with ``tweedie_covariance=False``);
3. :math:`A` linearised at :math:`\hat{x}`: :math:`A v` by ``torch.func.jvp`` of the operator
   (the only forward-mode AD; a linear operator, masks and matrices, is applied to :math:`v`
   directly), :math:`A^\top u` by a VJP through :math:`\hat{y}`;
4. :math:`u` solves :math:`(\Sigma_y + A \Sigma_x A^\top) u = y - \hat{y}` by GMRES or CG with
   a fixed number of iterations, in float64;
5. the output :math:`\hat{x} + \sigma^2 J_d^\top A^\top u`. With Tweedie's covariance this takes
   no further VJP: from a zero start the solver's :math:`u` is a combination of the vectors
   handed to the product, whose images :math:`J_d^\top A^\top v_k` were computed in step 2,
   so the solver combines those (``aux=True`` in :mod:`xappa.core.guidance.linalg`). Without,
   one VJP through operator and denoiser.

With Tweedie's covariance a call costs one forward with graph and, per iteration, one VJP
through operator and denoiser and one JVP through the operator.

For a Gaussian prior with its exact denoiser and a linear :math:`A`, this is the exact
posterior denoiser :math:`E[x \mid x_t, y]` once the solver is exact (as many iterations as
observations).

References
----------
* Rozet et al. (2024). Learning Diffusion Priors from Observations by Expectation
  Maximization. https://arxiv.org/abs/2405.13712
* Andry et al. (2025). Appa. https://arxiv.org/abs/2504.18720
"""

from __future__ import annotations

__all__ = ["SOLVER_NAMES", "MMPSDenoiser", "jvp"]

import torch
from torch import Tensor

from xappa.core.diffusion.denoiser import Denoiser
from xappa.core.guidance.base import GuidedDenoiser
from xappa.core.guidance.linalg import cg, gmres
from xappa.core.guidance.linearization import Linearization, jvp
from xappa.core.guidance.observation import ObservationBatch, Observations

_SOLVERS = {"gmres": gmres, "cg": cg}
SOLVER_NAMES = tuple(_SOLVERS)
"""The names of the MMPS linear solvers."""
_TANGENTS = ("auto", "reverse", "forward")


class MMPSDenoiser(GuidedDenoiser):
    r"""Creates the MMPS posterior denoiser around a prior denoiser.

    Parameters
    ----------
    denoiser : Denoiser
        The prior denoiser :math:`d(x_t, \sigma, **cond)`.
    observations : Observation, sequence or mapping
        One :class:`~xappa.core.guidance.observation.Observation` for every row, or
        per-window observations selected by the ``window_index`` keyword (see
        :mod:`xappa.core.guidance.observation`). Rows of windows without observations get
        the plain denoiser output.
    iterations : int
        The fixed number of solver iterations (Appa uses 2 GMRES iterations).
    solver : str
        ``"gmres"`` (default, as Appa) or ``"cg"`` (the system is symmetric positive definite
        when the denoiser Jacobian is symmetric).
    tweedie_covariance : bool
        Use Tweedie's covariance :math:`\sigma^2 J_d^\top` (default), or
        :math:`\sigma^2 / (1 + \sigma^2) I` (the iterations then take VJPs through the
        operator only, and one VJP through the denoiser follows the solve).
    tangents : {"auto", "reverse", "forward"}
        How the products :math:`A' v` of a non-linear operator are taken
        (:mod:`xappa.core.guidance.linearization`): ``"reverse"`` through the graph of the
        first adjoint product (no recomputed primal; faster on a CPU, but that graph holds
        about 2.6 times the operator's activations), ``"forward"`` by ``torch.func.jvp``
        (recomputes the operator's forward; no memory kept), ``"auto"`` (default) reverse on
        a CPU and forward on other devices.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        observations: Observations,
        *,
        iterations: int = 2,
        solver: str = "gmres",
        tweedie_covariance: bool = True,
        tangents: str = "auto",
    ) -> None:
        super().__init__(denoiser, observations)
        if tangents not in _TANGENTS:
            msg = f"tangents must be one of {list(_TANGENTS)}; found {tangents!r}"
            raise ValueError(msg)
        if solver not in _SOLVERS:
            msg = f"solver must be one of {sorted(_SOLVERS)}; found {solver!r}"
            raise ValueError(msg)
        if iterations < 1:
            msg = f"iterations must be a positive integer; found {iterations}"
            raise ValueError(msg)
        self.iterations = int(iterations)
        self.solver = solver
        self.tweedie_covariance = bool(tweedie_covariance)
        self.tangents = tangents
        self._tangent_mode: str | None = None  # "check" once, then what the check found

    def _mode(self, device: torch.device) -> str:
        # Reverse-mode tangents are checked against forward mode once, then kept or dropped.
        if self._tangent_mode is not None:
            return self._tangent_mode
        forward = self.tangents == "forward" or (self.tangents == "auto" and device.type != "cpu")
        return "forward" if forward else "check"

    def guide(self, x: Tensor, x_hat: Tensor, s2: Tensor, batch: ObservationBatch) -> Tensor:
        r"""Return :math:`J_d^\top A^\top u`, with :math:`u` the solved MMPS system."""
        y_hat = batch.apply(x_hat)
        residual = torch.where(batch.mask, batch.values - y_hat.detach(), 0.0)
        solve = _SOLVERS[self.solver]
        # A linearised at x_hat once: adjoint products through the graph of y_hat, tangent
        # products A v without recomputing A(x_hat) (xappa.core.guidance.linearization).
        a = Linearization(batch.apply, batch.linear, x, x_hat, y_hat, mode=self._mode(x.device))

        # The solve needs no graph of its own: without no_grad, the JVP would record one
        # through the operator's parameters, which is slow and leaked memory call by call.
        if not self.tweedie_covariance:

            def matvec(u: Tensor) -> Tensor:
                at_u = a.adjoint(u, denoiser=False)
                return batch.variances * u + a.tangent(s2 / (1 + s2) * at_u)

            with torch.no_grad():
                u = solve(matvec, residual, self.iterations, psd_floor=batch.variances)
            self._tangent_mode = a.mode
            return a.adjoint(u, retain=False)

        calls = 0

        def matvec_aux(u: Tensor) -> tuple[Tensor, Tensor]:
            # (Sigma_y + A Sigma_x A^T) u and its by-product J_d^T A^T u. The solver calls this
            # exactly `iterations` times; the last call frees the graph of x_hat and y_hat.
            nonlocal calls
            calls += 1
            jt = a.adjoint(u, retain=calls < self.iterations)
            return batch.variances * u + a.tangent(s2 * jt), jt

        with torch.no_grad():
            _, score = solve(
                matvec_aux, residual, self.iterations, aux=True, psd_floor=batch.variances
            )
        self._tangent_mode = a.mode  # checked on the first call, then kept
        return score
