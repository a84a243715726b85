/* Portability layer shared by every kernel: the compiler's name, the instruction-set dispatch
 * macro and the allocator tuning.
 *
 * MINIDL_MULTIVERSION marks a hot C function for gcc's function multi-versioning: the compiler
 * emits an AVX-512 (x86-64-v4), an AVX2+FMA (x86-64-v3) and a baseline x86-64 body and the
 * dynamic loader picks one at import from the CPU it runs on. A wheel built anywhere thus runs on
 * any x86-64 machine and still uses the widest vectors available. Elsewhere it expands to nothing
 * and the baseline build is used. */
#ifndef MINIDL_PLATFORM_H
#define MINIDL_PLATFORM_H

#include <stdlib.h> /* defines __GLIBC__ on glibc systems */

#if defined(__clang__)
#define MINIDL_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define MINIDL_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define MINIDL_STR2(x) #x
#define MINIDL_STR(x) MINIDL_STR2(x)
#define MINIDL_COMPILER "msvc " MINIDL_STR(_MSC_VER)
#else
#define MINIDL_COMPILER "unknown"
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(MINIDL_NO_MULTIVERSION)
#define MINIDL_MULTIVERSION \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define MINIDL_HAVE_MULTIVERSION 1
#else
#define MINIDL_MULTIVERSION
#define MINIDL_HAVE_MULTIVERSION 0
#endif

/* Keep freed memory in the heap for reuse instead of returning it to the OS. A training step
 * allocates and frees the same multi-megabyte activation and gradient arrays every time; with
 * glibc's defaults each one is a fresh mmap whose pages fault in on first touch (measured: a
 * LeNet step at batch 64 went from ~4.5 to ~2.1-3.2 ms with these settings). Returns 1 when
 * applied (glibc only). */
#if defined(__GLIBC__)
#include <malloc.h>
static inline int minidl_tune_malloc(void) {
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;
}
#else
static inline int minidl_tune_malloc(void) { return 0; }
#endif

/* The path MINIDL_MULTIVERSION functions take on this CPU, for minidl.config(). */
static inline const char *minidl_isa_path(void) {
#if MINIDL_HAVE_MULTIVERSION
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA)";
    return "x86-64 baseline (SSE2)";
#elif defined(__AVX512F__)
    return "AVX-512 (compile-time)";
#elif defined(__AVX2__)
    return "AVX2 (compile-time)";
#else
    return "baseline (compile-time)";
#endif
}

#endif
