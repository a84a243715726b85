/* Direct float32 convolution kernels for stride-1 layers with few channels (LeNet's 1->6 and
 * 6->16 5x5 and the input gradients of such layers), written with GCC vector extensions so that
 * mdl_isa.h compiles each hot function for AVX-512, AVX2 and baseline x86-64 and picks one at
 * run time.
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
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "mdl_isa.h"

/* Floats per block of the layouts (padded rows, packed channels): one AVX-512 register, MDL_NH
 * registers of the narrower instances (mdl_isa.h). */
#define MDL_LANES 16

/* Helpers are macros, not inline functions: gcc lowers the vector code of an inline function
 * for the baseline target before inlining it into a function with a wider target, which turned
 * each broadcast into four 128-bit pieces and a trip through the stack. */

/* dst[0 .. count) = (v + bias), then max(., 0) when relu (NaN stays NaN, as torch.relu), for a
 * register v of MDL_VL lanes and 0 < count <= MDL_VL. */
#define MDL_STORE_EPILOGUE(dst, v, bias, relu, count)                                            \
    do {                                                                                         \
        MDL_VF v_ = (v) + MDL_VSPLAT(bias);                                                      \
        if (relu) {                                                                              \
            MDL_VI keep_ = ~(v_ < (MDL_VF){0});                                                  \
            v_ = (MDL_VF)((MDL_VI)v_ & keep_);                                                   \
        }                                                                                        \
        if ((count) == MDL_VL)                                                                   \
            memcpy((dst), &v_, sizeof v_);                                                       \
        else                                                                                     \
            MDL_STORE_PARTIAL((dst), v_, (count));                                               \
    } while (0)

/* Sum of the 16 floats of a block (an array of MDL_NH registers, or 16 floats) in lane order,
 * into the float s. */
#define MDL_HSUM(s, v)                                                                           \
    do {                                                                                         \
        float lanes_[MDL_LANES] __attribute__((aligned(64)));                                    \
        memcpy(lanes_, (v), sizeof lanes_);                                                      \
        (s) = 0.0f;                                                                              \
        for (ptrdiff_t l_ = 0; l_ < MDL_LANES; l_++)                                             \
            (s) += lanes_[l_];                                                                   \
    } while (0)

/* Output channels per weight-gradient tile for `oc` channels (fewest padded channels). */
static inline int conv_dw_f32_ocb(ptrdiff_t oc) {
    return (oc + 3) / 4 * 4 <= (oc + 2) / 3 * 3 ? 4 : 3;
}

/* kw taps per weight-gradient tile: a divisor of KW where one fits, else 4. */
static inline int conv_dw_f32_tb(ptrdiff_t KW) {
    return KW % 5 == 0 ? 5 : KW % 3 == 0 ? 3 : 4;
}

#define MDL_ISA_BODY "conv_kernels_isa.h"
#include "mdl_isa_instances.h"

/* The dispatchers are static inline: program.pyx includes this header for a few of them, and
 * an unused plain static function is a warning there. */

/* Output rows [row0, row1) of one OCB block of output channels of one image (see the
 * template's conv_direct_f32_rows), on the widest instruction set this CPU has. */
static inline void conv_direct_f32_rows(
    const float *x, ptrdiff_t Wp, const ptrdiff_t *step_off, ptrdiff_t nsteps, ptrdiff_t block_steps,
    const float *wpk, ptrdiff_t ocb, ptrdiff_t oc_valid, const float *bias, int relu, float *out, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t row0, ptrdiff_t row1)
{
    MDL_DISPATCH(conv_direct_f32_rows, (x, Wp, step_off, nsteps, block_steps, wpk, ocb, oc_valid,
                                        bias, relu, out, OH, OW, row0, row1));
}

/* Output pixels [p0, p1) of one block of nb * 16 output channels of one image, channel-packed
 * (see the template's conv_packed_f32_pixels). */
static inline void conv_packed_f32_pixels(
    const float *x, ptrdiff_t Wp, ptrdiff_t sh, ptrdiff_t sw, const ptrdiff_t *step_off, ptrdiff_t nsteps,
    const float *wpk, ptrdiff_t nb, ptrdiff_t oc_valid, const float *bias, int relu, float *out, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t p0, ptrdiff_t p1, ptrdiff_t row_kw)
{
    MDL_DISPATCH(conv_packed_f32_pixels, (x, Wp, sh, sw, step_off, nsteps, wpk, nb, oc_valid, bias,
                                          relu, out, OH, OW, p0, p1, row_kw));
}

/* Partial weight gradient of one (image chunk, OCB block, input channel); see the template. */
static inline void conv_dw_f32_chunk(
    const float *x, ptrdiff_t x_img, ptrdiff_t Wp, ptrdiff_t phase, ptrdiff_t sh, ptrdiff_t sw,
    const float *g, ptrdiff_t g_img, ptrdiff_t g_plane, ptrdiff_t nimg, ptrdiff_t OH,
    ptrdiff_t OW, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t ocb,
    ptrdiff_t oc_valid, float *dwp, ptrdiff_t dw_o_stride, float *db)
{
    MDL_DISPATCH(conv_dw_f32_chunk, (x, x_img, Wp, phase, sh, sw, g, g_img, g_plane, nimg, OH,
                                     OW, KH, KW, dh, dw, ocb, oc_valid, dwp, dw_o_stride, db));
}

/* Channel-packed weight gradient of one (image chunk, input channel, kernel row); see the
 * template. */
static inline void conv_dw_packed_f32(const float *x, ptrdiff_t x_img, const float *gt, ptrdiff_t g_img,
                               ptrdiff_t nimg, const ptrdiff_t *pix_in, ptrdiff_t P, ptrdiff_t ocp, ptrdiff_t KW,
                               ptrdiff_t dw, float *dwp, ptrdiff_t dw_o_stride, ptrdiff_t oc_valid)
{
    MDL_DISPATCH(conv_dw_packed_f32, (x, x_img, gt, g_img, nimg, pix_in, P, ocp, KW, dw, dwp,
                                      dw_o_stride, oc_valid));
}

/* Bias gradient of one image chunk from the transposed gradient; see the template. */
static inline void conv_db_packed_f32(const float *gt, ptrdiff_t g_img, ptrdiff_t nimg, ptrdiff_t P, ptrdiff_t ocp,
                               float *db, ptrdiff_t oc_valid)
{
    MDL_DISPATCH(conv_db_packed_f32, (gt, g_img, nimg, P, ocp, db, oc_valid));
}

/* One image's output gradient transposed to [P][ocp] (ReLU-masked); see the template. */
static inline void conv_transpose_grad_f32(const float *g, const float *mask, ptrdiff_t OC, ptrdiff_t P,
                                    ptrdiff_t ocp, float *gt)
{
    MDL_DISPATCH(conv_transpose_grad_f32, (g, mask, OC, P, ocp, gt));
}

/* Sum of p[0 .. n) in a fixed order; see the template. */
static inline float conv_sum_f32(const float *p, ptrdiff_t n)
{
    return MDL_DISPATCH(conv_sum_f32, (p, n));
}

/* Zero-padded (and optionally ReLU-masked) copy of one plane, split into stride phases; see the
 * template. */
static inline void conv_pad_phases_f32(const float *src, ptrdiff_t H, ptrdiff_t W, const float *mask,
                                float *dst, ptrdiff_t Hp, ptrdiff_t Wp, ptrdiff_t top,
                                ptrdiff_t left, ptrdiff_t sh, ptrdiff_t sw)
{
    MDL_DISPATCH(conv_pad_phases_f32, (src, H, W, mask, dst, Hp, Wp, top, left, sh, sw));
}

/* One phase of a strided input gradient put back in place; see the template. */
static inline void conv_unphase_f32(const float *src, ptrdiff_t Ha, ptrdiff_t Wb, float *dst,
                             ptrdiff_t H, ptrdiff_t W, ptrdiff_t qi, ptrdiff_t qj, ptrdiff_t sh,
                             ptrdiff_t sw)
{
    MDL_DISPATCH(conv_unphase_f32, (src, Ha, Wb, dst, H, W, qi, qj, sh, sw));
}

#endif
