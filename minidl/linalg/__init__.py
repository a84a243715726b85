"""minidl.linalg: PyTorch's torch.linalg on NumPy's LAPACK, for batches of matrices
(..., m, n), float32 and float64, with gradients.

  determinants.py    det, slogdet (and minidl.logdet)
  solvers.py         inv, solve, lstsq, pinv, matrix_rank, matrix_power, tensorinv, tensorsolve
  decompositions.py  cholesky, qr, eigh, eigvalsh, svd, svdvals (eig, eigvals raise: complex)
  norms.py           vector_norm, matrix_norm, norm, cond
  products.py        cross, vecdot, multi_dot, matmul, diagonal, vander, matrix_exp
  triangular.py      lu_factor, lu_factor_ex, lu, lu_solve, lu_unpack, solve_triangular
  checks.py          LinAlgError, the shared input checks and helpers
  torch_functions.py the older top-level names (minidl.det, inverse, svd, ...) and the
                     Tensor methods

Failed factorizations raise LinAlgError, a RuntimeError, as torch.linalg.LinAlgError.
"""

from minidl.linalg.checks import LinAlgError
from minidl.linalg.decompositions import cholesky, eig, eigh, eigvals, eigvalsh, qr, svd, svdvals
from minidl.linalg.determinants import det, slogdet
from minidl.linalg.norms import cond, matrix_norm, norm, vector_norm
from minidl.linalg.products import cross, diagonal, matrix_exp, multi_dot, vander, vecdot
from minidl.linalg.solvers import (
    inv,
    lstsq,
    matrix_power,
    matrix_rank,
    pinv,
    solve,
    tensorinv,
    tensorsolve,
)
from minidl.linalg.triangular import lu, lu_factor, lu_factor_ex, lu_solve, solve_triangular
from minidl.tensor import matmul

__all__ = [
    "LinAlgError", "cholesky", "cond", "cross", "det", "diagonal", "eig", "eigh", "eigvals",
    "eigvalsh", "inv", "lstsq", "lu", "lu_factor", "lu_factor_ex", "lu_solve", "matmul",
    "matrix_exp", "matrix_norm", "matrix_power", "matrix_rank", "multi_dot", "norm", "pinv",
    "qr", "slogdet", "solve", "solve_triangular", "svd", "svdvals", "tensorinv", "tensorsolve",
    "vander", "vecdot", "vector_norm",
]
