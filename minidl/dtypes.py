"""The dtypes minidl tensors may hold."""

from __future__ import annotations

from typing import Any

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

SUPPORTED_DTYPES = frozenset(
    np.dtype(t)
    for t in (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_)
)
FLOAT_DTYPES = frozenset((float32, float64))
DEFAULT_DTYPE = float32


def check_dtype(op: str, dtype: Any) -> np.dtype:
    """`dtype` as a supported np.dtype, or a TypeError naming `op`."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from e
    if dt not in SUPPORTED_DTYPES:
        names = ", ".join(sorted(str(d) for d in SUPPORTED_DTYPES))
        raise TypeError(f"{op}: unsupported dtype {dt}; minidl supports {names}")
    return dt
