"""Function forms of the layers, activations and losses (torch.nn.functional's names and
argument orders). Modules in minidl.nn call these, so a faster op slots in here once.

Tensor arguments may also be NumPy arrays; class-index targets may be Tensors, arrays or lists.

This is the Tensor-level layer over the array-level ops (minidl.ops: Function classes that
see only arrays): each function here converts its arguments, validates what needs the whole
call (e.g. conv2d's padding='same') and applies one op, found by its registered name
(minidl.graph.op). The modules and ops imported are private names: the namespace holds the
functions only.
"""

import warnings
from typing import Any, Union

import numpy as _np

from minidl.graph import op as _op
from minidl.ops import conv as _conv
from minidl.ops import im2col as _im2col
from minidl.ops import loss as _loss
from minidl.ops import pool as _pool
from minidl.tensor import Tensor, tensor
from minidl.tensor import where as _where

# The ops applied here, found by name once (minidl.graph.op): a call costs no lookup.
_linear = _op("linear").apply
_relu = _op("relu").apply
_leaky_relu = _op("leaky_relu").apply
_hardtanh = _op("hardtanh").apply
_silu = _op("silu").apply
_gelu = _op("gelu").apply
_softplus = _op("softplus").apply
_mish = _op("mish").apply
_hardswish = _op("hardswish").apply
_hardsigmoid = _op("hardsigmoid").apply
_selu = _op("selu").apply
_layer_norm = _op("layer_norm").apply
_group_norm = _op("group_norm").apply
_embedding = _op("embedding").apply
_prelu = _op("prelu").apply
_elu = _op("elu").apply
_sigmoid = _op("sigmoid").apply
_tanh = _op("tanh").apply
_logsigmoid = _op("logsigmoid").apply
_celu = _op("celu").apply
_hardshrink = _op("hardshrink").apply
_softshrink = _op("softshrink").apply
_threshold = _op("threshold").apply
_rrelu = _op("rrelu").apply
_cosine_similarity = _op("cosine_similarity").apply
_unfold = _op("unfold").apply
_fold = _op("fold").apply
_dropout = _op("dropout").apply
_batch_norm = _op("batch_norm").apply
_locally_connected2d = _op("locally_connected2d").apply
_cross_entropy = _op("cross_entropy").apply
_nll_loss = _op("nll_loss").apply
_mse_loss = _op("mse_loss").apply
_l1_loss = _op("l1_loss").apply
_multi_margin_loss = _op("multi_margin_loss").apply
_binary_cross_entropy_with_logits = _op("binary_cross_entropy_with_logits").apply
_binary_cross_entropy = _op("binary_cross_entropy").apply
_huber_loss = _op("huber_loss").apply
_kl_div = _op("kl_div").apply
_conv2d = _op("conv2d").apply
_max_pool2d = _op("max_pool2d").apply
_avg_pool2d = _op("avg_pool2d").apply
_adaptive_avg_pool2d = _op("adaptive_avg_pool2d").apply

IntPair = Union[int, tuple]

__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "conv2d", "conv2d_relu", "cross_entropy", "dropout",
    "dropout2d", "elu", "embedding", "gelu", "group_norm", "hardsigmoid", "hardswish",
    "hardtanh", "huber_loss", "kl_div", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "locally_connected2d", "log_softmax", "max_pool2d", "maxout", "mish", "mse_loss",
    "multi_margin_loss", "nll_loss", "normalize", "one_hot", "pad", "prelu", "relu", "relu6",
    "scaled_dot_product_attention", "selu", "sigmoid", "silu", "smooth_l1_loss", "softmax",
    "softplus", "softsign", "tanh",
]


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def _optional_array(x: Any) -> _np.ndarray | None:
    if x is None:
        return None
    return x.data if isinstance(x, Tensor) else _np.asarray(x)


def _parameters_of(op: str, x: Tensor, *params: Any) -> list[Any]:
    """params as Tensors (None and arrays stay as they are); each must have x's dtype: PyTorch's
    normalization layers and prelu do not promote ("mixed dtype") and raise, as here."""
    out = [p if p is None or isinstance(p, _np.ndarray) else _tensor(p) for p in params]
    for p in out:
        if p is not None and p.dtype != x.dtype:
            raise RuntimeError(f"{op}: mixed dtypes: the input is {x.dtype} but a parameter "
                               f"is {p.dtype}; expected one dtype")
    return out


def _written(x: Tensor, out: Tensor, inplace: bool) -> Tensor:
    """out, or (inplace=True, PyTorch's in-place form) x overwritten with out."""
    return x.copy_(out) if inplace else out


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight^T + bias.  input: (..., in); weight: (out, in); bias: (out,) or None."""
    return _linear(_tensor(input), _tensor(weight), None if bias is None else _tensor(bias))


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0); inplace=True writes the result into input (PyTorch's relu_ rules)."""
    if inplace:
        return _tensor(input).relu_()
    return _relu(_tensor(input))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    x = _tensor(input)
    return _written(x, _leaky_relu(x, negative_slope=negative_slope), inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """input clamped to [min_val, max_val]; the gradient is 0 at the bounds (PyTorch's)."""
    x = _tensor(input)
    return _written(x, _hardtanh(x, low=float(min_val), high=float(max_val)), inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6): hardtanh over [0, 6]."""
    return hardtanh(input, 0.0, 6.0, inplace)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    x = _tensor(input)
    return _written(x, _silu(x), inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (approximate="none") or its tanh approximation (approximate="tanh")."""
    return _gelu(_tensor(input), approximate=approximate)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, computed stably; x itself where beta * x > threshold."""
    return _softplus(_tensor(input), beta=float(beta), threshold=float(threshold))


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    x = _tensor(input)
    return _written(x, _mish(x), inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6; the gradient is 0 at -3 and 1 at 3 (PyTorch's)."""
    x = _tensor(input)
    return _written(x, _hardswish(x), inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6; the gradient is 0 at -3 and 3 (PyTorch's)."""
    x = _tensor(input)
    return _written(x, _hardsigmoid(x), inplace)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with PyTorch's constants (scale 1.0507..., alpha 1.6733...)."""
    x = _tensor(input)
    return _written(x, _selu(x), inplace)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|), PyTorch's composite (the gradient at 0 is 1)."""
    x = _tensor(input)
    return x / (x.abs() + 1)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): finite for every finite x."""
    return _logsigmoid(_tensor(input))


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    """softmax(-input) along dim (PyTorch's implicit dim, with its warning, when dim is None);
    dtype casts the input first."""
    x = _tensor(input) if dtype is None else _tensor(input).astype(dtype)
    return (-x).softmax(_softmax_dim("softmin", x.ndim, dim))


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), a and b the two halves of input along dim: (..., 2k, ...) -> (..., k,
    ...). Raises RuntimeError for a 0-d input or an odd size along dim."""
    x = _tensor(input)
    if x.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    axis = dim + x.ndim if -x.ndim <= dim < 0 else dim
    if not 0 <= axis < x.ndim:
        raise IndexError(f"glu: dimension out of range (expected to be in range of "
                         f"[{-x.ndim}, {x.ndim - 1}], but got {dim})")
    if x.shape[axis] % 2:
        raise RuntimeError(f"glu: Halving dimension must be even, but dimension {axis} is size "
                           f"{x.shape[axis]}")
    a, b = x.chunk(2, axis)
    return a * b.sigmoid()


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)). Raises RuntimeError for alpha 0."""
    x = _tensor(input)
    return _written(x, _celu(x, alpha=alpha, from_result=inplace), inplace)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """0 where -lambd <= x <= lambd, x elsewhere."""
    return _hardshrink(_tensor(input), lambd=float(lambd))


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, 0 between. Raises RuntimeError for a
    negative lambd."""
    return _softshrink(_tensor(input), lambd=float(lambd))


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x), PyTorch's composite."""
    x = _tensor(input)
    return x - x.tanh()


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """value where input <= threshold, input elsewhere (float or integer input)."""
    x = _tensor(input)
    return _written(x, _threshold(x, threshold=threshold, value=value), inplace)


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False) -> Tensor:
    """Randomized leaky ReLU: training, each x <= 0 is scaled by its own slope drawn from
    U(lower, upper) (minidl.random.generator()); otherwise leaky_relu with slope
    (lower + upper) / 2. Raises RuntimeError when lower > upper."""
    if lower > upper:
        raise RuntimeError("rrelu: Lower bound should be less than or equal to the upper bound")
    x = _tensor(input)
    if training:
        out = _rrelu(x, lower=float(lower), upper=float(upper))
    else:
        out = _leaky_relu(x, negative_slope=(lower + upper) / 2)
    return _written(x, out, inplace)


# The in-place forms PyTorch's functional namespace spells with a trailing underscore.
def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return elu(input, alpha, inplace=True)


def selu_(input: Tensor) -> Tensor:
    return selu(input, inplace=True)


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return celu(input, alpha, inplace=True)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return hardtanh(input, min_val, max_val, inplace=True)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    x = _tensor(input)
    return _written(x, _threshold(x, threshold=threshold, value=value), True)


def rrelu_(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
           training: bool = False) -> Tensor:
    return rrelu(input, lower, upper, training, inplace=True)


def pad(input: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """PyTorch's F.pad: pad = (left, right[, top, bottom[, front, back, ...]]) from the last
    dim backwards; negative amounts crop. Modes "constant" (value, default 0), and "reflect",
    "replicate", "circular" (see _pad_by_index) for the last 1-3 dims of a 2-5-d input."""
    x = _tensor(input)
    if mode != "constant":
        return _pad_by_index(x, tuple(int(p) for p in pad), mode, value)
    amounts = tuple(int(p) for p in pad)
    if len(amounts) % 2 or len(amounts) // 2 > x.ndim:
        raise ValueError(f"pad: expected pairs of amounts, at most one per dim of a {x.ndim}-d "
                         f"tensor, got {tuple(pad)}")
    widths = [(0, 0)] * x.ndim
    for k in range(len(amounts) // 2):
        widths[x.ndim - 1 - k] = (amounts[2 * k], amounts[2 * k + 1])
    for (before, after), n in zip(widths, x.shape):
        if n + before + after < 0:
            raise ValueError(f"pad: amounts {tuple(pad)} give a negative size for a dim of "
                             f"{n} (shape {tuple(x.shape)})")
    if any(b < 0 or a < 0 for b, a in widths):
        x = x[tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(widths, x.shape))]
    return x.pad(tuple((max(b, 0), max(a, 0)) for b, a in widths),
                 value=0.0 if value is None else value)


def _pad_by_index(x: Tensor, amounts: tuple, mode: str, value: float | None) -> Tensor:
    """F.pad's non-constant modes as one index_select per padded dim (its backward sums the
    gradient of every copy of an entry into it): output position j of a dim of size n (j from
    -before to n + after - 1) reads j reflected at the edges without repeating them
    ("reflect", amounts < n) or clamped ("replicate"). "circular" crops the negative amounts
    first and wraps around what is left (PyTorch's order), amounts at most its size."""
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: unrecognised padding mode {mode!r} (constant, "
                                  f"reflect, replicate, circular)")
    if value is not None and value != 0:
        raise ValueError(f"pad: padding mode {mode!r} doesn't take a value, got {value!r}")
    dims = len(amounts) // 2
    if len(amounts) % 2 or dims not in (1, 2, 3) or x.ndim not in (dims + 1, dims + 2):
        raise NotImplementedError(
            f"pad: {len(amounts)} amounts are not supported for a {x.ndim}-D input in mode "
            f"{mode!r}: 2 amounts pad a 2-D or 3-D input, 4 a 3-D or 4-D, 6 a 4-D or 5-D")
    for k in range(dims):
        axis = x.ndim - 1 - k
        n, before, after = x.shape[axis], amounts[2 * k], amounts[2 * k + 1]
        lo, hi = max(-before, 0), n - max(-after, 0)
        limit = hi - lo if mode == "circular" else n - 1 if mode == "reflect" else None
        if n == 0:
            raise ValueError(f"pad: mode {mode!r} needs a non-empty dim {axis}, got input "
                             f"{tuple(x.shape)}")
        if limit is not None and max(before, after) > limit:
            bound = "<= the dim's size after cropping" if mode == "circular" else (
                "< the dim's size")
            raise ValueError(f"pad: mode {mode!r} needs amounts {bound}; got ({before}, "
                             f"{after}) for dim {axis} of input {tuple(x.shape)}")
        if n + before + after < 0:
            raise ValueError(f"pad: amounts ({before}, {after}) give a negative size for dim "
                             f"{axis} of input {tuple(x.shape)}")
        j = _np.arange(-before, n + after)
        if mode == "reflect":
            j = _np.abs(j)
            j = _np.where(j > n - 1, 2 * (n - 1) - j, j)
        elif mode == "replicate":
            j = _np.clip(j, 0, n - 1)
        else:
            j = lo + _np.arange(-max(before, 0), hi - lo + max(after, 0)) % max(hi - lo, 1)
        x = x.index_select(axis, j)
    return x


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """input normalized over its last len(normalized_shape) dims (which must be those sizes)."""
    x = _tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) > x.ndim or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} does not end the input's shape "
                         f"{tuple(x.shape)}")
    return _layer_norm(x, *_parameters_of("layer_norm", x, weight, bias), dims=len(shape),
                       eps=float(eps))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """input (N, C, *) normalized per sample over groups of C / num_groups channels; weight and
    bias (C,) per channel."""
    if not isinstance(num_groups, (int, _np.integer)) or isinstance(num_groups, bool) or (
            num_groups < 1):
        raise ValueError(f"group_norm: num_groups must be a positive int, got {num_groups!r}")
    x = _tensor(input)
    return _group_norm(x, *_parameters_of("group_norm", x, weight, bias),
                       groups=int(num_groups), eps=float(eps))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of weight (num, dim) picked by the integer tensor input: (*input.shape, dim).

    max_norm: each picked row whose norm_type-norm exceeds it is first rescaled in place to
    norm max_norm (PyTorch's embedding_renorm_, outside the graph). scale_grad_by_freq: see
    the op. sparse=True raises: minidl has no sparse gradients."""
    if sparse:
        raise NotImplementedError("embedding: sparse=True is not supported (minidl has no sparse "
                                  "tensors; see README, Differences from PyTorch)")
    w, idx = _tensor(weight), _tensor(input)
    if padding_idx is not None and padding_idx < 0:
        padding_idx += w.shape[0]
    if max_norm is not None and idx.data.size:
        rows = _np.unique(idx.data.reshape(-1))
        if rows.min() >= 0 and rows.max() < w.shape[0]:  # else the op raises its IndexError
            norms = _np.linalg.norm(w.data[rows], ord=norm_type, axis=1)
            big = norms > max_norm
            w.data[rows[big]] *= (max_norm / (norms[big] + 1e-7))[:, None].astype(w.dtype)
    return _embedding(w, idx, padding_idx=padding_idx,
                      scale_grad_by_freq=bool(scale_grad_by_freq))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """weight: (1,) shared slope or (C,) per channel (axis 1 of input)."""
    x = _tensor(input)
    return _prelu(x, *_parameters_of("prelu", x, weight))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    x = _tensor(input)
    return _written(x, _elu(x, alpha=alpha), inplace)


def sigmoid(input: Tensor) -> Tensor:
    return _sigmoid(_tensor(input))


def tanh(input: Tensor) -> Tensor:
    return _tanh(_tensor(input))


def _softmax_dim(name: str, ndim: int, dim: int | None) -> int:
    """PyTorch's implicit choice when dim is omitted (deprecated there, with this warning)."""
    if dim is not None:
        return dim
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to "
        "include dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    x = _tensor(input) if dtype is None else _tensor(input).astype(dtype)
    return x.softmax(_softmax_dim("softmax", x.ndim, dim))


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Tensor:
    x = _tensor(input) if dtype is None else _tensor(input).astype(dtype)
    return x.log_softmax(_softmax_dim("log_softmax", x.ndim, dim))


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Tensor | None = None) -> Tensor:
    """input / max(||input||_p, eps) with the norm over dim (kept), PyTorch's composite;
    out: a tensor of the result's shape written and returned (not differentiable there)."""
    x = _tensor(input)
    result = x / x.norm(p, dim=dim, keepdim=True).clamp(min=eps)
    if out is None:
        return result
    if result.requires_grad:
        raise RuntimeError("normalize: functions with out=... arguments don't support automatic "
                           "differentiation, but an input requires grad")
    return _written(out, result, True)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps)) along dim, x1 and x2 broadcast
    together (each normalized first, so the result stays in [-1, 1]); a zero vector gives 0
    and a finite gradient, as PyTorch's. Raises RuntimeError for shapes that do not broadcast
    or integer inputs."""
    return _cosine_similarity(_tensor(x1), _tensor(x2), axis=dim, eps=float(eps))


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p over the last dim of the broadcast shape: (..., D) -> (...)
    ((..., 1) with keepdim), PyTorch's composite (eps added to every difference)."""
    a, b = _tensor(x1), _tensor(x2)
    last = max(a.ndim, b.ndim) - 1
    return (a - b + eps).norm(p, dim=last, keepdim=keepdim)


def pdist(input: Tensor, p: float = 2.0) -> Tensor:
    """||x_i - x_j||_p for every pair of rows i < j of input (N, M), in row-major order of
    the pairs: (N * (N - 1) / 2,). A zero distance has gradient 0. Raises RuntimeError for
    another number of dims, a negative p or an integer input."""
    x = _tensor(input)
    if x.ndim != 2:
        raise RuntimeError(f"pdist only supports 2D tensors, got: {x.ndim}D")
    if x.dtype.kind != "f":
        raise RuntimeError(f"pdist only supports floating-point dtypes, got {x.dtype}")
    if p < 0:
        raise RuntimeError(f"pdist only supports non-negative p values, got {p}")
    rows, cols = _np.triu_indices(x.shape[0], 1)
    first = x.index_select(0, Tensor._wrap(rows.astype(_np.int64), False))
    second = x.index_select(0, Tensor._wrap(cols.astype(_np.int64), False))
    return (first - second).norm(p, dim=1)


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each class index;
    num_classes=-1 uses max + 1. Raises RuntimeError for negative or too large indices."""
    t = _target(tensor)
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot is only applicable to index tensor, got dtype {t.dtype}")
    if num_classes == -1:
        num_classes = int(t.max()) + 1 if t.size else 0
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes}), got "
                           f"[{int(t.min())}, {int(t.max())}]")
    out = _np.zeros(t.shape + (num_classes,), _np.int64)
    _np.put_along_axis(out, t[..., None].astype(_np.int64), 1, axis=-1)
    return Tensor._wrap(out, False)


def maxout(input: Tensor, weight: Tensor, bias: Tensor | None, pieces: int) -> Tensor:
    """max over `pieces` affine maps.  input: (..., in); weight: (out * pieces, in) with row
    o * pieces + k the k-th piece of output o; bias: (out * pieces,) or None. Returns (..., out)."""
    z = linear(input, weight, bias)
    if z.shape[-1] % pieces:
        raise ValueError(
            f"maxout: weight has {z.shape[-1]} rows, not a multiple of pieces={pieces}"
        )
    return z.reshape(z.shape[:-1] + (z.shape[-1] // pieces, pieces)).amax(dim=-1)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
            ) -> Tensor:
    """Zero elements with probability p and scale the rest by 1 / (1 - p) when training;
    identity otherwise."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _tensor(input)
    if not training or p == 0.0:
        return x
    return _written(x, _dropout(x, p=p), inplace)


def additive_mask(name: str, mask: Any, dtype: Any) -> Tensor | None:
    """An attention mask as the float tensor added to the scores: a bool mask's True entries
    (for attn_mask of scaled_dot_product_attention: its False ones, see `keep`) become -inf,
    a float mask is used as it is. None stays None."""
    if mask is None:
        return None
    m = _tensor(mask)
    if m.dtype == _np.bool_:
        # The where op, not NumPy on m's values: a mask that is a traced graph's input (or an
        # exported ONNX file's) stays one instead of being frozen at the example's values.
        return _where(m, Tensor._wrap(_np.array(-_np.inf, dtype), False),
                      Tensor._wrap(_np.array(0.0, dtype), False))
    if m.dtype.kind != "f":
        raise TypeError(f"{name}: only bool and float masks are supported, got {m.dtype}")
    return m.to(dtype)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Any = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value, PyTorch's reference ("math") formula.

    query: (..., L, E); key: (..., S, E); value: (..., S, Ev) -> (..., L, Ev). scale defaults
    to 1 / sqrt(E). attn_mask broadcasts to (..., L, S): bool (True = may attend) or float
    (added). is_causal masks j > i (no attn_mask then). dropout_p drops attention weights
    (always, as PyTorch's function does; pass 0 in eval). enable_gqa repeats key/value heads
    (dim -3) to query's count."""
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError("scaled_dot_product_attention: query, key and value need at least 2 "
                         f"dims, got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    length, source = q.shape[-2], k.shape[-2]
    factor = 1.0 / _np.sqrt(q.shape[-1]) if scale is None else float(scale)
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        if q.shape[-3] % k.shape[-3]:
            raise ValueError(f"scaled_dot_product_attention: {q.shape[-3]} query heads are not "
                             f"a multiple of {k.shape[-3]} key heads")
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scores = (q @ k.transpose(-2, -1)) * factor
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("scaled_dot_product_attention: _scaled_dot_product_attention: "
                               "Explicit attn_mask should not be set when is_causal=True")
        attn_mask = _np.tril(_np.ones((length, source), dtype=bool))
    if attn_mask is not None:
        m = _tensor(attn_mask)
        # Here a bool mask says where attention is allowed (the opposite of nn.MHA's masks).
        scores = scores + additive_mask("scaled_dot_product_attention",
                                        ~m if m.dtype == _np.bool_ else m, scores.dtype)
    # A row with every score masked gets weights 0, not softmax's NaN (PyTorch's safe
    # softmax); its scores are replaced first so no NaN reaches the gradient either.
    dead = _np.isneginf(scores.data).all(axis=-1, keepdims=True)
    if dead.any():
        dead_t = Tensor._wrap(_np.broadcast_to(dead, scores.shape).copy(), False)
        weights = scores.masked_fill(dead_t, 0.0).softmax(-1).masked_fill(dead_t, 0.0)
    else:
        weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return weights @ v


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
              ) -> Tensor:
    """Zero whole channels of input (N, C, H, W) with probability p and scale the rest by
    1 / (1 - p) when training (the mask from minidl.random.generator()); identity otherwise.

    As in PyTorch, any input (N, C, *) is dropped per (sample, channel): a 3-D input is read
    as (N, C, L), not as an unbatched (C, H, W), with PyTorch's warning, and other ranks warn
    that they are deprecated. Raises ValueError for a bad p, RuntimeError for fewer than 2 dims.
    """
    _check_dropout_p(p)
    x = _tensor(input)
    _warn_unusual_rank("dropout2d", x.ndim, spatial=2)
    if x.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    shape = _feature_shape("dropout2d", x)
    return _written(x, _dropout_noise("dropout2d", x, shape, p, alpha=False), inplace)


# SELU's alpha * scale: alpha dropout's value for a dropped unit, before its affine correction.
_ALPHA_DROPOUT_NEGATIVE = 1.7580993408473766


def _dropout_noise(op: str, x: Tensor, shape: tuple, p: float, alpha: bool) -> Tensor:
    """x * noise (+ shift for alpha dropout), PyTorch's _dropout_impl, with the noise drawn
    from minidl.random.generator() over `shape` (x's, or one value per (sample, channel)).

    Dropout scales kept units by 1 / (1 - p). Alpha dropout sets dropped units to
    -alpha' = -1.7581 (SELU's saturation) and applies a * x + b with a = 1 / sqrt((alpha'^2 p
    + 1)(1 - p)) so that a zero-mean unit-variance input keeps its mean and variance. p = 1
    gives zeros in both (as PyTorch)."""
    from minidl.random import generator

    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a float input, got dtype {x.dtype}")
    if p == 1.0:
        return x * Tensor._wrap(_np.zeros((), dtype=x.dtype), False)
    keep = (generator().random(shape, dtype=x.dtype) >= x.dtype.type(p)).astype(x.dtype)
    if not alpha:
        return x * Tensor._wrap(keep * x.dtype.type(1.0 / (1.0 - p)), False)
    a = 1.0 / _np.sqrt((_ALPHA_DROPOUT_NEGATIVE ** 2 * p + 1) * (1 - p))
    shift = (keep - 1) * (_ALPHA_DROPOUT_NEGATIVE * a) + _ALPHA_DROPOUT_NEGATIVE * a * p
    return x * Tensor._wrap(keep * a, False) + Tensor._wrap(shift.astype(x.dtype), False)


def _check_dropout_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _feature_shape(op: str, x: Tensor) -> tuple:
    """(N, C, 1, ...): one noise value per sample and channel."""
    if x.ndim < 2:
        raise RuntimeError(f"{op}: Feature dropout requires at least 2 dimensions in the input, "
                           f"got shape {tuple(x.shape)}")
    return tuple(x.shape[:2]) + (1,) * (x.ndim - 2)


def _warn_unusual_rank(op: str, ndim: int, spatial: int) -> None:
    """PyTorch's deprecation warning for a channel dropout given neither (C, *spatial) nor
    (N, C, *spatial) dims; the caller's caller is named."""
    if ndim in (spatial + 1, spatial + 2):
        return
    warnings.warn(
        f"{op}: Received a {ndim}-D input to {op}, which is deprecated and will result in an "
        "error in a future release. To retain the behavior and silence this warning, please "
        f"use dropout instead. Note that {op} exists to provide channel-wise dropout on inputs "
        f"with {spatial} spatial dimensions, a channel dimension, and an optional batch "
        f"dimension (i.e. {spatial + 1}D or {spatial + 2}D inputs).", stacklevel=3)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
              ) -> Tensor:
    """Zero whole channels of input (N, C, L) or (C, L) with probability p and scale the rest
    by 1 / (1 - p) when training; identity otherwise. Raises ValueError for a bad p and
    RuntimeError for another number of dims."""
    _check_dropout_p(p)
    x = _tensor(input)
    if x.ndim not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {x.ndim}D input. Note that "
            "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
            "dimension, a channel dimension, and an optional batch dimension (i.e. 2D or 3D "
            "inputs).")
    if not training or p == 0.0 or x.numel() == 0:
        return x
    shape = (x.shape[0], 1) if x.ndim == 2 else _feature_shape("dropout1d", x)
    return _written(x, _dropout_noise("dropout1d", x, shape, p, alpha=False), inplace)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
              ) -> Tensor:
    """Zero whole channels of input (N, C, D, H, W) or (C, D, H, W) with probability p and
    scale the rest by 1 / (1 - p) when training; identity otherwise. Another number of dims
    warns (as PyTorch) and is read as unbatched (channels on dim 0). Raises ValueError for a
    bad p."""
    _check_dropout_p(p)
    x = _tensor(input)
    _warn_unusual_rank("dropout3d", x.ndim, spatial=3)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if x.ndim == 5:
        shape = _feature_shape("dropout3d", x)
    else:
        shape = _feature_shape("dropout3d", x.unsqueeze(0))[1:]
    return _written(x, _dropout_noise("dropout3d", x, shape, p, alpha=False), inplace)


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
                  ) -> Tensor:
    """Alpha dropout (for SELU networks) when training: each unit dropped with probability p
    to SELU's saturation value, then an affine map keeping a standard normal input's mean 0
    and variance 1 (see _dropout_noise); identity otherwise. Raises ValueError for a bad p."""
    _check_dropout_p(p)
    x = _tensor(input)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    return _written(x, _dropout_noise("alpha_dropout", x, tuple(x.shape), p, alpha=True),
                    inplace)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                          inplace: bool = False) -> Tensor:
    """alpha_dropout of whole channels: input (N, C, *), one draw per (sample, channel).
    Raises ValueError for a bad p and RuntimeError (when training) for fewer than 2 dims."""
    _check_dropout_p(p)
    x = _tensor(input)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    shape = _feature_shape("feature_alpha_dropout", x)
    return _written(x, _dropout_noise("feature_alpha_dropout", x, shape, p, alpha=True),
                    inplace)


def rms_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dims (normalized_shape) of input
    (..., *normalized_shape); eps None is the dtype's machine epsilon (PyTorch's default);
    weight: normalized_shape or None. Raises RuntimeError for mismatched shapes."""
    x = _tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape:
        raise RuntimeError("rms_norm: Expected normalized_shape to be at least 1-dimensional, "
                           "i.e., containing at least one element, but got normalized_shape = []")
    if tuple(x.shape[x.ndim - len(shape):]) != shape or len(shape) > x.ndim:
        raise RuntimeError(f"rms_norm: Given normalized_shape={list(shape)}, expected input "
                           f"with shape [*{', '.join(map(str, shape))}], but got input of size"
                           f"{list(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"rms_norm: expected a float input, got dtype {x.dtype}")
    if weight is not None:
        (weight,) = _parameters_of("rms_norm", x, weight)
        if tuple(weight.shape) != shape:
            raise RuntimeError(f"rms_norm: Expected weight to be of same shape as "
                               f"normalized_shape, but got weight of shape "
                               f"{list(weight.shape)} and normalized_shape = {list(shape)}")
    if eps is None:
        eps = float(_np.finfo(x.dtype).eps)
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    out = x * ((x * x).mean(dim=dims, keepdim=True) + eps).rsqrt()
    return out if weight is None else out * weight


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + alpha * mean of x^2 over `size` neighbouring channels) ^ beta, the window
    zero-padded (size // 2 channels before, (size - 1) // 2 after; the mean divides by size),
    PyTorch's composite. input: (N, C, *). Raises ValueError for fewer than 3 dims."""
    x = _tensor(input)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: Expected 3D or higher dimensionality input "
                         f"(got {x.ndim} dimensions)")
    if x.numel() == 0:
        return x
    n, channels = x.shape[:2]
    squares = (x * x).reshape(n, channels, -1)
    padded = pad(squares, (0, 0, size // 2, (size - 1) // 2))
    window_sum = padded.narrow(1, 0, channels)
    for offset in range(1, size):
        window_sum = window_sum + padded.narrow(1, offset, channels)
    div = (window_sum / size).reshape(x.shape)
    return x / (div * alpha + k).pow(beta)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None
             ) -> Tensor:
    """y[..., o] = sum_ij input1[..., i] weight[o, i, j] input2[..., j] + bias[o].
    input1: (..., in1); input2: (..., in2) with the same leading dims; weight: (out, in1,
    in2); bias: (out,) or None. Raises RuntimeError for mismatched shapes."""
    x1, x2, w = _tensor(input1), _tensor(input2), _tensor(weight)
    if w.ndim != 3:
        raise RuntimeError(f"bilinear(): weight must be 3-dimensional, got shape "
                           f"{tuple(w.shape)}")
    if x1.ndim != x2.ndim:
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {x1.ndim} and "
                           f"{x2.ndim}")
    for i, (a, b) in enumerate(zip(x1.shape[:-1], x2.shape[:-1])):
        if a != b:
            raise RuntimeError(f"bilinear(): input batch dimensions do not match at dim {i}: "
                               f"got {a} and {b}")
    out_features, in1, in2 = w.shape
    if x1.shape[-1] != in1:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got "
                           f"{x1.shape[-1]} but expected {in1}")
    if x2.shape[-1] != in2:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got "
                           f"{x2.shape[-1]} but expected {in2}")
    if bias is not None and tuple(_tensor(bias).shape) != (out_features,):
        raise RuntimeError(f"bilinear(): bias size does not match weight size: got shape "
                           f"{tuple(_tensor(bias).shape)} but expected ({out_features},)")
    # x1 @ W (as an (in1, out * in2) matrix), then the contraction with x2 per output.
    left = (x1 @ w.permute(1, 0, 2).reshape(in1, out_features * in2)).reshape(
        tuple(x1.shape[:-1]) + (out_features, in2))
    out = (left * x2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + _tensor(bias)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """(N, C, *) with the C channels as `groups` groups of C / groups, read group-minor:
    channel g * (C / groups) + k moves to k * groups + g (ShuffleNet). Raises RuntimeError for
    fewer than 3 dims, groups <= 0 or C not divisible by groups."""
    x = _tensor(input)
    if x.ndim <= 2:
        raise RuntimeError(f"channel_shuffle expects input with > 2 dims, but got input with "
                           f"sizes {list(x.shape)}")
    if groups <= 0:
        raise RuntimeError(f"channel_shuffle: Number of groups to divide channels in must be "
                           f"positive. Value of groups:{groups}")
    n, channels = x.shape[:2]
    if channels % groups:
        raise RuntimeError(f"channel_shuffle: Number of channels must be divisible by groups. "
                           f"Got {channels} channels and {groups} groups.")
    rest = tuple(x.shape[2:])
    grouped = x.reshape((n, groups, channels // groups) + rest)
    return grouped.transpose(1, 2).reshape(tuple(x.shape))


def batch_norm(input: Tensor, running_mean: Any, running_var: Any,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float | None = 0.1, eps: float = 1e-5, *,
               num_batches_tracked: Any = None) -> Tensor:
    """Normalize over every axis but 1.  input: (N, C, ...); running_mean/var: (C,) Tensors or
    arrays updated in place when training, or None; weight, bias: (C,) or None.

    num_batches_tracked (minidl's addition): a 0-d int64 Tensor/array counted up by each
    training step; with momentum=None the running statistics are its cumulative average.
    """
    x = _tensor(input)
    weight, bias, running_mean, running_var = _parameters_of(
        "batch_norm", x, weight, bias, _optional_array(running_mean),
        _optional_array(running_var))
    return _batch_norm(
        x, weight, bias,
        running_mean=running_mean,
        running_var=running_var,
        num_batches_tracked=_optional_array(num_batches_tracked),
        training=training, momentum=momentum, eps=eps,
    )


def locally_connected2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                        stride: int = 1, padding: int = 0) -> Tensor:
    """Unshared convolution.  input: (N, C, H, W); weight: (OH, OW, OC, C, KH, KW);
    bias: (OC, OH, OW) or None. Returns (N, OC, OH, OW)."""
    return _locally_connected2d(
        _tensor(input), _tensor(weight), None if bias is None else _tensor(bias),
        stride=stride, padding=padding,
    )


def _target(target: Any) -> _np.ndarray:
    return target.data if isinstance(target, Tensor) else _np.asarray(target)


def _float_target(target: Any) -> Tensor:
    """Targets of elementwise losses may themselves carry gradients."""
    return target if isinstance(target, Tensor) else tensor(_np.asarray(target))


def _promoted_pair(x: Tensor, target: Any) -> tuple[Tensor, Tensor]:
    """An elementwise loss's input and target in one dtype: integer targets take the input's;
    float32 against float64 computes in float64, as PyTorch's type promotion does."""
    target = _float_target(target)
    if target.dtype == x.dtype:
        return x, target
    if target.dtype.kind != "f":
        return x, target.astype(x.dtype)
    common = _np.promote_types(x.dtype, target.dtype)
    return x.astype(common), target.astype(common)


def cross_entropy(input: Tensor, target: Any, weight: Any = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy on logits.  input: (N, C) (or (C,), or (N, C, d1, ...));
    target: int class indices (N,) (or (), (N, d1, ...)), or class probabilities of input's
    shape (a float tensor); weight: (C,) or None. size_average and reduce are PyTorch's
    deprecated flags (every loss here takes them where PyTorch does; see
    minidl.ops.loss.reduction_of)."""
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        return _cross_entropy_probabilities(_tensor(input), target, weight, reduction,
                                            label_smoothing)
    return _cross_entropy(
        _tensor(input), _class_target("cross_entropy", target), _optional_array(weight),
        reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing,
    )


def _cross_entropy_probabilities(x: Tensor, target: Tensor, weight: Any, reduction: str,
                                 label_smoothing: float) -> Tensor:
    """-sum_c w[c] * p[c] * log_softmax(x)[c] per sample (PyTorch's probability targets)."""
    if target.shape != x.shape:
        raise ValueError(f"cross_entropy: probability targets must have the input's shape "
                         f"{tuple(x.shape)}, got {tuple(target.shape)}")
    _loss.check_reduction("cross_entropy", reduction)
    dim = 1 if x.ndim > 1 else 0
    classes = x.shape[dim]
    p = target if label_smoothing == 0 else target * (1 - label_smoothing) + (
        label_smoothing / classes)
    logp = x.log_softmax(dim)
    if weight is not None:
        w = _optional_array(weight).astype(x.dtype)
        logp = logp * tensor(w.reshape((classes,) + (1,) * (x.ndim - dim - 1)))
    loss = -(p * logp).sum(dim=dim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (x.shape[0] if x.ndim > 1 else 1)


def nll_loss(input: Tensor, target: Any, weight: Any = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities.  input: (N, C); target: (N,) ints."""
    return _nll_loss(
        _tensor(input), _class_target("nll_loss", target), _optional_array(weight),
        reduction=_loss.reduction_of(size_average, reduce, reduction), ignore_index=ignore_index,
    )


def _class_target(op: str, target: Any) -> _np.ndarray:
    """Class indices as PyTorch takes them: int64 or uint8 (its "Long or Byte"); other integer
    tensors raise as there. Lists and arrays of Python ints are int64 already; uint8 becomes
    int64, so both take the same (fused) kernel and give the same bits."""
    t = _target(target)
    if t.dtype == _np.uint8:
        return t.astype(_np.int64)
    if isinstance(target, Tensor) and t.dtype.kind in "iu" and t.dtype != _np.int64:
        raise RuntimeError(f"{op}: expected target dtype to be int64 (Long) or uint8 (Byte), "
                           f"but got {t.dtype}")
    return t


def _elementwise_pair(op: str, input: Any, target: Any) -> tuple[Tensor, Tensor]:
    """An elementwise loss's input and target in one dtype (_promoted_pair) and one shape:
    shapes that differ broadcast, with PyTorch's warning."""
    x, t = _promoted_pair(_tensor(input), target)
    if x.shape != t.shape:
        warnings.warn(f"Using a target size ({tuple(t.shape)}) that is different to the input "
                      f"size ({tuple(x.shape)}). This will likely lead to incorrect results due "
                      "to broadcasting. Please ensure they have the same size.", stacklevel=3)
        shape = _broadcast_shape(op, x, t)
        x, t = x.broadcast_to(shape), t.broadcast_to(shape)
    return x, t


def _broadcast_shape(op: str, *tensors: Any) -> tuple:
    """The shape the arguments broadcast to; RuntimeError (PyTorch's type) naming op and the
    shapes when they do not."""
    shapes = [tuple(getattr(t, "shape", ())) for t in tensors]
    try:
        return _np.broadcast_shapes(*shapes)
    except ValueError:
        raise RuntimeError(f"{op}: shapes {', '.join(map(str, shapes))} do not broadcast "
                           "together") from None


def _weighted(op: str, loss: Tensor, weight: Any, reduction: str, mean_by_weight: bool
              ) -> Tensor:
    """PyTorch's per-element `weight` (of the input's shape) on an unreduced loss; 'mean'
    divides by weight.sum() (mse, l1) or by the element count (huber)."""
    _loss.check_reduction(op, reduction)
    w = _tensor(weight)
    if tuple(w.shape) != tuple(loss.shape):
        raise ValueError(f"{op}: weights and input must have the same size; weight has shape "
                         f"{tuple(w.shape)}, input {tuple(loss.shape)}")
    weighted = loss * w
    if reduction == "none":
        return weighted
    if reduction == "sum" or not mean_by_weight:
        return weighted.sum() if reduction == "sum" else weighted.mean()
    return weighted.sum() / w.sum()


def mse_loss(input: Tensor, target: Any, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean", weight: Any = None) -> Tensor:
    """(input - target)^2. Integer targets are cast to input's dtype; weight (of input's
    shape) scales each element, and 'mean' is then sum / weight.sum() (PyTorch's)."""
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    x, t = _elementwise_pair("mse_loss", input, target)
    if weight is None:
        return _mse_loss(x, t, reduction=reduction)
    return _weighted("mse_loss", _mse_loss(x, t, reduction="none"), weight, reduction, True)


def l1_loss(input: Tensor, target: Any, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean", weight: Any = None) -> Tensor:
    """|input - target|. Integer targets are cast to input's dtype; weight as in mse_loss."""
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    x, t = _elementwise_pair("l1_loss", input, target)
    if weight is None:
        return _l1_loss(x, t, reduction=reduction)
    return _weighted("l1_loss", _l1_loss(x, t, reduction="none"), weight, reduction, True)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0,
               weight: Any = None) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = input - target; delta > 0.
    weight (of input's shape) scales each element; 'mean' stays the element mean."""
    x, t = _elementwise_pair("huber_loss", input, target)
    if weight is None:
        return _huber_loss(x, t, reduction=reduction, delta=float(delta))
    return _weighted("huber_loss", _huber_loss(x, t, reduction="none", delta=float(delta)),
                     weight, reduction, False)


def smooth_l1_loss(input: Tensor, target: Any, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta: huber_loss(delta=beta) / beta;
    beta=0 is l1_loss (as PyTorch), a negative beta raises ValueError."""
    reduction = _loss.reduction_of(size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must not be negative, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    return huber_loss(input, target, reduction, beta) / float(beta)


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities input in [0, 1] (RuntimeError otherwise, as
    PyTorch) against target of its shape; each log is clamped at -100. weight broadcasts."""
    return _binary_cross_entropy(*_promoted_pair(_tensor(input), target),
                                 _optional_array(weight),
                                 reduction=_loss.reduction_of(size_average, reduce, reduction))


def kl_div(input: Tensor, target: Any, size_average: Any = None, reduce: Any = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence of log-probabilities input against target (probabilities, or
    log-probabilities with log_target): target * (log target - input), 0 where target == 0.
    'mean' averages every element (PyTorch's); 'batchmean' divides the sum by input.shape[0]."""
    return _kl_div(*_promoted_pair(_tensor(input), target),
                   reduction=_loss.reduction_of(size_average, reduce, reduction),
                   log_target=bool(log_target))


def multi_margin_loss(input: Tensor, target: Any, p: int = 1, margin: float = 1.0,
                      weight: Any = None, size_average: Any = None, reduce: Any = None,
                      reduction: str = "mean") -> Tensor:
    """Multiclass hinge loss.  input: (N, C) or (C,); target: (N,) or () ints; weight: (C,)."""
    return _multi_margin_loss(
        _tensor(input), _class_target("multi_margin_loss", target), _optional_array(weight),
        p=p, margin=margin, reduction=_loss.reduction_of(size_average, reduce, reduction),
    )


def binary_cross_entropy_with_logits(input: Tensor, target: Any, weight: Any = None,
                                     size_average: Any = None, reduce: Any = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable op; target of input's shape, in [0, 1]."""
    return _binary_cross_entropy_with_logits(
        *_promoted_pair(_tensor(input), target), _optional_array(weight),
        _optional_array(pos_weight),
        reduction=_loss.reduction_of(size_average, reduce, reduction),
    )


def _unbatched(result: Any) -> Any:
    """A conv's or pool's result for an unbatched input run as a batch of one (PyTorch's
    convolutions and pools take (C, H, W) and (C, L)): the batch dim dropped, from the
    indices too."""
    if isinstance(result, tuple):
        return tuple(r.squeeze(0) for r in result)
    return result.squeeze(0)


def conv2d(
    input,
    weight,
    bias=None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    relu: bool = False,
):
    """2-D convolution, as torch.nn.functional.conv2d (cross-correlation, NCHW).

    input: (N, C, H, W) or unbatched (C, H, W), float32/float64; weight: (OC, C // groups,
    KH, KW) of the same dtype; bias: (OC,) or None. stride, padding, dilation: int or (h, w); padding may be 'same'
    (stride 1 only) or 'valid'. relu=True applies max(., 0) in the kernel's epilogue.
    Returns (N, OC, OH, OW) with OH = (H + 2 * pad_h - dilation_h * (KH - 1) - 1) // stride_h + 1.
    Raises TypeError for non-float or mixed dtypes, ValueError for bad shapes or arguments.
    """
    op = "conv2d_relu" if relu else "conv2d"
    x, weight = _tensor(input), _tensor(weight)
    if x.ndim == 3:   # unbatched (C, H, W), as PyTorch takes it
        return _unbatched(conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups,
                                 relu))
    bias = None if bias is None else _tensor(bias)
    stride, top_left, dilation, groups, out_size = _conv.conv_arguments(
        op, x.data, weight.data, None if bias is None else bias.data, stride, padding, dilation,
        groups,
    )
    return _conv2d(
        x,
        weight,
        bias,
        stride=stride,
        padding=top_left,
        dilation=dilation,
        groups=groups,
        out_size=out_size,
        relu=bool(relu),
    )


def conv2d_relu(
    input,
    weight,
    bias=None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
):
    """relu(conv2d(input, weight, bias, ...)) in one pass (the ReLU is the kernel's epilogue)."""
    return conv2d(input, weight, bias, stride, padding, dilation, groups, relu=True)


def max_pool2d(
    input,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """2-D max pooling, as torch.nn.functional.max_pool2d.

    input: (N, C, H, W) (or unbatched (C, H, W), here and in the other pools) float32/float64.
    stride defaults to kernel_size; padding (implicit -inf) at
    most kernel_size // 2. Returns (N, C, OH, OW), and with return_indices also an int64 tensor
    of flat h * W + w argmax positions per plane (a dilated window that misses the input
    entirely gives -inf and index -1, where PyTorch returns an out-of-range index). Raises
    TypeError for a non-float input, ValueError for bad arguments or an input too small for one
    window.
    """
    x = _tensor(input)
    if x.ndim == 3:
        return _unbatched(max_pool2d(x.unsqueeze(0), kernel_size, stride, padding, dilation,
                                     ceil_mode, return_indices))
    kernel, stride, padding, dilation, out_size = _pool.pool_geometry(
        "max_pool2d", x.data, kernel_size, stride, padding, dilation, ceil_mode
    )
    sink: list | None = [] if return_indices else None
    out = _max_pool2d(
        x,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        out_size=out_size,
        indices_sink=sink,
    )
    if return_indices:
        return out, Tensor._wrap(sink[0], False)
    return out


def avg_pool2d(
    input,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
):
    """2-D average pooling, as torch.nn.functional.avg_pool2d.

    input: (N, C, H, W) float32/float64 -> (N, C, OH, OW). Padding counts as zeros in the divisor
    when count_include_pad. divisor_override (a nonzero int) divides every window's sum
    instead. Raises like max_pool2d.
    """
    x = _tensor(input)
    if x.ndim == 3:
        return _unbatched(avg_pool2d(x.unsqueeze(0), kernel_size, stride, padding, ceil_mode,
                                     count_include_pad, divisor_override))
    kernel, stride, padding, _, out_size = _pool.pool_geometry(
        "avg_pool2d", x.data, kernel_size, stride, padding, 1, ceil_mode
    )
    if divisor_override is not None and (not isinstance(divisor_override, int)
                                         or divisor_override == 0):
        raise RuntimeError(f"avg_pool2d: divisor must be a nonzero int, got "
                           f"{divisor_override!r}")
    out = _avg_pool2d(
        x,
        kernel=kernel,
        stride=stride,
        padding=padding,
        out_size=out_size,
        count_include_pad=bool(count_include_pad) or divisor_override is not None,
    )
    if divisor_override is None:
        return out
    # The kernel's mean over each window (padding included, clipped to the padded input) times
    # that window's size is the window's sum (within an ulp).
    sizes = [_np.minimum(_np.arange(n) * s - p + k, length + p) - (_np.arange(n) * s - p)
             for n, s, p, k, length in zip(out_size, stride, padding, kernel, x.shape[2:])]
    window = _np.multiply.outer(*sizes).astype(x.dtype)
    return out * Tensor._wrap(window / x.dtype.type(divisor_override), False)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size, as torch.nn.functional.adaptive_avg_pool2d.

    input: (N, C, H, W) float32/float64; output_size: int or (OH, OW), None keeping that input
    size; 1 gives global average pooling. Returns (N, C, OH, OW).
    """
    x = _tensor(input)
    if x.ndim == 3:
        return _unbatched(adaptive_avg_pool2d(x.unsqueeze(0), output_size))
    out_size = _pool.adaptive_out_size("adaptive_avg_pool2d", x.data, output_size)
    return _adaptive_avg_pool2d(x, out_size=out_size)


# -- the CNN layers past LeNet: transposed convolution, resampling, 1-d forms -----------------
_conv_transpose2d = _op("conv_transpose2d").apply


def conv_transpose2d(input, weight, bias=None, stride: IntPair = 1, padding: IntPair = 0,
                     output_padding: IntPair = 0, groups: int = 1, dilation: IntPair = 1):
    """2-D transposed convolution, as torch.nn.functional.conv_transpose2d (note groups
    before dilation, PyTorch's order): the gradient of conv2d with respect to its input.

    input: (N, C, H, W) or unbatched (C, H, W); weight: (C, OC // groups, KH, KW); bias: (OC,)
    or None. Returns (N, OC, OH, OW), OH = (H - 1) * stride_h - 2 * padding_h +
    dilation_h * (KH - 1) + output_padding_h + 1. output_padding must be smaller than the
    stride or the dilation. Raises TypeError for non-float or mixed dtypes, ValueError for bad
    shapes or arguments (an output size below 1 among them).
    """
    x, weight = _tensor(input), _tensor(weight)
    bias = None if bias is None else _tensor(bias)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    stride, padding, dilation, groups, out_size, extra = _conv.conv_transpose_arguments(
        "conv_transpose2d", x.data, weight.data, None if bias is None else bias.data, stride,
        padding, output_padding, groups, dilation)
    out = _conv_transpose2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups, out_size=out_size, extra=extra)
    return out.squeeze(0) if unbatched else out


_INTERPOLATE_DIMS = {"nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "linear": (3,),
                     "bilinear": (4,), "trilinear": (5,), "area": (3, 4)}


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False):
    """Resize the spatial dims of input (N, C, *spatial), as torch.nn.functional.interpolate.

    mode: 'nearest' and 'nearest-exact' (1-3 spatial dims), 'linear' (N, C, L), 'bilinear'
    (N, C, H, W), 'trilinear' (N, C, D, H, W), 'area' (adaptive average pooling, 1-2 spatial
    dims). size: an int or one per spatial dim; or
    scale_factor: a float or one per dim, giving floor(in * scale) and (unless
    recompute_scale_factor) sampling at 1 / scale steps as PyTorch does. align_corners (linear
    modes only, default False) maps the corner pixels' centres onto each other. Source
    positions are computed in PyTorch's precision (float32 for the nearest modes, the input's
    dtype for the linear ones), so the same pixels are picked. Raises ValueError for bad
    arguments, NotImplementedError for other modes, antialias, or a mode's wrong dim count.
    """
    x = _tensor(input)
    if mode not in _INTERPOLATE_DIMS:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not implemented (only "
                                  f"{', '.join(_INTERPOLATE_DIMS)})")
    linear = mode in ("linear", "bilinear", "trilinear")
    if align_corners is not None and not linear:
        raise ValueError("interpolate: align_corners option can only be set with the "
                         "interpolating modes: linear | bilinear | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not implemented")
    if x.ndim not in _INTERPOLATE_DIMS[mode]:
        raise NotImplementedError(
            f"interpolate: got a {x.ndim}-D input of shape {tuple(x.shape)}, but mode {mode!r} "
            f"needs {' or '.join(f'{d}-D' for d in _INTERPOLATE_DIMS[mode])} input")
    if not mode.startswith("nearest") and x.dtype.kind != "f":  # nearest copies any dtype
        raise TypeError(f"interpolate: mode {mode!r} needs a float input, got dtype {x.dtype}")
    in_size = tuple(x.shape[2:])
    out_size, scales = _interpolate_sizes(in_size, size, scale_factor)
    if recompute_scale_factor:
        scales = (None,) * len(in_size)
    if mode == "area":  # PyTorch's: the scales only set the output size
        return (adaptive_avg_pool1d if x.ndim == 3 else adaptive_avg_pool2d)(x, out_size)
    for axis in range(x.ndim - 1, 1, -1):
        k = axis - 2
        if linear:
            x = _resample_linear(x, axis, out_size[k], scales[k], bool(align_corners))
        else:
            index = _nearest_index(in_size[k], out_size[k], scales[k], mode == "nearest-exact")
            x = x.index_select(axis, index)
    return x


def _interpolate_sizes(in_size: tuple, size: Any, scale_factor: Any) -> tuple[tuple, tuple]:
    """interpolate's output size and the scale per spatial dim (None where size was given)."""
    dims = len(in_size)
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: " + ("only one of size or scale_factor should be defined"
                                            if size is not None else
                                            "either size or scale_factor should be defined"))
    value = size if size is not None else scale_factor
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    if len(values) != dims:
        what = "size" if size is not None else "scale_factor"
        raise ValueError(f"interpolate: {what} {value!r} must give one value per spatial dim of "
                         f"the input {list(in_size)} (N, C, d1, ..., dK)")
    if size is not None:
        if not all(isinstance(v, (int, _np.integer)) and not isinstance(v, bool) for v in values):
            raise TypeError(f"interpolate: size must be ints, got {size!r}")
        out_size, scales = tuple(int(v) for v in values), (None,) * dims
    else:
        scales = tuple(float(v) for v in values)
        out_size = tuple(int(_np.floor(float(n) * s)) for n, s in zip(in_size, scales))
    if min(in_size) < 1 or min(out_size) < 1:
        raise ValueError(f"interpolate: input and output sizes should be greater than 0, got "
                         f"input {in_size} and output {out_size}")
    return out_size, scales


def _nearest_index(in_n: int, out_n: int, scale: float | None, exact: bool) -> _np.ndarray:
    """PyTorch's nearest source index per output position, in its float32 arithmetic."""
    f32 = _np.float32
    step = f32(1.0 / scale) if scale is not None and scale > 0 else f32(in_n) / f32(out_n)
    dst = _np.arange(out_n)
    if exact:
        src = _np.floor(((dst + 0.5) * _np.float64(step)).astype(f32))
    elif out_n == in_n:
        return dst
    elif out_n == 2 * in_n:
        return dst >> 1
    else:
        src = _np.floor(dst.astype(f32) * step)
    return _np.minimum(src.astype(_np.int64), in_n - 1)


def _resample_linear(x, axis: int, out_n: int, scale: float | None, align_corners: bool):
    """x linearly resampled along axis to out_n positions, PyTorch's source positions and
    weights computed in x's dtype: out = x[i0] * (1 - t) + x[i1] * t (separable, so the
    bilinear value is PyTorch's (x00 w0 + x01 w1) h0 + (x10 w0 + x11 w1) h1)."""
    in_n = x.shape[axis]
    dt = x.dtype.type
    dst = _np.arange(out_n).astype(x.dtype)
    if align_corners:
        step = dt(in_n - 1) / dt(out_n - 1) if out_n > 1 else dt(0)
        src = step * dst
    else:
        step = dt(1.0 / scale) if scale is not None and scale > 0 else dt(in_n) / dt(out_n)
        src = _np.maximum(step * (dst + dt(0.5)) - dt(0.5), dt(0))
    i0 = _np.minimum(_np.floor(src).astype(_np.int64), in_n - 1)
    t = _np.clip(src - i0.astype(x.dtype), dt(0), dt(1))
    i1 = i0 + (i0 < in_n - 1)
    shape = (-1,) + (1,) * (x.ndim - 1 - axis)
    w0 = Tensor._wrap((dt(1) - t).reshape(shape), False)
    w1 = Tensor._wrap(t.reshape(shape), False)
    return x.index_select(axis, i0) * w0 + x.index_select(axis, i1) * w1


def _as_2d(op: str, x: Tensor) -> Tensor:
    """(N, C, L) as (N, C, 1, L): the 1-d layers run the 2-d ops with a unit height (their
    argument checks too, under the 1-d op's name: shapes in messages are the 4-d views)."""
    if x.ndim != 3:
        raise ValueError(f"{op}: expected a 3-D input (N, C, L), got shape {tuple(x.shape)}")
    return x.unsqueeze(2)


def _weight_as_2d(op: str, weight: Any, layout: str) -> Tensor:
    """A 1-d layer's 3-D weight (layout names its axes) as the 2-d op's, with a unit height."""
    w = _tensor(weight)
    if w.ndim != 3:
        raise ValueError(f"{op}: expected a 3-D weight {layout}, got shape {tuple(w.shape)}")
    return w.unsqueeze(2)


def _int1(op: str, name: str, value: Any, height: int = 1) -> Any:
    """A 1-d layer's int (or 1-sequence) argument as the 2-d op's (height, value) pair;
    None and 'same'/'valid' kept."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: {name} must be an int or a 1-sequence, got {value!r}")
        value = value[0]
    if not isinstance(value, (int, _np.integer)) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    return (height, int(value))


def conv1d(input, weight, bias=None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1):
    """1-D convolution, as torch.nn.functional.conv1d: the conv2d op on (N, C, 1, L).

    input: (N, C, L); weight: (OC, C // groups, K); bias: (OC,) or None. padding: int,
    'same' or 'valid'. Returns (N, OC, OL). Raises like conv2d.
    """
    op = "conv1d"
    x = _tensor(input)
    if x.ndim == 2:   # unbatched (C, L), as PyTorch takes it
        return _unbatched(conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation,
                                 groups))
    x, w = _as_2d(op, x), _weight_as_2d(op, weight, "(OC, C/groups, K)")
    bias = None if bias is None else _tensor(bias)
    stride, top_left, dilation, groups, out_size = _conv.conv_arguments(
        op, x.data, w.data, None if bias is None else bias.data, _int1(op, "stride", stride),
        _int1(op, "padding", padding, 0), _int1(op, "dilation", dilation), groups)
    return _conv2d(x, w, bias, stride=stride, padding=top_left, dilation=dilation, groups=groups,
                   out_size=out_size, relu=False).squeeze(2)


def conv_transpose1d(input, weight, bias=None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1):
    """1-D transposed convolution, as torch.nn.functional.conv_transpose1d: the
    conv_transpose2d op on (N, C, 1, L). input: (N, C, L); weight: (C, OC // groups, K);
    bias: (OC,) or None. Returns (N, OC, OL). Raises like conv_transpose2d."""
    op = "conv_transpose1d"
    x, w = _as_2d(op, _tensor(input)), _weight_as_2d(op, weight, "(C, OC/groups, K)")
    bias = None if bias is None else _tensor(bias)
    stride, padding, dilation, groups, out_size, extra = _conv.conv_transpose_arguments(
        op, x.data, w.data, None if bias is None else bias.data, _int1(op, "stride", stride),
        _int1(op, "padding", padding, 0), _int1(op, "output_padding", output_padding, 0),
        groups, _int1(op, "dilation", dilation))
    return _conv_transpose2d(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, out_size=out_size, extra=extra).squeeze(2)


def max_pool1d(input, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False):
    """1-D max pooling, as torch.nn.functional.max_pool1d: the max_pool2d op on (N, C, 1, L).
    Returns (N, C, OL), and with return_indices the int64 argmax positions along L."""
    op = "max_pool1d"
    x = _tensor(input)
    if x.ndim == 2:
        return _unbatched(max_pool1d(x.unsqueeze(0), kernel_size, stride, padding, dilation,
                                     ceil_mode, return_indices))
    x = _as_2d(op, x)
    kernel, stride, padding, dilation, out_size = _pool.pool_geometry(
        op, x.data, _int1(op, "kernel_size", kernel_size), _int1(op, "stride", stride),
        _int1(op, "padding", padding, 0), _int1(op, "dilation", dilation), ceil_mode)
    sink: list | None = [] if return_indices else None
    out = _max_pool2d(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                      out_size=out_size, indices_sink=sink).squeeze(2)
    # Flat h * W + w positions with h = 0 are the positions along L.
    return (out, Tensor._wrap(sink[0][:, :, 0], False)) if return_indices else out


def avg_pool1d(input, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True):
    """1-D average pooling, as torch.nn.functional.avg_pool1d: the avg_pool2d op on
    (N, C, 1, L)."""
    op = "avg_pool1d"
    x = _tensor(input)
    if x.ndim == 2:
        return _unbatched(avg_pool1d(x.unsqueeze(0), kernel_size, stride, padding, ceil_mode,
                                     count_include_pad))
    x = _as_2d(op, x)
    kernel, stride, padding, _, out_size = _pool.pool_geometry(
        op, x.data, _int1(op, "kernel_size", kernel_size), _int1(op, "stride", stride),
        _int1(op, "padding", padding, 0), 1, ceil_mode)
    return _avg_pool2d(x, kernel=kernel, stride=stride, padding=padding, out_size=out_size,
                       count_include_pad=bool(count_include_pad)).squeeze(2)


_adaptive_max_pool2d = _op("adaptive_max_pool2d").apply


def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """Max pooling to a fixed output size, as torch.nn.functional.adaptive_max_pool2d.

    input: (N, C, H, W) float32/float64; output_size: int or (OH, OW), None keeping that input
    size. Returns (N, C, OH, OW), and with return_indices also the int64 flat h * W + w
    positions of the maxima. Raises like adaptive_avg_pool2d.
    """
    x = _tensor(input)
    if x.ndim == 3:
        return _unbatched(adaptive_max_pool2d(x.unsqueeze(0), output_size, return_indices))
    out_size = _pool.adaptive_out_size("adaptive_max_pool2d", x.data, output_size)
    sink: list | None = [] if return_indices else None
    out = _adaptive_max_pool2d(x, out_size=out_size, indices_sink=sink)
    return (out, Tensor._wrap(sink[0], False)) if return_indices else out


def _adaptive_size1(op: str, output_size: Any) -> tuple:
    """A 1-d adaptive pool's output_size (an int or a 1-sequence) as the 2-d op's (1, size)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 1:
            raise ValueError(f"{op}: output_size must be an int or a 1-sequence, got "
                             f"{output_size!r}")
        output_size = output_size[0]
    return (1, output_size)


def adaptive_avg_pool1d(input, output_size):
    """Average pooling of (N, C, L) to (N, C, output_size): the adaptive_avg_pool2d op on
    (N, C, 1, L)."""
    op = "adaptive_avg_pool1d"
    x = _tensor(input)
    if x.ndim == 2:
        return _unbatched(adaptive_avg_pool1d(x.unsqueeze(0), output_size))
    x = _as_2d(op, x)
    out_size = _pool.adaptive_out_size(op, x.data, _adaptive_size1(op, output_size))
    return _adaptive_avg_pool2d(x, out_size=out_size).squeeze(2)


def adaptive_max_pool1d(input, output_size, return_indices: bool = False):
    """Max pooling of (N, C, L) to (N, C, output_size): the adaptive_max_pool2d op on
    (N, C, 1, L); return_indices adds the int64 positions along L."""
    op = "adaptive_max_pool1d"
    x = _tensor(input)
    if x.ndim == 2:
        return _unbatched(adaptive_max_pool1d(x.unsqueeze(0), output_size, return_indices))
    x = _as_2d(op, x)
    out_size = _pool.adaptive_out_size(op, x.data, _adaptive_size1(op, output_size))
    sink: list | None = [] if return_indices else None
    out = _adaptive_max_pool2d(x, out_size=out_size, indices_sink=sink).squeeze(2)
    return (out, Tensor._wrap(sink[0][:, :, 0], False)) if return_indices else out


def _shuffle_factor(op: str, factor: Any) -> int:
    if not isinstance(factor, (int, _np.integer)) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"{op}: the factor must be a positive int, got {factor!r}")
    return int(factor)


def pixel_shuffle(input, upscale_factor: int):
    """(*, C * r**2, H, W) -> (*, C, H * r, W * r), r = upscale_factor: channel
    c * r**2 + i * r + j becomes pixel (h * r + i, w * r + j) of channel c (PyTorch's order).
    Raises ValueError for fewer than 3 dims or channels not divisible by r**2."""
    x = _tensor(input)
    r = _shuffle_factor("pixel_shuffle", upscale_factor)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: expected an input (*, C * {r * r}, H, W) with channels "
                         f"divisible by upscale_factor**2 = {r * r}, got shape {tuple(x.shape)}")
    *lead, c, h, w = x.shape
    y = x.reshape((-1, c // (r * r), r, r, h, w)).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(tuple(lead) + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor: int):
    """The inverse of pixel_shuffle: (*, C, H * r, W * r) -> (*, C * r**2, H, W). Raises
    ValueError for fewer than 3 dims or H, W not divisible by r."""
    x = _tensor(input)
    r = _shuffle_factor("pixel_unshuffle", downscale_factor)
    if x.ndim < 3 or x.shape[-2] % r or x.shape[-1] % r:
        raise ValueError(f"pixel_unshuffle: expected an input (*, C, H, W) with H and W divisible "
                         f"by downscale_factor = {r}, got shape {tuple(x.shape)}")
    *lead, c, h, w = x.shape
    y = x.reshape((-1, c, h // r, r, w // r, r)).permute(0, 1, 3, 5, 2, 4)
    return y.reshape(tuple(lead) + (c * r * r, h // r, w // r))


def instance_norm(input, running_mean: Any = None, running_var: Any = None,
                  weight: Tensor | None = None, bias: Tensor | None = None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """Normalize each (sample, channel) plane of input (N, C, *spatial) over its spatial
    entries, as torch.nn.functional.instance_norm, then weight and bias (C,) per channel.
    running_mean / running_var (C,) arrays or Tensors, when given, move towards the mean over
    the batch of the instances' statistics (updated in place, the variance unbiased);
    use_input_stats=False normalizes with them instead (RuntimeError without them). Raises
    ValueError for fewer than 3 dims, or one spatial entry per plane when using the input's
    statistics."""
    x = _tensor(input)
    if x.ndim < 3:
        raise ValueError(f"instance_norm: expected an input (N, C, *spatial) of 3 or more dims, "
                         f"got shape {tuple(x.shape)}")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise RuntimeError("instance_norm: expected running_mean and running_var to be "
                               "defined when use_input_stats is false")
        # The running statistics are per channel, the same for every sample: batch norm's
        # inference formula (and ONNX's BatchNormalization, with the buffers by name).
        return batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)
    n, c = x.shape[:2]
    count = int(_np.prod(x.shape[2:]))
    if count == 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, "
                         f"got input size {tuple(x.shape)}")
    # One group per channel: group norm's statistics are exactly the instances' (and the op
    # exports as ONNX's InstanceNormalization).
    out = group_norm(x, c, weight, bias, eps)
    stats = [_optional_array(a) for a in (running_mean, running_var)]
    if n and stats[0] is not None and stats[1] is not None:
        planes = x.data.reshape(n, c, count).astype(_np.float64)
        # PyTorch updates the N * C instances' copies of the statistics, then averages them.
        for a, batch in ((stats[0], planes.mean(axis=2)), (stats[1], planes.var(axis=2, ddof=1))):
            a[...] = ((1 - momentum) * a + momentum * batch).mean(axis=0)
    return out


__all__ += ["adaptive_avg_pool1d", "adaptive_max_pool1d", "adaptive_max_pool2d", "avg_pool1d",
            "conv1d", "conv_transpose1d", "conv_transpose2d", "instance_norm", "interpolate",
            "max_pool1d", "pixel_shuffle", "pixel_unshuffle"]
def unfold(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
           stride: Any = 1) -> Tensor:
    """Sliding local blocks as columns (im2col): input (N, C, H, W) -> (N, C * KH * KW, L) or
    (C, H, W) -> (C * KH * KW, L), L = OH * OW blocks in row-major order, rows in (c, kh, kw)
    order. Ints or pairs. Raises RuntimeError for another number of dims, bad geometry or an
    empty block grid."""
    x = _tensor(input)
    if x.ndim not in (3, 4):
        raise RuntimeError(f"unfold: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                           f"shape {tuple(x.shape)}")
    kernel, dil, pad, step = _im2col.block_geometry("unfold", kernel_size, dilation, padding,
                                                    stride)
    batched = x if x.ndim == 4 else x.unsqueeze(0)
    cols = _unfold(batched, kernel=kernel, dilation=dil, padding=pad, stride=step)
    return cols if x.ndim == 4 else cols.squeeze(0)


def fold(input: Tensor, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
         stride: Any = 1) -> Tensor:
    """The adjoint of unfold (col2im): columns (N, C * KH * KW, L) -> (N, C, *output_size), or
    (C * KH * KW, L) -> (C, *output_size), overlapping blocks summed. Raises RuntimeError for
    another number of dims, a row count not divisible by KH * KW or L not the block count."""
    cols = _tensor(input)
    if cols.ndim not in (2, 3) or 0 in cols.shape[-2:]:
        raise RuntimeError(f"fold: Expected 2D or 3D (batch mode) tensor for input with "
                           f"possibly 0 batch size and non-zero dimensions for input, but got: "
                           f"{list(cols.shape)}")
    kernel, dil, pad, step = _im2col.block_geometry("fold", kernel_size, dilation, padding,
                                                    stride)
    size = _conv.pair("fold", "output_size", output_size, 1)
    rows, blocks = cols.shape[-2:]
    if rows % (kernel[0] * kernel[1]):
        raise RuntimeError(f"fold: Expected size of input's dimension 1 to be divisible by the "
                           f"product of kernel_size, but got input.size(1)={rows} and "
                           f"kernel_size={kernel}.")
    grid = _im2col.blocks_per_axis("fold", size, kernel, dil, pad, step)
    if blocks != grid[0] * grid[1]:
        raise RuntimeError(f"fold: Given output_size={size}, kernel_size={kernel}, "
                           f"dilation={dil}, padding={pad}, stride={step}, expected size of "
                           f"input's dimension 2 to match the calculated number of sliding "
                           f"blocks {grid[0]} * {grid[1]} = {grid[0] * grid[1]}, but got "
                           f"input.size(2)={blocks}.")
    batched = cols if cols.ndim == 3 else cols.unsqueeze(0)
    out = _fold(batched, output_size=size, kernel=kernel, dilation=dil, padding=pad,
                stride=step)
    return out if cols.ndim == 3 else out.squeeze(0)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size: Any, stride: Any = None,
              ceil_mode: bool = False) -> Tensor:
    """(sum over each window of x^p)^(1/p), PyTorch's composite: avg_pool2d of x^p times the
    window size, through sign(s) * relu(|s|) so a zero sum stays 0; p = +-inf is max_pool2d of
    |x| (min for -inf). input (N, C, H, W) or (C, H, W)."""
    x = _tensor(input)
    if x.ndim == 3:
        return _unbatched(lp_pool2d(x.unsqueeze(0), norm_type, kernel_size, stride, ceil_mode))
    if norm_type in (float("inf"), -float("inf")):
        sign = 1 if norm_type > 0 else -1
        return sign * max_pool2d(sign * x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    kh, kw = _conv.pair("lp_pool2d", "kernel_size", kernel_size, 1)
    pooled = avg_pool2d(x.pow(norm_type), kernel_size, stride, 0, ceil_mode)
    return (pooled.sign() * relu(pooled.abs())).mul(kh * kw).pow(1.0 / norm_type)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: int, stride: Any = None,
              ceil_mode: bool = False) -> Tensor:
    """lp_pool2d's formula along the last dim: input (N, C, L) or (C, L)."""
    x = _tensor(input)
    if x.ndim == 2:
        return _unbatched(lp_pool1d(x.unsqueeze(0), norm_type, kernel_size, stride, ceil_mode))
    if norm_type in (float("inf"), -float("inf")):
        sign = 1 if norm_type > 0 else -1
        return sign * max_pool1d(sign * x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    pooled = avg_pool1d(x.pow(norm_type), kernel_size, stride, 0, ceil_mode)
    width = _int1("lp_pool1d", "kernel_size", kernel_size)
    return (pooled.sign() * relu(pooled.abs())).mul(width[-1]).pow(1.0 / norm_type)


# More activations (tests/test_activations_more.py).
__all__ += ["celu", "celu_", "elu_", "glu", "hardshrink", "hardtanh_", "leaky_relu_",
            "logsigmoid", "relu_", "rrelu", "rrelu_", "selu_", "softmin", "softshrink",
            "tanhshrink", "threshold", "threshold_"]
# Distances (tests/test_distance.py).
__all__ += ["cosine_similarity", "pairwise_distance", "pdist"]
# Normalization, bilinear, channel shuffle and dropout variants (tests/test_layers_more.py).
__all__ += ["alpha_dropout", "bilinear", "channel_shuffle", "dropout1d", "dropout3d",
            "feature_alpha_dropout", "local_response_norm", "rms_norm"]
# Sliding blocks and power-average pooling (tests/test_fold_lppool.py).
__all__ += ["fold", "lp_pool1d", "lp_pool2d", "unfold"]

# The embedding, ranking, multilabel, probabilistic, triplet and CTC losses: their own module,
# imported last because it builds on the helpers above.
from minidl.nn.losses_functional import *  # noqa: E402, F403 (the names in its __all__)
from minidl.nn.losses_functional import __all__ as _more_losses  # noqa: E402

__all__ += _more_losses
