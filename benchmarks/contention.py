"""LeNet-5 on a busy machine: each engine idle and beside a CPU-bound process, in one run.

    python -m benchmarks.contention                     # every engine installed, ~3 min
    python -m benchmarks.contention --seconds 0.5 --engines minidl
    python -m benchmarks.contention --baseline /path/to/other/minidl/checkout
    python -m benchmarks.contention --engines minidl --baseline DIR --idle-only --rounds 6

Workloads: a compiled LeNet-5 training step at batch 64 (zero_grad, forward + backward, SGD
step), and compiled inference at batch 1 and batch 1000. Engines (--engines), each in its own
child process: `minidl` with 1 thread and with all threads (the default count); `minidl+torch`,
minidl with all threads and torch in the same process: imported before minidl, after it, after
it with one parallel torch op run before timing, or with a small parallel torch op run
untimed before every call (PyTorch's OpenMP threads spin for milliseconds after each of its
loops, beside minidl's pool); `torch` (PyTorch) with 1 and all threads; `onnxruntime`
(inference only) with 1 and all threads; and with --baseline the same minidl rows for another
checkout (PYTHONPATH=DIR), e.g. the commit before a change. With --rounds N every engine runs
N times, round-robin, so that a burst of load from elsewhere hits all of them; the samples of
its rounds are pooled.

Each child times every workload idle, then (unless --idle-only) beside a busy process that it
starts (a Python `while True: pass` that SIGALRM ends after --busy-timeout seconds, whatever
happens to the benchmark), then stops. A workload is called repeatedly for --seconds per
phase; the table gives the median and the best call in ms (the median shows the stalls a busy
machine causes; the best hides them). Ratios, from medians:
  busy / 1t   an engine's busy median over its own 1-thread busy median (issue 13's goal for
              minidl's all-thread row: <= 1.25);
  busy / idle the slowdown the busy process causes.
  idle / ref  for minidl's rows with --baseline: the idle median over the baseline's (goal:
              <= 1.03), with the range of the per-round ratios; for the minidl+torch rows:
              over the same tree's all-thread row without torch.
Below each minidl row: its thread count and the pool's contention detector counters
(minidl.threads.pool_stats(): caps, lone signs ignored, probes, lifted caps), summed over
rounds.
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
ENGINES = ("minidl", "minidl+torch", "torch", "onnxruntime")
TORCH_MODES = ("none", "before", "after", "once", "ops")


def _busy(timeout: float) -> subprocess.Popen:
    """A CPU-bound child that ends itself after `timeout` seconds (SIGALRM's default action)."""
    code = f"import signal\nsignal.alarm({max(1, int(timeout))})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _samples(fn, seconds: float, before=None) -> list[float]:
    """Seconds of each call of fn over `seconds` (at least 5 calls), after 3 warm calls;
    `before`, if given, runs untimed before each call."""
    for _ in range(3):
        fn()
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < 5:
        if before is not None:
            before()
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


def _minidl_workloads(torch_mode: str) -> tuple[dict, object]:
    """The workloads, and what to run untimed before each call (torch mode "ops": a small
    parallel torch op, whose OpenMP threads then spin beside minidl's call) or None."""
    if torch_mode == "before":
        import torch  # noqa: F401  (loads PyTorch's bundled OpenMP runtime first)
    import minidl
    from minidl import optim
    from minidl.models import LeNet5
    from minidl.nn import functional as F

    torch_op = None
    if torch_mode in ("after", "once", "ops"):
        import torch

        big = torch.ones(1 << 20)

        def torch_op():
            return big.sum()

        if torch_mode == "once":
            torch_op()  # PyTorch's OpenMP team now exists; its threads spin, then sleep
        if torch_mode != "ops":
            torch_op = None

    minidl.threads.tune_malloc()
    minidl.manual_seed(0)
    model = LeNet5()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x64, y64 = (minidl.tensor(a) for a in _lenet_data(64))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x64, y64))

    def train():
        opt.zero_grad()
        step(x64, y64)
        opt.step()

    eval_model = LeNet5().eval()
    calls = {"step64": train}
    for batch in (1, 1000):
        x = minidl.tensor(_lenet_data(batch)[0])
        infer = minidl.compile(eval_model, example_inputs=(x,))

        calls[f"infer{batch}"] = lambda infer=infer, x=x: infer(x)
    return calls, torch_op


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
        calls, before = _minidl_workloads(args.torch_mode)
    elif args.child == "torch":
        calls, before = _torch_workloads(args.threads), None
    else:
        calls, before = _onnxruntime_workloads(args.threads, args.dir), None
    result = {}
    for name, fn in calls.items():
        result[name] = {"idle": _samples(fn, args.seconds, before), "busy": []}
        if args.idle_only:
            continue
        busy_proc = _busy(args.busy_timeout)
        try:
            time.sleep(0.2)  # let it reach its loop
            result[name]["busy"] = _samples(fn, args.seconds, before)
        finally:
            busy_proc.kill()
            busy_proc.wait()
    info = {}
    if args.child == "minidl":
        import minidl

        info = {"threads": minidl.get_num_threads()}
        pool_stats = getattr(minidl.threads, "pool_stats", None)  # None: an older --baseline
        if pool_stats is not None:
            info["pool"] = pool_stats()
    print(json.dumps({"result": result, "info": info}))


def _run(engine: dict, args: argparse.Namespace, folder: str) -> dict | None:
    # The script by path: a --baseline checkout's own benchmarks/ never replaces this one.
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "contention.py"),
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
    if args.idle_only:
        cmd.append("--idle-only")
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
        if have_torch and "minidl+torch" in args.engines and label == "minidl":
            for mode in TORCH_MODES[1:]:
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
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=list(ENGINES),
        help="engines to run (default: all installed)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every engine this many times, round-robin"
    )
    parser.add_argument("--idle-only", action="store_true", help="skip the busy phase")
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
        runs: dict[str, list] = {e["label"]: [] for e in engines}
        for round_ in range(args.rounds):
            for engine in engines:
                print(
                    f"round {round_ + 1}/{args.rounds}: {engine['label']} ...",
                    file=sys.stderr,
                    flush=True,
                )
                out = _run(engine, args, folder)
                if out is not None:
                    runs[engine["label"]].append(out)
    results = {e["label"]: (e, _pool(runs[e["label"]])) for e in engines}
    _report(results, args)


def _pool(outs: list[dict]) -> dict | None:
    """One engine's rounds as one result: samples concatenated, per-round idle medians kept
    (for the range of idle ratios) and contention events summed. None if every round failed."""
    if not outs:
        return None
    result = {}
    for name in outs[0]["result"]:
        phases = [o["result"][name] for o in outs]
        result[name] = {
            "idle": [t for p in phases for t in p["idle"]],
            "busy": [t for p in phases for t in p["busy"]],
            "idle_medians": [statistics.median(p["idle"]) for p in phases],
        }
    info = dict(outs[0]["info"])
    if "pool" in info:
        info["pool"] = {k: sum(o["info"]["pool"][k] for o in outs) for k in info["pool"]}
    info["rounds"] = len(outs)
    return {"result": result, "info": info}


def _report(results: dict, args: argparse.Namespace) -> None:
    med = statistics.median
    one_thread = {}
    for _label, (engine, out) in results.items():
        if out is not None and engine["threads"] == 1 and engine.get("torch", "none") == "none":
            one_thread[engine["key"][0]] = out["result"]
    print(
        f"\nLeNet-5, ms per call: median / best of {args.seconds:g} s of calls per phase x "
        f"{args.rounds} round(s); busy = beside one CPU-bound process; "
        f"{os.cpu_count()} logical CPUs"
    )
    print(
        f"{'engine':<28} {'workload':<10} {'idle':>15} {'busy':>15} {'busy/1t':>8} "
        f"{'busy/idle':>9} {'idle/ref (rounds)':>22}"
    )
    for label, (engine, out) in results.items():
        if out is None:
            print(f"{label:<28} failed")
            continue
        ref_row = None
        if engine["kind"] == "minidl" and not engine.get("path"):
            if engine.get("torch", "none") == "none":
                ref_row = results.get(f"baseline {engine['threads']}t", (None, None))[1]
            else:
                ref_row = results.get(f"minidl {engine['threads']}t", (None, None))[1]
        for name in WORKLOADS:
            if name not in out["result"]:
                continue
            row = out["result"][name]
            idle, busy = row["idle"], row["busy"]
            one = one_thread.get(engine["key"][0], {}).get(name)
            busy_ms = f"{med(busy) * 1e3:7.3f}/{min(busy) * 1e3:7.3f}" if busy else f"{'-':>15}"
            ratio_1t = f"{med(busy) / med(one['busy']):8.2f}" if busy and one else f"{'':8}"
            ratio_idle = f"{med(busy) / med(idle):9.2f}" if busy else f"{'':9}"
            ratio_ref = ""
            if ref_row is not None:
                ref = ref_row["result"][name]
                rounds = [a / b for a, b in zip(row["idle_medians"], ref["idle_medians"])]
                ratio_ref = (
                    f"{med(idle) / med(ref['idle']):7.3f} ({min(rounds):.2f}-{max(rounds):.2f})"
                )
            print(
                f"{label:<28} {name:<10} {med(idle) * 1e3:7.3f}/{min(idle) * 1e3:7.3f} "
                f"{busy_ms} {ratio_1t} {ratio_idle} {ratio_ref:>22}"
            )
        if out.get("info"):
            print(f"{'':<28} {out['info']}")


if __name__ == "__main__":
    main()
