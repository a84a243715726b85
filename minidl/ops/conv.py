"""2-D convolution (NCHW) on minidl's kernels, with an optional fused ReLU epilogue.

minidl.backends.conv picks the algorithm by shape (Winograd, direct kernels, im2col + GEMM; see
its `algorithm` switch); this layer validates arguments, allocates outputs and routes gradients.
"""

from __future__ import annotations

import numpy as np

from minidl.backends import conv as _conv
from minidl.graph import Context, Function, size_of
from minidl.ops import contiguous
from minidl.threads import get_num_threads

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_GEOMETRY = 2**40



def pair(op: str, name: str, value, minimum: int) -> tuple[int, int]:
    """(h, w) from an int or a 1- or 2-sequence of ints, each >= minimum, else ValueError."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) in (1, 2):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{op}: {name} must be ints, got {value!r}")
        values = tuple(int(v) for v in value) * (3 - len(value))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    # Sizes reach the kernels as 64-bit integers; products of two such values must not wrap.
    if max(values) > _MAX_GEOMETRY:
        raise ValueError(f"{op}: {name} must be at most 2**40, got {value!r}")
    return values


def check_float(op: str, what: str, a: np.ndarray) -> None:
    if a.dtype not in _FLOATS:
        raise TypeError(f"{op}: expected a float32 or float64 {what}, got dtype {a.dtype}")


def conv_out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


class Conv2dOp(Function):
    """out = conv2d(x, weight) + bias, then max(out, 0) when relu.

    x: (N, C, H, W); weight: (OC, C // groups, KH, KW); bias: (OC,) or None.
    padding = (top, left); out_size = (OH, OW) carries any extra bottom/right padding
    (padding='same' with an even kernel pads more at the end, as PyTorch does).
    """

    name = "conv2d"
    epilogues = ("relu",)
    lowering = "conv2d"
    fresh_gradients = True
    channel_params = (1, 2)

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return 2 * size_of(out_shape) * size_of(in_shapes[1][1:])

    @classmethod
    def backward_flops(cls, forward_flops: int, needs_input_grad: tuple) -> int:
        return forward_flops * sum(1 for n in needs_input_grad[:2] if n)

    @staticmethod
    def forward(
        ctx: Context, x, weight, bias, *, stride, padding, dilation, groups, out_size, relu
    ) -> np.ndarray:
        x, weight = contiguous(x), contiguous(weight)
        if bias is not None:
            bias = contiguous(bias)
        out = np.empty((x.shape[0], weight.shape[0]) + out_size, dtype=x.dtype)
        _conv.conv2d_forward(
            x, weight, bias, out, stride, padding, dilation, groups, relu, get_num_threads()
        )
        ctx.save_for_backward(x, weight, out if relu else None)
        ctx.geometry = (stride, padding, dilation, groups)
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        x, weight, out = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = np.empty_like(x) if need_x else None
        grad_w = np.empty_like(weight) if need_w else None
        grad_b = np.empty(weight.shape[0], dtype=x.dtype) if need_b else None
        if need_x or need_w or need_b:
            g = contiguous(grad_out.astype(x.dtype, copy=False))
            _conv.conv2d_backward(
                x, weight, g, out, grad_x, grad_w, grad_b, *ctx.geometry, get_num_threads()
            )
        return grad_x, grad_w, grad_b


def check_input_and_weight(op, xa, wa):
    """Both float32/float64 and of one dtype (PyTorch's convolutions do not promote)."""
    check_float(op, "input", xa)
    check_float(op, "weight", wa)
    if xa.dtype != wa.dtype:
        raise RuntimeError(f"{op}: input is {xa.dtype} but weight is {wa.dtype}; expected one "
                           "dtype")


def conv_arguments(op, xa, wa, ba, stride, padding, dilation, groups):
    """Validated (stride, top-left padding, dilation, groups, out_size) for Conv2dOp, from
    the input, weight and bias arrays (ba None without bias)."""
    check_input_and_weight(op, xa, wa)
    if xa.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {xa.shape}")
    if wa.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight (OC, C/groups, KH, KW), got {wa.shape}")
    if ba is not None:
        if ba.dtype != xa.dtype:
            raise RuntimeError(f"{op}: bias is {ba.dtype} but input is {xa.dtype}; expected one "
                               "dtype")
        if ba.shape != (wa.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({wa.shape[0]},), got {ba.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    groups = int(groups)
    n, c, h, w = xa.shape
    oc, cg, kh, kw = wa.shape
    if oc % groups:
        raise ValueError(
            f"{op}: out channels {oc} (weight {wa.shape}) not divisible by groups={groups}"
        )
    if c % groups or c // groups != cg:
        raise ValueError(
            f"{op}: input {xa.shape} has {c} channels; weight {wa.shape} with groups={groups} "
            f"expects {cg * groups}"
        )
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pad_total = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride={stride}")
            pad_total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
        else:
            raise ValueError(f"{op}: padding must be 'same', 'valid' or ints, got {padding!r}")
        top_left = (pad_total[0] // 2, pad_total[1] // 2)
    else:
        top_left = pair(op, "padding", padding, 0)
        pad_total = (2 * top_left[0], 2 * top_left[1])
    extent = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    if h + pad_total[0] < extent[0] or w + pad_total[1] < extent[1]:
        raise ValueError(
            f"{op}: kernel {(kh, kw)} (dilated extent {extent}) is larger than the padded input "
            f"{(h + pad_total[0], w + pad_total[1])} (input {xa.shape}, padding {padding!r})"
        )
    out_size = (
        conv_out_size(h, kh, stride[0], pad_total[0], dilation[0]),
        conv_out_size(w, kw, stride[1], pad_total[1], dilation[1]),
    )
    return stride, top_left, dilation, groups, out_size


class ConvTranspose2dOp(Function):
    """out = conv_transpose2d(x, weight) + bias: the adjoint of conv2d in x, so it runs on
    conv2d's kernels. Its forward is conv2d's input gradient (x in the place of the output
    gradient), its input gradient is conv2d's forward and its weight gradient is conv2d's
    weight gradient with the roles of input and output gradient swapped.

    x: (N, C, H, W); weight: (C, OC // groups, KH, KW); bias: (OC,) or None;
    out_size = (OH, OW) = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + 1 +
    output_padding (and the same for W). `extra` = output_padding // stride rows and columns of
    zeros end x inside the op: with output_padding >= stride (allowed when below the dilation)
    conv2d of the output has that many more rows than x, and zeros contribute nothing.
    """

    name = "conv_transpose2d"
    fresh_gradients = True

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return 2 * size_of(in_shapes[0]) * size_of(in_shapes[1][1:])

    # Each input gradient is one product of the forward's size, as for Conv2dOp.
    backward_flops = Conv2dOp.backward_flops

    @staticmethod
    def forward(
        ctx: Context, x, weight, bias, *, stride, padding, dilation, groups, out_size, extra
    ) -> np.ndarray:
        x, weight = contiguous(x), contiguous(weight)
        if extra != (0, 0):
            x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        out = np.empty((x.shape[0], weight.shape[1] * groups) + out_size, dtype=x.dtype)
        # conv2d's input-gradient passes read only the shape of their `x` argument (out here).
        _conv.conv2d_backward(
            out, weight, x, None, out, None, None, stride, padding, dilation, groups,
            get_num_threads(),
        )
        if bias is not None:
            out += bias[:, None, None]
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation, groups, extra)
        return out

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, extra = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad
        g = contiguous(grad_out.astype(x.dtype, copy=False))
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = np.empty_like(x)
            _conv.conv2d_forward(
                g, weight, None, grad_x, stride, padding, dilation, groups, False,
                get_num_threads(),
            )
            grad_x = grad_x[:, :, : x.shape[2] - extra[0], : x.shape[3] - extra[1]]
            if extra != (0, 0):
                grad_x = np.ascontiguousarray(grad_x)
        if need_w:
            grad_w = np.empty_like(weight)
            _conv.conv2d_backward(
                g, weight, x, None, None, grad_w, None, stride, padding, dilation, groups,
                get_num_threads(),
            )
        if need_b:
            grad_b = g.sum(axis=(0, 2, 3))
        return grad_x, grad_w, grad_b


def conv_transpose_arguments(op, xa, wa, ba, stride, padding, output_padding, groups, dilation):
    """Validated (stride, padding, dilation, groups, out_size, extra) for the conv_transpose2d
    op from the input, weight and bias arrays (ba None without bias), as PyTorch checks them."""
    check_input_and_weight(op, xa, wa)
    if xa.ndim != 4:
        raise ValueError(
            f"{op}: expected a 4-D input (N, C, H, W) or a 3-D (C, H, W), got shape {xa.shape}"
        )
    if wa.ndim != 4:
        raise ValueError(
            f"{op}: expected a 4-D weight (C, OC/groups, KH, KW), got shape {wa.shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    groups = int(groups)
    c, ocg, kh, kw = wa.shape
    if xa.shape[1] != c:
        raise ValueError(
            f"{op}: weight {wa.shape} expects an input with {c} channels, got input {xa.shape}"
        )
    if c % groups:
        raise ValueError(
            f"{op}: input channels {c} (weight {wa.shape}) not divisible by groups={groups}"
        )
    if ba is not None:
        if ba.dtype != xa.dtype:
            raise RuntimeError(f"{op}: bias is {ba.dtype} but input is {xa.dtype}; expected one "
                               "dtype")
        if ba.shape != (ocg * groups,):
            raise ValueError(
                f"{op}: bias must have shape ({ocg * groups},) for weight {wa.shape} and "
                f"groups={groups}, got {ba.shape}"
            )
    stride = pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    output_padding = pair(op, "output_padding", output_padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
    if any(p >= s and p >= d for p, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"{op}: output_padding must be smaller than either stride or dilation, got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    out_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + 1 + o
        for size, s, p, d, k, o in zip(
            xa.shape[2:], stride, padding, dilation, (kh, kw), output_padding
        )
    )
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: input {xa.shape} gives an output of size {out_size} per channel (kernel "
            f"{(kh, kw)}, stride {stride}, padding {padding}, dilation {dilation}, "
            f"output_padding {output_padding}); it must be at least 1"
        )
    extra = (output_padding[0] // stride[0], output_padding[1] // stride[1])
    return stride, padding, dilation, groups, out_size, extra
