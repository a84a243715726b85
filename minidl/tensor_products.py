"""PyTorch's products and distances beyond matmul, einsum and outer: kron, inner, tensordot,
mv, addmv, addr, dist, cdist, block_diag, cartesian_prod and combinations, each
`minidl.X` and (where PyTorch has the method) `Tensor.X`.

All are composites of differentiable Tensor ops (matmul, broadcasting products, norm,
indexing, cat), so their gradients are those ops': the p-norms of dist and cdist give 0 at
zero distance, as PyTorch's.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from minidl.dtypes import get_default_dtype, promote_types
from minidl.tensor import Tensor, _dim_index, concatenate, stack
from minidl.tensor_elementwise import inplace_method
from minidl.tensor_math import _check_matrix_dtypes, _refuse_bool, _scaled_sum, _tensor, meshgrid


def kron(input: Any, other: Any) -> Tensor:  # noqa: A002 (PyTorch's keyword names)
    """The Kronecker product: for a (a0, a1, ...) and b (b0, b1, ...) (the shorter padded
    with leading 1s) the (a0*b0, a1*b1, ...) tensor of blocks a[i] * b."""
    a, b = _tensor(input), _tensor(other)
    n = max(a.ndim, b.ndim)
    a = a.reshape((1,) * (n - a.ndim) + tuple(a.shape))
    b = b.reshape((1,) * (n - b.ndim) + tuple(b.shape))
    # Interleave the dims: a as (a0, 1, a1, 1, ...), b as (1, b0, 1, b1, ...).
    product = a.reshape([s for d in a.shape for s in (d, 1)]) * b.reshape(
        [s for d in b.shape for s in (1, d)])
    return product.reshape([x * y for x, y in zip(a.shape, b.shape)])


def tensordot(a: Any, b: Any, dims: Any = 2) -> Tensor:
    """Contract a's last `dims` dims with b's first (an int), or the dims listed in
    dims = (dims_a, dims_b); the result has a's free dims, then b's."""
    a, b = _tensor(a), _tensor(b)
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, (int, np.integer)):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        dims_a, dims_b = list(range(a.ndim - dims, a.ndim)), list(range(int(dims)))
    else:
        dims_a, dims_b = ([d] if isinstance(d, int) else list(d) for d in dims)
    if len(dims_a) != len(dims_b):
        raise RuntimeError("both dimension lists should have same length")
    dims_a = [_dim_index("tensordot", d, a.ndim) for d in dims_a]
    dims_b = [_dim_index("tensordot", d, b.ndim) for d in dims_b]
    for da, db in zip(dims_a, dims_b):
        if a.shape[da] != b.shape[db]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[da]} in dim {da} and second has size {b.shape[db]} "
                               f"in dim {db}")
    _check_matrix_dtypes("tensordot", a, b)
    free_a = [d for d in range(a.ndim) if d not in dims_a]
    free_b = [d for d in range(b.ndim) if d not in dims_b]
    _refuse_bool("tensordot", a)
    size = int(np.prod([a.shape[d] for d in dims_a]))
    rows = int(np.prod([a.shape[d] for d in free_a]))
    cols = int(np.prod([b.shape[d] for d in free_b]))
    left = a.permute(*free_a, *dims_a).reshape(rows, size)
    right = b.permute(*dims_b, *free_b).reshape(size, cols)
    return (left @ right).reshape([a.shape[d] for d in free_a] + [b.shape[d] for d in free_b])


def inner(input: Any, other: Any) -> Tensor:  # noqa: A002
    """The sum of products over the last dims (a scalar operand multiplies); the result has
    input's leading dims, then other's."""
    a, b = _tensor(input), _tensor(other)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but "
                           f"got shapes {list(a.shape)} and {list(b.shape)}")
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def vdot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """The dot product of two 1-d tensors of one dtype (real tensors: as dot)."""
    a, b = _tensor(input), _tensor(other)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    if a.shape[0] != b.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src "
                           f"[{b.shape[0]}] to have the same number of elements, but got "
                           f"{a.shape[0]} and {b.shape[0]} elements respectively")
    if a.dtype != b.dtype:
        raise RuntimeError(f"vdot : expected both vectors to have same dtype, but found "
                           f"{a.dtype} and {b.dtype}")
    _refuse_bool("vdot", a)
    return (a * b).sum()


def addbmm(input: Any, batch1: Tensor, batch2: Tensor, *, beta: Any = 1,  # noqa: A002
           alpha: Any = 1) -> Tensor:
    """beta * input + alpha * sum_b(batch1[b] @ batch2[b]) for batch1 (b, n, m), batch2
    (b, m, p); input broadcasts to (n, p)."""
    b1, b2 = _tensor(batch1), _tensor(batch2)
    _check_matrix_dtypes("addbmm", _tensor(input), b1, b2)
    return _scaled_sum("addbmm", input, b1.bmm(b2).sum(0), beta, alpha)


def mv(input: Tensor, vec: Tensor) -> Tensor:  # noqa: A002
    """The matrix (n, m) times the vector (m,): (n,)."""
    a, v = _tensor(input), _tensor(vec)
    if a.ndim != 2 or v.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {a.ndim}, {v.ndim}")
    if a.shape[1] != v.shape[0]:
        raise RuntimeError(f"size mismatch, got input ({a.shape[0]}), mat ({a.shape[0]}x"
                           f"{a.shape[1]}), vec ({v.shape[0]})")
    _check_matrix_dtypes("mv", a, v)
    _refuse_bool("mv", a)
    return a @ v


def addmv(input: Any, mat: Tensor, vec: Tensor, *, beta: Any = 1,  # noqa: A002
          alpha: Any = 1) -> Tensor:
    """beta * input + alpha * (mat @ vec) for mat (n, m), vec (m,); input broadcasts to
    (n,). beta = 0 ignores input (NaN too)."""
    _check_matrix_dtypes("addmv", _tensor(input), _tensor(mat), _tensor(vec))
    return _scaled_sum("addmv", input, mv(mat, vec), beta, alpha)


def addr(input: Any, vec1: Tensor, vec2: Tensor, *, beta: Any = 1,  # noqa: A002
         alpha: Any = 1) -> Tensor:
    """beta * input + alpha * outer(vec1, vec2) for vec1 (n,), vec2 (m,); input broadcasts
    to (n, m)."""
    v1, v2 = _tensor(vec1), _tensor(vec2)
    if v1.ndim != 1 or v2.ndim != 1:
        raise RuntimeError(f"addr: Expected 1-D arguments vec1 and vec2, but got {v1.ndim}-D "
                           f"and {v2.ndim}-D")
    x = _tensor(input)
    if x.dtype == np.bool_ and v1.dtype == np.bool_ and v2.dtype == np.bool_:
        # PyTorch's bool addr: (beta and input) or (alpha and vec1 outer vec2).
        outer = v1.reshape(-1, 1) & v2.reshape(1, -1)
        return (x & bool(beta)) | (outer & bool(alpha))
    return _scaled_sum("addr", x, v1.reshape(-1, 1) * v2.reshape(1, -1), beta, alpha)


def _norm_of_rows(diff: Tensor, p: float, dim: Any) -> Tensor:
    if p == 0:
        return (diff != 0).sum(dim).astype(diff.dtype)
    return diff.norm(p, dim=dim)


def dist(input: Tensor, other: Tensor, p: float = 2) -> Tensor:  # noqa: A002
    """The p-norm of input - other (broadcast), p in [0, inf]; floating point dtypes only."""
    a, b = _tensor(input), _tensor(other)
    if a.dtype.kind != "f" or b.dtype.kind != "f":
        raise RuntimeError(f"dist only supports floating-point dtypes, got {a.dtype} and "
                           f"{b.dtype}")
    diff = a - b
    return _norm_of_rows(diff.reshape(-1), float(p), 0)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str | None = None) -> Tensor:
    """The p-norm distances between the rows of x1 (B..., P, M) and x2 (B..., R, M):
    (B..., P, R). The distances are computed directly (compute_mode is accepted; PyTorch's
    matmul form for p=2 rounds differently); the gradient at zero distance is 0."""
    a, b = _tensor(x1), _tensor(x2)
    if a.ndim < 2 or b.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {a.ndim}D, X2 "
                           f"got: {b.ndim}D")
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{a.shape[-1]} X2: {b.shape[-1]}")
    if a.dtype.kind != "f" or b.dtype.kind != "f":
        raise RuntimeError(f"cdist only supports floating-point dtypes, X1 got: {a.dtype}, "
                           f"X2 got: {b.dtype}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    diff = a.unsqueeze(-2) - b.unsqueeze(-3)
    return _norm_of_rows(diff, float(p), -1)


def block_diag(*tensors: Any) -> Tensor:
    """The tensors (0-d, 1-d as one row, or 2-d) along the diagonal of a zero matrix, in
    their promoted dtype."""
    ts = [_tensor(t) for t in tensors]
    for i, t in enumerate(ts):
        if t.ndim > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer "
                               f"dimensions. Input {i} has {t.ndim} dimensions")
    if not ts:
        return Tensor._wrap(np.zeros((1, 0), get_default_dtype()), False)
    dt = functools.reduce(promote_types, [t.dtype for t in ts])
    mats = [t.astype(dt).reshape(1, t.numel()) if t.ndim < 2 else t.astype(dt) for t in ts]
    width = sum(m.shape[1] for m in mats)
    rows, left = [], 0
    for m in mats:
        right = width - left - m.shape[1]
        zeros = [Tensor._wrap(np.zeros((m.shape[0], n), dt), False) for n in (left, right)]
        rows.append(concatenate([zeros[0], m, zeros[1]], 1))
        left += m.shape[1]
    return concatenate(rows, 0)


def cartesian_prod(*tensors: Tensor) -> Tensor:
    """All tuples of one element of each 1-d tensor, in row-major order: (N1*N2*..., k)
    (one tensor: itself)."""
    ts = [_tensor(t) for t in tensors]
    for t in ts:
        if t.ndim != 1:
            raise RuntimeError(f"Expect a 1D vector, but got shape {list(t.shape)}")
    if len(ts) == 1:
        return ts[0]
    grids = meshgrid(*ts, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1)


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:  # noqa: A002
    """The r-element combinations of a 1-d tensor's elements (itertools.combinations order;
    with_replacement as combinations_with_replacement): (count, r)."""
    x = _tensor(input)
    if x.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(x.shape)}")
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    pick = itertools.combinations_with_replacement if with_replacement else \
        itertools.combinations
    index = np.array(list(pick(range(x.shape[0]), r)), np.int64).reshape(-1)
    if r == 0:
        index = np.zeros(0, np.int64)
    out = x[index]
    # PyTorch's shape: (count, r), but an empty 1-d result for r = 0.
    return out if r == 0 else out.reshape(-1, r)


METHODS = ("kron", "inner", "vdot", "mv", "addmv", "addbmm", "addr", "dist")
for _name in METHODS:
    setattr(Tensor, _name, globals()[_name])
# The in-place forms (recorded results take over self's history, Tensor._inplace).
for _name in ("addmv", "addbmm", "addr", "addmm", "baddbmm"):
    setattr(Tensor, _name + "_", inplace_method(_name, recorded=True))
del _name

__all__ = sorted([*METHODS, "tensordot", "cdist", "block_diag", "cartesian_prod",
                  "combinations"])
