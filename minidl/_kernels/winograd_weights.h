/* Winograd weight transforms (minidl/backends/winograd.py): U = G g G^T per 3x3 kernel g and
 * its adjoint grad_w = G^T dU G, G (n x 3), n <= 6, in float64 rounded once to float32.
 *
 * Every result is a sum over G's non-zero coefficients only, in a fixed order, started from
 * 0.0: ((0.0 + c0 x0) + c1 x1) + ...  Skipping zeros keeps a +-Inf tap where G reads it (as
 * the exact transform does) instead of 0 * Inf = NaN everywhere; the leading 0.0 + turns a
 * -0 sum into +0, as the scalar loops this replaces did, so their results are kept bit for bit.
 *
 * The (row, column) pairs of kernels are processed WINO_WPAIRS at a time, the pair being the
 * lane of GCC vectors of two doubles (one SSE2 register on the baseline target the module is
 * built for; nothing here carries a target attribute, so no a * b + c is contracted into an
 * FMA). A pair's results are the same expressions in whichever block and lane it falls:
 * results do not depend on the blocking or on which thread runs a block. */
#ifndef MINIDL_WINOGRAD_WEIGHTS_H
#define MINIDL_WINOGRAD_WEIGHTS_H

#include <stddef.h>
#include <string.h>

/* Pairs per block: the adjoint's intermediates (36 + 18 + 9 rows of 32 doubles) take 16 KB of
 * L1. 16 and 64 pairs measured 0-20% slower (2026-12-03, EPYC Zen 4). */
#define WINO_WPAIRS 32

/* G in float64 with, per row, the columns of its non-zero entries in column order, and per
 * column the rows of its non-zero entries in row order. */
typedef struct {
    int n;
    double g[6][3];
    int row_nz[6];
    int row_col[6][3];
    int col_nz[3];
    int col_row[3][6];
} wino_coeffs;

/* Two pairs' doubles: one SSE2 register on the baseline target. */
typedef double wino_d2 __attribute__((vector_size(16)));
/* Their floats: converted by cvtps2pd / cvtpd2ps, two at a time. */
typedef float wino_f2 __attribute__((vector_size(8)));

#define WINO_WH (WINO_WPAIRS / 2)

/* v = the `count` floats at src, zeros past them. */
static inline void wino_load(wino_d2 *v, const float *src, int count)
{
    if (count == WINO_WPAIRS) {
        for (int h = 0; h < WINO_WH; h++) {
            wino_f2 f;
            memcpy(&f, src + 2 * h, sizeof f);
            v[h] = __builtin_convertvector(f, wino_d2);
        }
        return;
    }
    for (int h = 0; h < WINO_WH; h++)
        v[h] = (wino_d2){2 * h < count ? src[2 * h] : 0.0f,
                         2 * h + 1 < count ? src[2 * h + 1] : 0.0f};
}

/* The first `count` doubles of v, rounded to float, at dst. */
static inline void wino_store(float *dst, const wino_d2 *v, int count)
{
    for (int h = 0; h < WINO_WH; h++) {
        const wino_f2 f = __builtin_convertvector(v[h], wino_f2);
        if (2 * h + 1 < count)
            memcpy(dst + 2 * h, &f, sizeof f);
        else if (2 * h < count)
            dst[2 * h] = f[0];
    }
}

/* out[h] = 0.0 + c[0] s[0][h] + ... + c[nz - 1] s[nz - 1][h], added left to right, for the
 * WINO_WH vectors h of a block; nz <= 6. One case per term count keeps the sum in registers. */
static inline void wino_wsum(wino_d2 *restrict out, int nz, const double *c,
                             const wino_d2 *const *s)
{
    const wino_d2 z = {0.0, 0.0};
#define WINO_C(q) const wino_d2 c##q = {c[q], c[q]}
#define WINO_T(q) + c##q * s[q][h]
    switch (nz) {
    case 0:
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z;
        break;
    case 1: {
        WINO_C(0);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0);
        break;
    }
    case 2: {
        WINO_C(0); WINO_C(1);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0) WINO_T(1);
        break;
    }
    case 3: {
        WINO_C(0); WINO_C(1); WINO_C(2);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0) WINO_T(1) WINO_T(2);
        break;
    }
    case 4: {
        WINO_C(0); WINO_C(1); WINO_C(2); WINO_C(3);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0) WINO_T(1) WINO_T(2) WINO_T(3);
        break;
    }
    case 5: {
        WINO_C(0); WINO_C(1); WINO_C(2); WINO_C(3); WINO_C(4);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0) WINO_T(1) WINO_T(2) WINO_T(3) WINO_T(4);
        break;
    }
    default: {
        WINO_C(0); WINO_C(1); WINO_C(2); WINO_C(3); WINO_C(4); WINO_C(5);
        for (int h = 0; h < WINO_WH; h++)
            out[h] = z WINO_T(0) WINO_T(1) WINO_T(2) WINO_T(3) WINO_T(4) WINO_T(5);
        break;
    }
    }
#undef WINO_C
#undef WINO_T
}

/* U for the `count` (<= WINO_WPAIRS) pairs p0 .. p0 + count - 1 of u (n*n, A, B), pair
 * p = a B + b. w (OC, C, 3, 3) with (A, B) = (OC, C): pair (a, b) is w[a, b]; with flip,
 * (A, B) = (C, OC) and pair (a, b) is w[b, a] with its taps reversed (the input gradient's
 * kernel). */
static void wino_weight_block(const float *w, ptrdiff_t A, ptrdiff_t B, int flip,
                              const wino_coeffs *cf, ptrdiff_t p0, int count, float *u)
{
    wino_d2 tap[9][WINO_WH];
    wino_d2 t[6][3][WINO_WH];
    wino_d2 r[WINO_WH];
    /* Sized for wino_wsum's largest case; entries past a sum's terms are never read. */
    double c[6] = {0};
    const wino_d2 *s[6] = {0};
    const int n = cf->n;
    const ptrdiff_t plane = A * B;
    /* Each lane's kernel; lanes past count compute on zeros and are never stored. */
    static const float zeros[9];
    const float *src[WINO_WPAIRS];
    ptrdiff_t a = p0 / B, b = p0 - a * B;
    for (int v = 0; v < WINO_WPAIRS; v++) {
        src[v] = v >= count ? zeros : flip ? w + (b * A + a) * 9 : w + (a * B + b) * 9;
        if (++b == B) {
            b = 0;
            a++;
        }
    }
    for (int k = 0; k < 9; k++) {
        const int kk = flip ? 8 - k : k;
        for (int h = 0; h < WINO_WH; h++)
            tap[k][h] = (wino_d2){src[2 * h][kk], src[2 * h + 1][kk]};
    }
    /* t = G g: t[i][k] sums G[i][j] g[j][k] over row i's non-zero columns j. */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            for (int q = 0; q < cf->row_nz[i]; q++) {
                c[q] = cf->g[i][cf->row_col[i][q]];
                s[q] = tap[cf->row_col[i][q] * 3 + k];
            }
            wino_wsum(t[i][k], cf->row_nz[i], c, s);
        }
    /* U[i][l] = (t G^T)[i][l] sums t[i][j] G[l][j] over row l's non-zero columns j. */
    for (int i = 0; i < n; i++)
        for (int l = 0; l < n; l++) {
            for (int q = 0; q < cf->row_nz[l]; q++) {
                c[q] = cf->g[l][cf->row_col[l][q]];
                s[q] = t[i][cf->row_col[l][q]];
            }
            wino_wsum(r, cf->row_nz[l], c, s);
            wino_store(u + (i * n + l) * plane + p0, r, count);
        }
}

/* grad_w (OC, C, 3, 3) = G^T dU G for the `count` (<= WINO_WPAIRS) pairs p0 .. p0 + count - 1
 * of du (n*n, OC, C), pair p = oc C + c. */
static void wino_weight_adjoint_block(const float *du, ptrdiff_t plane, const wino_coeffs *cf,
                                      ptrdiff_t p0, int count, float *grad_w)
{
    wino_d2 d[36][WINO_WH];
    wino_d2 t[3][6][WINO_WH];
    wino_d2 r[9][WINO_WH];
    /* Sized for wino_wsum's largest case; entries past a sum's terms are never read. */
    double c[6] = {0};
    const wino_d2 *s[6] = {0};
    const int n = cf->n;
    for (int e = 0; e < n * n; e++)
        wino_load(d[e], du + e * plane + p0, count);
    /* t = G^T dU: t[j][l] sums G[i][j] dU[i][l] over column j's non-zero rows i. */
    for (int j = 0; j < 3; j++)
        for (int l = 0; l < n; l++) {
            for (int q = 0; q < cf->col_nz[j]; q++) {
                c[q] = cf->g[cf->col_row[j][q]][j];
                s[q] = d[cf->col_row[j][q] * n + l];
            }
            wino_wsum(t[j][l], cf->col_nz[j], c, s);
        }
    /* grad_w[j][k] = (t G)[j][k] sums t[j][i] G[i][k] over column k's non-zero rows i. */
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 3; k++) {
            for (int q = 0; q < cf->col_nz[k]; q++) {
                c[q] = cf->g[cf->col_row[k][q]][k];
                s[q] = t[j][cf->col_row[k][q]];
            }
            wino_wsum(r[j * 3 + k], cf->col_nz[k], c, s);
        }
    float *dst = grad_w + p0 * 9;
    for (int h = 0; h < WINO_WH; h++)
        for (int jk = 0; jk < 9; jk++) {
            const wino_f2 f = __builtin_convertvector(r[jk][h], wino_f2);
            if (2 * h < count)
                dst[2 * h * 9 + jk] = f[0];
            if (2 * h + 1 < count)
                dst[(2 * h + 1) * 9 + jk] = f[1];
        }
}

#endif
