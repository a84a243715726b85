"""Spatial layers past LeNet: ConvTranspose1d/2d, Conv1d, MaxPool1d, AvgPool1d, Upsample (and
UpsamplingNearest2d, UpsamplingBilinear2d), AdaptiveAvgPool1d, AdaptiveMaxPool1d/2d, the
padding layers (Zero/Constant/Reflection/ReplicationPad1d and 2d), PixelShuffle,
PixelUnshuffle and InstanceNorm1d/2d. Constructor arguments, defaults and initialization follow
PyTorch; `dtype` (float32 by default, or float64) sets the parameters' dtype, `device` may only
name the CPU. Each applies
functions of minidl.nn.functional.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from minidl.nn import functional as F
from minidl.nn.layers import (
    _PADDING_MODES,
    default_uniform_init,
    empty_parameter,
    float_dtype,
    mode_padding,
    positive_int,
)
from minidl.nn.module import Module, Parameter
from minidl.ops.conv import pair
from minidl.tensor import Tensor, tensor

__all__ = ["AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AvgPool1d",
           "ChannelShuffle", "ConstantPad1d", "ConstantPad2d", "Conv1d", "ConvTranspose1d",
           "ConvTranspose2d", "Fold", "LPPool1d", "LPPool2d", "Unfold",
           "InstanceNorm1d", "InstanceNorm2d", "MaxPool1d", "PixelShuffle", "PixelUnshuffle",
           "ReflectionPad1d", "ReflectionPad2d", "ReplicationPad1d", "ReplicationPad2d",
           "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "ZeroPad1d", "ZeroPad2d"]


def _channels(op: str, in_channels: Any, out_channels: Any, groups: Any) -> tuple[int, int, int]:
    in_channels = positive_int(op, "in_channels", in_channels)
    out_channels = positive_int(op, "out_channels", out_channels)
    groups = positive_int(op, "groups", groups)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                         f"must be divisible by groups ({groups})")
    return in_channels, out_channels, groups


def _single(op: str, name: str, value: Any, minimum: int) -> int:
    """An int (or a 1-sequence of one) >= minimum, as PyTorch's 1-d layers store it (a 1-tuple)."""
    if isinstance(value, (tuple, list)) and len(value) != 1:
        raise ValueError(f"{op}: {name} must be an int or a 1-sequence, got {value!r}")
    return pair(op, name, value, minimum)[:1]


class _ConvTranspose(Module):
    """Transposed convolution over the last `dims` dims (ConvTranspose1d: 1, ConvTranspose2d:
    2).  x: (N, in_channels, *size) -> (N, out_channels, *out), out = (size - 1) * stride -
    2 * padding + dilation * (kernel - 1) + output_padding + 1 per dim.

    weight: (in_channels, out_channels // groups, *kernel_size); bias: (out_channels,); both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in = out_channels // groups *
    prod(kernel_size) (its fan-in of the weight's dim 1). forward(x, output_size) picks the
    output_padding that gives that size (the last `dims` entries of output_size), ValueError
    when none can. padding_mode must be 'zeros', as in PyTorch.
    """

    dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        op = type(self).__name__
        dt = float_dtype(op, dtype, device)
        if padding_mode != "zeros":
            raise ValueError(f"{op}: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = _channels(
            op, in_channels, out_channels, groups)
        size = pair if self.dims == 2 else _single
        self.kernel_size = size(op, "kernel_size", kernel_size, 1)
        self.stride = size(op, "stride", stride, 1)
        self.padding = size(op, "padding", padding, 0)
        self.output_padding = size(op, "output_padding", output_padding, 0)
        self.dilation = size(op, "dilation", dilation, 1)
        self.padding_mode = padding_mode
        self.weight = empty_parameter(
            (self.in_channels, self.out_channels // self.groups) + self.kernel_size, dt)
        self.register_parameter(
            "bias", empty_parameter((self.out_channels,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.out_channels // self.groups * int(np.prod(self.kernel_size))
        default_uniform_init(self.weight, self.bias, fan_in)

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        output_padding = (self.output_padding if output_size is None
                          else self._output_padding(x, output_size))
        fn = F.conv_transpose2d if self.dims == 2 else F.conv_transpose1d
        return fn(x, self.weight, self.bias, self.stride, self.padding, output_padding,
                  self.groups, self.dilation)

    def _output_padding(self, x: Tensor, output_size: Any) -> tuple:
        """PyTorch's: the output_padding in [0, stride) that makes the output output_size."""
        op, dims = type(self).__name__, self.dims
        wanted = tuple(int(s) for s in output_size)[-dims:]
        if len(wanted) != dims or x.ndim < dims:
            raise ValueError(f"{op}: output_size must end with {dims} sizes, got "
                             f"{output_size!r}")
        result = []
        for k in range(dims):
            size = x.shape[x.ndim - dims + k]
            smallest = ((size - 1) * self.stride[k] - 2 * self.padding[k]
                        + self.dilation[k] * (self.kernel_size[k] - 1) + 1)
            largest = smallest + self.stride[k] - 1
            if not smallest <= wanted[k] <= largest:
                raise ValueError(
                    f"{op}: requested an output size of {wanted}, but valid sizes range from "
                    f"{smallest} to {largest} in dim {k} (for an input of "
                    f"{tuple(x.shape[-dims:])})")
            result.append(wanted[k] - smallest)
        return tuple(result)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        for name, default in (("padding", 0), ("output_padding", 0), ("dilation", 1)):
            if getattr(self, name) != (default,) * self.dims:
                s += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ConvTranspose1d(_ConvTranspose):
    """Transposed convolution of (N, in_channels, L) (see _ConvTranspose)."""

    dims = 1


class ConvTranspose2d(_ConvTranspose):
    """Transposed convolution of (N, in_channels, H, W) (see _ConvTranspose)."""

    dims = 2


class Conv1d(Module):
    """1-D convolution.  x: (N, in_channels, L) -> (N, out_channels, OL).

    weight: (out_channels, in_channels // groups, K); bias: (out_channels,); both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels // groups * K. padding: int,
    'same' or 'valid'; padding_mode 'zeros', or 'reflect', 'replicate', 'circular' (F.pad
    before an unpadded convolution, as PyTorch does).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        op = "Conv1d"
        dt = float_dtype(op, dtype, device)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{op}: padding_mode must be one of {_PADDING_MODES}, got "
                             f"{padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = _channels(
            op, in_channels, out_channels, groups)
        self.kernel_size = _single(op, "kernel_size", kernel_size, 1)
        self.stride = _single(op, "stride", stride, 1)
        self.padding = padding if isinstance(padding, str) else _single(op, "padding", padding, 0)
        self.dilation = _single(op, "dilation", dilation, 1)
        self.padding_mode = padding_mode
        self.weight = empty_parameter(
            (self.out_channels, self.in_channels // self.groups) + self.kernel_size, dt)
        self.register_parameter(
            "bias", empty_parameter((self.out_channels,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        default_uniform_init(self.weight, self.bias,
                             self.in_channels // self.groups * self.kernel_size[0])

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode == "zeros":
            return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                            self.groups)
        x = F.pad(x, mode_padding(self.padding, self.kernel_size, self.dilation),
                  self.padding_mode)
        return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,):  # a string without quotes, as PyTorch prints it
            s += f", padding={self.padding}"
        if self.dilation != (1,):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class MaxPool1d(Module):
    """Max over kernel_size windows.  x: (N, C, L) -> (N, C, OL); stride defaults to
    kernel_size; return_indices makes forward return (values, argmax positions along L)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x: Tensor) -> Any:
        return F.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool1d(Module):
    """Mean over kernel_size windows.  x: (N, C, L) -> (N, C, OL); stride defaults to
    kernel_size; count_include_pad counts padding zeros in the divisor."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _single("AvgPool1d", "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _single(
            "AvgPool1d", "stride", stride, 1)
        self.padding = _single("AvgPool1d", "padding", padding, 0)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Upsample(Module):
    """F.interpolate as a layer: x: (N, C, *spatial) resized to size, or by scale_factor.
    mode: 'nearest' (default), 'nearest-exact', 'linear', 'bilinear', 'trilinear'."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        self.size, self.mode = size, mode
        self.scale_factor = (tuple(float(s) for s in scale_factor)
                             if isinstance(scale_factor, (tuple, list))
                             else None if scale_factor is None else float(scale_factor))
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = (f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None
                else f"size={self.size!r}")
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Upsample(mode='nearest') of (N, C, H, W)."""

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Upsample(mode='bilinear', align_corners=True) of (N, C, H, W), as PyTorch's."""

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output_size (int or pair, None keeping that input size).
    x: (N, C, H, W) -> (N, C, *output_size); return_indices makes forward return (values,
    flat h * W + w positions)."""

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x: Tensor) -> Any:
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _Pad(Module):
    """F.pad with a fixed mode over the last `dims` dims: padding an int (every side) or
    2 * dims ints (left, right[, top, bottom]), as PyTorch's padding layers store it."""

    dims = 2
    mode = "constant"

    def __init__(self, padding: Any) -> None:
        super().__init__()
        count = 2 * self.dims
        if isinstance(padding, (int,)) and not isinstance(padding, bool):
            padding = (padding,) * count
        if not isinstance(padding, (tuple, list)) or len(padding) != count or not all(
                isinstance(p, int) and not isinstance(p, bool) for p in padding):
            raise ValueError(f"{type(self).__name__}: padding must be an int or {count} ints, "
                             f"got {padding!r}")
        self.padding = tuple(padding)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "constant":
            return F.pad(x, self.padding, "constant", self.value)
        return F.pad(x, self.padding, self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ConstantPad1d(_Pad):
    """Pad the last dim of (C, L) or (N, C, L) with `value`."""

    dims = 1

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__(padding)
        self.value = float(value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad2d(ConstantPad1d):
    """Pad the last two dims of (C, H, W) or (N, C, H, W) with `value`."""

    dims = 2


class ZeroPad1d(ConstantPad1d):
    """Pad the last dim with zeros."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(ZeroPad1d):
    """Pad the last two dims with zeros."""

    dims = 2


class ReflectionPad1d(_Pad):
    """Pad the last dim by reflection at its ends (ends not repeated; padding < its size)."""

    dims, mode = 1, "reflect"


class ReflectionPad2d(_Pad):
    """Pad the last two dims by reflection (padding < each size)."""

    dims, mode = 2, "reflect"


class ReplicationPad1d(_Pad):
    """Pad the last dim by repeating its end entries."""

    dims, mode = 1, "replicate"


class ReplicationPad2d(_Pad):
    """Pad the last two dims by repeating their edge entries."""

    dims, mode = 2, "replicate"


class Unfold(Module):
    """Sliding local blocks as columns (F.unfold): (N, C, H, W) -> (N, C * KH * KW, L)."""

    def __init__(self, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
                 ) -> None:
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.padding, self.stride = padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


class Fold(Module):
    """Columns summed back into an image (F.fold): (N, C * KH * KW, L) -> (N, C,
    *output_size)."""

    def __init__(self, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                 stride: Any = 1) -> None:
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.fold(x, self.output_size, self.kernel_size, self.dilation, self.padding,
                      self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}")


class LPPool1d(Module):
    """(sum of x^p over each window)^(1/p) along L (F.lp_pool1d): (N, C, L) -> (N, C, OL)."""

    def __init__(self, norm_type: float, kernel_size: Any, stride: Any = None,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type, self.kernel_size = norm_type, kernel_size
        self.stride, self.ceil_mode = stride, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.lp_pool1d(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")


class LPPool2d(LPPool1d):
    """(sum of x^p over each window)^(1/p) (F.lp_pool2d): (N, C, H, W) -> (N, C, OH, OW)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class ChannelShuffle(Module):
    """(N, C, *) channels regrouped from `groups` groups of C / groups, group-minor
    (F.channel_shuffle)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return F.channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class PixelShuffle(Module):
    """(*, C * r**2, H, W) -> (*, C, H * r, W * r), r = upscale_factor (F.pixel_shuffle)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """(*, C, H * r, W * r) -> (*, C * r**2, H, W), r = downscale_factor (F.pixel_unshuffle)."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_unshuffle(x, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class _InstanceNorm(Module):
    """Normalize each (sample, channel) plane of (N, C, *spatial) or unbatched (C, *spatial)
    over its entries (InstanceNorm1d: one spatial dim, InstanceNorm2d: two).

    PyTorch's defaults: affine=False (no weight and bias; with affine, weight starts at 1 and
    bias, unless bias=False, at 0), track_running_stats=False (always the instance statistics). With tracked
    statistics, training mode moves running_mean / running_var towards the batch's mean
    instance statistics by momentum and eval mode normalizes with them. A channel count other
    than num_features raises ValueError with affine (PyTorch warns without it, and so do we).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False,
                 device: Any = None, dtype: Any = None, *, bias: bool = True) -> None:
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
        self.register_parameter(
            "bias", Parameter(np.zeros(num_features, dtype=dt)) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", tensor(np.zeros(num_features, dtype=dt)))
            self.register_buffer("running_var", tensor(np.ones(num_features, dtype=dt)))
            self.register_buffer("num_batches_tracked", tensor(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    #: the number of dims of a batched input
    batched_ndim = 4

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim not in (self.batched_ndim - 1, self.batched_ndim):
            raise ValueError(f"{name}: expected a {self.batched_ndim - 1}-D or "
                             f"{self.batched_ndim}-D input, got shape {tuple(x.shape)}")
        if x.ndim == self.batched_ndim - 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.shape[1] != self.num_features:
            message = (f"{name}: expected input's size at dim=1 to match num_features "
                       f"({self.num_features}), but got {x.shape[1]} (input {tuple(x.shape)})")
            if self.affine:
                raise ValueError(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats,
                               0.0 if self.momentum is None else self.momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of (N, C, L) or (C, L) over L (see _InstanceNorm)."""

    batched_ndim = 3


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of (N, C, H, W) or (C, H, W) over H, W (see _InstanceNorm)."""

    batched_ndim = 4


class AdaptiveAvgPool1d(Module):
    """Mean pooling to a fixed output_size.  x: (N, C, L) -> (N, C, output_size)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool1d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(AdaptiveAvgPool1d):
    """Max pooling to a fixed output_size.  x: (N, C, L) -> (N, C, output_size);
    return_indices makes forward return (values, positions along L)."""

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, x: Tensor) -> Any:
        return F.adaptive_max_pool1d(x, self.output_size, self.return_indices)
