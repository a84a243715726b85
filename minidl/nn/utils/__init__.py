"""torch.nn.utils' gradient helpers: clip_grad_norm_, clip_grad_value_, parameters_to_vector,
vector_to_parameters; and, in `rnn`, the variable-length sequence tools of the recurrent
layers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.nn.utils import rnn
from minidl.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "rnn",
           "vector_to_parameters"]


def _params(parameters: Any) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: Any = None) -> Tensor:
    """Scale all gradients in place so their joint norm is at most max_norm; returns the norm
    before clipping (a 0-d tensor). norm_type: any p > 0 or inf. Gradients of None are
    skipped. Raises RuntimeError for a non-finite norm when error_if_nonfinite."""
    grads = [p.grad.data for p in _params(parameters) if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max(float(np.abs(g).max(initial=0.0)) for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in grads)
        total = total ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            "non-finite, so it cannot be clipped (error_if_nonfinite=True)"
        )
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(total, dtype=grads[0].dtype)


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float,
                     foreach: Any = None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    for p in _params(parameters):
        if p.grad is not None:
            np.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined into one 1-d tensor (a copy)."""
    params = _params(parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters")
    from minidl.tensor import cat

    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-d `vec` into the parameters, in place."""
    params = _params(parameters)
    flat = vec.data if isinstance(vec, Tensor) else np.asarray(vec)
    total = sum(p.numel() for p in params)
    if flat.ndim != 1 or flat.size != total:
        raise ValueError(f"vector_to_parameters: expected a 1-d vector of {total} elements, got "
                         f"shape {flat.shape}")
    start = 0
    for p in params:
        n = p.numel()
        p.data[...] = flat[start : start + n].reshape(p.shape)
        start += n
