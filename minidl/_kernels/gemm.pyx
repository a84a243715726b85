# cython: language_level=3
"""minidl's GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, float32 and float64.

Two drivers around one register tile (gemm_kernels.h, MR x NR = 6 x 32 floats / 6 x 16 doubles):

* blocked (BLIS / GotoBLAS loop nest): jc over NC-wide column blocks of C, pc over KC-deep slices
  of k, B's KC x NC block packed into NR-wide panels (shared by all threads), then ic over MC-high
  row blocks of A, each packed by its thread into MR-high panels, then jr / ir over tiles. Packing
  makes every tile read contiguous, aligned, zero-padded memory, so one micro-kernel serves all
  four trans_a / trans_b forms (only the pack routines know the orientation) and every edge tile.
  A KC x NR panel of B (32 KB) stays in L1 across the ir loop, an MC x KC block of A in L2.
* small: below SMALL_MNK multiply-adds, or with few rows or columns (packing then costs as much
  as the product), A is read in place with strides and B too when it is not transposed; only
  B's partial last panel (or all of a transposed B) is copied into zero-padded panels. LeNet's
  fully connected GEMMs take this path.

Threads split output tiles (ic blocks, or (panel, row tile) pairs in the small path), never k:
every element of C is summed by one thread in an order fixed by the shape alone (the KC slicing
depends on k only), so results are bitwise identical for any thread count.
"""

from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy

cdef extern from "gemm_kernels.h" nogil:
    enum:
        MINIDL_GEMM_MR
        MINIDL_SGEMM_NR
        MINIDL_DGEMM_NR
    void minidl_gemm_init()
    void minidl_sgemm_packed(long kc, const float *a, const float *b, float alpha, float beta,
                             float *c, long ldc, int m_valid, int n_valid)
    void minidl_dgemm_packed(long kc, const double *a, const double *b, double alpha,
                             double beta, double *c, long ldc, int m_valid, int n_valid)
    void minidl_sgemm_strided(long kc, const float *a, long a_rs, long a_cs, const float *b,
                              long b_rs, float alpha, float beta, float *c, long ldc,
                              int m_valid, int n_valid)
    void minidl_dgemm_strided(long kc, const double *a, long a_rs, long a_cs, const double *b,
                              long b_rs, double alpha, double beta, double *c, long ldc,
                              int m_valid, int n_valid)
    void *minidl_aligned_malloc(size_t n_bytes)
    void minidl_aligned_free(void *p)
    void minidl_omp_barrier()

minidl_gemm_init()

ctypedef fused real:
    float
    double

cdef enum:
    MR = MINIDL_GEMM_MR
    # Cache blocking. MC: multiple of MR, A block MC x KC (144 KB for floats) well inside L2.
    # KC: a KC x NR float panel of B is 32 KB, inside the 48 KB L1. NC: multiple of both NRs.
    # 1024^3 ran within noise (141-146 GFLOP/s) for MC 96-288 and KC 192-512.
    MC_MAX = 144
    KC_MAX = 256
    NC_MAX = 3072
    # m * n * k (multiply-adds) at or below which the unpacked small-shape path is used.
    SMALL_MNK = 1 << 22
    # Below this many multiply-adds a second thread costs more (parallel region ~1 us) than it saves.
    SERIAL_MNK = 1 << 17
    # Batched products at least this large parallelize inside each product, smaller ones over the batch.
    BATCH_INNER_MNK = 1 << 21


cdef inline Py_ssize_t _cdiv(Py_ssize_t x, Py_ssize_t y) noexcept nogil:
    return (x + y - 1) // y


cdef inline void _tile_packed(Py_ssize_t kc, const real *a, const real *b, real alpha, real beta,
                              real *c, Py_ssize_t ldc, Py_ssize_t m_valid,
                              Py_ssize_t n_valid) noexcept nogil:
    if real is float:
        minidl_sgemm_packed(kc, a, b, alpha, beta, c, ldc, <int>m_valid, <int>n_valid)
    else:
        minidl_dgemm_packed(kc, a, b, alpha, beta, c, ldc, <int>m_valid, <int>n_valid)


cdef inline void _tile_strided(Py_ssize_t kc, const real *a, Py_ssize_t a_rs, Py_ssize_t a_cs,
                               const real *b, Py_ssize_t b_rs, real alpha, real beta, real *c,
                               Py_ssize_t ldc, Py_ssize_t m_valid,
                               Py_ssize_t n_valid) noexcept nogil:
    if real is float:
        minidl_sgemm_strided(kc, a, a_rs, a_cs, b, b_rs, alpha, beta, c, ldc, <int>m_valid,
                             <int>n_valid)
    else:
        minidl_dgemm_strided(kc, a, a_rs, a_cs, b, b_rs, alpha, beta, c, ldc, <int>m_valid,
                             <int>n_valid)


cdef void _pack_a(bint trans, Py_ssize_t mc, Py_ssize_t kc, const real *a, Py_ssize_t lda,
                  real *dst) noexcept nogil:
    """op(A)[0:mc, 0:kc] into ceil(mc / MR) panels of kc x MR (k-major), the last zero padded.

    a points at op(A)[0, 0]; A is stored (m, k) row-major, or (k, m) when trans.
    """
    cdef Py_ssize_t panel, i, p, r, rows
    for panel in range(_cdiv(mc, MR)):
        i = panel * MR
        rows = min(<Py_ssize_t>MR, mc - i)
        if trans:
            for p in range(kc):
                for r in range(rows):
                    dst[p * MR + r] = a[p * lda + i + r]
                for r in range(rows, MR):
                    dst[p * MR + r] = 0
        else:
            for r in range(rows):
                for p in range(kc):
                    dst[p * MR + r] = a[(i + r) * lda + p]
            for r in range(rows, MR):
                for p in range(kc):
                    dst[p * MR + r] = 0
        dst += MR * kc


cdef void _pack_b(bint trans, Py_ssize_t kc, Py_ssize_t cols, const real *b, Py_ssize_t ldb,
                  Py_ssize_t nr, real *dst) noexcept nogil:
    """op(B)[0:kc, 0:cols] into one kc x nr panel (k-major), columns past cols zero.

    b points at op(B)[0, 0]; B is stored (k, n) row-major, or (n, k) when trans.
    """
    cdef Py_ssize_t p, j
    if trans:
        for j in range(cols):
            for p in range(kc):
                dst[p * nr + j] = b[j * ldb + p]
        for p in range(kc):
            for j in range(cols, nr):
                dst[p * nr + j] = 0
    else:
        for p in range(kc):
            memcpy(dst + p * nr, b + p * ldb, cols * sizeof(real))
            for j in range(cols, nr):
                dst[p * nr + j] = 0


cdef void _gemm_reference(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          real alpha, const real *a, Py_ssize_t lda, const real *b,
                          Py_ssize_t ldb, real beta, real *c, Py_ssize_t ldc) noexcept nogil:
    """Serial triple loop, used only when a pack buffer cannot be allocated."""
    cdef Py_ssize_t i, j, p
    cdef Py_ssize_t a_rs = 1 if trans_a else lda, a_cs = lda if trans_a else 1
    cdef Py_ssize_t b_rs = 1 if trans_b else ldb, b_cs = ldb if trans_b else 1
    cdef real acc
    for i in range(m):
        for j in range(n):
            acc = 0
            for p in range(k):
                acc = acc + a[i * a_rs + p * a_cs] * b[p * b_rs + j * b_cs]
            c[i * ldc + j] = alpha * acc + (beta * c[i * ldc + j] if beta != 0 else 0)


cdef void _gemm_small(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                      real beta, real *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    cdef Py_ssize_t n_panels = _cdiv(n, nr), n_mtiles = _cdiv(m, MR)
    # B panels [first_packed, n_panels) get a zero-padded copy: all of them when B is
    # transposed (the tile needs op(B) rows contiguous), else only a partial last panel.
    cdef Py_ssize_t first_packed = 0 if trans_b else n // nr
    cdef Py_ssize_t n_packed = n_panels - first_packed
    cdef Py_ssize_t a_rs = 1 if trans_a else lda, a_cs = lda if trans_a else 1
    cdef Py_ssize_t jp, j, t, it, b_rs
    cdef const real *b_panel
    cdef real *bp = NULL
    cdef int nt = n_threads if m * n * k >= SERIAL_MNK else 1
    if n_packed > 0:
        bp = <real *>minidl_aligned_malloc(n_packed * nr * k * sizeof(real))
        if bp == NULL:
            _gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
    with parallel(num_threads=nt, use_threads_if=nt > 1):
        for jp in prange(n_packed, schedule='static'):
            j = (first_packed + jp) * nr
            _pack_b(trans_b, k, min(nr, n - j), b + (j * ldb if trans_b else j), ldb, nr,
                    bp + jp * nr * k)
        minidl_omp_barrier()
        # Panel-major order: consecutive tiles of one thread share a B panel.
        for t in prange(n_panels * n_mtiles, schedule='static'):
            j = (t // n_mtiles) * nr
            it = (t % n_mtiles) * MR
            if j >= first_packed * nr:
                b_panel = bp + (j - first_packed * nr) * k
                b_rs = nr
            else:
                b_panel = b + j
                b_rs = ldb
            _tile_strided(k, a + it * a_rs, a_rs, a_cs, b_panel, b_rs, alpha, beta,
                          c + it * ldc + j, ldc, min(<Py_ssize_t>MR, m - it), min(nr, n - j))
    minidl_aligned_free(bp)


cdef void _gemm_blocked(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                        real beta, real *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    # k is cut into equal slices of at most KC_MAX: depends on k only (determinism).
    cdef Py_ssize_t kc_max = _cdiv(k, _cdiv(k, KC_MAX))
    cdef Py_ssize_t nc = min(_cdiv(n, nr) * nr, <Py_ssize_t>NC_MAX)
    cdef Py_ssize_t n_mtiles = _cdiv(m, MR)
    # Row blocks: enough for MC_MAX, a multiple of the thread count so that threads get equal
    # shares, then equalized. Any multiple of MR keeps the tiles (and so the bits) unchanged.
    cdef Py_ssize_t n_mblocks = _cdiv(m, MC_MAX)
    n_mblocks = min(_cdiv(n_mblocks, n_threads) * n_threads, n_mtiles)
    cdef Py_ssize_t mc = _cdiv(_cdiv(m, n_mblocks), MR) * MR
    n_mblocks = _cdiv(m, mc)
    cdef int nt = min(n_threads, n_mblocks)
    cdef real *bp = <real *>minidl_aligned_malloc(kc_max * nc * sizeof(real))
    cdef real *ap_all = <real *>minidl_aligned_malloc(nt * mc * kc_max * sizeof(real))
    cdef real *ap
    cdef real beta_k
    cdef Py_ssize_t jc, pc, ncur, kcur, jp, ib, ic, mcur, jt, jr, it, ir, j
    if bp == NULL or ap_all == NULL:
        minidl_aligned_free(bp)
        minidl_aligned_free(ap_all)
        _gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    with parallel(num_threads=nt, use_threads_if=nt > 1):
        ap = ap_all + threadid() * mc * kc_max
        jc = 0
        while jc < n:
            ncur = min(nc, n - jc)
            pc = 0
            while pc < k:
                kcur = min(kc_max, k - pc)
                beta_k = beta if pc == 0 else 1
                for jp in prange(_cdiv(ncur, nr), schedule='static'):
                    j = jc + jp * nr
                    _pack_b(trans_b, kcur, min(nr, n - j),
                            b + (j * ldb + pc if trans_b else pc * ldb + j), ldb, nr,
                            bp + jp * nr * kcur)
                minidl_omp_barrier()
                for ib in prange(n_mblocks, schedule='static'):
                    ic = ib * mc
                    mcur = min(mc, m - ic)
                    _pack_a(trans_a, mcur, kcur, a + (pc * lda + ic if trans_a else ic * lda + pc),
                            lda, ap)
                    for jt in range(_cdiv(ncur, nr)):
                        jr = jt * nr
                        for it in range(_cdiv(mcur, MR)):
                            ir = it * MR
                            _tile_packed(kcur, ap + ir * kcur, bp + jr * kcur, alpha, beta_k,
                                         c + (ic + ir) * ldc + jc + jr, ldc,
                                         min(<Py_ssize_t>MR, mcur - ir), min(nr, ncur - jr))
                # The next slice repacks B: wait until every thread is done with this one.
                minidl_omp_barrier()
                pc = pc + kcur
            jc = jc + ncur
    minidl_aligned_free(bp)
    minidl_aligned_free(ap_all)


cdef void _gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                real beta, real *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    cdef Py_ssize_t i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0 or alpha == 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = beta * c[i * ldc + j] if beta != 0 else 0
        return
    if n_threads < 1:
        n_threads = 1
    # Packing A pays off over many B panels and packing B over many row tiles: with few of
    # either (or little work at all), reading the operands in place is faster.
    if m * n * k <= SMALL_MNK or m <= 2 * MR or n <= 2 * nr:
        _gemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads)
    else:
        _gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads)


cdef void sgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                float alpha, const float *a, Py_ssize_t lda,
                const float *b, Py_ssize_t ldb,
                float beta, float *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads)


cdef void dgemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                double alpha, const double *a, Py_ssize_t lda,
                const double *b, Py_ssize_t ldb,
                double beta, double *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads)


# ---- Python-callable wrappers for the op layer ----

cdef inline (Py_ssize_t, Py_ssize_t, Py_ssize_t) _mnk(
        str op, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t o0,
        Py_ssize_t o1, bint trans_a, bint trans_b) except *:
    cdef Py_ssize_t m = a1 if trans_a else a0, ka = a0 if trans_a else a1
    cdef Py_ssize_t kb = b1 if trans_b else b0, n = b0 if trans_b else b1
    if ka != kb or o0 != m or o1 != n:
        raise ValueError(
            f"{op}: shapes do not match: a ({a0}, {a1}) with trans_a={trans_a}, b ({b0}, {b1}) "
            f"with trans_b={trans_b}, out ({o0}, {o1}); expected out ({m}, {n}) and equal k "
            f"({ka} vs {kb})")
    return m, n, ka


def matmul(a, b, out, bint trans_a=False, bint trans_b=False, int n_threads=1,
           double alpha=1.0, double beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out for 2-D C-contiguous arrays of one dtype.

    a: (m, k), or (k, m) with trans_a; b: (k, n), or (n, k) with trans_b; out: (m, n),
    preallocated; with beta == 0 (the default) it is written without being read. float32 or
    float64. Bitwise identical results for any n_threads. Raises ValueError on mismatched
    shapes, and (from the typed buffers) ValueError on a wrong dtype, dimension count or a
    non-contiguous array.
    """
    if a.dtype.char == 'd':
        _dmatmul(a, b, out, trans_a, trans_b, n_threads, alpha, beta)
    else:
        _smatmul(a, b, out, trans_a, trans_b, n_threads, <float>alpha, <float>beta)


cdef _smatmul(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] out,
              bint trans_a, bint trans_b, int n_threads, float alpha, float beta):
    cdef Py_ssize_t m, n, k
    m, n, k = _mnk("matmul", a.shape[0], a.shape[1], b.shape[0], b.shape[1], out.shape[0],
                   out.shape[1], trans_a, trans_b)
    if m == 0 or n == 0:
        return
    with nogil:
        sgemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0] if k else NULL, a.shape[1],
              &b[0, 0] if k else NULL, b.shape[1], beta, &out[0, 0], n, n_threads)


cdef _dmatmul(const double[:, ::1] a, const double[:, ::1] b, double[:, ::1] out,
              bint trans_a, bint trans_b, int n_threads, double alpha, double beta):
    cdef Py_ssize_t m, n, k
    m, n, k = _mnk("matmul", a.shape[0], a.shape[1], b.shape[0], b.shape[1], out.shape[0],
                   out.shape[1], trans_a, trans_b)
    if m == 0 or n == 0:
        return
    with nogil:
        dgemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0] if k else NULL, a.shape[1],
              &b[0, 0] if k else NULL, b.shape[1], beta, &out[0, 0], n, n_threads)


def batched_matmul(a, b, out, bint trans_a=False, bint trans_b=False, int n_threads=1):
    """out[i] = op(a[i]) @ op(b[i]) for 3-D C-contiguous arrays, all float32 or all float64.

    a: (B, m, k) or (B, k, m) with trans_a; b: (B, k, n) or (B, n, k) with trans_b;
    out: (B, m, n), written without being read. Small products are spread over the batch, large
    ones are parallelized inside; either way each product is computed as by matmul, so results
    are bitwise identical for any n_threads. Raises ValueError on mismatched shapes or dtypes.
    """
    if a.dtype.char == 'd':
        _dbatched(a, b, out, trans_a, trans_b, n_threads)
    else:
        _sbatched(a, b, out, trans_a, trans_b, n_threads)


cdef _check_batch(Py_ssize_t na, Py_ssize_t nb, Py_ssize_t no):
    if na != nb or na != no:
        raise ValueError(f"batched_matmul: batch sizes differ: a {na}, b {nb}, out {no}")


cdef _sbatched(const float[:, :, ::1] a, const float[:, :, ::1] b, float[:, :, ::1] out,
               bint trans_a, bint trans_b, int n_threads):
    cdef Py_ssize_t m, n, k, i, batch = a.shape[0]
    _check_batch(batch, b.shape[0], out.shape[0])
    m, n, k = _mnk("batched_matmul", a.shape[1], a.shape[2], b.shape[1], b.shape[2],
                   out.shape[1], out.shape[2], trans_a, trans_b)
    if batch == 0 or m == 0 or n == 0:
        return
    cdef const float *pa = &a[0, 0, 0] if k else NULL
    cdef const float *pb = &b[0, 0, 0] if k else NULL
    cdef float *po = &out[0, 0, 0]
    cdef Py_ssize_t sa = a.shape[1] * a.shape[2], sb = b.shape[1] * b.shape[2], so = m * n
    cdef bint outer = batch > 1 and m * n * k < BATCH_INNER_MNK
    cdef bint threaded = n_threads > 1 and batch * m * n * k >= SERIAL_MNK
    if outer:
        for i in prange(batch, nogil=True, schedule='static', num_threads=n_threads,
                        use_threads_if=threaded):
            sgemm(trans_a, trans_b, m, n, k, 1, pa + i * sa, a.shape[2], pb + i * sb,
                  b.shape[2], 0, po + i * so, n, 1)
    else:
        with nogil:
            for i in range(batch):
                sgemm(trans_a, trans_b, m, n, k, 1, pa + i * sa, a.shape[2], pb + i * sb,
                      b.shape[2], 0, po + i * so, n, n_threads)


cdef _dbatched(const double[:, :, ::1] a, const double[:, :, ::1] b, double[:, :, ::1] out,
               bint trans_a, bint trans_b, int n_threads):
    cdef Py_ssize_t m, n, k, i, batch = a.shape[0]
    _check_batch(batch, b.shape[0], out.shape[0])
    m, n, k = _mnk("batched_matmul", a.shape[1], a.shape[2], b.shape[1], b.shape[2],
                   out.shape[1], out.shape[2], trans_a, trans_b)
    if batch == 0 or m == 0 or n == 0:
        return
    cdef const double *pa = &a[0, 0, 0] if k else NULL
    cdef const double *pb = &b[0, 0, 0] if k else NULL
    cdef double *po = &out[0, 0, 0]
    cdef Py_ssize_t sa = a.shape[1] * a.shape[2], sb = b.shape[1] * b.shape[2], so = m * n
    cdef bint outer = batch > 1 and m * n * k < BATCH_INNER_MNK
    cdef bint threaded = n_threads > 1 and batch * m * n * k >= SERIAL_MNK
    if outer:
        for i in prange(batch, nogil=True, schedule='static', num_threads=n_threads,
                        use_threads_if=threaded):
            dgemm(trans_a, trans_b, m, n, k, 1, pa + i * sa, a.shape[2], pb + i * sb,
                  b.shape[2], 0, po + i * so, n, 1)
    else:
        with nogil:
            for i in range(batch):
                dgemm(trans_a, trans_b, m, n, k, 1, pa + i * sa, a.shape[2], pb + i * sb,
                      b.shape[2], 0, po + i * so, n, n_threads)
