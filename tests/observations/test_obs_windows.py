"""Window operators of an ObservationSet: all frames read by one operator, one decoder call
for all windows of a batch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from xappa.core.guidance.observation import Framewise, ObservationBatch
from xappa.core.operators import ConcatOperator, SparseOperator, bilinear_stencil, flat_index
from xappa.observations import prepare_observations, sample_gridded, sample_points, stations
from xappa.observations.operator import stack_operators
from xappa.state.spec import era5_spec
from xappa.state.stats import compute_stats
from xappa.testing import mock_era5

F64 = torch.float64
SHAPE = (2, 5, 6)


def _operators() -> list[nn.Module]:
    g = torch.Generator().manual_seed(0)
    lat = torch.linspace(80.0, -80.0, SHAPE[1], dtype=F64)
    lon = torch.arange(SHAPE[2], dtype=F64) * 60.0
    cells, weights = bilinear_stencil(
        torch.tensor([10.0, -33.0, 71.0], dtype=F64),
        torch.tensor([5.0, 350.0, 181.0], dtype=F64),
        lat,
        lon,
    )
    points = SparseOperator(
        flat_index(torch.tensor([1, 0, 1]), cells, SHAPE), SHAPE, weights.float()
    )
    grid = SparseOperator(torch.randperm(60, generator=g)[:7], SHAPE)
    return [
        grid,
        ConcatOperator([grid, points]),
        points,
        SparseOperator(torch.tensor([3, 59]), SHAPE),
    ]


@pytest.mark.parametrize("which", [[0, 3], [1, 2, 0], [2]], ids=["gathers", "mixed", "points"])
def test_stacked_operator_reads_each_frame_like_its_own(which: list[int]) -> None:
    ops = [_operators()[i] for i in which]
    stacked = stack_operators(ops)
    x = torch.randn(4, len(ops), *SHAPE)
    want = torch.cat([op(x[:, i]) for i, op in enumerate(ops)], dim=-1)
    got = stacked(x.flatten(1, 2))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    u = torch.randn_like(want)
    want_adj = torch.stack(
        [op.adjoint(c) for op, c in zip(ops, u.split([o.n_obs for o in ops], -1), strict=True)], 1
    )
    torch.testing.assert_close(
        stacked.adjoint(u).unflatten(1, (len(ops), SHAPE[0])), want_adj, rtol=1e-6, atol=1e-6
    )


def test_stack_operators_rejects_other_operators() -> None:
    with pytest.raises(
        TypeError, match="operator must be a SparseOperator or ConcatOperator; found Linear"
    ):
        stack_operators([nn.Linear(2, 2)])


class Decode(nn.Module):
    """A non-linear 'decoder' of latent frames (B, 1, 3, 4) to pixel frames (B, C, 6, 8)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(12, channels * 48, dtype=F64)
        self.channels = channels
        self.calls = 0

    def forward(self, z: Tensor) -> Tensor:
        self.calls += 1
        return torch.tanh(self.lin(z.flatten(1))).unflatten(1, (self.channels, 6, 8))


def test_windows_share_one_decoder_call() -> None:
    """The windows of an ObservationSet share the decoder: one call per batch apply, with the
    values, VJP and JVP of each window's own operator."""
    variables = ["2m_temperature", "mean_sea_level_pressure"]
    spec = era5_spec(nlat=6, nlon=8, surface_variables=variables, level_variables=())
    truth = mock_era5(variables=variables, nlat=6, nlon=8, ntime=5)
    points = sample_points(truth, stations([10.0, -40.0], [359.0, 100.0]), error_std=1.0, seed=0)
    swath = sample_gridded(truth.isel(time=[1, 3]), truth.latitude > 0, error_std=1.0)
    o = prepare_observations(
        [points, swath], spec, compute_stats(truth, spec), times=truth.time.values, dtype=F64
    )
    decode = Decode(spec.n_channels)
    view = o.frames(decode=decode)
    windows = [view.window(list(range(w * 2, w * 2 + 3))) for w in range(2)]  # frames 0-2, 2-4
    assert all(isinstance(w.operator, Framewise) for w in windows)
    index = torch.tensor([1, 0, 1])
    batch = ObservationBatch(windows, 3, index, dtype=F64)
    x = torch.randn(3, 3, 1, 3, 4, dtype=F64, requires_grad=True)
    calls = decode.calls
    y = batch.apply(x)
    assert decode.calls == calls + 1
    for row, w in enumerate(index.tolist()):
        ref = windows[w].operator(x[row : row + 1])[0]
        torch.testing.assert_close(y[row, : len(ref)], ref, rtol=0, atol=1e-13)
    u = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, u * batch.mask)
    for row, w in enumerate(index.tolist()):
        xr = x[row : row + 1]
        (ref,) = torch.autograd.grad(
            windows[w].operator(xr), xr, u[row : row + 1, : len(windows[w])]
        )
        torch.testing.assert_close(grad[row : row + 1], ref, rtol=0, atol=1e-13)
