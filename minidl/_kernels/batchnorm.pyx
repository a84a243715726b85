# cython: language_level=3
"""Batch-normalization kernels over C-contiguous (N, C, L) float32/float64 buffers.

(N, C) inputs are (N, C, 1) and (N, C, H, W) inputs are (N, C, H * W): channel c owns the rows
x[n, c, :]. Per-channel vectors (mean, var, scale, ...) are float64 of shape (C,).

Determinism: channel c's rows are cut into chunks of `chunk_rows(L)` consecutive images, a
function of the shape only. Each (channel, chunk) work item has one owner thread and sums its
rows in order (in fixed lanes, see batchnorm_kernels_isa.h), whichever thread of minidl's pool
runs it; a channel's partials are combined in chunk order. Results are therefore bitwise
identical for any thread count, while a few channels with a large batch still give every thread
work.

Each kernel reads its inputs once per stage: the statistics pass reads x (a chunk's second,
centered pass hits L1), the apply pass reads x and writes y; backward reads (g, x) for the two
sums and again to write the input gradient (and a fused ReLU's output with both, instead of a
pass of its own to mask g).
"""

import numpy as np

from minidl._kernels.threadpool cimport parallel_for
from minidl._kernels.types cimport real

cdef extern from "batchnorm_kernels.h" nogil:
    double mdl_bn_sum_f32(const float *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L)
    double mdl_bn_sum_f64(const double *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L)
    double mdl_bn_sqdev_f32(const float *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L,
                            double m)
    double mdl_bn_sqdev_f64(const double *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L,
                            double m)
    void mdl_bn_dots_f32(const float *g, const float *x, const float *relu_out, Py_ssize_t rows,
                         Py_ssize_t stride, Py_ssize_t L, double m, double *sum_g,
                         double *sum_gx)
    void mdl_bn_dots_f64(const double *g, const double *x, const double *relu_out,
                         Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L, double m,
                         double *sum_g, double *sum_gx)
    void mdl_bn_apply_f32(const float *x, float *y, Py_ssize_t rows, Py_ssize_t stride,
                          Py_ssize_t L, float mul, float add, int relu)
    void mdl_bn_apply_f64(const double *x, double *y, Py_ssize_t rows, Py_ssize_t stride,
                          Py_ssize_t L, double mul, double add, int relu)
    void mdl_bn_input_grad_f32(const float *g, const float *x, const float *relu_out, float *gx,
                               Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L, float m,
                               float mg, float proj, float mul, int batch_stats)
    void mdl_bn_input_grad_f64(const double *g, const double *x, const double *relu_out,
                               double *gx, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L,
                               double m, double mg, double proj, double mul, int batch_stats)

# A chunk holds about this many elements of one channel: 16 KB of float32, so the centered
# second pass over it is served from L1.
cdef Py_ssize_t CHUNK_ELEMS = 4096
# Below this many elements a kernel runs on one thread: a parallel loop costs ~1 us.
cdef Py_ssize_t MIN_PARALLEL_ELEMS = 32768


cdef struct _Bn:
    # One parallel loop over (channel, chunk) work items of x, g, relu_out (a fused ReLU's
    # output, or NULL) and y (or gx): (N, C, L) of one float dtype, `rows` images per chunk;
    # per-channel float64 vectors; part: the (C * chunks, 2) partial sums.
    bint f64, batch_stats, relu
    const void *x
    const void *g
    const void *relu_out
    void *y
    const double *mean
    const double *invstd
    const double *scale
    const double *shift
    const double *sum_g
    const double *sum_gxc
    double *part
    Py_ssize_t N, C, L, rows, chunks


cpdef Py_ssize_t chunk_rows(Py_ssize_t L):
    """Images per chunk for rows of length L (>= 1): depends on the shape only."""
    if L >= CHUNK_ELEMS:
        return 1
    return CHUNK_ELEMS // max(L, 1)


cdef inline int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_ELEMS else 1


cdef inline double _sum(const real *p, Py_ssize_t rows, Py_ssize_t stride,
                       Py_ssize_t L) noexcept nogil:
    if real is float:
        return mdl_bn_sum_f32(p, rows, stride, L)
    else:
        return mdl_bn_sum_f64(p, rows, stride, L)


cdef inline double _sqdev(const real *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L,
                          double m) noexcept nogil:
    if real is float:
        return mdl_bn_sqdev_f32(p, rows, stride, L, m)
    else:
        return mdl_bn_sqdev_f64(p, rows, stride, L, m)


cdef inline void _dots(const real *g, const real *x, const real *relu_out, Py_ssize_t rows,
                       Py_ssize_t stride, Py_ssize_t L, double m, double *sum_g,
                       double *sum_gx) noexcept nogil:
    if real is float:
        mdl_bn_dots_f32(g, x, relu_out, rows, stride, L, m, sum_g, sum_gx)
    else:
        mdl_bn_dots_f64(g, x, relu_out, rows, stride, L, m, sum_g, sum_gx)


def _check(str op, x, *others):
    """x (N, C, L) C-contiguous float32/float64; `others` (name, array, shape, dtype) tuples."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: expected a 3-D float32/float64 array (N, C, L), got "
                        f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{op}: x must be C-contiguous")
    for name, a, shape, dtype in others:
        if a is None:
            continue
        if (not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype
                or not a.flags.c_contiguous):
            raise ValueError(
                f"{op}: {name} must be a C-contiguous {np.dtype(dtype)} array of shape {shape}, "
                f"got {getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}"
            )


def batch_norm_stats(x, mean, var, int n_threads) -> None:
    """Per-channel mean and biased variance of x (N, C, L) into mean, var (C,) float64.

    Each chunk is summed around its own mean (two passes over an L1-resident chunk) and the
    chunks are merged in order with Chan et al.'s pairwise update, which keeps the variance
    accurate when |mean| >> std. N * L must be >= 1.
    """
    C = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
    _check("batch_norm_stats", x, ("mean", mean, (C,), np.float64),
           ("var", var, (C,), np.float64))
    if x.shape[0] * x.shape[2] == 0:
        raise ValueError(f"batch_norm_stats: no values per channel in x of shape {x.shape}")
    if x.shape[1] == 0:
        return
    rows = chunk_rows(x.shape[2])
    chunks = (x.shape[0] + rows - 1) // rows
    part = np.empty(2 * C * chunks, dtype=np.float64)
    if x.dtype == np.float32:
        _stats[float](x, mean, var, part, rows, chunks, n_threads)
    else:
        _stats[double](x, mean, var, part, rows, chunks, n_threads)


cdef void _stats(const real[:, :, ::1] x, double[::1] mean, double[::1] var, double[::1] part,
                 Py_ssize_t rows, Py_ssize_t chunks, int n_threads) noexcept:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t c, k, n0
    cdef double count, n_a, mean_a, m2_a, n_b, delta
    cdef double *pp = &part[0]
    cdef _Bn a = _Bn(f64=real is double, batch_stats=True, relu=False, x=&x[0, 0, 0], g=NULL,
                     relu_out=NULL, y=NULL, mean=NULL, invstd=NULL, scale=NULL, shift=NULL,
                     sum_g=NULL, sum_gxc=NULL, part=pp, N=N, C=C, L=L, rows=rows,
                     chunks=chunks)
    with nogil:
        parallel_for(_stats_task, &a, C * chunks, _threads(N * C * L, n_threads))
        for c in range(C):
            n_a = 0
            mean_a = 0
            m2_a = 0
            for k in range(chunks):
                n0 = k * rows
                n_b = (min(N, n0 + rows) - n0) * L
                count = n_a + n_b
                delta = pp[2 * (c * chunks + k)] - mean_a
                mean_a = mean_a + delta * n_b / count
                m2_a = m2_a + pp[2 * (c * chunks + k) + 1] + delta * delta * n_a * n_b / count
                n_a = count
            mean[c] = mean_a
            var[c] = m2_a / n_a


cdef void _stats_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _stats_items(<const double *>a.x, a, begin, end)
    else:
        _stats_items(<const float *>a.x, a, begin, end)


cdef inline void _stats_items(const real *xp, const _Bn *a, Py_ssize_t begin,
                              Py_ssize_t end) noexcept nogil:
    """Mean and centered sum of squares of (channel, chunk) items [begin, end)."""
    cdef Py_ssize_t item, c, k, n0, n1, C = a.C, L = a.L
    cdef double m
    cdef const real *p
    for item in range(begin, end):
        c = item // a.chunks
        k = item % a.chunks
        n0 = k * a.rows
        n1 = min(a.N, n0 + a.rows)
        p = xp + (n0 * C + c) * L
        m = _sum(p, n1 - n0, C * L, L) / ((n1 - n0) * L)
        a.part[2 * item] = m
        a.part[2 * item + 1] = _sqdev(p, n1 - n0, C * L, L, m)


def batch_norm_apply(x, scale, shift, y, int n_threads, bint relu=False) -> None:
    """y[n, c, l] = x[n, c, l] * scale[c] + shift[c], then max(., 0) with relu (a fused ReLU:
    NaN stays NaN); x, y (N, C, L) of one float dtype, scale, shift (C,) float64 (rounded to x's
    dtype first). y may be x."""
    C = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
    _check("batch_norm_apply", x, ("scale", scale, (C,), np.float64),
           ("shift", shift, (C,), np.float64), ("y", y, x.shape, x.dtype))
    if y is None:
        raise ValueError("batch_norm_apply: y is required")
    if x.size == 0:
        return
    rows = chunk_rows(x.shape[2])
    chunks = (x.shape[0] + rows - 1) // rows
    if x.dtype == np.float32:
        _apply[float](x, scale, shift, y, rows, chunks, relu, n_threads)
    else:
        _apply[double](x, scale, shift, y, rows, chunks, relu, n_threads)


cdef void _apply(const real[:, :, ::1] x, const double[::1] scale, const double[::1] shift,
                 real[:, :, ::1] y, Py_ssize_t rows, Py_ssize_t chunks, bint relu,
                 int n_threads) noexcept:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef _Bn a = _Bn(f64=real is double, batch_stats=False, relu=relu, x=&x[0, 0, 0], g=NULL,
                     relu_out=NULL, y=&y[0, 0, 0], mean=NULL, invstd=NULL, scale=&scale[0],
                     shift=&shift[0], sum_g=NULL, sum_gxc=NULL, part=NULL, N=N, C=C, L=L,
                     rows=rows, chunks=chunks)
    with nogil:
        parallel_for(_apply_task, &a, C * chunks, _threads(N * C * L, n_threads))


cdef void _apply_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _apply_items(<const double *>a.x, <double *>a.y, a, begin, end)
    else:
        _apply_items(<const float *>a.x, <float *>a.y, a, begin, end)


cdef inline void _apply_items(const real *xp, real *yp, const _Bn *a, Py_ssize_t begin,
                              Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t item, c, n0, off, C = a.C, L = a.L
    for item in range(begin, end):
        c = item // a.chunks
        n0 = (item % a.chunks) * a.rows
        off = (n0 * C + c) * L
        if real is float:
            mdl_bn_apply_f32(xp + off, yp + off, min(a.N, n0 + a.rows) - n0, C * L, L,
                             <float>a.scale[c], <float>a.shift[c], a.relu)
        else:
            mdl_bn_apply_f64(xp + off, yp + off, min(a.N, n0 + a.rows) - n0, C * L, L,
                             a.scale[c], a.shift[c], a.relu)


def batch_norm_backward(x, g, mean, invstd, scale, gx, sum_g, sum_gxc, bint batch_stats,
                        int n_threads, relu_out=None) -> None:
    """Sums for the parameter gradients and, if gx is given, the input gradient.

    x, g, gx: (N, C, L) of one float dtype; mean, invstd, scale (= invstd * weight, or invstd
    without weight), sum_g, sum_gxc: (C,) float64. relu_out (N, C, L), the output of a fused
    ReLU, or None: g is then taken as 0 where relu_out <= 0, as ReLU's backward does. Writes
    sum_g[c] = sum of g and sum_gxc[c] = sum of g * (x - mean) over channel c, then
        batch_stats: gx = (g - sum_g / M - (x - mean) * invstd^2 * sum_gxc / M) * scale
                     (M = N * L: the mean and variance were taken from this batch)
        otherwise:   gx = g * scale.
    """
    C = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
    vec = (C,)
    _check("batch_norm_backward", x, ("g", g, x.shape, x.dtype), ("gx", gx, x.shape, x.dtype),
           ("relu_out", relu_out, x.shape, x.dtype), ("mean", mean, vec, np.float64),
           ("invstd", invstd, vec, np.float64), ("scale", scale, vec, np.float64),
           ("sum_g", sum_g, vec, np.float64), ("sum_gxc", sum_gxc, vec, np.float64))
    for name, a in (("g", g), ("mean", mean), ("invstd", invstd), ("scale", scale),
                    ("sum_g", sum_g), ("sum_gxc", sum_gxc)):
        if a is None:
            raise ValueError(f"batch_norm_backward: {name} is required")
    if C == 0:
        return
    if x.shape[0] * x.shape[2] == 0:
        sum_g[:] = 0
        sum_gxc[:] = 0
        return
    rows = chunk_rows(x.shape[2])
    chunks = (x.shape[0] + rows - 1) // rows
    part = np.empty(2 * C * chunks, dtype=np.float64)
    if x.dtype == np.float32:
        _backward[float](x, g, relu_out, mean, invstd, scale, gx, sum_g, sum_gxc, part, rows,
                         chunks, batch_stats, n_threads)
    else:
        _backward[double](x, g, relu_out, mean, invstd, scale, gx, sum_g, sum_gxc, part, rows,
                          chunks, batch_stats, n_threads)


cdef void _backward(const real[:, :, ::1] x, const real[:, :, ::1] g, relu_out,
                    const double[::1] mean, const double[::1] invstd, const double[::1] scale,
                    gx, double[::1] sum_g, double[::1] sum_gxc, double[::1] part,
                    Py_ssize_t rows, Py_ssize_t chunks, bint batch_stats,
                    int n_threads) except *:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t c, k
    cdef double sg, sgx
    cdef double *pp = &part[0]
    cdef int nt = _threads(N * C * L, n_threads)
    cdef const real[:, :, ::1] y_view
    cdef real[:, :, ::1] gx_view
    cdef const real *yp = NULL
    cdef real *gxp = NULL
    if relu_out is not None:
        y_view = relu_out
        yp = &y_view[0, 0, 0]
    if gx is not None:
        gx_view = gx
        gxp = &gx_view[0, 0, 0]
    cdef _Bn a = _Bn(f64=real is double, batch_stats=batch_stats, relu=False,
                     x=&x[0, 0, 0], g=&g[0, 0, 0], relu_out=yp, y=gxp, mean=&mean[0],
                     invstd=&invstd[0], scale=&scale[0], shift=NULL, sum_g=&sum_g[0],
                     sum_gxc=&sum_gxc[0], part=pp, N=N, C=C, L=L, rows=rows, chunks=chunks)
    with nogil:
        parallel_for(_backward_sums_task, &a, C * chunks, nt)
        for c in range(C):
            sg = 0
            sgx = 0
            for k in range(chunks):
                sg = sg + pp[2 * (c * chunks + k)]
                sgx = sgx + pp[2 * (c * chunks + k) + 1]
            sum_g[c] = sg
            sum_gxc[c] = sgx
        if gxp == NULL:
            return
        parallel_for(_backward_input_task, &a, C * chunks, nt)


cdef void _backward_sums_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                              int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _backward_sums_items(<const double *>a.x, <const double *>a.g,
                             <const double *>a.relu_out, a, begin, end)
    else:
        _backward_sums_items(<const float *>a.x, <const float *>a.g,
                             <const float *>a.relu_out, a, begin, end)


cdef inline void _backward_sums_items(const real *xp, const real *gp, const real *yp,
                                      const _Bn *a, Py_ssize_t begin,
                                      Py_ssize_t end) noexcept nogil:
    """Sums of g and g * (x - mean) of (channel, chunk) items [begin, end)."""
    cdef Py_ssize_t item, c, n0, off, C = a.C, L = a.L
    for item in range(begin, end):
        c = item // a.chunks
        n0 = (item % a.chunks) * a.rows
        off = (n0 * C + c) * L
        _dots(gp + off, xp + off, yp + off if yp != NULL else NULL,
              min(a.N, n0 + a.rows) - n0, C * L, L, a.mean[c], &a.part[2 * item],
              &a.part[2 * item + 1])


cdef void _backward_input_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _backward_input_items(<const double *>a.x, <const double *>a.g,
                              <const double *>a.relu_out, <double *>a.y, a, begin, end)
    else:
        _backward_input_items(<const float *>a.x, <const float *>a.g,
                              <const float *>a.relu_out, <float *>a.y, a, begin, end)


cdef inline void _backward_input_items(const real *xp, const real *gp, const real *yp,
                                       real *gxp, const _Bn *a, Py_ssize_t begin,
                                       Py_ssize_t end) noexcept nogil:
    """The input gradient of (channel, chunk) items [begin, end)."""
    cdef Py_ssize_t item, c, n0, off, C = a.C, L = a.L
    cdef double total = <double>(a.N * L)
    cdef real m = 0, mg = 0, proj = 0
    for item in range(begin, end):
        c = item // a.chunks
        n0 = (item % a.chunks) * a.rows
        off = (n0 * C + c) * L
        if a.batch_stats:
            m = <real>a.mean[c]
            mg = <real>(a.sum_g[c] / total)
            proj = <real>(a.sum_gxc[c] * a.invstd[c] * a.invstd[c] / total)
        if real is float:
            mdl_bn_input_grad_f32(gp + off, xp + off, yp + off if yp != NULL else NULL,
                                  gxp + off, min(a.N, n0 + a.rows) - n0, C * L, L, m, mg, proj,
                                  <float>a.scale[c], a.batch_stats)
        else:
            mdl_bn_input_grad_f64(gp + off, xp + off, yp + off if yp != NULL else NULL,
                                  gxp + off, min(a.N, n0 + a.rows) - n0, C * L, L, m, mg, proj,
                                  a.scale[c], a.batch_stats)
