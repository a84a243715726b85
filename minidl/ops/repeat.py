"""Ops that copy values into a larger or equal layout: expand, repeat, clone, and the two
trigonometric functions PyTorch tensors offer (sin, cos).

expand and repeat sum the gradient back over the copies; clone passes it through.
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous
from minidl.ops.elementwise import unbroadcast


class ExpandOp(Function):
    """Broadcast to `shape` (-1 keeps a dim); copied to C order (minidl tensors are contiguous)."""

    name = "expand"

    @staticmethod
    def forward(ctx: Context, a, *, shape) -> np.ndarray:
        shape = tuple(int(n) for n in shape)
        lead = len(shape) - a.ndim
        if lead < 0:
            raise ValueError(f"expand: cannot expand shape {a.shape} to fewer dims {shape}")
        target = tuple(a.shape[i - lead] if n == -1 and i >= lead else n
                       for i, n in enumerate(shape))
        try:
            out = contiguous(np.broadcast_to(a, target))
        except ValueError as e:
            raise ValueError(f"expand: shape {a.shape} cannot be expanded to {shape}") from e
        ctx.in_shape = a.shape
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return contiguous(unbroadcast(g, ctx.in_shape))


class RepeatOp(Function):
    """Tile the tensor `repeats` times along each dim (PyTorch's repeat, NumPy's tile)."""

    name = "repeat"

    @staticmethod
    def forward(ctx: Context, a, *, repeats) -> np.ndarray:
        repeats = tuple(int(r) for r in repeats)
        if len(repeats) < a.ndim:
            raise ValueError(
                f"repeat: {len(repeats)} repeat counts for a {a.ndim}-d tensor; give at least "
                f"{a.ndim}"
            )
        if any(r < 0 for r in repeats):
            raise ValueError(f"repeat: negative repeat count in {repeats}")
        shape = (1,) * (len(repeats) - a.ndim) + a.shape
        ctx.in_shape, ctx.shape, ctx.repeats = a.shape, shape, repeats
        return contiguous(np.tile(a.reshape(shape), repeats))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        # Split each axis into (repeat, size) and sum over the repeats.
        split = []
        for r, n in zip(ctx.repeats, ctx.shape):
            split += [r, n]
        summed = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return contiguous(summed.reshape(ctx.in_shape))


class CloneOp(Function):
    """A copy of the values; the gradient passes through."""

    name = "clone"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        return np.array(a, copy=True, order="C")

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return g


class SinOp(Function):
    name = "sin"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.sin(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return g * np.cos(a)


class CosOp(Function):
    name = "cos"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.cos(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return -g * np.sin(a)
