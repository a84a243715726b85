# cython: language_level=3
# minidl's thread pool (threadpool.h): parallel loops whose caller never waits for a thread
# that has not started. A kernel packs its loop's arguments into a struct and runs
#     parallel_for(task, &args, n_items, n_threads)
# task(&args, begin, end, worker) runs items [begin, end); worker in [0, n_threads) indexes
# per-thread scratch (0 is the calling thread). Items are split into chunks that any thread
# may run: a task must give each item the same result whoever runs it (results are then
# bitwise identical for any thread count and schedule). Inside a task a nested parallel_for
# runs inline.

ctypedef void (*task_fn)(void *args, Py_ssize_t begin, Py_ssize_t end,
                         int worker) noexcept nogil

cdef void parallel_for(task_fn task, void *args, Py_ssize_t n_items,
                       int n_threads) noexcept nogil

# Threads a parallel_for asking for n_threads would use now (1 inside a task, fewer while
# another process competes for the cores): for kernels that size their split by it.
cdef int threads_now(int n_threads) noexcept nogil
