"""Inverses and linear solves: linalg.inv, solve, pinv, lstsq, matrix_rank, matrix_power,
tensorinv and tensorsolve.

inv, solve and pinv are ops. inv and solve have the closed-form gradients of X = A^{-1} B:
dB = A^{-T} G and dA = -dB X^T (for inv, B = I: dA = -X^T G X^T); pinv's is Golub and
Pereyra's. lstsq, matrix_power and the tensor forms are composites of them and matmul, so
their gradients are those ops'; matrix_rank has none (an integer result).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl import graph
from minidl.graph import Context, Function
from minidl.linalg.checks import (
    LinAlgError,
    as_tensor_arg,
    batch_prefix,
    check_float,
    check_matrix,
    check_square,
    first_zero_pivot,
    mT,
    square_float,
    torch_dtype_name,
)
from minidl.ops import contiguous
from minidl.ops.elementwise import unbroadcast
from minidl.return_types import linalg_lstsq
from minidl.tensor import Tensor, concrete, tensor


def _singular_inverse_error(op: str, a: np.ndarray) -> LinAlgError:
    """PyTorch's message for the first batch element of a whose LU has a zero pivot."""
    batch = a.shape[:-2]
    flat = a.reshape((-1,) + a.shape[-2:])
    for index, matrix in enumerate(flat):
        pivot = first_zero_pivot(matrix)
        if pivot:
            return LinAlgError(
                f"{op}: {batch_prefix(batch, index)}The diagonal element {pivot} is zero, the "
                "inversion could not be completed because the input matrix is singular.")
    return LinAlgError(f"{op}: the input matrix is singular, the inversion could not be "
                       "completed.")


class LinalgInvOp(Function):
    """A^{-1} of each matrix: (..., n, n) -> (..., n, n); LinAlgError for a singular one."""

    name = "linalg_inv"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        try:
            out = np.linalg.inv(a) if a.size else a.copy()
        except np.linalg.LinAlgError:
            raise _singular_inverse_error("linalg.inv", a) from None
        ctx.save_for_backward(out)
        return contiguous(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (inverse,) = ctx.saved_tensors
        inverse_t = mT(inverse)
        return -(inverse_t @ g @ inverse_t)


class LinalgSolveOp(Function):
    """X = A^{-1} B: A (..., n, n), B (..., n, k) -> (..., n, k), the batch dims broadcast."""

    name = "linalg_solve"

    @staticmethod
    def forward(ctx: Context, a, b) -> np.ndarray:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if a.size == 0 or b.size == 0:
            out = np.zeros(batch + b.shape[-2:], a.dtype)
        else:
            try:
                out = np.linalg.solve(a, b)
            except np.linalg.LinAlgError:
                raise LinAlgError("torch.linalg.solve: The solver failed because the input "
                                  "matrix is singular.") from None
        ctx.save_for_backward(a, out)
        ctx.shapes = (a.shape, b.shape)
        return contiguous(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, x = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        if g.size == 0:
            return np.zeros(a_shape, a.dtype), np.zeros(b_shape, a.dtype)
        gb = np.linalg.solve(mT(a), g)
        ga = -(gb @ mT(x))
        return unbroadcast(ga, a_shape), unbroadcast(gb, b_shape)


_inv = graph.op("linalg_inv").apply
_solve = graph.op("linalg_solve").apply


def inv(A: Tensor) -> Tensor:  # noqa: N803 (PyTorch's argument names)
    """The inverse of each matrix: A (..., n, n) -> (..., n, n). LinAlgError (a RuntimeError)
    naming the batch element and zero pivot for a singular matrix."""
    return _inv(square_float("linalg.inv", A))


def _same_dtype(op: str, a: Tensor, b: Tensor) -> None:
    if a.dtype != b.dtype:
        raise RuntimeError(f"{op}: Expected A and B to have the same dtype, but found A of type "
                           f"{torch_dtype_name(a.dtype)} and B of type "
                           f"{torch_dtype_name(b.dtype)} instead")


def _is_vector_rhs(a: Tensor, b: Tensor) -> bool:
    """PyTorch's rule: B is a (batch of) vector(s) when 1-D, or when its shape is A's batch
    shape and n."""
    return b.ndim == 1 or (b.ndim == a.ndim - 1 and tuple(b.shape) == tuple(a.shape[:-1]))


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:  # noqa: N803
    """X with A X = B (left) or X A = B. A: (..., n, n); B: (..., n, k) or a vector (n,) /
    (..., n) by PyTorch's rule (its shape is A's without the last dim); the batch dims
    broadcast. RuntimeError for incompatible shapes or dtypes, LinAlgError for a singular A."""
    A, B = as_tensor_arg(A), as_tensor_arg(B)
    check_float("linalg.solve", A)
    check_square("linalg.solve", A)
    _same_dtype("linalg.solve", A, B)
    vector = _is_vector_rhs(A, B)
    matrix = B.unsqueeze(-1) if vector else B
    n = A.shape[-1]
    if matrix.ndim < 2 or matrix.shape[-2 if left else -1] != n:
        rows, cols = (matrix.shape[-2:] if matrix.ndim >= 2 else (1, matrix.shape[-1]))
        equation = "AX = B" if left else "XA = B"
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"{equation} ({n}x{n} and {rows}x{cols})")
    try:
        np.broadcast_shapes(tuple(A.shape[:-2]), tuple(matrix.shape[:-2]))
    except ValueError:
        raise RuntimeError(f"linalg.solve: the batch shapes of A {tuple(A.shape)} and B "
                           f"{tuple(B.shape)} cannot be broadcast") from None
    out = _solve(A, matrix) if left else _solve(A.mT, matrix.mT).mT
    return out.squeeze(-1) if vector else out


def _threshold(dtype: np.dtype, shape: tuple, s: np.ndarray, atol: Any,
               rtol: Any) -> np.ndarray:
    """max(atol, rtol * s_max) per matrix of `shape`, as a (..., 1) array (atol, rtol:
    numbers or arrays broadcasting with the batch shape)."""
    eps = np.finfo(dtype).eps
    atol_a = np.zeros((), dtype) if atol is None else np.asarray(atol, dtype)
    if rtol is None:
        default = eps * max(shape[-2], shape[-1])
        rtol_a = np.where(atol_a > 0, 0, default) if atol is not None else np.asarray(default)
    else:
        rtol_a = np.asarray(rtol, dtype)
    s_max = s.max(axis=-1) if s.shape[-1] else np.zeros(s.shape[:-1], s.dtype)
    return np.maximum(atol_a, rtol_a * s_max)[..., None].astype(dtype)


class LinalgPinvOp(Function):
    """The pseudoinverse X of each matrix A (..., m, n) -> (..., n, m), from the SVD (or, when
    hermitian, the eigendecomposition), the singular values <= the threshold dropped.
    Backward is the derivative of A+ at constant rank (Golub and Pereyra 1973), as PyTorch's:
    gA = -X^T G X^T + (I - A X) G^T X X^T + X^T X G^T (I - X A)."""

    name = "linalg_pinv"

    @staticmethod
    def forward(ctx: Context, a, atol=None, rtol=None, *, hermitian: bool = False):
        batch, (m, n) = a.shape[:-2], a.shape[-2:]
        if a.size == 0:
            out = np.zeros(batch + (n, m), a.dtype)
        elif hermitian:
            values, vectors = np.linalg.eigh(a)
            keep = np.abs(values) > _threshold(a.dtype, a.shape, np.abs(values), atol, rtol)
            scale = np.where(keep, 1 / np.where(keep, values, 1), 0)
            out = (vectors * scale[..., None, :]) @ mT(vectors)
        else:
            u, s, vh = np.linalg.svd(a, full_matrices=False)
            keep = s > _threshold(a.dtype, a.shape, s, atol, rtol)
            scale = np.where(keep, 1 / np.where(keep, s, 1), 0)
            out = (mT(vh) * scale[..., None, :]) @ mT(u)
        ctx.save_for_backward(a, out)
        return contiguous(out.astype(a.dtype, copy=False))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, x = ctx.saved_tensors
        xt, gt = mT(x), mT(g)
        ga = -(xt @ g @ xt) + (gt - a @ (x @ gt)) @ (x @ xt) + (xt @ x) @ (gt - (gt @ x) @ a)
        return ga, None, None


_pinv = graph.op("linalg_pinv").apply


def _tolerance(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def pinv(A: Tensor, *, atol: Any = None, rtol: Any = None,  # noqa: N803
         hermitian: bool = False) -> Tensor:
    """The pseudoinverse of each matrix: A (..., m, n) -> (..., n, m), from the SVD (the
    eigendecomposition of the lower triangle when hermitian), dropping singular values <=
    max(atol, rtol * s_max); rtol defaults to eps * max(m, n), or to 0 when atol > 0 is
    given. RuntimeError for an integer or 1-D A."""
    A = as_tensor_arg(A)
    if A.dtype.kind != "f" or A.ndim < 2:
        raise RuntimeError(f"linalg.pinv({A.dtype}{list(A.shape)}): expected a tensor with 2 "
                           "or more dimensions of float, double, cfloat or cdouble types")
    if hermitian:
        check_square("linalg.pinv", A)
    return _pinv(A, _tolerance(atol), _tolerance(rtol), hermitian=hermitian)


def lstsq(A: Tensor, B: Tensor, rcond: float | None = None, *,  # noqa: N803
          driver: str | None = None) -> Any:
    """The least-squares solution X of A X = B: A (..., m, n), B (..., m, k) or a vector (m,)
    by solve's rule, as the pseudoinverse's product (rcond: pinv's rtol, default eps *
    max(m, n)). The named tuple linalg_lstsq (solution, residuals, rank, singular_values);
    as PyTorch's default CPU driver (gelsy) residuals and singular_values are empty; driver
    is accepted and does not change the result."""
    A, B = as_tensor_arg(A), as_tensor_arg(B)
    for t in (A, B):
        if t.dtype.kind != "f":
            raise RuntimeError("linalg.lstsq: This function doesn't handle types other than "
                               "float and double")
    check_matrix("linalg.lstsq", A)
    _same_dtype("linalg.lstsq", A, B)
    vector = _is_vector_rhs(A, B)
    matrix = B.unsqueeze(-1) if vector else B
    if matrix.ndim < 2 or matrix.shape[-2] != A.shape[-2]:
        raise RuntimeError(f"linalg.lstsq: input.size(-2) should match other.size(-2), got "
                           f"{A.shape[-2]} and {matrix.shape[-2] if matrix.ndim >= 2 else 1}")
    pseudo = pinv(A, rtol=rcond)
    solution = pseudo @ matrix
    if vector:
        solution = solution.squeeze(-1)
    empty = tensor(np.zeros(0, A.dtype))
    return linalg_lstsq(solution, empty, matrix_rank(A.detach(), rtol=rcond), empty.clone())


def matrix_rank(A: Tensor, *, atol: Any = None, rtol: Any = None,  # noqa: N803
                hermitian: bool = False) -> Tensor:
    """The number of singular values (|eigenvalues| when hermitian) > max(atol, rtol * s_max)
    of each matrix: A (..., m, n) -> int64 (...); rtol's default as pinv's."""
    A = as_tensor_arg(A)
    if A.dtype.kind != "f":
        raise RuntimeError("linalg.matrix_rank: This function doesn't handle types other than "
                           "float and double")
    check_matrix("linalg.matrix_rank", A)
    if hermitian:
        check_square("linalg.matrix_rank", A)
    a = concrete(A, "linalg.matrix_rank")
    if a.size == 0:
        return tensor(np.zeros(a.shape[:-2], np.int64))
    s = np.abs(np.linalg.eigvalsh(a)) if hermitian else np.linalg.svd(a, compute_uv=False)
    threshold = _threshold(A.dtype, a.shape, s, _tolerance(atol), _tolerance(rtol))
    return tensor((s > threshold).sum(axis=-1).astype(np.int64))


def matrix_power(A: Tensor, n: int) -> Tensor:  # noqa: N803
    """A^n for each matrix by repeated squaring: A (..., m, m); n = 0 gives the identity, n < 0
    the inverse's power (a float A). Integer A is allowed for n >= 0, as in PyTorch."""
    A = as_tensor_arg(A)
    check_square("linalg.matrix_power", A)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"linalg.matrix_power: n must be an int, got {type(n).__name__}")
    if n == 0:
        identity = np.broadcast_to(np.eye(A.shape[-1], dtype=A.dtype), tuple(A.shape))
        return tensor(contiguous(identity))
    if n < 0:
        A, n = inv(A), -n
    result, square = None, A
    while True:
        if n & 1:
            result = square if result is None else result @ square
        n >>= 1
        if not n:
            return result.clone() if result is A else result
        square = square @ square


def tensorinv(A: Tensor, ind: int = 2) -> Tensor:  # noqa: N803
    """The inverse of A read as a matrix of prod(A.shape[:ind]) rows: the result has shape
    A.shape[ind:] + A.shape[:ind]. RuntimeError unless the two products are equal."""
    A = as_tensor_arg(A)
    if ind <= 0:
        raise RuntimeError(f"linalg.tensorinv: Expected a strictly positive integer for 'ind', "
                           f"but got {ind}")
    rows, cols = math.prod(A.shape[:ind]), math.prod(A.shape[ind:])
    if rows != cols:
        raise RuntimeError("linalg.tensorinv: Expected self to satisfy the requirement "
                           "prod(self.shape[ind:]) == prod(self.shape[:ind]), but got "
                           f"{cols} != {rows}")
    return inv(A.reshape(rows, cols)).reshape(tuple(A.shape[ind:]) + tuple(A.shape[:ind]))


def tensorsolve(A: Tensor, B: Tensor, dims: Sequence[int] | None = None) -> Tensor:  # noqa: N803
    """X with tensordot(A, X, X.ndim) = B: X has shape A.shape[B.ndim:] (after moving `dims`
    of A to the end). RuntimeError unless prod(B.shape) == prod(X's shape)."""
    A, B = as_tensor_arg(A), as_tensor_arg(B)
    if dims is not None:
        dims = [d % A.ndim for d in dims]
        A = A.movedim(dims, list(range(A.ndim - len(dims), A.ndim)))
    rows = math.prod(B.shape)
    result_shape = tuple(A.shape[B.ndim:])
    cols = math.prod(result_shape)
    if rows != cols:
        raise RuntimeError("linalg.tensorsolve: Expected self to satisfy the requirement "
                           "prod(self.shape[other.ndim:]) == prod(self.shape[:other.ndim]), "
                           f"but got {cols} != {rows}")
    return solve(A.reshape(rows, cols), B.reshape(rows)).reshape(result_shape)
