"""Mixed-precision sampling: networks under autocast, the posterior still right."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from xappa.core.da import SamplingConfig, smooth
from xappa.core.da.precision import Autocast, autocast_dtype, with_precision
from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.guidance.observation import FramewiseOperator, MaskOperator, Observation

F64 = torch.float64
K, N, IMAGE = 2, 4, 6


class Window(nn.Module):
    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        super().__init__()
        self.exact = GaussianDenoiser(mean, cov)

    def forward(self, x: Tensor, sigma: Tensor, **kwargs) -> Tensor:
        return self.exact(x.flatten(1), sigma).reshape(x.shape)


class Decoded:
    """Every frame decoded by a linear frame map, then some decoded values read."""

    def __init__(self, decoder: nn.Module, mask: Tensor, values: Tensor) -> None:
        self.decoder, self.mask, self.values = decoder, mask, values

    def window(self, frames):
        op = FramewiseOperator(self.decoder, range(len(frames)), MaskOperator(self.mask))
        return Observation(op, self.values, 1e-2)


def test_with_precision_wraps_the_networks_once():
    decoder = nn.Linear(N, IMAGE)
    mask = torch.ones(K, IMAGE, dtype=torch.bool)
    shared = [Decoded(decoder, mask, torch.zeros(K * IMAGE)).window([0, 1]) for _ in range(2)]
    plain = Observation(MaskOperator(torch.ones(K, N, dtype=torch.bool)), torch.zeros(K * N), 1.0)
    prior = nn.Identity()
    d, obs = with_precision(prior, [*shared, None, plain], "bfloat16")
    assert isinstance(d, Autocast) and d.network is prior and d.dtype == torch.bfloat16
    assert obs[0].operator.inner is obs[1].operator.inner  # the windows still share the map
    assert obs[0].operator.inner.network is decoder
    assert obs[2] is None and obs[3] is plain
    assert with_precision(prior, shared, "float32") == (prior, shared)
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("half")


def test_autocast_computes_low_and_returns_the_input_dtype():
    lin = nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    out = Autocast(lin, torch.bfloat16)(x)
    assert out.dtype == torch.float32
    assert not torch.equal(out, lin(x))
    torch.testing.assert_close(out, lin(x), rtol=2e-2, atol=2e-2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.dtype == torch.float32


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_posterior_of_a_decoded_gaussian_under_autocast(precision):
    """An exact Gaussian prior observed through a linear frame map: the draws under autocast
    land on the exact posterior as the float32 draws do, and differ from them."""
    g = torch.Generator().manual_seed(4)
    d = K * N
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    cov = q * torch.logspace(-1.5, 0.5, d, dtype=F64) @ q.T
    mean = torch.randn(d, generator=g, dtype=F64)
    decoder = nn.Linear(N, IMAGE, bias=False).requires_grad_(False)
    decoder.weight.copy_(torch.randn(IMAGE, N, generator=g) / N**0.5)
    mask = torch.rand(K, IMAGE, generator=g) < 0.5
    h = torch.block_diag(*[decoder.weight.double()] * K)[mask.flatten()]
    m = h.shape[0]
    y = h @ mean + 0.5 * torch.randn(m, generator=g, dtype=F64)
    gain = cov @ h.T @ torch.linalg.inv(h @ cov @ h.T + 1e-2 * torch.eye(m, dtype=F64))
    post_mean, post_cov = mean + gain @ (y - h @ mean), cov - gain @ h @ cov
    prior, obs = Window(mean.float(), cov.float()), Decoded(decoder, mask, y.float())
    members = 2048
    draws = {}
    for p in ("float32", precision):
        config = SamplingConfig(
            sampler="lms", steps=48, schedule="loglinear", iterations=m, precision=p
        )
        draws[p] = smooth(
            prior, obs, members=members, length=K, frame=(N,), window=K, stride=K,
            config=config, seed=0,
        ).flatten(1).double()  # fmt: skip
    x = draws[precision]
    sd = post_cov.diagonal().sqrt()
    assert ((x.mean(0) - post_mean).abs() / sd).max() < 4 / members**0.5 + 0.05
    ratio = x.var(0) / post_cov.diagonal()
    assert ratio.min() > 0.88 and ratio.max() < 1.12, ratio
    gap = (x - draws["float32"]).abs().max()
    assert 0 < gap < 0.5 * sd.min()  # autocast applied; draws a fraction of a sd apart
