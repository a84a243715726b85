"""Locally connected 2-D layer: a convolution whose filters are not shared across positions.

Each output position (i, j) has its own filter bank, so the layer is one small matrix product
per position: batched over the OH * OW positions it runs on minidl's batched GEMM.
"""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops import contiguous
from minidl.ops.activation import check_float_input
from minidl.ops.matmul import gemm3d


def local_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _unfold(xp: np.ndarray, kh: int, kw: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """Patches of the padded input as (OH * OW, N, C * KH * KW), flattened in (c, kh, kw) order."""
    n, c = xp.shape[:2]
    patches = np.empty((oh, ow, n, c, kh, kw), dtype=xp.dtype)
    for ki in range(kh):
        for kj in range(kw):
            window = xp[:, :, ki : ki + stride * oh : stride, kj : kj + stride * ow : stride]
            patches[:, :, :, :, ki, kj] = window.transpose(2, 3, 0, 1)
    return patches.reshape(oh * ow, n, c * kh * kw)


def _fold(patch_grad: np.ndarray, padded_shape: tuple, kh: int, kw: int, stride: int,
          oh: int, ow: int) -> np.ndarray:
    """Adjoint of _unfold: sum each patch gradient back into the padded input's positions."""
    n, c = padded_shape[:2]
    patches = patch_grad.reshape(oh, ow, n, c, kh, kw)
    out = np.zeros(padded_shape, dtype=patch_grad.dtype)
    for ki in range(kh):
        for kj in range(kw):
            out[:, :, ki : ki + stride * oh : stride, kj : kj + stride * ow : stride] += (
                patches[:, :, :, :, ki, kj].transpose(2, 3, 0, 1)
            )
    return out


class LocallyConnected2dOp(Function):
    """out[n, o, i, j] = sum_{c, a, b} weight[i, j, o, c, a, b] * xpad[n, c, i*s + a, j*s + b]
    + bias[o, i, j].

    x: (N, C, H, W); weight: (OH, OW, OC, C, KH, KW); bias: (OC, OH, OW) or None;
    stride, padding: ints (zero padding on every side). Returns (N, OC, OH, OW).
    """

    name = "locally_connected2d"

    @staticmethod
    def forward(ctx: Context, x, weight, bias, *, stride: int, padding: int) -> np.ndarray:
        op = "locally_connected2d"
        check_float_input(op, x)
        if x.ndim != 4 or weight.ndim != 6:
            raise ValueError(
                f"{op}: expected x (N, C, H, W) and weight (OH, OW, OC, C, KH, KW), got "
                f"{x.shape} and {weight.shape}"
            )
        if weight.dtype != x.dtype:
            raise TypeError(f"{op}: input is {x.dtype} but weight is {weight.dtype}")
        oh, ow, oc, c, kh, kw = weight.shape
        n, xc, h, w = x.shape
        if stride < 1 or padding < 0:
            raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
        expected = (local_out_size(h, kh, stride, padding), local_out_size(w, kw, stride, padding))
        if xc != c or expected != (oh, ow):
            raise ValueError(
                f"{op}: input of shape {x.shape} (stride {stride}, padding {padding}) gives "
                f"{xc} channels and a {expected} output grid, but the weight of shape "
                f"{weight.shape} expects {c} channels and ({oh}, {ow})"
            )
        if bias is not None and bias.shape != (oc, oh, ow):
            raise ValueError(f"{op}: bias has shape {bias.shape}, expected {(oc, oh, ow)}")
        pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
        xp = np.pad(x, pad) if padding else x
        patches = _unfold(xp, kh, kw, stride, oh, ow)
        w3 = weight.reshape(oh * ow, oc, c * kh * kw)
        out = gemm3d(patches, w3, trans_b=True)  # (OH * OW, N, OC)
        out = contiguous(out.reshape(oh, ow, n, oc).transpose(2, 3, 0, 1))
        if bias is not None:
            out += bias
        ctx.save_for_backward(patches, w3)
        ctx.geometry = (xp.shape, x.shape, kh, kw, stride, padding, oh, ow, oc)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        patches, w3 = ctx.saved_tensors
        padded_shape, x_shape, kh, kw, stride, padding, oh, ow, oc = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad
        n = x_shape[0]
        g3 = contiguous(g.transpose(2, 3, 0, 1)).reshape(oh * ow, n, oc)
        gx = gw = gb = None
        if need_x:
            patch_grad = gemm3d(g3, w3)  # (OH * OW, N, C * KH * KW)
            gxp = _fold(patch_grad, padded_shape, kh, kw, stride, oh, ow)
            h, w = x_shape[2:]
            gx = contiguous(gxp[:, :, padding : padding + h, padding : padding + w])
        if need_w:
            gw = gemm3d(g3, patches, trans_a=True).reshape(
                (oh, ow, oc, x_shape[1], kh, kw)
            )
        if need_b:
            gb = g.sum(axis=0)
        return gx, gw, gb
