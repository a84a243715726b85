"""Tracing: run a function once with a tracer listening to `Function.apply`, giving the static
graph's IR.

Every tensor becomes a numbered `Value` (an input, a parameter, a constant, or a node's
output) and every op a `Node` (fn, inputs, attrs, output): its Function class, which values it
reads, its attributes and the value it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl import graph
from minidl.graph import Context, Function
from minidl.tensor import Tensor


class TraceError(RuntimeError):
    """The function cannot be captured as a static graph (see minidl.static's limits)."""


@dataclass
class Value:
    """A tensor of the static graph."""

    index: int
    kind: str  # "input", "param", "const" or "node"
    shape: tuple
    dtype: np.dtype
    tensor: Tensor | None = None  # params and constants: the tensor whose .data is read
    alias_of: int | None = None  # a view of this value's memory (e.g. a reshape): its base
    hooks: list | None = None  # gradient hooks registered on the traced tensor

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass
class Node:
    """One op of the static graph: `out = fn.forward(ctx, *args, **attrs)`."""

    fn: type[Function]
    args: list  # per positional input: a value index (int) or ("const", object)
    attrs: dict
    out: int
    needs_input_grad: tuple
    saves: set = field(default_factory=set)  # value indices its backward reads

    @property
    def name(self) -> str:
        return self.fn.__name__

    def value_args(self) -> list[int]:
        return [a for a in self.args if isinstance(a, int)]


class Tracer:
    """Listens to Function.apply while the traced function runs, building nodes and values."""

    def __init__(self) -> None:
        self.values: list[Value] = []
        self.nodes: list[Node] = []
        self.contexts: list[Context] = []
        self.index_of: dict[int, int] = {}  # id(tensor) -> value index
        self.arrays: list[np.ndarray] = []  # value index -> the array seen while tracing
        self.index_of_array: dict[int, int] = {}  # id(array) -> value index
        self.keep: list[Tensor] = []  # keeps traced tensors alive so their ids stay unique

    def add(self, tensor: Tensor, kind: str) -> int:
        value = Value(len(self.values), kind, tensor.shape, tensor.dtype,
                      tensor if kind in ("param", "const") else None)
        self.values.append(value)
        self.index_of[id(tensor)] = value.index
        self.arrays.append(tensor.data)
        self.index_of_array.setdefault(id(tensor.data), value.index)
        self.keep.append(tensor)
        return value.index

    def record(self, fn, inputs, attrs, ctx, result) -> None:
        args: list = []
        for x in inputs:
            if isinstance(x, Tensor):
                index = self.index_of.get(id(x))
                if index is None:
                    if x.requires_grad:
                        raise TraceError(
                            f"{fn.__name__}: an input of shape {x.shape} requires grad but is "
                            "neither an input nor a parameter of the traced model"
                        )
                    # A new Tensor over a traced array (e.g. x.detach()) reads that value.
                    index = self._raw_array(fn, x.data)
                    if not isinstance(index, int):
                        index = self.add(x, "const")
                args.append(index)
            elif isinstance(x, np.ndarray):
                args.append(self._raw_array(fn, x))
            else:
                args.append(("const", x))
        out = self.add(result, "node")
        for a in args:
            if isinstance(a, int) and np.may_share_memory(result.data, self.arrays[a]):
                self.values[out].alias_of = self.base(a)
        self.nodes.append(Node(fn, args, dict(attrs), out, ctx.needs_input_grad))
        self.contexts.append(ctx)

    def _raw_array(self, fn, array: np.ndarray) -> Any:
        """An op given a tensor's array instead of the tensor (e.g. class-index targets) reads
        that value; any other array is a constant, unless it views an input's memory."""
        index = self.index_of_array.get(id(array))
        if index is not None:
            return index
        for v in self.values:
            if v.kind == "input" and np.may_share_memory(array, self.arrays[v.index]):
                raise TraceError(
                    f"{fn.__name__}: received a view of an input's array built outside the "
                    "ops; pass the tensor itself so the static graph reads each new batch"
                )
        return ("const", array)

    def base(self, index: int) -> int:
        """The value whose memory `index` views (itself when it is no view)."""
        while self.values[index].alias_of is not None:
            index = self.values[index].alias_of
        return index

    def data_access(self, what: str, tensor: Tensor) -> None:
        if id(tensor) not in self.index_of:
            return
        raise TraceError(
            f"{what}() on a traced tensor: Python control flow that depends on tensor values "
            "cannot be captured in a static graph; keep it outside the compiled function"
        )


def trace(fn: Callable, inputs: Sequence[Tensor], params: Sequence[Tensor],
          with_grad: bool) -> tuple[Tracer, list[int]]:
    """Run `fn(*inputs)` once under a tracer (this thread only): the tracer and the indices
    of the values returned."""
    tracer = Tracer()
    for x in inputs:
        tracer.add(x, "input")
    for p in params:
        if id(p) not in tracer.index_of:
            tracer.add(p, "param")
    state = graph.state
    if state.tracer is not None:
        raise TraceError("compile: tracing is not reentrant")
    state.tracer = tracer
    try:
        with graph.enable_grad() if with_grad else graph.no_grad():
            out = fn(*inputs)
    finally:
        state.tracer = None
    outputs = out if isinstance(out, tuple) else (out,)
    out_indices = []
    for o in outputs:
        if not isinstance(o, Tensor) or id(o) not in tracer.index_of:
            raise TraceError("compile: the traced function must return tensors computed by ops")
        out_indices.append(tracer.index_of[id(o)])
    # Hooks registered on intermediate tensors inside the traced function run at every replay.
    for index, t in enumerate(tracer.keep):
        if t._grad_hooks and tracer.values[index].kind == "node":
            tracer.values[index].hooks = list(t._grad_hooks.values())
    _find_saved(tracer)
    return tracer, out_indices


def _find_saved(tracer: Tracer) -> None:
    """Mark, for each node, the values its backward reads (its saved arrays or views of them;
    ops keep those in `save_for_backward`)."""
    arrays = tracer.arrays
    for node, ctx in zip(tracer.nodes, tracer.contexts):
        held = list(ctx.saved_tensors)
        flat = []
        while held:
            item = held.pop()
            if isinstance(item, np.ndarray):
                flat.append(item)
            elif isinstance(item, (tuple, list)):
                held.extend(item)
        for index in node.value_args() + [node.out]:
            if any(np.may_share_memory(a, arrays[index]) for a in flat):
                node.saves.add(tracer.base(index))
