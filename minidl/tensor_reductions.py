"""PyTorch's reductions and counting functions beyond minidl.tensor's and tensor_math's:
aminmax, mode, msort, histc, unique_consecutive and renorm, each `minidl.X` and `Tensor.X`.

Values that select input elements (aminmax, mode, msort) come from differentiable amin/amax,
gather and sort, so their gradients are PyTorch's; renorm's scale is a differentiable
function of the norms; histc and unique_consecutive have no gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import return_types
from minidl.tensor import Tensor, _dim_index, where
from minidl.tensor_elementwise import inplace_method
from minidl.tensor_math import _refuse_bool, _tensor, _wrap


def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False) -> Any:  # noqa: A002
    """(min, max) over dim, or over all elements (return_types.aminmax)."""
    x = _tensor(input)
    if x.numel() == 0 and (dim is None or x.shape[_dim_index("aminmax", dim, x.ndim)] == 0):
        raise RuntimeError("aminmax(): Expected reduction dim to be specified for "
                           "input.numel() == 0." if dim is None else
                           "aminmax(): Expected reduction dim to have non-zero size.")
    if dim is None:
        low, high = x.amin(), x.amax()
        if keepdim:
            low, high = low.reshape((1,) * x.ndim), high.reshape((1,) * x.ndim)
        return return_types.aminmax(low, high)
    return return_types.aminmax(x.amin(dim, keepdim=keepdim), x.amax(dim, keepdim=keepdim))


def mode(input: Tensor, dim: int = -1, keepdim: bool = False) -> Any:  # noqa: A002
    """(values, indices) of the most frequent value along dim: the smallest of equally
    frequent ones, at the last position it holds (PyTorch's CPU result)."""
    x = _tensor(input)
    if x.ndim == 0:
        return return_types.mode(x.clone(), _wrap(np.array(0, np.int64)))
    axis = _dim_index("mode", dim, x.ndim)
    if x.shape[axis] == 0:
        raise IndexError(f"mode(): Expected reduction dim {axis} to have non-zero size.")
    rows = np.moveaxis(x.data, axis, -1).reshape(-1, x.shape[axis])
    index = np.empty(len(rows), np.int64)
    for r, row in enumerate(rows):
        values, counts = np.unique(row, return_counts=True)
        value = values[np.argmax(counts)]  # np.unique sorts: ties go to the smallest
        index[r] = np.flatnonzero(row == value)[-1]
    lead = tuple(n for i, n in enumerate(x.shape) if i != axis)
    kept = tuple(1 if i == axis else n for i, n in enumerate(x.shape))
    idx = index.reshape(lead)
    gathered = x.gather(axis, np.ascontiguousarray(np.expand_dims(idx, axis)))
    if keepdim:
        return return_types.mode(gathered, _wrap(idx.reshape(kept)))
    return return_types.mode(gathered.reshape(lead), _wrap(idx))


def msort(input: Tensor) -> Tensor:  # noqa: A002
    """Sorted along dim 0 (ascending)."""
    return _tensor(input).sort(0).values


def histc(input: Tensor, bins: int = 100, min: float = 0, max: float = 0) -> Tensor:  # noqa: A002
    """Counts of the elements in `bins` equal-width bins over [min, max] (the data's range
    when min == max), in input's float dtype; elements outside are ignored, max goes to the
    last bin. No gradient."""
    x = _tensor(input)
    if x.dtype.kind != "f":
        raise RuntimeError(f'"histogram_cpu" not implemented for {x.dtype} tensors')
    if bins <= 0:
        raise RuntimeError(f"torch.histc(): bins must be > 0, but got {bins} for dimension 0")
    if min > max:
        raise RuntimeError(f"torch.histc(): max must be larger than min, got min {min} and "
                           f"max {max}")
    data = x.data.reshape(-1)
    low, high = x.dtype.type(min), x.dtype.type(max)
    if low == high and data.size:
        low, high = data.min(), data.max()
    if low == high:
        low, high = low - 1, high + 1
    if not (np.isfinite(low) and np.isfinite(high)):
        raise RuntimeError(f"torch.histc(): range of [{low}, {high}] is not finite")
    inside = data[(data >= low) & (data <= high)]
    # PyTorch's bin: (x - min) / (max - min) * bins, in the input's dtype, max in the last.
    position = ((inside - low) / (high - low) * x.dtype.type(bins)).astype(np.int64)
    position = np.minimum(position, bins - 1)
    return _wrap(np.bincount(position, minlength=bins).astype(x.dtype))


def unique_consecutive(input: Tensor, return_inverse: bool = False,  # noqa: A002
                       return_counts: bool = False, dim: int | None = None) -> Any:
    """Each run of equal consecutive elements (or slices along dim) collapsed to one; with
    return_inverse / return_counts a tuple (values, inverse, counts) of those asked for."""
    x = _tensor(input)
    if dim is None:
        flat = x.data.reshape(-1)
        starts = np.ones(flat.size, bool)
        starts[1:] = flat[1:] != flat[:-1]
        values = flat[starts]
        inverse = (np.cumsum(starts) - 1).reshape(x.shape)
    else:
        axis = _dim_index("unique_consecutive", dim, x.ndim)
        if any(n == 0 for i, n in enumerate(x.shape) if i != axis):
            raise RuntimeError("There are 0 sized dimensions, and they aren't selected, so "
                               "unique cannot be applied")
        moved = np.moveaxis(x.data, axis, 0).reshape(x.shape[axis], x.numel() // max(
            x.shape[axis], 1))
        starts = np.ones(len(moved), bool)
        starts[1:] = (moved[1:] != moved[:-1]).any(axis=1)
        values = np.take(x.data, np.flatnonzero(starts), axis=axis)
        inverse = np.cumsum(starts) - 1
    counts = np.diff(np.append(np.flatnonzero(starts), starts.size))
    out = [_wrap(values)]
    if return_inverse:
        out.append(_wrap(inverse.astype(np.int64)))
    if return_counts:
        out.append(_wrap(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def renorm(input: Tensor, p: float, dim: int, maxnorm: float) -> Tensor:  # noqa: A002
    """Each slice along dim whose p-norm exceeds maxnorm scaled down to maxnorm (by
    maxnorm / (norm + 1e-7), PyTorch's); floating point only."""
    x = _tensor(input)
    _refuse_bool("renorm", x)
    if x.dtype.kind != "f":
        raise RuntimeError(f"renorm: expected a floating point tensor, got {x.dtype}")
    if p <= 0:
        raise RuntimeError(f"renorm: non-positive-norm not supported, got p={p}")
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    if x.ndim == 0:
        raise RuntimeError("renorm: input needs at least 1 dimension, got 0 dimensions")
    axis = _dim_index("renorm", dim, x.ndim)
    others = tuple(i for i in range(x.ndim) if i != axis)
    norms = x.norm(p, dim=others, keepdim=True) if others else x.abs()
    over = norms.data > maxnorm
    scale = maxnorm / (norms + 1e-7)
    one = Tensor._wrap(np.ones((), x.dtype), False)
    return x * where(over, scale, one)


METHODS = ("aminmax", "mode", "msort", "histc", "unique_consecutive", "renorm")
for _name in METHODS:
    setattr(Tensor, _name, globals()[_name])
del _name
Tensor.renorm_ = inplace_method("renorm", recorded=True)

__all__ = sorted(METHODS)
