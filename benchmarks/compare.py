"""Side-by-side timings: minidl against NumPy and PyTorch CPU, same shapes, one run.

    python -m benchmarks.compare                        # every case, 1 thread and all threads
    python -m benchmarks.compare --filter 1024 --repeat 20
    python benchmarks/compare.py --filter LeNet --threads 2

Cases come from every benchmarks/*_cases.py module that defines `cases() -> list[dict]`, each
dict with keys name, flops (per call), minidl (zero-argument callable), numpy and torch
(callables or None). For each thread count every engine is timed best-of-`--repeat` and the
table prints ms, GFLOP/s and each reference's time divided by minidl's (> 1: minidl is faster),
then minidl's speedup from 1 thread to the others. The machine's speed drifts (other jobs,
clocks), so every ratio divides two timings taken with alternating samples: the reference's
and a minidl timing made beside it (in the same child process for NumPy).

NumPy runs in child processes, one per OpenBLAS core type and thread count, because OpenBLAS
reads OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS once, when it loads: the project's default
environment (Haswell: AVX2 kernels) and SkylakeX (its AVX-512 kernels), each variable set in
that child's environment only. This also keeps OpenBLAS's idle-spinning threads away from the
minidl and PyTorch timings. PyTorch (if importable) runs in this process with
torch.set_num_threads set to the same count; without it its column is left out.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib
import json
import os
import platform
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/compare.py`
    sys.path.insert(0, ROOT)

from benchmarks.common import best_of, best_of_pair, gflops  # noqa: E402

OPENBLAS_CORETYPES = ("Haswell", "SkylakeX")


def load_cases(name_filter: str) -> tuple[list[dict], list[str]]:
    """Cases of every benchmarks/*_cases.py whose name contains name_filter, and notes on
    modules that could not be loaded."""
    cases, notes = [], []
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*_cases.py"))):
        module_name = "benchmarks." + os.path.splitext(os.path.basename(path))[0]
        try:
            module = importlib.import_module(module_name)
            make = getattr(module, "cases", None)
            if make is None:
                continue
            module_cases = make()
        except Exception as exc:  # one broken module must not hide the others' results
            notes.append(f"{module_name} skipped: {type(exc).__name__}: {exc}")
            continue
        cases.extend(c for c in module_cases if name_filter in c["name"])
    return cases, notes


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def time_numpy_child(args: argparse.Namespace) -> None:
    """Child mode: time each case's numpy callable with minidl's, samples alternating; print
    {"info": ..., "times": {name: [numpy s, minidl s]}} as JSON."""
    import minidl

    minidl.threads.tune_malloc()  # as the parent: the same allocator for both timings
    n_threads = args.threads[0]
    minidl.set_num_threads(n_threads)
    info = {"threads_control": f"OPENBLAS_NUM_THREADS={n_threads}"}
    limiter = None
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        limiter = threadpool_limits(limits=n_threads)
        info["threads_control"] = f"threadpoolctl limit {n_threads}"
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info["blas"] = f"{blas[0]['internal_api']} {blas[0].get('architecture', '?')}"
    except ImportError:
        pass
    cases, _ = load_cases(args.filter)
    times = {}
    for case in cases:
        if case.get("numpy") is not None:
            ours, ref = best_of_pair(case["minidl"], case["numpy"], args.repeat)
            times[case["name"]] = [ref, ours]
    if limiter is not None:
        limiter.restore_original_limits()
    print(json.dumps({"info": info, "times": times}))


def numpy_times(coretype: str, n_threads: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype, OPENBLAS_NUM_THREADS=str(n_threads))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.compare",
        "--numpy-child",
        "--threads",
        str(n_threads),
        "--repeat",
        str(args.repeat),
        "--filter",
        args.filter,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"info": {"error": proc.stderr.strip().splitlines()[-1:]}, "times": {}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def try_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def fmt_gflops(flops: float, seconds: float | None) -> str:
    return "-" if seconds is None else f"{gflops(flops, seconds):.1f}"


def fmt_ratio(ref: float | None, ours: float | None) -> str:
    return "-" if ref is None or ours is None else f"{ref / ours:.2f}x"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header)
    )
    print(line)
    print("-" * len(line))
    for r in rows:
        print(
            "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        )


def run(args: argparse.Namespace) -> None:
    import numpy as np

    import minidl
    from minidl._kernels import _runtime

    # Freed activations and gradients reused, not faulted in again each call (as minidl-train
    # and the other benchmarks do): a pool fwd+bwd case took 1.7 ms instead of 0.14 ms.
    minidl.threads.tune_malloc()
    torch = None if args.no_torch else try_torch()
    cases, notes = load_cases(args.filter)
    print(f"minidl side-by-side  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; minidl ISA path: "
        f"{_runtime.isa_path()}, compiler {_runtime.compiler()}, "
        f"thread pool {'on' if minidl.config()['thread_pool'] else 'OFF'}, malloc tuned "
        f"{minidl.threads.malloc_tuned}"
    )
    print(
        f"numpy {np.__version__} (child processes, one per OPENBLAS_CORETYPE and thread count); "
        + (
            f"torch {torch.__version__}"
            if torch
            else "PyTorch not importable: its column is skipped"
        )
    )
    print(
        f"best of {args.repeat} per figure; ratio = reference time / minidl time, the two "
        "sampled alternately (> 1: minidl faster)"
    )
    for note in notes:
        print(f"note: {note}")
    if not cases:
        print(f"no case matches --filter {args.filter!r}")
        return

    ref_runs = {
        (ct, n): numpy_times(ct, n, args) for n in args.threads for ct in OPENBLAS_CORETYPES
    }
    # Per case, every thread count back to back: the machine's state (other jobs, clocks)
    # drifts over minutes, and the thread-scaling ratio should compare like with like.
    minidl_times: dict[int, dict[str, float]] = {n: {} for n in args.threads}
    # torch_times[n][name] = (torch s, minidl s), the two measured with alternating samples
    torch_times: dict[int, dict[str, tuple[float, float]]] = {n: {} for n in args.threads}
    torch_failures = []
    for case in cases:
        for n_threads in args.threads:
            minidl.set_num_threads(n_threads)
            minidl_times[n_threads][case["name"]] = best_of(case["minidl"], args.repeat)
        if torch is None or case.get("torch") is None:
            continue
        for n_threads in args.threads:
            minidl.set_num_threads(n_threads)
            torch.set_num_threads(n_threads)
            try:
                ours, ref = best_of_pair(case["minidl"], case["torch"], args.repeat)
                torch_times[n_threads][case["name"]] = (ref, ours)
            except Exception:  # a reference that fails must not stop the comparison
                torch_failures.append(
                    f"torch failed on {case['name']} ({n_threads}t): "
                    + traceback.format_exc().strip().splitlines()[-1]
                )

    for n_threads in args.threads:
        header = ["case", "minidl ms", "GFLOP/s"]
        for ct in OPENBLAS_CORETYPES:
            header += [f"np[{ct}] ms", "GFLOP/s", "ratio"]
        if torch is not None:
            header += ["torch ms", "GFLOP/s", "ratio"]
        rows = []
        for case in cases:
            name, flops = case["name"], case["flops"]
            t = minidl_times[n_threads][name]
            row = [name, fmt_ms(t), fmt_gflops(flops, t)]
            # Each ratio pairs the reference with a minidl timing taken alternately with it.
            for ct in OPENBLAS_CORETYPES:
                ref, ours = ref_runs[ct, n_threads]["times"].get(name, (None, None))
                row += [fmt_ms(ref), fmt_gflops(flops, ref), fmt_ratio(ref, ours)]
            if torch is not None:
                ref, ours = torch_times[n_threads].get(name, (None, None))
                row += [fmt_ms(ref), fmt_gflops(flops, ref), fmt_ratio(ref, ours)]
            rows.append(row)
        print_table(f"== {n_threads} thread{'s' if n_threads > 1 else ''} ==", header, rows)
        infos = [ref_runs[ct, n_threads]["info"] for ct in OPENBLAS_CORETYPES]
        for ct, info in zip(OPENBLAS_CORETYPES, infos):
            print(
                f"   np[{ct}]: OPENBLAS_CORETYPE={ct} in the child's environment; "
                + ", ".join(f"{k}: {v}" for k, v in info.items())
            )
        if "threadpoolctl" not in json.dumps(infos):
            print(
                "   threadpoolctl not installed: NumPy's OpenBLAS uses its own threads, set "
                "only through OPENBLAS_NUM_THREADS in the child's environment"
            )

    if len(args.threads) > 1:
        base = args.threads[0]
        header = (
            ["case"]
            + [f"minidl {n}t ms" for n in args.threads]
            + [f"{n}t/{base}t speedup" for n in args.threads[1:]]
        )
        rows = []
        for case in cases:
            name = case["name"]
            row = [name] + [fmt_ms(minidl_times[n][name]) for n in args.threads]
            row += [
                fmt_ratio(minidl_times[base][name], minidl_times[n][name]) for n in args.threads[1:]
            ]
            rows.append(row)
        print_table("== minidl thread scaling ==", header, rows)
    for failure in torch_failures:
        print(f"note: {failure}")


def parse_threads(text: str) -> list[int]:
    from minidl.threads import default_num_threads

    counts = []
    for part in text.split(","):
        n = default_num_threads() if part.strip() == "all" else int(part)
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {n}")
        if n not in counts:
            counts.append(n)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--repeat", type=int, default=10, help="best of N samples (default 10)")
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default="1,all",
        help="comma-separated thread counts, 'all' = minidl's default (default: 1,all)",
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--numpy-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.numpy_child:
        time_numpy_child(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
