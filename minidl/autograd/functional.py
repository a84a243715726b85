"""torch.autograd.functional: Jacobians and Jacobian products of a function of tensors, by
reverse-mode sweeps over the function's graph (one per output element for a full Jacobian).

minidl has no higher-order gradients, so hessian, hvp and vhp, and create_graph=True, raise
NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minidl import graph
from minidl.grad_mode import enable_grad
from minidl.tensor import Tensor

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]


def _as_tuple(op: str, what: str, x: Any) -> tuple[bool, tuple]:
    """(was a single Tensor, the tensors as a tuple); anything else raises TypeError."""
    if isinstance(x, Tensor):
        return True, (x,)
    if isinstance(x, (tuple, list)) and all(isinstance(t, Tensor) for t in x):
        return False, tuple(x)
    raise TypeError(f"The {what} given to {op} must be either a Tensor or a tuple of Tensors "
                    f"but the given {what} has type {type(x).__name__}.")


def _no_create_graph(op: str, create_graph: bool) -> None:
    if create_graph:
        raise NotImplementedError(f"{op}: create_graph=True (higher-order gradients) is not "
                                  "supported by minidl")


def _call(op: str, func: Callable, inputs: tuple) -> tuple[tuple, bool, tuple]:
    """func on fresh leaves that require grad: (leaves, output was a single Tensor, outputs)."""
    leaves = tuple(t.detach().requires_grad_(True) for t in inputs)
    with enable_grad():
        single_out, outputs = _as_tuple(op, "outputs of the user-provided function",
                                        func(*leaves))
    return leaves, single_out, outputs


def _pullback(op: str, out: Tensor, out_index: int, leaves: tuple, seed: np.ndarray,
              strict: bool) -> list[np.ndarray]:
    """seed^T d(out)/d(leaf) for each leaf (zeros where out does not depend on it)."""
    found = graph.gradients(out, seed) if out.requires_grad else {}
    grads = []
    for j, leaf in enumerate(leaves):
        g = found.get(id(leaf))
        if g is None:
            if strict:
                raise RuntimeError(f"Output {out_index} of the user-provided function is "
                                   f"independent of input {j}. This is not allowed in strict "
                                   "mode.")
            g = np.zeros_like(leaf.data)
        grads.append(np.asarray(g, dtype=leaf.dtype))
    return grads


def _wrap(array: np.ndarray) -> Tensor:
    # Every array here was allocated by this module, C-contiguous (np.ascontiguousarray would
    # turn a 0-d result into shape (1,)).
    return Tensor._wrap(array, False)


def _detached(single: bool, tensors: tuple) -> Any:
    out = tuple(t.detach() for t in tensors)
    return out[0] if single else out


def jacobian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """d func(*inputs) / d inputs: for output i of shape S_i and input j of shape T_j, a
    tensor of shape S_i + T_j. Returned as a Tensor (one input, one output), a tuple over the
    inputs or the outputs, or a tuple (outputs) of tuples (inputs). strict=True raises when an
    output does not depend on an input (zeros otherwise). vectorize and strategy are accepted
    (the values are the same); strategy="forward-mode" needs vectorize=True, as PyTorch's."""
    op = "jacobian"
    _no_create_graph(op, create_graph)
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode". '
                         'Hint: If your function has more outputs than inputs, "forward-mode" '
                         'tends to be more performant. Otherwise, prefer to use '
                         '"reverse-mode".')
    if strategy == "forward-mode" and not vectorize:
        raise NotImplementedError("torch.autograd.functional.jacobian: `strategy=\"forward-mode"
                                  "\"` only implemented for `vectorize=True`.")
    single_in, inputs = _as_tuple(op, "inputs", inputs)
    leaves, single_out, outputs = _call(op, func, inputs)
    rows = []
    for i, out in enumerate(outputs):
        blocks = [np.zeros(out.shape + leaf.shape, dtype=leaf.dtype) for leaf in leaves]
        for k in range(out.numel()):
            seed = np.zeros(out.shape, dtype=out.dtype)
            seed.flat[k] = 1
            for block, g in zip(blocks, _pullback(op, out, i, leaves, seed, strict)):
                block.reshape(out.numel(), -1)[k] = g.reshape(-1)
        row = tuple(_wrap(b) for b in blocks)
        rows.append(row[0] if single_in else row)
    return rows[0] if single_out else tuple(rows)


def _vectors(op: str, v: Any, like: tuple, what: str) -> tuple[np.ndarray, ...]:
    """v as one array per tensor of `like` (v may be None only for one-element tensors)."""
    if v is None:
        if any(t.numel() != 1 for t in like):
            raise RuntimeError(f"The vector v can only be None if the {what} to the "
                               "user-provided function is a single Tensor with a single "
                               "element.")
        return tuple(np.ones_like(t.data) for t in like)
    _, vs = _as_tuple(op, "v", v)
    if len(vs) != len(like):
        raise RuntimeError(f"v is a tuple of invalid length: should be {len(like)} but got "
                           f"{len(vs)}.")
    for j, (a, t) in enumerate(zip(vs, like)):
        if a.shape != t.shape:
            raise RuntimeError(f"Entry {j} in v has invalid size: should be {tuple(t.shape)} "
                               f"but got {tuple(a.shape)}.")
    return tuple(a.data for a in vs)


def vjp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(*inputs), v^T J): v has the outputs' shapes (None for a one-element output);
    the product has the inputs' shapes (a Tensor for one input)."""
    op = "vjp"
    _no_create_graph(op, create_graph)
    single_in, inputs = _as_tuple(op, "inputs", inputs)
    leaves, single_out, outputs = _call(op, func, inputs)
    seeds = _vectors(op, v, outputs, "output")
    totals = [np.zeros_like(leaf.data) for leaf in leaves]
    for i, (out, seed) in enumerate(zip(outputs, seeds)):
        for total, g in zip(totals, _pullback(op, out, i, leaves, seed.astype(out.dtype),
                                              strict)):
            total += g
    products = tuple(_wrap(t) for t in totals)
    return _detached(single_out, outputs), products[0] if single_in else products


def jvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(*inputs), J v): v has the inputs' shapes (None for a one-element input); the
    product has the outputs' shapes. Computed from the full Jacobian (one reverse sweep per
    output element)."""
    op = "jvp"
    _no_create_graph(op, create_graph)
    single_in, inputs = _as_tuple(op, "inputs", inputs)
    vs = _vectors(op, v, inputs, "input")
    leaves, single_out, outputs = _call(op, func, inputs)
    products = []
    for i, out in enumerate(outputs):
        total = np.zeros(out.shape, dtype=out.dtype)
        for k in range(out.numel()):
            seed = np.zeros(out.shape, dtype=out.dtype)
            seed.flat[k] = 1
            grads = _pullback(op, out, i, leaves, seed, strict)
            total.flat[k] = sum(float(np.dot(g.reshape(-1), a.reshape(-1)))
                                for g, a in zip(grads, vs))
        products.append(_wrap(total))
    return _detached(single_out, outputs), products[0] if single_out else tuple(products)


def _second_order(op: str) -> NotImplementedError:
    return NotImplementedError(f"{op}: second derivatives (higher-order gradients) are not "
                               "supported by minidl")


def hessian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """Raises NotImplementedError: the Hessian needs second derivatives."""
    raise _second_order("hessian")


def hvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """Raises NotImplementedError: a Hessian-vector product needs second derivatives."""
    raise _second_order("hvp")


def vhp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """Raises NotImplementedError: a vector-Hessian product needs second derivatives."""
    raise _second_order("vhp")
