"""Module, Parameter and the containers: Sequential, ModuleList, ModuleDict, ParameterList,
ParameterDict.

A Module registers what is assigned to it: Parameters (trained), other Modules (children) and
buffers (state that is saved but not trained, e.g. BatchNorm's running statistics). Names in
`state_dict()` are dotted paths, as in PyTorch, so state dicts can be compared one to one.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from minidl import graph
from minidl.device import check_device, device
from minidl.dtypes import check_dtype
from minidl.memory_format import check_memory_format
from minidl.nn.hooks import BackwardHookState, RemovableHandle
from minidl.tensor import Tensor, _as_array
from minidl.tensor import tensor as minidl_tensor

# The identity ops that carry full backward hooks (minidl.nn.hooks), found by name once.
_input_grad_hook = graph.op("module_input_grad_hook").apply
_output_grad_hook = graph.op("module_output_grad_hook").apply


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


# The state_dict key of a module's get_extra_state() (PyTorch's name).
EXTRA_STATE_KEY = "_extra_state"


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model. Subclasses define `forward`; call the module itself.

    Registration happens on attribute assignment: `self.fc = Linear(2, 3)` adds a child,
    `self.w = Parameter(...)` a parameter; `register_buffer` adds a buffer. Assigning None to a
    registered name keeps the slot (e.g. `bias=None`) and it is skipped everywhere.
    """

    # PyTorch's class flags: whether Module.__init__ passes extra arguments to a mixin's
    # __init__, and whether load_state_dict reports changed parameter formats.
    call_super_init = False
    dump_patches = False

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_state_dict_pre_hooks", OrderedDict())
        object.__setattr__(self, "_state_dict_hooks", OrderedDict())
        object.__setattr__(self, "_load_state_dict_pre_hooks", OrderedDict())
        object.__setattr__(self, "_load_state_dict_post_hooks", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks
                or self._backward_pre_hooks):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict) -> Any:
        for hook, with_kwargs, _ in list(self._forward_pre_hooks.values()):
            if with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("forward pre-hook with_kwargs=True must return None "
                                           f"or a tuple (args, kwargs), got {result!r}")
                    args, kwargs = result
                continue
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        state = None
        if (self._backward_hooks or self._backward_pre_hooks) and graph.is_grad_enabled():
            tracked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
            if len(tracked) > 1:
                raise NotImplementedError(
                    f"{type(self).__name__}: full backward hooks on modules with several "
                    "inputs that require grad are not supported by minidl"
                )
            state = BackwardHookState(self, list(self._backward_hooks.values()),
                                      list(self._backward_pre_hooks.values()), bool(tracked))
            args = tuple(_input_grad_hook(a, state=state) if i in tracked else a
                         for i, a in enumerate(args))
        try:
            output = self.forward(*args, **kwargs)
        except Exception:
            # always_call hooks see the failed call (output None); the error still propagates.
            for hook, with_kwargs, always in list(self._forward_hooks.values()):
                if always and with_kwargs:
                    hook(self, args, kwargs, None)
                elif always:
                    hook(self, args, None)
            raise
        for hook, with_kwargs, _ in list(self._forward_hooks.values()):
            result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if result is not None:
                output = result
        if state is not None:
            if not isinstance(output, Tensor):
                raise NotImplementedError(
                    f"{type(self).__name__}: full backward hooks need a module returning one "
                    f"Tensor, got {type(output).__name__}"
                )
            if output.requires_grad:
                output = _output_grad_hook(output, state=state)
        return output

    # -- hooks ----------------------------------------------------------------------------
    @staticmethod
    def _register(hooks: OrderedDict, entry: Any, prepend: bool) -> RemovableHandle:
        """entry added to hooks, first when prepend (it then runs before the others)."""
        handle = RemovableHandle(hooks)
        hooks[handle.id] = entry
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """hook(module, args) runs before forward; a non-None result replaces args. With
        with_kwargs, hook(module, args, kwargs) may return (args, kwargs) to replace both."""
        return self._register(self._forward_pre_hooks, (hook, with_kwargs, False), prepend)

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False,
                              with_kwargs: bool = False, always_call: bool = False
                              ) -> RemovableHandle:
        """hook(module, args, output) (with_kwargs: hook(module, args, kwargs, output)) runs
        after forward; a non-None result replaces output. always_call: it also runs, with
        output None, when forward raises."""
        return self._register(self._forward_hooks, (hook, with_kwargs, always_call), prepend)

    def register_full_backward_hook(self, hook: Callable, prepend: bool = False
                                    ) -> RemovableHandle:
        """hook(module, grad_input, grad_output) runs when the gradients w.r.t. the module's
        input and output are computed; a non-None result replaces grad_input. Modules with one
        Tensor output and at most one input that requires grad."""
        return self._register(self._backward_hooks, hook, prepend)

    def register_full_backward_pre_hook(self, hook: Callable, prepend: bool = False
                                        ) -> RemovableHandle:
        """hook(module, grad_output) runs when the gradient w.r.t. the module's output is
        computed, before the module's own backward; a non-None result replaces grad_output.
        Same module limits as register_full_backward_hook."""
        return self._register(self._backward_pre_hooks, hook, prepend)

    def register_backward_hook(self, hook: Callable) -> RemovableHandle:
        """PyTorch's deprecated non-full backward hook: refused, as its gradients are those of
        the module's last op only; use register_full_backward_hook."""
        raise NotImplementedError(
            "register_backward_hook (PyTorch's deprecated form, whose grad_input is that of the "
            "module's last operation) is not supported by minidl; use "
            "register_full_backward_hook")

    def register_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, prefix, keep_vars) runs before the module's entries are saved."""
        return self._register(self._state_dict_pre_hooks, hook, False)

    def register_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, state_dict, prefix, local_metadata) runs after the module's entries
        (its children's included) are saved; it may change state_dict in place."""
        return self._register(self._state_dict_hooks, hook, False)

    def register_load_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs) runs before anything is loaded; it may change
        state_dict in place (e.g. rename old keys)."""
        return self._register(self._load_state_dict_pre_hooks, hook, False)

    def register_load_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, incompatible_keys) runs after loading; it may clear entries of
        incompatible_keys.missing_keys / unexpected_keys in place, which strict=True then no
        longer reports."""
        return self._register(self._load_state_dict_post_hooks, hook, False)

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

    def register_module(self, name: str, module: Module | None) -> None:
        """add_module's other name (PyTorch has both)."""
        self.add_module(name, module)

    # -- traversal ------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """Every module in the tree (itself first) with its dotted name, depth first; a module
        reached twice appears once unless remove_duplicate=False. memo: modules to skip (and
        recorded as visited), PyTorch's."""
        seen: set[int] = {id(m) for m in memo} if memo else set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            if remove_duplicate:
                seen.add(id(module))
                if memo is not None:
                    memo.add(module)
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m) for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def get_submodule(self, target: str) -> Module:
        """The submodule at the dotted path `target` ("" is the module itself), as PyTorch's.
        Raises AttributeError naming the first missing step, or one that is not a Module."""
        module = self
        if target == "":
            return module
        for item in target.split("."):
            if not hasattr(module, item):
                raise AttributeError(f"{type(module).__name__} has no attribute `{item}`")
            module = getattr(module, item)
            if not isinstance(module, Module):
                raise AttributeError(f"`{item}` is not an nn.Module")
        return module

    def _get_member(self, target: str, registry: str, kind: str) -> Any:
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if not hasattr(module, name):
            raise AttributeError(f"{type(module).__name__} has no attribute `{name}`")
        if name not in getattr(module, registry):
            raise AttributeError(f"`{name}` is not {kind}")
        return getattr(module, name)

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at the dotted path target ("layer.weight"); AttributeError if absent
        or not a parameter."""
        return self._get_member(target, "_parameters", "an nn.Parameter")

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at the dotted path target; AttributeError if absent or not a buffer."""
        return self._get_member(target, "_buffers", "a buffer")

    def modules(self, remove_duplicate: bool = True) -> Iterator[Module]:
        for _, m in self.named_modules(remove_duplicate=remove_duplicate):
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

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True):
        seen: set[int] = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a parameter shared by two modules appears once
        unless remove_duplicate=False."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

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

    # -- dtype and device -------------------------------------------------------------------
    def to(self, *args: Any, **kwargs: Any) -> Module:
        """to(device), to(dtype), to(device, dtype): only the CPU exists (other devices raise);
        a float dtype converts every float parameter and buffer in place."""
        dtype = kwargs.pop("dtype", None)
        check_device("Module.to", kwargs.pop("device", None))
        check_memory_format("Module.to", kwargs.pop("memory_format", None))
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"Module.to: unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, (str, device)):
                check_device("Module.to", a)
            else:
                dtype = a
        if dtype is not None:
            dt = check_dtype("Module.to", dtype)
            if dt.kind != "f":
                raise TypeError(f"Module.to: nn.Module.to only accepts floating point dtypes, "
                                f"got {dt}")
            self._cast_floats(dt)
        return self

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """PyTorch's in-place torch.compile: nothing to change here, since
        minidl.compile(model) without example inputs runs the model eagerly too (see
        minidl.compile); the options are checked there."""
        from minidl.static import compile as _compile

        _compile(self, *args, **kwargs)

    def _cast_floats(self, dt: np.dtype) -> None:
        for t in list(self.parameters()) + list(self.buffers()):
            if t.dtype.kind == "f" and t.dtype != dt:
                t.data = t.data.astype(dt)
                if t.grad is not None:
                    t._grad = None

    def type(self, dst_type: Any) -> Module:
        """Every parameter and buffer (integer ones too, as PyTorch's) converted to dst_type,
        a dtype or a tensor type name ('torch.DoubleTensor'); gradients are dropped."""
        for t in list(self.parameters()) + list(self.buffers()):
            converted = t.type(dst_type)
            if converted.dtype != t.dtype:
                t.data = converted.data
                t._grad = None
        return self

    def to_empty(self, *, device: Any, recurse: bool = True) -> Module:
        """PyTorch's move to `device` with uninitialized storage: only the CPU exists and
        minidl's parameters are always allocated, so this checks the device and keeps the
        values."""
        check_device("Module.to_empty", device)
        return self

    def share_memory(self) -> Module:
        """A no-op: minidl's DataLoader workers are forked and see the parent's arrays."""
        return self

    def set_submodule(self, target: str, module: Module, strict: bool = False) -> None:
        """Replace (or, unless strict, add) the submodule at the dotted path `target`. Raises
        ValueError for an empty target or a non-Module, AttributeError when `target` names a
        non-Module attribute or (strict) does not exist."""
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        if not isinstance(module, Module):
            raise ValueError(f"`module` is not an nn.Module, found {type(module)}")
        owner, _, name = target.rpartition(".")
        parent = self.get_submodule(owner)
        if strict and not hasattr(parent, name):
            raise AttributeError(f"{type(parent).__name__} has no attribute `{name}`")
        if hasattr(parent, name) and not isinstance(getattr(parent, name), Module):
            raise AttributeError(f"`{name}` is not an nn.Module")
        setattr(parent, name, module)

    def cpu(self) -> Module:
        return self

    def cuda(self, device: Any = None) -> Module:
        check_device("Module.cuda", "cuda")
        return self

    def float(self) -> Module:
        self._cast_floats(np.dtype(np.float32))
        return self

    def double(self) -> Module:
        self._cast_floats(np.dtype(np.float64))
        return self

    def half(self) -> Module:
        raise TypeError("Module.half: float16 is not supported by minidl (float32/float64 only)")

    bfloat16 = half

    def apply(self, fn) -> Module:
        """Call fn on every submodule and then on itself, depth first in registration order
        (a module shared by two parents is visited under each), as PyTorch does."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- state ----------------------------------------------------------------------------
    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict:
        """Parameters and persistent buffers by dotted name (prefix + name, the prefix used as
        given), as detached tensors sharing memory with the module (as in PyTorch: copy them
        to keep a snapshot); keep_vars=True gives the Parameters themselves. A module that
        overrides get_extra_state adds `<prefix>_extra_state`. destination: a dict to fill.
        Positional (destination, prefix, keep_vars) warn as in PyTorch. State-dict pre-hooks
        run before a module's entries, post-hooks after its children's."""
        if args:
            warnings.warn("Positional args are being deprecated, use kwargs instead. Refer to "
                          "https://pytorch.org/docs/main/generated/torch.nn.Module.html"
                          "#torch.nn.Module.state_dict for details.", FutureWarning,
                          stacklevel=2)
            filled = list(args) + [destination, prefix, keep_vars][len(args):]
            destination, prefix, keep_vars = filled[:3]
        if destination is None:
            destination = OrderedDict()
        for hook in list(self._state_dict_pre_hooks.values()):
            hook(self, prefix, keep_vars)
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                destination[prefix + name] = b if keep_vars else b.detach()
        if type(self).get_extra_state is not Module.get_extra_state:
            destination[prefix + EXTRA_STATE_KEY] = self.get_extra_state()
        # Not deduplicated, as PyTorch's: a module registered under two names (Sequential(l,
        # l)) has its entries under both.
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=f"{prefix}{name}.",
                             keep_vars=keep_vars)
        for hook in list(self._state_dict_hooks.values()):
            if hook(self, destination, prefix, {"version": 1}) is not None:
                raise RuntimeError("state_dict post-hook must return None")
        return destination

    def get_extra_state(self) -> Any:
        """Override (with set_extra_state) to save non-tensor state under `_extra_state`."""
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never "
                           "be called.")

    def set_extra_state(self, state: Any) -> None:
        """Receives what get_extra_state returned, from load_state_dict."""
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never "
                           "be called.")

    def load_state_dict(self, state_dict: Mapping, strict: bool = True, assign: bool = False
                        ) -> IncompatibleKeys:
        """Copy values (Tensors or arrays) into the parameters and buffers, in place.

        Raises RuntimeError (as PyTorch does) listing every problem: missing or unexpected
        keys when strict=True, and, whatever `strict`, each key whose shape differs (with both
        shapes). Nothing is modified unless every entry fits. Values are cast to each
        parameter's dtype. assign=True instead makes each parameter and buffer the given
        value's array (its dtype, no copy; a parameter keeps its requires_grad), as PyTorch's
        assign. A module overriding set_extra_state receives `<prefix>_extra_state`.
        Load-state-dict pre-hooks run first (top-down, on a copy of state_dict they may
        change), post-hooks last (bottom-up). Returns (missing_keys, unexpected_keys).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        state_dict = OrderedDict(state_dict)
        modules = [(f"{name}." if name else "", m)
                   for name, m in self.named_modules(remove_duplicate=False)]
        missing: list[str] = []
        unexpected: list[str] = []
        problems: list[str] = []
        for prefix, m in modules:
            for hook in list(m._load_state_dict_pre_hooks.values()):
                hook(m, state_dict, prefix, {}, strict, missing, unexpected, problems)
        own = self.state_dict()
        for prefix, m in modules:
            if type(m).get_extra_state is not Module.get_extra_state:
                own.pop(prefix + EXTRA_STATE_KEY, None)
        extra = {prefix + EXTRA_STATE_KEY: m for prefix, m in modules
                 if type(m).set_extra_state is not Module.set_extra_state}
        missing += [k for k in list(own) + list(extra) if k not in state_dict]
        unexpected += [k for k in state_dict if k not in own and k not in extra]
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
        result = IncompatibleKeys(missing, unexpected)
        for _, m in reversed(modules):
            for hook in list(m._load_state_dict_post_hooks.values()):
                if hook(m, result) is not None:
                    raise AssertionError(
                        "Hooks registered with ``register_load_state_dict_post_hook`` are not "
                        "expected to return new values, if incompatible_keys need to be "
                        "modified, it should be done inplace.")
        if strict and (missing or unexpected):
            problems[:0] = ([f"missing key(s): {', '.join(missing)}"] if missing else []) + (
                [f"unexpected key(s): {', '.join(unexpected)}"] if unexpected else [])
        if problems:
            raise RuntimeError(
                f"load_state_dict for {type(self).__name__}: " + "; ".join(problems)
            )
        for key, array in values.items():
            if assign:
                owner, _, name = key.rpartition(".")
                module = self.get_submodule(owner)
                if name in module._parameters:
                    old = module._parameters[name]
                    setattr(module, name, Parameter(array, requires_grad=old.requires_grad))
                else:
                    module.register_buffer(name, Tensor._wrap(array, False))
            else:
                np.copyto(own[key].data, array, casting="unsafe")
        for key, m in extra.items():
            if key in state_dict:
                m.set_extra_state(state_dict[key])
        return result

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

    def _repr_lines(self, with_params: bool) -> list[str]:
        head = f"{type(self).__name__}({self.extra_repr()}"
        own = self._own_parameter_summary() if with_params else ""
        children = [(n, m) for n, m in self._modules.items() if m is not None]
        if not children:
            return [head + ")" + own]
        lines = [head + own]
        for name, child in children:
            child_lines = child._repr_lines(with_params)
            lines.append(f"  ({name}): {child_lines[0]}")
            lines.extend("  " + line for line in child_lines[1:])
        lines.append(")")
        return lines

    def __repr__(self) -> str:
        """PyTorch's layout: the module tree with each layer's constructor arguments."""
        return "\n".join(self._repr_lines(with_params=False))

    def summary(self) -> str:
        """repr() with each layer's parameter shapes and count, and the totals at the end."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        lines = self._repr_lines(with_params=True)
        lines.append(f"Total parameters: {total:,} (trainable: {trainable:,})")
        return "\n".join(lines)


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: children in order, used like a list. Deleting or
    inserting renames them 0, 1, ... (PyTorch's numbering: state_dict keys follow)."""

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __setitem__(self, index: int, module: Module) -> None:
        name = list(self._modules)[_list_index(index, len(self), type(self).__name__)]
        self.add_module(name, module)

    def __delitem__(self, index: int | slice) -> None:
        names = list(self._modules)
        doomed = names[index] if isinstance(index, slice) else [
            names[_list_index(index, len(names), type(self).__name__)]]
        self._renumber([m for n, m in self._modules.items() if n not in doomed])

    def append(self, module: Module) -> _ModuleSequence:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> _ModuleSequence:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        values = list(self._modules.values())
        values.insert(index, module)
        self._renumber(values)

    def pop(self, index: int = -1) -> Module:
        module = self[index]
        del self[index]
        return module

    def _renumber(self, modules: list) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(modules):
            self.add_module(str(i), m)


class Sequential(_ModuleSequence):
    """Modules applied in order; index, slice, iterate, append, insert, delete like a list."""

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

    def __getitem__(self, index: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_list_index(index, len(items), "Sequential")][1]

    def insert(self, index: int, module: Module) -> Sequential:
        super().insert(index, module)
        return self  # PyTorch's Sequential.insert returns the container, ModuleList's None


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters the parent sees. It has no forward of its own."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[_list_index(index, len(values), "ModuleList")]


class ModuleDict(Module):
    """Modules by name, registered as children; dict-like (keys, values, items, update)."""

    def __init__(self, modules: Mapping[str, Module] | Iterable | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key: str) -> Module:
        module = self._modules[key]
        delattr(self, key)
        return module

    def update(self, modules: Mapping[str, Module] | Iterable) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self.add_module(key, module)


class ParameterList(Module):
    """A list of Parameters registered with the module (named '0', '1', ...)."""

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        for v in values or ():
            self.append(v)

    def __getitem__(self, index: int) -> Parameter:
        values = list(self._parameters.values())
        return values[_list_index(index, len(values), "ParameterList")]

    def __setitem__(self, index: int, value: Any) -> None:
        name = str(_list_index(index, len(self), "ParameterList"))
        self.register_parameter(name, _as_parameter(value))

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def append(self, value: Any) -> ParameterList:
        self.register_parameter(str(len(self._parameters)), _as_parameter(value))
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return "\n".join(f"({i}): Parameter containing: [{p.dtype} of size {tuple(p.shape)}]"
                         for i, p in enumerate(self))


class ParameterDict(Module):
    """Parameters by name, registered with the module; dict-like."""

    def __init__(self, parameters: Mapping[str, Any] | Iterable | None = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.register_parameter(key, _as_parameter(value))

    def __delitem__(self, key: str) -> None:
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: str) -> bool:
        return key in self._parameters

    def keys(self):
        return self._parameters.keys()

    def values(self):
        return self._parameters.values()

    def items(self):
        return self._parameters.items()

    def update(self, parameters: Mapping[str, Any] | Iterable) -> None:
        pairs = parameters.items() if isinstance(parameters, Mapping) else parameters
        for key, value in pairs:
            self[key] = value


def _as_parameter(value: Any) -> Parameter:
    return value if isinstance(value, Parameter) else Parameter(value)


def _list_index(index: int, length: int, what: str) -> int:
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"{what} indices must be ints or slices, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"{what} index {index} is out of range for length {length}")
    return int(index) % length
