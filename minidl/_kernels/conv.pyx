# cython: language_level=3
"""2-D convolution kernels over C-contiguous NCHW float32/float64 buffers.

x: (N, C, H, W); weight: (OC, C // groups, KH, KW); out: (N, OC, OH, OW) with
OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1 (likewise OW), decided by the op layer.

Determinism: every output element (of the forward and of each gradient) has one owner thread that
sums its terms in a fixed order, so results are bitwise identical for any thread count.
"""

from cython.parallel cimport prange

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
# Generic direct kernels: any stride, padding, dilation, groups and dtype. One output row per
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


def conv2d_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] weight, bias,
                   real[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint relu,
                   int n_threads):
    """out = conv2d(x, weight) + bias (then max(., 0) with relu); bias: (OC,) array or None."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], item
    cdef const real[::1] bias_view
    cdef const real *bp = NULL
    if N == 0 or OC == 0 or OH * OW == 0:
        return
    if bias is not None:
        bias_view = bias
        bp = &bias_view[0]
    cdef const real *xp = &x[0, 0, 0, 0] if x.size else NULL
    cdef const real *wp = &weight[0, 0, 0, 0] if weight.size else NULL
    cdef real *op = &out[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    for item in prange(N * OC * OH, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _forward_row(xp, wp, bp, op, item // (OC * OH), (item // OH) % OC, item % OH,
                     C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups, relu)


def conv2d_backward_input(const real[:, :, :, ::1] grad_out, const real[:, :, :, ::1] weight,
                          real[:, :, :, ::1] grad_x, Py_ssize_t sh, Py_ssize_t sw,
                          Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                          Py_ssize_t groups, int n_threads):
    """grad_x (N, C, H, W) from grad_out (N, OC, OH, OW); each input row has one owner."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1], H = grad_x.shape[2]
    cdef Py_ssize_t W = grad_x.shape[3], OC = weight.shape[0], KH = weight.shape[2]
    cdef Py_ssize_t KW = weight.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3], item
    if N * C * H * W == 0:
        return
    cdef const real *gp = &grad_out[0, 0, 0, 0] if grad_out.size else NULL
    cdef const real *wp = &weight[0, 0, 0, 0] if weight.size else NULL
    cdef real *xp = &grad_x[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * weight.shape[1] * KH * KW, n_threads)
    for item in prange(N * C * H, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _backward_input_row(gp, wp, xp, item // (C * H), (item // H) % C, item % H,
                            C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups)


def conv2d_backward_weight(const real[:, :, :, ::1] x, const real[:, :, :, ::1] grad_out,
                           real[:, :, :, ::1] grad_w, Py_ssize_t sh, Py_ssize_t sw,
                           Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                           Py_ssize_t groups, int n_threads):
    """grad_w (OC, C // groups, KH, KW) = sum over the batch of grad_out (x) x-windows."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = grad_w.shape[0], Cg = grad_w.shape[1], KH = grad_w.shape[2]
    cdef Py_ssize_t KW = grad_w.shape[3], OH = grad_out.shape[2], OW = grad_out.shape[3], item
    if OC * Cg * KH * KW == 0:
        return
    cdef real *wp = &grad_w[0, 0, 0, 0]
    if N == 0 or OH * OW == 0:
        for item in range(OC * Cg * KH * KW):
            wp[item] = 0
        return
    cdef const real *xp = &x[0, 0, 0, 0]
    cdef const real *gp = &grad_out[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * OH * OW * Cg * KH * KW, n_threads)
    for item in prange(OC * Cg, nogil=True, schedule='static', num_threads=nt,
                       use_threads_if=nt > 1):
        _backward_weight_pair(xp, gp, wp, item // Cg, item % Cg, N, C, H, W, OC, KH, KW,
                              OH, OW, sh, sw, ph, pw, dh, dw, groups)


def conv2d_backward_bias(const real[:, :, :, ::1] grad_out, real[::1] grad_b, int n_threads):
    """grad_b (OC,) = grad_out (N, OC, OH, OW) summed over n, oh, ow in that order."""
    cdef Py_ssize_t N = grad_out.shape[0], OC = grad_out.shape[1]
    cdef Py_ssize_t P = grad_out.shape[2] * grad_out.shape[3], oc, n, p
    cdef const real *gp
    cdef real s
    if OC == 0:
        return
    if N * P == 0:
        for oc in range(OC):
            grad_b[oc] = 0
        return
    gp = &grad_out[0, 0, 0, 0]
    cdef int nt = _threads(N * OC * P, n_threads)
    for oc in prange(OC, nogil=True, schedule='static', num_threads=nt, use_threads_if=nt > 1):
        s = 0
        for n in range(N):
            for p in range(P):
                s = s + gp[(n * OC + oc) * P + p]
        grad_b[oc] = s
