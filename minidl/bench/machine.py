"""Facts about the machine a benchmark ran on: CPU, cores, load, the instruction set minidl's
kernels chose, and the FMA peak per instruction set."""

from __future__ import annotations

import os
import platform
import sys

# minidl's ISA path (minidl._kernels._runtime.isa_path()) -> the FMA probe's name for it.
PROBE_ISA = {"x86-64-v4": "avx512", "x86-64-v3": "avx2"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> float | None:
    """1-minute load average, None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def describe() -> dict:
    """CPU model, logical CPUs, cores minidl uses by default, OS, Python, minidl's build."""
    import minidl
    from minidl.threads import default_num_threads

    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cores": default_num_threads(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "minidl": minidl.config(),
    }


def probe_isa(isa_path: str) -> str:
    """The FMA probe's instruction-set name for minidl's ISA path string."""
    for prefix, name in PROBE_ISA.items():
        if isa_path.startswith(prefix):
            return name
    return "baseline"


def fma_peaks(seconds: float) -> dict:
    """Single-thread float32 FMA peak GFLOP/s per instruction set this CPU runs
    ({"avx512": ..., "avx2": ..., "baseline": ...}), or {"absent": why} when this minidl has no
    probe."""
    try:
        from minidl._kernels.fma_probe import fma_peak_gflops
    except ImportError as exc:
        return {"absent": f"no FMA probe in this minidl build ({exc})"}
    peaks = {}
    for isa in ("avx512", "avx2", "baseline"):
        gflops = fma_peak_gflops(isa, seconds=seconds)
        if gflops > 0:
            peaks[isa] = gflops
    return peaks
