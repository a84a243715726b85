/* Per-instruction-set body of pool_kernels.h (see mdl_isa.h): included once per ISA with
 * MDL_ISA_ATTR, MDL_ISA(name) and the register vector MDL_VL / MDL_VF / MDL_VI defined. No
 * include guard on purpose.
 *
 * MDL_VL outputs (16 on AVX-512, 8 on AVX2, 4 on the baseline) are computed at once, from
 * two registers of input columns per input row (deinterleaved into even and odd columns).
 * Every lane computes the same comparisons in the same order on every instance. */

/* Where take (a lane mask of -1/0) is set: best = cand, k = code. A NaN candidate always wins,
 * so NaN propagates as in PyTorch; otherwise strictly greater wins, keeping the first maximum
 * of the window (row-major order) on ties. One register each. */
#define MDL_POOL_TAKE(best, k, cand, code)                                                       \
    do {                                                                                         \
        MDL_VI take_ = ((cand) > (best)) | ((cand) != (cand));                                   \
        (best) = (MDL_VF)(((MDL_VI)(cand) & take_) | ((MDL_VI)(best) & ~take_));                 \
        (k) = ((code) & take_) | ((k) & ~take_);                                                 \
    } while (0)

/* MDL_POOL_LANES: 0 .. MDL_VL - 1. MDL_POOL_EVEN: the shuffle of two registers (2 * MDL_VL
 * input columns) that gathers the even columns, MDL_POOL_EVEN + 1 the odd ones. On AVX2 it
 * stays within 128-bit lanes (one vshufps instead of a cross-lane permute of each register and
 * a blend), so result lane i holds output MDL_POOL_ORDER[i]; the comparisons are lane-wise,
 * and one permute per result (MDL_POOL_ORDER is its own inverse) restores the order. */
#if MDL_VL == 16
#define MDL_POOL_LANES {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
#define MDL_POOL_EVEN {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#define MDL_POOL_ORDER MDL_POOL_LANES
#elif MDL_VL == 8
#define MDL_POOL_LANES {0, 1, 2, 3, 4, 5, 6, 7}
#define MDL_POOL_EVEN {0, 2, 8, 10, 4, 6, 12, 14}
#define MDL_POOL_ORDER {0, 1, 4, 5, 2, 3, 6, 7}
#else
#define MDL_POOL_LANES {0, 1, 2, 3}
#define MDL_POOL_EVEN {0, 2, 4, 6}
#define MDL_POOL_ORDER MDL_POOL_LANES
#endif

/* The first `count` floats at p into the register v (all MDL_VL of them when count >= MDL_VL),
 * the other lanes zero, reading nothing past p + count: a masked load on AVX-512 and AVX2
 * (masked-off lanes do not fault), a copy on the baseline. Every partial vector goes through
 * it, on every row: a row that ends a plane (or a memory-mapped file) may be followed by an
 * unmapped page. */
#if MDL_ISA_AVX512
#define MDL_POOL_LOAD(v, p, count)                                                               \
    do {                                                                                         \
        if ((count) >= MDL_VL)                                                                   \
            memcpy(&(v), (p), sizeof(v));                                                        \
        else if ((count) > 0)                                                                    \
            (v) = (MDL_VF)_mm512_maskz_loadu_ps((__mmask16)((1u << (count)) - 1u), (p));         \
        else                                                                                     \
            (v) = (MDL_VF){0};                                                                   \
    } while (0)
#elif MDL_VL == 8
#define MDL_POOL_LOAD(v, p, count)                                                               \
    do {                                                                                         \
        if ((count) >= MDL_VL)                                                                   \
            memcpy(&(v), (p), sizeof(v));                                                        \
        else if ((count) > 0)                                                                    \
            (v) = (MDL_VF)_mm256_maskload_ps((p), (__m256i)(lanes < (count)));                   \
        else                                                                                     \
            (v) = (MDL_VF){0};                                                                   \
    } while (0)
#else
#define MDL_POOL_LOAD(v, p, count)                                                               \
    do {                                                                                         \
        if ((count) >= MDL_VL) {                                                                 \
            memcpy(&(v), (p), sizeof(v));                                                        \
        } else if ((count) > 0) {                                                                \
            float tmp_[MDL_VL] __attribute__((aligned(64))) = {0};                               \
            for (int i_ = 0; i_ < (count); i_++)                                                 \
                tmp_[i_] = (p)[i_];                                                              \
            memcpy(&(v), tmp_, sizeof(v));                                                       \
        } else {                                                                                 \
            (v) = (MDL_VF){0};                                                                   \
        }                                                                                        \
    } while (0)
#endif

#include "mdl_isa_partial.h"

/* Output rows ("blocks") b0 .. b1 - 1 of a (planes, OH, OW) output, block b being output row
 * b % OH of plane b / OH, from x (planes, H, W) with OH = H / 2, OW = W / 2. out gets the
 * maxima; code (when not NULL) the position of each first maximum in its window, 0 1 / 2 3 in
 * row-major order: one byte where PyTorch's int64 argmax takes eight (the forward's stores
 * were mostly that index; the backward reads it back). Loads read exactly the 2 * OW columns
 * of each of the two input rows (partial vectors masked). */
MDL_ISA_ATTR static void MDL_ISA(max_pool_2x2_f32)(const float *x, float *out,
                                                   unsigned char *code, ptrdiff_t H,
                                                   ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                                   ptrdiff_t b0, ptrdiff_t b1)
{
    typedef unsigned char vb __attribute__((vector_size(MDL_VL)));
    const MDL_VI lanes = MDL_POOL_LANES, even = MDL_POOL_EVEN, odd = even + 1;
    const MDL_VI order = MDL_POOL_ORDER;
    (void)lanes; /* read by MDL_POOL_LOAD on AVX2 only */
    const MDL_VI code01 = (MDL_VI){0} + 1, code10 = (MDL_VI){0} + 2, code11 = (MDL_VI){0} + 3;
    /* Output row oh of plane b / OH, kept as counters (a division per row costs as much as
     * pooling a short row). */
    ptrdiff_t oh = b0 % OH;
    const float *plane = x + (b0 / OH) * H * W;
    for (ptrdiff_t b = b0; b < b1; b++, oh++) {
        if (oh == OH) {
            oh = 0;
            plane += H * W;
        }
        const float *top = plane + 2 * oh * W;
        const float *bot = top + W;
        for (ptrdiff_t ow = 0; ow < OW; ow += MDL_VL) {
            /* Outputs ow .. ow + m - 1 from input columns 2 ow .. 2 (ow + m) - 1. */
            const int m = OW - ow < MDL_VL ? (int)(OW - ow) : MDL_VL;
            const int c0 = 2 * m, c1 = c0 - MDL_VL;
            MDL_VF t0, t1, u0, u1;
            MDL_POOL_LOAD(t0, top + 2 * ow, c0);
            MDL_POOL_LOAD(t1, top + 2 * ow + MDL_VL, c1);
            MDL_POOL_LOAD(u0, bot + 2 * ow, c0);
            MDL_POOL_LOAD(u1, bot + 2 * ow + MDL_VL, c1);
            MDL_VF best = __builtin_shuffle(t0, t1, even);
            MDL_VF c01 = __builtin_shuffle(t0, t1, odd);
            MDL_VF c10 = __builtin_shuffle(u0, u1, even);
            MDL_VF c11 = __builtin_shuffle(u0, u1, odd);
            MDL_VI k = (MDL_VI){0};
            MDL_POOL_TAKE(best, k, c01, code01);
            MDL_POOL_TAKE(best, k, c10, code10);
            MDL_POOL_TAKE(best, k, c11, code11);
            best = __builtin_shuffle(best, order);
            float *o = out + b * OW + ow;
            if (m == MDL_VL)
                memcpy(o, &best, sizeof best);
            else
                MDL_STORE_PARTIAL(o, best, m);
            if (code != NULL) {
                const vb kb = __builtin_convertvector(__builtin_shuffle(k, order), vb);
                unsigned char *c = code + b * OW + ow;
                if (m == MDL_VL)
                    memcpy(c, &kb, sizeof kb);
                else
#if MDL_ISA_AVX512
                    _mm_mask_storeu_epi8(c, (__mmask16)((1u << m) - 1u), (__m128i)kb);
#else
                    for (int i = 0; i < m; i++)
                        c[i] = kb[i];
#endif
            }
        }
    }
}

/* MDL_POOL_ZIP_LO / _HI: the shuffles interleaving two registers a, b into a0 b0 a1 b1 ...
 * (the first and the second MDL_VL of the 2 * MDL_VL results). */
#if MDL_VL == 16
#define MDL_POOL_ZIP_LO {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}
#define MDL_POOL_ZIP_HI {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}
#elif MDL_VL == 8
#define MDL_POOL_ZIP_LO {0, 8, 1, 9, 2, 10, 3, 11}
#define MDL_POOL_ZIP_HI {4, 12, 5, 13, 6, 14, 7, 15}
#else
#define MDL_POOL_ZIP_LO {0, 4, 1, 5}
#define MDL_POOL_ZIP_HI {2, 6, 3, 7}
#endif

/* The first count (0 .. 2 * MDL_VL) floats of the pair lo, hi to p, writing nothing else. */
#define MDL_POOL_STORE_PAIR(p, lo, hi, count)                                                    \
    do {                                                                                         \
        if ((count) >= MDL_VL) {                                                                 \
            memcpy((p), &(lo), sizeof(lo));                                                      \
            if ((count) == 2 * MDL_VL)                                                           \
                memcpy((p) + MDL_VL, &(hi), sizeof(hi));                                         \
            else if ((count) > MDL_VL)                                                           \
                MDL_STORE_PARTIAL((p) + MDL_VL, (hi), (count) - MDL_VL);                         \
        } else if ((count) > 0) {                                                                \
            MDL_STORE_PARTIAL((p), (lo), (count));                                               \
        }                                                                                        \
    } while (0)

/* The input gradient of max_pool_2x2_f32 from its codes, blocks b0 .. b1 - 1 as there: input
 * rows 2 oh and 2 oh + 1 of block b's plane (and row H - 1 of the plane's last block when H
 * is odd) are written whole, each element 0 + g of its window's output where the code names
 * it and +0 elsewhere. That is what zeroing the plane and adding each g at its argmax gives
 * (0 + -0 is +0), in one pass and without a scatter: the windows do not overlap. A code above
 * 3 names no element. */
MDL_ISA_ATTR static void MDL_ISA(max_unpool_2x2_f32)(const float *g, const unsigned char *code,
                                                     float *gx, ptrdiff_t H, ptrdiff_t W,
                                                     ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t b0,
                                                     ptrdiff_t b1)
{
    typedef unsigned char vb __attribute__((vector_size(MDL_VL)));
    const MDL_VI lanes = MDL_POOL_LANES, zip_lo = MDL_POOL_ZIP_LO, zip_hi = MDL_POOL_ZIP_HI;
    const MDL_VF zero = (MDL_VF){0};
    ptrdiff_t oh = b0 % OH;
    float *plane = gx + (b0 / OH) * H * W;
    (void)lanes; /* read by MDL_POOL_LOAD on AVX2 only */
    for (ptrdiff_t b = b0; b < b1; b++, oh++) {
        if (oh == OH) {
            oh = 0;
            plane += H * W;
        }
        float *top = plane + 2 * oh * W;
        float *bot = top + W;
        const float *gr = g + b * OW;
        const unsigned char *cr = code + b * OW;
        if (OW < 8) {
            /* Rows of a few windows: zero both, then place each window's value (a register's
             * lane setup would cost more than the row). */
            ptrdiff_t i = 0;
            for (; i + MDL_VL <= 2 * W; i += MDL_VL)
                memcpy(top + i, &zero, sizeof zero);
            if (i < 2 * W)
                MDL_STORE_PARTIAL(top + i, zero, (int)(2 * W - i));
            for (ptrdiff_t ow = 0; ow < OW; ow++)
                if (cr[ow] < 4)
                    top[(cr[ow] >> 1) * W + 2 * ow + (cr[ow] & 1)] = gr[ow] + 0.0f;
            if (H % 2 && oh == OH - 1)
                memset(plane + (H - 1) * W, 0, (size_t)W * sizeof(float));
            continue;
        }
        for (ptrdiff_t ow = 0; ow < OW; ow += MDL_VL) {
            const int m = OW - ow < MDL_VL ? (int)(OW - ow) : MDL_VL;
            MDL_VF gv;
            MDL_POOL_LOAD(gv, gr + ow, m);
            vb kb = (vb){0} + 4; /* lanes past m: a code that names nothing */
            if (m == MDL_VL)
                memcpy(&kb, cr + ow, sizeof kb);
            else
#if MDL_ISA_AVX512
                kb = (vb)_mm_mask_loadu_epi8((__m128i)kb, (__mmask16)((1u << m) - 1u), cr + ow);
#else
                for (int i = 0; i < m; i++)
                    kb[i] = cr[ow + i];
#endif
            const MDL_VI k = __builtin_convertvector(kb, MDL_VI);
            const MDL_VI gi = (MDL_VI)gv;
            const MDL_VF a00 = (MDL_VF)(gi & (k == 0)) + zero;
            const MDL_VF a01 = (MDL_VF)(gi & (k == 1)) + zero;
            const MDL_VF a10 = (MDL_VF)(gi & (k == 2)) + zero;
            const MDL_VF a11 = (MDL_VF)(gi & (k == 3)) + zero;
            const MDL_VF r0 = __builtin_shuffle(a00, a01, zip_lo);
            const MDL_VF r1 = __builtin_shuffle(a00, a01, zip_hi);
            const MDL_VF s0 = __builtin_shuffle(a10, a11, zip_lo);
            const MDL_VF s1 = __builtin_shuffle(a10, a11, zip_hi);
            MDL_POOL_STORE_PAIR(top + 2 * ow, r0, r1, 2 * m);
            MDL_POOL_STORE_PAIR(bot + 2 * ow, s0, s1, 2 * m);
        }
        if (W % 2) {
            top[W - 1] = 0;
            bot[W - 1] = 0;
        }
        if (H % 2 && oh == OH - 1)
            memset(plane + (H - 1) * W, 0, (size_t)W * sizeof(float));
    }
}

/* first_bad_index (pool_kernels.h): the scan without an early exit vectorizes; index + 1 is
 * taken in unsigned arithmetic, where -1 becomes 0 and every out-of-range value (LLONG_MAX
 * included) lands above limit. */
MDL_ISA_ATTR static ptrdiff_t MDL_ISA(first_bad_index)(const long long *index, ptrdiff_t n,
                                                       ptrdiff_t limit)
{
    const unsigned long long top = (unsigned long long)limit;
    unsigned long long any = 0;
    for (ptrdiff_t i = 0; i < n; i++)
        any |= (unsigned long long)index[i] + 1ull > top;
    if (!any)
        return -1;
    for (ptrdiff_t i = 0; i < n; i++)
        if ((unsigned long long)index[i] + 1ull > top)
            return i;
    return -1;
}

#undef MDL_POOL_TAKE
#undef MDL_POOL_LANES
#undef MDL_POOL_EVEN
#undef MDL_POOL_ORDER
#undef MDL_POOL_LOAD
#undef MDL_POOL_ZIP_LO
#undef MDL_POOL_ZIP_HI
#undef MDL_POOL_STORE_PAIR
