"""Ops: one Function subclass per differentiable operation, grouped by family.

Ops are array-level: forward and backward see NumPy arrays, never Tensors (the Tensor-level
wrappers are in minidl.tensor and minidl.nn.functional), and keep what backward reads in
`ctx.save_for_backward`. Each class declares its traits on the class (minidl.graph.Function:
elementwise, writes_out, inplace_ok, epilogues/epilogue, flops, label, symbol), which the
static-graph passes, the memory planner, the profiler and viz read; a new op is one class in
one file.

Names: every Function subclass ends in `Op` (AddOp, LinearOp, Conv2dOp), so that no op shares a
name with the Module that uses it (nn.Linear applies LinearOp) and a name says which layer it
belongs to. Displays drop the suffix: viz and the profiler show "Linear", `grad_fn` PyTorch's
"AddBackward0".
"""

import numpy as np


def contiguous(a) -> np.ndarray:
    """`a` as a C-contiguous array, copying only if needed. Unlike np.ascontiguousarray it
    keeps 0-d arrays 0-d."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
