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
sums and again to write the input gradient (a fused ReLU's mask recomputed from x on the way,
exactly as the forward rounded it, instead of reading its output or a pass of its own). With
enough channels to share out (`_per_channel`), one work item is a whole channel: its second
stage reads what its first just brought into the core's L2 cache, not main memory (a
ResNet-20 step's BatchNorm tensors are 2-8 MB, read back from DRAM otherwise). Which way the
work is split never changes a bit.
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
    void mdl_bn_dots_f32(const float *g, const float *x, int relu, float amul, float aadd,
                         Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L, double m,
                         double *sum_g, double *sum_gx)
    void mdl_bn_dots_f64(const double *g, const double *x, int relu, double amul, double aadd,
                         Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L, double m,
                         double *sum_g, double *sum_gx)
    void mdl_bn_affine(Py_ssize_t c, double mean, double var, const double *w, const double *b,
                       double eps, int f32, double *invstd, double *scale, double *shift)
    void mdl_bn_apply_f32(const float *x, float *y, Py_ssize_t rows, Py_ssize_t stride,
                          Py_ssize_t L, float mul, float add, int relu)
    void mdl_bn_apply_f64(const double *x, double *y, Py_ssize_t rows, Py_ssize_t stride,
                          Py_ssize_t L, double mul, double add, int relu)
    void mdl_bn_input_grad_f32(const float *g, const float *x, int relu, float amul, float aadd,
                               float *gx, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L,
                               float m, float mg, float proj, float mul, int batch_stats)
    void mdl_bn_input_grad_f64(const double *g, const double *x, int relu, double amul,
                               double aadd, double *gx, Py_ssize_t rows, Py_ssize_t stride,
                               Py_ssize_t L, double m, double mg, double proj, double mul,
                               int batch_stats)

# A chunk holds about this many elements of one channel: 16 KB of float32, so the centered
# second pass over it is served from L1.
cdef Py_ssize_t CHUNK_ELEMS = 4096
# Below this many elements a kernel runs on one thread: a parallel loop costs ~1 us.
cdef Py_ssize_t MIN_PARALLEL_ELEMS = 32768


cdef struct _Bn:
    # One parallel loop over (channel, chunk) work items (or whole channels, _per_channel) of
    # x, g and y (or gx): (N, C, L) of one float dtype, `rows` images per chunk; relu: the fused
    # ReLU (forward: applied; backward: its mask, from x * scale + shift); per-channel float64
    # vectors; weight, bias: the affine parameters or NULL; part: the (C * chunks, 2) partial
    # sums.
    bint f64, batch_stats, relu
    const void *x
    const void *g
    void *y
    double *mean
    double *var
    double *invstd
    double *scale
    double *shift
    const double *weight
    const double *bias
    double eps
    double *sum_g
    double *sum_gxc
    double *part
    Py_ssize_t N, C, L, rows, chunks


cpdef Py_ssize_t chunk_rows(Py_ssize_t L):
    """Images per chunk for rows of length L (>= 1): depends on the shape only."""
    if L >= CHUNK_ELEMS:
        return 1
    return CHUNK_ELEMS // max(L, 1)


cdef inline int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_ELEMS else 1


cdef inline bint _per_channel(Py_ssize_t C, int nt) noexcept nogil:
    """Whole channels as work items: on one thread, or with at least 4 channels per thread (a
    channel more or less per thread then costs at most a quarter of the time). Fewer channels
    (one with a large batch) keep the (channel, chunk) items, which share out any shape."""
    return nt == 1 or C >= 4 * nt


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


cdef inline void _dots(const real *g, const real *x, bint relu, real amul, real aadd,
                       Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t L, double m, double *sum_g,
                       double *sum_gx) noexcept nogil:
    if real is float:
        mdl_bn_dots_f32(g, x, relu, amul, aadd, rows, stride, L, m, sum_g, sum_gx)
    else:
        mdl_bn_dots_f64(g, x, relu, amul, aadd, rows, stride, L, m, sum_g, sum_gx)


def _check(str op, x, *others):
    """x (N, C, L) C-contiguous float32/float64; `others` as for _check_arrays."""
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: expected a 3-D float32/float64 array (N, C, L), got "
                        f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{op}: x must be C-contiguous")
    _check_arrays(op, *others)


def _check_arrays(str op, *others):
    """`others`: (name, array or None, shape, dtype) tuples; each array must be C-contiguous
    of that shape and dtype."""
    for name, a, shape, dtype in others:
        if a is None:
            continue
        if (not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype
                or not a.flags.c_contiguous):
            raise ValueError(
                f"{op}: {name} must be a C-contiguous {np.dtype(dtype)} array of shape {shape}, "
                f"got {getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}"
            )


def batch_norm_forward(x, weight, bias, double eps, mean, var, invstd, scale, shift, y,
                       bint batch_stats, int n_threads, bint relu=False) -> None:
    """Per-channel normalization of x (N, C, L) into y (its shape and dtype; y may be x):
    y = x * scale + shift, then max(., 0) with relu (a fused ReLU: NaN stays NaN).

    batch_stats: the mean and biased variance of each channel of x are written into mean, var
    ((C,) float64): each chunk is summed around its own mean (two passes over an L1-resident
    chunk) and the chunks are merged in order with Chan et al.'s pairwise update, which keeps
    the variance accurate when |mean| >> std; N * L must be >= 1. Otherwise mean and var are
    read (running statistics). invstd, scale, shift ((C,) float64) are written as
    batch_norm_affine computes them from mean, var, weight, bias ((C,) float64 or None) and eps.
    """
    C = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
    vec = (C,)
    _check("batch_norm_forward", x, ("weight", weight, vec, np.float64),
           ("bias", bias, vec, np.float64), ("mean", mean, vec, np.float64),
           ("var", var, vec, np.float64), ("invstd", invstd, vec, np.float64),
           ("scale", scale, vec, np.float64), ("shift", shift, vec, np.float64),
           ("y", y, x.shape, x.dtype))
    for name, a in (("mean", mean), ("var", var), ("invstd", invstd), ("scale", scale),
                    ("shift", shift), ("y", y)):
        if a is None:
            raise ValueError(f"batch_norm_forward: {name} is required")
    if batch_stats and x.shape[0] * x.shape[2] == 0:
        raise ValueError(f"batch_norm_forward: no values per channel in x of shape {x.shape}")
    if C == 0:
        return
    rows = chunk_rows(x.shape[2])
    chunks = (x.shape[0] + rows - 1) // rows
    part = np.empty(2 * C * chunks if batch_stats else 1, dtype=np.float64)
    if x.dtype == np.float32:
        _forward[float](x, weight, bias, eps, mean, var, invstd, scale, shift, y, part, rows,
                        chunks, batch_stats, relu, n_threads)
    else:
        _forward[double](x, weight, bias, eps, mean, var, invstd, scale, shift, y, part, rows,
                         chunks, batch_stats, relu, n_threads)


def batch_norm_affine(mean, var, weight, bias, double eps, dtype):
    """(invstd, scale, shift) (C,) float64 of y = x * scale + shift for inputs of `dtype` from
    mean, var, weight, bias ((C,) float64; weight, bias may be None): invstd = 1 / sqrt(var +
    eps) in that dtype's precision (float32 inputs get a float32 one, as in PyTorch), scale =
    invstd * weight, shift = bias - mean * scale, exactly as batch_norm_forward has them."""
    if not isinstance(mean, np.ndarray) or mean.ndim != 1:
        raise ValueError(f"batch_norm_affine: mean must be a 1-D float64 array, got "
                         f"{getattr(mean, 'dtype', type(mean))} {getattr(mean, 'shape', '')}")
    C = mean.shape[0]
    _check_arrays("batch_norm_affine", ("mean", mean, (C,), np.float64),
                  ("var", var, (C,), np.float64), ("weight", weight, (C,), np.float64),
                  ("bias", bias, (C,), np.float64))
    if var is None:
        raise ValueError("batch_norm_affine: var is required")
    invstd, scale, shift = np.empty(C), np.empty(C), np.empty(C)
    cdef double[::1] m = mean, v = var, i = invstd, s = scale, t = shift
    cdef const double[::1] wv, bv
    cdef const double *wp = NULL
    cdef const double *bp = NULL
    if weight is not None:
        wv = weight
        wp = &wv[0] if C > 0 else NULL
    if bias is not None:
        bv = bias
        bp = &bv[0] if C > 0 else NULL
    cdef int f32 = np.dtype(dtype) == np.float32
    cdef Py_ssize_t c
    for c in range(C):
        mdl_bn_affine(c, m[c], v[c], wp, bp, eps, f32, &i[0], &s[0], &t[0])
    return invstd, scale, shift


cdef void _forward(const real[:, :, ::1] x, weight, bias, double eps, double[::1] mean,
                   double[::1] var, double[::1] invstd, double[::1] scale, double[::1] shift,
                   real[:, :, ::1] y, double[::1] part, Py_ssize_t rows, Py_ssize_t chunks,
                   bint batch_stats, bint relu, int n_threads) except *:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], c
    cdef const double[::1] wv, bv
    cdef const double *wp = NULL
    cdef const double *bp = NULL
    if weight is not None:
        wv = weight
        wp = &wv[0]
    if bias is not None:
        bv = bias
        bp = &bv[0]
    cdef bint empty = N * L == 0
    cdef const real *xp = NULL
    cdef real *yp = NULL
    if not empty:
        xp = &x[0, 0, 0]
        yp = &y[0, 0, 0]
    cdef _Bn a = _Bn(f64=real is double, batch_stats=batch_stats, relu=relu, x=xp, g=NULL, y=yp,
                     mean=&mean[0], var=&var[0], invstd=&invstd[0], scale=&scale[0],
                     shift=&shift[0], weight=wp, bias=bp, eps=eps, sum_g=NULL, sum_gxc=NULL,
                     part=&part[0], N=N, C=C, L=L, rows=rows, chunks=chunks)
    cdef int nt = _threads(N * C * L, n_threads)
    with nogil:
        if empty:  # eval mode on an empty batch: only the affine map
            for c in range(C):
                _channel_affine(&a, c)
        elif _per_channel(C, nt):
            parallel_for(_forward_channels_task, &a, C, nt)
        else:
            if batch_stats:
                parallel_for(_stats_task, &a, C * chunks, nt)
            for c in range(C):
                _channel_affine(&a, c)
            parallel_for(_apply_task, &a, C * chunks, nt)


cdef inline void _channel_affine(_Bn *a, Py_ssize_t c) noexcept nogil:
    """Channel c's mean and variance from its chunks' partials (with batch statistics), then
    its invstd, scale and shift."""
    cdef Py_ssize_t k, n0
    cdef double count, n_a, mean_a, m2_a, n_b, delta
    cdef const double *pp = a.part + 2 * c * a.chunks
    if a.batch_stats:
        n_a = 0
        mean_a = 0
        m2_a = 0
        for k in range(a.chunks):
            n0 = k * a.rows
            n_b = (min(a.N, n0 + a.rows) - n0) * a.L
            count = n_a + n_b
            delta = pp[2 * k] - mean_a
            mean_a = mean_a + delta * n_b / count
            m2_a = m2_a + pp[2 * k + 1] + delta * delta * n_a * n_b / count
            n_a = count
        a.mean[c] = mean_a
        a.var[c] = m2_a / n_a
    mdl_bn_affine(c, a.mean[c], a.var[c], a.weight, a.bias, a.eps, not a.f64, a.invstd, a.scale,
                  a.shift)


cdef void _forward_channels_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                 int worker) noexcept nogil:
    """Channels [begin, end), each summed, normalized and applied in turn."""
    cdef _Bn *a = <_Bn *>args
    cdef Py_ssize_t c
    for c in range(begin, end):
        if a.batch_stats:
            _stats_task(args, c * a.chunks, (c + 1) * a.chunks, worker)
        _channel_affine(a, c)
        _apply_task(args, c * a.chunks, (c + 1) * a.chunks, worker)


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
                        int n_threads, relu_shift=None) -> None:
    """Sums for the parameter gradients and, if gx is given, the input gradient.

    x, g, gx: (N, C, L) of one float dtype; mean, invstd, scale (= invstd * weight, or invstd
    without weight), sum_g, sum_gxc: (C,) float64. relu_shift ((C,) float64): the forward's
    shift when it had the fused ReLU, or None: g is then taken as 0 where the forward's output
    x * scale + shift (as batch_norm_forward computed it) was <= 0, as ReLU's backward does on
    that output. Writes
    sum_g[c] = sum of g and sum_gxc[c] = sum of g * (x - mean) over channel c, then
        batch_stats: gx = (g - sum_g / M - (x - mean) * invstd^2 * sum_gxc / M) * scale
                     (M = N * L: the mean and variance were taken from this batch)
        otherwise:   gx = g * scale.
    """
    C = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
    vec = (C,)
    _check("batch_norm_backward", x, ("g", g, x.shape, x.dtype), ("gx", gx, x.shape, x.dtype),
           ("relu_shift", relu_shift, vec, np.float64), ("mean", mean, vec, np.float64),
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
        _backward[float](x, g, relu_shift, mean, invstd, scale, gx, sum_g, sum_gxc, part, rows,
                         chunks, batch_stats, n_threads)
    else:
        _backward[double](x, g, relu_shift, mean, invstd, scale, gx, sum_g, sum_gxc, part, rows,
                          chunks, batch_stats, n_threads)


cdef void _backward(const real[:, :, ::1] x, const real[:, :, ::1] g, relu_shift,
                    const double[::1] mean, const double[::1] invstd, const double[::1] scale,
                    gx, double[::1] sum_g, double[::1] sum_gxc, double[::1] part,
                    Py_ssize_t rows, Py_ssize_t chunks, bint batch_stats,
                    int n_threads) except *:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], c
    cdef double *pp = &part[0]
    cdef int nt = _threads(N * C * L, n_threads)
    cdef const double[::1] shift_view
    cdef real[:, :, ::1] gx_view
    cdef const double *sp = NULL
    cdef real *gxp = NULL
    if relu_shift is not None:
        shift_view = relu_shift
        sp = &shift_view[0]
    if gx is not None:
        gx_view = gx
        gxp = &gx_view[0, 0, 0]
    # The per-channel vectors are only read here (the casts fit _Bn's fields, which forward
    # writes).
    cdef _Bn a = _Bn(f64=real is double, batch_stats=batch_stats, relu=sp != NULL,
                     x=&x[0, 0, 0], g=&g[0, 0, 0], y=gxp, mean=<double *>&mean[0], var=NULL,
                     invstd=<double *>&invstd[0], scale=<double *>&scale[0], shift=<double *>sp,
                     weight=NULL, bias=NULL, eps=0, sum_g=&sum_g[0], sum_gxc=&sum_gxc[0],
                     part=pp, N=N, C=C, L=L, rows=rows, chunks=chunks)
    with nogil:
        if _per_channel(C, nt):
            parallel_for(_backward_channels_task, &a, C, nt)
            return
        parallel_for(_backward_sums_task, &a, C * chunks, nt)
        for c in range(C):
            _channel_sums(&a, c)
        if gxp == NULL:
            return
        parallel_for(_backward_input_task, &a, C * chunks, nt)


cdef inline void _channel_sums(_Bn *a, Py_ssize_t c) noexcept nogil:
    """Channel c's sums of g and g * (x - mean), its chunks' partials added in order."""
    cdef Py_ssize_t k
    cdef double sg = 0, sgx = 0
    cdef const double *pp = a.part + 2 * c * a.chunks
    for k in range(a.chunks):
        sg = sg + pp[2 * k]
        sgx = sgx + pp[2 * k + 1]
    a.sum_g[c] = sg
    a.sum_gxc[c] = sgx


cdef void _backward_channels_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                  int worker) noexcept nogil:
    """Channels [begin, end), each summed, then (if gx is wanted) its input gradient."""
    cdef _Bn *a = <_Bn *>args
    cdef Py_ssize_t c
    for c in range(begin, end):
        _backward_sums_task(args, c * a.chunks, (c + 1) * a.chunks, worker)
        _channel_sums(a, c)
        if a.y != NULL:
            _backward_input_task(args, c * a.chunks, (c + 1) * a.chunks, worker)


cdef void _backward_sums_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                              int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _backward_sums_items(<const double *>a.x, <const double *>a.g, a, begin, end)
    else:
        _backward_sums_items(<const float *>a.x, <const float *>a.g, a, begin, end)


cdef inline void _backward_sums_items(const real *xp, const real *gp, const _Bn *a,
                                      Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    """Sums of g and g * (x - mean) of (channel, chunk) items [begin, end)."""
    cdef Py_ssize_t item, c, n0, off, C = a.C, L = a.L
    for item in range(begin, end):
        c = item // a.chunks
        n0 = (item % a.chunks) * a.rows
        off = (n0 * C + c) * L
        _dots(gp + off, xp + off, a.relu, <real>a.scale[c], <real>a.shift[c] if a.relu else 0,
              min(a.N, n0 + a.rows) - n0, C * L, L, a.mean[c], &a.part[2 * item],
              &a.part[2 * item + 1])


cdef void _backward_input_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    cdef _Bn *a = <_Bn *>args
    if a.f64:
        _backward_input_items(<const double *>a.x, <const double *>a.g, <double *>a.y, a, begin,
                              end)
    else:
        _backward_input_items(<const float *>a.x, <const float *>a.g, <float *>a.y, a, begin,
                              end)


cdef inline void _backward_input_items(const real *xp, const real *gp, real *gxp, const _Bn *a,
                                       Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
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
            mdl_bn_input_grad_f32(gp + off, xp + off, a.relu, <float>a.scale[c],
                                  <float>a.shift[c] if a.relu else 0, gxp + off,
                                  min(a.N, n0 + a.rows) - n0, C * L, L, m, mg, proj,
                                  <float>a.scale[c], a.batch_stats)
        else:
            mdl_bn_input_grad_f64(gp + off, xp + off, a.relu, a.scale[c],
                                  a.shift[c] if a.relu else 0, gxp + off,
                                  min(a.N, n0 + a.rows) - n0, C * L, L, m, mg, proj, a.scale[c],
                                  a.batch_stats)
