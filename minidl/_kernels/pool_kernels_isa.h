/* Per-instruction-set body of pool_kernels.h (see mdl_isa.h): included once per ISA with
 * MDL_ISA_ATTR and MDL_ISA(name) defined. No include guard on purpose. */

/* Where take (a lane mask of -1/0) is set: best = cand, k = code. A NaN candidate always wins,
 * so NaN propagates as in PyTorch; otherwise strictly greater wins, keeping the first maximum
 * of the window (row-major order) on ties. */
#define MDL_POOL_TAKE(best, k, cand, code)                                                       \
    do {                                                                                         \
        mdl_pool_vi take_ = ((cand) > (best)) | ((cand) != (cand));                              \
        (best) = (mdl_pool_vf)(((mdl_pool_vi)(cand) & take_) | ((mdl_pool_vi)(best) & ~take_)); \
        (k) = ((code) & take_) | ((k) & ~take_);                                                 \
    } while (0)

/* The first `count` (0 .. 16) floats at p into v, the other lanes zero, reading nothing past
 * p + count: one masked load on AVX-512 (masked-off lanes do not fault), a copy elsewhere.
 * Every partial vector goes through it, on every row: a row that ends a plane (or a
 * memory-mapped file) may be followed by an unmapped page. */
#if MDL_ISA_AVX512
#define MDL_POOL_LOAD(v, p, count)                                                               \
    do {                                                                                         \
        if ((count) == 16)                                                                       \
            memcpy(&(v), (p), sizeof(v));                                                        \
        else                                                                                     \
            (v) = (mdl_pool_vf)_mm512_maskz_loadu_ps((__mmask16)((1u << (count)) - 1u), (p));    \
    } while (0)
#else
#define MDL_POOL_LOAD(v, p, count)                                                               \
    do {                                                                                         \
        if ((count) == 16) {                                                                     \
            memcpy(&(v), (p), sizeof(v));                                                        \
        } else {                                                                                 \
            float tmp_[16] __attribute__((aligned(64))) = {0};                                   \
            memcpy(tmp_, (p), sizeof(float) * (size_t)(count));                                 \
            memcpy(&(v), tmp_, sizeof(v));                                                       \
        }                                                                                        \
    } while (0)
#endif

/* Output rows ("blocks") b0 .. b1 - 1 of a (planes, OH, OW) output, block b being output row
 * b % OH of plane b / OH, from x (planes, H, W) with OH = H / 2, OW = W / 2. out gets the
 * maxima, index the flat ih * W + iw of each first maximum (PyTorch's return_indices). Loads
 * read exactly the 2 * OW columns of each of the two input rows (partial vectors masked). */
MDL_ISA_ATTR static void MDL_ISA(max_pool_2x2_f32)(const float *x, float *out, long long *index,
                                                   ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH,
                                                   ptrdiff_t OW, ptrdiff_t b0, ptrdiff_t b1)
{
    const mdl_pool_vi lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const mdl_pool_vi even = lane * 2, odd = lane * 2 + 1;
    const int narrow_ok = W < ((ptrdiff_t)1 << 29);
    for (ptrdiff_t b = b0; b < b1; b++) {
        const ptrdiff_t oh = b % OH;
        const float *top = x + (b / OH) * H * W + 2 * oh * W;
        const float *bot = top + W;
        float *o = out + b * OW;
        long long *ix = index + b * OW;
        for (ptrdiff_t ow0 = 0; ow0 < OW; ow0 += 16) {
            const int n = OW - ow0 < 16 ? (int)(OW - ow0) : 16;
            const int lo = 2 * n < 16 ? 2 * n : 16, hi = 2 * n - lo;
            mdl_pool_vf t0, t1 = (mdl_pool_vf){0}, u0, u1 = (mdl_pool_vf){0};
            MDL_POOL_LOAD(t0, top + 2 * ow0, lo);
            MDL_POOL_LOAD(u0, bot + 2 * ow0, lo);
            if (hi > 0) {
                MDL_POOL_LOAD(t1, top + 2 * ow0 + 16, hi);
                MDL_POOL_LOAD(u1, bot + 2 * ow0 + 16, hi);
            }
            mdl_pool_vf best = __builtin_shuffle(t0, t1, even);
            mdl_pool_vf c01 = __builtin_shuffle(t0, t1, odd);
            mdl_pool_vf c10 = __builtin_shuffle(u0, u1, even);
            mdl_pool_vf c11 = __builtin_shuffle(u0, u1, odd);
            mdl_pool_vi k = (mdl_pool_vi){0};
            MDL_POOL_TAKE(best, k, c01, (mdl_pool_vi){0} + 1);
            MDL_POOL_TAKE(best, k, c10, (mdl_pool_vi){0} + 2);
            MDL_POOL_TAKE(best, k, c11, (mdl_pool_vi){0} + 3);
            /* The flat index ih * W + iw is the row's 64-bit base plus an offset within the two
             * rows, which fits 32-bit lanes unless a row is near 2^30 columns (narrow_ok). */
            const long long row = (long long)(2 * oh) * W;
            if (narrow_ok) {
                mdl_pool_vi off = (k >> 1) * (int)W + (lane + (int)ow0) * 2 + (k & 1);
                int fs[16] __attribute__((aligned(64)));
                memcpy(fs, &off, sizeof fs);
                if (n == 16) {
                    memcpy(o + ow0, &best, sizeof best);
                    for (int i = 0; i < 16; i++)
                        ix[ow0 + i] = row + fs[i];
                    continue;
                }
                float bs[16] __attribute__((aligned(64)));
                memcpy(bs, &best, sizeof bs);
                for (int i = 0; i < n; i++) {
                    o[ow0 + i] = bs[i];
                    ix[ow0 + i] = row + fs[i];
                }
                continue;
            }
            float bs[16] __attribute__((aligned(64)));
            int ks[16] __attribute__((aligned(64)));
            memcpy(bs, &best, sizeof bs);
            memcpy(ks, &k, sizeof ks);
            for (int i = 0; i < n; i++) {
                o[ow0 + i] = bs[i];
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

#undef MDL_POOL_LOAD
