"""Module, Parameter and the two containers, Sequential and ModuleList.

A Module registers what is assigned to it: Parameters (trained), other Modules (children) and
buffers (state that is saved but not trained, e.g. BatchNorm's running statistics). Names in
`state_dict()` are dotted paths, as in PyTorch, so state dicts can be compared one to one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

from minidl.tensor import Tensor, _as_array
from minidl.tensor import tensor as minidl_tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable; requires_grad defaults to True.

    Wraps `data`'s array without copying when it is a Tensor or a C-contiguous array of a
    supported dtype.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        # Unlike Tensor(data), the data keeps its dtype (a float64 tensor stays float64).
        src = data.data if isinstance(data, Tensor) else data
        super().__init__(dtype=None if src is None else _as_array(src, None, "Parameter").dtype)
        if src is not None:
            self.data = _as_array(src, None, "Parameter")
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model. Subclasses define `forward`; call the module itself.

    Registration happens on attribute assignment: `self.fc = Linear(2, 3)` adds a child,
    `self.w = Parameter(...)` a parameter; `register_buffer` adds a buffer. Assigning None to a
    registered name keeps the slot (e.g. `bias=None`) and it is skipped everywhere.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- registration ---------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called in "
                f"{type(self).__name__}.__init__"
            )
        registries = (self._parameters, self._buffers, self._modules)
        if isinstance(value, Parameter):
            self._forget(name, keep=self._parameters)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} to buffer {name!r} (Tensor or None)"
                )
            self._buffers[name] = value
        elif value is None and any(name in r for r in registries):
            for r in registries:
                if name in r:
                    r[name] = None
        elif name in self._parameters:
            raise TypeError(
                f"cannot assign {type(value).__name__} to parameter {name!r} "
                "(Parameter or None expected)"
            )
        else:
            self._forget(name, keep=None)
        object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict | None) -> None:
        for r in (self._parameters, self._buffers, self._modules):
            if r is not keep:
                r.pop(name, None)

    def __delattr__(self, name: str) -> None:
        self._forget(name, keep=None)
        self._non_persistent.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """A tensor saved in state_dict (unless persistent=False) but not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = minidl_tensor(np.asarray(tensor))
        self._forget(name, keep=self._buffers)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self._forget(name, keep=self._modules)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # -- traversal ------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module in the tree (itself first), each once, with its dotted name."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m) for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool):
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a parameter shared by two modules appears once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- modes and gradients --------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (Dropout drops, BatchNorm uses batch statistics) for the whole tree."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none=True) or fill it with zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data.fill(0)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def apply(self, fn) -> Module:
        """Call fn on every submodule (children first) and on itself, as PyTorch does."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    # -- state ----------------------------------------------------------------------------
    def state_dict(self, prefix: str = "") -> OrderedDict:
        """Parameters and persistent buffers by dotted name, as detached tensors that share
        memory with the module (as in PyTorch: copy them to keep a snapshot)."""
        out: OrderedDict = OrderedDict()
        for module_name, module in self.named_modules(prefix.rstrip(".")):
            base = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[base + name] = p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    out[base + name] = b.detach()
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values (Tensors or arrays) into the parameters and buffers, in place.

        Raises RuntimeError (as PyTorch does) listing every problem: missing or unexpected
        keys when strict=True, and, whatever `strict`, each key whose shape differs (with both
        shapes). Nothing is modified unless every entry fits. Values are cast to each
        parameter's dtype. Returns (missing_keys, unexpected_keys).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and (missing or unexpected):
            if missing:
                problems.append(f"missing key(s): {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected key(s): {', '.join(unexpected)}")
        values = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value.data if isinstance(value, Tensor) else np.asarray(value)
            if array.shape != target.shape:
                problems.append(
                    f"size mismatch for {key}: the checkpoint has shape {array.shape}, this "
                    f"model has shape {target.shape}"
                )
            elif array.dtype.kind not in "biuf":
                problems.append(f"{key}: value has non-numeric dtype {array.dtype}")
            else:
                values[key] = array
        if problems:
            raise RuntimeError(
                f"load_state_dict for {type(self).__name__}: " + "; ".join(problems)
            )
        for key, array in values.items():
            np.copyto(own[key].data, array, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The constructor arguments shown inside the parentheses of repr()."""
        return ""

    def _own_parameter_summary(self) -> str:
        params = [(n, p) for n, p in self._parameters.items() if p is not None]
        if not params:
            return ""
        shapes = ", ".join(f"{n} {tuple(p.shape)}" for n, p in params)
        count = sum(p.numel() for _, p in params)
        return f"  # {shapes}: {count:,} params"

    def _repr_lines(self) -> list[str]:
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = [(n, m) for n, m in self._modules.items() if m is not None]
        if not children:
            return [head + ")" + self._own_parameter_summary()]
        lines = [head + self._own_parameter_summary()]
        for name, child in children:
            child_lines = child._repr_lines()
            lines.append(f"  ({name}): {child_lines[0]}")
            lines.extend("  " + line for line in child_lines[1:])
        lines.append(")")
        return lines

    def __repr__(self) -> str:
        """PyTorch's layout, each layer followed by its parameter shapes and count, and the
        totals at the end."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        lines = self._repr_lines()
        lines.append(f"Total parameters: {total:,} (trainable: {trainable:,})")
        return "\n".join(lines)


class Sequential(Module):
    """Modules applied in order; index, slice, iterate and append like a list."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_list_index(index, len(items), "Sequential")][1]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters the parent sees. It has no forward of its own."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[_list_index(index, len(values), "ModuleList")]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(str(_list_index(index, len(self), "ModuleList")), module)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        values = list(self._modules.values())
        values.insert(index, module)
        for name in list(self._modules):
            delattr(self, name)
        self.extend(values)


def _list_index(index: int, length: int, what: str) -> int:
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"{what} indices must be ints or slices, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"{what} index {index} is out of range for length {length}")
    return int(index) % length
