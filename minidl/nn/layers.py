"""Layers: Linear, Conv2d, pooling, Flatten, Dropout, BatchNorm1d/2d, LocallyConnected2d,
Identity. Constructor arguments, defaults and initialization follow PyTorch; `dtype`
(float32 by default, or float64) sets the parameters' dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.device import check_device
from minidl.dtypes import DEFAULT_DTYPE, FLOAT_DTYPES, check_dtype
from minidl.grad_mode import no_grad
from minidl.nn import functional as F
from minidl.nn import init
from minidl.nn.module import Module, Parameter
from minidl.ops.conv import pair
from minidl.ops.local import local_out_size
from minidl.tensor import Tensor, tensor

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout",
           "Dropout2d", "Flatten", "Unflatten", "Identity", "Linear", "LocallyConnected2d", "MaxPool2d"]
__all__ += ["AlphaDropout", "Bilinear", "Dropout1d", "Dropout3d", "FeatureAlphaDropout",
            "LocalResponseNorm", "RMSNorm"]


def float_dtype(op: str, dtype: Any, device: Any = None) -> np.dtype:
    """The parameters' dtype (float32 by default); `device` may only name the CPU."""
    check_device(op, device)
    dt = DEFAULT_DTYPE if dtype is None else check_dtype(op, dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{op}: parameters must be float32 or float64, got {dt}")
    return dt


def empty_parameter(shape: tuple, dtype: np.dtype) -> Parameter:
    return Parameter(np.empty(shape, dtype=dtype))


def positive_int(op: str, name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def mode_padding(padding: Any, kernel_size: tuple, dilation: tuple) -> tuple:
    """F.pad's amounts (last dim first) for a convolution whose padding_mode is not 'zeros':
    PyTorch pads the input by the mode, then convolves without padding. 'same' puts the odd
    entry of dilation * (kernel - 1) at the end, as PyTorch does."""
    amounts: list[int] = []
    for k in reversed(range(len(kernel_size))):
        if padding == "same":
            total = dilation[k] * (kernel_size[k] - 1)
            amounts += [total // 2, total - total // 2]
        else:
            amounts += [0, 0] if padding == "valid" else [padding[k]] * 2
    return tuple(amounts)


def default_uniform_init(weight: Parameter, bias: Parameter | None, fan_in: int) -> None:
    """PyTorch's default for Linear and Conv2d: kaiming_uniform_(a=sqrt(5)), which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same range."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    init.uniform_(weight, -bound, bound)
    if bias is not None:
        init.uniform_(bias, -bound, bound)


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments, as PyTorch does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """y = x @ weight^T + bias.  x: (..., in_features) -> (..., out_features).

    weight: (out_features, in_features), bias: (out_features,), both U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("Linear", dtype, device)
        self.in_features = positive_int("Linear", "in_features", in_features)
        self.out_features = positive_int("Linear", "out_features", out_features)
        self.weight = empty_parameter((out_features, in_features), dt)
        self.register_parameter("bias", empty_parameter((out_features,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        default_uniform_init(self.weight, self.bias, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Bilinear(Module):
    """y = x1^T W x2 + b per output (F.bilinear): x1 (..., in1_features), x2 (...,
    in2_features) -> (..., out_features). weight (out, in1, in2) and bias (out,) start
    uniform in +-1/sqrt(in1_features), as PyTorch's. Raises ValueError for in1_features <= 0."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("Bilinear", dtype, device)
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        self.weight = empty_parameter((out_features, in1_features, in2_features), dt)
        self.register_parameter("bias", empty_parameter((out_features,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.in1_features <= 0:
            raise ValueError(f"Bilinear: in1_features must be > 0, but got (in1_features="
                             f"{self.in1_features})")
        default_uniform_init(self.weight, self.bias, self.in1_features)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.bilinear(x1, x2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class LayerNorm(Module):
    """Normalization over the last dims (normalized_shape) of x (..., *normalized_shape), with
    a learned per-element weight (ones) and bias (zeros) when elementwise_affine."""

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("LayerNorm", dtype, device)
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
            normalized_shape)
        self.normalized_shape = tuple(positive_int("LayerNorm", "normalized_shape", n)
                                      for n in shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        affine = elementwise_affine
        self.register_parameter("weight", empty_parameter(self.normalized_shape, dt)
                                if affine else None)
        self.register_parameter("bias", empty_parameter(self.normalized_shape, dt)
                                if affine and bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) over the last dims (normalized_shape) of x (...,
    *normalized_shape), times a learned per-element weight (ones) when elementwise_affine
    (F.rms_norm). eps None: the input dtype's machine epsilon."""

    def __init__(self, normalized_shape: Any, eps: float | None = None,
                 elementwise_affine: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("RMSNorm", dtype, device)
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.register_parameter("weight", empty_parameter(self.normalized_shape, dt)
                                if elementwise_affine else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class LocalResponseNorm(Module):
    """x / (k + alpha * mean of x^2 over `size` neighbouring channels) ^ beta for x (N, C, *)
    (F.local_response_norm)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
                 ) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class GroupNorm(Module):
    """Normalization of x (N, C, *) per sample over num_groups groups of channels, with a
    learned per-channel weight (ones) and bias (zeros) when affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device: Any = None, dtype: Any = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        dt = float_dtype("GroupNorm", dtype, device)
        self.num_groups = positive_int("GroupNorm", "num_groups", num_groups)
        self.num_channels = positive_int("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.eps, self.affine = eps, affine
        self.register_parameter("weight", empty_parameter((num_channels,), dt) if affine else None)
        self.register_parameter("bias", empty_parameter((num_channels,), dt)
                                if affine and bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected an input (N, {self.num_channels}, *), got "
                             f"shape {tuple(x.shape)}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Embedding(Module):
    """A table of num_embeddings vectors of embedding_dim (N(0, 1) initial weights, the
    padding_idx row zero): integer indices (...) -> (..., embedding_dim). max_norm, norm_type,
    scale_grad_by_freq and sparse as in F.embedding; _weight (an initial table) and _freeze
    (no gradient) are PyTorch's, used by from_pretrained."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, _weight: Any = None,
                 _freeze: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("Embedding", dtype, device)
        self.num_embeddings = positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} is outside "
                                 f"[-{num_embeddings}, {num_embeddings})")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = empty_parameter((num_embeddings, embedding_dim), dt)
            self.reset_parameters()
        else:
            table = _weight.data if isinstance(_weight, Tensor) else np.asarray(_weight)
            if table.shape != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight has shape {table.shape}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(table)
        self.weight.requires_grad_(not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True,
                        padding_idx: int | None = None, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding whose table is embeddings (num, dim), shared (not copied, as in
        PyTorch), without gradient when freeze."""
        shape = tuple(embeddings.shape) if hasattr(embeddings, "shape") else ()
        if len(shape) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d (num, dim), "
                             f"got shape {shape}")
        return cls(shape[0], shape[1], padding_idx, max_norm, norm_type, scale_grad_by_freq,
                   sparse, _weight=embeddings, _freeze=freeze,
                   dtype=embeddings.dtype if embeddings.dtype.kind == "f" else None)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Conv2d(Module):
    """2-D convolution (cross-correlation).  x: (N, in_channels, H, W) -> (N, out_channels, OH, OW).

    weight: (out_channels, in_channels // groups, KH, KW); bias: (out_channels,); both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels // groups * KH * KW.
    padding: int, pair, 'same' or 'valid'.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("Conv2d", dtype, device)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {_PADDING_MODES}, got "
                             f"{padding_mode!r}")
        self.padding_mode = padding_mode
        self.in_channels = positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = positive_int("Conv2d", "out_channels", out_channels)
        self.groups = positive_int("Conv2d", "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"be divisible by groups ({groups})"
            )
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = pair("Conv2d", "stride", stride, 1)
        self.padding = padding if isinstance(padding, str) else pair(
            "Conv2d", "padding", padding, 0
        )
        self.dilation = pair("Conv2d", "dilation", dilation, 1)
        self.weight = empty_parameter(
            (out_channels, in_channels // groups) + self.kernel_size, dt
        )
        self.register_parameter("bias", empty_parameter((out_channels,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        default_uniform_init(self.weight, self.bias, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(x, mode_padding(self.padding, self.kernel_size, self.dilation),
                      self.padding_mode)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation,
                            self.groups)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else (
                f", padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class MaxPool2d(Module):
    """Max over kernel_size windows.  x: (N, C, H, W) -> (N, C, OH, OW); stride defaults to
    kernel_size."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode
        self.return_indices = return_indices

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over kernel_size windows.  x: (N, C, H, W) -> (N, C, OH, OW); stride defaults to
    kernel_size; count_include_pad counts padding zeros in the divisor."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Mean pooling to a fixed output_size (int or pair).  x: (N, C, H, W) -> (N, C, *output_size)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Flatten(Module):
    """Merge dims start_dim..end_dim: (N, C, H, W) -> (N, C * H * W) with the defaults."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """In training mode zero each element with probability p and scale the rest by
    1 / (1 - p); in eval mode the identity."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """In training mode zero whole channels of (N, C, H, W) with probability p and scale the
    rest by 1 / (1 - p) (F.dropout2d: a 3-D input is (N, C, L), as in PyTorch); in eval mode
    the identity."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout2d(x, self.p, self.training, self.inplace)


class Dropout1d(Dropout):
    """In training mode zero whole channels of (N, C, L) or (C, L) with probability p and scale
    the rest by 1 / (1 - p) (F.dropout1d); in eval mode the identity."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout1d(x, self.p, self.training, self.inplace)


class Dropout3d(Dropout):
    """In training mode zero whole channels of (N, C, D, H, W) or (C, D, H, W) with
    probability p and scale the rest by 1 / (1 - p) (F.dropout3d); in eval mode the
    identity."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout3d(x, self.p, self.training, self.inplace)


class AlphaDropout(Dropout):
    """Alpha dropout for SELU networks in training mode (F.alpha_dropout: mean and variance of a
    standard normal input kept); in eval mode the identity."""

    def forward(self, x: Tensor) -> Tensor:
        return F.alpha_dropout(x, self.p, self.training, self.inplace)


class FeatureAlphaDropout(Dropout):
    """Alpha dropout of whole channels of (N, C, *) in training mode
    (F.feature_alpha_dropout); in eval mode the identity."""

    def forward(self, x: Tensor) -> Tensor:
        return F.feature_alpha_dropout(x, self.p, self.training, self.inplace)


class Unflatten(Module):
    """Split dim into unflattened_size (one entry may be -1): (N, 12) -> (N, 3, 4) with
    Unflatten(1, (3, 4)) (Tensor.unflatten)."""

    def __init__(self, dim: int, unflattened_size: Any) -> None:
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: running statistics, momentum, eps, affine.

    Training: normalize with the batch mean and (biased) variance and update
    running = (1 - momentum) * running + momentum * batch (unbiased variance), or a cumulative
    average when momentum is None. Eval: normalize with the running statistics (with the batch
    statistics when track_running_stats=False). weight starts at 1, bias at 0.
    """

    expected_ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        dt = float_dtype(name, dtype, device)
        self.num_features = positive_int(name, "num_features", num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype=dt))
                                if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", tensor(np.zeros(num_features, dtype=dt)))
            self.register_buffer("running_var", tensor(np.ones(num_features, dtype=dt)))
            self.register_buffer("num_batches_tracked", tensor(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data.fill(0)
            self.running_var.data.fill(1)
            self.num_batches_tracked.data.fill(0)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.expected_ndims:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(map(str, self.expected_ndims))}"
                f"-d input, got shape {x.shape}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels (axis 1), "
                f"got input of shape {x.shape}"
            )
        # Without tracked statistics the three buffers are None and the batch statistics are
        # used; with them, the op updates all three in place.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps,
                            num_batches_tracked=self.num_batches_tracked)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per channel C."""

    expected_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel C."""

    expected_ndims = (4,)


class LocallyConnected2d(Module):
    """A convolution without weight sharing: one filter bank per output position.

    x: (N, in_channels, H, W) with (H, W) == input_size -> (N, out_channels, OH, OW),
    OH = (H + 2 * padding - KH) // stride + 1 (likewise OW).

    Weight layout: weight[i, j, o, c, a, b], shape (OH, OW, out_channels, in_channels, KH, KW),
    is the weight from input channel c at offset (a, b) of the window of output position
    (i, j) to output channel o: weight[i, j] is the (out_channels, in_channels, KH, KW) filter
    bank a Conv2d would share across positions. bias: (out_channels, OH, OW), one per output
    unit. Both start as U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels * KH * KW,
    as Conv2d's do. Parameters: OH * OW times a Conv2d's.
    """

    def __init__(self, in_channels: int, out_channels: int, input_size: Any, kernel_size: Any,
                 stride: int = 1, padding: int = 0, bias: bool = True, dtype: Any = None) -> None:
        super().__init__()
        op = "LocallyConnected2d"
        dt = float_dtype(op, dtype)
        self.in_channels = positive_int(op, "in_channels", in_channels)
        self.out_channels = positive_int(op, "out_channels", out_channels)
        self.input_size = pair(op, "input_size", input_size, 1)
        self.kernel_size = pair(op, "kernel_size", kernel_size, 1)
        self.stride = positive_int(op, "stride", stride)
        if not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"{op}: padding must be a non-negative int, got {padding!r}")
        self.padding = int(padding)
        self.output_size = tuple(
            local_out_size(n, k, self.stride, self.padding)
            for n, k in zip(self.input_size, self.kernel_size)
        )
        if min(self.output_size) < 1:
            raise ValueError(
                f"{op}: kernel {self.kernel_size} does not fit input {self.input_size} with "
                f"padding {self.padding}"
            )
        oh, ow = self.output_size
        self.weight = empty_parameter(
            (oh, ow, out_channels, in_channels) + self.kernel_size, dt
        )
        self.register_parameter(
            "bias", empty_parameter((out_channels, oh, ow), dt) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        default_uniform_init(self.weight, self.bias, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"LocallyConnected2d: expected input (N, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got shape {x.shape}"
            )
        return F.locally_connected2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")
