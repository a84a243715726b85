"""The executor: one traced signature's schedule, memory plan, and its two ways to run.

The program (minidl.static.lower): the schedule lowered to kernel instructions over buffers
the program owns, run by one Cython loop, with Python nodes for ops without a kernel there.
The replay, the reference: each node's `forward` called on arrays (no Tensor objects, no graph
recording, no topological sort per call) and, when training, the tape handed to the one
reverse sweep (minidl.graph.sweep), which checks and casts every gradient and delivers the
parameters'. Calls run the program; profiling (per-node times) and executor="replay" run
the replay, and so do calls the program cannot take (see `execute`). An inference call's
common case skips `execute`: `call_program` does it in C (minidl._kernels.program).

Concurrent calls: every call takes an idle program (or replay state: the memory plan's
buffers and the steps that write them) from a pool, or builds one, and returns it after, so
two threads can run one graph at once, each on its own buffers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from minidl.backends import conv as conv_backend
from minidl.graph import Context, Function, Step, accumulate, sweep
from minidl.static.lower import Lowered
from minidl.static.memory import plan_memory
from minidl.static.passes import FUSION_PASSES, eliminate_dead, kahn_schedule
from minidl.static.trace import Node, trace
from minidl.tensor import Tensor
from minidl.threads import get_num_threads

EXECUTORS = ("program", "replay")


class ReplayStep(NamedTuple):
    """What the forward replay loop reads per node (a tuple, so the loop unpacks it fast)."""

    fn: type[Function]
    read: Callable[[list], tuple]  # the node's positional arguments out of the value list
    attrs: dict  # the node's attributes, with `out` when the memory plan gives it a buffer
    out: int  # index of the value it writes
    needs_input_grad: tuple


class StaticGraph:
    """One traced signature: schedule, memory plan, the program and the replay loops.

    executor: "program" (inference runs the lowered program) or "replay" (every call replays
    the nodes from Python, the reference the program is tested against).
    """

    def __init__(self, fn: Callable, inputs: Sequence[Tensor], params: Sequence[Tensor],
                 training: bool, executor: str = "program") -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"compile: executor must be one of {EXECUTORS}, got {executor!r}")
        self.executor = executor
        tracer, outputs = trace(fn, inputs, params, with_grad=training)
        self.traced_ops = [node.fn for node in tracer.nodes]
        self.values = tracer.values  # the passes append the values of nodes they create
        self.traced_values = len(tracer.values)
        self.outputs = outputs
        self.input_indices = [v.index for v in self.values if v.kind == "input"]
        self.training = training
        if not training:
            # No gradient flows in an inference graph, whatever the parameters require.
            for node in tracer.nodes:
                node.needs_input_grad = (False,) * len(node.needs_input_grad)
        nodes = kahn_schedule(tracer.nodes, len(self.values))
        nodes = eliminate_dead(nodes, outputs)
        for fusion in FUSION_PASSES:
            nodes = fusion(nodes, outputs, self.values)
        self.nodes = nodes
        self.plan = plan_memory(nodes, self.values, outputs, backward=training)
        self._params = [(v.index, v.tensor) for v in self.values if v.kind == "param"]
        # Constants (and constant arguments, as extra slots past the values) are filled once.
        self._template: list = [None] * len(self.values)
        for v in self.values:
            if v.kind == "const":
                self._template[v.index] = v.tensor.data
        self._reads = [self._reader(node) for node in nodes]
        self._tape = self._backward_tape(nodes)
        self.signature = tuple((x.shape, x.dtype) for x in inputs)
        # Idle per-call states (list.pop and list.append are atomic): replay steps over their
        # own planned buffers, and lowered programs.
        self._idle_replays: list[list[ReplayStep]] = []
        self._idle_programs: list[Lowered] = []
        # Gradient hooks on traced values run inside the sweep: such graphs always replay.
        self._hooked_values = any(v.hooks for v in self.values)
        # An inference call's common case run in C, programs taken from the same pool
        # (InferenceCall; None where every call takes `execute`).
        self.call_program = None
        if executor == "program" and not self._hooked_values:
            self._idle_programs.append(self.lower())
            if not training:
                from minidl._kernels.program import InferenceCall

                self.call_program = InferenceCall(self._idle_programs, conv_backend,
                                                  get_num_threads, Tensor._wrap)

    def _reader(self, node: Node) -> Callable[[list], tuple]:
        """The node's positional arguments out of the value list."""
        slots = []
        for a in node.args:
            if isinstance(a, int):
                slots.append(a)
            else:
                slots.append(len(self._template))
                self._template.append(a[1])
        getter = itemgetter(*slots) if slots else (lambda vals: ())
        return getter if len(slots) != 1 else (lambda vals, s=slots[0]: (vals[s],))

    def _replay_steps(self) -> list[ReplayStep]:
        """Replay steps writing into a fresh set of the memory plan's buffers."""
        buffers = [np.empty(nbytes, dtype=np.uint8) for nbytes in self.plan.slot_bytes]
        steps = []
        for node, read in zip(self.nodes, self._reads):
            attrs = dict(node.attrs)
            slot = self.plan.slot_of.get(node.out)
            if slot is not None:
                v = self.values[node.out]
                attrs["out"] = buffers[slot][: v.nbytes].view(v.dtype).reshape(v.shape)
            steps.append(ReplayStep(node.fn, read, attrs, node.out, node.needs_input_grad))
        return steps

    def lower(self) -> Lowered:
        """A new program for this graph (minidl.static.lower)."""
        return Lowered(self.values, self.nodes, self.outputs, self.input_indices, self.training)

    def _program_runs(self) -> bool:
        """Whether this call may run a program: the executor is "program" and no gradient
        hook would run (hooks on parameters run in the sweep's order, so those calls replay)."""
        if self.executor != "program" or self._hooked_values:
            return False
        if self.training:
            for _, p in self._params:
                if p._grad_hooks or p._post_hooks:
                    return False
        return True

    def _backward_tape(self, nodes: list[Node]) -> list[Step]:
        """The sweep's steps: gradients flow into nodes' outputs and parameters; each
        parameter is delivered after its first reader's backward (all its readers are done)."""
        first_reader: dict[int, int] = {}
        steps = []
        for k, node in enumerate(nodes):
            keys = []
            for a, need in zip(node.args, node.needs_input_grad):
                kind = self.values[a].kind if isinstance(a, int) else "const"
                if need and kind in ("node", "param"):
                    keys.append(a)
                    if kind == "param":
                        first_reader.setdefault(a, k)
                else:
                    keys.append(-1)
            steps.append(Step(node.fn, node.out, tuple(keys), (), self.values[node.out].hooks))
        finished: dict[int, list[int]] = {}
        for a, k in first_reader.items():
            finished.setdefault(k, []).append(a)
        return [step._replace(finished=tuple(finished.get(k, ()))) for k, step in enumerate(steps)]

    def forward(self, arrays: Sequence[np.ndarray], steps: list[ReplayStep],
                timings: list | None = None) -> tuple[list, list]:
        vals = list(self._template)
        for index, a in zip(self.input_indices, arrays):
            vals[index] = a
        for index, p in self._params:
            vals[index] = p.data
        contexts = []
        if timings is None:
            for fn, read, attrs, out, needs in steps:
                ctx = Context(fn, (), needs)
                vals[out] = fn.forward(ctx, *read(vals), **attrs)
                contexts.append(ctx)
        else:
            clock = time.perf_counter
            for fn, read, attrs, out, needs in steps:
                ctx = Context(fn, (), needs)
                t0 = clock()
                vals[out] = fn.forward(ctx, *read(vals), **attrs)
                timings.append(clock() - t0)
                contexts.append(ctx)
        return vals, contexts

    def backward(self, vals: list, contexts: list, timings: list | None = None) -> None:
        """Gradients of the first output (the loss) into every parameter's .grad."""
        grads: list = [None] * len(self.values)
        loss = self.outputs[0]
        grads[loss] = np.ones_like(vals[loss])
        values = self.values

        def deliver(key: int, g: np.ndarray, owned: bool) -> None:
            accumulate(values[key].tensor, g, owned)

        sweep(self._tape, contexts, grads, self.values, deliver, release=False, timings=timings)

    def run(self, arrays: Sequence[np.ndarray], profile: bool = False
            ) -> tuple[list, Any]:
        """One replay (forward, and backward when training) on replay steps of its own: the
        value list and, when profiling, (forward times, backward times, seconds)."""
        fwd_times: list | None = [] if profile else None
        bwd_times: list | None = [] if profile and self.training else None
        idle = self._idle_replays
        steps = idle.pop() if idle else self._replay_steps()
        try:
            start = time.perf_counter()
            vals, contexts = self.forward(arrays, steps, fwd_times)
            if self.training:
                self.backward(vals, contexts, bwd_times)
            elapsed = time.perf_counter() - start
        finally:
            idle.append(steps)
        if not profile:
            return vals, None
        return vals, (fwd_times, bwd_times[::-1] if bwd_times is not None else None, elapsed)

    def execute(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One call: the graph's outputs (and, when training, the parameters' gradients
        accumulated). It runs a program of its own, or replays when the executor is "replay",
        when a gradient hook is registered, when a parameter's array no longer fits the
        program (replaced by one of another shape, dtype or layout) or when the program found
        an input invalid (the replay then raises the op's error)."""
        if self._program_runs():
            idle = self._idle_programs
            program = idle.pop() if idle else self.lower()
            if program.conv_algorithm != conv_backend.algorithm:
                program = self.lower()  # the programs' kernels follow the algorithm switch
                idle.clear()
            try:
                outputs = program.run(arrays, get_num_threads())
            finally:
                idle.append(program)
            if outputs is not None:
                return outputs
        vals, _ = self.run(arrays)
        return [vals[o] for o in self.outputs]

    def memory_report(self) -> dict:
        return {
            "planned_peak_bytes": self.plan.peak_planned_bytes,
            "keep_all_peak_bytes": self.plan.peak_all_bytes,
            "planned_buffers": len(self.plan.slot_bytes),
            "planned_buffer_bytes": sum(self.plan.slot_bytes),
            "planned_values": len(self.plan.slot_of),
            "planned_values_bytes": self.plan.planned_values_bytes,
        }
