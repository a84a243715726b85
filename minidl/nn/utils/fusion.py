"""torch.nn.utils' conv/linear + BatchNorm fusion for inference: the BatchNorm's running
statistics and affine folded into the preceding layer's weight and bias."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from minidl.nn.module import Module, Parameter
from minidl.tensor import Tensor

__all__ = ["fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval",
           "fuse_linear_bn_weights"]


def _array(x: Any) -> np.ndarray | None:
    return None if x is None else (x.data if isinstance(x, Tensor) else np.asarray(x))


def _requires_grad(x: Any) -> bool:
    return bool(getattr(x, "requires_grad", False))


def _ones_or(x: Any, like: np.ndarray, fill: float) -> np.ndarray:
    return np.full_like(like, fill) if x is None else _array(x)


def fuse_conv_bn_weights(conv_w: Tensor, conv_b: Tensor | None, bn_rm: Tensor, bn_rv: Tensor,
                         bn_eps: float, bn_w: Tensor | None, bn_b: Tensor | None,
                         transpose: bool = False) -> tuple[Parameter, Parameter]:
    """The weight and bias of one convolution equal to conv followed by BatchNorm in eval mode.

    conv_w: (OC, C/groups, *K), or (C, OC/groups, *K) with transpose=True; conv_b, bn_*:
    (OC,) (a None bias, BatchNorm weight or bias counts as 0, 1, 0). The results keep the
    conv's dtypes and requires_grad flags (False for a bias that was None). The arithmetic
    runs in PyTorch's order, so float results equal its bit for bit.
    """
    w, rm, rv = _array(conv_w), _array(bn_rm), _array(bn_rv)
    b = _ones_or(conv_b, rm, 0)
    bn_w, bn_b = _ones_or(bn_w, rm, 1), _ones_or(bn_b, rm, 0)
    rsqrt = 1 / np.sqrt(rv + rv.dtype.type(bn_eps))
    shape = ((1, -1) if transpose else (-1, 1)) + (1,) * (w.ndim - 2)
    fused_w = (w * (bn_w * rsqrt).reshape(shape)).astype(w.dtype)
    fused_b = ((b - rm) * rsqrt * bn_w + bn_b).astype(w.dtype if conv_b is None else b.dtype)
    return (Parameter(fused_w, requires_grad=_requires_grad(conv_w)),
            Parameter(fused_b, requires_grad=_requires_grad(conv_b)))


def _check_eval(op: str, layer: Module, bn: Module) -> None:
    if layer.training or bn.training:
        raise AssertionError(f"{op}: Fusion only for eval!")


def _check_statistics(bn: Module) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise AssertionError("bn.running_mean and bn.running_var must not be None")


def fuse_conv_bn_eval(conv: Module, bn: Module, transpose: bool = False) -> Module:
    """A copy of the (eval-mode) convolution with the (eval-mode) BatchNorm after it folded in.
    Raises AssertionError when either is in training mode, as PyTorch does."""
    _check_eval("fuse_conv_bn_eval", conv, bn)
    _check_statistics(bn)
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(
        fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
        transpose)
    return fused


def fuse_linear_bn_weights(linear_w: Tensor, linear_b: Tensor | None, bn_rm: Tensor,
                           bn_rv: Tensor, bn_eps: float, bn_w: Tensor, bn_b: Tensor
                           ) -> tuple[Parameter, Parameter]:
    """The weight (out, in) and bias (out,) of one Linear equal to Linear then BatchNorm1d in
    eval mode (a BatchNorm of 1 feature broadcasts over every output); PyTorch's order of
    arithmetic, dtypes and requires_grad flags, as fuse_conv_bn_weights."""
    w, rm, rv = _array(linear_w), _array(bn_rm), _array(bn_rv)
    b = _ones_or(linear_b, rm, 0)
    scale = _array(bn_w) * (1 / np.sqrt(rv + rv.dtype.type(bn_eps)))
    fused_w = w * scale[:, None].astype(w.dtype)
    fused_b = ((b - rm) * scale + _array(bn_b)).astype(w.dtype if linear_b is None else b.dtype)
    return (Parameter(fused_w, requires_grad=_requires_grad(linear_w)),
            Parameter(fused_b, requires_grad=_requires_grad(linear_b)))


def fuse_linear_bn_eval(linear: Module, bn: Module) -> Module:
    """A copy of the (eval-mode) Linear with the (eval-mode) BatchNorm1d after it folded in.
    Raises AssertionError in training mode, or when bn's features are neither
    linear.out_features nor 1."""
    _check_eval("fuse_linear_bn_eval", linear, bn)
    if linear.out_features != bn.num_features and bn.num_features != 1:
        raise AssertionError(
            "To fuse, linear.out_features == bn.num_features or bn.num_features == 1, got "
            f"linear.out_features={linear.out_features} and bn.num_features={bn.num_features}")
    _check_statistics(bn)
    fused = copy.deepcopy(linear)
    fused.weight, fused.bias = fuse_linear_bn_weights(
        fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return fused
