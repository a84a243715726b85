# cython: language_level=3
"""Row-major GEMM (first, simple version: correct, not yet fast).

C[m, n] = alpha * op(A) @ op(B) + beta * C, with op() selected by trans_a / trans_b.
"""

from cython.parallel cimport prange


cdef void sgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                float alpha, const float *a, Py_ssize_t lda,
                const float *b, Py_ssize_t ldb,
                float beta, float *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, j, p
    cdef Py_ssize_t a_rs = 1 if trans_a else lda, a_cs = lda if trans_a else 1
    cdef Py_ssize_t b_rs = 1 if trans_b else ldb, b_cs = ldb if trans_b else 1
    cdef float aip
    cdef float *crow
    for i in prange(m, nogil=True, schedule='static', num_threads=n_threads):
        crow = c + i * ldc
        for j in range(n):
            crow[j] = 0 if beta == 0 else beta * crow[j]
        for p in range(k):
            aip = alpha * a[i * a_rs + p * a_cs]
            for j in range(n):
                crow[j] = crow[j] + aip * b[p * b_rs + j * b_cs]


cdef void dgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                double alpha, const double *a, Py_ssize_t lda,
                const double *b, Py_ssize_t ldb,
                double beta, double *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, j, p
    cdef Py_ssize_t a_rs = 1 if trans_a else lda, a_cs = lda if trans_a else 1
    cdef Py_ssize_t b_rs = 1 if trans_b else ldb, b_cs = ldb if trans_b else 1
    cdef double aip
    cdef double *crow
    for i in prange(m, nogil=True, schedule='static', num_threads=n_threads):
        crow = c + i * ldc
        for j in range(n):
            crow[j] = 0 if beta == 0 else beta * crow[j]
        for p in range(k):
            aip = alpha * a[i * a_rs + p * a_cs]
            for j in range(n):
                crow[j] = crow[j] + aip * b[p * b_rs + j * b_cs]


def _check_2d(str op, a, b, out, bint trans_a, bint trans_b):
    m, ka = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    kb, n = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if ka != kb or out.shape[0] != m or out.shape[1] != n:
        raise ValueError(
            f"{op}: shapes do not match: a {tuple(a.shape)} (trans_a={trans_a}), "
            f"b {tuple(b.shape)} (trans_b={trans_b}), out {tuple(out.shape)}")
    return m, n, ka


def matmul(a, b, out, bint trans_a=False, bint trans_b=False, int n_threads=1):
    """out = op(a) @ op(b) for 2-D C-contiguous float32 or float64 arrays of one dtype.

    a: (m, k), or (k, m) with trans_a; b: (k, n), or (n, k) with trans_b; out: (m, n), written
    without being read. Raises ValueError on mismatched shapes, TypeError/ValueError (from the
    typed memoryviews) on a wrong dtype or a non-contiguous array.
    """
    if a.dtype == b.dtype == out.dtype and a.dtype.char == 'd':
        _dmatmul(a, b, out, trans_a, trans_b, n_threads)
    else:
        _smatmul(a, b, out, trans_a, trans_b, n_threads)


cdef _smatmul(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] out,
              bint trans_a, bint trans_b, int n_threads):
    m, n, k = _check_2d("matmul", a, b, out, trans_a, trans_b)
    if m == 0 or n == 0:
        return
    sgemm(trans_a, trans_b, m, n, k, 1.0, &a[0, 0] if a.size else NULL, a.shape[1],
          &b[0, 0] if b.size else NULL, b.shape[1], 0.0, &out[0, 0], out.shape[1], n_threads)


cdef _dmatmul(const double[:, ::1] a, const double[:, ::1] b, double[:, ::1] out,
              bint trans_a, bint trans_b, int n_threads):
    m, n, k = _check_2d("matmul", a, b, out, trans_a, trans_b)
    if m == 0 or n == 0:
        return
    dgemm(trans_a, trans_b, m, n, k, 1.0, &a[0, 0] if a.size else NULL, a.shape[1],
          &b[0, 0] if b.size else NULL, b.shape[1], 0.0, &out[0, 0], out.shape[1], n_threads)


def batched_matmul(a, b, out, bint trans_a=False, bint trans_b=False, int n_threads=1):
    """out[i] = op(a[i]) @ op(b[i]) for 3-D C-contiguous arrays (B, ., .) of one dtype."""
    if a.ndim != 3 or b.ndim != 3 or out.ndim != 3 or not (
            a.shape[0] == b.shape[0] == out.shape[0]):
        raise ValueError(f"batched_matmul: expected 3-D arrays with one batch size, got "
                         f"a {a.shape}, b {b.shape}, out {out.shape}")
    for i in range(a.shape[0]):
        matmul(a[i], b[i], out[i], trans_a, trans_b, n_threads)
