"""A child process running one engine at one thread count, driven by minidl-bench's parent.

    python -m minidl.bench.worker ENGINE THREADS

Each engine runs in its own process because two OpenMP runtimes (minidl's and PyTorch's, or
OpenBLAS's threads) in one process spin against each other and distort both. The parent sets
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to THREADS in this process's
environment; the engine's own thread control is set here as well.

Protocol: one JSON object per line. On start the worker writes {"engine", "version", "info"}
or {"absent": why} (the engine is not installed: not an error). Then, per request line on stdin:
  {"op": "setup", "case", "size", "data": .npz path, "warmup", "min_sample_s"}
      -> {"number": calls per sample} | {"absent": why} | {"error": message}
  {"op": "sample"} -> {"seconds": per call} | {"error": message}
  {"op": "quit"} -> exits.
Answers go to the stdout the worker started with; whatever a library prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import numpy as np

from minidl.bench import case as case_mod
from minidl.bench import timing


def start_engine(engine: str, threads: int) -> dict:
    """Import and configure `engine` for `threads` threads: its version and facts to report."""
    if engine == "minidl":
        import minidl

        minidl.set_num_threads(threads)
        # As minidl-train and the examples do: freed activations stay in the heap instead of
        # being faulted in again each step (README, "What you get": tune_malloc).
        info = dict(minidl.config(), malloc_tuned=minidl.threads.tune_malloc())
        return {"version": minidl.__version__, "info": info}
    if engine == "numpy":
        info: dict[str, Any] = {}
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            info["blas"] = "unknown (threadpoolctl not installed)"
            info["threads_control"] = "OPENBLAS_NUM_THREADS / MKL_NUM_THREADS only"
        else:
            threadpool_limits(limits=threads)
            blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
            info["blas"] = (
                ", ".join(
                    f"{p['internal_api']} {p.get('version') or ''} {p.get('architecture') or ''}"
                    f" ({p.get('threading_layer') or '?'} threads)".replace("  ", " ")
                    for p in blas
                )
                or "none found by threadpoolctl"
            )
            info["threads_control"] = f"threadpoolctl limit {threads}"
        return {"version": np.__version__, "info": info}
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
        return {"version": torch.__version__, "info": {"num_threads": torch.get_num_threads()}}
    if engine == "onnxruntime":
        import onnxruntime

        return {"version": onnxruntime.__version__, "info": {"intra_op_num_threads": threads}}
    raise ValueError(f"minidl.bench.worker: unknown engine {engine!r}")


def _error() -> str:
    return traceback.format_exc().strip().splitlines()[-1]


def serve(engine: str, threads: int, answer) -> None:
    fn = None
    number = 1
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "quit":
            return
        if op == "setup":
            fn = None
            try:
                case = case_mod.find(request["case"], request["size"])
                with np.load(request["data"]) as npz:
                    data = {k: npz[k] for k in npz.files}
                fn = case.builders[engine](data, threads)
                number = timing.calibrate(fn, request["warmup"], request["min_sample_s"])
                answer({"number": number})
            except case_mod.Absent as exc:
                answer({"absent": str(exc)})
            except ImportError as exc:
                answer({"absent": f"{type(exc).__name__}: {exc}"})
            except Exception:
                fn = None
                answer({"error": _error()})
        elif op == "sample":
            if fn is None:
                answer({"error": "sample requested before a successful setup"})
                continue
            try:
                answer({"seconds": timing.sample(fn, number)})
            except Exception:
                answer({"error": _error()})
        else:
            answer({"error": f"unknown request {op!r}"})


def main(argv: list[str] | None = None) -> None:
    engine, threads = (argv if argv is not None else sys.argv[1:])[:2]
    # Keep fd 1 for answers; libraries that print (to Python's stdout or straight to fd 1)
    # must not corrupt the protocol, so both now lead to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(message: dict) -> None:
        out.write(json.dumps(message) + "\n")

    try:
        answer(start_engine(engine, int(threads)))
    except ImportError as exc:
        answer({"absent": f"{type(exc).__name__}: {exc}"})
        return
    serve(engine, int(threads), answer)


if __name__ == "__main__":
    main()
