"""Train LeNet on MNIST: the `minidl-train` command and examples/train_lenet.py.

    minidl-train --epochs 5            # or: python examples/train_lenet.py --epochs 5

Default recipe (reaches >= 99% test accuracy in 5 epochs, see README): LeNet-5, batch 64,
SGD with momentum 0.9 and Nesterov, lr 0.05 with cosine decay to 0 over the run, weight decay
5e-4, inputs normalized with MNIST's mean/std, seed 0.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

import numpy as np

import minidl
from minidl import distributed as dist
from minidl import nn, optim
from minidl.data import MNIST, DataLoader, DistributedSampler, TensorDataset
from minidl.data.mnist import ChecksumError, DownloadError
from minidl.models import LeNet5, LeNetCaffe
from minidl.nn import functional as F
from minidl.nn.parallel import DistributedDataParallel

MODELS: dict[str, Callable[[], nn.Module]] = {"lenet5": LeNet5, "caffe": LeNetCaffe}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minidl-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="folder holding mnist/ (default: search)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing MNIST files (verified by SHA-256) into the data root")
    p.add_argument("--checkpoint", default="checkpoints/lenet.ckpt",
                   help="written after every epoch, at the end and on Ctrl-C")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--plot", default=None,
                   help="PNG of loss/accuracy curves (default: next to the checkpoint; needs "
                        "matplotlib)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N images only (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no per-batch progress bar")
    p.add_argument("--eager", action="store_true",
                   help="run the eager graph (recorded per op) instead of the compiled one")
    p.add_argument("--export-onnx", default=None, metavar="PATH",
                   help="write the trained model as an ONNX file (dynamic batch; needs onnx)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of `mpiexec -n N minidl-train ...`: "
                        "--batch-size is the global batch, split over the ranks (needs mpi4py)")
    p.add_argument("--reproducible", action="store_true",
                   help="with --distributed: bitwise the same weights for any number of ranks "
                        "(gradients summed in a fixed chunk order; slower)")
    return p


class Progress:
    """Per-epoch progress bar: tqdm when installed, else a one-line text bar on stderr."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.count = 0
        self.bar = None
        self.last_draw = 0.0
        # A redrawn bar only makes sense on a terminal; logs get the per-epoch line alone.
        self.enabled = enabled and sys.stderr.isatty()
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=desc, leave=False, unit="batch")

    def update(self, postfix: dict[str, str]) -> None:
        self.count += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.2 and self.count < self.total:
            return
        self.last_draw = now
        width = 30
        filled = int(width * self.count / max(self.total, 1))
        fields = " ".join(f"{k} {v}" for k, v in postfix.items())
        line = f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} {fields}"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


def evaluate(model: Callable, loader: Iterable) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` over `loader`, in eval mode without recording.
    `model` is a Module or a compiled inference graph of one."""
    module = model.model if isinstance(model, minidl.static.Compiled) else model
    module.eval()
    total_loss, correct, count = 0.0, 0, 0
    with minidl.no_grad():
        for images, labels in loader:
            logits = model(images)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.data.argmax(axis=1) == labels.data).sum())
            count += len(labels)
    module.train()
    return total_loss / count, correct / count


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> optim.Optimizer:
    if args.optimizer == "adam":
        return optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                     weight_decay=args.weight_decay, nesterov=args.momentum > 0)


def save_checkpoint(path: Path, model, optimizer, scheduler, loader, epoch: int,
                    history: list[dict], args: argparse.Namespace, interrupted: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    minidl.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(),
            "rng": minidl.get_rng_state(),
            "epoch": epoch,
            "interrupted": interrupted,
            "history": history,
            "args": {k: v for k, v in vars(args).items() if k not in ("resume",)},
        },
        path,
    )


def plot_history(history: list[dict], path: Path) -> bool:
    """Write loss and accuracy curves; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [100 * h["test_acc"] for h in history], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    """The `minidl-train` command."""
    try:
        run(argv)
    except (FileNotFoundError, ChecksumError, DownloadError) as e:
        sys.exit(f"minidl-train: {e}")


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the training with command-line arguments; returns the last epoch's metrics (also
    printed), or {"interrupted": True} after Ctrl-C."""
    args = build_parser().parse_args(argv)
    # Keep freed blocks in the heap (minidl.threads.tune_malloc; import minidl leaves it).
    minidl.threads.tune_malloc()
    if args.reproducible and not args.distributed:
        raise SystemExit("minidl-train: --reproducible needs --distributed")
    rank, world = 0, 1
    if args.distributed:
        # Before --threads: init gives each rank cores / ranks threads unless told otherwise.
        dist.init_process_group(backend="mpi")
        rank, world = dist.get_rank(), dist.get_world_size()
        if args.batch_size % world:
            raise SystemExit(f"minidl-train: --batch-size {args.batch_size} must be divisible "
                             f"by the {world} ranks")
    log = print if rank == 0 else _quiet
    if args.threads is not None:
        minidl.set_num_threads(args.threads)
    minidl.manual_seed(args.seed)
    local_batch = args.batch_size // world

    train_set: Any = MNIST(args.data_root, train=True, download=args.download)
    test_set = MNIST(args.data_root, train=False, download=args.download)
    if args.limit is not None:
        train_set = TensorDataset(train_set.data.numpy()[: args.limit, None],
                                  train_set.targets.numpy()[: args.limit])
    if args.distributed:
        # Reproducible mode: rank r takes the r-th contiguous slice of every global batch.
        sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed,
                                     batch_size=args.batch_size if args.reproducible else None)
        train_loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler,
                                  transform=MNIST.normalize)
    else:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  seed=args.seed, transform=MNIST.normalize)
    test_loader = DataLoader(test_set, batch_size=1000, transform=MNIST.normalize)

    model = MODELS[args.model]()
    optimizer = make_optimizer(args, model)
    steps = args.epochs * len(train_loader)
    scheduler = optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    checkpoint = Path(args.checkpoint)
    history: list[dict] = []
    start_epoch = 0
    if args.resume:
        state = minidl.load(checkpoint)
        saved_world = state["args"].get("world_size", 1)
        if saved_world != world:
            raise SystemExit(f"minidl-train: {checkpoint} was written by a run on {saved_world} "
                             f"process(es); resume it with the same number (this run: {world})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train_loader.load_state_dict(state["loader"])
        minidl.set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        log(f"resumed from {checkpoint} at epoch {start_epoch + 1}"
            + (" (mid-epoch)" if state["interrupted"] else ""))
    args.world_size = world

    cfg = minidl.config()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"minidl {cfg['version']}: {args.model}, {n_params:,} "
        f"parameters, {cfg['num_threads']} threads, {cfg['isa']}, OpenMP {cfg['openmp']}")
    log(f"train {len(train_set):,} images, test {len(test_set):,}, batch {args.batch_size}, "
        f"{args.optimizer} lr {args.lr}, {args.epochs} epochs")
    if args.distributed:
        mode = "reproducible" if args.reproducible else "bucketed allreduce"
        log(f"distributed: {world} ranks x {local_batch} images per step, {mode}, "
            f"{cfg['num_threads']} threads per rank")

    net: Any = model
    if args.distributed:
        # Broadcasts rank 0's weights and checks every rank holds the same model.
        net = DistributedDataParallel(model, reproducible=args.reproducible)
    train_step = make_train_step(args, net, model, train_set, local_batch)
    if args.eager:
        evaluator: Callable = model
    else:
        test_images, _ = next(iter(DataLoader(test_set, batch_size=1000,
                                              transform=MNIST.normalize)))
        evaluator = minidl.compile(model, example_inputs=(test_images,))

    # Ctrl-C: finish the current batch, save, then exit.
    stop = {"requested": False}
    previous_handler = signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
    try:
        for epoch in range(start_epoch, args.epochs):
            model.train()
            progress = Progress(len(train_loader), f"epoch {epoch + 1}/{args.epochs}",
                                enabled=not args.no_progress and rank == 0)
            seen = correct = 0
            loss_sum = 0.0
            t0 = time.perf_counter()
            for images, labels in train_loader:
                optimizer.zero_grad()
                loss, logits = train_step(images, labels)
                optimizer.step()
                scheduler.step()
                n = len(labels)
                seen += n
                loss_sum += loss.item() * n
                correct += int((logits.data.argmax(axis=1) == labels.data).sum())
                progress.update({
                    "loss": f"{loss_sum / seen:.4f}",
                    "acc": f"{100 * correct / seen:.2f}%",
                    "img/s": f"{seen / (time.perf_counter() - t0):,.0f}",
                })
                if args.distributed:
                    # Every rank stops after the same batch (mpiexec passes Ctrl-C to all).
                    flag = np.array([stop["requested"]], dtype=np.int64)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stop["requested"] = bool(flag[0])
                if stop["requested"]:
                    break
            progress.close()
            if args.distributed:
                totals = np.array([loss_sum, correct, seen], dtype=np.float64)
                dist.all_reduce(totals)
                loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
            if stop["requested"]:
                if rank == 0:
                    save_checkpoint(checkpoint, model, optimizer, scheduler, train_loader, epoch,
                                    history, args, interrupted=True)
                log(f"\ninterrupted: checkpoint saved to {checkpoint} "
                      f"(resume with --resume --checkpoint {checkpoint})")
                _leave(args)
                return {"interrupted": True}
            epoch_time = time.perf_counter() - t0
            if rank != 0:
                # Evaluation, logging and checkpoints are rank 0's; the model is the same.
                history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                                "train_acc": correct / seen})
                continue
            test_loss, test_acc = evaluate(evaluator, test_loader)
            record = {
                "epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                "test_loss": test_loss, "test_acc": test_acc, "epoch_seconds": epoch_time,
                "images_per_second": seen / epoch_time,
            }
            history.append(record)
            print(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} "
                  f"acc {100 * record['train_acc']:.2f}% | test loss {test_loss:.4f} "
                  f"acc {100 * test_acc:.2f}% | {epoch_time:.2f} s, "
                  f"{record['images_per_second']:,.0f} images/s")
            save_checkpoint(checkpoint, model, optimizer, scheduler, train_loader, epoch + 1,
                            history, args, interrupted=False)
    finally:
        signal.signal(signal.SIGINT, previous_handler)

    if rank != 0:
        _leave(args)
        return history[-1] if history else {}
    print(f"checkpoint: {checkpoint}")
    if args.export_onnx:
        from minidl import onnx as minidl_onnx

        images, _ = next(iter(test_loader))
        minidl_onnx.export(model, (images[:1],), args.export_onnx)
        print(f"onnx: {args.export_onnx}")
    plot_path = Path(args.plot) if args.plot else checkpoint.with_suffix(".png")
    if history and plot_history(history, plot_path):
        print(f"curves: {plot_path}")
    _leave(args)
    return history[-1] if history else {}


def make_train_step(args: argparse.Namespace, net: Any, model: nn.Module, train_set: Any,
                    batch: int) -> Callable:
    """train_step(images, labels) -> (loss, logits): forward and backward of one step, eager
    or compiled; with --reproducible, DDP's chunked backward over chunks of the batch."""
    chunk = net.chunk_size if args.reproducible else batch
    if args.eager:
        def step(images, labels):
            logits = (model if args.reproducible else net)(images)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            step.logits.append(logits.data)
            return loss
    else:
        images, labels = next(iter(DataLoader(train_set, batch_size=chunk,
                                              transform=MNIST.normalize)))
        compiled = minidl.compile(model if args.reproducible else net, F.cross_entropy,
                                  example_inputs=(images, labels))

        def step(images, labels):
            loss = compiled(images, labels)
            step.logits.append(compiled.output.data)
            return loss

    def train_step(images, labels):
        step.logits = []
        if args.reproducible:
            loss = net.chunked_backward(step, images, labels)
        else:
            loss = step(images, labels)
        return loss, minidl.tensor(np.concatenate(step.logits))

    return train_step


def _quiet(*args: Any, **kwargs: Any) -> None:
    """print() of ranks other than 0."""


def _leave(args: argparse.Namespace) -> None:
    if args.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
