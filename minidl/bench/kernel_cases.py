"""GEMM, conv2d and max_pool2d cases: one kernel call (or one forward+backward) per call.

All float32. minidl calls its GEMM kernel or its functional ops (conv, pool), with the thread
count the caller set through minidl.set_num_threads (PyTorch: torch.set_num_threads, NumPy: its
BLAS's); every engine gets the same arrays.
The NumPy conv reference is im2col + one sgemm (NumPy's BLAS) and col2im by strided adds; the
conv helpers (conv_data, numpy_conv, minidl_conv_step, torch_conv_step) also serve
benchmarks/conv_cases.py's layer table script.
"""

from __future__ import annotations

import numpy as np

from minidl.bench.case import Case, Data, rng

# name, (m, n, k), trans_a, trans_b, sizes: op(A) is m x k, op(B) is k x n. The LeNet forms are
# those the "linear" op (minidl.ops.matmul) runs for LeNet-5's fc1 at batch 64 (x: 64x400,
# W: 120x400).
GEMM_SHAPES = [
    ("matmul 32^3", (32, 32, 32), False, False, ("tiny",)),
    ("matmul 256^3", (256, 256, 256), False, False, ("quick", "full")),
    ("matmul 1024^3", (1024, 1024, 1024), False, False, ("quick", "full")),
    ("matmul 2048^3", (2048, 2048, 2048), False, False, ("full",)),
    ("matmul fc1 fwd x@W^T (64x400)@(400x120)", (64, 120, 400), False, True, ("quick", "full")),
    ("matmul fc1 grad_x g@W (64x120)@(120x400)", (64, 400, 120), False, False, ("full",)),
    ("matmul fc1 grad_W g^T@x (120x64)@(64x400)", (120, 400, 64), True, False, ("full",)),
]

# conv2d layers (issue 12's table): name, x shape, weight shape, stride, padding, bias. Batch 128
# for the ResNet-20 (CIFAR) layers and 64 for the MNIST-example and LeNet ones; bias where those
# models have one. Each runs "fwd" (forward only) and "fwd+bwd" (forward, then backward with a
# fixed upstream gradient: weight, bias and input gradients).
CONV_SHAPES = [
    ("resnet_stem_3to16_32px", (128, 3, 32, 32), (16, 3, 3, 3), 1, 1, False),
    ("resnet_16to16_32px", (128, 16, 32, 32), (16, 16, 3, 3), 1, 1, False),
    ("resnet_16to32_s2_32px", (128, 16, 32, 32), (32, 16, 3, 3), 2, 1, False),
    ("resnet_32to64_s2_16px", (128, 32, 16, 16), (64, 32, 3, 3), 2, 1, False),
    ("resnet_32to32_16px", (128, 32, 16, 16), (32, 32, 3, 3), 1, 1, False),
    ("resnet_64to64_8px", (128, 64, 8, 8), (64, 64, 3, 3), 1, 1, False),
    ("mnist_1to32_28px", (64, 1, 28, 28), (32, 1, 3, 3), 1, 0, True),
    ("mnist_32to64_26px", (64, 32, 26, 26), (64, 32, 3, 3), 1, 0, True),
    ("pointwise_64to64_16px", (128, 64, 16, 16), (64, 64, 1, 1), 1, 0, False),
    ("lenet_conv1", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2, True),
    ("lenet_conv2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, True),
]
# --full runs every layer both ways; --quick these (name, passes); the tests' "tiny" size a
# layer of its own.
QUICK_CONV = [
    ("resnet_16to16_32px", "fwd+bwd"),
    ("resnet_16to32_s2_32px", "fwd"),
    ("mnist_32to64_26px", "fwd"),
    ("lenet_conv1", "fwd+bwd"),
    ("lenet_conv2", "fwd+bwd"),
]
TINY_CONV = ("tiny", (2, 3, 9, 9), (4, 3, 3, 3), 2, 1, True)
PASSES = {"fwd": 1, "fwd+bwd": 3}  # work relative to one forward

# name, x shape, sizes; 2x2 windows, stride 2.
POOL_SHAPES = [
    ("tiny", (2, 3, 8, 8), ("tiny",)),
    ("lenet_pool", (64, 6, 28, 28), ("quick", "full")),
    ("mid_pool", (32, 64, 32, 32), ("full",)),
]


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# -- GEMM -------------------------------------------------------------------------------------
def _gemm_case(name: str, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> Case:
    def data() -> Data:
        r = rng(m * 7 + n * 11 + k)
        a = r.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
        b = r.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
        return {"a": a, "b": b}

    def minidl_fn(d: Data, threads: int):
        from minidl._kernels import gemm
        from minidl.threads import get_num_threads

        a, b, out = d["a"], d["b"], np.empty((m, n), np.float32)
        # The thread count is read at call time, as every minidl op does.
        return lambda: gemm.matmul(a, b, out, trans_a, trans_b, get_num_threads())

    def numpy_fn(d: Data, threads: int):
        a = d["a"].T if trans_a else d["a"]
        b = d["b"].T if trans_b else d["b"]
        out = np.empty((m, n), np.float32)
        return lambda: np.matmul(a, b, out=out)

    def torch_fn(d: Data, threads: int):
        import torch

        a, b = torch.from_numpy(d["a"]), torch.from_numpy(d["b"])
        a, b = (a.T if trans_a else a), (b.T if trans_b else b)
        out = torch.empty(m, n)
        return lambda: torch.matmul(a, b, out=out)

    return Case(
        name=name,
        group="gemm",
        unit="GFLOP/s",
        work=2.0 * m * n * k,
        data=data,
        builders={"minidl": minidl_fn, "numpy": numpy_fn, "torch": torch_fn},
        peak=True,
    )


# -- conv2d -----------------------------------------------------------------------------------
def conv_out_hw(x_shape, w_shape, stride: int, pad: int) -> tuple[int, int]:
    return tuple((x_shape[i] + 2 * pad - w_shape[i]) // stride + 1 for i in (2, 3))


def conv_flops(x_shape, w_shape, stride: int, pad: int) -> float:
    """Forward multiply-adds x 2 (the direct convolution's count, whatever the algorithm)."""
    oh, ow = conv_out_hw(x_shape, w_shape, stride, pad)
    return 2.0 * x_shape[0] * w_shape[0] * oh * ow * int(np.prod(w_shape[1:]))


def conv_data(x_shape, w_shape, stride: int, pad: int, bias: bool) -> Data:
    """x, w (He-scaled), b (absent without bias) and the upstream gradient gy, float32."""
    r = rng(0)
    gy_shape = (x_shape[0], w_shape[0]) + conv_out_hw(x_shape, w_shape, stride, pad)
    d = {
        "x": r.standard_normal(x_shape).astype(np.float32),
        "w": (r.standard_normal(w_shape) * np.sqrt(2 / np.prod(w_shape[1:]))).astype(np.float32),
    }
    if bias:
        d["b"] = r.standard_normal(w_shape[0]).astype(np.float32)
    d["gy"] = r.standard_normal(gy_shape).astype(np.float32)
    return d


def _im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int):
    """(C*KH*KW, N*OH*OW) columns of the padded input, and (OH, OW)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]
    n, c, oh, ow = win.shape[:4]
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow), (oh, ow)


def numpy_conv(x, w, b, gy, stride: int, pad: int):
    """conv2d by im2col + one sgemm: the output, and with gy also the weight, bias and input
    gradients (col2im by strided adds)."""
    oc, c, kh, kw = w.shape
    n = x.shape[0]
    col, (oh, ow) = _im2col(x, kh, kw, stride, pad)
    out = (w.reshape(oc, -1) @ col).reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)
    if b is not None:
        out = out + b[:, None, None]
    if gy is None:
        return out
    g = gy.transpose(1, 0, 2, 3).reshape(oc, -1)
    grad_w = (g @ col.T).reshape(w.shape)
    grad_b = g.sum(axis=1)
    dcol = (w.reshape(oc, -1).T @ g).reshape(c, kh, kw, n, oh, ow)
    gxp = np.zeros((n, c, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), x.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += dcol[
                :, i, j
            ].transpose(1, 0, 2, 3)
    return out, grad_w, grad_b, gxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]


def minidl_conv_step(d: Data, stride: int, pad: int, backward: bool):
    """A zero-argument callable: minidl's conv2d forward (and backward, every gradient)."""
    import minidl
    from minidl.nn import functional as F

    x = minidl.tensor(d["x"], requires_grad=backward)
    w = minidl.tensor(d["w"], requires_grad=backward)
    b = minidl.tensor(d["b"], requires_grad=backward) if "b" in d else None
    if not backward:
        return lambda: F.conv2d(x, w, b, stride=stride, padding=pad)
    gy = minidl.tensor(d["gy"])

    def step():
        for t in (x, w, b):
            if t is not None:
                t.grad = None
        F.conv2d(x, w, b, stride=stride, padding=pad).backward(gy)

    return step


def torch_conv_step(d: Data, stride: int, pad: int, backward: bool):
    """The same step in PyTorch."""
    import torch

    x = torch.from_numpy(d["x"]).requires_grad_(backward)
    w = torch.from_numpy(d["w"]).requires_grad_(backward)
    b = torch.from_numpy(d["b"]).requires_grad_(backward) if "b" in d else None
    gy = torch.from_numpy(d["gy"])
    conv = torch.nn.functional.conv2d
    if not backward:

        def fwd():
            with torch.no_grad():
                return conv(x, w, b, stride=stride, padding=pad)

        return fwd

    def step():
        for t in (x, w, b):
            if t is not None:
                t.grad = None
        conv(x, w, b, stride=stride, padding=pad).backward(gy)

    return step


def _conv_case(layer: tuple, passes: str) -> Case:
    name, x_shape, w_shape, stride, pad, bias = layer
    backward = passes != "fwd"

    def numpy_fn(d: Data, threads: int):
        gy = d["gy"] if backward else None
        return lambda: numpy_conv(d["x"], d["w"], d.get("b"), gy, stride, pad)

    return Case(
        name=f"conv2d {name} {_shape(x_shape)}->{w_shape[0]} {w_shape[2]}x{w_shape[3]}"
        + (f" s{stride}" if stride > 1 else "")
        + f" p{pad} {passes}",
        group="conv",
        unit="GFLOP/s",
        work=PASSES[passes] * conv_flops(x_shape, w_shape, stride, pad),
        data=lambda: conv_data(x_shape, w_shape, stride, pad, bias),
        builders={
            "minidl": lambda d, threads: minidl_conv_step(d, stride, pad, backward),
            "numpy": numpy_fn,
            "torch": lambda d, threads: torch_conv_step(d, stride, pad, backward),
        },
        peak=True,
    )


# -- max_pool2d -------------------------------------------------------------------------------
def _pool_case(name: str, x_shape, backward: bool) -> Case:
    out_shape = x_shape[:2] + (x_shape[2] // 2, x_shape[3] // 2)

    def data() -> Data:
        r = rng(1)
        return {
            "x": r.standard_normal(x_shape, dtype=np.float32),
            "gy": r.standard_normal(out_shape, dtype=np.float32),
        }

    def minidl_fn(d: Data, threads: int):
        import minidl
        from minidl.nn import functional as F

        x = minidl.tensor(d["x"], requires_grad=backward)
        if not backward:
            return lambda: F.max_pool2d(x, 2)
        gy = minidl.tensor(d["gy"])

        def step():
            x.grad = None
            F.max_pool2d(x, 2).backward(gy)

        return step

    def numpy_fn(d: Data, threads: int):
        n, c, h, w = x_shape
        x = d["x"]
        return lambda: x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def torch_fn(d: Data, threads: int):
        import torch

        x = torch.from_numpy(d["x"]).requires_grad_(backward)
        gy = torch.from_numpy(d["gy"])
        pool = torch.nn.functional.max_pool2d
        if not backward:

            def fwd():
                with torch.no_grad():
                    return pool(x, 2)

            return fwd

        def step():
            x.grad = None
            pool(x, 2).backward(gy)

        return step

    builders = {"minidl": minidl_fn, "torch": torch_fn}
    if not backward:
        builders["numpy"] = numpy_fn
    compares = 4.0 * int(np.prod(out_shape))
    return Case(
        name=f"max_pool2d {name} {_shape(x_shape)} 2x2 {'fwd+bwd' if backward else 'fwd'}",
        group="pool",
        # Comparisons, one per input element (the backward's scatter counted as many again):
        # not floating-point arithmetic, so no fraction of the FMA peak.
        unit="Gcmp/s",
        work=(2 if backward else 1) * compares,
        data=data,
        builders=builders,
    )


def cases(size: str) -> list[Case]:
    """GEMM, conv2d and max_pool2d cases at `size`, in that order."""
    out = [
        _gemm_case(name, *mnk, ta, tb) for name, mnk, ta, tb, sizes in GEMM_SHAPES if size in sizes
    ]
    if size == "tiny":
        out += [_conv_case(TINY_CONV, p) for p in PASSES]
    else:
        layers = {layer[0]: layer for layer in CONV_SHAPES}
        chosen = (
            QUICK_CONV
            if size == "quick"
            else [(layer[0], p) for layer in CONV_SHAPES for p in PASSES]
        )
        out += [_conv_case(layers[name], p) for name, p in chosen]
    for name, x_shape, sizes in POOL_SHAPES:
        if size in sizes:
            out += [_pool_case(name, x_shape, bw) for bw in (False, True)]
    return out
