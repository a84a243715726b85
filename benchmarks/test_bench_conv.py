"""conv2d and max_pool2d speed: minidl, the NumPy im2col + BLAS reference, PyTorch if importable.

    pytest benchmarks/test_bench_conv.py --benchmark-only --benchmark-group-by=param:case

Shapes and callables come from benchmarks/conv_cases.py (LeNet's two convolutions and pooling,
two mid-size 3x3 layers), each engine at 1 thread and at minidl's default thread count; GFLOP/s
is in each result's extra_info. For ratios measured in one run use `python -m benchmarks.compare
--filter conv2d` (or `max_pool2d`).
"""

import pytest

import minidl
from benchmarks.conv_cases import cases
from minidl.threads import default_num_threads

CASES = {c["name"]: c for c in cases()}
THREADS = sorted({1, default_num_threads()})


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}t")
def n_threads(request):
    previous = minidl.get_num_threads()
    minidl.set_num_threads(request.param)
    yield request.param
    minidl.set_num_threads(previous)


def _record(benchmark, case, n_threads, engine):
    benchmark.group = f"{case['name']} {n_threads}t"
    benchmark.extra_info.update(flops=case["flops"], threads=n_threads, engine=engine)


def _record_gflops(benchmark, case):
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflops"] = case["flops"] / benchmark.stats.stats.min / 1e9


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_minidl_conv_pool(benchmark, case, n_threads):
    c = CASES[case]
    _record(benchmark, c, n_threads, "minidl")
    benchmark(c["minidl"])
    _record_gflops(benchmark, c)


@pytest.mark.parametrize(
    "case",
    [n for n, c in CASES.items() if c["numpy"]],
    ids=[n for n, c in CASES.items() if c["numpy"]],
)
def test_numpy_conv_pool(benchmark, case, n_threads):
    c = CASES[case]
    _record(benchmark, c, n_threads, "numpy")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        benchmark.extra_info["threads"] = "OpenBLAS default (threadpoolctl not installed)"
        benchmark(c["numpy"])
    else:
        with threadpool_limits(limits=n_threads):
            benchmark(c["numpy"])
    _record_gflops(benchmark, c)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_torch_conv_pool(benchmark, case, n_threads):
    torch = pytest.importorskip("torch")
    c = CASES[case]
    _record(benchmark, c, n_threads, "torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        benchmark(c["torch"])
    finally:
        torch.set_num_threads(previous)
    _record_gflops(benchmark, c)
