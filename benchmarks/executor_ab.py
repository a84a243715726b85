"""Compiled LeNet-5 step and executor overhead of the tree on PYTHONPATH, one line per run:

    PYTHONPATH=<tree> python benchmarks/executor_ab.py LABEL [THREADS]

THREADS (default 2, or the NT environment variable) is minidl's thread count. Run it alternately
for two trees (each in its own process) to compare them in one session.
"""
import os
import sys
import time

import numpy as np

import minidl
from benchmarks import static_graph as S
from minidl import optim
from minidl.models import LeNet5
from minidl.nn import functional as F

threads = int(sys.argv[2]) if len(sys.argv) > 2 else int(os.environ.get("NT", "2"))
minidl.set_num_threads(threads)
if hasattr(minidl.threads, "tune_malloc"):
    minidl.threads.tune_malloc()  # an older tree tunes at import
minidl.manual_seed(0)
model = LeNet5()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
xs = [minidl.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32)) for _ in range(8)]
ys = [minidl.tensor(rng.integers(0, 10, 64)) for _ in range(8)]
step = minidl.compile(model, F.cross_entropy, example_inputs=(xs[0], ys[0]))
times = []
for i in range(300):
    t0 = time.perf_counter()
    opt.zero_grad()
    step(xs[i % 8], ys[i % 8])
    opt.step()
    times.append(time.perf_counter() - t0)
times = sorted(times[20:])
ex = S.executor_overhead(10)
print(sys.argv[1], f"threads {threads} lenet_step_best_ms {times[0]*1e3:.3f} p10_ms {times[len(times)//10]*1e3:.3f}",
      " ".join(f"{s*1e6:.3f}" for _, s in ex), flush=True)
