/* Compiles the kernel body named by MDL_ISA_BODY (a quoted header name) once per instruction
 * set: x86-64-v4 (AVX-512) and x86-64-v3 (AVX2+FMA) where the compiler supports function
 * multiversioning, and always the baseline. Inside the body, MDL_ISA(name) gives each copy its
 * own suffix (_v4, _v3, _base), MDL_ISA_ATTR its target attribute and MDL_ISA_AVX512 tells
 * whether 512-bit vectors may be used, MDL_VL / MDL_VF / MDL_VI its register vector (lanes,
 * float and int vector types; see mdl_isa.h). Deliberately without an include guard: each
 * kernel header includes it once with its own MDL_ISA_BODY. */
#if MINIDL_HAVE_MULTIVERSION
#define MDL_ISA_AVX512 1
#define MDL_ISA_ATTR __attribute__((target("arch=x86-64-v4")))
#define MDL_ISA(name) name##_v4
#define MDL_VL 16
#define MDL_VF mdl_f32x16
#define MDL_VI mdl_i32x16
#include MDL_ISA_BODY
#undef MDL_ISA_ATTR
#undef MDL_ISA
#undef MDL_ISA_AVX512
#undef MDL_VL
#undef MDL_VF
#undef MDL_VI
#define MDL_ISA_AVX512 0
#define MDL_ISA_ATTR __attribute__((target("arch=x86-64-v3")))
#define MDL_ISA(name) name##_v3
#define MDL_VL 8
#define MDL_VF mdl_f32x8
#define MDL_VI mdl_i32x8
#include MDL_ISA_BODY
#undef MDL_ISA_ATTR
#undef MDL_ISA
#undef MDL_VL
#undef MDL_VF
#undef MDL_VI
#endif
#undef MDL_ISA_AVX512
#define MDL_ISA_AVX512 0
#define MDL_ISA_ATTR
#define MDL_ISA(name) name##_base
#define MDL_VL 4
#define MDL_VF mdl_f32x4
#define MDL_VI mdl_i32x4
#include MDL_ISA_BODY
#undef MDL_ISA_ATTR
#undef MDL_ISA
#undef MDL_ISA_AVX512
#undef MDL_VL
#undef MDL_VF
#undef MDL_VI
#undef MDL_ISA_BODY
