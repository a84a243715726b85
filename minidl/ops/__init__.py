"""Ops: one Function subclass per differentiable operation, grouped by family.

Ops are array-level: forward and backward see NumPy arrays, never Tensors (the Tensor-level
wrappers are in minidl.tensor and minidl.nn.functional), and keep what backward reads in
`ctx.save_for_backward`. Each class declares its traits on the class (minidl.graph.Function:
name, elementwise, writes_out, inplace_ok, epilogues/epilogue, lowering, flops, label,
symbol), which the static-graph passes, the memory planner, the profiler and viz read.

A new op is one class in one file (the recipe is in minidl.graph's docstring). Importing
minidl.ops registers every op (Function.__init_subclass__); every other module finds an op by
its name, `minidl.graph.op("add")`, once at import, and never names its class.

Names: a class is named `<Name>Op` (the Module that applies an op keeps the plain name:
nn.Linear applies the op named "linear"); its registered name is the minidl function or method
that applies it ("add", "linear", "conv2d", "mse_loss"). Displays drop the suffix: viz and the
profiler show "Linear", `grad_fn` PyTorch's "AddBackward0".
"""

import numpy as np

from minidl.threads import get_num_threads


def contiguous(a) -> np.ndarray:
    """`a` as a C-contiguous array, copying only if needed. Unlike np.ascontiguousarray it
    keeps 0-d arrays 0-d."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def flat_kernel(kernel, arrays: tuple, out: np.ndarray | None, *args) -> np.ndarray:
    """`kernel(*flat arrays, flat result, *args, n_threads)` for C-contiguous `arrays` of one
    shape and dtype (minidl._kernels.elementwise): the result is `out` when that is a
    C-contiguous array of their shape and dtype, else a new array (copied into `out` when one
    was given, as a ufunc's `out=` casts)."""
    x = arrays[0]
    fits = (out is not None and out.flags.c_contiguous and out.dtype == x.dtype
            and out.shape == x.shape)
    dst = out if fits else np.empty_like(x)
    kernel(*(a.reshape(-1) for a in arrays), dst.reshape(-1), *args, get_num_threads())
    if out is None or dst is out:
        return dst
    np.copyto(out, dst, casting="same_kind")
    return out


# The families, imported after `contiguous` (which they import from here): their classes
# register themselves, so `import minidl.ops` makes every op findable by name.
from minidl.ops import (  # noqa: E402, F401
    activation,
    conv,
    distance,
    einsum,
    elementwise,
    elementwise_math,
    elementwise_unary,
    im2col,
    local,
    loss,
    matmul,
    order,
    pool,
    reduce,
    repeat,
    scan,
    shape,
    special,
)
