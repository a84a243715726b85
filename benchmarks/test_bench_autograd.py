"""Python overhead of the eager graph: one small op forward, and backward per node.

    pytest benchmarks/test_bench_autograd.py --benchmark-only

The inputs are tiny (4 elements) so the time is the engine's bookkeeping, not arithmetic. The
NumPy baseline (the same ufunc on bare arrays) is measured beside them for the ratio.
"""

import numpy as np
import pytest

import minidl

CHAIN = 1000


@pytest.fixture
def small():
    return minidl.randn(4, requires_grad=True), minidl.randn(4, requires_grad=True)


def test_numpy_add_baseline(benchmark, small):
    a, b = small[0].data, small[1].data
    benchmark(np.add, a, b)


def test_op_forward_recording(benchmark, small):
    a, b = small
    benchmark(a.__add__, b)


def test_op_forward_no_grad(benchmark, small):
    a, b = small

    def run():
        with minidl.no_grad():
            return a + b

    benchmark(run)


def test_backward_per_node_chain(benchmark):
    """A chain of CHAIN adds: total time / CHAIN is the backward cost per node."""
    a = minidl.randn(4, requires_grad=True)

    def build():
        x = a
        for _ in range(CHAIN):
            x = x + 1.0
        return (x.sum(),), {}

    def run(out):
        out.backward()

    benchmark.pedantic(run, setup=build, rounds=20)
    benchmark.extra_info["nodes"] = CHAIN + 1
