"""Products: linalg.cross, vecdot, multi_dot, matmul, diagonal, vander and matrix_exp.

cross, vecdot, multi_dot and vander are composites of differentiable Tensor ops. diagonal is an op
(backward writes the gradient back onto the diagonal of zeros). matrix_exp is an op: Pade
(13, 13) with scaling and squaring (Higham 2005), in float64; its gradient is the upper right
block of exp([[A^T, G], [0, A^T]]) (Mathias 1996), the Frechet derivative of exp at A^T in
the direction G.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minidl import graph
from minidl.graph import Context, Function
from minidl.linalg.checks import as_tensor_arg, check_float, mT, square_float, torch_dtype_name
from minidl.ops import contiguous
from minidl.tensor import Tensor, concatenate, matmul, tensor
from minidl.tensor_math import cumprod

# Higham's Pade (13, 13) coefficients and the 1-norm up to which it is accurate to double
# precision without scaling.
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
           129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
           40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152


def expm(a: np.ndarray) -> np.ndarray:
    """exp of each matrix of a (..., n, n), in float64, each scaled by its own power of 2."""
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return a.copy()
    norm1 = np.abs(a).sum(axis=-2).max(axis=-1)
    with np.errstate(divide="ignore"):
        squarings = np.maximum(0, np.ceil(np.log2(norm1 / _THETA13))).astype(np.int64)
    squarings = np.where(np.isfinite(norm1), squarings, 0)
    x = a / np.ldexp(1.0, squarings)[..., None, None]
    b = _PADE13
    identity = np.eye(a.shape[-1])
    x2 = x @ x
    x4 = x2 @ x2
    x6 = x4 @ x2
    u = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2)
             + b[7] * x6 + b[5] * x4 + b[3] * x2 + b[1] * identity)
    v = (x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2)
         + b[6] * x6 + b[4] * x4 + b[2] * x2 + b[0] * identity)
    result = np.linalg.solve(v - u, v + u)
    for step in range(int(squarings.max(initial=0))):
        result = np.where((step < squarings)[..., None, None], result @ result, result)
    return result


class LinalgMatrixExpOp(Function):
    """exp(A) = sum_k A^k / k! of each matrix: (..., n, n) -> (..., n, n)."""

    name = "linalg_matrix_exp"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        ctx.save_for_backward(a)
        return contiguous(expm(a).astype(a.dtype))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        n = a.shape[-1]
        block = np.zeros(a.shape[:-2] + (2 * n, 2 * n))
        block[..., :n, :n] = block[..., n:, n:] = mT(a)
        block[..., :n, n:] = g
        return expm(block)[..., :n, n:].astype(a.dtype)


class LinalgDiagonalOp(Function):
    """The diagonal at `offset` of the matrices spanned by dim1 and dim2, as a new last dim
    (a copy, where PyTorch returns a view)."""

    name = "linalg_diagonal"

    @staticmethod
    def forward(ctx: Context, a, *, offset: int = 0, dim1: int = -2, dim2: int = -1):
        ctx.shape, ctx.args = a.shape, (offset, dim1, dim2)
        return contiguous(np.diagonal(a, offset, dim1, dim2))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        offset, dim1, dim2 = ctx.args
        out = np.zeros(ctx.shape, g.dtype)
        planes = np.moveaxis(out, (dim1, dim2), (-2, -1))  # a view: writes land in out
        steps = np.arange(g.shape[-1])
        rows, cols = (steps, steps + offset) if offset >= 0 else (steps - offset, steps)
        planes[..., rows, cols] = g
        return out


_matrix_exp = graph.op("linalg_matrix_exp").apply
_diagonal = graph.op("linalg_diagonal").apply


def matrix_exp(A: Tensor) -> Tensor:  # noqa: N803 (PyTorch's argument names)
    """The matrix exponential of each matrix: A (..., n, n) -> (..., n, n)."""
    return _matrix_exp(square_float("linalg.matrix_exp", A))


def diagonal(A: Tensor, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:  # noqa: N803
    """The diagonal (offset > 0: above it, < 0: below) of the matrices over dim1 and dim2,
    as the last dim of the result (a copy). RuntimeError when dim1 and dim2 are one dim."""
    A = as_tensor_arg(A)
    ndim = A.ndim
    for d in (dim1, dim2):
        if not -ndim <= d < ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-ndim}, {ndim - 1}], but got {d})")
    if dim1 % ndim == dim2 % ndim:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return _diagonal(A, offset=offset, dim1=dim1 % ndim, dim2=dim2 % ndim)


def vander(x: Tensor, *, N: int | None = None) -> Tensor:  # noqa: N803
    """The Vandermonde matrix of x (..., n) -> (..., n, N): columns x^0, x^1, ..., x^{N-1}
    (N defaults to n), by a cumulative product (differentiable at x = 0). RuntimeError unless
    N > 1."""
    x = as_tensor_arg(x)
    n = N if N is not None else (x.shape[-1] if x.ndim else 0)
    if n <= 1:
        raise RuntimeError("N must be greater than 1.")
    powers = x.unsqueeze(-1).expand(tuple(x.shape) + (n - 1,))
    ones = x.new_ones(tuple(x.shape) + (1,))
    return cumprod(concatenate([ones, powers], dim=-1), -1)


def cross(input: Tensor, other: Tensor, *, dim: int = -1) -> Tensor:  # noqa: A002
    """The cross product of 3-vectors along dim of the broadcast inputs. RuntimeError unless
    both have size 3 there."""
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    if a.ndim != b.ndim:
        raise RuntimeError(f"linalg.cross: inputs must have the same number of dimensions. "
                           f"Got {a.ndim} and {b.ndim}")
    if a.shape[dim] != 3 or b.shape[dim] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got "
                           f"{a.shape[dim]} and {b.shape[dim]}")
    shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    a, b = a.broadcast_to(shape), b.broadcast_to(shape)
    if a.dtype != b.dtype:
        raise RuntimeError(f"linalg.cross: expected both inputs to have the same dtype, got "
                           f"{a.dtype} and {b.dtype}")
    after, before = tensor([1, 2, 0]), tensor([2, 0, 1])
    return (a.index_select(dim, after) * b.index_select(dim, before)
            - a.index_select(dim, before) * b.index_select(dim, after))


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """sum(x * y) along dim of the broadcast inputs (float, one dtype)."""
    x, y = as_tensor_arg(x), as_tensor_arg(y)
    check_float("linalg.vecdot", x)
    if x.dtype != y.dtype:
        raise RuntimeError(f"linalg.vecdot: Expected x and y to have the same dtype, but found "
                           f"x of type {torch_dtype_name(x.dtype)} and y of type "
                           f"{torch_dtype_name(y.dtype)} instead")
    return (x * y).sum(dim=dim)


def multi_dot(tensors: Sequence[Tensor]) -> Tensor:
    """The product of a chain of matrices (2-D; the first may be a 1-D row, the last a 1-D
    column), one dtype. RuntimeError for fewer than 2 tensors or other dims."""
    tensors = [as_tensor_arg(t) for t in tensors]
    if len(tensors) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(tensors)}")
    for i, t in enumerate(tensors):
        allowed = (1, 2) if i in (0, len(tensors) - 1) else (2,)
        if t.ndim not in allowed:
            which = ("first" if i == 0 else "last") if len(allowed) == 2 else f"tensor {i}"
            raise RuntimeError(f"multi_dot(): {which} tensor must be "
                               f"{'1D or 2D' if len(allowed) == 2 else '2D'} but got {t.ndim}D")
        if t.dtype != tensors[0].dtype:
            raise RuntimeError(f"multi_dot(): all tensors must have be the same dtype but tensor "
                               f"0 is {tensors[0].dtype} and tensor {i} {t.dtype}")
    result = tensors[0]
    for t in tensors[1:]:
        result = matmul(result, t)
    return result

