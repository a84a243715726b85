/* Inner loops of the batch-normalization kernels over one (channel, chunk) work item, compiled
 * once per instruction set (batchnorm_kernels_isa.h, through mdl_isa.h) and called on the
 * widest one this CPU has. */
#ifndef MINIDL_BATCHNORM_KERNELS_H
#define MINIDL_BATCHNORM_KERNELS_H

#include <math.h>
#include <stddef.h>

#include "mdl_isa.h"

#define MDL_BN_LANES 32
/* Elements per piece of a masked row (a multiple of MDL_BN_LANES; 1 KB of float32). */
#define MDL_BN_PIECE 256

/* The lanes' sum in a fixed pairwise order. */
static inline double mdl_bn_fold(const double *acc)
{
    double t[MDL_BN_LANES];
    for (int j = 0; j < MDL_BN_LANES; j++)
        t[j] = acc[j];
    for (int w = MDL_BN_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++)
            t[j] = t[j] + t[j + w];
    return t[0];
}

/* Channel c's normalization y = x * scale[c] + shift[c] from its mean and biased variance:
 * invstd = 1 / sqrt(var + eps) in the input's precision (f32: float32 arithmetic, as PyTorch
 * does), scale = invstd * w[c], shift = b[c] - mean * scale (w, b NULL: 1 and 0). Not inlined:
 * the forward kernels and the inference fold (batch_norm_affine) run this one compiled copy, so
 * they cannot round differently. */
__attribute__((noinline)) static void mdl_bn_affine(ptrdiff_t c, double mean, double var,
                                                    const double *w, const double *b,
                                                    double eps, int f32, double *invstd,
                                                    double *scale, double *shift)
{
    const double inv = f32 ? (double)(1.0f / sqrtf((float)var + (float)eps))
                           : 1.0 / sqrt(var + eps);
    const double s = w ? inv * w[c] : inv;
    invstd[c] = inv;
    scale[c] = s;
    shift[c] = b ? b[c] - mean * s : -(mean * s);
}

#define MDL_ISA_BODY "batchnorm_kernels_isa.h"
#include "mdl_isa_instances.h"

#define MDL_BN_WRAPPERS(T, SFX)                                                                  \
    static inline double mdl_bn_sum_##SFX(const T *p, ptrdiff_t rows, ptrdiff_t stride,          \
                                          ptrdiff_t L)                                           \
    {                                                                                            \
        return MDL_DISPATCH(mdl_bn_sum_##SFX, (p, rows, stride, L));                             \
    }                                                                                            \
    static inline double mdl_bn_sqdev_##SFX(const T *p, ptrdiff_t rows, ptrdiff_t stride,        \
                                            ptrdiff_t L, double m)                               \
    {                                                                                            \
        return MDL_DISPATCH(mdl_bn_sqdev_##SFX, (p, rows, stride, L, m));                        \
    }                                                                                            \
    static inline void mdl_bn_dots_##SFX(const T *g, const T *x, int relu, T amul, T aadd,       \
                                         ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t L,          \
                                         double m, double *sum_g, double *sum_gx)                \
    {                                                                                            \
        MDL_DISPATCH(mdl_bn_dots_##SFX,                                                          \
                     (g, x, relu, amul, aadd, rows, stride, L, m, sum_g, sum_gx));               \
    }                                                                                            \
    static inline void mdl_bn_apply_##SFX(const T *x, T *y, ptrdiff_t rows, ptrdiff_t stride,    \
                                          ptrdiff_t L, T mul, T add, int relu)                   \
    {                                                                                            \
        MDL_DISPATCH(mdl_bn_apply_##SFX, (x, y, rows, stride, L, mul, add, relu));               \
    }                                                                                            \
    static inline void mdl_bn_input_grad_##SFX(const T *g, const T *x, int relu, T amul,         \
                                               T aadd, T *gx, ptrdiff_t rows, ptrdiff_t stride,  \
                                               ptrdiff_t L, T m, T mg, T proj, T mul,            \
                                               int batch_stats)                                  \
    {                                                                                            \
        MDL_DISPATCH(mdl_bn_input_grad_##SFX, (g, x, relu, amul, aadd, gx, rows, stride, L, m,  \
                                               mg, proj, mul, batch_stats));                     \
    }

MDL_BN_WRAPPERS(float, f32)
MDL_BN_WRAPPERS(double, f64)

#undef MDL_BN_WRAPPERS

#endif
