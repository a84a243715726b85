"""Static graphs against eager mode: Python overhead per node, batch-1 latency, peak memory.

    python -m benchmarks.static_graph [--repeat 10]

1. Overhead per node. (a) The executor alone: a chain of 64 ops whose forward and backward
   return their input, so time / nodes is the graph machinery's cost per op (eager: recording
   and the reverse sweep; compiled: the replay loops). (b) A stack of 64 tiny Linear(4, 4)
   layers at batch 1, where the arithmetic is negligible: the executor plus each op's own
   Python (argument checks, kernel call).
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
from minidl.graph import Function
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


class PassThrough(Function):
    """Forward and backward hand their input on: all that is left is the executor."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return g


def executor_overhead(repeat: int) -> list[tuple[str, float]]:
    x = minidl.randn(4, requires_grad=True)

    def chain(t):
        for _ in range(DEPTH):
            t = PassThrough.apply(t)
        return t

    def eager_forward():
        chain(x)

    def eager_train():
        chain(x).backward(np.ones(4, dtype=np.float32))

    infer = minidl.compile(chain, example_inputs=(x.detach(),))
    class Scaled(nn.Module):
        """Training needs a parameter: the chain starts with a product by one."""

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(minidl.ones(4))

        def forward(self, t):
            return chain(t * self.weight)

    step = minidl.compile(Scaled(), lambda out, _: out.sum(),
                          example_inputs=(x.detach(), x.detach()))
    return [
        ("eager forward (recording), per node", best_of(eager_forward, repeat, 200) / DEPTH),
        ("compiled forward, per node", best_of(lambda: infer(x), repeat, 200) / DEPTH),
        ("eager forward+backward, per node", best_of(eager_train, repeat, 100) / DEPTH),
        ("compiled forward+backward, per node",
         best_of(lambda: step(x.detach(), x.detach()), repeat, 100) / (DEPTH + 2)),
    ]


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
    # Keep freed blocks in the heap (minidl.threads.tune_malloc; import minidl leaves it).
    minidl.threads.tune_malloc()
    cfg = minidl.config()
    print(f"minidl {cfg['version']}, {cfg['num_threads']} threads, {cfg['isa']}")
    print("\nexecutor overhead (64 pass-through ops)")
    for name, seconds in executor_overhead(args.repeat):
        print(f"  {name:<42}{seconds * 1e6:8.2f} us")
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
