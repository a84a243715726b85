"""Build the Cython/C kernels in minidl/_kernels.

Every ``minidl/_kernels/*.pyx`` becomes the extension ``minidl._kernels.<name>``.

Environment switches:
  MINIDL_DEBUG_BUILD=1   Cython bounds/wraparound/initialization checks on (the debug CI job).
  MINIDL_ASAN_BUILD=1    kernels compiled with AddressSanitizer (-fsanitize=address); run
                         Python with LD_PRELOAD=$(gcc -print-file-name=libasan.so) (the CI job).
  MINIDL_NO_THREADS=1    build serial on purpose (no thread pool).
  MINIDL_BUILD_ONLY=a,b  build only these extensions (for kernel development).
"""

import os
import sys
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = os.path.join("minidl", "_kernels")
DEBUG = os.environ.get("MINIDL_DEBUG_BUILD", "0") not in ("", "0")
ASAN = os.environ.get("MINIDL_ASAN_BUILD", "0") not in ("", "0")

# Checks live here, not in the per-file headers, so that one switch turns them on everywhere:
# a directive written in a .pyx header would override the debug build's.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}


class BuildKernels(build_ext):
    """Adds optimisation and thread flags chosen for the compiler actually in use."""

    def build_extensions(self):
        compiler = self.compiler
        if compiler.compiler_type == "msvc":
            opt = ["/O2", "/fp:precise"]
        else:
            # -O3: gcc's -O2 cost model leaves the micro-kernels scalar. Never -ffast-math:
            # it reorders reductions and breaks NaN/inf handling the tests rely on.
            opt = ["-O3", "-fno-strict-aliasing"]
            if DEBUG:
                opt = ["-O1", "-g"]
            if ASAN:
                # -O1 keeps the vector kernels (and their partial loads) as they run in
                # production while leaving ASan's reports readable.
                opt = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
        # The kernels' parallel loops run on minidl's own pthread pool (threadpool.h), not on
        # OpenMP: nothing links an OpenMP runtime, so PyTorch's bundled libgomp never meets
        # a second one in the process. Windows has no pool yet (threadpool.h).
        serial = os.environ.get("MINIDL_NO_THREADS", "0") not in ("", "0")
        if serial or sys.platform == "win32":
            bar = "!" * 78
            print(
                f"\n{bar}\nminidl: building WITHOUT threads: every kernel will run on ONE "
                f"thread.\n{bar}\n",
                file=sys.stderr,
            )
            cflags, lflags = (["-DMINIDL_NO_THREADS"] if serial else []), []
        else:
            cflags, lflags = ["-pthread"], ["-pthread"]
        asan_link = ["-fsanitize=address"] if ASAN and compiler.compiler_type != "msvc" else []
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + ext.extra_compile_args
            ext.extra_link_args = lflags + asan_link + ext.extra_link_args
        # pip runs build_ext without -j: compile the modules on every core (conv.c alone
        # takes over a minute at -O3, and CI builds the tree three times).
        if not self.parallel:
            self.parallel = os.cpu_count() or 1
        super().build_extensions()


def extensions():
    only = {s for s in os.environ.get("MINIDL_BUILD_ONLY", "").split(",") if s}
    exts = []
    for pyx in sorted(glob(os.path.join(KERNEL_DIR, "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only:
            continue
        exts.append(
            Extension(
                f"minidl._kernels.{name}",
                [pyx],
                # NumPy's headers for _runtime's aligned array allocator (numpy_alloc.h).
                include_dirs=[KERNEL_DIR, numpy.get_include()],
                depends=glob(os.path.join(KERNEL_DIR, "*.h"))
                + glob(os.path.join(KERNEL_DIR, "*.pxd")),
            )
        )
    return cythonize(exts, compiler_directives=DIRECTIVES, nthreads=os.cpu_count() or 1)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildKernels})
