"""PyTorch's rearranging and indexing functions beyond minidl.tensor's: tile, ravel,
fliplr/flipud, hsplit/vsplit/dsplit, diag_embed, diagflat, argwhere, take, put,
index_add, index_copy, index_fill, scatter_reduce, unravel_index, broadcast_tensors and
broadcast_shapes, each `minidl.X` and (where PyTorch has them) `Tensor.X` and `Tensor.X_`.

All are composites of differentiable indexing (index_select, gather, scatter, where), so
their gradients are those ops'. scatter_reduce gathers each target's contributions into a
padded (targets, K) table and reduces its rows (sum, cumprod's last column for prod, mean,
amax, amin): ties of amax and amin share the gradient evenly, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.tensor import (
    Size,
    Tensor,
    _array_of,
    _dim_index,
    concatenate,
    where,
)
from minidl.tensor_elementwise import inplace_method
from minidl.tensor_math import _tensor, tensor_split


def tile(input: Tensor, dims: Any) -> Tensor:  # noqa: A002
    """input repeated dims[i] times along each dim (dims shorter than input.ndim are padded
    with leading 1s; longer ones add leading dims)."""
    x = _tensor(input)
    reps = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    reps = (1,) * (x.ndim - len(reps)) + tuple(int(r) for r in reps)
    return x.repeat(*reps)


def ravel(input: Tensor) -> Tensor:  # noqa: A002
    """The elements as a 1-d tensor (a view of the contiguous tensor)."""
    return _tensor(input).reshape(-1)


def fliplr(input: Tensor) -> Tensor:  # noqa: A002
    """Reversed along dim 1 (at least 2 dims)."""
    x = _tensor(input)
    if x.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return x.flip(1)


def flipud(input: Tensor) -> Tensor:  # noqa: A002
    """Reversed along dim 0 (at least 1 dim)."""
    x = _tensor(input)
    if x.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return x.flip(0)


def _directional_split(name: str, x: Tensor, spec: Any, dim: int, min_ndim: int) -> tuple:
    if x.ndim < min_ndim:
        raise RuntimeError(f"torch.{name} requires a tensor with at least {min_ndim} "
                           f"dimension, but got a tensor with {x.ndim} dimensions!")
    if isinstance(spec, (int, np.integer)):
        if spec <= 0 or x.shape[dim] % spec:
            raise RuntimeError(f"torch.{name} attempted to split along dimension {dim}, but "
                               f"the size of the dimension {x.shape[dim]} is not divisible by "
                               f"the split_size {spec}!")
    return tensor_split(x, spec, dim)


def hsplit(input: Tensor, indices_or_sections: Any) -> tuple:  # noqa: A002
    """tensor_split along dim 1 (dim 0 of a 1-d tensor); equal sections only."""
    x = _tensor(input)
    return _directional_split("hsplit", x, indices_or_sections, 0 if x.ndim == 1 else 1, 1)


def vsplit(input: Tensor, indices_or_sections: Any) -> tuple:  # noqa: A002
    """tensor_split along dim 0 of a tensor of at least 2 dims; equal sections only."""
    return _directional_split("vsplit", _tensor(input), indices_or_sections, 0, 2)


def dsplit(input: Tensor, indices_or_sections: Any) -> tuple:  # noqa: A002
    """tensor_split along dim 2 of a tensor of at least 3 dims; equal sections only."""
    return _directional_split("dsplit", _tensor(input), indices_or_sections, 2, 3)


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:  # noqa: A002
    """Each last-dim vector of input on a diagonal of the (dim1, dim2) planes of a zero
    tensor with one more dim (planes of size n + |offset|)."""
    x = _tensor(input)
    out_ndim = x.ndim + 1
    d1, d2 = _dim_index("diag_embed", dim1, out_ndim), _dim_index("diag_embed", dim2, out_ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n = x.shape[-1] if x.ndim else 1
    flat = x.reshape(1) if x.ndim == 0 else x
    m = n + abs(int(offset))
    lead = tuple(flat.shape[:-1])
    rows, cols = np.indices((m, m))
    on_diagonal = cols - rows == offset
    if n == 0:
        plane = Tensor._wrap(np.zeros(lead + (m, m), x.dtype), False)
    else:
        source = np.clip(rows if offset >= 0 else cols, 0, n - 1).reshape(-1)
        spread = flat.index_select(len(lead), source).reshape(lead + (m, m))
        plane = where(on_diagonal, spread, Tensor._wrap(np.zeros((), x.dtype), False))
    return plane.movedim((out_ndim - 2, out_ndim - 1), (d1, d2))


def diagflat(input: Tensor, offset: int = 0) -> Tensor:  # noqa: A002
    """The flattened input on a diagonal of a zero matrix (n + |offset|, n + |offset|)."""
    return diag_embed(_tensor(input).reshape(-1), offset)


def split_with_sizes(input: Tensor, split_sizes: Any, dim: int = 0) -> tuple:  # noqa: A002
    """Pieces of the given sizes along dim (they must add up to its length)."""
    x = _tensor(input)
    sizes = [int(n) for n in split_sizes]
    axis = _dim_index("split_with_sizes", dim, x.ndim)
    if sum(sizes) != x.shape[axis] or any(n < 0 for n in sizes):
        raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to "
                           f"{x.shape[axis]} (input tensor's size at dimension {axis}), but "
                           f"got split_sizes={sizes}")
    return tuple(x.split(sizes, axis))


def sum_to_size(input: Tensor, *size: Any) -> Tensor:  # noqa: A002
    """input summed to `size`, a shape it broadcasts from (the gradient of expand)."""
    x = _tensor(input)
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple)) else size
    shape = tuple(int(n) for n in shape)
    if len(shape) > x.ndim or any(n not in (1, m) for n, m in zip(
            shape, x.shape[x.ndim - len(shape):])):
        raise RuntimeError(f"size {list(shape)} is not expandable to size {list(x.shape)}.")
    extra = x.ndim - len(shape)
    out = x.sum(tuple(range(extra))) if extra else x
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and out.shape[i] != 1)
    return out.sum(stretched, keepdim=True) if stretched else out


def where_method(self: Tensor, condition: Any, other: Any) -> Tensor:
    """self where condition, else other (Tensor.where: torch.where(condition, self, other))."""
    return where(condition, self, other)


def argwhere(input: Tensor) -> Tensor:  # noqa: A002
    """The indices of the non-zero elements: int64 (count, ndim)."""
    return _tensor(input).nonzero()


def _flat_indices(name: str, index: Any, n: int) -> np.ndarray:
    idx = np.asarray(_array_of(index))
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected a long tensor for index, but got {idx.dtype}")
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        raise IndexError(f"{name}(): out of range: tried to access index "
                         f"{int(idx[bad].reshape(-1)[0])} on a tensor of {n} elements.")
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def take(input: Tensor, index: Any) -> Tensor:  # noqa: A002
    """input's elements at the flat (row-major) positions index, in index's shape."""
    x = _tensor(input)
    idx = _flat_indices("take", index, x.numel())
    return x.reshape(-1).index_select(0, idx.reshape(-1)).reshape(idx.shape)


def put(input: Tensor, index: Any, source: Tensor, accumulate: bool = False) -> Tensor:  # noqa: A002
    """input with source's elements written at the flat positions index (added with
    accumulate)."""
    x = _tensor(input)
    idx = _flat_indices("put", index, x.numel()).reshape(-1)
    src = _tensor(source).reshape(-1)
    if src.numel() != idx.size:
        raise RuntimeError(f"put(): Expected source and index to have the same number of "
                           f"elements, but got source.numel() = {src.numel()}, index.numel() = "
                           f"{idx.size}")
    flat = x.reshape(-1)
    out = flat.index_add(0, idx, src) if accumulate else flat.index_copy(0, idx, src)
    return out.reshape(x.shape)


def _index_along(name: str, x: Tensor, dim: int, index: Any, source: Tensor | None
                 ) -> tuple[int, np.ndarray]:
    """The axis, and the 1-d index broadcast to source's shape along it (for scatter)."""
    axis = _dim_index(name, dim, max(x.ndim, 1))
    idx = np.asarray(_array_of(index))
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise RuntimeError(f"{name}(): Index is supposed to be a vector of integers, got a "
                           f"{idx.ndim}-d {idx.dtype} tensor")
    idx = idx.reshape(-1)
    size = x.shape[axis] if x.ndim else 1
    if ((idx < -size) | (idx >= size)).any():
        raise IndexError(f"{name}(): index out of range for dim {axis} of size {size}")
    idx = np.where(idx < 0, idx + size, idx).astype(np.int64)
    if source is None:
        return axis, idx
    if source.ndim != x.ndim or (source.ndim and source.shape[axis] != idx.size) or any(
            a != b for i, (a, b) in enumerate(zip(source.shape, x.shape)) if i != axis):
        raise RuntimeError(f"{name}(): source of shape {list(source.shape)} does not match self "
                           f"of shape {list(x.shape)} with {idx.size} indices along dim {axis}")
    shape = [1] * x.ndim
    if x.ndim:
        shape[axis] = idx.size
    return axis, np.ascontiguousarray(np.broadcast_to(idx.reshape(shape), tuple(source.shape)))


def index_add(input: Tensor, dim: int, index: Any, source: Tensor, *,  # noqa: A002
              alpha: Any = 1) -> Tensor:
    """input with alpha * source[..., i, ...] added at input[..., index[i], ...] along dim
    (repeated indices add up)."""
    x, src = _tensor(input), _tensor(source)
    if x.ndim == 0:
        return x + (src * alpha).reshape(()) if src.numel() else x.clone()
    axis, idx = _index_along("index_add", x, dim, index, src)
    return x.scatter_add(axis, idx, src if alpha == 1 else src * alpha)


def index_copy(input: Tensor, dim: int, index: Any, source: Tensor) -> Tensor:  # noqa: A002
    """input with source[..., i, ...] written at input[..., index[i], ...] along dim."""
    x, src = _tensor(input), _tensor(source)
    if x.ndim == 0:
        return src.reshape(()).astype(x.dtype) if src.numel() else x.clone()
    axis, idx = _index_along("index_copy", x, dim, index, src)
    return x.scatter(axis, idx, src)


def index_fill(input: Tensor, dim: int, index: Any, value: Any) -> Tensor:  # noqa: A002
    """input with value (a number or a 0-d tensor, which gets the summed gradient) at the
    positions index along dim."""
    x = _tensor(input)
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value.ndim} dimension(s).")
    axis, idx = _index_along("index_fill", x, dim, index, None)
    mask = np.zeros(x.shape[axis] if x.ndim else 1, bool)
    mask[idx] = True
    mask = mask.reshape([-1 if i == axis else 1 for i in range(x.ndim)]) if x.ndim else \
        mask.reshape(())
    return x.masked_fill(mask, value)


_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def scatter_reduce(input: Tensor, dim: int, index: Any, src: Tensor, reduce: str, *,  # noqa: A002
                   include_self: bool = True) -> Tensor:
    """input with each src[i][j][k] reduced into input[index[i][j][k]][j][k] (dim 0; likewise
    for others) by reduce: "sum", "prod", "mean", "amax" or "amin", together with input's
    own value when include_self. index has src's dims; positions no index names keep
    input's value. Integer "mean" rounds down, as PyTorch's."""
    x, s = _tensor(input), _tensor(src)
    if reduce not in _REDUCTIONS:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    if reduce == "mean" and x.dtype == np.bool_:
        raise NotImplementedError('"scatter_reduce_mean" not implemented for bool tensors '
                                  "(neither is PyTorch's kernel)")
    if x.dtype != s.dtype:
        raise RuntimeError(f"scatter_reduce(): Expected self.dtype to be equal to src.dtype, "
                           f"got {x.dtype} and {s.dtype}")
    idx = np.asarray(_array_of(index))
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"scatter_reduce(): Expected dtype int64 for index, got {idx.dtype}")
    axis = _dim_index("scatter_reduce", dim, max(x.ndim, 1))
    if idx.ndim != s.ndim or idx.ndim != x.ndim or any(
            idx.shape[i] > s.shape[i] or (i != axis and idx.shape[i] > x.shape[i])
            for i in range(idx.ndim)):
        raise RuntimeError(f"scatter_reduce(): index of shape {list(idx.shape)} must not be "
                           f"larger than src {list(s.shape)} (or self {list(x.shape)} outside "
                           f"dim {axis}) and all must have the same number of dims")
    if idx.size == 0:
        return x.clone()
    coords = np.indices(idx.shape)
    size = x.shape[axis] if x.ndim else 1
    if ((idx < 0) | (idx >= size)).any():
        raise RuntimeError(f"scatter_reduce(): index out of bounds for dim {axis} of size {size}")
    source_pos = np.ravel_multi_index(tuple(coords), s.shape).reshape(-1) if s.ndim else \
        np.zeros(1, np.int64)
    coords[axis] = idx
    target = np.ravel_multi_index(tuple(coords), x.shape).reshape(-1) if x.ndim else \
        np.zeros(1, np.int64)
    order = np.argsort(target, kind="stable")
    targets, first, counts = np.unique(target[order], return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(targets)), counts)
    lead = int(include_self)
    n_src, n_self = s.numel(), x.numel()
    # The table of contributions: src positions, then input's (include_self), then a pad
    # slot holding reduce's identity.
    table = np.full((len(targets), int(counts.max()) + lead), n_src + n_self, np.int64)
    table[group, np.arange(len(order)) - first[group] + lead] = source_pos[order]
    if include_self:
        table[:, 0] = n_src + targets
    pool = concatenate([s.reshape(-1), x.reshape(-1),
                        Tensor._wrap(np.full(1, _identity(reduce, x.dtype), x.dtype), False)])
    rows = pool[table.reshape(-1)].reshape(table.shape)
    if reduce == "sum":
        reduced = rows.sum(-1)
    elif reduce == "prod":
        reduced = rows.cumprod(-1)[:, -1]
    elif reduce in ("amax", "amin"):
        reduced = rows.amax(-1) if reduce == "amax" else rows.amin(-1)
        if not include_self and reduced.requires_grad:
            # PyTorch shares a tie's gradient among the src elements equal to the result
            # and input's own value when it is equal too, even though include_self=False
            # leaves input out (its share is dropped): scale the src share to match.
            ties = (rows.data == reduced.data[:, None]).sum(-1)
            self_ties = x.data.reshape(-1)[targets] == reduced.data
            factor = (ties / (ties + self_ties)).astype(x.dtype)
            fixed = reduced.detach()
            reduced = fixed + (reduced - fixed) * Tensor._wrap(factor, False)
    else:
        count = counts + lead
        if x.dtype.kind == "f":
            reduced = rows.sum(-1) / Tensor._wrap(count.astype(x.dtype), False)
        else:
            reduced = Tensor._wrap(np.floor_divide(rows.data.sum(-1, dtype=np.int64), count),
                                   False)
    reduced = reduced.astype(x.dtype)  # integer sums and products come back as int64
    mapping = np.arange(n_self)
    mapping[targets] = n_self + np.arange(len(targets))
    return concatenate([x.reshape(-1), reduced.reshape(-1)])[mapping].reshape(x.shape)


def _identity(reduce: str, dtype: np.dtype) -> Any:
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if reduce == "amax" else np.inf
    if dtype == np.bool_:
        return reduce == "amin"
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


def unravel_index(indices: Any, shape: Any) -> tuple[Tensor, ...]:
    """The coordinates (one int64 tensor per dim of shape) of flat row-major indices."""
    idx = np.asarray(_array_of(indices))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"expected 'indices' to be integer dtype, but got {idx.dtype}")
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise RuntimeError("'shape' cannot have negative values, but got "
                           f"{tuple(dims)}")
    n = int(np.prod(dims))
    if ((idx < -n) | (idx >= n)).any():
        raise RuntimeError(f"'indices' must be in range [-{n}, {n - 1}]")
    idx = np.where(idx < 0, idx + n, idx)
    return tuple(Tensor._wrap(np.asarray(c, np.int64), False)
                 for c in np.unravel_index(idx, dims))


def broadcast_shapes(*shapes: Any) -> Size:
    """The shape all the given shapes (tuples or ints) broadcast to."""
    try:
        return Size(np.broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s)
                                          for s in shapes]))
    except ValueError as e:
        raise RuntimeError(f"Shape mismatch: objects cannot be broadcast to a single shape: "
                           f"{[tuple(s) if not isinstance(s, int) else s for s in shapes]}"
                           ) from e


def broadcast_tensors(*tensors: Any) -> tuple[Tensor, ...]:
    """The tensors expanded to their common broadcast shape."""
    ts = [_tensor(t) for t in tensors]
    shape = broadcast_shapes(*[tuple(t.shape) for t in ts])
    return tuple(t if tuple(t.shape) == tuple(shape) else t.expand(shape) for t in ts)


METHODS = ("split_with_sizes", "sum_to_size", "tile", "ravel", "fliplr", "flipud", "hsplit", "vsplit", "dsplit",
           "diag_embed", "diagflat", "argwhere", "take", "put", "index_add", "index_copy",
           "index_fill", "scatter_reduce")
for _name in METHODS:
    setattr(Tensor, _name, globals()[_name])
Tensor.where = where_method
# The in-place forms (recorded results take over self's history, Tensor._inplace).
for _name in ("put", "index_add", "index_copy", "index_fill", "scatter_reduce", "tril", "triu"):
    setattr(Tensor, _name + "_", inplace_method(_name, recorded=True))
del _name

__all__ = sorted([*(n for n in METHODS if n != "sum_to_size"), "unravel_index",
                  "broadcast_shapes", "broadcast_tensors"])
