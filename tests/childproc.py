"""Helpers for tests that must survive a crash of the code under test.

`run_child` runs a snippet in a fresh interpreter, so that a segfault or an abort inside a
kernel is a failed assertion (with the child's stderr), not a dead test run; it also reports
the child's peak resident memory. `guarded_array` places an array so that its last byte is
followed by an unmapped page: any read past its end faults at once. `isa_outputs` runs a
snippet on the default and on a forced (narrower) instruction set.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import minidl

ROOT = Path(__file__).resolve().parents[1]
# Where the minidl this test run imports lives (the checkout, or site-packages after
# `pip install`): children must import the same build.
PACKAGE_PARENT = Path(minidl.__file__).resolve().parents[1]
# Under AddressSanitizer (the CI job preloads libasan) allocations carry redzones and shadow
# memory: memory bounds are scaled by this factor there.
RSS_SCALE = 3 if "libasan" in os.environ.get("LD_PRELOAD", "") else 1

# VmHWM, not getrusage's ru_maxrss: the latter carries the forking parent's peak across exec.
_FOOTER = """
with open("/proc/self/status") as _f:
    print("PEAK_RSS_KB=" + [_l.split()[1] for _l in _f if _l.startswith("VmHWM")][0])
"""


def run_child(code: str, timeout: float = 120, env: dict | None = None) -> tuple[str, int]:
    """Run `code` (dedented) in `python -c` with this checkout importable. Asserts that it
    exits with status 0 (a signal such as SIGSEGV is a negative status). Returns its stdout
    and its peak RSS in MiB."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_PARENT), str(ROOT / "tests"), full_env.get("PYTHONPATH", "")]
    )
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _FOOTER],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(ROOT / "tests"),  # not the checkout root: its minidl may lack the build
    )
    assert proc.returncode == 0, (
        f"child exited with status {proc.returncode}"
        f"{f' (killed by signal {-proc.returncode})' if proc.returncode < 0 else ''}\n"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.splitlines()
    peak = int(lines[-1].split("=")[1]) // 1024
    return "\n".join(lines[:-1]), peak


def isa_outputs(script: str, isa: str, tmp_path: Path) -> tuple[dict, dict]:
    """The arrays `script` saves with np.savez(OUT, ...), run in a child on the default
    instruction set and in one with MINIDL_FORCE_ISA=isa (the kernels' narrower instances):
    (default, forced), each {name: array}. Children import the minidl of this run."""
    outputs = []
    for force in (None, isa):
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT))
        env.pop("MINIDL_FORCE_ISA", None)
        if force:
            env["MINIDL_FORCE_ISA"] = force
        path = tmp_path / f"{force or 'default'}.npz"
        subprocess.run([sys.executable, "-c", f"OUT = {str(path)!r}\n" + script], env=env,
                       check=True, cwd=tmp_path)
        outputs.append(dict(np.load(path)))
    assert outputs[0].keys() == outputs[1].keys()
    return outputs[0], outputs[1]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_GUARDED: list = []  # keeps the mappings alive for the life of the process


def guarded_array(values: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `values` ending exactly at a PROT_NONE page (read-only, so
    a write into it also faults)."""
    values = np.ascontiguousarray(values)
    page = mmap.PAGESIZE
    data_pages = max(1, -(-values.nbytes // page))
    size = (data_pages + 1) * page
    prot_rw = mmap.PROT_READ | mmap.PROT_WRITE
    addr = _libc.mmap(None, size, prot_rw, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    guard = addr + data_pages * page
    if _libc.mprotect(guard, page, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")
    start = guard - values.nbytes
    buf = (ctypes.c_char * values.nbytes).from_address(start)
    out = (
        np.frombuffer(buf, dtype=values.dtype).reshape(values.shape)
        if values.nbytes
        else (np.empty(values.shape, values.dtype))
    )
    out[...] = values
    _GUARDED.append(buf)
    out.flags.writeable = False
    return out
