"""Batch-1 LeNet-5 inference latency per engine, and the compiled executor's cost per node.

    python -m benchmarks.latency                 # 1 thread, best of 15
    python -m benchmarks.latency --threads 1 2 --repeat 30

Engines, each in its own child process (two OpenMP runtimes never share one): minidl compiled
(the flat C program), minidl compiled with executor="replay" (every op called from Python),
PyTorch (inference_mode, same weights) and onnxruntime on minidl's ONNX export, when installed.
Every child returns its output too: the parent checks the engines agree.

LeNet-5 training step (batch 64): the program against the replay, and the share of the step
spent outside the program's run (the Python call around it; the run's own dispatch cost per
instruction is the executor overhead below).

Executor overhead per node: a chain of K ReLU + reshape pairs on a 1-element tensor (a reshape
is no instruction, so the program has K ReLU instructions of ~1 ns of arithmetic each), timed
for K = 64 and 256 in one process; the slope per node is the executor's own cost. The same for
the replay. The machine may be shared: compare ratios within one run, and note the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("minidl", "minidl-replay", "torch", "onnxruntime")


def lenet():
    import minidl
    from minidl import models

    minidl.manual_seed(0)
    return models.LeNet5().eval()


def image(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)


def torch_lenet(state: dict):
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(400, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.conv1(x)), 2)
            x = f.max_pool2d(f.relu(self.conv2(x)), 2)
            x = f.relu(self.fc1(x.flatten(1)))
            return self.fc3(f.relu(self.fc2(x)))

    model = LeNet5()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return model.eval()


def child(args: argparse.Namespace) -> None:
    """Child mode: time one engine; print JSON."""
    from benchmarks.common import best_of

    x = image(args.batch)
    if args.child == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(Path(args.dir) / "lenet5.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}

        def call():
            return session.run(None, feed)[0]

    elif args.child == "torch":
        import torch

        torch.set_num_threads(args.threads)
        state = dict(np.load(Path(args.dir) / "lenet5.npz"))
        model = torch_lenet(state)
        tx = torch.from_numpy(x)

        def call():
            with torch.inference_mode():
                return model(tx).numpy()

    elif args.child == "overhead":
        print(json.dumps(overhead(args.repeat)))
        return
    elif args.child == "train":
        print(json.dumps(training_step(args.threads, args.repeat)))
        return
    else:
        import minidl

        minidl.set_num_threads(args.threads)
        model = lenet()
        executor = "replay" if args.child == "minidl-replay" else "program"
        compiled = minidl.compile(model, example_inputs=(x,), executor=executor)
        tx = minidl.tensor(x)

        def call():
            return compiled(tx).data

    seconds = best_of(call, repeat=args.repeat, warmup=20)
    print(json.dumps({"seconds": seconds, "output": np.asarray(call()).tolist()}))


def overhead(repeat: int) -> dict:
    """Seconds per node of a K-node ReLU chain (slope between K = 64 and 256), per executor."""
    import minidl
    from benchmarks.common import best_of
    from minidl.nn import functional as F

    minidl.set_num_threads(1)
    x = minidl.tensor(np.ones((1, 1), np.float32))

    def chain(k):
        def f(t):
            for _ in range(k):
                t = F.relu(t).reshape(1, 1)
            return t

        return f

    result = {}
    for executor in ("program", "replay"):
        times = {}
        for k in (64, 256):
            compiled = minidl.compile(chain(k), example_inputs=(x,), executor=executor)
            times[k] = best_of(lambda c=compiled: c(x), repeat=repeat, warmup=20)
        result[executor] = (times[256] - times[64]) / (256 - 64)
        result[executor + "_call_64"] = times[64]
    return result


def training_step(threads: int, repeat: int) -> dict:
    """A compiled LeNet-5 training step (forward, backward into .grad) at batch 64: seconds
    per call with the program and with the replay, and the seconds the same calls spent
    inside the program's run (its instructions and dispatch loop); the rest is the Python call
    around it (binding parameters, copying the batch in, accumulating .grad (timed apart too),
    the outputs).
    Best of 20 * repeat calls each."""
    import minidl
    from benchmarks.common import best_of
    from minidl.nn import functional as F

    minidl.set_num_threads(threads)
    model = lenet().train()
    x = minidl.tensor(image(64))
    y = minidl.tensor(np.random.default_rng(1).integers(0, 10, 64))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    replay = minidl.compile(model, F.cross_entropy, example_inputs=(x, y), executor="replay")
    result = {"replay": best_of(lambda: replay(x, y), repeat=repeat, warmup=5)}
    (program,) = step.graph._idle_programs
    clock = time.perf_counter
    call = outside = grad = float("inf")
    for _ in range(20 * repeat):
        start = clock()
        step(x, y)
        seconds = clock() - start
        call, outside = min(call, seconds), min(outside, seconds - program.run_seconds)
        grad = min(grad, program.accumulate_seconds)
    result.update(program=call, outside=outside, accumulate=grad,
                  n_instructions=len(program.program), python_nodes=program.python_nodes)
    return result


def run_child(engine: str, batch: int, threads: int, folder: str, repeat: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.latency", "--child", engine, "--batch", str(batch),
           "--threads", str(threads), "--dir", folder, "--repeat", str(repeat)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--child", choices=ENGINES + ("overhead", "train"), help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        child(args)
        return

    import minidl
    from benchmarks.compare import cpu_model

    print(f"{cpu_model()}, {os.cpu_count()} cpus; load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        model = lenet()
        np.savez(Path(folder) / "lenet5.npz",
                 **{k: v.data for k, v in model.state_dict().items()})
        try:
            from minidl import onnx as minidl_onnx

            minidl_onnx.export(model, (minidl.tensor(image(2)),), Path(folder) / "lenet5.onnx")
        except ImportError as e:  # the onnx extra is missing: onnxruntime's child reports it
            print(f"(no ONNX export: {e})")
        print(f"\nLeNet-5 batch {args.batch}: us per call (best of {args.repeat}); "
              "ratio = engine / minidl (> 1: minidl is faster)")
        print(f"{'thr':>4} " + " ".join(f"{e:>14}" for e in ENGINES) + f" {'max abs diff':>13}")
        for threads in args.threads:
            r = {e: run_child(e, args.batch, threads, folder, args.repeat) for e in ENGINES}
            ok = {e: v for e, v in r.items() if "error" not in v}
            cells = []
            for e in ENGINES:
                if e in ok:
                    ratio = ok[e]["seconds"] / ok["minidl"]["seconds"] if "minidl" in ok else 0
                    cells.append(f"{ok[e]['seconds'] * 1e6:>7.1f} ({ratio:.2f}x)")
                else:
                    cells.append(f"{'-':>14}")
            ref = np.asarray(ok["minidl"]["output"]) if "minidl" in ok else None
            diff = max((float(np.abs(np.asarray(v["output"]) - ref).max())
                        for v in ok.values()), default=0.0) if ref is not None else float("nan")
            print(f"{threads:>4} " + " ".join(f"{c:>14}" for c in cells) + f" {diff:>13.1e}")
            for e, v in r.items():
                if "error" in v:
                    print(f"     {e}: {v['error']}")
        o = run_child("overhead", 1, 1, folder, args.repeat)
        if "error" in o:
            print(f"\nexecutor overhead: {o['error']}")
        else:
            print("\nexecutor cost per node (ReLU chain on 1 element, slope 64 -> 256 nodes, "
                  "1 thread)")
            print(f"  program {o['program'] * 1e6:6.3f} us   (a 64-node call: "
                  f"{o['program_call_64'] * 1e6:.1f} us)")
            print(f"  replay  {o['replay'] * 1e6:6.3f} us   (a 64-node call: "
                  f"{o['replay_call_64'] * 1e6:.1f} us)")
        for threads in args.threads:
            t = run_child("train", 64, threads, folder, args.repeat)
            if "error" in t:
                print(f"\ntraining step: {t['error']}")
                continue
            print(f"\nLeNet-5 training step, batch 64, {threads} thread(s): program "
                  f"{t['program'] * 1e3:.3f} ms, replay {t['replay'] * 1e3:.3f} ms "
                  f"({t['replay'] / t['program']:.2f}x); outside the program's run "
                  f"({t['n_instructions']} instructions, {t['python_nodes']} Python nodes) "
                  f"{t['outside'] * 1e6:.1f} us = {100 * t['outside'] / t['program']:.1f}% of "
                  f"the step, of which putting the gradients into .grad (copy or program.add_into) "
                  f"{t['accumulate'] * 1e6:.1f} us")
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
