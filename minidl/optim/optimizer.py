"""Optimizer base class: parameter groups, per-parameter state, state_dict, zero_grad.

Subclasses implement `_update(p, grad, state, group)` for one parameter; updates run in place
on `p.data` with NumPy ufuncs' `out=` into buffers kept per parameter, so a step allocates
nothing once the state exists.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from minidl.dtypes import get_default_dtype
from minidl.graph import enable_grad, no_grad
from minidl.tensor import Tensor


def implementation_options(name: str, differentiable: bool = False) -> None:
    """PyTorch's implementation switches (foreach, fused, capturable) choose among kernels
    that compute the same update; minidl has one, so they are accepted and recorded in the
    groups as PyTorch does. differentiable=True (a step autograd can see through) raises."""
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True is not supported (minidl's "
                                  "optimizer steps are not recorded by autograd)")


def scalar_dtype() -> type:
    """The dtype PyTorch keeps optimizers' scalar state in (NAdam's mu_product, ASGD's eta
    and mu): float64 if that is the default dtype, else float32."""
    return np.float64 if get_default_dtype() == np.float64 else np.float32


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """start += weight * (end - start) in place, in PyTorch's lerp form: the weight is taken
    in start's dtype and, from 0.5 up, the result is computed from the end,
    end - (end - start) * (1 - weight), which is exact at weight 1."""
    weight = start.dtype.type(weight)
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


class Optimizer:
    """params: an iterable of Tensors, or of dicts {"params": [...], **overrides} (parameter
    groups with their own lr, weight_decay, ...). `defaults` fills what a group leaves out.

    state_dict() follows PyTorch's layout: {"state": {index: {...}}, "param_groups":
    [{hyperparameters..., "params": [index, ...]}]}, parameters numbered in group order. Its
    arrays are the live buffers (copy to snapshot); load_state_dict copies them in.
    """

    def __init__(self, params: Iterable[Any], defaults: dict) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        self._scratch: dict[int, list[np.ndarray]] = {}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with 'params'")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: parameters must be Tensors, got {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can only optimize leaf tensors")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
            seen.add(id(p))
        # "params" first, then the defaults in their order: PyTorch's key order.
        new = {"params": params, **self.defaults}
        new.update({k: v for k, v in group.items() if k != "params"})
        self._check_group(new)
        self.param_groups.append(new)

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (subclasses extend)."""
        if group.get("lr", 0) < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(
                f"{type(self).__name__}: invalid weight_decay {group['weight_decay']}"
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none=True) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    def scratch(self, p: Tensor, count: int = 1) -> list[np.ndarray]:
        """`count` work buffers shaped like p, reused across steps (not part of the state)."""
        buffers = self._scratch.setdefault(id(p), [])
        if buffers and (buffers[0].shape != p.data.shape or buffers[0].dtype != p.data.dtype):
            buffers.clear()  # p.data was replaced by an array of another shape or dtype
        while len(buffers) < count:
            buffers.append(np.empty_like(p.data))
        return buffers

    @no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient. closure, if given, re-evaluates
        the model and returns the loss (it runs with gradients enabled)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.data
                if grad.shape != p.data.shape:
                    raise ValueError(
                        f"{type(self).__name__}: gradient of shape {grad.shape} for a parameter "
                        f"of shape {p.data.shape}"
                    )
                state = self.state.setdefault(p, {})
                self._check_state(p, state)
                grad = grad.astype(p.data.dtype, copy=False)
                # maximize (every optimizer's, as in PyTorch): ascend, by descending on -grad.
                self._update(p, -grad if group.get("maximize") else grad, state, group)
        return loss

    def _check_state(self, p: Tensor, state: dict) -> None:
        """Every state buffer must match its parameter's shape and dtype: the update kernels
        write through them element by element. Replacing `p.data` with an array of another
        shape or dtype after a step (without clearing the state) raises here."""
        for key, value in state.items():
            if isinstance(value, np.ndarray) and value.ndim > 0 and (
                value.shape != p.data.shape or value.dtype != p.data.dtype
            ):
                raise ValueError(
                    f"{type(self).__name__}.step: state {key!r} has shape {value.shape} dtype "
                    f"{value.dtype}, but its parameter now has shape {p.data.shape} dtype "
                    f"{p.data.dtype}; clear optimizer.state[p] after replacing p.data"
                )

    def _update(self, p: Tensor, grad: np.ndarray, state: dict, group: dict) -> None:
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = self.state[p]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state; the groups must match in count and sizes, and
        each state array the shape of its parameter (ValueError naming both otherwise)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state has {len(saved_groups)} parameter groups, "
                f"this optimizer {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters "
                    f"in the state, {len(group['params'])} here"
                )
            for k, p in zip(saved["params"], group["params"]):
                by_index[int(k)] = p
        new_state: dict[Tensor, dict] = {}
        for k, entry in state_dict["state"].items():
            if int(k) not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for unknown parameter {k}")
            p = by_index[int(k)]
            new_state[p] = {key: self._load_state_value(p, int(k), key, value)
                            for key, value in entry.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = copy.deepcopy(value)
        self.state = new_state

    def _load_state_value(self, p: Tensor, index: int, key: str, value: Any) -> Any:
        """A copy of one saved state value for parameter p (number `index`): arrays must have
        p's shape and take its dtype (subclasses with other state layouts override)."""
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.ndarray) and value.ndim > 0:
            if value.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: state[{index}][{key!r}] has "
                    f"shape {value.shape}, the parameter has shape {p.data.shape}"
                )
            return value.astype(p.data.dtype, copy=True)
        return copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
