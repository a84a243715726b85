# cython: language_level=3
"""The build's compiler and ISA path, for minidl.config(), and the allocator tuning."""

cdef extern from "platform.h" nogil:
    const char *MINIDL_COMPILER
    const char *minidl_isa_path()
    int minidl_tune_malloc()


def compiler() -> str:
    return MINIDL_COMPILER.decode()


def isa_path() -> str:
    return minidl_isa_path().decode()


def tune_malloc() -> bool:
    """Ask glibc to keep large freed blocks for reuse (see platform.h); False elsewhere."""
    return minidl_tune_malloc() == 1
