"""Order statistics whose gradient is not one gather: the median of all elements.

(median along a dim, kthvalue, quantile and cummax pick elements by index, so minidl.tensor_math
composes them from sort/gather, whose gradients route to the picked elements.)
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function


def lower_median_index(sorted_row_count: int) -> int:
    return (sorted_row_count - 1) // 2


class MedianOp(Function):
    """The lower median of all elements (NaN if any element is NaN, NaN for an empty input;
    ignore_nan: of the elements that are not NaN, as nanmedian).
    The gradient is shared equally by every element equal to the median (the NaNs when it is
    NaN), as PyTorch's evenly_distribute_backward gives it."""

    name = "median"

    @staticmethod
    def forward(ctx: Context, a, *, ignore_nan: bool = False) -> np.ndarray:
        flat = a.reshape(-1)
        if ignore_nan and a.dtype.kind == "f":  # nanmedian: the median of the other elements
            flat = flat[~np.isnan(flat)]
        if flat.size == 0:
            out = np.array(np.nan if a.dtype.kind == "f" else 0, a.dtype)
        elif a.dtype.kind == "f" and np.isnan(flat).any():
            out = np.array(np.nan, a.dtype)
        else:
            k = lower_median_index(flat.size)
            out = np.asarray(np.partition(flat, k)[k])
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        ties = (a == out) | (np.isnan(a) & np.isnan(out))
        count = ties.sum()
        if count == 0:
            return np.zeros(a.shape, g.dtype)
        return np.where(ties, g / g.dtype.type(count), 0).astype(g.dtype)
