/* Per-instruction-set body of winograd_kernels.h (included once per ISA with MDL_ISA_ATTR and
 * MDL_ISA(name) defined; no include guard on purpose).
 *
 * The tile loops are written once as macros over a vector type VT of L lanes and run from the
 * instance's register width down (16-, 8- and 4-lane GCC vectors on AVX-512, 8 and 4 on AVX2, 4
 * on the baseline: a vector wider than the target's registers would live on the stack), then
 * with plain floats for the last tiles of a run: tile runs are short on small images (4 tiles
 * per row of an 8x8 image). The transforms only add and subtract, so every width gives the same
 * bits. The row splits and interleaves work on 16-float blocks held as MDL_NH registers of
 * MDL_VL lanes (mdl_isa.h). Loads and stores go through memcpy (unaligned, no aliasing
 * assumptions). */

#ifndef MDL_WINO_TYPES
#define MDL_WINO_TYPES
#define MDL_WLD(v, p) memcpy(&(v), (p), sizeof(v))
#define MDL_WST(p, v) memcpy((p), &(v), sizeof(v))
typedef float mdl_f32x2 __attribute__((vector_size(8)));
/* The prefetch helpers (wino_prefetch_*) are always inlined: gcc takes a function that only
 * prefetches for one without side effects, and where it had split one out of line it deleted
 * the call, prefetches and all (a build whose phase splits fetched no next plane). */
#define MDL_W_PREFETCHER static inline __attribute__((always_inline))

/* Input tile loop body: tiles [t, t + L) (see wino_input_f32): columns 2 tx + {0, 1, 2, 3} of
 * patch row r are ev[r], od[r], ev1[r], od1[r] at the tile's index. */
#define MDL_WINO_INPUT_STEP(VT, L)                                                               \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT e[4], e1[4], o[4], o1[4], rr[4][4];                                                   \
        MDL_W_UNROLL for (int r = 0; r < 4; r++) {                                               \
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
        MDL_W_UNROLL for (int j = 0; j < 4; j++) {                                               \
            /* B^T down the columns: (r0 - r2, r1 + r2, r2 - r1, r1 - r3). */                    \
            VT a = rr[0][j] - rr[2][j], b = rr[1][j] + rr[2][j];                                 \
            VT c = rr[2][j] - rr[1][j], d = rr[1][j] - rr[3][j];                                 \
            MDL_WST(V + (0 + j) * estride + t, a);                                               \
            MDL_WST(V + (4 + j) * estride + t, b);                                               \
            MDL_WST(V + (8 + j) * estride + t, c);                                               \
            MDL_WST(V + (12 + j) * estride + t, d);                                              \
        }                                                                                        \
    }

/* bad |= whether a lane of chk (a VT) is +-Inf or NaN: independent tests OR-ed, where a sum of
 * the lanes would be a chain of L dependent adds per call (a call transforms few tiles). */
#define MDL_WINO_CHECK_LANES(bad, chk, L)                                                        \
    do {                                                                                         \
        float lanes_[L];                                                                         \
        memcpy(lanes_, &(chk), sizeof(lanes_));                                                  \
        for (int l_ = 0; l_ < (L); l_++)                                                         \
            (bad) |= !__builtin_isfinite(lanes_[l_]);                                            \
    } while (0)

/* Output tile loop body: y00..y11 of tiles [t, t + L) (see wino_output_f32); `bad` set when
 * their sum (before the bias) is not finite: a sum is finite only when all its terms are (or
 * when it overflows: the caller then recomputes, exactly too), at one add per value while the
 * values are in registers. */
#define MDL_WINO_OUTPUT_STEP(VT, L)                                                              \
    {                                                                                            \
        VT chk = {0};                                                                            \
        for (; t + (L) <= n; t += (L)) {                                                         \
            VT m[16];                                                                            \
            MDL_W_UNROLL for (int k = 0; k < 16; k++)                                            \
                MDL_WLD(m[k], M + k * estride + t);                                              \
            VT s0[4], s1[4];                                                                     \
            MDL_W_UNROLL for (int j = 0; j < 4; j++) {                                           \
                /* A^T down the columns: (m0 + m1 + m2, m1 - m2 - m3), then along the rows. */   \
                s0[j] = m[j] + m[4 + j] + m[8 + j];                                              \
                s1[j] = m[4 + j] - m[8 + j] - m[12 + j];                                         \
            }                                                                                    \
            VT y[4] = {s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3], s1[0] + s1[1] + s1[2],      \
                       s1[1] - s1[2] - s1[3]};                                                   \
            chk += (y[0] + y[1]) + (y[2] + y[3]);                                                \
            MDL_W_UNROLL for (int k = 0; k < 4; k++) {                                           \
                VT v = y[k] + bias;                                                              \
                MDL_WST(ys[k] + t, v);                                                           \
            }                                                                                    \
        }                                                                                        \
        MDL_WINO_CHECK_LANES(bad, chk, L);                                                       \
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

/* F(4x4, 3x3) (winograd.py derives the matrices from the points 0, 1, -1, 2, -2 and infinity):
 * B^T (6x6), A^T (4x6) and A (6x4) on six or four values of one row or column, sharing the
 * sums and differences of the +-a pairs. */
#define MDL_W4_BT(VT, d, o)                                                                      \
    do {                                                                                         \
        VT t1_ = d[4] - 4.0f * d[2], t2_ = d[3] - 4.0f * d[1];                                   \
        VT t3_ = d[4] - d[2], t4_ = 2.0f * (d[3] - d[1]);                                        \
        o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];                                                 \
        o[1] = t1_ + t2_;                                                                        \
        o[2] = t1_ - t2_;                                                                        \
        o[3] = t3_ + t4_;                                                                        \
        o[4] = t3_ - t4_;                                                                        \
        o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];                                                 \
    } while (0)
#define MDL_W4_AT(VT, m, y)                                                                      \
    do {                                                                                         \
        VT a_ = m[1] + m[2], b_ = m[1] - m[2], c_ = m[3] + m[4], d_ = m[3] - m[4];               \
        y[0] = m[0] + a_ + c_;                                                                   \
        y[1] = b_ + 2.0f * d_;                                                                   \
        y[2] = a_ + 4.0f * c_;                                                                   \
        y[3] = b_ + 8.0f * d_ + m[5];                                                            \
    } while (0)
#define MDL_W4_A(VT, q, o)                                                                       \
    do {                                                                                         \
        VT s_ = q[0] + q[2], u_ = q[1] + q[3];                                                   \
        VT s2_ = q[0] + 4.0f * q[2], u2_ = 2.0f * q[1] + 8.0f * q[3];                            \
        o[0] = q[0];                                                                             \
        o[1] = s_ + u_;                                                                          \
        o[2] = s_ - u_;                                                                          \
        o[3] = s2_ + u2_;                                                                        \
        o[4] = s2_ - u2_;                                                                        \
        o[5] = q[3];                                                                             \
    } while (0)

/* F(4x4) input tile loop body: V[e][t] = (B^T d_t B)[e], e = 6 i + j, for tiles [t, t + L);
 * P[r][q] + t holds column 4 tx + q of the tile's patch row r. */
#define MDL_WINO4_INPUT_STEP(VT, L)                                                              \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT rr[6][6];                                                                             \
        MDL_W_UNROLL for (int r = 0; r < 6; r++) {                                               \
            VT d[6];                                                                             \
            MDL_W_UNROLL for (int q = 0; q < 6; q++)                                             \
                MDL_WLD(d[q], P[r][q] + t);                                                      \
            MDL_W4_BT(VT, d, rr[r]);                                                             \
        }                                                                                        \
        MDL_W_UNROLL for (int j = 0; j < 6; j++) {                                               \
            VT d[6] = {rr[0][j], rr[1][j], rr[2][j], rr[3][j], rr[4][j], rr[5][j]}, o[6];        \
            MDL_W4_BT(VT, d, o);                                                                 \
            MDL_W_UNROLL for (int i = 0; i < 6; i++)                                             \
                MDL_WST(V + (6 * i + j) * estride + t, o[i]);                                    \
        }                                                                                        \
    }

/* F(4x4) output tile loop body: ys[4 a + b][t] = (A^T M_t A)[a][b] + bias, and `bad` as in
 * MDL_WINO_OUTPUT_STEP. */
#define MDL_WINO4_OUTPUT_STEP(VT, L)                                                             \
    {                                                                                            \
        VT chk = {0};                                                                            \
        for (; t + (L) <= n; t += (L)) {                                                         \
            VT s[4][6];                                                                          \
            MDL_W_UNROLL for (int j = 0; j < 6; j++) {                                           \
                VT m[6], y[4];                                                                   \
                MDL_W_UNROLL for (int i = 0; i < 6; i++)                                         \
                    MDL_WLD(m[i], M + (6 * i + j) * estride + t);                                \
                MDL_W4_AT(VT, m, y);                                                             \
                MDL_W_UNROLL for (int a = 0; a < 4; a++)                                         \
                    s[a][j] = y[a];                                                              \
            }                                                                                    \
            MDL_W_UNROLL for (int a = 0; a < 4; a++) {                                           \
                VT y[4];                                                                         \
                MDL_W4_AT(VT, s[a], y);                                                          \
                chk += (y[0] + y[1]) + (y[2] + y[3]);                                            \
                MDL_W_UNROLL for (int b = 0; b < 4; b++) {                                       \
                    VT v = y[b] + bias;                                                          \
                    MDL_WST(ys[4 * a + b] + t, v);                                               \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        MDL_WINO_CHECK_LANES(bad, chk, L);                                                       \
    }

/* F(4x4) gradient tile loop body: dM[e][t] = (A dy_t A^T)[e]; R[p][k] + t holds the output
 * gradient at column 4 tx + k of the tile's row p. */
#define MDL_WINO4_GRAD_STEP(VT, L)                                                               \
    for (; t + (L) <= n; t += (L)) {                                                             \
        VT rr[4][6];                                                                             \
        MDL_W_UNROLL for (int p = 0; p < 4; p++) {                                               \
            VT q[4];                                                                             \
            MDL_W_UNROLL for (int k = 0; k < 4; k++)                                             \
                MDL_WLD(q[k], R[p][k] + t);                                                      \
            MDL_W4_A(VT, q, rr[p]);                                                              \
        }                                                                                        \
        MDL_W_UNROLL for (int j = 0; j < 6; j++) {                                               \
            VT q[4] = {rr[0][j], rr[1][j], rr[2][j], rr[3][j]}, o[6];                            \
            MDL_W4_A(VT, q, o);                                                                  \
            MDL_W_UNROLL for (int i = 0; i < 6; i++)                                             \
                MDL_WST(dM + (6 * i + j) * estride + t, o[i]);                                   \
        }                                                                                        \
    }

/* Lanes q, q + 4, ..., q + 60 of the 64 consecutive floats v[0..3] (a stride-4 phase; 16-lane
 * instances). */
#define MDL_W4_PICK(v, q)                                                                        \
    __builtin_shufflevector(                                                                     \
        __builtin_shufflevector(v[0], v[1], q, q + 4, q + 8, q + 12, q + 16, q + 20, q + 24,     \
                                q + 28),                                                         \
        __builtin_shufflevector(v[2], v[3], q, q + 4, q + 8, q + 12, q + 16, q + 20, q + 24,     \
                                q + 28),                                                         \
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
/* Lanes q, q + 4, ..., q + 28 (q < 4) of the 32 consecutive floats (a, b) in the first 8
 * lanes (the rest: copies of lane q, past the row's tiles; 16-lane instances). */
#define MDL_W4_PICK8(a, b, q)                                                                    \
    __builtin_shufflevector(a, b, q, q + 4, q + 8, q + 12, q + 16, q + 20, q + 24, q + 28, q, q, \
                            q, q, q, q, q, q)

/* 4 x 4 transposes inside each group of 4 lanes (one 128-bit lane) of four vectors c[0..3] of
 * type VT (L lanes; IT the int vector of as many lanes, iota its lane indices 0 .. L - 1): lane
 * 4 g + j of p[q] is lane 4 g + q of c[j]. Unpacks and 64-bit moves on x86, no lane crossing. */
#define MDL_W_TRANSPOSE4(VT, IT, L, iota, c, p)                                                  \
    do {                                                                                         \
        const IT b_ = (iota) & ~3, j_ = (iota) & 3;                                              \
        const IT lo_ = b_ + (j_ >> 1) + (j_ & 1) * (L), hi_ = lo_ + 2;                           \
        const IT ll_ = b_ + (j_ & 1) + (j_ >> 1) * (L), hh_ = ll_ + 2;                           \
        const VT t0_ = __builtin_shuffle((c)[0], (c)[1], lo_);                                   \
        const VT t1_ = __builtin_shuffle((c)[0], (c)[1], hi_);                                   \
        const VT t2_ = __builtin_shuffle((c)[2], (c)[3], lo_);                                   \
        const VT t3_ = __builtin_shuffle((c)[2], (c)[3], hi_);                                   \
        (p)[0] = __builtin_shuffle(t0_, t2_, ll_);                                               \
        (p)[1] = __builtin_shuffle(t0_, t2_, hh_);                                               \
        (p)[2] = __builtin_shuffle(t1_, t3_, ll_);                                               \
        (p)[3] = __builtin_shuffle(t1_, t3_, hh_);                                               \
    } while (0)

/* The stride-4 phases p[q] (q < 4) of the 4 MDL_VL consecutive floats in the registers c[0..3]:
 * lane i of p[q] is float 4 i + q. The in-group transposes leave lane 4 g + j of p[q] holding
 * float 4 (j MDL_VL / 4 + g) + q; one permute puts the tiles in order. */
#define MDL_W4_PHASES(c, p)                                                                      \
    do {                                                                                         \
        MDL_W_TRANSPOSE4(MDL_VF, MDL_VI, MDL_VL, MDL_W_IOTA, c, p);                              \
        const MDL_VI perm_ = ((MDL_W_IOTA & (MDL_VL / 4 - 1)) << 2) + MDL_W_IOTA / (MDL_VL / 4); \
        MDL_W_UNROLL for (int q_ = 0; q_ < 4; q_++)                                              \
            (p)[q_] = __builtin_shuffle((p)[q_], perm_);                                         \
    } while (0)

/* ev, od (MDL_NH registers each) = the even and odd floats of the 32 in c[0 .. 2 MDL_NH). */
#define MDL_W_DEINTERLEAVE(ev, od, c)                                                            \
    do {                                                                                         \
        MDL_W_UNROLL for (int h_ = 0; h_ < MDL_NH; h_++) {                                       \
            (ev)[h_] = __builtin_shuffle((c)[2 * h_], (c)[2 * h_ + 1], MDL_W_IOTA * 2);          \
            (od)[h_] = __builtin_shuffle((c)[2 * h_], (c)[2 * h_ + 1], MDL_W_IOTA * 2 + 1);      \
        }                                                                                        \
    } while (0)
#endif

/* Per instance: the lane indices of one register, and the tile loops from the register width
 * down (MDL_WINO_STEPS(MDL_WINO_INPUT_STEP) runs the input loop at each width in turn). */
#if MDL_VL == 16
#define MDL_W_IOTA ((MDL_VI){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
#define MDL_WINO_STEPS(S) S(mdl_f32x16, 16) S(mdl_f32x8, 8) S(mdl_f32x4, 4) S(float, 1)
#elif MDL_VL == 8
#define MDL_W_IOTA ((MDL_VI){0, 1, 2, 3, 4, 5, 6, 7})
#define MDL_WINO_STEPS(S) S(mdl_f32x8, 8) S(mdl_f32x4, 4) S(float, 1)
#else
#define MDL_W_IOTA ((MDL_VI){0, 1, 2, 3})
#define MDL_WINO_STEPS(S) S(mdl_f32x4, 4) S(float, 1)
#endif
/* Full unrolling of the constant inner loops over arrays of vectors (6 x 6 in the F(4x4) tile
 * loops), beyond gcc's own limits: rolled, those arrays live on the stack. Not in 16-lane
 * instances, whose code stays as it was (which of two NaN operands an add returns may change
 * with the unrolling). */
#if MDL_VL == 16
#define MDL_W_UNROLL
#else
#define MDL_W_UNROLL _Pragma("GCC unroll 16")
#endif

/* v (a block: MDL_NH registers) = row[start .. start + 16), lanes outside [0, W) zero. Inside
 * the row: plain loads. At an edge: one masked load on AVX-512 (masked-off lanes are never
 * read), a masked load per register on AVX2 (vmaskmovps, no fault on masked-off lanes), lane by
 * lane on the baseline. Masked-off lanes and lanes filled in by hand are +0, as before. */
#if MDL_ISA_AVX512
#define MDL_WLD_EDGE(v, row, start, W)                                                           \
    do {                                                                                         \
        ptrdiff_t lo_ = (start) < 0 ? -(start) : 0, hi_ = (W) - (start);                         \
        if (hi_ > 16)                                                                            \
            hi_ = 16;                                                                            \
        unsigned m_ = hi_ <= lo_ ? 0u : ((1u << hi_) - 1u) & ~((1u << lo_) - 1u);                \
        /* No load at all for a vector wholly outside the row (the right half of a short row). */ \
        (v) = m_ ? (mdl_f32x16)_mm512_maskz_loadu_ps((__mmask16)m_, (row) + (start))             \
                 : (mdl_f32x16){0};                                                                \
    } while (0)
#define MDL_WLD_ROW(v, row, start, W)                                                            \
    do {                                                                                         \
        if ((start) >= 0 && (start) + 16 <= (W))                                                 \
            MDL_BLOCK_LOAD(v, (row) + (start));                                                  \
        else                                                                                     \
            MDL_WLD_EDGE((v)[0], row, start, W);                                                 \
    } while (0)
#else
#if MDL_VL == 8 /* the x86-64-v3 instance */
#define MDL_WLD_EDGE(r, row, s, W)                                                               \
    do {                                                                                         \
        ptrdiff_t lo_ = (s) < 0 ? -(s) : 0, hi_ = (W) - (s);                                     \
        if (lo_ > MDL_VL)                                                                        \
            lo_ = MDL_VL;                                                                        \
        if (hi_ > MDL_VL)                                                                        \
            hi_ = MDL_VL;                                                                        \
        if (hi_ <= lo_) {                                                                        \
            (r) = (MDL_VF){0};                                                                   \
        } else {                                                                                 \
            const MDL_VI m_ = (MDL_W_IOTA >= (int)lo_) & (MDL_W_IOTA < (int)hi_);                \
            (r) = (MDL_VF)_mm256_maskload_ps((row) + (s), (__m256i)m_);                          \
        }                                                                                        \
    } while (0)
#else
#define MDL_WLD_EDGE(r, row, s, W)                                                               \
    do {                                                                                         \
        float lanes_[MDL_VL];                                                                    \
        MDL_W_UNROLL for (int k_ = 0; k_ < MDL_VL; k_++) {                                       \
            ptrdiff_t c_ = (s) + k_;                                                             \
            lanes_[k_] = c_ >= 0 && c_ < (W) ? (row)[c_] : 0.0f;                                 \
        }                                                                                        \
        memcpy(&(r), lanes_, sizeof(r));                                                         \
    } while (0)
#endif
#define MDL_WLD_ROW(v, row, start, W)                                                            \
    do {                                                                                         \
        MDL_W_UNROLL for (int h_ = 0; h_ < MDL_NH; h_++) {                                       \
            const ptrdiff_t s_ = (start) + h_ * MDL_VL;                                          \
            if (s_ >= 0 && s_ + MDL_VL <= (W))                                                   \
                memcpy(&(v)[h_], (row) + s_, sizeof((v)[0]));                                    \
            else                                                                                 \
                MDL_WLD_EDGE((v)[h_], row, s_, W);                                               \
        }                                                                                        \
    } while (0)
#endif
/* The first n (<= 16) floats of the block v to p: one masked store on AVX-512; whole registers,
 * then the last one's first lanes (mdl_isa_partial.h: 16-, 8- and 4-byte pieces on AVX2 and
 * SSE2). */
#if MDL_ISA_AVX512
#define MDL_WST_N(p, v, n)                                                                       \
    _mm512_mask_storeu_ps((p), (__mmask16)(((n) >= 16 ? 0x10000u : (1u << (n))) - 1u),          \
                          (__m512)(v)[0])
#else
#include "mdl_isa_partial.h"
#define MDL_WST_N(p, v, n)                                                                       \
    do {                                                                                         \
        MDL_W_UNROLL for (int h_ = 0; h_ < MDL_NH; h_++) {                                       \
            const ptrdiff_t m_ = (n) - h_ * MDL_VL;                                              \
            if (m_ >= MDL_VL)                                                                    \
                memcpy((p) + h_ * MDL_VL, &(v)[h_], sizeof((v)[0]));                             \
            else if (m_ > 0)                                                                     \
                MDL_STORE_PARTIAL((p) + h_ * MDL_VL, (v)[h_], m_);                               \
        }                                                                                        \
    } while (0)
#endif

/* Prefetches plane x (H x W) when a plane fits in L1 (32 KiB): the phase splits visit its rows
 * out of order (every second or fourth row in turn), which the hardware prefetchers do not
 * follow, and a row's load would otherwise wait for its own miss. The callers transform planes
 * in memory order, so the lines are mostly there already, fetched by the previous plane's calls
 * of wino_prefetch_next_row (one thread, batch 128, F(4x4), ms, this plane only / and the next:
 * 32->32 @16 forward 3.58 / 3.37, weight gradient 4.06 / 3.71; 16->16 @32 4.97 / 4.85, 7.78 /
 * 7.52). Prefetches never fault, past the last plane included. */
MDL_ISA_ATTR MDL_W_PREFETCHER void MDL_ISA(wino_prefetch_plane)(const float *x, ptrdiff_t H,
                                                                ptrdiff_t W)
{
    if (H * W <= 8192)
        for (ptrdiff_t i = 0; i < H * W; i += 16)
            __builtin_prefetch(x + i);
}

/* Row iy of the plane after x (H x W), called as row iy of x is split: the next plane's misses
 * spread over this plane's work. All of them at once, before it, filled the queue of misses and
 * the prefetches themselves stalled (16->16 @32, F(4x4), batch 128, min of 21, ms, all at once
 * / row by row: forward 5.01 / 4.50 at 1 thread, 3.28 / 3.07 at 2; weight gradient 7.76 / 6.86,
 * 5.18 / 4.70; 32->64 @26 forward 1.02-1.09x, weight gradient 1.06x). */
MDL_ISA_ATTR MDL_W_PREFETCHER void MDL_ISA(wino_prefetch_next_row)(const float *x, ptrdiff_t H,
                                                                   ptrdiff_t W, ptrdiff_t iy)
{
    if (H * W <= 8192) {
        const float *row = x + (H + iy) * W;
        for (ptrdiff_t j = 0; j < W; j += 16)
            __builtin_prefetch(row + j);
        __builtin_prefetch(row + W - 1);
    }
}

/* The same for an output plane about to be written (after the tile loops: its misses overlap
 * with them rather than stall the row stores). */
MDL_ISA_ATTR MDL_W_PREFETCHER void MDL_ISA(wino_prefetch_out)(float *out, ptrdiff_t OH,
                                                              ptrdiff_t OW)
{
    if (OH * OW <= 8192)
        for (ptrdiff_t i = 0; i < OH * OW; i += 16)
            __builtin_prefetch(out + i, 1);
}

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
        MDL_VF c[2 * MDL_NH], ev[MDL_NH], od[MDL_NH];
        MDL_WLD_ROW(c, row, c0 + 2 * j, W);
        MDL_WLD_ROW(c + MDL_NH, row, c0 + 2 * j + 16, W);
        MDL_W_DEINTERLEAVE(ev, od, c);
        MDL_BLOCK_STORE(even + j, ev);
        MDL_BLOCK_STORE(odd + j, od);
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
    MDL_WINO_STEPS(MDL_WINO_INPUT_STEP)
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
        for (; tx + MDL_VL <= full; tx += MDL_VL) {
            /* One register of tiles: interleaved, two registers of pixels. */
            MDL_VF a, b;
            MDL_WLD(a, ye + (tx - tx0));
            MDL_WLD(b, yo + (tx - tx0));
            const MDL_VI pair = (MDL_W_IOTA >> 1) + (MDL_W_IOTA & 1) * MDL_VL;
            MDL_VF lo = __builtin_shuffle(a, b, pair);
            MDL_VF hi = __builtin_shuffle(a, b, pair + MDL_VL / 2);
            MDL_WST(row + 2 * tx, lo);
            MDL_WST(row + 2 * tx + MDL_VL, hi);
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

/* ys[k][0 .. n) = output pixel k of n consecutive tiles from M (+ bias, then ReLU); returns 1
 * when a value before the bias came out +-Inf or NaN (or a sum of them overflowed), else 0. */
MDL_ISA_ATTR static int MDL_ISA(wino_output_tiles)(const float *M, ptrdiff_t estride,
                                                    ptrdiff_t n, float bias, int relu,
                                                    float *const *ys)
{
    ptrdiff_t t = 0;
    int bad = 0;
    MDL_WINO_STEPS(MDL_WINO_OUTPUT_STEP)
    if (relu) /* v < 0 -> 0: NaN stays NaN, as torch.relu and the direct kernels */
        for (int k = 0; k < 4; k++)
            for (ptrdiff_t i = 0; i < n; i++)
                ys[k][i] = ys[k][i] < 0 ? 0.0f : ys[k][i];
    return bad;
}

MDL_ISA_ATTR static int MDL_ISA(wino_output_f32)(const float *M, ptrdiff_t estride,
                                                  ptrdiff_t ty, ptrdiff_t tx0, ptrdiff_t tx1,
                                                  float *out, ptrdiff_t OH, ptrdiff_t OW,
                                                  float bias, int relu, float *scratch)
{
    const ptrdiff_t n = tx1 - tx0;
    float *ys[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
    const int bad = MDL_ISA(wino_output_tiles)(M, estride, n, bias, relu, ys);
    MDL_ISA(wino_store_tile_row)((const float *const *)ys, ty, tx0, tx1, out, OH, OW);
    return bad;
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
    MDL_WINO_STEPS(MDL_WINO_GRAD_STEP)
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
    MDL_ISA(wino_prefetch_plane)(x, H, W);
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const ptrdiff_t iy = i - ph;
        float *d = Q + ((i % 2) * half + i / 2) * tw;
        if (iy < 0 || iy >= H) {
            for (int q = 0; q < nq; q++)
                memset(d + q * qplane, 0, sizeof(float) * tw);
            continue;
        }
        const float *row = x + iy * W;
        MDL_ISA(wino_prefetch_next_row)(x, H, W, iy);
        /* 16 tiles at a time: columns 2 tx + q - pw of x (zero outside [0, W)) by two vector
         * loads (masked at the edges) and an even/odd shuffle per pair of phases. */
        for (ptrdiff_t tx0 = 0; tx0 < tw; tx0 += 16) {
            const ptrdiff_t n = tw - tx0 < 16 ? tw - tx0 : 16, c0 = 2 * tx0 - pw;
            for (int q0 = 0; q0 < nq; q0 += 2) {
                MDL_VF c[2 * MDL_NH], ev[MDL_NH], od[MDL_NH];
                MDL_WLD_ROW(c, row, c0 + q0, W);
                MDL_WLD_ROW(c + MDL_NH, row, c0 + q0 + 16, W);
                MDL_W_DEINTERLEAVE(ev, od, c);
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
    MDL_WINO_STEPS(MDL_WINO_INPUT_STEP)
}

/* Plane out (OH x OW) from M[e * estride + t] of its th * tw tiles (+ bias, ReLU). */
MDL_ISA_ATTR static int MDL_ISA(wino_output_plane_f32)(const float *M, ptrdiff_t estride,
                                                         ptrdiff_t th, ptrdiff_t tw, float *out,
                                                         ptrdiff_t OH, ptrdiff_t OW, float bias,
                                                         int relu, float *scratch)
{
    const ptrdiff_t n = th * tw;
    float *ys[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
    MDL_ISA(wino_prefetch_out)(out, OH, OW);
    const int bad = MDL_ISA(wino_output_tiles)(M, estride, n, bias, relu, ys);
    for (ptrdiff_t ty = 0; ty < th; ty++) {
        const float *row[4] = {ys[0] + ty * tw, ys[1] + ty * tw, ys[2] + ty * tw,
                               ys[3] + ty * tw};
        MDL_ISA(wino_store_tile_row)(row, ty, 0, tw, out, OH, OW);
    }
    return bad;
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
    MDL_WINO_STEPS(MDL_WINO_GRAD_STEP)
}

/* F(4x4, 3x3) whole-plane transforms, on the layout of the F(2x2) ones above with a tile stride
 * of 4: patch columns 4 tx + q (q < 6) and rows 4 ty + r are split into stride-4 phases, rows
 * de-interleaved by i % 4, so that a tile's values sit at its index t = ty * tw + tx. */

/* Q[q][i][tx] = p[i][4 tx + q] for the padded plane p[i][j] = x[i - ph][j - pw] (zero outside
 * x), rows i in [0, nrows), tx in [0, tw), q in [0, nq) (nq is 4 or 6); row i stored at
 * ((i % 4) * quarter + i / 4) * tw of its phase (quarter = (nrows + 3) / 4), phases
 * wino4_qplane(quarter, tw) floats apart. Every store is a whole vector: rows are written in
 * storage order, so the lanes past a row's end land on rows written later (or on the 16 floats
 * of padding after a phase), and a row of 4 tiles costs no masked store. */
MDL_ISA_ATTR static void MDL_ISA(wino4_phase_rows)(const float *x, ptrdiff_t H, ptrdiff_t W,
                                                    ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t nrows,
                                                    ptrdiff_t tw, int nq, float *Q)
{
    const ptrdiff_t quarter = (nrows + 3) / 4, qplane = wino4_qplane(quarter, tw);
    MDL_ISA(wino_prefetch_plane)(x, H, W);
    for (int r4 = 0; r4 < 4; r4++) {
        for (ptrdiff_t k = 0; k < quarter && 4 * k + r4 < nrows; k++) {
            const ptrdiff_t iy = 4 * k + r4 - ph;
            float *d = Q + (r4 * quarter + k) * tw;
            if (iy < 0 || iy >= H) {
                for (int q = 0; q < nq; q++)
                    for (ptrdiff_t tx0 = 0; tx0 < tw; tx0 += 16)
                        memset(d + q * qplane + tx0, 0, sizeof(float) * 16);
                continue;
            }
            const float *row = x + iy * W;
            MDL_ISA(wino_prefetch_next_row)(x, H, W, iy);
            if (tw <= 8) {
                /* Short rows (images up to 32 wide): columns 4 tx + q - pw for tx < 8 lie in two
                 * blocks from -pw (phases 0-3), and phases 4 and 5 in two more from 4 - pw. */
                MDL_VF a[2 * MDL_NH];
                MDL_WLD_ROW(a, row, -pw, W);
                MDL_WLD_ROW(a + MDL_NH, row, 16 - pw, W);
#if MDL_VL == 16
                mdl_f32x16 phase[4] = {MDL_W4_PICK8(a[0], a[1], 0), MDL_W4_PICK8(a[0], a[1], 1),
                                     MDL_W4_PICK8(a[0], a[1], 2), MDL_W4_PICK8(a[0], a[1], 3)};
                for (int q = 0; q < 4; q++)
                    MDL_WST(d + q * qplane, phase[q]);
                if (nq > 4) {
                    MDL_WLD_ROW(a, row, 4 - pw, W);
                    MDL_WLD_ROW(a + MDL_NH, row, 20 - pw, W);
                    phase[0] = MDL_W4_PICK8(a[0], a[1], 0);
                    phase[1] = MDL_W4_PICK8(a[0], a[1], 1);
                    MDL_WST(d + 4 * qplane, phase[0]);
                    MDL_WST(d + 5 * qplane, phase[1]);
                }
#else
                /* The 8 tiles' phases, a register of MDL_VL tiles from 4 registers at a time
                 * (only the first 8 tiles are stored: the row holds at most 8). */
                MDL_W_UNROLL for (int h = 0; h < MDL_NH / 2; h++) {
                    MDL_VF phase[4];
                    MDL_W4_PHASES(a + 4 * h, phase);
                    MDL_W_UNROLL for (int q = 0; q < 4; q++)
                        MDL_WST(d + q * qplane + h * MDL_VL, phase[q]);
                }
                if (nq > 4) {
                    MDL_WLD_ROW(a, row, 4 - pw, W);
                    MDL_WLD_ROW(a + MDL_NH, row, 20 - pw, W);
                    MDL_W_UNROLL for (int h = 0; h < MDL_NH / 2; h++) {
                        MDL_VF phase[4];
                        MDL_W4_PHASES(a + 4 * h, phase);
                        MDL_WST(d + 4 * qplane + h * MDL_VL, phase[0]);
                        MDL_WST(d + 5 * qplane + h * MDL_VL, phase[1]);
                    }
                }
#endif
                continue;
            }
            /* 16 tiles at a time: four blocks (masked at the edges) cover columns
             * 4 tx + {0..3} - pw, four more shifted by one tile give phases 4 and 5. */
            for (ptrdiff_t tx0 = 0; tx0 < tw; tx0 += 16) {
                const ptrdiff_t c0 = 4 * tx0 - pw;
                MDL_VF a[4 * MDL_NH];
                MDL_W_UNROLL for (int j = 0; j < 4; j++)
                    MDL_WLD_ROW(a + j * MDL_NH, row, c0 + 16 * j, W);
#if MDL_VL == 16
                mdl_f32x16 p0, p1, p2, p3;
                p0 = MDL_W4_PICK(a, 0);
                p1 = MDL_W4_PICK(a, 1);
                p2 = MDL_W4_PICK(a, 2);
                p3 = MDL_W4_PICK(a, 3);
                MDL_WST(d + tx0, p0);
                MDL_WST(d + qplane + tx0, p1);
                MDL_WST(d + 2 * qplane + tx0, p2);
                MDL_WST(d + 3 * qplane + tx0, p3);
                if (nq > 4) {
                    MDL_W_UNROLL for (int j = 0; j < 4; j++)
                        MDL_WLD_ROW(a + j * MDL_NH, row, c0 + 4 + 16 * j, W);
                    p0 = MDL_W4_PICK(a, 0);
                    p1 = MDL_W4_PICK(a, 1);
                    MDL_WST(d + 4 * qplane + tx0, p0);
                    MDL_WST(d + 5 * qplane + tx0, p1);
                }
#else
                /* Register h of each phase (tiles tx0 + h MDL_VL ...) from registers 4h..4h+3. */
                MDL_W_UNROLL for (int h = 0; h < MDL_NH; h++) {
                    MDL_VF phase[4];
                    MDL_W4_PHASES(a + 4 * h, phase);
                    MDL_W_UNROLL for (int q = 0; q < 4; q++)
                        MDL_WST(d + q * qplane + tx0 + h * MDL_VL, phase[q]);
                }
                if (nq > 4) {
                    MDL_W_UNROLL for (int j = 0; j < 4; j++)
                        MDL_WLD_ROW(a + j * MDL_NH, row, c0 + 4 + 16 * j, W);
                    MDL_W_UNROLL for (int h = 0; h < MDL_NH; h++) {
                        MDL_VF phase[4];
                        MDL_W4_PHASES(a + 4 * h, phase);
                        MDL_WST(d + 4 * qplane + tx0 + h * MDL_VL, phase[0]);
                        MDL_WST(d + 5 * qplane + tx0 + h * MDL_VL, phase[1]);
                    }
                }
#endif
            }
        }
    }
}

/* V[e * estride + t] (e < 36) for all th * tw tiles of plane x (H x W, padding ph, pw). */
MDL_ISA_ATTR static void MDL_ISA(wino4_input_plane_f32)(const float *x, ptrdiff_t H,
                                                         ptrdiff_t W, ptrdiff_t ph, ptrdiff_t pw,
                                                         ptrdiff_t th, ptrdiff_t tw, float *V,
                                                         ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t quarter = th + 1, qplane = wino4_qplane(quarter, tw), n = th * tw;
    MDL_ISA(wino4_phase_rows)(x, H, W, ph, pw, 4 * th + 2, tw, 6, scratch);
    const float *P[6][6];
    for (int r = 0; r < 6; r++)
        for (int q = 0; q < 6; q++) /* patch row r of tile (ty, tx) is padded row 4 ty + r */
            P[r][q] = scratch + ((r % 4) * quarter + r / 4) * tw + q * qplane;
    ptrdiff_t t = 0;
    MDL_WINO_STEPS(MDL_WINO4_INPUT_STEP)
}

/* ys[k][0 .. n) = output pixel k = 4 a + b (row a, column b of the tile) of n consecutive
 * tiles from M[e * estride + t] (e < 36), plus bias, then ReLU when relu; returns
 * 1 when a value before the bias came out +-Inf or NaN (or a sum of them overflowed), else 0. */
MDL_ISA_ATTR static int MDL_ISA(wino4_output_values)(const float *M, ptrdiff_t estride,
                                                      ptrdiff_t n, float bias, int relu,
                                                      float *const *ys)
{
    ptrdiff_t t = 0;
    int bad = 0;
    MDL_WINO_STEPS(MDL_WINO4_OUTPUT_STEP)
    if (relu) /* v < 0 -> 0: NaN stays NaN, as torch.relu and the direct kernels */
        for (int k = 0; k < 16; k++)
            for (ptrdiff_t i = 0; i < n; i++)
                ys[k][i] = ys[k][i] < 0 ? 0.0f : ys[k][i];
    return bad;
}

/* Plane out (OH x OW) from its th x tw tiles' values ys[4 a + b][t], t = ty * tw + tx: pixel
 * (4 ty + a, 4 tx + b) where inside the plane. */
MDL_ISA_ATTR static void MDL_ISA(wino4_store_plane)(const float *const *ys, ptrdiff_t th,
                                                     ptrdiff_t tw, float *out, ptrdiff_t OH,
                                                     ptrdiff_t OW)
{
    /* Tiles [0, full) have all four columns inside a row. */
    const ptrdiff_t full = tw < OW / 4 ? tw : OW / 4;
    for (ptrdiff_t ty = 0; ty < th; ty++) {
        for (int a = 0; a < 4 && 4 * ty + a < OH; a++) {
            float *row = out + (4 * ty + a) * OW;
            const float *y[4];
            for (int b = 0; b < 4; b++)
                y[b] = ys[4 * a + b] + ty * tw;
            ptrdiff_t tx = 0;
#if MDL_VL == 16
            for (; tx + 16 <= full; tx += 16) {
                /* Interleave four vectors of 16 tiles into 64 consecutive pixels. */
                mdl_f32x16 y0, y1, y2, y3;
                MDL_WLD(y0, y[0] + tx);
                MDL_WLD(y1, y[1] + tx);
                MDL_WLD(y2, y[2] + tx);
                MDL_WLD(y3, y[3] + tx);
                mdl_f32x16 p = __builtin_shufflevector(y0, y1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                     21, 6, 22, 7, 23);
                mdl_f32x16 q = __builtin_shufflevector(y2, y3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                     21, 6, 22, 7, 23);
                mdl_f32x16 o0 = __builtin_shufflevector(p, q, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20,
                                                      21, 6, 7, 22, 23);
                mdl_f32x16 o1 = __builtin_shufflevector(p, q, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13,
                                                      28, 29, 14, 15, 30, 31);
                p = __builtin_shufflevector(y0, y1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29,
                                            14, 30, 15, 31);
                q = __builtin_shufflevector(y2, y3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29,
                                            14, 30, 15, 31);
                mdl_f32x16 o2 = __builtin_shufflevector(p, q, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20,
                                                      21, 6, 7, 22, 23);
                mdl_f32x16 o3 = __builtin_shufflevector(p, q, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13,
                                                      28, 29, 14, 15, 30, 31);
                MDL_WST(row + 4 * tx, o0);
                MDL_WST(row + 4 * tx + 16, o1);
                MDL_WST(row + 4 * tx + 32, o2);
                MDL_WST(row + 4 * tx + 48, o3);
            }
#else
            for (; tx + MDL_VL <= full; tx += MDL_VL) {
                /* Interleave four registers of MDL_VL tiles into 4 MDL_VL consecutive pixels,
                 * MDL_W4_PHASES backwards: a permute brings tile k MDL_VL / 4 + g of y[b] to
                 * lane 4 g + k of z[b], then the in-group transposes give o[k]: pixels
                 * 4 (tx + k MDL_VL / 4 + g) + b. */
                const MDL_VI perm = (MDL_W_IOTA & 3) * (MDL_VL / 4) + (MDL_W_IOTA >> 2);
                MDL_VF z[4], o[4];
                MDL_W_UNROLL for (int b = 0; b < 4; b++) {
                    MDL_WLD(z[b], y[b] + tx);
                    z[b] = __builtin_shuffle(z[b], perm);
                }
                MDL_W_TRANSPOSE4(MDL_VF, MDL_VI, MDL_VL, MDL_W_IOTA, z, o);
                MDL_W_UNROLL for (int k = 0; k < 4; k++)
                    MDL_WST(row + 4 * tx + k * MDL_VL, o[k]);
            }
#endif
#if MDL_VL == 16
            for (; tx + 4 <= full; tx += 4) {
                /* Four tiles of a narrow image: one vector of 16 pixels. */
                mdl_f32x4 y0, y1, y2, y3;
                MDL_WLD(y0, y[0] + tx);
                MDL_WLD(y1, y[1] + tx);
                MDL_WLD(y2, y[2] + tx);
                MDL_WLD(y3, y[3] + tx);
                mdl_f32x8 p = __builtin_shufflevector(y0, y1, 0, 4, 1, 5, 2, 6, 3, 7);
                mdl_f32x8 q = __builtin_shufflevector(y2, y3, 0, 4, 1, 5, 2, 6, 3, 7);
                mdl_f32x16 o = __builtin_shufflevector(p, q, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13,
                                                     6, 7, 14, 15);
                MDL_WST(row + 4 * tx, o);
            }
#elif MDL_VL > 4
            for (; tx + 4 <= full; tx += 4) {
                /* Four tiles of a narrow image: a 4 x 4 transpose into 16 pixels. */
                mdl_f32x4 c[4], o[4];
                MDL_W_UNROLL for (int b = 0; b < 4; b++)
                    MDL_WLD(c[b], y[b] + tx);
                MDL_W_TRANSPOSE4(mdl_f32x4, mdl_i32x4, 4, ((mdl_i32x4){0, 1, 2, 3}), c, o);
                MDL_W_UNROLL for (int k = 0; k < 4; k++)
                    MDL_WST(row + 4 * tx + 4 * k, o[k]);
            }
#endif
            for (; tx + 2 <= full; tx += 2) {
                /* Two tiles (an 8-wide image): their 4 values of each column interleaved. */
                mdl_f32x2 c[4];
                for (int b = 0; b < 4; b++)
                    MDL_WLD(c[b], y[b] + tx);
                mdl_f32x4 p = __builtin_shufflevector(c[0], c[1], 0, 2, 1, 3);
                mdl_f32x4 q = __builtin_shufflevector(c[2], c[3], 0, 2, 1, 3);
                mdl_f32x8 o = __builtin_shufflevector(p, q, 0, 1, 4, 5, 2, 3, 6, 7);
                MDL_WST(row + 4 * tx, o);
            }
            for (; tx < full; tx++)
                for (int b = 0; b < 4; b++)
                    row[4 * tx + b] = y[b][tx];
            for (; tx < tw; tx++)
                for (int b = 0; b < 4 && 4 * tx + b < OW; b++)
                    row[4 * tx + b] = y[b][tx];
        }
    }
}


/* Plane out (OH x OW) from M[e * estride + t] (e < 36) of its th * tw tiles (+ bias, ReLU). */
MDL_ISA_ATTR static int MDL_ISA(wino4_output_plane_f32)(const float *M, ptrdiff_t estride,
                                                          ptrdiff_t th, ptrdiff_t tw, float *out,
                                                          ptrdiff_t OH, ptrdiff_t OW,
                                                          float bias, int relu, float *scratch)
{
    const ptrdiff_t n = th * tw;
    float *ys[16];
    for (int k = 0; k < 16; k++)
        ys[k] = scratch + k * n;
    MDL_ISA(wino_prefetch_out)(out, OH, OW);
    const int bad = MDL_ISA(wino4_output_values)(M, estride, n, bias, relu, ys);
    MDL_ISA(wino4_store_plane)((const float *const *)ys, th, tw, out, OH, OW);
    return bad;
}

/* dM[e * estride + t] (e < 36) for all th * tw tiles from the output gradient g (OH x OW). */
MDL_ISA_ATTR static void MDL_ISA(wino4_grad_plane_f32)(const float *g, ptrdiff_t OH,
                                                        ptrdiff_t OW, ptrdiff_t th, ptrdiff_t tw,
                                                        float *dM, ptrdiff_t estride,
                                                        float *scratch)
{
    const ptrdiff_t n = th * tw, qplane = wino4_qplane(th, tw);
    MDL_ISA(wino4_phase_rows)(g, OH, OW, 0, 0, 4 * th, tw, 4, scratch);
    const float *R[4][4];
    for (int p = 0; p < 4; p++) /* gradient row p of tile (ty, tx) is row 4 ty + p */
        for (int k = 0; k < 4; k++)
            R[p][k] = scratch + p * th * tw + k * qplane;
    ptrdiff_t t = 0;
    MDL_WINO_STEPS(MDL_WINO4_GRAD_STEP)
}

/* F(4x4) transforms over several images: the tiles of nimg consecutive (image, channel)
 * planes of one channel, img floats apart, numbered t = k th tw + ty tw + tx (k: the image),
 * as they sit in a block's buffers. A plane of fewer than 16 tiles (images up to 12 pixels a
 * side) fills only part of a vector; the tiles of several images fill whole ones, and the
 * buffers' rows are then written (read) whole cache lines at a time. Each tile's patch is first
 * gathered into fixed rows of the scratch, then the tile loops of the whole-plane transforms
 * run on them: every value comes out of the same expression as there. */

/* G[(s r + q) gs + t] = p_k[4 ty + r][4 tx + q] (r, q < s; gs = wino_round16(n), n = nimg th
 * tw) for the padded planes p_k[i][j] = x[k img + (i - ph) W + j - pw] (zero outside H x W).
 * AVX-512: planes of 2 x 2 tiles by permutes of rows in registers (below), others by one
 * masked gather per (r, q) and 16 tiles (masked-off lanes are not read; int32 offsets, so for
 * nimg planes spanning 2^31 floats or more, lane by lane). AVX2: planes of 2 x 2 tiles by
 * permutes, others lane by lane. */
MDL_ISA_ATTR static void MDL_ISA(wino4_gather_patches)(const float *x, ptrdiff_t img,
                                                        ptrdiff_t nimg, ptrdiff_t H, ptrdiff_t W,
                                                        ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t th,
                                                        ptrdiff_t tw, int s, float *G)
{
    const ptrdiff_t n = nimg * th * tw, gs = wino_round16(n);
    /* The planes' lines, and those of the planes that follow them (the next channel's, read
     * next; a prefetch never faults): the gathers would otherwise wait for their misses. */
    if (H * W <= 1024)
        for (ptrdiff_t k = 0; k < nimg; k++)
            for (ptrdiff_t i = 0; i < 2 * H * W; i += 16)
                __builtin_prefetch(x + k * img + i);
#if MDL_ISA_AVX512
    if (th == 2 && tw == 2 && W <= 8) {
        /* 2 x 2 tiles per plane (images of 5 to 8 pixels a side, ResNet's last stage): the 16
         * lanes of a row of G are 4 images' tiles, and patch row r of image j's tiles lies in
         * two of its rows, r - ph and 4 + r - ph, loaded into one register (lanes 0-7 and
         * 8-15); a permute per image picks each (r, q) from it. The gathers took ~22 cycles
         * each, three quarters of the input transform (64->64 @8, batch 128, min of 21, ms,
         * gathers / permutes: forward 2.92 / 2.27 at 1 thread, 1.49 / 1.17 at 2; weight
         * gradient 3.62 / 2.56, 1.92 / 1.37). Same values as the gathers, so the same bits.
         * idx[q], qm[q]: lane l = 4 j + 2 ty + tx reads lane 8 ty + 4 tx + q - pw of its
         * image's register, zero outside [0, W). */
        __m512i idx[6];
        __mmask16 qm[6];
        for (int q = 0; q < s; q++) {
            int id[16];
            unsigned m = 0;
            for (int l = 0; l < 16; l++) {
                const ptrdiff_t ty = (l & 3) >> 1, c = 4 * (l & 1) + q - pw;
                id[l] = (int)(8 * ty + (c >= 0 && c < W ? c : 0));
                m |= (unsigned)(c >= 0 && c < W) << l;
            }
            memcpy(&idx[q], id, sizeof(id));
            qm[q] = (__mmask16)m;
        }
        const __mmask16 wm = (__mmask16)((1u << W) - 1);
        for (ptrdiff_t k0 = 0; k0 < nimg; k0 += 4) {
            for (int r = 0; r < s; r++) {
                const ptrdiff_t y0 = r - ph, y1 = 4 + r - ph;
                __m512 R[4];
                for (int j = 0; j < 4; j++) {
                    R[j] = _mm512_setzero_ps();
                    if (k0 + j >= nimg)
                        continue; /* past the last image: its lanes are not tiles */
                    const float *p = x + (k0 + j) * img;
                    if (y0 >= 0 && y0 < H)
                        R[j] = _mm512_maskz_loadu_ps(wm, p + y0 * W);
                    if (y1 >= 0 && y1 < H) /* lanes 8 .. 8 + W - 1 from row y1 */
                        R[j] = _mm512_mask_loadu_ps(R[j], (__mmask16)(wm << 8), p + y1 * W - 8);
                }
                for (int q = 0; q < s; q++) {
                    __m512 v = _mm512_maskz_permutexvar_ps(qm[q] & 0x000f, idx[q], R[0]);
                    v = _mm512_mask_permutexvar_ps(v, qm[q] & 0x00f0, idx[q], R[1]);
                    v = _mm512_mask_permutexvar_ps(v, qm[q] & 0x0f00, idx[q], R[2]);
                    v = _mm512_mask_permutexvar_ps(v, qm[q] & 0xf000, idx[q], R[3]);
                    _mm512_storeu_ps(G + (s * r + q) * gs + 4 * k0, v);
                }
            }
        }
        return;
    }
    const ptrdiff_t aph = ph < 0 ? -ph : ph, apw = pw < 0 ? -pw : pw;
    if ((nimg - 1) * img + (4 * th + 2 + aph) * W + 4 * tw + 2 + apw <= 0x7fffffff) {
        for (ptrdiff_t t0 = 0; t0 < n; t0 += 16) {
            /* Per lane: the offset of the patch's corner, its row and column, whether a tile. */
            int base[16], iy[16], ix[16], live[16];
            for (int l = 0; l < 16; l++) {
                const ptrdiff_t t = t0 + l < n ? t0 + l : n - 1, k = t / (th * tw);
                const ptrdiff_t ty = (t - k * th * tw) / tw, tx = t - k * th * tw - ty * tw;
                iy[l] = (int)(4 * ty - ph);
                ix[l] = (int)(4 * tx - pw);
                base[l] = (int)(k * img + (4 * ty - ph) * W + 4 * tx - pw);
                live[l] = t0 + l < n ? -1 : 0;
            }
            mdl_i32x16 vb, vy, vx, vl;
            memcpy(&vb, base, sizeof(vb));
            memcpy(&vy, iy, sizeof(vy));
            memcpy(&vx, ix, sizeof(vx));
            memcpy(&vl, live, sizeof(vl));
            for (int r = 0; r < s; r++) {
                const mdl_i32x16 yr = vy + r, row_ok = vl & (yr >= 0) & (yr < (int)H);
                for (int q = 0; q < s; q++) {
                    const mdl_i32x16 xq = vx + q;
                    const mdl_i32x16 ok = row_ok & (xq >= 0) & (xq < (int)W);
                    const __mmask16 m = _mm512_test_epi32_mask((__m512i)ok, (__m512i)ok);
                    const mdl_i32x16 at = vb + (int)(r * W + q);
                    const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                              (__m512i)at, x, 4);
                    _mm512_storeu_ps(G + (s * r + q) * gs + t0, v);
                }
            }
        }
        return;
    }
#elif MDL_VL == 8 /* the x86-64-v3 instance */
    if (th == 2 && tw == 2 && W <= 8) {
        /* The permutes of the AVX-512 path above, two images per register: lane l = 4 j + 2 ty
         * + tx reads column 4 tx + q - pw of image j's row r - ph (ty 0, register A[j]) or
         * 4 + r - ph (ty 1, B[j]), zero outside [0, W) (lane by lane took ~3x as long: 64->64
         * @8, batch 128). Same values, so the same bits. */
        __m256i idx[6];
        __m256 ok[6];
        for (int q = 0; q < s; q++) {
            int id[8], in[8];
            for (int l = 0; l < 8; l++) {
                const ptrdiff_t c = 4 * (l & 1) + q - pw;
                id[l] = (int)(c >= 0 && c < W ? c : 0);
                in[l] = c >= 0 && c < W ? -1 : 0;
            }
            memcpy(&idx[q], id, sizeof(id));
            memcpy(&ok[q], in, sizeof(in));
        }
        const __m256i wm = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)W),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 ty1 = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, -1, -1, 0, 0, -1, -1));
        for (ptrdiff_t k0 = 0; k0 < nimg; k0 += 2) {
            for (int r = 0; r < s; r++) {
                const ptrdiff_t y0 = r - ph, y1 = 4 + r - ph;
                __m256 A[2], B[2];
                for (int j = 0; j < 2; j++) {
                    A[j] = B[j] = _mm256_setzero_ps();
                    if (k0 + j >= nimg)
                        continue; /* past the last image: its lanes are not tiles */
                    const float *p = x + (k0 + j) * img;
                    if (y0 >= 0 && y0 < H)
                        A[j] = _mm256_maskload_ps(p + y0 * W, wm);
                    if (y1 >= 0 && y1 < H)
                        B[j] = _mm256_maskload_ps(p + y1 * W, wm);
                }
                for (int q = 0; q < s; q++) {
                    __m256 v[2];
                    for (int j = 0; j < 2; j++)
                        v[j] = _mm256_blendv_ps(_mm256_permutevar8x32_ps(A[j], idx[q]),
                                                _mm256_permutevar8x32_ps(B[j], idx[q]), ty1);
                    _mm256_storeu_ps(G + (s * r + q) * gs + 4 * k0,
                                     _mm256_and_ps(_mm256_blend_ps(v[0], v[1], 0xf0), ok[q]));
                }
            }
        }
        return;
    }
#endif
    for (ptrdiff_t k = 0; k < nimg; k++)
        for (ptrdiff_t ty = 0; ty < th; ty++)
            for (ptrdiff_t tx = 0; tx < tw; tx++) {
                const ptrdiff_t t = (k * th + ty) * tw + tx;
                for (int r = 0; r < s; r++) {
                    const ptrdiff_t i = 4 * ty + r - ph;
                    for (int q = 0; q < s; q++) {
                        const ptrdiff_t j = 4 * tx + q - pw;
                        G[(s * r + q) * gs + t] =
                            i >= 0 && i < H && j >= 0 && j < W ? x[k * img + i * W + j] : 0.0f;
                    }
                }
            }
}

/* V[e * estride + t] (e < 36) for the tiles of nimg planes x + k img (H x W, padding ph, pw). */
MDL_ISA_ATTR static void MDL_ISA(wino4_input_images_f32)(const float *x, ptrdiff_t img,
                                                          ptrdiff_t nimg, ptrdiff_t H,
                                                          ptrdiff_t W, ptrdiff_t ph,
                                                          ptrdiff_t pw, ptrdiff_t th,
                                                          ptrdiff_t tw, float *V,
                                                          ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t n = nimg * th * tw, gs = wino_round16(n);
    MDL_ISA(wino4_gather_patches)(x, img, nimg, H, W, ph, pw, th, tw, 6, scratch);
    const float *P[6][6];
    for (int r = 0; r < 6; r++)
        for (int q = 0; q < 6; q++)
            P[r][q] = scratch + (6 * r + q) * gs;
    ptrdiff_t t = 0;
    MDL_WINO_STEPS(MDL_WINO4_INPUT_STEP)
}

/* Planes out + k img (OH x OW) from M[e * estride + t] (e < 36) of the tiles of nimg planes
 * (+ bias, ReLU). */
MDL_ISA_ATTR static int MDL_ISA(wino4_output_images_f32)(const float *M, ptrdiff_t estride,
                                                           ptrdiff_t nimg, ptrdiff_t th,
                                                           ptrdiff_t tw, float *out,
                                                           ptrdiff_t img, ptrdiff_t OH,
                                                           ptrdiff_t OW, float bias, int relu,
                                                           float *scratch)
{
    const ptrdiff_t n = nimg * th * tw;
    float *ys[16];
    for (int k = 0; k < 16; k++)
        ys[k] = scratch + k * n;
    for (ptrdiff_t k = 0; k < nimg; k++)
        MDL_ISA(wino_prefetch_out)(out + k * img, OH, OW);
    const int bad = MDL_ISA(wino4_output_values)(M, estride, n, bias, relu, ys);
    for (ptrdiff_t k = 0; k < nimg; k++) {
        const float *yk[16];
        for (int v = 0; v < 16; v++)
            yk[v] = ys[v] + k * th * tw;
        MDL_ISA(wino4_store_plane)(yk, th, tw, out + k * img, OH, OW);
    }
    return bad;
}

/* dM[e * estride + t] (e < 36) for the tiles of nimg output gradient planes g + k img. */
MDL_ISA_ATTR static void MDL_ISA(wino4_grad_images_f32)(const float *g, ptrdiff_t img,
                                                         ptrdiff_t nimg, ptrdiff_t OH,
                                                         ptrdiff_t OW, ptrdiff_t th,
                                                         ptrdiff_t tw, float *dM,
                                                         ptrdiff_t estride, float *scratch)
{
    const ptrdiff_t n = nimg * th * tw, gs = wino_round16(n);
    MDL_ISA(wino4_gather_patches)(g, img, nimg, OH, OW, 0, 0, th, tw, 4, scratch);
    const float *R[4][4];
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < 4; k++)
            R[p][k] = scratch + (4 * p + k) * gs;
    ptrdiff_t t = 0;
    MDL_WINO_STEPS(MDL_WINO4_GRAD_STEP)
}

#undef MDL_W_IOTA
#undef MDL_W_UNROLL
#undef MDL_WINO_STEPS
#undef MDL_WLD_EDGE
#undef MDL_WLD_ROW
#undef MDL_WST_N
