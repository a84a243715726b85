# cython: language_level=3
# The C pooling kernels of pool_kernels.h, declared once for pool.pyx and program.pyx.

cdef extern from "pool_kernels.h" nogil:
    void max_pool_2x2_f32(const float *x, float *out, unsigned char *code, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t b0,
                          Py_ssize_t b1)
    void max_unpool_2x2_f32(const float *g, const unsigned char *code, float *gx,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t b0, Py_ssize_t b1)
    Py_ssize_t first_bad_index(const long long *index, Py_ssize_t n, Py_ssize_t limit)
