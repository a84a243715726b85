# cython: language_level=3
"""OpenMP runtime facts and the build's compiler/ISA, for minidl.config() and thread control."""

cdef extern from "platform.h" nogil:
    int MINIDL_HAVE_OPENMP
    const char *MINIDL_COMPILER
    const char *minidl_isa_path()
    int minidl_tune_malloc()
    int omp_get_max_threads()
    void omp_set_num_threads(int n)


def openmp_enabled() -> bool:
    return MINIDL_HAVE_OPENMP == 1


def omp_max_threads() -> int:
    return omp_get_max_threads()


def compiler() -> str:
    return MINIDL_COMPILER.decode()


def isa_path() -> str:
    return minidl_isa_path().decode()


def tune_malloc() -> bool:
    """Ask glibc to keep large freed blocks for reuse (see platform.h); False elsewhere."""
    return minidl_tune_malloc() == 1
