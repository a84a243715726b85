"""Ops: one Function subclass per differentiable operation, grouped by family."""

import numpy as np


def contiguous(a) -> np.ndarray:
    """`a` as a C-contiguous array, copying only if needed. Unlike np.ascontiguousarray it
    keeps 0-d arrays 0-d."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
