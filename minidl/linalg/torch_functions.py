"""PyTorch's top-level linear algebra names, older than torch.linalg (torch.det, inverse,
pinverse, cholesky, cholesky_solve, cholesky_inverse, qr with `some`, svd with V instead of Vh,
lu, lu_solve, lu_unpack, ...), on minidl.linalg, and their Tensor methods (bound at the end,
METHODS)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from minidl import return_types
from minidl.linalg import decompositions, determinants, products, solvers, triangular
from minidl.linalg.checks import as_tensor_arg, check_float, check_matrix, check_square
from minidl.tensor import Tensor


def det(input: Tensor) -> Tensor:  # noqa: A002 (PyTorch's argument names)
    """linalg.det."""
    return determinants.det(input)


def logdet(input: Tensor) -> Tensor:  # noqa: A002
    """log det of each matrix (..., n, n): NaN where det < 0, -inf where it is 0."""
    return determinants.logdet(input)


def slogdet(input: Tensor) -> Any:  # noqa: A002
    """linalg.slogdet as the named tuple slogdet (sign, logabsdet)."""
    return return_types.slogdet(*determinants.slogdet(input))


def inverse(input: Tensor) -> Tensor:  # noqa: A002
    """linalg.inv."""
    return solvers.inv(input)


def pinverse(input: Tensor, rcond: float = 1e-15, hermitian: bool = False) -> Tensor:  # noqa: A002
    """linalg.pinv with rtol=rcond and atol=0."""
    return solvers.pinv(input, atol=0.0, rtol=rcond, hermitian=hermitian)


_warned: set[str] = set()


def _deprecated(name: str, message: str) -> None:
    """PyTorch's TORCH_WARN_ONCE: one UserWarning per process and name."""
    if name not in _warned:
        _warned.add(name)
        warnings.warn(message, UserWarning, stacklevel=3)


def cholesky(input: Tensor, upper: bool = False) -> Tensor:  # noqa: A002
    """linalg.cholesky (upper positional, as torch.cholesky); deprecated, as PyTorch's (a
    UserWarning once)."""
    _deprecated("cholesky", "torch.cholesky is deprecated in favor of torch.linalg.cholesky and "
                "will be removed in a future PyTorch release.\nL = torch.cholesky(A)\nshould be "
                "replaced with\nL = torch.linalg.cholesky(A)\nand\nU = torch.cholesky(A, "
                "upper=True)\nshould be replaced with\nU = torch.linalg.cholesky(A).mH\nThis "
                "transform will produce equivalent results for all valid (symmetric positive "
                "definite) inputs.")
    return decompositions.cholesky(input, upper=upper)


def _triangle(factor: Tensor, upper: bool) -> Tensor:
    """The matrix a Cholesky factor stands for, U^T U (upper) or L L^T, from the triangle the
    solvers read. As PyTorch's, the gradient reaches the whole factor: its backward does not
    mask the triangle the forward ignores."""
    ignored = factor.tril(-1) if upper else factor.triu(1)
    triangle = factor - ignored.detach()
    return triangle.mT @ triangle if upper else triangle @ triangle.mT


def cholesky_solve(input: Tensor, input2: Tensor, upper: bool = False) -> Tensor:  # noqa: A002
    """X with A X = B, given B = input (..., n, k) and A's Cholesky factor input2 (..., n, n)
    (lower, or upper), the batch dims broadcast."""
    b, factor = as_tensor_arg(input), as_tensor_arg(input2)
    check_float("cholesky_solve", b)
    check_matrix("cholesky_solve", b, "b")
    check_square("cholesky_solve", factor)
    return solvers.solve(_triangle(factor, upper), b)


def cholesky_inverse(input: Tensor, upper: bool = False) -> Tensor:  # noqa: A002
    """A^{-1} given A's Cholesky factor input (..., n, n), lower or upper."""
    factor = as_tensor_arg(input)
    check_float("cholesky_inverse", factor)
    check_square("cholesky_inverse", factor)
    return solvers.inv(_triangle(factor, upper))


def qr(input: Tensor, some: bool = True) -> Any:  # noqa: A002
    """linalg.qr, mode "reduced" (some) or "complete", as the named tuple qr (Q, R);
    deprecated, as PyTorch's (a UserWarning once)."""
    _deprecated("qr", "torch.qr is deprecated in favor of torch.linalg.qr and will be removed in "
                "a future PyTorch release.\nThe boolean parameter 'some' has been replaced with "
                "a string parameter 'mode'.\nQ, R = torch.qr(A, some)\nshould be replaced "
                "with\nQ, R = torch.linalg.qr(A, 'reduced' if some else 'complete')")
    return return_types.qr(*decompositions.qr(input, "reduced" if some else "complete"))


def svd(input: Tensor, some: bool = True, compute_uv: bool = True) -> Any:  # noqa: A002
    """The named tuple svd (U, S, V) with input = U diag(S) V^T: linalg.svd with
    full_matrices = not some, and V = Vh^T. compute_uv=False: S and zero U (m, m), V (n, n)."""
    input = as_tensor_arg(input)
    if not compute_uv:
        s = decompositions.svdvals(input)
        m, n = input.shape[-2:]
        batch = tuple(input.shape[:-2])
        return return_types.svd(input.new_zeros(batch + (m, m)), s,
                                input.new_zeros(batch + (n, n)))
    u, s, vh = decompositions.svd(input, full_matrices=not some)
    return return_types.svd(u, s, vh.mT)


def matrix_power(input: Tensor, n: int) -> Tensor:  # noqa: A002
    """linalg.matrix_power."""
    return solvers.matrix_power(input, n)


def matrix_exp(input: Tensor) -> Tensor:  # noqa: A002
    """linalg.matrix_exp."""
    return products.matrix_exp(input)


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:  # noqa: A002
    """The diagonal of the matrices over dim1 and dim2 (default the first two dims, unlike
    linalg.diagonal), as the last dim (a copy)."""
    return products.diagonal(input, offset=offset, dim1=dim1, dim2=dim2)


def lu(A: Tensor, pivot: bool = True, get_infos: bool = False) -> Any:  # noqa: N803
    """(LU, pivots) of linalg.lu_factor, without its check for a zero on U's diagonal, and
    info (linalg.lu_factor_ex's) when get_infos; deprecated, as PyTorch's (a UserWarning
    once)."""
    _deprecated("lu", "torch.lu is deprecated in favor of torch.linalg.lu_factor / "
                "torch.linalg.lu_factor_ex and will be removed in a future PyTorch release.\n"
                "LU, pivots = torch.lu(A, compute_pivots)\nshould be replaced with\nLU, pivots "
                "= torch.linalg.lu_factor(A, compute_pivots)\nand\nLU, pivots, info = "
                "torch.lu(A, compute_pivots, get_infos=True)\nshould be replaced with\nLU, "
                "pivots, info = torch.linalg.lu_factor_ex(A, compute_pivots)")
    lu_data, pivots, info = triangular.lu_factor_ex(A, pivot=pivot)
    return (lu_data, pivots, info) if get_infos else (lu_data, pivots)


def lu_solve(b: Tensor, LU_data: Tensor, LU_pivots: Tensor) -> Tensor:  # noqa: N803
    """linalg.lu_solve(LU_data, LU_pivots, b) (PyTorch's older argument order)."""
    return triangular.lu_solve(LU_data, LU_pivots, b)


def lu_unpack(LU_data: Tensor, LU_pivots: Tensor, unpack_data: bool = True,  # noqa: N803
              unpack_pivots: bool = True) -> Any:
    """The named tuple lu_unpack (P, L, U) of an LU factorization."""
    return triangular.lu_unpack(LU_data, LU_pivots, unpack_data, unpack_pivots)


def cross(input: Tensor, other: Tensor, dim: int | None = None) -> Tensor:  # noqa: A002
    """linalg.cross along dim; dim None (deprecated, as PyTorch's: a UserWarning once) takes
    the first dim of size 3 of the broadcast shape."""
    input, other = as_tensor_arg(input), as_tensor_arg(other)
    if dim is None:
        _deprecated("cross", "Using torch.cross without specifying the dim arg is deprecated.\n"
                    "Please either pass the dim explicitly or simply use torch.linalg.cross.\n"
                    "The default value of dim will change to agree with that of linalg.cross "
                    "in a future release.")
        shape = np.broadcast_shapes(tuple(input.shape), tuple(other.shape))
        dim = next((d for d, size in enumerate(shape) if size == 3), -1)
    return products.cross(input, other, dim=dim)


METHODS = ("det", "logdet", "slogdet", "inverse", "pinverse", "cholesky", "cholesky_solve",
           "cholesky_inverse", "qr", "svd", "matrix_power", "matrix_exp", "diagonal", "lu",
           "lu_solve", "cross")
#: top-level only: Tensor has no such method in PyTorch
FUNCTIONS = ("lu_unpack",)
for _name in METHODS:
    setattr(Tensor, _name, globals()[_name])
del _name

__all__ = list(METHODS + FUNCTIONS)
