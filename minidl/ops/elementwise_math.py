"""Elementwise functions beyond arithmetic: atan2, hypot, fmod, remainder, logaddexp,
logaddexp2, xlogy, copysign, fmax, fmin, nextafter, expm1, log1p, frac. Operands arrive promoted to one dtype (minidl.tensor_math does PyTorch's
promotion); NumPy broadcasts them and gradients are summed back to each input's shape.

The gradients are PyTorch's formulas (its derivatives.yaml), so values at the edges agree
too: hypot's is 0/0 = NaN at the origin, fmod's and remainder's divisor gets -g * trunc(a/b)
and -g * floor(a/b).
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous
from minidl.ops.elementwise import broadcast_mismatch, unbroadcast


def _broadcast_call(name: str, fn, a, b) -> np.ndarray:
    try:
        return contiguous(fn(a, b))
    except ValueError as e:
        mismatch = broadcast_mismatch(np.shape(a), np.shape(b))
        raise RuntimeError(f"{name}: {mismatch or e}") from e


class _BinaryOp(Function):
    """f(a, b) with NumPy broadcasting; subclasses give `fn` and `grads(a, b, out, g)`, which
    returns the two unreduced gradients (None where ctx.needs_input_grad says no)."""

    fn = staticmethod(np.add)

    @classmethod
    def forward(cls, ctx: Context, a, b) -> np.ndarray:
        out = _broadcast_call(cls.name, cls.fn, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @classmethod
    def backward(cls, ctx: Context, g: np.ndarray):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga, gb = cls.grads(a, b, out, g, need_a, need_b)
        return (unbroadcast(np.asarray(ga, g.dtype), np.shape(a)) if need_a else None,
                unbroadcast(np.asarray(gb, g.dtype), np.shape(b)) if need_b else None)

    @staticmethod
    def grads(a, b, out, g, need_a: bool, need_b: bool) -> tuple:
        raise NotImplementedError


class Atan2Op(_BinaryOp):
    name = "atan2"
    fn = staticmethod(np.arctan2)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        scale = g / (a * a + b * b)
        return scale * b, -scale * a


class HypotOp(_BinaryOp):
    name = "hypot"
    fn = staticmethod(np.hypot)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        return g * a / out, g * b / out


class FmodOp(_BinaryOp):
    """The remainder of truncated division: its sign is the dividend's (C's fmod)."""

    name = "fmod"
    fn = staticmethod(np.fmod)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        return g, (-g * np.trunc(a / b) if need_b else None)


class RemainderOp(_BinaryOp):
    """The remainder of floor division: its sign is the divisor's (Python's %)."""

    name = "remainder"
    fn = staticmethod(np.remainder)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        return g, (-g * np.floor(a / b) if need_b else None)


class LogaddexpOp(_BinaryOp):
    name = "logaddexp"
    fn = staticmethod(np.logaddexp)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        # Both -inf: (-inf) - (-inf) is NaN, PyTorch's gradient there too.
        with np.errstate(invalid="ignore", over="ignore"):
            return (g / (1 + np.exp(b - a)) if need_a else None,
                    g / (1 + np.exp(a - b)) if need_b else None)


class Logaddexp2Op(_BinaryOp):
    name = "logaddexp2"
    fn = staticmethod(np.logaddexp2)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        with np.errstate(invalid="ignore", over="ignore"):
            return (g / (1 + np.exp2(b - a)) if need_a else None,
                    g / (1 + np.exp2(a - b)) if need_b else None)


class CopysignOp(_BinaryOp):
    """|a| with b's sign (-0.0 and NaN's sign bit count); b's gradient is 0, a's is
    out / a (0 where a is 0), as PyTorch's."""

    name = "copysign"
    fn = staticmethod(np.copysign)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.asarray(a) == 0, 0, out / a)
        return g * ratio, np.zeros_like(g)


class FmaxOp(_BinaryOp):
    """max ignoring NaN (NaN only where both are); the gradient goes to a where a >= b or b
    is NaN, else to b (ties to a: PyTorch's rule, not maximum's halves)."""

    name = "fmax"
    fn = staticmethod(np.fmax)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        to_a = (np.asarray(a) >= b) | np.isnan(b)
        return np.where(to_a, g, 0), np.where(to_a, 0, g)


class FminOp(_BinaryOp):
    """min ignoring NaN; the gradient goes to a where a <= b or b is NaN, else to b."""

    name = "fmin"
    fn = staticmethod(np.fmin)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        to_a = (np.asarray(a) <= b) | np.isnan(b)
        return np.where(to_a, g, 0), np.where(to_a, 0, g)


class NextafterOp(_BinaryOp):
    """The next representable value after a toward b; PyTorch's gradients: g to a where
    a != b (else 0), 0 to b."""

    name = "nextafter"
    fn = staticmethod(np.nextafter)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        return np.where(np.asarray(a) != b, g, 0), np.zeros_like(g)


def xlogy_array(a, b) -> np.ndarray:
    """a * log(b), 0 where a is 0 unless b is NaN (PyTorch's xlogy)."""
    a, b = np.asarray(a), np.asarray(b)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log(0): replaced just below
        product = a * np.log(b)
    return contiguous(np.where((a == 0) & ~np.isnan(b), np.zeros((), product.dtype), product))


class XlogyOp(_BinaryOp):
    name = "xlogy"
    fn = staticmethod(xlogy_array)

    @staticmethod
    def grads(a, b, out, g, need_a, need_b):
        # PyTorch's: g * log(b), 0 where a is 0 and b <= 0 (where log(b) is not finite).
        if need_a:
            a_grad = np.where((np.asarray(a) == 0) & (np.asarray(b) <= 0), 0, g * np.log(b))
        return (a_grad if need_a else None, g * a / b if need_b else None)


class Expm1Op(Function):
    name = "expm1"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        out = np.expm1(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return g * (out + 1)


class Log1pOp(Function):
    name = "log1p"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.log1p(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return g / (a + 1)


class FracOp(Function):
    """x - trunc(x) (the sign is x's); the gradient is 1, as PyTorch's."""

    name = "frac"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        return contiguous(a - np.trunc(a))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return g
