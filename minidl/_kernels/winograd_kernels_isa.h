/* Per-instruction-set body of winograd_kernels.h (included once per ISA with MDL_ISA_ATTR and
 * MDL_ISA(name) defined; no include guard on purpose).
 *
 * The tile loops are written once as macros over a vector type VT of L lanes and run with
 * 16-, 8- and 4-lane GCC vectors, then with plain floats for the last tiles of a run: tile runs
 * are short on small images (4 tiles per row of an 8x8 image). The transforms only add and
 * subtract, so every width gives the same bits. Loads and stores go through memcpy (unaligned,
 * no aliasing assumptions). */

#ifndef MDL_WINO_TYPES
#define MDL_WINO_TYPES
typedef float mdl_wv16 __attribute__((vector_size(64)));
typedef float mdl_wv8 __attribute__((vector_size(32)));
typedef float mdl_wv4 __attribute__((vector_size(16)));
#define MDL_WLD(v, p) memcpy(&(v), (p), sizeof(v))
#define MDL_WST(p, v) memcpy((p), &(v), sizeof(v))

/* Input tile loop body: tiles [t, t + L) (see wino_input_f32): columns 2 tx + {0, 1, 2, 3} of
 * patch row r are ev[r], od[r], ev1[r], od1[r] at the tile's index. */
#define MDL_WINO_INPUT_STEP(VT, L)                                                               \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT e[4], e1[4], o[4], o1[4], rr[4][4];                                                   \
        for (int r = 0; r < 4; r++) {                                                            \
            MDL_WLD(e[r], ev[r] + t);                                                            \
            MDL_WLD(e1[r], ev1[r] + t);                                                          \
            MDL_WLD(o[r], od[r] + t);                                                            \
            MDL_WLD(o1[r], od1[r] + t);                                                          \
            /* d B along the row (a, b, c, d) = (e, o, e1, o1): (a - c, b + c, c - b, b - d). */ \
            rr[r][0] = e[r] - e1[r];                                                             \
            rr[r][1] = o[r] + e1[r];                                                             \
            rr[r][2] = e1[r] - o[r];                                                             \
            rr[r][3] = o[r] - o1[r];                                                             \
        }                                                                                        \
        for (int j = 0; j < 4; j++) {                                                            \
            /* B^T down the columns: (r0 - r2, r1 + r2, r2 - r1, r1 - r3). */                    \
            VT a = rr[0][j] - rr[2][j], b = rr[1][j] + rr[2][j];                                 \
            VT c = rr[2][j] - rr[1][j], d = rr[1][j] - rr[3][j];                                 \
            MDL_WST(V + (0 + j) * estride + t, a);                                               \
            MDL_WST(V + (4 + j) * estride + t, b);                                               \
            MDL_WST(V + (8 + j) * estride + t, c);                                               \
            MDL_WST(V + (12 + j) * estride + t, d);                                              \
        }                                                                                        \
    }

/* Output tile loop body: y00..y11 of tiles [t, t + L) (see wino_output_f32). */
#define MDL_WINO_OUTPUT_STEP(VT, L)                                                              \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT m[16];                                                                                \
        for (int k = 0; k < 16; k++)                                                             \
            MDL_WLD(m[k], M + k * estride + t);                                                  \
        VT s0[4], s1[4];                                                                         \
        for (int j = 0; j < 4; j++) {                                                            \
            /* A^T down the columns: (m0 + m1 + m2, m1 - m2 - m3), then along the rows. */       \
            s0[j] = m[j] + m[4 + j] + m[8 + j];                                                  \
            s1[j] = m[4 + j] - m[8 + j] - m[12 + j];                                             \
        }                                                                                        \
        VT y[4] = {s0[0] + s0[1] + s0[2] + bias, s0[1] - s0[2] - s0[3] + bias,                   \
                   s1[0] + s1[1] + s1[2] + bias, s1[1] - s1[2] - s1[3] + bias};                  \
        for (int k = 0; k < 4; k++)                                                              \
            MDL_WST(ys[k] + t, y[k]);                                                            \
    }

/* Gradient tile loop body: dM of tiles [t, t + L) (see wino_grad_f32). */
#define MDL_WINO_GRAD_STEP(VT, L)                                                                \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT p0, q0, p1, q1;                                                                       \
        MDL_WLD(p0, ev[0] + t);                                                                  \
        MDL_WLD(q0, od[0] + t);                                                                  \
        MDL_WLD(p1, ev[1] + t);                                                                  \
        MDL_WLD(q1, od[1] + t);                                                                  \
        /* A g A^T with A = [1 0; 1 1; 1 -1; 0 -1]: (p, q) -> (p, p + q, p - q, -q) along each  \
         * row, then the same down the columns. */                                               \
        VT r0[4] = {p0, p0 + q0, p0 - q0, -q0};                                                  \
        VT r1[4] = {p1, p1 + q1, p1 - q1, -q1};                                                  \
        for (int j = 0; j < 4; j++) {                                                            \
            VT b = r0[j] + r1[j], c = r0[j] - r1[j], d = -r1[j];                                 \
            MDL_WST(dM + j * estride + t, r0[j]);                                                \
            MDL_WST(dM + (4 + j) * estride + t, b);                                              \
            MDL_WST(dM + (8 + j) * estride + t, c);                                              \
            MDL_WST(dM + (12 + j) * estride + t, d);                                             \
        }                                                                                        \
    }
#endif

/* v = row[start .. start + 16), lanes outside [0, W) zero. Inside the row: one load; at an
 * edge: one masked load on AVX-512 (masked-off lanes are never read), lane by lane elsewhere. */
#if MDL_ISA_AVX512
#define MDL_WLD_EDGE(v, row, start, W)                                                           \
    do {                                                                                         \
        ptrdiff_t lo_ = (start) < 0 ? -(start) : 0, hi_ = (W) - (start);                         \
        if (hi_ > 16)                                                                            \
            hi_ = 16;                                                                            \
        unsigned m_ = hi_ <= lo_ ? 0u : ((1u << hi_) - 1u) & ~((1u << lo_) - 1u);                \
        /* No load at all for a vector wholly outside the row (the right half of a short row). */ \
        (v) = m_ ? (mdl_wv16)_mm512_maskz_loadu_ps((__mmask16)m_, (row) + (start))             \
                 : (mdl_wv16){0};                                                                \
    } while (0)
#else
#define MDL_WLD_EDGE(v, row, start, W)                                                           \
    do {                                                                                         \
        float lanes_[16];                                                                        \
        for (int k_ = 0; k_ < 16; k_++) {                                                        \
            ptrdiff_t c_ = (start) + k_;                                                         \
            lanes_[k_] = c_ >= 0 && c_ < (W) ? (row)[c_] : 0.0f;                                 \
        }                                                                                        \
        MDL_WLD(v, lanes_);                                                                      \
    } while (0)
#endif
/* The first n (<= 16) lanes of v to p: one masked store on AVX-512, lane by lane elsewhere. */
#if MDL_ISA_AVX512
#define MDL_WST_N(p, v, n)                                                                       \
    _mm512_mask_storeu_ps((p), (__mmask16)(((n) >= 16 ? 0x10000u : (1u << (n))) - 1u),          \
                          (__m512)(v))
#else
#define MDL_WST_N(p, v, n)                                                                       \
    do {                                                                                         \
        float lanes_[16];                                                                        \
        MDL_WST(lanes_, v);                                                                      \
        memcpy((p), lanes_, sizeof(float) * (size_t)(n));                                        \
    } while (0)
#endif
#define MDL_WLD_ROW(v, row, start, W)                                                            \
    do {                                                                                         \
        if ((start) >= 0 && (start) + 16 <= (W))                                                 \
            MDL_WLD(v, (row) + (start));                                                         \
        else                                                                                     \
            MDL_WLD_EDGE(v, row, start, W);                                                      \
    } while (0)

/* even[j - j0] = row[2 j - left], odd[j - j0] = row[2 j + 1 - left] for j in [j0, j1), zero
 * where the column is outside [0, W) or row is NULL (a row outside the plane). Whole vectors
 * whatever the padding and the run's length (runs are often shorter than a vector): even and odd
 * are written up to wino_round16(j1 - j0) floats. */
MDL_ISA_ATTR static void MDL_ISA(wino_split_row)(const float *row, ptrdiff_t W, ptrdiff_t left,
                                                 ptrdiff_t j0, ptrdiff_t j1, float *even,
                                                 float *odd)
{
    const ptrdiff_t nv = wino_round16(j1 - j0);
    if (row == NULL) {
        memset(even, 0, sizeof(float) * nv);
        memset(odd, 0, sizeof(float) * nv);
        return;
    }
    const ptrdiff_t c0 = 2 * j0 - left; /* column of even[0] */
    for (ptrdiff_t j = 0; j < nv; j += 16) {
        mdl_wv16 a, b;
        MDL_WLD_ROW(a, row, c0 + 2 * j, W);
        MDL_WLD_ROW(b, row, c0 + 2 * j + 16, W);
        mdl_wv16 ev = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                                              24, 26, 28, 30);
        mdl_wv16 od = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23,
                                              25, 27, 29, 31);
        MDL_WST(even + j, ev);
        MDL_WST(odd + j, od);
    }
}

MDL_ISA_ATTR static void MDL_ISA(wino_input_f32)(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                 ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t ty,
                                                 ptrdiff_t tx0, ptrdiff_t tx1, float *V,
                                                 ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t n = tx1 - tx0, m = wino_round16(n + 1);
    const float *ev[4], *od[4], *ev1[4], *od1[4];
    for (int r = 0; r < 4; r++) {
        float *e = scratch + (2 * r) * m, *o = scratch + (2 * r + 1) * m;
        ptrdiff_t iy = 2 * ty - ph + r;
        MDL_ISA(wino_split_row)(iy >= 0 && iy < H ? x + iy * W : NULL, W, pw, tx0, tx1 + 1, e,
                                o);
        ev[r] = e;
        od[r] = o;
        ev1[r] = e + 1;
        od1[r] = o + 1;
    }
    ptrdiff_t t = 0;
    MDL_WINO_INPUT_STEP(mdl_wv16, 16)
    MDL_WINO_INPUT_STEP(mdl_wv8, 8)
    MDL_WINO_INPUT_STEP(mdl_wv4, 4)
    MDL_WINO_INPUT_STEP(float, 1)
}

/* Output rows 2 ty, 2 ty + 1, columns [2 tx0, 2 tx1) (those inside OH x OW) of plane out from
 * the tiles' values ys[k][tx - tx0] (k = 2 r + c: pixel (2 ty + r, 2 tx + c)). */
MDL_ISA_ATTR static void MDL_ISA(wino_store_tile_row)(const float *const *ys, ptrdiff_t ty,
                                                       ptrdiff_t tx0, ptrdiff_t tx1, float *out,
                                                       ptrdiff_t OH, ptrdiff_t OW)
{
    for (int r = 0; r < 2; r++) {
        ptrdiff_t oy = 2 * ty + r;
        if (oy >= OH)
            break;
        float *row = out + oy * OW;
        const float *ye = ys[2 * r], *yo = ys[2 * r + 1];
        /* Tiles [tx0, full) have both columns inside the row. */
        ptrdiff_t full = 2 * tx1 > OW ? OW / 2 : tx1;
        if (full < tx0)
            full = tx0;
        ptrdiff_t tx = tx0;
        for (; tx + 16 <= full; tx += 16) {
            mdl_wv16 a, b;
            MDL_WLD(a, ye + (tx - tx0));
            MDL_WLD(b, yo + (tx - tx0));
            mdl_wv16 lo = __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21,
                                                  6, 22, 7, 23);
            mdl_wv16 hi = __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13,
                                                  29, 14, 30, 15, 31);
            MDL_WST(row + 2 * tx, lo);
            MDL_WST(row + 2 * tx + 16, hi);
        }
        for (; tx < full; tx++) {
            row[2 * tx] = ye[tx - tx0];
            row[2 * tx + 1] = yo[tx - tx0];
        }
        for (; tx < tx1; tx++) {
            if (2 * tx < OW)
                row[2 * tx] = ye[tx - tx0];
            if (2 * tx + 1 < OW)
                row[2 * tx + 1] = yo[tx - tx0];
        }
    }
}

/* ys[k][0 .. n) = output pixel k of n consecutive tiles from M (+ bias, then ReLU). */
MDL_ISA_ATTR static void MDL_ISA(wino_output_tiles)(const float *M, ptrdiff_t estride,
                                                     ptrdiff_t n, float bias, int relu,
                                                     float *const *ys)
{
    ptrdiff_t t = 0;
    MDL_WINO_OUTPUT_STEP(mdl_wv16, 16)
    MDL_WINO_OUTPUT_STEP(mdl_wv8, 8)
    MDL_WINO_OUTPUT_STEP(mdl_wv4, 4)
    MDL_WINO_OUTPUT_STEP(float, 1)
    if (relu) /* v < 0 -> 0: NaN stays NaN, as torch.relu and the direct kernels */
        for (int k = 0; k < 4; k++)
            for (ptrdiff_t i = 0; i < n; i++)
                ys[k][i] = ys[k][i] < 0 ? 0.0f : ys[k][i];
}

MDL_ISA_ATTR static void MDL_ISA(wino_output_f32)(const float *M, ptrdiff_t estride,
                                                  ptrdiff_t ty, ptrdiff_t tx0, ptrdiff_t tx1,
                                                  float *out, ptrdiff_t OH, ptrdiff_t OW,
                                                  float bias, int relu, float *scratch)
{
    const ptrdiff_t n = tx1 - tx0;
    float *ys[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
    MDL_ISA(wino_output_tiles)(M, estride, n, bias, relu, ys);
    MDL_ISA(wino_store_tile_row)((const float *const *)ys, ty, tx0, tx1, out, OH, OW);
}

MDL_ISA_ATTR static void MDL_ISA(wino_grad_f32)(const float *g, ptrdiff_t OH, ptrdiff_t OW,
                                                ptrdiff_t ty, ptrdiff_t tx0, ptrdiff_t tx1,
                                                float *dM, ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t n = tx1 - tx0, m = wino_round16(n);
    const float *ev[2], *od[2];
    for (int r = 0; r < 2; r++) {
        float *e = scratch + (2 * r) * m, *o = scratch + (2 * r + 1) * m;
        ptrdiff_t oy = 2 * ty + r;
        MDL_ISA(wino_split_row)(oy < OH ? g + oy * OW : NULL, OW, 0, tx0, tx1, e, o);
        ev[r] = e;
        od[r] = o;
    }
    ptrdiff_t t = 0;
    MDL_WINO_GRAD_STEP(mdl_wv16, 16)
    MDL_WINO_GRAD_STEP(mdl_wv8, 8)
    MDL_WINO_GRAD_STEP(mdl_wv4, 4)
    MDL_WINO_GRAD_STEP(float, 1)
}

/* Whole-plane transforms: every tile of one (image, channel) plane at once, tiles numbered
 * t = ty * tw + tx, so that small images (4 or 8 tiles per tile row at 8x8 and 16x16) still fill
 * whole vectors. The plane's rows are first split into column phases with rows de-interleaved
 * (wino_phase_rows); a tile's patch values are then at the tile's index t in fixed planes.
 * Each tile's values come out of the same expressions as in the run-by-run functions above. */

/* Q[q][i][tx] = p[i][2 tx + q] for the padded plane p[i][j] = x[i - ph][j - pw] (zero outside
 * x), rows i in [0, nrows), tx in [0, tw), q in [0, nq); row i stored at
 * ((i % 2) * half + i / 2) * tw of its phase (half = (nrows + 1) / 2), phases 2 * half * tw
 * floats apart. */
MDL_ISA_ATTR static void MDL_ISA(wino_phase_rows)(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                   ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t nrows,
                                                   ptrdiff_t tw, int nq, float *Q)
{
    const ptrdiff_t half = (nrows + 1) / 2, qplane = 2 * half * tw;
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const ptrdiff_t iy = i - ph;
        float *d = Q + ((i % 2) * half + i / 2) * tw;
        if (iy < 0 || iy >= H) {
            for (int q = 0; q < nq; q++)
                memset(d + q * qplane, 0, sizeof(float) * tw);
            continue;
        }
        const float *row = x + iy * W;
        /* 16 tiles at a time: columns 2 tx + q - pw of x (zero outside [0, W)) by two vector
         * loads (masked at the edges) and an even/odd shuffle per pair of phases. */
        for (ptrdiff_t tx0 = 0; tx0 < tw; tx0 += 16) {
            const ptrdiff_t n = tw - tx0 < 16 ? tw - tx0 : 16, c0 = 2 * tx0 - pw;
            for (int q0 = 0; q0 < nq; q0 += 2) {
                mdl_wv16 a, b;
                MDL_WLD_ROW(a, row, c0 + q0, W);
                MDL_WLD_ROW(b, row, c0 + q0 + 16, W);
                mdl_wv16 ev = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                                      22, 24, 26, 28, 30);
                mdl_wv16 od = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
                                                      23, 25, 27, 29, 31);
                MDL_WST_N(d + q0 * qplane + tx0, ev, n);
                MDL_WST_N(d + (q0 + 1) * qplane + tx0, od, n);
            }
        }
    }
}

/* V[e * estride + t] for all th * tw tiles of plane x (H x W, padding ph, pw). */
MDL_ISA_ATTR static void MDL_ISA(wino_input_plane_f32)(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                        ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t th,
                                                        ptrdiff_t tw, float *V, ptrdiff_t estride,
                                                        float *scratch)
{
    const ptrdiff_t half = th + 1, qplane = 2 * half * tw, n = th * tw;
    MDL_ISA(wino_phase_rows)(x, H, W, ph, pw, 2 * th + 2, tw, 4, scratch);
    const float *ev[4], *od[4], *ev1[4], *od1[4];
    for (int r = 0; r < 4; r++) {
        /* Patch row r of tile (ty, tx) is padded row 2 ty + r. */
        const float *base = scratch + ((r % 2) * half + r / 2) * tw;
        ev[r] = base;
        od[r] = base + qplane;
        ev1[r] = base + 2 * qplane;
        od1[r] = base + 3 * qplane;
    }
    ptrdiff_t t = 0;
    MDL_WINO_INPUT_STEP(mdl_wv16, 16)
    MDL_WINO_INPUT_STEP(mdl_wv8, 8)
    MDL_WINO_INPUT_STEP(mdl_wv4, 4)
    MDL_WINO_INPUT_STEP(float, 1)
}

/* Plane out (OH x OW) from M[e * estride + t] of its th * tw tiles (+ bias, ReLU). */
MDL_ISA_ATTR static void MDL_ISA(wino_output_plane_f32)(const float *M, ptrdiff_t estride,
                                                         ptrdiff_t th, ptrdiff_t tw, float *out,
                                                         ptrdiff_t OH, ptrdiff_t OW, float bias,
                                                         int relu, float *scratch)
{
    const ptrdiff_t n = th * tw;
    float *ys[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
    MDL_ISA(wino_output_tiles)(M, estride, n, bias, relu, ys);
    for (ptrdiff_t ty = 0; ty < th; ty++) {
        const float *row[4] = {ys[0] + ty * tw, ys[1] + ty * tw, ys[2] + ty * tw,
                               ys[3] + ty * tw};
        MDL_ISA(wino_store_tile_row)(row, ty, 0, tw, out, OH, OW);
    }
}

/* dM[e * estride + t] for all th * tw tiles from the output gradient g (OH x OW). */
MDL_ISA_ATTR static void MDL_ISA(wino_grad_plane_f32)(const float *g, ptrdiff_t OH, ptrdiff_t OW,
                                                       ptrdiff_t th, ptrdiff_t tw, float *dM,
                                                       ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t n = th * tw, qplane = 2 * th * tw;
    MDL_ISA(wino_phase_rows)(g, OH, OW, 0, 0, 2 * th, tw, 2, scratch);
    /* Gradient row p of tile (ty, tx) is row 2 ty + p. */
    const float *ev[2] = {scratch, scratch + th * tw};
    const float *od[2] = {scratch + qplane, scratch + qplane + th * tw};
    ptrdiff_t t = 0;
    MDL_WINO_GRAD_STEP(mdl_wv16, 16)
    MDL_WINO_GRAD_STEP(mdl_wv8, 8)
    MDL_WINO_GRAD_STEP(mdl_wv4, 4)
    MDL_WINO_GRAD_STEP(float, 1)
}

#undef MDL_WLD_EDGE
#undef MDL_WLD_ROW
#undef MDL_WST_N
