# cython: language_level=3
"""The process's one thread pool (threadpool.h) and what Python may ask of it."""

cdef extern from "threadpool.h" nogil:
    ctypedef void (*mdl_task_fn)(void *args, Py_ssize_t begin, Py_ssize_t end,
                                int worker) noexcept
    int MDL_TP_HAVE_THREADS
    int MDL_TP_MAX_THREADS
    void mdl_tp_for(mdl_task_fn fn, void *args, Py_ssize_t n_items, int n_threads)
    int mdl_tp_threads(int n_threads)
    ctypedef struct mdl_tp_stats:
        long long caps, lone, probes, lifted
    mdl_tp_stats mdl_tp_get_stats()
    void mdl_tp_test_sign(int limit, long long lost_ns)
    int mdl_tp_workers()


cdef void parallel_for(task_fn task, void *args, Py_ssize_t n_items,
                       int n_threads) noexcept nogil:
    mdl_tp_for(<mdl_task_fn>task, args, n_items, n_threads)


cdef int threads_now(int n_threads) noexcept nogil:
    return mdl_tp_threads(n_threads)


def has_threads() -> bool:
    """Whether this build runs kernels on several threads (pthreads; not on Windows yet)."""
    return MDL_TP_HAVE_THREADS == 1


def max_threads() -> int:
    """The most threads one job can use (the claim word's field width)."""
    return MDL_TP_MAX_THREADS


def workers() -> int:
    """Worker threads started so far (the calling thread is the job's other participant)."""
    return mdl_tp_workers()


def stats() -> dict:
    """The contention detector's counters since the process started (see threadpool.h):
    caps, confirmed signs of another process competing for the cores (the next jobs ran on one
    thread fewer); lone, signs ignored because their lost time stayed below the threshold (a
    VM's vCPU preempted for a moment); probes, full-width jobs run while capped; lifted, probes that
    found the competitor gone and lifted the cap."""
    cdef mdl_tp_stats s = mdl_tp_get_stats()
    return {"caps": s.caps, "lone": s.lone, "probes": s.probes, "lifted": s.lifted}


def threads_available(int n_threads) -> int:
    """Threads a job asking for n_threads would use now."""
    return mdl_tp_threads(n_threads)


def _test_sign(int limit, double lost_ms) -> None:
    """Tests only: report one sign of contention, as a job of `limit` threads whose caller
    waited lost_ms for a descheduled worker does."""
    mdl_tp_test_sign(limit, <long long>(lost_ms * 1e6))
