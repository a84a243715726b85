/* Direct float32 convolution kernels for stride-1 layers with few channels (LeNet's 1->6 and
 * 6->16 5x5 and the input gradients of such layers), written with GCC vector extensions so that
 * MINIDL_MULTIVERSION compiles each hot function for AVX-512, AVX2 and baseline x86-64.
 *
 * Layout contract (set up by conv.pyx):
 *   A padded input image is C planes of Hp x Wp floats, `plane` = Hp * Wp apart, zero outside the
 *   data, with Hp = OH + (KH - 1) * dh and Wp = NV * 16 + (KW - 1) * dw, NV = ceil(OW / 16).
 *   Output pixel (oh, ow) at tap (kh, kw) reads padded element (oh + kh * dh, ow + kw * dw), so
 *   16 neighbouring output pixels of a row read 16 contiguous floats: one unaligned vector load.
 *   Lanes past OW ("garbage lanes") stay inside their row because of the Wp above.
 *   Tap (kh, kw) of channel c is at c * plane + kh * dh * Wp + kw * dw from the output pixel.
 *
 * Forward tile: OCB output channels x NVT row vectors (16 pixels each) of accumulators held in
 * registers for the whole (channel, tap) loop; each step loads NVT input vectors and broadcasts
 * OCB weights. Weights are packed [C][taps][OCB] (zero past the valid channels).
 *
 * Weight-gradient tile: OCB output channels x TB consecutive kw taps of vector accumulators,
 * reduced over the rows of a fixed chunk of images, then summed across lanes in lane order.
 *
 * Every output element is produced by one call with a fixed summation order, so results do not
 * depend on how the caller splits the work between threads. */
#ifndef MINIDL_CONV_KERNELS_H
#define MINIDL_CONV_KERNELS_H

#include <stddef.h>
#include <string.h>

#include "platform.h"

#define MDL_LANES 16
typedef float mdl_v16f __attribute__((vector_size(64)));
typedef int mdl_v16i __attribute__((vector_size(64)));

/* Helpers are macros, not inline functions: gcc lowers the vector code of an inline function
 * for the baseline target before inlining it into a multiversioned clone, which turned each
 * broadcast into four 128-bit pieces and a trip through the stack. */
#define MDL_LOAD(v, p) memcpy(&(v), (p), sizeof(mdl_v16f))
/* Broadcast. `x - 0` folds to x exactly (x + 0 would turn -0 into +0 and cost an add). */
#define MDL_SPLAT(x) ((x) - (mdl_v16f){0})

/* dst[0 .. count) = (acc + bias), then max(., 0) when relu (NaN -> 0, as the generic kernel). */
#define MDL_STORE_EPILOGUE(dst, acc, bias, relu, count)                                          \
    do {                                                                                         \
        mdl_v16f v_ = (acc) + MDL_SPLAT(bias);                                                   \
        if (relu) {                                                                              \
            mdl_v16i keep_ = v_ > (mdl_v16f){0};                                                 \
            v_ = (mdl_v16f)((mdl_v16i)v_ & keep_);                                               \
        }                                                                                        \
        if ((count) == MDL_LANES) {                                                              \
            memcpy((dst), &v_, sizeof v_);                                                       \
        } else {                                                                                 \
            float tmp_[MDL_LANES] __attribute__((aligned(64)));                                  \
            memcpy(tmp_, &v_, sizeof v_);                                                        \
            for (int i_ = 0; i_ < (count); i_++)                                                 \
                (dst)[i_] = tmp_[i_];                                                            \
        }                                                                                        \
    } while (0)

/* Sum of the 16 lanes of v in lane order, into the float s. */
#define MDL_HSUM(s, v)                                                                           \
    do {                                                                                         \
        float lanes_[MDL_LANES] __attribute__((aligned(64)));                                    \
        memcpy(lanes_, &(v), sizeof lanes_);                                                     \
        (s) = 0.0f;                                                                              \
        for (int l_ = 0; l_ < MDL_LANES; l_++)                                                   \
            (s) += lanes_[l_];                                                                   \
    } while (0)

/* acc[o][j] = sum over steps k of wpk[k * OCB + o] * x[step_off[k] + xoff[j] ..] (16 lanes),
 * a step being one (input channel c, tap kh, kw): step_off[k] = c * plane + tap_off[kh * KW + kw].
 * Then stored through the epilogue to out[o * out_plane + ooff[j]], count[j] lanes. */
#define MDL_DEFINE_FWD_TILE(OCB, NVT)                                                              \
    MINIDL_MULTIVERSION static void mdl_fwd_tile_##OCB##x##NVT(                                    \
        const float *x, const ptrdiff_t *step_off, int nsteps, const float *wpk,                   \
        const ptrdiff_t *xoff, const ptrdiff_t *ooff, const int *count, const float *bias,         \
        int oc_valid, int relu, float *out, ptrdiff_t out_plane)                                   \
    {                                                                                              \
        mdl_v16f acc[OCB][NVT];                                                                    \
        for (int o = 0; o < OCB; o++)                                                              \
            for (int j = 0; j < NVT; j++)                                                          \
                acc[o][j] = (mdl_v16f){0};                                                         \
        const float *xb[NVT];                                                                      \
        for (int j = 0; j < NVT; j++)                                                              \
            xb[j] = x + xoff[j];                                                                   \
        for (int k = 0; k < nsteps; k++) {                                                         \
            const ptrdiff_t off = step_off[k];                                                     \
            const float *wk = wpk + (ptrdiff_t)k * OCB;                                            \
            mdl_v16f xv[NVT];                                                                      \
            for (int j = 0; j < NVT; j++)                                                          \
                MDL_LOAD(xv[j], xb[j] + off);                                                      \
            for (int o = 0; o < OCB; o++) {                                                        \
                mdl_v16f w = MDL_SPLAT(wk[o]);                                                     \
                for (int j = 0; j < NVT; j++)                                                      \
                    acc[o][j] += w * xv[j];                                                        \
            }                                                                                      \
        }                                                                                          \
        for (int o = 0; o < OCB && o < oc_valid; o++)                                              \
            for (int j = 0; j < NVT; j++)                                                          \
                if (count[j] > 0)                                                                  \
                    MDL_STORE_EPILOGUE(out + o * out_plane + ooff[j], acc[o][j],                   \
                                       bias ? bias[o] : 0.0f, relu, count[j]);                     \
    }

MDL_DEFINE_FWD_TILE(8, 2)
MDL_DEFINE_FWD_TILE(6, 2)
MDL_DEFINE_FWD_TILE(4, 4)
MDL_DEFINE_FWD_TILE(1, 8)

/* The OCB (output channels per tile) conv_direct_f32_rows uses for `oc` output channels: the
 * one wasting the fewest padded channels, larger first (fewer input reloads). Callers pack the
 * weights with it. */
static inline int conv_direct_f32_ocb(int oc) {
    static const int choices[4] = {8, 6, 4, 1};
    int best = 8, best_pad = -1;
    for (int i = 0; i < 4; i++) {
        int b = choices[i];
        int padded = (oc + b - 1) / b * b;
        if (best_pad < 0 || padded < best_pad) {
            best = b;
            best_pad = padded;
        }
    }
    return best;
}

/* Output rows [row0, row1) of channels oc0 .. oc0 + oc_valid - 1 (one OCB block) of one image.
 * x: padded image (see top); step_off: the C * KH * KW step offsets (see the tile); wpk: this
 * block's packed weights [C][KH * KW][ocb]; bias: at oc0 or NULL; out: the image's output at
 * channel oc0, planes OH * OW apart. */
static void conv_direct_f32_rows(
    const float *x, ptrdiff_t Wp, const ptrdiff_t *step_off, int nsteps, const float *wpk,
    int ocb, int oc_valid, const float *bias, int relu, float *out, int OH, int OW, int row0,
    int row1)
{
    enum { MAX_NVT = 8 };
    const int NV = (OW + MDL_LANES - 1) / MDL_LANES;
    const int nvt = ocb == 8 ? 2 : ocb == 6 ? 2 : ocb == 4 ? 4 : 8;
    const ptrdiff_t out_plane = (ptrdiff_t)OH * OW;
    const int slots = (row1 - row0) * NV;
    for (int s0 = 0; s0 < slots; s0 += nvt) {
        ptrdiff_t xoff[MAX_NVT], ooff[MAX_NVT];
        int count[MAX_NVT];
        for (int j = 0; j < nvt; j++) {
            /* Past the last slot: recompute the last one and store nothing. */
            int s = s0 + j < slots ? s0 + j : slots - 1;
            int r = row0 + s / NV, v = s % NV;
            int left = OW - v * MDL_LANES;
            xoff[j] = r * Wp + v * MDL_LANES;
            ooff[j] = (ptrdiff_t)r * OW + v * MDL_LANES;
            count[j] = s0 + j < slots ? (left < MDL_LANES ? left : MDL_LANES) : 0;
        }
#define MDL_FWD_CALL(O, N)                                                                       \
    mdl_fwd_tile_##O##x##N(x, step_off, nsteps, wpk, xoff, ooff, count, bias, oc_valid, relu,    \
                           out, out_plane)
        switch (ocb) {
        case 8: MDL_FWD_CALL(8, 2); break;
        case 6: MDL_FWD_CALL(6, 2); break;
        case 4: MDL_FWD_CALL(4, 4); break;
        default: MDL_FWD_CALL(1, 8); break;
        }
#undef MDL_FWD_CALL
    }
}

/* Weight-gradient tile: for taps (kh, kw0 .. kw0 + TB - 1) and OCB output channels,
 *   acc[o][t] = sum over images i < nimg, rows oh, vectors v of
 *               g[i][o][oh][v*16 ..] * x[i][(oh + kh*dh) * Wp + v*16 + (kw0 + t) * dw ..]
 * with g zero in lanes past OW, so garbage lanes add 0 (for finite x). Taps past KW are
 * computed on in-bounds slack and dropped. Result: sum of lanes in lane order, into
 * dw[o * dw_o_stride + kh * KW + kw0 + t]. */
#define MDL_DEFINE_DW_TILE(OCB, TB)                                                              \
    MINIDL_MULTIVERSION static void mdl_dw_tile_##OCB##x##TB(                  \
        const float *x, ptrdiff_t x_img, ptrdiff_t Wp, const float *g, ptrdiff_t g_img,         \
        ptrdiff_t g_plane, int nimg, int OH, int NV, ptrdiff_t row_off, int dw, int kw0,        \
        int KW, float *dwp, ptrdiff_t dw_o_stride, int oc_valid, ptrdiff_t tap_index)           \
    {                                                                                            \
        mdl_v16f acc[OCB][TB];                                                                   \
        for (int o = 0; o < OCB; o++)                                                            \
            for (int t = 0; t < TB; t++)                                                         \
                acc[o][t] = (mdl_v16f){0};                                                       \
        for (int i = 0; i < nimg; i++) {                                                         \
            for (int oh = 0; oh < OH; oh++) {                                                    \
                const float *xr = x + i * x_img + oh * Wp + row_off + (ptrdiff_t)kw0 * dw;       \
                const float *gr = g + i * g_img + (ptrdiff_t)oh * NV * MDL_LANES;                \
                for (int v = 0; v < NV; v++) {                                                   \
                    mdl_v16f gv[OCB], xv[TB];                                                    \
                    for (int o = 0; o < OCB; o++)                                                \
                        MDL_LOAD(gv[o], gr + o * g_plane + v * MDL_LANES);                       \
                    for (int t = 0; t < TB; t++)                                                 \
                        MDL_LOAD(xv[t], xr + v * MDL_LANES + t * dw);                            \
                    for (int o = 0; o < OCB; o++)                                                \
                        for (int t = 0; t < TB; t++)                                             \
                            acc[o][t] += gv[o] * xv[t];                                          \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        for (int o = 0; o < OCB && o < oc_valid; o++) {                                         \
            for (int t = 0; t < TB && kw0 + t < KW; t++) {                                       \
                float s;                                                                         \
                MDL_HSUM(s, acc[o][t]);                                                          \
                dwp[o * dw_o_stride + tap_index + t] = s;                                        \
            }                                                                                    \
        }                                                                                        \
    }

MDL_DEFINE_DW_TILE(4, 5)
MDL_DEFINE_DW_TILE(4, 3)
MDL_DEFINE_DW_TILE(4, 4)
MDL_DEFINE_DW_TILE(3, 5)
MDL_DEFINE_DW_TILE(3, 3)
MDL_DEFINE_DW_TILE(3, 4)

/* Output channels per weight-gradient tile for `oc` channels (fewest padded channels). */
static inline int conv_dw_f32_ocb(int oc) {
    return (oc + 3) / 4 * 4 <= (oc + 2) / 3 * 3 ? 4 : 3;
}

/* kw taps per weight-gradient tile: a divisor of KW where one fits, else 4. */
static inline int conv_dw_f32_tb(int KW) {
    return KW % 5 == 0 ? 5 : KW % 3 == 0 ? 3 : 4;
}

/* Partial weight gradient of one (image chunk, OCB block, input channel c):
 *   dwp[o * dw_o_stride + kh * KW + kw] = sum over the chunk of g (x) x-windows,
 * and, when db != NULL, db[o] = sum of g over the chunk (lane order, then rows).
 * x: the chunk's first padded image at channel c (images x_img apart); g: the chunk's first
 * row-padded output gradient at channel oc0 (planes g_plane = OH * NV * 16 apart, images
 * g_img apart, lanes past OW zero). The padded input needs (TB - 1) * dw + 16 floats of
 * readable slack after its last plane. */
MINIDL_MULTIVERSION
static void conv_dw_f32_chunk(
    const float *x, ptrdiff_t x_img, ptrdiff_t Wp, const float *g, ptrdiff_t g_img,
    ptrdiff_t g_plane, int nimg, int OH, int OW, int KH, int KW, int dh, int dw, int ocb,
    int oc_valid, float *dwp, ptrdiff_t dw_o_stride, float *db)
{
    const int NV = (OW + MDL_LANES - 1) / MDL_LANES;
    const int tb = conv_dw_f32_tb(KW);
    for (int kh = 0; kh < KH; kh++) {
        ptrdiff_t row_off = (ptrdiff_t)kh * dh * Wp;
        for (int kw0 = 0; kw0 < KW; kw0 += tb) {
            ptrdiff_t tap_index = (ptrdiff_t)kh * KW + kw0;
#define MDL_DW_CALL(O, T)                                                                        \
    mdl_dw_tile_##O##x##T(x, x_img, Wp, g, g_img, g_plane, nimg, OH, NV, row_off, dw, kw0, KW,  \
                          dwp, dw_o_stride, oc_valid, tap_index)
            if (ocb == 4) {
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
    if (db != NULL) {
        for (int o = 0; o < oc_valid; o++) {
            mdl_v16f acc = (mdl_v16f){0};
            for (int i = 0; i < nimg; i++) {
                for (ptrdiff_t p = 0; p < (ptrdiff_t)OH * NV; p++) {
                    mdl_v16f v;
                    MDL_LOAD(v, g + i * g_img + o * g_plane + p * MDL_LANES);
                    acc += v;
                }
            }
            MDL_HSUM(db[o], acc);
        }
    }
}

/* Sum of p[0 .. n): 16 lane-wise partial sums, then added in lane order (fixed order). */
MINIDL_MULTIVERSION
static float conv_sum_f32(const float *p, ptrdiff_t n)
{
    mdl_v16f acc = (mdl_v16f){0};
    ptrdiff_t i = 0;
    for (; i + MDL_LANES <= n; i += MDL_LANES) {
        mdl_v16f v;
        MDL_LOAD(v, p + i);
        acc += v;
    }
    float s;
    MDL_HSUM(s, acc);
    for (; i < n; i++)
        s += p[i];
    return s;
}

/* dst (Hp x Wp, row pitch Wp) = src (H x W) shifted down by top and right by left (either may
 * be negative: cropping), zero elsewhere. With mask != NULL (a ReLU output shaped like src),
 * elements whose mask is not > 0 count as zero: the fused ReLU's backward. */
static void conv_pad_plane_f32(const float *src, int H, int W, const float *mask,
                               float *dst, int Hp, int Wp, int top, int left)
{
    for (int i = 0; i < Hp; i++) {
        float *d = dst + (ptrdiff_t)i * Wp;
        int si = i - top;
        if (si < 0 || si >= H) {
            memset(d, 0, sizeof(float) * Wp);
            continue;
        }
        const float *s = src + (ptrdiff_t)si * W;
        /* Columns j of dst holding src[j - left], clipped to both rows. */
        int j0 = left < 0 ? 0 : left < Wp ? left : Wp;
        int j1 = W + left < Wp ? W + left : Wp;
        if (j1 < j0)
            j1 = j0;
        memset(d, 0, sizeof(float) * j0);
        if (mask == NULL) {
            memcpy(d + j0, s + (j0 - left), sizeof(float) * (j1 - j0));
        } else {
            const float *m = mask + (ptrdiff_t)si * W;
            for (int j = j0; j < j1; j++)
                d[j] = m[j - left] > 0 ? s[j - left] : 0.0f;
        }
        memset(d + j1, 0, sizeof(float) * (Wp - j1));
    }
}

#endif
