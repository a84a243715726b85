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

/* Output rows ("blocks") b0 .. b1 - 1 of a (planes, OH, OW) output, block b being output row
 * b % OH of plane b / OH, from x (planes, H, W) with OH = H / 2, OW = W / 2. out gets the
 * maxima, index the flat ih * W + iw of each first maximum (PyTorch's return_indices).
 * last_block: the tensor's final block, whose over-reading vector loads would leave x; its
 * tail columns are done one by one. */
MDL_ISA_ATTR static void MDL_ISA(max_pool_2x2_f32)(const float *x, float *out, long long *index,
                                                   ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH,
                                                   ptrdiff_t OW, ptrdiff_t b0, ptrdiff_t b1,
                                                   ptrdiff_t last_block)
{
    const mdl_pool_vi lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const mdl_pool_vi even = lane * 2, odd = lane * 2 + 1;
    for (ptrdiff_t b = b0; b < b1; b++) {
        const ptrdiff_t oh = b % OH;
        const float *top = x + (b / OH) * H * W + 2 * oh * W;
        const float *bot = top + W;
        float *o = out + b * OW;
        long long *ix = index + b * OW;
        ptrdiff_t ow0 = 0;
        for (; ow0 < OW; ow0 += 16) {
            /* Vector loads read 32 floats from each row: past the row they read the next
             * row, harmless except at the very end of x. */
            if (b == last_block && 2 * ow0 + 32 > W)
                break;
            mdl_pool_vf t0, t1, u0, u1;
            memcpy(&t0, top + 2 * ow0, sizeof t0);
            memcpy(&t1, top + 2 * ow0 + 16, sizeof t1);
            memcpy(&u0, bot + 2 * ow0, sizeof u0);
            memcpy(&u1, bot + 2 * ow0 + 16, sizeof u1);
            mdl_pool_vf best = __builtin_shuffle(t0, t1, even);
            mdl_pool_vf c01 = __builtin_shuffle(t0, t1, odd);
            mdl_pool_vf c10 = __builtin_shuffle(u0, u1, even);
            mdl_pool_vf c11 = __builtin_shuffle(u0, u1, odd);
            mdl_pool_vi k = (mdl_pool_vi){0};
            MDL_POOL_TAKE(best, k, c01, (mdl_pool_vi){0} + 1);
            MDL_POOL_TAKE(best, k, c10, (mdl_pool_vi){0} + 2);
            MDL_POOL_TAKE(best, k, c11, (mdl_pool_vi){0} + 3);
            mdl_pool_vi flat =
                ((k >> 1) + (int)(2 * oh)) * (int)W + (lane + (int)ow0) * 2 + (k & 1);
            float bs[16] __attribute__((aligned(64)));
            int fs[16] __attribute__((aligned(64)));
            memcpy(bs, &best, sizeof bs);
            memcpy(fs, &flat, sizeof fs);
            const ptrdiff_t n = OW - ow0 < 16 ? OW - ow0 : 16;
            for (ptrdiff_t i = 0; i < n; i++) {
                o[ow0 + i] = bs[i];
                ix[ow0 + i] = fs[i];
            }
        }
        for (ptrdiff_t ow = ow0; ow < OW; ow++) {
            const float c[4] = {top[2 * ow], top[2 * ow + 1], bot[2 * ow], bot[2 * ow + 1]};
            int k = 0;
            for (int j = 1; j < 4; j++)
                if (c[j] > c[k] || c[j] != c[j])
                    k = j;
            o[ow] = c[k];
            ix[ow] = (2 * oh + (k >> 1)) * W + 2 * ow + (k & 1);
        }
    }
}

