"""matmul cases for the side-by-side comparison (benchmarks/compare.py) and the pytest suite.

The shapes live in minidl/bench/kernel_cases.py (GEMM_SHAPES), the one list minidl-bench also
runs: square 256^3, 1024^3, 2048^3 and LeNet's first fully connected layer at batch 64 in the
three forms the "linear" op (minidl.ops.matmul) runs (x @ W^T, g @ W, g^T @ x). float32, into
preallocated outputs, so the figures are the GEMMs alone.
"""

from __future__ import annotations

from benchmarks.common import case_dicts


def cases() -> list[dict]:
    """Every matmul case of minidl-bench --full, as compare.py's dicts."""
    return case_dicts("gemm")
