"""torch.nn.utils.weight_norm (Salimans and Kingma 2016): a weight reparameterized as
w = g * v / ||v||, recomputed from the parameters `<name>_g` and `<name>_v` before every forward.
"""

from __future__ import annotations

import warnings
from typing import TypeVar

from minidl.nn.module import Module, Parameter
from minidl.tensor import Tensor

__all__ = ["WeightNorm", "remove_weight_norm", "weight_norm"]

T_module = TypeVar("T_module", bound=Module)


def norm_except_dim(v: Tensor, dim: int) -> Tensor:
    """The 2-norm of v over every dim but `dim`, keeping v's rank (1s elsewhere); dim=-1
    means the norm of the whole tensor (a 0-d tensor), as in PyTorch's norm_except_dim."""
    if dim == -1:
        return v.norm()
    keep = dim % v.ndim
    return v.norm(dim=tuple(d for d in range(v.ndim) if d != keep), keepdim=True)


class WeightNorm:
    """The forward pre-hook that recomputes module.<name> from <name>_g and <name>_v."""

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Tensor:
        g, v = getattr(module, self.name + "_g"), getattr(module, self.name + "_v")
        return v * (g / norm_except_dim(v, self.dim))

    def remove(self, module: Module) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight.data))

    def __call__(self, module: Module, inputs: tuple) -> None:
        setattr(module, self.name, self.compute_weight(module))


def _hooks_of(module: Module, name: str) -> list:
    return [key for key, (hook, *_) in module._forward_pre_hooks.items()
            if isinstance(hook, WeightNorm) and hook.name == name]


def weight_norm(module: T_module, name: str = "weight", dim: int | None = 0) -> T_module:
    """Replace module.<name> by <name>_g (its norm over every dim but `dim`; dim=None: the whole
    tensor's norm) and <name>_v (its direction), both Parameters; the weight is recomputed
    before every forward. Deprecated in PyTorch (FutureWarning), as here. Raises RuntimeError
    when the parameter already has a weight norm."""
    warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of "
                  "`torch.nn.utils.parametrizations.weight_norm`.", FutureWarning, stacklevel=2)
    if _hooks_of(module, name):
        raise RuntimeError(f"Cannot register two weight_norm hooks on the same parameter {name}")
    fn = WeightNorm(name, dim)
    weight = getattr(module, name)
    del module._parameters[name]
    module.register_parameter(name + "_g", Parameter(norm_except_dim(weight, fn.dim).data))
    module.register_parameter(name + "_v", Parameter(weight.data))
    setattr(module, name, fn.compute_weight(module))
    module.register_forward_pre_hook(fn)
    return module


def remove_weight_norm(module: T_module, name: str = "weight") -> T_module:
    """Undo weight_norm: module.<name> becomes a Parameter again, holding g * v / ||v||.
    Raises ValueError when `name` has no weight norm."""
    keys = _hooks_of(module, name)
    if not keys:
        raise ValueError(f"weight_norm of '{name}' not found in {module}")
    hook = module._forward_pre_hooks[keys[0]][0]
    hook.remove(module)
    del module._forward_pre_hooks[keys[0]]
    return module
