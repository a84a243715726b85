"""conv2d and max_pool2d cases: issue 12's layer table, for benchmarks/compare.py and this script.

`cases()` returns one dict per case: name, flops (per call), and zero-argument callables
minidl / numpy / torch (None where there is no such reference). Forward+backward cases run the
whole step each call: forward through the graph, backward with a fixed upstream gradient
(weight, bias and input gradients). The NumPy reference is im2col + one sgemm per batch
(NumPy's BLAS) and col2im by strided adds.

Run as a script, it times the table's layers against PyTorch with PyTorch in its own child
process (two OpenMP runtimes in one process slow each other down on 2 cores), samples of the
two engines interleaved, best of --repeat, at 1 and 2 threads, and prints ratios (PyTorch time /
minidl time, > 1: minidl faster), their geometric mean, minidl's 2-thread speedup and the
single-thread FMA peak of each instruction set:

    python -m benchmarks.conv_cases                  # needs torch==2.13.0 for the ratios
    python -m benchmarks.conv_cases --filter resnet --repeat 10 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/conv_cases.py`
    sys.path.insert(0, ROOT)

# name, x shape, weight shape, stride, padding, bias. Batch 128 for the ResNet-20 (CIFAR) layers
# and 64 for the MNIST-example and LeNet ones; bias where those models have one.
CONV_SHAPES = [
    ("resnet_stem_3to16_32px", (128, 3, 32, 32), (16, 3, 3, 3), 1, 1, False),
    ("resnet_16to16_32px", (128, 16, 32, 32), (16, 16, 3, 3), 1, 1, False),
    ("resnet_16to32_s2_32px", (128, 16, 32, 32), (32, 16, 3, 3), 2, 1, False),
    ("resnet_32to32_16px", (128, 32, 16, 16), (32, 32, 3, 3), 1, 1, False),
    ("resnet_64to64_8px", (128, 64, 8, 8), (64, 64, 3, 3), 1, 1, False),
    ("mnist_1to32_28px", (64, 1, 28, 28), (32, 1, 3, 3), 1, 0, True),
    ("mnist_32to64_26px", (64, 32, 26, 26), (64, 32, 3, 3), 1, 0, True),
    ("pointwise_64to64_16px", (128, 64, 16, 16), (64, 64, 1, 1), 1, 0, False),
    ("lenet_conv1", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2, True),
    ("lenet_conv2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, True),
]
POOL_SHAPES = [
    ("lenet_pool", (64, 6, 28, 28)),
    ("mid_pool", (32, 64, 32, 32)),
]


def _out_hw(x_shape, w_shape, stride, pad):
    return tuple((x_shape[i] + 2 * pad - w_shape[i]) // stride + 1 for i in (2, 3))


def layer_data(x_shape, w_shape, stride, pad, bias):
    """x, w (He-scaled), b (or None), upstream gradient: float32, the same for every engine."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * np.sqrt(2 / np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + _out_hw(x_shape, w_shape, stride, pad))
    return x, w, b, gy.astype(np.float32)


def layer_flops(x_shape, w_shape, stride, pad) -> int:
    """Forward multiply-adds x 2 (direct convolution count, whatever the algorithm)."""
    oh, ow = _out_hw(x_shape, w_shape, stride, pad)
    return 2 * x_shape[0] * w_shape[0] * oh * ow * int(np.prod(w_shape[1:]))


def _im2col(x, kh, kw, stride, pad):
    """(C*KH*KW, N*OH*OW) columns of the padded input."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]
    n, c, oh, ow = win.shape[:4]
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow), (oh, ow)


def _numpy_conv(x, w, b, gy, stride, pad):
    oc, c, kh, kw = w.shape
    n = x.shape[0]
    col, (oh, ow) = _im2col(x, kh, kw, stride, pad)
    out = (w.reshape(oc, -1) @ col).reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)
    if b is not None:
        out = out + b[:, None, None]
    if gy is None:
        return out
    g = gy.transpose(1, 0, 2, 3).reshape(oc, -1)
    grad_w = (g @ col.T).reshape(w.shape)
    grad_b = g.sum(axis=1)
    dcol = (w.reshape(oc, -1).T @ g).reshape(c, kh, kw, n, oh, ow)
    gxp = np.zeros((n, c, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), x.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += dcol[
                :, i, j
            ].transpose(1, 0, 2, 3)
    return out, grad_w, grad_b, gxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]


def minidl_step(x, w, b, gy, stride, pad, backward):
    """A zero-argument callable: minidl's forward (and backward with every gradient)."""
    import minidl
    from minidl.ops.conv import conv2d

    tx = minidl.tensor(x, requires_grad=backward)
    tw = minidl.tensor(w, requires_grad=backward)
    tb = None if b is None else minidl.tensor(b, requires_grad=backward)
    if not backward:
        return lambda: conv2d(tx, tw, tb, stride=stride, padding=pad)

    def step():
        tx.grad = tw.grad = None
        if tb is not None:
            tb.grad = None
        conv2d(tx, tw, tb, stride=stride, padding=pad).backward(gy)

    return step


def torch_step(x, w, b, gy, stride, pad, backward):
    """The same step in PyTorch."""
    import torch

    tx = torch.from_numpy(x).requires_grad_(backward)
    tw = torch.from_numpy(w).requires_grad_(backward)
    tb = None if b is None else torch.from_numpy(b).requires_grad_(backward)
    tgy = torch.from_numpy(gy)
    conv = torch.nn.functional.conv2d
    if not backward:

        def fwd():
            with torch.no_grad():
                return conv(tx, tw, tb, stride=stride, padding=pad)

        return fwd

    def step():
        tx.grad = tw.grad = None
        if tb is not None:
            tb.grad = None
        conv(tx, tw, tb, stride=stride, padding=pad).backward(tgy)

    return step


def _conv_cases(name, x_shape, w_shape, stride, pad, bias):
    x, w, b, gy = layer_data(x_shape, w_shape, stride, pad, bias)
    fwd_flops = layer_flops(x_shape, w_shape, stride, pad)
    out = []
    for suffix, backward, factor in [("fwd", False, 1), ("fwd+bwd", True, 3)]:
        out.append(
            dict(
                name=f"conv2d {name} {x_shape}->{w_shape[0]} {w_shape[2]}x{w_shape[3]} "
                f"stride {stride} pad {pad} {suffix}",
                flops=factor * fwd_flops,
                minidl=_lazy(lambda bw=backward: minidl_step(x, w, b, gy, stride, pad, bw)),
                numpy=(lambda bw=backward: _numpy_conv(x, w, b, gy if bw else None, stride, pad)),
                torch=_lazy(lambda bw=backward: torch_step(x, w, b, gy, stride, pad, bw)),
            )
        )
    return out


def _lazy(make):
    """A callable that builds the real one (importing torch) on first use."""
    cache = []

    def call():
        if not cache:
            cache.append(make())
        return cache[0]()

    return call


def _pool_cases(name, x_shape):
    import minidl
    from minidl.ops.pool import max_pool2d

    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    out_shape = x_shape[:2] + (x_shape[2] // 2, x_shape[3] // 2)
    gy = np.random.default_rng(1).standard_normal(out_shape).astype(np.float32)
    compares = 4 * int(np.prod(out_shape))

    def numpy_fwd():
        n, c, h, w = x_shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def minidl_fn(backward):
        tx = minidl.tensor(x, requires_grad=backward)
        if not backward:
            return lambda: max_pool2d(tx, 2)

        def step():
            tx.grad = None
            max_pool2d(tx, 2).backward(gy)

        return step

    def torch_fn(backward):
        def make():
            import torch

            tx = torch.from_numpy(x).requires_grad_(backward)
            tgy = torch.from_numpy(gy)
            if not backward:

                def fwd():
                    with torch.no_grad():
                        return torch.nn.functional.max_pool2d(tx, 2)

                return fwd

            def step():
                tx.grad = None
                torch.nn.functional.max_pool2d(tx, 2).backward(tgy)

            return step

        return _lazy(make)

    return [
        dict(
            name=f"max_pool2d {name} {x_shape} 2x2 fwd",
            flops=compares,
            minidl=minidl_fn(False),
            numpy=numpy_fwd,
            torch=torch_fn(False),
        ),
        dict(
            name=f"max_pool2d {name} {x_shape} 2x2 fwd+bwd",
            flops=2 * compares,
            minidl=minidl_fn(True),
            numpy=None,
            torch=torch_fn(True),
        ),
    ]


def cases() -> list[dict]:
    """Every conv2d and max_pool2d case, float32, in the issue's order."""
    out = []
    for layer in CONV_SHAPES:
        out.extend(_conv_cases(*layer))
    for name, x_shape in POOL_SHAPES:
        out.extend(_pool_cases(name, x_shape))
    return out


# ---------------------------------------------------------------------------------------------
# The table: minidl in this process, PyTorch in a child process.
# ---------------------------------------------------------------------------------------------


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
            data = layer_data(xs, ws, stride, pad, bias)
            steps[key] = torch_step(*data, stride, pad, req["backward"])
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


def run_table(args: argparse.Namespace) -> None:
    import importlib.util

    import minidl

    torch = None
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            print("torch not importable: minidl times only (pip install torch==2.13.0)")
        else:
            torch = TorchChild()
    peaks = fma_peaks()
    load = os.getloadavg()
    print(
        f"conv2d layer table, float32, best of {args.repeat} interleaved samples"
        f"{' of thread CPU time' if args.cpu_time else ''}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"load {load[0]:.2f} {load[1]:.2f}, {minidl.config()['isa']}, conv algorithm "
        f"{_algorithm()!r}, minidl from {os.path.dirname(minidl.__file__)}"
    )
    print(
        "single-thread FMA peak GFLOP/s: "
        + ", ".join(f"{isa} {gf:.0f}" for isa, gf in peaks.items())
    )
    layers = [i for i, layer in enumerate(CONV_SHAPES) if args.filter in layer[0]]
    modes = [("fwd+bwd", True), ("fwd", False)]
    results = {}  # (layer, mode, threads) -> (minidl s, torch s or None)
    for threads in args.threads:
        for i in layers:
            name, xs, ws, stride, pad, bias = CONV_SHAPES[i]
            data = layer_data(xs, ws, stride, pad, bias)
            for mode, backward in modes:
                minidl.set_num_threads(threads)
                step = minidl_step(*data, stride, pad, backward)
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
        flops = layer_flops(xs, ws, stride, pad)
        for mode, backward in modes:
            row = f"| {name} | {mode} |"
            for t in args.threads:
                ours, ref = results[i, mode, t]
                gf = (3 if backward else 1) * flops / ours / 1e9
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
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the calling thread's CPU time (1 thread only): robust on a busy machine",
    )
    parser.add_argument(
        "--algorithm", help="set minidl.backends.conv.algorithm (auto, direct, winograd, im2col)"
    )
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_time and args.threads != [1]:
        parser.error("--cpu-time measures one thread: use it with --threads 1")
    if args.torch_child:
        torch_child()
    else:
        if args.algorithm:
            import minidl.backends.conv

            minidl.backends.conv.algorithm = args.algorithm
        run_table(args)


if __name__ == "__main__":
    main()
