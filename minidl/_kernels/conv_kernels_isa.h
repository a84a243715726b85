/* Per-instruction-set body of conv_kernels.h: included once per ISA with MDL_ISA_ATTR (a gcc
 * target attribute), MDL_ISA(name) (the name with that ISA's suffix) and MDL_ISA_AVX512 (1 for
 * the AVX-512 instance) defined. No include guard on purpose. */

#include "mdl_isa_partial.h"

/* Lanes h * MDL_VL .. (h + 1) * MDL_VL - 1 of a 16-float block: the tiles below run once per
 * register of the block (h outermost), so an AVX2 or baseline instance holds as many
 * accumulators as the AVX-512 one, each lane adding its terms in the same order. */

/* Forces v into a vector register where gcc would rather fold its load into every FMA using it:
 * the weight-gradient tile then loads each input vector once instead of once per output
 * channel (load-bound -> FMA-bound). Only the AVX-512 instance has the registers for it. */
#if MDL_ISA_AVX512
#define MDL_KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define MDL_KEEP_IN_REGISTER(v) ((void)0)
#endif


/* acc[o][j] = sum over steps k of wpk[k * OCB + o] * x[step_off[k] + xoff[j] ..] (16 lanes),
 * a step being one (input channel c, tap kh, kw): step_off[k] = c * plane + tap_off[kh * KW + kw].
 * Then stored through the epilogue to out[o * out_plane + ooff[j]], count[j] lanes. partial:
 * the OCB * NVT blocks parked between calls (resume / !finish), register h of block b at
 * partial[b * MDL_NH + h]. */
#define MDL_DEFINE_FWD_TILE(OCB, NVT)                                                              \
    MDL_ISA_ATTR static void MDL_ISA(mdl_fwd_tile_##OCB##x##NVT)(                                  \
        const float *x, const ptrdiff_t *step_off, ptrdiff_t nsteps, const float *wpk,             \
        const ptrdiff_t *xoff, const ptrdiff_t *ooff, const ptrdiff_t *count, const float *bias,   \
        ptrdiff_t oc_valid, int relu, float *out, ptrdiff_t out_plane, MDL_VF *partial,            \
        int resume, int finish)                                                                    \
    {                                                                                              \
        for (int h = 0; h < MDL_NH; h++) {                                                         \
            MDL_VF acc[OCB][NVT];                                                                  \
            _Pragma("GCC unroll 16") for (ptrdiff_t o = 0; o < OCB; o++)                           \
                _Pragma("GCC unroll 16") for (ptrdiff_t j = 0; j < NVT; j++)                       \
                    acc[o][j] = resume ? partial[(o * NVT + j) * MDL_NH + h] : (MDL_VF){0};        \
            const float *xb[NVT];                                                                  \
            for (ptrdiff_t j = 0; j < NVT; j++)                                                    \
                xb[j] = x + xoff[j] + h * MDL_VL;                                                  \
            for (ptrdiff_t k = 0; k < nsteps; k++) {                                               \
                const ptrdiff_t off = step_off[k];                                                 \
                const float *wk = wpk + (ptrdiff_t)k * OCB;                                        \
                MDL_VF xv[NVT];                                                                    \
                _Pragma("GCC unroll 16") for (ptrdiff_t j = 0; j < NVT; j++)                       \
                    memcpy(&xv[j], xb[j] + off, sizeof xv[j]);                                     \
                for (ptrdiff_t o = 0; o < OCB; o++) {                                              \
                    MDL_VF w = MDL_VSPLAT(wk[o]);                                                  \
                    for (ptrdiff_t j = 0; j < NVT; j++)                                            \
                        acc[o][j] += w * xv[j];                                                    \
                }                                                                                  \
            }                                                                                      \
            if (!finish) {                                                                         \
                _Pragma("GCC unroll 16") for (ptrdiff_t o = 0; o < OCB; o++)                       \
                    _Pragma("GCC unroll 16") for (ptrdiff_t j = 0; j < NVT; j++)                   \
                        partial[(o * NVT + j) * MDL_NH + h] = acc[o][j];                           \
                continue;                                                                          \
            }                                                                                      \
            /* Unrolled with a test inside (not `o < oc_valid` in the loop condition): a loop gcc \
             * does not unroll keeps acc in memory, a spill and reload of every accumulator. */    \
            _Pragma("GCC unroll 16") for (ptrdiff_t o = 0; o < OCB; o++) {                         \
                if (o >= oc_valid)                                                                 \
                    break;                                                                         \
                const float b = bias ? bias[o] : 0.0f;                                             \
                _Pragma("GCC unroll 16") for (ptrdiff_t j = 0; j < NVT; j++) {                     \
                    const ptrdiff_t c = count[j] - h * MDL_VL;                                     \
                    if (c > 0)                                                                     \
                        MDL_STORE_EPILOGUE(out + o * out_plane + ooff[j] + h * MDL_VL, acc[o][j],  \
                                           b, relu, c < MDL_VL ? c : MDL_VL);                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

MDL_DEFINE_FWD_TILE(8, 2)
MDL_DEFINE_FWD_TILE(6, 2)
MDL_DEFINE_FWD_TILE(4, 4)
MDL_DEFINE_FWD_TILE(1, 8)

/* Output rows [row0, row1) of channels oc0 .. oc0 + oc_valid - 1 (one OCB block) of one image.
 * x: padded image (see top); step_off: the C * KH * KW step offsets (see the tile); wpk: this
 * block's packed weights [C][KH * KW][ocb]; bias: at oc0 or NULL; out: the image's output at
 * channel oc0, planes OH * OW apart. clip: NULL, or the taps that can meet data rather than zero
 * padding rows: clip[0] = KH * KW, and output row r reads taps [clip[1 + 2r], clip[2 + 2r]) of
 * each channel (whole kernel rows). A tile whose rows all skip some taps runs each channel's
 * remaining ones (a sum without the 0 * w terms: the same value, bar the sign of a zero). */
MDL_ISA_ATTR static void MDL_ISA(conv_direct_f32_rows)(
    const float *x, ptrdiff_t Wp, const ptrdiff_t *step_off, ptrdiff_t nsteps, ptrdiff_t block_steps,
    const float *wpk, ptrdiff_t ocb, ptrdiff_t oc_valid, const float *bias, int relu, float *out, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t row0, ptrdiff_t row1, const ptrdiff_t *clip)
{
    enum { MAX_NVT = 8, MAX_TILES = 8 };
    const ptrdiff_t NV = (OW + MDL_LANES - 1) / MDL_LANES;
    const ptrdiff_t nvt = ocb == 8 ? 2 : ocb == 6 ? 2 : ocb == 4 ? 4 : 8;
    const ptrdiff_t out_plane = (ptrdiff_t)OH * OW;
    const ptrdiff_t slots = (row1 - row0) * NV;
    const ptrdiff_t ntiles = (slots + nvt - 1) / nvt;
    /* Accumulators of up to MAX_TILES tiles parked between blocks of input channels: a block's
     * input rows and weights stay in L1 while every tile of the group sweeps them. */
    MDL_VF partial[MAX_TILES][16 * MDL_NH];
    /* Every tile's slots (row r, vector v) of a group, stepped from the group's first slot
     * (one division per group: two per tile were a tenth of the MNIST example's 1->32, whose
     * tiles run 9 steps). */
    ptrdiff_t xoff[MAX_TILES][MAX_NVT], ooff[MAX_TILES][MAX_NVT], count[MAX_TILES][MAX_NVT];
    /* Each tile's taps per channel, [lo, hi) of T, the union over its rows (see clip). */
    const ptrdiff_t T = clip ? clip[0] : 0;
    ptrdiff_t lo[MAX_TILES], hi[MAX_TILES];
    for (ptrdiff_t tg = 0; tg < ntiles; tg += MAX_TILES) {
        const ptrdiff_t tg_end = tg + MAX_TILES < ntiles ? tg + MAX_TILES : ntiles;
        ptrdiff_t s = tg * nvt, r = row0 + s / NV, v = s % NV;
        for (ptrdiff_t t = tg; t < tg_end; t++) {
            lo[t - tg] = T;
            hi[t - tg] = 0;
            for (ptrdiff_t j = 0; j < nvt; j++, s++) {
                if (s < slots && clip) {
                    lo[t - tg] = clip[1 + 2 * r] < lo[t - tg] ? clip[1 + 2 * r] : lo[t - tg];
                    hi[t - tg] = clip[2 + 2 * r] > hi[t - tg] ? clip[2 + 2 * r] : hi[t - tg];
                }
                if (s < slots) {
                    const ptrdiff_t left = OW - v * MDL_LANES;
                    xoff[t - tg][j] = r * Wp + v * MDL_LANES;
                    ooff[t - tg][j] = r * OW + v * MDL_LANES;
                    count[t - tg][j] = left < MDL_LANES ? left : MDL_LANES;
                    if (++v == NV) {
                        v = 0;
                        r++;
                    }
                } else {
                    /* Past the last slot: recompute the last one (the previous slot) and
                     * store nothing. */
                    const ptrdiff_t tp = j > 0 ? t - tg : t - tg - 1, jp = j > 0 ? j - 1 : nvt - 1;
                    xoff[t - tg][j] = xoff[tp][jp];
                    ooff[t - tg][j] = ooff[tp][jp];
                    count[t - tg][j] = 0;
                }
            }
        }
        for (ptrdiff_t k0 = 0; k0 < nsteps; k0 += block_steps) {
            const ptrdiff_t kn = nsteps - k0 < block_steps ? nsteps - k0 : block_steps;
            for (ptrdiff_t t = tg; t < tg_end; t++) {
                /* The block's steps in one call, or (clipped) one call per channel, whole
                 * kernel rows being contiguous steps; block_steps holds whole channels. */
                const int clipped = T > 0 && (lo[t - tg] > 0 || hi[t - tg] < T);
                const ptrdiff_t step = clipped ? T : kn, first = clipped ? lo[t - tg] : 0;
                const ptrdiff_t n = clipped ? (hi[t - tg] > first ? hi[t - tg] - first : 0) : kn;
                for (ptrdiff_t c0 = k0; c0 < k0 + kn; c0 += step) {
                    const ptrdiff_t k = c0 + first;
                    const int resume = c0 > 0, finish = c0 + step >= nsteps;
#define MDL_FWD_CALL(O, N)                                                                         \
    MDL_ISA(mdl_fwd_tile_##O##x##N)(x, step_off + k, n, wpk + (ptrdiff_t)k * (O), xoff[t - tg],   \
                                    ooff[t - tg], count[t - tg], bias, oc_valid, relu, out,       \
                                    out_plane, partial[t - tg], resume, finish)
                    switch (ocb) {
                    case 8: MDL_FWD_CALL(8, 2); break;
                    case 6: MDL_FWD_CALL(6, 2); break;
                    case 4: MDL_FWD_CALL(4, 4); break;
                    default: MDL_FWD_CALL(1, 8); break;
                    }
#undef MDL_FWD_CALL
                }
            }
        }
    }
}

/* Weight-gradient tile: for TB taps at offsets toff[t] (from a row's start in the padded input)
 * and OCB output channels, over one image,
 *   acc[o][t] += sum over rows oh, vectors v of g[o][oh][v*16 ..] * x[oh * Wp + toff[t] + v*16 ..]
 * with x's lanes past OW (tail valid lanes in the last vector) masked to zero: g is zero there
 * too, but 0 * inf would be NaN where the exact gradient is +-inf. acc starts at zero (first)
 * or from park, and is parked again, or (last) summed across lanes in lane order into
 * dw[o * dw_o_stride + tap_index + t] for the taps t < ntaps (the others repeat a valid offset
 * and are dropped). Parking keeps one image's gradient rows in L1 while every tap position of
 * the kernel sweeps them; each accumulator still adds its terms image by image, row by row. */
#define MDL_DEFINE_DW_TILE(OCB, TB)                                                                \
    MDL_ISA_ATTR static void MDL_ISA(mdl_dw_tile_##OCB##x##TB)(                                    \
        const float *x, ptrdiff_t Wp, const float *g, ptrdiff_t g_plane, ptrdiff_t OH,             \
        ptrdiff_t NV, ptrdiff_t tail, const ptrdiff_t *toff, ptrdiff_t ntaps, float *dwp,          \
        ptrdiff_t dw_o_stride, ptrdiff_t oc_valid, ptrdiff_t tap_index, MDL_VF *park,              \
        int first, int last)                                                                       \
    {                                                                                              \
        float sums[OCB][TB][MDL_LANES] __attribute__((aligned(64)));                               \
        for (int h = 0; h < MDL_NH; h++) {                                                         \
            MDL_VI lane_;                                                                          \
            for (int l = 0; l < MDL_VL; l++)                                                       \
                lane_[l] = h * MDL_VL + l;                                                         \
            const MDL_VI tail_keep = lane_ < (int)tail;                                            \
            MDL_VF acc[OCB][TB];                                                                   \
            for (ptrdiff_t o = 0; o < OCB; o++)                                                    \
                for (ptrdiff_t t = 0; t < TB; t++)                                                 \
                    acc[o][t] = first ? (MDL_VF){0} : park[(o * TB + t) * MDL_NH + h];             \
            for (ptrdiff_t oh = 0; oh < OH; oh++) {                                                \
                const float *xr = x + oh * Wp + h * MDL_VL;                                        \
                const float *gr = g + (ptrdiff_t)oh * NV * MDL_LANES + h * MDL_VL;                 \
                for (ptrdiff_t v = 0; v < NV; v++) {                                               \
                    MDL_VF xv[TB];                                                                 \
                    _Pragma("GCC unroll 16") for (ptrdiff_t t = 0; t < TB; t++) {                  \
                        memcpy(&xv[t], xr + v * MDL_LANES + toff[t], sizeof xv[t]);                \
                        if (v == NV - 1)                                                           \
                            xv[t] = (MDL_VF)((MDL_VI)xv[t] & tail_keep);                           \
                        MDL_KEEP_IN_REGISTER(xv[t]);                                               \
                    }                                                                              \
                    /* Each g vector loaded where it is used: with 8 x 3 accumulators, 8 loaded \
                     * at once would not fit AVX-512's 32 registers beside them. */                \
                    _Pragma("GCC unroll 16") for (ptrdiff_t o = 0; o < OCB; o++) {                 \
                        MDL_VF gv;                                                                 \
                        memcpy(&gv, gr + o * g_plane + v * MDL_LANES, sizeof gv);                  \
                        MDL_KEEP_IN_REGISTER(gv);                                                  \
                        for (ptrdiff_t t = 0; t < TB; t++)                                         \
                            acc[o][t] += gv * xv[t];                                               \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (ptrdiff_t o = 0; o < OCB; o++)                                                    \
                for (ptrdiff_t t = 0; t < TB; t++) {                                               \
                    if (last)                                                                      \
                        memcpy(&sums[o][t][h * MDL_VL], &acc[o][t], sizeof acc[o][t]);             \
                    else                                                                           \
                        park[(o * TB + t) * MDL_NH + h] = acc[o][t];                               \
                }                                                                                  \
        }                                                                                          \
        if (!last)                                                                                 \
            return;                                                                                \
        for (ptrdiff_t o = 0; o < OCB && o < oc_valid; o++) {                                      \
            for (ptrdiff_t t = 0; t < TB && t < ntaps; t++) {                                      \
                float s;                                                                           \
                MDL_HSUM(s, sums[o][t]);                                                           \
                dwp[o * dw_o_stride + tap_index + t] = s;                                          \
            }                                                                                      \
        }                                                                                          \
    }

MDL_DEFINE_DW_TILE(8, 3)
MDL_DEFINE_DW_TILE(4, 5)
MDL_DEFINE_DW_TILE(4, 3)
MDL_DEFINE_DW_TILE(4, 4)
MDL_DEFINE_DW_TILE(3, 5)
MDL_DEFINE_DW_TILE(3, 3)
MDL_DEFINE_DW_TILE(3, 4)

/* Partial weight gradient of one (image chunk, OCB block, input channel c):
 *   dwp[o * dw_o_stride + kh * KW + kw] = sum over the chunk of g (x) x-windows,
 * and, when db != NULL, db[o] = sum of g over the chunk (lane order, then rows).
 * x: the chunk's first padded image at channel c (images x_img apart), split into sh * sw
 * phase planes of `phase` floats (conv_pad_phases_f32; one plane for stride 1); g: the chunk's
 * first row-padded output gradient at channel oc0 (planes g_plane = OH * NV * 16 apart, images
 * g_img apart, lanes past OW zero). Image by image, every tap position (kh, kw0) of up to
 * MAX_POS at a time sweeps the image (accumulators parked in between). */
MDL_ISA_ATTR static void MDL_ISA(conv_dw_f32_chunk)(
    const float *x, ptrdiff_t x_img, ptrdiff_t Wp, ptrdiff_t phase, ptrdiff_t sh, ptrdiff_t sw,
    const float *g, ptrdiff_t g_img, ptrdiff_t g_plane, ptrdiff_t nimg, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t ocb,
    ptrdiff_t oc_valid, float *dwp, ptrdiff_t dw_o_stride, float *db)
{
    /* Parked accumulators per position: OCB x TB up to 8 x 3 or 4 x 5. */
    enum { MAX_TB = 5, MAX_POS = 16, MAX_ACC = 24 };
    const ptrdiff_t NV = (OW + MDL_LANES - 1) / MDL_LANES, tail = OW - (NV - 1) * MDL_LANES;
    const ptrdiff_t tb = conv_dw_f32_tb(KW), nkwb = (KW + tb - 1) / tb, npos = KH * nkwb;
    MDL_VF park[MAX_POS][MAX_ACC * MDL_NH];
    for (ptrdiff_t pb = 0; pb < npos; pb += MAX_POS) {
        const ptrdiff_t pe = npos - pb < MAX_POS ? npos : pb + MAX_POS;
        for (ptrdiff_t i = 0; i < nimg; i++) {
            for (ptrdiff_t pos = pb; pos < pe; pos++) {
                const ptrdiff_t kh = pos / nkwb, kw0 = pos % nkwb * tb, rh = kh * dh;
                ptrdiff_t toff[MAX_TB];
                for (ptrdiff_t t = 0; t < tb; t++) {
                    const ptrdiff_t rw = (kw0 + t < KW ? kw0 + t : KW - 1) * dw;
                    toff[t] = ((rh % sh) * sw + rw % sw) * phase + (rh / sh) * Wp + rw / sw;
                }
#define MDL_DW_CALL(O, T)                                                                          \
    MDL_ISA(mdl_dw_tile_##O##x##T)(x + i * x_img, Wp, g + i * g_img, g_plane, OH, NV, tail, toff,  \
                                   KW - kw0, dwp, dw_o_stride, oc_valid, kh * KW + kw0,         \
                                   park[pos - pb], i == 0, i == nimg - 1)
                if (ocb == 8) {
                    MDL_DW_CALL(8, 3);
                } else if (ocb == 4) {
                    if (tb == 5) MDL_DW_CALL(4, 5);
                    else if (tb == 3) MDL_DW_CALL(4, 3);
                    else MDL_DW_CALL(4, 4);
                } else {
                    if (tb == 5) MDL_DW_CALL(3, 5);
                    else if (tb == 3) MDL_DW_CALL(3, 3);
                    else MDL_DW_CALL(3, 4);
                }
#undef MDL_DW_CALL
            }
        }
    }
    if (db != NULL) {
        /* The ocb (<= 8) channels side by side: independent chains of adds instead of one
         * latency-bound chain per channel (6% of the 3->16 stem's weight gradient); each
         * channel's sum keeps its order (images, then rows). */
        MDL_VF acc[8][MDL_NH];
        for (int o = 0; o < 8; o++)
            for (int h = 0; h < MDL_NH; h++)
                acc[o][h] = (MDL_VF){0};
        for (ptrdiff_t i = 0; i < nimg; i++) {
            for (ptrdiff_t p = 0; p < (ptrdiff_t)OH * NV; p++) {
                _Pragma("GCC unroll 8") for (ptrdiff_t o = 0; o < 8; o++) {
                    if (o < oc_valid) {
                        MDL_VF v[MDL_NH];
                        MDL_BLOCK_LOAD(v, g + i * g_img + o * g_plane + p * MDL_LANES);
                        for (int h = 0; h < MDL_NH; h++)
                            acc[o][h] += v[h];
                    }
                }
            }
        }
        for (ptrdiff_t o = 0; o < oc_valid; o++)
            MDL_HSUM(db[o], acc[o]);
    }
}

/* Sum of p[0 .. n): 16 lane-wise partial sums, then added in lane order (fixed order). */
MDL_ISA_ATTR static float MDL_ISA(conv_sum_f32)(const float *p, ptrdiff_t n)
{
    MDL_VF acc[MDL_NH] = {0};
    ptrdiff_t i = 0;
    for (; i + MDL_LANES <= n; i += MDL_LANES) {
        MDL_VF v[MDL_NH];
        MDL_BLOCK_LOAD(v, p + i);
        for (int h = 0; h < MDL_NH; h++)
            acc[h] += v[h];
    }
    float s;
    MDL_HSUM(s, acc);
    for (; i < n; i++)
        s += p[i];
    return s;
}


#if MDL_ISA_AVX512
/* The masks and permute of a chunk of up to 8 outputs [ow0, ow0 + n) of a stride-2 column row
 * whose valid outputs are [lo, hi) (conv_col_range): `store` its n lanes, `valid` the lanes of
 * valid outputs, `load` the source floats from the first valid output's pixel (2 (e - s) - 1 of
 * them, the last valid pixel included, nothing past it), idx: lane j -> source float
 * 2 (j - (s - ow0)). Returns the first valid output s (e <= s, e the chunk's end within [lo, hi):
 * no valid lanes, and only `store` is set). Hoisted out of the row loops below, where a
 * row of 8 outputs is one masked load, one permute and one masked store. */
typedef struct {
    __mmask16 store, valid, load;
    __m512i idx;
} mdl_s2_chunk;

MDL_ISA_ATTR static inline __attribute__((always_inline)) ptrdiff_t MDL_ISA(conv_s2_chunk)(
    ptrdiff_t ow0, ptrdiff_t n, ptrdiff_t lo, ptrdiff_t hi, mdl_s2_chunk *k)
{
    const ptrdiff_t s = lo > ow0 ? lo : ow0, e = hi < ow0 + n ? hi : ow0 + n;
    k->store = (__mmask16)((1u << n) - 1u);
    if (e <= s)
        return s;
    k->valid = (__mmask16)(((1u << (e - ow0)) - 1u) & ~((1u << (s - ow0)) - 1u));
    k->load = (__mmask16)((1u << (2 * (e - s) - 1)) - 1u);
    k->idx = _mm512_sub_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0),
                              _mm512_set1_epi32((int)(2 * (s - ow0))));
    return s;
}
#endif

/* col[((c * KH + kh) * KW + kw) * OH * OW + oh * OW + ow] =
 * x[c][oh * sh - ph + kh * dh][ow * sw - pw + kw * dw], 0 in the padding: one image's im2col
 * (C x H x W), float32. Each (c, kh, kw) row block (conv_col_block_of): the output rows
 * [rlo, rhi) that meet the image, the others zero. With AVX-512 a column stride of 2 runs chunk
 * by chunk of 8 outputs over all rows (conv_s2_chunk), since its rows are too short (8-16
 * outputs in ResNet-20) for per-row setup to be cheap; otherwise the compiler's loops. */
MDL_ISA_ATTR static void MDL_ISA(conv_im2col_f32)(const float *x, float *col, ptrdiff_t C,
                                                  ptrdiff_t H, ptrdiff_t W, ptrdiff_t KH,
                                                  ptrdiff_t KW, ptrdiff_t OH, ptrdiff_t OW,
                                                  ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                                                  ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dw)
{
    for (ptrdiff_t c = 0; c < C; c++)
        for (ptrdiff_t kh = 0; kh < KH; kh++)
            for (ptrdiff_t kw = 0; kw < KW; kw++) {
                const conv_col_block b =
                    conv_col_block_of(c, kh, kw, H, W, OH, OW, sh, sw, ph, pw, dh, dw);
                const ptrdiff_t lo = b.lo, hi = b.hi, rlo = b.rlo, rhi = b.rhi, xc = b.xc;
                float *blk = col + ((c * KH + kh) * KW + kw) * OH * OW;
                memset(blk, 0, (size_t)(rlo * OW) * sizeof(float));
#if MDL_ISA_AVX512
                if (sw == 2) {
                    for (ptrdiff_t ow0 = 0; ow0 < OW; ow0 += 8) {
                        mdl_s2_chunk k;
                        const ptrdiff_t n = OW - ow0 < 8 ? OW - ow0 : 8;
                        const ptrdiff_t s = MDL_ISA(conv_s2_chunk)(ow0, n, lo, hi, &k);
                        const ptrdiff_t r1 = s < hi && s < ow0 + n ? rhi : rlo;
                        for (ptrdiff_t oh = rlo; oh < r1; oh++)
                            _mm512_mask_storeu_ps(
                                blk + oh * OW + ow0, k.store,
                                _mm512_maskz_permutexvar_ps(
                                    k.valid, k.idx,
                                    _mm512_maskz_loadu_ps(k.load, x + (xc + oh * sh * W + 2 * s))));
                        for (ptrdiff_t oh = r1; oh < rhi; oh++)
                            _mm512_mask_storeu_ps(blk + oh * OW + ow0, k.store,
                                                  _mm512_setzero_ps());
                    }
                } else
#endif
                    for (ptrdiff_t oh = rlo; oh < rhi; oh++) {
                        float *row = blk + oh * OW;
                        /* output lo's pixel */
                        const float *xrow = x + (xc + oh * sh * W + lo * sw);
                        for (ptrdiff_t ow = 0; ow < lo; ow++)
                            row[ow] = 0.0f;
                        if (sw == 1)
                            memcpy(row + lo, xrow, (size_t)(hi - lo) * sizeof(float));
                        else
                            for (ptrdiff_t ow = lo; ow < hi; ow++)
                                row[ow] = xrow[(ow - lo) * sw];
                        for (ptrdiff_t ow = hi; ow < OW; ow++)
                            row[ow] = 0.0f;
                    }
                memset(blk + rhi * OW, 0, (size_t)((OH - rhi) * OW) * sizeof(float));
            }
}

/* x (C x H x W) = 0, then every entry of col (as conv_im2col_f32 lays it out) added back to its
 * pixel in the order (c, kh, kw, oh, ow): the adjoint of im2col for one image, float32. Within
 * one (c, kh, kw) no pixel is met twice, so the rows and chunks of a row block may go in any
 * order: with AVX-512 a column stride of 2 runs chunk by chunk of 8 outputs over all rows (its
 * masks set once per chunk; per row one masked load, permute, masked add and masked store of the
 * chunk's pixels, lanes between them neither added to nor written); otherwise the compiler's
 * loops. */
MDL_ISA_ATTR static void MDL_ISA(conv_col2im_f32)(const float *col, float *x, ptrdiff_t C,
                                                  ptrdiff_t H, ptrdiff_t W, ptrdiff_t KH,
                                                  ptrdiff_t KW, ptrdiff_t OH, ptrdiff_t OW,
                                                  ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                                                  ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dw)
{
    memset(x, 0, (size_t)(C * H * W) * sizeof(float));
    for (ptrdiff_t c = 0; c < C; c++)
        for (ptrdiff_t kh = 0; kh < KH; kh++)
            for (ptrdiff_t kw = 0; kw < KW; kw++) {
                const conv_col_block b =
                    conv_col_block_of(c, kh, kw, H, W, OH, OW, sh, sw, ph, pw, dh, dw);
                const ptrdiff_t lo = b.lo, hi = b.hi, rlo = b.rlo, rhi = b.rhi, xc = b.xc;
                if (rhi == rlo)
                    continue; /* no column or no row meets the image */
                const float *blk = col + ((c * KH + kh) * KW + kw) * OH * OW;
#if MDL_ISA_AVX512
                if (sw == 2) {
                    const __m512i spread =
                        _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                    for (ptrdiff_t ow0 = lo; ow0 < hi; ow0 += 8) {
                        const unsigned m = (unsigned)(hi - ow0 < 8 ? hi - ow0 : 8);
                        const __mmask16 src = (__mmask16)((1u << m) - 1u);
                        const __mmask16 even = (__mmask16)(0x5555u & ((1u << (2 * m)) - 1u));
                        for (ptrdiff_t oh = rlo; oh < rhi; oh++) {
                            float *d = x + (xc + oh * sh * W + 2 * ow0);
                            const __m512 v = _mm512_maskz_loadu_ps(src, blk + oh * OW + ow0);
                            _mm512_mask_storeu_ps(
                                d, even,
                                _mm512_add_ps(_mm512_maskz_loadu_ps(even, d),
                                              _mm512_permutexvar_ps(spread, v)));
                        }
                    }
                    continue;
                }
#endif
                for (ptrdiff_t oh = rlo; oh < rhi; oh++) {
                    float *xrow = x + (xc + oh * sh * W + lo * sw); /* output lo's */
                    const float *row = blk + oh * OW;
                    for (ptrdiff_t ow = lo; ow < hi; ow++)
                        xrow[(ow - lo) * sw] += row[ow];
                }
            }
}

/* The zero-padded image p = src (H x W) shifted down by top and right by left (either may be
 * negative: cropping), split into sh * sw phase planes of Hp x Wp (row pitch Wp), plane
 * (pr, pc) at dst + (pr * sw + pc) * Hp * Wp holding p[a * sh + pr][b * sw + pc] at [a][b]
 * (zero past p's data). With sh = sw = 1: one padded plane. A stride-(sh, sw) window then reads
 * each phase plane at stride 1, so the stride-1 kernels run strided convolutions unchanged.
 * With mask != NULL (a ReLU output shaped like src), elements whose mask is <= 0 count as
 * zero: the fused ReLU's backward (NaN passes). */
MDL_ISA_ATTR static void MDL_ISA(conv_pad_phases_f32)(const float *src, ptrdiff_t H, ptrdiff_t W,
                                                       const float *mask, float *dst,
                                                       ptrdiff_t Hp, ptrdiff_t Wp, ptrdiff_t top,
                                                       ptrdiff_t left, ptrdiff_t sh, ptrdiff_t sw)
{
    const ptrdiff_t phase = Hp * Wp;
    if (sh == 1 && sw == 1 && mask == NULL && top == 0 && left == 0 && Wp == W && Hp >= H) {
        /* Already laid out (an output gradient whose rows fill whole vectors): one copy, not
         * a call per 16-float row. */
        memcpy(dst, src, sizeof(float) * (size_t)H * W);
        memset(dst + H * W, 0, sizeof(float) * (size_t)(Hp - H) * W);
        return;
    }
    /* One memset for all planes: rows are short (LeNet's are 10 to 36 floats), so per-row
     * calls would cost more than the copy. */
    memset(dst, 0, sizeof(float) * (size_t)(sh * sw) * phase);
    if (sw == 2 && mask == NULL && left >= 0) {
        /* Source row by row, 32 columns split into the two column phases by two permutes:
         * gcc leaves the stride-2 gather below scalar, and it took a quarter of ResNet's
         * 16->32 stride-2 forward. Source (i, j) is p[r = i + top][c = j + left]: plane
         * (r % sh, c % 2), element [r / sh][c / 2]. */
        MDL_VI even;
        for (int l = 0; l < MDL_VL; l++)
            even[l] = 2 * l;
        const MDL_VI odd = even + 1;
        /* Row r = i + top's phase pr = r % sh and row a = r / sh, stepped (no divisions). */
        const ptrdiff_t i0 = top < 0 ? -top : 0;
        ptrdiff_t pr = (i0 + top) % sh, a = (i0 + top) / sh;
        for (ptrdiff_t i = i0; i < H && a < Hp; i++, pr = pr + 1 == sh ? 0 : pr + 1,
                       a += pr == 0) {
            float *row = dst + pr * 2 * phase + a * Wp;
            float *even_cols = row + left % 2 * phase, *odd_cols = row + (left + 1) % 2 * phase;
            const float *s = src + i * W;
            ptrdiff_t j = 0;
            for (; j + 2 * MDL_LANES <= W && (j + left + 1) / 2 + MDL_LANES <= Wp;
                 j += 2 * MDL_LANES) {
                /* Output register h takes source registers 2h and 2h + 1. */
                MDL_VF v[2 * MDL_NH], e[MDL_NH], o[MDL_NH];
                MDL_BLOCK_LOAD(v, s + j);
                MDL_BLOCK_LOAD(v + MDL_NH, s + j + MDL_LANES);
                for (int h = 0; h < MDL_NH; h++) {
                    e[h] = __builtin_shuffle(v[2 * h], v[2 * h + 1], even);
                    o[h] = __builtin_shuffle(v[2 * h], v[2 * h + 1], odd);
                }
                MDL_BLOCK_STORE(even_cols + (j + left) / 2, e);
                MDL_BLOCK_STORE(odd_cols + (j + left + 1) / 2, o);
            }
            for (; j < W; j++) {
                const ptrdiff_t c = j + left;
                if (c / 2 < Wp)
                    row[c % 2 * phase + c / 2] = s[j];
            }
        }
        return;
    }
    for (ptrdiff_t pr = 0; pr < sh; pr++) {
        /* Rows a of the phase with source row i = a * sh + pr - top inside [0, H). */
        ptrdiff_t a0 = top - pr > 0 ? (top - pr + sh - 1) / sh : 0;
        ptrdiff_t a1 = H - 1 + top - pr >= 0 ? (H - 1 + top - pr) / sh + 1 : 0;
        if (a1 > Hp)
            a1 = Hp;
        for (ptrdiff_t pc = 0; pc < sw; pc++) {
            float *plane = dst + (pr * sw + pc) * Hp * Wp;
            ptrdiff_t b0 = left - pc > 0 ? (left - pc + sw - 1) / sw : 0;
            ptrdiff_t b1 = W - 1 + left - pc >= 0 ? (W - 1 + left - pc) / sw + 1 : 0;
            if (b1 > Wp)
                b1 = Wp;
            if (b1 <= b0)
                continue;
            for (ptrdiff_t a = a0; a < a1; a++) {
                const ptrdiff_t off = (a * sh + pr - top) * W + (b0 * sw + pc - left);
                const float *restrict v = src + off;
                const float *restrict m = mask ? mask + off : NULL;
                float *restrict o = plane + a * Wp + b0;
                const ptrdiff_t n = b1 - b0;
                if (sw == 1 && n >= MDL_VL) {
                    /* Whole registers, the last one overlapping its predecessor, instead of a
                     * libc memcpy call per short row: the copies of the 1->32 layer's weight
                     * gradient at 26x26 (26-float gradient rows padded to 32) fell from 29% of
                     * its samples to 23% (perf, one thread). */
                    for (ptrdiff_t j = 0;; j += MDL_VL) {
                        if (j > n - MDL_VL)
                            j = n - MDL_VL;
                        MDL_VF x_;
                        memcpy(&x_, v + j, sizeof x_);
                        if (m != NULL) {
                            MDL_VF m_;
                            memcpy(&m_, m + j, sizeof m_);
                            x_ = (MDL_VF)((MDL_VI)x_ & ~(MDL_VI)(m_ <= (MDL_VF){0}));
                        }
                        memcpy(o + j, &x_, sizeof x_);
                        if (j == n - MDL_VL)
                            break;
                    }
                } else if (sw == 1 && m == NULL) {
                    memcpy(o, v, sizeof(float) * n);
                } else if (sw == 1) {
                    /* A select, not a branch: vectorizes to compare + blend. */
                    for (ptrdiff_t j = 0; j < n; j++)
                        o[j] = m[j] <= 0 ? 0.0f : v[j];
                } else if (sw == 2 && m == NULL) {
                    for (ptrdiff_t j = 0; j < n; j++)
                        o[j] = v[2 * j];
                } else {
                    for (ptrdiff_t j = 0; j < n; j++)
                        o[j] = (m != NULL && m[j * sw] <= 0) ? 0.0f : v[j * sw];
                }
            }
        }
    }
}

/* Planes [p0, p1) of the H x W planes dst of a strided convolution's input gradient from its
 * sh * sw stride phases, each computed as its own stride-1 convolution: phase k = qi * sw + qj
 * holds pixels (qi + a * sh, qj + b * sw), plane p's row a at base + off[k] + p * size[k] +
 * a * pitch[k]. A phase that no tap reaches has size and pitch 0 and off at a row of zeros, so
 * every pixel is written, and each row once, whole: with sw = 2 its two column phases
 * interleaved (vector permutes), where one pass per phase wrote every other element (a quarter
 * of ResNet's 16->32 stride-2 input gradient). */
MDL_ISA_ATTR static void MDL_ISA(conv_unphase_f32)(const float *base, const ptrdiff_t *off,
                                                    const ptrdiff_t *size, const ptrdiff_t *pitch,
                                                    ptrdiff_t p0, ptrdiff_t p1, ptrdiff_t H,
                                                    ptrdiff_t W, ptrdiff_t sh, ptrdiff_t sw,
                                                    float *dst)
{
    for (ptrdiff_t p = p0; p < p1; p++) {
        /* Row r's phase row qi = r % sh and its row a = r / sh, stepped (no divisions). */
        for (ptrdiff_t r = 0, qi = 0, a = 0; r < H; r++, qi = qi + 1 == sh ? 0 : qi + 1,
                       a += qi == 0) {
            float *restrict d = dst + (p * H + r) * W;
            const ptrdiff_t k = qi * sw;
            if (sw == 2) {
                const float *restrict e = base + off[k] + p * size[k] + a * pitch[k];
                const float *restrict o = base + off[k + 1] + p * size[k + 1] + a * pitch[k + 1];
                for (ptrdiff_t b = 0; b < W / 2; b++) {
                    d[2 * b] = e[b];
                    d[2 * b + 1] = o[b];
                }
                if (W % 2)
                    d[W - 1] = e[W / 2];
                continue;
            }
            for (ptrdiff_t qj = 0; qj < sw && qj < W; qj++) {
                const float *restrict e =
                    base + off[k + qj] + p * size[k + qj] + a * pitch[k + qj];
                for (ptrdiff_t b = 0; qj + b * sw < W; b++)
                    d[qj + b * sw] = e[b];
            }
        }
    }
}

/* bl[b][l] = bias[b * 16 + l] for the oc_valid valid channels of NB 16-channel vectors, 0
 * elsewhere (and 0 everywhere without a bias: the packed tiles add it, bias + relu in
 * registers, before they store lane by lane, as a scalar + 0.0f would). */
#define MDL_PACKED_BIAS_LANES(bl, NB, bias, oc_valid)                                              \
    do {                                                                                           \
        for (ptrdiff_t b_ = 0; b_ < (NB); b_++)                                                    \
            for (ptrdiff_t l_ = 0; l_ < MDL_LANES; l_++)                                           \
                (bl)[b_][l_] = (bias) != NULL && b_ * MDL_LANES + l_ < (oc_valid)                  \
                                   ? (bias)[b_ * MDL_LANES + l_]                                   \
                                   : 0.0f;                                                         \
    } while (0)

/* Channel-packed direct convolution, for 16+ output channels on small images (LeNet's conv2:
 * 10x10 outputs would fill 10 of 16 lanes of a row vector): NB vectors of 16 output channels x
 * PB output pixels of accumulators; each step loads NB weight vectors and broadcasts PB input
 * pixels, at any stride. Weights packed [C][KH * KW][NB * 16] (zero past the valid channels);
 * pix_in[p]: offset of pixel p's window origin in the padded image, pix_out[p]: its index in the
 * output plane; the first npix pixels are stored (after bias and ReLU), lane by lane. */
#define MDL_DEFINE_PACKED_TILE(NB, PB)                                                             \
    MDL_ISA_ATTR static void MDL_ISA(mdl_packed_tile_##NB##x##PB)(                                 \
        const float *x, const ptrdiff_t *step_off, ptrdiff_t nsteps, const float *wpk,             \
        const ptrdiff_t *pix_in, const ptrdiff_t *pix_out, ptrdiff_t npix, const float *bias,      \
        ptrdiff_t oc_valid, int relu, float *out, ptrdiff_t out_plane)                             \
    {                                                                                              \
        float lanes[NB][PB][MDL_LANES] __attribute__((aligned(64)));                               \
        float bl[NB][MDL_LANES] __attribute__((aligned(64)));                                      \
        MDL_PACKED_BIAS_LANES(bl, NB, bias, oc_valid);                                             \
        const float *xb[PB];                                                                       \
        for (ptrdiff_t p = 0; p < PB; p++)                                                         \
            xb[p] = x + pix_in[p];                                                                 \
        for (int h = 0; h < MDL_NH; h++) {                                                         \
            MDL_VF acc[NB][PB];                                                                    \
            for (ptrdiff_t b = 0; b < NB; b++)                                                     \
                for (ptrdiff_t p = 0; p < PB; p++)                                                 \
                    acc[b][p] = (MDL_VF){0};                                                       \
            for (ptrdiff_t k = 0; k < nsteps; k++) {                                               \
                const ptrdiff_t off = step_off[k];                                                 \
                MDL_VF wv[NB];                                                                     \
                _Pragma("GCC unroll 16") for (ptrdiff_t b = 0; b < NB; b++)                        \
                    memcpy(&wv[b], wpk + ((ptrdiff_t)k * NB + b) * MDL_LANES + h * MDL_VL,         \
                           sizeof wv[b]);                                                          \
                for (ptrdiff_t p = 0; p < PB; p++) {                                               \
                    MDL_VF xs = MDL_VSPLAT(xb[p][off]);                                            \
                    for (ptrdiff_t b = 0; b < NB; b++)                                             \
                        acc[b][p] += wv[b] * xs;                                                   \
                }                                                                                  \
            }                                                                                      \
            for (ptrdiff_t b = 0; b < NB; b++) {                                                   \
                MDL_VF bv;                                                                         \
                memcpy(&bv, &bl[b][h * MDL_VL], sizeof bv);                                        \
                _Pragma("GCC unroll 16") for (ptrdiff_t p = 0; p < PB; p++) {                      \
                    MDL_BIAS_RELU(acc[b][p], bv, relu);                                            \
                    memcpy(&lanes[b][p][h * MDL_VL], &acc[b][p], sizeof acc[b][p]);                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (ptrdiff_t b = 0; b < NB; b++)                                                         \
            for (ptrdiff_t l = 0; l < MDL_LANES && b * MDL_LANES + l < oc_valid; l++)              \
                for (ptrdiff_t p = 0; p < npix; p++)                                               \
                    out[(b * MDL_LANES + l) * out_plane + pix_out[p]] = lanes[b][p][l];            \
    }

MDL_DEFINE_PACKED_TILE(1, 8)
MDL_DEFINE_PACKED_TILE(2, 6)
MDL_DEFINE_PACKED_TILE(4, 6)

/* The packed tile for NB 1, stride 1 and unit-spaced taps along W (LeNet's conv2): PB
 * consecutive output pixels of one row, whose windows overlap, so each input of a kernel row
 * is broadcast once for up to KW multiply-adds (per kernel row: PB + KW - 1 broadcasts and KW
 * weight loads for PB * KW multiply-adds, against PB * KW broadcasts and KW weight loads in the
 * tile above, whose loads outnumber its multiply-adds). Each accumulator still adds its taps in
 * (c, kh, kw) order: the same bits as the tile above. x: the first pixel's window corner;
 * nrows = C * KH kernel rows, step_off as for the tile above; out: the first pixel of channel
 * 0's plane. */
#define MDL_DEFINE_PACKED_ROW_TILE(KW, PB)                                                         \
    MDL_ISA_ATTR static void MDL_ISA(mdl_packed_row_##KW##x##PB)(                                  \
        const float *x, const ptrdiff_t *step_off, ptrdiff_t nrows, const float *wpk,              \
        const float *bias, ptrdiff_t oc_valid, int relu, float *out, ptrdiff_t out_plane)          \
    {                                                                                              \
        float lanes[PB][MDL_LANES] __attribute__((aligned(64)));                                   \
        float bl[1][MDL_LANES] __attribute__((aligned(64)));                                       \
        MDL_PACKED_BIAS_LANES(bl, 1, bias, oc_valid);                                              \
        for (int h = 0; h < MDL_NH; h++) {                                                         \
            MDL_VF acc[PB];                                                                        \
            for (ptrdiff_t p = 0; p < PB; p++)                                                     \
                acc[p] = (MDL_VF){0};                                                              \
            for (ptrdiff_t r = 0; r < nrows; r++) {                                                \
                const float *xr = x + step_off[r * KW];                                            \
                MDL_VF wv[KW];                                                                     \
                _Pragma("GCC unroll 8") for (ptrdiff_t kw = 0; kw < KW; kw++)                      \
                    memcpy(&wv[kw], wpk + (r * KW + kw) * MDL_LANES + h * MDL_VL, sizeof wv[kw]);  \
                _Pragma("GCC unroll 32") for (ptrdiff_t j = 0; j < PB + KW - 1; j++) {             \
                    MDL_VF xs = MDL_VSPLAT(xr[j]);                                                 \
                    _Pragma("GCC unroll 8") for (ptrdiff_t kw = 0; kw < KW; kw++)                  \
                        if (j - kw >= 0 && j - kw < PB)                                            \
                            acc[j - kw] += wv[kw] * xs;                                            \
                }                                                                                  \
            }                                                                                      \
            MDL_VF bv;                                                                             \
            memcpy(&bv, &bl[0][h * MDL_VL], sizeof bv);                                            \
            _Pragma("GCC unroll 16") for (ptrdiff_t p = 0; p < PB; p++) {                          \
                MDL_BIAS_RELU(acc[p], bv, relu);                                                   \
                memcpy(&lanes[p][h * MDL_VL], &acc[p], sizeof acc[p]);                             \
            }                                                                                      \
        }                                                                                          \
        for (ptrdiff_t l = 0; l < MDL_LANES && l < oc_valid; l++)                                  \
            _Pragma("GCC unroll 16") for (ptrdiff_t p = 0; p < PB; p++)                            \
                out[l * out_plane + p] = lanes[p][l];                                              \
    }

/* Up to 12 pixels per row tile: 12 accumulators, KW weights and a broadcast within AVX-512's
 * 32 vector registers; with 16 registers (AVX2, baseline) at most 15 - KW accumulators. */
#define MDL_ROW_PB(KW) (MDL_ISA_AVX512 ? 12 : 15 - (KW) < 12 ? 15 - (KW) : 12)
typedef void (*MDL_ISA(mdl_packed_row_fn))(const float *, const ptrdiff_t *, ptrdiff_t,
                                           const float *, const float *, ptrdiff_t, int, float *,
                                           ptrdiff_t);
#define MDL_DEFINE_PACKED_ROW_TILES(KW)                                                            \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 1) MDL_DEFINE_PACKED_ROW_TILE(KW, 2)                            \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 3) MDL_DEFINE_PACKED_ROW_TILE(KW, 4)                            \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 5) MDL_DEFINE_PACKED_ROW_TILE(KW, 6)                            \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 7) MDL_DEFINE_PACKED_ROW_TILE(KW, 8)                            \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 9) MDL_DEFINE_PACKED_ROW_TILE(KW, 10)                           \
    MDL_DEFINE_PACKED_ROW_TILE(KW, 11) MDL_DEFINE_PACKED_ROW_TILE(KW, 12)                          \
    static const MDL_ISA(mdl_packed_row_fn) MDL_ISA(mdl_packed_row_tiles_##KW)[13] = {             \
        NULL,                                                                                      \
        MDL_ISA(mdl_packed_row_##KW##x1), MDL_ISA(mdl_packed_row_##KW##x2),                        \
        MDL_ISA(mdl_packed_row_##KW##x3), MDL_ISA(mdl_packed_row_##KW##x4),                        \
        MDL_ISA(mdl_packed_row_##KW##x5), MDL_ISA(mdl_packed_row_##KW##x6),                        \
        MDL_ISA(mdl_packed_row_##KW##x7), MDL_ISA(mdl_packed_row_##KW##x8),                        \
        MDL_ISA(mdl_packed_row_##KW##x9), MDL_ISA(mdl_packed_row_##KW##x10),                       \
        MDL_ISA(mdl_packed_row_##KW##x11), MDL_ISA(mdl_packed_row_##KW##x12)};

MDL_DEFINE_PACKED_ROW_TILES(3)
MDL_DEFINE_PACKED_ROW_TILES(5)

/* Output pixels [p0, p1) (flat oh * OW + ow) of one block of NB * 16 output channels of one
 * image, for the packed tiles above. x: padded image with row pitch Wp; (sh, sw): stride;
 * row_kw: the kernel width when its taps are unit-spaced along W (dilation 1), else 0. */
MDL_ISA_ATTR static void MDL_ISA(conv_packed_f32_pixels)(
    const float *x, ptrdiff_t Wp, ptrdiff_t sh, ptrdiff_t sw, const ptrdiff_t *step_off, ptrdiff_t nsteps,
    const float *wpk, ptrdiff_t nb, ptrdiff_t oc_valid, const float *bias, int relu, float *out, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t p0, ptrdiff_t p1, ptrdiff_t row_kw)
{
    if (nb == 1 && sw == 1 && (row_kw == 3 || row_kw == 5)) {
        const ptrdiff_t out_plane = (ptrdiff_t)OH * OW;
        const ptrdiff_t pb_max = MDL_ROW_PB(row_kw);
        const MDL_ISA(mdl_packed_row_fn) *tiles =
            row_kw == 3 ? MDL_ISA(mdl_packed_row_tiles_3) : MDL_ISA(mdl_packed_row_tiles_5);
        for (ptrdiff_t p = p0; p < p1;) {
            /* The rest of this row within [p0, p1), in near-equal tiles of at most pb_max. */
            const ptrdiff_t oh = p / OW, ow = p % OW;
            const ptrdiff_t left = (p1 - p < OW - ow ? p1 - p : OW - ow);
            const ptrdiff_t ntiles = (left + pb_max - 1) / pb_max;
            const ptrdiff_t len = (left + ntiles - 1) / ntiles;
            tiles[len](x + oh * sh * Wp + ow, step_off, nsteps / row_kw, wpk, bias, oc_valid, relu,
                       out + p, out_plane);
            p += len;
        }
        return;
    }
    enum { MAX_PB = 8 };
    /* nb 4 only where conv_packed_nb gives it (AVX-512: its 24 accumulators fit 32 registers). */
    const ptrdiff_t pb = nb == 1 ? 8 : 6;
    const ptrdiff_t out_plane = (ptrdiff_t)OH * OW;
    for (ptrdiff_t t0 = p0; t0 < p1; t0 += pb) {
        ptrdiff_t pix_in[MAX_PB], pix_out[MAX_PB];
        const ptrdiff_t npix = p1 - t0 < pb ? p1 - t0 : pb;
        for (ptrdiff_t j = 0; j < pb; j++) {
            /* Past the last pixel: recompute the last one and store nothing. */
            ptrdiff_t p = j < npix ? t0 + j : t0 + npix - 1;
            pix_in[j] = (p / OW) * sh * Wp + (p % OW) * sw;
            pix_out[j] = p;
        }
#define MDL_PACKED_ARGS                                                                            \
    x, step_off, nsteps, wpk, pix_in, pix_out, npix, bias, oc_valid, relu, out, out_plane
        if (nb == 1)
            MDL_ISA(mdl_packed_tile_1x8)(MDL_PACKED_ARGS);
        else if (nb == 2)
            MDL_ISA(mdl_packed_tile_2x6)(MDL_PACKED_ARGS);
        else
            MDL_ISA(mdl_packed_tile_4x6)(MDL_PACKED_ARGS);
#undef MDL_PACKED_ARGS
    }
}

/* Channel-packed weight gradient, for 16+ output channels (LeNet's conv2): 16 output channels
 * per vector, reduced over output pixels p of the chunk's images, for TB consecutive kw taps of
 * one kernel row:
 *   dwp[o * dw_o_stride + kw] = sum over images i, pixels p of
 *                                 gt[i][p][o] * x[i][pix_in[p] + kw * dw]
 * x: the chunk's first padded image at (channel c, kernel row kh); gt: its first transposed
 * gradient [P][ocp] (ocp a multiple of 16, zero past the valid channels). Even and odd pixels
 * accumulate separately (two FMA chains per tap) and are added at the end: a fixed order.
 * Taps past KW read in-bounds slack and are dropped. */
#define MDL_DEFINE_DWP_TILE(TB)                                                                    \
    MDL_ISA_ATTR static void MDL_ISA(mdl_dwp_tile_##TB)(                                           \
        const float *x, ptrdiff_t x_img, const float *gt, ptrdiff_t g_img, ptrdiff_t nimg,         \
        const ptrdiff_t *pix_in, ptrdiff_t P, ptrdiff_t ocp, ptrdiff_t dw, ptrdiff_t kw0,          \
        ptrdiff_t KW, float *dwp, ptrdiff_t dw_o_stride, ptrdiff_t oc_valid)                       \
    {                                                                                              \
        ptrdiff_t toff[TB];                                                                        \
        for (ptrdiff_t t = 0; t < TB; t++)                                                         \
            toff[t] = (ptrdiff_t)(kw0 + t) * dw;                                                   \
        for (ptrdiff_t b = 0; b < ocp / MDL_LANES; b++) {                                          \
            float lanes[TB][MDL_LANES] __attribute__((aligned(64)));                               \
            for (int h = 0; h < MDL_NH; h++) {                                                     \
                MDL_VF acc0[TB], acc1[TB];                                                         \
                for (ptrdiff_t t = 0; t < TB; t++)                                                 \
                    acc0[t] = acc1[t] = (MDL_VF){0};                                               \
                for (ptrdiff_t i = 0; i < nimg; i++) {                                             \
                    const float *xi = x + i * x_img;                                               \
                    const float *gi = gt + i * g_img + b * MDL_LANES + h * MDL_VL;                 \
                    ptrdiff_t p = 0;                                                               \
                    for (; p + 1 < P; p += 2) {                                                    \
                        MDL_VF g0, g1;                                                             \
                        memcpy(&g0, gi + p * ocp, sizeof g0);                                      \
                        memcpy(&g1, gi + (p + 1) * ocp, sizeof g1);                                \
                        const float *x0 = xi + pix_in[p], *x1 = xi + pix_in[p + 1];                \
                        for (ptrdiff_t t = 0; t < TB; t++) {                                       \
                            acc0[t] += g0 * MDL_VSPLAT(x0[toff[t]]);                               \
                            acc1[t] += g1 * MDL_VSPLAT(x1[toff[t]]);                               \
                        }                                                                          \
                    }                                                                              \
                    if (p < P) {                                                                   \
                        MDL_VF g0;                                                                 \
                        memcpy(&g0, gi + p * ocp, sizeof g0);                                      \
                        const float *x0 = xi + pix_in[p];                                          \
                        for (ptrdiff_t t = 0; t < TB; t++)                                         \
                            acc0[t] += g0 * MDL_VSPLAT(x0[toff[t]]);                               \
                    }                                                                              \
                }                                                                                  \
                for (ptrdiff_t t = 0; t < TB; t++) {                                               \
                    const MDL_VF v = acc0[t] + acc1[t];                                            \
                    memcpy(&lanes[t][h * MDL_VL], &v, sizeof v);                                   \
                }                                                                                  \
            }                                                                                      \
            for (ptrdiff_t t = 0; t < TB && kw0 + t < KW; t++)                                     \
                for (ptrdiff_t l = 0; l < MDL_LANES && b * MDL_LANES + l < oc_valid; l++)          \
                    dwp[(b * MDL_LANES + l) * dw_o_stride + kw0 + t] = lanes[t][l];                \
        }                                                                                          \
    }

MDL_DEFINE_DWP_TILE(5)
MDL_DEFINE_DWP_TILE(3)
MDL_DEFINE_DWP_TILE(4)

/* All kw taps of kernel row kh (see the tile); tb = conv_dw_f32_tb(KW). */
MDL_ISA_ATTR static void MDL_ISA(conv_dw_packed_f32)(
    const float *x, ptrdiff_t x_img, const float *gt, ptrdiff_t g_img, ptrdiff_t nimg,
    const ptrdiff_t *pix_in, ptrdiff_t P, ptrdiff_t ocp, ptrdiff_t KW, ptrdiff_t dw, float *dwp,
    ptrdiff_t dw_o_stride, ptrdiff_t oc_valid)
{
    const ptrdiff_t tb = conv_dw_f32_tb(KW);
    for (ptrdiff_t kw0 = 0; kw0 < KW; kw0 += tb) {
        if (tb == 5)
            MDL_ISA(mdl_dwp_tile_5)(x, x_img, gt, g_img, nimg, pix_in, P, ocp, dw, kw0, KW, dwp,
                                    dw_o_stride, oc_valid);
        else if (tb == 3)
            MDL_ISA(mdl_dwp_tile_3)(x, x_img, gt, g_img, nimg, pix_in, P, ocp, dw, kw0, KW, dwp,
                                    dw_o_stride, oc_valid);
        else
            MDL_ISA(mdl_dwp_tile_4)(x, x_img, gt, g_img, nimg, pix_in, P, ocp, dw, kw0, KW, dwp,
                                    dw_o_stride, oc_valid);
    }
}

/* db[o] = sum over the chunk's images and pixels of gt[i][p][o], o < oc_valid (vector order). */
MDL_ISA_ATTR static void MDL_ISA(conv_db_packed_f32)(const float *gt, ptrdiff_t g_img, ptrdiff_t nimg,
                                                     ptrdiff_t P, ptrdiff_t ocp, float *db,
                                                     ptrdiff_t oc_valid)
{
    for (ptrdiff_t b = 0; b < ocp / MDL_LANES; b++) {
        MDL_VF acc[MDL_NH] = {0};
        for (ptrdiff_t i = 0; i < nimg; i++) {
            for (ptrdiff_t p = 0; p < P; p++) {
                MDL_VF v[MDL_NH];
                MDL_BLOCK_LOAD(v, gt + i * g_img + p * ocp + b * MDL_LANES);
                for (int h = 0; h < MDL_NH; h++)
                    acc[h] += v[h];
            }
        }
        float lanes[MDL_LANES] __attribute__((aligned(64)));
        memcpy(lanes, acc, sizeof lanes);
        for (ptrdiff_t l = 0; l < MDL_LANES && b * MDL_LANES + l < oc_valid; l++)
            db[b * MDL_LANES + l] = lanes[l];
    }
}

/* gt[p][o] = g[o][p] for o < OC (0 where mask[o][p] <= 0, when mask != NULL), and 0 for
 * OC <= o < ocp: one image's output gradient transposed for the channel-packed weight gradient. */
MDL_ISA_ATTR static void MDL_ISA(conv_transpose_grad_f32)(const float *g, const float *mask,
                                                          ptrdiff_t OC, ptrdiff_t P, ptrdiff_t ocp, float *gt)
{
    for (ptrdiff_t p = 0; p < P; p++)
        for (ptrdiff_t o = OC; o < ocp; o++)
            gt[p * ocp + o] = 0.0f;
    for (ptrdiff_t o = 0; o < OC; o++) {
        const float *go = g + o * P;
        const float *mo = mask ? mask + o * P : NULL;
        ptrdiff_t p = 0;
        for (; p + MDL_LANES <= P; p += MDL_LANES) {
            MDL_VF v[MDL_NH];
            MDL_BLOCK_LOAD(v, go + p);
            if (mo) {
                MDL_VF m[MDL_NH];
                MDL_BLOCK_LOAD(m, mo + p);
                for (int h = 0; h < MDL_NH; h++) {
                    const MDL_VI keep = ~(m[h] <= (MDL_VF){0});
                    v[h] = (MDL_VF)((MDL_VI)v[h] & keep);
                }
            }
            float lanes[MDL_LANES] __attribute__((aligned(64)));
            memcpy(lanes, v, sizeof lanes);
            for (ptrdiff_t l = 0; l < MDL_LANES; l++)
                gt[(p + l) * ocp + o] = lanes[l];
        }
        for (; p < P; p++)
            gt[p * ocp + o] = (mo != NULL && mo[p] <= 0) ? 0.0f : go[p];
    }
}

/* Input gradient of a stride-1 undilated convolution for MDL_LANES (16) images at once, one
 * image per lane: dxT[c][ih][iw][l] = the sum over kh, then kw, then oc (in that order) of
 * w[oc][c][kh][kw] * gyT[oc][ih + ph - kh][iw + pw - kw][l] over the taps whose output pixel
 * exists. gyT: [OC][OH][OW][16]; wpk: conv._pack_weights(w, CONV_DX_IMAGES_CB, flip),
 * [ceil(C / CB)][OC][KH * KW][CB] with tap (KH - 1 - kh) * KW + KW - 1 - kw, zero past C.
 * Every multiply-add is a useful one: the row-vector kernel on the zero-padded output gradient
 * spends most of its lanes on padding when the kernel is large next to the image (LeNet's
 * conv2: 5x5 taps over a 10x10 gradient padded by 4). */
MDL_ISA_ATTR static void MDL_ISA(conv_dx_images_f32)(const float *gyT, const float *wpk,
                                                     float *dxT, ptrdiff_t C, ptrdiff_t OC,
                                                     ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t KH,
                                                     ptrdiff_t KW, ptrdiff_t H, ptrdiff_t W,
                                                     ptrdiff_t ph, ptrdiff_t pw)
{
    enum { CB = CONV_DX_IMAGES_CB };
    const ptrdiff_t T = KH * KW, plane = OH * OW * MDL_LANES;
    for (ptrdiff_t cb = 0; cb * CB < C; cb++) {
        const int nc = C - cb * CB < CB ? (int)(C - cb * CB) : CB;
        const float *wb = wpk + cb * OC * T * CB;
        for (ptrdiff_t ih = 0; ih < H; ih++) {
            /* The taps kh with an output row: 0 <= ih + ph - kh < OH. */
            const ptrdiff_t kh0 = ih + ph - OH + 1 > 0 ? ih + ph - OH + 1 : 0;
            const ptrdiff_t kh1 = ih + ph + 1 < KH ? ih + ph + 1 : KH;
            for (ptrdiff_t iw = 0; iw < W; iw++) {
                const ptrdiff_t kw0 = iw + pw - OW + 1 > 0 ? iw + pw - OW + 1 : 0;
                const ptrdiff_t kw1 = iw + pw + 1 < KW ? iw + pw + 1 : KW;
                MDL_VF acc[CB][MDL_NH];
                for (int j = 0; j < CB; j++)
                    for (int h = 0; h < MDL_NH; h++)
                        acc[j][h] = (MDL_VF){0};
                /* oc innermost: the tap loops' trip counts vary from pixel to pixel near the
                 * borders, OC's never does (a short loop of varying length mispredicts its
                 * exit every time). */
                for (ptrdiff_t kh = kh0; kh < kh1; kh++) {
                    for (ptrdiff_t kw = kw0; kw < kw1; kw++) {
                        const float *gk = gyT + ((ih + ph - kh) * OW + iw + pw - kw) * MDL_LANES;
                        const float *wk = wb + ((KH - 1 - kh) * KW + KW - 1 - kw) * CB;
                        for (ptrdiff_t oc = 0; oc < OC; oc++) {
                            MDL_VF g[MDL_NH];
                            MDL_BLOCK_LOAD(g, gk + oc * plane);
                            for (int j = 0; j < CB; j++) {
                                /* broadcast, exact */
                                const MDL_VF wj = wk[oc * T * CB + j] - (MDL_VF){0};
                                for (int h = 0; h < MDL_NH; h++)
                                    acc[j][h] += wj * g[h];
                            }
                        }
                    }
                }
                for (int j = 0; j < nc; j++)
                    MDL_BLOCK_STORE(dxT + (((cb * CB + j) * H + ih) * W + iw) * MDL_LANES,
                                    acc[j]);
            }
        }
    }
}

/* gt[q][l] = g[l * per_image + q] for the nimg (<= 16) images l, 0 where mask (same layout,
 * when not NULL) is <= 0, as ReLU's backward; lanes nimg .. 15 zero. In blocks of 64 values
 * per image, whose 4 KiB of gt stay in L1 while the 16 images pass. */
MDL_ISA_ATTR static void MDL_ISA(conv_images_gather_f32)(const float *g, const float *mask,
                                                         ptrdiff_t per_image, ptrdiff_t nimg,
                                                         float *gt)
{
    for (ptrdiff_t q0 = 0; q0 < per_image; q0 += 64) {
        const ptrdiff_t q1 = q0 + 64 < per_image ? q0 + 64 : per_image;
        for (ptrdiff_t l = 0; l < MDL_LANES; l++) {
            const float *gl = g + l * per_image, *ml = mask ? mask + l * per_image : NULL;
            if (l >= nimg)
                for (ptrdiff_t q = q0; q < q1; q++)
                    gt[q * MDL_LANES + l] = 0.0f;
            else if (ml)
                for (ptrdiff_t q = q0; q < q1; q++)
                    gt[q * MDL_LANES + l] = ml[q] <= 0 ? 0.0f : gl[q];
            else
                for (ptrdiff_t q = q0; q < q1; q++)
                    gt[q * MDL_LANES + l] = gl[q];
        }
    }
}

/* out[l * per_image + q] = t[q][l] for the nimg (<= 16) images l, in blocks as the gather. */
MDL_ISA_ATTR static void MDL_ISA(conv_images_scatter_f32)(const float *t, ptrdiff_t per_image,
                                                          ptrdiff_t nimg, float *out)
{
    for (ptrdiff_t q0 = 0; q0 < per_image; q0 += 64) {
        const ptrdiff_t q1 = q0 + 64 < per_image ? q0 + 64 : per_image;
        for (ptrdiff_t l = 0; l < nimg; l++)
            for (ptrdiff_t q = q0; q < q1; q++)
                out[l * per_image + q] = t[q * MDL_LANES + l];
    }
}

#undef MDL_KEEP_IN_REGISTER
#undef MDL_PACKED_BIAS_LANES
