/* GEMM micro-kernels (the register tiles) and aligned allocation for minidl/_kernels/gemm.pyx.
 *
 * One tile shape, MR = 6 rows x NR columns (NR = 32 floats or 16 doubles: two 512-bit vectors), is
 * what the packing routines produce and what the drivers iterate over. How the tile is computed
 * depends on the vector registers of the CPU, chosen at run time:
 *   64-byte (AVX-512, x86-64-v4): the whole 6 x NR tile in 12 zmm accumulators, one pass;
 *   32-byte (AVX2, x86-64-v3):    two passes over 6 x NR/2 halves, 12 ymm accumulators each;
 *   16-byte (SSE2, baseline):     four passes over 6 x NR/4 quarters, 12 xmm accumulators each.
 * (Each pass: MR rows x 2 vectors, 12 accumulators + 2 B vectors + 1 broadcast <= 16 registers.)
 * A single wide pass on a narrow machine would need 24 or 48 registers and spill on every k step
 * (measured: 5 GFLOP/s for a spilled AVX2 tile), hence the passes. Every path is compiled into every
 * MINIDL_MULTIVERSION clone (gcc has no per-clone preprocessor macros); the run-time switch selects
 * the one that fits the clone the loader picked, and all of them compute correct results. */
#ifndef MINIDL_GEMM_KERNELS_H
#define MINIDL_GEMM_KERNELS_H

#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include "platform.h"

#if defined(_MSC_VER)
#error "minidl's GEMM kernels use GCC vector extensions: build with gcc or clang"
#endif

#define MINIDL_GEMM_MR 6
#define MINIDL_SGEMM_NR 32
#define MINIDL_DGEMM_NR 16

typedef float minidl_f32x16 __attribute__((vector_size(64)));
typedef float minidl_f32x8 __attribute__((vector_size(32)));
typedef float minidl_f32x4 __attribute__((vector_size(16)));
typedef double minidl_f64x8 __attribute__((vector_size(64)));
typedef double minidl_f64x4 __attribute__((vector_size(32)));
typedef double minidl_f64x2 __attribute__((vector_size(16)));

/* Each pass uses vectors of the register width it is meant for: a wider GCC vector type is
 * lowered element by element through the stack on a narrower machine (measured: 9 GFLOP/s). */
#define GEMM_TILE_NAME minidl_sgemm_tile_w
#define GEMM_T float
#define GEMM_V minidl_f32x16
#define GEMM_NV 2
#include "gemm_tile.h"
#define GEMM_TILE_NAME minidl_sgemm_tile_h
#define GEMM_T float
#define GEMM_V minidl_f32x8
#define GEMM_NV 2
#include "gemm_tile.h"
#define GEMM_TILE_NAME minidl_sgemm_tile_q
#define GEMM_T float
#define GEMM_V minidl_f32x4
#define GEMM_NV 2
#include "gemm_tile.h"
#define GEMM_TILE_NAME minidl_dgemm_tile_w
#define GEMM_T double
#define GEMM_V minidl_f64x8
#define GEMM_NV 2
#include "gemm_tile.h"
#define GEMM_TILE_NAME minidl_dgemm_tile_h
#define GEMM_T double
#define GEMM_V minidl_f64x4
#define GEMM_NV 2
#include "gemm_tile.h"
#define GEMM_TILE_NAME minidl_dgemm_tile_q
#define GEMM_T double
#define GEMM_V minidl_f64x2
#define GEMM_NV 2
#include "gemm_tile.h"

/* Vector register width in bytes the tiles are arranged for; set once at import. */
static int minidl_gemm_vector_bytes = 16;

static void minidl_gemm_init(void)
{
#if MINIDL_HAVE_MULTIVERSION
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        minidl_gemm_vector_bytes = 64;
    else if (__builtin_cpu_supports("x86-64-v3"))
        minidl_gemm_vector_bytes = 32;
#elif defined(__AVX512F__)
    minidl_gemm_vector_bytes = 64;
#elif defined(__AVX2__)
    minidl_gemm_vector_bytes = 32;
#endif
}

/* Memory the caller reads after this product (the next image's operands in the convolutions'
 * per-image products): two byte ranges of lines[0] and lines[1] cache lines, of which the lines
 * [from, to) (numbered through both) are fetched into L2 along this call's row tiles. Their
 * first touch otherwise waits on memory, the hardware prefetcher not keeping up with the
 * products' strided rows (pointwise_64to64_16px weight gradient 4.0 -> 3.3 ms in a C harness,
 * same run). L2, not L1 (prefetcht1): fetched into L1 they evicted the tile's own operands. */
typedef struct {
    const char *base[2];
    ptrdiff_t lines[2], from, to;
} minidl_gemm_ahead;

/* Part `part` of `parts` of the lines [from, to). */
static inline __attribute__((always_inline)) void minidl_gemm_prefetch_part(
    const minidl_gemm_ahead *ah, ptrdiff_t part, ptrdiff_t parts)
{
    ptrdiff_t count = ah->to - ah->from;
    for (ptrdiff_t l = ah->from + count * part / parts; l < ah->from + count * (part + 1) / parts;
         l++)
        __builtin_prefetch(l < ah->lines[0] ? ah->base[0] + l * 64
                                            : ah->base[1] + (l - ah->lines[0]) * 64, 0, 2);
}

/* The drivers hand over a whole column of tiles (m rows, one NR-wide panel of B) per call: the
 * call, the clone dispatch and the ISA switch are paid once per panel, not once per tile, which
 * matters for short k (LeNet's k = 64 tile is 400 cycles of FMAs). Row tile i reads A at
 * a + i * A_STEP; A_ROWS is the number of rows of A the tile may read (a packed panel is zero
 * padded to MR, in-place A is not). AHEAD (NULL for the blocked driver) is prefetched a slice
 * per row tile. Columns [0, n_valid) are done in passes of the tile T1 (width W1), the last
 * pass by T2 (width W2 < W1) when it covers what is left: with 512-bit vectors, the last panel
 * of an n that is not a multiple of NR (Winograd blocks of 36 tiles: 32 + 4 columns) ran a
 * 32-wide tile for a few columns, and a core that splits each 512-bit FMA in two halves (Zen 4)
 * does the 16-wide tile's FMAs in half the time (32 -> 64 @26 Winograd forward, batch 64, one
 * thread, EPYC: 10.6 -> 9.0 ms). Every tile computes an element by the same multiply-adds in
 * the same order, so the bits do not depend on which tile ran it. */
#define MINIDL_GEMM_TILE_PASS(TILE, WIDTH, KC, A, A_STEP, A_RS, A_CS, PADDED, B, B_RS)        \
    do {                                                                                    \
        TILE(KC, (A) + i * (A_STEP), A_RS, A_CS, (PADDED) ? MINIDL_GEMM_MR : m_valid,       \
             (B) + col, B_RS, alpha, beta, c + i * ldc + col, ldc, m_valid,                 \
             n_valid - col < (WIDTH) ? n_valid - col : (WIDTH));                            \
        col += (WIDTH);                                                                     \
    } while (0)

#define MINIDL_GEMM_ROW_TILES(T1, W1, T2, W2, KC, A, A_STEP, A_RS, A_CS, PADDED, B, B_RS, AHEAD) \
    for (ptrdiff_t i = 0; i < m; i += MINIDL_GEMM_MR) {                                     \
        int m_valid = m - i < MINIDL_GEMM_MR ? (int)(m - i) : MINIDL_GEMM_MR;               \
        if (AHEAD)                                                                          \
            minidl_gemm_prefetch_part((AHEAD), i / MINIDL_GEMM_MR,                          \
                                      (m + MINIDL_GEMM_MR - 1) / MINIDL_GEMM_MR);           \
        for (int col = 0; col < n_valid;) {                                                 \
            if (n_valid - col > (W2))                                                       \
                MINIDL_GEMM_TILE_PASS(T1, W1, KC, A, A_STEP, A_RS, A_CS, PADDED, B, B_RS);  \
            else                                                                            \
                MINIDL_GEMM_TILE_PASS(T2, W2, KC, A, A_STEP, A_RS, A_CS, PADDED, B, B_RS);  \
        }                                                                                   \
    }

/* The narrower tile only where the vectors are 512 bits wide: with 256-bit vectors and
 * narrower, a tile of half the width does as many FMAs per cycle on every core. */
#define MINIDL_GEMM_DISPATCH(PREFIX, NR, ...)                                                 \
    switch (minidl_gemm_vector_bytes) {                                                     \
    case 64:                                                                                \
        MINIDL_GEMM_ROW_TILES(PREFIX##_tile_w, NR, PREFIX##_tile_h, (NR) / 2, __VA_ARGS__); \
        break;                                                                              \
    case 32:                                                                                \
        MINIDL_GEMM_ROW_TILES(PREFIX##_tile_h, (NR) / 2, PREFIX##_tile_h, (NR) / 2,         \
                              __VA_ARGS__);                                                 \
        break;                                                                              \
    default:                                                                                \
        MINIDL_GEMM_ROW_TILES(PREFIX##_tile_q, (NR) / 4, PREFIX##_tile_q, (NR) / 4,         \
                              __VA_ARGS__);                                                 \
    }

/* C[0:m, 0:n_valid] = alpha * Ap @ Bp + beta * C with A packed in row panels (kc x MR each,
 * k-major) and B packed in one kc x NR panel, both zero padded: the hot loop of the blocked
 * GEMM. */
MINIDL_MULTIVERSION
static void minidl_sgemm_packed(ptrdiff_t kc, ptrdiff_t m, const float *a, const float *b,
                                float alpha, float beta, float *c, ptrdiff_t ldc, int n_valid)
{
    MINIDL_GEMM_DISPATCH(minidl_sgemm, MINIDL_SGEMM_NR, kc, a, kc, 1, MINIDL_GEMM_MR, 1, b,
                         MINIDL_SGEMM_NR, (const minidl_gemm_ahead *)NULL)
}

MINIDL_MULTIVERSION
static void minidl_dgemm_packed(ptrdiff_t kc, ptrdiff_t m, const double *a, const double *b,
                                double alpha, double beta, double *c, ptrdiff_t ldc, int n_valid)
{
    MINIDL_GEMM_DISPATCH(minidl_dgemm, MINIDL_DGEMM_NR, kc, a, kc, 1, MINIDL_GEMM_MR, 1, b,
                         MINIDL_DGEMM_NR, (const minidl_gemm_ahead *)NULL)
}

/* The same with A read in place (rows a_rs apart, k steps a_cs apart) and B rows b_rs apart,
 * each holding NR readable columns: the small-shape path, which copies nothing but B's partial
 * (or transposed) panels, prefetching ahead's lines along the way. */
MINIDL_MULTIVERSION
static void minidl_sgemm_strided(ptrdiff_t kc, ptrdiff_t m, const float *a, ptrdiff_t a_rs,
                                 ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, float alpha,
                                 float beta, float *c, ptrdiff_t ldc, int n_valid,
                                 const minidl_gemm_ahead *ahead)
{
    MINIDL_GEMM_DISPATCH(minidl_sgemm, MINIDL_SGEMM_NR, kc, a, a_rs, a_rs, a_cs, 0, b, b_rs, ahead)
}

MINIDL_MULTIVERSION
static void minidl_dgemm_strided(ptrdiff_t kc, ptrdiff_t m, const double *a, ptrdiff_t a_rs,
                                 ptrdiff_t a_cs, const double *b, ptrdiff_t b_rs, double alpha,
                                 double beta, double *c, ptrdiff_t ldc, int n_valid,
                                 const minidl_gemm_ahead *ahead)
{
    MINIDL_GEMM_DISPATCH(minidl_dgemm, MINIDL_DGEMM_NR, kc, a, a_rs, a_rs, a_cs, 0, b, b_rs, ahead)
}

/* ---- Packing A: op(A)[0:mc, 0:kc] into ceil(mc / MR) panels of kc x MR (k-major), the last
 * zero padded; a points at op(A)[0, 0], A stored (m, k) row-major or (k, m) when trans. For a
 * full panel of a row-major A the six rows are read side by side, one k step per six stores
 * (the strided per-row loop cost 7% of a 1024^3 product). */
#define MINIDL_DEFINE_PACK_A(NAME, T)                                                        \
    MINIDL_MULTIVERSION                                                                     \
    static void NAME(int trans, ptrdiff_t mc, ptrdiff_t kc, const T *a, ptrdiff_t lda, T *dst) \
    {                                                                                       \
        for (ptrdiff_t i = 0; i < mc; i += MINIDL_GEMM_MR, dst += MINIDL_GEMM_MR * kc) {    \
            ptrdiff_t rows = mc - i < MINIDL_GEMM_MR ? mc - i : MINIDL_GEMM_MR;             \
            if (rows == MINIDL_GEMM_MR && !trans) {                                         \
                const T *a0 = a + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;  \
                const T *a4 = a3 + lda, *a5 = a4 + lda;                                     \
                for (ptrdiff_t p = 0; p < kc; p++) {                                        \
                    T *d = dst + p * MINIDL_GEMM_MR;                                        \
                    d[0] = a0[p], d[1] = a1[p], d[2] = a2[p];                               \
                    d[3] = a3[p], d[4] = a4[p], d[5] = a5[p];                               \
                }                                                                           \
            } else if (rows == MINIDL_GEMM_MR) {                                            \
                for (ptrdiff_t p = 0; p < kc; p++)                                          \
                    memcpy(dst + p * MINIDL_GEMM_MR, a + p * lda + i,                       \
                           MINIDL_GEMM_MR * sizeof(T));                                     \
            } else {                                                                        \
                for (ptrdiff_t p = 0; p < kc; p++)                                          \
                    for (ptrdiff_t r = 0; r < MINIDL_GEMM_MR; r++)                          \
                        dst[p * MINIDL_GEMM_MR + r] =                                       \
                            r >= rows ? 0 : trans ? a[p * lda + i + r] : a[(i + r) * lda + p]; \
            }                                                                               \
        }                                                                                   \
    }

MINIDL_DEFINE_PACK_A(minidl_sgemm_pack_a, float)
MINIDL_DEFINE_PACK_A(minidl_dgemm_pack_a, double)

/* ---- Packing a transposed B: op(B) = B^T, B stored n x k ----
 * A panel row (one k step, NR columns) gathers one element from each of NR rows of B; done one
 * element at a time that costs more than the multiply itself on LeNet's x @ W^T. Instead 16 x 16
 * (8 x 8 for doubles) blocks are loaded as rows, transposed in registers and stored as rows:
 * with 512-bit registers only, as narrower machines would lower these vectors through memory.
 * The transpose swaps the off-diagonal h x h blocks of every 2h x 2h block for h = 8, 4, 2, 1:
 * with rows a = r[i], b = r[i + h] (i & h == 0), row i keeps a's columns without bit h and takes
 * b's columns col - h into those with it; row i + h symmetrically. */
#define MINIDL_S16_LO_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define MINIDL_S16_HI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define MINIDL_S16_LO_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define MINIDL_S16_HI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define MINIDL_S16_LO_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define MINIDL_S16_HI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define MINIDL_S16_LO_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define MINIDL_S16_HI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define MINIDL_S8_LO_4 0, 1, 2, 3, 8, 9, 10, 11
#define MINIDL_S8_HI_4 4, 5, 6, 7, 12, 13, 14, 15
#define MINIDL_S8_LO_2 0, 1, 8, 9, 4, 5, 12, 13
#define MINIDL_S8_HI_2 2, 3, 10, 11, 6, 7, 14, 15
#define MINIDL_S8_LO_1 0, 8, 2, 10, 4, 12, 6, 14
#define MINIDL_S8_HI_1 1, 9, 3, 11, 5, 13, 7, 15

#define MINIDL_TRANSPOSE_STAGE(R, N, H, LO, HI)                                             \
    for (int i_ = 0; i_ < (N); i_++) {                                                      \
        if (i_ & (H))                                                                       \
            continue;                                                                       \
        __typeof__(R[0]) a_ = R[i_], b_ = R[i_ + (H)];                                      \
        R[i_] = __builtin_shufflevector(a_, b_, LO);                                        \
        R[i_ + (H)] = __builtin_shufflevector(a_, b_, HI);                                  \
    }

static inline __attribute__((always_inline)) void minidl_transpose_16x16(minidl_f32x16 r[16])
{
    MINIDL_TRANSPOSE_STAGE(r, 16, 8, MINIDL_S16_LO_8, MINIDL_S16_HI_8)
    MINIDL_TRANSPOSE_STAGE(r, 16, 4, MINIDL_S16_LO_4, MINIDL_S16_HI_4)
    MINIDL_TRANSPOSE_STAGE(r, 16, 2, MINIDL_S16_LO_2, MINIDL_S16_HI_2)
    MINIDL_TRANSPOSE_STAGE(r, 16, 1, MINIDL_S16_LO_1, MINIDL_S16_HI_1)
}

static inline __attribute__((always_inline)) void minidl_transpose_8x8(minidl_f64x8 r[8])
{
    MINIDL_TRANSPOSE_STAGE(r, 8, 4, MINIDL_S8_LO_4, MINIDL_S8_HI_4)
    MINIDL_TRANSPOSE_STAGE(r, 8, 2, MINIDL_S8_LO_2, MINIDL_S8_HI_2)
    MINIDL_TRANSPOSE_STAGE(r, 8, 1, MINIDL_S8_LO_1, MINIDL_S8_HI_1)
}

/* dst[p * NR + j] = b[j * ldb + p] for p < kc, j < cols, and 0 for cols <= j < NR. */
#define MINIDL_DEFINE_PACK_BT(NAME, T, V, NR, LANES, TRANSPOSE)                              \
    MINIDL_MULTIVERSION                                                                     \
    static void NAME(ptrdiff_t kc, ptrdiff_t cols, const T *b, ptrdiff_t ldb, T *dst)       \
    {                                                                                       \
        ptrdiff_t p0 = 0;                                                                   \
        if (minidl_gemm_vector_bytes == 64) {                                               \
            /* Blocks of LANES x LANES by register transposes; the columns past cols are    \
             * rows of zeros before the transpose (a narrow B: 16 columns of a 32-wide      \
             * panel went element by element, a fifth of Winograd's 16-channel weight      \
             * gradient). */                                                                \
            for (; p0 + (LANES) <= kc; p0 += (LANES)) {                                     \
                for (ptrdiff_t j0 = 0; j0 < (NR); j0 += (LANES)) {                          \
                    V r[LANES];                                                             \
                    if (j0 >= cols) {                                                       \
                        for (int q = 0; q < (LANES); q++)                                   \
                            memset(dst + (p0 + q) * (NR) + j0, 0, sizeof(V));               \
                        continue;                                                           \
                    }                                                                       \
                    for (int q = 0; q < (LANES); q++) {                                     \
                        if (j0 + q < cols)                                                  \
                            memcpy(&r[q], b + (j0 + q) * ldb + p0, sizeof(V));              \
                        else                                                                \
                            memset(&r[q], 0, sizeof(V));                                    \
                    }                                                                       \
                    TRANSPOSE(r);                                                           \
                    for (int q = 0; q < (LANES); q++)                                       \
                        memcpy(dst + (p0 + q) * (NR) + j0, &r[q], sizeof(V));               \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        for (ptrdiff_t p = p0; p < kc; p++) {                                               \
            for (ptrdiff_t j = 0; j < cols; j++)                                            \
                dst[p * (NR) + j] = b[j * ldb + p];                                         \
            for (ptrdiff_t j = cols; j < (NR); j++)                                         \
                dst[p * (NR) + j] = 0;                                                      \
        }                                                                                   \
    }

MINIDL_DEFINE_PACK_BT(minidl_sgemm_pack_bt, float, minidl_f32x16, MINIDL_SGEMM_NR, 16,
                      minidl_transpose_16x16)
MINIDL_DEFINE_PACK_BT(minidl_dgemm_pack_bt, double, minidl_f64x8, MINIDL_DGEMM_NR, 8,
                      minidl_transpose_8x8)

/* 64-byte aligned buffers for packed panels (one cache line, one zmm). NULL on failure. */
static inline void *minidl_aligned_malloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    return p;
}

static inline void minidl_aligned_free(void *p) { free(p); }

#endif
