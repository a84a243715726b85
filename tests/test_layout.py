"""The engine's layering and namespaces: graph knows no Tensor, ops see arrays only and declare
their traits, public names are clean (that no module names another's op class is checked in
test_op_registry.py)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.graph import Context, Function
from minidl.nn import functional as F

PACKAGE = Path(minidl.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Modules a file imports (`from a.b import c` gives a.b and a.b.c)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_graph_imports_no_tensor_and_ops_import_no_tensor():
    assert not any(m.startswith("minidl.tensor") for m in imports_of(PACKAGE / "graph.py"))
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        bad = {m for m in imports_of(path) if m.startswith(("minidl.tensor", "minidl.nn"))}
        assert not bad, f"{path.name} imports {bad}"


def test_every_op_declares_traits_through_function():
    from minidl import ops  # noqa: F401 (the families register their classes on import)
    from minidl.ops import activation, conv, elementwise, loss, matmul, pool, reduce, shape

    classes = [c for m in (activation, conv, elementwise, loss, matmul, pool, reduce, shape)
               for c in vars(m).values()
               if isinstance(c, type) and issubclass(c, Function) and c is not Function]
    assert len(classes) > 30
    for cls in classes:
        assert isinstance(cls.display_name({}), str) and cls.display_name({})
        assert cls.flops([(2, 3), (2, 3)], (2, 3), {}) >= 0
        for e in cls.epilogues:
            assert any(o.epilogue == e for o in classes), (cls, e)
        if cls.inplace_ok:
            assert cls.writes_out, cls
    assert matmul.LinearOp.flops([(8, 4)], (8, 5), {}) == 2 * 8 * 5 * 4
    assert conv.Conv2dOp.display_name({"relu": True}) == "Conv2d + relu"


def test_ops_keep_arrays_for_backward_in_save_for_backward():
    """The memory plan reads saved_tensors only: no op may hide an array in a ctx attribute."""
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), requires_grad=True)
    v = minidl.tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    labels = minidl.tensor(rng.integers(0, 6, 4))
    outputs = [
        F.conv2d_relu(x, w), F.max_pool2d(x, 2), F.avg_pool2d(x, 2), F.adaptive_avg_pool2d(x, 1),
        F.cross_entropy(v, labels), F.nll_loss(F.log_softmax(v, 1), labels),
        F.mse_loss(v, v.detach()), F.l1_loss(v, v.detach()), F.softmax(v, 1), v.sigmoid(),
        v.tanh(), v.relu(), F.elu(v), F.leaky_relu(v), v.exp(), v.log(), v.sqrt(), v.abs(),
        v * v, v / (v + 10), v.max(), v.sum(axis=0), v[1:3], v.reshape(6, 4),
        v.permute(1, 0), v.clip(-0.5, 0.5), minidl.where(v > 0, v, 0 * v), v @ v.T,
        F.binary_cross_entropy_with_logits(v, (v > 0).float()),
        F.batch_norm(v, None, None, training=True),
    ]
    for out in outputs:
        ctx: Context = out._ctx
        # save_for_backward's own attributes live in the __dict__ too (Context's defaults).
        hidden = [k for k, a in ctx.__dict__.items()
                  if k not in ("saved_tensors", "saved_versions") and (
                      isinstance(a, np.ndarray) or isinstance(a, (tuple, list))
                      and any(isinstance(e, np.ndarray) for e in a))]
        assert not hidden, f"{ctx.fn.__name__} keeps arrays in ctx.{hidden}"


def test_kernels_declare_one_fused_float_type():
    """float32/float64 kernels are written once over `real`, declared in one .pxd; no kernel
    file declares its own fused type or hand-writes float and double twins of a function."""
    kernels = PACKAGE / "_kernels"
    sources = sorted(kernels.glob("*.pyx")) + sorted(kernels.glob("*.pxd"))
    fused = [(p.name, line.strip()) for p in sources for line in p.read_text().splitlines()
             if line.startswith("ctypedef fused")]
    assert fused == [("types.pxd", "ctypedef fused real:")], fused
    twin = re.compile(r"^c?p?def [^(]*?\b(_?[sd](?:gemm|matmul|batched))\(", re.M)
    twins = [(p.name, name) for p in sources for name in twin.findall(p.read_text())]
    assert not twins, twins


def test_public_namespaces_hold_no_internals():
    names = set(dir(minidl))
    assert not names & {"annotations", "_elementwise", "_method", "np", "numpy"}
    assert "compile" in minidl.__all__ and "Tensor" in minidl.__all__
    assert all(not n.startswith("_") and hasattr(minidl, n) for n in minidl.__all__)
    f_names = set(dir(F))
    assert not f_names & {"np", "act", "ls", "annotations", "LinearOp", "ReLUOp", "Conv2dOp"}
    assert all(callable(getattr(F, n)) for n in F.__all__)


def test_import_minidl_reaches_models_and_leaves_the_allocator_alone():
    code = ("import minidl; assert minidl.models.LeNet5 is not None; "
            "print(minidl.config()['malloc_tuned'])")
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_MALLOC_TUNING"}
    env["PYTHONPATH"] = str(PACKAGE.parent)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "False"
    env["MINIDL_MALLOC_TUNING"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120, cwd=PACKAGE.parent)
    assert out.stdout.strip() in ("True", "False")  # True where glibc's mallopt exists


ALIGNED_SCRIPT = """
import numpy as np, minidl
try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name
before = [np.arange(float(n)) for n in (1, 100, 1 << 16)]
default = get_handler_name()
minidl.threads.tune_malloc()
assert get_handler_name() == "minidl_aligned_64", get_handler_name()
arrays = [np.empty(n, np.uint8) for n in range(0, 300)] + [np.empty((128, 64, 16, 16), np.float32)]
assert all(a.ctypes.data % 64 == 0 for a in arrays if a.size)
z = np.zeros(100003, np.float64)
assert z.ctypes.data % 64 == 0 and not z.any()
# realloc (ndarray.resize) keeps the contents and the alignment, growing and shrinking,
# whatever offset malloc's new block needs.
for n in (1, 7, 64, 1000, 5000, 100000, 33, 3):
    a = np.arange(n, dtype=np.float64)
    for m in (n + 1, 3 * n + 5, 100003, max(1, n // 2)):
        a.resize(m, refcheck=False)
        assert a.ctypes.data % 64 == 0
        assert (a[:min(n, m)] == np.arange(min(n, m))).all()
        n = m
        a[:] = np.arange(n)
for b in before:  # made by NumPy's handler, freed by it
    assert b.sum() == b.size * (b.size - 1) / 2
del before, arrays
print(default)
"""


def test_tune_malloc_makes_numpy_arrays_64_byte_aligned():
    """tune_malloc() installs the aligned NumPy allocator (numpy_alloc.h): every array made
    afterwards starts on a 64-byte boundary, zeros are zeros, resize keeps the contents, and
    arrays made before by NumPy's own handler are still freed by it."""
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_MALLOC_TUNING"}
    env["PYTHONPATH"] = str(PACKAGE.parent)
    out = subprocess.run([sys.executable, "-c", ALIGNED_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=120, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "default_allocator"


HUGEPAGE_SCRIPT = """
import numpy as np, minidl
minidl.threads.tune_malloc()
def advised(a):
    # VmFlags of the mapping that holds the middle of a's data (the advice covers its whole
    # pages, not the partial first one): "hg" is MADV_HUGEPAGE.
    addr, flags, inside = a.ctypes.data + a.nbytes // 2, None, False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= addr < hi
        elif inside and head == "VmFlags:":
            flags = line.split()[1:]
    return "hg" in flags
big = np.ones((128, 16, 32, 32), np.float32)  # 8 MiB: advised
grown = np.ones(1000, np.float64)
grown.resize(1 << 20, refcheck=False)  # realloc to 8 MiB: advised too
print(advised(big), advised(grown))
"""


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
                    reason="a kernel with transparent huge pages (Linux)")
def test_tune_malloc_advises_large_arrays_into_huge_pages():
    """numpy_alloc.h advises blocks of 4 MiB and more into transparent huge pages (NumPy's own
    handler does; tune_malloc's heap blocks would otherwise stay on 4 KiB pages): the mapping
    holding such an array carries the MADV_HUGEPAGE flag, after malloc and after realloc."""
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_MALLOC_TUNING"}
    env["PYTHONPATH"] = str(PACKAGE.parent)
    out = subprocess.run([sys.executable, "-c", HUGEPAGE_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=120, cwd=PACKAGE.parent)
    assert out.stdout.split() == ["True", "True"]
