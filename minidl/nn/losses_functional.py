"""The embedding, ranking, multilabel, probabilistic, triplet and CTC losses of
torch.nn.functional, with PyTorch 2.13's signatures, formulas, broadcasting and dtype rules.
minidl.nn.functional re-exports every public name here (F.margin_ranking_loss, ...).

Most are compositions of differentiable tensor ops, each following PyTorch's own composite (or
kernel) step by step so that values, NaN/inf cases and gradients at kinks agree: clamp_min
passes the gradient at the kink and a minimum splits it between ties, as PyTorch's do.
multilabel_margin_loss and ctc_loss are one op each (minidl.graph.op("multilabel_margin_loss"),
minidl.graph.op("ctc_loss")).

reduction is 'none', 'mean' or 'sum' (ValueError otherwise); size_average and reduce are
PyTorch's deprecated pair where PyTorch takes them (minidl.ops.loss.reduction_of). A mean over
no element is NaN.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as _np

from minidl.grad_mode import is_grad_enabled, no_grad
from minidl.graph import op as _op
from minidl.nn.functional import (
    _broadcast_shape,
    _float_target,
    _promoted_pair,
    _target,
    _tensor,
    binary_cross_entropy_with_logits,
    pairwise_distance,
)
from minidl.ops import loss as _loss
from minidl.ops.activation import check_float_input
from minidl.ops.loss import EPSILON
from minidl.tensor import Tensor, concrete, tensor, where
from minidl.tensor_math import log1p

_multilabel_margin_loss = _op("multilabel_margin_loss").apply
_ctc_loss = _op("ctc_loss").apply

__all__ = [
    "cosine_embedding_loss", "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss",
    "margin_ranking_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss",
    "poisson_nll_loss", "soft_margin_loss", "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]


def _reduced(loss: Tensor, reduction: str) -> Tensor:
    """PyTorch's apply_loss_reduction: the mean or sum of every element, or loss itself."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _target_values(op: str, target: Any) -> _np.ndarray:
    """target's values for the masks of a loss that only compares it: Tensor comparisons are
    not graph nodes, so under minidl.compile a traced target raises TraceError (naming op)
    instead of freezing the example batch's mask."""
    return concrete(target, op) if isinstance(target, Tensor) else _np.asarray(target)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Any, margin: float = 0,
                        size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """max(0, -target * (input1 - input2) + margin) per element; target is 1 where input1
    should rank higher, -1 where input2 should.

    input1, input2, target: one number of dims (RuntimeError otherwise, as PyTorch) and shapes
    that broadcast; the loss has their promoted (float) dtype and every one of them, target
    included, gets a gradient."""
    op = "margin_ranking_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x1, x2, t = _tensor(input1), _tensor(input2), _float_target(target)
    if not x1.ndim == x2.ndim == t.ndim:
        raise RuntimeError(f"{op}: input1, input2 and target must have one number of dims, got "
                           f"shapes {tuple(x1.shape)}, {tuple(x2.shape)} and {tuple(t.shape)}")
    _broadcast_shape(op, x1, x2, t)
    loss = (-t * (x1 - x2) + margin).clamp_min(0)
    check_float_input(op, loss)
    return _reduced(loss, reduction)


def hinge_embedding_loss(input: Tensor, target: Any, margin: float = 1.0,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """input where target is 1, max(0, margin - input) where it is -1 (PyTorch's formula adds
    both terms, so another target value gives input + max(0, margin - input)).

    input: float, any shape; target: a shape broadcasting with it (the loss has the broadcast
    shape and input's dtype); target is only compared and gets no gradient."""
    op = "hinge_embedding_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x, t = _tensor(input), _target_values(op, target)
    check_float_input(op, x)
    _broadcast_shape(op, x, t)
    loss = where(t != 1, (margin - x).clamp_min(0), 0.0) + where(t != -1, x, 0.0)
    return _reduced(loss, reduction)


def soft_margin_loss(input: Tensor, target: Any, size_average: Any = None, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """log(1 + exp(-target * input)) per element (log1p, as PyTorch; exp overflows to an
    infinite loss for target * input < -709 in float64, as there).

    input: float, any shape; target: broadcasts to input's shape (RuntimeError if it would
    have to grow it) and is cast to input's dtype. PyTorch defines no gradient for target:
    one that requires grad raises RuntimeError, as there."""
    op = "soft_margin_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x, t = _tensor(input), _float_target(target)
    check_float_input(op, x)
    if t.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{op} is not differentiable with respect to target (as in PyTorch): "
                           "target must not require grad")
    if _broadcast_shape(op, x, t) != tuple(x.shape):
        raise RuntimeError(f"{op}: target of shape {tuple(t.shape)} does not broadcast to the "
                           f"input's shape {tuple(x.shape)}")
    loss = log1p(((-x) * t.detach().astype(x.dtype)).exp())
    return _reduced(loss, reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Any, margin: float = 0,
                          size_average: Any = None, reduce: Any = None,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(input1, input2) where target is 1, max(0, cos - margin) where it is -1, 0
    elsewhere; cos = <x1, x2> / sqrt((|x1|^2 + eps) (|x2|^2 + eps)), eps PyTorch's 1e-12f.

    input1, input2: (N, D) with target (N,), or (D,) with a 0-d target (RuntimeError
    otherwise, as PyTorch); input2 may broadcast against input1. The loss has their promoted
    dtype; target is only compared and gets no gradient."""
    op = "cosine_embedding_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x1, x2, t = _tensor(input1), _tensor(input2), _target_values(op, target)
    if t.ndim > 1:
        raise RuntimeError(f"{op}: expected a 0-d or 1-d target (multi-target is not "
                           f"supported), got shape {t.shape}")
    if x1.ndim != t.ndim + 1 or x2.ndim != t.ndim + 1:
        raise RuntimeError(f"{op}: a {t.ndim}-d target needs {t.ndim + 1}-d inputs, got shapes "
                           f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    _broadcast_shape(op, x1, x2)
    dim = t.ndim
    product = (x1 * x2).sum(dim)
    magnitudes = ((x1 * x1).sum(dim) + EPSILON) * ((x2 * x2).sum(dim) + EPSILON)
    cos = product / magnitudes.sqrt()
    check_float_input(op, cos)
    _broadcast_shape(op, cos, t)
    loss = where(t == 1, 1 - cos, 0.0) + where(t == -1, (cos - margin).clamp_min(0), 0.0)
    return _reduced(loss, reduction)


def multilabel_soft_margin_loss(input: Tensor, target: Any, weight: Any = None,
                                size_average: Any = None, reduce: Any = None,
                                reduction: str = "mean") -> Tensor:
    """The mean over the last dim (C classes) of per-class binary cross-entropy on logits:
    -(t log sigmoid(x) + (1 - t) log sigmoid(-x)), times weight.

    input: (N, C) or (C,) (a 0-d input raises IndexError, as PyTorch); target and weight
    broadcast against it (weight typically (C,)); 'none' gives (N,). target and weight get
    gradients."""
    op = "multilabel_soft_margin_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x, t = _promoted_pair(_tensor(input), target)
    check_float_input(op, x)
    if x.ndim == 0:
        raise IndexError(f"{op}: expected an input with a class dim, got a 0-d tensor")
    shape = _broadcast_shape(op, x, t)
    loss = binary_cross_entropy_with_logits(x.broadcast_to(shape), t.broadcast_to(shape),
                                            reduction="none")
    if weight is not None:
        weight = _tensor(weight)
        _broadcast_shape(op, loss, weight)
        loss = loss * weight
    # PyTorch's class dim is the input's last, even where target or weight add leading dims.
    class_dim = x.ndim - 1
    return _reduced(loss.sum(dim=class_dim) / x.shape[class_dim], reduction)


def multilabel_margin_loss(input: Tensor, target: Any, size_average: Any = None,
                           reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Multi-label hinge loss. input: (N, C) or (C,); target: int64 of input's shape whose
    leading entries up to the first -1 are the sample's classes. Per sample: the sum over its
    classes j and the other classes i of max(0, 1 - (x[j] - x[i])), divided by C. Shape,
    dtype and range errors raise RuntimeError, as PyTorch."""
    return _multilabel_margin_loss(
        _tensor(input), _target(target),
        reduction=_loss.reduction_of(size_average, reduce, reduction),
    )


def poisson_nll_loss(input: Tensor, target: Any, log_input: bool = True, full: bool = False,
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """Poisson negative log-likelihood: exp(input) - target * input with log_input, else
    input - target * log(input + eps); full adds Stirling's term target log(target) - target
    + 0.5 log(2 pi target) where target > 1 (PyTorch's composite, whose target gradient is
    NaN at target = 0 when full).

    input, target: shapes that broadcast (the loss has the broadcast shape and the promoted
    dtype); both get gradients."""
    op = "poisson_nll_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    x, t = _tensor(input), _float_target(target)
    check_float_input(op, x)
    _broadcast_shape(op, x, t)
    loss = x.exp() - t * x if log_input else x - t * (x + eps).log()
    if full:
        stirling = t * t.log() - t + 0.5 * ((2 * math.pi) * t).log()
        loss = loss + stirling.masked_fill(_target_values(op, t) <= 1, 0)
    return _reduced(loss, reduction)


def _homoscedastic(input_shape: tuple, var_shape: tuple) -> bool:
    """PyTorch's test for a var broadcastable to the input with one mismatched dim: the sizes
    of var at the mismatched dims add up to 1 (e.g. input (4, 3, 32, 32), var (4, 1, 32, 32))."""
    return len(input_shape) == len(var_shape) and sum(
        v for i, v in zip(input_shape, var_shape) if i != v) == 1


def gaussian_nll_loss(input: Tensor, target: Any, var: Any, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """Gaussian negative log-likelihood: 0.5 (log(var) + (input - target)^2 / var), plus
    0.5 log(2 pi) with full. var is clamped at eps in value only (its gradient passes the clamp,
    as PyTorch's no_grad clamp_).

    var: a float for every element, or a tensor of input's shape (heteroscedastic), of input's
    shape without the last dim, or broadcastable with one mismatched dim of size 1
    (homoscedastic); other shapes raise ValueError("var is of incorrect size"). A negative var
    raises ValueError, a var that is neither a float nor a tensor TypeError. Checked in
    PyTorch's order: var's sign, var's shape, reduction."""
    op = "gaussian_nll_loss"
    x, t = _tensor(input), _float_target(target)
    if isinstance(var, float):
        if var < 0:
            raise ValueError(f"{op}: var has negative entry/entries")
        var = var * x.new_ones(tuple(x.shape))
    elif isinstance(var, (Tensor, _np.ndarray)):
        var = _tensor(var)
        if (var.data < 0).any():
            raise ValueError(f"{op}: var has negative entry/entries")
    else:
        raise TypeError(f"{op}: var must be a tensor or a float, got {type(var).__name__}")
    if var.shape != x.shape:
        if tuple(x.shape[:-1]) == tuple(var.shape):
            var = var.unsqueeze(-1)
        elif not _homoscedastic(tuple(x.shape), tuple(var.shape)):
            raise ValueError(f"{op}: var is of incorrect size: {tuple(var.shape)} for an "
                             f"input of shape {tuple(x.shape)}")
    _loss.check_reduction(op, reduction)
    check_float_input(op, x)
    var = var.clone()
    with no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (var.log() + (x - t) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduced(loss, reduction)


def _check_triplet(op: str, anchor: Tensor, positive: Tensor, negative: Tensor,
                   margin: float) -> None:
    if margin <= 0:
        raise ValueError(f"{op}: margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(
            f"{op}: the anchor, positive, and negative tensors are expected to have the same "
            f"number of dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, "
            f"and negative {negative.ndim}D inputs")


def _triplet_loss(distance: Callable, anchor: Tensor, positive: Tensor, negative: Tensor,
                  margin: float, swap: bool, reduction: str) -> Tensor:
    """max(0, margin + d(a, p) - d(a, n)); with swap, d(a, n) is replaced by the smaller of it
    and d(p, n) (ties split the gradient, as PyTorch's minimum)."""
    dist_neg = distance(anchor, negative)
    if swap:
        dist_neg = dist_neg.minimum(distance(positive, negative))
    return _reduced((margin + distance(anchor, positive) - dist_neg).clamp_min(0), reduction)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor,
                        margin: float = 1.0, p: float = 2, eps: float = 1e-6, swap: bool = False,
                        size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """Triplet loss with the p-norm distance of pairwise_distance (norm of a - b + eps over
    the last dim). anchor, positive, negative: (N, D) or (D,), one number of dims (RuntimeError
    otherwise), shapes that broadcast; 'none' gives (N,). margin <= 0 raises ValueError."""
    op = "triplet_margin_loss"
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    _loss.check_reduction(op, reduction)
    a, pos, neg = _tensor(anchor), _tensor(positive), _tensor(negative)
    _check_triplet(op, a, pos, neg, margin)
    _broadcast_shape(op, a, pos, neg)

    def distance(x1: Tensor, x2: Tensor) -> Tensor:
        return pairwise_distance(x1, x2, p, eps)

    return _triplet_loss(distance, a, pos, neg, margin, swap, reduction)


def triplet_margin_with_distance_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *,
                                      distance_function: Callable | None = None,
                                      margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean") -> Tensor:
    """Triplet loss with any distance_function(x1, x2) -> (N,) distances (default: the
    Euclidean pairwise distance, eps 1e-6). Checks in PyTorch's order: reduction (ValueError),
    margin > 0 (ValueError), one number of dims (RuntimeError)."""
    op = "triplet_margin_with_distance_loss"
    _loss.check_reduction(op, reduction)
    a, pos, neg = _tensor(anchor), _tensor(positive), _tensor(negative)
    _check_triplet(op, a, pos, neg, margin)
    distance = pairwise_distance if distance_function is None else distance_function
    return _triplet_loss(distance, a, pos, neg, margin, swap, reduction)


def _lengths(op: str, name: str, lengths: Any) -> tuple:
    """CTC lengths as PyTorch takes them: an integer tensor or array, or a list or tuple of
    ints (a bare int raises TypeError, a float tensor RuntimeError, as there)."""
    if isinstance(lengths, (Tensor, _np.ndarray)):
        # Lengths shape the recursion in Python: a traced tensor of lengths raises TraceError.
        values = concrete(lengths, op) if isinstance(lengths, Tensor) else lengths
        if values.dtype.kind not in "iu":
            raise RuntimeError(f"{op}: {name} must be integral, got dtype {values.dtype}")
        return tuple(int(v) for v in values.reshape(-1))
    if isinstance(lengths, (list, tuple)):
        return tuple(int(v) for v in lengths)
    raise TypeError(f"{op}: {name} must be a tensor, list or tuple of ints, got "
                    f"{type(lengths).__name__}")


def ctc_loss(log_probs: Tensor, targets: Any, input_lengths: Any, target_lengths: Any,
             blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist temporal classification loss (PyTorch's CPU algorithm, in log space).

    log_probs: (T, N, C) or unbatched (T, C), log-probabilities (e.g. log_softmax(2));
    targets: (N, S) padded or (sum(target_lengths),) concatenated class indices (cast to
    int64, as PyTorch), none of them needing to avoid blank; input_lengths, target_lengths:
    (N,) integer tensors or lists. 'mean' divides each loss by its target length (at least 1)
    and averages over the batch, 'sum' adds, 'none' gives (N,) (or () unbatched). An
    impossible alignment gives inf (and NaN gradients), 0 and a zero gradient with
    zero_infinity. The gradient with respect to log_probs is PyTorch's: exp(log_probs) minus
    the alignment posteriors, exact through the log_softmax that makes log_probs. Bad
    shapes, lengths, blank or targets raise RuntimeError."""
    op = "ctc_loss"
    _loss.check_reduction(op, reduction)
    x = _tensor(log_probs)
    if x.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected log_probs of shape (T, N, C) or (T, C), got "
                           f"{tuple(x.shape)}")
    if x.numel() == 0:
        raise RuntimeError(f"{op}: log_probs must not be empty, got shape {tuple(x.shape)}")
    batched = x.ndim == 3
    lengths = _lengths(op, "target_lengths", target_lengths)
    losses = _ctc_loss(x if batched else x.unsqueeze(1),
                       _target(targets).astype(_np.int64, copy=False),
                       input_lengths=_lengths(op, "input_lengths", input_lengths),
                       target_lengths=lengths, blank=int(blank),
                       zero_infinity=bool(zero_infinity))
    if reduction == "mean":
        divisors = _np.maximum(_np.asarray(lengths, dtype=losses.dtype), 1)
        return (losses / tensor(divisors)).mean()
    if reduction == "sum":
        return losses.sum()
    return losses if batched else losses.squeeze(0)
