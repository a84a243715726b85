"""conv2d and max_pool2d cases for the side-by-side comparison (benchmarks/compare.py).

`cases()` returns one dict per case: name, flops (per call), and zero-argument callables
minidl / numpy / torch (None where there is no such reference). Forward+backward cases run the
whole step each call: forward through the graph, backward with a fixed upstream gradient.
The NumPy reference is im2col + one sgemm per batch (NumPy's BLAS) and col2im by strided adds.
"""

from __future__ import annotations

import numpy as np

import minidl
from minidl.ops.conv import conv2d
from minidl.ops.pool import max_pool2d

# name, x shape, weight shape, padding
CONV_SHAPES = [
    ("lenet_conv1", (64, 1, 28, 28), (6, 1, 5, 5), 2),
    ("lenet_conv2", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("mid_64ch_32px_3x3", (32, 64, 32, 32), (64, 64, 3, 3), 1),
    ("mid_128ch_28px_3x3", (16, 128, 28, 28), (128, 128, 3, 3), 1),
]
POOL_SHAPES = [
    ("lenet_pool", (64, 6, 28, 28)),
    ("mid_pool", (32, 64, 32, 32)),
]


def _out_hw(x_shape, w_shape, pad):
    return x_shape[2] + 2 * pad - w_shape[2] + 1, x_shape[3] + 2 * pad - w_shape[3] + 1


def _im2col(x, kh, kw, pad):
    """(C*KH*KW, N*OH*OW) columns of the padded input, stride 1."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    n, c, oh, ow = win.shape[:4]
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow), (oh, ow)


def _numpy_conv(x, w, b, gy, pad, need_x):
    oc, c, kh, kw = w.shape
    n = x.shape[0]
    col, (oh, ow) = _im2col(x, kh, kw, pad)
    out = (w.reshape(oc, -1) @ col).reshape(oc, n, oh, ow).transpose(1, 0, 2, 3) + b[:, None, None]
    if gy is None:
        return out
    g = gy.transpose(1, 0, 2, 3).reshape(oc, -1)
    grad_w = (g @ col.T).reshape(w.shape)
    grad_b = g.sum(axis=1)
    if need_x:
        dcol = (w.reshape(oc, -1).T @ g).reshape(c, kh, kw, n, oh, ow)
        gxp = np.zeros((n, c, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), x.dtype)
        for i in range(kh):
            for j in range(kw):
                gxp[:, :, i : i + oh, j : j + ow] += dcol[:, i, j].transpose(1, 0, 2, 3)
        return out, grad_w, grad_b, gxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return out, grad_w, grad_b


def _conv_cases(name, x_shape, w_shape, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    oh, ow = _out_hw(x_shape, w_shape, pad)
    gy = rng.standard_normal((x_shape[0], w_shape[0], oh, ow)).astype(np.float32)
    fwd_flops = 2 * x_shape[0] * w_shape[0] * oh * ow * int(np.prod(w_shape[1:]))

    def minidl_fn(backward, need_x):
        tx = minidl.tensor(x, requires_grad=need_x)
        tw = minidl.tensor(w, requires_grad=backward)
        tb = minidl.tensor(b, requires_grad=backward)
        if not backward:
            return lambda: conv2d(tx, tw, tb, padding=pad)

        def step():
            tx.grad = tw.grad = tb.grad = None
            conv2d(tx, tw, tb, padding=pad).backward(gy)

        return step

    def torch_fn(backward, need_x):
        def make():
            import torch

            tx = torch.from_numpy(x).requires_grad_(need_x)
            tw = torch.from_numpy(w).requires_grad_(backward)
            tb = torch.from_numpy(b).requires_grad_(backward)
            tgy = torch.from_numpy(gy)
            if not backward:

                def fwd():
                    with torch.no_grad():
                        return torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

                return fwd

            def step():
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, padding=pad).backward(tgy)

            return step

        return _lazy(make)

    out = []
    for suffix, backward, need_x, factor in [
        ("fwd", False, False, 1),
        ("fwd+bwd", True, True, 3),
        ("fwd+bwd_no_input_grad", True, False, 2),
    ]:
        if suffix == "fwd+bwd_no_input_grad" and name != "lenet_conv1":
            continue
        out.append(
            dict(
                name=f"conv2d {name} {x_shape}->{w_shape[0]} "
                f"{w_shape[2]}x{w_shape[3]} pad {pad} {suffix}",
                flops=factor * fwd_flops,
                minidl=minidl_fn(backward, need_x),
                numpy=(
                    lambda bw=backward, nx=need_x: _numpy_conv(x, w, b, gy if bw else None, pad, nx)
                ),
                torch=torch_fn(backward, need_x),
            )
        )
    return out


def _lazy(make):
    """A callable that builds the real one (importing torch) on first use."""
    cache = []

    def call():
        if not cache:
            cache.append(make())
        return cache[0]()

    return call


def _pool_cases(name, x_shape):
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    out_shape = x_shape[:2] + (x_shape[2] // 2, x_shape[3] // 2)
    gy = np.random.default_rng(1).standard_normal(out_shape).astype(np.float32)
    compares = 4 * int(np.prod(out_shape))

    def numpy_fwd():
        n, c, h, w = x_shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def minidl_fn(backward):
        tx = minidl.tensor(x, requires_grad=backward)
        if not backward:
            return lambda: max_pool2d(tx, 2)

        def step():
            tx.grad = None
            max_pool2d(tx, 2).backward(gy)

        return step

    def torch_fn(backward):
        def make():
            import torch

            tx = torch.from_numpy(x).requires_grad_(backward)
            tgy = torch.from_numpy(gy)
            if not backward:

                def fwd():
                    with torch.no_grad():
                        return torch.nn.functional.max_pool2d(tx, 2)

                return fwd

            def step():
                tx.grad = None
                torch.nn.functional.max_pool2d(tx, 2).backward(tgy)

            return step

        return _lazy(make)

    return [
        dict(
            name=f"max_pool2d {name} {x_shape} 2x2 fwd",
            flops=compares,
            minidl=minidl_fn(False),
            numpy=numpy_fwd,
            torch=torch_fn(False),
        ),
        dict(
            name=f"max_pool2d {name} {x_shape} 2x2 fwd+bwd",
            flops=2 * compares,
            minidl=minidl_fn(True),
            numpy=None,
            torch=torch_fn(True),
        ),
    ]


def cases() -> list[dict]:
    """Every conv2d and max_pool2d case, float32, in the issue's order."""
    out = []
    for name, x_shape, w_shape, pad in CONV_SHAPES:
        out.extend(_conv_cases(name, x_shape, w_shape, pad))
    for name, x_shape in POOL_SHAPES:
        out.extend(_pool_cases(name, x_shape))
    return out
