"""Reductions over axes: sum, mean, max, min.

sum and mean spread the upstream gradient evenly over the reduced elements; max and min route
it to the one element the forward picked (the first extreme along the reduced axes).
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous


def normalize_axes(name: str, axis, ndim: int) -> tuple:
    """`axis` (None, int or sequence, negatives allowed) as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in axes:
        # A 0-d tensor accepts axis 0 and -1 as PyTorch does (it reduces nothing).
        if not isinstance(ax, (int, np.integer)) or not -max(ndim, 1) <= ax < max(ndim, 1):
            raise ValueError(f"{name}: axis {ax!r} is out of range for a {ndim}-d tensor")
        out.append(int(ax) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def _expand(g: np.ndarray, in_shape: tuple, axes: tuple, keepdims: bool) -> np.ndarray:
    """Reshape a reduced gradient so it broadcasts against the input."""
    if not keepdims:
        shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
        g = g.reshape(shape)
    return g


class SumOp(Function):
    name = "sum"

    @staticmethod
    def forward(ctx: Context, a, *, axis=None, keepdims=False) -> np.ndarray:
        ctx.axes = normalize_axes("sum", axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.in_shape = a.shape
        return np.asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _expand(g, ctx.in_shape, ctx.axes, ctx.keepdims)
        return contiguous(np.broadcast_to(g, ctx.in_shape))


class MeanOp(Function):
    name = "mean"

    @staticmethod
    def forward(ctx: Context, a, *, axis=None, keepdims=False) -> np.ndarray:
        ctx.axes = normalize_axes("mean", axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.in_shape = a.shape
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if ctx.axes else 1
        if ctx.count == 0:  # PyTorch: the mean of nothing is NaN, without a warning
            shape = np.sum(a, axis=ctx.axes, keepdims=keepdims).shape
            return np.full(shape, np.nan, a.dtype)
        return np.asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        if ctx.count == 0:
            return np.zeros(ctx.in_shape, g.dtype)
        g = _expand(g, ctx.in_shape, ctx.axes, ctx.keepdims) / g.dtype.type(ctx.count)
        return contiguous(np.broadcast_to(g, ctx.in_shape))


def _argextreme(a: np.ndarray, axes: tuple, pick) -> tuple[np.ndarray, tuple]:
    """Index of the first extreme of `a` over `axes` (flattened), plus the transpose used."""
    kept = [i for i in range(a.ndim) if i not in axes]
    perm = tuple(kept) + axes
    moved = a.transpose(perm).reshape(
        [a.shape[i] for i in kept] + [int(np.prod([a.shape[i] for i in axes]))]
    )
    return pick(moved, axis=-1), perm


class _ExtremeOp(Function):
    """max or min over axes; subclasses name the reduction and its arg-function.

    split_ties: the gradient is shared equally by every element equal to the extreme (a NaN
    extreme: by the NaNs), as PyTorch's max() / amax() give it; otherwise it goes to the
    first one, the element max(dim)'s index names."""

    reduce = staticmethod(np.max)
    pick = staticmethod(np.argmax)

    @classmethod
    def forward(cls, ctx: Context, a, *, axis=None, keepdims=False,
                split_ties=False) -> np.ndarray:
        ctx.axes = normalize_axes(cls.name, axis, a.ndim)
        if any(a.shape[i] == 0 for i in ctx.axes) or (a.size == 0 and not ctx.axes):
            # PyTorch too: an empty reduction has no max; empty kept dimensions are fine.
            raise ValueError(
                f"{cls.name}: cannot reduce over an empty dimension of a tensor of shape "
                f"{a.shape} (dims {ctx.axes})"
            )
        ctx.keepdims = keepdims
        ctx.in_shape = a.shape
        out = np.asarray(cls.reduce(a, axis=ctx.axes, keepdims=keepdims))
        ctx.split_ties = split_ties
        ctx.save_for_backward(a, out if split_ties else None)
        return out

    @classmethod
    def backward(cls, ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        if ctx.split_ties:
            extreme = _expand(out, a.shape, ctx.axes, ctx.keepdims)
            ties = (a == extreme) | (np.isnan(a) & np.isnan(extreme))
            share = _expand(g, a.shape, ctx.axes, ctx.keepdims) / ties.sum(
                axis=ctx.axes, keepdims=True)
            return np.where(ties, share, 0).astype(g.dtype)
        index, perm = _argextreme(a, ctx.axes, cls.pick)
        kept_shape = index.shape
        moved = np.zeros(kept_shape + (int(np.prod([a.shape[i] for i in ctx.axes])),), g.dtype)
        np.put_along_axis(moved, index[..., None], g.reshape(kept_shape)[..., None], axis=-1)
        grad = moved.reshape([a.shape[i] for i in perm]).transpose(np.argsort(perm))
        return contiguous(grad)


class MaxOp(_ExtremeOp):
    name = "max"
    reduce = staticmethod(np.max)
    pick = staticmethod(np.argmax)


class MinOp(_ExtremeOp):
    name = "min"
    reduce = staticmethod(np.min)
    pick = staticmethod(np.argmin)


class PNormOp(Function):
    """(sum |a|^p)^(1/p) over axes, for a finite p other than 1 and 2 (those compose from
    sum and sqrt); p = 0 counts the nonzeros (gradient 0). The gradient
    sign(a) |a|^(p-1) / norm^(p-1) is taken as 0 where a or the norm is 0, as PyTorch's norm
    backward does."""

    name = "pnorm"

    @staticmethod
    def forward(ctx: Context, a, *, p: float, axis=None, keepdims=False) -> np.ndarray:
        ctx.axes = normalize_axes("norm", axis, a.ndim)
        ctx.keepdims, ctx.p = keepdims, float(p)
        if ctx.p == 0:
            out = (a != 0).sum(axis=ctx.axes, keepdims=True).astype(a.dtype)
        else:
            with np.errstate(divide="ignore"):
                total = (np.abs(a) ** ctx.p).sum(axis=ctx.axes, keepdims=True)
                out = (total ** (1.0 / ctx.p)).astype(a.dtype, copy=False)
        ctx.save_for_backward(a, out)
        return out if keepdims else np.asarray(out.reshape(
            [n for i, n in enumerate(a.shape) if i not in ctx.axes]))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        if ctx.p == 0:
            return np.zeros(a.shape, g.dtype)
        g = _expand(g, a.shape, ctx.axes, ctx.keepdims)
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = np.sign(a) * (np.abs(a) / out) ** (ctx.p - 1) * g
        return np.where((a == 0) | (out == 0), 0, grad).astype(g.dtype, copy=False)
