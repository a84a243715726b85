"""Similarity between vectors: cosine similarity (its own op, for PyTorch's gradient at tiny
norms). pairwise_distance and pdist are composites of norm (minidl.nn.functional)."""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops.elementwise import unbroadcast


def broadcast_float_pair(op: str, x1: np.ndarray, x2: np.ndarray) -> tuple:
    """x1 and x2 broadcast to one shape, each float input in its own dtype (as PyTorch
    normalizes them) and an integer one in the common dtype. Raises RuntimeError for shapes
    that do not broadcast or a non-float common dtype (as PyTorch)."""
    dtype = np.result_type(x1, x2)
    if dtype.kind != "f":
        raise RuntimeError(f"{op}: expected common dtype to be floating point, yet common dtype "
                           f"is {dtype}")
    try:
        a, b = np.broadcast_arrays(*(x if x.dtype.kind == "f" else x.astype(dtype)
                                     for x in (x1, x2)))
    except ValueError:
        raise RuntimeError(f"{op}: the shapes {x1.shape} and {x2.shape} do not "
                           "broadcast") from None
    return a, b


class CosineSimilarityOp(Function):
    """sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)) along axis, x1 and x2 broadcast
    together: (..., D, ...) -> (..., ...).

    As PyTorch 2.13's, each norm is clamped to eps without recording the clamp: the gradient
    flows through the unclamped norm (its derivative x / ||x||, 0 for a zero vector), so a zero
    vector gets the finite gradient x2 / (||x2|| eps), never NaN.
    """

    name = "cosine_similarity"

    @staticmethod
    def forward(ctx: Context, x1, x2, *, axis: int, eps: float) -> np.ndarray:
        a, b = broadcast_float_pair("cosine_similarity", x1, x2)
        if a.ndim == 0:
            raise IndexError("cosine_similarity: expected inputs with at least 1 dim, got 0-d")
        if not -a.ndim <= axis < a.ndim:
            raise IndexError(f"cosine_similarity: dim {axis} is out of range for "
                             f"{a.ndim}-d inputs")
        axis %= a.ndim
        norm_a = np.sqrt((a * a).sum(axis=axis, keepdims=True))
        norm_b = np.sqrt((b * b).sum(axis=axis, keepdims=True))
        clamped_a = np.maximum(norm_a, a.dtype.type(eps))
        clamped_b = np.maximum(norm_b, b.dtype.type(eps))
        # Each unit vector in its input's dtype; their product in the common one.
        unit_a, unit_b = a / clamped_a, b / clamped_b
        ctx.save_for_backward(a, b, norm_a, norm_b, clamped_a, clamped_b, unit_a, unit_b)
        ctx.axis, ctx.inputs = axis, ((x1.shape, x1.dtype), (x2.shape, x2.dtype))
        return (unit_a * unit_b).sum(axis=axis)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b, norm_a, norm_b, clamped_a, clamped_b, unit_a, unit_b = ctx.saved_tensors
        g = np.expand_dims(g, ctx.axis)

        def through_unit(x, norm, clamped, g_unit):
            # d(x / clamped)/dx with clamped standing for the norm (PyTorch's div backward),
            # then the norm's own backward, which is 0 for a zero vector.
            g_unit = g_unit.astype(x.dtype, copy=False)
            g_norm = -(g_unit * x / (clamped * clamped)).sum(axis=ctx.axis, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                norm_grad = np.where(norm == 0, 0, g_norm / norm)
            return g_unit / clamped + x * norm_grad

        def to_input(grad, i):  # summed over broadcast axes, in that input's dtype
            shape, dtype = ctx.inputs[i]
            return unbroadcast(grad, shape).astype(dtype, copy=False)

        needs_a, needs_b = ctx.needs_input_grad
        grad_a = to_input(through_unit(a, norm_a, clamped_a, g * unit_b), 0) if needs_a else None
        grad_b = to_input(through_unit(b, norm_b, clamped_b, g * unit_a), 1) if needs_b else None
        return grad_a, grad_b
