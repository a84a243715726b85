"""Module hooks (PyTorch's register_forward_pre_hook / register_forward_hook /
register_full_backward_hook / register_full_backward_pre_hook) and the two identity ops that let a backward hook see the
gradients with respect to a module's inputs and outputs."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from minidl.graph import Context, Function


class RemovableHandle:
    """Returned by every hook registration; `remove()` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict) -> None:
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class BackwardHookState:
    """One call's record: gradients w.r.t. the outputs arrive first, then those w.r.t. the
    inputs, when the hooks run (and may replace the input gradients)."""

    def __init__(self, module: Any, hooks: list, pre_hooks: list, inputs_tracked: bool
                 ) -> None:
        self.module, self.hooks, self.inputs_tracked = module, hooks, inputs_tracked
        self.pre_hooks = pre_hooks
        self.grad_outputs: tuple = ()


class OutputGradHookOp(Function):
    """Identity on a module output; its backward records the gradient w.r.t. the outputs."""

    name = "module_output_grad_hook"

    @staticmethod
    def forward(ctx: Context, x, *, state: BackwardHookState) -> np.ndarray:
        ctx.state = state
        return x

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = run_pre_hooks(ctx.state, g)
        ctx.state.grad_outputs = (g,)
        if not ctx.state.inputs_tracked:
            # No input requires grad: the hooks run now, with grad_input (None,), as PyTorch's.
            run_hooks(ctx.state, (None,))
        return g


def run_pre_hooks(state: BackwardHookState, g: np.ndarray) -> np.ndarray:
    """The module's backward pre-hooks on (grad_output,); what they return replaces it."""
    from minidl.tensor import Tensor

    grad_output = (Tensor._wrap(g, False),)
    for hook in list(state.pre_hooks):
        result = hook(state.module, grad_output)
        if result is not None:
            result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
            if len(result) != 1:
                raise RuntimeError(
                    f"backward pre hook returned {len(result)} gradients, expected 1")
            grad_output = result
    (out,) = grad_output
    return out.data if isinstance(out, Tensor) else np.asarray(out, dtype=g.dtype)


def run_hooks(state: BackwardHookState, grad_input: tuple) -> tuple:
    from minidl.tensor import Tensor

    grad_output = tuple(Tensor._wrap(o, False) for o in state.grad_outputs)
    for hook in list(state.hooks):
        result = hook(state.module, grad_input, grad_output)
        if result is not None:
            result = tuple(result)
            if len(result) != len(grad_input):
                raise RuntimeError(
                    f"backward hook returned {len(result)} gradients, expected {len(grad_input)}"
                )
            grad_input = result
    return grad_input


class InputGradHookOp(Function):
    """Identity on a module input; its backward runs the module's full backward hooks with
    (grad_input, grad_output) and passes on what they return (or the gradient itself)."""

    name = "module_input_grad_hook"

    @staticmethod
    def forward(ctx: Context, x, *, state: BackwardHookState) -> np.ndarray:
        ctx.state = state
        return x

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        from minidl.tensor import Tensor

        (out,) = run_hooks(ctx.state, (Tensor._wrap(g, False),))
        return out.data if isinstance(out, Tensor) else out
