r"""Observation operators: one family, with linearity a property of each operator.

An observation operator :math:`A` maps a batch of states ``(N, *shape)`` to values
``(N, M)``, written in differentiable torch operations so that guidance can take both reverse
mode (VJP) and forward mode (``torch.func.jvp``) products. Every operator of the family derives
from :class:`Operator` and declares ``linear``: a linear operator is its own derivative
(:math:`A' v = A v`), which guidance uses instead of differentiating it
(:func:`is_linear` reads it for any callable, and composites derive it from their parts).

=========================== ======= =======================================================
operator                    linear  reads
=========================== ======= =======================================================
:class:`MaskOperator`       yes     the entries of a state where a boolean mask is true
:class:`MatrixOperator`     yes     :math:`H \, \mathrm{vec}(x)` for a dense matrix :math:`H`
:class:`SparseOperator`     yes     weighted sums of entries of a pixel frame ``(C, H, W)``
:class:`ConcatOperator`     parts   the values of several sparse operators, concatenated
:class:`FramewiseOperator`  parts   a readout :math:`R` of a map :math:`f` (a decoder) of
                                    single frames: linear when :math:`f` and :math:`R` are
=========================== ======= =======================================================

Sparse operators read ``M`` values from each frame: value :math:`m` is
:math:`\sum_k w_{mk} \, x[c_m, i_{mk}, j_{mk}]`, with ``K`` entries per value (``K = 1`` for a
gather of ``(channel, cell)`` pairs, ``K = 4`` for bilinear interpolation). Frames are
flattened to ``C * H * W`` entries; :func:`flat_index` turns ``(channel, row, column)`` into
that index. They apply to any leading batch dimensions, ``(..., C, H, W) -> (..., M)``, and
have an adjoint ``(..., M) -> (..., C, H, W)``. They are built from ``index_select``, products
and sums only, so both reverse mode (VJP) and forward mode (``torch.func.jvp``) work.

:func:`bilinear_stencil` and :func:`nearest_stencil` find the cells and weights of points on a
rectilinear latitude/longitude grid: latitudes in either order, longitudes periodic (the seam
between the last and the first longitude is a cell like any other).
"""

from __future__ import annotations

__all__ = [
    "ConcatOperator",
    "Framewise",
    "FramewiseOperator",
    "MaskOperator",
    "MatrixOperator",
    "Operator",
    "SparseOperator",
    "bilinear_stencil",
    "flat_index",
    "is_linear",
    "nearest_stencil",
]

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

# Modules that only reshape, linear in any composition.
_RESHAPES = (nn.Flatten, nn.Unflatten, nn.Identity)


class Operator(nn.Module):
    r"""Base of the observation operators: :math:`A` maps states ``(N, *shape)`` to ``(N, M)``.

    A subclass writes ``forward`` and declares :attr:`linear`, as a class attribute or, for an
    operator built from parts, as a property derived from them.

    Attributes
    ----------
    linear : bool
        Whether :math:`A(a x + b x') = a A(x) + b A(x')`. Guidance then takes the tangent
        product :math:`A' v` as :math:`A v`, without differentiating :math:`A`. False unless
        declared.
    """

    linear: bool = False


def is_linear(operator: object) -> bool:
    """Return whether an operator is known to be linear.

    Parameters
    ----------
    operator : callable
        An :class:`Operator`, or any callable: one with a ``linear`` attribute that is
        ``True`` counts as linear, an :class:`torch.nn.Sequential` is linear when all its
        modules are, and :class:`torch.nn.Flatten`, :class:`torch.nn.Unflatten` and
        :class:`torch.nn.Identity` (reshapes) are linear.

    Returns
    -------
    bool
        True when the operator is known to be linear; False otherwise, which is always safe
        (guidance then differentiates it).
    """
    if isinstance(operator, nn.Sequential):
        return all(is_linear(m) for m in operator)
    if isinstance(operator, _RESHAPES):
        return True
    return getattr(operator, "linear", False) is True


def flat_index(channel: Tensor, cell: Tensor, shape: Sequence[int]) -> Tensor:
    """Return the index of ``(channel, cell)`` pairs in a flattened frame.

    Parameters
    ----------
    channel : Tensor
        Channel indices in ``[0, C)``, with shape ``(M,)`` or broadcastable to ``cell``.
    cell : Tensor
        Flat cell indices ``row * W + column`` in ``[0, H * W)``, with shape ``(M,)`` or
        ``(M, K)``.
    shape : sequence of int
        The frame shape ``(C, H, W)``.

    Returns
    -------
    Tensor
        ``channel * H * W + cell``, int64, with the broadcast shape.
    """
    _, h, w = shape
    channel = torch.as_tensor(channel, dtype=torch.long)
    cell = torch.as_tensor(cell, dtype=torch.long)
    if cell.ndim == 2 and channel.ndim == 1:
        channel = channel[:, None]
    return channel * (h * w) + cell


class MaskOperator(Operator):
    r"""Creates the operator selecting the entries of a state where a mask is true.

    Parameters
    ----------
    mask : Tensor
        A boolean mask with the shape ``shape`` of one state (one window), with ``M`` true
        entries.
    """

    linear = True

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.register_buffer("index", torch.nonzero(mask.flatten()).squeeze(1))

    def forward(self, x: Tensor) -> Tensor:
        """Select the masked entries.

        Parameters
        ----------
        x : Tensor
            States, with shape ``(N, *shape)``.

        Returns
        -------
        Tensor
            The selected values, with shape ``(N, M)`` in row-major order of ``mask``.
        """
        return x.flatten(1).index_select(1, self.index)


class MatrixOperator(Operator):
    r"""Creates the linear operator :math:`x \mapsto H \, \mathrm{vec}(x)`.

    Parameters
    ----------
    matrix : Tensor
        The matrix :math:`H`, with shape ``(M, D)`` where ``D`` is the size of one state.
    """

    linear = True

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the matrix.

        Parameters
        ----------
        x : Tensor
            States, with shape ``(N, *shape)`` and ``prod(shape) = D``.

        Returns
        -------
        Tensor
            The observations, with shape ``(N, M)``.
        """
        return x.flatten(1) @ self.matrix.T.to(x.dtype)


@runtime_checkable
class Framewise(Protocol):
    r"""What an operator declares so that windows sharing its frame map are applied together.

    The operator is :math:`A(x) = R(f(x_{:, k_1}), \dots, f(x_{:, k_m}))` on windows ``x``
    of shape ``(N, K, *frame)``. Operators whose ``inner`` maps are equal (``==``, e.g. the
    same decoder) are applied by :class:`~xappa.core.guidance.observation.ObservationBatch`
    with one call of ``inner`` for all their rows.

    Attributes
    ----------
    inner : callable or None
        :math:`f`, mapping frames ``(B, *frame)`` to images ``(B, *image)``, applied frame
        by frame (row ``b`` of the output depends on row ``b`` of the input only); None for
        the identity.
    frames : Tensor
        The window positions :math:`k_1, \dots, k_m` read, a long tensor of shape ``(m,)``.
    readout : callable
        :math:`R`, mapping images ``(N, m, *image)`` to ``(N, M)``.
    """

    inner: Callable[[Tensor], Tensor] | None
    frames: Tensor
    readout: Callable[[Tensor], Tensor]


class FramewiseOperator(Operator):
    r"""Creates the operator :math:`A(x) = R(f(x_{:, k_1}), \dots, f(x_{:, k_m}))`.

    A map :math:`f` of single frames (a decoder), shared by the operators of several windows,
    then this window's own readout :math:`R`: the :class:`Framewise` operators of a batch
    with the same ``inner`` are applied with one call of ``inner``.

    Parameters
    ----------
    inner : callable or None
        :math:`f`, mapping frames ``(B, *frame)`` to ``(B, *image)`` frame by frame; None for
        the identity. Pass the same object to every window that shares it.
    frames : sequence of int
        The window positions read, in the order the readout takes them.
    readout : callable
        :math:`R`, mapping ``(N, m, *image)`` (``m = len(frames)``) to ``(N, M)``.
    """

    def __init__(
        self,
        inner: Callable[[Tensor], Tensor] | None,
        frames: Sequence[int],
        readout: Callable[[Tensor], Tensor],
    ) -> None:
        super().__init__()
        if inner is not None and not callable(inner):
            msg = f"inner must be callable or None; found {type(inner).__name__}"
            raise TypeError(msg)
        if not callable(readout):
            msg = f"readout must be callable; found {type(readout).__name__}"
            raise TypeError(msg)
        index = torch.as_tensor(list(frames), dtype=torch.long)
        if index.ndim != 1 or index.numel() == 0 or bool((index < 0).any()):
            msg = f"frames must be a non-empty sequence of non-negative ints; found {list(frames)}"
            raise ValueError(msg)
        self.inner = inner
        self.readout = readout
        self.register_buffer("frames", index, persistent=False)

    @property
    def linear(self) -> bool:  # type: ignore[override]
        """Whether the operator is linear: its frame map (or identity) and readout are."""
        return (self.inner is None or is_linear(self.inner)) and is_linear(self.readout)

    def images(self, x: Tensor) -> Tensor:
        """Return :math:`f` of the frames read, with shape ``(N, m, *image)``.

        Parameters
        ----------
        x : Tensor
            Windows, with shape ``(N, K, *frame)``.

        Returns
        -------
        Tensor
            The images of the frames read.
        """
        picked = x.index_select(1, self.frames.to(x.device))
        if self.inner is None:
            return picked
        return self.inner(picked.flatten(0, 1)).unflatten(0, picked.shape[:2])

    def forward(self, x: Tensor) -> Tensor:
        """Apply the operator to windows ``x`` of shape ``(N, K, *frame)``; returns ``(N, M)``."""
        return self.readout(self.images(x))


class SparseOperator(Operator):
    r"""Creates a linear operator reading weighted sums of frame entries.

    .. math:: (A x)_m = \sum_{k < K} w_{mk} \, \mathrm{vec}(x)_{n_{mk}}

    Parameters
    ----------
    index : Tensor
        Flat indices :math:`n_{mk}` into a frame of ``C * H * W`` entries (see
        :func:`flat_index`), with shape ``(M,)`` (a gather) or ``(M, K)``.
    shape : sequence of int
        The frame shape ``(C, H, W)``.
    weight : Tensor, optional
        The weights :math:`w_{mk}`, with shape ``(M, K)``; ones when None (then ``index`` is
        usually ``(M,)``).
    """

    linear = True

    def __init__(self, index: Tensor, shape: Sequence[int], weight: Tensor | None = None) -> None:
        super().__init__()
        index = torch.as_tensor(index, dtype=torch.long)
        index = index[:, None] if index.ndim == 1 else index
        self.shape = tuple(int(s) for s in shape)
        size = self.shape[0] * self.shape[1] * self.shape[2]
        torch._check(index.ndim == 2, lambda: f"index must have shape (M, K); found {index.shape}")
        torch._check(
            index.numel() == 0 or (int(index.min()) >= 0 and int(index.max()) < size),
            lambda: f"index must lie in [0, {size}) for frames of shape {self.shape}",
        )
        if weight is not None:
            weight = torch.as_tensor(weight)
            torch._check(
                weight.shape == index.shape,
                lambda: f"weight must have shape {tuple(index.shape)}; found {weight.shape}",
            )
        self.register_buffer("index", index)
        self.register_buffer("weight", weight)

    @property
    def n_obs(self) -> int:
        """The number ``M`` of values read from each frame."""
        return self.index.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Read the values.

        Parameters
        ----------
        x : Tensor
            Frames, with shape ``(..., C, H, W)``.

        Returns
        -------
        Tensor
            The values, with shape ``(..., M)``.
        """
        torch._check(
            tuple(x.shape[-3:]) == self.shape,
            lambda: (
                f"x must have shape (..., {', '.join(map(str, self.shape))}); found "
                f"{tuple(x.shape)}"
            ),
        )
        m, k = self.index.shape
        values = x.flatten(-3).index_select(-1, self.index.flatten())
        if self.weight is None:
            return values if k == 1 else values.unflatten(-1, (m, k)).sum(-1)
        return (values.unflatten(-1, (m, k)) * self.weight.to(values)).sum(-1)

    def adjoint(self, u: Tensor) -> Tensor:
        r"""Apply the adjoint :math:`A^\top`, spreading values back onto frames.

        Parameters
        ----------
        u : Tensor
            Values, with shape ``(..., M)``.

        Returns
        -------
        Tensor
            Frames, with shape ``(..., C, H, W)``; entries read by no value are zero.
        """
        m, k = self.index.shape
        torch._check(u.shape[-1] == m, lambda: f"u must have shape (..., {m}); found {u.shape}")
        spread = u[..., None].expand(*u.shape, k)
        if self.weight is not None:
            spread = spread * self.weight.to(u)
        size = self.shape[0] * self.shape[1] * self.shape[2]
        out = u.new_zeros(*u.shape[:-1], size)
        out = out.index_add(-1, self.index.flatten(), spread.flatten(-2))
        return out.unflatten(-1, self.shape)


class ConcatOperator(Operator):
    """Creates the operator concatenating the values of several operators on the same frames.

    Parameters
    ----------
    parts : sequence of SparseOperator
        The operators, all on frames of the same shape ``(C, H, W)``; their values are
        concatenated in order.
    """

    def __init__(self, parts: Sequence[SparseOperator]) -> None:
        super().__init__()
        torch._check(len(parts) > 0, lambda: "parts must hold at least one operator; found 0")
        shapes = {p.shape for p in parts}
        torch._check(len(shapes) == 1, lambda: f"parts must share a frame shape; found {shapes}")
        self.parts = nn.ModuleList(parts)
        self.shape = parts[0].shape

    @property
    def linear(self) -> bool:  # type: ignore[override]
        """Whether the operator is linear: all its parts are."""
        return all(is_linear(p) for p in self.parts)

    @property
    def n_obs(self) -> int:
        """The total number ``M`` of values read from each frame."""
        return sum(p.n_obs for p in self.parts)

    def forward(self, x: Tensor) -> Tensor:
        """Read the values of every part.

        Parameters
        ----------
        x : Tensor
            Frames, with shape ``(..., C, H, W)``.

        Returns
        -------
        Tensor
            The concatenated values, with shape ``(..., M)``.
        """
        return torch.cat([p(x) for p in self.parts], dim=-1)

    def adjoint(self, u: Tensor) -> Tensor:
        """Apply the adjoint, the sum of the parts' adjoints.

        Parameters
        ----------
        u : Tensor
            Values, with shape ``(..., M)``.

        Returns
        -------
        Tensor
            Frames, with shape ``(..., C, H, W)``.
        """
        sizes = [p.n_obs for p in self.parts]
        chunks = u.split(sizes, dim=-1)
        return sum(p.adjoint(c) for p, c in zip(self.parts, chunks, strict=True))


def _latitude_cells(lat: Tensor, grid_lat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows below and above each latitude and the fraction between them (clamped to [0, 1])."""
    ascending, order = torch.sort(grid_lat)
    i = torch.searchsorted(ascending, lat.contiguous(), right=True) - 1
    i = i.clamp(0, len(ascending) - 2)
    lo, hi = ascending[i], ascending[i + 1]
    s = ((lat - lo) / (hi - lo)).clamp(0.0, 1.0)
    return order[i], order[i + 1], s


def _longitude_cells(lon: Tensor, grid_lon: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Columns west and east of each longitude (periodic) and the fraction between them."""
    start = grid_lon[0]
    lon = start + torch.remainder(lon - start, 360.0)
    extended = torch.cat([grid_lon, start[None] + 360.0])
    j = (torch.searchsorted(extended, lon.contiguous(), right=True) - 1).clamp(
        0, len(grid_lon) - 1
    )
    t = (lon - extended[j]) / (extended[j + 1] - extended[j])
    return j, (j + 1) % len(grid_lon), t.clamp(0.0, 1.0)


def _check_points(lat: Tensor, lon: Tensor, grid_lat: Tensor, grid_lon: Tensor) -> None:
    torch._check(lat.shape == lon.shape and lat.ndim == 1, lambda: "lat, lon must have shape (M,)")
    torch._check(len(grid_lat) > 1 and len(grid_lon) > 1, lambda: "the grid needs 2 x 2 cells")
    torch._check(bool((grid_lon.diff() > 0).all()), lambda: "grid_lon must be increasing")
    torch._check(
        float(grid_lon[-1] - grid_lon[0]) < 360.0, lambda: "grid_lon must span less than 360"
    )


def bilinear_stencil(
    lat: Tensor, lon: Tensor, grid_lat: Tensor, grid_lon: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Return the 4 cells around each point and their bilinear weights.

    Interpolation is bilinear in latitude and longitude (degrees). Longitude is periodic:
    points east of the last grid longitude interpolate between the last and the first column.
    Points poleward of the outermost grid latitude take that row's values (no extrapolation).
    The weights are non-negative and sum to one.

    Parameters
    ----------
    lat : Tensor
        Point latitudes in degrees north, with shape ``(M,)``.
    lon : Tensor
        Point longitudes in degrees east, any convention, with shape ``(M,)``.
    grid_lat : Tensor
        The grid latitudes, strictly monotonic in either order, with shape ``(H,)``.
    grid_lon : Tensor
        The grid longitudes, strictly increasing over less than 360 degrees, with shape
        ``(W,)``.

    Returns
    -------
    tuple of Tensor
        Flat cell indices ``row * W + column`` (int64) and weights (float64), each with shape
        ``(M, 4)``.
    """
    lat, lon = lat.double(), lon.double()
    grid_lat, grid_lon = grid_lat.double(), grid_lon.double()
    _check_points(lat, lon, grid_lat, grid_lon)
    i0, i1, s = _latitude_cells(lat, grid_lat)
    j0, j1, t = _longitude_cells(lon, grid_lon)
    w = len(grid_lon)
    cells = torch.stack([i0 * w + j0, i0 * w + j1, i1 * w + j0, i1 * w + j1], dim=-1)
    weights = torch.stack([(1 - s) * (1 - t), (1 - s) * t, s * (1 - t), s * t], dim=-1)
    return cells, weights


def nearest_stencil(lat: Tensor, lon: Tensor, grid_lat: Tensor, grid_lon: Tensor) -> Tensor:
    """Return the cell whose latitude and longitude are nearest to each point's.

    The nearest latitude and the nearest longitude (periodic) are chosen separately; exact
    midpoints go to the northern or eastern neighbour in ascending coordinates.

    Parameters
    ----------
    lat : Tensor
        Point latitudes in degrees north, with shape ``(M,)``.
    lon : Tensor
        Point longitudes in degrees east, any convention, with shape ``(M,)``.
    grid_lat : Tensor
        The grid latitudes, strictly monotonic in either order, with shape ``(H,)``.
    grid_lon : Tensor
        The grid longitudes, strictly increasing over less than 360 degrees, with shape
        ``(W,)``.

    Returns
    -------
    Tensor
        Flat cell indices ``row * W + column`` (int64), with shape ``(M,)``.
    """
    lat, lon = lat.double(), lon.double()
    grid_lat, grid_lon = grid_lat.double(), grid_lon.double()
    _check_points(lat, lon, grid_lat, grid_lon)
    i0, i1, s = _latitude_cells(lat, grid_lat)
    j0, j1, t = _longitude_cells(lon, grid_lon)
    row = torch.where(s < 0.5, i0, i1)
    col = torch.where(t < 0.5, j0, j1)
    return row * len(grid_lon) + col
