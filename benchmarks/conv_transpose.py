"""conv_transpose2d (DCGAN / U-Net upsampling layers) against PyTorch, forward and forward +
backward, one thread unless --threads.

    python -m benchmarks.conv_transpose                # needs torch for the ratios
    python -m benchmarks.conv_transpose --rounds 5 --repeat 15

Each engine runs in its own child process (two OpenMP runtimes in one process slow each other
down on 2 cores); the parent alternates them round by round, and every figure is the best of
--repeat calls, the minimum over rounds. Ratio: PyTorch time / minidl time (> 1: minidl faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (batch, in channels, out channels, input size, kernel, stride, padding)
LAYERS = [
    (32, 64, 32, 8, 4, 2, 1),
    (32, 32, 16, 16, 4, 2, 1),
    (16, 16, 16, 32, 3, 1, 1),
    (64, 128, 64, 4, 4, 2, 1),
]


def _best_ms(fn, repeat: int) -> float:
    fn()  # warm-up: first-call allocations and caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def _calls(engine: str, x, w, stride: int, padding: int):
    """(forward, forward + backward) zero-argument calls of one layer on one engine."""
    if engine == "torch":
        import torch

        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        conv_t, no_grad, ones_like = (torch.nn.functional.conv_transpose2d, torch.no_grad,
                                      torch.ones_like)
    else:
        import minidl
        from minidl.nn import functional as F

        tx, tw = minidl.tensor(x, requires_grad=True), minidl.tensor(w, requires_grad=True)
        conv_t, no_grad, ones_like = F.conv_transpose2d, minidl.no_grad, minidl.ones_like

    def forward():
        with no_grad():
            conv_t(tx, tw, stride=stride, padding=padding)

    def step():
        y = conv_t(tx, tw, stride=stride, padding=padding)
        y.backward(ones_like(y))

    return forward, step


def _child(engine: str, threads: int, repeat: int) -> None:
    """Print {layer: [forward ms, forward + backward ms]} as JSON for one engine."""
    import numpy as np

    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        sys.path.insert(0, ROOT)
        import minidl

        minidl.set_num_threads(threads)
    rng = np.random.default_rng(0)
    result = {}
    for n, c, oc, size, k, s, p in LAYERS:
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((c, oc, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        forward, step = _calls(engine, x, w, s, p)
        name = f"{c}->{oc} @{size} k{k} s{s} batch {n}"
        result[name] = [_best_ms(forward, repeat), _best_ms(step, repeat)]
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--child", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.threads, args.repeat)
        return
    try:
        import torch  # noqa: F401

        engines = ["minidl", "torch"]
    except ImportError:
        engines = ["minidl"]
    best: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    for _ in range(args.rounds):
        for engine in engines:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.conv_transpose", "--child", engine,
                 "--threads", str(args.threads), "--repeat", str(args.repeat)],
                cwd=ROOT, check=True, capture_output=True, text=True).stdout
            for name, times in json.loads(out).items():
                old = best[engine].get(name, [float("inf")] * 2)
                best[engine][name] = [min(a, b) for a, b in zip(old, times)]
    print(f"conv_transpose2d, float32, {args.threads} thread(s), ms (best of {args.repeat} x "
          f"{args.rounds} rounds)")
    for name, (fwd, step) in best["minidl"].items():
        line = f"  {name:28s} forward {fwd:7.2f}  forward+backward {step:7.2f}"
        if "torch" in best:
            t_fwd, t_step = best["torch"][name]
            line += (f"   torch {t_fwd:7.2f} / {t_step:7.2f}   ratio {t_fwd / fwd:4.2f} / "
                     f"{t_step / step:4.2f}")
        print(line)


if __name__ == "__main__":
    main()
