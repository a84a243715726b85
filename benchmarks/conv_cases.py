"""conv2d and max_pool2d cases: issue 12's layer table, for benchmarks/compare.py and this script.

The table and the steps live in minidl/bench/kernel_cases.py (one list for minidl-bench, this
script, compare.py and the pytest suite). `cases()` returns one dict per case: name, flops (per
call), and zero-argument callables minidl / numpy / torch (None where there is no such
reference). Forward+backward cases run the whole step each call: forward through the graph,
backward with a fixed upstream gradient (weight, bias and input gradients). The NumPy
reference is im2col + one sgemm per batch (NumPy's BLAS) and col2im by strided adds.

Run as a script, it times the table's layers against PyTorch with PyTorch in its own child
process (two OpenMP runtimes in one process slow each other down on 2 cores), samples of the
two engines interleaved, best of --repeat, at 1 and 2 threads, and prints ratios (PyTorch time /
minidl time, > 1: minidl faster), their geometric mean, minidl's 2-thread speedup and the
single-thread FMA peak of each instruction set:

    python -m benchmarks.conv_cases                  # needs torch==2.13.0 for the ratios
    python -m benchmarks.conv_cases --filter resnet --repeat 10 --threads 1
    python -m benchmarks.conv_cases --passes --threads 1 --cpu-time   # fwd, dX, dW apart

With --passes each layer's forward, input gradient ("bwd-data") and weight (+ bias) gradient
("bwd-weight") are timed on their own, minidl through minidl.backends.conv into preallocated
arrays, PyTorch through aten's convolution_backward with one output mask at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time

# Seconds to wait after a PyTorch sample before minidl's (see run_table).
TORCH_SPIN_SETTLE_S = 0.05

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/conv_cases.py`
    sys.path.insert(0, ROOT)

from benchmarks.common import case_dicts  # noqa: E402
from minidl.bench.kernel_cases import (  # noqa: E402  (the one table, shared with minidl-bench)
    CONV_SHAPES,
    conv_data,
    conv_flops,
    minidl_conv_step,
    torch_conv_step,
)


def cases() -> list[dict]:
    """Every conv2d and max_pool2d case of minidl-bench --full, as compare.py's dicts."""
    return case_dicts("conv") + case_dicts("pool")


# ---------------------------------------------------------------------------------------------
# The table: minidl in this process, PyTorch in a child process.
# ---------------------------------------------------------------------------------------------


PASS_MODES = ("fwd", "bwd-data", "bwd-weight")


def minidl_pass_step(d: dict, stride: int, pad: int, mode: str):
    """A zero-argument callable running one pass of minidl's conv2d (arrays preallocated)."""
    import numpy as np

    from minidl.backends import conv as backend
    from minidl.threads import get_num_threads

    x, w, b, gy = d["x"], d["w"], d.get("b"), d["gy"]
    geometry = ((stride, stride), (pad, pad), (1, 1), 1)
    if mode == "fwd":
        out = np.empty_like(gy)
        return lambda: backend.conv2d_forward(x, w, b, out, *geometry, False, get_num_threads())
    grad_x = np.empty_like(x) if mode == "bwd-data" else None
    grad_w = np.empty_like(w) if mode == "bwd-weight" else None
    grad_b = np.empty_like(b) if mode == "bwd-weight" and b is not None else None
    return lambda: backend.conv2d_backward(
        x, w, gy, None, grad_x, grad_w, grad_b, *geometry, get_num_threads()
    )


def torch_pass_step(d: dict, stride: int, pad: int, mode: str):
    """The same pass in PyTorch (aten.convolution / convolution_backward)."""
    import torch

    x, w, gy = (torch.from_numpy(d[k]) for k in ("x", "w", "gy"))
    b = torch.from_numpy(d["b"]) if "b" in d else None
    conv = torch.nn.functional.conv2d
    if mode == "fwd":

        def fwd():
            with torch.no_grad():
                return conv(x, w, b, stride=stride, padding=pad)

        return fwd
    mask = [mode == "bwd-data", mode == "bwd-weight", mode == "bwd-weight" and b is not None]
    bias_sizes = [w.shape[0]] if b is not None else None

    def bwd():
        with torch.no_grad():
            return torch.ops.aten.convolution_backward(
                gy, x, w, bias_sizes, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask
            )

    return bwd


def _sample(fn, number: int, cpu_time: bool = False) -> float:
    """Seconds per call of `number` back-to-back calls: wall-clock, or with cpu_time the calling
    thread's CPU time (valid at 1 thread only, where both engines compute on the calling
    thread; on a shared machine it leaves out the time the thread was descheduled)."""
    import time

    clock = time.thread_time if cpu_time else time.perf_counter
    start = clock()
    for _ in range(number):
        fn()
    return (clock() - start) / number


def torch_child() -> None:
    """Child mode: read JSON requests {"layer", "backward", "threads", "number"} from stdin,
    answer each with {"seconds": s} (one sample after a warm-up call) on stdout."""
    import torch

    steps = {}
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["layer"], req["backward"])
        if key not in steps:
            _, xs, ws, stride, pad, bias = CONV_SHAPES[req["layer"]]
            data = conv_data(xs, ws, stride, pad, bias)
            if req["backward"] in PASS_MODES:
                steps[key] = torch_pass_step(data, stride, pad, req["backward"])
            else:
                steps[key] = torch_conv_step(data, stride, pad, req["backward"])
        torch.set_num_threads(req["threads"])
        if req.get("warmup"):
            steps[key]()
        seconds = _sample(steps[key], req["number"], req.get("cpu_time", False))
        print(json.dumps({"seconds": seconds}), flush=True)
    print(json.dumps({"version": torch.__version__}), flush=True)


class TorchChild:
    """A PyTorch child process answering timing requests (None when torch is missing)."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.conv_cases", "--torch-child"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def sample(self, layer, backward, threads, number, warmup, cpu_time=False) -> float:
        req = dict(
            layer=layer,
            backward=backward,
            threads=threads,
            number=number,
            warmup=warmup,
            cpu_time=cpu_time,
        )
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("conv_cases: the PyTorch child process died")
        return json.loads(line)["seconds"]

    def close(self) -> str:
        out, _ = self.proc.communicate("")
        return json.loads(out.strip().splitlines()[-1])["version"]


def _number(seconds: float) -> int:
    """Calls per sample so that a sample lasts >= 20 ms."""
    return max(1, math.ceil(0.02 / max(seconds, 1e-9)))


def fma_peaks() -> dict[str, float]:
    from minidl._kernels.fma_probe import ISAS, fma_peak_gflops

    return {isa: fma_peak_gflops(isa) for isa in ISAS}


def _algorithm() -> str:
    """minidl.backends.conv.algorithm, or "shape rule" for a minidl without that switch (timing
    an older checkout, imported before this module, as the baseline)."""
    import minidl

    backends = getattr(minidl, "backends", None)
    return getattr(getattr(backends, "conv", None), "algorithm", "shape rule")


def _tile() -> str:
    """ ", Winograd tile m" when minidl.backends.conv.winograd_tile forces one."""
    import minidl

    tile = getattr(getattr(minidl, "backends", None), "conv", None)
    tile = getattr(tile, "winograd_tile", None)
    return f", Winograd tile {tile}" if tile else ""


def run_table(args: argparse.Namespace) -> None:
    import importlib.util

    import minidl

    torch = None
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            print("torch not importable: minidl times only (pip install torch==2.13.0)")
        else:
            torch = TorchChild()
    # As minidl-train does (the PyTorch child keeps its default allocator).
    malloc = getattr(minidl.threads, "tune_malloc", lambda: False)()
    peaks = fma_peaks()
    load = os.getloadavg()
    print(
        f"conv2d layer table, float32, best of {args.repeat} interleaved samples"
        f"{' of thread CPU time' if args.cpu_time else ''}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"load {load[0]:.2f} {load[1]:.2f}, {minidl.config()['isa']}, conv algorithm "
        f"{_algorithm()!r}{_tile()}, malloc tuned {malloc}, "
        f"minidl from {os.path.dirname(minidl.__file__)}"
    )
    print(
        "single-thread FMA peak GFLOP/s: "
        + ", ".join(f"{isa} {gf:.0f}" for isa, gf in peaks.items())
    )
    layers = [i for i, layer in enumerate(CONV_SHAPES) if args.filter in layer[0]]
    modes = [(m, m) for m in PASS_MODES] if args.passes else [("fwd+bwd", True), ("fwd", False)]
    results = {}  # (layer, mode, threads) -> (minidl s, torch s or None)
    for threads in args.threads:
        for i in layers:
            name, xs, ws, stride, pad, bias = CONV_SHAPES[i]
            data = conv_data(xs, ws, stride, pad, bias)
            for mode, backward in modes:
                minidl.set_num_threads(threads)
                if backward in PASS_MODES:
                    step = minidl_pass_step(data, stride, pad, backward)
                else:
                    step = minidl_conv_step(data, stride, pad, backward)
                step()
                n_ours = _number(_sample(step, 1))
                ours, ref = math.inf, math.inf
                for r in range(args.repeat):
                    minidl.set_num_threads(threads)
                    ours = min(ours, _sample(step, n_ours, args.cpu_time))
                    if torch is not None:
                        ref = min(
                            ref, torch.sample(i, backward, threads, n_ours, r == 0, args.cpu_time)
                        )
                        if threads > 1:
                            # PyTorch's OpenMP workers spin for milliseconds after its sample;
                            # minidl's pool, sampled next, would read that as contention and
                            # run on fewer threads (benchmarks.contention, "torch ops").
                            time.sleep(TORCH_SPIN_SETTLE_S)
                results[i, mode, threads] = (ours, ref if torch is not None else None)
    version = torch.close() if torch is not None else None
    header = "| layer | mode |"
    for t in args.threads:
        header += f" minidl ms {t}t | GFLOP/s | torch ms | ratio |"
    if len(args.threads) > 1:
        header += f" minidl {args.threads[-1]}t/{args.threads[0]}t |"
    print(f"\nPyTorch {version}" if version else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    ratios = {(mode, t): [] for mode, _ in modes for t in args.threads}
    for i in layers:
        name, xs, ws, stride, pad, bias = CONV_SHAPES[i]
        flops = conv_flops(xs, ws, stride, pad)
        for mode, backward in modes:
            row = f"| {name} | {mode} |"
            for t in args.threads:
                ours, ref = results[i, mode, t]
                gf = (3 if backward is True else 1) * flops / ours / 1e9
                row += f" {ours * 1e3:.3f} | {gf:.0f} |"
                if ref is None:
                    row += " - | - |"
                else:
                    ratios[mode, t].append(ref / ours)
                    row += f" {ref * 1e3:.3f} | {ref / ours:.2f}x |"
            if len(args.threads) > 1:
                speedup = (
                    results[i, mode, args.threads[0]][0] / results[i, mode, args.threads[-1]][0]
                )
                row += f" {speedup:.2f}x |"
            print(row)
    for (mode, t), values in ratios.items():
        if values:
            geo = math.exp(sum(math.log(v) for v in values) / len(values))
            print(f"geomean torch/minidl {mode} {t}t: {geo:.2f}x (min {min(values):.2f}x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="", help="only layers whose name contains this")
    parser.add_argument("--repeat", type=int, default=5, help="samples per engine (best of)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--passes", action="store_true", help="time forward, input and weight gradient apart"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the calling thread's CPU time (1 thread only): robust on a busy machine",
    )
    parser.add_argument(
        "--algorithm", help="set minidl.backends.conv.algorithm (auto, direct, winograd, im2col)"
    )
    parser.add_argument(
        "--winograd-tile",
        type=int,
        choices=(2, 4),
        help="set minidl.backends.conv.winograd_tile: F(2x2, 3x3) or F(4x4, 3x3) wherever "
        "Winograd runs (default: the rule's choice)",
    )
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_time and args.threads != [1]:
        parser.error("--cpu-time measures one thread: use it with --threads 1")
    if args.torch_child:
        torch_child()
    else:
        if args.algorithm or args.winograd_tile:
            import minidl.backends.conv

            if args.algorithm:
                minidl.backends.conv.algorithm = args.algorithm
            if args.winograd_tile:
                minidl.backends.conv.winograd_tile = args.winograd_tile
        run_table(args)


if __name__ == "__main__":
    main()
