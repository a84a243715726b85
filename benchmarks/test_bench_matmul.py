"""matmul speed: minidl's GEMM and NumPy's (PyTorch's when importable), float32.

    pytest benchmarks/test_bench_matmul.py --benchmark-only --benchmark-group-by=param:case

Shapes and callables come from benchmarks/matmul_cases.py (256^3, 1024^3, 2048^3 and LeNet's
fully connected GEMMs), each engine at 1 thread and at minidl's default thread count. GFLOP/s
is in each result's extra_info. NumPy's thread count is set through threadpoolctl when it is
installed; otherwise OpenBLAS uses its own (OPENBLAS_NUM_THREADS) and the "numpy" rows say so
in extra_info. For both OpenBLAS core types side by side, run `python -m benchmarks.compare`.
"""

import pytest

import minidl
from benchmarks.matmul_cases import cases
from minidl.threads import default_num_threads

CASES = {c["name"]: c for c in cases()}
THREADS = sorted({1, default_num_threads()})


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}t")
def n_threads(request):
    previous = minidl.get_num_threads()
    minidl.set_num_threads(request.param)
    yield request.param
    minidl.set_num_threads(previous)


def record(benchmark, case, n_threads, engine):
    benchmark.group = f"{case['name']} {n_threads}t"
    benchmark.extra_info["flops"] = case["flops"]
    benchmark.extra_info["threads"] = n_threads
    benchmark.extra_info["engine"] = engine


def record_gflops(benchmark, case):
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflops"] = case["flops"] / benchmark.stats.stats.min / 1e9


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_minidl_matmul(benchmark, case, n_threads):
    c = CASES[case]
    record(benchmark, c, n_threads, "minidl")
    benchmark(c["minidl"])
    record_gflops(benchmark, c)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_numpy_matmul(benchmark, case, n_threads):
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
def test_torch_matmul(benchmark, case, n_threads):
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
