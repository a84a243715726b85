"""Loss functions, one Function class each, with PyTorch's definitions and reductions.

reduction='none' returns one loss per sample (per element for the elementwise losses),
'sum' their sum, 'mean' their mean (weighted by the class weights of the targets for
cross_entropy and nll_loss, as PyTorch does). Class-index targets are integer arrays of
shape (N,) (or (N, d1, ...) for (N, C, d1, ...) inputs); they carry no gradient.
"""

from __future__ import annotations

import warnings

import numpy as np

from minidl._kernels import loss as _loss
from minidl.graph import Context, Function
from minidl.ops.activation import check_float_input, log_softmax_array, softplus_array
from minidl.ops.elementwise import sign

REDUCTIONS = ("mean", "sum", "none")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduction_of(size_average, reduce, reduction: str) -> str:
    """reduction, unless PyTorch's deprecated size_average/reduce pair is given: then what the
    pair means (reduce=False 'none', else size_average=False 'sum', else 'mean'), with
    PyTorch's deprecation warning."""
    if size_average is None and reduce is None:
        return reduction
    # None means True for either flag; any other value counts by its truth, as in PyTorch.
    if reduce is not None and not reduce:
        legacy = "none"
    elif size_average is not None and not size_average:
        legacy = "sum"
    else:
        legacy = "mean"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  f"reduction='{legacy}' instead.", stacklevel=3)
    return legacy


def _reduce(loss: np.ndarray, reduction: str, denominator=None) -> np.ndarray:
    """loss as reduced; `denominator` replaces the element count for 'mean'. A mean over
    nothing (every target ignored) is NaN, as in PyTorch."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return np.asarray(total)
    count = loss.size if denominator is None else denominator
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / loss.dtype.type(count), dtype=loss.dtype)


def _upstream(g: np.ndarray, reduction: str, denominator, shape: tuple) -> np.ndarray:
    """The upstream gradient as a factor broadcastable against per-element losses of `shape`.
    A mean over nothing passes a zero gradient back (PyTorch does the same)."""
    if reduction == "none":
        return g.reshape(shape)
    if reduction == "sum":
        return g.reshape(())
    count = int(np.prod(shape)) if denominator is None else denominator
    if count == 0:
        return np.zeros((), dtype=g.dtype)
    return g.reshape(()) / g.dtype.type(count)


def _class_rows(op: str, x: np.ndarray, target) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Scores as (M, C) rows, targets as (M,) int64, and the per-sample loss shape.

    x: (C,) with a 0-d target, (N, C) with target (N,), or (N, C, d1, ...) with (N, d1, ...).
    """
    check_float_input(op, x)
    if not isinstance(target, np.ndarray):
        target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices (int64), got dtype {target.dtype}"
        )
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an input of shape (N, C), got a 0-d tensor")
    if x.ndim == 1:
        expected = ()
        rows = x.reshape(1, -1)
    else:
        expected = (x.shape[0],) + x.shape[2:]
        # Explicit row count: reshape(-1, 0) is ambiguous for zero classes.
        rows = np.moveaxis(x, 1, -1).reshape(int(np.prod(expected)), x.shape[1])
    if target.shape != expected:
        raise ValueError(
            f"{op}: input of shape {x.shape} needs a target of shape {expected}, got "
            f"{target.shape} (batch sizes must match)"
        )
    # The targets are copied: backward indexes with them, and the caller may change its array.
    return np.ascontiguousarray(rows), target.reshape(-1).astype(np.int64, copy=True), expected


def _check_range(op: str, target: np.ndarray, classes: int, ignore_index: int | None):
    """Boolean mask of the targets that count (all but ignore_index); raises on others."""
    valid = np.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bad.any():
        value = int(target[np.argmax(bad)])
        extra = "" if ignore_index is None else f" (ignore_index is {ignore_index})"
        raise ValueError(
            f"{op}: target {value} is out of range for {classes} classes: expected 0 <= "
            f"target < {classes}{extra}"
        )
    return valid


def _class_weight(op: str, weight, classes: int, dtype) -> np.ndarray | None:
    if weight is None:
        return None
    if weight.shape != (classes,):
        raise ValueError(f"{op}: weight has shape {weight.shape}, expected ({classes},)")
    return weight.astype(dtype, copy=False)


def _to_input_shape(grad_rows: np.ndarray, x_shape: tuple) -> np.ndarray:
    """Inverse of _class_rows' layout change: (M, C) rows back to the input's shape."""
    if len(x_shape) <= 2:
        return grad_rows.reshape(x_shape)
    moved = grad_rows.reshape((x_shape[0],) + x_shape[2:] + (x_shape[1],))
    return np.ascontiguousarray(np.moveaxis(moved, -1, 1))


class CrossEntropyOp(Function):
    """log_softmax and negative log-likelihood fused, PyTorch's cross_entropy.

    Per sample i with target y: (1 - s) * w[y] * (-log p[i, y]) + s / C * sum_c w[c] * (-log p[i, c])
    (s = label_smoothing, w = class weights or ones); ignored targets contribute 0 and are left
    out of the mean, whose denominator is sum_i w[y_i]. The gradient is formed directly as
    p * (sum of the target weights) - (smoothed, weighted one-hot), never through log/exp nodes.
    """

    name = "cross_entropy"
    lowering = "cross_entropy"

    @staticmethod
    def forward(ctx: Context, x, target, weight, *, reduction: str, ignore_index: int,
                label_smoothing: float) -> np.ndarray:
        op = "cross_entropy"
        if (weight is None and label_smoothing == 0.0 and reduction in ("mean", "sum")
                and x.ndim == 2 and x.flags.c_contiguous and x.dtype in _FLOATS
                and isinstance(target, np.ndarray) and target.dtype == np.int64
                and target.shape == (x.shape[0],) and x.shape[0] > 0
                and not (0 <= ignore_index < x.shape[1])):
            out = CrossEntropyOp._forward_fused(ctx, x, target, reduction)
            if out is not None:
                return out
        check_reduction(op, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
        rows, t, out_shape = _class_rows(op, x, target)
        m, classes = rows.shape
        valid = _check_range(op, t, classes, ignore_index)
        w = _class_weight(op, weight, classes, x.dtype)
        safe_t = np.where(valid, t, 0)
        logp = log_softmax_array(rows, 1)
        # With zero classes every target is ignored (others were rejected above): nothing to
        # gather, and the loss is PyTorch's (0 per sample, NaN mean).
        if classes:
            w_y = valid.astype(x.dtype) if w is None else w[safe_t] * valid
            picked = logp[np.arange(m), safe_t]
        else:
            w_y = picked = np.zeros(m, x.dtype)
        # Selected, not multiplied by the 0/1 mask: an ignored row of inf/NaN logits has a
        # NaN log-probability, and NaN * 0 is NaN (PyTorch's loss stays finite).
        zero = x.dtype.type(0)
        loss = np.where(valid, -picked * w_y, zero)
        s = float(label_smoothing)
        if s > 0:
            smooth = -(logp.sum(axis=1) if w is None else (logp * w).sum(axis=1))
            loss = (1 - s) * loss + (s / classes) * np.where(valid, smooth, zero)
        denominator = w_y.sum()
        ctx.save_for_backward(logp, safe_t, valid, w_y, w)
        ctx.reduction, ctx.smoothing, ctx.denominator = reduction, s, denominator
        ctx.x_shape, ctx.out_shape = x.shape, out_shape
        return _reduce(loss.reshape(out_shape), reduction, denominator)

    @staticmethod
    def _forward_fused(ctx: Context, x, target, reduction: str) -> np.ndarray | None:
        """The common case in one kernel pass; None when a target is out of range (the
        general path then raises the error). Targets equal to an ignore_index outside
        [0, C) are out of range too, so nothing is ignored here."""
        prob = np.empty_like(x)
        row_loss = np.empty(x.shape[0], dtype=np.float64)
        # An owned copy: backward indexes with it, and the caller may change its array.
        target = target.copy()
        if _loss.softmax_cross_entropy_forward(x, target, prob, row_loss) >= 0:
            return None
        total = row_loss.sum()
        ctx.save_for_backward(prob, target)
        ctx.fused_reduction = reduction
        if reduction == "mean":
            total /= x.shape[0]
        return np.asarray(total, dtype=x.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        reduction = getattr(ctx, "fused_reduction", None)
        if reduction is not None:
            prob, target = ctx.saved_tensors
            scale = float(g) / prob.shape[0] if reduction == "mean" else float(g)
            grad = np.empty_like(prob)
            _loss.softmax_cross_entropy_backward(prob, target, scale, grad)
            return grad, None, None
        logp, safe_t, valid, w_y, w = ctx.saved_tensors
        m, classes = logp.shape
        if classes == 0:
            return _to_input_shape(np.zeros_like(logp), ctx.x_shape), None, None
        s = ctx.smoothing
        total_w = float(classes) if w is None else w.sum()
        # max(classes, 1): with zero classes there is no gradient element to scale.
        coef = (1 - s) * w_y + (s / max(classes, 1)) * total_w * valid
        grad = np.exp(logp)
        grad *= coef[:, None]
        grad[np.arange(m), safe_t] -= (1 - s) * w_y
        if s > 0:
            per_class = (s / classes) * (np.ones(classes, logp.dtype) if w is None else w)
            grad -= per_class[None, :] * valid[:, None]
        up = _upstream(g, ctx.reduction, ctx.denominator, ctx.out_shape)
        grad *= up.reshape(-1, 1) if up.ndim else up
        grad[~valid] = 0
        return _to_input_shape(grad, ctx.x_shape), None, None


class NLLOp(Function):
    """Negative log-likelihood of log-probabilities x: -w[y] * x[i, y], PyTorch's nll_loss."""

    name = "nll_loss"

    @staticmethod
    def forward(ctx: Context, x, target, weight, *, reduction: str, ignore_index: int):
        op = "nll_loss"
        check_reduction(op, reduction)
        rows, t, out_shape = _class_rows(op, x, target)
        m, classes = rows.shape
        valid = _check_range(op, t, classes, ignore_index)
        w = _class_weight(op, weight, classes, x.dtype)
        safe_t = np.where(valid, t, 0)
        w_y = valid.astype(x.dtype) if w is None else w[safe_t] * valid
        loss = -rows[np.arange(m), safe_t] * w_y
        denominator = w_y.sum()
        ctx.save_for_backward(safe_t, w_y)
        ctx.reduction, ctx.denominator = reduction, denominator
        ctx.x_shape, ctx.out_shape, ctx.rows_shape = x.shape, out_shape, rows.shape
        return _reduce(loss.reshape(out_shape), reduction, denominator)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        safe_t, w_y = ctx.saved_tensors
        m = ctx.rows_shape[0]
        up = _upstream(g, ctx.reduction, ctx.denominator, ctx.out_shape)
        grad = np.zeros(ctx.rows_shape, dtype=g.dtype)
        grad[np.arange(m), safe_t] = -w_y * up.reshape(-1)
        return _to_input_shape(grad, ctx.x_shape), None, None


def _paired_target(op: str, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    check_float_input(op, x)
    if target.shape != x.shape:
        raise ValueError(
            f"{op}: target has shape {target.shape} but input has shape {x.shape}; they must match"
        )
    if target.dtype.kind != "f":
        raise TypeError(f"{op}: target must be a float tensor, got dtype {target.dtype}")
    return target.astype(x.dtype, copy=False)


class MSEOp(Function):
    """(x - target)^2 per element."""

    name = "mse_loss"

    @staticmethod
    def forward(ctx: Context, x, target, *, reduction: str) -> np.ndarray:
        check_reduction("mse_loss", reduction)
        diff = x - _paired_target("mse_loss", x, target)
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        return _reduce(diff * diff, reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (diff,) = ctx.saved_tensors
        grad = 2 * diff * _upstream(g, ctx.reduction, None, diff.shape)
        need_x, need_t = ctx.needs_input_grad
        return (grad if need_x else None), (-grad if need_t else None)


class L1Op(Function):
    """|x - target| per element; gradient sign(x - target), 0 where they are equal."""

    name = "l1_loss"

    @staticmethod
    def forward(ctx: Context, x, target, *, reduction: str) -> np.ndarray:
        check_reduction("l1_loss", reduction)
        diff = x - _paired_target("l1_loss", x, target)
        ctx.save_for_backward(sign(diff))
        ctx.reduction = reduction
        return _reduce(np.abs(diff), reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (sign,) = ctx.saved_tensors
        grad = sign * _upstream(g, ctx.reduction, None, sign.shape)
        need_x, need_t = ctx.needs_input_grad
        return (grad if need_x else None), (-grad if need_t else None)


class BCEWithLogitsOp(Function):
    """Binary cross-entropy on logits: (1 - y) x + (1 + (pw - 1) y) softplus(-x), times weight.

    softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows. weight broadcasts against
    the input; pos_weight (C,) against its last axis, as in PyTorch.
    """

    name = "binary_cross_entropy_with_logits"

    @staticmethod
    def forward(ctx: Context, x, target, weight, pos_weight, *, reduction: str) -> np.ndarray:
        op = "binary_cross_entropy_with_logits"
        check_reduction(op, reduction)
        y = _paired_target(op, x, target)
        try:
            w = None if weight is None else np.broadcast_to(weight.astype(x.dtype), x.shape)
            pw = None if pos_weight is None else np.broadcast_to(
                pos_weight.astype(x.dtype), x.shape
            )
        except ValueError as e:
            raise ValueError(
                f"{op}: weight/pos_weight shapes do not broadcast to the input's {x.shape}"
            ) from e
        softplus_neg = softplus_array(-x)
        factor = 1.0 if pw is None else 1 + (pw - 1) * y
        loss = (1 - y) * x + factor * softplus_neg
        if w is not None:
            loss = loss * w
        ctx.save_for_backward(x, y, w, pw, softplus_neg)
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, y, w, pw, softplus_neg = ctx.saved_tensors
        need_x, need_t, _, _ = ctx.needs_input_grad
        up = _upstream(g, ctx.reduction, None, x.shape)
        if w is not None:
            up = up * w
        e = np.exp(-np.abs(x))
        sigmoid_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))
        gx = gt = None
        if need_x:
            factor = 1.0 if pw is None else 1 + (pw - 1) * y
            gx = ((1 - y) - factor * sigmoid_neg) * up
        if need_t:
            gt = (-x if pw is None else -x + (pw - 1) * softplus_neg) * up
        return gx, gt, None, None


class MultiMarginOp(Function):
    """Multiclass hinge loss, PyTorch's multi_margin_loss.

    Per sample with target y: sum over j != y of w[y] * max(0, margin - x[y] + x[j])^p / C,
    p in {1, 2}; x: (N, C) with target (N,), or (C,) with a 0-d target. 'mean' averages
    over samples (unweighted).
    """

    name = "multi_margin_loss"

    @staticmethod
    def forward(ctx: Context, x, target, weight, *, p: int, margin: float,
                reduction: str) -> np.ndarray:
        op = "multi_margin_loss"
        check_reduction(op, reduction)
        if p not in (1, 2):
            raise ValueError(f"{op}: only p=1 and p=2 are supported, got {p!r}")
        if x.ndim > 2:
            raise ValueError(f"{op}: expected an input of shape (N, C) or (C,), got {x.shape}")
        rows, t, out_shape = _class_rows(op, x, target)
        m, classes = rows.shape
        _check_range(op, t, classes, None)
        w = _class_weight(op, weight, classes, x.dtype)
        index = np.arange(m)
        z = float(margin) - rows[index, t][:, None] + rows
        active = z > 0
        active[index, t] = False
        z = np.where(active, z, x.dtype.type(0))
        h = z if p == 1 else z * z
        w_y = None if w is None else w[t]
        loss = h.sum(axis=1) / x.dtype.type(classes)
        if w_y is not None:
            loss *= w_y
        ctx.save_for_backward(z, active, t, w_y)
        ctx.p, ctx.reduction, ctx.x_shape, ctx.out_shape = p, reduction, x.shape, out_shape
        return _reduce(loss.reshape(out_shape), reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        z, active, t, w_y = ctx.saved_tensors
        m, classes = z.shape
        dz = active.astype(g.dtype) if ctx.p == 1 else 2 * z
        up = _upstream(g, ctx.reduction, None, ctx.out_shape).reshape(-1)
        scale = up / g.dtype.type(classes)
        if w_y is not None:
            scale = scale * w_y
        grad = dz * (scale[:, None] if scale.ndim else scale)
        grad[np.arange(m), t] = -grad.sum(axis=1)
        return grad.reshape(ctx.x_shape), None, None


class HuberOp(Function):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere, d = x - target (PyTorch's
    huber_loss); the gradient clip(d, -delta, delta). smooth_l1_loss is this divided by beta."""

    name = "huber_loss"

    @staticmethod
    def forward(ctx: Context, x, target, *, reduction: str, delta: float) -> np.ndarray:
        op = "huber_loss"
        check_reduction(op, reduction)
        if not delta > 0:
            raise ValueError(f"{op}: delta must be positive, got {delta}")
        diff = x - _paired_target(op, x, target)
        size = np.abs(diff)
        d = float(delta)
        loss = np.where(size < d, 0.5 * diff * diff, d * (size - 0.5 * d))
        ctx.save_for_backward(np.clip(diff, -d, d))
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (clipped,) = ctx.saved_tensors
        grad = clipped * _upstream(g, ctx.reduction, None, clipped.shape)
        need_x, need_t = ctx.needs_input_grad
        return (grad if need_x else None), (-grad if need_t else None)


class BCEOp(Function):
    """Binary cross-entropy of probabilities x in [0, 1], PyTorch's binary_cross_entropy:
    -w (t max(log x, -100) + (1 - t) max(log(1 - x), -100)); the clamp keeps x = 0 or 1 finite.
    The gradient is PyTorch's w (x - t) / max(x (1 - x), 1e-12) (the target's w (log(1 - x) -
    log x), unclamped). weight broadcasts against x."""

    name = "binary_cross_entropy"

    @staticmethod
    def forward(ctx: Context, x, target, weight, *, reduction: str) -> np.ndarray:
        op = "binary_cross_entropy"
        check_reduction(op, reduction)
        t = _paired_target(op, x, target)
        if not ((x >= 0) & (x <= 1)).all():  # NaN fails too, as in PyTorch
            raise RuntimeError(f"{op}: all elements of input should be between 0 and 1")
        try:
            w = None if weight is None else np.broadcast_to(weight.astype(x.dtype), x.shape)
        except ValueError as e:
            raise ValueError(f"{op}: weight of shape {weight.shape} does not broadcast to the "
                             f"input's {x.shape}") from e
        floor = x.dtype.type(-100)
        with np.errstate(divide="ignore"):
            log_x = np.maximum(np.log(x), floor)
            log_1mx = np.maximum(np.log1p(-x), floor)
        loss = (t - 1) * log_1mx - t * log_x
        if w is not None:
            loss = loss * w
        ctx.save_for_backward(x, t, w)
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, t, w = ctx.saved_tensors
        need_x, need_t, _ = ctx.needs_input_grad
        up = _upstream(g, ctx.reduction, None, x.shape)
        if w is not None:
            up = up * w
        gx = (x - t) / np.maximum(x * (1 - x), EPSILON) * up if need_x else None
        gt = None
        if need_t:  # unclamped, as PyTorch's: infinite at x = 0 or 1
            with np.errstate(divide="ignore"):
                gt = (np.log1p(-x) - np.log(x)) * up
        return gx, gt, None


# PyTorch's loss kernels' `EPSILON = 1e-12f`: the float32 rounding of 1e-12 (9.9999999600e-13)
# even for float64, copied so that results agree. BCE floors x (1 - x) at it (gradients at
# x = 0 or 1); cosine_embedding_loss adds it to each squared magnitude.
EPSILON = float(np.float32(1e-12))


class KLDivOp(Function):
    """PyTorch's kl_div of log-probabilities x against target t: xlogy(t, t) - t x (0 where
    t == 0), or exp(t) (t - x) with log_target. reduction also takes 'batchmean' (the sum over
    x.shape[0])."""

    name = "kl_div"

    @staticmethod
    def forward(ctx: Context, x, target, *, reduction: str, log_target: bool) -> np.ndarray:
        op = "kl_div"
        if reduction != "batchmean":
            check_reduction(op, reduction)
        t = _paired_target(op, x, target)
        if log_target:
            p = np.exp(t)
            loss = p * (t - x)
        else:
            p = t
            with np.errstate(divide="ignore", invalid="ignore"):
                loss = np.where(t == 0, x.dtype.type(0), t * np.log(t)) - t * x
        ctx.save_for_backward(x, t, p)
        ctx.log_target = bool(log_target)
        ctx.reduction = "mean" if reduction == "batchmean" else reduction
        ctx.denominator = (x.shape[0] if x.ndim else 1) if reduction == "batchmean" else None
        return _reduce(loss, ctx.reduction, ctx.denominator)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, t, p = ctx.saved_tensors
        need_x, need_t = ctx.needs_input_grad
        up = _upstream(g, ctx.reduction, ctx.denominator, x.shape)
        gx = -p * up if need_x else None
        gt = None
        if need_t:
            if ctx.log_target:
                gt = p * (t - x + 1) * up
            else:
                # PyTorch's xlogy gradients: log t from the first operand (0 where t == 0),
                # t / t from the second (NaN where t == 0).
                with np.errstate(divide="ignore", invalid="ignore"):
                    gt = (np.where(t == 0, x.dtype.type(0), np.log(t)) + t / t - x) * up
        return gx, gt


class MultiLabelMarginOp(Function):
    """PyTorch's multilabel_margin_loss: per sample, the targets are the leading entries of its
    target row up to the first -1; the loss is the sum over target j and non-target i of
    max(0, 1 - (x[y_j] - x[i])), divided by C. A target listed twice counts twice.

    x: (N, C), (C,) or () (one class); target: int64 of x's shape (RuntimeError otherwise, as
    PyTorch), values in [-1, C). 'none' gives (N,), or () for an unbatched x.
    """

    name = "multilabel_margin_loss"

    @staticmethod
    def forward(ctx: Context, x, target, *, reduction: str) -> np.ndarray:
        op = "multilabel_margin_loss"
        check_reduction(op, reduction)
        check_float_input(op, x)
        if not ((x.ndim == 2 and x.shape[1]) or (x.ndim == 1 and x.shape[0]) or x.ndim == 0):
            raise RuntimeError(f"{op}: expected a non-empty (C,) or (N, C) input (N may be 0), "
                               f"got shape {x.shape}")
        if target.dtype != np.int64:
            raise RuntimeError(f"{op}: expected an int64 (Long) target, got {target.dtype}")
        batched = x.ndim == 2
        rows = x.reshape(-1, x.shape[-1] if x.ndim else 1)
        fits = (target.shape == x.shape if batched
                else target.ndim <= 1 and target.size == rows.shape[1])
        if not fits:
            raise RuntimeError(f"{op}: target of shape {target.shape} does not fit an input of "
                               f"shape {x.shape}: expected the input's shape")
        classes = rows.shape[1]
        t = target.reshape(rows.shape)
        if t.size and (t.min() < -1 or t.max() >= classes):
            raise RuntimeError(f"{op}: target values must be in [-1, {classes}), got "
                               f"{t.min()} to {t.max()}")
        # The targets of a row are its entries before the first -1; only those count.
        listed = np.cumprod(t >= 0, axis=1).astype(bool)
        width = int(listed.sum(axis=1).max(initial=0))
        listed, picked = listed[:, :width], np.where(listed, t, 0)[:, :width]
        is_target = np.zeros(rows.shape, dtype=bool)
        is_target[np.nonzero(listed)[0], picked[listed]] = True
        # z[n, j, i] = 1 - x[n, y_j] + x[n, i], for each listed target j against every class i.
        z = 1 - np.take_along_axis(rows, picked, axis=1)[:, :, None] + rows[:, None, :]
        active = listed[:, :, None] & ~is_target[:, None, :] & (z > 0)
        loss = np.where(active, z, x.dtype.type(0)).sum(axis=(1, 2)) / x.dtype.type(classes)
        out_shape = (x.shape[0],) if batched else ()
        ctx.save_for_backward(active, picked)
        ctx.reduction, ctx.x_shape, ctx.out_shape = reduction, x.shape, out_shape
        return _reduce(loss.reshape(out_shape), reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        active, picked = ctx.saved_tensors
        m, _, classes = active.shape
        up = _upstream(g, ctx.reduction, None, ctx.out_shape).reshape(-1)
        scale = up / g.dtype.type(classes)
        counts = active.astype(g.dtype)
        grad = counts.sum(axis=1)
        # Each active pair lowers its target's score: scatter the per-target pair counts.
        np.add.at(grad, (np.repeat(np.arange(m), picked.shape[1]), picked.reshape(-1)),
                  -counts.sum(axis=2).reshape(-1))
        grad *= scale[:, None]
        return grad.reshape(ctx.x_shape), None


def _log_sum_exp(*terms: np.ndarray) -> np.ndarray:
    """log(sum(exp(terms))) elementwise as PyTorch's CTC kernel forms it: shifted by the
    largest term, or by 0 where every term is -inf (which stays -inf)."""
    top = terms[0]
    for t in terms[1:]:
        top = np.maximum(top, t)
    top = np.where(top == -np.inf, top.dtype.type(0), top)
    total = np.exp(terms[0] - top)
    for t in terms[1:]:
        total = total + np.exp(t - top)
    return np.log(total) + top


def _shifted(a: np.ndarray, by: int) -> np.ndarray:
    """a[..., s - by] at each s along the last axis (by < 0: s + |by|), -inf off the ends."""
    out = np.full_like(a, -np.inf)
    if by > 0:
        out[..., by:] = a[..., :-by]
    else:
        out[..., :by] = a[..., -by:]
    return out


def _ctc_labels(op: str, shape: tuple, targets: np.ndarray, lengths_in: np.ndarray,
                lengths_tg: np.ndarray, blank: int) -> np.ndarray:
    """The targets as (N, max target length) int64 rows (blank past each length), after
    PyTorch's checks (RuntimeError)."""
    steps, batch, classes = shape
    if not 0 <= blank < classes:
        raise RuntimeError(f"{op}: blank must be in label range [0, {classes}), got {blank}")
    for name, lengths in (("input_lengths", lengths_in), ("target_lengths", lengths_tg)):
        if lengths.size != batch:
            raise RuntimeError(f"{op}: {name} must be of size batch_size {batch}, got "
                               f"{lengths.size}")
        if lengths.size and lengths.min() < 0:
            raise RuntimeError(f"{op}: expected {name} to have values at least 0, got "
                               f"{lengths.min()}")
    if lengths_in.size and lengths_in.max() > steps:
        raise RuntimeError(f"{op}: expected input_lengths to have values at most {steps} "
                           f"(the input's length), got {lengths_in.max()}")
    width = int(lengths_tg.max(initial=0))
    valid = np.arange(width)[None, :] < lengths_tg[:, None]
    if targets.ndim == 1:
        if targets.shape[0] != lengths_tg.sum():
            raise RuntimeError(f"{op}: concatenated targets must have sum(target_lengths) = "
                               f"{lengths_tg.sum()} entries, got {targets.shape[0]}")
        starts = np.cumsum(lengths_tg) - lengths_tg
        index = np.minimum(starts[:, None] + np.arange(width)[None, :],
                           max(targets.shape[0] - 1, 0))
        labels = targets[index] if targets.size else np.zeros((batch, width), np.int64)
    elif targets.ndim == 2:
        if targets.shape[0] != batch or targets.shape[1] < width:
            raise RuntimeError(f"{op}: padded targets must be (batch, at least the longest "
                               f"target) = ({batch}, >= {width}), got {targets.shape}")
        labels = targets[:, :width]
    else:
        raise RuntimeError(f"{op}: expected 1-d or 2-d targets, got shape {targets.shape}")
    labels = np.where(valid, labels, blank).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise RuntimeError(f"{op}: target values must be class indices in [0, {classes}), got "
                           f"{labels.min()} to {labels.max()}")
    return labels


class CTCLossOp(Function):
    """Connectionist temporal classification, PyTorch's ctc_loss on the CPU: the negative log
    likelihood of each sample's target over all alignments (Graves et al. 2006), in log space.

    log_probs: (T, N, C); targets: (N, S) padded or (sum(target_lengths),) concatenated, int64;
    input_lengths, target_lengths: N ints each. The output is (N,) (inf where no alignment
    fits, 0 there with zero_infinity; a sample of input length 0 gives -0.0 or inf).

    The gradient is PyTorch's: exp(log_probs) - (the posterior of each (t, c)), times the
    upstream gradient, for t < input_length (0 after). It is the gradient through a
    log_softmax that made log_probs; with respect to log_probs themselves it has the extra
    exp(log_probs) term, as PyTorch's.
    """

    name = "ctc_loss"

    @staticmethod
    def forward(ctx: Context, log_probs, targets, *, input_lengths: tuple,
                target_lengths: tuple, blank: int, zero_infinity: bool) -> np.ndarray:
        op = "ctc_loss"
        check_float_input(op, log_probs)
        steps, batch, classes = log_probs.shape
        lengths_in = np.asarray(input_lengths, dtype=np.int64).reshape(-1)
        lengths_tg = np.asarray(target_lengths, dtype=np.int64).reshape(-1)
        labels = _ctc_labels(op, log_probs.shape, targets, lengths_in, lengths_tg, blank)
        # The extended target: blank, y1, blank, y2, ..., blank (2 L + 1 states).
        states = 2 * labels.shape[1] + 1
        ext = np.full((batch, states), blank, dtype=np.int64)
        ext[:, 1::2] = labels
        lpe = np.take_along_axis(log_probs, np.broadcast_to(ext, (steps, batch, states)), 2)
        # A label state may be reached from two states back unless it repeats that label.
        skip = np.zeros((batch, states), dtype=bool)
        skip[:, 2:] = ext[:, 2:] != ext[:, :-2]
        neg_inf = log_probs.dtype.type(-np.inf)
        alpha = np.full((steps, batch, states), neg_inf)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            alpha[0, :, 0] = lpe[0, :, 0]
            if states > 1:
                alpha[0, :, 1] = np.where(lengths_tg > 0, lpe[0, :, 1], neg_inf)
            for t in range(1, steps):
                prev = alpha[t - 1]
                two_back = np.where(skip, _shifted(prev, 2), neg_inf)
                alpha[t] = _log_sum_exp(prev, _shifted(prev, 1), two_back) + lpe[t]
            rows = np.arange(batch)
            last = np.maximum(lengths_in - 1, 0)
            end = alpha[last, rows, 2 * lengths_tg]
            before = np.where(lengths_tg > 0, alpha[last, rows, np.maximum(2 * lengths_tg - 1, 0)],
                              neg_inf)
            nll = -_log_sum_exp(end, before)
        # No input step: likelihood 1 for an empty target (PyTorch's -0.0), else 0.
        nll = np.where(lengths_in == 0, np.where(lengths_tg == 0, -0.0, np.inf), nll)
        nll = nll.astype(log_probs.dtype)
        ctx.save_for_backward(log_probs, lpe, alpha, ext, skip, lengths_in, lengths_tg, nll)
        ctx.zero_infinity = bool(zero_infinity)
        return np.where(np.isposinf(nll), nll.dtype.type(0), nll) if zero_infinity else nll

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        log_probs, lpe, alpha, ext, skip, lengths_in, lengths_tg, nll = ctx.saved_tensors
        steps, batch, states = alpha.shape
        neg_inf = log_probs.dtype.type(-np.inf)
        rows, ends = np.arange(batch), 2 * lengths_tg
        labelled = lengths_tg > 0
        beyond = np.arange(states)[None, :] > ends[:, None]
        # skip_up[s]: state s + 2 may be entered from s (the mirror of skip).
        skip_up = np.zeros_like(skip)
        skip_up[:, :-2] = skip[:, 2:]
        beta = np.full(alpha.shape, neg_inf)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for t in range(steps - 1, -1, -1):
                # Each sample starts at its own last step, in its last blank or last label.
                start = np.full((batch, states), neg_inf)
                start[rows, ends] = lpe[t, rows, ends]
                start[rows[labelled], ends[labelled] - 1] = lpe[t, rows[labelled],
                                                                ends[labelled] - 1]
                after = beta[t + 1] if t + 1 < steps else np.full((batch, states), neg_inf)
                two_up = np.where(skip_up, _shifted(after, -2), neg_inf)
                step = _log_sum_exp(after, _shifted(after, -1), two_up) + lpe[t]
                step[beyond] = neg_inf
                phase = (t - (lengths_in - 1))[:, None]
                beta[t] = np.where(phase == 0, start, np.where(phase < 0, step, neg_inf))
            # log of the sum over the states of each class of alpha * beta, accumulated in
            # PyTorch's order (states descending, one pairwise log-add each).
            log_cab = np.full(log_probs.shape, neg_inf)
            both = alpha + beta
            for s in range(states - 1, -1, -1):
                classes = ext[:, s]
                log_cab[:, rows, classes] = _log_sum_exp(log_cab[:, rows, classes], both[:, :, s])
            upstream = g.reshape(-1).astype(log_probs.dtype)
            grad = (np.exp(log_probs) - np.exp(log_cab + nll[None, :, None] - log_probs)) \
                * upstream[None, :, None]
        grad[np.arange(steps)[:, None] >= lengths_in[None, :]] = 0
        if ctx.zero_infinity:
            grad[:, np.isposinf(nll)] = 0
        return grad, None

