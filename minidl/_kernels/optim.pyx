# cython: language_level=3
"""Optimizer updates in one pass over each parameter, in place.

NumPy needs six to eight array passes (and their Python calls) for one SGD-with-momentum update;
this loop reads each element once. Elementwise, so any thread split gives the same bits.
"""

from cython.parallel cimport prange
from minidl._kernels.types cimport real

# Below this many elements the update runs on one thread: a parallel region costs ~1 us.
cdef Py_ssize_t PARALLEL_MIN = 1 << 16
# Threads take whole blocks of elements (elementwise: any split gives the same bits).
cdef Py_ssize_t BLOCK = 4096


def sgd_update(param, grad, momentum_buffer, double lr, double momentum, double dampening,
               double weight_decay, bint nesterov, bint first_step, int n_threads):
    """PyTorch's SGD step on flat C-contiguous views of one float dtype (momentum_buffer is
    unused when momentum == 0):

        d = grad + weight_decay * param
        b = d on the first step, else momentum * b + (1 - dampening) * d
        d = d + momentum * b if nesterov else b          (when momentum != 0)
        param -= lr * d
    """
    if grad.shape != param.shape or (momentum != 0.0 and momentum_buffer.shape != param.shape):
        raise ValueError(
            f"sgd_update: param {param.shape}, grad {grad.shape} and momentum_buffer "
            f"{momentum_buffer.shape} must have one shape")
    # The specialization picked here, not by a fused def's dispatcher (types.pxd).
    if param.dtype.itemsize == 4:
        _sgd[float](param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                    nesterov, first_step, n_threads)
    else:
        _sgd[double](param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                     nesterov, first_step, n_threads)


cdef void _sgd(real[::1] param, const real[::1] grad, real[::1] momentum_buffer,
               double lr, double momentum, double dampening, double weight_decay,
               bint nesterov, bint first_step, int n_threads) noexcept nogil:
    cdef Py_ssize_t n = param.shape[0], start, stop
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK, block
    cdef real* buf = &momentum_buffer[0] if momentum != 0.0 else NULL
    for block in prange(n_blocks, schedule="static", num_threads=n_threads,
                        use_threads_if=n >= PARALLEL_MIN):
        start = block * BLOCK
        stop = min(start + BLOCK, n)
        _sgd_block(&param[start], &grad[start], buf + start if buf != NULL else NULL,
                   stop - start, <real>lr, <real>momentum,
                   <real>(1.0 - dampening), <real>weight_decay, nesterov, first_step)


cdef inline void _sgd_block(real* p, const real* g, real* buf, Py_ssize_t n,
                            real lr, real mu, real keep, real wd,
                            bint nesterov, bint first_step) noexcept nogil:
    # One branch-free loop per case so the compiler vectorizes each.
    cdef Py_ssize_t i
    cdef real d, b
    cdef bint has_wd = wd != 0
    if buf == NULL:
        for i in range(n):
            d = g[i] + wd * p[i] if has_wd else g[i]
            p[i] = p[i] - lr * d
    elif first_step:
        for i in range(n):
            d = g[i] + wd * p[i] if has_wd else g[i]
            buf[i] = d
            p[i] = p[i] - lr * (d + mu * d if nesterov else d)
    elif nesterov:
        for i in range(n):
            d = g[i] + wd * p[i] if has_wd else g[i]
            b = mu * buf[i] + keep * d
            buf[i] = b
            p[i] = p[i] - lr * (d + mu * b)
    else:
        for i in range(n):
            d = g[i] + wd * p[i] if has_wd else g[i]
            b = mu * buf[i] + keep * d
            buf[i] = b
            p[i] = p[i] - lr * b
