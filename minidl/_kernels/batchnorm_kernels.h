/* Inner loops of the batch-normalization kernels: sums over one contiguous row of a channel.
 *
 * Each reduction keeps eight independent double accumulators, lane j summing elements
 * j, j + 8, j + 16, ... and the lanes are added in a fixed order at the end. The summation
 * order is thus a function of the row length only (never of threads or alignment), and the
 * independent lanes let gcc vectorize the loop without -ffast-math (no reassociation needed).
 * float32 rows are summed in double: a 2-million-element channel sum keeps ~1e-10 relative
 * error instead of float32's ~1e-4. */
#ifndef MINIDL_BATCHNORM_KERNELS_H
#define MINIDL_BATCHNORM_KERNELS_H

#include <stddef.h>

#define MDL_BN_LANES 8

static inline double mdl_bn_fold(const double *acc)
{
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Sum of p[0 .. n). */
#define MDL_BN_SUM(name, T)                                                                \
    static inline double name(const T *restrict p, ptrdiff_t n)                            \
    {                                                                                      \
        double acc[MDL_BN_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};                               \
        ptrdiff_t i = 0;                                                                   \
        for (; i + MDL_BN_LANES <= n; i += MDL_BN_LANES)                                   \
            for (int j = 0; j < MDL_BN_LANES; j++)                                         \
                acc[j] += (double)p[i + j];                                                \
        for (int j = 0; i < n; i++, j++)                                                   \
            acc[j] += (double)p[i];                                                        \
        return mdl_bn_fold(acc);                                                           \
    }

/* Sum of (p[i] - m)^2 over [0, n). */
#define MDL_BN_SQDEV(name, T)                                                              \
    static inline double name(const T *restrict p, ptrdiff_t n, double m)                  \
    {                                                                                      \
        double acc[MDL_BN_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};                               \
        ptrdiff_t i = 0;                                                                   \
        for (; i + MDL_BN_LANES <= n; i += MDL_BN_LANES)                                   \
            for (int j = 0; j < MDL_BN_LANES; j++) {                                       \
                double d = (double)p[i + j] - m;                                           \
                acc[j] += d * d;                                                           \
            }                                                                              \
        for (int j = 0; i < n; i++, j++) {                                                 \
            double d = (double)p[i] - m;                                                   \
            acc[j] += d * d;                                                               \
        }                                                                                  \
        return mdl_bn_fold(acc);                                                           \
    }

/* *sum_g += sum of g[i]; *sum_gx += sum of g[i] * (x[i] - m), over [0, n). */
#define MDL_BN_DOTS(name, T)                                                               \
    static inline void name(const T *restrict g, const T *restrict x, ptrdiff_t n,        \
                            double m, double *sum_g, double *sum_gx)                       \
    {                                                                                      \
        double ag[MDL_BN_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};                                \
        double ax[MDL_BN_LANES] = {0, 0, 0, 0, 0, 0, 0, 0};                                \
        ptrdiff_t i = 0;                                                                   \
        for (; i + MDL_BN_LANES <= n; i += MDL_BN_LANES)                                   \
            for (int j = 0; j < MDL_BN_LANES; j++) {                                       \
                double gv = (double)g[i + j];                                              \
                ag[j] += gv;                                                               \
                ax[j] += gv * ((double)x[i + j] - m);                                      \
            }                                                                              \
        for (int j = 0; i < n; i++, j++) {                                                 \
            double gv = (double)g[i];                                                      \
            ag[j] += gv;                                                                   \
            ax[j] += gv * ((double)x[i] - m);                                              \
        }                                                                                  \
        *sum_g += mdl_bn_fold(ag);                                                         \
        *sum_gx += mdl_bn_fold(ax);                                                        \
    }

MDL_BN_SUM(mdl_bn_sum_f32, float)
MDL_BN_SUM(mdl_bn_sum_f64, double)
MDL_BN_SQDEV(mdl_bn_sqdev_f32, float)
MDL_BN_SQDEV(mdl_bn_sqdev_f64, double)
MDL_BN_DOTS(mdl_bn_dots_f32, float)
MDL_BN_DOTS(mdl_bn_dots_f64, double)

#endif
