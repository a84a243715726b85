"""Cumulative ops along one axis: cumprod and logcumsumexp.

Both scan the axis moved last (np.moveaxis is a view) and move the result back.
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    """sum over j >= i along the last axis."""
    return np.flip(np.cumsum(np.flip(a, -1), axis=-1), -1)


class CumprodOp(Function):
    """Running products along `axis`. float32 runs in float64 rounded at each step, as
    PyTorch's CPU kernel accumulates (its acc_type for float is double).

    The gradient of out[j] = prod(x[:j + 1]) with respect to x[k] is the product of the other
    factors; dividing out / x[k] gives it only where x[k] != 0. Along each row with a zero
    (PyTorch's case split, same formula): before the first zero z the division is exact;
    at z the factor is the running product with x[z] taken as 1; after z every product holds
    x[z] = 0, so the gradient is 0."""

    name = "cumprod"

    @staticmethod
    def forward(ctx: Context, a, *, axis: int) -> np.ndarray:
        ctx.axis = axis
        ctx.save_for_backward(a)
        if a.dtype == np.float32:
            return contiguous(np.cumprod(a, axis=axis, dtype=np.float64).astype(np.float32))
        return contiguous(np.cumprod(a, axis=axis))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        x = np.moveaxis(a, ctx.axis, -1).astype(g.dtype)
        gl = np.moveaxis(g, ctx.axis, -1)
        n = x.shape[-1]
        if n == 0:
            return np.zeros(a.shape, g.dtype)
        position = np.arange(n)
        is_zero = x == 0
        first_zero = np.where(is_zero.any(-1), is_zero.argmax(-1), n)[..., None]
        before = position < first_zero
        at_zero = position == first_zero
        out = np.cumprod(x, axis=-1)
        grad = np.where(before, _reverse_cumsum(gl * out) / np.where(before, x, 1), 0)
        if at_zero.any():
            skipped = np.cumprod(np.where(at_zero, 1, x), axis=-1)
            grad = grad + np.where(at_zero, _reverse_cumsum(gl * skipped), 0)
        return contiguous(np.moveaxis(grad.astype(g.dtype), -1, ctx.axis))


def _logcumsumexp(x: np.ndarray) -> np.ndarray:
    """log(cumsum(exp(x))) along the last axis, by running logaddexp (no overflow)."""
    return np.logaddexp.accumulate(x, axis=-1) if x.shape[-1] else x.copy()


class LogcumsumexpOp(Function):
    """log(cumsum(exp(x))) along `axis`. The gradient sum_{j >= k} g[j] exp(x[k] - out[j])
    is formed in log space (PyTorch's way): the positive and negative parts of g each give
    exp(x[k] + logcumsumexp_reversed(log|g| - out)), so no exp overflows."""

    name = "logcumsumexp"

    @staticmethod
    def forward(ctx: Context, a, *, axis: int) -> np.ndarray:
        ctx.axis = axis
        out = contiguous(np.moveaxis(_logcumsumexp(np.moveaxis(a, axis, -1)), -1, axis))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        x = np.moveaxis(a, ctx.axis, -1)
        o = np.moveaxis(out, ctx.axis, -1)
        gl = np.moveaxis(g, ctx.axis, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            parts = []
            for part in (np.maximum(gl, 0), np.maximum(-gl, 0)):
                reversed_lse = np.flip(_logcumsumexp(np.flip(np.log(part) - o, -1)), -1)
                parts.append(np.exp(x + reversed_lse))
        return contiguous(np.moveaxis((parts[0] - parts[1]).astype(g.dtype), -1, ctx.axis))
