/* A NumPy data allocator (NEP 49 memory handler) returning 64-byte aligned blocks: one cache
 * line, one zmm. NumPy's default handler returns malloc's 16-byte alignment, so a 512-bit row
 * load of a kernel's operand straddles two cache lines on three of four arrays; on the 1x1
 * convolution's GEMMs that cost 20-25% (pointwise_64to64_16px, one thread, best of 6: forward
 * 3.0 -> 3.7 ms, backward data 2.9 -> 3.6 ms with the same arrays offset by 16 bytes from a
 * 64-byte boundary, 2026-12-03). Installed by minidl.threads.tune_malloc() with the other
 * process-wide allocator settings.
 *
 * Each block is malloc'd with 64 spare bytes; the pointer handed out is the first 64-byte
 * boundary after the start, and the word before it holds the start (malloc's alignment is at
 * least that of a pointer, so there is room). NumPy frees a block through the handler that
 * allocated it, so arrays made before the switch keep working.
 *
 * Blocks of 4 MiB and more are advised into transparent huge pages, as NumPy's own handler does
 * on Linux: with minidl.threads.tune_malloc they come from malloc's heap, not from an mmap that
 * NumPy would have advised, and on 4 KiB pages a kernel walking one channel of a batch (a
 * 4 KiB row every C * H * W floats: BatchNorm, the per-image convolution loops) takes a TLB
 * miss per row. */
#ifndef MINIDL_NUMPY_ALLOC_H
#define MINIDL_NUMPY_ALLOC_H

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#define MINIDL_NUMPY_ALIGN 64

/* The first 64-byte boundary after raw (at least a pointer's size after it). */
static char *minidl_np_boundary(char *raw)
{
    return (char *)(((uintptr_t)raw + MINIDL_NUMPY_ALIGN) & ~(uintptr_t)(MINIDL_NUMPY_ALIGN - 1));
}

/* The whole pages of [p, p + size) advised into huge pages when size >= 4 MiB (a hint: the
 * result is not checked, and without THP it changes nothing). */
static void minidl_np_hugepage(const char *p, size_t size)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size < ((size_t)4 << 20))
        return;
    const ptrdiff_t page_size = (ptrdiff_t)sysconf(_SC_PAGESIZE);
    const uintptr_t page = page_size > 0 ? (uintptr_t)page_size : 4096;
    uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)p + size) & ~(page - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p, (void)size;
#endif
}

static void *minidl_np_align(void *raw, size_t size)
{
    if (raw == NULL)
        return NULL;
    char *p = minidl_np_boundary(raw);
    ((void **)p)[-1] = raw;
    minidl_np_hugepage(p, size);
    return p;
}

static void *minidl_np_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size > SIZE_MAX - MINIDL_NUMPY_ALIGN)
        return NULL;
    return minidl_np_align(malloc(size + MINIDL_NUMPY_ALIGN), size);
}

static void *minidl_np_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    if (elsize && nelem > (SIZE_MAX - MINIDL_NUMPY_ALIGN) / elsize)
        return NULL;
    return minidl_np_align(calloc(nelem * elsize + MINIDL_NUMPY_ALIGN, 1), nelem * elsize);
}

static void *minidl_np_realloc(void *ctx, void *ptr, size_t new_size)
{
    (void)ctx;
    if (ptr == NULL)
        return minidl_np_malloc(NULL, new_size);
    if (new_size > SIZE_MAX - MINIDL_NUMPY_ALIGN)
        return NULL;
    void *old_raw = ((void **)ptr)[-1];
    size_t old_offset = (size_t)((char *)ptr - (char *)old_raw);
    char *raw = realloc(old_raw, new_size + MINIDL_NUMPY_ALIGN);
    if (raw == NULL)
        return NULL;
    /* realloc kept the bytes at the old offset from the start; the new start may need
     * another offset to reach a 64-byte boundary. Both offsets are at most 64, so the move
     * stays inside the new block; the start is recorded after it (the word before the new
     * boundary may hold data until then). */
    char *aligned = minidl_np_boundary(raw);
    if ((size_t)(aligned - raw) != old_offset)
        memmove(aligned, raw + old_offset, new_size);
    ((void **)aligned)[-1] = raw;
    minidl_np_hugepage(aligned, new_size);
    return aligned;
}

static void minidl_np_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx, (void)size;
    if (ptr != NULL)
        free(((void **)ptr)[-1]);
}

static PyDataMem_Handler minidl_np_handler = {
    "minidl_aligned_64",
    1,
    {NULL, minidl_np_malloc, minidl_np_calloc, minidl_np_realloc, minidl_np_free},
};

/* Makes minidl_np_handler NumPy's allocator for the calling context (NumPy keeps it in a
 * context variable: threads started later begin with the default). 0, or -1 with a Python
 * exception set. */
static int minidl_np_install_aligned(void)
{
    if (PyArray_API == NULL && _import_array() < 0)
        return -1;
    PyObject *capsule = PyCapsule_New(&minidl_np_handler, "mem_handler", NULL);
    if (capsule == NULL)
        return -1;
    PyObject *old = PyDataMem_SetHandler(capsule);
    Py_DECREF(capsule);
    if (old == NULL)
        return -1;
    Py_DECREF(old);
    return 0;
}

#endif
