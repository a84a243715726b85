# cython: language_level=3
# Window-clipping arithmetic shared by the convolution and pooling kernels (inline: compiled
# into each module that cimports it).

cdef inline Py_ssize_t first_valid(Py_ssize_t start, Py_ssize_t step) noexcept nogil:
    """Smallest k >= 0 with start + k * step >= 0 (step > 0)."""
    if start >= 0:
        return 0
    return (-start + step - 1) // step
