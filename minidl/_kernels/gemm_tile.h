/* One register tile of the GEMM micro-kernel, instantiated once per (element type, vector type,
 * vectors per row) by gemm_kernels.h. This file is a template: it has no include guard and expects
 *   GEMM_TILE_NAME  function name
 *   GEMM_T          element type (float / double)
 *   GEMM_V          GCC vector type of GEMM_T
 *   GEMM_NV         vectors per tile row (tile width = GEMM_NV * lanes)
 * to be defined, and undefines them at the end.
 *
 * The tile is MINIDL_GEMM_MR rows x (GEMM_NV * lanes) columns of C, held in MR * NV vector
 * accumulators for the whole k loop. Each k step loads NV vectors of one row of B and broadcasts
 * MR scalars of one column of A; nothing else touches memory, so the accumulators must fit in the
 * register file together with the NV B vectors and one broadcast (12 + 2 + 1 = 15 <= 16 or 32).
 *
 * A is addressed with strides (a_rs between rows, a_cs between k steps): packed panels pass 1 and
 * MR, the unpacked small-shape path passes the caller's strides. Rows of A past a_rows repeat the
 * last valid row, so a bottom-edge tile never reads outside A; their results are not stored.
 * B rows are b_rs apart and each holds the tile's full width (packed panels are zero padded).
 *
 * C = alpha * (A @ B) + beta * C for the m_valid x n_valid top-left part of the tile; beta == 0
 * never reads C, so C may be uninitialized. */

static inline __attribute__((always_inline)) void GEMM_TILE_NAME(
    ptrdiff_t kc, const GEMM_T *restrict a, ptrdiff_t a_rs, ptrdiff_t a_cs, int a_rows,
    const GEMM_T *restrict b, ptrdiff_t b_rs, GEMM_T alpha, GEMM_T beta,
    GEMM_T *restrict c, ptrdiff_t ldc, int m_valid, int n_valid)
{
    enum { LANES = sizeof(GEMM_V) / sizeof(GEMM_T), WIDTH = GEMM_NV * LANES };
    GEMM_V acc[MINIDL_GEMM_MR][GEMM_NV];
    const GEMM_T *arow[MINIDL_GEMM_MR];
    for (int r = 0; r < MINIDL_GEMM_MR; r++) {
        arow[r] = a + (r < a_rows ? r : a_rows - 1) * a_rs;
        for (int v = 0; v < GEMM_NV; v++)
            acc[r][v] = (GEMM_V){0};
    }

    /* The tile's C lines are needed only after the k loop: start fetching them now. */
    for (int r = 0; r < m_valid; r++) {
        __builtin_prefetch(c + r * ldc, 1);
        __builtin_prefetch(c + r * ldc + n_valid - 1, 1);
    }

#pragma GCC unroll 4
    for (ptrdiff_t p = 0; p < kc; p++) {
        GEMM_V bv[GEMM_NV];
        for (int v = 0; v < GEMM_NV; v++)
            memcpy(&bv[v], b + p * b_rs + v * LANES, sizeof(GEMM_V));
        for (int r = 0; r < MINIDL_GEMM_MR; r++) {
            /* Broadcast. `x - 0` is folded to x (exact for every x, -0 included), where
             * `x + 0` would cost a vaddss per FMA since -0 + 0 is +0. */
            GEMM_V ar = arow[r][p * a_cs] - (GEMM_V){0};
            for (int v = 0; v < GEMM_NV; v++)
                acc[r][v] += ar * bv[v];
        }
    }

    if (m_valid == MINIDL_GEMM_MR && n_valid == WIDTH) {
        for (int r = 0; r < MINIDL_GEMM_MR; r++) {
            for (int v = 0; v < GEMM_NV; v++) {
                GEMM_T *dst = c + r * ldc + v * LANES;
                GEMM_V out = alpha * acc[r][v];
                if (beta != 0) {
                    GEMM_V old;
                    memcpy(&old, dst, sizeof old);
                    out += beta * old;
                }
                memcpy(dst, &out, sizeof out);
            }
        }
    } else {
        GEMM_T tile[MINIDL_GEMM_MR][WIDTH] __attribute__((aligned(64)));
        for (int r = 0; r < MINIDL_GEMM_MR; r++)
            for (int v = 0; v < GEMM_NV; v++)
                memcpy(&tile[r][v * LANES], &acc[r][v], sizeof(GEMM_V));
        for (int r = 0; r < m_valid; r++) {
            for (int j = 0; j < n_valid; j++) {
                GEMM_T out = alpha * tile[r][j];
                if (beta != 0)
                    out += beta * c[r * ldc + j];
                c[r * ldc + j] = out;
            }
        }
    }
}

#undef GEMM_TILE_NAME
#undef GEMM_T
#undef GEMM_V
#undef GEMM_NV
