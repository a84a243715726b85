# cython: language_level=3
"""minidl's GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, float32 and float64.

Two serial drivers around one register tile (gemm_kernels.h, MR x NR = 6 x 32 floats or
6 x 16 doubles):

* blocked (BLIS / GotoBLAS loop nest): jc over NC-wide column blocks of C, pc over KC-deep slices
  of k, B's KC x NC block packed into NR-wide panels, ic over MC-high row blocks of A packed into
  MR-high panels, then jr / ir over tiles. Packing makes every tile read contiguous, aligned,
  zero-padded memory, so one micro-kernel serves all four trans_a / trans_b forms (only the pack
  routines know the orientation) and every edge tile. A KC x NR panel of B (32 KB) stays in L1
  across the ir loop, the MC x KC block of A in L2.
* small: below SMALL_MNK multiply-adds, or with few rows or columns (packing then costs as much
  as the product), A is read in place with strides and B too when it is not transposed; only a
  partial last panel of B (or every panel of a transposed B) is copied, one panel at a time.
  LeNet's fully connected GEMMs take this path.
* dots: op(A) @ B^T with at most DOT_ROWS rows (a layer at batch 1): each element is a dot
  product of two contiguous rows (gemm_dots.h), serial.

Threads: C is cut into one block of whole tiles per thread of minidl's pool (column strips, or
row strips when C has few columns), and whichever thread claims a block runs a serial driver on
it with its own pack buffers, with no barrier inside. A thread that the OS deschedules (the
machine is shared) thus delays only a block it holds; blocks it has not started are taken by
the others (threadpool.h).
Tile boundaries and the KC slicing depend on the shape alone, never on the thread count, and
every element of C is summed by one thread over k in a fixed order: results are bitwise
identical for any thread count.
"""

from libc.string cimport memcpy

from minidl._kernels.threadpool cimport parallel_for, threads_now

cdef extern from "gemm_kernels.h" nogil:
    # Sizes, strides and offsets are Py_ssize_t (ptrdiff_t in C; C long is 32-bit on Windows);
    # n_valid <= NR and trans are small ints.
    enum:
        MINIDL_GEMM_MR
        MINIDL_SGEMM_NR
        MINIDL_DGEMM_NR
    void minidl_gemm_init()
    void minidl_sgemm_packed(Py_ssize_t kc, Py_ssize_t m, const float *a, const float *b,
                             float alpha, float beta, float *c, Py_ssize_t ldc, int n_valid)
    void minidl_dgemm_packed(Py_ssize_t kc, Py_ssize_t m, const double *a, const double *b,
                             double alpha, double beta, double *c, Py_ssize_t ldc, int n_valid)
    ctypedef struct minidl_gemm_ahead:
        const char *base[2]
        Py_ssize_t lines[2]
        Py_ssize_t from_ "from"
        Py_ssize_t to
    void minidl_sgemm_strided(Py_ssize_t kc, Py_ssize_t m, const float *a, Py_ssize_t a_rs,
                              Py_ssize_t a_cs, const float *b, Py_ssize_t b_rs, float alpha,
                              float beta, float *c, Py_ssize_t ldc, int n_valid,
                              const minidl_gemm_ahead *ahead)
    void minidl_dgemm_strided(Py_ssize_t kc, Py_ssize_t m, const double *a, Py_ssize_t a_rs,
                              Py_ssize_t a_cs, const double *b, Py_ssize_t b_rs, double alpha,
                              double beta, double *c, Py_ssize_t ldc, int n_valid,
                              const minidl_gemm_ahead *ahead)
    void minidl_sgemm_pack_a(int trans, Py_ssize_t mc, Py_ssize_t kc, const float *a,
                             Py_ssize_t lda, float *dst)
    void minidl_dgemm_pack_a(int trans, Py_ssize_t mc, Py_ssize_t kc, const double *a,
                             Py_ssize_t lda, double *dst)
    void minidl_sgemm_pack_bt(Py_ssize_t kc, Py_ssize_t cols, const float *b, Py_ssize_t ldb,
                              float *dst)
    void minidl_dgemm_pack_bt(Py_ssize_t kc, Py_ssize_t cols, const double *b, Py_ssize_t ldb,
                              double *dst)
    void *minidl_aligned_malloc(size_t n_bytes)
    void minidl_aligned_free(void *p)

cdef extern from "gemm_dots.h" nogil:
    void minidl_sgemm_dots(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float *a,
                           Py_ssize_t lda, const float *b, Py_ssize_t ldb, float beta, float *c,
                           Py_ssize_t ldc)
    void minidl_dgemm_dots(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                           const double *a, Py_ssize_t lda, const double *b, Py_ssize_t ldb,
                           double beta, double *c, Py_ssize_t ldc)

minidl_gemm_init()

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
    # Below this many multiply-adds a second thread costs more (parallel loop ~1 us) than it saves.
    SERIAL_MNK = 1 << 17
    # Batched products at least this large parallelize inside each product, smaller ones over the batch.
    BATCH_INNER_MNK = 1 << 21
    # op(A) @ B^T with at most this many rows: dot products of contiguous rows (gemm_dots.h).
    DOT_ROWS = 4


cdef inline Py_ssize_t _cdiv(Py_ssize_t x, Py_ssize_t y) noexcept nogil:
    return (x + y - 1) // y


cdef inline void _tiles_packed(Py_ssize_t kc, Py_ssize_t m, const real *a, const real *b,
                               real alpha, real beta, real *c, Py_ssize_t ldc,
                               Py_ssize_t n_valid) noexcept nogil:
    """The column of tiles C[0:m, 0:n_valid] from packed A row panels and one packed B panel."""
    if real is float:
        minidl_sgemm_packed(kc, m, a, b, alpha, beta, c, ldc, <int>n_valid)
    else:
        minidl_dgemm_packed(kc, m, a, b, alpha, beta, c, ldc, <int>n_valid)


cdef inline void _tiles_strided(Py_ssize_t kc, Py_ssize_t m, const real *a, Py_ssize_t a_rs,
                                Py_ssize_t a_cs, const real *b, Py_ssize_t b_rs, real alpha,
                                real beta, real *c, Py_ssize_t ldc, Py_ssize_t n_valid,
                                const minidl_gemm_ahead *ahead) noexcept nogil:
    """The same with A in place (strides a_rs, a_cs), B panel rows b_rs apart, and ahead's
    lines [from, to) prefetched into L2 along the way."""
    if real is float:
        minidl_sgemm_strided(kc, m, a, a_rs, a_cs, b, b_rs, alpha, beta, c, ldc, <int>n_valid,
                             ahead)
    else:
        minidl_dgemm_strided(kc, m, a, a_rs, a_cs, b, b_rs, alpha, beta, c, ldc, <int>n_valid,
                             ahead)


cdef inline void _pack_a(bint trans, Py_ssize_t mc, Py_ssize_t kc, const real *a,
                         Py_ssize_t lda, real *dst) noexcept nogil:
    """op(A)[0:mc, 0:kc] into ceil(mc / MR) zero-padded kc x MR panels (gemm_kernels.h)."""
    if real is float:
        minidl_sgemm_pack_a(trans, mc, kc, a, lda, dst)
    else:
        minidl_dgemm_pack_a(trans, mc, kc, a, lda, dst)


cdef void _pack_b(bint trans, Py_ssize_t kc, Py_ssize_t cols, const real *b, Py_ssize_t ldb,
                  Py_ssize_t nr, real *dst) noexcept nogil:
    """op(B)[0:kc, 0:cols] into one kc x nr panel (k-major), columns past cols zero.

    b points at op(B)[0, 0]; B is stored (k, n) row-major, or (n, k) when trans.
    """
    cdef Py_ssize_t p, j
    if trans:
        if real is float:
            minidl_sgemm_pack_bt(kc, cols, b, ldb, dst)
        else:
            minidl_dgemm_pack_bt(kc, cols, b, ldb, dst)
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
                      real beta, real *c, Py_ssize_t ldc,
                      minidl_gemm_ahead *ahead) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    cdef Py_ssize_t a_rs = 1 if trans_a else lda, a_cs = lda if trans_a else 1
    cdef Py_ssize_t jp, j, cols, b_rs, n_panels = _cdiv(n, nr)
    cdef Py_ssize_t lines = ahead.lines[0] + ahead.lines[1]
    cdef const real *panel
    cdef real *bp = NULL
    if trans_b or n % nr:
        bp = <real *>minidl_aligned_malloc(nr * k * sizeof(real))
        if bp == NULL:
            _gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
    # Panel-major: the k x NR panel of B stays in L1/L2 while every row tile of A passes by.
    for jp in range(n_panels):
        j = jp * nr
        cols = min(nr, n - j)
        if trans_b or cols < nr:
            _pack_b(trans_b, k, cols, b + (j * ldb if trans_b else j), ldb, nr, bp)
            panel = bp
            b_rs = nr
        else:
            panel = b + j
            b_rs = ldb
        ahead.from_ = lines * jp // n_panels
        ahead.to = lines * (jp + 1) // n_panels
        _tiles_strided(k, m, a, a_rs, a_cs, panel, b_rs, alpha, beta, c + j, ldc, cols, ahead)
    minidl_aligned_free(bp)


cdef void _gemm_blocked(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                        real beta, real *c, Py_ssize_t ldc) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    # k is cut into equal slices of at most KC_MAX: they depend on k only (determinism).
    cdef Py_ssize_t kc_max = _cdiv(k, _cdiv(k, KC_MAX))
    cdef Py_ssize_t nc = min(_cdiv(n, nr) * nr, <Py_ssize_t>NC_MAX)
    cdef Py_ssize_t mc = _cdiv(_cdiv(m, _cdiv(m, MC_MAX)), MR) * MR
    cdef real *bp = <real *>minidl_aligned_malloc(kc_max * nc * sizeof(real))
    cdef real *ap = <real *>minidl_aligned_malloc(mc * kc_max * sizeof(real))
    cdef real beta_k
    cdef Py_ssize_t jc, pc, ic, ncur, kcur, mcur, jp, j, jr
    if bp == NULL or ap == NULL:
        minidl_aligned_free(bp)
        minidl_aligned_free(ap)
        _gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    jc = 0
    while jc < n:
        ncur = min(nc, n - jc)
        pc = 0
        while pc < k:
            kcur = min(kc_max, k - pc)
            beta_k = beta if pc == 0 else 1
            for jp in range(_cdiv(ncur, nr)):
                j = jc + jp * nr
                _pack_b(trans_b, kcur, min(nr, n - j),
                        b + (j * ldb + pc if trans_b else pc * ldb + j), ldb, nr,
                        bp + jp * nr * kcur)
            ic = 0
            while ic < m:
                mcur = min(mc, m - ic)
                _pack_a(trans_a, mcur, kcur, a + (pc * lda + ic if trans_a else ic * lda + pc),
                        lda, ap)
                for jp in range(_cdiv(ncur, nr)):
                    jr = jp * nr
                    _tiles_packed(kcur, mcur, ap, bp + jr * kcur, alpha, beta_k,
                                  c + ic * ldc + jc + jr, ldc, min(nr, ncur - jr))
                ic = ic + mcur
            pc = pc + kcur
        jc = jc + ncur
    minidl_aligned_free(bp)
    minidl_aligned_free(ap)


cdef inline void _gemm_serial(bint small, bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t k, real alpha, const real *a, Py_ssize_t lda,
                              const real *b, Py_ssize_t ldb, real beta, real *c,
                              Py_ssize_t ldc, const GemmAhead *ahead) noexcept nogil:
    cdef minidl_gemm_ahead lines
    if m <= 0 or n <= 0:
        return
    if small:
        lines.base[0] = <const char *>ahead.p0
        lines.base[1] = <const char *>ahead.p1
        lines.lines[0] = ahead.bytes0 // 64
        lines.lines[1] = ahead.bytes1 // 64
        _gemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, &lines)
    else:
        _gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline Py_ssize_t _split(Py_ssize_t size, Py_ssize_t unit, Py_ssize_t part,
                              Py_ssize_t parts) noexcept nogil:
    """Start of part `part` of `parts` near-equal pieces of [0, size), on a multiple of unit."""
    if part >= parts:
        return size
    return min(size, (size * part // parts + unit // 2) // unit * unit)


cdef struct _Strips:
    # _gemm's parallel loop: C (m x n) cut into `parts` column (or row) strips of whole tiles;
    # alpha and beta held as double (exact for float).
    bint f64, small, trans_a, trans_b, by_columns
    Py_ssize_t m, n, k, lda, ldb, ldc, parts
    double alpha, beta
    const void *a
    const void *b
    void *c
    GemmAhead ahead


cdef void _strips_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    cdef _Strips *s = <_Strips *>args
    if s.f64:
        _strips(<const double *>s.a, <const double *>s.b, <double *>s.c, s, begin, end)
    else:
        _strips(<const float *>s.a, <const float *>s.b, <float *>s.c, s, begin, end)


cdef inline void _strips(const real *a, const real *b, real *c, const _Strips *s,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    """Strips [begin, end), each by a serial driver."""
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    cdef Py_ssize_t part, start, stop
    for part in range(begin, end):
        if s.by_columns:
            start = _split(s.n, nr, part, s.parts)
            stop = _split(s.n, nr, part + 1, s.parts)
            _gemm_serial(s.small, s.trans_a, s.trans_b, s.m, stop - start, s.k, <real>s.alpha, a,
                         s.lda, b + (start * s.ldb if s.trans_b else start), s.ldb, <real>s.beta,
                         c + start, s.ldc, &s.ahead)
        else:
            start = _split(s.m, MR, part, s.parts)
            stop = _split(s.m, MR, part + 1, s.parts)
            _gemm_serial(s.small, s.trans_a, s.trans_b, stop - start, s.n, s.k, <real>s.alpha,
                         a + (start if s.trans_a else start * s.lda), s.lda, b, s.ldb,
                         <real>s.beta, c + start * s.ldc, s.ldc, &s.ahead)


cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
               real beta, real *c, Py_ssize_t ldc, int n_threads) noexcept nogil:
    cdef GemmAhead none = GemmAhead(p0=NULL, bytes0=0, p1=NULL, bytes1=0)
    gemm_ahead(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads, &none)


cdef void gemm_ahead(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     real alpha, const real *a, Py_ssize_t lda, const real *b, Py_ssize_t ldb,
                     real beta, real *c, Py_ssize_t ldc, int n_threads,
                     const GemmAhead *ahead) noexcept nogil:
    cdef Py_ssize_t nr = MINIDL_SGEMM_NR if real is float else MINIDL_DGEMM_NR
    cdef Py_ssize_t i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0 or alpha == 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = beta * c[i * ldc + j] if beta != 0 else 0
        return
    if trans_b and not trans_a and m <= DOT_ROWS:
        if real is float:
            minidl_sgemm_dots(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        else:
            minidl_dgemm_dots(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    # Packing A pays off over many B panels and packing B over many row tiles: with few of
    # either (or little work at all), reading the operands in place is faster. Chosen from the
    # whole shape, so every thread's block takes the same path.
    cdef bint small = m * n * k <= SMALL_MNK or m <= 2 * MR or n <= 2 * nr
    cdef Py_ssize_t n_panels = _cdiv(n, nr), n_mtiles = _cdiv(m, MR)
    # The threads the pool can give now (fewer on a busy machine): strips for them only.
    cdef int parts = threads_now(n_threads) if m * n * k >= SERIAL_MNK else 1
    # Column strips keep B's packing unshared and split it with the work; row strips when C
    # has too few panels for the threads.
    cdef bint by_columns = n_panels >= 2 * parts or n_panels >= n_mtiles
    parts = <int>min(<Py_ssize_t>parts, n_panels if by_columns else n_mtiles)
    if parts <= 1:
        _gemm_serial(small, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                     ahead)
        return
    cdef _Strips strips = _Strips(f64=real is double, small=small, trans_a=trans_a,
                                  trans_b=trans_b, by_columns=by_columns, m=m, n=n, k=k,
                                  lda=lda, ldb=ldb, ldc=ldc, parts=parts, alpha=alpha, beta=beta,
                                  a=a, b=b, c=c, ahead=ahead[0])
    parallel_for(_strips_task, &strips, parts, parts)


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
    # The specialization picked here, not by a fused def's dispatcher (types.pxd).
    if a.dtype.char == 'd':
        _matmul[double](a, b, out, trans_a, trans_b, n_threads, alpha, beta)
    else:
        _matmul[float](a, b, out, trans_a, trans_b, n_threads, alpha, beta)


cdef _matmul(const real[:, ::1] a, const real[:, ::1] b, real[:, ::1] out, bint trans_a,
             bint trans_b, int n_threads, double alpha, double beta):
    cdef Py_ssize_t m, n, k
    m, n, k = _mnk("matmul", a.shape[0], a.shape[1], b.shape[0], b.shape[1], out.shape[0],
                   out.shape[1], trans_a, trans_b)
    if m == 0 or n == 0:
        return
    with nogil:
        gemm(trans_a, trans_b, m, n, k, <real>alpha, &a[0, 0] if k else NULL, a.shape[1],
             &b[0, 0] if k else NULL, b.shape[1], <real>beta, &out[0, 0], n, n_threads)


def batched_matmul(a, b, out, bint trans_a=False, bint trans_b=False, int n_threads=1):
    """out[i] = op(a[i]) @ op(b[i]) for 3-D C-contiguous arrays, all float32 or all float64.

    a: (B, m, k) or (B, k, m) with trans_a; b: (B, k, n) or (B, n, k) with trans_b;
    out: (B, m, n), written without being read. Small products are spread over the batch, large
    ones are parallelized inside; either way each product is computed as by matmul, so results
    are bitwise identical for any n_threads. Raises ValueError on mismatched shapes or dtypes.
    """
    if a.dtype.char == 'd':
        _batched[double](a, b, out, trans_a, trans_b, n_threads)
    else:
        _batched[float](a, b, out, trans_a, trans_b, n_threads)


cdef struct _Batch:
    # batched_matmul's products, one per work item: out[i] = op(a[i]) @ op(b[i]).
    bint f64, trans_a, trans_b
    Py_ssize_t m, n, k
    const void *a
    Py_ssize_t lda, stride_a
    const void *b
    Py_ssize_t ldb, stride_b
    void *out
    Py_ssize_t stride_out


cdef void _batch_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept nogil:
    """Products [begin, end), each on one thread."""
    cdef _Batch *p = <_Batch *>args
    cdef Py_ssize_t i
    for i in range(begin, end):
        if p.f64:
            gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1, <const double *>p.a + i * p.stride_a,
                 p.lda, <const double *>p.b + i * p.stride_b, p.ldb, 0,
                 <double *>p.out + i * p.stride_out, p.n, 1)
        else:
            gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1, <const float *>p.a + i * p.stride_a,
                 p.lda, <const float *>p.b + i * p.stride_b, p.ldb, 0,
                 <float *>p.out + i * p.stride_out, p.n, 1)


cdef _check_batch(Py_ssize_t na, Py_ssize_t nb, Py_ssize_t no):
    if na != nb or na != no:
        raise ValueError(f"batched_matmul: batch sizes differ: a {na}, b {nb}, out {no}")


cdef _batched(const real[:, :, ::1] a, const real[:, :, ::1] b, real[:, :, ::1] out,
              bint trans_a, bint trans_b, int n_threads):
    cdef Py_ssize_t m, n, k, i, batch = a.shape[0]
    _check_batch(batch, b.shape[0], out.shape[0])
    m, n, k = _mnk("batched_matmul", a.shape[1], a.shape[2], b.shape[1], b.shape[2],
                   out.shape[1], out.shape[2], trans_a, trans_b)
    if batch == 0 or m == 0 or n == 0:
        return
    cdef const real *pa = &a[0, 0, 0] if k else NULL
    cdef const real *pb = &b[0, 0, 0] if k else NULL
    cdef real *po = &out[0, 0, 0]
    cdef Py_ssize_t sa = a.shape[1] * a.shape[2], sb = b.shape[1] * b.shape[2], so = m * n
    cdef bint outer = batch > 1 and m * n * k < BATCH_INNER_MNK
    cdef bint threaded = n_threads > 1 and batch * m * n * k >= SERIAL_MNK
    cdef _Batch args = _Batch(f64=real is double, trans_a=trans_a, trans_b=trans_b, m=m, n=n,
                              k=k, a=pa, lda=a.shape[2], stride_a=sa, b=pb, ldb=b.shape[2],
                              stride_b=sb, out=po, stride_out=so)
    with nogil:
        if outer:
            parallel_for(_batch_task, &args, batch, n_threads if threaded else 1)
        else:
            for i in range(batch):
                gemm(trans_a, trans_b, m, n, k, 1, pa + i * sa, a.shape[2], pb + i * sb,
                     b.shape[2], 0, po + i * so, n, n_threads)
