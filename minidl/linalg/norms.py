"""Norms and condition numbers: linalg.vector_norm, matrix_norm, norm and cond, composites of
Tensor.norm (the vector p-norms, with PyTorch's subgradients at 0 and at ties), abs/sum/amax
and svdvals, so their gradients are those ops'."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.dtypes import check_dtype
from minidl.linalg.checks import (
    LinAlgError,
    as_tensor_arg,
    check_float,
    check_matrix,
    check_square,
    first_zero_pivot,
    torch_dtype_name,
)
from minidl.linalg.decompositions import svdvals
from minidl.linalg.solvers import inv
from minidl.tensor import Tensor, concrete, where

_MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf)


def _cast(op: str, x: Tensor, dtype: Any) -> Tensor:
    """x in dtype, which must be a float dtype at least as wide as x's (PyTorch's rule)."""
    check_float(op, x)
    if dtype is None:
        return x
    dtype = check_dtype(op, dtype)
    if dtype.kind != "f":
        raise RuntimeError(f"{op}: dtype should be floating point or complex, but got "
                           f"{torch_dtype_name(dtype)}")
    if dtype.itemsize < x.dtype.itemsize:
        raise RuntimeError(f"{op}: the dtype of the input ({torch_dtype_name(x.dtype)}) should "
                           "be convertible without narrowing to the specified dtype "
                           f"({torch_dtype_name(dtype)})")
    return x.to(dtype)


def vector_norm(x: Tensor, ord: float = 2, dim: Any = None,  # noqa: A002 (PyTorch's names)
                keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """The ord-norm of x over dim (an int, a tuple, or None: all elements): ord any number,
    inf (max |x|), -inf (min |x|), 0 (the count of nonzeros). dtype: x is cast to it first.
    The gradient at x = 0 is 0; at ties of inf/-inf it is shared equally."""
    x = as_tensor_arg(x)
    if isinstance(ord, (bool, str)) or not isinstance(ord, (int, float, np.number)):
        raise TypeError(f"linalg_vector_norm(): argument 'ord' (position 2) must be Number, "
                        f"not {type(ord).__name__}")
    x = _cast("linalg.vector_norm", x, dtype)
    if isinstance(dim, list):
        dim = tuple(dim)
    return x.norm(p=float(ord), dim=dim, keepdim=keepdim)


def _check_dims(op: str, A: Tensor, dim: Any) -> tuple[int, int]:  # noqa: N803
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise RuntimeError(f"{op}: dim must be a 2-tuple. Got {dim}")
    first, second = (d % A.ndim if -A.ndim <= d < A.ndim else None for d in dim)
    if first is None or second is None:
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-A.ndim}, {A.ndim - 1}], but got {dim})")
    if first == second:
        raise RuntimeError(f"{op}: dims must be different. Got ({dim[0]}, {dim[1]})")
    return first, second


def matrix_norm(A: Tensor, ord: Any = "fro", dim: tuple[int, int] = (-2, -1),  # noqa: N803, A002
                keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """The ord-norm of each matrix of A over the two dims: "fro", "nuc" (sum of singular
    values), 2 / -2 (largest / smallest singular value), 1 / -1 (max / min column abs sum),
    inf / -inf (max / min row abs sum). RuntimeError for another ord or an A below 2-D."""
    A = as_tensor_arg(A)
    op = "linalg.matrix_norm"
    check_float(op, A)
    check_matrix(op, A)
    if isinstance(ord, bool) or ord not in _MATRIX_ORDS:
        raise RuntimeError(f"{op}: Order {ord} not supported.")
    A = _cast(op, A, dtype)
    rows, cols = _check_dims(op, A, dim)
    if ord == "fro":
        return A.norm(p=2.0, dim=(rows, cols), keepdim=keepdim)
    if ord in ("nuc", 2, -2):
        s = svdvals(A.movedim((rows, cols), (-2, -1)))
        out = s.sum(dim=-1) if ord == "nuc" else (s.amax(dim=-1) if ord == 2 else s.amin(dim=-1))
        if keepdim:
            for d in sorted((rows, cols)):
                out = out.unsqueeze(d)
        return out
    # 1: the column sums (over the rows dim) then their maximum; inf: the row sums
    summed, reduced = (rows, cols) if ord in (1, -1) else (cols, rows)
    sums = A.abs().sum(dim=summed, keepdim=True)
    out = sums.amax(dim=reduced, keepdim=True) if ord > 0 else sums.amin(dim=reduced,
                                                                          keepdim=True)
    return out if keepdim else out.squeeze((rows, cols))


def norm(A: Tensor, ord: Any = None, dim: Any = None, keepdim: bool = False,  # noqa: N803, A002
         *, dtype: Any = None) -> Tensor:
    """vector_norm or matrix_norm by PyTorch's rule: dim an int or 1-tuple, or dim None with
    ord None or a 1-D A: a vector norm (ord default 2; all elements when dim and ord are
    None); dim a 2-tuple, or dim None with a 2-D A and an ord: a matrix norm (default "fro").
    RuntimeError for an ord with dim None and A of another number of dims."""
    A = as_tensor_arg(A)
    if isinstance(dim, int):
        dim = (dim,)
    if dim is not None:
        if len(dim) not in (1, 2):
            raise RuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. "
                               f"Got {list(dim)}")
        if isinstance(ord, str):  # a matrix order: matrix_norm's error for the 1-tuple
            return matrix_norm(A, ord, dim[0] if len(dim) == 1 else tuple(dim), keepdim,
                               dtype=dtype)
        if len(dim) == 1:
            return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
        return matrix_norm(A, "fro" if ord is None else ord, tuple(dim), keepdim, dtype=dtype)
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim not in (1, 2):
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be "
                           f"1D or 2D. Got {A.ndim}D.")
    if A.ndim == 2 or isinstance(ord, str):
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    return vector_norm(A, ord, None, keepdim, dtype=dtype)


def cond(A: Tensor, p: Any = None) -> Tensor:  # noqa: N803
    """The condition number of each matrix A (..., m, n) in the p-norm: p None or 2 (s_max /
    s_min, any shape), -2 (s_min / s_max), or another matrix_norm order for square A:
    norm(A) * norm(A^{-1}), inf where A is singular."""
    A = as_tensor_arg(A)
    if A.ndim >= 2 and 0 in A.shape[-2:]:  # PyTorch's condition number of an empty matrix
        check_float("linalg.cond", A)
        return A.new_zeros(tuple(A.shape[:-2]))
    if p is None or (not isinstance(p, (bool, str)) and p in (2, -2)):
        s = svdvals(A)
        big, small = s[..., 0], s[..., -1]
        return big / small if p != -2 else small / big
    check_float("linalg.cond", A)
    check_matrix("linalg.cond", A)
    check_square(f"linalg.cond(ord={p})", A)
    if isinstance(p, bool) or p not in _MATRIX_ORDS:
        raise RuntimeError(f"linalg.matrix_norm: Order {p} not supported.")
    try:
        return matrix_norm(A, p) * matrix_norm(inv(A), p)
    except LinAlgError:
        pass
    # Some matrices are singular: their condition number is inf; the rest are computed with
    # the singular ones replaced by the identity.
    flat = concrete(A, "linalg.cond").reshape((-1,) + A.shape[-2:])
    singular = np.array([first_zero_pivot(m) > 0 for m in flat]).reshape(A.shape[:-2])
    identity = np.eye(A.shape[-1], dtype=A.dtype)
    safe = where(singular[..., None, None], identity, A)
    return where(singular, math.inf, matrix_norm(safe, p) * matrix_norm(inv(safe), p))
