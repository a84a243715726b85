"""The compiled callable: a model (and loss) traced into one static graph per input signature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl import random
from minidl.nn.module import Module
from minidl.static.executor import StaticGraph
from minidl.static.trace import TraceError, trace
from minidl.tensor import Tensor, tensor


class Compiled:
    """A model (and loss) traced into static graphs, one per input signature.

    Call it like the model: `compiled(x)` (inference) or `compiled(x, target)` (training,
    returns the loss after accumulating gradients into the parameters' .grad). The model's
    output of the last call is `compiled.output`.
    """

    def __init__(self, model: Any, loss_fn: Callable | None, example_inputs: Sequence[Any],
                 executor: str = "program") -> None:
        self.model = model
        self.executor = executor
        self.loss_fn = loss_fn
        self.training = loss_fn is not None
        self.graphs: dict[tuple, StaticGraph] = {}
        self.output: Tensor | None = None
        self.profile_rows: list[dict] | None = None
        # The C call of the graph the last call ran (StaticGraph.call_program), tried first:
        # a batch-1 LeNet call spent ~3 us of its ~15 us in the Python path.
        self._fast = self._graph_for([_as_tensor(x) for x in example_inputs]).call_program

    def _function(self) -> Callable:
        if self.loss_fn is None:
            return lambda *xs: self.model(*xs)

        def step(*xs: Tensor) -> tuple[Tensor, Tensor]:
            out = self.model(*xs[:-1])
            return self.loss_fn(out, xs[-1]), out

        return step

    def _params(self) -> list[Tensor]:
        return list(self.model.parameters()) if hasattr(self.model, "parameters") else []

    def _buffers(self) -> list[Tensor]:
        if not hasattr(self.model, "buffers"):
            return []
        return [b for b in self.model.buffers() if b is not None]

    def _graph_for(self, inputs: list[Tensor]) -> StaticGraph:
        key = tuple((x.data.shape, x.data.dtype) for x in inputs)
        g = self.graphs.get(key)
        if g is None:
            was_training = getattr(self.model, "training", None)
            if not self.training and was_training:
                self.model.eval()
            # Tracing runs the forward once: undo its side effects (random draws, e.g.
            # dropout masks, and buffer updates, e.g. BatchNorm's running statistics) so that
            # compiling changes nothing a later step could see.
            rng_state = random.get_rng_state()
            buffers = [(b, b.data.copy()) for b in self._buffers()]
            try:
                g = StaticGraph(self._function(), inputs, self._params(), self.training,
                                self.executor)
                self._check_independent_of_data(g, inputs)
            finally:
                random.set_rng_state(rng_state)
                for b, data in buffers:
                    b.data[...] = data
                if not self.training and was_training:
                    self.model.train()
            self.graphs[key] = g
        return g

    def _check_independent_of_data(self, g: StaticGraph, inputs: list[Tensor]) -> None:
        """Trace again on other input values: the ops and the captured constants must not
        change, else the graph would freeze something that depends on the data (Python
        control flow on values, or a tensor built from input data outside the ops)."""
        rng = np.random.default_rng(12345)
        other = []
        for x in inputs:
            a = x.data
            if a.dtype.kind == "f":
                scale = np.abs(a).mean() + 1 if a.size else 1
                a = a + rng.standard_normal(a.shape).astype(a.dtype) * scale
            elif a.dtype.kind in "iu" and a.size > 1:
                a = np.roll(a.reshape(-1), 1).reshape(a.shape)
            other.append(Tensor._wrap(np.ascontiguousarray(a), False))
        tracer, _ = trace(self._function(), other, self._params(), self.training)
        if [n.fn for n in tracer.nodes] != g.traced_ops or len(tracer.values) != g.traced_values:
            raise TraceError(
                "compile: the ops run depend on the input values (Python control flow on "
                "tensor data); a static graph cannot capture that"
            )
        for v, w in zip(g.values, tracer.values):
            if v.kind == "const" and (w.kind != "const"
                                      or not np.array_equal(v.tensor.data, w.tensor.data)):
                raise TraceError(
                    f"compile: a tensor of shape {v.shape} made inside the forward (not by an "
                    "op on the inputs) changes with the input values or between calls (e.g. "
                    "built from x.data, or random); it would be frozen into the graph. Compute "
                    "it with minidl ops on the input tensors"
                )

    def __call__(self, *inputs: Any, profile: bool = False) -> Tensor:
        fast = self._fast
        if fast is not None and not profile:
            result = fast(inputs)
            if result is not None:
                self.output = result
                return result
        tensors = [_as_tensor(x) for x in inputs]
        g = self._graph_for(tensors)
        self._fast = g.call_program
        arrays = [t.data for t in tensors]
        if profile:
            from minidl.profiler import static_rows

            vals, times = g.run(arrays, True)
            self.profile_rows = static_rows(g, vals, *times)
            outputs = [vals[o] for o in g.outputs]
        else:
            outputs = g.execute(arrays)
        result = Tensor._wrap(outputs[0], False)
        self.output = Tensor._wrap(outputs[1], False) if self.training else result
        return result

    @property
    def graph(self) -> StaticGraph:
        """The most recently traced graph."""
        return next(reversed(self.graphs.values()))

    def memory_report(self) -> dict:
        return self.graph.memory_report()

    def _viz_graph(self) -> tuple[list, list]:
        """(nodes, edges) for minidl.viz: one box per op, inputs/params as their own nodes."""
        from minidl.viz import format_shape

        g = self.graph
        names = _parameter_names(self.model)
        vis_nodes, edges = [], []
        producer = {node.out: k for k, node in enumerate(g.nodes)}
        shown: set[int] = set()
        for k, node in enumerate(g.nodes):
            label = node.fn.display_name(node.attrs)
            vis_nodes.append((f"op{k}", label, "op"))
            for a in node.value_args():
                v = g.values[a]
                if a in producer:
                    src = f"op{producer[a]}"
                else:
                    src = f"v{a}"
                    if a not in shown:
                        shown.add(a)
                        name = names.get(id(v.tensor), v.kind) if v.tensor is not None else v.kind
                        if v.kind == "input" and self.training and a == g.input_indices[-1]:
                            name = "target"
                        vis_nodes.append((src, name, "input"))
                edges.append((src, f"op{k}", format_shape(v.shape)))
        for i, o in enumerate(g.outputs):
            vis_nodes.append((f"out{i}", "loss" if self.training and i == 0 else "output",
                              "output"))
            edges.append((f"op{producer[o]}", f"out{i}", format_shape(g.values[o].shape)))
        return vis_nodes, edges


def _parameter_names(model: Any) -> dict[int, str]:
    if hasattr(model, "named_parameters"):
        return {id(p): name for name, p in model.named_parameters()}
    return {}


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return tensor(x)


def compile(model: Any = None, loss_fn: Callable | None = None,  # noqa: A001 (the public name)
            example_inputs: Sequence[Any] = (), executor: str = "program", *,
            fullgraph: bool = False, dynamic: bool | None = None, backend: Any = None,
            mode: str | None = None, options: dict | None = None, disable: bool = False
            ) -> Any:
    """Trace `model` (and `loss_fn(model(x), target)`) into a static graph.

    model: a Module or any callable of tensors built from minidl ops.
    loss_fn: None for an inference graph (the model is traced in eval mode, no gradients), or
        a function (output, target) -> scalar loss for a training step that runs forward and
        backward, accumulating gradients into the parameters' .grad like loss.backward().
    example_inputs: (x,) for inference, (x, target) for training; new shapes trace again.
    executor: "program" runs the graph lowered to one flat program of kernel calls (ops
        without a kernel there run as Python nodes inside it); "replay" calls every op from
        Python, the reference the program gives the same bits as (see minidl.static).
    Raises TraceError when the function cannot be captured (see the module docstring).

    Called as torch.compile is (no loss_fn or example_inputs; the keyword-only options are
    torch.compile's, accepted and not used), it returns what PyTorch code expects: an
    OptimizedModule wrapping a Module (or the callable itself), which runs eagerly, so
    training, gradients and hooks behave exactly as on the model. compile(**options) with no
    model is a decorator; disable=True returns the model unchanged.
    """
    if model is None:
        return lambda fn: compile(fn, loss_fn, example_inputs, executor, disable=disable)
    if loss_fn is None and not example_inputs:
        if disable or not isinstance(model, Module):
            return model
        return OptimizedModule(model)
    if not example_inputs:
        raise ValueError("compile: example_inputs must hold the model's inputs (and target)")
    return Compiled(model, loss_fn, example_inputs, executor)


class OptimizedModule(Module):
    """torch.compile's result for a Module: the model under `_orig_mod` (so state_dict keys
    carry PyTorch's `_orig_mod.` prefix), run eagerly. Attributes the wrapper lacks are the
    model's, as in PyTorch. minidl's static graphs need example inputs to trace: see
    compile."""

    def __init__(self, mod: Module) -> None:
        super().__init__()
        self._orig_mod = mod

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "_orig_mod":  # before __init__ has registered it
            raise AttributeError(name)
        return getattr(self._orig_mod, name)
