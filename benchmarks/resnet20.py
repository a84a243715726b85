"""ResNet-20 training step (forward, backward, SGD update): minidl compiled and eager beside
PyTorch CPU, each engine in its own child process (two OpenMP runtimes never share one).

    python -m benchmarks.resnet20                       # batch 128, 2 threads, best of 10
    python -m benchmarks.resnet20 --threads 1 --repeat 20 --batch 64
    python -m benchmarks.resnet20 --inference --batch 64   # eval-mode forward, no gradients
    python -m benchmarks.resnet20 --threads 1 --clock cpu  # process CPU time (busy machine)

Inputs are random tensors of CIFAR-10's shape (N, 3, 32, 32) with random labels (the step's
cost does not depend on the pixel values). Every engine runs the same model (minidl's
resnet20; PyTorch gets a twin with the same layers, the option-A shortcut and minidl's initial
weights) and the recipe of `minidl-train --model resnet20`: SGD lr 0.1, Nesterov momentum 0.9,
weight decay 5e-4. After `--warmup` untimed steps (allocation, tracing) each child times
`--repeat` steps one by one and reports the best and the median; the table gives PyTorch's
time divided by each engine's (> 1: faster than PyTorch). The load average before and after
is printed: on a shared machine compare ratios from one run only. `--inference` times the
eval-mode forward instead (minidl compiled: `minidl.compile(model, example_inputs=(x,))`,
eager and PyTorch under no_grad). `--clock cpu` times by the child's CPU time
(time.process_time) instead of the wall clock: with one thread on a loaded machine it leaves
out the time the process waited for a core; with more threads it sums their CPU time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

ENGINES = ("minidl-compiled", "minidl-eager", "torch")


def torch_resnet20(torch: Any, in_channels: int = 3, num_classes: int = 10) -> Any:
    """PyTorch twin of minidl.models.resnet20: same layers, same state_dict names."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.stride, self.side = stride, (cout - cin) // 2
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)

        def forward(self, x: Any) -> Any:
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x
            if self.stride != 1:
                shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.side, self.side))
            return F.relu(out + shortcut)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            blocks, width = [], 16
            for k, channels in enumerate((16, 32, 64)):
                for b in range(3):
                    blocks.append(Block(width, channels, 2 if k > 0 and b == 0 else 1))
                    width = channels
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x: Any) -> Any:
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.blocks(x)
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    return Net()


def load_minidl_weights(torch: Any, twin: Any, model: Any) -> None:
    """Copy a minidl resnet20's parameters and buffers into its PyTorch twin."""
    twin.load_state_dict(
        {
            k: torch.from_numpy(np.array(v.numpy() if hasattr(v, "numpy") else v))
            for k, v in model.state_dict().items()
        }
    )


def time_steps(step: Any, warmup: int, repeat: int, clock: Any = time.perf_counter
               ) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return times


def child(engine: str, threads: int, batch: int, warmup: int, repeat: int,
          inference: bool = False, clock: str = "wall") -> dict:
    import minidl
    from minidl import optim
    from minidl.models import resnet20
    from minidl.nn import functional as F

    minidl.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    model = resnet20()
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
        twin = torch_resnet20(torch)
        load_minidl_weights(torch, twin, model)
        opt = torch.optim.SGD(
            twin.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        x, y = torch.from_numpy(images), torch.from_numpy(labels)

        def step() -> None:
            if inference:
                with torch.no_grad():
                    twin(x)
                return
            opt.zero_grad()
            torch.nn.functional.cross_entropy(twin(x), y).backward()
            opt.step()

        if inference:
            twin.eval()

        version = torch.__version__
    else:
        minidl.set_num_threads(threads)
        minidl.threads.tune_malloc()  # as minidl-train does: freed activations are reused
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x, y = minidl.tensor(images), minidl.tensor(labels)
        if inference:
            model.eval()
            infer = minidl.compile(model, example_inputs=(x,)) if engine == "minidl-compiled" \
                else None

            def step() -> None:
                if infer is not None:
                    infer(x)
                    return
                with minidl.no_grad():
                    model(x)
        elif engine == "minidl-compiled":
            compiled = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))

            def step() -> None:
                opt.zero_grad()
                compiled(x, y)
                opt.step()
        else:

            def step() -> None:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()

        version = minidl.__version__ if hasattr(minidl, "__version__") else "?"
    times = time_steps(step, warmup, repeat,
                       time.process_time if clock == "cpu" else time.perf_counter)
    return {
        "engine": engine,
        "version": version,
        "best": min(times),
        "median": statistics.median(times),
    }


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--inference", action="store_true", help="time the eval-mode forward")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.batch, args.warmup, args.repeat,
                               args.inference, args.clock)))
        return
    what = "inference (eval forward)" if args.inference else "training step"
    print(
        f"ResNet-20 {what}, batch {args.batch}, {args.threads} threads, best/median of "
        f"{args.repeat} after {args.warmup} warm-up steps, {args.clock} clock"
    )
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"load average before: {load()}"
    )
    results = {}
    for engine in args.engines.split(","):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.resnet20",
            "--child",
            engine,
            "--threads",
            str(args.threads),
            "--batch",
            str(args.batch),
            "--warmup",
            str(args.warmup),
            "--repeat",
            str(args.repeat),
            "--clock",
            args.clock,
        ] + (["--inference"] if args.inference else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{engine}: failed\n{run.stderr.strip().splitlines()[-1:]}")
            continue
        results[engine] = json.loads(run.stdout.strip().splitlines()[-1])
    ref = results.get("torch")
    print(
        f"{'engine':<18}{'best ms':>10}{'median ms':>11}{'torch/engine (best)':>21}{'(median)':>10}"
    )
    for engine, r in results.items():
        ratio = f"{ref['best'] / r['best']:.2f}x" if ref else "-"
        ratio_med = f"{ref['median'] / r['median']:.2f}x" if ref else "-"
        print(
            f"{engine:<18}{1e3 * r['best']:>10.1f}{1e3 * r['median']:>11.1f}{ratio:>21}"
            f"{ratio_med:>10}"
        )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
