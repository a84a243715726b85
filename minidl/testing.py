"""torch.testing's assert_close: compare tensors (or numbers, sequences and mappings of them)
with PyTorch's default tolerances per dtype."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minidl.tensor import Tensor

__all__ = ["assert_close"]

# (rtol, atol) by dtype, PyTorch's defaults; integers and bools compare exactly.
_TOLERANCES = {np.dtype(np.float32): (1.3e-6, 1e-5), np.dtype(np.float64): (1e-7, 1e-7)}


def assert_close(actual: Any, expected: Any, *, allow_subclasses: bool = True,
                 rtol: float | None = None, atol: float | None = None, equal_nan: bool = False,
                 check_device: bool = True, check_dtype: bool = True, check_layout: bool = True,
                 check_stride: bool = False, msg: str | None = None) -> None:
    """Raise AssertionError unless |actual - expected| <= atol + rtol * |expected| everywhere
    (shapes and, with check_dtype, dtypes equal). rtol and atol are given together or not at
    all; by default they depend on the dtype (float32 1.3e-6 / 1e-5, float64 1e-7 / 1e-7,
    exact otherwise)."""
    if (rtol is None) != (atol is None):
        raise ValueError("Both 'rtol' and 'atol' must be either specified or omitted, but got "
                         f"no {'rtol' if rtol is None else 'atol'}.")
    _compare(actual, expected, rtol, atol, equal_nan, check_dtype, msg, "")


def _compare(actual: Any, expected: Any, rtol: float | None, atol: float | None,
             equal_nan: bool, check_dtype: bool, msg: str | None, where: str) -> None:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or set(actual) != set(expected):
            raise AssertionError(msg or f"The mappings{where} have different keys")
        for key in expected:
            _compare(actual[key], expected[key], rtol, atol, equal_nan, check_dtype, msg,
                     f"{where}[{key!r}]")
        return
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        if not isinstance(actual, Sequence) or len(actual) != len(expected):
            raise AssertionError(msg or f"The sequences{where} have different lengths")
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, rtol, atol, equal_nan, check_dtype, msg, f"{where}[{i}]")
        return
    a, e = _array(actual), _array(expected)
    if a.shape != e.shape:
        raise AssertionError(msg or f"The values{where} for attribute 'shape' do not match: "
                                    f"{a.shape} != {e.shape}.")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(msg or f"The values{where} for attribute 'dtype' do not match: "
                                    f"minidl.{a.dtype} != minidl.{e.dtype}.")
    if rtol is None:
        rtol, atol = max(_TOLERANCES.get(a.dtype, (0.0, 0.0)), _TOLERANCES.get(e.dtype, (0.0, 0.0)))
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if close.all():
        return
    bad = int((~close).sum())
    with np.errstate(invalid="ignore"):
        diff = np.abs(a64 - e64)
    worst = int(np.nanargmax(np.where(close, -np.inf, diff))) if a.size else 0
    raise AssertionError(msg or (
        f"Tensor-likes{where} are not close!\n\nMismatched elements: {bad} / {a.size} "
        f"({100 * bad / a.size:.1f}%)\nGreatest absolute difference: {diff.flat[worst]} at "
        f"index {np.unravel_index(worst, a.shape)} (up to {atol} allowed)\n"
        f"Allowed: rtol={rtol}, atol={atol}"))


def _array(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (bool, int, float, np.generic, np.ndarray)):
        return np.asarray(value)
    raise TypeError(f"assert_close: expected a Tensor, array or number, got "
                    f"{type(value).__name__}")
