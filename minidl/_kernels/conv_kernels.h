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

/* v = v + b (a register), then max(., 0) when relu (NaN stays NaN, as torch.relu). */
#define MDL_BIAS_RELU(v, b, relu)                                                                \
    do {                                                                                         \
        (v) = (v) + (b);                                                                         \
        if (relu) {                                                                              \
            MDL_VI keep_ = ~((v) < (MDL_VF){0});                                                 \
            (v) = (MDL_VF)((MDL_VI)(v) & keep_);                                                 \
        }                                                                                        \
    } while (0)

/* dst[0 .. count) = (v + bias), then max(., 0) when relu, for a register v of MDL_VL lanes and
 * 0 < count <= MDL_VL. */
#define MDL_STORE_EPILOGUE(dst, v, bias, relu, count)                                            \
    do {                                                                                         \
        MDL_VF v_ = (v);                                                                         \
        MDL_BIAS_RELU(v_, MDL_VSPLAT(bias), relu);                                               \
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

/* kw taps per weight-gradient tile: a divisor of KW where one fits, else 4. */
static inline int conv_dw_f32_tb(ptrdiff_t KW) {
    return KW % 5 == 0 ? 5 : KW % 3 == 0 ? 3 : 4;
}

/* Output channels per weight-gradient tile for `oc` channels of OH x OW and a KW-wide kernel:
 * 8 with AVX-512 and 3 taps per tile where they fill whole tiles and an image's 8 gradient
 * planes stay within 16 KiB of L1 (24 accumulators: each x vector loaded feeds 8 multiply-adds,
 * not 4; ResNet's 16->32 stride 2 at 16 x 16, one thread, hot, 1.06-1.08x; at 32 x 32 the
 * planes left L1 and 16->16 ran 0.91-0.93x), else 4 or 3, whichever pads fewer channels. The
 * tile size changes no accumulator's order: the same bits on every instruction set. */
static inline int conv_dw_f32_ocb(ptrdiff_t oc, ptrdiff_t KW, ptrdiff_t OH, ptrdiff_t OW) {
    const ptrdiff_t plane_bytes = OH * ((OW + MDL_LANES - 1) / MDL_LANES) * MDL_LANES * 4;
    if (mdl_isa_level() == 2 && conv_dw_f32_tb(KW) == 3 && oc % 8 == 0 &&
        8 * plane_bytes <= 16384)
        return 8;
    return (oc + 3) / 4 * 4 <= (oc + 2) / 3 * 3 ? 4 : 3;
}

/* 16-channel vectors per tile of conv_packed_f32_pixels for oc output channels: 1 up to 16
 * channels; 4 (24 accumulators, each broadcast input feeding 4 multiply-adds, not 2) with
 * AVX-512 where 64-channel blocks pad oc no further than 32-channel ones (ResNet-20's 32->64
 * stride 2 at 16x16, one thread, 1.05x); else 2. AVX2's 16 registers would hold 4 vectors of
 * only 3 pixels, slower than 2 x 6 (a 4 x 3 tile measured 0.83x there). The tile changes no
 * accumulator's order. */
static inline int conv_packed_nb(ptrdiff_t oc) {
    if (oc <= 16)
        return 1;
    return mdl_isa_level() == 2 && (oc + 63) / 64 * 64 == (oc + 31) / 32 * 32 ? 4 : 2;
}

/* Input channels per pass of conv_dx_images_f32 (its accumulators: CB blocks of 16 floats). */
#define CONV_DX_IMAGES_CB 6

/* The output columns ow in [*lo, *hi), of [0, OW), whose input column ow * sw + iw0 lies in
 * [0, W) (sw > 0): im2col, col2im and the generic kernels in every dtype and instance. */
static inline void conv_col_range(ptrdiff_t iw0, ptrdiff_t sw, ptrdiff_t W, ptrdiff_t OW,
                                  ptrdiff_t *lo, ptrdiff_t *hi)
{
    const ptrdiff_t h = W - 1 - iw0 < 0 ? 0 : (W - 1 - iw0) / sw + 1;
    *lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
    *hi = h < OW ? h : OW;
}

/* One (c, kh, kw) row block of an image's im2col (C x H x W): its valid columns [lo, hi)
 * (conv_col_range), the output rows [rlo, rhi) that meet the image (the others are zero
 * padding: rlo clamped to OH for a padding beyond the image, rhi = rlo when no column is
 * valid), and xc, x's index of (row kh * dh - ph, column kw * dw - pw) in channel c, negative in
 * the padding (an integer, so that no pointer before x is formed). im2col and col2im both. */
typedef struct {
    ptrdiff_t lo, hi, rlo, rhi, xc;
} conv_col_block;

static inline conv_col_block conv_col_block_of(ptrdiff_t c, ptrdiff_t kh, ptrdiff_t kw,
                                               ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH,
                                               ptrdiff_t OW, ptrdiff_t sh, ptrdiff_t sw,
                                               ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t dh,
                                               ptrdiff_t dw)
{
    conv_col_block b;
    const ptrdiff_t ih0 = kh * dh - ph, iw0 = kw * dw - pw;
    conv_col_range(iw0, sw, W, OW, &b.lo, &b.hi);
    conv_col_range(ih0, sh, H, OH, &b.rlo, &b.rhi);
    b.rlo = b.rlo < OH ? b.rlo : OH;
    if (b.hi <= b.lo || b.rhi < b.rlo)
        b.rhi = b.rlo;
    b.xc = c * H * W + ih0 * W + iw0;
    return b;
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
    ptrdiff_t OW, ptrdiff_t row0, ptrdiff_t row1, const ptrdiff_t *clip)
{
    MDL_DISPATCH(conv_direct_f32_rows, (x, Wp, step_off, nsteps, block_steps, wpk, ocb, oc_valid,
                                        bias, relu, out, OH, OW, row0, row1, clip));
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

/* grad_x of images n0 .. n0 + nimg - 1 (nimg <= 16) of a stride-1 undilated convolution,
 * one image per lane: their output gradients g (N, OC, OH, OW) (ReLU-masked by mask when not
 * NULL) gathered into scratch, conv_dx_images_f32 (see the template), and the result scattered
 * to gx (N, C, H, W). scratch: conv_dx_images_scratch floats. Every image's value is the same
 * whichever group and lane it falls in. */
static inline ptrdiff_t conv_dx_images_scratch(ptrdiff_t C, ptrdiff_t OC, ptrdiff_t OH,
                                               ptrdiff_t OW, ptrdiff_t H, ptrdiff_t W)
{
    return 16 * (OC * OH * OW + C * H * W);
}

static inline void conv_dx_images_group(const float *g, const float *mask, const float *wpk,
                                        float *gx, float *scratch, ptrdiff_t n0, ptrdiff_t nimg,
                                        ptrdiff_t C, ptrdiff_t OC, ptrdiff_t OH, ptrdiff_t OW,
                                        ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t H, ptrdiff_t W,
                                        ptrdiff_t ph, ptrdiff_t pw)
{
    const ptrdiff_t g_img = OC * OH * OW, x_img = C * H * W;
    float *gyT = scratch, *dxT = scratch + 16 * g_img;
    MDL_DISPATCH(conv_images_gather_f32, (g + n0 * g_img, mask ? mask + n0 * g_img : NULL,
                                          g_img, nimg, gyT));
    MDL_DISPATCH(conv_dx_images_f32, (gyT, wpk, dxT, C, OC, OH, OW, KH, KW, H, W, ph, pw));
    MDL_DISPATCH(conv_images_scatter_f32, (dxT, x_img, nimg, gx + n0 * x_img));
}

/* One image's im2col, float32 (see the template's conv_im2col_f32). */
static inline void conv_im2col_f32(const float *x, float *col, ptrdiff_t C, ptrdiff_t H,
                                   ptrdiff_t W, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t OH,
                                   ptrdiff_t OW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                                   ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dw)
{
    MDL_DISPATCH(conv_im2col_f32, (x, col, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw));
}

/* One image's col2im, float32 (see the template's conv_col2im_f32). */
static inline void conv_col2im_f32(const float *col, float *x, ptrdiff_t C, ptrdiff_t H,
                                   ptrdiff_t W, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t OH,
                                   ptrdiff_t OW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                                   ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dw)
{
    MDL_DISPATCH(conv_col2im_f32, (col, x, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw));
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

/* Slice `part` of `parts` of an image's lines fetched into L2: its input (img floats at src,
 * and its ReLU mask unless NULL) and its output (oimg floats at out, which the stores would
 * otherwise read from memory first). A work item that pads image by image calls it for the
 * next image before each of its kernel calls, so that the fetch overlaps the compute (a burst
 * of a whole image's lines would stall on the outstanding misses): cold caches, ResNet's
 * 16->32 stride-2 forward 1.05-1.09x, the MNIST example's 1->32 1.07-1.11x. Always inlined:
 * gcc takes a function that only prefetches for one without side effects and may delete a call
 * to an out-of-line copy (winograd_kernels_isa.h met it). */
static inline __attribute__((always_inline)) void conv_prefetch_image(
    const float *src, const float *mask, const float *out, ptrdiff_t img, ptrdiff_t oimg,
    ptrdiff_t part, ptrdiff_t parts)
{
    const float *p[3] = {src, mask, out};
    const ptrdiff_t n[3] = {img, img, oimg};
    for (int k = 0; k < 3; k++) {
        if (p[k] == NULL)
            continue;
        const char *c = (const char *)p[k];
        const ptrdiff_t bytes = n[k] * (ptrdiff_t)sizeof(float);
        for (ptrdiff_t b = part * bytes / parts / 64 * 64; b < (part + 1) * bytes / parts;
             b += 64) {
            /* The read/write hint must be a constant at any optimization level (-O1: ASan). */
            if (k == 2)
                __builtin_prefetch(c + b, 1, 2);
            else
                __builtin_prefetch(c + b, 0, 2);
        }
    }
}

/* Images per weight-gradient partial sum: fixed, so that the batch reduction (partials
 * combined in chunk order by the caller) gives the same bits for any thread count. */
#define CONV_DW_CHUNK 8

/* The row-vector weight gradient of a groups-1 float32 conv (conv.pyx's
 * _direct_backward_weight and program.pyx's conv_dw_rows run it alike). The caller fills the
 * operands and the geometry, conv_dw_rows_plan the layout, conv_dw_rows_items the work split;
 * then every item (conv_dw_rows_item, any thread, any order) writes its own slices of
 * partial_w (chunks, OC, C * KH * KW) and partial_b (chunks, OC, or NULL). */
typedef struct {
    const float *x;    /* (N, C, H, W) */
    const float *g;    /* output gradient (N, OC, OH, OW) */
    const float *mask; /* the fused ReLU's output like g (g counts as zero where <= 0), or NULL */
    float *partial_w;
    float *partial_b;
    ptrdiff_t N, C, H, W, OC, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw;
    /* Layout: x padded into sh * sw phase planes of Hp x Wp (plane floats per channel); g in
     * rows of nv 16-lane vectors (g_plane floats per channel, ocp = OC rounded up to ocb-channel
     * tiles), copied (copy_g) unless g is already laid out so. scratch_floats: one worker's
     * copies of one chunk. */
    ptrdiff_t Hp, Wp, plane, nv, g_plane, ocb, ocp, copy_g, scratch_floats;
    /* Work split: items = chunks x parts, a part a range of the chunk's (block, channel). */
    ptrdiff_t nchunks, parts;
} conv_dw_rows_job;

static inline void conv_dw_rows_plan(conv_dw_rows_job *a, int masked)
{
    a->Hp = a->OH + (a->KH - 1) * a->dh / a->sh;
    a->Wp = (a->OW + MDL_LANES - 1) / MDL_LANES * MDL_LANES + (a->KW - 1) * a->dw / a->sw;
    a->plane = a->sh * a->sw * a->Hp * a->Wp;
    a->nv = (a->OW + MDL_LANES - 1) / MDL_LANES;
    a->g_plane = a->OH * a->nv * MDL_LANES;
    a->ocb = conv_dw_f32_ocb(a->OC, a->KW, a->OH, a->OW);
    a->ocp = (a->OC + a->ocb - 1) / a->ocb * a->ocb;
    /* An unmasked gradient whose rows fill whole vectors and whose channels fill whole tiles
     * is read in place: its copy took a third of the 3->16 stem's time at 32x32. */
    a->copy_g = masked || a->ocp != a->OC || a->OW % MDL_LANES != 0;
    a->scratch_floats = CONV_DW_CHUNK * (a->C * a->plane + (a->copy_g ? a->ocp * a->g_plane : 0));
    a->nchunks = (a->N + CONV_DW_CHUNK - 1) / CONV_DW_CHUNK;
    a->parts = 1;
}

/* Items of the job on n_threads threads (sets a->parts). A chunk is one item where there are
 * chunks enough (each worker pads a chunk into its own scratch and reduces it while it is in
 * its core's caches); with fewer than two per thread, chunks are cut into parts that each pad
 * the channels they read, so that a small batch still spreads over the threads. */
static inline ptrdiff_t conv_dw_rows_items(conv_dw_rows_job *a, int n_threads)
{
    const ptrdiff_t pairs = a->ocp / a->ocb * a->C;
    ptrdiff_t parts = (2 * (ptrdiff_t)n_threads + a->nchunks - 1) / a->nchunks;
    if (n_threads <= 1 || parts < 1)
        parts = 1;
    a->parts = parts < pairs ? parts : pairs;
    return a->nchunks * a->parts;
}

/* Item `item`: pads what its (block, channel) pairs read of its chunk into scratch
 * (a->scratch_floats floats of the calling worker's own), then one conv_dw_f32_chunk per pair. */
static inline void conv_dw_rows_item(const conv_dw_rows_job *a, ptrdiff_t item, float *scratch)
{
    const ptrdiff_t C = a->C, T = a->KH * a->KW, CT = C * T, pairs = a->ocp / a->ocb * C;
    const ptrdiff_t chunk = item / a->parts, part = item % a->parts;
    const ptrdiff_t q0 = part * pairs / a->parts, q1 = (part + 1) * pairs / a->parts;
    if (q0 >= q1)
        return;
    const ptrdiff_t n0 = chunk * CONV_DW_CHUNK;
    const ptrdiff_t nimg = a->N - n0 < CONV_DW_CHUNK ? a->N - n0 : CONV_DW_CHUNK;
    /* Blocks [b0, b1) and channels [c0, c1) that the pairs [q0, q1) read. */
    const ptrdiff_t b0 = q0 / C, b1 = (q1 - 1) / C + 1;
    const ptrdiff_t c0 = b1 - b0 == 1 ? q0 % C : 0, c1 = b1 - b0 == 1 ? (q1 - 1) % C + 1 : C;
    const ptrdiff_t HW = a->H * a->W, OHW = a->OH * a->OW;
    float *xs = scratch;
    for (ptrdiff_t i = 0; i < nimg; i++)
        for (ptrdiff_t c = c0; c < c1; c++)
            conv_pad_phases_f32(a->x + ((n0 + i) * C + c) * HW, a->H, a->W, NULL,
                                xs + (i * C + c) * a->plane, a->Hp, a->Wp, a->ph, a->pw, a->sh,
                                a->sw);
    const float *g = a->g + n0 * a->OC * OHW;
    ptrdiff_t g_img = a->OC * OHW;
    if (a->copy_g) {
        float *gs = scratch + CONV_DW_CHUNK * C * a->plane;
        for (ptrdiff_t i = 0; i < nimg; i++)
            for (ptrdiff_t o = b0 * a->ocb; o < b1 * a->ocb; o++) {
                float *dst = gs + (i * a->ocp + o) * a->g_plane;
                if (o < a->OC) {
                    const ptrdiff_t at = ((n0 + i) * a->OC + o) * OHW;
                    conv_pad_phases_f32(a->g + at, a->OH, a->OW,
                                        a->mask != NULL ? a->mask + at : NULL, dst, a->OH,
                                        a->nv * MDL_LANES, 0, 0, 1, 1);
                } else {
                    memset(dst, 0, sizeof(float) * (size_t)a->g_plane);
                }
            }
        g = gs;
        g_img = a->ocp * a->g_plane;
    }
    for (ptrdiff_t q = q0; q < q1; q++) {
        const ptrdiff_t blk = q / C, c = q % C, oc0 = blk * a->ocb;
        conv_dw_f32_chunk(xs + c * a->plane, C * a->plane, a->Wp, a->Hp * a->Wp, a->sh, a->sw,
                          g + oc0 * a->g_plane, g_img, a->g_plane, nimg, a->OH, a->OW, a->KH,
                          a->KW, a->dh, a->dw, a->ocb, a->OC - oc0 < a->ocb ? a->OC - oc0 : a->ocb,
                          a->partial_w + (chunk * a->OC + oc0) * CT + c * T, CT,
                          a->partial_b != NULL && c == 0 ? a->partial_b + chunk * a->OC + oc0
                                                         : NULL);
    }
}

/* A parallel loop over the job's items (the thread pool's task signature): args is a
 * conv_dw_rows_run, whose scratch holds a->scratch_floats floats per worker. */
typedef struct {
    conv_dw_rows_job a;
    float *scratch;
} conv_dw_rows_run;

static inline void conv_dw_rows_task(void *args, ptrdiff_t begin, ptrdiff_t end, int worker)
{
    const conv_dw_rows_run *run = (const conv_dw_rows_run *)args;
    for (ptrdiff_t item = begin; item < end; item++)
        conv_dw_rows_item(&run->a, item, run->scratch + worker * run->a.scratch_floats);
}

/* A strided input gradient's phases put back in place; see the template. */
static inline void conv_unphase_f32(const float *base, const ptrdiff_t *off,
                                    const ptrdiff_t *size, const ptrdiff_t *pitch, ptrdiff_t p0,
                                    ptrdiff_t p1, ptrdiff_t H, ptrdiff_t W, ptrdiff_t sh,
                                    ptrdiff_t sw, float *dst)
{
    MDL_DISPATCH(conv_unphase_f32, (base, off, size, pitch, p0, p1, H, W, sh, sw, dst));
}

#endif
