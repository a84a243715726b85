"""LeNet-5 training on MNIST: minidl beside PyTorch CPU, in one run, with one recipe.

    python -m benchmarks.lenet                           # a full epoch per engine and thread count
    python -m benchmarks.lenet --epochs-fraction 0.25    # a quarter epoch each, extrapolated
    python -m benchmarks.lenet --threads 2 --no-torch --profile-steps 50

The recipe is minidl-train's (minidl/train.py): LeNet-5, batch 64, SGD momentum 0.9 with
Nesterov, lr 0.05 with cosine decay over the epoch, weight decay 5e-4, MNIST-normalized inputs
from the same shuffled DataLoader. PyTorch (when importable) starts from minidl's initial
weights and sees the same batches, so both runs compute the same function and their final
losses can be compared. For each thread count it prints epoch seconds, images/s and the ratio
to PyTorch, for minidl eager mode and, when minidl.compile exists, compiled mode; then the
inference time over the 10,000 test images at batch 1000 and the latency for one image; then
where the time of one eager training step goes (data, ops, graph bookkeeping, optimizer) and a
per-op table.

Timing notes: the first WARMUP steps of each run are not timed (first-call allocations and
tracing); with --epochs-fraction below 1 the epoch time is extrapolated from the steps run,
and the output says so. The machine is shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import minidl
from minidl import graph, optim
from minidl.bench import torch_models
from minidl.data import MNIST, DataLoader
from minidl.models import LeNet5
from minidl.nn import functional as F

WARMUP = 5
INFERENCE_BATCH = 1000


@dataclass
class Run:
    """One timed training run: the images trained on while timed, their seconds, the size of
    an epoch and the final training loss."""

    engine: str
    threads: int
    images: int
    seconds: float
    epoch_images: int
    final_loss: float

    @property
    def epoch_seconds(self) -> float:
        return self.seconds * self.epoch_images / self.images

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


# -- data -------------------------------------------------------------------------------------
def make_loader(train_set: MNIST, batch_size: int, seed: int = 0) -> DataLoader:
    """minidl-train's training loader. A fresh one per run, so every run (engine, thread
    count) sees the same batches in the same order."""
    return DataLoader(
        train_set, batch_size=batch_size, shuffle=True, seed=seed, transform=MNIST.normalize
    )


def batches(loader: DataLoader, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`steps` batches as numpy arrays, continuing into the next epoch when needed."""
    count = 0
    while True:
        for images, labels in loader:
            yield images.data, labels.data
            count += 1
            if count == steps:
                return


def cosine(total_steps: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


# -- minidl -----------------------------------------------------------------------------------
def minidl_model(seed: int = 0) -> LeNet5:
    minidl.manual_seed(seed)
    return LeNet5()


def minidl_optimizer(model: LeNet5, total_steps: int) -> tuple[Any, Any]:
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    return opt, optim.lr_scheduler.LambdaLR(opt, cosine(total_steps))


def train_minidl(loader: DataLoader, steps: int, threads: int, compiled: bool) -> Run:
    """Train a fresh LeNet-5 for WARMUP + `steps` batches; the last `steps` are timed."""
    minidl.set_num_threads(threads)
    model = minidl_model()
    opt, sched = minidl_optimizer(model, WARMUP + steps)
    step_fn: Any = None
    loss = None
    start = 0.0
    images = 0
    for k, (x, y) in enumerate(batches(loader, WARMUP + steps)):
        if k == WARMUP:
            start = time.perf_counter()
        images += len(y) if k >= WARMUP else 0
        xt, yt = minidl.from_numpy(x), minidl.from_numpy(y)
        opt.zero_grad()
        if compiled:
            if step_fn is None:
                step_fn = minidl.compile(model, F.cross_entropy, example_inputs=(xt, yt))
            loss = step_fn(xt, yt)
        else:
            loss = F.cross_entropy(model(xt), yt)
            loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    return Run(
        "minidl compiled" if compiled else "minidl eager",
        threads,
        images,
        seconds,
        len(loader.dataset),
        float(loss.item()),
    )


def best_pass(run: Callable, chunks: list, repeats: int) -> float:
    """Fastest of `repeats` passes of `run` over every chunk, after one warm-up call."""
    run(chunks[0])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in chunks:
            run(x)
        best = min(best, time.perf_counter() - t0)
    return best


def infer_minidl(images: np.ndarray, threads: int, compiled: bool, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds to classify the test set at batch INFERENCE_BATCH."""
    minidl.set_num_threads(threads)
    model = minidl_model().eval()
    chunks = [
        minidl.from_numpy(images[i : i + INFERENCE_BATCH])
        for i in range(0, len(images), INFERENCE_BATCH)
    ]
    run: Callable = model
    if compiled:
        run = minidl.compile(model, example_inputs=(chunks[0],))
    with minidl.no_grad():
        return best_pass(run, chunks, repeats)


def latency_minidl(images: np.ndarray, threads: int, compiled: bool, calls: int = 300) -> float:
    """Median seconds to classify one image (batch 1), over `calls` calls on test images."""
    minidl.set_num_threads(threads)
    model = minidl_model().eval()
    singles = [minidl.from_numpy(images[i : i + 1]) for i in range(calls)]
    run: Callable = model
    if compiled:
        run = minidl.compile(model, example_inputs=(singles[0],))
    times = []
    with minidl.no_grad():
        run(singles[0])
        for x in singles:
            t0 = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# -- PyTorch ----------------------------------------------------------------------------------
def torch_model(torch: Any) -> Any:
    """PyTorch's LeNet-5, initialized with minidl's initial weights (same seed)."""
    state = {k: np.array(v.data) for k, v in minidl_model().state_dict().items()}
    return torch_models.lenet5(torch, state)


def train_torch(torch: Any, loader: DataLoader, steps: int, threads: int) -> Run:
    torch.set_num_threads(threads)
    model = torch_model(torch)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(WARMUP + steps))
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = None
    start = 0.0
    images = 0
    for k, (x, y) in enumerate(batches(loader, WARMUP + steps)):
        if k == WARMUP:
            start = time.perf_counter()
        images += len(y) if k >= WARMUP else 0
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    return Run(
        f"torch {torch.__version__}",
        threads,
        images,
        seconds,
        len(loader.dataset),
        float(loss.item()),
    )


def infer_torch(torch: Any, images: np.ndarray, threads: int, repeats: int = 3) -> float:
    torch.set_num_threads(threads)
    model = torch_model(torch).eval()
    chunks = [
        torch.from_numpy(images[i : i + INFERENCE_BATCH])
        for i in range(0, len(images), INFERENCE_BATCH)
    ]
    with torch.inference_mode():
        return best_pass(model, chunks, repeats)


def latency_torch(torch: Any, images: np.ndarray, threads: int, calls: int = 300) -> float:
    torch.set_num_threads(threads)
    model = torch_model(torch).eval()
    singles = [torch.from_numpy(images[i : i + 1]) for i in range(calls)]
    times = []
    with torch.inference_mode():
        model(singles[0])
        for x in singles:
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# -- where the time of one eager step goes ----------------------------------------------------
class StepTimers:
    """Wall time inside graph.sweep, by wrapping it in this script only (the library is not
    modified); restored on exit. Function.apply cannot be wrapped so: Tensor methods and
    nn.functional bind each op's apply once at import."""

    def __init__(self) -> None:
        self.sweep_s = 0.0

    def __enter__(self) -> StepTimers:  # noqa: PYI034 (a plain class, not subclassed)
        self._sweep = graph.sweep
        original_sweep = self._sweep

        def sweep(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original_sweep(*args, **kwargs)
            finally:
                self.sweep_s += time.perf_counter() - t0

        graph.sweep = sweep
        return self

    def __exit__(self, *exc: object) -> None:
        graph.sweep = self._sweep


def profile_step(loader: DataLoader, threads: int, steps: int) -> str:
    """Where the time of one eager training step goes: phases, bookkeeping and a per-op table,
    for the fastest of `steps` steps (the one least disturbed by other load), with the median
    step time beside it."""
    minidl.set_num_threads(threads)
    model = minidl_model()
    opt, sched = minidl_optimizer(model, WARMUP + steps)
    it = batches(loader, WARMUP + steps)
    for _ in range(WARMUP):
        x, y = next(it)
        opt.zero_grad()
        F.cross_entropy(model(minidl.from_numpy(x)), minidl.from_numpy(y)).backward()
        opt.step()
    records = []
    for _ in range(steps):
        with StepTimers() as timers, minidl.profile() as prof:
            t0 = time.perf_counter()
            x, y = next(it)
            xt, yt = minidl.from_numpy(x), minidl.from_numpy(y)
            t1 = time.perf_counter()
            loss = F.cross_entropy(model(xt), yt)
            t2 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            opt.step()
            sched.step()
            t4 = time.perf_counter()
        parts = {"data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3}
        records.append((t4 - t0, parts, timers, prof))
    walls = sorted(r[0] for r in records)
    wall, parts, timers, prof = min(records, key=lambda r: r[0])
    rows = prof.summary()
    fwd_ops = sum(r["forward_s"] for r in rows)
    bwd_ops = sum(r["backward_s"] for r in rows)

    def line(title: str, seconds: float) -> str:
        return f"  {title:<44}{1e3 * seconds:>8.3f} ms"

    return "\n".join(
        [
            (
                f"one eager training step, batch {loader.batch_size}, {threads} thread(s): "
                f"fastest of {steps} {1e3 * wall:.3f} ms "
                f"(median {1e3 * walls[len(walls) // 2]:.3f} ms); "
                "the fastest:"
            ),
            line("data (loader gather + normalize)", parts["data"]),
            line("forward, total", parts["forward"]),
            line("  in op forward() (kernels, numpy)", fwd_ops),
            line("  outside op forward() (apply, modules, F.*)", parts["forward"] - fwd_ops),
            line("backward, total (zero_grad + sweep)", parts["backward"]),
            line("  in op backward() (kernels, numpy)", bwd_ops),
            line("  sweep bookkeeping (order, sums, grads)", timers.sweep_s - bwd_ops),
            line("optimizer step + lr schedule", parts["optimizer"]),
            "",
            "per op in that step (minidl.profile):",
            prof.table(),
        ]
    )


def profile_compiled(loader: DataLoader, threads: int, repeats: int = 20) -> str:
    """The compiled step's own per-node table (minidl.compile's profile=True), for the fastest
    of `repeats` steps on one batch after warm-up."""
    minidl.set_num_threads(threads)
    model = minidl_model()
    opt, _ = minidl_optimizer(model, WARMUP + repeats)
    x, y = (minidl.from_numpy(a) for a in next(batches(loader, 1)))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    best: list | None = None
    for k in range(WARMUP + repeats):
        opt.zero_grad()
        step(x, y, profile=k >= WARMUP)
        opt.step()
        rows = step.profile_rows
        if k >= WARMUP and (best is None or rows[-1]["elapsed"] < best[-1]["elapsed"]):
            best = rows
    from minidl.profiler import format_table

    return (
        f"one compiled training step (forward + backward, no optimizer), batch "
        f"{loader.batch_size}, {threads} thread(s), fastest of {repeats}:\n" + format_table(best)
    )


# -- command line -----------------------------------------------------------------------------
def thread_counts(spec: str | None) -> list[int]:
    available = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    if spec is None:
        return sorted({1, available})
    counts = [int(s) for s in spec.split(",")]
    if any(n < 1 for n in counts):
        raise SystemExit(f"--threads: expected positive counts, got {spec!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--epochs-fraction",
        type=float,
        default=1.0,
        help="part of an epoch to time per run, extrapolated to a full epoch",
    )
    p.add_argument(
        "--threads",
        default=None,
        help="comma-separated thread counts (default: 1 and all available)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per engine and thread count; the fastest is reported",
    )
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--no-compiled", action="store_true", help="eager mode only")
    p.add_argument(
        "--profile-steps",
        type=int,
        default=50,
        help="eager steps in the per-op profile (0: no profile)",
    )
    p.add_argument(
        "--profile-threads",
        type=int,
        default=None,
        help="threads for the profile (default: the largest of --threads)",
    )
    args = p.parse_args(argv)
    # Keep freed blocks in the heap (minidl.threads.tune_malloc; import minidl leaves it).
    minidl.threads.tune_malloc()
    if not 0 < args.epochs_fraction <= 1:
        raise SystemExit("--epochs-fraction: expected a value in (0, 1]")
    if args.repeat < 1:
        raise SystemExit("--repeat: expected at least 1")

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch not installed: minidl only")
    compiled_modes = [False] + (
        [True] if hasattr(minidl, "compile") and not args.no_compiled else []
    )
    train_set = MNIST(train=True)
    test_images = MNIST.normalize(MNIST(train=False).data.numpy()[:, None])
    steps_per_epoch = len(make_loader(train_set, args.batch_size))
    steps = max(1, round(args.epochs_fraction * steps_per_epoch))
    cfg = minidl.config()
    print(
        f"minidl {cfg['version']} ({cfg['isa']}, thread pool {cfg['thread_pool']}), "
        f"numpy {cfg['numpy']}"
        + (f", torch {torch.__version__}" if torch else "")
    )
    measured = (
        "a full epoch"
        if steps == steps_per_epoch
        else f"{steps} of {steps_per_epoch} steps ({args.epochs_fraction:g} epoch), "
        "EXTRAPOLATED to a full epoch"
    )
    if hasattr(os, "getloadavg"):
        print("load average before the run: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(
        f"LeNet-5, batch {args.batch_size}, SGD nesterov lr 0.05 cosine, wd 5e-4: timed "
        f"{measured} after {WARMUP} warm-up steps, best of {args.repeat}\n"
    )

    header = f"{'threads':>7}  {'engine':<18}{'epoch s':>9}{'images/s':>11}{'vs torch':>10}  loss"
    print(header)
    print("-" * len(header))
    for threads in thread_counts(args.threads):
        # Engines interleaved within each repeat, the fastest repeat of each kept: on a shared
        # machine a burst of load then hits one repeat of every engine, not one engine.
        best: dict[str, Run] = {}
        for _ in range(args.repeat):
            runs = [
                train_minidl(make_loader(train_set, args.batch_size), steps, threads, c)
                for c in compiled_modes
            ]
            if torch is not None:
                runs.append(
                    train_torch(torch, make_loader(train_set, args.batch_size), steps, threads)
                )
            for r in runs:
                if r.engine not in best or r.seconds < best[r.engine].seconds:
                    best[r.engine] = r
        runs = list(best.values())
        base = runs[-1].epoch_seconds if torch is not None else None
        for r in runs:
            ratio = f"{base / r.epoch_seconds:>9.2f}x" if base else f"{'-':>10}"
            print(
                f"{threads:>7}  {r.engine:<18}{r.epoch_seconds:>9.2f}{r.images_per_second:>11,.0f}"
                f"{ratio}  {r.final_loss:.4f}"
            )

    print(f"\ninference, {len(test_images):,} test images at batch {INFERENCE_BATCH} (best of 3):")
    for threads in thread_counts(args.threads):
        cells = []
        for c in compiled_modes:
            seconds = infer_minidl(test_images, threads, c)
            cells.append(f"minidl {'compiled' if c else 'eager'} {seconds:.3f} s")
        if torch is not None:
            cells.append(f"torch {infer_torch(torch, test_images, threads):.3f} s")
        print(f"  {threads} thread(s): " + ", ".join(cells))
    print("inference latency, one image (batch 1), median of 300 calls:")
    for threads in thread_counts(args.threads):
        cells = [
            f"minidl {'compiled' if c else 'eager'} "
            f"{1e6 * latency_minidl(test_images, threads, c):.0f} us"
            for c in compiled_modes
        ]
        if torch is not None:
            cells.append(f"torch {1e6 * latency_torch(torch, test_images, threads):.0f} us")
        print(f"  {threads} thread(s): " + ", ".join(cells))

    if args.profile_steps > 0:
        print()
        threads = args.profile_threads or max(thread_counts(args.threads))
        print(profile_step(make_loader(train_set, args.batch_size), threads, args.profile_steps))
        if True in compiled_modes:
            print()
            print(profile_compiled(make_loader(train_set, args.batch_size), threads))


if __name__ == "__main__":
    main()
