"""minidl: a small, fast deep-learning engine for the CPU.

    import minidl
    x = minidl.randn(3, 4, requires_grad=True)
    (x * x).sum().backward()

The public names are in `__all__` (what `from minidl import *` gives and what the API
reference lists); submodules: autograd, data, models, nn, optim, static, viz, profiler, threads,
random, utils and the parity modules listed there.
"""

__version__ = "0.1.0"

import math as _math
import warnings as _warnings

# NumPy reports 1/0, log(-1), inf - inf and overflow as RuntimeWarnings attributed to the line
# that called the ufunc; PyTorch computes the same IEEE results silently. Only warnings from
# minidl's own modules are silenced: the user's NumPy code keeps its warnings.
_warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"minidl(\.|$)")

# PyTorch's scripting switches and helpers (mixed precision, printing, limits, formats).
from minidl import (
    accelerator,
    amp,
    autograd,
    backends,
    cuda,
    random,
    return_types,
    testing,
    threads,
)
from minidl.amp import autocast
from minidl.autograd import is_anomaly_enabled
from minidl.device import device, get_default_device, set_default_device
from minidl.dtypes import (
    bool_,
    can_cast,
    finfo,
    float32,
    float64,
    get_default_dtype,
    iinfo,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    set_default_dtype,
    uint8,
)
from minidl.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from minidl.memory_format import channels_last, channels_last_3d, contiguous_format, preserve_format
from minidl.numerics import (
    are_deterministic_algorithms_enabled,
    get_float32_matmul_precision,
    is_deterministic_algorithms_warn_only_enabled,
    set_float32_matmul_precision,
    use_deterministic_algorithms,
)
from minidl.random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from minidl.tensor import (
    BackwardNode,
    Size,
    Tensor,
    _inclusive_range,
    arange,
    as_tensor,
    cat,
    concatenate,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    hstack,
    linspace,
    logspace,
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
    randperm,
    set_printoptions,
    stack,
    tensor,
    vstack,
    where,
    zeros,
    zeros_like,
)

# PyTorch's further tensor functions (elementwise math, scans, splits, order statistics,
# einsum, ...); importing these modules also binds their Tensor methods.
from minidl.tensor_elementwise import *  # noqa: F403 (the names in its __all__)
from minidl.tensor_indexing import *  # noqa: F403
from minidl.tensor_math import *  # noqa: F403 (the names in tensor_math.__all__)
from minidl.tensor_products import *  # noqa: F403
from minidl.tensor_reductions import *  # noqa: F403
from minidl.threads import (
    get_num_interop_threads,
    get_num_threads,
    set_num_interop_threads,
    set_num_threads,
)

e, pi, inf, nan, newaxis = _math.e, _math.pi, _math.inf, _math.nan, None


def config() -> dict:
    """What this build and process use: version, thread pool (False: built serial), threads,
    compiler, instruction set."""
    import numpy

    from minidl._kernels import _runtime, threadpool

    return {
        "version": __version__,
        "thread_pool": threadpool.has_threads(),
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


def _method(name: str):
    def fn(x: Tensor, *args, **kwargs):
        return getattr(x if isinstance(x, Tensor) else tensor(x), name)(*args, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"minidl.{name}(x, ...) is x.{name}(...)."
    return fn


# torch.<name>(x, ...) for the Tensor methods PyTorch also offers as functions.
for _name in ("sin", "cos", "tanh", "sigmoid", "relu", "softmax", "log_softmax", "argmax",
              "argmin", "amax", "amin", "sort", "argsort", "topk", "squeeze", "unsqueeze",
              "numel", "allclose", "equal", "norm", "std", "var", "prod", "mm", "bmm", "dot",
              "t", "gather", "chunk", "split", "expand_as", "clone", "square", "sign",
              "floor", "ceil", "round", "isnan", "isfinite", "any", "all", "masked_fill",
              "eq", "ne", "lt", "le", "gt", "ge", "rsqrt", "cumsum", "pow", "add", "sub",
              "mul", "div", "detach", "dim", "view_as", "flip", "logsumexp", "nonzero", "erf",
              "index_select", "select", "narrow", "unbind", "roll", "tril", "triu", "diag", "movedim",
              "moveaxis", "swapaxes", "broadcast_to", "masked_select", "repeat_interleave",
              "nan_to_num", "isinf", "isposinf", "isneginf", "isclose", "logical_and",
              "logical_or", "logical_xor", "logical_not", "count_nonzero", "clamp_min",
              "clamp_max", "scatter", "scatter_add", "is_nonzero", "is_same_size", "is_signed",
              "is_complex", "adjoint"):
    globals()[_name] = _method(_name)
del _name

exp = _elementwise("exp", "exp")
log = _elementwise("log", "log")
sqrt = _elementwise("sqrt", "sqrt")
reciprocal = _elementwise("reciprocal", "reciprocal")
abs = _elementwise("abs", "abs")  # noqa: A001 (PyTorch's name)
clip = _elementwise("clip", "clip")
clamp = clip
neg = _elementwise("neg", "__neg__")
sum = _elementwise("sum", "sum")  # noqa: A001
mean = _elementwise("mean", "mean")
max = _elementwise("max", "max")  # noqa: A001
min = _elementwise("min", "min")  # noqa: A001
concat = concatenate
multiply = _method("mul")
subtract = _method("sub")
divide = div  # noqa: F405 (minidl.tensor_elementwise's, with rounding_mode)
reshape = _elementwise("reshape", "reshape")
flatten = _elementwise("flatten", "flatten")
transpose = _elementwise("transpose", "transpose")
permute = _elementwise("permute", "permute")

def is_tensor(obj: object) -> bool:
    return isinstance(obj, Tensor)


def is_floating_point(x: Tensor) -> bool:
    return x.is_floating_point()


def _typed_constructor(name: str, dtype):
    def make(*args, **kwargs) -> Tensor:
        return Tensor(*args, dtype=dtype, **kwargs)

    make.__name__ = name
    make.__doc__ = f"minidl.{name}(data) or {name}(*sizes): Tensor(..., dtype={dtype})."
    return make


FloatTensor = _typed_constructor("FloatTensor", float32)
DoubleTensor = _typed_constructor("DoubleTensor", float64)
LongTensor = _typed_constructor("LongTensor", int64)
IntTensor = _typed_constructor("IntTensor", int32)
ByteTensor = _typed_constructor("ByteTensor", uint8)
BoolTensor = _typed_constructor("BoolTensor", bool_)

# PyTorch's dtype aliases. They shadow the builtins inside this module only, so they are
# defined last.
float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001
short = int16
bool = bool_  # noqa: A001
range = _inclusive_range  # noqa: A001 (PyTorch's deprecated torch.range)


def __getattr__(name: str):
    from minidl.dtypes import UNSUPPORTED_NAMES

    if name in UNSUPPORTED_NAMES:
        raise AttributeError(
            f"minidl.{name}: minidl supports float32, float64 and integer/bool dtypes only; "
            f"{name} is not available"
        )
    raise AttributeError(f"module 'minidl' has no attribute {name!r}")


# Layers, optimizers and checkpoints (issue 4); imported last, they build on the names above.
from minidl import data, linalg, models, nn, optim, static, utils, viz

# torch.det, inverse, svd, ... (and their Tensor methods): the older names of linalg's ops.
from minidl.linalg.torch_functions import *  # noqa: E402, F403 (torch_functions.__all__)
from minidl.profiler import profile
from minidl.serialization import load, save
from minidl.static import compile  # noqa: A004 (the public name shadows the builtin on purpose)

del _elementwise, _method, _typed_constructor

# Everything above that is not private: the helpers are gone, and `from __future__` is not
# used here, so no `annotations` leaks into the namespace either.
__all__ = sorted(name for name in dir() if not name.startswith("_"))
