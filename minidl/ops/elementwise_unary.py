"""Elementwise functions of one floating point array with NumPy's ufuncs: tan, the inverse
trigonometric and the hyperbolic functions, log2, log10, exp2, sinc and logit
(minidl.tensor_elementwise casts integer inputs first).

Gradients are PyTorch's formulas (derivatives.yaml), so their values at the edges agree too:
asin's is inf at +-1, sinc's is 0 at 0, logit's is NaN outside [0, 1] and 0 outside
[eps, 1 - eps] when eps clamps the input.
"""

from __future__ import annotations

import math

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous
from minidl.ops.special import (
    TWO_OVER_SQRT_PI,
    bessel_i1_64,
    digamma,
    erfc,
    erfinv,
    i0,
    lgamma,
    trigamma64,
)


class _UnaryOp(Function):
    """f(a); subclasses give `fn` and `grad(a, out, g)` (the input and output saved)."""

    elementwise = True
    fn = staticmethod(np.tan)

    @classmethod
    def forward(cls, ctx: Context, a) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = contiguous(cls.fn(a))
        ctx.save_for_backward(a, out)
        return out

    @classmethod
    def backward(cls, ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(cls.grad(a, out, g), g.dtype)

    @staticmethod
    def grad(a, out, g):
        raise NotImplementedError


class TanOp(_UnaryOp):
    name = "tan"
    fn = staticmethod(np.tan)

    @staticmethod
    def grad(a, out, g):
        return g * (1 + out * out)


class AsinOp(_UnaryOp):
    name = "asin"
    fn = staticmethod(np.arcsin)

    @staticmethod
    def grad(a, out, g):
        return g / np.sqrt(1 - a * a)


class AcosOp(_UnaryOp):
    name = "acos"
    fn = staticmethod(np.arccos)

    @staticmethod
    def grad(a, out, g):
        return -g / np.sqrt(1 - a * a)


class AtanOp(_UnaryOp):
    name = "atan"
    fn = staticmethod(np.arctan)

    @staticmethod
    def grad(a, out, g):
        return g / (a * a + 1)


class SinhOp(_UnaryOp):
    name = "sinh"
    fn = staticmethod(np.sinh)

    @staticmethod
    def grad(a, out, g):
        return g * np.cosh(a)


class CoshOp(_UnaryOp):
    name = "cosh"
    fn = staticmethod(np.cosh)

    @staticmethod
    def grad(a, out, g):
        return g * np.sinh(a)


class AsinhOp(_UnaryOp):
    name = "asinh"
    fn = staticmethod(np.arcsinh)

    @staticmethod
    def grad(a, out, g):
        return g / np.sqrt(a * a + 1)


class AcoshOp(_UnaryOp):
    name = "acosh"
    fn = staticmethod(np.arccosh)

    @staticmethod
    def grad(a, out, g):
        return g / np.sqrt(a * a - 1)


class AtanhOp(_UnaryOp):
    name = "atanh"
    fn = staticmethod(np.arctanh)

    @staticmethod
    def grad(a, out, g):
        return g / (1 - a * a)


class Log2Op(_UnaryOp):
    name = "log2"
    fn = staticmethod(np.log2)

    @staticmethod
    def grad(a, out, g):
        return g / (a * math.log(2))


class Log10Op(_UnaryOp):
    name = "log10"
    fn = staticmethod(np.log10)

    @staticmethod
    def grad(a, out, g):
        return g / (a * math.log(10))


class Exp2Op(_UnaryOp):
    name = "exp2"
    fn = staticmethod(np.exp2)

    @staticmethod
    def grad(a, out, g):
        return g * out * math.log(2)


def sinc_array(a) -> np.ndarray:
    """sin(pi a) / (pi a), 1 at 0."""
    a = np.asarray(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        product = a * a.dtype.type(math.pi)
        return contiguous(np.where(a == 0, a.dtype.type(1), np.sin(product) / product))


class SincOp(_UnaryOp):
    name = "sinc"
    fn = staticmethod(sinc_array)

    @staticmethod
    def grad(a, out, g):
        product = a * math.pi
        slope = (product * np.cos(product) - np.sin(product)) / (product * a)
        return g * np.where(a == 0, 0, slope)


class LogitOp(Function):
    """log(z / (1 - z)) with z = a clamped to [eps, 1 - eps] (unclamped for eps=None)."""

    name = "logit"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, *, eps: float | None = None) -> np.ndarray:
        ctx.save_for_backward(a)
        ctx.eps = eps
        z = a if eps is None else np.clip(a, eps, 1 - eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            return contiguous(np.log(z / (1 - z)))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = g / (a * (1 - a))
            if ctx.eps is None:
                grad = np.where((a < 0) | (a > 1), math.nan, grad)
            else:
                grad = np.where((a < ctx.eps) | (a > 1 - ctx.eps), 0, grad)
        return np.asarray(grad, g.dtype)


class _SpecialOp(_UnaryOp):
    """f(a) for a floating point array (elementwise_unary's pattern: the input and output
    saved); subclasses give `fn` and `grad(a, out, g)`."""

    fn = staticmethod(erfc)


class ErfcOp(_SpecialOp):
    name = "erfc"
    fn = staticmethod(erfc)

    @staticmethod
    def grad(a, out, g):
        return -TWO_OVER_SQRT_PI * np.exp(-(a * a)) * g


class ErfinvOp(_SpecialOp):
    name = "erfinv"
    fn = staticmethod(erfinv)

    @staticmethod
    def grad(a, out, g):
        return (math.sqrt(math.pi) / 2) * np.exp(out * out) * g


class LgammaOp(_SpecialOp):
    name = "lgamma"
    fn = staticmethod(lgamma)

    @staticmethod
    def grad(a, out, g):
        return g * digamma(a)


class DigammaOp(_SpecialOp):
    name = "digamma"
    fn = staticmethod(digamma)

    @staticmethod
    def grad(a, out, g):
        return g * trigamma64(np.asarray(a, np.float64))


class I0Op(_SpecialOp):
    """The modified Bessel function of the first kind, order 0 (NumPy's i0: Cephes's
    Chebyshev expansions, as PyTorch's); its derivative is I1."""

    name = "i0"
    fn = staticmethod(i0)

    @staticmethod
    def grad(a, out, g):
        return g * bessel_i1_64(np.asarray(a, np.float64))
