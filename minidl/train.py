"""Train LeNet on MNIST, or ResNet-20 on CIFAR-10 or padded MNIST: the `minidl-train` command
and examples/train_lenet.py.

    minidl-train --epochs 5                              # LeNet-5 on MNIST
    minidl-train --model resnet20 --dataset cifar10      # ResNet-20 on CIFAR-10
    minidl-train --model resnet20 --dataset mnist        # ResNet-20 on MNIST padded to 32x32

Default recipes (every option overrides its part; all use SGD with Nesterov momentum 0.9, a
cosine decay of the learning rate to 0 over the run, per step, and seed 0):
- lenet5 / caffe on MNIST: 5 epochs, batch 64, lr 0.05, weight decay 5e-4, inputs normalized
  with MNIST's mean/std (>= 99% test accuracy in 5 epochs, see README).
- resnet20 on MNIST: 3 epochs, batch 128, lr 0.1, weight decay 5e-4; digits zero-padded from
  28x28 to 32x32 (one input channel), normalized with MNIST's mean/std, no augmentation.
- resnet20 on CIFAR-10: 30 epochs, batch 128, lr 0.1, weight decay 5e-4; training images
  randomly cropped to 32x32 from a 4-pixel zero padding and flipped horizontally with
  probability 0.5 (per image, from the seeded generator), every image normalized with
  CIFAR-10's per-channel mean/std.
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
from minidl.data import transforms as T
from minidl.data.mnist import ChecksumError, DownloadError
from minidl.models import LeNet5, LeNetCaffe, resnet20
from minidl.nn import functional as F
from minidl.nn.parallel import DistributedDataParallel

# name -> constructor taking the number of input channels (LeNets take 1)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lambda channels=1: LeNet5(),
    "caffe": lambda channels=1: LeNetCaffe(),
    "resnet20": lambda channels=3: resnet20(in_channels=channels),
}
# Per-model defaults of the options left unset on the command line (see the module docstring).
RECIPES: dict[str, dict[str, Any]] = {
    "lenet5": {"epochs": 5, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4},
    "caffe": {"epochs": 5, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4},
    "resnet20": {"epochs": 3, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4},
}
RESNET_CIFAR_EPOCHS = 30


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minidl-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist",
                   help="cifar10 needs --model resnet20; mnist with resnet20 is padded to 32x32")
    p.add_argument("--epochs", type=int, default=None,
                   help="default: 5 (LeNet), 3 (resnet20 on mnist), 30 (resnet20 on cifar10)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 LeNet, 128 ResNet")
    p.add_argument("--lr", type=float, default=None, help="default: 0.05 LeNet, 0.1 ResNet")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=None, help="default: 5e-4")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None,
                   help="folder holding mnist/ or cifar-10-batches-bin/ (default: search)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing dataset files (hash-checked) into the data root")
    p.add_argument("--checkpoint", default=None,
                   help="written after every epoch, at the end and on Ctrl-C (default: "
                        "checkpoints/lenet.ckpt, checkpoints/resnet20-<dataset>.ckpt)")
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


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset with the model's recipe; raises ValueError for a model and
    dataset that do not fit together."""
    if args.dataset == "cifar10" and args.model != "resnet20":
        raise ValueError(
            f"--model {args.model} takes 28x28 single-channel digits; use --model resnet20 "
            "for cifar10"
        )
    recipe = dict(RECIPES[args.model])
    if args.model == "resnet20" and args.dataset == "cifar10":
        recipe["epochs"] = RESNET_CIFAR_EPOCHS
    for key, value in recipe.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.checkpoint is None:
        args.checkpoint = ("checkpoints/lenet.ckpt" if args.model != "resnet20"
                           else f"checkpoints/resnet20-{args.dataset}.ckpt")
    return args


def load_data(args: argparse.Namespace) -> tuple[Any, Any, Callable, Callable, int]:
    """(train set, test set, train transform, test transform, input channels)."""
    if args.dataset == "cifar10":
        from minidl.data import CIFAR10

        train_set: Any = CIFAR10(args.data_root, train=True, download=args.download)
        test_set = CIFAR10(args.data_root, train=False, download=args.download)
        normalize = T.Normalize(CIFAR10.MEAN, CIFAR10.STD)
        train_tf: Callable = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                        T.ToTensor(), normalize])
        return train_set, test_set, train_tf, T.Compose([T.ToTensor(), normalize]), 3
    train_set = MNIST(args.data_root, train=True, download=args.download)
    test_set = MNIST(args.data_root, train=False, download=args.download)
    tf: Callable = MNIST.normalize
    if args.model == "resnet20":
        # Zero (background) padding before normalizing: the border looks like the background.
        tf = T.Compose([T.Pad(2), MNIST.normalize])
    return train_set, test_set, tf, tf, 1


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_recipe(args)
    except ValueError as e:
        parser.error(str(e))
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

    train_set, test_set, train_tf, test_tf, channels = load_data(args)
    if args.limit is not None:
        train_set = TensorDataset(train_set.data.numpy()[: args.limit, None],
                                  train_set.targets.numpy()[: args.limit])
    if args.distributed:
        # Reproducible mode: rank r takes the r-th contiguous slice of every global batch.
        sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed,
                                     batch_size=args.batch_size if args.reproducible else None)
        train_loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler,
                                  transform=train_tf)
    else:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  seed=args.seed, transform=train_tf)
    test_loader = DataLoader(test_set, batch_size=1000, transform=test_tf)

    model = MODELS[args.model](channels)
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
        f"parameters, {cfg['num_threads']} threads, {cfg['isa']}, "
        f"thread pool {'on' if cfg['thread_pool'] else 'OFF'}")
    log(f"{args.dataset}: train {len(train_set):,} images, test {len(test_set):,}, "
        f"batch {args.batch_size}, {args.optimizer} lr {args.lr}, {args.epochs} epochs")
    if args.distributed:
        mode = "reproducible" if args.reproducible else "bucketed allreduce"
        log(f"distributed: {world} ranks x {local_batch} images per step, {mode}, "
            f"{cfg['num_threads']} threads per rank")

    net: Any = model
    if args.distributed:
        # Broadcasts rank 0's weights and checks every rank holds the same model.
        net = DistributedDataParallel(model, reproducible=args.reproducible)
    train_step = make_train_step(args, net, model, train_set, local_batch, test_tf)
    if args.eager:
        evaluator: Callable = model
    else:
        test_images, _ = next(iter(DataLoader(test_set, batch_size=1000, transform=test_tf)))
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
                    batch: int, transform: Callable) -> Callable:
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
                                              transform=transform)))
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
