"""Ops that move values without computing: reshape, permute, indexing, concatenate, stack, pad.

Their backward passes move the gradient back the same way (indexing scatter-adds it, so an
element picked twice gets both contributions).
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous


class ReshapeOp(Function):
    """A view when possible (tensors are C-contiguous, so reshape never copies)."""

    name = "reshape"
    lowering = "reshape"

    @staticmethod
    def forward(ctx: Context, a, *, shape) -> np.ndarray:
        ctx.in_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError as e:
            raise ValueError(f"reshape: cannot reshape shape {a.shape} into {tuple(shape)}") from e

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return g.reshape(ctx.in_shape)


class PermuteOp(Function):
    """Reorder axes; the result is copied to C order (minidl tensors are contiguous)."""

    name = "permute"

    @staticmethod
    def forward(ctx: Context, a, *, axes) -> np.ndarray:
        axes = tuple(int(ax) for ax in axes)
        if sorted(ax % max(a.ndim, 1) for ax in axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {a.ndim} axes")
        ctx.axes = axes
        return contiguous(a.transpose(axes))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return contiguous(g.transpose(np.argsort([ax % g.ndim for ax in ctx.axes])))


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts
    )


class IndexOp(Function):
    """x[index] for basic (ints, slices, None, ...) and integer/boolean array indices."""

    name = "index"

    @staticmethod
    def forward(ctx: Context, a, *, index) -> np.ndarray:
        ctx.index = index
        ctx.in_shape = a.shape
        ctx.dtype = a.dtype
        try:
            return contiguous(a[index])
        except IndexError as e:
            raise IndexError(f"index: {e} (tensor shape {a.shape})") from e

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        grad = np.zeros(ctx.in_shape, dtype=g.dtype)
        if _is_basic_index(ctx.index):
            # Basic indexing selects each element at most once: plain assignment suffices.
            grad[ctx.index] = g
        else:
            np.add.at(grad, ctx.index, g)
        return grad


class ScatterOp(Function):
    """a with src's entries written (add=False) or added (add=True) at the positions index
    names along `axis`: out[i][index[i][j]] = src[i][j] for axis 1 (torch.scatter /
    scatter_add). index: an integer array of a's ndim, no larger than src (any dim) or a
    (other dims); src: an array of a's dtype. The gradient of a is g (add) or g with the
    written entries zeroed; src's is g gathered back at index."""

    name = "scatter"

    @staticmethod
    def forward(ctx: Context, a, src, *, index, axis: int, add: bool) -> np.ndarray:
        index = np.array(index)  # the gradient reads it later: the caller's may change
        if index.dtype.kind not in "iu" or index.ndim != a.ndim:
            raise ValueError(f"scatter: index must be an integer tensor with {a.ndim} dims "
                             f"(the input's), got {index.dtype} of shape {index.shape}")
        bad = [d for d in range(a.ndim) if index.shape[d] > src.shape[d]
               or d != axis and index.shape[d] > a.shape[d]]
        if bad:
            raise ValueError(f"scatter: index of shape {index.shape} is larger than src "
                             f"{src.shape} or than the input {a.shape} in dim {bad[0]}")
        if index.size and (index.min() < -a.shape[axis] or index.max() >= a.shape[axis]):
            raise IndexError(f"scatter: index values must be in [0, {a.shape[axis]}) for dim "
                             f"{axis}, got {index.min()} .. {index.max()}")
        grids = list(np.ogrid[tuple(slice(0, n) for n in index.shape)])
        target = tuple(grids[:axis] + [index % max(a.shape[axis], 1)] + grids[axis + 1:])
        picked = src[tuple(slice(0, n) for n in index.shape)]
        ctx.target, ctx.add, ctx.src_shape, ctx.picked_shape = target, add, src.shape, index.shape
        out = a.copy()
        if add:
            np.add.at(out, target, picked)
        else:
            out[target] = picked
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        need_a, need_src = ctx.needs_input_grad
        ga = gsrc = None
        if need_a:
            ga = g.copy()
            if not ctx.add:
                ga[ctx.target] = 0
        if need_src:
            gsrc = np.zeros(ctx.src_shape, g.dtype)
            gsrc[tuple(slice(0, n) for n in ctx.picked_shape)] = g[ctx.target]
        return ga, gsrc


class EmbeddingOp(Function):
    """weight[indices]: rows of weight (num, dim) picked by an integer array of any shape;
    the gradient adds each picked row's gradient back (rows picked twice get both), none to
    padding_idx's row; scale_grad_by_freq divides each row's gradient by the number of times
    the indices pick it."""

    name = "embedding"

    @staticmethod
    def forward(ctx: Context, weight, indices, *, padding_idx, scale_grad_by_freq=False
                ) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"embedding: indices must be an integer tensor, got {indices.dtype}")
        if weight.ndim != 2:
            raise ValueError(f"embedding: weight must be 2-d (num, dim), got {weight.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= weight.shape[0]):
            raise IndexError(f"embedding: indices must be in [0, {weight.shape[0]}), got "
                             f"{indices.min()} .. {indices.max()}")
        ctx.indices = indices.copy()  # the gradient must not see later changes to them
        ctx.weight_shape, ctx.padding_idx = weight.shape, padding_idx
        ctx.scale_grad_by_freq = bool(scale_grad_by_freq)
        return weight[ctx.indices]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        grad = np.zeros(ctx.weight_shape, dtype=g.dtype)
        flat = ctx.indices.reshape(-1)
        rows = g.reshape(-1, ctx.weight_shape[1])
        if ctx.scale_grad_by_freq:
            counts = np.bincount(flat, minlength=ctx.weight_shape[0])
            rows = rows / counts[flat, None].astype(g.dtype)
        np.add.at(grad, flat, rows)
        if ctx.padding_idx is not None:
            grad[ctx.padding_idx] = 0
        return grad, None


class ConcatenateOp(Function):
    name = "cat"

    @staticmethod
    def forward(ctx: Context, *arrays, axis=0) -> np.ndarray:
        if not arrays:
            raise ValueError("concatenate: expected at least one tensor")
        try:
            out = np.concatenate(arrays, axis=axis)
        except (ValueError, np.exceptions.AxisError) as e:
            shapes = [a.shape for a in arrays]
            raise ValueError(f"concatenate: cannot join shapes {shapes} along axis {axis}") from e
        ctx.axis = axis % out.ndim
        ctx.sizes = [a.shape[ctx.axis] for a in arrays]
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        cuts = np.cumsum(ctx.sizes)[:-1]
        parts = np.split(g, cuts, axis=ctx.axis)
        return tuple(
            contiguous(p) if need else None
            for p, need in zip(parts, ctx.needs_input_grad)
        )


class StackOp(Function):
    name = "stack"

    @staticmethod
    def forward(ctx: Context, *arrays, axis=0) -> np.ndarray:
        if not arrays:
            raise ValueError("stack: expected at least one tensor")
        try:
            out = np.stack(arrays, axis=axis)
        except (ValueError, np.exceptions.AxisError) as e:
            shapes = [a.shape for a in arrays]
            raise ValueError(f"stack: cannot stack shapes {shapes} along axis {axis}") from e
        ctx.axis = axis % out.ndim
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return tuple(
            contiguous(np.take(g, i, axis=ctx.axis)) if need else None
            for i, need in enumerate(ctx.needs_input_grad)
        )


class PadOp(Function):
    """Constant padding; pad_width as in numpy.pad: ((before, after), ...) per axis."""

    name = "pad"

    @staticmethod
    def forward(ctx: Context, a, *, pad_width, value=0.0) -> np.ndarray:
        try:
            widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
        except ValueError as e:
            raise ValueError(
                f"pad: pad_width {pad_width!r} does not fit a tensor of shape {a.shape}"
            ) from e
        if (widths < 0).any():
            raise ValueError(f"pad: negative pad_width {pad_width!r}")
        ctx.slices = tuple(slice(int(b), int(b) + n) for (b, _), n in zip(widths, a.shape))
        return np.pad(a, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return contiguous(g[ctx.slices])
