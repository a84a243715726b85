/* Products with a handful of rows and a transposed B, as x @ W^T at batch 1: every output
 * element is the dot product of a row of A and a row of B, both contiguous, so nothing needs
 * packing (the packed path would copy all of W to use it for one row).
 *
 * Each dot sums 16 lanes in two 8-wide accumulators, folds them in a fixed order and adds the
 * tail last: the order depends on k alone, never on threads. */
#ifndef MINIDL_GEMM_DOTS_H
#define MINIDL_GEMM_DOTS_H

#include <stddef.h>
#include <string.h>

#include "platform.h"

#if defined(__GNUC__)
typedef float minidl_v8f __attribute__((vector_size(32)));
typedef double minidl_v4d __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) float minidl_sdot(const float *x, const float *y,
                                                               ptrdiff_t k) {
    minidl_v8f s0 = {0}, s1 = {0}, x0, x1, y0, y1;
    ptrdiff_t p = 0;
    for (; p + 16 <= k; p += 16) {
        memcpy(&x0, x + p, sizeof x0);
        memcpy(&x1, x + p + 8, sizeof x1);
        memcpy(&y0, y + p, sizeof y0);
        memcpy(&y1, y + p + 8, sizeof y1);
        s0 += x0 * y0;
        s1 += x1 * y1;
    }
    s0 += s1;
    float total = ((s0[0] + s0[4]) + (s0[1] + s0[5])) + ((s0[2] + s0[6]) + (s0[3] + s0[7]));
    for (; p < k; ++p) total += x[p] * y[p];
    return total;
}

static inline __attribute__((always_inline)) double minidl_ddot(const double *x,
                                                                const double *y, ptrdiff_t k) {
    minidl_v4d s0 = {0}, s1 = {0}, x0, x1, y0, y1;
    ptrdiff_t p = 0;
    for (; p + 8 <= k; p += 8) {
        memcpy(&x0, x + p, sizeof x0);
        memcpy(&x1, x + p + 4, sizeof x1);
        memcpy(&y0, y + p, sizeof y0);
        memcpy(&y1, y + p + 4, sizeof y1);
        s0 += x0 * y0;
        s1 += x1 * y1;
    }
    s0 += s1;
    double total = (s0[0] + s0[2]) + (s0[1] + s0[3]);
    for (; p < k; ++p) total += x[p] * y[p];
    return total;
}
#else
static inline float minidl_sdot(const float *x, const float *y, ptrdiff_t k) {
    float total = 0;
    for (ptrdiff_t p = 0; p < k; ++p) total += x[p] * y[p];
    return total;
}

static inline double minidl_ddot(const double *x, const double *y, ptrdiff_t k) {
    double total = 0;
    for (ptrdiff_t p = 0; p < k; ++p) total += x[p] * y[p];
    return total;
}
#endif

/* Four dots of x with rows y, y + ldy, ... at once: eight independent accumulators hide the
 * FMA latency that serializes a single dot. Each result is summed exactly as minidl_sdot. */
#if defined(__GNUC__)
static inline __attribute__((always_inline)) void minidl_sdot4(const float *x, const float *y,
                                                               ptrdiff_t ldy, ptrdiff_t k,
                                                               float *out) {
    minidl_v8f s0[4] = {{0}}, s1[4] = {{0}}, x0, x1, y0, y1;
    ptrdiff_t p = 0;
    for (; p + 16 <= k; p += 16) {
        memcpy(&x0, x + p, sizeof x0);
        memcpy(&x1, x + p + 8, sizeof x1);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
            memcpy(&y0, y + r * ldy + p, sizeof y0);
            memcpy(&y1, y + r * ldy + p + 8, sizeof y1);
            s0[r] += x0 * y0;
            s1[r] += x1 * y1;
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
        minidl_v8f t = s0[r] + s1[r];
        float total = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
        for (ptrdiff_t q = p; q < k; ++q) total += x[q] * y[r * ldy + q];
        out[r] = total;
    }
}
#else
static inline void minidl_sdot4(const float *x, const float *y, ptrdiff_t ldy, ptrdiff_t k,
                                float *out) {
    for (int r = 0; r < 4; ++r) out[r] = minidl_sdot(x, y + r * ldy, k);
}
#endif

/* c[i, j] = alpha * dot(a[i, :], b[j, :]) + beta * c[i, j]; c is not read when beta == 0. */
MINIDL_MULTIVERSION
static void minidl_sgemm_dots(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                              ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta, float *c,
                              ptrdiff_t ldc) {
    float d[4];
    for (ptrdiff_t i = 0; i < m; ++i) {
        ptrdiff_t j = 0;
        for (; j + 4 <= n; j += 4) {
            minidl_sdot4(a + i * lda, b + j * ldb, ldb, k, d);
            for (int r = 0; r < 4; ++r) {
                float v = alpha * d[r];
                c[i * ldc + j + r] = beta == 0 ? v : v + beta * c[i * ldc + j + r];
            }
        }
        for (; j < n; ++j) {
            float v = alpha * minidl_sdot(a + i * lda, b + j * ldb, k);
            c[i * ldc + j] = beta == 0 ? v : v + beta * c[i * ldc + j];
        }
    }
}

MINIDL_MULTIVERSION
static void minidl_dgemm_dots(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                              const double *a, ptrdiff_t lda, const double *b, ptrdiff_t ldb,
                              double beta, double *c, ptrdiff_t ldc) {
    for (ptrdiff_t i = 0; i < m; ++i)
        for (ptrdiff_t j = 0; j < n; ++j) {
            double d = alpha * minidl_ddot(a + i * lda, b + j * ldb, k);
            c[i * ldc + j] = beta == 0 ? d : d + beta * c[i * ldc + j];
        }
}

#endif
