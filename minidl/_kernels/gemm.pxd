# cython: language_level=3
# Row-major GEMM: C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C.
# op(A) = A (stored m x k, leading dimension lda) or, with trans_a, A^T (A stored k x m).
# op(B) = B (stored k x n, ldb) or, with trans_b, B^T (B stored n x k).
# n_threads: OpenMP threads to use (callers already inside a parallel region pass 1).
# Deterministic: the k dimension is never split across threads.
# One fused function for float32 and float64: the pointers' type selects the specialization.

from minidl._kernels.types cimport real

cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
               real beta, real *c, Py_ssize_t ldc, int n_threads) noexcept nogil


# Memory the caller reads next (two byte ranges, e.g. the next image's operands of a per-image
# loop; NULL / 0 for none): the small-shape path prefetches it into L2 across its tiles, so
# that the next product does not start on a cache miss per row of B (gemm_kernels.h).
cdef struct GemmAhead:
    const void *p0
    Py_ssize_t bytes0
    const void *p1
    Py_ssize_t bytes1

cdef void gemm_ahead(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                     real beta, real *c, Py_ssize_t ldc, int n_threads,
                     const GemmAhead *ahead) noexcept nogil
