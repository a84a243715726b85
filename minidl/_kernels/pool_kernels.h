/* Vectorized 2x2 stride-2 max pooling (no padding, no dilation, floor-sized output): LeNet's
 * pooling layers and most CNNs'. Written with GCC vector extensions (lane compares and
 * shuffles) and compiled once per instruction set through mdl_isa.h; helpers are macros because
 * gcc lowers an inline function's vector code for the baseline target before inlining it. */
#ifndef MINIDL_POOL_KERNELS_H
#define MINIDL_POOL_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "mdl_isa.h"

#define MDL_ISA_BODY "pool_kernels_isa.h"
#include "mdl_isa_instances.h"

/* Output rows b0 .. b1 - 1 of a 2x2 stride-2 max pool and their window codes (see the
 * template), on the widest instruction set this CPU has. */
static inline void max_pool_2x2_f32(const float *x, float *out, unsigned char *code,
                                    ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                    ptrdiff_t b0, ptrdiff_t b1)
{
    MDL_DISPATCH(max_pool_2x2_f32, (x, out, code, H, W, OH, OW, b0, b1));
}

/* The input-gradient rows of output rows b0 .. b1 - 1 from the codes of max_pool_2x2_f32. */
static inline void max_unpool_2x2_f32(const float *g, const unsigned char *code, float *gx,
                                      ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                      ptrdiff_t b0, ptrdiff_t b1)
{
    MDL_DISPATCH(max_unpool_2x2_f32, (g, code, gx, H, W, OH, OW, b0, b1));
}

/* The position of the first of index[0 .. n - 1] outside [-1, limit), or -1 if none. */
static inline ptrdiff_t first_bad_index(const long long *index, ptrdiff_t n, ptrdiff_t limit)
{
    return MDL_DISPATCH(first_bad_index, (index, n, limit));
}

#endif
