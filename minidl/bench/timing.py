"""Timing one case: warm-up, calibrated samples, and the statistics reported for them."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

# Spread (median / min - 1) above which a figure is flagged: on a quiet machine repeated
# samples of these cases agree within a few percent.
BUSY_SPREAD = 0.20


def calibrate(fn: Callable[[], object], warmup: int, min_sample_seconds: float) -> int:
    """Run fn `warmup` times untimed (first-call allocations, tracing, caches), then time one
    call and return how many back-to-back calls make a sample of at least min_sample_seconds
    (timer and scheduler noise dominate shorter samples)."""
    for _ in range(max(1, warmup)):
        fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, math.ceil(min_sample_seconds / max(once, 1e-9)))


def sample(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of fn over `number` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def summarize(samples: list[float]) -> dict:
    """min, median (seconds per call), spread = median / min - 1, and the samples."""
    low = min(samples)
    median = statistics.median(samples)
    return {"min_s": low, "median_s": median, "spread": median / low - 1, "samples_s": samples}
