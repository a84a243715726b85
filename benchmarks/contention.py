"""LeNet-5 on a busy machine: each engine idle and beside a CPU-bound process, in one run.

    python -m benchmarks.contention                     # every engine installed, ~3 min
    python -m benchmarks.contention --seconds 0.5 --engines minidl
    python -m benchmarks.contention --baseline /path/to/other/minidl/checkout

Workloads: a compiled LeNet-5 training step at batch 64 (zero_grad, forward + backward, SGD
step), and compiled inference at batch 1 and batch 1000. Engines, each in its own child process
(two OpenMP runtimes never meet): minidl with 1 thread and with all threads (the default count),
minidl with all threads and torch imported before it, after it, or running a small parallel
torch op before every call (its OpenMP threads spinning beside minidl's pool), PyTorch with 1
and all threads, onnxruntime (inference only) with 1 and all threads, and with --baseline the
same minidl rows for another checkout (PYTHONPATH=DIR), e.g. the commit before a change.

Each child times every workload idle, then beside a busy process that it starts (a Python
`while True: pass` that SIGALRM ends after --busy-timeout seconds, whatever happens to the
benchmark), then stops. A workload is called repeatedly for --seconds per phase; the table
gives the median and the best call in ms (the median shows the stalls a busy machine causes;
the best hides them). Ratios, from medians:
  busy / 1t   an engine's busy median over its own 1-thread busy median (issue 13's goal for
              minidl's all-thread row: <= 1.25);
  busy / idle the slowdown the busy process causes.
With --baseline: idle / baseline, minidl's idle median over the baseline's (goal: <= 1.03).
The machine is shared and noisy: compare ratios within one run; rerun on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("step64", "infer1", "infer1000")
TORCH_MODES = ("none", "before", "after", "ops")


def _busy(timeout: float) -> subprocess.Popen:
    """A CPU-bound child that ends itself after `timeout` seconds (SIGALRM's default action)."""
    code = f"import signal\nsignal.alarm({max(1, int(timeout))})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _samples(fn, seconds: float) -> list[float]:
    """Seconds of each call of fn over `seconds` (at least 5 calls), after 3 warm calls."""
    for _ in range(3):
        fn()
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < 5:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _lenet_data(batch: int):
    import numpy as np

    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return x, y


def _minidl_workloads(torch_mode: str) -> dict:
    if torch_mode == "before":
        import torch  # noqa: F401  (loads PyTorch's bundled OpenMP runtime first)
    import minidl
    from minidl import optim
    from minidl.models import LeNet5
    from minidl.nn import functional as F

    torch_op = None
    if torch_mode in ("after", "ops"):
        import torch

        if torch_mode == "ops":
            big = torch.ones(1 << 20)

            def torch_op():
                return big.sum()

    minidl.threads.tune_malloc()
    minidl.manual_seed(0)
    model = LeNet5()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x64, y64 = (minidl.tensor(a) for a in _lenet_data(64))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x64, y64))

    def train():
        if torch_op is not None:
            torch_op()
        opt.zero_grad()
        step(x64, y64)
        opt.step()

    eval_model = LeNet5().eval()
    calls = {"step64": train}
    for batch in (1, 1000):
        x = minidl.tensor(_lenet_data(batch)[0])
        infer = minidl.compile(eval_model, example_inputs=(x,))

        def call(infer=infer, x=x):
            if torch_op is not None:
                torch_op()
            return infer(x)

        calls[f"infer{batch}"] = call
    return calls


def _torch_workloads(threads: int) -> dict:
    import numpy as np
    import torch

    import minidl
    from minidl.bench import torch_models
    from minidl.models import LeNet5

    torch.set_num_threads(threads)
    minidl.manual_seed(0)
    state = {k: np.array(v.data) for k, v in LeNet5().state_dict().items()}
    model = torch_models.lenet5(torch, state)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x64, y64 = _lenet_data(64)
    x64, y64 = torch.from_numpy(x64), torch.from_numpy(y64)

    def train():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x64), y64).backward()
        opt.step()

    calls = {"step64": train}
    for batch in (1, 1000):
        x = torch.from_numpy(_lenet_data(batch)[0])

        def call(x=x):
            with torch.no_grad():
                return model(x)

        calls[f"infer{batch}"] = call
    return calls


def _onnxruntime_workloads(threads: int, folder: str) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(Path(folder) / "lenet5.onnx"), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    calls = {}
    for batch in (1, 1000):
        feed = {name: _lenet_data(batch)[0]}
        calls[f"infer{batch}"] = lambda feed=feed: session.run(None, feed)
    return calls


def child(args: argparse.Namespace) -> None:
    """Child mode: one engine, every workload idle then busy; one JSON line on stdout."""
    if args.child == "minidl":
        calls = _minidl_workloads(args.torch_mode)
    elif args.child == "torch":
        calls = _torch_workloads(args.threads)
    else:
        calls = _onnxruntime_workloads(args.threads, args.dir)
    result = {}
    for name, fn in calls.items():
        idle = _samples(fn, args.seconds)
        busy_proc = _busy(args.busy_timeout)
        try:
            time.sleep(0.2)  # let it reach its loop
            busy = _samples(fn, args.seconds)
        finally:
            busy_proc.kill()
            busy_proc.wait()
        result[name] = {"idle": idle, "busy": busy}
    info = {}
    if args.child == "minidl":
        import minidl

        info = {"threads": minidl.get_num_threads()}
        try:
            from minidl._kernels import threadpool
        except ImportError:  # a --baseline tree from before the pool
            threadpool = None
        if threadpool is not None:
            info["contention_events"] = threadpool.contention_events()
    print(json.dumps({"result": result, "info": info}))


def _run(engine: dict, args: argparse.Namespace, folder: str) -> dict | None:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.contention",
        "--child",
        engine["kind"],
        "--seconds",
        str(args.seconds),
        "--busy-timeout",
        str(args.busy_timeout),
        "--threads",
        str(engine["threads"]),
        "--torch-mode",
        engine.get("torch", "none"),
        "--dir",
        folder,
    ]
    env = dict(os.environ)
    # The checkout's benchmarks package, and the minidl under test (a --baseline tree first).
    paths = [str(ROOT)]
    if engine.get("path"):
        paths.insert(0, engine["path"])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if engine["kind"] == "minidl":
        if engine["threads"] == 1:
            env["OMP_NUM_THREADS"] = "1"
        else:
            env.pop("OMP_NUM_THREADS", None)
    # cwd: not the checkout, whose minidl would shadow the one under test on sys.path.
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=args.busy_timeout, cwd=folder
    )
    if done.returncode != 0:
        print(f"{engine['label']}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _engines(args: argparse.Namespace) -> list[dict]:
    import importlib.util

    cores = os.cpu_count() or 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    out = []
    trees = [("minidl", None)]
    if args.baseline:
        trees.append(("baseline", str(Path(args.baseline).resolve())))
    have_torch = importlib.util.find_spec("torch") is not None
    for label, path in trees:
        if "minidl" in args.engines:
            out.append(
                {
                    "label": f"{label} 1t",
                    "kind": "minidl",
                    "threads": 1,
                    "path": path,
                    "key": (label, 1),
                }
            )
            out.append(
                {
                    "label": f"{label} {cores}t",
                    "kind": "minidl",
                    "threads": cores,
                    "path": path,
                    "key": (label, cores),
                }
            )
            if have_torch and "torch" in args.engines and label == "minidl":
                for mode in ("before", "after", "ops"):
                    out.append(
                        {
                            "label": f"{label} {cores}t torch {mode}",
                            "kind": "minidl",
                            "threads": cores,
                            "torch": mode,
                            "path": path,
                            "key": (label, 1),
                        }
                    )
    if have_torch and "torch" in args.engines:
        for threads in (1, cores):
            out.append(
                {
                    "label": f"torch {threads}t",
                    "kind": "torch",
                    "threads": threads,
                    "key": ("torch", 1),
                }
            )
    if importlib.util.find_spec("onnxruntime") is not None and "onnxruntime" in args.engines:
        for threads in (1, cores):
            out.append(
                {
                    "label": f"onnxruntime {threads}t",
                    "kind": "onnxruntime",
                    "threads": threads,
                    "key": ("onnxruntime", 1),
                }
            )
    return out


def _export_onnx(folder: str) -> None:
    import minidl
    from minidl import onnx as minidl_onnx
    from minidl.models import LeNet5

    minidl.manual_seed(0)
    minidl_onnx.export(
        LeNet5().eval(), (minidl.tensor(_lenet_data(1)[0]),), Path(folder) / "lenet5.onnx"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="seconds of calls per workload and phase (default 2)",
    )
    parser.add_argument(
        "--busy-timeout",
        type=float,
        default=900.0,
        help="the busy process ends itself after this long (default 900 s)",
    )
    parser.add_argument("--engines", nargs="+", default=["minidl", "torch", "onnxruntime"])
    parser.add_argument("--baseline", help="another minidl checkout (built) to compare with")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--torch-mode", choices=TORCH_MODES, default="none", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        engines = _engines(args)
        if any(e["kind"] == "onnxruntime" for e in engines):
            _export_onnx(folder)
        results = {}
        for engine in engines:
            print(f"running {engine['label']} ...", file=sys.stderr, flush=True)
            results[engine["label"]] = (engine, _run(engine, args, folder))
    _report(results, args)


def _report(results: dict, args: argparse.Namespace) -> None:
    med = statistics.median
    one_thread = {}
    for _label, (engine, out) in results.items():
        if out is not None and engine["threads"] == 1 and engine.get("torch", "none") == "none":
            one_thread[engine["key"][0]] = out["result"]
    print(
        f"\nLeNet-5, ms per call: median / best of {args.seconds:g} s of calls per phase; "
        f"busy = beside one CPU-bound process; {os.cpu_count()} logical CPUs"
    )
    print(
        f"{'engine':<28} {'workload':<10} {'idle':>15} {'busy':>15} {'busy/1t':>8} "
        f"{'busy/idle':>9} {'idle/base':>9}"
    )
    for label, (engine, out) in results.items():
        if out is None:
            print(f"{label:<28} failed")
            continue
        base = None
        if engine["kind"] == "minidl" and not engine.get("path"):
            base = results.get(f"baseline {engine['threads']}t", (None, None))[1]
        for name in WORKLOADS:
            if name not in out["result"]:
                continue
            idle, busy = out["result"][name]["idle"], out["result"][name]["busy"]
            ref = one_thread.get(engine["key"][0], {}).get(name)
            ratio_1t = f"{med(busy) / med(ref['busy']):8.2f}" if ref else f"{'':8}"
            ratio_base = (
                f"{med(idle) / med(base['result'][name]['idle']):9.3f}"
                if base and engine.get("torch", "none") == "none"
                else f"{'':9}"
            )
            print(
                f"{label:<28} {name:<10} {med(idle) * 1e3:7.3f}/{min(idle) * 1e3:7.3f} "
                f"{med(busy) * 1e3:7.3f}/{min(busy) * 1e3:7.3f} {ratio_1t} "
                f"{med(busy) / med(idle):9.2f} {ratio_base}"
            )
        if out.get("info"):
            print(f"{'':<28} {out['info']}")


if __name__ == "__main__":
    main()
