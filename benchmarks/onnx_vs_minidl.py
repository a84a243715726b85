"""Inference of exported models: onnxruntime beside minidl compiled, each in its own process.

    python -m benchmarks.onnx_vs_minidl                      # LeNet-5 (and ResNet-20 if present)
    python -m benchmarks.onnx_vs_minidl --models lenet5 --batches 1 1000 --threads 1 2

For each model the parent builds it with a fixed seed (BatchNorm statistics from a few
training-mode batches), writes it with minidl.onnx.export and minidl.save, then starts one
child per (engine, batch, threads): onnxruntime on the ONNX file (intra-op threads = threads,
sequential execution, all graph optimizations), minidl.compile on the native model, and
minidl.compile on minidl.onnx.load(file). Two OpenMP runtimes (minidl's and onnxruntime's)
never share a process. Each child times the call with benchmarks.common.best_of and returns
its output, so the parent also checks the engines agree.

The machine may be shared: compare ratios within one run, and report the load (`uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("onnxruntime", "minidl", "minidl-onnx")
INPUT_SHAPES = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}


def build(name: str):
    import minidl
    from minidl import models

    minidl.manual_seed(0)
    model = models.LeNet5() if name == "lenet5" else models.resnet20()
    rng = np.random.default_rng(1)
    for _ in range(3):  # BatchNorm's running statistics away from 0 / 1
        model(minidl.tensor(rng.standard_normal((16,) + INPUT_SHAPES[name]).astype(np.float32)))
    return model.eval()


def inputs(name: str, batch: int) -> np.ndarray:
    return (
        np.random.default_rng(batch)
        .standard_normal((batch,) + INPUT_SHAPES[name])
        .astype(np.float32)
    )


def child(args: argparse.Namespace) -> None:
    """Child mode: time one engine on one batch size and thread count; print JSON."""
    from benchmarks.common import best_of

    folder = Path(args.dir)
    x = inputs(args.model, args.batch)
    if args.child == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            str(folder / f"{args.model}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: x}

        def call():
            return session.run(None, feed)[0]

        version = ort.__version__
    else:
        import minidl

        minidl.set_num_threads(args.threads)
        if args.child == "minidl":
            model = build(args.model)
            model.load_state_dict(minidl.load(folder / f"{args.model}.ckpt"))
        else:
            from minidl import onnx as minidl_onnx

            model = minidl_onnx.load(folder / f"{args.model}.onnx").eval()
        compiled = minidl.compile(model, example_inputs=(x,))

        def call():
            return compiled(x).data

        version = minidl.__version__
    seconds = best_of(call, repeat=args.repeat, warmup=2)
    print(json.dumps({"seconds": seconds, "version": version, "output": call().tolist()}))


def run_child(engine: str, model: str, batch: int, threads: int, folder: str, repeat: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.onnx_vs_minidl",
        "--child",
        engine,
        "--model",
        model,
        "--batch",
        str(batch),
        "--threads",
        str(threads),
        "--dir",
        folder,
        "--repeat",
        str(repeat),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None, choices=sorted(INPUT_SHAPES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 1000])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        child(args)
        return

    import minidl
    from minidl import models
    from minidl import onnx as minidl_onnx

    names = args.models or ["lenet5"] + (["resnet20"] if hasattr(models, "resnet20") else [])
    from benchmarks.compare import cpu_model

    print(f"{cpu_model()}, {os.cpu_count()} cpus; load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            model = build(name)
            minidl_onnx.export(model, (inputs(name, 2),), Path(folder) / f"{name}.onnx")
            minidl.save(model.state_dict(), Path(folder) / f"{name}.ckpt")
            print(
                f"\n{name}: ms per call (best of {args.repeat}); ratio = onnxruntime / engine "
                "(> 1: the engine is faster)"
            )
            print(
                f"{'batch':>6} {'thr':>4} {'onnxruntime':>12} {'minidl':>10} {'ratio':>7} "
                f"{'minidl-onnx':>12} {'ratio':>7} {'max rel diff':>13}"
            )
            for batch in args.batches:
                for threads in args.threads:
                    r = {
                        e: run_child(e, name, batch, threads, folder, args.repeat) for e in ENGINES
                    }
                    errors = {e: v["error"] for e, v in r.items() if "error" in v}
                    if errors:
                        print(f"{batch:>6} {threads:>4} failed: {errors}")
                        continue
                    ref = np.asarray(r["onnxruntime"]["output"])
                    diff = max(
                        float(np.abs(np.asarray(r[e]["output"]) - ref).max()) for e in ENGINES[1:]
                    ) / float(np.abs(ref).max())
                    t = {e: r[e]["seconds"] for e in ENGINES}
                    print(
                        f"{batch:>6} {threads:>4} {t['onnxruntime'] * 1e3:>12.3f} "
                        f"{t['minidl'] * 1e3:>10.3f} {t['onnxruntime'] / t['minidl']:>6.2f}x "
                        f"{t['minidl-onnx'] * 1e3:>12.3f} "
                        f"{t['onnxruntime'] / t['minidl-onnx']:>6.2f}x {diff:>13.1e}"
                    )
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
