"""Activation modules: thin wrappers over minidl.nn.functional, plus PReLU's and Maxout's
parameters."""

from __future__ import annotations

import warnings
from typing import Any

from minidl.nn import functional as F
from minidl.nn import init as nn_init
from minidl.nn.layers import default_uniform_init, empty_parameter, float_dtype, positive_int
from minidl.nn.module import Module
from minidl.tensor import Tensor

__all__ = ["CELU", "ELU", "GLU", "SELU", "Hardshrink", "Hardsigmoid", "Hardswish", "LeakyReLU",
           "LogSigmoid", "LogSoftmax", "Maxout", "Mish", "PReLU", "RReLU", "ReLU", "Sigmoid",
           "Softmax", "Softmax2d", "Softmin", "Softplus", "Softshrink", "Softsign", "Tanh",
           "Tanhshrink", "Threshold"]


class ReLU(Module):
    """max(x, 0); inplace=True overwrites the input (see Tensor.relu_)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x (PyTorch's default slope 0.01; the lectures use 0.1)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Hardtanh(Module):
    """input clamped to [min_val, max_val] (F.hardtanh)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None) -> None:
        super().__init__()
        # min_value/max_value: PyTorch's deprecated spellings, which win when given.
        if min_value is not None or max_value is not None:
            warnings.warn("keyword argument `min_value`/`max_value` is deprecated and will be "
                          "removed in future releases, please use `min_val`/`max_val` instead.",
                          stacklevel=2)
        min_val = min_val if min_value is None else min_value
        max_val = max_val if max_value is None else max_value
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val "
                             f"({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.hardtanh(x, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class ReLU6(Hardtanh):
    """min(max(x, 0), 6) (F.relu6)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SiLU(Module):
    """x * sigmoid(x) (F.silu)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """x * Phi(x), or its tanh approximation (F.gelu)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, linear where beta * x > threshold (F.softplus)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class _InplaceActivation(Module):
    """An activation with no option but `inplace`: forward applies `function` (F.<name>)."""

    function: Any = None

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return type(self).function(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Mish(_InplaceActivation):
    """x * tanh(softplus(x)) (F.mish)."""

    function = staticmethod(F.mish)


class Hardswish(_InplaceActivation):
    """x * relu6(x + 3) / 6 (F.hardswish)."""

    function = staticmethod(F.hardswish)


class Hardsigmoid(_InplaceActivation):
    """relu6(x + 3) / 6 (F.hardsigmoid)."""

    function = staticmethod(F.hardsigmoid)


class SELU(_InplaceActivation):
    """scale * elu(x, alpha) with PyTorch's constants (F.selu)."""

    function = staticmethod(F.selu)


class Softsign(Module):
    """x / (1 + |x|) (F.softsign)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.softsign(x)


class PReLU(Module):
    """x if x > 0 else a * x with a learned slope: num_parameters=1 shares one slope, or one
    per channel (axis 1) when num_parameters equals the channel count. Slopes start at `init`."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.num_parameters = positive_int("PReLU", "num_parameters", num_parameters)
        self.init = init
        self.weight = empty_parameter((num_parameters,), float_dtype("PReLU", dtype, device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn_init.constant_(self.weight, self.init)

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"



class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """1 / (1 + exp(-x)), stable for large |x|."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Softmax(Module):
    """exp(x) / sum(exp(x)) along dim (computed shifted by the max)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim  # None: F.softmax's implicit dim, with PyTorch's warning

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """x - logsumexp(x) along dim."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim  # None: F.log_softmax's implicit dim, with PyTorch's warning

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Maxout(Module):
    """out[..., o] = max_k (x @ weight[o * pieces + k] + bias[o * pieces + k]) (Goodfellow et
    al., 2013).  x: (..., in_features) -> (..., out_features).

    weight: (out_features * pieces, in_features), rows grouped by output unit; bias:
    (out_features * pieces,); initialized as a Linear layer's with the same shapes.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int, bias: bool = True,
                 dtype: Any = None) -> None:
        super().__init__()
        dt = float_dtype("Maxout", dtype)
        self.in_features = positive_int("Maxout", "in_features", in_features)
        self.out_features = positive_int("Maxout", "out_features", out_features)
        self.pieces = positive_int("Maxout", "pieces", pieces)
        rows = out_features * pieces
        self.weight = empty_parameter((rows, in_features), dt)
        self.register_parameter("bias", empty_parameter((rows,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        default_uniform_init(self.weight, self.bias, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.maxout(x, self.weight, self.bias, self.pieces)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces}")



class LogSigmoid(Module):
    """log(sigmoid(x)), stable for large |x| (F.logsigmoid)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.logsigmoid(x)


class Softmin(Module):
    """softmax(-x) along dim (F.softmin)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim  # None: F.softmin's implicit dim, with PyTorch's warning

    def forward(self, x: Tensor) -> Tensor:
        return F.softmin(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax2d(Module):
    """softmax over the channels at each location: x (N, C, H, W) or (C, H, W), dim -3.
    Raises ValueError for another number of dims."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {x.ndim}D instead")
        return F.softmax(x, -3)


class CELU(Module):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) (F.celu)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.celu(x, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GLU(Module):
    """a * sigmoid(b) for the two halves a, b of x along dim (F.glu)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.glu(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Hardshrink(Module):
    """0 where |x| <= lambd, x elsewhere (F.hardshrink)."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return F.hardshrink(x, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Module):
    """x shrunk towards 0 by lambd, 0 where |x| <= lambd (F.softshrink)."""

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return F.softshrink(x, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Tanhshrink(Module):
    """x - tanh(x) (F.tanhshrink)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanhshrink(x)


class Threshold(Module):
    """value where x <= threshold, x elsewhere (F.threshold)."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.threshold(x, self.threshold, self.value, self.inplace)

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, value={self.value}"
                + (", inplace=True" if self.inplace else ""))


class RReLU(Module):
    """Randomized leaky ReLU (F.rrelu): slopes drawn from U(lower, upper) for x <= 0 in
    training mode, slope (lower + upper) / 2 in eval mode."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
                 inplace: bool = False) -> None:
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.rrelu(x, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}" + (", inplace=True" if self.inplace
                                                          else "")
