# cython: language_level=3
"""Elementwise kernels where NumPy needs several passes or a slow path.

ReLU's backward is a select: `np.where(out <= 0, 0, grad)` takes ~12 ms on a 2M-element
ResNet-20 activation, 15x the cost of one multiply (it branches per element, and about half
the branches of a ReLU mask mispredict; so does a Cython loop that reads grad only where it
keeps it), and a multiply by the mask would turn a NaN gradient into NaN where PyTorch gives 0.
Elementwise, so any thread split gives the same bits.
"""

from cython.parallel cimport prange

from minidl._kernels.types cimport real

# Threads take whole blocks; below PARALLEL_MIN elements one thread does it all (a parallel
# region costs ~1 us, a block of 16K floats ~3 us).
cdef Py_ssize_t BLOCK = 16384
cdef Py_ssize_t PARALLEL_MIN = 1 << 17


def relu_backward(const real[::1] out, const real[::1] grad, real[::1] grad_x, int n_threads):
    """grad_x = 0 where out <= 0, else grad (PyTorch's threshold_backward: also where out is
    NaN; a NaN gradient is zeroed where out <= 0). Flat views of n elements of one dtype;
    grad_x may be grad itself."""
    cdef Py_ssize_t n = out.shape[0], n_blocks, b, start
    if grad.shape[0] != n or grad_x.shape[0] != n:
        raise ValueError(f"relu_backward: out has {n} elements, grad {grad.shape[0]} and "
                         f"grad_x {grad_x.shape[0]}; they must match")
    if n == 0:
        return
    n_blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads,
                    use_threads_if=n >= PARALLEL_MIN and n_threads > 1):
        start = b * BLOCK
        _relu_backward_block(&out[start], &grad[start], &grad_x[start], min(BLOCK, n - start))


cdef inline void _relu_backward_block(const real *out, const real *grad, real *grad_x,
                                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef real g
    for i in range(n):
        g = grad[i]  # read unconditionally, so that the select compiles to a vector blend
        grad_x[i] = 0 if out[i] <= 0 else g
