/* Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms for float32 stride-1 3x3 convolution
 * (Lavin & Gray 2016). F(2x2) is described here; F(4x4) (wino4_*: 6x6 patches at
 * (4 ty - ph, 4 tx - pw), 36 positions e = 6 i + j, 4x4 output tiles, B^T, A^T and G of
 * minidl/backends/winograd.py) has whole-plane transforms, and transforms over the planes of one
 * channel in several images (wino4_*_images_f32) for small images.
 *
 * A 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A, d the 4x4 input patch at (2 ty - ph,
 * 2 tx - pw), g the 3x3 kernel, "." the element-wise product over the 16 positions e = 4 i + j.
 * The element-wise products summed over channels are 16 GEMMs over blocks of tiles
 * (winograd.pyx); this header holds the per-tile transforms, each over a run of consecutive
 * tiles tx0 <= tx < tx1 of one tile row ty of one plane, with the tile as the innermost
 * (vectorized) loop:
 *   input:    V[e][t] = (B^T d_t B)[e]              (16 values from a 4x4 patch)
 *   output:   y_t     = A^T M_t A (+ bias, ReLU)    (2x2 values from 16)
 *   gradient: dM_t    = A dy_t A^T                  (16 values from a 2x2 output gradient)
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1].
 * Rows and columns are first split into even and odd columns ("deinterleaved", zero outside the
 * plane), so that the vector loops read contiguous memory: tile tx's columns 2 tx + {0, 1, 2, 3}
 * are even[tx], odd[tx], even[tx + 1], odd[tx + 1].
 *
 * The output transforms return 1 when a value they computed (before the ReLU) is +-Inf or NaN,
 * else 0: the transforms subtract, so an infinity can come out NaN (Inf - Inf), and a NaN input
 * reaches every output of the tiles whose patches hold it, where the exact result has NaN only
 * in the 3x3 windows that hold it. The caller recomputes such a result by a direct method.
 *
 * Every output value is computed by the same expression whatever the run it falls in, so the
 * results do not depend on how tiles are grouped into blocks or shared between threads. Reads
 * and writes stay inside the planes for any sizes, padding (negative too) and tile range. */
#ifndef MINIDL_WINOGRAD_KERNELS_H
#define MINIDL_WINOGRAD_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "mdl_isa.h"

static inline ptrdiff_t wino_round16(ptrdiff_t n) { return (n + 15) / 16 * 16; }

/* Scratch floats the transforms need for runs of up to `tiles` tiles: 4 rows split into even
 * and odd columns, each rounded up to whole vectors (wino_split_row). */
static inline ptrdiff_t wino_scratch_floats(ptrdiff_t tiles)
{
    return 8 * wino_round16(tiles + 1);
}

/* Scratch floats of the whole-plane transforms for th x tw tiles: the input's 4 column phases
 * of 2 th + 2 rows (the output and gradient need less). */
static inline ptrdiff_t wino_plane_scratch_floats(ptrdiff_t th, ptrdiff_t tw)
{
    return 8 * (th + 1) * tw;
}

/* Floats between the column phases of the F(4x4) transforms: 4 * quarter rows of tw tiles and
 * the 16 floats a whole-vector store may write past the last row (wino4_phase_rows). */
static inline ptrdiff_t wino4_qplane(ptrdiff_t quarter, ptrdiff_t tw)
{
    return 4 * quarter * tw + 16;
}

/* Scratch floats of the F(4x4) whole-plane transforms for th x tw tiles: the input's 6 column
 * phases of 4 th + 4 rows (the output's 16 values per tile and the gradient's 4 phases of
 * 4 th rows need less). */
static inline ptrdiff_t wino4_plane_scratch_floats(ptrdiff_t th, ptrdiff_t tw)
{
    return 6 * wino4_qplane(th + 1, tw);
}

/* Scratch floats of the F(4x4) transforms over several images (wino4_*_images_f32) for
 * `tiles` tiles in all: the input's 36 gathered patch values per tile, rows of whole vectors. */
static inline ptrdiff_t wino4_images_scratch_floats(ptrdiff_t tiles)
{
    return 36 * wino_round16(tiles);
}

#define MDL_ISA_BODY "winograd_kernels_isa.h"
#include "mdl_isa_instances.h"

/* V[e * estride + (tx - tx0)] for tiles [tx0, tx1) of tile row ty of plane x (H x W). */
static void wino_input_f32(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t ph,
                           ptrdiff_t pw, ptrdiff_t ty, ptrdiff_t tx0, ptrdiff_t tx1, float *V,
                           ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino_input_f32, (x, H, W, ph, pw, ty, tx0, tx1, V, estride, scratch));
}

/* Output rows 2 ty, 2 ty + 1 and columns [2 tx0, 2 tx1) (those inside OH x OW) of plane out
 * from M[e * estride + (tx - tx0)], plus bias, then ReLU when relu. */
static int wino_output_f32(const float *M, ptrdiff_t estride, ptrdiff_t ty, ptrdiff_t tx0,
                           ptrdiff_t tx1, float *out, ptrdiff_t OH, ptrdiff_t OW, float bias,
                           int relu, float *scratch)
{
    return MDL_DISPATCH(wino_output_f32,
                        (M, estride, ty, tx0, tx1, out, OH, OW, bias, relu, scratch));
}

/* V[e * estride + t], t = ty * tw + tx, for every tile of plane x (H x W). */
static void wino_input_plane_f32(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t ph,
                                 ptrdiff_t pw, ptrdiff_t th, ptrdiff_t tw, float *V,
                                 ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino_input_plane_f32, (x, H, W, ph, pw, th, tw, V, estride, scratch));
}

/* Plane out (OH x OW) from M[e * estride + t] of its th * tw tiles, plus bias, ReLU. */
static int wino_output_plane_f32(const float *M, ptrdiff_t estride, ptrdiff_t th, ptrdiff_t tw,
                                 float *out, ptrdiff_t OH, ptrdiff_t OW, float bias, int relu,
                                 float *scratch)
{
    return MDL_DISPATCH(wino_output_plane_f32,
                        (M, estride, th, tw, out, OH, OW, bias, relu, scratch));
}

/* dM[e * estride + t] for every tile from the output gradient g (OH x OW). */
static void wino_grad_plane_f32(const float *g, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t th,
                                ptrdiff_t tw, float *dM, ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino_grad_plane_f32, (g, OH, OW, th, tw, dM, estride, scratch));
}

/* dM[e * estride + (tx - tx0)] from the output gradient g (OH x OW; zero past its edges). */
static void wino_grad_f32(const float *g, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t ty,
                          ptrdiff_t tx0, ptrdiff_t tx1, float *dM, ptrdiff_t estride,
                          float *scratch)
{
    MDL_DISPATCH(wino_grad_f32, (g, OH, OW, ty, tx0, tx1, dM, estride, scratch));
}

/* F(4x4): V[e * estride + t] (e < 36) for every tile of plane x (H x W). */
static void wino4_input_plane_f32(const float *x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t ph,
                                  ptrdiff_t pw, ptrdiff_t th, ptrdiff_t tw, float *V,
                                  ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino4_input_plane_f32, (x, H, W, ph, pw, th, tw, V, estride, scratch));
}

/* F(4x4): plane out (OH x OW) from M[e * estride + t] of its th * tw tiles, plus bias, ReLU. */
static int wino4_output_plane_f32(const float *M, ptrdiff_t estride, ptrdiff_t th,
                                  ptrdiff_t tw, float *out, ptrdiff_t OH, ptrdiff_t OW,
                                  float bias, int relu, float *scratch)
{
    return MDL_DISPATCH(wino4_output_plane_f32,
                        (M, estride, th, tw, out, OH, OW, bias, relu, scratch));
}

/* F(4x4): dM[e * estride + t] (e < 36) for every tile from the output gradient g (OH x OW). */
static void wino4_grad_plane_f32(const float *g, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t th,
                                 ptrdiff_t tw, float *dM, ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino4_grad_plane_f32, (g, OH, OW, th, tw, dM, estride, scratch));
}

/* F(4x4): V[e * estride + t] (e < 36), t = k th tw + ty tw + tx, for the tiles of the nimg
 * planes x + k img (H x W). */
static void wino4_input_images_f32(const float *x, ptrdiff_t img, ptrdiff_t nimg, ptrdiff_t H,
                                   ptrdiff_t W, ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t th,
                                   ptrdiff_t tw, float *V, ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino4_input_images_f32,
                 (x, img, nimg, H, W, ph, pw, th, tw, V, estride, scratch));
}

/* F(4x4): planes out + k img (OH x OW, k < nimg) from M[e * estride + t] (+ bias, ReLU). */
static int wino4_output_images_f32(const float *M, ptrdiff_t estride, ptrdiff_t nimg,
                                    ptrdiff_t th, ptrdiff_t tw, float *out, ptrdiff_t img,
                                    ptrdiff_t OH, ptrdiff_t OW, float bias, int relu,
                                    float *scratch)
{
    return MDL_DISPATCH(wino4_output_images_f32,
                        (M, estride, nimg, th, tw, out, img, OH, OW, bias, relu, scratch));
}

/* F(4x4): dM[e * estride + t] (e < 36) from the nimg output gradient planes g + k img. */
static void wino4_grad_images_f32(const float *g, ptrdiff_t img, ptrdiff_t nimg, ptrdiff_t OH,
                                  ptrdiff_t OW, ptrdiff_t th, ptrdiff_t tw, float *dM,
                                  ptrdiff_t estride, float *scratch)
{
    MDL_DISPATCH(wino4_grad_images_f32, (g, img, nimg, OH, OW, th, tw, dM, estride, scratch));
}

#endif
