"""Build the Cython/OpenMP kernels in minidl/_kernels.

Every ``minidl/_kernels/*.pyx`` becomes the extension ``minidl._kernels.<name>``.

Environment switches:
  MINIDL_DEBUG_BUILD=1   Cython bounds/wraparound/initialization checks on (the debug CI job).
  MINIDL_ASAN_BUILD=1    kernels compiled with AddressSanitizer (-fsanitize=address); run
                         Python with LD_PRELOAD=$(gcc -print-file-name=libasan.so) (the CI job).
  MINIDL_NO_OPENMP=1     build serial on purpose.
  MINIDL_BUILD_ONLY=a,b  build only these extensions (for kernel development).
"""

import os
import sys
import tempfile
import textwrap
from glob import glob

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

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """(compile_args, link_args) enabling OpenMP for this compiler, or None if it has none."""
    ctype = compiler.compiler_type
    if ctype == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for cflags, lflags in candidates:
        if _compiles(compiler, cflags, lflags):
            return cflags, lflags
    return None


def _compiles(compiler, cflags, lflags):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            compiler.link_executable(objects, "omp_test", output_dir=tmp, extra_postargs=lflags)
        except Exception:
            return False
    return True


class BuildKernels(build_ext):
    """Adds optimisation and OpenMP flags chosen for the compiler actually in use."""

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
        omp = None
        if os.environ.get("MINIDL_NO_OPENMP", "0") in ("", "0"):
            omp = openmp_flags(compiler)
        if omp is None:
            bar = "!" * 78
            print(
                f"\n{bar}\nminidl: building WITHOUT OpenMP: every kernel will run on ONE thread.\n"
                f"Install an OpenMP runtime (libgomp / libomp) and rebuild for multi-core speed.\n"
                f"{bar}\n",
                file=sys.stderr,
            )
            cflags, lflags = [], []
        else:
            cflags, lflags = omp
        asan_link = ["-fsanitize=address"] if ASAN and compiler.compiler_type != "msvc" else []
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + ext.extra_compile_args
            ext.extra_link_args = lflags + asan_link + ext.extra_link_args
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
                include_dirs=[KERNEL_DIR],
                depends=glob(os.path.join(KERNEL_DIR, "*.h"))
                + glob(os.path.join(KERNEL_DIR, "*.pxd")),
            )
        )
    return cythonize(exts, compiler_directives=DIRECTIVES, nthreads=os.cpu_count() or 1)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildKernels})
