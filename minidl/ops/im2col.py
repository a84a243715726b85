"""Sliding-block extraction (unfold, im2col) and its adjoint (fold, col2im), PyTorch's
layout: blocks as columns of (N, C * KH * KW, L), rows in (c, kh, kw) order, L the blocks in
row-major order over the output grid."""

from __future__ import annotations

import numpy as np

from minidl.graph import Context, Function
from minidl.ops.conv import check_float, conv_out_size, pair


def block_geometry(op: str, kernel_size, dilation, padding, stride) -> tuple:
    """((kh, kw), (dh, dw), (ph, pw), (sh, sw)) from ints or pairs. Raises RuntimeError (as
    PyTorch) for a kernel, dilation or stride below 1 or a negative padding."""
    # pair parses (and bounds the size); the minimums are checked below with PyTorch's errors.
    kernel, dil, pad, step = (pair(op, name, value, -(2**40)) for name, value in (
        ("kernel_size", kernel_size), ("dilation", dilation), ("padding", padding),
        ("stride", stride)))
    for name, (h, w), minimum in (("kernel size", kernel, 1), ("dilation", dil, 1),
                                  ("stride", step, 1), ("padding", pad, 0)):
        if min(h, w) < minimum:
            rule = "greater than zero" if minimum else "non-negative"
            raise RuntimeError(f"{op}: {name} should be {rule}, but got {h}, {w}")
    return kernel, dil, pad, step


def blocks_per_axis(op: str, spatial: tuple, kernel, dil, pad, step) -> tuple[int, int]:
    """The sliding-block grid (OH, OW); RuntimeError when it is empty, as PyTorch."""
    grid = tuple(conv_out_size(spatial[i], kernel[i], step[i], 2 * pad[i], dil[i])
                 for i in range(2))
    if min(grid) < 1:
        raise RuntimeError(
            f"{op}: Given input with spatial size {tuple(spatial)}, kernel_size={kernel}, "
            f"dilation={dil}, padding={pad}, calculated shape of the array of sliding blocks as "
            f"{grid}, but its components must be at least one.")
    return grid


def _windows(padded_h: int, padded_w: int, kernel, dil, step, grid):
    """(ki, kj, row slice, column slice) of each kernel offset over the padded input."""
    for ki in range(kernel[0]):
        rows = slice(ki * dil[0], ki * dil[0] + step[0] * (grid[0] - 1) + 1, step[0])
        for kj in range(kernel[1]):
            cols = slice(kj * dil[1], kj * dil[1] + step[1] * (grid[1] - 1) + 1, step[1])
            yield ki, kj, rows, cols


def im2col(x: np.ndarray, kernel, dil, pad, step, grid) -> np.ndarray:
    """x (N, C, H, W) -> (N, C * KH * KW, OH * OW)."""
    n, c = x.shape[:2]
    padded = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    cols = np.empty((n, c, kernel[0], kernel[1]) + tuple(grid), dtype=x.dtype)
    for ki, kj, rows, columns in _windows(*padded.shape[2:], kernel, dil, step, grid):
        cols[:, :, ki, kj] = padded[:, :, rows, columns]
    return cols.reshape(n, c * kernel[0] * kernel[1], grid[0] * grid[1])


def col2im(cols: np.ndarray, spatial: tuple, kernel, dil, pad, step, grid) -> np.ndarray:
    """Adjoint of im2col: (N, C * KH * KW, OH * OW) -> (N, C, H, W), overlapping blocks
    summed."""
    n = cols.shape[0]
    c = cols.shape[1] // (kernel[0] * kernel[1])
    blocks = cols.reshape((n, c, kernel[0], kernel[1]) + tuple(grid))
    padded = np.zeros((n, c, spatial[0] + 2 * pad[0], spatial[1] + 2 * pad[1]), cols.dtype)
    for ki, kj, rows, columns in _windows(*padded.shape[2:], kernel, dil, step, grid):
        padded[:, :, rows, columns] += blocks[:, :, ki, kj]
    return padded[:, :, pad[0]:pad[0] + spatial[0], pad[1]:pad[1] + spatial[1]]


class UnfoldOp(Function):
    """Sliding local blocks of x (N, C, H, W) as columns: (N, C * KH * KW, L) (torch's
    im2col); the gradient is col2im. Geometry: pairs (kernel, dilation, padding, stride)."""

    name = "unfold"

    @staticmethod
    def forward(ctx: Context, x, *, kernel, dilation, padding, stride) -> np.ndarray:
        check_float("unfold", "input", x)
        grid = blocks_per_axis("unfold", x.shape[2:], kernel, dilation, padding, stride)
        ctx.geometry = (x.shape[2:], kernel, dilation, padding, stride, grid)
        return im2col(x, kernel, dilation, padding, stride, grid)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return col2im(g, *ctx.geometry)


class FoldOp(Function):
    """Columns (N, C * KH * KW, L) summed back into (N, C, *output_size) (torch's col2im);
    the gradient is im2col."""

    name = "fold"

    @staticmethod
    def forward(ctx: Context, cols, *, output_size, kernel, dilation, padding, stride
                ) -> np.ndarray:
        check_float("fold", "input", cols)
        grid = blocks_per_axis("fold", output_size, kernel, dilation, padding, stride)
        ctx.geometry = (kernel, dilation, padding, stride, grid)
        return col2im(cols, output_size, kernel, dilation, padding, stride, grid)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return im2col(g, *ctx.geometry)
