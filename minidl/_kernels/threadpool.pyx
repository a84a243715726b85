# cython: language_level=3
"""The process's one thread pool (threadpool.h) and what Python may ask of it."""

cdef extern from "threadpool.h" nogil:
    ctypedef void (*mdl_task_fn)(void *args, Py_ssize_t begin, Py_ssize_t end,
                                int worker) noexcept
    int MDL_TP_HAVE_THREADS
    int MDL_TP_MAX_THREADS
    void mdl_tp_for(mdl_task_fn fn, void *args, Py_ssize_t n_items, int n_threads)
    int mdl_tp_threads(int n_threads)
    long mdl_tp_contention_events()
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


def contention_events() -> int:
    """How often the pool found another process competing for its cores and ran the next
    jobs on one thread fewer (see threadpool.h)."""
    return mdl_tp_contention_events()


def threads_available(int n_threads) -> int:
    """Threads a job asking for n_threads would use now."""
    return mdl_tp_threads(n_threads)
