import math

import pytest
import torch
from torch import nn

from xappa.core.diffusion.denoiser import PreconditionedDenoiser, denoiser_loss, expand_sigma
from xappa.core.diffusion.gaussian import GaussianDenoiser
from xappa.core.diffusion.schedule import RectifiedSchedule

F64 = torch.float64


class Recorder(nn.Module):
    """A dummy backbone F(x, c_noise) = 2 x + 1 that records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def forward(self, x, c_noise, **kwargs):
        self.calls.append((x.clone(), c_noise.clone(), kwargs))
        return 2 * x + 1


@pytest.mark.parametrize("shape", [(3, 5), (3, 2, 4)], ids=["flat", "channels"])
def test_preconditioning_coefficients(shape):
    backbone = Recorder()
    denoiser = PreconditionedDenoiser(backbone)
    x = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    sigmas = [1e-3, 1.0, 37.0]
    out = denoiser(x, torch.tensor(sigmas, dtype=F64), date="2020-01-01")

    ((x_in, c_noise, kwargs),) = backbone.calls
    assert kwargs == {"date": "2020-01-01"}
    assert c_noise.shape == (3,)
    for b, s in enumerate(sigmas):
        c_skip = 1 / (s**2 + 1)
        c_out = s / math.sqrt(s**2 + 1)
        c_in = 1 / math.sqrt(s**2 + 1)
        assert float(c_noise[b]) == pytest.approx(10 * math.log(s), rel=1e-12)
        torch.testing.assert_close(x_in[b], c_in * x[b], rtol=1e-12, atol=0)
        expected = c_skip * x[b] + c_out * (2 * c_in * x[b] + 1)
        torch.testing.assert_close(out[b], expected, rtol=1e-12, atol=1e-15)


def test_scalar_sigma_broadcasts():
    denoiser = PreconditionedDenoiser(Recorder())
    x = torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(denoiser(x, 2.0), denoiser(x, torch.full((4,), 2.0, dtype=F64)))


@pytest.mark.parametrize(
    ("sigma", "shape", "expected"),
    [(1.5, (4, 3, 2), (4, 1, 1)), (torch.ones(4), (4, 3), (4, 1)), (torch.ones(4), (4,), (4,))],
    ids=["scalar", "vector", "flat-batch"],
)
def test_expand_sigma(sigma, shape, expected):
    out = expand_sigma(sigma, torch.zeros(shape))
    assert out.shape == expected


@pytest.mark.parametrize("penalty", [0.0, 0.5], ids=["no-penalty", "penalty"])
def test_loss_weighting_by_hand(penalty):
    schedule = RectifiedSchedule()
    x = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(1))

    def denoiser(x_t, sigma):
        return 0.5 * x_t  # a crude denoiser with a non-zero error at every noise level

    loss = denoiser_loss(
        denoiser,
        x,
        schedule,
        generator=torch.Generator().manual_seed(2),
        sigma_min_penalty=penalty,
    )

    gen = torch.Generator().manual_seed(2)
    t = torch.rand(6, dtype=F64, generator=gen)
    noise = torch.randn(6, 4, dtype=F64, generator=gen)
    total = 0.0
    for b in range(6):
        s = float(schedule(t[b]))
        x_t = x[b] + s * noise[b]
        err = float(((0.5 * x_t - x[b]) ** 2).mean())
        total += (1 / (s + penalty) ** 2 + 1) * err
    assert float(loss) == pytest.approx(total / 6, rel=1e-12)


def test_loss_is_differentiable():
    net = nn.Linear(3, 3).double()
    denoiser = PreconditionedDenoiser(lambda x, c: net(x))
    x = torch.randn(5, 3, dtype=F64)
    loss = denoiser_loss(
        denoiser, x, RectifiedSchedule(), generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert torch.isfinite(net.weight.grad).all()


def test_gaussian_denoiser_matches_formula():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(5, 5, dtype=F64, generator=gen)
    cov = a @ a.T + 0.1 * torch.eye(5, dtype=F64)
    mean = torch.randn(5, dtype=F64, generator=gen)
    denoiser = GaussianDenoiser(mean, cov)
    x = torch.randn(7, 5, dtype=F64, generator=gen)
    sigma = torch.full((7,), 0.7, dtype=F64)
    gain = cov @ torch.linalg.inv(cov + 0.49 * torch.eye(5, dtype=F64))
    expected = mean + (x - mean) @ gain.T
    torch.testing.assert_close(denoiser(x, sigma), expected)
    M, m = denoiser.affine(0.7)
    torch.testing.assert_close(x @ M.T + m, expected)
