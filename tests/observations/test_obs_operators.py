"""Tests of the pure-torch observation operators (xappa.core.operators)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xappa.core.operators import (
    ConcatOperator,
    SparseOperator,
    bilinear_stencil,
    flat_index,
    nearest_stencil,
)

H, W = 19, 20  # 10 degrees in latitude, 18 in longitude


def grid(lat_order: str, convention: str) -> tuple[torch.Tensor, torch.Tensor]:
    lat = torch.linspace(-90.0, 90.0, H, dtype=torch.float64)
    lon = torch.arange(W, dtype=torch.float64) * 18.0
    if convention == "-180..180":
        lon = lon - 180.0
    return (lat.flip(0) if lat_order == "descending" else lat), lon


def frame(fn, lat: torch.Tensor, lon: torch.Tensor, channels: int = 2) -> torch.Tensor:
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([fn(la, lo) * (c + 1) for c in range(channels)])


def read(lat_pts, lon_pts, lat, lon, x, channel=1) -> torch.Tensor:
    cells, weights = bilinear_stencil(
        torch.tensor(lat_pts, dtype=torch.float64),
        torch.tensor(lon_pts, dtype=torch.float64),
        lat,
        lon,
    )
    index = flat_index(torch.full((len(lat_pts),), channel), cells, x.shape)
    return SparseOperator(index, x.shape, weights)(x)


@pytest.mark.parametrize("convention", ["0..360", "-180..180"])
@pytest.mark.parametrize("lat_order", ["ascending", "descending"])
def test_bilinear_exact_for_linear_field(lat_order: str, convention: str) -> None:
    lat, lon = grid(lat_order, convention)
    x = frame(lambda la, lo: 2.0 * la - 0.5 * lo + 3.0, lat, lon)
    rng = np.random.default_rng(0)
    plat = rng.uniform(-80, 80, 50)
    plon = rng.uniform(-150, 150, 50) if convention == "-180..180" else rng.uniform(10, 330, 50)
    got = read(plat, plon, lat, lon, x)
    want = 2 * (2.0 * plat - 0.5 * plon + 3.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("convention", ["0..360", "-180..180"])
@pytest.mark.parametrize("lat_order", ["ascending", "descending"])
def test_bilinear_across_longitude_seam(lat_order: str, convention: str) -> None:
    lat, lon = grid(lat_order, convention)
    # Linear in signed longitude near 0 degrees east, which is the seam of the 0..360 grid.
    x = frame(lambda la, lo: la + (torch.remainder(lo + 180.0, 360.0) - 180.0), lat, lon)
    got = read([10.0, 10.0, -20.0], [359.9, -0.05, 0.05], lat, lon, x, channel=0)
    np.testing.assert_allclose(got.numpy(), [10.0 - 0.1, 10.0 - 0.05, -20.0 + 0.05], atol=1e-9)


def test_stencil_weights_sum_to_one_and_clamp_poleward() -> None:
    lat = torch.linspace(85.0, -85.0, 18, dtype=torch.float64)  # no pole rows
    lon = torch.arange(36, dtype=torch.float64) * 10.0
    cells, weights = bilinear_stencil(
        torch.tensor([89.9, -90.0, 0.0]), torch.tensor([5.0, 5.0, 5.0]), lat, lon
    )
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.float64))
    assert (weights >= 0).all()
    rows = cells // 36
    assert set(rows[0][weights[0] > 0].tolist()) == {0}  # the 85N row
    assert set(rows[1][weights[1] > 0].tolist()) == {17}  # the 85S row


@pytest.mark.parametrize("lat_order", ["ascending", "descending"])
def test_nearest_picks_the_cell(lat_order: str) -> None:
    lat, lon = grid(lat_order, "0..360")
    plat = torch.tensor([31.0, -88.0, 0.0, 12.0])
    plon = torch.tensor([40.0, 359.0, -8.0, 187.0])
    cell = nearest_stencil(plat, plon, lat, lon)
    row, col = cell // W, cell % W
    lat_want = torch.tensor([30.0, -90.0, 0.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(lat[row], lat_want)
    torch.testing.assert_close(
        lon[col], torch.tensor([36.0, 0.0, 0.0, 180.0], dtype=torch.float64)
    )


def operators() -> tuple[SparseOperator, ConcatOperator]:
    shape = (3, 5, 6)
    gen = torch.Generator().manual_seed(0)
    gather = SparseOperator(torch.randint(0, 90, (7,), generator=gen), shape)
    weights = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    interp = SparseOperator(torch.randint(0, 90, (4, 4), generator=gen), shape, weights)
    return gather, ConcatOperator([gather, interp])


@pytest.mark.parametrize("which", [0, 1], ids=["gather", "concat"])
def test_adjoint_matches_forward(which: int, device: torch.device) -> None:
    op = operators()[which].to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 5, 6, generator=gen, dtype=torch.float64).to(device)
    u = torch.randn(2, 4, op.n_obs, generator=gen, dtype=torch.float64).to(device)
    lhs = (op(x) * u).sum()
    rhs = (x * op.adjoint(u)).sum()
    torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("which", [0, 1], ids=["gather", "concat"])
def test_operator_is_linear_under_jvp_and_vjp(which: int, device: torch.device) -> None:
    op = operators()[which].to(device)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 5, 6, generator=gen, dtype=torch.float64).to(device)
    v = torch.randn(3, 3, 5, 6, generator=gen, dtype=torch.float64).to(device)
    _, tangent = torch.func.jvp(op, (x,), (v,))
    torch.testing.assert_close(tangent, op(v))
    u = torch.randn(3, op.n_obs, generator=gen, dtype=torch.float64).to(device)
    _, vjp = torch.func.vjp(op, x)
    torch.testing.assert_close(vjp(u)[0], op.adjoint(u))


def test_operator_rejects_bad_shapes() -> None:
    with pytest.raises(RuntimeError, match="x must have shape"):
        operators()[0](torch.zeros(3, 5, 7))
    with pytest.raises(RuntimeError, match="index must lie in"):
        SparseOperator(torch.tensor([90]), (3, 5, 6))
