"""Matrix products on minidl's own GEMM kernel: matmul (NumPy semantics) and linear.

Backward passes are the transposed products, done by the kernel's packing rather than by
transposed copies: for C = A @ B, dA = G @ B^T (NT) and dB = A^T @ G (TN).
"""

from __future__ import annotations

import numpy as np

from minidl._kernels import elementwise as _elementwise
from minidl._kernels import gemm
from minidl.graph import Context, Function, size_of
from minidl.ops import contiguous, flat_kernel
from minidl.ops.activation import relu_grad
from minidl.ops.elementwise import broadcast_mismatch, unbroadcast
from minidl.threads import get_num_threads

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def gemm2d(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False,
           out: np.ndarray | None = None):
    """op(a) @ op(b) for 2-D C-contiguous float arrays of one dtype (into `out` if given)."""
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
    gemm.matmul(a, b, out, trans_a, trans_b, get_num_threads())
    return out


def gemm3d(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False):
    """Batched op(a[i]) @ op(b[i]) for 3-D C-contiguous float arrays of one dtype."""
    m = a.shape[2] if trans_a else a.shape[1]
    n = b.shape[1] if trans_b else b.shape[2]
    out = np.empty((a.shape[0], m, n), dtype=a.dtype)
    gemm.batched_matmul(a, b, out, trans_a, trans_b, get_num_threads())
    return out


def _float_operands(name: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a and b, contiguous; PyTorch's products take one dtype and do not promote."""
    if a.dtype != b.dtype:
        raise RuntimeError(
            f"{name}: expected both operands to have the same dtype, got {a.dtype} and {b.dtype}"
        )
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float32 or float64 operands, got {a.dtype}")
    return contiguous(a), contiguous(b)


def _rows(a: np.ndarray) -> np.ndarray:
    """a (..., k) as a 2-D (rows, k) view; explicit sizes, since reshape(-1, 0) is ambiguous
    and a zero-size k or batch is valid (a k = 0 product is all zeros, as in PyTorch)."""
    return a.reshape(int(np.prod(a.shape[:-1], dtype=np.int64)), a.shape[-1])


class MatMulOp(Function):
    """a @ b with NumPy's rules: 1-D operands are vectors, leading axes broadcast."""

    name = "matmul"
    symbol = "@"

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return 2 * size_of(out_shape) * (in_shapes[0][-1] if in_shapes[0] else 1)

    @classmethod
    def backward_flops(cls, forward_flops: int, needs_input_grad: tuple) -> int:
        return forward_flops * sum(1 for n in needs_input_grad[:2] if n)

    @staticmethod
    def forward(ctx: Context, a, b) -> np.ndarray:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got {a.shape} and {b.shape}")
        if a.dtype not in _FLOATS and b.dtype not in _FLOATS:
            return contiguous(np.matmul(a, b))
        a, b = _float_operands("matmul", a, b)
        ctx.shapes = (a.shape, b.shape)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a2.shape[-1] != b2.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align "
                f"({a2.shape[-1]} != {b2.shape[-2]})"
            )
        m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
        if b2.ndim == 2:
            # Leading axes of a fold into the rows of one GEMM.
            out = gemm2d(_rows(a2), b2).reshape(a2.shape[:-1] + (n,))
        else:
            try:
                batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
            except ValueError as e:
                mismatch = broadcast_mismatch(a2.shape[:-2], b2.shape[:-2])
                raise RuntimeError(f"matmul: {mismatch}") from e
            a3 = contiguous(np.broadcast_to(a2, batch + (m, k))).reshape(int(np.prod(batch)), m, k)
            b3 = contiguous(np.broadcast_to(b2, batch + (k, n))).reshape(int(np.prod(batch)), k, n)
            out = gemm3d(a3, b3).reshape(batch + (m, n))
            ctx.batch = batch
        ctx.save_for_backward(a2, b2)
        if a.ndim == 1:
            out = out.reshape(out.shape[:-2] + (n,))
        if b.ndim == 1:
            out = out.reshape(out.shape[:-1])
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a2, b2 = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
        ga = gb = None
        if b2.ndim == 2:
            g2 = _rows(contiguous(g.astype(a2.dtype, copy=False)).reshape(a2.shape[:-1] + (n,)))
            if need_a:
                ga = gemm2d(g2, b2, trans_b=True).reshape(a_shape)
            if need_b:
                gb = gemm2d(_rows(a2), g2, trans_a=True).reshape(b_shape)
            return ga, gb
        batch = ctx.batch
        g3 = contiguous(g.astype(a2.dtype, copy=False)).reshape(int(np.prod(batch)), m, n)
        if need_a:
            b3 = contiguous(np.broadcast_to(b2, batch + (k, n))).reshape(int(np.prod(batch)), k, n)
            ga = gemm3d(g3, b3, trans_b=True).reshape(batch + (m, k))
            ga = unbroadcast(ga, a2.shape).reshape(a_shape)
        if need_b:
            a3 = contiguous(np.broadcast_to(a2, batch + (m, k))).reshape(int(np.prod(batch)), m, k)
            gb = gemm3d(a3, g3, trans_a=True).reshape(batch + (k, n))
            gb = unbroadcast(gb, b2.shape).reshape(b_shape)
        return ga, gb


class LinearOp(Function):
    """y = x @ weight^T + bias, then max(y, 0) when relu.
    x: (..., in), weight: (out, in), bias: (out,) or None.

    `out`: an optional preallocated (..., out) array to write into (static graphs' memory plan).
    relu=True is the static graphs' fusion of a following ReLU: the epilogue runs while the
    GEMM's output is still in cache, and backward masks the gradient with the saved output.
    """

    name = "linear"
    writes_out = True
    epilogues = ("relu",)
    lowering = "linear"
    fresh_gradients = True

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return 2 * size_of(out_shape) * in_shapes[0][-1]

    backward_flops = MatMulOp.backward_flops

    @staticmethod
    def forward(ctx: Context, x, weight, bias, out=None, relu=False) -> np.ndarray:
        if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input of shape {x.shape} needs last dim == weight.shape[1]; "
                f"weight has shape {weight.shape} (expected (out_features, in_features))"
            )
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(
                f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)"
            )
        if bias is not None and bias.dtype != weight.dtype:
            raise RuntimeError(f"linear: bias is {bias.dtype} but weight is {weight.dtype}; "
                               "expected one dtype")
        x, weight = _float_operands("linear", x, weight)
        x2 = _rows(x)
        if out is not None:
            out = out.reshape(x2.shape[0], weight.shape[0])
        out = gemm2d(x2, weight, trans_b=True, out=out)
        if bias is not None:
            out += bias
        if relu:  # as ReLU's forward (and the compiled programs): -0.0 stays -0.0
            flat_kernel(_elementwise.relu, (out,), out)
        ctx.save_for_backward(x2, weight, out if relu else None)
        ctx.x_shape = x.shape
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x2, weight, relu_out = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g2 = _rows(contiguous(g).reshape(ctx.x_shape[:-1] + (weight.shape[0],)))
        if relu_out is not None:
            g2 = relu_grad(relu_out, g2)
        gx = gemm2d(g2, weight).reshape(ctx.x_shape) if need_x else None
        gw = gemm2d(g2, x2, trans_a=True) if need_w else None
        gb = g2.sum(axis=0) if need_b else None
        return gx, gw, gb
