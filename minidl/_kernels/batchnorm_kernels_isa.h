/* Per-instruction-set body of batchnorm_kernels.h (see mdl_isa.h): included once per ISA with
 * MDL_ISA_ATTR and MDL_ISA(name) defined. No include guard on purpose.
 *
 * A work item is `rows` rows of L contiguous elements, `stride` elements apart (one channel of
 * consecutive images). Each reduction keeps MDL_BN_LANES double accumulators: lane j sums
 * element i of every row for i % MDL_BN_LANES == j, over the row's whole MDL_BN_LANES-blocks,
 * rows in order; the elements past a row's last whole block go to one more accumulator, in
 * order. The lanes are folded pairwise in a fixed tree at the end. The summation order is thus
 * a function of (rows, L) only, never of threads or alignment, and the independent lanes let
 * gcc vectorize the loops without -ffast-math (no reassociation needed): 32 lanes are 4 AVX-512
 * registers of doubles, enough chains to hide the adds' latency (8 lanes, one register, ran at
 * half the speed on one thread). float32 is summed in double: a 2-million-element channel sum keeps
 * ~1e-10 relative error instead of float32's ~1e-4.
 *
 * Where the instance has FMA (x86-64-v3 and v4), gcc contracts a * b + c into one rounding:
 * results are bitwise the same for any thread count, not across instruction sets. */

/* The forward's y before its ReLU, in one expression that the forward and the backward's
 * recomputed ReLU mask both use: gcc contracts it into one fused multiply-add on the instances
 * with FMA, and alike everywhere it appears, so the mask is the forward's bit for bit. */
#define MDL_BN_AFFINE(x, mul, add) ((x) * (mul) + (add))

/* Prefetches the row of L elements at p (the next one the loop reads) when rows are 1-4 KB: a
 * channel's rows lie C * L elements apart, and a row shorter than a page is over before the
 * hardware prefetchers have ramped up on it. Cold caches, (N, C, L) = (128, 32, 256), both
 * builds in one process, ms, without / with: forward 0.47-0.90 / 0.38-0.90 (1.01-1.28x),
 * backward with ReLU 0.74-1.49 / 0.59-1.39 (1.07-1.31x); with whole-page rows (L = 1024 floats)
 * it cost the backward 3-13%, so those are left to the hardware. */
#define MDL_BN_PREFETCH_ROW(p, L)                                                                \
    do {                                                                                         \
        const ptrdiff_t bytes_ = (L) * (ptrdiff_t)sizeof(*(p));                                  \
        if (bytes_ >= 1024 && bytes_ < 4096)                                                     \
            for (ptrdiff_t k_ = 0; k_ < (L); k_ += 64 / (ptrdiff_t)sizeof(*(p)))                 \
                __builtin_prefetch((p) + k_);                                                    \
    } while (0)

#define MDL_BN_BODY(T, SFX)                                                                      \
                                                                                                 \
    /* Sum of the items' elements. */                                                            \
    MDL_ISA_ATTR static double MDL_ISA(mdl_bn_sum_##SFX)(const T *restrict p, ptrdiff_t rows,    \
                                                          ptrdiff_t stride, ptrdiff_t L)         \
    {                                                                                            \
        double acc[MDL_BN_LANES] = {0}, tail = 0;                                                \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
            const T *restrict row = p + r * stride;                                              \
            MDL_BN_PREFETCH_ROW(row + stride, L); /* the next row, past the items' end too */    \
            ptrdiff_t i = 0;                                                                     \
            for (; i + MDL_BN_LANES <= L; i += MDL_BN_LANES)                                     \
                for (int j = 0; j < MDL_BN_LANES; j++)                                           \
                    acc[j] += (double)row[i + j];                                                \
            for (; i < L; i++)                                                                   \
                tail += (double)row[i];                                                          \
        }                                                                                        \
        return mdl_bn_fold(acc) + tail;                                                          \
    }                                                                                            \
                                                                                                 \
    /* Sum of (element - m)^2. */                                                                \
    MDL_ISA_ATTR static double MDL_ISA(mdl_bn_sqdev_##SFX)(const T *restrict p, ptrdiff_t rows,  \
                                                            ptrdiff_t stride, ptrdiff_t L,       \
                                                            double m)                            \
    {                                                                                            \
        double acc[MDL_BN_LANES] = {0}, tail = 0;                                                \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
            const T *restrict row = p + r * stride;                                              \
            ptrdiff_t i = 0;                                                                     \
            for (; i + MDL_BN_LANES <= L; i += MDL_BN_LANES)                                     \
                for (int j = 0; j < MDL_BN_LANES; j++) {                                         \
                    double d = (double)row[i + j] - m;                                           \
                    acc[j] += d * d;                                                             \
                }                                                                                \
            for (; i < L; i++) {                                                                 \
                double d = (double)row[i] - m;                                                   \
                tail += d * d;                                                                   \
            }                                                                                    \
        }                                                                                        \
        return mdl_bn_fold(acc) + tail;                                                          \
    }                                                                                            \
                                                                                                 \
    /* *sum_g = sum of g', *sum_gx = sum of g' * (x - m), g' = g, or with relu (the forward's     \
     * fused ReLU) 0 where the forward's x * amul + aadd was <= 0 (PyTorch's threshold_backward  \
     * on its output; recomputed from x, one stream less to read than the output itself). */     \
    MDL_ISA_ATTR static void MDL_ISA(mdl_bn_dots_##SFX)(                                         \
        const T *restrict g, const T *restrict x, int relu, T amul, T aadd, ptrdiff_t rows,      \
        ptrdiff_t stride, ptrdiff_t L, double m, double *sum_g, double *sum_gx)                  \
    {                                                                                            \
        double ag[MDL_BN_LANES] = {0}, ax[MDL_BN_LANES] = {0}, tg = 0, tx = 0;                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
            const T *restrict gr = g + r * stride, *restrict xr = x + r * stride;                \
            MDL_BN_PREFETCH_ROW(gr + stride, L);                                                 \
            MDL_BN_PREFETCH_ROW(xr + stride, L);                                                 \
            ptrdiff_t i = 0;                                                                     \
            if (relu) {                                                                          \
                /* Masked in pieces first: gcc vectorizes a select in a loop, not in the         \
                 * unrolled lanes. */                                                            \
                T piece[MDL_BN_PIECE];                                                           \
                for (; i + MDL_BN_LANES <= L; i += MDL_BN_PIECE) {                               \
                    ptrdiff_t n = (L - i) / MDL_BN_LANES * MDL_BN_LANES;                         \
                    n = n < MDL_BN_PIECE ? n : MDL_BN_PIECE;                                     \
                    for (ptrdiff_t k = 0; k < n; k++) {                                          \
                        T gk = gr[i + k];                                                        \
                        piece[k] = MDL_BN_AFFINE(xr[i + k], amul, aadd) <= 0 ? (T)0 : gk;        \
                    }                                                                            \
                    for (ptrdiff_t k = 0; k < n; k += MDL_BN_LANES)                              \
                        for (int j = 0; j < MDL_BN_LANES; j++) {                                 \
                            double gv = (double)piece[k + j];                                    \
                            ag[j] += gv;                                                         \
                            ax[j] += gv * ((double)xr[i + k + j] - m);                           \
                        }                                                                        \
                    if (n < MDL_BN_PIECE) {                                                      \
                        i += n;                                                                  \
                        break;                                                                   \
                    }                                                                            \
                }                                                                                \
            } else                                                                               \
                for (; i + MDL_BN_LANES <= L; i += MDL_BN_LANES)                                 \
                    for (int j = 0; j < MDL_BN_LANES; j++) {                                     \
                        double gv = (double)gr[i + j];                                           \
                        ag[j] += gv;                                                             \
                        ax[j] += gv * ((double)xr[i + j] - m);                                   \
                    }                                                                            \
            for (; i < L; i++) {                                                                 \
                T gi = gr[i];                                                                    \
                double gv = (double)(relu && MDL_BN_AFFINE(xr[i], amul, aadd) <= 0 ? (T)0 : gi); \
                tg += gv;                                                                        \
                tx += gv * ((double)xr[i] - m);                                                  \
            }                                                                                    \
        }                                                                                        \
        *sum_g = mdl_bn_fold(ag) + tg;                                                           \
        *sum_gx = mdl_bn_fold(ax) + tx;                                                          \
    }                                                                                            \
                                                                                                 \
    /* y = x * mul + add, then max(., 0) with relu (NaN stays NaN); y may be x. */               \
    MDL_ISA_ATTR static void MDL_ISA(mdl_bn_apply_##SFX)(const T *x, T *y, ptrdiff_t rows,       \
                                                          ptrdiff_t stride, ptrdiff_t L, T mul,  \
                                                          T add, int relu)                       \
    {                                                                                            \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
            const T *xr = x + r * stride;                                                        \
            T *yr = y + r * stride;                                                              \
            if (relu)                                                                            \
                for (ptrdiff_t i = 0; i < L; i++) {                                              \
                    T v = MDL_BN_AFFINE(xr[i], mul, add);                                        \
                    yr[i] = v < 0 ? (T)0 : v;                                                    \
                }                                                                                \
            else                                                                                 \
                for (ptrdiff_t i = 0; i < L; i++)                                                \
                    yr[i] = MDL_BN_AFFINE(xr[i], mul, add);                                      \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* gx = (g' - mg - (x - m) * proj) * mul, or g' * mul without batch statistics; g' as in     \
     * the dots. */                                                                              \
    MDL_ISA_ATTR static void MDL_ISA(mdl_bn_input_grad_##SFX)(                                   \
        const T *restrict g, const T *restrict x, int relu, T amul, T aadd, T *restrict gx,      \
        ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t L, T m, T mg, T proj, T mul,                 \
        int batch_stats)                                                                         \
    {                                                                                            \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
            const T *restrict gr = g + r * stride, *restrict xr = x + r * stride;                \
            T *restrict out = gx + r * stride;                                                   \
            if (batch_stats && relu)                                                             \
                for (ptrdiff_t i = 0; i < L; i++) {                                              \
                    T gi = gr[i], xi = xr[i];                                                    \
                    gi = MDL_BN_AFFINE(xi, amul, aadd) <= 0 ? (T)0 : gi;                         \
                    out[i] = (gi - mg - (xi - m) * proj) * mul;                                  \
                }                                                                                \
            else if (batch_stats)                                                                \
                for (ptrdiff_t i = 0; i < L; i++)                                                \
                    out[i] = (gr[i] - mg - (xr[i] - m) * proj) * mul;                            \
            else if (relu)                                                                       \
                for (ptrdiff_t i = 0; i < L; i++) {                                              \
                    T gi = gr[i];                                                                \
                    out[i] = (MDL_BN_AFFINE(xr[i], amul, aadd) <= 0 ? (T)0 : gi) * mul;          \
                }                                                                                \
            else                                                                                 \
                for (ptrdiff_t i = 0; i < L; i++)                                                \
                    out[i] = gr[i] * mul;                                                        \
        }                                                                                        \
    }

MDL_BN_BODY(float, f32)
MDL_BN_BODY(double, f64)

#undef MDL_BN_BODY
#undef MDL_BN_AFFINE
#undef MDL_BN_PREFETCH_ROW
