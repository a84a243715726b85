/* FMA peak probe: how many float32 multiply-adds per second one thread retires on each
 * instruction set, the ceiling the convolution benchmark quotes its GFLOP/s against.
 *
 * NACC independent accumulator vectors (more than FMA latency x throughput = 4 x 2 on current
 * x86 cores) each do acc = acc * m + a per step, so the loop is bound by FMA throughput, not
 * latency. The inline asm barrier keeps gcc from folding the loop away. Baseline x86-64 has no
 * FMA: its instance does a multiply and an add (also 2 FLOP per lane). */
#ifndef MINIDL_FMA_PROBE_H
#define MINIDL_FMA_PROBE_H

#include <stddef.h>

#include "mdl_isa.h"

/* Twelve named accumulators (an array would live on the stack once the asm barrier takes its
 * address); X(a) is applied to each. */
#define MDL_PROBE_EACH(X) X(a0) X(a1) X(a2) X(a3) X(a4) X(a5) X(a6) X(a7) X(a8) X(a9) X(a10) X(a11)
#define MDL_PROBE_NACC 12

#define MDL_DEFINE_PROBE(NAME, ATTR, BYTES, REG)                                                 \
    ATTR static float NAME(ptrdiff_t steps)                                                      \
    {                                                                                            \
        typedef float vec __attribute__((vector_size(BYTES)));                                   \
        const vec m = (vec){0} + 0.999999f, c = (vec){0} + 1e-7f;                                \
        float init = 0.0f;                                                                       \
        MDL_PROBE_EACH(MDL_PROBE_DECL)                                                           \
        for (ptrdiff_t s = 0; s < steps; s++) {                                                  \
            MDL_PROBE_EACH(MDL_PROBE_STEP)                                                       \
            MDL_PROBE_EACH(MDL_PROBE_KEEP_##REG)                                                 \
        }                                                                                        \
        float sum = 0.0f;                                                                        \
        MDL_PROBE_EACH(MDL_PROBE_SUM)                                                            \
        return sum;                                                                              \
    }
#define MDL_PROBE_DECL(a) vec a = (vec){0} + (init += 1.0f);
#define MDL_PROBE_STEP(a) a = a * m + c;
/* "v" names any of the 32 AVX-512 registers, "x" the 16 of AVX2/SSE. */
#define MDL_PROBE_KEEP_v(a) __asm__("" : "+v"(a));
#define MDL_PROBE_KEEP_x(a) __asm__("" : "+x"(a));
#define MDL_PROBE_SUM(a) sum += a[0];

#if MINIDL_HAVE_MULTIVERSION
MDL_DEFINE_PROBE(mdl_fma_probe_v4, __attribute__((target("arch=x86-64-v4"))), 64, v)
MDL_DEFINE_PROBE(mdl_fma_probe_v3, __attribute__((target("arch=x86-64-v3"))), 32, x)
#endif
MDL_DEFINE_PROBE(mdl_fma_probe_base, , 16, x)

/* Float32 lanes per vector of instruction set `isa` (2: AVX-512, 1: AVX2, 0: baseline SSE2),
 * or 0 when this build or CPU cannot run it. */
static inline int mdl_fma_probe_lanes(int isa)
{
    if (isa < 0 || isa > 2)
        return 0;
#if MINIDL_HAVE_MULTIVERSION
    if (isa > mdl_isa_level())
        return 0;
#else
    if (isa > 0)
        return 0;
#endif
    return 4 << isa;
}

/* `steps` probe steps on instruction set `isa` (only if mdl_fma_probe_lanes(isa) > 0). */
static inline float mdl_fma_probe_run(int isa, ptrdiff_t steps)
{
#if MINIDL_HAVE_MULTIVERSION
    if (isa == 2)
        return mdl_fma_probe_v4(steps);
    if (isa == 1)
        return mdl_fma_probe_v3(steps);
#endif
    return mdl_fma_probe_base(steps);
}

#endif
