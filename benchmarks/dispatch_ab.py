"""Eager op dispatch of the tree on PYTHONPATH, one line per run:

    PYTHONPATH=<tree> python benchmarks/dispatch_ab.py LABEL

Prints the best CPU time per call (microseconds of this thread's CPU time, best of 7 repeats,
so that time spent descheduled on a shared machine does not count) of a few eager calls on
tiny tensors, where the time is the engine's bookkeeping (Tensor method -> op -> graph node),
and the best and median wall time of an eager LeNet-5 training step (ms, batch 64, 2 threads). Run it alternately for two trees,
each in its own process, to compare them in one session.
"""

import sys
import time
import timeit

import numpy as np

import minidl
from minidl import optim
from minidl.models import LeNet5
from minidl.nn import functional as F

minidl.set_num_threads(2)
minidl.manual_seed(0)
a = minidl.randn(4, requires_grad=True)
b = minidl.randn(4, requires_grad=True)
c = minidl.randn(4)
w = minidl.randn(3, 4, requires_grad=True)
x = minidl.randn(2, 4, requires_grad=True)


def no_grad_add():
    with minidl.no_grad():
        return a + b


CALLS = {
    "a+b": lambda: a + b,
    "c+c": lambda: c + c,
    "a*2": lambda: a * 2.0,
    "a.relu": lambda: a.relu(),
    "a.sum": lambda: a.sum(),
    "F.linear": lambda: F.linear(x, w),
    "no_grad a+b": no_grad_add,
}
N = 20000
results = []
for name, fn in CALLS.items():
    best = min(timeit.repeat(fn, number=N, repeat=7, timer=time.thread_time)) / N
    results.append(f"{name} {best * 1e6:.3f}")

model = LeNet5()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
xs = [minidl.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32)) for _ in range(4)]
ys = [minidl.tensor(rng.integers(0, 10, 64)) for _ in range(4)]
times = []
for i in range(60):
    t0 = time.perf_counter()
    opt.zero_grad()
    F.cross_entropy(model(xs[i % 4]), ys[i % 4]).backward()
    opt.step()
    times.append(time.perf_counter() - t0)
times = sorted(times[10:])
print(sys.argv[1], " | ".join(results), f"| lenet_eager_step_best_ms {times[0] * 1e3:.3f} "
      f"median_ms {times[len(times) // 2] * 1e3:.3f}", flush=True)
