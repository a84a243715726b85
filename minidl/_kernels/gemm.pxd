# cython: language_level=3
# Row-major GEMM: C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C.
# op(A) = A (stored m x k, leading dimension lda) or, with trans_a, A^T (A stored k x m).
# op(B) = B (stored k x n, ldb) or, with trans_b, B^T (B stored n x k).
# n_threads: OpenMP threads to use (callers already inside a parallel region pass 1).
# Deterministic: the k dimension is never split across threads.

cdef void sgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                float alpha, const float *a, Py_ssize_t lda,
                const float *b, Py_ssize_t ldb,
                float beta, float *c, Py_ssize_t ldc, int n_threads) noexcept nogil

cdef void dgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                double alpha, const double *a, Py_ssize_t lda,
                const double *b, Py_ssize_t ldb,
                double beta, double *c, Py_ssize_t ldc, int n_threads) noexcept nogil
