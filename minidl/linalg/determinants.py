"""Determinants: linalg.det, linalg.slogdet and logdet.

det's gradient is the cofactor matrix det(A) A^{-T}. As PyTorch's (an LU solve scaled by the
determinant), it is 0 for a matrix whose LU has an exactly zero pivot (det(A) = 0), not the
cofactors of a rank n-1 matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import graph
from minidl.graph import Context, Function
from minidl.linalg.checks import (
    LinAlgError,
    as_tensor_arg,
    check_float,
    mT,
    pack,
    square_float,
    unpack_tensor,
)
from minidl.ops import contiguous
from minidl.return_types import linalg_slogdet
from minidl.tensor import Tensor, where


def inverse_or_zero(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A^{-1}, invertible) per matrix: the inverse is 0 where the LU has a zero pivot."""
    batch = a.shape[:-2]
    if a.size == 0:
        return np.zeros_like(a), np.ones(batch, bool)
    try:
        return np.linalg.inv(a), np.ones(batch, bool)
    except np.linalg.LinAlgError:
        invertible = np.linalg.det(a) != 0
        safe = np.where(invertible[..., None, None], a, np.eye(a.shape[-1], dtype=a.dtype))
        return np.where(invertible[..., None, None], np.linalg.inv(safe), 0), invertible


class LinalgDetOp(Function):
    """det(A) of each matrix: (..., n, n) -> (...); the det of a 0x0 matrix is 1."""

    name = "linalg_det"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        out = np.asarray(np.linalg.det(a), a.dtype)
        ctx.save_for_backward(a, out)
        return contiguous(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, det = ctx.saved_tensors
        inverse, _ = inverse_or_zero(a)
        return ((g * det)[..., None, None] * mT(inverse)).astype(a.dtype)


class LinalgSlogdetOp(Function):
    """(sign, log|det A|) of each matrix, packed as (..., 2); the sign carries no gradient and
    log|det A|'s is A^{-T} (LinAlgError in backward for a singular A)."""

    name = "linalg_slogdet"

    @staticmethod
    def forward(ctx: Context, a) -> np.ndarray:
        sign, logabsdet = np.linalg.slogdet(a)
        ctx.save_for_backward(a)
        batch = a.shape[:-2]
        return pack(np.asarray(sign, a.dtype), np.asarray(logabsdet, a.dtype), batch=batch)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        try:
            inverse = np.linalg.inv(a) if a.size else a
        except np.linalg.LinAlgError:
            raise LinAlgError("linalg.slogdet: the gradient of logabsdet is not defined for a "
                              "singular matrix") from None
        return (g[..., 1, None, None] * mT(inverse)).astype(a.dtype)


_det = graph.op("linalg_det").apply
_slogdet = graph.op("linalg_slogdet").apply


def det(A: Tensor) -> Tensor:  # noqa: N803 (PyTorch's argument name)
    """The determinant of each matrix: A (..., n, n) -> (...). RuntimeError for a non-square
    or integer A."""
    return _det(square_float("linalg.det", A))


def slogdet(A: Tensor) -> Any:  # noqa: N803
    """(sign, logabsdet) of each matrix of A (..., n, n), both (...); a singular matrix gives
    (0, -inf). The named tuple linalg_slogdet."""
    A = square_float("linalg.slogdet", A)
    sign, logabsdet = unpack_tensor(_slogdet(A), [(), ()])
    return linalg_slogdet(sign.detach(), logabsdet)


def logdet(input: Tensor) -> Tensor:  # noqa: A002
    """log det(A) of each matrix of input (..., n, n): NaN where det < 0, -inf where it is 0."""
    input = as_tensor_arg(input)
    check_float("logdet", input)
    sign, logabsdet = slogdet(input)
    return where(sign < 0, np.nan, logabsdet)
