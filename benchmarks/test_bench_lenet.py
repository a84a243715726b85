"""LeNet-5: training steps at batch 64, inference at batch 1000 and batch-1 latency.

    pytest benchmarks/test_bench_lenet.py --benchmark-only

The cases are minidl-bench's (minidl/bench/model_cases.py, --full sizes): random images and
labels, minidl's initial weights loaded into the PyTorch twin, minidl eager and compiled beside
PyTorch CPU (when installed), grouped so pytest-benchmark prints them side by side. Here every
engine runs in this one process; `minidl-bench --only lenet,latency` runs each in its own.
For whole epochs on MNIST with data loading, see benchmarks/lenet.py.
"""

import pytest

from benchmarks.common import case_dicts

CASES = {c["name"]: c for c in case_dicts("lenet") + case_dicts("latency")}


def group(name: str) -> str:
    """The case without its eager/compiled suffix: both modes and PyTorch share a group."""
    return name.rsplit(" ", 1)[0]


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_minidl(benchmark, name):
    benchmark.group = group(name)
    benchmark(CASES[name]["minidl"])


@pytest.mark.parametrize("name", [n for n in CASES if n.endswith(" eager")])
def test_torch(benchmark, name):
    torch = pytest.importorskip("torch")
    import minidl

    previous = torch.get_num_threads()
    torch.set_num_threads(minidl.get_num_threads())
    benchmark.group = group(name)
    try:
        benchmark(CASES[name]["torch"])
    finally:
        torch.set_num_threads(previous)
