"""Data-parallel LeNet training: 1 process x 2 threads against 2 processes x 1 thread, where
the time of a step goes, and an alpha-beta model of ring allreduce for larger clusters.

    python -m benchmarks.distributed                 # all runs, markdown on stdout
    python -m benchmarks.distributed --steps 100 --repeats 5

Each configuration runs in its own processes (`mpiexec -n N python -m benchmarks.distributed
--child ...`), with synthetic MNIST-shaped batches, compiled training steps of LeNet-5 (or
LeNet-Caffe, a 7x larger gradient) at global batch 64, SGD momentum 0.9. A child times
`steps` steps after WARMUP untimed ones, `repeats` times, and reports the best repeat's mean
step time (max over ranks), the time DDP spent waiting for its allreduces per step and the
bucket sizes. Then allreduce itself is timed on 2 and 4 processes for message sizes from 8 B
to 4 MB; alpha (latency) and beta (seconds per byte) are fitted on the 2-process points and
the ring model predicts the 4-process points, printed beside the measurement.

Cost model (ring allreduce of n bytes on p machines, bandwidth-optimal):
    T_allreduce(p, n) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta
and a data-parallel step with a fixed per-machine batch (weak scaling) takes
    T_step(p) = T_compute + T_allreduce(p, n) - overlap,
with no overlap for LeNet (its whole gradient, 247 KB, fits the first 1 MB bucket, which
starts when backward ends). The network table uses beta = 8 / (link bits per second) and an
assumed alpha of 10 us (MPI over TCP on Ethernet is 10-50 us, over RDMA 1-3 us).

The machine may be shared: compare figures within one run, and read `uptime` printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

WARMUP = 5
SIZES = [8, 1024, 16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024]


def _child_train(args: argparse.Namespace) -> None:
    import minidl
    from minidl import optim
    from minidl.models import LeNet5, LeNetCaffe
    from minidl.nn import functional as F

    distributed = args.mode != "single"
    rank, world = 0, 1
    if distributed:
        import minidl.distributed as dist
        from minidl.nn.parallel import DistributedDataParallel

        dist.init_process_group()
        rank, world = dist.get_rank(), dist.get_world_size()
    minidl.set_num_threads(args.threads)
    minidl.manual_seed(0)
    model = {"lenet5": LeNet5, "caffe": LeNetCaffe}[args.model]()
    net = model
    if distributed:
        net = DistributedDataParallel(model, reproducible=args.mode == "reproducible",
                                      first_bucket_mb=args.bucket_mb, bucket_mb=args.bucket_mb)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    local = 64 // world
    rng = np.random.default_rng(rank)
    x = minidl.tensor(rng.standard_normal((local, 1, 28, 28)).astype(np.float32))
    y = minidl.tensor(rng.integers(0, 10, local))
    if args.mode == "reproducible":
        c = net.chunk_size
        compiled = minidl.compile(model, F.cross_entropy, example_inputs=(x[:c], y[:c]))

        def step():
            net.chunked_backward(compiled, x, y)
    else:
        compiled = minidl.compile(net, F.cross_entropy, example_inputs=(x, y))

        def step():
            compiled(x, y)

    best = None
    for repeat in range(args.repeats):
        for _ in range(WARMUP if repeat == 0 else 0):
            opt.zero_grad()
            step()
            opt.step()
        wait0 = net.stats["wait_seconds"] if distributed else 0.0
        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            opt.zero_grad()
            step()
            opt.step()
        elapsed = (time.perf_counter() - t0) / args.steps
        wait = ((net.stats["wait_seconds"] - wait0) / args.steps) if distributed else 0.0
        if distributed:
            both = np.array([elapsed, wait])
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            elapsed, wait = float(both[0]), float(both[1])
        if best is None or elapsed < best[0]:
            best = (elapsed, wait)
    if rank == 0:
        result = {"step": best[0], "wait": best[1],
                  "buckets": net.bucket_sizes if distributed else [],
                  "grad_bytes": sum(p.data.nbytes for p in model.parameters())}
        print("RESULT " + json.dumps(result), flush=True)
    if distributed:
        dist.destroy_process_group()


def _child_allreduce(args: argparse.Namespace) -> None:
    import minidl.distributed as dist

    dist.init_process_group()
    times = {}
    for size in SIZES:
        buf = np.ones(size // 4, dtype=np.float32)
        reps = max(20, min(2000, int(2e7 // max(size, 1))))
        best = float("inf")
        for _ in range(3):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                dist.all_reduce(buf)
            elapsed = np.array([(time.perf_counter() - t0) / reps])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            best = min(best, float(elapsed[0]))
        times[size] = best
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(times), flush=True)
    dist.destroy_process_group()


def _run(command: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def ring_allreduce(p: int, n: float, alpha: float, beta: float) -> float:
    """Seconds for a ring allreduce of n bytes over p processes."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=["train", "allreduce"])
    parser.add_argument("--mode", choices=["single", "fast", "reproducible"], default="fast")
    parser.add_argument("--model", choices=["lenet5", "caffe"], default="lenet5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child == "train":
        return _child_train(args)
    if args.child == "allreduce":
        return _child_allreduce(args)

    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("benchmarks.distributed: mpiexec not found (pip install '.[mpi]')")
    me = [sys.executable, "-m", "benchmarks.distributed"]
    timing = ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print()
    print("| model | configuration | step (ms) | allreduce wait (ms/step) | buckets (bytes) |")
    print("|---|---|---|---|---|")
    points = {}
    for model in ("lenet5", "caffe"):
        runs = [
            ("1 process x 2 threads", me + ["--child", "train", "--mode", "single",
                                            "--threads", "2", "--model", model]),
            ("1 process x 1 thread", me + ["--child", "train", "--mode", "single",
                                           "--threads", "1", "--model", model]),
            ("2 processes x 1 thread", [mpiexec, "-n", "2"] + me + [
                "--child", "train", "--mode", "fast", "--model", model]),
            ("2 processes x 1 thread, 64 KB buckets", [mpiexec, "-n", "2"] + me + [
                "--child", "train", "--mode", "fast", "--bucket-mb", "0.0625",
                "--model", model]),
            ("2 processes x 1 thread, reproducible", [mpiexec, "-n", "2"] + me + [
                "--child", "train", "--mode", "reproducible", "--model", model]),
            ("1 process x 1 thread, reproducible", [mpiexec, "-n", "1"] + me + [
                "--child", "train", "--mode", "reproducible", "--threads", "1",
                "--model", model]),
        ]
        for name, command in runs:
            r = _run(command + timing)
            points[(model, name)] = r
            print(f"| {model} | {name} | {1e3 * r['step']:.2f} | {1e3 * r['wait']:.2f} | "
                  f"{r['buckets'] or '-'} |", flush=True)
    print()
    measured = {p: {int(k): v for k, v in _run([mpiexec, "-n", str(p)] + me
                                                + ["--child", "allreduce"]).items()}
                for p in (2, 4)}
    sizes = np.array(SIZES, dtype=np.float64)
    # Least squares of T = a * 2(p-1) + b * 2(p-1)/p * n on the 2-process points.
    design = np.stack([np.full_like(sizes, 2.0), sizes], axis=1)
    alpha, beta = np.linalg.lstsq(design, np.array([measured[2][s] for s in SIZES]),
                                  rcond=None)[0]
    print(f"alpha-beta fit on 2 processes (shared memory): alpha = {1e6 * alpha:.1f} us, "
          f"beta = {1e9 * beta:.3f} ns/byte ({8 / beta / 1e9:.1f} Gb/s)")
    print()
    print("| bytes | 2 procs measured (us) | 2 procs model | 4 procs measured (us) "
          "| 4 procs model |")
    print("|---|---|---|---|---|")
    for s in SIZES:
        print(f"| {s:,} | {1e6 * measured[2][s]:.1f} | "
              f"{1e6 * ring_allreduce(2, s, alpha, beta):.1f} | {1e6 * measured[4][s]:.1f} | "
              f"{1e6 * ring_allreduce(4, s, alpha, beta):.1f} |")
    print()
    net_alpha = 10e-6
    print(f"Predicted step time (ms), weak scaling at 64 images per machine, compute = the "
          f"measured 1 process x 2 threads step, ring allreduce with alpha = "
          f"{1e6 * net_alpha:.0f} us, no overlap:")
    print()
    print("| model | gradient | machines | 10 Gb/s | 25 Gb/s | 100 Gb/s |")
    print("|---|---|---|---|---|---|")
    for model in ("lenet5", "caffe"):
        single = points[(model, "1 process x 2 threads")]
        n = single["grad_bytes"]
        for p in (8, 64, 256):
            cells = []
            for gbit in (10, 25, 100):
                comm = ring_allreduce(p, n, net_alpha, 8 / (gbit * 1e9))
                cells.append(f"{1e3 * (single['step'] + comm):.2f} "
                             f"({100 * comm / (single['step'] + comm):.0f}% comm)")
            print(f"| {model} | {n / 1e6:.2f} MB | {p} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
