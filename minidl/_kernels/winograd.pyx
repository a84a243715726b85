# cython: language_level=3
"""Winograd F(m x m, 3x3), m = 2 or 4, convolution for float32, stride 1, 3x3, dilation 1,
groups 1.

x: (N, C, H, W); weights enter transformed, U: (E, OC, C) = G g G^T per (oc, c) (made by
minidl/backends/winograd.py), E = (m + 2)^2 positions: 16 for F(2x2), 36 for F(4x4), which
tells the tile; out: (N, OC, OH, OW), with (ph, pw) the top/left padding (any integer, negative
crops) and out's size implying the rest.

The N * ceil(OH / m) * ceil(OW / m) output tiles, numbered image by image and row by row, are
cut into blocks of TB consecutive tiles (TB from the channel counts, the tile and the image size
only: whole images when an image's tiles fit, so that the transforms run over whole planes and
fill their vectors on small images; F(4x4) always takes whole images, its transforms exist for
whole planes only, or on images of fewer than 16 tiles for all of a block's planes of one
channel at once). Per block: the input transform V (E, C, TB), E GEMMs
M[e] (OC x TB) = U[e] (OC x C) @ V[e] (C x TB) with minidl's own GEMM, and the output
transform. Blocks are independent (any thread of minidl's pool may run any block).
The weight gradient dU[e] (OC x C) = sum over tiles of dM[e] (OC x TB) @ V[e]^T is summed per
group of consecutive blocks (REDUCE_BLOCKS, fewer when that leaves fewer than REDUCE_GROUPS
groups: a rule of the shape alone) and the groups are added in group order: bitwise the same
for any thread count.

Error: see minidl/backends/winograd.py (measured and tested in tests/test_conv_winograd.py).
"""

from libc.stdlib cimport calloc, free
from posix.stdlib cimport posix_memalign

import numpy as np

from minidl._kernels.gemm cimport gemm
from minidl._kernels.threadpool cimport parallel_for

cdef extern from "winograd_kernels.h" nogil:
    Py_ssize_t wino_scratch_floats(Py_ssize_t tiles)
    void wino_input_f32(const float *x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                        Py_ssize_t pw, Py_ssize_t ty, Py_ssize_t tx0, Py_ssize_t tx1, float *V,
                        Py_ssize_t estride, float *scratch)
    int wino_output_f32(const float *M, Py_ssize_t estride, Py_ssize_t ty, Py_ssize_t tx0,
                        Py_ssize_t tx1, float *out, Py_ssize_t OH, Py_ssize_t OW, float bias,
                        int relu, float *scratch)
    void wino_grad_f32(const float *g, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t ty,
                       Py_ssize_t tx0, Py_ssize_t tx1, float *dM, Py_ssize_t estride,
                       float *scratch)
    Py_ssize_t wino_plane_scratch_floats(Py_ssize_t th, Py_ssize_t tw)
    void wino_input_plane_f32(const float *x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                              Py_ssize_t pw, Py_ssize_t th, Py_ssize_t tw, float *V,
                              Py_ssize_t estride, float *scratch)
    int wino_output_plane_f32(const float *M, Py_ssize_t estride, Py_ssize_t th,
                              Py_ssize_t tw, float *out, Py_ssize_t OH, Py_ssize_t OW,
                              float bias, int relu, float *scratch)
    void wino_grad_plane_f32(const float *g, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t th,
                             Py_ssize_t tw, float *dM, Py_ssize_t estride, float *scratch)
    Py_ssize_t wino4_plane_scratch_floats(Py_ssize_t th, Py_ssize_t tw)
    void wino4_input_plane_f32(const float *x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                               Py_ssize_t pw, Py_ssize_t th, Py_ssize_t tw, float *V,
                               Py_ssize_t estride, float *scratch)
    int wino4_output_plane_f32(const float *M, Py_ssize_t estride, Py_ssize_t th,
                               Py_ssize_t tw, float *out, Py_ssize_t OH, Py_ssize_t OW,
                               float bias, int relu, float *scratch)
    void wino4_grad_plane_f32(const float *g, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t th,
                              Py_ssize_t tw, float *dM, Py_ssize_t estride, float *scratch)
    Py_ssize_t wino4_images_scratch_floats(Py_ssize_t tiles)
    void wino4_input_images_f32(const float *x, Py_ssize_t img, Py_ssize_t nimg, Py_ssize_t H,
                                Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t th,
                                Py_ssize_t tw, float *V, Py_ssize_t estride, float *scratch)
    int wino4_output_images_f32(const float *M, Py_ssize_t estride, Py_ssize_t nimg,
                                Py_ssize_t th, Py_ssize_t tw, float *out, Py_ssize_t img,
                                Py_ssize_t OH, Py_ssize_t OW, float bias, int relu,
                                float *scratch)
    void wino4_grad_images_f32(const float *g, Py_ssize_t img, Py_ssize_t nimg, Py_ssize_t OH,
                               Py_ssize_t OW, Py_ssize_t th, Py_ssize_t tw, float *dM,
                               Py_ssize_t estride, float *scratch)

# Blocks per weight-gradient partial sum (fixed: the reduction order must not depend on threads).
cdef Py_ssize_t REDUCE_BLOCKS = 8
# Partial sums of the weight gradient when there are that many blocks: groups are its units of
# parallel work, and with 8 blocks of 8 per group one thread ran it all (64->64 @8, batch 128:
# 2 threads 1.0x of 1). A constant, never the thread count, keeps the summation order.
cdef Py_ssize_t REDUCE_GROUPS = 4
# Bytes of transformed input + products per block: stays in the 2 MB L2 with room for U.
cdef Py_ssize_t BLOCK_BYTES = 512 * 1024
# F(4x4) planes of fewer tiles than this (images up to 12 pixels a side) run their transforms
# over all the images of a block at once, channel by channel (wino4_*_images_f32): one plane
# fills less than a 16-lane vector, and plane by plane the block buffers' cache lines were
# written (read) a quarter at a time. 64->64 @8, batch 128, 1 thread, ms (2026-12-03, EPYC
# AVX-512): forward 3.9 -> 2.7, weight gradient 3.9 -> 3.4-3.7.
cdef Py_ssize_t WINO4_IMAGE_TILES = 16
# Below this many multiply-adds (direct count) one thread runs: a parallel loop costs ~1 us.
cdef Py_ssize_t MIN_PARALLEL_MACS = 1 << 20


cdef inline Py_ssize_t _estride(Py_ssize_t rows, Py_ssize_t TB) noexcept nogil:
    """Floats between the E matrices of a block buffer: rows * TB plus one cache line, so the
    transforms' E streams (one per position e) do not fall into the same L1 set (rows * TB * 4
    bytes is often a multiple of 4 KiB)."""
    return rows * TB + 16


cpdef Py_ssize_t block_tiles(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t plane_tiles=0,
                            int tile=2):
    """Tiles per block for C input and OC output channels and m x m tiles (m = tile): a
    multiple of 32 (the GEMM's column panel) in [64, 512], sized so a block's V and M fill about
    BLOCK_BYTES; then, when a whole image's plane_tiles tiles fit, rounded down to whole images
    (the whole-plane transforms). F(4x4) takes at least one whole image."""
    cdef Py_ssize_t E = (tile + 2) * (tile + 2)
    cdef Py_ssize_t tb = min(512, max(64, BLOCK_BYTES // (E * 4 * max(1, C + OC)) // 32 * 32))
    if 0 < plane_tiles <= tb:
        return tb // plane_tiles * plane_tiles
    if tile == 4:
        return max(plane_tiles, 1)
    return tb


cdef inline bint _images(Py_ssize_t th, Py_ssize_t tw, bint planes, int tile) noexcept nogil:
    """Whether the F(4x4) transforms run over all images of a block at once."""
    return tile == 4 and planes and th * tw < WINO4_IMAGE_TILES


cdef inline Py_ssize_t _scratch_floats(Py_ssize_t TB, Py_ssize_t th, Py_ssize_t tw,
                                       bint planes, int tile) noexcept nogil:
    if _images(th, tw, planes, tile):
        return wino4_images_scratch_floats(TB)
    if tile == 4:
        return wino4_plane_scratch_floats(th, tw)
    return wino_plane_scratch_floats(th, tw) if planes else wino_scratch_floats(TB)


cdef inline int _tile(Py_ssize_t positions) noexcept nogil:
    """The tile m of a transformed weight with (m + 2)^2 positions; 0 when it is neither."""
    return 2 if positions == 16 else 4 if positions == 36 else 0


cdef float *_alloc(Py_ssize_t n) noexcept nogil:
    cdef void *p = NULL
    if posix_memalign(&p, 64, max(n, 16) * sizeof(float)) != 0:
        return NULL
    return <float *>p


cdef struct _Wino:
    # One parallel loop over blocks (forward) or groups of blocks (weight gradient): x, U or
    # the output gradient g, bias or NULL, out (or the partial sums), and per thread a block
    # buffer V (the transformed input), M (products, or transformed gradient) and scratch S,
    # `worker` * v_size (m_size, s_size) floats into one allocation each; bad[worker]: whether
    # that thread's output transforms met a non-finite value (forward only; NULL otherwise).
    const float *x
    const float *u
    const float *g
    const float *bias
    float *out
    float *V
    float *M
    float *S
    int *bad
    Py_ssize_t v_size, m_size, s_size
    Py_ssize_t C, H, W, OC, OH, OW, ph, pw, th, tw, T, TB, nblocks, E, group
    bint relu, planes
    int inner, tile


cdef int _alloc_buffers(_Wino *a, int threads, bint flags) noexcept nogil:
    """Per-thread block buffers for `threads` threads, and with flags their non-finite flags
    (the forward's); -1 when they cannot be allocated."""
    a.v_size = a.E * _estride(a.C, a.TB)
    a.m_size = a.E * _estride(a.OC, a.TB)
    a.s_size = (_scratch_floats(a.TB, a.th, a.tw, a.planes, a.tile) + 15) // 16 * 16
    a.V = _alloc(threads * a.v_size)
    a.M = _alloc(threads * a.m_size)
    a.S = _alloc(threads * a.s_size)
    a.bad = <int *>calloc(threads, sizeof(int)) if flags else NULL
    if a.V == NULL or a.M == NULL or a.S == NULL or (flags and a.bad == NULL):
        _free_buffers(a)
        return -1
    return 0


cdef void _free_buffers(_Wino *a) noexcept nogil:
    free(a.V)
    free(a.M)
    free(a.S)
    free(a.bad)
    a.V = a.M = a.S = NULL
    a.bad = NULL


cdef void _input_block(const float *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t th, Py_ssize_t tw, Py_ssize_t t0,
                       Py_ssize_t t1, Py_ssize_t TB, bint planes, int tile, float *V,
                       float *scratch) noexcept nogil:
    """V[e][c][t - t0] for the tiles [t0, t1), run by run (a run: one tile row of one image), or
    with planes (blocks of whole images; always for F(4x4)) plane by plane, or for small F(4x4)
    planes (_images) channel by channel over the block's images."""
    cdef Py_ssize_t t = t0, n, r, ty, tx0, tx1, c
    if _images(th, tw, planes, tile):
        for c in range(C):
            wino4_input_images_f32(x + (t0 // (th * tw) * C + c) * H * W, C * H * W,
                                   (t1 - t0) // (th * tw), H, W, ph, pw, th, tw, V + c * TB,
                                   _estride(C, TB), scratch)
        return
    if planes:
        for n in range(t0 // (th * tw), t1 // (th * tw)):
            for c in range(C):
                if tile == 4:
                    wino4_input_plane_f32(x + (n * C + c) * H * W, H, W, ph, pw, th, tw,
                                          V + c * TB + (n * th * tw - t0), _estride(C, TB),
                                          scratch)
                else:
                    wino_input_plane_f32(x + (n * C + c) * H * W, H, W, ph, pw, th, tw,
                                         V + c * TB + (n * th * tw - t0), _estride(C, TB),
                                         scratch)
        return
    while t < t1:
        n = t // (th * tw)
        r = t - n * th * tw
        ty = r // tw
        tx0 = r - ty * tw
        tx1 = min(tw, tx0 + (t1 - t))
        for c in range(C):
            wino_input_f32(x + (n * C + c) * H * W, H, W, ph, pw, ty, tx0, tx1,
                           V + c * TB + (t - t0), _estride(C, TB), scratch)
        t = t + (tx1 - tx0)


cdef extern from "winograd_weights.h" nogil:
    enum: WINO_WPAIRS
    ctypedef struct wino_coeffs:
        int n
        double g[6][3]
        int row_nz[6]
        int row_col[6][3]
        int col_nz[3]
        int col_row[3][6]
    void wino_weight_block(const float *w, Py_ssize_t A, Py_ssize_t B, int flip,
                           const wino_coeffs *cf, Py_ssize_t p0, int count, float *u)
    void wino_weight_adjoint_block(const float *du, Py_ssize_t plane, const wino_coeffs *cf,
                                   Py_ssize_t p0, int count, float *grad_w)

# Below this many transformed values (pairs * n * n) one thread runs the weight transforms: a
# block of WINO_WPAIRS pairs takes 0.3 us (F(2x2)) to 0.6 us (F(4x4)) and a parallel loop ~1
# us; 2 threads broke even at 2048-4096 values (measured 2026-12-03, EPYC Zen 4).
cdef Py_ssize_t MIN_PARALLEL_WEIGHTS = 1 << 12


cdef int _coeffs(const double[:, ::1] g, wino_coeffs *c) except -1:
    """G's entries and non-zero structure (winograd_weights.h)."""
    if g.shape[1] != 3 or not 1 <= g.shape[0] <= 6:
        raise ValueError(f"winograd: G must be (n <= 6, 3), got {tuple(g.shape)}")
    cdef int i, j
    c.n = g.shape[0]
    for j in range(3):
        c.col_nz[j] = 0
    for i in range(c.n):
        c.row_nz[i] = 0
        for j in range(3):
            c.g[i][j] = g[i, j]
            if g[i, j] != 0.0:
                c.row_col[i][c.row_nz[i]] = j
                c.row_nz[i] += 1
                c.col_row[j][c.col_nz[j]] = i
                c.col_nz[j] += 1
    return 0


cdef struct _Weights:
    # One parallel loop over blocks of WINO_WPAIRS (row, column) pairs of a weight transform
    # (U = G g G^T) or of its adjoint (grad_w = G^T dU G): src (w or dU), dst (U or grad_w),
    # A x B pairs.
    const float *src
    float *dst
    const wino_coeffs *cf
    Py_ssize_t A, B
    bint flip, adjoint


cdef void _run_weights(_Weights *a, int n_threads) noexcept nogil:
    parallel_for(_weights_task, a, (a.A * a.B + WINO_WPAIRS - 1) // WINO_WPAIRS,
                 n_threads if a.A * a.B * a.cf.n * a.cf.n >= MIN_PARALLEL_WEIGHTS else 1)


cdef void _weights_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of WINO_WPAIRS pairs."""
    cdef _Weights *a = <_Weights *>args
    cdef Py_ssize_t blk, p0
    cdef int count
    for blk in range(begin, end):
        p0 = blk * WINO_WPAIRS
        count = <int>min(<Py_ssize_t>WINO_WPAIRS, a.A * a.B - p0)
        if a.adjoint:
            wino_weight_adjoint_block(a.src, a.A * a.B, a.cf, p0, count, a.dst)
        else:
            wino_weight_block(a.src, a.A, a.B, a.flip, a.cf, p0, count, a.dst)


def transform_weight(const float[:, :, :, ::1] w, const double[:, ::1] g, bint flip,
                     float[:, :, ::1] u, int n_threads):
    """u (n*n, A, B) = G g G^T per 3x3 kernel, in float64 rounded once to float32: w (OC, C, 3,
    3) and (A, B) = (OC, C), or with flip the input gradient's kernel, taps reversed and (A, B)
    = (C, OC); g: G (n, 3). Bitwise the same for any n_threads."""
    cdef wino_coeffs c
    _coeffs(g, &c)
    cdef Py_ssize_t OC = w.shape[0], C = w.shape[1], n = c.n
    cdef Py_ssize_t A = C if flip else OC, B = OC if flip else C
    if (w.shape[2] != 3 or w.shape[3] != 3 or u.shape[0] != n * n or u.shape[1] != A
            or u.shape[2] != B):
        raise ValueError(f"winograd.transform_weight: w {tuple(w.shape)}, G {tuple(g.shape)} "
                         f"and u {tuple(u.shape)} do not match")
    if A == 0 or B == 0:
        return
    cdef _Weights a = _Weights(src=&w[0, 0, 0, 0], dst=&u[0, 0, 0], cf=&c, A=A, B=B, flip=flip,
                               adjoint=False)
    with nogil:
        _run_weights(&a, n_threads)


def weight_from_transformed(const float[:, :, ::1] du, const double[:, ::1] g,
                            float[:, :, :, ::1] grad_w, int n_threads):
    """grad_w (OC, C, 3, 3) = G^T dU G per (oc, c), in float64 rounded once to float32 (the
    transform's adjoint): du (n*n, OC, C), g: G (n, 3). Bitwise the same for any n_threads."""
    cdef wino_coeffs c
    _coeffs(g, &c)
    cdef Py_ssize_t n = c.n, OC = du.shape[1], C = du.shape[2]
    if (du.shape[0] != n * n or grad_w.shape[0] != OC or grad_w.shape[1] != C
            or grad_w.shape[2] != 3 or grad_w.shape[3] != 3):
        raise ValueError(f"winograd.weight_from_transformed: dU {tuple(du.shape)}, G "
                         f"{tuple(g.shape)} and grad_w {tuple(grad_w.shape)} do not match")
    if OC == 0 or C == 0:
        return
    cdef _Weights a = _Weights(src=&du[0, 0, 0], dst=&grad_w[0, 0, 0, 0], cf=&c, A=OC, B=C,
                               flip=False, adjoint=True)
    with nogil:
        _run_weights(&a, n_threads)


def forward(const float[:, :, :, ::1] x, const float[:, :, ::1] U, bias,
            float[:, :, :, ::1] out, Py_ssize_t ph, Py_ssize_t pw, bint relu,
            int n_threads) -> bool:
    """out = conv2d(x, weight) (+ bias, ReLU) from U = transformed weight (E, OC, C). Returns
    False when an output before the ReLU came out +-Inf or NaN (winograd_kernels.h: such an
    out is not the exact result's rounding and the caller recomputes it), else True."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef int tile = _tile(U.shape[0])
    if tile == 0 or U.shape[1] != OC or U.shape[2] != C or out.shape[0] != N:
        raise ValueError(f"winograd.forward: x {tuple(x.shape)}, U {tuple(U.shape)} and out "
                         f"{tuple(out.shape)} do not match")
    cdef const float[::1] bias_view
    cdef const float *bp = NULL
    if bias is not None:
        bias_view = bias
        if bias_view.shape[0] != OC:
            raise ValueError(f"winograd.forward: bias has {bias_view.shape[0]} entries for {OC} "
                             f"output channels")
        bp = &bias_view[0]
    if N == 0 or OC == 0 or OH == 0 or OW == 0:
        return True
    cdef Py_ssize_t th = (OH + tile - 1) // tile, tw = (OW + tile - 1) // tile, T = N * th * tw
    cdef Py_ssize_t TB = block_tiles(C, OC, th * tw, tile), nblocks = (T + TB - 1) // TB
    cdef bint planes = th * tw <= TB, finite = True
    cdef int nt = n_threads if N * OC * OH * OW * C * 9 >= MIN_PARALLEL_MACS else 1, w
    cdef int outer = nt if nblocks >= nt else 1
    cdef const float *xp = &x[0, 0, 0, 0] if C > 0 else NULL
    cdef const float *up = &U[0, 0, 0] if C > 0 else NULL
    cdef _Wino a = _Wino(x=xp, u=up, g=NULL, bias=bp, out=&out[0, 0, 0, 0], V=NULL, M=NULL,
                         S=NULL, bad=NULL, v_size=0, m_size=0, s_size=0, C=C, H=H, W=W, OC=OC,
                         OH=OH, OW=OW, ph=ph, pw=pw, th=th, tw=tw, T=T, TB=TB, nblocks=nblocks,
                         E=U.shape[0], group=0, relu=relu, planes=planes,
                         inner=1 if outer > 1 else nt, tile=tile)
    if _alloc_buffers(&a, outer, True) != 0:
        raise MemoryError("winograd.forward: cannot allocate the per-thread tile buffers")
    with nogil:
        parallel_for(_forward_task, &a, nblocks, outer)
        for w in range(outer):
            finite = finite and a.bad[w] == 0
        _free_buffers(&a)
    return finite


cdef void _forward_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Blocks [begin, end) of TB tiles."""
    cdef _Wino *a = <_Wino *>args
    cdef float *V = a.V + worker * a.v_size
    cdef float *M = a.M + worker * a.m_size
    cdef float *S = a.S + worker * a.s_size
    cdef Py_ssize_t C = a.C, OC = a.OC, TB = a.TB, th = a.th, tw = a.tw
    cdef Py_ssize_t b, t0, t1, t, n, r, ty, tx0, tx1, o, e
    cdef int bad = 0
    for b in range(begin, end):
        t0 = b * TB
        t1 = min(a.T, t0 + TB)
        _input_block(a.x, C, a.H, a.W, a.ph, a.pw, th, tw, t0, t1, TB, a.planes, a.tile, V, S)
        for e in range(a.E):
            gemm(False, False, OC, t1 - t0, C, 1, a.u + e * OC * C, C,
                 V + e * _estride(C, TB), TB, 0, M + e * _estride(OC, TB), TB, a.inner)
        if _images(th, tw, a.planes, a.tile):
            for o in range(OC):
                bad |= wino4_output_images_f32(
                    M + o * TB, _estride(OC, TB), (t1 - t0) // (th * tw), th, tw,
                    a.out + (t0 // (th * tw) * OC + o) * a.OH * a.OW, OC * a.OH * a.OW, a.OH,
                    a.OW, a.bias[o] if a.bias != NULL else 0, a.relu, S)
            continue
        if a.planes:
            for n in range(t0 // (th * tw), t1 // (th * tw)):
                for o in range(OC):
                    if a.tile == 4:
                        bad |= wino4_output_plane_f32(
                            M + o * TB + (n * th * tw - t0), _estride(OC, TB), th, tw,
                            a.out + (n * OC + o) * a.OH * a.OW, a.OH, a.OW,
                            a.bias[o] if a.bias != NULL else 0, a.relu, S)
                    else:
                        bad |= wino_output_plane_f32(
                            M + o * TB + (n * th * tw - t0), _estride(OC, TB), th, tw,
                            a.out + (n * OC + o) * a.OH * a.OW, a.OH, a.OW,
                            a.bias[o] if a.bias != NULL else 0, a.relu, S)
            continue
        t = t0
        while t < t1:
            n = t // (th * tw)
            r = t - n * th * tw
            ty = r // tw
            tx0 = r - ty * tw
            tx1 = min(tw, tx0 + (t1 - t))
            for o in range(OC):
                bad |= wino_output_f32(M + o * TB + (t - t0), _estride(OC, TB), ty, tx0, tx1,
                                       a.out + (n * OC + o) * a.OH * a.OW, a.OH, a.OW,
                                       a.bias[o] if a.bias != NULL else 0, a.relu, S)
            t = t + (tx1 - tx0)
    if bad:
        a.bad[worker] = 1


def weight_grad(const float[:, :, :, ::1] x, const float[:, :, :, ::1] grad_out,
                float[:, :, ::1] dU, Py_ssize_t ph, Py_ssize_t pw, int n_threads):
    """dU (E, OC, C) = sum over tiles of (A dy A^T)[e] (B^T d B)[e]: the gradient of the
    transformed weights (the weight gradient is G^T dU G); E = 16 or 36 tells the tile."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OC = grad_out.shape[1], OH = grad_out.shape[2], OW = grad_out.shape[3]
    cdef int tile = _tile(dU.shape[0])
    if tile == 0 or dU.shape[1] != OC or dU.shape[2] != C or grad_out.shape[0] != N:
        raise ValueError(f"winograd.weight_grad: x {tuple(x.shape)}, grad_out "
                         f"{tuple(grad_out.shape)} and dU {tuple(dU.shape)} do not match")
    if OC == 0 or C == 0:
        return
    if N == 0 or OH == 0 or OW == 0:
        np.asarray(dU)[...] = 0
        return
    cdef Py_ssize_t th = (OH + tile - 1) // tile, tw = (OW + tile - 1) // tile, T = N * th * tw
    cdef Py_ssize_t TB = block_tiles(C, OC, th * tw, tile), nblocks = (T + TB - 1) // TB
    cdef bint planes = th * tw <= TB
    cdef Py_ssize_t group = min(REDUCE_BLOCKS, max(1, nblocks // REDUCE_GROUPS))
    cdef Py_ssize_t ngroups = (nblocks + group - 1) // group
    partial_arr = np.empty((ngroups, dU.shape[0], OC, C), dtype=np.float32)
    cdef float[:, :, :, ::1] partial = partial_arr
    cdef int nt = n_threads if N * OC * OH * OW * C * 9 >= MIN_PARALLEL_MACS else 1
    cdef int outer = nt if ngroups >= nt else 1
    cdef _Wino a = _Wino(x=&x[0, 0, 0, 0], u=NULL, g=&grad_out[0, 0, 0, 0], bias=NULL,
                         out=&partial[0, 0, 0, 0], V=NULL, M=NULL, S=NULL, bad=NULL, v_size=0,
                         m_size=0, s_size=0, C=C, H=H, W=W, OC=OC, OH=OH, OW=OW, ph=ph, pw=pw,
                         th=th, tw=tw, T=T, TB=TB, nblocks=nblocks, E=dU.shape[0], group=group,
                         relu=False, planes=planes, inner=1 if outer > 1 else nt, tile=tile)
    if _alloc_buffers(&a, outer, False) != 0:
        raise MemoryError("winograd.weight_grad: cannot allocate the per-thread tile buffers")
    with nogil:
        parallel_for(_weight_grad_task, &a, ngroups, outer)
        _free_buffers(&a)
    acc = partial_arr[0].copy()
    for grp in range(1, ngroups):
        acc += partial_arr[grp]
    np.asarray(dU)[...] = acc


cdef void _weight_grad_task(void *args, Py_ssize_t begin, Py_ssize_t end,
                            int worker) noexcept nogil:
    """Groups [begin, end) of a.group blocks, each into its own partial sum (a.out)."""
    cdef _Wino *a = <_Wino *>args
    cdef float *V = a.V + worker * a.v_size
    cdef float *D = a.M + worker * a.m_size
    cdef float *S = a.S + worker * a.s_size
    cdef Py_ssize_t C = a.C, OC = a.OC, TB = a.TB, th = a.th, tw = a.tw, OH = a.OH, OW = a.OW
    cdef Py_ssize_t grp, b, t0, t1, t, n, r, ty, tx0, tx1, o, e
    for grp in range(begin, end):
        for b in range(grp * a.group, min(a.nblocks, (grp + 1) * a.group)):
            t0 = b * TB
            t1 = min(a.T, t0 + TB)
            _input_block(a.x, C, a.H, a.W, a.ph, a.pw, th, tw, t0, t1, TB, a.planes, a.tile,
                         V, S)
            if _images(th, tw, a.planes, a.tile):
                for o in range(OC):
                    wino4_grad_images_f32(a.g + (t0 // (th * tw) * OC + o) * OH * OW,
                                          OC * OH * OW, (t1 - t0) // (th * tw), OH, OW, th, tw,
                                          D + o * TB, _estride(OC, TB), S)
            elif a.planes:
                for n in range(t0 // (th * tw), t1 // (th * tw)):
                    for o in range(OC):
                        if a.tile == 4:
                            wino4_grad_plane_f32(a.g + (n * OC + o) * OH * OW, OH, OW, th, tw,
                                                 D + o * TB + (n * th * tw - t0),
                                                 _estride(OC, TB), S)
                        else:
                            wino_grad_plane_f32(a.g + (n * OC + o) * OH * OW, OH, OW, th, tw,
                                                D + o * TB + (n * th * tw - t0),
                                                _estride(OC, TB), S)
            t = t1 if a.planes else t0
            while t < t1:
                n = t // (th * tw)
                r = t - n * th * tw
                ty = r // tw
                tx0 = r - ty * tw
                tx1 = min(tw, tx0 + (t1 - t))
                for o in range(OC):
                    wino_grad_f32(a.g + (n * OC + o) * OH * OW, OH, OW, ty, tx0, tx1,
                                  D + o * TB + (t - t0), _estride(OC, TB), S)
                t = t + (tx1 - tx0)
            for e in range(a.E):
                gemm(False, True, OC, C, t1 - t0, 1, D + e * _estride(OC, TB), TB,
                     V + e * _estride(C, TB), TB, 0 if b == grp * a.group else 1,
                     a.out + (grp * a.E + e) * OC * C, C, a.inner)
