"""PyTorch's elementwise functions beyond minidl.tensor's and minidl.tensor_math's: the
inverse trigonometric and hyperbolic functions, log2/log10/exp2, the special functions
(erfc, erfinv, lgamma, digamma, i0, sinc, logit), copysign, fmax/fmin, gcd/lcm, ldexp,
logaddexp2, nextafter, the bitwise functions and operators, PyTorch's aliases (multiply,
greater, absolute, arccos, ...), and the in-place forms `x.op_()` of these and of the older
elementwise methods, each `minidl.X` and `Tensor.X` as in PyTorch 2.13.

In-place forms follow minidl.Tensor._inplace: a leaf that requires grad raises while
recording, and a recorded result takes over the tensor's history. Results without gradient
(floor_, comparisons, bitwise ops) go through Tensor._inplace_without_grad, which cuts it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import graph
from minidl.dtypes import result_type as _result_type
from minidl.tensor import (
    Tensor,
    _array_of,
    _integer_divisor_checked,
    _operand_array,
    _promoted,
    tensor,
)
from minidl.tensor_math import _binary_operands, _not_implemented, _tensor, _unary_float

_div = graph.op("div").apply
_logit = graph.op("logit").apply

# Unary functions of a floating point tensor (integer and bool inputs become the default
# float dtype, as in PyTorch), each the op of its name: name -> what it computes.
_UNARY = {
    "tan": "tan(x)", "asin": "arcsin(x), NaN outside [-1, 1]",
    "acos": "arccos(x), NaN outside [-1, 1]", "atan": "arctan(x)", "sinh": "sinh(x)",
    "cosh": "cosh(x)", "asinh": "arsinh(x)", "acosh": "arcosh(x), NaN below 1",
    "atanh": "artanh(x), +-inf at +-1, NaN outside", "log2": "log base 2",
    "log10": "log base 10", "exp2": "2 ** x", "erfc": "1 - erf(x), exact for large x",
    "erfinv": "the inverse of erf (+-inf at +-1, NaN outside [-1, 1])",
    "lgamma": "log|Gamma(x)| (inf at 0, -1, -2, ...)",
    "digamma": "d/dx lgamma(x) (-inf at 0, NaN at the negative integers)",
    "i0": "the modified Bessel function of the first kind, order 0",
    "sinc": "sin(pi x) / (pi x), 1 at 0 (the normalized sinc)",
}


def _unary_function(name: str):
    apply = graph.op(name).apply

    def fn(input: Any) -> Tensor:  # noqa: A002 (PyTorch's keyword name)
        return apply(_unary_float(name, input, ints_to_float=True))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (f"{_UNARY[name]}, elementwise; integer and bool tensors give the "
                  "default float dtype.")
    return fn


for _name in _UNARY:
    globals()[_name] = _unary_function(_name)

_ALIASES = {"arccos": "acos", "arcsin": "asin", "arctan": "atan", "arccosh": "acosh",
            "arcsinh": "asinh", "arctanh": "atanh"}
for _alias, _name in _ALIASES.items():
    globals()[_alias] = globals()[_name]


def logit(input: Any, eps: float | None = None) -> Tensor:  # noqa: A002
    """log(z / (1 - z)) with z = input clamped to [eps, 1 - eps] (not clamped for None);
    the gradient is 0 where eps clamps, NaN outside [0, 1] without eps."""
    return _logit(_unary_float("logit", input, ints_to_float=True),
                  eps=None if eps is None else float(eps))


def sgn(input: Any) -> Tensor:  # noqa: A002
    """sign(x) (for real tensors PyTorch's sgn is sign); no gradient, as sign."""
    return _tensor(input).sign()


def signbit(input: Any) -> Tensor:  # noqa: A002
    """True where the sign bit is set (-0.0 and negative NaN too); bool tensor."""
    x = _tensor(input)
    data = np.signbit(x.data) if x.dtype != np.bool_ else np.zeros(x.data.shape, bool)
    return Tensor._wrap(np.asarray(data), False)


# -- binary ------------------------------------------------------------------------------------
def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    return _promoted(a if isinstance(a, Tensor) or isinstance(b, Tensor) else tensor(a), b)


def _float_binary(name: str, op_name: str, ints_to_float: bool, doc: str):
    apply = graph.op(op_name).apply

    def fn(input: Any, other: Any) -> Tensor:  # noqa: A002
        return apply(*_binary_operands(name, input, other, ints_to_float=ints_to_float))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


copysign = _float_binary(
    "copysign", "copysign", True, "|input| with other's sign (other a tensor or a number); "
    "integer inputs give the default float dtype. other's gradient is 0.")
logaddexp2 = _float_binary(
    "logaddexp2", "logaddexp2", False,
    "log2(2 ** input + 2 ** other) without overflow; floating point dtypes only.")
nextafter = _float_binary(
    "nextafter", "nextafter", False,
    "The next floating point value after input toward other; floating point dtypes only.")


def _extreme(name: str, op_name: str, doc: str):
    apply = graph.op(op_name).apply

    def fn(input: Any, other: Any) -> Tensor:  # noqa: A002
        return apply(*_pair(input, other))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


fmax = _extreme("fmax", "fmax", "Elementwise max that ignores NaN (NaN only where both are); "
                "on ties the gradient goes to input.")
fmin = _extreme("fmin", "fmin", "Elementwise min that ignores NaN (NaN only where both are); "
                "on ties the gradient goes to input.")


def _integer_pair(name: str, input: Any, other: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(other, Tensor):
        raise TypeError(f"{name}(): argument 'other' must be Tensor, not "
                        f"{type(other).__name__}")
    a, b = _pair(_tensor(input), other)
    a, b = np.asarray(_array_of(a)), np.asarray(_array_of(b))
    if a.dtype.kind not in "iu":
        raise _not_implemented(f"{name}_cpu", a.dtype)
    return a, b


def gcd(input: Any, other: Tensor) -> Tensor:  # noqa: A002
    """The greatest common divisor (non-negative) of integer tensors; no gradient."""
    return Tensor._wrap(np.asarray(np.gcd(*_integer_pair("gcd", input, other))), False)


def lcm(input: Any, other: Tensor) -> Tensor:  # noqa: A002
    """The least common multiple (non-negative, wrapping on overflow as PyTorch's) of integer
    tensors; no gradient."""
    a, b = _integer_pair("lcm", input, other)
    with np.errstate(all="ignore"):
        g = np.gcd(a, b)
        out = np.where(g == 0, 0, np.abs(a // np.where(g == 0, 1, g) * b))
    return Tensor._wrap(np.asarray(out.astype(a.dtype)), False)


def ldexp(input: Any, other: Tensor) -> Tensor:  # noqa: A002
    """input * 2 ** other (PyTorch's composite: integer inputs give the default float
    dtype)."""
    if not isinstance(other, Tensor):
        raise TypeError(f"ldexp(): argument 'other' must be Tensor, not {type(other).__name__}")
    return _tensor(input) * (2.0 ** other)


# -- bitwise -----------------------------------------------------------------------------------
def _bitwise_operands(name: str, a: Any, b: Any, kinds: str = "biu"
                      ) -> tuple[np.ndarray, np.ndarray]:
    aa, ba = _operand_array(a), _operand_array(b)
    dt = _result_type(aa, ba)
    if dt.kind not in kinds:
        raise _not_implemented(f"{name}_cpu", dt)
    return np.asarray(aa).astype(dt), np.asarray(ba).astype(dt)


def _bitwise(name: str, fn, doc: str):
    def op(input: Any, other: Any) -> Tensor:  # noqa: A002
        a, b = _bitwise_operands(name, _tensor(input) if not isinstance(other, Tensor)
                                 else input, other)
        return Tensor._wrap(np.asarray(fn(a, b)), False)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


bitwise_and = _bitwise("bitwise_and", np.bitwise_and, "input & other for integer and bool "
                       "tensors (float raises NotImplementedError); no gradient.")
bitwise_or = _bitwise("bitwise_or", np.bitwise_or, "input | other for integer and bool tensors.")
bitwise_xor = _bitwise("bitwise_xor", np.bitwise_xor, "input ^ other for integer and bool "
                       "tensors.")


def _shift(a: np.ndarray, s: np.ndarray, left: bool) -> np.ndarray:
    # PyTorch defines shifts by a negative amount or by the width or more: 0 (the sign's
    # fill, -1 or 0, for a right shift of a signed value); C leaves them undefined.
    bits = a.dtype.itemsize * 8
    valid = (s >= 0) & (s < bits)
    safe = np.where(valid, s, 0).astype(a.dtype)
    with np.errstate(all="ignore"):
        if left:
            return np.where(valid, np.left_shift(a, safe), a.dtype.type(0))
        fill = np.where(a < 0, a.dtype.type(-1) if a.dtype.kind == "i" else 0, a.dtype.type(0))
        return np.where(valid, np.right_shift(a, safe), fill).astype(a.dtype)


def bitwise_left_shift(input: Any, other: Any) -> Tensor:  # noqa: A002
    """input << other (integer tensors; shifting by a negative amount or the width or more
    gives 0)."""
    a, b = _bitwise_operands("lshift", input if isinstance(input, Tensor) or isinstance(
        other, Tensor) else tensor(input), other, kinds="iu")
    return Tensor._wrap(np.asarray(_shift(a, b, left=True)), False)


def bitwise_right_shift(input: Any, other: Any) -> Tensor:  # noqa: A002
    """input >> other, arithmetic for signed dtypes (out-of-range amounts give the sign's
    fill)."""
    a, b = _bitwise_operands("rshift", input if isinstance(input, Tensor) or isinstance(
        other, Tensor) else tensor(input), other, kinds="iu")
    return Tensor._wrap(np.asarray(_shift(a, b, left=False)), False)


def bitwise_not(input: Any) -> Tensor:  # noqa: A002
    """~input for integer and bool tensors (float raises TypeError, as PyTorch's ~)."""
    x = _tensor(input)
    if x.dtype.kind not in "biu":
        raise TypeError(f"~ (operator.invert) is only implemented on integer and Boolean-type "
                        f"tensors, got {x.dtype}")
    return Tensor._wrap(np.invert(x.data), False)


# -- division with rounding_mode and the aliases ---------------------------------------------
def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:  # noqa: A002
    """input / other; rounding_mode None (true division: integers give the default float
    dtype), "trunc" (rounded toward zero) or "floor" (rounded down) in the promoted dtype,
    without gradient. An integer divisor holding 0 raises RuntimeError with a rounding mode."""
    if rounding_mode is None:
        return input / other if isinstance(input, Tensor) else _tensor(other).__rtruediv__(input)
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                         f"but found '{rounding_mode}'")
    a, b = _pair(input, other)
    dt = _result_type(_operand_array(a), _operand_array(b))
    a, b = _integer_divisor_checked("div", a, b)
    a, b = np.asarray(a).astype(dt), np.asarray(b).astype(dt)
    if np.result_type(a, b).kind != "f":
        out = np.floor_divide(a, b)
        if rounding_mode == "trunc":  # one up where the floor went below a negative quotient
            out = out + ((out < 0) & (out * b != a)).astype(out.dtype)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.floor_divide(a, b) if rounding_mode == "floor" else np.trunc(a / b)
    return Tensor._wrap(np.asarray(out), False)


def true_divide(input: Any, other: Any) -> Tensor:  # noqa: A002
    return div(input, other)


def positive(input: Any) -> Tensor:  # noqa: A002
    """input itself (bool raises, as PyTorch's)."""
    x = _tensor(input)
    if x.dtype == np.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return x


def result_type(tensor1: Any, tensor2: Any) -> np.dtype:
    """The dtype PyTorch's promotion gives an elementwise op of the two (tensors or
    numbers)."""
    return _result_type(_operand_array(tensor1), _operand_array(tensor2))


# -- in-place forms ----------------------------------------------------------------------------
# With gradient: self takes the op's node (Tensor._inplace).
_INPLACE = (
    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
    "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "log", "log2", "log10",
    "log1p", "exp2", "expm1", "rsqrt", "erf", "erfc", "erfinv", "lgamma", "digamma", "i0",
    "sinc", "logit", "square", "frac", "deg2rad", "rad2deg", "negative", "absolute",
    "nan_to_num", "clamp_min", "clamp_max", "atan2", "arctan2", "hypot", "fmod", "remainder",
    "xlogy", "copysign", "ldexp", "nextafter", "lerp", "multiply", "divide", "subtract",
    "true_divide", "cumsum", "cumprod",
)
# Without gradient (minidl gives these results none): Tensor._inplace_without_grad.
_INPLACE_NO_GRAD = (
    "floor", "ceil", "round", "trunc", "fix", "sign", "sgn", "eq", "ne", "lt", "le", "gt",
    "ge", "greater", "greater_equal", "less", "less_equal", "not_equal", "logical_and",
    "logical_or", "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_not", "bitwise_left_shift", "bitwise_right_shift", "gcd", "lcm", "floor_divide",
    "heaviside",
)


def inplace_method(name: str, recorded: bool):
    """Tensor.<name>_: self = self.<name>(...), recorded (Tensor._inplace) or, for results
    without gradient, not (Tensor._inplace_without_grad)."""
    method_name = name + "_"

    def method(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        def compute(x: Tensor) -> Tensor:
            return getattr(x, name)(*args, **kwargs)

        if recorded:
            return self._inplace(method_name, compute, *args, *kwargs.values())
        return self._inplace_without_grad(method_name, compute)

    method.__name__ = method.__qualname__ = method_name
    method.__doc__ = f"In place: self = self.{name}(...), in self's dtype."
    return method


def float_power_(self: Tensor, exponent: Any) -> Tensor:
    """self = self ** exponent in float64; self must be float64 (PyTorch raises otherwise)."""
    if self.dtype != np.float64:
        raise RuntimeError(f"the base given to float_power_ has dtype {self.dtype} but the "
                           "operation's result requires dtype float64")
    return self._inplace("float_power_", lambda x: x.float_power(exponent), exponent)


# -- binding -----------------------------------------------------------------------------------
_METHODS = (
    *_UNARY, *_ALIASES, "logit", "sgn", "signbit", "copysign", "logaddexp2", "nextafter",
    "fmax", "fmin", "gcd", "lcm", "ldexp", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_not", "bitwise_left_shift", "bitwise_right_shift", "div", "true_divide",
    "positive",
)
for _name in _METHODS:
    setattr(Tensor, _name, globals()[_name])
Tensor.divide = div

# PyTorch's alias methods of older Tensor methods.
_METHOD_ALIASES = {
    "multiply": "mul", "subtract": "sub", "negative": "neg", "absolute": "abs",
    "greater": "gt", "greater_equal": "ge", "less": "lt", "less_equal": "le", "not_equal": "ne",
    "swapdims": "swapaxes",
}
for _alias, _name in _METHOD_ALIASES.items():
    setattr(Tensor, _alias, getattr(Tensor, _name))

for _name in _INPLACE:
    setattr(Tensor, _name + "_", inplace_method(_name, recorded=True))
for _name in _INPLACE_NO_GRAD:
    setattr(Tensor, _name + "_", inplace_method(_name, recorded=False))
Tensor.float_power_ = float_power_


def _operator(fn, reflected: bool = False):
    def method(self: Tensor, other: Any) -> Tensor:
        return fn(other, self) if reflected else fn(self, other)

    return method


for _dunder, _fn in (("and", bitwise_and), ("or", bitwise_or), ("xor", bitwise_xor),
                     ("lshift", bitwise_left_shift), ("rshift", bitwise_right_shift)):
    setattr(Tensor, f"__{_dunder}__", _operator(_fn))
    setattr(Tensor, f"__r{_dunder}__", _operator(_fn, reflected=True))
    setattr(Tensor, f"__i{_dunder}__", inplace_method(_fn.__name__, recorded=False))
Tensor.__invert__ = bitwise_not


def _function_of_method(name: str):
    def fn(input: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        return getattr(_tensor(input), name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"minidl.{name}(x, ...) is x.{name}(...)."
    return fn


# torch.<name> for the alias methods and the in-place forms PyTorch offers as functions.
_FUNCTIONS_OF_METHODS = (
    *_METHOD_ALIASES, "abs_", "absolute", "acos_", "acosh_", "arccos_", "arccosh_", "arcsin_",
    "arcsinh_", "arctan_", "arctanh_", "asin_", "asinh_", "atan_", "atanh_", "ceil_", "cos_",
    "cosh_", "deg2rad_", "erf_", "erfc_", "exp_", "exp2_", "expm1_", "fix_", "floor_", "frac_",
    "gcd_", "i0_", "lcm_", "ldexp_", "log_", "log10_", "log1p_", "log2_", "logit_",
    "nan_to_num_", "neg_", "negative_", "rad2deg_", "reciprocal_", "relu_", "round_",
    "rsqrt_", "sigmoid_", "sin_", "sinc_", "sinh_", "sqrt_", "square_", "tan_", "tanh_",
    "trunc_", "xlogy_", "clamp_", "clip_",
)
for _name in _FUNCTIONS_OF_METHODS:
    globals()[_name] = _function_of_method(_name)
del _name, _alias, _dunder, _fn

__all__ = sorted({*_METHODS, *_FUNCTIONS_OF_METHODS, "result_type"})
