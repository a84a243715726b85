# cython: language_level=3
"""2-D convolution kernels over C-contiguous NCHW float32/float64 buffers.

x: (N, C, H, W); weight: (OC, C // groups, KH, KW); out: (N, OC, OH, OW) with
OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1 (likewise OW), decided by the op layer.

Determinism: every output element (of the forward and of each gradient) has one owner thread that
sums its terms in a fixed order, so results are bitwise identical for any thread count.
"""

import numpy as np

from cython.parallel cimport prange

cdef extern from "conv_kernels.h" nogil:
    int conv_direct_f32_ocb(int oc)
    void conv_direct_f32_rows(const float *x, Py_ssize_t Wp, const Py_ssize_t *step_off,
                              int nsteps, const float *wpk, int ocb,
                              int oc_valid, const float *bias, int relu, float *out, int OH,
                              int OW, int row0, int row1)
    int conv_dw_f32_ocb(int oc)
    int conv_dw_f32_tb(int KW)
    void conv_dw_f32_chunk(const float *x, Py_ssize_t x_img, Py_ssize_t Wp, const float *g,
                           Py_ssize_t g_img, Py_ssize_t g_plane, int nimg, int OH, int OW,
                           int KH, int KW, int dh, int dw, int ocb, int oc_valid, float *dwp,
                           Py_ssize_t dw_o_stride, float *db)
    void conv_pad_plane_f32(const float *src, int H, int W, const float *mask, float *dst,
                            int Hp, int Wp, int top, int left)

ctypedef fused real:
    float
    double

# Below this many multiply-adds a kernel runs on one thread: an OpenMP region costs ~1 us.
cdef Py_ssize_t MIN_PARALLEL_MACS = 65536


cdef inline int _threads(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_MACS else 1


cdef inline Py_ssize_t _lo(Py_ssize_t offset, Py_ssize_t step) noexcept nogil:
    """Smallest o >= 0 with o * step + offset >= 0 (step > 0)."""
    if offset >= 0:
        return 0
    return (-offset + step - 1) // step


cdef inline Py_ssize_t _hi(Py_ssize_t offset, Py_ssize_t step, Py_ssize_t size,
                           Py_ssize_t count) noexcept nogil:
    """One past the largest o < count with o * step + offset < size (step > 0)."""
    if size - 1 - offset < 0:
        return 0
    return min(count, (size - 1 - offset) // step + 1)


# ---------------------------------------------------------------------------------------------
# Generic direct kernels: any stride, padding, dilation, groups and dtype (the fallback). One output row per
# work item; the innermost loop runs along the row (contiguous for stride 1, so it vectorizes).
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
                lo = _lo(iw0, sw)
                hi = _hi(iw0, sw, W, OW)
                for ow in range(lo, hi):
                    row[ow] = row[ow] + wv * xrow[ow * sw + iw0]
    if relu:
        for ow in range(OW):
            if not row[ow] > 0:
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
                lo = _lo(iw0, sw)
                hi = _hi(iw0, sw, W, OW)
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
            lo = _lo(iw0, sw)
            hi = _hi(iw0, sw, W, OW)
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
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], item
    cdef const real[::1] bias_view
    cdef const real *bp = NULL
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef const real *xp = &x[0, 0, 0, 0]
    cdef const real *wp = &weight[0, 0, 0, 0]
    cdef real *op = &out[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    for item in prange(N * OC * OH, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _forward_row(xp, wp, bp, op, item // (OC * OH), (item // OH) % OC, item % OH,
                     C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups, relu)


def _generic_backward_input(const real[:, :, :, ::1] grad_out, const real[:, :, :, ::1] weight,
                            real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t groups, int n_threads):
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OC = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3], item
    cdef const real *gp = &grad_out[0, 0, 0, 0]
    cdef const real *wp = &weight[0, 0, 0, 0]
    cdef real *xp = &grad_x[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    for item in prange(N * C * H, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _backward_input_row(gp, wp, xp, item // (C * H), (item // H) % C, item % H,
                            C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups)


def _generic_backward_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] grad_out,
                             real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                             Py_ssize_t groups, int n_threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = grad_w.shape[0], Cg = grad_w.shape[1], KH = grad_w.shape[2]
    cdef Py_ssize_t KW = grad_w.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3], item
    cdef const real *xp = &x[0, 0, 0, 0]
    cdef const real *gp = &grad_out[0, 0, 0, 0]
    cdef real *wp = &grad_w[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * Cg * KH * KW, n_threads)
    for item in prange(OC * Cg, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _backward_weight_pair(xp, gp, wp, item // Cg, item % Cg, N, C, H, W, OC, KH, KW,
                              OH, OW, sh, sw, ph, pw, dh, dw, groups)


def _generic_backward_bias(const real[:, :, :, ::1] grad_out, real[::1] grad_b, int n_threads):
    cdef Py_ssize_t N = grad_out.shape[0], OC = grad_out.shape[1]
    cdef Py_ssize_t P = grad_out.shape[2] * grad_out.shape[3], oc, n, p
    cdef const real *gp = &grad_out[0, 0, 0, 0]
    cdef real s
    cdef int nt = _threads(N * OC * P, n_threads)
    for oc in prange(OC, nogil=True, schedule='static', num_threads=nt, use_threads_if=nt > 1):
        s = 0
        for n in range(N):
            for p in range(P):
                s = s + gp[(n * OC + oc) * P + p]
        grad_b[oc] = s


# ---------------------------------------------------------------------------------------------
# Direct float32 kernels (conv_kernels.h) for stride 1, groups 1: the input is first copied into
# zero-padded planes whose row pitch lets 16 output pixels load as one vector.
# ---------------------------------------------------------------------------------------------

# Images per weight-gradient partial sum: fixed, so the batch reduction (partials combined in
# chunk order) gives the same bits for any thread count.
cdef int DW_CHUNK = 8


cdef inline Py_ssize_t _row_pitch(Py_ssize_t OW, Py_ssize_t KW, Py_ssize_t dw) noexcept nogil:
    return (OW + 15) // 16 * 16 + (KW - 1) * dw


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


def _pad_planes(const float[:, :, :, ::1] src, relu_out, Py_ssize_t Hp, Py_ssize_t Wp,
                Py_ssize_t top, Py_ssize_t left, Py_ssize_t planes_out, Py_ssize_t slack,
                int n_threads):
    """Zero-padded copy: (N, planes_out) planes of Hp x Wp (planes past src's channels zero)
    plus `slack` zero floats; elements where relu_out (like src) is not > 0 become 0."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], H = src.shape[2], W = src.shape[3]
    cdef Py_ssize_t plane = Hp * Wp, p, n, c, i
    buf = np.empty(N * planes_out * plane + slack, dtype=np.float32)
    cdef float[::1] b = buf
    cdef const float[:, :, :, ::1] mask
    cdef const float *mp = NULL
    if relu_out is not None:
        mask = relu_out
        mp = &mask[0, 0, 0, 0]
    cdef const float *sp = &src[0, 0, 0, 0]
    cdef float *bp = &b[0]
    cdef int nt = _threads(N * planes_out * plane, n_threads)
    for p in prange(N * planes_out, nogil=True, schedule='static', num_threads=nt,
                    use_threads_if=nt > 1):
        n = p // planes_out
        c = p % planes_out
        if c < C:
            conv_pad_plane_f32(sp + (n * C + c) * H * W, H, W,
                               mp + (n * C + c) * H * W if mp != NULL else NULL,
                               bp + p * plane, Hp, Wp, top, left)
        else:
            for i in range(plane):
                bp[p * plane + i] = 0
    for i in range(N * planes_out * plane, N * planes_out * plane + slack):
        bp[i] = 0
    return buf


def _direct_conv(const float[:, :, :, ::1] src, relu_in, const float[:, :, :, ::1] weight,
                 bint flip, bias, float[:, :, :, ::1] out, Py_ssize_t top, Py_ssize_t left,
                 Py_ssize_t dh, Py_ssize_t dw, bint relu, int n_threads):
    """out = stride-1 correlation of src (N, C, H, W), padded by (top, left) (negative: cropped)
    and zero below/right as far as out needs, with weight (OC, C, KH, KW), or with flip the
    input-gradient kernel of a weight (C, OC, KH, KW). relu_in masks src (fused ReLU backward)."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OC = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t Hp = OH + (KH - 1) * dh, Wp = _row_pitch(OW, KW, dw), plane = Hp * Wp
    cdef int ocb = conv_direct_f32_ocb(OC)
    cdef Py_ssize_t nblk = (OC + ocb - 1) // ocb, T = KH * KW, t, item, n, blk, r0
    cdef Py_ssize_t nv = (OW + 15) // 16
    cdef Py_ssize_t nvt = 2 if ocb >= 6 else (4 if ocb == 4 else 8)
    # Rows per work item: ~4 register tiles, enough work to amortize the scheduling.
    cdef Py_ssize_t rows = max(1, min(OH, (4 * nvt + nv - 1) // nv))
    cdef Py_ssize_t nrb = (OH + rows - 1) // rows
    xpad = _pad_planes(src, relu_in, Hp, Wp, top, left, C, 0, n_threads)
    packed = _pack_weights(weight, ocb, flip)
    steps = np.empty(C * T, dtype=np.intp)
    cdef Py_ssize_t[::1] step_off = steps
    for t in range(C * T):
        step_off[t] = (t // T) * plane + (t % T // KW) * dh * Wp + (t % KW) * dw
    cdef const float[::1] xv = xpad
    cdef const float[::1] wv = packed
    cdef const float[::1] bias_view
    cdef const float *bp = NULL
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef const float *xptr = &xv[0]
    cdef const float *wptr = &wv[0]
    cdef float *optr = &out[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * C * T, n_threads)
    for item in prange(N * nblk * nrb, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        n = item // (nblk * nrb)
        blk = (item // nrb) % nblk
        r0 = (item % nrb) * rows
        conv_direct_f32_rows(xptr + n * C * plane, Wp, &step_off[0], C * T,
                             wptr + blk * C * T * ocb, ocb, min(ocb, OC - blk * ocb),
                             bp + blk * ocb if bp != NULL else NULL, relu,
                             optr + (n * OC + blk * ocb) * OH * OW, OH, OW, r0,
                             min(OH, r0 + rows))


def _direct_backward_weight(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                            relu_out, grad_w, grad_b, Py_ssize_t ph, Py_ssize_t pw,
                            Py_ssize_t dh, Py_ssize_t dw, int n_threads):
    """grad_w (OC, C, KH, KW) and/or grad_b (OC,) for a stride-1 groups-1 float32 conv:
    per-chunk partial sums (DW_CHUNK images, in parallel) added in chunk order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], OC = grad_out.shape[1]
    cdef Py_ssize_t OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef Py_ssize_t KH = grad_w.shape[2], KW = grad_w.shape[3], T = KH * KW
    cdef Py_ssize_t Hp = OH + (KH - 1) * dh, Wp = _row_pitch(OW, KW, dw), plane = Hp * Wp
    cdef Py_ssize_t nv = (OW + 15) // 16, g_plane = OH * nv * 16
    cdef int ocb = conv_dw_f32_ocb(OC), tb = conv_dw_f32_tb(KW)
    cdef Py_ssize_t nblk = (OC + ocb - 1) // ocb, ocp = nblk * ocb
    cdef Py_ssize_t nchunks = (N + DW_CHUNK - 1) // DW_CHUNK, item, chunk, blk, c, n0
    xpad = _pad_planes(x, None, Hp, Wp, ph, pw, C, (tb - 1) * dw + 16, n_threads)
    gpad = _pad_planes(grad_out, relu_out, OH, nv * 16, 0, 0, ocp, 0, n_threads)
    partial_w = np.empty((nchunks, OC, C * T), dtype=np.float32)
    partial_b = np.empty((nchunks, OC), dtype=np.float32)
    cdef const float[::1] xv = xpad
    cdef const float[::1] gv = gpad
    cdef float[:, :, ::1] pw_view = partial_w
    cdef float[:, ::1] pb_view = partial_b
    cdef const float *xptr = &xv[0]
    cdef const float *gptr = &gv[0]
    cdef float *pwp = &pw_view[0, 0, 0]
    cdef float *pbp = &pb_view[0, 0]
    cdef int nt = _threads(N * OC * OH * OW * C * T, n_threads)
    for item in prange(nchunks * nblk * C, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        chunk = item // (nblk * C)
        blk = (item // C) % nblk
        c = item % C
        n0 = chunk * DW_CHUNK
        conv_dw_f32_chunk(xptr + n0 * C * plane + c * plane, C * plane, Wp,
                          gptr + (n0 * ocp + blk * ocb) * g_plane, ocp * g_plane, g_plane,
                          min(DW_CHUNK, N - n0), OH, OW, KH, KW, dh, dw, ocb,
                          min(ocb, OC - blk * ocb),
                          pwp + (chunk * OC + blk * ocb) * C * T + c * T, C * T,
                          pbp + chunk * OC + blk * ocb if c == 0 else NULL)
    _sum_chunks(partial_w, grad_w)
    _sum_chunks(partial_b, grad_b)


def _sum_chunks(partial, out):
    """out = partial[0] + partial[1] + ... in chunk order (float32, elementwise)."""
    if out is None:
        return
    cdef float[:, ::1] p = partial.reshape(partial.shape[0], -1)
    cdef float[::1] o = out.reshape(-1)
    cdef Py_ssize_t k, i, K = p.shape[0], M = p.shape[1]
    cdef float s
    for i in range(M):
        s = p[0, i]
        for k in range(1, K):
            s = s + p[k, i]
        o[i] = s


# ---------------------------------------------------------------------------------------------
# Entry points: pick the algorithm by dtype and shape. The choice never depends on n_threads,
# so neither do the results.
# ---------------------------------------------------------------------------------------------

cdef bint _direct_eligible(x, weight, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t groups):
    return x.dtype == np.float32 and sh == 1 and sw == 1 and groups == 1


def conv2d_forward(x, weight, bias, out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint relu,
                   int n_threads):
    """out = conv2d(x, weight) + bias (then max(., 0) with relu); bias: (OC,) array or None.

    x (N, C, H, W), weight (OC, C // groups, KH, KW), out (N, OC, OH, OW): C-contiguous, one
    dtype (float32 or float64). (ph, pw) is the top/left padding; out's size implies the rest.
    """
    if out.size == 0:
        return
    if _direct_eligible(x, weight, sh, sw, groups):
        _direct_conv(x, None, weight, False, bias, out, ph, pw, dh, dw, relu, n_threads)
    else:
        _generic_forward(x, weight, bias, out, sh, sw, ph, pw, dh, dw, groups, relu, n_threads)


def conv2d_backward(x, weight, grad_out, relu_out, grad_x, grad_w, grad_b, Py_ssize_t sh,
                    Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t groups, int n_threads):
    """Fill the gradients that are not None: grad_x like x, grad_w like weight, grad_b (OC,).

    grad_out: (N, OC, OH, OW); relu_out: the forward output when it had the fused ReLU (the
    gradient is then masked by relu_out > 0), else None. Every array C-contiguous, one dtype.
    """
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t KH = weight.shape[2], KW = weight.shape[3]
    if grad_out.size == 0 or x.size == 0:
        for g in (grad_x, grad_w, grad_b):
            if g is not None:
                g[...] = 0
        return
    if _direct_eligible(x, weight, sh, sw, groups):
        if grad_x is not None:
            _direct_conv(grad_out, relu_out, weight, True, None, grad_x, dh * (KH - 1) - ph,
                         dw * (KW - 1) - pw, dh, dw, False, n_threads)
        if grad_w is not None or grad_b is not None:
            _direct_backward_weight(x, grad_out, relu_out,
                                    grad_w if grad_w is not None else np.empty_like(weight),
                                    grad_b, ph, pw, dh, dw, n_threads)
        return
    if relu_out is not None:
        grad_out = np.where(relu_out > 0, grad_out, grad_out.dtype.type(0))
    if grad_x is not None:
        _generic_backward_input(grad_out, weight, grad_x, sh, sw, ph, pw, dh, dw, groups,
                                n_threads)
    if grad_w is not None:
        _generic_backward_weight(x, grad_out, grad_w, sh, sw, ph, pw, dh, dw, groups, n_threads)
    if grad_b is not None:
        _generic_backward_bias(grad_out, grad_b, n_threads)
