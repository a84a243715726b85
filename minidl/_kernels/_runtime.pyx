# cython: language_level=3
"""The build's compiler and ISA path, for minidl.config(), and the allocator tuning."""

cdef extern from "platform.h" nogil:
    const char *MINIDL_COMPILER
    const char *minidl_isa_path()
    int minidl_tune_malloc()

cdef extern from "numpy_alloc.h":
    int minidl_np_install_aligned() except -1

cdef extern from "mdl_isa.h" nogil:
    int mdl_isa_level()


def compiler() -> str:
    return MINIDL_COMPILER.decode()


def isa_path() -> str:
    return minidl_isa_path().decode()


def kernel_isa_level() -> int:
    """The instance the conv, pool and Winograd kernels (mdl_isa.h) run: 2 AVX-512, 1 AVX2+FMA,
    0 baseline. The CPU's path (isa_path) capped by MINIDL_FORCE_ISA, which tests use to run the
    narrower instances on a wide CPU; the GEMM's compiler-made clones do not read it."""
    return mdl_isa_level()


def tune_malloc() -> bool:
    """Ask glibc to keep large freed blocks for reuse (see platform.h); False elsewhere."""
    return minidl_tune_malloc() == 1


def align_numpy() -> None:
    """Make NumPy allocate array data on 64-byte boundaries from now on, in this thread's
    context (numpy_alloc.h)."""
    minidl_np_install_aligned()
