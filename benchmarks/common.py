"""Timing helpers shared by the benchmark scripts.

The machine is shared and noisy: a single timing can be off by 2x, so every figure is the best of
several samples, and comparisons are made between figures measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A sample shorter than this is dominated by timer and scheduler noise: fast calls are repeated
# inside one sample until it lasts about this long.
MIN_SAMPLE_SECONDS = 2e-3


def best_of(fn: Callable[[], object], repeat: int = 10, warmup: int = 1) -> float:
    """Seconds per call of fn: the fastest of `repeat` samples, after `warmup` untimed calls.

    A sample times `number` back-to-back calls, with `number` chosen from the first warm call so
    that a sample lasts at least MIN_SAMPLE_SECONDS (1 for anything slower).
    """
    if repeat < 1:
        raise ValueError(f"best_of: repeat must be >= 1, got {repeat}")
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        fn()
    number = max(1, int(MIN_SAMPLE_SECONDS / max(first, 1e-9)))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def best_of_pair(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeat: int = 10, warmup: int = 1
) -> tuple[float, float]:
    """Seconds per call of fn_a and of fn_b, as best_of, with their samples alternating.

    The machine's speed drifts over seconds (other jobs, clocks): alternating the samples makes
    the ratio of the two figures a comparison under the same conditions.
    """
    if repeat < 1:
        raise ValueError(f"best_of_pair: repeat must be >= 1, got {repeat}")
    numbers = []
    for fn in (fn_a, fn_b):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        for _ in range(warmup - 1):
            fn()
        numbers.append(max(1, int(MIN_SAMPLE_SECONDS / max(first, 1e-9))))
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            for _ in range(numbers[i]):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / numbers[i])
    return best[0], best[1]


def case_dicts(group: str, size: str = "full") -> list[dict]:
    """minidl.bench's cases of `group` at `size` (the one list, shared with minidl-bench) as the
    dicts compare.py and the pytest suite take: name, flops (work per call) and zero-argument
    callables minidl / numpy / torch (None without that reference). Each builds itself (and the
    case's data) on first call, so importing never imports torch; it runs with the thread count
    the caller set (minidl.set_num_threads, torch.set_num_threads, threadpoolctl)."""
    from minidl.bench.case import cases

    out = []
    for case in cases(size, (group,)):
        data: list = []

        def built(engine: str, case=case, data=data) -> Callable[[], object] | None:
            if engine not in case.builders:
                return None
            fn: list = []

            def call():
                if not fn:
                    if not data:
                        data.append(case.data())
                    from minidl.threads import get_num_threads

                    fn.append(case.builders[engine](data[0], get_num_threads()))
                return fn[0]()

            return call

        out.append(
            dict(
                name=case.name,
                flops=case.work,
                minidl=built("minidl"),
                numpy=built("numpy"),
                torch=built("torch"),
            )
        )
    return out


def gflops(flops: float, seconds: float) -> float:
    """GFLOP/s for `flops` floating-point operations done in `seconds`."""
    return flops / seconds / 1e9


def matmul_flops(m: int, n: int, k: int) -> int:
    """Floating-point operations of an (m x k) @ (k x n) product: one multiply and one add each."""
    return 2 * m * n * k
