"""What the linalg ops share: LinAlgError, PyTorch's input checks and messages, the batched
matrix helpers of the backward formulas, and the packing of several outputs into one array.

minidl's graph gives an op one output; a decomposition with several (eigh's eigenvalues and
eigenvectors, svd's U, S, Vh) returns them flattened side by side along one last axis, and
the public function slices that array into Tensors. Backward receives the gradient of the
packed array; a part whose gradient is all zeros was not used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.ops import contiguous
from minidl.tensor import Tensor, tensor

#: PyTorch's names of the dtypes in its messages ("Got Long").
_TORCH_DTYPE_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
                      "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


class LinAlgError(RuntimeError):
    """A matrix had no factorization or inverse (singular, not positive-definite): as
    torch.linalg.LinAlgError, a RuntimeError."""


def torch_dtype_name(dtype: np.dtype) -> str:
    return _TORCH_DTYPE_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


def as_tensor_arg(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def check_float(op: str, x: Tensor) -> None:
    """RuntimeError, as PyTorch's linalg functions, for an integer or bool input."""
    if x.dtype.kind != "f":
        raise RuntimeError(f"{op}: Expected a floating point or complex tensor as input. "
                           f"Got {torch_dtype_name(x.dtype)}")


def check_matrix(op: str, x: Tensor, name: str = "A") -> None:
    if x.ndim < 2:
        raise RuntimeError(f"{op}: The input tensor {name} must have at least 2 dimensions.")


def check_square(op: str, x: Tensor, name: str = "A") -> None:
    """RuntimeError unless x is (..., n, n)."""
    check_matrix(op, x, name)
    if x.shape[-1] != x.shape[-2]:
        raise RuntimeError(f"{op}: {name} must be batches of square matrices, but they are "
                           f"{x.shape[-2]} by {x.shape[-1]} matrices")


def square_float(op: str, x: Any) -> Tensor:
    """x as a Tensor after the checks of a function of square float matrices."""
    x = as_tensor_arg(x)
    check_float(op, x)
    check_square(op, x)
    return x


def mT(a: np.ndarray) -> np.ndarray:  # noqa: N802 (PyTorch's name for the matrix transpose)
    return np.swapaxes(a, -1, -2)


def diag_embed(v: np.ndarray) -> np.ndarray:
    """(..., n) -> (..., n, n) with v on the diagonal."""
    out = np.zeros(v.shape + (v.shape[-1],), v.dtype)
    np.einsum("...ii->...i", out)[...] = v
    return out


def first_zero_pivot(a: np.ndarray) -> int:
    """The 1-based index of the first exactly zero diagonal element of U in a = P L U with
    partial pivoting (LAPACK getrf's `info`), or 0 when there is none."""
    u = np.array(a, dtype=np.float64)
    n = u.shape[0]
    for k in range(n):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if u[p, k] == 0:
            return k + 1
        u[[k, p]] = u[[p, k]]
        u[k + 1:, k:] -= np.outer(u[k + 1:, k] / u[k, k], u[k, k:])
    return 0


def batch_prefix(batch_shape: tuple, index: int) -> str:
    """PyTorch's "(Batch element i): " before a batched input's error, "" for one matrix."""
    return f"(Batch element {index}): " if batch_shape else ""


def pack(*parts: np.ndarray, batch: tuple) -> np.ndarray:
    """The arrays (each batch + its own shape) flattened and joined along one last axis."""
    # explicit sizes: reshape(-1) is ambiguous when the batch is empty
    flat = [p.reshape(batch + (int(np.prod(p.shape[len(batch):], dtype=np.int64)),))
            for p in parts]
    return contiguous(np.concatenate(flat, axis=-1))


def unpack(packed: np.ndarray, shapes: list[tuple]) -> list[np.ndarray]:
    """pack's parts back (as arrays: backward's gradients), given each part's trailing shape."""
    batch = packed.shape[:-1]
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(packed[..., start:start + size].reshape(batch + shape))
        start += size
    return out


def unpack_tensor(packed: Tensor, shapes: list[tuple]) -> list[Tensor]:
    """pack's parts as Tensors, differentiable through the slicing."""
    batch = tuple(packed.shape[:-1])
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(packed[..., start:start + size].reshape(batch + tuple(shape)))
        start += size
    return out


def used(g: np.ndarray) -> bool:
    """Whether a part of a packed output's gradient is nonzero (a part the loss used)."""
    return bool(g.size) and bool(np.any(g))
