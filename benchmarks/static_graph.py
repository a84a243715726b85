"""Static graphs against eager mode: Python overhead per node, batch-1 latency, peak memory.

    python -m benchmarks.static_graph [--repeat 10]

1. Overhead per node: a stack of 64 tiny Linear(4, 4) layers at batch 1, where the arithmetic
   is negligible, so time / nodes is the engine's bookkeeping per op (forward, and forward +
   backward for training).
2. LeNet-5 batch-1 inference latency, eager and compiled.
3. Peak memory of one LeNet-5 training step at batch 64: the static plan's figure, and
   tracemalloc's measured peak for eager and compiled steps (NumPy reports its allocations to
   tracemalloc).
Best of --repeat runs each; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import minidl
from minidl import nn
from minidl.models import LeNet5
from minidl.nn import functional as F

DEPTH = 64


def best_of(fn, repeat: int, inner: int) -> float:
    """Best time per call over `repeat` rounds of `inner` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def overhead_per_node(repeat: int) -> list[tuple[str, float]]:
    minidl.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(DEPTH)])
    x = minidl.randn(1, 4)
    y = minidl.tensor([1])
    infer = minidl.compile(model, example_inputs=(x,))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    nodes_fwd = len(infer.graph.nodes)
    nodes_train = len(step.graph.nodes)

    def eager_forward():
        with minidl.no_grad():
            model(x)

    def eager_train():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    def compiled_train():
        model.zero_grad()
        step(x, y)

    return [
        ("eager forward (no_grad), per node", best_of(eager_forward, repeat, 50) / nodes_fwd),
        ("compiled forward, per node", best_of(lambda: infer(x), repeat, 50) / nodes_fwd),
        ("eager forward+backward, per node", best_of(eager_train, repeat, 20) / nodes_train),
        ("compiled forward+backward, per node", best_of(compiled_train, repeat, 20) / nodes_train),
    ]


def lenet_latency(repeat: int) -> list[tuple[str, float]]:
    minidl.manual_seed(0)
    model = LeNet5()
    model.eval()
    x = minidl.randn(1, 1, 28, 28)
    infer = minidl.compile(model, example_inputs=(x,))

    def eager():
        with minidl.no_grad():
            model(x)

    return [
        ("LeNet-5 batch-1 inference, eager", best_of(eager, repeat, 200)),
        ("LeNet-5 batch-1 inference, compiled", best_of(lambda: infer(x), repeat, 200)),
    ]


def peak_memory() -> list[tuple[str, float]]:
    minidl.manual_seed(0)
    model = LeNet5()
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    y = minidl.tensor(rng.integers(0, 10, 64))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    report = step.memory_report()

    def measured(fn) -> int:
        fn()  # warm: parameter gradients and optimizer-free steady state
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return peak

    def eager():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    def compiled():
        model.zero_grad()
        step(x, y)

    return [
        ("plan: every activation+gradient kept", report["keep_all_peak_bytes"]),
        ("plan: static memory plan peak", report["planned_peak_bytes"]),
        ("measured peak, eager step (tracemalloc)", measured(eager)),
        ("measured peak, compiled step (tracemalloc)", measured(compiled)),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args(argv)
    cfg = minidl.config()
    print(f"minidl {cfg['version']}, {cfg['num_threads']} threads, {cfg['isa']}")
    print("\nPython overhead (64 x Linear(4,4), batch 1)")
    for name, seconds in overhead_per_node(args.repeat):
        print(f"  {name:<42}{seconds * 1e6:8.2f} us")
    print("\nlatency")
    for name, seconds in lenet_latency(args.repeat):
        print(f"  {name:<42}{seconds * 1e6:8.1f} us")
    print("\nLeNet-5 training step, batch 64: peak memory of activations and gradients")
    for name, nbytes in peak_memory():
        print(f"  {name:<42}{nbytes / 2**20:8.2f} MiB")


if __name__ == "__main__":
    main()
