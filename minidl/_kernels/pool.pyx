# cython: language_level=3
"""Pooling kernels over C-contiguous NCHW float32/float64 buffers, forward and backward.

Every kernel is parallel over (n, c) planes only: a plane has one owner, so the backward scatters
(overlapping windows add into the same input element) need no atomics and sum in the same order
for any thread count, whichever thread of minidl's pool runs a plane. Window geometry (output
size, ceil_mode) is decided by the op layer; here a window of output (oh, ow) starts at
(oh * sh - ph, ow * sw - pw) and is clipped to the input.
"""

from libc.math cimport INFINITY
from libc.string cimport memset

from minidl._kernels.bounds cimport first_valid
from minidl._kernels.pool_kernels cimport (first_bad_index, max_pool_2x2_f32,
                                           max_unpool_2x2_f32)
from minidl._kernels.threadpool cimport parallel_for
from minidl._kernels.types cimport real

# Below this many input elements a kernel runs on one thread: a parallel loop costs ~1 us,
# the time to pool ~10^4 elements.
cdef Py_ssize_t MIN_PARALLEL_ELEMS = 32768


cdef inline int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_ELEMS else 1


cdef struct _Planes:
    # One parallel loop over (n, c) planes: src and dst point at plane 0 of the input and
    # output (or of the output and input gradients), index at the argmax planes.
    bint f64
    const void *src
    void *dst
    long long *index
    Py_ssize_t planes, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw
    bint count_include_pad


cdef int _check_planes(str op, const Py_ssize_t *a, const Py_ssize_t *b) except -1:
    """Two 4-D buffers hold the same (N, C) planes: the kernels walk both plane by plane."""
    if a[0] != b[0] or a[1] != b[1]:
        raise ValueError(f"{op}: arrays of shapes {[a[i] for i in range(4)]} and "
                         f"{[b[i] for i in range(4)]} do not have the same (N, C)")
    return 0


cdef int _check_same(str op, str name_a, const Py_ssize_t *a, str name_b,
                     const Py_ssize_t *b) except -1:
    if a[0] != b[0] or a[1] != b[1] or a[2] != b[2] or a[3] != b[3]:
        raise ValueError(f"{op}: {name_a} has shape {[a[i] for i in range(4)]}, {name_b} "
                         f"{[b[i] for i in range(4)]}; they must match")
    return 0


cdef void _max_pool_plane(const real *x, real *out, long long *index,
                          Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                          Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                          Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                          Py_ssize_t dw) noexcept nogil:
    cdef Py_ssize_t oh, ow, kh, kw, kh0, kw0, ih, iw, h0, w0, best_i
    cdef real best, v
    for oh in range(OH):
        h0 = oh * sh - ph
        kh0 = first_valid(h0, dh)
        for ow in range(OW):
            w0 = ow * sw - pw
            kw0 = first_valid(w0, dw)
            # -inf with no index when the (dilated, padded) window misses the input entirely.
            best = -INFINITY
            best_i = -1
            for kh in range(kh0, KH):
                ih = h0 + kh * dh
                if ih >= H:
                    break
                for kw in range(kw0, KW):
                    iw = w0 + kw * dw
                    if iw >= W:
                        break
                    v = x[ih * W + iw]
                    # Strictly greater keeps the first maximum on ties; a NaN always wins and
                    # propagates (PyTorch does the same).
                    if v > best or v != v or best_i < 0:
                        best = v
                        best_i = ih * W + iw
            out[oh * OW + ow] = best
            index[oh * OW + ow] = best_i


def max_pool2d_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] out,
                       long long[:, :, :, ::1] index, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """out[n, c, oh, ow] = max over the window; index = flat h * W + w of the first maximum.

    x: (N, C, H, W); out, index: (N, C, OH, OW) with index int64 (PyTorch's return_indices).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    _check_planes("max_pool2d_forward", x.shape, out.shape)
    _check_same("max_pool2d_forward", "index", index.shape, "out", out.shape)
    if N * C == 0 or OH * OW == 0:
        return
    cdef int nt = _threads(N * C * H * W, n_threads)
    cdef _Planes a = _Planes(f64=real is double, src=&x[0, 0, 0, 0], dst=&out[0, 0, 0, 0],
                             index=&index[0, 0, 0, 0], planes=N * C, H=H, W=W, OH=OH, OW=OW,
                             KH=KH, KW=KW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                             count_include_pad=False)
    with nogil:
        parallel_for(_max_pool_task, &a, N * C, nt)


cdef void _max_pool_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                         int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    if a.f64:
        _max_pool_planes(<const double *>a.src, <double *>a.dst, a, begin, end)
    else:
        _max_pool_planes(<const float *>a.src, <float *>a.dst, a, begin, end)


cdef inline void _max_pool_planes(const real *x, real *out, const _Planes *a, Py_ssize_t begin,
                                  Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t p
    for p in range(begin, end):
        _max_pool_plane(x + p * a.H * a.W, out + p * a.OH * a.OW, a.index + p * a.OH * a.OW,
                        a.H, a.W, a.OH, a.OW, a.KH, a.KW, a.sh, a.sw, a.ph, a.pw, a.dh, a.dw)


def max_pool2d_backward(const real[:, :, :, ::1] grad_out, const long long[:, :, :, ::1] index,
                        real[:, :, :, ::1] grad_x, int n_threads):
    """grad_x (N, C, H, W) = scatter-add of grad_out (N, C, OH, OW) to the stored argmaxes.

    Every index must be -1 (a window that missed the input: no gradient) or in [0, H * W);
    ValueError otherwise, before anything is written.
    """
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t HW = grad_x.shape[2] * grad_x.shape[3]
    cdef Py_ssize_t OHW = grad_out.shape[2] * grad_out.shape[3], i
    _check_planes("max_pool2d_backward", grad_x.shape, grad_out.shape)
    _check_same("max_pool2d_backward", "index", index.shape, "grad_out",
                grad_out.shape)
    if N * C == 0 or HW == 0:
        return
    cdef int nt = _threads(N * C * HW, n_threads)
    cdef const real *gp = &grad_out[0, 0, 0, 0] if OHW else NULL
    cdef const long long *ip = &index[0, 0, 0, 0] if OHW else NULL
    cdef Py_ssize_t bad
    with nogil:
        bad = first_bad_index(ip, N * C * OHW, HW)
    if bad >= 0:
        raise ValueError(f"max_pool2d_backward: index {ip[bad]} at flat position {bad} is outside [-1, {HW}) for a {grad_x.shape[2]}x"
                         f"{grad_x.shape[3]} input plane")
    cdef _Planes a = _Planes(f64=real is double, src=gp, dst=&grad_x[0, 0, 0, 0],
                             index=<long long *>ip, planes=N * C, H=grad_x.shape[2],
                             W=grad_x.shape[3], OH=grad_out.shape[2], OW=grad_out.shape[3],
                             KH=0, KW=0, sh=0, sw=0, ph=0, pw=0, dh=0, dw=0,
                             count_include_pad=False)
    with nogil:
        parallel_for(_max_unpool_task, &a, N * C, nt)


cdef void _max_unpool_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                           int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    if a.f64:
        _max_unpool_planes(<const double *>a.src, <double *>a.dst, a, begin, end)
    else:
        _max_unpool_planes(<const float *>a.src, <float *>a.dst, a, begin, end)


cdef inline void _max_unpool_planes(const real *gp, real *gx, const _Planes *a,
                                    Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    """grad_x planes [begin, end): zero, then each output gradient added at its argmax (the
    index array is only read: its type is shared with the forward)."""
    cdef Py_ssize_t HW = a.H * a.W, OHW = a.OH * a.OW, p, i, j
    cdef real *plane
    for p in range(begin, end):
        plane = gx + p * HW
        for i in range(HW):
            plane[i] = 0
        for i in range(OHW):
            j = a.index[p * OHW + i]
            if j >= 0:
                plane[j] += gp[p * OHW + i]


cdef struct _Pool2x2:
    # One parallel loop of the 2x2 stride-2 kernels over groups of 32 output rows (an output
    # row costs ~10-100 ns): src and dst the input and output (or the output and input
    # gradients), code the window codes (uint8, NULL when not wanted).
    const float *src
    float *dst
    unsigned char *code
    Py_ssize_t H, W, OH, OW, blocks


def max_pool2d_2x2_forward(const float[:, :, :, ::1] x, float[:, :, :, ::1] out, code,
                           int n_threads):
    """out (N, C, H // 2, W // 2) = max over each 2x2 window of x (N, C, H, W), float32; code
    (uint8, out's shape, or None) = the position of each window's first maximum, 0 1 / 2 3
    row-major (max_pool2d_2x2_backward's input; PyTorch's flat index is
    (2 oh + code // 2) * W + 2 ow + code % 2)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef unsigned char[:, :, :, ::1] cv
    cdef _Pool2x2 a
    if (out.shape[0] != N or out.shape[1] != C or out.shape[2] != H // 2
            or out.shape[3] != W // 2):
        raise ValueError(f"max_pool2d_2x2_forward: out has shape "
                         f"{[out.shape[i] for i in range(4)]}, expected "
                         f"{[N, C, H // 2, W // 2]} for an input of shape "
                         f"{[x.shape[i] for i in range(4)]}")
    a.code = NULL
    if code is not None:
        cv = code
        _check_same("max_pool2d_2x2_forward", "code", cv.shape, "out", out.shape)
        if cv.size:
            a.code = &cv[0, 0, 0, 0]
    if out.size == 0:
        return
    a.src, a.dst = &x[0, 0, 0, 0], &out[0, 0, 0, 0]
    a.H, a.W, a.OH, a.OW, a.blocks = H, W, H // 2, W // 2, N * C * (H // 2)
    with nogil:
        parallel_for(_max_pool_2x2_task, &a, (a.blocks + 31) // 32,
                     _threads(N * C * H * W, n_threads))


cdef void _max_pool_2x2_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                             int worker) noexcept nogil:
    cdef _Pool2x2 *a = <_Pool2x2 *>args
    max_pool_2x2_f32(a.src, a.dst, a.code, a.H, a.W, a.OH, a.OW, begin * 32,
                     min(end * 32, a.blocks))


def max_pool2d_2x2_backward(const float[:, :, :, ::1] grad_out,
                            const unsigned char[:, :, :, ::1] code, float[:, :, :, ::1] grad_x,
                            int n_threads):
    """grad_x (N, C, H, W) = the gradient of max_pool2d_2x2_forward: each grad_out element at
    its window's code position, 0 elsewhere (one pass: the windows do not overlap). Codes above
    3 (never written by the forward) name no element."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3]
    if (grad_out.shape[0] != N or grad_out.shape[1] != C or grad_out.shape[2] != H // 2
            or grad_out.shape[3] != W // 2):
        raise ValueError(f"max_pool2d_2x2_backward: grad_out has shape "
                         f"{[grad_out.shape[i] for i in range(4)]}, expected "
                         f"{[N, C, H // 2, W // 2]} for a grad_x of shape "
                         f"{[grad_x.shape[i] for i in range(4)]}")
    _check_same("max_pool2d_2x2_backward", "code", code.shape, "grad_out", grad_out.shape)
    cdef Py_ssize_t count = N * C * H * W
    if count == 0:
        return
    if grad_out.size == 0:  # windows cover nothing (H or W below 2)
        with nogil:
            memset(&grad_x[0, 0, 0, 0], 0, count * sizeof(float))
        return
    cdef _Pool2x2 a = _Pool2x2(src=&grad_out[0, 0, 0, 0], dst=&grad_x[0, 0, 0, 0],
                               code=<unsigned char *>&code[0, 0, 0, 0], H=H, W=W, OH=H // 2,
                               OW=W // 2, blocks=N * C * (H // 2))
    with nogil:
        parallel_for(_max_unpool_2x2_task, &a, (a.blocks + 31) // 32,
                     _threads(count, n_threads))


cdef void _max_unpool_2x2_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    cdef _Pool2x2 *a = <_Pool2x2 *>args
    max_unpool_2x2_f32(a.src, a.code, a.dst, a.H, a.W, a.OH, a.OW, begin * 32,
                       min(end * 32, a.blocks))


cdef inline Py_ssize_t _avg_divisor(Py_ssize_t h0, Py_ssize_t w0, Py_ssize_t KH, Py_ssize_t KW,
                                    Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw,
                                    bint count_include_pad) noexcept nogil:
    """PyTorch's divisor: the window clipped to the padded input, or to the input itself."""
    cdef Py_ssize_t h1 = min(h0 + KH, H + ph), w1 = min(w0 + KW, W + pw)
    if count_include_pad:
        return (h1 - h0) * (w1 - w0)
    return (min(h1, H) - max(h0, 0)) * (min(w1, W) - max(w0, 0))


cdef void _avg_pool_plane(const real *x, real *out, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                          bint count_include_pad) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, w0, div
    cdef real s
    for oh in range(OH):
        h0 = oh * sh - ph
        for ow in range(OW):
            w0 = ow * sw - pw
            div = _avg_divisor(h0, w0, KH, KW, H, W, ph, pw, count_include_pad)
            s = 0
            for ih in range(max(h0, 0), min(h0 + KH, H)):
                for iw in range(max(w0, 0), min(w0 + KW, W)):
                    s = s + x[ih * W + iw]
            out[oh * OW + ow] = s / div if div > 0 else 0


def avg_pool2d_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] out,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ph, Py_ssize_t pw, bint count_include_pad, int n_threads):
    """out (N, C, OH, OW) = window sums of x (N, C, H, W) / PyTorch's divisor."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    _check_planes("avg_pool2d_forward", x.shape, out.shape)
    if N * C == 0 or OH * OW == 0:
        return
    cdef _Planes a = _Planes(f64=real is double, src=&x[0, 0, 0, 0], dst=&out[0, 0, 0, 0],
                             index=NULL, planes=N * C, H=H, W=W, OH=OH, OW=OW, KH=KH, KW=KW,
                             sh=sh, sw=sw, ph=ph, pw=pw, dh=1, dw=1,
                             count_include_pad=count_include_pad)
    with nogil:
        parallel_for(_avg_pool_task, &a, N * C, _threads(N * C * H * W, n_threads))


cdef void _avg_pool_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                         int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    if a.f64:
        _avg_pool_planes(<const double *>a.src, <double *>a.dst, a, begin, end)
    else:
        _avg_pool_planes(<const float *>a.src, <float *>a.dst, a, begin, end)


cdef inline void _avg_pool_planes(const real *x, real *out, const _Planes *a, Py_ssize_t begin,
                                  Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t p
    for p in range(begin, end):
        _avg_pool_plane(x + p * a.H * a.W, out + p * a.OH * a.OW, a.H, a.W, a.OH, a.OW, a.KH,
                        a.KW, a.sh, a.sw, a.ph, a.pw, a.count_include_pad)


cdef void _avg_pool_plane_backward(const real *gy, real *gx, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW,
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                   bint count_include_pad) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, w0, div
    cdef real g
    for ih in range(H * W):
        gx[ih] = 0
    for oh in range(OH):
        h0 = oh * sh - ph
        for ow in range(OW):
            w0 = ow * sw - pw
            div = _avg_divisor(h0, w0, KH, KW, H, W, ph, pw, count_include_pad)
            if div <= 0:
                continue
            g = gy[oh * OW + ow] / div
            for ih in range(max(h0, 0), min(h0 + KH, H)):
                for iw in range(max(w0, 0), min(w0 + KW, W)):
                    gx[ih * W + iw] += g


def avg_pool2d_backward(const real[:, :, :, ::1] grad_out, real[:, :, :, ::1] grad_x,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t ph, Py_ssize_t pw, bint count_include_pad, int n_threads):
    """grad_x (N, C, H, W): each grad_out element spread evenly over its window."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3]
    _check_planes("avg_pool2d_backward", grad_x.shape, grad_out.shape)
    if N * C == 0 or H * W == 0:
        return
    cdef const real *gp = &grad_out[0, 0, 0, 0] if OH * OW else NULL
    cdef _Planes a = _Planes(f64=real is double, src=gp, dst=&grad_x[0, 0, 0, 0], index=NULL,
                             planes=N * C, H=H, W=W, OH=OH, OW=OW, KH=KH, KW=KW, sh=sh, sw=sw,
                             ph=ph, pw=pw, dh=1, dw=1, count_include_pad=count_include_pad)
    with nogil:
        parallel_for(_avg_unpool_task, &a, N * C, _threads(N * C * H * W, n_threads))


cdef void _avg_unpool_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                           int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    if a.f64:
        _avg_unpool_planes(<const double *>a.src, <double *>a.dst, a, begin, end)
    else:
        _avg_unpool_planes(<const float *>a.src, <float *>a.dst, a, begin, end)


cdef inline void _avg_unpool_planes(const real *gy, real *gx, const _Planes *a,
                                    Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t p
    for p in range(begin, end):
        _avg_pool_plane_backward(gy + p * a.OH * a.OW, gx + p * a.H * a.W, a.H, a.W, a.OH,
                                 a.OW, a.KH, a.KW, a.sh, a.sw, a.ph, a.pw, a.count_include_pad)


cdef void _adaptive_plane(const real *x, real *out, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real s
    for oh in range(OH):
        h0 = (oh * H) // OH
        h1 = ((oh + 1) * H + OH - 1) // OH
        for ow in range(OW):
            w0 = (ow * W) // OW
            w1 = ((ow + 1) * W + OW - 1) // OW
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s = s + x[ih * W + iw]
            out[oh * OW + ow] = s / ((h1 - h0) * (w1 - w0))


def adaptive_avg_pool2d_forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] out,
                                int n_threads):
    """out (N, C, OH, OW): mean over PyTorch's adaptive windows, rows
    [floor(o * H / OH), ceil((o + 1) * H / OH)), likewise columns."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    _check_planes("adaptive_avg_pool2d_forward", x.shape, out.shape)
    if N * C == 0 or OH * OW == 0:
        return
    cdef _Planes a = _Planes(f64=real is double, src=&x[0, 0, 0, 0], dst=&out[0, 0, 0, 0],
                             index=NULL, planes=N * C, H=H, W=W, OH=OH, OW=OW, KH=0, KW=0, sh=0,
                             sw=0, ph=0, pw=0, dh=0, dw=0, count_include_pad=False)
    with nogil:
        parallel_for(_adaptive_task, &a, N * C, _threads(N * C * H * W, n_threads))


cdef void _adaptive_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                         int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    cdef Py_ssize_t p
    for p in range(begin, end):
        if a.f64:
            _adaptive_plane(<const double *>a.src + p * a.H * a.W,
                            <double *>a.dst + p * a.OH * a.OW, a.H, a.W, a.OH, a.OW)
        else:
            _adaptive_plane(<const float *>a.src + p * a.H * a.W,
                            <float *>a.dst + p * a.OH * a.OW, a.H, a.W, a.OH, a.OW)


cdef void _adaptive_plane_backward(const real *gy, real *gx, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef real g
    for ih in range(H * W):
        gx[ih] = 0
    for oh in range(OH):
        h0 = (oh * H) // OH
        h1 = ((oh + 1) * H + OH - 1) // OH
        for ow in range(OW):
            w0 = (ow * W) // OW
            w1 = ((ow + 1) * W + OW - 1) // OW
            g = gy[oh * OW + ow] / ((h1 - h0) * (w1 - w0))
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    gx[ih * W + iw] += g


def adaptive_avg_pool2d_backward(const real[:, :, :, ::1] grad_out, real[:, :, :, ::1] grad_x,
                                 int n_threads):
    """grad_x (N, C, H, W) from grad_out (N, C, OH, OW) of adaptive_avg_pool2d_forward."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3]
    _check_planes("adaptive_avg_pool2d_backward", grad_x.shape, grad_out.shape)
    if N * C == 0 or H * W == 0:
        return
    cdef _Planes a = _Planes(f64=real is double, src=&grad_out[0, 0, 0, 0],
                             dst=&grad_x[0, 0, 0, 0], index=NULL, planes=N * C, H=H, W=W, OH=OH,
                             OW=OW, KH=0, KW=0, sh=0, sw=0, ph=0, pw=0, dh=0, dw=0,
                             count_include_pad=False)
    with nogil:
        parallel_for(_adaptive_unpool_task, &a, N * C, _threads(N * C * H * W, n_threads))


cdef void _adaptive_unpool_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                int worker) noexcept nogil:
    cdef _Planes *a = <_Planes *>args
    cdef Py_ssize_t p
    for p in range(begin, end):
        if a.f64:
            _adaptive_plane_backward(<const double *>a.src + p * a.OH * a.OW,
                                     <double *>a.dst + p * a.H * a.W, a.H, a.W, a.OH, a.OW)
        else:
            _adaptive_plane_backward(<const float *>a.src + p * a.OH * a.OW,
                                     <float *>a.dst + p * a.H * a.W, a.H, a.W, a.OH, a.OW)
