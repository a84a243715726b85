# cython: language_level=3
"""Elementwise kernels where NumPy needs several passes or a slow path.

ReLU's backward is a select: `np.where(out <= 0, 0, grad)` takes ~12 ms on a 2M-element
ResNet-20 activation, 15x the cost of one multiply (it branches per element, and about half
the branches of a ReLU mask mispredict; so does a Cython loop that reads grad only where it
keeps it), and a multiply by the mask would turn a NaN gradient into NaN where PyTorch gives 0.
ReLU's forward and a same-shape add (with the fused ReLU of a residual block) run here in
threads and in one pass: NumPy's np.add then np.maximum are two single-threaded passes over
arrays that the previous op (a conv or BatchNorm kernel) wrote from every thread, and
np.maximum turns -0.0 into +0.0 where PyTorch's relu keeps -0.0 (as the compiled programs'
kernels do).
Elementwise, so any thread split gives the same bits.
"""

from libc.math cimport erf as c_erf, erff as c_erff

from minidl._kernels.threadpool cimport parallel_for, task_fn

from minidl._kernels.types cimport real

# Threads take whole blocks; below PARALLEL_MIN elements one thread does it all (a parallel
# loop costs ~1 us, a block of 16K floats ~3 us).
cdef Py_ssize_t BLOCK = 16384
cdef Py_ssize_t PARALLEL_MIN = 1 << 17


def relu_backward(const real[::1] out, const real[::1] grad, real[::1] grad_x, int n_threads):
    """grad_x = 0 where out <= 0, else grad (PyTorch's threshold_backward: also where out is
    NaN; a NaN gradient is zeroed where out <= 0). Flat views of n elements of one dtype;
    grad_x may be grad itself."""
    cdef Py_ssize_t n = out.shape[0]
    if grad.shape[0] != n or grad_x.shape[0] != n:
        raise ValueError(f"relu_backward: out has {n} elements, grad {grad.shape[0]} and "
                         f"grad_x {grad_x.shape[0]}; they must match")
    if n == 0:
        return
    cdef _Select a = _Select(f64=real is double, out=&out[0], grad=&grad[0], grad_x=&grad_x[0],
                             n=n)
    with nogil:
        parallel_for(_relu_backward_task, &a, (n + BLOCK - 1) // BLOCK,
                     n_threads if n >= PARALLEL_MIN else 1)


cdef struct _Select:
    # relu_backward's flat arrays of n elements.
    bint f64
    const void *out
    const void *grad
    void *grad_x
    Py_ssize_t n


cdef void _relu_backward_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                              int worker) noexcept nogil:
    """Blocks [begin, end) of BLOCK elements."""
    cdef _Select *a = <_Select *>args
    cdef Py_ssize_t start = begin * BLOCK, count = min(end * BLOCK, a.n) - start
    if a.f64:
        _relu_backward_block(<const double *>a.out + start, <const double *>a.grad + start,
                             <double *>a.grad_x + start, count)
    else:
        _relu_backward_block(<const float *>a.out + start, <const float *>a.grad + start,
                             <float *>a.grad_x + start, count)


cdef inline void _relu_backward_block(const real *out, const real *grad, real *grad_x,
                                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef real g
    for i in range(n):
        g = grad[i]  # read unconditionally, so that the select compiles to a vector blend
        grad_x[i] = 0 if out[i] <= 0 else g


def relu(const real[::1] x, real[::1] out, int n_threads):
    """out = max(x, 0) as PyTorch's relu: 0 where x < 0, else x (a NaN stays NaN, -0.0 stays
    -0.0). Flat views of n elements of one dtype; out may be x itself."""
    _unary("relu", x, out, _binary_task, n_threads)


def add(const real[::1] x, const real[::1] y, real[::1] out, bint relu, int n_threads):
    """out = x + y, then max(out, 0) as `relu` when relu. Flat views of n elements of one
    dtype; out may be x or y."""
    _check_sizes("add", x.shape[0], y.shape[0], out.shape[0])
    if x.shape[0] == 0:
        return
    cdef _Binary a = _Binary(f64=real is double, a=&x[0], b=&y[0], out=&out[0], n=x.shape[0],
                             relu=relu)
    with nogil:
        _run(_binary_task, &a, n_threads)


cdef _unary(str op, const real[::1] x, real[::1] out, task_fn task, int n_threads):
    """task over x -> out (a _Binary without b; relu set: relu's task reads it)."""
    _check_sizes(op, x.shape[0], x.shape[0], out.shape[0])
    if x.shape[0] == 0:
        return
    cdef _Binary a = _Binary(f64=real is double, a=&x[0], b=NULL, out=&out[0], n=x.shape[0],
                             relu=True)
    with nogil:
        _run(task, &a, n_threads)


cdef _check_sizes(str op, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k):
    if m != n or k != n:
        raise ValueError(f"{op}: operands of {n} and {m} elements into {k}; they must match")


cdef struct _Binary:
    # The flat arrays of n elements of add (a + b), relu or erf (of a; b NULL).
    bint f64, relu
    const void *a
    const void *b
    void *out
    Py_ssize_t n


cdef inline void _run(task_fn task, _Binary *a, int n_threads) noexcept nogil:
    parallel_for(task, a, (a.n + BLOCK - 1) // BLOCK, n_threads if a.n >= PARALLEL_MIN else 1)


cdef void _binary_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of BLOCK elements."""
    cdef _Binary *a = <_Binary *>args
    cdef Py_ssize_t start = begin * BLOCK, count = min(end * BLOCK, a.n) - start
    if a.f64:
        _binary_block(<const double *>a.a + start,
                      <const double *>a.b + start if a.b != NULL else NULL,
                      <double *>a.out + start, count, a.relu)
    else:
        _binary_block(<const float *>a.a + start,
                      <const float *>a.b + start if a.b != NULL else NULL,
                      <float *>a.out + start, count, a.relu)


cdef inline void _binary_block(const real *x, const real *y, real *out, Py_ssize_t n,
                               bint relu) noexcept nogil:
    cdef Py_ssize_t i
    cdef real v
    if y == NULL:
        for i in range(n):
            v = x[i]
            out[i] = 0 if v < 0 else v
    elif relu:
        for i in range(n):
            v = x[i] + y[i]
            out[i] = 0 if v < 0 else v
    else:
        for i in range(n):
            out[i] = x[i] + y[i]


def erf(const real[::1] x, real[::1] out, int n_threads):
    """out = erf(x) by the C library's erf / erff (NumPy has none; GELU's exact form needs
    it). Flat views of one dtype; out may be x itself."""
    _unary("erf", x, out, _erf_task, n_threads)


cdef void _erf_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of BLOCK elements."""
    cdef _Binary *a = <_Binary *>args
    cdef Py_ssize_t i, start = begin * BLOCK, stop = min(end * BLOCK, a.n)
    cdef const double *xd = <const double *>a.a
    cdef double *od = <double *>a.out
    cdef const float *xf = <const float *>a.a
    cdef float *of = <float *>a.out
    if a.f64:
        for i in range(start, stop):
            od[i] = c_erf(xd[i])
    else:
        for i in range(start, stop):
            of[i] = c_erff(xf[i])
