"""torch.nn.utils: gradient clipping, parameters as one vector and skip_init here; in its
modules, conv/linear + BatchNorm fusion (`fusion`), weight_norm (`weight_norm`) and the
variable-length sequence tools of the recurrent layers (`rnn`)."""

from __future__ import annotations

import inspect
import math
import types
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.nn.utils import rnn
from minidl.nn.utils.fusion import (
    fuse_conv_bn_eval,
    fuse_conv_bn_weights,
    fuse_linear_bn_eval,
    fuse_linear_bn_weights,
)
from minidl.nn.utils.weight_norm import remove_weight_norm, weight_norm
from minidl.tensor import Tensor

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_",
           "fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval",
           "fuse_linear_bn_weights", "get_total_norm", "parameters_to_vector",
           "remove_weight_norm", "rnn", "skip_init", "vector_to_parameters", "weight_norm"]


def _params(parameters: Any) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def get_total_norm(tensors: Iterable[Tensor] | Tensor, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """The norm of the norms of `tensors` (their joint p-norm), a 0-d tensor of the first
    one's dtype (0.0 for none), accumulated in float64. norm_type: any p > 0 or inf. Raises
    RuntimeError for a non-finite norm when error_if_nonfinite."""
    arrays = [t.data for t in _params(tensors)]
    if not arrays:
        return Tensor(0.0)
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max(float(np.abs(a).max(initial=0.0)) for a in arrays)
    else:
        total = sum(float(np.sum(np.abs(a.astype(np.float64)) ** norm_type)) for a in arrays)
        total = total ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
            "by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return Tensor(total, dtype=arrays[0].dtype)


def clip_grads_with_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                          total_norm: Tensor | float, foreach: Any = None) -> None:
    """Scale every gradient in place by min(1, max_norm / (total_norm + 1e-6))."""
    grads = [p.grad.data for p in _params(parameters) if p.grad is not None]
    coef = float(max_norm) / (float(total_norm) + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: Any = None) -> Tensor:
    """Scale all gradients in place so their joint norm is at most max_norm; returns the norm
    before clipping (get_total_norm of the gradients; None gradients are skipped)."""
    if isinstance(parameters, types.GeneratorType):
        parameters = list(parameters)
        if not parameters:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                          stacklevel=2)
    params = _params(parameters)
    total = get_total_norm([p.grad for p in params if p.grad is not None], norm_type,
                           error_if_nonfinite)
    clip_grads_with_norm_(params, max_norm, total)
    return total


def clip_grad_norm(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                   norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: Any = None) -> Tensor:
    """clip_grad_norm_'s deprecated name (FutureWarning, as in PyTorch)."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


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


def skip_init(module_cls: type, *args: Any, **kwargs: Any) -> Any:
    """module_cls(*args, **kwargs) with its parameters left uninitialized: they hold zeros
    (PyTorch's hold whatever memory they got) and the random generator is left as it was.
    Buffers keep their constructed values. Raises RuntimeError when the class takes no
    `device` argument, as PyTorch does."""
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    from minidl.random import get_rng_state, set_rng_state

    state = get_rng_state()
    try:
        module = module_cls(*args, **kwargs)
    finally:
        set_rng_state(state)
    for p in module.parameters():
        p.data[...] = 0
    return module
