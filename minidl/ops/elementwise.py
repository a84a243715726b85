"""Elementwise ops with NumPy broadcasting. Gradients are summed back to each input's shape.

Every op here but Where and Cast is `elementwise` (static graphs fuse runs of them); those
marked `writes_out` accept a preallocated `out` (static graphs' memory plan), and `inplace_ok`
means `out` may be an input's own buffer (NumPy's ufuncs handle the overlap).

The lecture's gates: add distributes the upstream gradient, mul switches the operands, max
routes it to the larger input.
"""

from __future__ import annotations

import math

import numpy as np

from minidl._kernels import elementwise as _elementwise
from minidl.dtypes import FLOAT_DTYPES, SUPPORTED_DTYPES, check_dtype
from minidl.graph import Context, Function
from minidl.ops import contiguous, flat_kernel
from minidl.ops.activation import check_float_input, relu_grad


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` over the axes broadcasting added or stretched, giving an array of `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _shape(x: object) -> tuple:
    return np.shape(x)


def sign(a) -> np.ndarray:
    """PyTorch's sign: -1, 0 or 1 for floats, and 0 for NaN (np.sign gives NaN there, and so
    did the gradients of abs and l1_loss that take it); other dtypes as np.sign."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return np.sign(a)
    return (a > 0).astype(a.dtype) - (a < 0).astype(a.dtype)


def _same_float_arrays(a, b) -> bool:
    """Two arrays of one shape and one float dtype (float32 or float64): no broadcasting or
    promotion for the kernels to follow."""
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype and a.dtype in FLOAT_DTYPES)


def broadcast_mismatch(a: tuple, b: tuple) -> str | None:
    """PyTorch's message for shapes a and b that do not broadcast (the last dim, counted in
    the broadcast shape, where both sizes differ and neither is 1), followed by both shapes;
    None if they broadcast."""
    ndim = max(len(a), len(b))
    pa, pb = (1,) * (ndim - len(a)) + tuple(a), (1,) * (ndim - len(b)) + tuple(b)
    for dim in range(ndim - 1, -1, -1):
        if pa[dim] != pb[dim] and 1 not in (pa[dim], pb[dim]):
            return (f"The size of tensor a ({pa[dim]}) must match the size of tensor b "
                    f"({pb[dim]}) at non-singleton dimension {dim} (shapes {tuple(a)} and "
                    f"{tuple(b)})")
    return None


def _binary(name: str, fn, a, b, out: np.ndarray | None = None) -> np.ndarray:
    try:
        out = contiguous(fn(a, b) if out is None else fn(a, b, out=out))
    except ValueError as e:
        mismatch = broadcast_mismatch(_shape(a), _shape(b))
        if mismatch is not None:
            raise RuntimeError(f"{name}: {mismatch}") from e
        # Broadcastable, so NumPy refused the values (integers to negative integer powers).
        raise RuntimeError(f"{name}: {e}") from e
    if out.dtype not in SUPPORTED_DTYPES:
        check_dtype(f"{name} of {np.result_type(a)} and {np.result_type(b)}", out.dtype)
    return out


class AddOp(Function):
    """a + b; relu=True is the static graphs' fusion of a following ReLU (a residual block's
    add + ReLU): max(a + b, 0) as ReLU computes it (NaN stays NaN), and backward masks the
    gradient with the output as ReLU's backward does, so the bits equal Add then ReLU."""

    name = "add"
    elementwise = writes_out = inplace_ok = True
    epilogues = ("relu",)
    lowering = "add"
    symbol = "+"

    @staticmethod
    def forward(ctx: Context, a, b, out=None, relu: bool = False) -> np.ndarray:
        ctx.shapes = (_shape(a), _shape(b))
        if _same_float_arrays(a, b):
            # One threaded pass (a residual block's add + ReLU), not NumPy's one or two
            # single-threaded ones; the same sums.
            out = flat_kernel(_elementwise.add, (contiguous(a), contiguous(b)), out, relu)
        else:
            out = _binary("add", np.add, a, b, out)
            if relu:
                check_float_input("add + relu", out)
                flat_kernel(_elementwise.relu, (out,), out)
        if relu:
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        if ctx.saved_tensors:
            g = relu_grad(ctx.saved_tensors[0], g)
        return (unbroadcast(g, sa) if need_a else None, unbroadcast(g, sb) if need_b else None)


class SubOp(Function):
    name = "sub"
    elementwise = writes_out = inplace_ok = True
    symbol = "-"

    @staticmethod
    def forward(ctx: Context, a, b, out=None) -> np.ndarray:
        ctx.shapes = (_shape(a), _shape(b))
        return _binary("sub", np.subtract, a, b, out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None, unbroadcast(-g, sb) if need_b else None)


class MulOp(Function):
    name = "mul"
    elementwise = writes_out = inplace_ok = True
    symbol = "*"

    @staticmethod
    def forward(ctx: Context, a, b, out=None) -> np.ndarray:
        # Each operand only for the other's gradient (as PyTorch saves them): an operand that
        # nothing differentiates against may then change in place before backward.
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None, _shape(a), _shape(b))
        return _binary("mul", np.multiply, a, b, out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b, shape_a, shape_b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (
            unbroadcast(g * b, shape_a) if need_a else None,
            unbroadcast(g * a, shape_b) if need_b else None,
        )


class DivOp(Function):
    name = "div"
    elementwise = writes_out = inplace_ok = True
    symbol = "/"

    @staticmethod
    def forward(ctx: Context, a, b, out=None) -> np.ndarray:
        # The dividend only for the divisor's gradient (as PyTorch saves it).
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b, _shape(a))
        return _binary("div", np.true_divide, a, b, out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b, shape_a = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = unbroadcast(g / b, shape_a) if need_a else None
        gb = unbroadcast(-g * a / (b * b), _shape(b)) if need_b else None
        return ga, gb


class PowOp(Function):
    name = "pow"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, b) -> np.ndarray:
        out = _binary("pow", np.power, a, b)
        # The result only for the exponent's gradient (as PyTorch saves it): y = x ** 2 may
        # change in place before backward.
        ctx.save_for_backward(a, b, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        # PyTorch's: an exponent of 0 has gradient 0 (0 * 0 ** -1 would be NaN at a == 0).
        ga = None
        if need_a:
            with np.errstate(divide="ignore", invalid="ignore"):
                ga = unbroadcast(g * np.where(b == 0, 0, b * np.power(a, b - 1)), _shape(a))
        # d(a^b)/db = a^b log a, defined for a > 0; where a == 0 the term is taken as 0.
        gb = None
        if need_b:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            gb = unbroadcast(g * out * log_a, _shape(b))
        return ga, gb


def _tie_split(g: np.ndarray, a_loses: np.ndarray, b_loses: np.ndarray, a, b, needs: tuple):
    """maximum/minimum's gradients as PyTorch's: half of g to each operand where they are
    equal, none to the one that lost, all of it elsewhere (to both where a NaN compares
    neither way)."""
    share = np.where(np.asarray(a == b), g * g.dtype.type(0.5), g)
    ga = unbroadcast(np.where(a_loses, 0, share).astype(g.dtype), _shape(a)) if needs[0] else None
    gb = unbroadcast(np.where(b_loses, 0, share).astype(g.dtype), _shape(b)) if needs[1] else None
    return ga, gb


class MaximumOp(Function):
    """Elementwise max; on ties each operand gets half the gradient (PyTorch's)."""

    name = "maximum"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, b) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return _binary("maximum", np.maximum, a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b = ctx.saved_tensors
        return _tie_split(g, np.asarray(a < b), np.asarray(a > b), a, b, ctx.needs_input_grad)


class MinimumOp(Function):
    """Elementwise min; on ties each operand gets half the gradient (PyTorch's)."""

    name = "minimum"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, b) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return _binary("minimum", np.minimum, a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b = ctx.saved_tensors
        return _tie_split(g, np.asarray(a > b), np.asarray(a < b), a, b, ctx.needs_input_grad)


class WhereOp(Function):
    """out = a where cond else b; cond carries no gradient."""

    name = "where"

    @staticmethod
    def forward(ctx: Context, cond, a, b) -> np.ndarray:
        cond = np.asarray(cond, dtype=bool)
        ctx.save_for_backward(cond)
        ctx.shapes = (_shape(a), _shape(b))
        try:
            return contiguous(np.where(cond, a, b))
        except ValueError as e:
            mismatch = broadcast_mismatch(cond.shape, _shape(a)) or broadcast_mismatch(
                np.broadcast_shapes(cond.shape, _shape(a)), _shape(b))
            raise RuntimeError(f"where: {mismatch}") from e

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        _, need_a, need_b = ctx.needs_input_grad
        zero = g.dtype.type(0)
        return (
            None,
            unbroadcast(np.where(cond, g, zero), sa) if need_a else None,
            unbroadcast(np.where(cond, zero, g), sb) if need_b else None,
        )


class NegOp(Function):
    name = "neg"
    elementwise = writes_out = inplace_ok = True
    symbol = "neg"

    @staticmethod
    def forward(ctx: Context, a, out=None) -> np.ndarray:
        if a.dtype == np.bool_:
            raise RuntimeError("neg: Negation, the `-` operator, on a bool tensor is not "
                               "supported. If you are trying to invert a mask, use the `~` or "
                               "`logical_not()` operator instead.")
        return np.negative(a, out=out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return -g


class ExpOp(Function):
    name = "exp"
    elementwise = writes_out = inplace_ok = True

    @staticmethod
    def forward(ctx: Context, a, out=None) -> np.ndarray:
        out = np.exp(a, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return g * out


class ReciprocalOp(Function):
    name = "reciprocal"
    elementwise = writes_out = inplace_ok = True

    @staticmethod
    def forward(ctx: Context, a, out=None) -> np.ndarray:
        out = np.reciprocal(a, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return -g * (out * out)


class LogOp(Function):
    name = "log"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return g / a


class SqrtOp(Function):
    """sqrt(a); the gradient g / (2 sqrt(a)) is inf at 0, or 0 with zero_at_zero (the root
    of std and of the 2-norm, whose gradient PyTorch takes as 0 where the result is 0)."""

    name = "sqrt"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, *, zero_at_zero: bool = False) -> np.ndarray:
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        ctx.zero_at_zero = zero_at_zero
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        if ctx.zero_at_zero:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(out == 0, 0, g / (2 * out)).astype(g.dtype)
        return g / (2 * out)


class ErfOp(Function):
    """The error function (the C library's erf / erff: NumPy has none); the gradient
    2 / sqrt(pi) exp(-x^2)."""

    name = "erf"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        check_float_input("erf", a)
        a = contiguous(a)
        ctx.save_for_backward(a)
        return flat_kernel(_elementwise.erf, (a,), None)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return g * (np.exp(-(a * a)) * (2 / math.sqrt(math.pi)))


class AbsOp(Function):
    """|x|; the gradient at 0 is 0 (the subgradient PyTorch uses)."""

    name = "abs"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        return g * sign(a).astype(g.dtype)


class ClipOp(Function):
    """Clamp to [low, high] (either may be None); gradient passes where the input was inside."""

    name = "clip"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, a, *, low, high) -> np.ndarray:
        if low is None and high is None:
            raise ValueError("clip: at least one of min and max must be given")
        ctx.save_for_backward(a)
        ctx.low, ctx.high = low, high
        return np.clip(a, low, high)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        inside = np.ones(a.shape, dtype=bool)
        if ctx.low is not None:
            inside &= a >= ctx.low
        if ctx.high is not None:
            inside &= a <= ctx.high
        return np.where(inside, g, g.dtype.type(0))


class CastOp(Function):
    """Change dtype; the gradient is cast back to the input's dtype."""

    name = "cast"

    @staticmethod
    def forward(ctx: Context, a, *, dtype) -> np.ndarray:
        ctx.in_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return g.astype(ctx.in_dtype)
