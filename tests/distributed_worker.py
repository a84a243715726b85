"""Run by tests/test_distributed.py under mpiexec (or plain python for one process): one case
per invocation, results written as .npz files into the output folder given."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

import minidl
import minidl.distributed as dist
from minidl import nn, optim
from minidl.models import LeNet5
from minidl.nn import functional as F
from minidl.nn.parallel import DistributedDataParallel


def synthetic_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, 28, 28)).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64))


def train(args: argparse.Namespace) -> None:
    """LeNet-5, SGD with momentum, args.steps steps at global batch args.batch; the rank's
    contiguous slice of each global batch; final weights and losses to out/<mode>.npz."""
    distributed = args.mode != "single"
    if distributed:
        dist.init_process_group(timeout=args.timeout)
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    minidl.manual_seed(0)
    model = LeNet5()
    if distributed and rank != 0:
        # DDP must replace these with rank 0's values.
        for p in model.parameters():
            p.data[...] = 1.0
    net: nn.Module = model
    if distributed:
        net = DistributedDataParallel(model, reproducible=args.mode == "reproducible",
                                      bucket_mb=args.bucket_mb,
                                      first_bucket_mb=args.first_bucket_mb or args.bucket_mb)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images, labels = synthetic_mnist(args.steps * args.batch)
    local = args.batch // world
    chunk = 8
    if args.mode == "reproducible":
        if args.compiled:
            step = minidl.compile(model, F.cross_entropy,
                                  example_inputs=(images[:chunk], labels[:chunk]))
        else:
            def step(x, y):
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss
    elif args.compiled:
        step = minidl.compile(net, F.cross_entropy,
                              example_inputs=(images[:local], labels[:local]))
    else:
        def step(x, y):
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss
    losses = []
    for s in range(args.steps):
        start = s * args.batch + rank * local
        x = minidl.tensor(images[start : start + local])
        y = minidl.tensor(labels[start : start + local])
        opt.zero_grad()
        if args.mode == "reproducible":
            loss = net.chunked_backward(step, x, y)
        else:
            loss = step(x, y)
        opt.step()
        losses.append(loss.item())
        if args.kill_at == s and rank == world - 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.raise_at == s and rank == world - 1:
            raise RuntimeError("injected failure")
        if args.hang_at == s and rank == world - 1:
            time.sleep(3600)
    if rank == 0:
        weights = {n: p.data for n, p in model.named_parameters()}
        name = f"{args.mode}{'_compiled' if args.compiled else ''}_n{world}"
        np.savez(os.path.join(args.out, name + ".npz"), losses=np.array(losses), **weights)
    if distributed:
        if args.mode == "fast":
            print(f"rank {rank} buckets {net.bucket_sizes} stats {net.stats}")
        dist.destroy_process_group()


def collectives(args: argparse.Namespace) -> None:
    dist.init_process_group(timeout=30)
    rank, world = dist.get_rank(), dist.get_world_size()
    t = minidl.tensor(np.full((2, 3), rank + 1.0, dtype=np.float32))
    dist.all_reduce(t)
    a = np.arange(5, dtype=np.int64) * (rank + 1)
    dist.broadcast(a, src=world - 1)
    outs = [np.zeros(3) for _ in range(world)]
    dist.all_gather(outs, np.full(3, float(rank)))
    m = np.array([rank], dtype=np.float64)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    work = dist.all_reduce(np.ones(4), async_op=True)
    work.wait()
    dist.barrier()
    np.savez(os.path.join(args.out, f"collectives_{rank}.npz"), sum=t.data, bcast=a,
             gathered=np.stack(outs), max=m, world=world, threads=minidl.get_num_threads())
    dist.destroy_process_group()


def mismatch(args: argparse.Namespace) -> None:
    dist.init_process_group(timeout=30)
    rank = dist.get_rank()
    try:
        if args.what == "model":
            hidden = 7 if rank == 0 else 8
            model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))
            DistributedDataParallel(model)
        else:
            model = nn.Sequential(nn.Linear(4, 3))
            ddp = DistributedDataParallel(model)
            n = 6 if rank == 0 else 5
            x = minidl.tensor(np.ones((n, 4), dtype=np.float32))
            ddp(x).sum().backward()
    except dist.DistributedError as e:
        print(f"rank {rank} caught: {e}", flush=True)
    dist.destroy_process_group()


def no_sync(args: argparse.Namespace) -> None:
    """Two micro-batches per rank, the first under no_sync: the gradient after the second
    backward is the average over ranks of the local sums; after the first, the local one."""
    dist.init_process_group(timeout=args.timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(7)
    data = rng.standard_normal((world, 2, 5, 4)).astype(np.float32)
    minidl.manual_seed(1)
    model = nn.Linear(4, 3)
    ddp = DistributedDataParallel(model)
    with ddp.no_sync():
        ddp(minidl.tensor(data[rank, 0])).sum().backward()
    local_first = model.weight.grad.data.copy()
    ddp(minidl.tensor(data[rank, 1])).sum().backward()
    reference = nn.Linear(4, 3)
    reference.load_state_dict(model.state_dict())
    for r in range(world):
        for k in range(2):
            reference(minidl.tensor(data[r, k])).sum().backward()
    one = nn.Linear(4, 3)
    one.load_state_dict(model.state_dict())
    one(minidl.tensor(data[rank, 0])).sum().backward()
    np.savez(os.path.join(args.out, f"nosync_{rank}.npz"), first=local_first,
             first_reference=one.weight.grad.data, synced=model.weight.grad.data,
             reference=reference.weight.grad.data / world)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=["train", "collectives", "mismatch", "no_sync"])
    p.add_argument("--out", default=".")
    p.add_argument("--mode", choices=["single", "fast", "reproducible"], default="fast")
    p.add_argument("--compiled", action="store_true")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--bucket-mb", type=float, default=25.0)
    p.add_argument("--first-bucket-mb", type=float, default=None)
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--raise-at", type=int, default=None)
    p.add_argument("--hang-at", type=int, default=None)
    p.add_argument("--what", default="model")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    {"train": train, "collectives": collectives, "mismatch": mismatch,
     "no_sync": no_sync}[args.case](args)


if __name__ == "__main__":
    sys.exit(main())
