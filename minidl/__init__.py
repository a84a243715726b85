"""minidl: a small, fast deep-learning engine for the CPU.

    import minidl
    x = minidl.randn(3, 4, requires_grad=True)
    (x * x).sum().backward()
"""

from __future__ import annotations

__version__ = "0.1.0"

from minidl import autograd, random, threads
from minidl.dtypes import bool_, float32, float64, int32, int64, uint8
from minidl.graph import enable_grad, is_grad_enabled, no_grad
from minidl.random import get_rng_state, manual_seed, set_rng_state
from minidl.tensor import (
    Tensor,
    arange,
    cat,
    concatenate,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    matmul,
    maximum,
    minimum,
    ones,
    ones_like,
    pad,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)
from minidl.threads import get_num_threads, set_num_threads


def config() -> dict:
    """What this build and process use: version, OpenMP, threads, compiler, instruction set."""
    import numpy

    from minidl._kernels import _runtime

    return {
        "version": __version__,
        "openmp": _runtime.openmp_enabled(),
        "num_threads": get_num_threads(),
        "compiler": _runtime.compiler(),
        "isa": _runtime.isa_path(),
        "malloc_tuned": threads.malloc_tuned,
        "numpy": numpy.__version__,
    }


def _elementwise(name: str, fn_name: str):
    def fn(x: Tensor, *args, **kwargs) -> Tensor:
        return getattr(x, fn_name)(*args, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"minidl.{name}(x, ...) is x.{fn_name}(...)."
    return fn


exp = _elementwise("exp", "exp")
log = _elementwise("log", "log")
sqrt = _elementwise("sqrt", "sqrt")
abs = _elementwise("abs", "abs")  # noqa: A001 (PyTorch's name)
clip = _elementwise("clip", "clip")
clamp = clip
neg = _elementwise("neg", "__neg__")
sum = _elementwise("sum", "sum")  # noqa: A001
mean = _elementwise("mean", "mean")
max = _elementwise("max", "max")  # noqa: A001
min = _elementwise("min", "min")  # noqa: A001
reshape = _elementwise("reshape", "reshape")
flatten = _elementwise("flatten", "flatten")
transpose = _elementwise("transpose", "transpose")
permute = _elementwise("permute", "permute")

# Layers, optimizers and checkpoints (issue 4); imported last, they build on the names above.
from minidl import data, nn, optim, viz
from minidl.profiler import profile
from minidl.serialization import load, save
from minidl.static import compile  # noqa: A004 (the public name shadows the builtin on purpose)
