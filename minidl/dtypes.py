"""The dtypes minidl tensors may hold, the default float dtype and PyTorch's promotion rules."""

from __future__ import annotations

from typing import Any

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
int16 = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

SUPPORTED_DTYPES = frozenset((float32, float64, int8, int16, int32, int64, uint8, bool_))
FLOAT_DTYPES = frozenset((float32, float64))
# The dtype of a float tensor made without an explicit dtype (PyTorch's default, float32);
# `set_default_dtype` changes what get_default_dtype() returns, not this constant.
DEFAULT_DTYPE = float32
_default_dtype = [float32]

# Names PyTorch users write for dtypes with no minidl implementation.
UNSUPPORTED_NAMES = ("half", "float16", "bfloat16", "complex64", "complex128", "cfloat",
                     "cdouble", "uint16", "uint32", "uint64")


def check_dtype(op: str, dtype: Any) -> np.dtype:
    """`dtype` as a supported np.dtype, or a TypeError naming `op`."""
    if dtype is float:
        return get_default_dtype()
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from e
    if dt not in SUPPORTED_DTYPES:
        names = ", ".join(sorted(str(d) for d in SUPPORTED_DTYPES))
        raise TypeError(f"{op}: unsupported dtype {dt}; minidl supports {names}")
    return dt


def get_default_dtype() -> np.dtype:
    """The dtype of float tensors created without a dtype (float32 unless changed)."""
    return _default_dtype[0]


def set_default_dtype(d: Any) -> None:
    """Make `d` (float32 or float64) the dtype of new float tensors and parameters."""
    dt = check_dtype("set_default_dtype", d)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"set_default_dtype: only float32 or float64 can be the default, got {dt}")
    _default_dtype[0] = dt


def _category(dt: np.dtype) -> int:
    return 0 if dt.kind == "b" else 1 if dt.kind in "iu" else 2


def _scalar_dtype(x: Any) -> np.dtype | None:
    """The dtype category a Python/NumPy scalar stands for, or None for a non-scalar."""
    if isinstance(x, (bool, np.bool_)):
        return bool_
    if isinstance(x, (int, np.integer)):
        return int64
    if isinstance(x, (float, np.floating)):
        return get_default_dtype()
    return None


def promote_types(a: Any, b: Any) -> np.dtype:
    """PyTorch's promotion of two dtypes: across categories the higher one's dtype wins
    (int64 with float32 is float32, not NumPy's float64); within one, NumPy's rule."""
    a, b = np.dtype(a), np.dtype(b)
    if _category(a) != _category(b):
        return a if _category(a) > _category(b) else b
    return np.promote_types(a, b)


def can_cast(from_: Any, to: Any) -> bool:
    """Whether PyTorch's type promotion allows casting from_ to `to`: not to a lower category
    (bool < integer < float); within a category any dtype casts (float64 to float32, int64
    to uint8)."""
    return _category(np.dtype(from_)) <= _category(np.dtype(to))


def result_type(a: Any, b: Any, true_divide: bool = False) -> np.dtype:
    """The dtype of `a <op> b` under PyTorch's promotion rules.

    Operands are ndarrays (a tensor's data) or Python/NumPy scalars, in three tiers: arrays with
    dimensions, 0-d arrays, scalars. The highest tier present sets the dtype; a lower tier only
    changes it when its category (bool < integer < float) is higher: `uint8 + 3` is uint8,
    `int64 + 0.5` the default float dtype, `float32 + float64 0-d` float32. A Python float
    stands for the default float dtype, a Python int for int64. Integer true division gives
    the default float dtype.
    """
    tiers: tuple[list, list, list] = ([], [], [])
    for x in (a, b):
        s = _scalar_dtype(x)
        if s is not None:
            tiers[2].append(s)
        else:
            tiers[0 if x.ndim else 1].append(x.dtype)
    out: np.dtype | None = None
    for tier in tiers:
        if not tier:
            continue
        t = tier[0] if len(tier) == 1 else promote_types(tier[0], tier[1])
        if out is None or _category(t) > _category(out):
            out = t
    if true_divide and out.kind != "f":
        out = get_default_dtype()
    return out


class finfo:  # noqa: N801 (PyTorch's name)
    """Machine limits of a float dtype (torch.finfo): bits, eps, max, min, tiny
    (= smallest_normal), resolution; finfo() is the default dtype's."""

    def __init__(self, type: Any = None) -> None:  # noqa: A002 (PyTorch's name)
        dt = get_default_dtype() if type is None else check_dtype("finfo", type)
        if dt.kind != "f":
            raise TypeError(f"finfo: expected a floating point dtype, got {dt}")
        info = np.finfo(dt)
        self.dtype = str(dt)
        self.bits, self.eps = info.bits, float(info.eps)
        self.resolution = 10.0 ** -info.precision
        self.max, self.min = float(info.max), float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.tiny:g}, tiny={self.tiny:g}, "
                f"dtype={self.dtype})")


class iinfo:  # noqa: N801 (PyTorch's name)
    """Limits of an integer dtype (torch.iinfo): bits, max, min."""

    def __init__(self, type: Any) -> None:  # noqa: A002 (PyTorch's name)
        dt = check_dtype("iinfo", type)
        if dt.kind not in "iu":
            raise TypeError(f"iinfo: {dt} is not an integer dtype")
        info = np.iinfo(dt)
        self.dtype = str(dt)
        self.bits, self.max, self.min = info.bits, int(info.max), int(info.min)

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
