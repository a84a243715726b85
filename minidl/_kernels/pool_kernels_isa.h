/* Per-instruction-set body of pool_kernels.h (see mdl_isa.h): included once per ISA with
 * MDL_ISA_ATTR, MDL_ISA(name) and the register vector MDL_VL / MDL_VF / MDL_VI defined. No
 * include guard on purpose.
 *
 * A group of 16 outputs is computed as MDL_NH registers of MDL_VL lanes (1 x 16 on AVX-512,
 * 2 x 8 on AVX2, 4 x 4 on the baseline), the group's 32 input columns of each row as
 * 2 * MDL_NH registers: output register h deinterleaves input registers 2h and 2h + 1. Every
 * lane computes the same comparisons in the same order on every instance. */

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

/* The first `count` (1 .. MDL_VL / 2 - 1) 64-bit ints of the register-sized vector v to p,
 * writing nothing else: 16- and 8-byte pieces on AVX2 and SSE2 (AVX2's masked stores are slow
 * on AMD), element copies on AVX-512 (as before) and elsewhere. The floats' partial store is
 * mdl_isa_partial.h's. */
#if MDL_VL == 8 && !MDL_ISA_AVX512
#define MDL_POOL_STORE_PART_Q(p, v, count)                                                       \
    do {                                                                                         \
        __m128i r_ = _mm256_castsi256_si128((__m256i)(v));                                       \
        long long *q_ = (p);                                                                     \
        if ((count) & 2) {                                                                       \
            _mm_storeu_si128((__m128i *)q_, r_);                                                 \
            r_ = _mm256_extracti128_si256((__m256i)(v), 1);                                      \
            q_ += 2;                                                                             \
        }                                                                                        \
        if ((count) & 1)                                                                         \
            _mm_storel_epi64((__m128i *)q_, r_);                                                 \
    } while (0)
#elif MDL_VL == 4 && defined(__SSE2__)
#define MDL_POOL_STORE_PART_Q(p, v, count) _mm_storel_epi64((__m128i *)(p), (__m128i)(v))
#else
#define MDL_POOL_STORE_PART_Q(p, v, count)                                                       \
    do {                                                                                         \
        long long tmp_[MDL_VL / 2] __attribute__((aligned(64)));                                 \
        memcpy(tmp_, &(v), sizeof tmp_);                                                         \
        for (int i_ = 0; i_ < (count); i_++)                                                     \
            (p)[i_] = tmp_[i_];                                                                  \
    } while (0)
#endif

/* Output rows ("blocks") b0 .. b1 - 1 of a (planes, OH, OW) output, block b being output row
 * b % OH of plane b / OH, from x (planes, H, W) with OH = H / 2, OW = W / 2. out gets the
 * maxima, index the flat ih * W + iw of each first maximum (PyTorch's return_indices), or
 * nothing when index is NULL (inference: the int64 stores are most of a small pool's time).
 * Loads read exactly the 2 * OW columns of each of the two input rows (partial vectors
 * masked). */
MDL_ISA_ATTR static void MDL_ISA(max_pool_2x2_f32)(const float *x, float *out, long long *index,
                                                   ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH,
                                                   ptrdiff_t OW, ptrdiff_t b0, ptrdiff_t b1)
{
    /* 64-bit lanes filling one register (MDL_VL / 2 of them), and half registers of int32. */
    typedef long long vq __attribute__((vector_size(sizeof(MDL_VF))));
    typedef int vh __attribute__((vector_size(sizeof(MDL_VF) / 2)));
    const MDL_VI lanes = MDL_POOL_LANES, even = MDL_POOL_EVEN, odd = even + 1;
    const MDL_VI order = MDL_POOL_ORDER;
    /* The flat index ih * W + iw is the row's 64-bit base plus an offset within the two rows,
     * which fits 32-bit lanes unless a row is near 2^30 columns (narrow_ok). Narrow, each
     * lane's k is directly the offset of its window's element (0, 1, W, W + 1) from the
     * top-left one; otherwise its position (0 .. 3) in the window. */
    const int narrow_ok = W < ((ptrdiff_t)1 << 29);
    const MDL_VI code01 = (MDL_VI){0} + 1;
    const MDL_VI code10 = (MDL_VI){0} + (narrow_ok ? (int)W : 2);
    const MDL_VI code11 = (MDL_VI){0} + (narrow_ok ? (int)W + 1 : 3);
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
        float *o = out + b * OW;
        long long *ix = index != NULL ? index + b * OW : NULL;
        const long long row = (long long)(2 * oh) * W;
        for (ptrdiff_t ow0 = 0; ow0 < OW; ow0 += 16) {
            const int n = OW - ow0 < 16 ? (int)(OW - ow0) : 16;
            MDL_VF best[MDL_NH];
            MDL_VI k[MDL_NH];
            for (int h = 0; h < MDL_NH; h++) {
                /* Input columns 2 * (ow0 + h * MDL_VL) onwards, 2 * MDL_VL of them, of which
                 * the first 2 * (n - h * MDL_VL) exist. */
                const int c0 = 2 * (n - h * MDL_VL), c1 = c0 - MDL_VL;
                const ptrdiff_t at = 2 * (ow0 + h * MDL_VL);
                MDL_VF t0, t1, u0, u1;
                MDL_POOL_LOAD(t0, top + at, c0);
                MDL_POOL_LOAD(t1, top + at + MDL_VL, c1);
                MDL_POOL_LOAD(u0, bot + at, c0);
                MDL_POOL_LOAD(u1, bot + at + MDL_VL, c1);
                MDL_VF bh = __builtin_shuffle(t0, t1, even);
                MDL_VF c01 = __builtin_shuffle(t0, t1, odd);
                MDL_VF c10 = __builtin_shuffle(u0, u1, even);
                MDL_VF c11 = __builtin_shuffle(u0, u1, odd);
                MDL_VI kh = (MDL_VI){0};
                MDL_POOL_TAKE(bh, kh, c01, code01);
                MDL_POOL_TAKE(bh, kh, c10, code10);
                MDL_POOL_TAKE(bh, kh, c11, code11);
                best[h] = __builtin_shuffle(bh, order);
                k[h] = __builtin_shuffle(kh, order);
            }
            if (narrow_ok) {
                for (int h = 0; h < MDL_NH; h++) {
                    const int m = n - h * MDL_VL; /* outputs of register h that exist */
                    if (m <= 0)
                        break;
                    if (ix == NULL) {
                        if (m >= MDL_VL)
                            memcpy(o + ow0 + h * MDL_VL, &best[h], sizeof best[h]);
                        else
                            MDL_STORE_PARTIAL(o + ow0 + h * MDL_VL, best[h], m);
                        continue;
                    }
                    const MDL_VI off = (lanes + (h * MDL_VL + (int)ow0)) * 2 + k[h];
                    const vh lo = __builtin_shufflevector(off, off, 0, 1
#if MDL_VL >= 8
                                                          , 2, 3
#endif
#if MDL_VL >= 16
                                                          , 4, 5, 6, 7
#endif
                    );
                    const vh hi = __builtin_shufflevector(off, off, MDL_VL / 2, MDL_VL / 2 + 1
#if MDL_VL >= 8
                                                          , MDL_VL / 2 + 2, MDL_VL / 2 + 3
#endif
#if MDL_VL >= 16
                                                          , 12, 13, 14, 15
#endif
                    );
                    const vq q0 = __builtin_convertvector(lo, vq) + row;
                    const vq q1 = __builtin_convertvector(hi, vq) + row;
                    float *op = o + ow0 + h * MDL_VL;
                    long long *ip = ix + ow0 + h * MDL_VL;
                    if (m >= MDL_VL) {
                        memcpy(op, &best[h], sizeof best[h]);
                        memcpy(ip, &q0, sizeof q0);
                        memcpy(ip + MDL_VL / 2, &q1, sizeof q1);
                        continue;
                    }
                    MDL_STORE_PARTIAL(op, best[h], m);
                    if (m < MDL_VL / 2) {
                        MDL_POOL_STORE_PART_Q(ip, q0, m);
                    } else {
                        memcpy(ip, &q0, sizeof q0);
                        if (m > MDL_VL / 2)
                            MDL_POOL_STORE_PART_Q(ip + MDL_VL / 2, q1, m - MDL_VL / 2);
                    }
                }
                continue;
            }
            float bs[16] __attribute__((aligned(64)));
            int ks[16] __attribute__((aligned(64)));
            MDL_BLOCK_STORE(bs, best);
            MDL_BLOCK_STORE(ks, k);
            for (int i = 0; i < n; i++) {
                o[ow0 + i] = bs[i];
                if (ix != NULL)
                    ix[ow0 + i] = row + (long long)(ks[i] >> 1) * W + 2 * (ow0 + i) + (ks[i] & 1);
            }
        }
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
#undef MDL_POOL_STORE_PART_Q
