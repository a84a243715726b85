"""minidl-bench's parent: one child process per engine and thread count, samples interleaved.

For each thread count every engine a selected case needs starts in its own child
(minidl.bench.worker). Per case the parent builds the inputs and initial weights once, hands the
same .npz file to every child, has each warm up and calibrate, then takes `rounds` samples
round-robin across the engines (the order rotating each round), so a burst of load from
elsewhere hits every engine alike and each ratio compares figures taken under the same
conditions. A contention case adds a CPU-spinning child, stopped (SIGSTOP) for the idle samples
and running (SIGCONT) for the busy ones, the two interleaved.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minidl
from minidl.bench import machine, timing
from minidl.bench.case import ENGINES, Case

# Seconds a child may take to answer one request (import, setup with warm-up, or a sample)
# before it is considered hung and stopped.
REQUEST_TIMEOUT = 600.0


@dataclass(frozen=True)
class Settings:
    """How hard to measure: untimed warm-up calls, samples per engine, a sample's minimum length."""

    rounds: int
    warmup: int
    min_sample_s: float
    probe_s: float


SETTINGS = {
    "tiny": Settings(rounds=2, warmup=1, min_sample_s=0.001, probe_s=0.005),
    "quick": Settings(rounds=5, warmup=1, min_sample_s=0.02, probe_s=0.02),
    "full": Settings(rounds=15, warmup=3, min_sample_s=0.1, probe_s=0.1),
}


class Worker:
    """One child process serving one engine at one thread count."""

    def __init__(self, engine: str, threads: int) -> None:
        self.engine = engine
        self.threads = threads
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        if engine != "minidl":
            # The reference child imports minidl's Python package (the case table) but runs none
            # of its kernels; its allocator tuning would change the reference's malloc.
            env["MINIDL_MALLOC_TUNING"] = "0"
        root = os.path.dirname(os.path.dirname(os.path.abspath(minidl.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minidl.bench.worker", engine, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=root,  # `-m` puts the cwd first on sys.path: an unbuilt checkout would shadow
        )
        self._buffer = b""
        self.hello: dict | None = None

    def read(self) -> dict:
        """The child's next answer; {"error": ...} if it died or hung."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self.close()
                return {"error": f"{self.engine} child gave no answer in {REQUEST_TIMEOUT:.0f} s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"error": f"{self.engine} child exited: {self.stderr_tail()}"}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, message: dict) -> dict:
        if self.proc.poll() is not None:
            return {"error": f"{self.engine} child exited: {self.stderr_tail()}"}
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"error": f"{self.engine} child exited: {self.stderr_tail()}"}
        return self.read()

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


class Spinner:
    """A child process spinning on one CPU: the busy neighbour of a contention case. Created
    stopped; resume() and pause() switch it between running and stopped."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.pause()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _stats(samples: list[float], number: int, case: Case) -> dict:
    out = timing.summarize(samples)
    out["calls_per_sample"] = number
    out["value_best"] = case.rate(out["min_s"])
    out["value_median"] = case.rate(out["median_s"])
    return out


def measure_case(
    case: Case,
    workers: dict[str, Worker],
    data_path: str,
    size: str,
    settings: Settings,
    tick: Callable[[], None],
) -> dict:
    """Every engine's figures for one case at the workers' thread count:
    {engine: stats | {"absent": why} | {"error": message}} (and "busy" stats for contention)."""
    results: dict[str, dict] = {}
    numbers: dict[str, int] = {}
    for engine in ENGINES:
        if engine not in case.builders:
            continue
        worker = workers.get(engine)
        if worker is None:
            continue
        if "absent" in worker.hello or "error" in worker.hello:
            results[engine] = dict(worker.hello)
            continue
        answer = worker.request(
            {
                "op": "setup",
                "case": case.name,
                "size": size,
                "data": data_path,
                "warmup": settings.warmup,
                "min_sample_s": settings.min_sample_s,
            }
        )
        if "number" in answer:
            numbers[engine] = answer["number"]
        else:
            results[engine] = answer
    phases = ["idle", "busy"] if case.busy else ["idle"]
    samples = {(e, p): [] for e in numbers for p in phases}
    failed: set[str] = set()
    spinner = Spinner() if case.busy else None
    try:
        for r in range(settings.rounds):
            for phase in phases:
                if spinner is not None:
                    spinner.resume() if phase == "busy" else spinner.pause()
                order = list(numbers)
                order = order[r % len(order) :] + order[: r % len(order)] if order else order
                for engine in order:
                    if engine in failed:
                        continue
                    answer = workers[engine].request({"op": "sample"})
                    if "seconds" in answer:
                        samples[engine, phase].append(answer["seconds"])
                    else:
                        failed.add(engine)
                        results[engine] = answer
            tick()
    finally:
        if spinner is not None:
            spinner.close()
    for engine, number in numbers.items():
        if engine in failed:
            continue
        results[engine] = _stats(samples[engine, "idle"], number, case)
        if case.busy:
            results[engine]["busy"] = _stats(samples[engine, "busy"], number, case)
    return results


def ratios(case: Case, results: dict, key: Callable[[dict], dict] = lambda s: s) -> dict:
    """Reference time / minidl time per reference with figures, fastest samples of each
    (> 1: minidl is faster)."""
    ours = results.get("minidl")
    if ours is None or "min_s" not in ours:
        return {}
    return {
        engine: key(stats)["min_s"] / key(ours)["min_s"]
        for engine, stats in results.items()
        if engine != "minidl" and "min_s" in stats
    }


def data_files(cases: list[Case], directory: str) -> dict[str, str]:
    """Build every case's inputs and initial weights once (cases sharing a data function share
    the file): case name -> .npz path."""
    paths: dict[int, str] = {}
    out = {}
    for case in cases:
        key = id(case.data)
        if key not in paths:
            path = os.path.join(directory, f"data{len(paths)}.npz")
            np.savez(path, **case.data())
            paths[key] = path
        out[case.name] = paths[key]
    return out


def run(
    cases: list[Case],
    threads: list[int],
    size: str,
    report: Callable[[dict], None],
    progress: Callable[[int], Callable[[], None]],
    on_start: Callable[[dict], None],
) -> dict:
    """Measure `cases` at every thread count. on_start({"peaks", "engines", "settings"}) is
    called once the peak is measured and the first children have started, report(line) as each
    case completes; progress(total rounds) returns the per-round tick. Returns everything for
    the JSON file."""
    settings = SETTINGS[size]
    # The parent builds data (and exports ONNX models) with minidl: one thread keeps it from
    # starting an OpenMP pool that would sit beside the children.
    minidl.set_num_threads(1)
    engines_needed = [e for e in ENGINES if any(e in c.builders for c in cases)]
    peaks = machine.fma_peaks(settings.probe_s)
    load_before = machine.load_average()
    started = time.time()
    lines = []
    engines: dict[str, dict] = {}
    tick = progress(len(cases) * len(threads) * settings.rounds)
    with tempfile.TemporaryDirectory(prefix="minidl-bench-") as tmp:
        paths = data_files(cases, tmp)
        for n in threads:
            workers = {e: Worker(e, n) for e in engines_needed}
            try:
                for engine, worker in workers.items():
                    worker.hello = worker.read()
                    engines.setdefault(engine, {})[str(n)] = worker.hello
                if n == threads[0]:
                    on_start({"peaks": peaks, "engines": engines, "settings": settings.__dict__})
                for case in cases:
                    results = measure_case(case, workers, paths[case.name], size, settings, tick)
                    line = {
                        "case": case.name,
                        "group": case.group,
                        "unit": case.unit,
                        "work": case.work,
                        "threads": n,
                        "busy": case.busy,
                        "engines": results,
                        "ratios": ratios(case, results),
                    }
                    if case.busy:
                        line["busy_ratios"] = ratios(case, results, lambda s: s["busy"])
                    line["peak_fraction"] = _peak_fraction(case, results, peaks, n)
                    lines.append(line)
                    report(line)
            finally:
                for worker in workers.values():
                    worker.close()
    return {
        "peaks": peaks,
        "engines": engines,
        "results": lines,
        "load": {"before": load_before, "after": machine.load_average()},
        "seconds": time.time() - started,
        "settings": settings.__dict__,
    }


def _peak_fraction(case: Case, results: dict, peaks: dict, threads: int) -> float | None:
    """minidl's best figure over the FMA peak of the ISA it runs on, times the threads used
    (at most the cores available)."""
    ours = results.get("minidl", {})
    if not case.peak or "value_best" not in ours or "absent" in peaks:
        return None
    isa = machine.probe_isa(minidl.config()["isa"])
    single = peaks.get(isa)
    if not single:
        return None
    from minidl.threads import default_num_threads

    return ours["value_best"] / (single * min(threads, default_num_threads()))
