"""Two minidl setups on a shared machine: short alternating bursts, each tagged with how busy
the rest of the machine was while it ran.

    python -m benchmarks.pool_ab --baseline DIR              # idle, 2 threads, vs another tree
    python -m benchmarks.pool_ab --torch before              # torch in the process vs no torch
    python -m benchmarks.pool_ab --busy --baseline-threads 1 # beside a busy process, 2t vs 1t

On a machine that other jobs use, a figure is only honest when nothing else ran. This keeps
two child processes: "new", this checkout (with --torch, torch in its process as
benchmarks.contention's torch modes say), and "baseline", the --baseline checkout (default:
this one, without torch, with --baseline-threads threads). Each builds the compiled LeNet-5
training step at batch 64 and inference at batch 1 and 1000 once, and the parent asks them in
turn for a burst of calls of one workload. With --busy a CPU-bound process (the benchmark's
own competitor, issue 13's busy case) runs throughout. Around each burst the parent reads
/proc/stat and the children's /proc/PID/stat: `foreign` is the CPU time used by everything
but the child and the busy process, as a fraction of the machine's CPUs. The table gives, per
workload and foreign-load bin, the median over bursts of each setup's median call and the
median ratio new / baseline of bursts taken back to back (a pair is kept in a bin when both of
its bursts fall in it). Read the lowest bin. Issue 13's goals: idle 2-thread time within 3% of
e17d170's (before the pool); beside the busy process, 2 threads within 1.25x of 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.contention import TORCH_MODES, _busy

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("step64", "infer1", "infer1000")
BINS = (0.05, 0.25, 0.5, 1.01)


def _serve(threads: int, torch_mode: str, checkout: str | None) -> None:
    """Child: build the workloads, then answer "name seconds" lines with JSON sample lists."""
    if checkout:
        sys.path.insert(0, checkout)  # its minidl; benchmarks stays this checkout's
    from benchmarks.contention import _minidl_workloads, _samples

    calls, before = _minidl_workloads(torch_mode)
    import minidl

    minidl.set_num_threads(threads)
    print("ready", flush=True)
    for line in sys.stdin:
        name, seconds = line.split()
        print(json.dumps(_samples(calls[name], float(seconds), before)), flush=True)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def _proc_ticks(pid: int) -> int:
    """utime + stime of process pid (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _start(path: str | None, threads: int, torch_mode: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "benchmarks.pool_ab", "--serve", str(threads)]
    proc = subprocess.Popen(
        cmd + ["--torch", torch_mode] + (["--checkout", str(Path(path).resolve())] if path else []),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",  # not the checkout, whose minidl would shadow the baseline's
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _burst(proc: subprocess.Popen, others: list[int], name: str, seconds: float):
    """(median call in seconds, foreign load) of one burst; `others`: pids not foreign."""
    pids = [proc.pid] + others
    busy0, total0 = _cpu_ticks()
    own0 = sum(_proc_ticks(p) for p in pids)
    proc.stdin.write(f"{name} {seconds}\n")
    proc.stdin.flush()
    samples = json.loads(proc.stdout.readline())
    busy1, total1 = _cpu_ticks()
    own1 = sum(_proc_ticks(p) for p in pids)
    foreign = max(0, (busy1 - busy0) - (own1 - own0)) / max(1, total1 - total0)
    return statistics.median(samples), foreign


def _wait_quiet(pids: list[int], limit: float, timeout: float = 60.0) -> None:
    """Wait (up to `timeout` s) for a 0.2 s window in which processes other than `pids` used
    less than `limit` of the machine's CPUs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        busy0, total0 = _cpu_ticks()
        own0 = sum(_proc_ticks(p) for p in pids)
        time.sleep(0.2)
        busy1, total1 = _cpu_ticks()
        own1 = sum(_proc_ticks(p) for p in pids)
        if (busy1 - busy0) - (own1 - own0) < limit * max(1, total1 - total0):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="the other minidl checkout (built)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the new child")
    parser.add_argument("--baseline-threads", type=int, help="(default: --threads)")
    parser.add_argument("--torch", choices=TORCH_MODES, default="none", help="torch in new")
    parser.add_argument("--busy", action="store_true", help="beside a CPU-bound process")
    parser.add_argument("--bursts", type=int, default=40, help="bursts per setup and workload")
    parser.add_argument("--burst", type=float, default=0.3, help="seconds per burst")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--quiet",
        type=float,
        help="before each pair, wait up to 60 s for other processes to use less than this "
        "fraction of the CPUs (0.05: harvest the quiet moments of a shared machine)",
    )
    parser.add_argument("--json", help="write every burst (median s, foreign load) here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkout", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.torch, args.checkout)
        return
    base_threads = args.baseline_threads or args.threads
    new = _start(None, args.threads, args.torch)
    base = _start(args.baseline, base_threads, "none")
    busy = _busy(24 * 3600) if args.busy else None
    others = [busy.pid] if busy else []
    pairs: dict[str, list] = {name: [] for name in args.workloads}
    try:
        for i in range(args.bursts):
            for name in args.workloads:
                if args.quiet is not None:
                    _wait_quiet([new.pid, base.pid] + others, args.quiet)
                # Alternate which setup goes first, so neither always follows the other.
                order = (new, base) if i % 2 == 0 else (base, new)
                out = {p.pid: _burst(p, others, name, args.burst) for p in order}
                pairs[name].append((out[new.pid], out[base.pid]))
    finally:
        if busy:
            busy.kill()
            busy.wait()
        for p in (new, base):
            p.stdin.close()
            p.wait(timeout=60)
    if args.json:
        Path(args.json).write_text(json.dumps(pairs))
    print(
        f"\n{args.bursts} alternating bursts of {args.burst:g} s per setup and workload"
        f"{', beside a busy process' if busy else ''}; new: this checkout, {args.threads}t, "
        f"torch {args.torch}; baseline: {args.baseline or 'this checkout'}, {base_threads}t; "
        f"median call in ms"
    )
    print(f"{'workload':<10} {'foreign':>9} {'pairs':>5} {'new':>9} {'baseline':>9} {'ratio':>7}")
    for name in args.workloads:
        low = 0.0
        for high in BINS:
            kept = [
                (n[0], b[0])
                for n, b in pairs[name]
                if max(n[1], b[1]) < high and min(n[1], b[1]) >= low
            ]
            if kept:
                print(
                    f"{name:<10} {f'{low:.2f}-{min(high, 1):.2f}':>9} {len(kept):>5} "
                    f"{statistics.median(k[0] for k in kept) * 1e3:9.3f} "
                    f"{statistics.median(k[1] for k in kept) * 1e3:9.3f} "
                    f"{statistics.median(k[0] / k[1] for k in kept):7.3f}"
                )
            low = high


if __name__ == "__main__":
    main()
