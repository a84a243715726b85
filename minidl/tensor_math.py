"""PyTorch's tensor functions beyond minidl.tensor's core: scans, splits, products, elementwise
math, order statistics, counting and einsum, each `minidl.X` and (where PyTorch has the
method) `Tensor.X`, with PyTorch 2.13's dtypes, defaults, keyword names and errors.

Most are composites of differentiable Tensor ops (indexing, gather, where, matmul, ...), so
their gradients are those ops'; the rest apply an op of minidl.ops (cumprod, logcumsumexp,
the elementwise functions of ops.elementwise_math, median, einsum). Results of integer
functions (trunc, floor_divide, bincount, searchsorted, ...) carry no gradient, as floor and
round in minidl.tensor.

The Tensor methods are bound in one place, at the end (METHODS).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl import graph, return_types
from minidl.device import check_device
from minidl.dtypes import check_dtype, get_default_dtype, result_type
from minidl.ops import contiguous
from minidl.ops.order import lower_median_index
from minidl.tensor import (
    Tensor,
    _along,
    _array_of,
    _cast_operand,
    _dim_index,
    _integer_divisor_checked,
    _operand_array,
    _promoted,
    concatenate,
    concrete,
    tensor,
    where,
)

_cumprod = graph.op("cumprod").apply
_logcumsumexp = graph.op("logcumsumexp").apply
_median = graph.op("median").apply
_einsum = graph.op("einsum").apply
_atan2 = graph.op("atan2").apply
_hypot = graph.op("hypot").apply
_fmod = graph.op("fmod").apply
_remainder = graph.op("remainder").apply
_logaddexp = graph.op("logaddexp").apply
_xlogy = graph.op("xlogy").apply
_expm1 = graph.op("expm1").apply
_log1p = graph.op("log1p").apply
_frac = graph.op("frac").apply


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def _wrap(array: Any) -> Tensor:
    return Tensor._wrap(contiguous(np.asarray(array)), False)


def _not_implemented(op: str, dtype: np.dtype) -> NotImplementedError:
    return NotImplementedError(f'"{op}" not implemented for {dtype} tensors (neither is '
                               "PyTorch's kernel)")


def _refuse_bool(op: str, *tensors: Tensor) -> None:
    """PyTorch's CPU kernels of sorting, counting and searching (and trunc, einsum, addcmul)
    have no bool version."""
    if all(t.dtype == np.bool_ for t in tensors):
        raise _not_implemented(op, np.dtype(np.bool_))


def _unary_float(op: str, x: Any, ints_to_float: bool) -> Tensor:
    """x as a float tensor: integer and bool inputs become the default float dtype
    (ints_to_float, as torch.expm1) or raise NotImplementedError (as torch.frac)."""
    x = _tensor(x)
    if x.dtype.kind == "f":
        return x
    if not ints_to_float:
        raise _not_implemented(op, x.dtype)
    return x.astype(get_default_dtype())


def _binary_operands(op: str, a: Any, b: Any, ints_to_float: bool) -> tuple[Any, Any]:
    """The operands cast to PyTorch's result dtype; integral results become the default
    float dtype (ints_to_float) or raise NotImplementedError."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = tensor(a)
    aa, ba = _operand_array(a), _operand_array(b)
    dt = result_type(aa, ba)
    if dt.kind != "f":
        if not ints_to_float:
            raise _not_implemented(op, dt)
        dt = get_default_dtype()
    return _cast_operand(a, aa, dt), _cast_operand(b, ba, dt)


# -- elementwise -------------------------------------------------------------------------------
def atan2(input: Any, other: Any) -> Tensor:  # noqa: A002 (PyTorch's keyword names)
    """The angle of (other, input) in (-pi, pi]; integer inputs give the default float
    dtype."""
    return _atan2(*_binary_operands("atan2", input, other, ints_to_float=True))


def hypot(input: Any, other: Any) -> Tensor:  # noqa: A002
    """sqrt(input^2 + other^2) without overflow; floating point dtypes only."""
    return _hypot(*_binary_operands("hypot", input, other, ints_to_float=False))


def logaddexp(input: Any, other: Any) -> Tensor:  # noqa: A002
    """log(exp(input) + exp(other)) without overflow; floating point dtypes only."""
    return _logaddexp(*_binary_operands("logaddexp", input, other, ints_to_float=False))


def xlogy(input: Any, other: Any) -> Tensor:  # noqa: A002
    """input * log(other), 0 where input is 0 (unless other is NaN); either may be a
    number."""
    return _xlogy(*_binary_operands("xlogy", input, other, ints_to_float=True))


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    """The operands promoted to PyTorch's result dtype (two numbers: the first as a
    tensor)."""
    return _promoted(a if isinstance(a, Tensor) or isinstance(b, Tensor) else tensor(a), b)


def _division_remainder(op: str, apply, input: Any, other: Any) -> Tensor:  # noqa: A002
    a, b = _pair(input, other)
    if np.result_type(_array_of(a), _array_of(b)).kind != "f":
        x, y = _integer_divisor_checked(op, a, b)
        return _wrap(np.fmod(x, y) if op == "fmod" else np.remainder(x, y))
    return apply(a, b)


def fmod(input: Any, other: Any) -> Tensor:  # noqa: A002
    """The remainder of truncated division, with the dividend's sign (C's fmod). An integer
    divisor holding 0 raises RuntimeError."""
    return _division_remainder("fmod", _fmod, input, other)


def remainder(input: Any, other: Any) -> Tensor:  # noqa: A002
    """The remainder of floor division, with the divisor's sign (Python's %). An integer
    divisor holding 0 raises RuntimeError."""
    return _division_remainder("remainder", _remainder, input, other)


def floor_divide(input: Any, other: Any) -> Tensor:  # noqa: A002
    """floor(input / other) in the promoted dtype (PyTorch rounds down since 1.13); no
    gradient."""
    a, b = _integer_divisor_checked("floor_divide", *_pair(input, other))
    return _wrap(np.floor_divide(a, b))


def expm1(input: Any) -> Tensor:  # noqa: A002
    """exp(x) - 1, exact near 0."""
    return _expm1(_unary_float("expm1", input, ints_to_float=True))


def log1p(input: Any) -> Tensor:  # noqa: A002
    """log(1 + x), exact near 0."""
    return _log1p(_unary_float("log1p", input, ints_to_float=True))


def frac(input: Any) -> Tensor:  # noqa: A002
    """x - trunc(x); floating point dtypes only."""
    return _frac(_unary_float("frac", input, ints_to_float=False))


def trunc(input: Any) -> Tensor:  # noqa: A002
    """Rounded toward zero; integer tensors are returned as a copy of their dtype."""
    x = _tensor(input)
    _refuse_bool("trunc", x)
    return _wrap(np.trunc(x.data) if x.dtype.kind == "f" else x.data.copy())


fix = trunc


def float_power(input: Any, exponent: Any) -> Tensor:  # noqa: A002
    """input ** exponent computed in float64 (the result is float64 whatever the inputs)."""
    base = _tensor(input).astype(np.float64)
    if isinstance(exponent, Tensor):
        return base ** exponent.astype(np.float64)
    return base ** float(exponent)


def deg2rad(input: Any) -> Tensor:  # noqa: A002
    return _unary_float("deg2rad", input, ints_to_float=True) * (math.pi / 180)


def rad2deg(input: Any) -> Tensor:  # noqa: A002
    return _unary_float("rad2deg", input, ints_to_float=True) * (180 / math.pi)


def heaviside(input: Any, values: Any) -> Tensor:  # noqa: A002
    """0 where input < 0 (and where it is NaN), values where it is 0, 1 where it is > 0.
    input and values must have one dtype (PyTorch raises otherwise); no gradient."""
    x, v = _tensor(input), _tensor(values)
    if x.dtype != v.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different "
                           f"dtypes ({x.dtype} and {v.dtype})")
    one = np.ones((), x.dtype)
    return _wrap(np.where(x.data == 0, v.data, np.where(x.data > 0, one, np.zeros_like(one))))


def lerp(input: Any, end: Any, weight: Any) -> Tensor:  # noqa: A002
    """input + weight * (end - input), in PyTorch's two forms (weight < 0.5 from input, else
    from end: exact at both ends). input, end and a tensor weight must share one floating
    point dtype."""
    start, end = _tensor(input), _tensor(end)
    if start.dtype.kind != "f":
        raise _not_implemented("lerp", start.dtype)
    for name, t in (("end", end), ("weight", weight)):
        if isinstance(t, Tensor) and t.dtype != start.dtype:
            raise RuntimeError(f"lerp: expected dtype {start.dtype} for `{name}` but got "
                               f"dtype {t.dtype}")
    diff = end - start
    if not isinstance(weight, Tensor):
        w = float(weight)
        return start + w * diff if abs(w) < 0.5 else end - diff * (1 - w)
    small = np.abs(concrete(weight, "lerp")) < 0.5
    return where(small, start + weight * diff, end - diff * (1 - weight))


# -- products ----------------------------------------------------------------------------------
def _check_matrix_dtypes(op: str, *tensors: Tensor) -> None:
    if len({t.dtype for t in tensors}) > 1:
        raise RuntimeError(f"{op}: expected all operands to have the same dtype, got "
                           f"{[str(t.dtype) for t in tensors]}")


def _scaled_sum(op: str, input: Any, product: Tensor, beta: Any, alpha: Any) -> Tensor:
    """beta * input + alpha * product; beta = 0 ignores input (NaN and inf in it too), as
    PyTorch's addmm does, and gives it a zero gradient (a where that never picks it)."""
    x = _tensor(input)
    try:
        np.broadcast_shapes(tuple(x.shape), tuple(product.shape))
    except ValueError as e:
        raise RuntimeError(f"{op}: input of shape {tuple(x.shape)} does not broadcast to the "
                           f"product's shape {tuple(product.shape)}") from e
    if x.dtype.kind != "f" and (isinstance(alpha, float) or isinstance(beta, float)):
        raise RuntimeError(f"{op}: for integral input tensors, argument alpha and beta must "
                           "not be a floating point number")
    scaled = product if alpha == 1 else product * alpha
    if beta == 0:
        return where(np.zeros((), bool), x, scaled)
    return scaled + (x if beta == 1 else x * beta)


def addmm(input: Any, mat1: Tensor, mat2: Tensor, *, beta: Any = 1,  # noqa: A002
          alpha: Any = 1) -> Tensor:
    """beta * input + alpha * (mat1 @ mat2) for 2-d mat1 (n, m), mat2 (m, p); input
    broadcasts to (n, p)."""
    _check_matrix_dtypes("addmm", _tensor(input), mat1, mat2)
    return _scaled_sum("addmm", input, mat1.mm(mat2), beta, alpha)


def baddbmm(input: Any, batch1: Tensor, batch2: Tensor, *, beta: Any = 1,  # noqa: A002
            alpha: Any = 1) -> Tensor:
    """beta * input + alpha * bmm(batch1, batch2) for batch1 (b, n, m), batch2 (b, m, p)."""
    _check_matrix_dtypes("baddbmm", _tensor(input), batch1, batch2)
    return _scaled_sum("baddbmm", input, batch1.bmm(batch2), beta, alpha)


def addcmul(input: Any, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:  # noqa: A002
    """input + value * tensor1 * tensor2 (broadcasting)."""
    x = _tensor(input)
    _refuse_bool("addcmul", x, _tensor(tensor1), _tensor(tensor2))
    if x.dtype.kind != "f" and isinstance(value, float):
        # PyTorch casts value to the integer dtype (0.5 becomes 0).
        value = int(value)
    return x + value * (_tensor(tensor1) * tensor2)


def addcdiv(input: Any, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:  # noqa: A002
    """input + value * tensor1 / tensor2; two integer tensors raise (PyTorch removed the
    integer division it once did)."""
    t1, t2 = _tensor(tensor1), _tensor(tensor2)
    if t1.dtype.kind != "f" and t2.dtype.kind != "f":
        raise RuntimeError("Integer division with addcdiv is no longer supported; use "
                           "addcdiv(input, tensor1.float(), tensor2) or floor_divide")
    return _tensor(input) + value * (t1 / t2)


def outer(input: Tensor, vec2: Tensor) -> Tensor:  # noqa: A002
    """The outer product (n,) x (m,) -> (n, m)."""
    for name, v in (("self", input), ("vec2", vec2)):
        if _tensor(v).ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got "
                               f"{_tensor(v).ndim}-D")
    return _tensor(input).reshape(-1, 1) * _tensor(vec2).reshape(1, -1)


ger = outer


def trace(input: Tensor) -> Tensor:  # noqa: A002
    """The sum of the main diagonal of a 2-d tensor (integers sum as int64)."""
    x = _tensor(input)
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {x.ndim}")
    if x.dtype == np.bool_:
        raise NotImplementedError('"trace" not implemented for bool tensors')
    k = np.arange(min(x.shape))
    return x[k, k].sum()


def _sublist_subscripts(sublist: Any) -> str:
    """One operand's sublist ([0, 1, Ellipsis]) as equation letters: 0-25 are A-Z, 26-51 a-z
    (PyTorch's numbering of letters, so an implicit output keeps the subscripts' order)."""
    letters = []
    for s in sublist:
        if s is Ellipsis:
            letters.append("...")
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 52:
            letters.append(chr(ord("A") + s) if s < 26 else chr(ord("a") + s - 26))
        else:
            raise ValueError(f"einsum(): subscript in subscript list is not within the valid "
                             f"range [0, 52), got {s!r}")
    return "".join(letters)


def _sublist_equation(args: tuple) -> tuple[str, tuple]:
    """torch.einsum's sublist form (op1, sublist1, op2, sublist2, ..., [sublist_out]) as an
    equation and its operands."""
    operands, inputs = args[0::2], args[1::2]
    if len(operands) > len(inputs):  # an odd count: the last item is the output sublist
        operands, out = operands[:-1], "->" + _sublist_subscripts(operands[-1])
    else:
        out = ""
    return ",".join(_sublist_subscripts(s) for s in inputs) + out, tuple(operands)


def einsum(equation: Any, *operands: Any) -> Tensor:
    """Einstein summation (NumPy's grammar, "..." included; "->" optional); differentiable in
    every operand, diagonals ("ii->i") included. All operands must share one dtype.

    Also torch's sublist form: einsum(a, [0, 1], b, [1, 2], [0, 2]) is einsum("AB,BC->AC", a, b).
    """
    if not isinstance(equation, str):
        equation, operands = _sublist_equation((equation,) + operands)
    elif len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = [_tensor(t) for t in operands]
    if not ts:
        raise ValueError("einsum: expected at least one operand")
    _check_matrix_dtypes("einsum", *ts)
    _refuse_bool("einsum", ts[0])
    return _einsum(*ts, equation=equation)


# -- scans -------------------------------------------------------------------------------------
def cumprod(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """Running products along dim; bool and integer inputs give int64 (PyTorch's), dtype=
    casts the input first. Differentiable also where the input holds zeros."""
    x = _tensor(input)
    if dtype is not None:
        x = x.astype(check_dtype("cumprod", dtype))
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    if x.ndim == 0:
        return _cumprod(x.reshape(1), axis=0).reshape(())
    return _cumprod(x, axis=_dim_index("cumprod", dim, x.ndim))


def logcumsumexp(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """log(cumsum(exp(x))) along dim, without overflow; floating point dtypes only."""
    x = _unary_float("logcumsumexp", input, ints_to_float=False)
    if x.ndim == 0:
        return _logcumsumexp(x.reshape(1), axis=0).reshape(())
    return _logcumsumexp(x, axis=_dim_index("logcumsumexp", dim, x.ndim))


def _cumulative_extreme(name: str, input: Tensor, dim: int,  # noqa: A002
                        running) -> tuple[Tensor, Tensor]:
    """(values, indices) of the running extreme along dim (running: np.maximum or
    np.minimum, which propagate NaN). The index is the last position holding the running
    value so far, or a NaN: ties take the later index and each NaN its own, as PyTorch's CPU
    kernel."""
    x = _tensor(input)
    flat = x.reshape(1) if x.ndim == 0 else x
    axis = _dim_index(name, dim, flat.ndim)
    values = running.accumulate(concrete(flat, name), axis=axis) if flat.numel() else flat.data
    position = np.arange(flat.shape[axis]).reshape(
        [-1 if i == axis else 1 for i in range(flat.ndim)])
    hit = flat.data == values
    if flat.dtype.kind == "f":
        hit |= np.isnan(flat.data)
    index = contiguous(np.maximum.accumulate(np.where(hit, position, 0), axis=axis)
                       if flat.numel() else np.zeros(flat.shape, np.int64))
    picked = flat.gather(axis, index.astype(np.int64))
    if x.ndim == 0:
        return picked.reshape(()), _wrap(index.reshape(()).astype(np.int64))
    return picked, _wrap(index.astype(np.int64))


def cummax(input: Tensor, dim: int) -> Any:  # noqa: A002
    """(values, indices) of the running maximum along dim (return_types.cummax)."""
    return return_types.cummax(*_cumulative_extreme("cummax", input, dim, np.maximum))


def cummin(input: Tensor, dim: int) -> Any:  # noqa: A002
    """(values, indices) of the running minimum along dim (return_types.cummin)."""
    return return_types.cummin(*_cumulative_extreme("cummin", input, dim, np.minimum))


def diff(input: Tensor, n: int = 1, dim: int = -1, prepend: Any = None,  # noqa: A002
         append: Any = None) -> Tensor:
    """The n-th forward difference along dim, after joining prepend and append (tensors of
    input's dims) to it; bool tensors differ by logical xor, as in PyTorch."""
    x = _tensor(input)
    if x.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    if n < 0:
        raise RuntimeError(f"order must be non-negative but got {n}")
    axis = _dim_index("diff", dim, x.ndim)
    parts = [_tensor(p) for p in (prepend,) if p is not None] + [x] + [
        _tensor(p) for p in (append,) if p is not None]
    if len(parts) > 1:
        x = concatenate(parts, axis)
    for _ in range(n):
        if x.shape[axis] == 0:
            break
        later, earlier = x[_along(axis, slice(1, None))], x[_along(axis, slice(None, -1))]
        x = later ^ earlier if x.dtype == np.bool_ else later - earlier
    return x


# -- splitting, joining, rearranging -------------------------------------------------------------
def tensor_split(input: Tensor, indices_or_sections: Any, dim: int = 0) -> tuple:  # noqa: A002
    """Split along dim into `sections` parts (the first size % sections one longer), or at
    the given indices (a list, tuple or 1-d integer tensor; a 0-d tensor is sections)."""
    x = _tensor(input)
    if x.ndim == 0:
        raise RuntimeError("tensor_split expected at least a 1-dimensional tensor, but got "
                           "a tensor with 0 dims")
    axis = _dim_index("tensor_split", dim, x.ndim)
    spec = indices_or_sections
    if isinstance(spec, Tensor):
        if spec.dtype.kind not in "iu" or spec.ndim > 1:
            raise RuntimeError("tensor_split expected tensor_indices_or_sections to be a "
                               "zero-dimensional or one-dimensional tensor of integers, but "
                               f"got a {spec.ndim}-d {spec.dtype} tensor")
        spec = int(spec.item()) if spec.ndim == 0 else [int(i) for i in spec.data]
    n = x.shape[axis]
    if isinstance(spec, (int, np.integer)):
        if spec <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {spec}")
        size, extra = divmod(n, int(spec))
        bounds = np.cumsum([0] + [size + 1] * extra + [size] * (int(spec) - extra))
    else:
        cuts = [int(i) for i in spec]
        bounds = [0] + cuts + [n]
    parts = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        start = min(max(int(start) + n if start < 0 else int(start), 0), n)
        stop = min(max(int(stop) + n if stop < 0 else int(stop), 0), n)
        parts.append(x[_along(axis, slice(start, max(start, stop)))])
    return tuple(parts)


def take_along_dim(input: Tensor, indices: Any, dim: int | None = None) -> Tensor:  # noqa: A002
    """input.gather(dim, indices) after broadcasting both (except along dim); dim=None
    indexes the flattened input with the flattened indices."""
    x, idx = _tensor(input), np.asarray(_array_of(indices))
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"take_along_dim(): dtype of indices should be int64 but got "
                           f"{idx.dtype}")
    if dim is None:
        return x.reshape(-1).gather(0, idx.reshape(-1))
    axis = _dim_index("take_along_dim", dim, x.ndim)
    if idx.ndim != x.ndim:
        raise RuntimeError(f"take_along_dim(): input and indices should have the same number "
                           f"of dimensions, but got {x.ndim} dimensions for input, and "
                           f"{idx.ndim} dimensions for indices")
    try:
        shape = list(np.broadcast_shapes(
            tuple(1 if i == axis else s for i, s in enumerate(x.shape)),
            tuple(1 if i == axis else s for i, s in enumerate(idx.shape))))
    except ValueError as e:
        raise RuntimeError(f"take_along_dim(): shapes {tuple(x.shape)} and {idx.shape} do "
                           f"not broadcast outside dim {axis}") from e
    shape_x, shape_i = list(shape), list(shape)
    shape_x[axis], shape_i[axis] = x.shape[axis], idx.shape[axis]
    if not (-x.shape[axis] <= idx).all() or not (idx < x.shape[axis]).all():
        raise IndexError(f"take_along_dim(): index out of range for dim {axis} of size "
                         f"{x.shape[axis]}")
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    source = x if list(x.shape) == shape_x else x.expand(shape_x)
    return source.gather(axis, contiguous(np.broadcast_to(idx, shape_i)))


def unflatten(input: Tensor, dim: int, sizes: Any) -> Tensor:  # noqa: A002
    return _tensor(input).unflatten(dim, sizes)


def _atleast(args: tuple, ndim: int, shape_of) -> Any:
    ts = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    out = tuple(t if _tensor(t).ndim >= ndim else _tensor(t).reshape(shape_of(_tensor(t)))
                for t in map(_tensor, ts))
    return out[0] if len(args) == 1 and not isinstance(args[0], (list, tuple)) else out


def atleast_1d(*tensors: Any) -> Any:
    """Each tensor with at least 1 dim (0-d -> (1,)); one tensor in, one out, else a
    tuple."""
    return _atleast(tensors, 1, lambda t: (1,))


def atleast_2d(*tensors: Any) -> Any:
    """Each tensor with at least 2 dims: 0-d -> (1, 1), (n,) -> (1, n)."""
    return _atleast(tensors, 2, lambda t: (1, t.numel()))


def atleast_3d(*tensors: Any) -> Any:
    """Each tensor with at least 3 dims: 0-d -> (1, 1, 1), (n,) -> (1, n, 1),
    (m, n) -> (m, n, 1)."""
    return _atleast(tensors, 3, lambda t: (1, t.numel(), 1) if t.ndim < 2 else
                    (*t.shape, 1))


def column_stack(tensors: Sequence[Any]) -> Tensor:
    """Join along dim 1, 0-d and 1-d tensors as columns (n, 1)."""
    ts = [_tensor(t) for t in tensors]
    return concatenate([t.reshape(t.numel(), 1) if t.ndim <= 1 else t for t in ts], 1)


def dstack(tensors: Sequence[Any]) -> Tensor:
    """Join along dim 2 after atleast_3d."""
    return concatenate(list(atleast_3d(list(tensors))), 2)


def rot90(input: Tensor, k: int = 1, dims: Sequence[int] = (0, 1)) -> Tensor:  # noqa: A002
    """Rotate by k * 90 degrees in the plane of dims, from the first dim toward the
    second."""
    x = _tensor(input)
    dims = list(dims)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if x.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {x.ndim}")
    d0, d1 = (_dim_index("rot90", d, x.ndim) for d in dims)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {dims[0]} "
                           f"and dim1 = {dims[1]}")
    k %= 4
    if k == 1:
        return x.flip(d1).transpose(d0, d1)
    if k == 2:
        return x.flip((d0, d1))
    if k == 3:
        return x.flip(d0).transpose(d0, d1)
    return x.clone()


def _triangle_indices(name: str, pick, row: int, col: int, offset: int, dtype: Any,
                      device: Any) -> Tensor:
    check_device(name, device)
    if row < 0 or col < 0:
        raise RuntimeError(f"{name}: row and col must be non-negative, got {row} and {col}")
    dt = check_dtype(name, np.int64 if dtype is None else dtype)
    if dt.kind not in "iu":
        raise RuntimeError(f"{name}: dtype must be an integer dtype, got {dt}")
    rows, cols = pick(row, offset, col)
    return _wrap(np.stack([rows, cols]).astype(dt).reshape(2, -1))


def triu_indices(row: int, col: int, offset: int = 0, *, dtype: Any = None,
                 device: Any = None) -> Tensor:
    """The (2, N) row-major indices of the upper triangle of a (row, col) matrix, from
    diagonal `offset` up."""
    return _triangle_indices("triu_indices", np.triu_indices, row, col, offset, dtype,
                             device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype: Any = None,
                 device: Any = None) -> Tensor:
    """The (2, N) row-major indices of the lower triangle of a (row, col) matrix, up to
    diagonal `offset`."""
    return _triangle_indices("tril_indices", np.tril_indices, row, col, offset, dtype,
                             device)


def meshgrid(*tensors: Any, indexing: str | None = None) -> tuple:
    """Coordinate grids of 0-d or 1-d tensors of one dtype. indexing='ij' (the default, with
    PyTorch's warning when it is not given): shape (n0, n1, ...); 'xy' swaps the first two
    dims (shape (n1, n0, ...))."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass "
                      "the indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                           f"received: {indexing}")
    ts = [_tensor(t) for t in tensors]
    if not ts:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    if len({t.dtype for t in ts}) > 1:
        raise RuntimeError("meshgrid expects all tensors to have the same dtype")
    if any(t.ndim > 1 for t in ts):
        raise RuntimeError("torch.meshgrid: Expected 0D or 1D tensor in the tensor list")
    flat = [t.reshape(-1) for t in ts]
    if indexing == "xy" and len(flat) >= 2:
        flat[0], flat[1] = flat[1], flat[0]
    shape = tuple(t.shape[0] for t in flat)
    grids = [t.reshape([-1 if j == i else 1 for j in range(len(flat))]).expand(shape)
             for i, t in enumerate(flat)]
    if indexing == "xy" and len(grids) >= 2:
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


# -- reductions and order statistics ---------------------------------------------------------
def _reduced_dim(name: str, x: Tensor, dim: int) -> int:
    axis = _dim_index(name, dim, x.ndim)
    if x.ndim and x.shape[axis] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {axis} to have non-zero size.")
    return axis


def _pick_by_rank(x: Tensor, axis: int, rank: np.ndarray,
                  keepdim: bool) -> tuple[Tensor, Tensor]:
    """(values, indices) of the elements at sorted position `rank` (keepdims shape) along
    axis; values gather from x, so the gradient goes to the picked element."""
    order = np.argsort(concrete(x, "sort"), axis=axis, kind="stable")  # NaN last, as PyTorch
    index = np.take_along_axis(order, rank, axis=axis)
    values = x.gather(axis, index)
    if not keepdim:
        values, index = values.squeeze(axis), index.squeeze(axis)
    return values, _wrap(index.astype(np.int64))


def median(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:  # noqa: A002
    """The lower median of all elements (a 0-d tensor; NaN if any is NaN, or if there are
    none), or along dim the named tuple (values, indices) (return_types.median; a row holding
    NaN gives NaN and the index of its first NaN). The median of all elements shares its
    gradient between the elements equal to it, as PyTorch's."""
    x = _tensor(input)
    _refuse_bool("median", x)
    if dim is None:
        return _median(x)
    if x.ndim == 0:
        return return_types.median(x.clone(), _wrap(np.array(0, np.int64)))
    axis = _reduced_dim("median", x, dim)
    n = x.shape[axis]
    rank = np.full(tuple(1 if i == axis else s for i, s in enumerate(x.shape)),
                   lower_median_index(n), np.int64)
    if x.dtype.kind == "f":
        valid = np.sum(~np.isnan(concrete(x, "median")), axis=axis, keepdims=True)
        rank = np.where(valid < n, valid, rank)
    return return_types.median(*_pick_by_rank(x, axis, rank, keepdim))


def nanmedian(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:  # noqa: A002
    """median ignoring NaN: the lower median of the elements that are not NaN (NaN, index 0
    where there are none); return_types.nanmedian along dim."""
    x = _tensor(input)
    _refuse_bool("nanmedian", x)
    if dim is None:
        return _median(x, ignore_nan=True)
    if x.ndim == 0:
        return return_types.nanmedian(x.clone(), _wrap(np.array(0, np.int64)))
    axis = _reduced_dim("nanmedian", x, dim)
    valid = np.sum(~np.isnan(concrete(x, "nanmedian")), axis=axis, keepdims=True) if (
        x.dtype.kind == "f") else \
        np.full(tuple(1 if i == axis else s for i, s in enumerate(x.shape)), x.shape[axis])
    rank = np.maximum(valid - 1, 0) // 2
    return return_types.nanmedian(*_pick_by_rank(x, axis, rank, keepdim))


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> Any:  # noqa: A002
    """(values, indices) of the k-th smallest element along dim (k from 1; NaN counts as the
    largest), return_types.kthvalue."""
    x = _tensor(input)
    _refuse_bool("kthvalue", x)
    flat = x.reshape(1) if x.ndim == 0 else x
    axis = _dim_index("kthvalue", dim, flat.ndim)
    if not 1 <= k <= flat.shape[axis]:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {axis}")
    rank = np.full(tuple(1 if i == axis else s for i, s in enumerate(flat.shape)), k - 1,
                   np.int64)
    values, index = _pick_by_rank(flat, axis, rank, keepdim or x.ndim == 0)
    if x.ndim == 0:
        return return_types.kthvalue(values.reshape(()), index.reshape(()))
    return return_types.kthvalue(values, index)


def nansum(input: Tensor, dim: Any = None, keepdim: bool = False, *,  # noqa: A002
           dtype: Any = None) -> Tensor:
    """sum treating NaN as 0 (integers sum as int64)."""
    x = _tensor(input)
    if x.dtype.kind == "f":
        x = where(x.isnan(), x.new_zeros(()), x)
    return x.sum(dim=dim, keepdim=keepdim, dtype=dtype)


def nanmean(input: Tensor, dim: Any = None, keepdim: bool = False, *,  # noqa: A002
            dtype: Any = None) -> Tensor:
    """The mean of the non-NaN elements (NaN where there are none); floating point only."""
    x = _tensor(input) if dtype is None else _tensor(input).astype(dtype)
    if x.dtype.kind != "f":
        raise RuntimeError(f"nanmean(): expected input to have floating point dtype but got "
                           f"{x.dtype}")
    present = ~x.isnan()
    total = where(present, x, x.new_zeros(())).sum(dim=dim, keepdim=keepdim)
    return total / present.sum(dim=dim, keepdim=keepdim).astype(x.dtype)


def _moments(name: str, spread, input: Tensor, dim: Any, unbiased: Any,  # noqa: A002
             keepdim: bool, correction: Any) -> tuple[Tensor, Tensor]:
    x = _tensor(input)
    if x.dtype.kind != "f":
        raise RuntimeError(f"{name} only support floating point and complex dtypes")
    if isinstance(dim, bool):  # var_mean(x, False): PyTorch's (input, unbiased) overload
        dim, unbiased = None, dim
    return (spread(x, dim, unbiased=unbiased, keepdim=keepdim, correction=correction),
            x.mean(dim, keepdim=keepdim))


def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None,  # noqa: A002
             keepdim: bool = False, *, correction: Any = None) -> tuple[Tensor, Tensor]:
    """(variance, mean) over dim (all dims by default); correction=1 unless given."""
    return _moments("var_mean", Tensor.var, input, dim, unbiased, keepdim, correction)


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None,  # noqa: A002
             keepdim: bool = False, *, correction: Any = None) -> tuple[Tensor, Tensor]:
    """(standard deviation, mean) over dim; correction=1 unless given."""
    return _moments("std_mean", Tensor.std, input, dim, unbiased, keepdim, correction)


_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(name: str, input: Tensor, q: Any, dim: Any, keepdim: bool, interpolation: str,
              ignore_nan: bool) -> Tensor:
    x = _tensor(input)
    if x.dtype.kind != "f":
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    if isinstance(q, Tensor):
        if q.dtype != x.dtype:
            raise RuntimeError(f"{name}() q tensor must be same dtype as the input tensor")
        if q.ndim > 1:
            raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
        qs, q_dim = concrete(q, name).reshape(-1), q.ndim == 1
    else:
        qs, q_dim = np.asarray([q], x.dtype), False
    if x.numel() == 0:
        raise RuntimeError(f"{name}() input tensor must be non-empty")
    if not ((qs >= 0) & (qs <= 1)).all():
        raise RuntimeError(f"{name}() q values must be in the range [0, 1], got {qs.tolist()}")
    if interpolation not in _INTERPOLATIONS:
        raise RuntimeError(f"{name}() interpolation must be one of linear, lower, higher, "
                           f"midpoint or nearest. Got '{interpolation}'")
    if dim is None:
        rows = x.reshape(-1)
        out_shape = (1,) * x.ndim if keepdim else ()
    else:
        axis = _dim_index(name, dim, x.ndim)
        rows = x.movedim(axis, -1) if x.ndim else x.reshape(1)
        out_shape = tuple(1 if i == axis else n for i, n in enumerate(x.shape)) if keepdim \
            else tuple(n for i, n in enumerate(x.shape) if i != axis)
    ordered = rows.sort(-1).values  # (R..., n), NaN last
    n = ordered.shape[-1]
    # Ranks in the input's dtype, as PyTorch computes them (q * last index).
    nan_mask = np.isnan(ordered.data)
    lead = (len(qs),) + (1,) * (ordered.ndim - 1) + (1,)
    q_col = qs.astype(x.dtype).reshape(lead)
    if ignore_nan:
        valid = (~nan_mask).sum(-1, keepdims=True).astype(x.dtype)
        ranks = np.maximum(q_col * (valid - 1), 0)
    else:
        ranks = q_col * x.dtype.type(n - 1)
        ranks = np.where(nan_mask.any(-1, keepdims=True), x.dtype.type(n - 1), ranks)
    ranks = np.broadcast_to(ranks, (len(qs),) + ordered.shape[:-1] + (1,))
    if interpolation == "lower":
        ranks = np.floor(ranks)
    elif interpolation == "higher":
        ranks = np.ceil(ranks)
    elif interpolation == "nearest":
        ranks = np.round(ranks)  # half to even, as torch.round
    below_rank = ranks.astype(np.int64)
    expanded = ordered.unsqueeze(0).expand((len(qs),) + tuple(ordered.shape))
    result = expanded.gather(-1, contiguous(below_rank))
    if interpolation in ("linear", "midpoint"):
        weights = _wrap(np.full(ranks.shape, 0.5, x.dtype) if interpolation == "midpoint" else (
            ranks - below_rank).astype(x.dtype))
        if interpolation == "linear" and isinstance(q, Tensor):
            # The same weights as a function of q, so q gets PyTorch's gradient too: the
            # rank q * scale moves between two fixed order statistics.
            scale = np.maximum(valid - 1, 0) if ignore_nan else np.full(
                nan_mask.any(-1, keepdims=True).shape, n - 1, x.dtype)
            weights = q.reshape(lead) * _wrap(scale.astype(x.dtype)) - _wrap(
                below_rank.astype(x.dtype))
            if not ignore_nan:
                weights = where(nan_mask.any(-1, keepdims=True), weights.new_zeros(()), weights)
        above = expanded.gather(-1, contiguous(np.ceil(ranks).astype(np.int64)))
        result = lerp(result, above, weights)
    result = result.reshape((len(qs),) + out_shape)
    return result if q_dim else result.reshape(out_shape)


def quantile(input: Tensor, q: Any, dim: int | None = None, keepdim: bool = False, *,  # noqa: A002
             interpolation: str = "linear") -> Tensor:
    """The q-th quantiles (q a number or a 1-d tensor in [0, 1]: the result then has q's dim
    first) along dim, or of all elements; interpolation 'linear', 'lower', 'higher',
    'midpoint' or 'nearest' between the two order statistics around q * (n - 1). A row
    holding NaN gives NaN."""
    return _quantile("quantile", input, q, dim, keepdim, interpolation, ignore_nan=False)


def nanquantile(input: Tensor, q: Any, dim: int | None = None, keepdim: bool = False, *,  # noqa: A002
                interpolation: str = "linear") -> Tensor:
    """quantile ignoring NaN (a row of NaN only gives NaN)."""
    return _quantile("nanquantile", input, q, dim, keepdim, interpolation, ignore_nan=True)


# -- counting and searching ----------------------------------------------------------------------
def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,  # noqa: A002
           return_counts: bool = False, dim: int | None = None) -> Any:
    """The distinct elements (or along dim, the distinct slices), always sorted (PyTorch's
    CPU result for sorted=False is sorted too); NaNs are all distinct, as in PyTorch. With
    return_inverse / return_counts a tuple (values, inverse, counts) of those asked for."""
    x = _tensor(input)
    if dim is None:
        values, inverse, counts = np.unique(x.data.reshape(-1), return_inverse=True,
                                            return_counts=True, equal_nan=False)
        inverse = inverse.reshape(x.shape)
    else:
        axis = _dim_index("unique", dim, x.ndim)
        if any(n == 0 for i, n in enumerate(x.shape) if i != axis):
            raise RuntimeError("unique: there are 0-sized dimensions, and they aren't selected, "
                               "so unique cannot be applied")
        values, inverse, counts = np.unique(x.data, return_inverse=True, return_counts=True,
                                            axis=axis, equal_nan=False)
        inverse = inverse.reshape(-1)
    out = [_wrap(values)]
    if return_inverse:
        out.append(_wrap(inverse.astype(np.int64)))
    if return_counts:
        out.append(_wrap(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def bincount(input: Tensor, weights: Any = None, minlength: int = 0) -> Tensor:  # noqa: A002
    """Counts of each value of a 1-d non-negative integer tensor (int64), or the sums of
    weights per value (float32 weights sum as float32, others as float64)."""
    x = _tensor(input)
    if x.dtype.kind not in "iu":
        raise _not_implemented("bincount", x.dtype)
    if x.ndim != 1 or (x.numel() and x.data.min() < 0):
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if minlength < 0:
        raise RuntimeError(f"bincount: minlength should be >= 0, got {minlength}")
    if weights is None:
        return _wrap(np.bincount(x.data, minlength=minlength).astype(np.int64))
    w = np.asarray(_array_of(weights))
    if w.shape != tuple(x.shape):
        raise RuntimeError("weights should be 1-d and have the same length as input")
    dt = np.float32 if w.dtype == np.float32 else np.float64
    return _wrap(np.bincount(x.data, weights=w.astype(np.float64),
                             minlength=minlength).astype(dt))


def searchsorted(sorted_sequence: Tensor, input: Any, *, out_int32: bool = False,  # noqa: A002
                 right: bool = False, side: str | None = None, sorter: Any = None) -> Tensor:
    """For each value of input, the index in sorted_sequence (sorted along its last dim) where
    it would be inserted to keep the order: the first such index, or the last with
    right=True / side='right'. An N-d sorted_sequence searches row by row, its leading dims
    matching input's."""
    seq = _tensor(sorted_sequence)
    _refuse_bool("searchsorted", seq)
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but "
                               f"got '{side}'")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, "
                               "got side of left while right was True")
        right = side == "right"
    values = np.asarray(_array_of(input))
    rows = seq.data
    if sorter is not None:
        rows = np.take_along_axis(rows, np.asarray(_array_of(sorter)), axis=-1)
    if seq.ndim == 0:
        raise RuntimeError("torch.searchsorted(): boundaries tensor should be 1 dimension or "
                           "the first N-1 dimensions of boundaries tensor and input value "
                           "tensor must match")
    where_ = "right" if right else "left"
    if rows.ndim == 1:
        out = np.searchsorted(rows, values, side=where_)
    else:
        if values.shape[:-1] != rows.shape[:-1]:
            raise RuntimeError(f"torch.searchsorted(): boundaries tensor should be 1 dimension "
                               f"or the first N-1 dimensions of boundaries tensor and input "
                               f"value tensor must match, but we got boundaries tensor "
                               f"{list(rows.shape)} and input value tensor {list(values.shape)}")
        flat_rows = rows.reshape(-1, rows.shape[-1])
        flat_values = values.reshape(-1, values.shape[-1])
        out = np.stack([np.searchsorted(r, v, side=where_)
                        for r, v in zip(flat_rows, flat_values)]).reshape(values.shape)
    return _wrap(np.asarray(out).astype(np.int32 if out_int32 else np.int64))


def bucketize(input: Any, boundaries: Tensor, *, out_int32: bool = False,  # noqa: A002
              right: bool = False) -> Tensor:
    """The bucket of each value: i with boundaries[i-1] < x <= boundaries[i] (right=False)
    or boundaries[i-1] <= x < boundaries[i] (right=True); boundaries is 1-d, increasing."""
    b = _tensor(boundaries)
    if b.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({b.ndim})")
    return searchsorted(b, input, out_int32=out_int32, right=right)


# The functions PyTorch also offers as Tensor methods (torch.Tensor.X), bound here in one place.
METHODS = (
    "atan2", "hypot", "logaddexp", "xlogy", "fmod", "remainder", "floor_divide", "expm1",
    "log1p", "frac", "trunc", "fix", "float_power", "deg2rad", "rad2deg", "heaviside", "lerp",
    "addmm", "baddbmm", "addcmul", "addcdiv", "outer", "ger", "trace", "cumprod",
    "logcumsumexp", "cummax", "cummin", "diff", "tensor_split", "take_along_dim", "rot90",
    "median", "nanmedian", "kthvalue", "nansum", "nanmean", "quantile", "nanquantile", "unique",
    "bincount",
)
Tensor.arctan2 = atan2
for _name in METHODS:
    setattr(Tensor, _name, globals()[_name])
del _name
arctan2 = atan2

__all__ = sorted(
    [*METHODS, "arctan2", "einsum", "unflatten", "atleast_1d", "atleast_2d", "atleast_3d",
     "column_stack", "dstack", "triu_indices", "tril_indices", "meshgrid", "var_mean",
     "std_mean", "searchsorted", "bucketize"]
)
