# cython: language_level=3
"""Single-thread float32 FMA peak per instruction set (fma_probe.h), for benchmark reports."""

import time

cdef extern from "fma_probe.h" nogil:
    enum:
        MDL_PROBE_NACC
    int mdl_fma_probe_lanes(int isa)
    float mdl_fma_probe_run(int isa, Py_ssize_t steps)

ISAS = {"avx512": 2, "avx2": 1, "baseline": 0}


def fma_peak_gflops(str isa="avx512", double seconds=0.05, int repeat=5) -> float:
    """Best-of-`repeat` float32 GFLOP/s of one thread doing independent multiply-adds on `isa`
    ("avx512", "avx2" or "baseline"), each sample about `seconds` long. Returns 0.0 when the
    CPU (or this build) cannot run that instruction set; ValueError for an unknown name."""
    if isa not in ISAS:
        raise ValueError(f"fma_peak_gflops: isa must be one of {sorted(ISAS)}, got {isa!r}")
    cdef int level = ISAS[isa], lanes = mdl_fma_probe_lanes(level)
    if lanes == 0:
        return 0.0
    cdef Py_ssize_t steps = 1000
    cdef float sink = 0
    cdef double elapsed = 0, best = 0
    while True:
        start = time.perf_counter()
        with nogil:
            sink = sink + mdl_fma_probe_run(level, steps)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4:
            break
        steps *= 4
    steps = max(1, <Py_ssize_t>(steps * seconds / elapsed))
    for _ in range(repeat):
        start = time.perf_counter()
        with nogil:
            sink = sink + mdl_fma_probe_run(level, steps)
        elapsed = time.perf_counter() - start
        best = max(best, 2.0 * MDL_PROBE_NACC * lanes * steps / elapsed / 1e9)
    if sink != sink:  # keeps the results live; never true for these inputs
        raise ArithmeticError("fma_peak_gflops: probe produced NaN")
    return best
