"""How many threads minidl's kernels use, and what the build can do.

The kernels run their parallel loops on minidl's own thread pool (minidl/_kernels/threadpool.h),
not on OpenMP: a loop's caller never waits for a worker that has not started, so a busy machine
slows minidl down to its 1-thread speed instead of stalling every loop on a descheduled thread.
`threadpoolctl` lists the pool (user_api "openmp", internal_api "minidl") and can limit it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from minidl._kernels import _runtime, threadpool


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota) limit, or None if unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


def _physical_cores(cpus: set[int]) -> int:
    """Distinct physical cores among `cpus`: hyperthread siblings share FMA units, so a second
    thread per core slows compute-bound kernels down."""
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as f:
                package = f.read().strip()
            with open(base + "core_id") as f:
                core = f.read().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def max_num_threads() -> int:
    """The largest count set_num_threads accepts: 4x the logical CPUs. More threads than
    that only oversubscribe the machine, and OpenMP runtimes abort or crash creating tens of
    thousands of them."""
    return 4 * (os.cpu_count() or 1)


def default_num_threads() -> int:
    """OMP_NUM_THREADS if set, else physical cores available to this process (affinity and
    cgroup quota respected)."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), max_num_threads())
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(range(os.cpu_count() or 1))
    n = _physical_cores(cpus)
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, limit)
    return max(1, n)


_num_threads = default_num_threads() if threadpool.has_threads() else 1

# Whether tune_malloc() changed the C allocator's settings in this process.
malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed large blocks in the C heap (glibc mallopt: no mmap threshold, no trimming),
    so each training step's activations and gradients reuse memory instead of faulting in
    fresh mmaps (LeNet-5 step 3.7-4.2 -> 3.1 ms, BENCHMARKS.md). Process-wide, so
    `import minidl` does not do it: minidl-train, the examples and the benchmarks call this,
    and MINIDL_MALLOC_TUNING=1 does it at import. Returns whether the allocator was tuned
    (False where glibc's mallopt is unavailable).

    It also makes NumPy allocate array data 64-byte aligned (numpy_alloc.h: a 512-bit row
    load of a 16-byte aligned array straddles two cache lines; the 1x1 convolution's passes
    ran 20-25% slower so), in the calling thread's context: call it from the thread that
    creates the arrays."""
    global malloc_tuned
    _runtime.align_numpy()
    malloc_tuned = malloc_tuned or _runtime.tune_malloc()
    return malloc_tuned


if os.environ.get("MINIDL_MALLOC_TUNING", "0") == "1":
    tune_malloc()


def set_num_threads(n: int) -> None:
    """Threads every kernel uses from now on. Results do not depend on it (bitwise).

    Raises TypeError for a non-integer and ValueError outside 1 .. max_num_threads()."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__} {n!r}")
    limit = max_num_threads()
    if not 1 <= n <= limit:
        raise ValueError(
            f"set_num_threads: expected 1 <= n <= {limit} (4x the {os.cpu_count()} logical "
            f"CPUs), got {n}"
        )
    _num_threads = int(n) if threadpool.has_threads() else 1


def get_num_threads() -> int:
    """Threads the kernels use (1 on a build without threads)."""
    return _num_threads


_interop_threads = [1]


def set_num_interop_threads(n: int) -> None:
    """PyTorch's inter-op pool size: minidl runs one op at a time, so the value is kept
    for get_num_interop_threads and changes nothing. Raises ValueError for n < 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_interop_threads: expected a positive int, got {n!r}")
    _interop_threads[0] = n


def get_num_interop_threads() -> int:
    return _interop_threads[0]


def pool_stats() -> dict[str, int]:
    """The thread pool's contention detector counters since the process started: "caps"
    (another process competed for the cores and the pool ran the next jobs on one thread
    fewer), "lone" (signs ignored as noise: too little time lost, such as a VM's vCPU
    preempted for a moment),
    "probes" (full-width jobs run while capped) and "lifted" (probes that lifted the cap).
    All 0 on a build without threads."""
    return threadpool.stats()


def _register_with_threadpoolctl() -> None:
    """Make threadpoolctl's threadpool_info() list minidl's pool and threadpool_limits()
    limit it. Registered at import when threadpoolctl is installed (it is a single pure-Python
    module), since a user may call threadpool_limits before or after importing minidl."""
    import threadpoolctl

    class MinidlController(threadpoolctl.LibController):
        """minidl's thread pool, found as the loaded threadpool extension module."""

        # "openmp": minidl links no OpenMP runtime, but its pool stands where its OpenMP
        # loops were, and code that limits OpenMP libraries (user_api="openmp", as
        # scikit-learn does around its own loops) expects minidl among them.
        user_api = "openmp"
        internal_api = "minidl"
        filename_prefixes = ("threadpool.",)
        check_symbols = ("minidl_threadpool_workers",)

        def get_num_threads(self) -> int:
            return get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            set_num_threads(max(1, min(int(num_threads), max_num_threads())))

        def get_version(self) -> str:
            import minidl

            return minidl.__version__

    threadpoolctl.register(MinidlController)


if "threadpoolctl" in sys.modules or importlib.util.find_spec("threadpoolctl") is not None:
    _register_with_threadpoolctl()
