# cython: language_level=3
"""Optimizer updates in one pass over each parameter, in place.

NumPy needs six to eight array passes (and their Python calls) for one SGD-with-momentum update;
this loop reads each element once. Elementwise, so any thread split gives the same bits.
"""

from minidl._kernels.threadpool cimport parallel_for
from minidl._kernels.types cimport real

# Below this many elements the update runs on one thread: a parallel loop costs ~1 us.
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


cdef struct _Sgd:
    # One update: flat param, grad and momentum buffer (NULL without momentum) of n elements.
    bint f64
    void *param
    const void *grad
    void *buf
    Py_ssize_t n
    double lr, momentum, keep, weight_decay
    bint nesterov, first_step


cdef void _sgd(real[::1] param, const real[::1] grad, real[::1] momentum_buffer,
               double lr, double momentum, double dampening, double weight_decay,
               bint nesterov, bint first_step, int n_threads) noexcept nogil:
    cdef Py_ssize_t n = param.shape[0]
    if n == 0:
        return
    cdef real *buf = &momentum_buffer[0] if momentum != 0.0 else NULL
    cdef _Sgd a = _Sgd(f64=real is double, param=&param[0], grad=&grad[0], buf=buf, n=n, lr=lr,
                       momentum=momentum, keep=1.0 - dampening, weight_decay=weight_decay,
                       nesterov=nesterov, first_step=first_step)
    parallel_for(_sgd_task, &a, (n + BLOCK - 1) // BLOCK, n_threads if n >= PARALLEL_MIN else 1)


cdef void _sgd_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of BLOCK elements."""
    cdef _Sgd *a = <_Sgd *>args
    cdef Py_ssize_t start = begin * BLOCK, stop = min(end * BLOCK, a.n)
    if a.f64:
        _sgd_block(<double *>a.param + start, <const double *>a.grad + start,
                   <double *>a.buf + start if a.buf != NULL else NULL, stop - start,
                   a.lr, a.momentum, a.keep, a.weight_decay, a.nesterov, a.first_step)
    else:
        _sgd_block(<float *>a.param + start, <const float *>a.grad + start,
                   <float *>a.buf + start if a.buf != NULL else NULL, stop - start,
                   <float>a.lr, <float>a.momentum, <float>a.keep, <float>a.weight_decay,
                   a.nesterov, a.first_step)


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
