"""Operators sharing a frame map: one call of the map for all windows of a batch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from xappa.core.guidance.linearization import Linearization, jvp
from xappa.core.guidance.mmps import MMPSDenoiser
from xappa.core.guidance.observation import (
    Framewise,
    FramewiseOperator,
    MaskOperator,
    Observation,
    ObservationBatch,
)

F64 = torch.float64
K, FRAME, IMAGE = 3, (2, 3), (4, 5)


class Decoder(nn.Module):
    """A non-linear map of frames (B, 2, 3) -> (B, 4, 5) that counts its calls."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(6, 20, dtype=F64)
        self.calls = 0

    def forward(self, z: Tensor) -> Tensor:
        self.calls += 1
        return torch.tanh(self.lin(z.flatten(1))).unflatten(1, IMAGE)


class Opaque(nn.Module):
    """The same map as ``op``, without the Framewise attributes: applied window by window."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


def windows(decoders: list[nn.Module], opaque: bool = False) -> list[Observation | None]:
    """Five windows (one unobserved), each reading its own frames through one of ``decoders``."""
    g = torch.Generator().manual_seed(3)
    out: list[Observation | None] = []
    for w, frames in enumerate([[0, 2], [1], None, [0, 1, 2], [2, 0]]):
        if frames is None:
            out.append(None)
            continue
        mask = torch.rand(len(frames), *IMAGE, generator=g) < 0.4
        mask[0, 0, 0] = True
        op = FramewiseOperator(decoders[w % len(decoders)], frames, MaskOperator(mask))
        values = torch.randn(int(mask.sum()), generator=g, dtype=F64)
        out.append(Observation(Opaque(op) if opaque else op, values, 0.1))
    return out


INDEX = torch.tensor([4, 0, 3, 2, 1, 0, 4])  # out of order, repeated, one unobserved window


@pytest.mark.parametrize("n_decoders", [1, 2], ids=["one-decoder", "two-decoders"])
def test_shared_map_is_called_once_and_equals_window_by_window(n_decoders):
    """Values, VJP and JVP of the grouped apply equal one operator call per window; each
    decoder runs once per apply instead of once per window."""
    decoders = [Decoder(seed) for seed in range(n_decoders)]
    obs = windows(decoders)
    grouped = ObservationBatch(obs, 7, INDEX, dtype=F64)
    by_window = ObservationBatch(windows(decoders, opaque=True), 7, INDEX, dtype=F64)
    assert isinstance(obs[0].operator, Framewise)
    assert torch.equal(grouped.mask, by_window.mask)
    x = torch.randn(7, K, *FRAME, dtype=F64, requires_grad=True)
    before = [d.calls for d in decoders]
    y = grouped.apply(x)
    assert [d.calls - b for d, b in zip(decoders, before, strict=True)] == [1] * n_decoders
    y_ref = by_window.apply(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-14)
    assert not y[~grouped.mask].any()
    u = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, x, u)
    (g_ref,) = torch.autograd.grad(y_ref, x, u)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-14)
    v = torch.randn_like(x)
    point = x.detach()
    torch.testing.assert_close(
        jvp(grouped.apply, point, v), jvp(by_window.apply, point, v), rtol=0, atol=1e-14
    )


def test_mixed_operators_and_identity_map():
    """Framewise operators without a map (None) group together; other operators stay apart."""
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(2, *FRAME, generator=g) < 0.5 for _ in range(3)]
    for m in masks:
        m[0, 0, 0] = True
    ops = [
        FramewiseOperator(None, [0, 2], MaskOperator(masks[0])),
        FramewiseOperator(None, [1, 0], MaskOperator(masks[1])),
        Opaque(FramewiseOperator(None, [2, 1], MaskOperator(masks[2]))),
    ]
    obs = [
        Observation(op, torch.randn(int(m.sum()), dtype=F64), 1.0)
        for op, m in zip(ops, masks, strict=True)
    ]
    batch = ObservationBatch(obs, 4, torch.tensor([2, 1, 0, 1]), dtype=F64)
    x = torch.randn(4, K, *FRAME, dtype=F64)
    y = batch.apply(x)
    for row, w in enumerate([2, 1, 0, 1]):
        ref = ops[w](x[row : row + 1])[0]
        torch.testing.assert_close(y[row, : len(ref)], ref, rtol=0, atol=0)


def test_frames_outside_the_window_are_refused():
    decoders = [Decoder(0)]
    batch = ObservationBatch(windows(decoders), 7, INDEX, dtype=F64)
    with pytest.raises(RuntimeError, match=r"x must have shape \(N, K > 2, ...\)"):
        batch.apply(torch.zeros(7, 2, *FRAME, dtype=F64))  # windows of 2 frames: frame 2 is out


def test_framewise_operator_errors():
    with pytest.raises(ValueError, match="frames must be a non-empty sequence"):
        FramewiseOperator(None, [], MaskOperator(torch.ones(1, 2, dtype=torch.bool)))
    with pytest.raises(TypeError, match="readout must be callable; found int"):
        FramewiseOperator(None, [0], 3)
    with pytest.raises(TypeError, match="inner must be callable or None; found str"):
        FramewiseOperator("decoder", [0], MaskOperator(torch.ones(1, 2, dtype=torch.bool)))


class TanhPrior(nn.Module):
    """A non-linear stand-in for a denoiser of windows ``(N, K, *FRAME)``."""

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        return torch.tanh(x) / (1 + sigma[:, None, None, None] ** 2)


class OnceTanh(torch.autograd.Function):
    """tanh with a first derivative only (reverse and forward mode), as some fused kernels."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y**2)

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return tangent * (1 - y**2)


@pytest.mark.parametrize("kind", ["decoder", "once-differentiable"])
def test_linearization_products_equal_autograd_and_jvp(kind):
    """Adjoint products equal autograd's VJP, tangent products equal torch.func.jvp, for an
    operator with second derivatives and one without (fallback to forward mode)."""
    decoder = Decoder(5)

    def op(x: Tensor) -> Tensor:
        y = decoder(x.flatten(0, 1)).flatten(1)
        return y if kind == "decoder" else OnceTanh.apply(3 * y)

    x = torch.randn(4, 1, *FRAME, dtype=F64, requires_grad=True)
    x_hat = torch.sin(x) * 2
    y_hat = op(x_hat)
    lin = Linearization(op, False, x, x_hat, y_hat)
    tol = {"rtol": 0, "atol": 1e-13}
    for _ in range(2):  # the first adjoint product linearises; later ones reuse the graph
        u = torch.randn_like(y_hat)
        (want,) = torch.autograd.grad(y_hat, x, u, retain_graph=True)
        torch.testing.assert_close(lin.adjoint(u), want, **tol)
        v = torch.randn_like(x)
        torch.testing.assert_close(lin.tangent(v), jvp(op, x_hat.detach(), v), **tol)
    (at_u,) = torch.autograd.grad(y_hat, x_hat, u, retain_graph=True)
    torch.testing.assert_close(lin.adjoint(u, denoiser=False), at_u, **tol)
    assert lin.mode == ("forward" if kind == "once-differentiable" else "reverse")


def test_linearization_tangent_before_any_adjoint_and_linear_operator():
    decoder = Decoder(2)
    x = torch.randn(3, 1, *FRAME, dtype=F64, requires_grad=True)
    x_hat = x * 1.5

    def op(z: Tensor) -> Tensor:
        return decoder(z.flatten(0, 1)).flatten(1)

    lin = Linearization(op, False, x, x_hat, op(x_hat))
    v = torch.randn_like(x)
    torch.testing.assert_close(lin.tangent(v), jvp(op, x_hat.detach(), v), rtol=0, atol=1e-13)
    mask = MaskOperator(torch.rand(1, *FRAME) < 0.5)
    linear = Linearization(mask, True, x, x_hat, mask(x_hat))
    assert torch.equal(linear.tangent(v), mask(v))


@pytest.mark.parametrize("tweedie", [True, False], ids=["tweedie", "identity-covariance"])
def test_mmps_grouped_decoder_equals_window_by_window(tweedie):
    """MMPS with windows sharing a decoder (one call per apply) gives the output of the same
    operators applied window by window."""

    decoder = Decoder(4)
    x_t = torch.randn(7, K, *FRAME, dtype=F64, generator=torch.Generator().manual_seed(6))
    sigma = torch.full((7,), 0.8, dtype=F64)
    outs = [
        MMPSDenoiser(
            TanhPrior(), windows([decoder], opaque), iterations=3, tweedie_covariance=tweedie
        )(x_t, sigma, window_index=INDEX)
        for opaque in (False, True)
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-12)
    assert not torch.allclose(outs[0], TanhPrior()(x_t, sigma))


def test_mmps_checks_reverse_mode_once_and_falls_back():
    """An operator without second derivatives gives the MMPS output of its twice
    differentiable twin: the first call checks reverse against forward mode."""

    class Prior(nn.Module):
        def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
            return x / (1 + sigma[:, None, None, None] ** 2)

    decoder = Decoder(8)

    def make(once: bool) -> Observation:
        def op(x: Tensor) -> Tensor:
            y = 2 * decoder(x.flatten(0, 1)).flatten(1)
            # Reverse mode misses the once-differentiable part silently: w reaches the sum
            # through the other part, so only the check against forward mode finds it.
            return torch.tanh(y) + (OnceTanh.apply(y) if once else torch.tanh(y))

        values = torch.rand(20, dtype=F64, generator=torch.Generator().manual_seed(0))
        return Observation(op, values, 0.05)

    x_t = torch.randn(3, 1, *FRAME, dtype=F64, generator=torch.Generator().manual_seed(2))
    sigma = torch.full((3,), 1.3, dtype=F64)
    guided = [MMPSDenoiser(Prior(), make(once), iterations=2) for once in (False, True)]
    for _ in range(2):
        outs = [g(x_t, sigma) for g in guided]
        torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)
    assert [g._tangent_mode for g in guided] == ["reverse", "forward"]


def test_mmps_tangents_forward_equals_reverse_and_errors():
    decoder = Decoder(9)
    x_t = torch.randn(7, K, *FRAME, dtype=F64, generator=torch.Generator().manual_seed(1))
    sigma = torch.full((7,), 0.6, dtype=F64)
    guided = {
        t: MMPSDenoiser(TanhPrior(), windows([decoder]), iterations=3, tangents=t)
        for t in ("auto", "reverse", "forward")
    }
    outs = {t: g(x_t, sigma, window_index=INDEX) for t, g in guided.items()}
    torch.testing.assert_close(outs["reverse"], outs["forward"], rtol=0, atol=1e-12)
    assert torch.equal(outs["auto"], outs["reverse"])  # the CPU default
    assert [g._tangent_mode for g in guided.values()] == ["reverse", "reverse", "forward"]
    with pytest.raises(ValueError, match="tangents must be one of"):
        MMPSDenoiser(TanhPrior(), windows([decoder]), tangents="double")
