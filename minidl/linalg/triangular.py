"""LU factorizations with partial pivoting: linalg.lu_factor, lu_factor_ex, lu, lu_solve and
the older lu_unpack, plus solve_triangular (which reads one triangle of its A).

NumPy exposes no getrf, so the factorization is LAPACK's right-looking algorithm written
over the batch (one vectorized step per column): the same pivots (the first largest |entry|
of each column) and the same zero-pivot handling, so `pivots` equal PyTorch's (1-based,
int32). Backward of the packed LU (Murray 2016, in PyTorch's form), for A = P L U:
  square  gA = P L^{-T} (tril(L^T gL, -1) + triu(gU U^T)) U^{-T}
  wide    A = P L [U1 | U2]: gA2 = P L^{-T} gU2 and gL gains -L^{-T} gU2 U2^T
  tall    P^T A = [L1; L2] U: g(P^T A)2 = gL2 U^{-T} and gU gains -L2^T gL2 U^{-T}
lu, lu_unpack and lu_solve are composites of lu_factor's result with tril/triu, matmul and
solve, so their gradients are those ops'.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import graph
from minidl.graph import Context, Function
from minidl.linalg.checks import (
    as_tensor_arg,
    batch_prefix,
    check_float,
    check_matrix,
    check_square,
    mT,
    pack,
    unpack_tensor,
)
from minidl.linalg.solvers import solve
from minidl.return_types import linalg_lu, linalg_lu_factor, linalg_lu_factor_ex
from minidl.return_types import lu_unpack as lu_unpack_result
from minidl.tensor import Tensor, eye, tensor


def getrf(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LU packed as LAPACK stores it, 0-based row swaps (..., k)) of each matrix of a."""
    lu = np.array(a, copy=True)
    m, n = lu.shape[-2:]
    k = min(m, n)
    count = int(np.prod(lu.shape[:-2], dtype=np.int64))
    flat = lu.reshape((count, m, n))
    swaps = np.zeros((flat.shape[0], k), np.int64)
    rows = np.arange(flat.shape[0])
    for col in range(k):
        pivot = col + np.argmax(np.abs(flat[:, col:, col]), axis=1)
        swaps[:, col] = pivot
        top = flat[rows, col].copy()
        flat[rows, col] = flat[rows, pivot]
        flat[rows, pivot] = top
        head = flat[:, col, col]
        nonzero = head != 0  # LAPACK leaves a column with a zero pivot unscaled
        scale = np.where(nonzero, 1 / np.where(nonzero, head, 1), 0)
        flat[:, col + 1:, col] *= np.where(nonzero, scale, 1)[:, None]
        flat[:, col + 1:, col + 1:] -= flat[:, col + 1:, col, None] * flat[:, col, None, col + 1:]
    return lu, swaps.reshape(a.shape[:-2] + (k,))


def permutation(swaps: np.ndarray, m: int, dtype: np.dtype) -> np.ndarray:
    """P (..., m, m) with A = P L U, from the 0-based row swaps."""
    order = np.broadcast_to(np.arange(m), swaps.shape[:-1] + (m,)).copy()
    count = int(np.prod(swaps.shape[:-1], dtype=np.int64))
    flat, flat_swaps = order.reshape(count, m), swaps.reshape(count, swaps.shape[-1])
    rows = np.arange(flat.shape[0])
    for col in range(flat_swaps.shape[1]):
        target = flat_swaps[:, col]
        first = flat[rows, col].copy()
        flat[rows, col] = flat[rows, target]
        flat[rows, target] = first
    # row i of P^T A is row order[i] of A, so P[order[i], i] = 1
    p = np.zeros(order.shape + (m,), dtype)
    np.put_along_axis(p, order[..., None, :], 1, axis=-2)
    return p


def _square_backward(lower, upper, gl, gu) -> np.ndarray:
    """L^{-T} (tril(L^T gL, -1) + triu(gU U^T)) U^{-T}: P^T gA for a square A = P L U."""
    inner = np.tril(mT(lower) @ gl, -1) + np.triu(gu @ mT(upper))
    return mT(np.linalg.solve(upper, mT(np.linalg.solve(mT(lower), inner))))


class LinalgLuFactorOp(Function):
    """The packed LU (..., m, n) of each matrix and its pivots as floats, packed together
    (..., m * n + k); the pivots carry no gradient."""

    name = "linalg_lu_factor"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        lu, swaps = getrf(a)
        ctx.save_for_backward(lu, swaps)
        return pack(lu, (swaps + 1).astype(a.dtype), batch=a.shape[:-2])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        lu, swaps = ctx.saved_tensors
        m, n = lu.shape[-2:]
        k = min(m, n)
        g_lu = g[..., :m * n].reshape(lu.shape)
        lower = np.tril(lu[..., :, :k], -1) + np.eye(m, k, dtype=lu.dtype)
        upper = np.triu(lu[..., :k, :])
        gl, gu = np.tril(g_lu[..., :, :k], -1), np.triu(g_lu[..., :k, :])
        if m == n:
            ga = _square_backward(lower, upper, gl, gu)
        elif m < n:
            l_inv_t_gu2 = np.linalg.solve(mT(lower), gu[..., m:])
            ga1 = _square_backward(lower, upper[..., :m], gl - l_inv_t_gu2 @ mT(upper[..., m:]),
                                   gu[..., :m])
            ga = np.concatenate([ga1, l_inv_t_gu2], axis=-1)
        else:
            u1, l2, gl2 = upper, lower[..., n:, :], gl[..., n:, :]
            gl2_u_inv_t = mT(np.linalg.solve(u1, mT(gl2)))
            ga1 = _square_backward(lower[..., :n, :], u1, gl[..., :n, :],
                                   gu - mT(l2) @ gl2_u_inv_t)
            ga = np.concatenate([ga1, gl2_u_inv_t], axis=-2)
        return permutation(swaps, m, lu.dtype) @ ga


_lu_factor = graph.op("linalg_lu_factor").apply


def _factor(op: str, A: Any, pivot: bool) -> tuple[Tensor, Tensor, np.ndarray]:
    """(LU, pivots, info): info (...) int32 is the 1-based index of the first zero on U's
    diagonal, 0 where there is none (LAPACK getrf's)."""
    A = as_tensor_arg(A)
    check_float(op, A)
    check_matrix(op, A)
    if not pivot:
        raise RuntimeError(f"{op}: LU without pivoting is not implemented on the CPU")
    m, n = A.shape[-2:]
    k = min(m, n)
    lu, pivots = unpack_tensor(_lu_factor(A), [(m, n), (k,)])
    zero = np.diagonal(lu.data, axis1=-2, axis2=-1) == 0
    if k == 0:
        info = np.zeros(zero.shape[:-1], np.int32)
    else:
        info = np.where(zero.any(axis=-1), zero.argmax(axis=-1) + 1, 0).astype(np.int32)
    return lu, tensor(pivots.data.astype(np.int32)), info


def lu_factor(A: Tensor, *, pivot: bool = True) -> Any:  # noqa: N803 (PyTorch's names)
    """The named tuple linalg_lu_factor (LU, pivots) of each matrix A (..., m, n): L (unit
    lower, below the diagonal) and U packed in LU (..., m, n); pivots (..., min(m, n)) int32,
    1-based, as LAPACK's getrf. RuntimeError, as PyTorch's, where U has a zero on its
    diagonal (lu_factor_ex and lu do not check); pivot=False raises, as on PyTorch's CPU."""
    lu_data, pivots, info = _factor("linalg.lu_factor", A, pivot)
    if info.any():
        index = int(np.argmax(info.reshape(-1) > 0))
        i = int(info.reshape(-1)[index])
        raise RuntimeError(
            f"torch.linalg.lu_factor: {batch_prefix(info.shape, index)}U[{i},{i}] is zero and "
            "using it on lu_solve would result in a division by zero. If you still want to "
            "perform the factorization, consider calling linalg.lu(A, pivot) or "
            "linalg.lu_factor_ex(A, pivot)")
    return linalg_lu_factor(lu_data, pivots)


def lu_factor_ex(A: Tensor, *, pivot: bool = True,  # noqa: N803
                 check_errors: bool = False) -> Any:
    """The named tuple linalg_lu_factor_ex (LU, pivots, info) of lu_factor, with info
    (...) int32 the 1-based index of the first zero on U's diagonal (0: none); check_errors
    raises as lu_factor instead."""
    if check_errors:
        return linalg_lu_factor_ex(*lu_factor(A, pivot=pivot),
                                   tensor(np.zeros(as_tensor_arg(A).shape[:-2], np.int32)))
    lu_data, pivots, info = _factor("linalg.lu_factor_ex", A, pivot)
    return linalg_lu_factor_ex(lu_data, pivots, tensor(info))


def lu_unpack(LU_data: Tensor, LU_pivots: Tensor, unpack_data: bool = True,  # noqa: N803
              unpack_pivots: bool = True) -> Any:
    """The named tuple lu_unpack (P (..., m, m), L (..., m, k), U (..., k, n)) of lu_factor's
    result; the parts not unpacked are empty."""
    lu, pivots = as_tensor_arg(LU_data), as_tensor_arg(LU_pivots)
    m, n = lu.shape[-2:]
    k = min(m, n)
    empty = tensor(np.zeros(0, lu.dtype))
    if unpack_data:
        lower = lu[..., :, :k].tril(-1) + eye(m, k, dtype=lu.dtype)
        upper = lu[..., :k, :].triu()
    else:
        lower, upper = empty, empty.clone()
    if unpack_pivots:
        swaps = pivots.data.astype(np.int64) - 1
        p = tensor(permutation(swaps, m, lu.dtype))
    else:
        p = empty.clone()
    return lu_unpack_result(p, lower, upper)


def lu(A: Tensor, *, pivot: bool = True) -> Any:  # noqa: N803
    """The named tuple linalg_lu (P, L, U) with A = P L U for each matrix A (..., m, n):
    P (..., m, m), L (..., m, k) unit lower, U (..., k, n) upper, k = min(m, n)."""
    lu_data, pivots, _ = _factor("linalg.lu", A, pivot)
    return linalg_lu(*lu_unpack(lu_data, pivots))


def lu_solve(LU: Tensor, pivots: Tensor, B: Tensor, *, left: bool = True,  # noqa: N803
             adjoint: bool = False) -> Tensor:
    """X with A X = B (left; X A = B otherwise), or A^T in place of A (adjoint), given A's
    lu_factor result; B (..., n, k), the batch dims broadcast."""
    LU, B = as_tensor_arg(LU), as_tensor_arg(B)
    check_square("linalg.lu_solve", LU, "LU")
    check_matrix("linalg.lu_solve", B, "B")
    p, lower, upper = lu_unpack(LU, pivots)
    a = p @ lower @ upper
    return solve(a.mT if adjoint else a, B, left=left)


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool, left: bool = True,  # noqa: N803
                     unitriangular: bool = False) -> Tensor:
    """X with T X = B (left; X T = B otherwise), T the upper (or lower) triangle of A
    (..., n, n), with ones on the diagonal when unitriangular; B (..., n, k) (a matrix), the
    batch dims broadcast. A's gradient is confined to the triangle read, as PyTorch's."""
    A, B = as_tensor_arg(A), as_tensor_arg(B)
    check_float("linalg.solve_triangular", A)
    check_square("linalg.solve_triangular", A)
    check_matrix("linalg.solve_triangular", B, "B")
    triangle = A.triu(1 if unitriangular else 0) if upper else A.tril(-1 if unitriangular else 0)
    if unitriangular:
        triangle = triangle + eye(A.shape[-1], dtype=A.dtype)
    return solve(triangle, B, left=left)
