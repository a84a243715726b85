"""Kernel speed: minidl beside NumPy (and PyTorch when importable), case by case.

    pytest benchmarks/test_bench_kernels.py --benchmark-only --benchmark-group-by=group
    pytest benchmarks/test_bench_kernels.py --benchmark-only -k matmul      # or conv2d, max_pool2d

Shapes and callables are minidl-bench's --full cases (minidl/bench/kernel_cases.py: 256^3,
1024^3, 2048^3 and LeNet's fully connected GEMMs; issue 12's conv2d layer table; 2x2 max-pool),
each engine at 1 thread and at minidl's default thread count, all in this one process
(`minidl-bench --only gemm,conv,pool` runs each engine in its own). GFLOP/s is
in each result's extra_info. NumPy's thread count is set through threadpoolctl when installed;
otherwise OpenBLAS uses its own (OPENBLAS_NUM_THREADS) and extra_info says so. For ratios
measured in one run, and both OpenBLAS core types, use `python -m benchmarks.compare`.
"""

import pytest

import minidl
from benchmarks.common import case_dicts
from minidl.threads import default_num_threads

CASES = {c["name"]: c for group in ("gemm", "conv", "pool") for c in case_dicts(group)}
THREADS = sorted({1, default_num_threads()})
WITH_NUMPY = [name for name, c in CASES.items() if c["numpy"]]


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}t")
def n_threads(request):
    previous = minidl.get_num_threads()
    minidl.set_num_threads(request.param)
    yield request.param
    minidl.set_num_threads(previous)


def record(benchmark, case, n_threads, engine):
    benchmark.group = f"{case['name']} {n_threads}t"
    benchmark.extra_info.update(flops=case["flops"], threads=n_threads, engine=engine)


def record_gflops(benchmark, case):
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflops"] = case["flops"] / benchmark.stats.stats.min / 1e9


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_minidl(benchmark, case, n_threads):
    c = CASES[case]
    record(benchmark, c, n_threads, "minidl")
    benchmark(c["minidl"])
    record_gflops(benchmark, c)


@pytest.mark.parametrize("case", WITH_NUMPY, ids=WITH_NUMPY)
def test_numpy(benchmark, case, n_threads):
    c = CASES[case]
    record(benchmark, c, n_threads, "numpy")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        benchmark.extra_info["threads"] = "OpenBLAS default (threadpoolctl not installed)"
        benchmark(c["numpy"])
    else:
        with threadpool_limits(limits=n_threads):
            benchmark(c["numpy"])
    record_gflops(benchmark, c)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_torch(benchmark, case, n_threads):
    torch = pytest.importorskip("torch")
    c = CASES[case]
    record(benchmark, c, n_threads, "torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        benchmark(c["torch"])
    finally:
        torch.set_num_threads(previous)
    record_gflops(benchmark, c)
