"""2-D pooling (NCHW): max, average and adaptive average, with PyTorch's window rules."""

from __future__ import annotations

import numpy as np

from minidl._kernels import pool as _pool
from minidl.graph import Context, Function, size_of
from minidl.ops import contiguous
from minidl.ops.conv import check_float, pair
from minidl.threads import get_num_threads


def pool_out_size(
    size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool
) -> int:
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start inside the
    input or its left padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool_geometry(op, a, kernel_size, stride, padding, dilation, ceil_mode):
    """Validated (kernel, stride, padding, dilation, out_size) for a 4-D float input array."""
    check_float(op, "input", a)
    if a.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {a.shape}")
    kernel = pair(op, "kernel_size", kernel_size, 1)
    stride = (
        kernel if stride is None or stride == () or stride == [] else pair(op, "stride", stride, 1)
    )
    padding = pair(op, "padding", padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding {padding} must be at most half of kernel_size {kernel} "
            f"(input {a.shape})"
        )
    out_size = tuple(
        pool_out_size(a.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in range(2)
    )
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: input {a.shape} is too small for kernel_size {kernel}, padding {padding}, "
            f"dilation {dilation}: output size would be {out_size}"
        )
    return kernel, stride, padding, dilation, out_size


class MaxPool2dOp(Function):
    """out[n, c, oh, ow] = max of x over the window; the gradient goes to the stored argmax
    (the first maximum on ties, so forward and backward agree on which input won).

    x: (N, C, H, W) -> (N, C, OH, OW). `indices_sink`, a list, receives the int64 argmax array
    (flat h * W + w per plane, PyTorch's return_indices) when given.

    The 2x2 stride-2 float32 pool (LeNet's, most CNNs') keeps one byte per output, the argmax's
    position in its window, instead of the int64 index: a ninth of the memory traffic, and a
    backward that writes each input element once instead of zeroing and scattering.
    """

    name = "max_pool2d"
    lowering = "max_pool2d"
    fresh_gradients = True

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return size_of(in_shapes[0])

    @staticmethod
    def forward(
        ctx: Context, x, *, kernel, stride, padding, dilation, out_size, indices_sink=None
    ) -> np.ndarray:
        x = contiguous(x)
        out = np.empty(x.shape[:2] + out_size, dtype=x.dtype)
        ctx.x_shape = x.shape
        ctx.window_codes = _is_2x2(x, kernel, stride, padding, dilation, out_size)
        if ctx.window_codes:
            code = np.empty(out.shape, dtype=np.uint8)
            _pool.max_pool2d_2x2_forward(x, out, code, get_num_threads())
            ctx.save_for_backward(code)
            if indices_sink is not None:
                indices_sink.append(_flat_index(code, x.shape[3]))
            return out
        index = np.empty(out.shape, dtype=np.int64)
        _pool.max_pool2d_forward(
            x, out, index, *kernel, *stride, *padding, *dilation, get_num_threads()
        )
        ctx.save_for_backward(index)
        if indices_sink is not None:
            # The caller gets its own copy: backward scatters through `index`, which must not
            # change after the forward.
            indices_sink.append(index.copy())
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        (saved,) = ctx.saved_tensors
        grad_out = contiguous(grad_out)
        grad_x = np.empty(ctx.x_shape, dtype=grad_out.dtype)
        if ctx.window_codes:
            _pool.max_pool2d_2x2_backward(grad_out, saved, grad_x, get_num_threads())
        else:
            _pool.max_pool2d_backward(grad_out, saved, grad_x, get_num_threads())
        return grad_x


def _is_2x2(x: np.ndarray, kernel, stride, padding, dilation, out_size) -> bool:
    """Whether the pool is 2x2, stride 2, unpadded, floor-sized, on float32 (the window-code
    kernels)."""
    return (x.dtype == np.float32 and tuple(kernel) == (2, 2) and tuple(stride) == (2, 2)
            and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1)
            and tuple(out_size) == (x.shape[2] // 2, x.shape[3] // 2))


def _flat_index(code: np.ndarray, W: int) -> np.ndarray:
    """PyTorch's int64 argmax (flat h * W + w per plane) from the 2x2 window codes (N, C, OH,
    OW): window (oh, ow) starts at (2 oh, 2 ow); code 0 1 / 2 3 row-major within it."""
    OH, OW = code.shape[2:]
    c = code.astype(np.int64)
    rows = 2 * np.arange(OH, dtype=np.int64)[:, None] + (c >> 1)
    return rows * W + 2 * np.arange(OW, dtype=np.int64) + (c & 1)


class AvgPool2dOp(Function):
    """out = window sums / divisor (the window clipped to the padded input when
    count_include_pad, else to the input). x: (N, C, H, W) -> (N, C, OH, OW)."""

    name = "avg_pool2d"

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return size_of(in_shapes[0])

    @staticmethod
    def forward(
        ctx: Context, x, *, kernel, stride, padding, out_size, count_include_pad
    ) -> np.ndarray:
        x = contiguous(x)
        out = np.empty(x.shape[:2] + out_size, dtype=x.dtype)
        ctx.args = (*kernel, *stride, *padding, count_include_pad)
        _pool.avg_pool2d_forward(x, out, *ctx.args, get_num_threads())
        ctx.x_shape = x.shape
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        grad_out = contiguous(grad_out)
        grad_x = np.empty(ctx.x_shape, dtype=grad_out.dtype)
        _pool.avg_pool2d_backward(grad_out, grad_x, *ctx.args, get_num_threads())
        return grad_x


class AdaptiveAvgPool2dOp(Function):
    """Mean over PyTorch's adaptive windows: rows [floor(i*H/OH), ceil((i+1)*H/OH)), likewise
    columns. x: (N, C, H, W) -> (N, C, OH, OW); (1, 1) is global average pooling."""

    name = "adaptive_avg_pool2d"

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return size_of(in_shapes[0])

    @staticmethod
    def forward(ctx: Context, x, *, out_size) -> np.ndarray:
        x = contiguous(x)
        out = np.empty(x.shape[:2] + out_size, dtype=x.dtype)
        _pool.adaptive_avg_pool2d_forward(x, out, get_num_threads())
        ctx.x_shape = x.shape
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        grad_out = contiguous(grad_out)
        grad_x = np.empty(ctx.x_shape, dtype=grad_out.dtype)
        _pool.adaptive_avg_pool2d_backward(grad_out, grad_x, get_num_threads())
        return grad_x


def adaptive_out_size(op: str, a: np.ndarray, output_size) -> tuple[int, int]:
    """Validated (OH, OW) for adaptive pooling of a 4-D float input array; output_size: int or
    (OH, OW), None keeping that input size."""
    check_float(op, "input", a)
    if a.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {a.shape}")
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        sizes = tuple(a.shape[2 + i] if s is None else s for i, s in enumerate(output_size))
    else:
        sizes = output_size
    out_size = pair(op, "output_size", sizes, 1)
    if a.shape[2] < 1 or a.shape[3] < 1:
        raise ValueError(f"{op}: input {a.shape} has an empty spatial dimension")
    return out_size


def _adaptive_windows(size: int, out: int) -> np.ndarray:
    """(out, K) input positions of PyTorch's adaptive windows [floor(i*size/out),
    ceil((i+1)*size/out)), K the longest; shorter windows repeat their last position, which
    changes neither a maximum nor which position first holds it."""
    i = np.arange(out)
    start = i * size // out
    end = -(-(i + 1) * size // out)
    k = int((end - start).max())
    return np.minimum(start[:, None] + np.arange(k), end[:, None] - 1)


class AdaptiveMaxPool2dOp(Function):
    """Max over PyTorch's adaptive windows (those of adaptive_avg_pool2d). x: (N, C, H, W) ->
    (N, C, OH, OW). The gradient goes to each window's first maximum in row-major order, or
    to its last NaN (PyTorch's rule: a NaN replaces the running maximum); indices_sink, a
    list, receives the int64 flat h * W + w positions (return_indices)."""

    name = "adaptive_max_pool2d"

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return size_of(in_shapes[0])

    @staticmethod
    def forward(ctx: Context, x, *, out_size, indices_sink=None) -> np.ndarray:
        n, c, h, w = x.shape
        rows, cols = _adaptive_windows(h, out_size[0]), _adaptive_windows(w, out_size[1])
        kh, kw = rows.shape[1], cols.shape[1]
        # (N, C, OH, KH, OW, KW) -> (N, C, OH, OW, KH * KW): every window's entries, row-major.
        windows = x[:, :, rows[:, :, None, None], cols[None, None, :, :]]
        windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, *out_size, kh * kw)
        local = np.argmax(windows, axis=-1)
        nan = np.isnan(windows)
        if nan.any():
            last_nan = kh * kw - 1 - np.argmax(nan[..., ::-1], axis=-1)
            local = np.where(nan.any(axis=-1), last_nan, local)
        out = np.take_along_axis(windows, local[..., None], axis=-1)[..., 0]
        oh, ow = np.ogrid[: out_size[0], : out_size[1]]
        index = rows[oh, local // kw] * w + cols[ow, local % kw]
        if indices_sink is not None:
            indices_sink.append(index)
        ctx.index, ctx.x_shape = index, x.shape
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        n, c, h, w = ctx.x_shape
        grad_x = np.zeros((n * c, h * w), dtype=grad_out.dtype)
        planes = np.arange(n * c)[:, None]
        # np.add.at sums in index order (overlapping windows share entries): deterministic.
        per_plane = ctx.index.shape[2] * ctx.index.shape[3]
        np.add.at(grad_x, (planes, ctx.index.reshape(n * c, per_plane)),
                  grad_out.reshape(n * c, per_plane))
        return grad_x.reshape(ctx.x_shape)
