"""Spatial layers past LeNet: ConvTranspose2d, Conv1d, MaxPool1d, AvgPool1d, Upsample (and
UpsamplingNearest2d, UpsamplingBilinear2d). Constructor arguments, defaults and
initialization follow PyTorch; `dtype` (float32 by default, or float64) sets the parameters'
dtype. Each applies one function of minidl.nn.functional.
"""

from __future__ import annotations

from typing import Any

from minidl.nn import functional as F
from minidl.nn.layers import default_uniform_init, empty_parameter, float_dtype, positive_int
from minidl.nn.module import Module
from minidl.ops.conv import pair
from minidl.tensor import Tensor

__all__ = ["AvgPool1d", "Conv1d", "ConvTranspose2d", "MaxPool1d", "Upsample",
           "UpsamplingBilinear2d", "UpsamplingNearest2d"]


def _channels(op: str, in_channels: Any, out_channels: Any, groups: Any) -> tuple[int, int, int]:
    in_channels = positive_int(op, "in_channels", in_channels)
    out_channels = positive_int(op, "out_channels", out_channels)
    groups = positive_int(op, "groups", groups)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                         f"must be divisible by groups ({groups})")
    return in_channels, out_channels, groups


def _zeros_padding_only(op: str, padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise ValueError(f"{op}: only padding_mode='zeros' is supported, got {padding_mode!r}")


class ConvTranspose2d(Module):
    """2-D transposed convolution.  x: (N, in_channels, H, W) -> (N, out_channels, OH, OW),
    OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1.

    weight: (in_channels, out_channels // groups, KH, KW); bias: (out_channels,); both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in = out_channels // groups * KH * KW
    (its fan-in of the weight's dim 1). forward(x, output_size) picks the output_padding that
    gives that size (the last two entries of output_size), ValueError when none can.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", dtype: Any = None) -> None:
        super().__init__()
        op = "ConvTranspose2d"
        dt = float_dtype(op, dtype)
        _zeros_padding_only(op, padding_mode)
        self.in_channels, self.out_channels, self.groups = _channels(
            op, in_channels, out_channels, groups)
        self.kernel_size = pair(op, "kernel_size", kernel_size, 1)
        self.stride = pair(op, "stride", stride, 1)
        self.padding = pair(op, "padding", padding, 0)
        self.output_padding = pair(op, "output_padding", output_padding, 0)
        self.dilation = pair(op, "dilation", dilation, 1)
        self.padding_mode = padding_mode
        self.weight = empty_parameter(
            (self.in_channels, self.out_channels // self.groups) + self.kernel_size, dt)
        self.register_parameter(
            "bias", empty_parameter((self.out_channels,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.out_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        default_uniform_init(self.weight, self.bias, fan_in)

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        output_padding = (self.output_padding if output_size is None
                          else self._output_padding(x, output_size))
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)

    def _output_padding(self, x: Tensor, output_size: Any) -> tuple[int, int]:
        """PyTorch's: the output_padding in [0, stride) that makes the output output_size."""
        wanted = tuple(int(s) for s in output_size)[-2:]
        if len(wanted) != 2 or x.ndim < 2:
            raise ValueError(f"ConvTranspose2d: output_size must end with (OH, OW), got "
                             f"{output_size!r}")
        result = []
        for k in range(2):
            size = x.shape[x.ndim - 2 + k]
            smallest = ((size - 1) * self.stride[k] - 2 * self.padding[k]
                        + self.dilation[k] * (self.kernel_size[k] - 1) + 1)
            largest = smallest + self.stride[k] - 1
            if not smallest <= wanted[k] <= largest:
                raise ValueError(
                    f"ConvTranspose2d: requested an output size of {wanted}, but valid sizes "
                    f"range from {smallest} to {largest} in dim {k} (for an input of "
                    f"{tuple(x.shape[-2:])})")
            result.append(wanted[k] - smallest)
        return tuple(result)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        for name, default in (("padding", (0, 0)), ("output_padding", (0, 0)),
                              ("dilation", (1, 1)), ("groups", 1)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.bias is None:
            s += ", bias=False"
        return s


def _single(op: str, name: str, value: Any, minimum: int) -> int:
    """An int (or a 1-sequence of one) >= minimum, as PyTorch's 1-d layers store it (a 1-tuple)."""
    if isinstance(value, (tuple, list)) and len(value) != 1:
        raise ValueError(f"{op}: {name} must be an int or a 1-sequence, got {value!r}")
    return pair(op, name, value, minimum)[:1]


class Conv1d(Module):
    """1-D convolution.  x: (N, in_channels, L) -> (N, out_channels, OL).

    weight: (out_channels, in_channels // groups, K); bias: (out_channels,); both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels // groups * K. padding: int,
    'same' or 'valid'.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: Any = None) -> None:
        super().__init__()
        op = "Conv1d"
        dt = float_dtype(op, dtype)
        _zeros_padding_only(op, padding_mode)
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
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else (
                f", padding={self.padding}")
        if self.dilation != (1,):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
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
