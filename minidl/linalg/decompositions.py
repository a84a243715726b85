"""Factorizations on NumPy's LAPACK: linalg.cholesky, qr, eigh, eigvalsh, svd and svdvals
(and eig/eigvals, which raise: their results are complex, a dtype minidl does not have).

The backward formulas are the standard ones of matrix calculus, in PyTorch's conventions:
  cholesky  A = L L^T:  gA = sym(L^{-T} Phi(L^T gL) L^{-1}), Phi = tril with half diagonal
  qr        A = Q R (m >= n):  gA = (gQ + Q copyltu(M)) R^{-T},  M = gR R^T - Q^T gQ;
            m < n splits A = [A1 | A2]: A2 = Q R2 adds A2 gR2^T to gQ, gA2 = Q gR2
  eigh      A = Q diag(L) Q^T:  gA = Q (diag(gL) + skew(Q^T gQ) / (L_j - L_i)) Q^T
  svd       A = U diag(S) V^T:  the formula of PyTorch's svd_backward (Ionescu et al. 2015,
            with the projection terms for the non-square case)
The eigenvector and singular vector terms divide by eigenvalue (singular value) gaps: they
are exact for distinct values and infinite at a repeated one, as PyTorch's.
"""

from __future__ import annotations

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
    diag_embed,
    mT,
    pack,
    square_float,
    torch_dtype_name,
    unpack,
    unpack_tensor,
    used,
)
from minidl.ops import contiguous
from minidl.return_types import linalg_eigh, linalg_qr, linalg_svd
from minidl.tensor import Tensor


def _right_solve(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """x a^{-1}."""
    return mT(np.linalg.solve(mT(a), mT(x)))


def _not_positive_definite(a: np.ndarray, upper: bool) -> LinAlgError:
    """PyTorch's message: the first batch element that fails and its leading minor's order."""
    batch = a.shape[:-2]
    for index, matrix in enumerate(a.reshape((-1,) + a.shape[-2:])):
        for order in range(1, matrix.shape[-1] + 1):
            try:
                np.linalg.cholesky(matrix[:order, :order], upper=upper)
            except np.linalg.LinAlgError:
                return LinAlgError(
                    f"linalg.cholesky: {batch_prefix(batch, index)}The factorization could not "
                    "be completed because the input is not positive-definite (the leading "
                    f"minor of order {order} is not positive-definite).")
    return LinAlgError("linalg.cholesky: the input is not positive-definite")


class LinalgCholeskyOp(Function):
    """L (lower, A = L L^T) or, upper, U = L^T of each matrix: (..., n, n) -> (..., n, n),
    reading A's lower (upper) triangle. LinAlgError for a matrix not positive-definite."""

    name = "linalg_cholesky"

    @staticmethod
    def forward(ctx: Context, a, *, upper: bool = False) -> np.ndarray:
        try:
            out = np.linalg.cholesky(a, upper=upper) if a.size else a.copy()
        except np.linalg.LinAlgError:
            raise _not_positive_definite(a, upper) from None
        ctx.save_for_backward(out)
        ctx.upper = upper
        return contiguous(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (factor,) = ctx.saved_tensors
        lower, g_lower = (mT(factor), mT(g)) if ctx.upper else (factor, g)
        phi = np.tril(mT(lower) @ g_lower)
        np.einsum("...ii->...i", phi)[...] *= 0.5
        ga = _right_solve(np.linalg.solve(mT(lower), phi), lower) if g.size else phi
        return 0.5 * (ga + mT(ga))


def _qr_backward_tall(q, r, gq, gr) -> np.ndarray:
    """gA for A = Q R with Q (m, n), R (n, n), m >= n."""
    m = gr @ mT(r) - mT(q) @ gq
    copyltu = np.triu(m) + mT(np.triu(m, 1))
    return _right_solve(gq + q @ copyltu, mT(r))


class LinalgQrOp(Function):
    """Q and R of each matrix A (..., m, n), packed: mode "reduced" Q (m, k), R (k, n) with
    k = min(m, n); "complete" Q (m, m), R (m, n); "r" only R (Q is empty, no gradient).
    Backward raises, as PyTorch's, for mode "r" and for "complete" with m > n."""

    name = "linalg_qr"

    @staticmethod
    def forward(ctx: Context, a, *, mode: str = "reduced") -> np.ndarray:
        m, n = a.shape[-2:]
        batch = a.shape[:-2]
        if mode == "r":
            r = np.linalg.qr(a, mode="r") if a.size else np.zeros(batch + (min(m, n), n), a.dtype)
            q = np.zeros((0,), a.dtype)
        elif a.size:
            q, r = np.linalg.qr(a, mode=mode)
        else:
            k = m if mode == "complete" else min(m, n)
            q = np.broadcast_to(np.eye(m, k, dtype=a.dtype), batch + (m, k))
            r = np.zeros(batch + (k, n), a.dtype)
        ctx.save_for_backward(a, q, r)
        ctx.mode = mode
        return pack(np.broadcast_to(q, batch + q.shape) if mode == "r" else q, r, batch=batch)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, q, r = ctx.saved_tensors
        m, n = a.shape[-2:]
        if ctx.mode == "r":
            raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed "
                               "when mode='r'. Please use linalg.qr(A, mode='reduced') if you "
                               "are going to differentiate through linalg.qr.")
        if ctx.mode == "complete" and m > n:
            raise RuntimeError("The QR decomposition is not differentiable when "
                               "mode='complete' and nrows > ncols.")
        gq, gr = unpack(g, [q.shape[-2:], r.shape[-2:]])
        if a.size == 0:
            return np.zeros_like(a)
        if m >= n:
            return _qr_backward_tall(q, r, gq, gr)
        a2, r1, gr1, gr2 = a[..., m:], r[..., :m], gr[..., :m], gr[..., m:]
        ga1 = _qr_backward_tall(q, r1, gq + a2 @ mT(gr2), gr1)
        return np.concatenate([ga1, q @ gr2], axis=-1)


class LinalgEighOp(Function):
    """Eigenvalues (ascending) and eigenvectors of each symmetric matrix A (..., n, n), packed
    as (..., n + n * n); UPLO: the triangle read."""

    name = "linalg_eigh"

    @staticmethod
    def forward(ctx: Context, a, *, UPLO: str = "L") -> np.ndarray:  # noqa: N803
        values, vectors = np.linalg.eigh(a, UPLO=UPLO)
        ctx.save_for_backward(values, vectors)
        return pack(values, vectors, batch=a.shape[:-2])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        values, vectors = ctx.saved_tensors
        n = values.shape[-1]
        g_values, g_vectors = unpack(g, [(n,), (n, n)])
        inner = diag_embed(g_values)
        if used(g_vectors):
            k = mT(vectors) @ g_vectors
            gaps = values[..., None, :] - values[..., :, None]
            np.einsum("...ii->...i", gaps)[...] = 1
            off = 0.5 * (k - mT(k)) / gaps
            np.einsum("...ii->...i", off)[...] = 0
            inner = inner + off
        return vectors @ inner @ mT(vectors)


def _svd_backward(u, s, vh, gu, gs, gvh) -> np.ndarray:
    """gA for the thin SVD A = U diag(S) Vh: U (m, k), S (k,), Vh (k, n), k = min(m, n);
    gu/gvh None when unused."""
    m, n = u.shape[-2], vh.shape[-1]
    k = s.shape[-1]
    if gu is None and gvh is None:
        return (u * gs[..., None, :]) @ vh
    s_row, s_col = s[..., None, :], s[..., :, None]
    squares = s * s
    gaps = squares[..., None, :] - squares[..., :, None]  # S_j^2 - S_i^2
    np.einsum("...ii->...i", gaps)[...] = 1
    inner = np.zeros(s.shape + (k,), s.dtype)
    if gu is not None:
        uhgu = mT(u) @ gu
        inner = inner + (uhgu - mT(uhgu)) * s_row
    if gvh is not None:
        v, gv = mT(vh), mT(gvh)
        vhgv = vh @ gv
        inner = inner + s_col * (vhgv - mT(vhgv))
    inner = inner / gaps
    np.einsum("...ii->...i", inner)[...] = 0 if gs is None else gs
    if m > k and gu is not None:
        gu_sinv = gu / s_row
        return (u @ inner + gu_sinv - u @ (mT(u) @ gu_sinv)) @ vh
    if n > k and gvh is not None:
        sinv_gvh = gvh / s_col
        return u @ (inner @ vh + sinv_gvh - (sinv_gvh @ v) @ vh)
    return u @ inner @ vh


class LinalgSvdOp(Function):
    """U, S (descending), Vh of each matrix A (..., m, n), packed: full_matrices U (m, m),
    Vh (n, n), else U (m, k), Vh (k, n), k = min(m, n). compute_uv=False: S alone (svdvals).
    As PyTorch's, the gradient ignores the columns of U and rows of Vh beyond k."""

    name = "linalg_svd"

    @staticmethod
    def forward(ctx: Context, a, *, full_matrices: bool = True,
                compute_uv: bool = True) -> np.ndarray:
        batch = a.shape[:-2]
        u, s, vh = np.linalg.svd(a, full_matrices=full_matrices and compute_uv)
        k = s.shape[-1]
        ctx.save_for_backward(u[..., :k], s, vh[..., :k, :])
        ctx.compute_uv = compute_uv
        ctx.shapes = [u.shape[-2:], (k,), vh.shape[-2:]]
        return pack(u, s, vh, batch=batch) if compute_uv else contiguous(s)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        u, s, vh = ctx.saved_tensors
        if not ctx.compute_uv:
            return _svd_backward(u, s, vh, None, g, None)
        gu, gs, gvh = unpack(g, ctx.shapes)
        k = s.shape[-1]
        gu, gvh = gu[..., :k], gvh[..., :k, :]
        return _svd_backward(u, s, vh, gu if used(gu) else None, gs,
                             gvh if used(gvh) else None)


_cholesky = graph.op("linalg_cholesky").apply
_qr = graph.op("linalg_qr").apply
_eigh = graph.op("linalg_eigh").apply
_svd = graph.op("linalg_svd").apply


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:  # noqa: N803 (PyTorch's names)
    """The Cholesky factor of each symmetric positive-definite matrix: A (..., n, n) -> L
    (lower, A = L L^T) or U (upper, A = U^T U). LinAlgError (a RuntimeError) naming the batch
    element and the leading minor that is not positive-definite."""
    return _cholesky(square_float("linalg.cholesky", A), upper=upper)


def qr(A: Tensor, mode: str = "reduced") -> Any:  # noqa: N803
    """The named tuple linalg_qr (Q, R) of each matrix A (..., m, n), k = min(m, n): mode
    "reduced" Q (m, k), R (k, n); "complete" Q (m, m), R (m, n); "r" R (k, n) and an empty Q.
    RuntimeError for another mode."""
    A = as_tensor_arg(A)
    check_float("linalg.qr", A)
    check_matrix("linalg.qr", A)
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           "'reduced' (default), 'r', or 'complete'")
    m, n = A.shape[-2:]
    k = min(m, n)
    q_shape = {"reduced": (m, k), "complete": (m, m), "r": (0,)}[mode]
    r_shape = (m, n) if mode == "complete" else (k, n)
    q, r = unpack_tensor(_qr(A, mode=mode), [q_shape, r_shape])
    if mode == "r":
        q = Tensor._wrap(np.zeros((0,), A.dtype), False)
    return linalg_qr(q, r)


def _eigh_input(op: str, A: Any, UPLO: str) -> Tensor:  # noqa: N803
    A = as_tensor_arg(A)
    if A.dtype.kind != "f":
        raise NotImplementedError(f'"linalg_eigh_cpu" not implemented for '
                                  f"'{torch_dtype_name(A.dtype)}'")
    A = square_float(op, A)
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    return A


def eigh(A: Tensor, UPLO: str = "L") -> Any:  # noqa: N803
    """The named tuple linalg_eigh (eigenvalues (..., n) ascending, eigenvectors (..., n, n)
    as columns) of each symmetric matrix A (..., n, n), from its UPLO ("L" or "U") triangle.
    Eigenvectors are defined up to sign; their gradient needs distinct eigenvalues."""
    A = _eigh_input("linalg.eigh", A, UPLO)
    n = A.shape[-1]
    values, vectors = unpack_tensor(_eigh(A, UPLO=UPLO), [(n,), (n, n)])
    return linalg_eigh(values, vectors)


def eigvalsh(A: Tensor, UPLO: str = "L") -> Tensor:  # noqa: N803
    """The eigenvalues (ascending) of each symmetric matrix A (..., n, n) -> (..., n)."""
    return eigh(A, UPLO).eigenvalues


def _check_driver(driver: str | None) -> None:
    if driver is not None:
        raise RuntimeError("torch.linalg.svd: keyword argument `driver=` is only supported on "
                           "CUDA inputs with cuSOLVER backend.")


def svd(A: Tensor, full_matrices: bool = True, *, driver: str | None = None) -> Any:  # noqa: N803
    """The named tuple linalg_svd (U, S, Vh) of each matrix A (..., m, n), A = U diag(S) Vh,
    S descending; k = min(m, n): full_matrices U (m, m), Vh (n, n), else U (m, k), Vh (k, n).
    driver (a CUDA option in PyTorch) must be None. Singular vectors are defined up to sign;
    their gradient needs distinct singular values."""
    A = as_tensor_arg(A)
    check_float("linalg.svd", A)
    check_matrix("linalg.svd", A)
    _check_driver(driver)
    m, n = A.shape[-2:]
    k = min(m, n)
    shapes = [(m, m), (k,), (n, n)] if full_matrices else [(m, k), (k,), (k, n)]
    return linalg_svd(*unpack_tensor(_svd(A, full_matrices=full_matrices), shapes))


def svdvals(A: Tensor, *, driver: str | None = None) -> Tensor:  # noqa: N803
    """The singular values (descending) of each matrix A (..., m, n) -> (..., min(m, n));
    driver must be None, as svd's."""
    A = as_tensor_arg(A)
    check_float("linalg.svd", A)
    check_matrix("linalg.svd", A)
    _check_driver(driver)
    return _svd(A, full_matrices=False, compute_uv=False)


def _complex_results(op: str) -> NotImplementedError:
    return NotImplementedError(
        f"linalg.{op}: the eigenvalues of a general matrix are complex, and minidl has no "
        "complex dtype; use linalg.eigh / linalg.eigvalsh for symmetric matrices")


def eig(A: Tensor) -> Any:  # noqa: N803
    """Raises NotImplementedError: the results are complex (see README's differences)."""
    raise _complex_results("eig")


def eigvals(A: Tensor) -> Any:  # noqa: N803
    """Raises NotImplementedError: the results are complex (see README's differences)."""
    raise _complex_results("eigvals")
