"""Data-parallel training (LeNet-5, LeNet-Caffe, ResNet-20): 1 process x 2 threads against 2
processes x 1 thread, where the time of a step goes, and an alpha-beta model of ring allreduce
for larger clusters.

    python -m benchmarks.distributed                 # all runs, markdown on stdout
    python -m benchmarks.distributed --steps 100 --repeats 5

Each configuration runs in its own processes (`mpiexec -n N python -m benchmarks.distributed
--child ...`), with synthetic batches, compiled training steps, SGD momentum 0.9: LeNet-5 and
LeNet-Caffe (a 7x larger gradient) on MNIST-shaped images at global batch 64, ResNet-20
(BatchNorm, 1.1 MB of gradient in two buckets) on CIFAR-shaped images at global batch 16 to
keep it cheap. A child times `steps` steps after WARMUP untimed ones, `repeats` times, and
reports the best repeat's mean step time (max over ranks), the time DDP spent waiting for its
allreduces per step and the bucket sizes. ResNet-20 has no reproducible-mode rows: that mode
refuses BatchNorm (its batch statistics mix the samples).

Then allreduce itself is timed on 1, 2 and 4 processes for message sizes from 8 B to 4 MB,
each process count only where the machine has a core per process (oversubscribed ranks
measure the scheduler, not the transfer: 5-25 ms for 8 B with 4 ranks on 2 cores); alpha
(latency) and beta (seconds per byte) are fitted on the 2-process points by least squares on
relative error (small and large messages weigh alike), alpha >= 0, and the ring model's
prediction is printed beside every measured point; the points that cannot be measured on this
machine are named.

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
# Global batch per model: ResNet-20 (41 MFLOP per image forward) at 16 keeps a step near LeNet's.
BATCH = {"lenet5": 64, "caffe": 64, "resnet20": 16}
SIZES = [8, 1024, 16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024]


def _child_train(args: argparse.Namespace) -> None:
    import minidl
    from minidl import optim
    from minidl.models import LeNet5, LeNetCaffe, resnet20
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
    model = {"lenet5": LeNet5, "caffe": LeNetCaffe, "resnet20": resnet20}[args.model]()
    net = model
    if distributed:
        net = DistributedDataParallel(model, reproducible=args.mode == "reproducible",
                                      first_bucket_mb=min(1.0, args.bucket_mb),
                                      bucket_mb=args.bucket_mb)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    local = BATCH[args.model] // world
    rng = np.random.default_rng(rank)
    image = (3, 32, 32) if args.model == "resnet20" else (1, 28, 28)
    x = minidl.tensor(rng.standard_normal((local, *image)).astype(np.float32))
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


def fit_alpha_beta(p: int, sizes: list[int], times: list[float]) -> tuple[float, float]:
    """(alpha, beta) >= 0 of ring_allreduce(p, n) minimizing the relative error over the
    measured (size, time) points: plain least squares lets the large messages decide alone and
    gave a negative alpha on a busy machine."""
    n = np.array(sizes, dtype=np.float64)
    t = np.array(times, dtype=np.float64)
    design = np.stack([np.full_like(n, 2.0 * (p - 1)), 2.0 * (p - 1) / p * n], axis=1) / t[:, None]
    alpha, beta = np.linalg.lstsq(design, np.ones_like(t), rcond=None)[0]
    if alpha < 0:  # refit beta alone with alpha = 0
        alpha = 0.0
        col = design[:, 1]
        beta = float(col @ np.ones_like(t) / (col @ col))
    return float(alpha), float(max(beta, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=["train", "allreduce"])
    parser.add_argument("--mode", choices=["single", "fast", "reproducible"], default="fast")
    parser.add_argument("--model", choices=sorted(BATCH), default="lenet5")
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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"cores available to this process: {cores}")
    print()
    print("| model | global batch | configuration | step (ms) | allreduce wait (ms/step) "
          "| buckets (bytes) |")
    print("|---|---|---|---|---|---|")
    points = {}
    for model in ("lenet5", "caffe", "resnet20"):
        m = ["--model", model]
        runs = [
            ("1 process x 2 threads", me + ["--child", "train", "--mode", "single",
                                            "--threads", "2"] + m),
            ("1 process x 1 thread", me + ["--child", "train", "--mode", "single",
                                           "--threads", "1"] + m),
            ("2 processes x 1 thread", [mpiexec, "-n", "2"] + me + [
                "--child", "train", "--mode", "fast"] + m),
            ("2 processes x 1 thread, 64 KB buckets", [mpiexec, "-n", "2"] + me + [
                "--child", "train", "--mode", "fast", "--bucket-mb", "0.0625"] + m),
        ]
        if model != "resnet20":  # reproducible mode refuses BatchNorm
            runs += [
                ("2 processes x 1 thread, reproducible", [mpiexec, "-n", "2"] + me + [
                    "--child", "train", "--mode", "reproducible"] + m),
                ("1 process x 1 thread, reproducible", [mpiexec, "-n", "1"] + me + [
                    "--child", "train", "--mode", "reproducible", "--threads", "1"] + m),
            ]
        for name, command in runs:
            r = _run(command + timing)
            points[(model, name)] = r
            print(f"| {model} | {BATCH[model]} | {name} | {1e3 * r['step']:.2f} | "
                  f"{1e3 * r['wait']:.2f} | {r['buckets'] or '-'} |", flush=True)
    print()
    counts = [p for p in (1, 2, 4) if p <= cores]
    measured = {p: {int(k): v for k, v in _run([mpiexec, "-n", str(p)] + me
                                                + ["--child", "allreduce"]).items()}
                for p in counts}
    if 2 not in measured:
        sys.exit(f"benchmarks.distributed: the alpha-beta fit needs 2 cores, this machine has "
                 f"{cores}")
    alpha, beta = fit_alpha_beta(2, SIZES, [measured[2][s] for s in SIZES])
    print(f"alpha-beta fit on 2 processes (shared memory, relative least squares): alpha = "
          f"{1e6 * alpha:.1f} us, beta = {1e9 * beta:.3f} ns/byte ({8 / beta / 1e9:.1f} Gb/s)")
    print()
    header = ["bytes"] + [f"{p} proc{'s' * (p > 1)} measured (us) | {p} model" for p in (1, 2, 4)]
    print("| " + " | ".join(header) + " |")
    print("|---" * (1 + 2 * 3) + "|")
    for size in SIZES:
        cells = [f"{size:,}"]
        for p in (1, 2, 4):
            got = f"{1e6 * measured[p][size]:.1f}" if p in measured else "not measured"
            cells += [got, f"{1e6 * ring_allreduce(p, size, alpha, beta):.1f}"]
        print("| " + " | ".join(cells) + " |")
    missing = [p for p in (1, 2, 4) if p not in measured]
    if missing:
        print()
        print(f"Not measurable here: {', '.join(f'{p} processes' for p in missing)} (needs one "
              f"free core per process; this machine gives this process {cores}). The model's "
              f"prediction for them is printed unchecked.")
    print()
    net_alpha = 10e-6
    print(f"Predicted step time (ms), weak scaling at the global batch above per machine, "
          f"compute = the measured 1 process x 2 threads step, ring allreduce with alpha = "
          f"{1e6 * net_alpha:.0f} us, no overlap:")
    print()
    print("| model | gradient | machines | 10 Gb/s | 25 Gb/s | 100 Gb/s |")
    print("|---|---|---|---|---|---|")
    for model in ("lenet5", "caffe", "resnet20"):
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
