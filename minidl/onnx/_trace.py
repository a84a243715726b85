"""The one place that reads minidl's static graphs: a traced model as a flat list of ops.

Export needs each op's Function class (whose registered name selects its translation), its
inputs (graph values or constants), its attributes and its output, with the compiler's fusions
undone (a conv or linear layer with a ReLU in its epilogue, an elementwise chain) so that every
op maps to standard ONNX operators. When the
static-graph IR changes, only this module follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import minidl
from minidl.graph import registered_ops
from minidl.tensor import Tensor


@dataclass
class Const:
    """A non-tensor argument of an op (a Python scalar, None, or an array frozen at trace)."""

    value: Any


@dataclass
class TracedValue:
    index: int
    kind: str  # "input", "param", "const" or "node"
    shape: tuple
    dtype: np.dtype
    array: np.ndarray | None  # params and constants: the array (params: the live one)


@dataclass
class TracedOp:
    fn: type
    inputs: list  # per positional input: a value index (int) or a Const
    attrs: dict
    output: int

    @property
    def name(self) -> str:
        return self.fn.display_name()


@dataclass
class TracedGraph:
    values: list[TracedValue]
    ops: list[TracedOp]
    inputs: list[int]
    outputs: list[int]


def trace(model: Any, example_inputs: Sequence[Any]) -> TracedGraph:
    """Trace `model(*example_inputs)` in inference mode (eval, no gradients) into ops."""
    tensors = [x if isinstance(x, Tensor) else minidl.tensor(np.asarray(x)) for x in example_inputs]
    graph = minidl.compile(model, example_inputs=tensors).graph
    values = [
        TracedValue(
            v.index,
            v.kind,
            tuple(v.shape),
            np.dtype(v.dtype),
            v.tensor.data if v.tensor is not None else None,
        )
        for v in graph.values
    ]
    # Folded per-channel affine maps (a conv's weight and bias computed from a BatchNorm's,
    # by nodes carrying the affine op in their attributes): the conv reads its own weight
    # and bias again and the affine op follows it.
    folds = {node.out: node for node in graph.nodes if "affine" in node.attrs}
    ops: list[TracedOp] = []
    for node in graph.nodes:
        if node.out in folds:
            continue
        args, fold = list(node.args), None
        if node.fn.channel_params is not None and args[node.fn.channel_params[0]] in folds:
            w, b = node.fn.channel_params
            fold = folds[args[w]]
            args[w], args[b] = fold.args[0], fold.args[1]
        inputs = [a if isinstance(a, int) else Const(a[1]) for a in args]
        attrs = {k: v for k, v in node.attrs.items() if k != "out"}  # `out`: a planned buffer
        unfused = _unfuse(node.fn, inputs, attrs, node.out, values)
        if fold is not None:
            normalized = unfused[0].output
            unfused[0].output = _new_value(values, values[normalized])
            affine_inputs = [a if isinstance(a, int) else Const(a[1]) for a in fold.args[2:]]
            unfused.insert(1, TracedOp(fold.attrs["affine"], [unfused[0].output, *affine_inputs],
                                       dict(fold.attrs["affine_attrs"]), normalized))
        ops.extend(unfused)
    return TracedGraph(values, ops, list(graph.input_indices), list(graph.outputs))


def _new_value(values: list[TracedValue], like: TracedValue) -> int:
    values.append(TracedValue(len(values), "node", like.shape, like.dtype, None))
    return len(values) - 1


def _unfuse(
    fn: type, inputs: list, attrs: dict, out: int, values: list[TracedValue]
) -> list[TracedOp]:
    if "program" in attrs:  # an elementwise chain: (Function, sources, attrs) per step
        program = attrs["program"]
        step_values: list[int] = []
        ops = []
        for j, (step_fn, sources, step_attrs) in enumerate(program):
            step_inputs = [
                inputs[k] if kind == "in" else step_values[k] if kind == "step" else Const(k)
                for kind, k in sources
            ]
            target = out if j == len(program) - 1 else _new_value(values, values[out])
            if j < len(program) - 1:
                # The chain kept no intermediate shapes: they follow from NumPy broadcasting.
                shapes = [
                    values[a].shape if isinstance(a, int) else np.shape(a.value)
                    for a in step_inputs
                ]
                values[target].shape = tuple(np.broadcast_shapes(*shapes))
            step_values.append(target)
            ops.extend(_unfuse(step_fn, step_inputs, dict(step_attrs), target, values))
        return ops
    absorbed = [name for name in fn.epilogues if attrs.get(name)]
    if not absorbed:
        return [TracedOp(fn, inputs, attrs, out)]
    # An op with fused epilogues (conv2d + relu): the op, then each absorbed op in turn.
    ops = [TracedOp(fn, inputs, {**attrs, **{name: False for name in absorbed}}, -1)]
    for name in absorbed:
        ops[-1].output = _new_value(values, values[out])
        ops.append(TracedOp(_epilogue_op(name), [ops[-1].output], {}, -1))
    ops[-1].output = out
    return ops


def _epilogue_op(name: str) -> type:
    """The op a fused epilogue stands for: the registered op declaring `epilogue = name`."""
    for fn in registered_ops().values():
        if fn.epilogue == name:
            return fn
    raise ValueError(f"minidl.onnx: no op declares the fused epilogue {name!r}")
