"""Activation functions, dropout and batch normalization, one Function class each.

Every forward keeps the input's float dtype: constants enter as Python floats (weak scalars
under NumPy's promotion rules) or as `dtype.type(...)`, never as float64 NumPy scalars.
"""

from __future__ import annotations

import math

import numpy as np

from minidl._kernels import batchnorm as _bn
from minidl._kernels import elementwise as _elementwise
from minidl.graph import Context, Function
from minidl.ops import contiguous, flat_kernel
from minidl.ops.reduce import normalize_axes
from minidl.threads import get_num_threads

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_input(op: str, x: np.ndarray) -> None:
    if x.dtype not in _FLOATS:
        raise TypeError(f"{op}: expected a float32 or float64 input, got dtype {x.dtype}")


class ReLUOp(Function):
    """max(x, 0) as PyTorch's relu (-0.0 stays -0.0, NaN stays NaN); the gradient at 0 is 0, as
    in PyTorch. `out` as in minidl.ops.elementwise."""

    name = "relu"
    elementwise = writes_out = inplace_ok = True
    epilogue = "relu"
    lowering = "relu"

    @staticmethod
    def forward(ctx: Context, x, out=None) -> np.ndarray:
        check_float_input("relu", x)
        out = flat_kernel(_elementwise.relu, (contiguous(x),), out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return relu_grad(out, g)


def relu_grad(out: np.ndarray, g: np.ndarray) -> np.ndarray:
    """PyTorch's threshold_backward for a ReLU output `out` and its gradient `g` (one shape and
    dtype): zero where out <= 0 (even a NaN gradient), g elsewhere (also where out is NaN)."""
    g = contiguous(g)
    grad_x = np.empty_like(g)
    _elementwise.relu_backward(
        contiguous(out).reshape(-1), g.reshape(-1), grad_x.reshape(-1), get_num_threads()
    )
    return grad_x


class LeakyReLUOp(Function):
    """x for x > 0, negative_slope * x otherwise."""

    name = "leaky_relu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, negative_slope: float) -> np.ndarray:
        check_float_input("leaky_relu", x)
        positive = x > 0
        ctx.save_for_backward(positive)
        ctx.slope = float(negative_slope)
        return np.where(positive, x, x * ctx.slope)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (positive,) = ctx.saved_tensors
        return np.where(positive, g, g * ctx.slope)


class HardtanhOp(Function):
    """x clamped to [low, high] as PyTorch's hardtanh (and relu6, its [0, 6] case): a NaN stays
    NaN and -0.0 stays -0.0; the gradient is 0 at and beyond the bounds (like ReLU's at 0,
    unlike clamp's, which passes at the bounds) and passes elsewhere, a NaN input included."""

    name = "hardtanh"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, low: float, high: float) -> np.ndarray:
        check_float_input("hardtanh", x)
        if low > high:
            raise ValueError(f"hardtanh: min_val {low} is greater than max_val {high}")
        lo, hi = x.dtype.type(low), x.dtype.type(high)
        # The mask, not x: the in-place form (F.hardtanh_) overwrites x before backward.
        ctx.save_for_backward((x <= lo) | (x >= hi))
        return np.where(x < lo, lo, np.where(x > hi, hi, x))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (clipped,) = ctx.saved_tensors
        return np.where(clipped, g.dtype.type(0), g)


class PReLUOp(Function):
    """x for x > 0, a * x otherwise, with a learned slope `a`.

    x: (N, C, ...) or (N,); weight: (1,) shared, or (C,) one slope per channel (axis 1).
    """

    name = "prelu"

    @staticmethod
    def forward(ctx: Context, x, weight) -> np.ndarray:
        check_float_input("prelu", x)
        if weight.ndim != 1:
            raise ValueError(f"prelu: weight must be 1-D, got shape {weight.shape}")
        channels = x.shape[1] if x.ndim >= 2 else 1
        if weight.shape[0] not in (1, channels):
            raise ValueError(
                f"prelu: weight has {weight.shape[0]} slopes but the input of shape {x.shape} "
                f"has {channels} channels (axis 1); use 1 or {channels}"
            )
        shape = [1] * x.ndim
        if weight.shape[0] > 1:
            shape[1] = weight.shape[0]
        slope = weight.astype(x.dtype, copy=False).reshape(shape)
        positive = x > 0
        ctx.save_for_backward(x, slope, positive)
        ctx.weight_shape = weight.shape
        return np.where(positive, x, x * slope)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, slope, positive = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        gx = np.where(positive, g, g * slope) if need_x else None
        gw = None
        if need_w:
            contrib = np.where(positive, g.dtype.type(0), g * x)
            axes = tuple(i for i in range(x.ndim) if not (i == 1 and ctx.weight_shape[0] > 1))
            gw = contrib.sum(axis=axes).reshape(ctx.weight_shape)
        return gx, gw


class ELUOp(Function):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (expm1, exact for small |x|)."""

    name = "elu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, alpha: float) -> np.ndarray:
        check_float_input("elu", x)
        positive = x > 0
        # exp of the clipped input: no overflow warning from the branch np.where discards.
        negative_part = float(alpha) * np.expm1(np.minimum(x, x.dtype.type(0)))
        out = np.where(positive, x, negative_part)
        ctx.save_for_backward(positive, out)
        ctx.alpha = float(alpha)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        positive, out = ctx.saved_tensors
        # d/dx alpha * (exp(x) - 1) = alpha * exp(x) = out + alpha
        return np.where(positive, g, g * (out + ctx.alpha))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) from exp(-|x|), so that neither branch overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class SigmoidOp(Function):
    """1 / (1 + exp(-x)), computed from exp(-|x|) so neither branch overflows."""

    name = "sigmoid"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("sigmoid", x)
        out = _sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


class SiLUOp(Function):
    """x * sigmoid(x) (swish); the gradient s (1 + x (1 - s)), s = sigmoid(x)."""

    name = "silu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("silu", x)
        s = _sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, s = ctx.saved_tensors
        return g * (s * (1 + x * (1 - s)))


def softplus_array(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) as log1p(exp(-|z|)) + max(z, 0): no overflow for large |z|."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, z.dtype.type(0))


class SoftplusOp(Function):
    """log(1 + exp(beta x)) / beta as PyTorch's softplus, from the stable form
    (log1p(exp(-|z|)) + max(z, 0)) / beta, z = beta x, and x itself where z > threshold; the
    gradient sigmoid(z), 1 where z > threshold."""

    name = "softplus"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, beta: float, threshold: float) -> np.ndarray:
        check_float_input("softplus", x)
        z = x * float(beta)
        linear = z > float(threshold)
        soft = softplus_array(z) / float(beta)
        ctx.save_for_backward(z, linear)
        return np.where(linear, x, soft)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        z, linear = ctx.saved_tensors
        return np.where(linear, g, g * _sigmoid(z))


class MishOp(Function):
    """x * tanh(softplus(x)) as PyTorch's mish; the gradient t + x sigmoid(x) (1 - t^2),
    t = tanh(softplus(x))."""

    name = "mish"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("mish", x)
        t = np.tanh(softplus_array(x))
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, t = ctx.saved_tensors
        return g * (t + x * _sigmoid(x) * (1 - t * t))


def _relu6_of_x_plus_3(x: np.ndarray) -> np.ndarray:
    """min(max(x + 3, 0), 6): hardswish's and hardsigmoid's ramp."""
    return np.minimum(np.maximum(x + 3, x.dtype.type(0)), x.dtype.type(6))


class HardswishOp(Function):
    """x * min(max(x + 3, 0), 6) / 6; PyTorch's gradient: 0 for x <= -3, x / 3 + 1 / 2 for
    -3 < x < 3, 1 for x >= 3 (so 0 at -3 and 1 at 3)."""

    name = "hardswish"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("hardswish", x)
        ctx.save_for_backward(x)
        return x * _relu6_of_x_plus_3(x) / 6

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (x,) = ctx.saved_tensors
        zero = g.dtype.type(0)
        return np.where(x <= -3, zero, np.where(x < 3, g * (x / 3 + 0.5), g))


class HardsigmoidOp(Function):
    """min(max(x + 3, 0), 6) / 6; the gradient 1 / 6 (as PyTorch rounds it) strictly inside
    (-3, 3), 0 elsewhere (at -3 and 3 too, as PyTorch)."""

    name = "hardsigmoid"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("hardsigmoid", x)
        ctx.save_for_backward(x)
        return _relu6_of_x_plus_3(x) / 6

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (x,) = ctx.saved_tensors
        return np.where((x > -3) & (x < 3), g * _HARDSIGMOID_SLOPE, g.dtype.type(0))


# PyTorch's CPU kernel multiplies by `scalar_t(1.0f / 6.0f)`: 1/6 rounded to float32 even for
# float64 (0.16666667163...), which this copies so that gradients agree to the last bits.
_HARDSIGMOID_SLOPE = float(np.float32(1.0) / np.float32(6.0))


# SELU's constants as PyTorch spells them (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class SELUOp(Function):
    """scale * x for x > 0, scale * alpha * (exp(x) - 1) otherwise (SELU_SCALE, SELU_ALPHA);
    the gradient at 0 is scale * alpha, as PyTorch's."""

    name = "selu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("selu", x)
        positive = x > 0
        # expm1 of the clipped input, as ELUOp: exact near 0, no overflow warning from the
        # branch np.where discards.
        negative_part = (SELU_SCALE * SELU_ALPHA) * np.expm1(np.minimum(x, x.dtype.type(0)))
        out = np.where(positive, SELU_SCALE * x, negative_part)
        ctx.save_for_backward(positive, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        positive, out = ctx.saved_tensors
        # d/dx scale * alpha * (exp(x) - 1) = out + scale * alpha
        return np.where(positive, g * SELU_SCALE, g * (out + SELU_SCALE * SELU_ALPHA))


class GELUOp(Function):
    """x * Phi(x), Phi the standard normal CDF (approximate="none", with the C library's erf),
    or PyTorch's tanh form 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""

    name = "gelu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, approximate: str) -> np.ndarray:
        check_float_input("gelu", x)
        ctx.approximate = approximate
        if approximate == "none":
            x = contiguous(x)
            cdf = flat_kernel(_elementwise.erf, (x * (1 / math.sqrt(2)),), None)
            cdf = 0.5 * (1 + cdf)
            ctx.save_for_backward(x, cdf)
            return x * cdf
        if approximate == "tanh":
            t = np.tanh(_GELU_K0 * (x + _GELU_K1 * x**3))
            ctx.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, v = ctx.saved_tensors
        if ctx.approximate == "none":  # Phi(x) + x phi(x)
            return g * (v + x * (np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))))
        inner = _GELU_K0 * (1 + 3 * _GELU_K1 * x * x)
        return g * (0.5 * (1 + v) + 0.5 * x * (1 - v * v) * inner)


_GELU_K0 = math.sqrt(2 / math.pi)
_GELU_K1 = 0.044715


class TanhOp(Function):
    """np.tanh saturates to +-1 without overflow for large |x|. `out` as in ReLU."""

    name = "tanh"
    elementwise = writes_out = inplace_ok = True

    @staticmethod
    def forward(ctx: Context, x, out=None) -> np.ndarray:
        check_float_input("tanh", x)
        out = np.tanh(x, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class LogSigmoidOp(Function):
    """log(sigmoid(x)) as min(x, 0) - log1p(exp(-|x|)) (PyTorch's form: no overflow, and
    exact for large |x|); the gradient 1 - sigmoid(x), from the same exp(-|x|)."""

    name = "logsigmoid"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x) -> np.ndarray:
        check_float_input("logsigmoid", x)
        z = np.exp(-np.abs(x))
        ctx.save_for_backward(x, z)
        return np.minimum(x, x.dtype.type(0)) - np.log1p(z)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, z = ctx.saved_tensors
        # 1 - sigmoid(x) is 1 / (1 + z) for x < 0 and z / (1 + z) otherwise.
        return g * (np.where(x < 0, 1, z) / (1 + z))


class CELUOp(Function):
    """x for x > 0, alpha * (exp(x / alpha) - 1) otherwise (expm1).

    The gradient is PyTorch's elu_backward with input scale s = 1 / alpha, alpha rounded to
    float32 first as PyTorch's derivative formula does: for x <= 0 (and NaN, as its vectorized
    CPU path) s * alpha * exp(x s) (1.000000007 at 0 for alpha 0.7), or with from_result (the
    in-place form, whose input is overwritten) s * (out + alpha); 1 for x > 0.
    """

    name = "celu"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, alpha: float, from_result: bool = False) -> np.ndarray:
        check_float_input("celu", x)
        if alpha == 0:
            raise RuntimeError("celu: alpha cannot be 0 for CELU (it divides the input)")
        alpha = float(alpha)
        positive = x > 0
        # expm1 of the clipped input (-0.0 kept, as PyTorch): no overflow warning from the
        # branch np.where discards; a negative alpha can overflow it for real, to -inf.
        with np.errstate(over="ignore"):
            out = np.where(positive, x, alpha * np.expm1(np.where(positive, 0, x) / alpha))
            if ctx.needs_input_grad[0]:
                input_scale = 1.0 / float(np.float32(alpha))
                if from_result:
                    slope = input_scale * (out + alpha)
                else:
                    slope = input_scale * alpha * np.exp(np.where(positive, 0, x) * input_scale)
                ctx.save_for_backward(np.where(positive, x.dtype.type(1), slope))
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (slope,) = ctx.saved_tensors
        return g * slope


def _outside(x: np.ndarray, lambd: float) -> np.ndarray:
    """x < -lambd or x > lambd: where the shrink functions pass x and its gradient. False for
    NaN, whose gradient is 0 as on PyTorch's vectorized CPU path."""
    bound = x.dtype.type(lambd)
    return (x < -bound) | (x > bound)


class HardshrinkOp(Function):
    """0 for -lambd <= x <= lambd, x elsewhere (NaN stays NaN); the gradient passes where
    |x| > lambd and is 0 elsewhere."""

    name = "hardshrink"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, lambd: float) -> np.ndarray:
        check_float_input("hardshrink", x)
        bound = x.dtype.type(lambd)
        ctx.save_for_backward(_outside(x, lambd))
        return np.where((x >= -bound) & (x <= bound), x.dtype.type(0), x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (outside,) = ctx.saved_tensors
        return np.where(outside, g, g.dtype.type(0))


class SoftshrinkOp(Function):
    """x - lambd for x > lambd, x + lambd for x < -lambd, +0.0 between and NaN for NaN (as
    PyTorch's vectorized CPU path); the gradient passes where |x| > lambd, 0 elsewhere.
    Raises RuntimeError for a negative lambd."""

    name = "softshrink"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, lambd: float) -> np.ndarray:
        check_float_input("softshrink", x)
        largest = float(np.finfo(x.dtype).max)
        if not 0 <= lambd <= largest:
            raise RuntimeError(f"softshrink: lambda must be in range [0, {largest:g}] for input "
                               f"dtype {x.dtype}, but found {lambd}")
        bound = x.dtype.type(lambd)
        outside = _outside(x, lambd)
        ctx.save_for_backward(outside)
        shrunk = np.where(x > bound, x - bound, x + bound)  # NaN stays NaN
        return np.where(outside | np.isnan(x), shrunk, x.dtype.type(0))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (outside,) = ctx.saved_tensors
        return np.where(outside, g, g.dtype.type(0))


class ThresholdOp(Function):
    """value where x <= threshold, x elsewhere (NaN stays NaN); integer inputs too, with value
    cast to their dtype (as PyTorch). The gradient is 0 where x <= threshold."""

    name = "threshold"
    elementwise = True

    @staticmethod
    def forward(ctx: Context, x, *, threshold: float, value: float) -> np.ndarray:
        if x.dtype.kind not in "iuf":
            raise TypeError(f"threshold: expected a float or integer input, got dtype {x.dtype}")
        below = x <= threshold
        ctx.save_for_backward(below)
        return np.where(below, np.asarray(value).astype(x.dtype), x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (below,) = ctx.saved_tensors
        return np.where(below, g.dtype.type(0), g)


class RReLUOp(Function):
    """Randomized leaky ReLU while training (PyTorch's rrelu_with_noise): x for x > 0, x * a
    for x <= 0 with one slope a ~ U(lower, upper) per element, drawn from
    minidl.random.generator(); the gradient is the slope (1 for x > 0). In eval F.rrelu applies
    leaky_relu with slope (lower + upper) / 2 instead."""

    name = "rrelu"

    @staticmethod
    def forward(ctx: Context, x, *, lower: float, upper: float) -> np.ndarray:
        from minidl.random import generator

        check_float_input("rrelu", x)
        slopes = generator().uniform(lower, upper, x.shape).astype(x.dtype)
        noise = np.where(x <= 0, slopes, x.dtype.type(1))
        ctx.save_for_backward(noise)
        return x * noise

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (noise,) = ctx.saved_tensors
        return g * noise


def _single_axis(op: str, dim: int, ndim: int) -> int:
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    return normalize_axes(op, dim, max(ndim, 1))[0]


def log_softmax_array(x: np.ndarray, axis: int) -> np.ndarray:
    """x - logsumexp(x) along `axis`, shifted by the max so exp never overflows. An empty
    axis gives an empty result (as PyTorch)."""
    if x.ndim and x.shape[axis] == 0:
        return np.empty_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


class SoftmaxOp(Function):
    """exp(x - max) / sum(exp(x - max)) along `dim`."""

    name = "softmax"

    @staticmethod
    def forward(ctx: Context, x, *, dim: int) -> np.ndarray:
        check_float_input("softmax", x)
        axis = _single_axis("softmax", dim, x.ndim)
        if x.ndim and x.shape[axis] == 0:
            out = np.empty_like(x)
        else:
            out = np.exp(x - x.max(axis=axis, keepdims=True))
            out /= out.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return out * (g - (g * out).sum(axis=ctx.axis, keepdims=True))


class LogSoftmaxOp(Function):
    """x - logsumexp(x) along `dim`."""

    name = "log_softmax"

    @staticmethod
    def forward(ctx: Context, x, *, dim: int) -> np.ndarray:
        check_float_input("log_softmax", x)
        axis = _single_axis("log_softmax", dim, x.ndim)
        out = log_softmax_array(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


class DropoutOp(Function):
    """Zero each element with probability p and scale the rest by 1 / (1 - p).

    The mask is drawn from minidl.random.generator(), so manual_seed / set_rng_state reproduce it.
    """

    name = "dropout"

    @staticmethod
    def forward(ctx: Context, x, *, p: float) -> np.ndarray:
        from minidl.random import generator

        check_float_input("dropout", x)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p must be in [0, 1], got {p}")
        if p == 1.0:
            mask = np.zeros(x.shape, dtype=x.dtype)
        else:
            keep = generator().random(x.shape, dtype=x.dtype) >= x.dtype.type(p)
            mask = keep * x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (mask,) = ctx.saved_tensors
        return g * mask


def _standardized(x: np.ndarray, axes: tuple, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(x - mean) * rstd over axes and rstd = 1 / sqrt(biased var + eps), kept dims: the
    statistics of LayerNorm and GroupNorm."""
    centered = x - x.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    return centered * rstd, rstd


def _standardized_grad(gh: np.ndarray, xhat: np.ndarray, rstd: np.ndarray,
                       axes: tuple) -> np.ndarray:
    """The input gradient of _standardized, from the gradient gh of its output xhat."""
    return rstd * (gh - gh.mean(axis=axes, keepdims=True)
                   - xhat * (gh * xhat).mean(axis=axes, keepdims=True))


class LayerNormOp(Function):
    """x (..., *normalized_shape) normalized over its last `dims` dims: (x - mean) / sqrt(var +
    eps) * weight + bias, var biased (PyTorch's); weight and bias of normalized_shape, or None.
    """

    name = "layer_norm"

    @staticmethod
    def forward(ctx: Context, x, weight, bias, *, dims: int, eps: float) -> np.ndarray:
        check_float_input("layer_norm", x)
        shape = x.shape[x.ndim - dims:]
        for name, p in (("weight", weight), ("bias", bias)):
            if p is not None and p.shape != shape:
                raise ValueError(f"layer_norm: {name} has shape {p.shape}, expected {shape}")
        axes = tuple(range(x.ndim - dims, x.ndim))
        ctx.axes, ctx.batch_axes = axes, tuple(range(x.ndim - dims))
        if x.size == 0:
            ctx.save_for_backward(x, x, weight)
            return x.copy()
        xhat, rstd = _standardized(x, axes, eps)
        ctx.save_for_backward(xhat, rstd, weight)
        y = xhat if weight is None else xhat * weight
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        xhat, rstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        axes, batch = ctx.axes, ctx.batch_axes
        gx = None
        if need_x:
            gh = g if weight is None else g * weight
            gx = _standardized_grad(gh, xhat, rstd, axes) if g.size else np.zeros_like(g)
        gw = (g * xhat).sum(axis=batch) if need_w else None
        gb = g.sum(axis=batch) if need_b else None
        return gx, gw, gb


class GroupNormOp(Function):
    """x (N, C, *) normalized over each of `groups` groups of C / groups channels (and every
    spatial position) per sample, var biased (PyTorch's), then weight and bias (C,) per
    channel, or None.

    Each (sample, group) is a channel of batch norm's kernels on the (1, N * groups, rest)
    view: statistics in float64 (as BatchNorm's), the input gradient from the same sums.
    groups == C is instance normalization (F.instance_norm)."""

    name = "group_norm"

    @staticmethod
    def forward(ctx: Context, x, weight, bias, *, groups: int, eps: float) -> np.ndarray:
        check_float_input("group_norm", x)
        if x.ndim < 2 or x.shape[1] % groups:
            raise ValueError(f"group_norm: expected an input (N, C, *) with C divisible by "
                             f"num_groups={groups}, got shape {x.shape}")
        channels = (x.shape[1],)
        for name, p in (("weight", weight), ("bias", bias)):
            if p is not None and p.shape != channels:
                raise ValueError(f"group_norm: {name} has shape {p.shape}, expected {channels}")
        ctx.shape, ctx.channel = x.shape, (1, -1) + (1,) * (x.ndim - 2)
        if x.size == 0:
            ctx.save_for_backward(x, x, None, None, weight)
            return x.copy()
        x3 = contiguous(x).reshape(1, x.shape[0] * groups, -1)
        mean, var, invstd, scale, shift = (np.empty(x3.shape[1]) for _ in range(5))
        xhat = np.empty(x3.shape, dtype=x.dtype)
        _bn.batch_norm_forward(x3, None, None, eps, mean, var, invstd, scale, shift, xhat, True,
                               get_num_threads())
        xhat = xhat.reshape(x.shape)
        ctx.save_for_backward(x3, xhat, mean, invstd, weight)
        y = xhat if weight is None else xhat * weight.reshape(ctx.channel)
        return y if bias is None else y + bias.reshape(ctx.channel)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x3, xhat, mean, invstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        axes = (0,) + tuple(range(2, g.ndim))
        gx = None
        if need_x:
            gx = np.zeros_like(g)
            if g.size:
                gh = g if weight is None else g * weight.reshape(ctx.channel)
                sum_g, sum_gxc = np.empty(x3.shape[1]), np.empty(x3.shape[1])
                # scale = invstd: the affine weight is already in gh.
                _bn.batch_norm_backward(x3, contiguous(gh).reshape(x3.shape), mean, invstd,
                                        invstd, gx.reshape(x3.shape), sum_g, sum_gxc, True,
                                        get_num_threads(), None)
        gw = (g * xhat).sum(axis=axes) if need_w else None
        gb = g.sum(axis=axes) if need_b else None
        return gx, gw, gb


class BatchNormOp(Function):
    """Batch normalization over every axis but 1 (channels): (N, C), (N, C, L), (N, C, H, W).

    x: (N, C, ...); weight, bias: (C,) or None (affine=False); running_mean, running_var: (C,)
    arrays updated in place when training (running_var with the unbiased batch variance, as
    PyTorch does), or None. training=False with running statistics normalizes with them;
    without running statistics the batch statistics are always used.

    num_batches_tracked: a 0-d int64 array counted up in place by each training step that
    updates running statistics, or None. momentum=None makes the update a cumulative average
    (factor 1 / num_batches_tracked). Every state change happens here, inside the op, so a
    static graph that replays the op replays them too.

    Kernels (minidl._kernels.batchnorm): statistics in float64 from fixed-size chunks merged in
    a fixed order (bitwise identical for any thread count), then y = x * scale + shift per
    channel; backward recomputes x_hat from the saved input instead of storing it. `out` as in
    minidl.ops.elementwise.

    relu=True is the static graphs' fusion of a following ReLU (BN+ReLU of every ResNet block):
    the kernel clamps while writing y, and backward masks the gradient where the output was <= 0
    exactly as ReLU's backward does (recomputing x * scale + shift as the forward rounded it,
    rather than reading y back), so results equal BatchNorm then ReLU bit for bit.
    """

    name = "batch_norm"
    writes_out = True
    epilogues = ("relu",)

    @staticmethod
    def forward(ctx: Context, x, weight, bias, *, running_mean, running_var, training: bool,
                momentum: float | None, eps: float, num_batches_tracked=None,
                out=None, relu: bool = False) -> np.ndarray:
        check_float_input("batch_norm", x)
        if x.ndim < 2:
            raise ValueError(f"batch_norm: expected an input of shape (N, C, ...), got {x.shape}")
        channels = x.shape[1]
        for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
            if a is not None and a.shape != (channels,):
                raise ValueError(
                    f"batch_norm: {name} has shape {a.shape}, expected ({channels},) for an "
                    f"input of shape {x.shape}"
                )
        x3 = contiguous(x).reshape(x.shape[0], channels, int(np.prod(x.shape[2:])))
        count = x3.shape[0] * x3.shape[2]
        threads = get_num_threads()
        use_batch_stats = training or running_mean is None or running_var is None
        if use_batch_stats and count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got "
                f"input of shape {x.shape}"
            )
        if use_batch_stats:
            mean, var = np.empty(channels), np.empty(channels)
        else:
            mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        invstd, scale, shift = np.empty(channels), np.empty(channels), np.empty(channels)
        y = np.empty(x.shape, dtype=x.dtype) if out is None else out
        _bn.batch_norm_forward(x3, _float64(weight), _float64(bias), eps, mean, var, invstd,
                               scale, shift, y.reshape(x3.shape), use_batch_stats, threads, relu)
        if training and use_batch_stats and running_mean is not None and running_var is not None:
            _update_running_stats(running_mean, running_var, num_batches_tracked, momentum,
                                  mean, var * (count / (count - 1)))
        ctx.save_for_backward(x3, mean, invstd, scale, shift if relu else None)
        ctx.batch_stats = use_batch_stats
        ctx.weight_dtype = None if weight is None else weight.dtype
        return y

    @staticmethod
    def channel_affine(weight, bias, dtype, attrs: dict):
        """At inference (training=False with running statistics) y = x * scale + shift per
        channel: (scale, shift) from the current running statistics, as forward computes
        them; None when the batch statistics are used."""
        mean, var = attrs["running_mean"], attrs["running_var"]
        if attrs["training"] or mean is None or var is None:
            return None
        _, scale, shift = _bn.batch_norm_affine(mean.astype(np.float64), var.astype(np.float64),
                                                _float64(weight), _float64(bias), attrs["eps"],
                                                dtype)
        return scale, shift

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x3, mean, invstd, scale, relu_shift = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        channels = x3.shape[1]
        sum_g = np.empty(channels)
        sum_gxc = np.empty(channels)
        gx = np.empty(g.shape, dtype=x3.dtype) if need_x else None
        # With the fused ReLU the kernel masks g where the output was <= 0, as ReLU.backward.
        _bn.batch_norm_backward(
            x3, contiguous(g).reshape(x3.shape), mean, invstd, scale,
            None if gx is None else gx.reshape(x3.shape), sum_g, sum_gxc, ctx.batch_stats,
            get_num_threads(), relu_shift,
        )
        gw = (sum_gxc * invstd).astype(ctx.weight_dtype) if need_w else None
        gb = sum_g.astype(g.dtype) if need_b else None
        return gx, gw, gb


def _float64(a):
    """A per-channel parameter as the kernels take it: (C,) float64, or None."""
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64)


def _update_running_stats(running_mean: np.ndarray, running_var: np.ndarray,
                          num_batches_tracked, momentum: float | None, mean: np.ndarray,
                          unbiased_var: np.ndarray) -> None:
    """running = (1 - m) * running + m * batch, in place, m = momentum or, with momentum=None,
    1 / num_batches_tracked (a cumulative average); counts num_batches_tracked up."""
    if num_batches_tracked is not None:
        num_batches_tracked += 1
    if momentum is None:
        if num_batches_tracked is None:
            raise ValueError(
                "batch_norm: momentum=None (cumulative average) needs num_batches_tracked"
            )
        m = 1.0 / float(num_batches_tracked)
    else:
        m = float(momentum)
    running_mean *= 1.0 - m
    running_mean += (m * mean).astype(running_mean.dtype)
    running_var *= 1.0 - m
    running_var += (m * unbiased_var).astype(running_var.dtype)
