"""matmul cases for the side-by-side comparison (benchmarks/compare.py) and the pytest suite.

`cases()` returns one dict per case: name, flops (per call), and zero-argument callables minidl /
numpy / torch (torch builds itself on first call, so importing this module never imports torch).
All float32, all into preallocated outputs, so the figures are the GEMMs alone:
  - square 256^3, 1024^3, 2048^3 (A @ B);
  - LeNet's first fully connected layer at batch 64 (x: 64x400, W: 120x400), in the forms
    minidl.ops.matmul.Linear runs them: forward x @ W^T, input gradient g @ W, weight gradient
    g^T @ x (g: 64x120).
minidl's callable passes minidl.threads.get_num_threads() at call time, so the caller sets the
thread count with minidl.set_num_threads (and torch.set_num_threads for the torch callable).
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import matmul_flops
from minidl._kernels import gemm
from minidl.threads import get_num_threads

# name, (m, n, k), trans_a, trans_b: op(A) is m x k, op(B) is k x n.
SHAPES = [
    ("matmul 256^3", (256, 256, 256), False, False),
    ("matmul 1024^3", (1024, 1024, 1024), False, False),
    ("matmul 2048^3", (2048, 2048, 2048), False, False),
    ("matmul LeNet fc1 fwd x@W^T (64x400)@(400x120)", (64, 120, 400), False, True),
    ("matmul LeNet fc1 grad_x g@W (64x120)@(120x400)", (64, 400, 120), False, False),
    ("matmul LeNet fc1 grad_W g^T@x (120x64)@(64x400)", (120, 400, 64), True, False),
]


def _lazy(make):
    """A callable that builds the real one (importing torch) on first use."""
    cache = []

    def call():
        if not cache:
            cache.append(make())
        return cache[0]()

    return call


def _case(name, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 7 + n * 11 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    out_np = np.empty((m, n), np.float32)
    a_op = a.T if trans_a else a
    b_op = b.T if trans_b else b

    def minidl_fn():
        gemm.matmul(a, b, out, trans_a, trans_b, get_num_threads())

    def numpy_fn():
        np.matmul(a_op, b_op, out=out_np)

    def make_torch():
        import torch

        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(m, n)
        ta_op = ta.T if trans_a else ta
        tb_op = tb.T if trans_b else tb

        def torch_fn():
            torch.matmul(ta_op, tb_op, out=tout)

        return torch_fn

    return dict(
        name=name,
        flops=matmul_flops(m, n, k),
        minidl=minidl_fn,
        numpy=numpy_fn,
        torch=_lazy(make_torch),
    )


def cases() -> list[dict]:
    """Every matmul case, float32, square shapes first, then LeNet's fully connected GEMMs."""
    return [_case(name, *mnk, trans_a, trans_b) for name, mnk, trans_a, trans_b in SHAPES]
