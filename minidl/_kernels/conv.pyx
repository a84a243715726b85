# cython: language_level=3
"""2-D convolution kernels over C-contiguous NCHW float32/float64 buffers.

x: (N, C, H, W); weight: (OC, C // groups, KH, KW); out: (N, OC, OH, OW) with
OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1 (likewise OW), decided by the op layer.

Determinism: every output element (of the forward and of each gradient) has one work item that
sums its terms in a fixed order, so results are bitwise identical for any thread count and
whichever thread of minidl's pool (threadpool.pxd) runs the item.
"""

import math
import threading
from collections import namedtuple

import numpy as np

from minidl._kernels import elementwise as _elementwise

from libc.string cimport memcpy, memset

from minidl._kernels.conv_kernels cimport (
    CONV_DW_CHUNK, CONV_DX_IMAGES_CB, conv_col2im_f32, conv_col_range, conv_db_packed_f32,
    conv_direct_f32_rows, conv_dw_f32_tb, conv_dw_packed_f32, conv_dx_images_group,
    conv_dx_images_scratch,
    conv_dw_rows_items, conv_dw_rows_job, conv_dw_rows_plan, conv_dw_rows_run, conv_dw_rows_task,
    conv_im2col_f32, conv_packed_f32_pixels, conv_packed_nb, conv_pad_phases_f32,
    conv_prefetch_image, conv_sum_f32, conv_transpose_grad_f32, conv_unphase_f32,
)
from minidl._kernels.gemm cimport GemmAhead, gemm, gemm_ahead
from minidl._kernels.threadpool cimport parallel_for
from minidl._kernels.types cimport real

# Below this many multiply-adds a kernel runs on one thread: a parallel loop costs ~1 us.
cdef Py_ssize_t MIN_PARALLEL_MACS = 65536


cdef inline int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_MACS else 1


cdef struct _Conv:
    # One parallel loop of a convolution kernel: its arrays (x, weight, bias or NULL, out; or
    # the gradients in their place) and the geometry of the layer.
    bint f64
    const void *x
    const void *w
    const void *bias
    void *out
    Py_ssize_t N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups
    bint relu


# ---------------------------------------------------------------------------------------------
# Generic direct kernels: any stride, padding, dilation, groups and dtype (the fallback). One
# output row per work item; the innermost loop runs along the row (contiguous for stride 1, so
# it vectorizes).
# ---------------------------------------------------------------------------------------------

cdef void _forward_row(const real *x, const real *w, const real *bias, real *out,
                       Py_ssize_t n, Py_ssize_t oc, Py_ssize_t oh,
                       Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OC,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                       bint relu) noexcept nogil:
    cdef Py_ssize_t Cg = C // groups, ic0 = (oc // (OC // groups)) * Cg
    cdef Py_ssize_t icg, kh, kw, ih, iw0, ow, lo, hi
    cdef real *row = out + ((n * OC + oc) * OH + oh) * OW
    cdef const real *xrow
    cdef real wv, b = bias[oc] if bias != NULL else 0
    for ow in range(OW):
        row[ow] = b
    for icg in range(Cg):
        for kh in range(KH):
            ih = oh * sh - ph + kh * dh
            if ih < 0 or ih >= H:
                continue
            xrow = x + ((n * C + ic0 + icg) * H + ih) * W
            for kw in range(KW):
                iw0 = kw * dw - pw
                wv = w[((oc * Cg + icg) * KH + kh) * KW + kw]
                conv_col_range(iw0, sw, W, OW, &lo, &hi)
                for ow in range(lo, hi):
                    row[ow] = row[ow] + wv * xrow[ow * sw + iw0]
    if relu:
        for ow in range(OW):
            if row[ow] < 0:
                row[ow] = 0


cdef void _backward_input_row(const real *gy, const real *w, real *gx,
                              Py_ssize_t n, Py_ssize_t ic, Py_ssize_t ih,
                              Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OC,
                              Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups) noexcept nogil:
    cdef Py_ssize_t Cg = C // groups, OCg = OC // groups
    cdef Py_ssize_t g = ic // Cg, icg = ic - g * Cg
    cdef Py_ssize_t ocg, oc, kh, kw, t, oh, iw0, ow, lo, hi
    cdef real *row = gx + ((n * C + ic) * H + ih) * W
    cdef const real *gyrow
    cdef real wv
    for ow in range(W):
        row[ow] = 0
    for ocg in range(OCg):
        oc = g * OCg + ocg
        for kh in range(KH):
            t = ih + ph - kh * dh
            if t < 0 or t % sh != 0:
                continue
            oh = t // sh
            if oh >= OH:
                continue
            gyrow = gy + ((n * OC + oc) * OH + oh) * OW
            for kw in range(KW):
                iw0 = kw * dw - pw
                wv = w[((oc * Cg + icg) * KH + kh) * KW + kw]
                conv_col_range(iw0, sw, W, OW, &lo, &hi)
                for ow in range(lo, hi):
                    row[ow * sw + iw0] = row[ow * sw + iw0] + wv * gyrow[ow]


cdef void _backward_weight_pair(const real *x, const real *gy, real *gw,
                                Py_ssize_t oc, Py_ssize_t icg, Py_ssize_t N,
                                Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OC,
                                Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups) noexcept nogil:
    cdef Py_ssize_t Cg = C // groups, ic = (oc // (OC // groups)) * Cg + icg
    cdef Py_ssize_t n, kh, kw, oh, ih, iw0, ow, lo, hi
    cdef const real *xrow
    cdef const real *gyrow
    cdef real s
    for kh in range(KH):
        for kw in range(KW):
            iw0 = kw * dw - pw
            conv_col_range(iw0, sw, W, OW, &lo, &hi)
            s = 0
            for n in range(N):
                for oh in range(OH):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H:
                        continue
                    xrow = x + ((n * C + ic) * H + ih) * W
                    gyrow = gy + ((n * OC + oc) * OH + oh) * OW
                    for ow in range(lo, hi):
                        s = s + gyrow[ow] * xrow[ow * sw + iw0]
            gw[((oc * Cg + icg) * KH + kh) * KW + kw] = s


def _generic_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, bias,
                     real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                     Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint relu,
                     int n_threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    cdef const real[::1] bias_view
    cdef const real *bp = NULL
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef _Conv a = _Conv(f64=real is double, x=&x[0, 0, 0, 0], w=&weight[0, 0, 0, 0], bias=bp,
                         out=&out[0, 0, 0, 0], N=N, C=C, H=H, W=W, OC=OC, KH=KH, KW=KW, OH=OH,
                         OW=OW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, groups=groups,
                         relu=relu)
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    with nogil:
        parallel_for(_generic_forward_task, &a, N * OC * OH, nt)


cdef void _generic_forward_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                int worker) noexcept nogil:
    """Output rows [begin, end) of (n, oc, oh)."""
    cdef _Conv *a = <_Conv *>args
    if a.f64:
        _generic_forward_rows(<const double *>a.x, <const double *>a.w,
                              <const double *>a.bias, <double *>a.out, a, begin, end)
    else:
        _generic_forward_rows(<const float *>a.x, <const float *>a.w, <const float *>a.bias,
                              <float *>a.out, a, begin, end)


cdef inline void _generic_forward_rows(const real *x, const real *w, const real *bias,
                                       real *out, const _Conv *a, Py_ssize_t begin,
                                       Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _forward_row(x, w, bias, out, item // (a.OC * a.OH), (item // a.OH) % a.OC,
                     item % a.OH, a.C, a.H, a.W, a.OC, a.KH, a.KW, a.OH, a.OW, a.sh, a.sw,
                     a.ph, a.pw, a.dh, a.dw, a.groups, a.relu)


def _generic_backward_input(const real[:, :, :, ::1] grad_out, const real[:, :, :, ::1] weight,
                            real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t groups, int n_threads):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OC = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef _Conv a = _Conv(f64=real is double, x=&grad_out[0, 0, 0, 0], w=&weight[0, 0, 0, 0],
                         bias=NULL, out=&grad_x[0, 0, 0, 0], N=N, C=C, H=H, W=W, OC=OC, KH=KH,
                         KW=KW, OH=OH, OW=OW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                         groups=groups, relu=False)
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    with nogil:
        parallel_for(_generic_backward_input_task, &a, N * C * H, nt)


cdef void _generic_backward_input_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                       int worker) noexcept nogil:
    """Input-gradient rows [begin, end) of (n, c, h); a.x is the output gradient."""
    cdef _Conv *a = <_Conv *>args
    if a.f64:
        _generic_backward_input_rows(<const double *>a.x, <const double *>a.w,
                                     <double *>a.out, a, begin, end)
    else:
        _generic_backward_input_rows(<const float *>a.x, <const float *>a.w, <float *>a.out,
                                     a, begin, end)


cdef inline void _generic_backward_input_rows(const real *gy, const real *w, real *gx,
                                              const _Conv *a, Py_ssize_t begin,
                                              Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t item
    for item in range(begin, end):
        _backward_input_row(gy, w, gx, item // (a.C * a.H), (item // a.H) % a.C, item % a.H,
                            a.C, a.H, a.W, a.OC, a.KH, a.KW, a.OH, a.OW, a.sh, a.sw, a.ph,
                            a.pw, a.dh, a.dw, a.groups)


def _generic_backward_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] grad_out,
                             real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                             Py_ssize_t groups, int n_threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = grad_w.shape[0], Cg = grad_w.shape[1], KH = grad_w.shape[2]
    cdef Py_ssize_t KW = grad_w.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef _Conv a = _Conv(f64=real is double, x=&x[0, 0, 0, 0], w=&grad_out[0, 0, 0, 0],
                         bias=NULL, out=&grad_w[0, 0, 0, 0], N=N, C=C, H=H, W=W, OC=OC, KH=KH,
                         KW=KW, OH=OH, OW=OW, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                         groups=groups, relu=False)
    cdef int nt = _threads(N * OC * OH * OW * Cg * KH * KW, n_threads)
    with nogil:
        parallel_for(_generic_backward_weight_task, &a, OC * Cg, nt)


cdef void _generic_backward_weight_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                        int worker) noexcept nogil:
    """Weight-gradient (oc, c) pairs [begin, end); a.w is the output gradient."""
    cdef _Conv *a = <_Conv *>args
    if a.f64:
        _generic_backward_weight_pairs(<const double *>a.x, <const double *>a.w,
                                       <double *>a.out, a, begin, end)
    else:
        _generic_backward_weight_pairs(<const float *>a.x, <const float *>a.w,
                                       <float *>a.out, a, begin, end)


cdef inline void _generic_backward_weight_pairs(const real *x, const real *gy, real *gw,
                                                const _Conv *a, Py_ssize_t begin,
                                                Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t item, Cg = a.C // a.groups
    for item in range(begin, end):
        _backward_weight_pair(x, gy, gw, item // Cg, item % Cg, a.N, a.C, a.H, a.W, a.OC, a.KH,
                              a.KW, a.OH, a.OW, a.sh, a.sw, a.ph, a.pw, a.dh, a.dw, a.groups)


# ---------------------------------------------------------------------------------------------
# Direct float32 kernels (conv_kernels.h) for groups 1: the input is first copied into
# zero-padded planes (one per stride phase) whose row pitch lets 16 output pixels load as one
# vector.
# ---------------------------------------------------------------------------------------------

_scratch_store = threading.local()

# Bytes of scratch kept per Python thread between calls. A larger request (a huge batch) gets
# a buffer of its own that is freed when the call returns, so one big call does not leave its
# peak memory resident for the rest of the process.
SCRATCH_CACHE_BYTES = 64 << 20


def _scratch(str name, shape, dtype=np.float32):
    """A reusable uninitialized array for this Python thread: fresh multi-megabyte buffers
    cost a page fault per 4 KiB on every call (~0.1 ms for LeNet's padded batch). Cached only
    while this thread's cache stays within SCRATCH_CACHE_BYTES."""
    buffers = getattr(_scratch_store, "buffers", None)
    if buffers is None:
        buffers = _scratch_store.buffers = {}
    size = math.prod(shape)  # np.prod of a tuple: ~3 us a call
    key = (name, np.dtype(dtype))
    buf = buffers.get(key)
    if buf is None or buf.shape[0] < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        others = sum(b.nbytes for k, b in buffers.items() if k != key)
        if others + buf.nbytes <= SCRATCH_CACHE_BYTES:
            buffers[key] = buf
        else:
            buffers.pop(key, None)
    return buf[:size].reshape(shape)


# Bytes of padded input per image group and thread of the row-vector kernels (see
# _direct_conv): within a core's L2 with room for the weights and outputs.
cdef Py_ssize_t GROUP_BYTES = 512 * 1024


cpdef Py_ssize_t group_bytes(int n_threads) noexcept:
    """Bytes of padded input per image group on n_threads threads: each thread's share within
    its own core's L2. Fewer groups are fewer parallel regions (a LeNet-5 step at 2 threads: 36
    instructions instead of 44); which images share a group never changes a result's bits."""
    return GROUP_BYTES * max(1, n_threads)

# Images per weight-gradient partial sum (conv_kernels.h): fixed, so the batch reduction
# (partials combined in chunk order) gives the same bits for any thread count.
cdef int DW_CHUNK = CONV_DW_CHUNK
# The same, for minidl.static.lower (which sets up these kernels' buffers for a program).
IMAGES_PER_DW_CHUNK = DW_CHUNK


cdef inline Py_ssize_t _row_pitch(Py_ssize_t OW, Py_ssize_t KW, Py_ssize_t dw,
                                  Py_ssize_t sw) noexcept nogil:
    """Row pitch of the padded (phase) planes the row-vector kernels read: whole 16-lane
    vectors of output pixels plus the window's reach in one stride phase."""
    return (OW + 15) // 16 * 16 + (KW - 1) * dw // sw


cdef int _direct_ocb(Py_ssize_t oc):
    """Output channels per row-vector register tile (8, 6, 4 or 1; conv_direct_f32_rows picks
    the tile from it): the one wasting the fewest padded channels, larger first (fewer input
    reloads). The packed weights use it too."""
    cdef int best = 8, b
    cdef Py_ssize_t best_pad = -1
    for b in (8, 6, 4, 1):
        if best_pad < 0 or (oc + b - 1) // b * b < best_pad:
            best, best_pad = b, (oc + b - 1) // b * b
    return best


def _pack_weights(const float[:, :, :, ::1] w, int ocb, bint flip):
    """[OC/ocb][C][KH*KW][ocb] float32 (zero past OC). With flip, the packed kernel is the
    input-gradient one: channels swapped (C' = OC, OC' = C) and taps reversed."""
    cdef Py_ssize_t OC = w.shape[0], C = w.shape[1], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t OCo = C if flip else OC, Ci = OC if flip else C
    cdef Py_ssize_t nblk = (OCo + ocb - 1) // ocb, T = KH * KW
    packed = np.zeros(nblk * Ci * T * ocb, dtype=np.float32)
    cdef float[::1] p = packed
    cdef Py_ssize_t o, c, t
    for o in range(OCo):
        for c in range(Ci):
            for t in range(T):
                p[(((o // ocb) * Ci + c) * T + t) * ocb + o % ocb] = (
                    w[c, o, KH - 1 - t // KW, KW - 1 - t % KW] if flip
                    else w[o, c, t // KW, t % KW])
    return packed


def _pad_planes(str name, const float[:, :, :, ::1] src, relu_out, Py_ssize_t Hp,
                Py_ssize_t Wp, Py_ssize_t top, Py_ssize_t left, Py_ssize_t planes_out,
                Py_ssize_t slack, int n_threads, Py_ssize_t sh=1, Py_ssize_t sw=1):
    """Zero-padded copy into scratch buffer `name`: (N, planes_out) channels (those past src's
    channels zero) of sh * sw stride-phase planes of Hp x Wp each (conv_pad_phases_f32; one
    plane for stride 1) plus `slack` zero floats; elements where relu_out (like src) is <= 0
    become 0 (the fused ReLU's backward; NaN passes, as in torch)."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], H = src.shape[2], W = src.shape[3]
    cdef Py_ssize_t plane = sh * sw * Hp * Wp, i
    buf = _scratch(name, (N * planes_out * plane + slack,))
    cdef float[::1] b = buf
    cdef const float[:, :, :, ::1] mask
    cdef const float *mp = NULL
    if relu_out is not None:
        mask = relu_out
        mp = &mask[0, 0, 0, 0]
    cdef float *bp = &b[0]
    cdef _Pad a = _Pad(src=&src[0, 0, 0, 0], mask=mp, dst=bp, C=C, H=H, W=W,
                       planes_out=planes_out, Hp=Hp, Wp=Wp, top=top, left=left, sh=sh, sw=sw)
    with nogil:
        parallel_for(_pad_task, &a, N * planes_out, _threads(N * planes_out * plane, n_threads))
    for i in range(N * planes_out * plane, N * planes_out * plane + slack):
        bp[i] = 0
    return buf


cdef struct _Pad:
    # src (N, C, H, W) (and its ReLU mask or NULL) into dst: (N, planes_out) channels of
    # sh * sw phase planes Hp x Wp.
    const float *src
    const float *mask
    float *dst
    Py_ssize_t C, H, W, planes_out, Hp, Wp, top, left, sh, sw


cdef void _pad_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Padded channels [begin, end) of (n, c)."""
    cdef _Pad *a = <_Pad *>args
    cdef Py_ssize_t plane = a.sh * a.sw * a.Hp * a.Wp, p, n, c, i
    for p in range(begin, end):
        n = p // a.planes_out
        c = p % a.planes_out
        if c < a.C:
            _pad_plane(a, n, c, a.dst + p * plane)
        else:
            for i in range(plane):
                a.dst[p * plane + i] = 0


cdef inline void _pad_plane(const _Pad *a, Py_ssize_t n, Py_ssize_t c,
                            float *dst) noexcept nogil:
    """Channel c of image n of a.src (masked by a.mask) into its phase planes at dst."""
    cdef Py_ssize_t at = (n * a.C + c) * a.H * a.W
    conv_pad_phases_f32(a.src + at, a.H, a.W, a.mask + at if a.mask != NULL else NULL, dst,
                        a.Hp, a.Wp, a.top, a.left, a.sh, a.sw)


def _tap_offsets(Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t Hp, Py_ssize_t Wp,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw):
    """Offset of every (channel, kh, kw) tap from a window's corner in padded channels of
    sh * sw stride-phase planes of Hp x Wp (see _pad_planes), in the order the direct kernels
    sweep them: tap (kh, kw) of a stride-(sh, sw) window lies in phase plane
    (kh * dh % sh, kw * dw % sw), (kh * dh // sh, kw * dw // sw) from the window's corner."""
    cdef Py_ssize_t T = KH * KW, t, rh, rw
    steps = np.empty(C * T, dtype=np.intp)
    cdef Py_ssize_t[::1] step_off = steps
    for t in range(C * T):
        rh = (t % T // KW) * dh
        rw = (t % KW) * dw
        step_off[t] = ((t // T) * sh * sw + (rh % sh) * sw + rw % sw) * Hp * Wp + (
            rh // sh) * Wp + rw // sw
    return steps


cdef struct _RowsTiling:
    int ocb  # output channels per register tile (_direct_ocb)
    Py_ssize_t rows  # output rows per work item
    Py_ssize_t block_steps  # taps (channels x KH x KW) per L1 block


cdef _RowsTiling _rows_tiling(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW,
                              Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t dh, Py_ssize_t sh,
                              Py_ssize_t sw, Py_ssize_t Wp):
    """The work split of the row-vector kernels on planes of pitch Wp."""
    cdef _RowsTiling t
    t.ocb = _direct_ocb(OC)
    cdef Py_ssize_t nv = (OW + 15) // 16
    cdef Py_ssize_t nvt = 2 if t.ocb >= 6 else (4 if t.ocb == 4 else 8)
    # Rows per work item: ~4 register tiles, enough work to amortize the scheduling.
    t.rows = max(1, min(OH, (4 * nvt + nv - 1) // nv))
    # Input channels per block: the padded rows that a group of register tiles (up to 8 tiles,
    # conv_direct_f32_rows) sweeps, in each of the sw column phases, stay within 32 KiB of L1
    # (the kernel parks the accumulators between blocks).
    cdef Py_ssize_t group_rows = min(t.rows, (8 * nvt + nv - 1) // nv) + (KH - 1) * dh // sh + 1
    t.block_steps = max(1, min(C, 32768 // (group_rows * sw * Wp * 4))) * KH * KW
    return t


cdef inline Py_ssize_t _direct_group(Py_ssize_t C, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hp,
                                     Py_ssize_t Wp, int n_threads) noexcept:
    # Images per group: padded, then convolved while their copy (<= group_bytes) is still in
    # L2. Padding the whole batch first left the kernel waiting on L3/DRAM for half its cycles
    # (perf, ResNet-20 step: 50% of conv_direct_f32_rows's samples on the input load).
    return max(1, group_bytes(n_threads) // (C * sh * sw * Hp * Wp * 4))


def direct_layout(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH,
                  Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                  Py_ssize_t dw, int n_threads) -> dict:
    """_direct_conv's buffers and work split for C input channels (the input-gradient kernel's
    C is the weight's OC), OC outputs of OH x OW, a KH x KW kernel: the padded phase planes
    (Hp, Wp), images per padded group, and the row tiling (ocb, rows, block_steps), for
    minidl.static.lower, which runs these kernels from a program with the same split."""
    cdef Py_ssize_t Hp = OH + (KH - 1) * dh // sh, Wp = _row_pitch(OW, KW, dw, sw)
    cdef _RowsTiling t = _rows_tiling(C, OC, OH, OW, KH, KW, dh, sh, sw, Wp)
    return {"Hp": Hp, "Wp": Wp, "group": _direct_group(C, sh, sw, Hp, Wp, n_threads),
            "ocb": t.ocb, "rows": t.rows, "block_steps": t.block_steps}


def _direct_conv(const float[:, :, :, ::1] src, relu_in, const float[:, :, :, ::1] weight,
                 bint flip, bias, float[:, :, :, ::1] out, Py_ssize_t top, Py_ssize_t left,
                 Py_ssize_t dh, Py_ssize_t dw, bint relu, int n_threads, Py_ssize_t sh=1,
                 Py_ssize_t sw=1):
    """out = stride-(sh, sw) correlation of src (N, C, H, W), padded by (top, left) (negative:
    cropped) and zero below/right as far as out needs, with weight (OC, C, KH, KW), or with flip
    the input-gradient kernel of a weight (C, OC, KH, KW). relu_in masks src (fused ReLU
    backward). A stride > 1 reads the input split into stride phases (_pad_planes), where every
    window is a stride-1 one, so the same row-vector kernel runs."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], Hp = out.shape[2] + (KH - 1) * dh // sh
    cdef Py_ssize_t Wp = _row_pitch(out.shape[3], KW, dw, sw), n0, n1
    cdef Py_ssize_t group = _direct_group(C, sh, sw, Hp, Wp, n_threads)
    packed = _pack_weights(weight, _direct_ocb(out.shape[1]), flip)
    clips = row_clips(out.shape[2], KH, KW, top, src.shape[2], dh) if sh == 1 else None
    if direct_per_image(N, n_threads):
        _direct_per_image(src, relu_in, Hp, Wp, top, left, sh, sw, weight, flip, bias, out, dh,
                          dw, relu, n_threads, packed, clips)
        return
    for n0 in range(0, N, group):
        n1 = min(N, n0 + group)
        xpad = _pad_planes("direct_input", src[n0:n1],
                           None if relu_in is None else relu_in[n0:n1], Hp, Wp, top, left, C, 0,
                           n_threads, sh, sw)
        _direct_rows(xpad, Hp, Wp, 0, sh, sw, weight, flip, bias, out[n0:n1], dh, dw, relu,
                     n_threads, packed, clips)


def row_clips(Py_ssize_t OH, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t top, Py_ssize_t H,
              Py_ssize_t dh):
    """conv_direct_f32_rows's clip table for a stride-1 row-vector convolution whose input has
    `top` zero rows above its H rows (negative: cropped): output row r reads the taps
    [KW * kh0, KW * kh1) of each channel, those whose rows r + kh * dh hold input. None when
    every row reads every tap. With a large padding (LeNet's conv2 input gradient: 4 rows
    above and below 10) a quarter of the taps read zeros."""
    # Python integers: cdivision makes a C `//` truncate, and these quotients can be negative.
    r = np.arange(OH)
    kh0 = np.clip(-((r - int(top)) // int(dh)), 0, KH)  # ceil((top - r) / dh)
    kh1 = np.maximum(kh0, np.minimum(KH, -((r - int(top) - int(H)) // int(dh))))
    if not (kh0 > 0).any() and not (kh1 < KH).any():
        return None
    clips = np.empty(1 + 2 * OH, dtype=np.intp)
    clips[0] = KH * KW
    clips[1::2] = KW * kh0
    clips[2::2] = KW * kh1
    return clips


def _direct_rows(const float[::1] xpad, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t base,
                 Py_ssize_t sh, Py_ssize_t sw, const float[:, :, :, ::1] weight, bint flip, bias,
                 float[:, :, :, ::1] out, Py_ssize_t dh, Py_ssize_t dw, bint relu,
                 int n_threads, packed=None, clips=None):
    """_direct_conv's compute on an input already padded into channels of sh * sw phase planes
    of Hp x Wp (_pad_planes), output pixel (0, 0)'s window at xpad[base] of each channel.
    Hp, Wp must hold out's windows: Hp >= base // Wp + OH + (KH - 1) * dh // sh and
    Wp >= base % Wp + _row_pitch(OW, KW, dw, sw). packed: _pack_weights(weight, _direct_ocb(OC),
    flip) when the caller has it already. clips: row_clips(OH, ...) for these planes (base 0,
    stride 1), or None."""
    cdef Py_ssize_t C = weight.shape[0] if flip else weight.shape[1]
    cdef Py_ssize_t N = out.shape[0], OC = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t plane = sh * sw * Hp * Wp
    if xpad.shape[0] < N * C * plane:
        raise ValueError("conv2d: padded input smaller than its planes")
    keep = []
    cdef _Direct a = _direct_job(C, Hp, Wp, sh, sw, weight, flip, bias, out, dh, dw, relu,
                                 packed, clips, keep)
    a.x = &xpad[0] + base
    with nogil:
        parallel_for(_direct_task, &a, N * a.nblk * a.nrb,
                     _threads(N * OC * OH * OW * a.nsteps, n_threads))


cdef struct _Direct:
    # _direct_rows's work items: (image, block of ocb output channels, block of `rows` rows).
    const float *x
    Py_ssize_t image, Wp
    const Py_ssize_t *step_off
    Py_ssize_t nsteps, block_steps
    const float *w
    Py_ssize_t ocb, OC
    const float *bias
    bint relu
    float *out
    Py_ssize_t OH, OW, nblk, nrb, rows
    const Py_ssize_t *clip


cdef void _direct_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    cdef _Direct *a = <_Direct *>args
    cdef Py_ssize_t item, r0
    # (image, channel block, row block) of item, stepped, not three divisions per item: the
    # MNIST example's 1->32 forward runs 1792 items of 9-step tiles (this loop's own samples
    # 3.4% -> 2.2%).
    cdef Py_ssize_t n = begin // (a.nblk * a.nrb), blk = begin // a.nrb % a.nblk
    cdef Py_ssize_t rb = begin % a.nrb
    for item in range(begin, end):
        _direct_block(a, a.x + n * a.image, n, blk, rb * a.rows)
        rb += 1
        if rb == a.nrb:
            rb = 0
            blk += 1
            if blk == a.nblk:
                blk = 0
                n += 1


cdef inline void _direct_block(const _Direct *a, const float *x, Py_ssize_t n, Py_ssize_t blk,
                               Py_ssize_t r0) noexcept nogil:
    """Rows [r0, r0 + a.rows) of channel block blk of image n, from its padded planes x."""
    conv_direct_f32_rows(x, a.Wp, a.step_off, a.nsteps, a.block_steps,
                         a.w + blk * a.nsteps * a.ocb, a.ocb, min(a.ocb, a.OC - blk * a.ocb),
                         a.bias + blk * a.ocb if a.bias != NULL else NULL, a.relu,
                         a.out + (n * a.OC + blk * a.ocb) * a.OH * a.OW, a.OH, a.OW, r0,
                         min(a.OH, r0 + a.rows), a.clip)


cdef _Direct _direct_job(Py_ssize_t C, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t sh,
                         Py_ssize_t sw, const float[:, :, :, ::1] weight, bint flip, bias,
                         float[:, :, :, ::1] out, Py_ssize_t dh, Py_ssize_t dw, bint relu,
                         packed, clips, list keep) except *:
    """The row-vector kernel's job over out from C padded channels of sh * sw phase planes of
    Hp x Wp (x left NULL: the caller's). packed: _pack_weights(weight, _direct_ocb(OC), flip)
    or None; clips: row_clips(OH, ...) or None. The arrays the job points into that the caller
    does not hold are appended to keep."""
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3], T = KH * KW
    cdef Py_ssize_t OC = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef _RowsTiling tiling = _rows_tiling(C, OC, OH, OW, KH, KW, dh, sh, sw, Wp)
    if packed is None:
        packed = _pack_weights(weight, tiling.ocb, flip)
    steps = _tap_offsets(C, KH, KW, Hp, Wp, sh, sw, dh, dw)
    keep += [packed, steps]
    cdef Py_ssize_t[::1] step_off = steps
    cdef const float[::1] wv = packed
    cdef const float[::1] bias_view
    cdef const float *bp = NULL
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef const Py_ssize_t[::1] clip_view
    cdef const Py_ssize_t *cp = NULL
    if clips is not None:
        clip_view = clips
        if clip_view.shape[0] != 1 + 2 * OH or clip_view[0] != T:
            raise ValueError("conv2d: row clip table does not match the output")
        cp = &clip_view[0]
    return _Direct(x=NULL, image=C * sh * sw * Hp * Wp, Wp=Wp, step_off=&step_off[0],
                   nsteps=C * T, block_steps=tiling.block_steps, w=&wv[0], ocb=tiling.ocb,
                   OC=OC, bias=bp, relu=relu, out=&out[0, 0, 0, 0], OH=OH, OW=OW,
                   nblk=(OC + tiling.ocb - 1) // tiling.ocb,
                   nrb=(OH + tiling.rows - 1) // tiling.rows, rows=tiling.rows, clip=cp)


# Images per thread from which _direct_conv pads each image inside its own work item (one
# parallel region, the copy still in L1/L2 when convolved) rather than by groups of images
# (two regions per group; below this a thread would get too few items to balance).
cdef Py_ssize_t PER_IMAGE_ITEMS = 8


cpdef bint direct_per_image(Py_ssize_t N, int n_threads) noexcept:
    """Whether _direct_conv (and static.lower's conv_rows_images) pads image by image inside
    the work items for a batch of N on n_threads threads."""
    return n_threads == 1 or N >= PER_IMAGE_ITEMS * n_threads


def _direct_per_image(const float[:, :, :, ::1] src, relu_in, Py_ssize_t Hp, Py_ssize_t Wp,
                      Py_ssize_t top, Py_ssize_t left, Py_ssize_t sh, Py_ssize_t sw,
                      const float[:, :, :, ::1] weight, bint flip, bias,
                      float[:, :, :, ::1] out, Py_ssize_t dh, Py_ssize_t dw, bint relu,
                      int n_threads, packed, clips):
    """_direct_conv with one work item per image: the item pads its image (and ReLU mask)
    into its thread's buffer of sh * sw phase planes, then runs every channel and row block
    of it (the same kernel calls on the same padded values as the grouped path)."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], plane = sh * sw * Hp * Wp
    cdef const float[:, :, :, ::1] mask
    cdef const float *mp = NULL
    if relu_in is not None:
        mask = relu_in
        mp = &mask[0, 0, 0, 0]
    keep = []
    cdef _PerImage a
    a.rows = _direct_job(C, Hp, Wp, sh, sw, weight, flip, bias, out, dh, dw, relu, packed,
                         clips, keep)
    a.pad = _Pad(src=&src[0, 0, 0, 0], mask=mp, dst=NULL, C=C, H=src.shape[2], W=src.shape[3],
                 planes_out=C, Hp=Hp, Wp=Wp, top=top, left=left, sh=sh, sw=sw)
    cdef int nt = _threads(N * out.shape[1] * out.shape[2] * out.shape[3] * a.rows.nsteps,
                           n_threads)
    buffers = _scratch("direct_per_image", (nt * C * plane,))
    cdef float[::1] bv = buffers
    a.buffers = &bv[0]
    with nogil:
        parallel_for(_per_image_task, &a, N, nt)


cdef struct _PerImage:
    _Pad pad  # dst unused: each worker pads into buffers + worker * C * plane
    _Direct rows  # x unused: the worker's padded image
    float *buffers


cdef void _per_image_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                          int worker) noexcept nogil:
    cdef _PerImage *a = <_PerImage *>args
    cdef _Pad *p = &a.pad
    cdef _Direct *d = &a.rows
    cdef Py_ssize_t plane = p.sh * p.sw * p.Hp * p.Wp, n, c, blk, rb
    cdef Py_ssize_t img = p.C * p.H * p.W, oimg = d.OC * d.OH * d.OW
    cdef float *x = a.buffers + worker * p.C * plane
    for n in range(begin, end):
        for c in range(p.C):
            _pad_plane(p, n, c, x + c * plane)
        for blk in range(d.nblk):
            for rb in range(d.nrb):
                if n + 1 < end:
                    conv_prefetch_image(p.src + (n + 1) * img,
                                        p.mask + (n + 1) * img if p.mask != NULL else NULL,
                                        d.out + (n + 1) * oimg, img, oimg, blk * d.nrb + rb,
                                        d.nblk * d.nrb)
                _direct_block(d, x, n, blk, rb * d.rows)


cdef Py_ssize_t DX_IMAGES = 16  # images per work item of _images_backward_input (its lanes)
DX_IMAGES_CB = CONV_DX_IMAGES_CB  # its weights' channel block (conv._pack_weights' ocb)


cpdef Py_ssize_t dx_images_scratch(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW,
                                   Py_ssize_t H, Py_ssize_t W) noexcept:
    """Floats of scratch one work item of _images_backward_input needs."""
    return conv_dx_images_scratch(C, OC, OH, OW, H, W)


cpdef bint images_input_grad_wins(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                  Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH,
                                  Py_ssize_t KW) noexcept:
    """Whether the input gradient of a stride-1 undilated float32 convolution goes to
    _images_backward_input: the flipped kernel's padding (KH - 1 - ph on each side, from the
    shapes) is 2 or more and at least a quarter of the padded gradient row and column, so the
    row-vector kernel would spend many lanes on zeros; few input channels (one or two passes
    of its accumulators) and 2+ groups of 16 images.

    Measured (2026-12-03, AMD EPYC Zen 4, LeNet conv2's input gradient, batch 64: 6 <- 16
    channels, 5x5, 14x14 <- 10x10, per-instruction minima of the compiled step): see
    BENCHMARKS.md, session 9. Where the padding is a smaller share the gather of 16 images costs
    more than the zeros (2026-12-06, EPYC, batch 64, one thread, ms, images / row-vector):
    1 <- 32 3x3 26 -> 28 px 2.56 / 1.70, 1 <- 6 5x5 pad 2 at 28 px 0.99 / 0.47, 8 <- 32 3x3 at
    28 px 3.81 / 3.11; against 16 <- 6 3x3 12 -> 14 px 0.24 / 0.30, 3 <- 16 5x5 10 -> 14 px
    0.32 / 0.68."""
    cdef Py_ssize_t ph2 = KH - 1 + H - OH, pw2 = KW - 1 + W - OW  # both sides' padding
    return (N >= 2 * DX_IMAGES and C <= 2 * CONV_DX_IMAGES_CB and ph2 >= 4 and pw2 >= 4
            and 3 * ph2 >= OH and 3 * pw2 >= OW)


def _images_backward_input(const float[:, :, :, ::1] grad_out, relu_out,
                           const float[:, :, :, ::1] weight, float[:, :, :, ::1] grad_x,
                           Py_ssize_t ph, Py_ssize_t pw, int n_threads):
    """grad_x (N, C, H, W) of a stride-1 undilated convolution, 16 images per work item, one
    per vector lane (conv_dx_images_group): every multiply-add a useful one. grad_out (N, OC,
    OH, OW), masked by relu_out (same shape, or None) as ReLU's backward."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OC = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef float[::1] wpk = _pack_weights(weight, CONV_DX_IMAGES_CB, True)
    cdef const float[:, :, :, ::1] mask
    cdef _Images a
    a.mask = NULL
    if relu_out is not None:
        mask = relu_out
        a.mask = &mask[0, 0, 0, 0]
    cdef Py_ssize_t groups = (N + DX_IMAGES - 1) // DX_IMAGES
    cdef int nt = _threads(N * C * H * W * OC * KH * KW, n_threads)
    nt = <int>min(<Py_ssize_t>nt, groups)
    a.size = dx_images_scratch(C, OC, OH, OW, H, W)
    cdef float[:, ::1] scratch = _scratch("dx_images", (nt, a.size))
    a.g, a.wpk, a.gx = &grad_out[0, 0, 0, 0], &wpk[0], &grad_x[0, 0, 0, 0]
    a.scratch = &scratch[0, 0]
    a.N, a.C, a.OC, a.OH, a.OW, a.KH, a.KW = N, C, OC, OH, OW, KH, KW
    a.H, a.W, a.ph, a.pw = H, W, ph, pw
    with nogil:
        parallel_for(_images_task, &a, groups, nt)


cdef struct _Images:
    const float *g
    const float *mask
    const float *wpk
    float *gx
    float *scratch
    Py_ssize_t size, N, C, OC, OH, OW, KH, KW, H, W, ph, pw


cdef void _images_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Groups [begin, end) of 16 images."""
    cdef const _Images *a = <const _Images *>args
    cdef Py_ssize_t grp
    for grp in range(begin, end):
        conv_dx_images_group(a.g, a.mask, a.wpk, a.gx, a.scratch + worker * a.size,
                             grp * DX_IMAGES, min(DX_IMAGES, a.N - grp * DX_IMAGES), a.C, a.OC,
                             a.OH, a.OW, a.KH, a.KW, a.H, a.W, a.ph, a.pw)


# One stride phase of a strided input gradient (_strided_backward_input): its sub-kernel's
# first tap (k0, l0) and size (Mh, Mw), its pixels (Ha x Wb), and the padding (top, left) of its
# stride-1 correlation.
_Phase = namedtuple("_Phase", "k0 l0 Mh Mw Ha Wb top left")


def _strided_backward_input(const float[:, :, :, ::1] grad_out, relu_out,
                            const float[:, :, :, ::1] weight, float[:, :, :, ::1] grad_x,
                            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                            int n_threads):
    """grad_x of a stride-(sh, sw), dilation-1, groups-1 float32 conv, by stride phases: input
    pixels (qi + sh * a, qj + sw * b) of one phase receive only the taps kh = k0 + sh * m,
    kw = l0 + sw * n (k0 = (qi + ph) % sh, l0 likewise), so each phase is a stride-1
    correlation of grad_out with that flipped sub-kernel (the row-vector kernel on one shared
    padded copy of grad_out); conv_unphase_f32 then writes each grad_x row once from its
    phases (zeros from those no tap reaches). Every grad_x element has one owner and a fixed
    summation order."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OC = weight.shape[0]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t qi, qj, k0, l0, Mh, Mw, Ha, Wb, top, left
    phases = []  # phase k = qi * sw + qj
    for qi in range(sh):
        for qj in range(sw):
            k0, l0 = (qi + ph) % sh, (qj + pw) % sw
            Mh = (KH - k0 + sh - 1) // sh if k0 < KH else 0
            Mw = (KW - l0 + sw - 1) // sw if l0 < KW else 0
            Ha, Wb = (H - qi + sh - 1) // sh, (W - qj + sw - 1) // sw
            phases.append(_Phase(k0, l0, Mh, Mw, Ha, Wb, Mh - 1 - (qi + ph - k0) // sh,
                                 Mw - 1 - (qj + pw - l0) // sw))
    live = [k for k, q in enumerate(phases) if min(q.Mh, q.Mw, q.Ha, q.Wb) > 0]
    if not live:
        np.asarray(grad_x)[...] = 0
        return
    # One padded copy for every phase: the largest top/left padding, each phase's windows
    # starting (top_max - top, left_max - left) into it.
    top_max = max(phases[k].top for k in live)
    left_max = max(phases[k].left for k in live)
    Hp = max(top_max - phases[k].top + phases[k].Ha + phases[k].Mh - 1 for k in live)
    Wp = max(left_max - phases[k].left + _row_pitch(phases[k].Wb, phases[k].Mw, 1, 1)
             for k in live)
    w = np.asarray(weight)
    subs = {k: np.ascontiguousarray(w[:, :, phases[k].k0::sh, phases[k].l0::sw]) for k in live}
    packs = {k: _pack_weights(subs[k], _direct_ocb(C), True) for k in live}
    # Where each phase's planes start in the group's buffer, floats per plane and per row; the
    # phases no tap reaches read one row of zeros at the buffer's end (size and pitch 0).
    layout = np.zeros((3, sh * sw), np.intp)
    cdef Py_ssize_t[:, ::1] lv = layout
    cdef float[:, :, :, ::1] part
    cdef float[::1] bv
    cdef _Unphase a
    cdef int nt = _threads(N * C * H * W, n_threads)
    cdef Py_ssize_t n0, n1, k, at
    # Image groups as in _direct_conv: each group's padded gradient stays in L2 for the phases.
    cdef Py_ssize_t group = max(1, group_bytes(n_threads) // (OC * Hp * Wp * 4))
    for n0 in range(0, N, group):
        n1 = min(N, n0 + group)
        gpad = _pad_planes("direct_input", grad_out[n0:n1],
                           None if relu_out is None else relu_out[n0:n1], Hp, Wp, top_max,
                           left_max, OC, 0, n_threads)
        zeros_at = (n1 - n0) * C * sum(phases[k].Ha * phases[k].Wb for k in live)
        buf = _scratch("strided_phases", (zeros_at + (W + sw - 1) // sw,))
        buf[zeros_at:] = 0
        at = 0
        for k in range(sh * sw):
            if k not in packs:
                lv[0, k], lv[1, k], lv[2, k] = zeros_at, 0, 0
                continue
            k0, l0, Mh, Mw, Ha, Wb, top, left = phases[k]
            lv[0, k], lv[1, k], lv[2, k] = at, Ha * Wb, Wb
            part = buf[at:at + (n1 - n0) * C * Ha * Wb].reshape(n1 - n0, C, Ha, Wb)
            at += (n1 - n0) * C * Ha * Wb
            _direct_rows(gpad, Hp, Wp, (top_max - top) * Wp + (left_max - left), 1, 1, subs[k],
                         True, None, part, 1, 1, False, n_threads, packs[k])
        bv = buf
        a = _Unphase(base=&bv[0], off=&lv[0, 0], size=&lv[1, 0], pitch=&lv[2, 0],
                     out=&grad_x[n0, 0, 0, 0], H=H, W=W, sh=sh, sw=sw)
        with nogil:
            parallel_for(_unphase_task, &a, (n1 - n0) * C, nt)


cdef struct _Unphase:
    # A group's phases (conv_unphase_f32's base, off, size, pitch) put back into the (H x W)
    # planes of out.
    const float *base
    const Py_ssize_t *off
    const Py_ssize_t *size
    const Py_ssize_t *pitch
    float *out
    Py_ssize_t H, W, sh, sw


cdef void _unphase_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Planes [begin, end) of (n, c)."""
    cdef _Unphase *a = <_Unphase *>args
    conv_unphase_f32(a.base, a.off, a.size, a.pitch, begin, end, a.H, a.W, a.sh, a.sw, a.out)


cdef struct _PackedLayout:
    Py_ssize_t Hp, Wp  # padded planes holding every window of the output (any stride)
    int nb  # 16-lane output-channel vectors per register tile
    Py_ssize_t pix  # output pixels per work item


cdef _PackedLayout _packed_layout(Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH,
                                  Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                                  Py_ssize_t dw) noexcept nogil:
    cdef _PackedLayout t
    t.Hp = (OH - 1) * sh + (KH - 1) * dh + 1
    t.Wp = (OW - 1) * sw + (KW - 1) * dw + 1
    t.nb = conv_packed_nb(OC)
    if t.nb == 1 and sw == 1 and dw == 1 and (KW == 3 or KW == 5):
        # The row-shared tiles (conv_packed_f32_pixels) cut each work item's pixels at row
        # ends: whole rows per item (~32 pixels), or LeNet's conv2 (10x10) ran a quarter of
        # its tiles 2-8 pixels wide, each weight load feeding fewer multiply-adds.
        t.pix = OW * max(1, 32 // OW)
    else:
        t.pix = 4 * (8 if t.nb == 1 else 6)  # 4 register tiles
    return t


def packed_layout(Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw) -> dict:
    """_packed_conv's padded planes (Hp, Wp), 16-lane channel vectors per tile (nb) and pixels
    per work item (pix), for minidl.static.lower as direct_layout."""
    cdef _PackedLayout t = _packed_layout(OC, OH, OW, KH, KW, sh, sw, dh, dw)
    return {"Hp": t.Hp, "Wp": t.Wp, "nb": t.nb, "pix": t.pix}


cpdef bint packed_reads_input(Py_ssize_t H, Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t Wp,
                              Py_ssize_t ph, Py_ssize_t pw) noexcept:
    """The input (H x W planes) is already _packed_conv's padded planes (Hp x Wp): no padding
    and windows that reach every row and column. The kernel then reads it in place (LeNet's
    conv2: the copy was 5% of its forward). For minidl.static.lower too."""
    return ph == 0 and pw == 0 and Hp == H and Wp == W


def _packed_conv(const float[:, :, :, ::1] x, const float[:, :, :, ::1] weight, bias,
                 float[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                 Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, bint relu, int n_threads):
    """out = conv2d(x, weight) + bias (ReLU) with the channel-packed kernel: any stride,
    groups 1, float32; for 16+ output channels on small images."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3], T = KH * KW
    cdef Py_ssize_t OC = out.shape[1], OH = out.shape[2], OW = out.shape[3], P = OH * OW
    cdef _PackedLayout layout = _packed_layout(OC, OH, OW, KH, KW, sh, sw, dh, dw)
    cdef Py_ssize_t Hp = layout.Hp, Wp = layout.Wp, plane = Hp * Wp
    cdef int nb = layout.nb
    cdef Py_ssize_t ocb = 16 * nb, nblk = (OC + ocb - 1) // ocb
    cdef Py_ssize_t pix = layout.pix, npb = (P + pix - 1) // pix
    cdef const float[::1] xv
    cdef const float *xp = &x[0, 0, 0, 0]
    if not packed_reads_input(x.shape[2], x.shape[3], Hp, Wp, ph, pw):
        xv = _pad_planes("direct_input", x, None, Hp, Wp, ph, pw, C, 0, n_threads)
        xp = &xv[0]
    packed = _pack_weights(weight, ocb, False)
    cdef Py_ssize_t[::1] step_off = _tap_offsets(C, KH, KW, Hp, Wp, 1, 1, dh, dw)
    cdef const float[::1] wv = packed
    cdef const float[::1] bias_view
    cdef const float *bp = NULL
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef _Packed a = _Packed(x=xp, image=C * plane, Wp=Wp, sh=sh, sw=sw,
                             step_off=&step_off[0], nsteps=C * T, w=&wv[0], nb=nb, ocb=ocb,
                             OC=OC, bias=bp, relu=relu, out=&out[0, 0, 0, 0], OH=OH, OW=OW,
                             nblk=nblk, npb=npb, pix=pix, row_kw=KW if dw == 1 else 0)
    with nogil:
        parallel_for(_packed_task, &a, N * nblk * npb, _threads(N * OC * P * C * T, n_threads))


cdef struct _Packed:
    # _packed_conv's work items: (image, block of ocb output channels, block of `pix` pixels).
    const float *x
    Py_ssize_t image, Wp, sh, sw
    const Py_ssize_t *step_off
    Py_ssize_t nsteps
    const float *w
    Py_ssize_t nb, ocb, OC
    const float *bias
    bint relu
    float *out
    Py_ssize_t OH, OW, nblk, npb, pix
    Py_ssize_t row_kw  # KW with unit-spaced taps along W (the row-shared tile), else 0


cdef void _packed_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    cdef _Packed *a = <_Packed *>args
    cdef Py_ssize_t item, n, blk, p0, P = a.OH * a.OW
    for item in range(begin, end):
        n = item // (a.nblk * a.npb)
        blk = (item // a.npb) % a.nblk
        p0 = (item % a.npb) * a.pix
        conv_packed_f32_pixels(a.x + n * a.image, a.Wp, a.sh, a.sw, a.step_off, a.nsteps,
                               a.w + blk * a.nsteps * a.ocb, a.nb, min(a.ocb, a.OC - blk * a.ocb),
                               a.bias + blk * a.ocb if a.bias != NULL else NULL, a.relu,
                               a.out + (n * a.OC + blk * a.ocb) * P, a.OH, a.OW, p0,
                               min(P, p0 + a.pix), a.row_kw)


def direct_dw_scratch(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh,
                      Py_ssize_t dw, bint masked) -> int:
    """Floats of scratch per worker of _direct_backward_weight (conv_dw_rows_plan), for
    minidl.static.lower, which runs the same job from a program."""
    cdef conv_dw_rows_job a
    memset(&a, 0, sizeof(a))
    a.N, a.C, a.OC, a.OH, a.OW, a.KH, a.KW, a.sh, a.sw, a.dh, a.dw = (
        1, C, OC, OH, OW, KH, KW, sh, sw, dh, dw)
    conv_dw_rows_plan(&a, masked)
    return a.scratch_floats


def _direct_backward_weight(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                            relu_out, grad_w, grad_b, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                            int n_threads):
    """grad_w (OC, C, KH, KW) and/or grad_b (OC,) for a groups-1 float32 conv, 16 output pixels
    of a row per vector (the input split into stride phases, see _direct_conv): per-chunk
    partial sums (DW_CHUNK images, in parallel, each padded by the worker that reduces it)
    added in chunk order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OC = grad_out.shape[1]
    cdef Py_ssize_t KH = grad_w.shape[2], KW = grad_w.shape[3]
    cdef Py_ssize_t nchunks = (N + DW_CHUNK - 1) // DW_CHUNK
    partial_w = _scratch("partial_w", (nchunks, OC, C * KH * KW))
    partial_b = _scratch("partial_b", (nchunks, OC))
    cdef float[:, :, ::1] pw_view = partial_w
    cdef float[:, ::1] pb_view = partial_b
    cdef const float[:, :, :, ::1] mask
    cdef conv_dw_rows_run job
    memset(&job.a, 0, sizeof(job.a))
    job.a.x = &x[0, 0, 0, 0]
    job.a.g = &grad_out[0, 0, 0, 0]
    if relu_out is not None:
        mask = relu_out
        job.a.mask = &mask[0, 0, 0, 0]
    job.a.partial_w = &pw_view[0, 0, 0]
    job.a.partial_b = &pb_view[0, 0]
    job.a.N, job.a.C, job.a.H, job.a.W = N, C, x.shape[2], x.shape[3]
    job.a.OC, job.a.OH, job.a.OW = OC, grad_out.shape[2], grad_out.shape[3]
    job.a.KH, job.a.KW, job.a.sh, job.a.sw = KH, KW, sh, sw
    job.a.ph, job.a.pw, job.a.dh, job.a.dw = ph, pw, dh, dw
    conv_dw_rows_plan(&job.a, relu_out is not None)
    cdef int nt = _threads(N * OC * job.a.OH * job.a.OW * C * KH * KW, n_threads)
    cdef Py_ssize_t items = conv_dw_rows_items(&job.a, nt)
    scratch = _scratch("direct_dw", (nt, job.a.scratch_floats))
    cdef float[:, ::1] sv = scratch
    job.scratch = &sv[0, 0]
    with nogil:
        parallel_for(conv_dw_rows_task, &job, items, nt)
    _sum_chunks(partial_w, grad_w)
    _sum_chunks(partial_b, grad_b)


def _packed_backward_weight(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                            relu_out, grad_w, grad_b, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                            int n_threads):
    """grad_w (OC, C, KH, KW) and/or grad_b (OC,) for a groups-1 float32 conv with 16+ output
    channels, channel-packed: the gradient is transposed to (N, P, OC padded to 16) so that 16
    output channels fill a vector; per-chunk partial sums added in chunk order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OC = grad_out.shape[1]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], P = OH * OW
    cdef Py_ssize_t KH = grad_w.shape[2], KW = grad_w.shape[3], T = KH * KW
    cdef Py_ssize_t Hp = (OH - 1) * sh + (KH - 1) * dh + 1, Wp = (OW - 1) * sw + (KW - 1) * dw + 1
    cdef Py_ssize_t plane = Hp * Wp, ocp = (OC + 15) // 16 * 16
    cdef int tb = conv_dw_f32_tb(KW)
    cdef Py_ssize_t nchunks = (N + DW_CHUNK - 1) // DW_CHUNK, p
    xpad = _pad_planes("direct_input", x, None, Hp, Wp, ph, pw, C, (tb - 1) * dw + 16,
                       n_threads)
    gt = _scratch("direct_grad", (N, P, ocp))
    partial_w = _scratch("partial_w", (nchunks, OC, C * T))
    partial_b = _scratch("partial_b", (nchunks, OC))
    pixels = np.empty(P, dtype=np.intp)
    cdef Py_ssize_t[::1] pix_in = pixels
    for p in range(P):
        pix_in[p] = (p // OW) * sh * Wp + (p % OW) * sw
    cdef const float[::1] xv = xpad
    cdef float[:, :, ::1] gtv = gt
    cdef const float[:, :, :, ::1] mask
    cdef const float *mp = NULL
    if relu_out is not None:
        mask = relu_out
        mp = &mask[0, 0, 0, 0]
    cdef float[:, :, ::1] pw_view = partial_w
    cdef float[:, ::1] pb_view = partial_b
    cdef _PackedDw a = _PackedDw(x=&xv[0], C=C, plane=plane, Wp=Wp, KH=KH, KW=KW, dh=dh, dw=dw,
                                 g=&grad_out[0, 0, 0, 0], mask=mp, gt=&gtv[0, 0, 0], OC=OC, P=P,
                                 ocp=ocp, N=N, pix_in=&pix_in[0], T=T,
                                 partial_w=&pw_view[0, 0, 0], partial_b=&pb_view[0, 0])
    cdef int nt = _threads(N * OC * P * C * T, n_threads)
    with nogil:
        parallel_for(_transpose_grad_task, &a, N, nt)
        parallel_for(_packed_dw_task, &a, nchunks * C * KH, nt)
    _sum_chunks(partial_w, grad_w)
    _sum_chunks(partial_b, grad_b)


cdef struct _PackedDw:
    # _packed_backward_weight's two loops: the output gradient g (masked by the fused ReLU's
    # output, or mask NULL) transposed to gt (N, P, ocp) per image, then work items (chunk of
    # DW_CHUNK images, input channel, kernel row) into the chunk's partial sums.
    const float *x
    Py_ssize_t C, plane, Wp, KH, KW, dh, dw
    const float *g
    const float *mask
    float *gt
    Py_ssize_t OC, P, ocp, N
    const Py_ssize_t *pix_in
    Py_ssize_t T
    float *partial_w
    float *partial_b


cdef void _transpose_grad_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                               int worker) noexcept nogil:
    """Images [begin, end)."""
    cdef _PackedDw *a = <_PackedDw *>args
    cdef Py_ssize_t n, image = a.OC * a.P
    for n in range(begin, end):
        conv_transpose_grad_f32(a.g + n * image, a.mask + n * image if a.mask != NULL else NULL,
                                a.OC, a.P, a.ocp, a.gt + n * a.P * a.ocp)


cdef void _packed_dw_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                          int worker) noexcept nogil:
    cdef _PackedDw *a = <_PackedDw *>args
    cdef Py_ssize_t item, chunk, c, kh, n0, CT = a.C * a.T
    for item in range(begin, end):
        chunk = item // (a.C * a.KH)
        c = (item // a.KH) % a.C
        kh = item % a.KH
        n0 = chunk * DW_CHUNK
        conv_dw_packed_f32(a.x + (n0 * a.C + c) * a.plane + kh * a.dh * a.Wp, a.C * a.plane,
                           a.gt + n0 * a.P * a.ocp, a.P * a.ocp, min(DW_CHUNK, a.N - n0),
                           a.pix_in, a.P, a.ocp, a.KW, a.dw,
                           a.partial_w + chunk * a.OC * CT + c * a.T + kh * a.KW, CT, a.OC)
        if c == 0 and kh == 0:
            conv_db_packed_f32(a.gt + n0 * a.P * a.ocp, a.P * a.ocp, min(DW_CHUNK, a.N - n0),
                               a.P, a.ocp, a.partial_b + chunk * a.OC, a.OC)


def _sum_chunks(partial, out):
    """out = partial[0] + partial[1] + ... in chunk order (elementwise, so exact order)."""
    if out is None:
        return
    acc = partial[0].copy()
    for k in range(1, partial.shape[0]):
        acc += partial[k]
    out[...] = acc.reshape(out.shape)


# ---------------------------------------------------------------------------------------------
# Wide layers: im2col per image into a per-thread buffer, then minidl's GEMM (with one thread
# inside the parallel loop over images, or with all threads when there are fewer images than
# threads: the GEMM's bits do not depend on its thread count). A 1x1 stride-1 unpadded
# convolution is a GEMM on the image itself.
# ---------------------------------------------------------------------------------------------

cdef void _im2col(const real *x, real *col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh,
                  Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                  Py_ssize_t dw) noexcept nogil:
    """col[(c * KH + kh) * KW + kw][oh * OW + ow] = x[c][oh*sh - ph + kh*dh][ow*sw - pw + kw*dw]
    (0 in the padding). float32 runs conv_im2col_f32 on the widest instruction set."""
    cdef Py_ssize_t c, kh, kw, oh, ow, ih, iw0, lo, hi
    cdef real *row
    cdef const real *xrow
    if real is float:
        conv_im2col_f32(x, col, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw)
        return
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                iw0 = kw * dw - pw
                conv_col_range(iw0, sw, W, OW, &lo, &hi)
                row = col + ((c * KH + kh) * KW + kw) * OH * OW
                for oh in range(OH):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H or hi <= lo:
                        for ow in range(OW):
                            row[oh * OW + ow] = 0
                        continue
                    xrow = x + (c * H + ih) * W
                    for ow in range(lo):
                        row[oh * OW + ow] = 0
                    if sw == 1:
                        memcpy(row + oh * OW + lo, xrow + lo + iw0, (hi - lo) * sizeof(real))
                    elif sw == 2:
                        for ow in range(lo, hi):
                            row[oh * OW + ow] = xrow[2 * ow + iw0]
                    else:
                        for ow in range(lo, hi):
                            row[oh * OW + ow] = xrow[ow * sw + iw0]
                    for ow in range(hi, OW):
                        row[oh * OW + ow] = 0


cdef inline void _add_row(real *dst, const real *src, Py_ssize_t lo,
                          Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        dst[i] = dst[i] + src[i]


cdef void _col2im(const real *col, real *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh,
                  Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                  Py_ssize_t dw) noexcept nogil:
    """x = 0, then the adjoint of _im2col: every column entry added back to its pixel, in a
    fixed order (one image per call, so one owner per pixel). float32 runs conv_col2im_f32 on
    the widest instruction set (this module's code is compiled for the baseline, whose
    stride-2 rows were added element by element)."""
    cdef Py_ssize_t c, kh, kw, oh, ow, ih, iw0, lo, hi, i
    cdef const real *row
    cdef real *xrow
    if real is float:
        conv_col2im_f32(col, x, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw)
        return
    for i in range(C * H * W):
        x[i] = 0
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                iw0 = kw * dw - pw
                conv_col_range(iw0, sw, W, OW, &lo, &hi)
                row = col + ((c * KH + kh) * KW + kw) * OH * OW
                for oh in range(OH):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H:
                        continue
                    xrow = x + (c * H + ih) * W
                    if sw == 1:
                        _add_row(xrow + iw0, row + oh * OW, lo, hi)
                    else:
                        for ow in range(lo, hi):
                            xrow[ow * sw + iw0] = xrow[ow * sw + iw0] + row[oh * OW + ow]


cdef inline bint _is_pointwise(Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    return KH == 1 and KW == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0


cdef void _epilogue(real *out, const real *bias, Py_ssize_t OC, Py_ssize_t P,
                    bint relu) noexcept nogil:
    cdef Py_ssize_t oc, p
    cdef real b
    if bias == NULL and not relu:
        return
    for oc in range(OC):
        b = bias[oc] if bias != NULL else 0
        for p in range(P):
            out[oc * P + p] = out[oc * P + p] + b
            if relu and out[oc * P + p] < 0:
                out[oc * P + p] = 0


cdef struct _Im2col:
    # One parallel loop of the im2col + GEMM kernels: x (N, C, H, W) or its gradient, the
    # weight (OC x K) or the output gradient g (N, OC x P), bias or NULL, out, and one column
    # buffer of col_size elements per thread (K x P; unused when direct, a 1x1 conv).
    bint f64, direct, relu
    const void *x
    const void *w
    const void *g
    const void *bias
    void *out
    void *cols
    Py_ssize_t col_size, N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, P, K
    int inner


cdef _Im2col _im2col_args(bint f64, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t OC, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH,
                          Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                          Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    cdef _Im2col a
    a.f64 = f64
    a.direct = _is_pointwise(KH, KW, sh, sw, ph, pw)
    a.relu = False
    a.x = a.w = a.g = a.bias = a.out = a.cols = NULL
    a.N, a.C, a.H, a.W, a.OC, a.KH, a.KW, a.OH, a.OW = N, C, H, W, OC, KH, KW, OH, OW
    a.sh, a.sw, a.ph, a.pw, a.dh, a.dw = sh, sw, ph, pw, dh, dw
    a.P = OH * OW
    a.K = C * KH * KW
    a.col_size = 1 if a.direct else a.K * a.P
    a.inner = 1
    return a


cdef inline int _split_threads(_Im2col *a, Py_ssize_t items, int nt) noexcept:
    """Threads over `items` (images or chunks), each running a one-thread GEMM; with fewer
    items than threads, one item at a time with every thread inside its GEMM (the GEMM's bits
    do not depend on its thread count). Returns the outer count, sets a.inner."""
    a.inner = 1 if items >= nt else nt
    return nt if items >= nt else 1


def _gemm_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, bias,
                  real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                  Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, bint relu, int n_threads):
    """out[n] (OC x P) = weight (OC x K) @ im2col(x[n]) (K x P), + bias, ReLU; groups 1."""
    cdef Py_ssize_t N = x.shape[0]
    cdef _Im2col a = _im2col_args(real is double, N, x.shape[1], x.shape[2], x.shape[3],
                                  weight.shape[0], weight.shape[2], weight.shape[3],
                                  out.shape[2], out.shape[3], sh, sw, ph, pw, dh, dw)
    cdef const real[::1] bias_view
    if bias is not None:
        bias_view = bias
        a.bias = &bias_view[0]
    a.x = &x[0, 0, 0, 0]
    a.w = &weight[0, 0, 0, 0]
    a.out = &out[0, 0, 0, 0]
    a.relu = relu
    cdef int outer = _split_threads(&a, N, _threads(N * a.OC * a.P * a.K, n_threads))
    cdef real[:, ::1] cols = _scratch("cols", (outer, a.col_size),
                                      np.float32 if real is float else np.float64)
    a.cols = &cols[0, 0]
    with nogil:
        parallel_for(_gemm_forward_task, &a, N, outer)


cdef void _gemm_forward_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                             int worker) noexcept nogil:
    """Images [begin, end)."""
    cdef _Im2col *a = <_Im2col *>args
    if a.f64:
        _gemm_forward_images(<const double *>a.x, <const double *>a.w, <const double *>a.bias,
                             <double *>a.out, <double *>a.cols + worker * a.col_size, a, begin,
                             end)
    else:
        _gemm_forward_images(<const float *>a.x, <const float *>a.w, <const float *>a.bias,
                             <float *>a.out, <float *>a.cols + worker * a.col_size, a, begin,
                             end)


cdef inline void _gemm_forward_images(const real *x, const real *w, const real *bias, real *out,
                                      real *col, const _Im2col *a, Py_ssize_t begin,
                                      Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t n, image = a.C * a.H * a.W, OC = a.OC, P = a.P, K = a.K
    cdef GemmAhead ahead = GemmAhead(p0=NULL, bytes0=0, p1=NULL, bytes1=0)
    for n in range(begin, end):
        # This thread's next image is fetched while this one is multiplied (for im2col, whose
        # first pass over an image would wait on L3 row by row).
        ahead.p0 = x + (n + 1) * image
        ahead.bytes0 = image * sizeof(real) if n + 1 < end else 0
        if a.direct:
            gemm_ahead(False, False, OC, P, K, 1, w, K, x + n * image, P, 0, out + n * OC * P,
                       P, a.inner, &ahead)
        else:
            _im2col(x + n * image, col, a.C, a.H, a.W, a.KH, a.KW, a.OH, a.OW, a.sh, a.sw, a.ph,
                    a.pw, a.dh, a.dw)
            gemm_ahead(False, False, OC, P, K, 1, w, K, col, P, 0, out + n * OC * P, P, a.inner,
                       &ahead)
        _epilogue(out + n * OC * P, bias, OC, P, a.relu)


def _gemm_backward_input(const real[:, :, :, ::1] grad_out, const real[:, :, :, ::1] weight,
                         real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """grad_x[n] = col2im(weight^T (K x OC) @ grad_out[n] (OC x P)), one image per task."""
    cdef Py_ssize_t N = grad_x.shape[0]
    cdef _Im2col a = _im2col_args(real is double, N, grad_x.shape[1], grad_x.shape[2],
                                  grad_x.shape[3], weight.shape[0], weight.shape[2],
                                  weight.shape[3], grad_out.shape[2], grad_out.shape[3], sh, sw,
                                  ph, pw, dh, dw)
    a.g = &grad_out[0, 0, 0, 0]
    a.w = &weight[0, 0, 0, 0]
    a.out = &grad_x[0, 0, 0, 0]
    cdef int outer = _split_threads(&a, N, _threads(N * a.OC * a.P * a.K, n_threads))
    cdef real[:, ::1] cols = _scratch("cols", (outer, a.col_size),
                                      np.float32 if real is float else np.float64)
    a.cols = &cols[0, 0]
    with nogil:
        parallel_for(_gemm_backward_input_task, &a, N, outer)


cdef void _gemm_backward_input_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                    int worker) noexcept nogil:
    """Images [begin, end)."""
    cdef _Im2col *a = <_Im2col *>args
    if a.f64:
        _gemm_backward_input_images(<const double *>a.g, <const double *>a.w, <double *>a.out,
                                    <double *>a.cols + worker * a.col_size, a, begin, end)
    else:
        _gemm_backward_input_images(<const float *>a.g, <const float *>a.w, <float *>a.out,
                                    <float *>a.cols + worker * a.col_size, a, begin, end)


cdef inline void _gemm_backward_input_images(const real *gy, const real *w, real *gx, real *col,
                                             const _Im2col *a, Py_ssize_t begin,
                                             Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t n, image = a.C * a.H * a.W, OC = a.OC, P = a.P, K = a.K
    cdef GemmAhead ahead = GemmAhead(p0=NULL, bytes0=0, p1=NULL, bytes1=0)
    for n in range(begin, end):
        ahead.p0 = gy + (n + 1) * OC * P
        ahead.bytes0 = OC * P * sizeof(real) if n + 1 < end else 0
        if a.direct:
            gemm_ahead(True, False, K, P, OC, 1, w, K, gy + n * OC * P, P, 0, gx + n * image, P,
                       a.inner, &ahead)
        else:
            gemm_ahead(True, False, K, P, OC, 1, w, K, gy + n * OC * P, P, 0, col, P, a.inner,
                       &ahead)
            _col2im(col, gx + n * image, a.C, a.H, a.W, a.KH, a.KW, a.OH, a.OW, a.sh, a.sw, a.ph,
                    a.pw, a.dh, a.dw)


def _gemm_backward_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] grad_out,
                          real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                          Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """grad_w (OC x K) = sum over chunks (in order) of sum over the chunk's images (in order)
    of grad_out[n] (OC x P) @ im2col(x[n])^T (P x K)."""
    cdef Py_ssize_t N = x.shape[0], nchunks = (N + DW_CHUNK - 1) // DW_CHUNK
    cdef _Im2col a = _im2col_args(real is double, N, x.shape[1], x.shape[2], x.shape[3],
                                  grad_w.shape[0], grad_w.shape[2], grad_w.shape[3],
                                  grad_out.shape[2], grad_out.shape[3], sh, sw, ph, pw, dh, dw)
    partial = _scratch("partial_gemm", (nchunks, a.OC, a.K),
                       np.float32 if real is float else np.float64)
    cdef real[:, :, ::1] pv = partial
    a.x = &x[0, 0, 0, 0]
    a.g = &grad_out[0, 0, 0, 0]
    a.out = &pv[0, 0, 0]
    cdef int outer = _split_threads(&a, nchunks, _threads(N * a.OC * a.P * a.K, n_threads))
    cdef real[:, ::1] cols = _scratch("cols", (outer, a.col_size),
                                      np.float32 if real is float else np.float64)
    a.cols = &cols[0, 0]
    with nogil:
        parallel_for(_gemm_backward_weight_task, &a, nchunks, outer)
    _sum_chunks(partial, grad_w)


cdef void _gemm_backward_weight_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                                     int worker) noexcept nogil:
    """Chunks [begin, end) of DW_CHUNK images, each into its own partial sum."""
    cdef _Im2col *a = <_Im2col *>args
    if a.f64:
        _gemm_backward_weight_chunks(<const double *>a.x, <const double *>a.g, <double *>a.out,
                                     <double *>a.cols + worker * a.col_size, a, begin, end)
    else:
        _gemm_backward_weight_chunks(<const float *>a.x, <const float *>a.g, <float *>a.out,
                                     <float *>a.cols + worker * a.col_size, a, begin, end)


cdef inline void _gemm_backward_weight_chunks(const real *x, const real *gy, real *partial,
                                              real *col, const _Im2col *a, Py_ssize_t begin,
                                              Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t chunk, n, image = a.C * a.H * a.W, OC = a.OC, P = a.P, K = a.K
    cdef Py_ssize_t last = min(a.N, end * DW_CHUNK)
    cdef GemmAhead ahead
    for chunk in range(begin, end):
        for n in range(chunk * DW_CHUNK, min(a.N, (chunk + 1) * DW_CHUNK)):
            # Both operands of this thread's next image (chunks [begin, end) are its own),
            # fetched into L2 during this image's product: im2col's first pass over an image
            # otherwise waits on L3 for every row.
            ahead = GemmAhead(p0=gy + (n + 1) * OC * P, bytes0=OC * P * sizeof(real),
                              p1=x + (n + 1) * image, bytes1=image * sizeof(real))
            if n + 1 >= last:
                ahead.bytes0 = ahead.bytes1 = 0
            if a.direct:
                gemm_ahead(False, True, OC, K, P, 1, gy + n * OC * P, P, x + n * image, P,
                           0 if n == chunk * DW_CHUNK else 1, partial + chunk * OC * K, K,
                           a.inner, &ahead)
            else:
                _im2col(x + n * image, col, a.C, a.H, a.W, a.KH, a.KW, a.OH, a.OW, a.sh, a.sw,
                        a.ph, a.pw, a.dh, a.dw)
                gemm_ahead(False, True, OC, K, P, 1, gy + n * OC * P, P, col, P,
                           0 if n == chunk * DW_CHUNK else 1, partial + chunk * OC * K, K,
                           a.inner, &ahead)


def _bias_grad(const real[:, :, :, ::1] grad_out, real[::1] grad_b, int n_threads):
    """grad_b[oc] = sum over n (in order) of the sum of grad_out[n, oc] (16 lanes for float32)."""
    cdef Py_ssize_t N = grad_out.shape[0], OC = grad_out.shape[1]
    cdef Py_ssize_t P = grad_out.shape[2] * grad_out.shape[3]
    cdef _Conv a = _Conv(f64=real is double, x=&grad_out[0, 0, 0, 0], w=NULL, bias=NULL,
                         out=&grad_b[0], N=N, C=0, H=0, W=0, OC=OC, KH=0, KW=0, OH=P, OW=1,
                         sh=0, sw=0, ph=0, pw=0, dh=0, dw=0, groups=1, relu=False)
    with nogil:
        parallel_for(_bias_grad_task, &a, OC, _threads(N * OC * P, n_threads))


cdef void _bias_grad_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                          int worker) noexcept nogil:
    """Output channels [begin, end); a.x is the output gradient, a.OH its plane size."""
    cdef _Conv *a = <_Conv *>args
    if a.f64:
        _bias_grad_channels(<const double *>a.x, <double *>a.out, a.N, a.OC, a.OH, begin, end)
    else:
        _bias_grad_channels(<const float *>a.x, <float *>a.out, a.N, a.OC, a.OH, begin, end)


cdef inline void _bias_grad_channels(const real *gp, real *grad_b, Py_ssize_t N, Py_ssize_t OC,
                                     Py_ssize_t P, Py_ssize_t begin,
                                     Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t oc, n, p
    cdef real s, t
    for oc in range(begin, end):
        s = 0
        for n in range(N):
            if real is float:
                s = s + conv_sum_f32(gp + (n * OC + oc) * P, P)
            else:
                t = 0
                for p in range(P):
                    t = t + gp[(n * OC + oc) * P + p]
                s = s + t
        grad_b[oc] = s


# ---------------------------------------------------------------------------------------------
# Entry points: pick the algorithm by dtype and shape. The choice never depends on n_threads,
# so neither do the results.
# ---------------------------------------------------------------------------------------------

cdef bint _f32_dense(x, Py_ssize_t groups):
    """float32 and groups 1: what the row-vector and channel-packed kernels run."""
    return x.dtype == np.float32 and groups == 1


cdef bint _packed_wins(x, Py_ssize_t OC, Py_ssize_t OW, Py_ssize_t K, Py_ssize_t groups,
                       bint phased):
    """The channel-packed kernel (16 output channels per vector) fills its lanes clearly
    better than the row-vector one (16 output pixels per vector), or the stride phases of the
    latter do not fit (_phases_fit). "Clearly": by 1.2x, the packed tile's extra broadcast loads
    measured ~15% slower at equal fill (LeNet's conv2, 10 of 16 lanes vs 16 of 16: packed 27%
    faster). Not with fewer than 32 multiply-adds per output (K = C * KH * KW): the packed
    tile stores lane by lane, and for the MNIST example's 1->32 3x3 (K = 9) those stores cost
    more than its multiply-adds."""
    if not _f32_dense(x, groups) or OC < 16:
        return False
    if not phased:
        return True
    if K < 32:
        return False
    cdef Py_ssize_t lanes = 16 if OC <= 16 else 32
    # packed fill OC / OCpad > 1.2 * row fill OW / OWpad, in integers.
    return 5 * OC * ((OW + 15) // 16 * 16) > 6 * OW * ((OC + lanes - 1) // lanes * lanes)


cdef bint _rowvec_fits(x, Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t groups):
    """On a wide layer with a spatial kernel the row-vector direct kernel (input channels in
    L1-sized blocks) beats im2col + GEMM when at most 1/8 of its lanes fall past OW (the output
    row; for a strided input gradient, one stride phase's row). Interleaved best-of-12 here,
    forward / input gradient: (32,64,32,32)->64 3x3 21.0 / 18.9 ms against 26.6 / 24.2;
    (16,128,28,28)->128 3x3 (7/8 of the lanes used) 30.7 / 30.2 against 35.5 / 31.9. A 1x1
    kernel is a plain GEMM on the image, faster: 64->64 at 16x16, batch 128, one thread, 1.9 ms
    against 2.5 for each of the two passes (2026-12-02)."""
    return _f32_dense(x, groups) and KH * KW > 1 and 8 * OW >= 7 * ((OW + 15) // 16 * 16)


cdef bint _dw_rows_wins(Py_ssize_t OC, Py_ssize_t OW, Py_ssize_t KW):
    """The row-vector weight gradient (conv_dw_f32_chunk: 4 output channels x TB taps of vector
    accumulators, 4 + TB loads per 4 * TB multiply-adds, FMA-bound) against the channel-packed
    one (one gradient vector and TB broadcasts per TB, load-bound: 2 TB / (TB + 1) of the FMA
    rate): rows win when their lane fill OW / OW16 exceeds TB / (TB + 1) of the packed kernel's
    fill OC / OC16. Fewer than 16 channels: rows always (the packed kernel needs 16)."""
    cdef Py_ssize_t tb = conv_dw_f32_tb(KW)
    if OC < 16:
        return True
    return OW * (tb + 1) * ((OC + 15) // 16 * 16) > tb * OC * ((OW + 15) // 16 * 16)


def _phases_fit(x, OH, OW, KH, KW, sh, sw, dh, dw):
    """The row-vector kernels' stride-phase planes (sh * sw per channel, see _pad_planes) hold
    at most 4x the input and output planes (+64 Ki elements), like _padding_fits: a stride far
    beyond the kernel would copy mostly unused phases. Python integers: no overflow."""
    H, W = x.shape[2], x.shape[3]
    phased = sh * sw * (OH + (KH - 1) * dh // sh) * ((OW + 15) // 16 * 16 + (KW - 1) * dw // sw)
    # The strided input gradient's padded output gradient (_strided_backward_input).
    grad_input = (OH + KH) * (((W + sw - 1) // sw + 15) // 16 * 16 + KW) if sh * sw > 1 else 0
    return max(phased, grad_input) <= 4 * (H * W + OH * OW) + 65536


def _padding_fits(x, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw):
    """The direct and channel-packed kernels copy the input into zero-padded planes; with a
    padding or dilation far beyond the input (a stride of 2**34 over a padding of 2**32) those
    planes would be gigabytes for a tiny output. Allowed while the largest padded plane of the
    forward and input-gradient paths holds at most 4x the input and output planes (+64 Ki elements); otherwise the
    generic kernel (no copies) runs. Python integers: nothing here can overflow."""
    H, W = x.shape[2], x.shape[3]
    ow16 = (OW + 15) // 16 * 16
    direct = (OH + (KH - 1) * dh) * (ow16 + (KW - 1) * dw)
    packed = ((OH - 1) * sh + (KH - 1) * dh + 1) * ((OW - 1) * sw + (KW - 1) * dw + 1)
    grad_input = (H + (KH - 1) * dh) * ((W + 15) // 16 * 16 + (KW - 1) * dw)
    return max(direct, packed, grad_input) <= 4 * (H * W + OH * OW) + 65536


cdef bint _is_wide(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t KH, Py_ssize_t KW,
                   Py_ssize_t groups):
    """Enough channels that im2col + GEMM beats the direct kernels (and the GEMM's row tiles
    are filled): K = C*KH*KW >= 64 reductions per output and >= 32 output channels."""
    return groups == 1 and C * KH * KW >= 64 and OC >= 32


cdef bint _use_gemm(str algorithm, bint auto_rule, Py_ssize_t groups) except -1:
    """im2col + GEMM or not, for algorithm "auto" (auto_rule decides), "direct" or "im2col"."""
    if algorithm == "auto":
        return auto_rule
    if algorithm == "direct":
        return False
    if algorithm == "im2col":
        return groups == 1
    raise ValueError(f"conv2d: algorithm must be 'auto', 'direct' or 'im2col', got {algorithm!r}")


def conv2d_forward(x, weight, bias, out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint relu,
                   int n_threads, str algorithm="auto"):
    """out = conv2d(x, weight) + bias (then max(., 0) with relu); bias: (OC,) array or None.

    x (N, C, H, W), weight (OC, C // groups, KH, KW), out (N, OC, OH, OW): C-contiguous, one
    dtype (float32 or float64). (ph, pw) is the top/left padding; out's size implies the rest.
    algorithm: "auto" (by shape), "direct" (never im2col) or "im2col" (whenever groups == 1).
    """
    path = forward_path(x, weight, out, sh, sw, dh, dw, groups, algorithm)
    if path == "empty":
        return
    if path == "empty_input":
        out[...] = 0 if bias is None else bias[:, None, None]
        if relu:
            np.maximum(out, 0, out=out)
    elif path == "gemm":
        _gemm_forward(x, weight, bias, out, sh, sw, ph, pw, dh, dw, relu, n_threads)
    elif path == "packed":
        _packed_conv(x, weight, bias, out, sh, sw, ph, pw, dh, dw, relu, n_threads)
    elif path == "direct":
        _direct_conv(x, None, weight, False, bias, out, ph, pw, dh, dw, relu, n_threads, sh, sw)
    else:
        _generic_forward(x, weight, bias, out, sh, sw, ph, pw, dh, dw, groups, relu, n_threads)


def forward_path(x, weight, out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                 Py_ssize_t groups, str algorithm="auto") -> str:
    """The kernel conv2d_forward runs for these arrays: "empty" (no output), "empty_input",
    "generic", "gemm" (im2col + GEMM), "packed" (_packed_conv) or "direct" (_direct_conv, by
    stride phases when strided). minidl.static.lower asks it too, so that a compiled program
    runs the kernel the op would."""
    cdef Py_ssize_t C = weight.shape[1], OC = weight.shape[0]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    if out.size == 0:
        return "empty"
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    if x.size == 0:
        return "empty_input"
    if not _padding_fits(x, OH, OW, KH, KW, sh, sw, dh, dw):
        return "generic"
    phased = _f32_dense(x, groups) and _phases_fit(x, OH, OW, KH, KW, sh, sw, dh, dw)
    packed = _packed_wins(x, OC, OW, C * KH * KW, groups, phased)
    # The row-vector kernel takes wide layers whose rows fill its lanes, strided ones by stride
    # phases: ResNet's 16->32 stride 2 at 32x32, one thread, 3.0 ms against im2col + GEMM's 4.1
    # once the phases are padded in L2-sized image groups (4.8 against 3.9 before). Where the
    # rows fill them badly, the channel-packed kernel beats im2col + GEMM with any spatial
    # kernel (one thread, ms, GEMM / packed, 2026-12-07): ResNet-20's 32->64 stride 2 at 16x16
    # (batch 128) 8.8 / 4.1, 64->128 stride 2 at 16x16 23.1 / 15.4, 256->256 at 7x7 (batch 32)
    # 26.0 / 20.9, 32->64 5x5 at 12x12 6.0 / 4.4, 64->64 at 4x4 4.9 / 2.2, 128->128 at 4x4
    # (batch 8) 0.84 / 0.80; a 1x1 kernel ties (64->128 stride 2, 4.4 / 4.4) and keeps the GEMM.
    if _use_gemm(algorithm, _is_wide(C, OC, KH, KW, groups)
                 and not (phased and _rowvec_fits(x, OW, KH, KW, groups))
                 and not (packed and KH * KW > 1), groups):
        return "gemm"
    if packed:
        return "packed"
    return "direct" if phased else "generic"


def conv2d_backward(x, weight, grad_out, relu_out, grad_x, grad_w, grad_b, Py_ssize_t sh,
                    Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t groups, int n_threads, str algorithm="auto"):
    """Fill the gradients that are not None: grad_x like x, grad_w like weight, grad_b (OC,).

    grad_out: (N, OC, OH, OW); relu_out: the forward output when it had the fused ReLU (the
    gradient is then zero where relu_out <= 0), else None. Every array C-contiguous, one dtype.
    algorithm: as for conv2d_forward.
    """
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    paths = backward_paths(x, weight, grad_out, grad_x is not None,
                           grad_w is not None or grad_b is not None, sh, sw, dh, dw, groups,
                           algorithm)
    if paths is None:
        for g in (grad_x, grad_w, grad_b):
            if g is not None:
                g[...] = 0
        return
    x_algo, w_algo = paths
    if x_algo == "direct":
        _direct_conv(grad_out, relu_out, weight, True, None, grad_x, dh * (KH - 1) - ph,
                     dw * (KW - 1) - pw, dh, dw, False, n_threads)
    elif x_algo == "strided":
        _strided_backward_input(grad_out, relu_out, weight, grad_x, sh, sw, ph, pw, n_threads)
    elif x_algo == "images":
        _images_backward_input(grad_out, relu_out, weight, grad_x, ph, pw, n_threads)
    if w_algo in ("rows", "packed"):
        gw = grad_w if grad_w is not None else np.empty_like(weight)
        if w_algo == "rows":
            _direct_backward_weight(x, grad_out, relu_out, gw, grad_b, sh, sw, ph, pw, dh, dw,
                                    n_threads)
        else:
            _packed_backward_weight(x, grad_out, relu_out, gw, grad_b, sh, sw, ph, pw, dh, dw,
                                    n_threads)
    if x_algo not in ("gemm", "generic") and w_algo not in ("gemm", "generic"):
        return
    if relu_out is not None:  # the fused ReLU's backward (PyTorch's threshold_backward)
        masked = np.empty_like(grad_out)
        _elementwise.relu_backward(relu_out.reshape(-1), grad_out.reshape(-1), masked.reshape(-1),
                                   n_threads)
        grad_out = masked
    if x_algo == "gemm":
        _gemm_backward_input(grad_out, weight, grad_x, sh, sw, ph, pw, dh, dw, n_threads)
    elif x_algo == "generic":
        _generic_backward_input(grad_out, weight, grad_x, sh, sw, ph, pw, dh, dw, groups,
                                n_threads)
    if w_algo == "gemm":
        if grad_w is not None:
            _gemm_backward_weight(x, grad_out, grad_w, sh, sw, ph, pw, dh, dw, n_threads)
        if grad_b is not None:
            _bias_grad(grad_out, grad_b, n_threads)
    elif w_algo == "generic":
        if grad_w is not None:
            _generic_backward_weight(x, grad_out, grad_w, sh, sw, ph, pw, dh, dw, groups,
                                     n_threads)
        if grad_b is not None:
            _bias_grad(grad_out, grad_b, n_threads)


def backward_paths(x, weight, grad_out, bint need_x, bint need_w, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, str algorithm="auto"):
    """The kernels conv2d_backward runs: None when there is nothing to compute (an empty
    batch or output: the gradients are zeros), else (input-gradient path, weight-and-bias
    path), each None when not needed: "direct" (_direct_conv on the flipped weights), "images"
    (_images_backward_input),
    "strided" (_strided_backward_input), "rows" (_direct_backward_weight), "packed"
    (_packed_backward_weight), "gemm" or "generic". minidl.static.lower asks it too."""
    cdef Py_ssize_t C = weight.shape[1], OC = weight.shape[0]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    if grad_out.size == 0 or x.size == 0:
        return None
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3], W = x.shape[3]
    # No padded copies when the padding dwarfs the input (see _padding_fits).
    fits = _padding_fits(x, OH, OW, KH, KW, sh, sw, dh, dw)
    phased = fits and _f32_dense(x, groups) and _phases_fit(x, OH, OW, KH, KW, sh, sw, dh, dw)
    wide = fits and _use_gemm(algorithm, _is_wide(C, OC, KH, KW, groups), groups)
    auto = algorithm == "auto"
    strided = sh != 1 or sw != 1
    # Input gradient: the row-vector kernel on the flipped weights (by stride phases when
    # strided), im2col's adjoint + GEMM on wide layers whose rows fill the lanes badly, else the
    # generic kernel.
    x_algo = None
    if need_x:
        if (phased and not strided and auto and dh == 1 and dw == 1
                and images_input_grad_wins(x.shape[0], C, x.shape[2], W, OH, OW, KH, KW)):
            x_algo = "images"
        elif phased and not strided and (not wide or auto and _rowvec_fits(x, W, KH, KW, groups)):
            x_algo = "direct"
        elif phased and strided and dh == 1 and dw == 1 and (
                not wide or auto and _rowvec_fits(x, (W + sw - 1) // sw, KH, KW, groups)):
            x_algo = "strided"
        else:
            x_algo = "gemm" if wide else "generic"
    # Weight (and bias) gradient: row-vector or channel-packed direct kernels, GEMM on wide
    # layers whose rows fill the lanes badly, else the generic kernel. The row-vector kernel
    # against im2col + GEMM on wide layers, one thread's CPU time, batch 128 (2026-12-02): 16->32
    # stride 2 at 32x32 5.6 against 8.0 ms, 32->32 at 16x16 8.7-11.5 against 13.6-14.7.
    w_algo = None
    if need_w:
        if phased and (not wide or auto and _rowvec_fits(x, OW, KH, KW, groups)) and (
                _dw_rows_wins(OC, OW, KW)):
            w_algo = "rows"
        elif fits and not wide and _f32_dense(x, groups) and OC >= 16:
            w_algo = "packed"
        else:
            w_algo = "gemm" if wide else "generic"
    return x_algo, w_algo
