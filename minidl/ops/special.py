"""Special functions NumPy lacks: erfc, erfinv, lgamma, digamma, i0 (their ops are in
minidl.ops.elementwise_unary).

The array functions compute in float64 and round to the input's dtype once. The C library's
erfc and lgamma come through Python's math module (one call per element: exact, not fast);
digamma and its derivative trigamma are the recurrence-plus-asymptotic-series method PyTorch
uses, erfinv is an initial approximation refined by Halley's method on erf (or on erfc in the
tails, where 1 - |y| is exact), and i0's derivative i1 is its power series.
"""

from __future__ import annotations

import math

import numpy as np

from minidl._kernels import elementwise as _elementwise
from minidl.ops import contiguous, flat_kernel

TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _lgamma_scalar(v: float) -> float:
    try:
        return math.lgamma(v)
    except (ValueError, OverflowError):  # the poles 0, -1, -2, ... (C's lgamma gives inf)
        return math.inf


_erfc_elements = np.frompyfunc(math.erfc, 1, 1)
_lgamma_elements = np.frompyfunc(_lgamma_scalar, 1, 1)


def _in_float64(fn, a) -> np.ndarray:
    a = np.asarray(a)
    return contiguous(np.asarray(fn(a.astype(np.float64)), np.float64).astype(a.dtype))


def _erf64(x: np.ndarray) -> np.ndarray:
    return flat_kernel(_elementwise.erf, (contiguous(x),), None)


def erfc(a) -> np.ndarray:
    """1 - erf(a), exact for large a too."""
    return _in_float64(_erfc_elements, a)


def lgamma(a) -> np.ndarray:
    """log|Gamma(a)|; inf at the poles 0, -1, -2, ..."""
    return _in_float64(_lgamma_elements, a)


def _erfinv64(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        # Winitzki's closed form (relative error < 2e-3), the cubic series near 0 where its
        # log(1 - y^2) cancels.
        a = 0.147
        log_term = np.log1p(-y * y)
        c = 2 / (math.pi * a) + log_term / 2
        x = np.sign(y) * np.sqrt(np.sqrt(c * c - log_term / a) - c)
        x = np.where(np.abs(y) < 1e-3, (math.sqrt(math.pi) / 2) * (y + (math.pi / 12) * y**3), x)
        tail = np.abs(y) > 0.5
        ay, sign = np.abs(y), np.where(y < 0, -1.0, 1.0)
        complement = 1 - ay  # exact for |y| > 0.5 (Sterbenz)
        for _ in range(3):
            # Halley's step on f = erf(x) - y (f''/f' = -2x), on erfc(|x|) - (1 - |y|) in
            # the tails; cubic convergence takes 2e-3 below float64's rounding in 3 steps.
            ax = np.abs(x)
            erfc_ax = np.asarray(_erfc_elements(ax), np.float64)
            residual = np.where(tail, (complement - erfc_ax) * sign, _erf64(x) - y)
            step = residual / (TWO_OVER_SQRT_PI * np.exp(-x * x))
            x = np.where(np.isfinite(step), x - step / (1 + x * step), x)
        x = np.where(ay == 1, sign * math.inf, x)
        return np.where((ay > 1) | np.isnan(y), math.nan, np.where(y == 0, y, x))


def erfinv(a) -> np.ndarray:
    """The inverse of erf on [-1, 1] (+-inf at +-1, NaN outside)."""
    return _in_float64(_erfinv64, a)


def _digamma64(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        negative = x < 0
        # Reflection: psi(x) = psi(1 - x) - pi / tan(pi x); tan of the fractional part is
        # the accurate one.
        reflect = np.where(negative, -math.pi / np.tan(math.pi * np.fmod(x, 1.0)), 0.0)
        z = np.where(negative, 1 - x, x)
        result = np.zeros_like(z)
        small = z < 10
        while small.any():
            result = np.where(small, result - 1 / z, result)
            z = np.where(small, z + 1, z)
            small = z < 10
        w = 1 / (z * z)
        series = w * (1 / 12 - w * (1 / 120 - w * (1 / 252 - w * (1 / 240 - w * (
            1 / 132 - w * (691 / 32760 - w / 12))))))
        out = result + np.log(z) - 0.5 / z - series + reflect
        out = np.where(negative & (x == np.trunc(x)), math.nan, out)
        return np.where(x == 0, np.copysign(math.inf, -x), out)


def digamma(a) -> np.ndarray:
    """d/dx log Gamma(x); -inf at +0, inf at -0, NaN at the negative integers."""
    return _in_float64(_digamma64, a)


def i0(a) -> np.ndarray:
    return _in_float64(np.i0, a)


def trigamma64(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        negative = x < 0.5
        # Reflection: psi1(x) = pi^2 / sin^2(pi x) - psi1(1 - x).
        sin_pi = np.sin(math.pi * np.fmod(x, 2.0))
        reflect = np.where(negative, math.pi**2 / (sin_pi * sin_pi), 0.0)
        z = np.where(negative, 1 - x, x)
        result = np.zeros_like(z)
        small = z < 10
        while small.any():
            result = np.where(small, result + 1 / (z * z), result)
            z = np.where(small, z + 1, z)
            small = z < 10
        w = 1 / (z * z)
        series = (1 + 1 / (2 * z) + w * (1 / 6 - w * (1 / 30 - w * (1 / 42 - w * (
            1 / 30 - w * (5 / 66 - w * (691 / 2730 - w * 7 / 6))))))) / z
        out = np.where(negative, reflect - (result + series), result + series)
        return np.where((x <= 0) & (x == np.trunc(x)), math.inf, out)


def bessel_i1_64(x: np.ndarray) -> np.ndarray:
    """I1(x) = sum_k (x/2)^(2k+1) / (k! (k+1)!): positive terms, so no cancellation; the terms
    peak near k = |x| / 2 and |x| + 40 of them reach float64's rounding. Beyond |x| = 720 it
    overflows to +-inf."""
    finite = np.abs(x) <= 720
    xs = np.where(finite, x, 0.0)
    half, quarter_sq = xs / 2, xs * xs / 4
    term = half.copy()
    total = term.copy()
    limit = int(np.abs(xs).max(initial=0.0)) + 40
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, limit):
            term = term * quarter_sq / (k * (k + 1))
            total = total + term
    return np.where(finite, total, np.where(np.isnan(x), x, np.copysign(math.inf, x)))
