/* Per-ISA instantiation of kernel templates, for code with vector comparisons or shuffles.
 *
 * platform.h's MINIDL_MULTIVERSION (gcc target_clones) clones a function after gcc has already
 * lowered its generic-vector comparisons and shuffles for the baseline target: a 16-lane
 * `a > b` became 16 scalar vcomiss in the AVX-512 clone. A function that carries its own
 * target attribute is lowered for that target. So a kernel template (a header without include
 * guard, naming its functions MDL_ISA(name) and marking them MDL_ISA_ATTR) is included once per
 * instruction set, as in
 *     #if MINIDL_HAVE_MULTIVERSION
 *     #define MDL_ISA_ATTR __attribute__((target("arch=x86-64-v4")))
 *     #define MDL_ISA(name) name##_v4
 *     #include "template.h"
 *     ... the same with v3, then (outside the #if) with an empty MDL_ISA_ATTR and _base,
 * and MDL_DISPATCH(name, (args)) calls the widest instance the CPU supports (decided once,
 * cached). Without gcc multiversioning support only the baseline instance exists. */
#ifndef MINIDL_MDL_ISA_H
#define MINIDL_MDL_ISA_H

#include <stdlib.h>
#include <string.h>

#include "platform.h"

/* Register vectors of each instruction set's width. The kernels' memory layouts are built of
 * 16-float blocks (one AVX-512 register); a kernel body holds such a block as MDL_NH register
 * vectors of MDL_VL lanes (MDL_VF floats, MDL_VI 32-bit ints: 1 x 16 on AVX-512, 2 x 8 on AVX2,
 * 4 x 4 on the baseline), set per instance by mdl_isa_instances.h. gcc keeps a 64-byte generic
 * vector in memory on a target without 512-bit registers (each operation a round trip through
 * the stack, broadcasts assembled from 16 scalar stores): 10-50x slower on AVX2 machines. */
typedef float mdl_f32x4 __attribute__((vector_size(16)));
typedef float mdl_f32x8 __attribute__((vector_size(32)));
typedef float mdl_f32x16 __attribute__((vector_size(64)));
typedef int mdl_i32x4 __attribute__((vector_size(16)));
typedef int mdl_i32x8 __attribute__((vector_size(32)));
typedef int mdl_i32x16 __attribute__((vector_size(64)));

#define MDL_NH (16 / MDL_VL)

/* The 16 floats at p into the block v (an array of MDL_NH MDL_VF), and back. Macros, expanded
 * inside each instance, so MDL_VL is that instance's width. */
#define MDL_BLOCK_LOAD(v, p)                                                                     \
    do {                                                                                         \
        for (int h_ = 0; h_ < MDL_NH; h_++)                                                      \
            memcpy(&(v)[h_], (p) + h_ * MDL_VL, sizeof((v)[0]));                                 \
    } while (0)
#define MDL_BLOCK_STORE(p, v)                                                                    \
    do {                                                                                         \
        for (int h_ = 0; h_ < MDL_NH; h_++)                                                      \
            memcpy((p) + h_ * MDL_VL, &(v)[h_], sizeof((v)[0]));                                 \
    } while (0)
/* One register of x in every lane. `x - 0` folds to x exactly (x + 0 would turn -0 into +0). */
#define MDL_VSPLAT(x) ((x) - (MDL_VF){0})

#if MINIDL_HAVE_MULTIVERSION

/* 2: x86-64-v4 (AVX-512), 1: x86-64-v3 (AVX2+FMA), 0: baseline. MINIDL_FORCE_ISA=x86-64-v3 or
 * =baseline caps it, so that tests can run the narrower instances on a wide CPU. Racing first
 * calls store the same value. */
static inline int mdl_isa_level(void)
{
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        int l = __builtin_cpu_supports("x86-64-v4")   ? 2
                : __builtin_cpu_supports("x86-64-v3") ? 1
                                                      : 0;
        const char *force = getenv("MINIDL_FORCE_ISA");
        if (force != NULL && strcmp(force, "x86-64-v3") == 0 && l > 1)
            l = 1;
        else if (force != NULL && strcmp(force, "baseline") == 0)
            l = 0;
        level = l;
    }
    return level;
}

#define MDL_DISPATCH(name, args)                                                                 \
    (mdl_isa_level() == 2   ? name##_v4 args                                                     \
     : mdl_isa_level() == 1 ? name##_v3 args                                                     \
                            : name##_base args)

#else

/* One instance only: the baseline's (compiled for whatever the build's flags allow). */
static inline int mdl_isa_level(void) { return 0; }

#define MDL_DISPATCH(name, args) name##_base args

#endif

#endif
