"""Static graphs: trace a model's forward once, then replay it for every batch.

    step = minidl.compile(model, F.cross_entropy, example_inputs=(images, labels))
    for images, labels in loader:
        optimizer.zero_grad()
        loss = step(images, labels)      # forward + backward into every parameter's .grad
        optimizer.step()

    infer = minidl.compile(model, example_inputs=(images,))   # inference: eval mode, no grad
    logits = infer(images)

How it works. Tracing runs the forward once with a tracer listening to `Function.apply`: every
op becomes a `Node` (its Function class, which values it reads, its attributes) and every tensor
a numbered value (an input, a parameter, a constant, or a node's output). The nodes are put in
order by Kahn's algorithm, ops whose results nothing reads are dropped, and fusion passes
rewrite the graph (a convolution or linear layer followed by a ReLU becomes one op with the
ReLU in its epilogue). Replay then calls each node's `forward` and, in reverse, `backward` directly on
arrays: no Tensor objects, no graph recording, no topological sort per step.

Memory plan. A liveness analysis over the schedule gives each activation and gradient the
interval from the step that writes it to the last step that reads it (an activation saved for
backward lives until that backward). Activations of ops that can write into a given array
(`Function.writes_out = True`) are placed in buffers allocated once and shared by values whose
intervals do not overlap; `memory_report()` gives the plan's peak beside the peak of keeping
every value, which is what eager mode holds until backward.

Limits (checked where possible):
- The traced function must do the same ops for every batch: Python control flow that depends
  on tensor values is out of scope. Calling `.item()`, `bool()` or `.tolist()` on a traced value
  raises TraceError.
- Tensors created inside the forward (other than by ops on the inputs) are captured as
  constants. Compiling traces twice, the second time on perturbed inputs, and raises
  TraceError when the ops or those constants differ (data-dependent control flow, a tensor
  built from `x.data`, random tensors drawn in the forward).
- A call with different input shapes or dtypes traces again (each signature is cached): the
  smaller last batch of an epoch costs one extra trace.
- Module state changed outside ops (e.g. a Python counter) is not replayed; BatchNorm's running
  statistics are, because its op updates them. Tracing itself leaves no trace: the random
  generator and the module's buffers are restored after it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from minidl import graph, random
from minidl.graph import Context, Function
from minidl.tensor import Tensor, tensor


class TraceError(RuntimeError):
    """The function cannot be captured as a static graph (see the module's limits)."""


@dataclass
class Value:
    """A tensor of the static graph."""

    index: int
    kind: str  # "input", "param", "const" or "node"
    shape: tuple
    dtype: np.dtype
    tensor: Tensor | None = None  # params and constants: the tensor whose .data is read
    alias_of: int | None = None  # a view of this value's memory (e.g. a reshape)

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


class _Tracer:
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
                self.values[out].alias_of = self._base(a)
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

    def _base(self, index: int) -> int:
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


def _trace(fn: Callable, inputs: Sequence[Tensor], params: Sequence[Tensor],
           with_grad: bool) -> tuple[_Tracer, list[int]]:
    tracer = _Tracer()
    traced_inputs = []
    for x in inputs:
        traced_inputs.append(tracer.add(x, "input"))
    for p in params:
        if id(p) not in tracer.index_of:
            tracer.add(p, "param")
    if graph._tracer is not None:
        raise TraceError("compile: tracing is not reentrant")
    graph._tracer = tracer
    try:
        with graph.enable_grad() if with_grad else graph.no_grad():
            out = fn(*inputs)
    finally:
        graph._tracer = None
    outputs = out if isinstance(out, tuple) else (out,)
    out_indices = []
    for o in outputs:
        if not isinstance(o, Tensor) or id(o) not in tracer.index_of:
            raise TraceError("compile: the traced function must return tensors computed by ops")
        out_indices.append(tracer.index_of[id(o)])
    _find_saved(tracer)
    return tracer, out_indices


def _find_saved(tracer: _Tracer) -> None:
    """Mark, for each node, the values its backward reads (saved arrays or views of them)."""
    arrays = tracer.arrays
    for node, ctx in zip(tracer.nodes, tracer.contexts):
        held = list(ctx.saved_tensors) + list(ctx.__dict__.values())
        flat = []
        while held:
            item = held.pop()
            if isinstance(item, np.ndarray):
                flat.append(item)
            elif isinstance(item, (tuple, list)):
                held.extend(item)
        candidates = node.value_args() + [node.out]
        for index in candidates:
            base = tracer._base(index)
            if any(np.may_share_memory(a, arrays[index]) for a in flat):
                node.saves.add(base)


def kahn_schedule(nodes: list[Node], n_values: int) -> list[Node]:
    """Kahn's algorithm: repeatedly emit a node all of whose inputs are available. Ties are
    broken by trace order, so the schedule is deterministic and equals it for a trace."""
    producer = {node.out: k for k, node in enumerate(nodes)}
    indegree = [0] * len(nodes)
    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for k, node in enumerate(nodes):
        for a in set(node.value_args()):
            if a in producer:
                indegree[k] += 1
                consumers[producer[a]].append(k)
    ready = collections.deque(k for k in range(len(nodes)) if indegree[k] == 0)
    order = []
    while ready:
        k = ready.popleft()
        order.append(nodes[k])
        for c in consumers[k]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if len(order) != len(nodes):
        raise TraceError("compile: the traced graph has a cycle")
    return order


def eliminate_dead(nodes: list[Node], outputs: list[int]) -> list[Node]:
    """Drop nodes whose results reach no output."""
    live = set(outputs)
    kept = []
    for node in reversed(nodes):
        if node.out in live:
            kept.append(node)
            live.update(node.value_args())
    return kept[::-1]


def consumers_of(nodes: list[Node]) -> dict[int, list[Node]]:
    found: dict[int, list[Node]] = collections.defaultdict(list)
    for node in nodes:
        for a in node.value_args():
            found[a].append(node)
    return found


# -- fusion passes ------------------------------------------------------------------------
def fuse_relu_epilogue(nodes: list[Node], outputs: list[int]) -> list[Node]:
    """conv2d or linear -> relu, where the relu is the only reader, becomes one op with the
    ReLU in its epilogue (applied while the output tile is in registers/cache; backward masks
    the gradient with the saved output instead of a separate ReLU node)."""
    from minidl.ops.activation import ReLU
    from minidl.ops.conv import Conv2dOp
    from minidl.ops.matmul import Linear

    readers = consumers_of(nodes)
    removed: set[int] = set()
    for node in nodes:
        if node.fn not in (Conv2dOp, Linear) or node.attrs.get("relu") or node.out in outputs:
            continue
        after = readers.get(node.out, [])
        if len(after) != 1 or after[0].fn is not ReLU:
            continue
        relu = after[0]
        node.attrs = {**node.attrs, "relu": True}
        node.out = relu.out
        # The fused op's backward reads its output (the ReLU mask).
        node.saves = node.saves | {node.out}
        removed.add(id(relu))
    return [n for n in nodes if id(n) not in removed]


class ElementwiseChain(Function):
    """Several elementwise ops run as one node of a static graph.

    `program` lists the steps: (Function, argument sources, attrs), a source being ("in", i)
    for the node's i-th input, ("step", j) for step j's result, or ("const", value). The last
    step's result is the output; backward runs the steps' backward passes in reverse, summing
    gradients inside the chain. The chain's intermediates never become graph values, so they
    need no slots, no scheduling and no entries in the memory plan; the arithmetic itself is
    still one NumPy pass per step.
    """

    @staticmethod
    def forward(ctx: Context, *inputs, program) -> np.ndarray:
        results: list = []
        contexts = []
        for fn, sources, attrs in program:
            args = [inputs[k] if kind == "in" else results[k] if kind == "step" else k
                    for kind, k in sources]
            sub = Context(fn, (), tuple(kind != "const" for kind, _ in sources))
            results.append(fn.forward(sub, *args, **attrs))
            contexts.append(sub)
        ctx.program = program
        ctx.contexts = contexts
        ctx.n_inputs = len(inputs)
        return results[-1]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        program = ctx.program
        step_grads: list = [None] * len(program)
        step_grads[-1] = g
        input_grads: list = [None] * ctx.n_inputs
        for j in range(len(program) - 1, -1, -1):
            gj = step_grads[j]
            if gj is None:
                continue
            fn, sources, _ = program[j]
            result = fn.backward(ctx.contexts[j], gj)
            if not isinstance(result, tuple):
                result = (result,)
            for (kind, k), pg in zip(sources, result):
                if pg is None or kind == "const":
                    continue
                target = input_grads if kind == "in" else step_grads
                target[k] = pg if target[k] is None else target[k] + pg
        return tuple(
            grad if need else None for grad, need in zip(input_grads, ctx.needs_input_grad)
        )


def _elementwise_ops() -> tuple:
    from minidl.ops import activation as act
    from minidl.ops import elementwise as ew

    return (ew.Add, ew.Sub, ew.Mul, ew.Div, ew.Pow, ew.Neg, ew.Exp, ew.Log, ew.Sqrt, ew.Abs,
            ew.Clip, ew.Maximum, ew.Minimum, act.ReLU, act.LeakyReLU, act.ELU, act.Sigmoid,
            act.Tanh)


def fuse_elementwise_chains(nodes: list[Node], outputs: list[int]) -> list[Node]:
    """Merge each maximal run of elementwise nodes, where every intermediate result is read
    only by the next node of the run, into one ElementwiseChain node."""
    elementwise = _elementwise_ops()
    readers = consumers_of(nodes)
    producer = {node.out: node for node in nodes}

    def chains_into(node: Node) -> bool:
        after = readers.get(node.out, [])
        return (node.fn in elementwise and node.out not in outputs and len(after) == 1
                and after[0].fn in elementwise)

    merged_into: dict[int, list[Node]] = {}
    for node in nodes:
        if node.fn not in elementwise:
            continue
        feeders = [producer[a] for a in node.value_args() if a in producer]
        head = next((f for f in feeders if chains_into(f) and id(f) in merged_into), None)
        run = merged_into.pop(id(head)) if head is not None else []
        run.append(node)
        merged_into[id(node)] = run

    fused_at: dict[int, Node] = {}
    removed: set[int] = set()
    for run in merged_into.values():
        if len(run) < 2:
            continue
        fused_at[id(run[-1])] = _chain_node(run)
        removed.update(id(n) for n in run[:-1])
    return [fused_at.get(id(n), n) for n in nodes if id(n) not in removed]


def _chain_node(run: list[Node]) -> Node:
    step_of = {node.out: j for j, node in enumerate(run)}
    inputs: list[int] = []
    needs: list[bool] = []
    program = []
    for node in run:
        sources = []
        for a, need in zip(node.args, node.needs_input_grad):
            if not isinstance(a, int):
                sources.append(("const", a[1]))
            elif a in step_of:
                sources.append(("step", step_of[a]))
            else:
                if a not in inputs:
                    inputs.append(a)
                    needs.append(need)
                else:
                    k = inputs.index(a)
                    needs[k] = needs[k] or need
                sources.append(("in", inputs.index(a)))
        program.append((node.fn, tuple(sources), dict(node.attrs)))
    saves = set().union(*(n.saves for n in run)) - set(step_of)
    return Node(ElementwiseChain, list(inputs), {"program": tuple(program)}, run[-1].out,
                tuple(needs), saves | {run[-1].out})


FUSION_PASSES: list[Callable[[list[Node], list[int]], list[Node]]] = [
    fuse_relu_epilogue,
    fuse_elementwise_chains,
]


# -- memory plan ----------------------------------------------------------------------------
@dataclass
class MemoryPlan:
    """Buffers shared by values whose live intervals do not overlap."""

    slot_of: dict[int, int]  # value index -> buffer slot
    slot_bytes: list[int]
    planned_values_bytes: int  # all planned values if each had its own buffer
    peak_all_bytes: int  # every activation and gradient kept (eager until backward)
    peak_planned_bytes: int  # the plan's peak (planned buffers + unplanned values live)


def liveness(nodes: list[Node], values: list[Value], outputs: list[int],
             backward: bool) -> dict[int, tuple[int, int]]:
    """value index -> (first step, last step) it is live, over forward steps 0..N-1 and, when
    training, backward steps N..2N-1 (node k's backward runs at step 2N-1-k)."""
    n = len(nodes)
    end = 2 * n if backward else n
    interval: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        interval[node.out] = [k, k]
        for a in node.value_args():
            if a in interval:
                interval[a][1] = max(interval[a][1], k)
        if backward:
            for s in node.saves:
                if s in interval:
                    interval[s][1] = max(interval[s][1], 2 * n - 1 - k)
    for v in list(interval):
        base = values[v].alias_of
        if base is not None and base in interval:
            interval[base][1] = max(interval[base][1], interval[v][1])
    for o in outputs:
        if o in interval:
            interval[o][1] = end
    return {v: (a, b) for v, (a, b) in interval.items()}


def plan_memory(nodes: list[Node], values: list[Value], outputs: list[int],
                backward: bool) -> MemoryPlan:
    spans = liveness(nodes, values, outputs, backward)
    # Outputs get fresh arrays each call: the caller keeps them past the next replay.
    plannable = {
        node.out for node in nodes
        if getattr(node.fn, "writes_out", False) and values[node.out].alias_of is None
        and node.out not in outputs
    }
    slot_of: dict[int, int] = {}
    slot_bytes: list[int] = []
    free: list[int] = []
    holders: dict[int, list[int]] = collections.defaultdict(list)  # last step -> values
    for k, node in enumerate(nodes):
        for t in [t for t in holders if t < k]:
            free.extend(slot_of[v] for v in holders.pop(t))
        v = node.out
        if v not in plannable:
            continue
        size = values[v].nbytes
        slot = None
        if getattr(node.fn, "inplace_ok", False):
            # In place: an input whose life ends here hands its buffer to the output.
            for a in node.value_args():
                if a in slot_of and spans[a][1] == k and slot_bytes[slot_of[a]] >= size:
                    slot = slot_of[a]
                    holders[k].remove(a)
                    break
        if slot is None:
            fits = [s for s in free if slot_bytes[s] >= size]
            if fits:
                slot = min(fits, key=lambda s: slot_bytes[s])
                free.remove(slot)
            else:
                slot = len(slot_bytes)
                slot_bytes.append(size)
        slot_of[v] = slot
        holders[spans[v][1]].append(v)

    # Peak over time: planned buffers are held throughout; other values while live.
    n_steps = 2 * len(nodes) if backward else len(nodes)
    usage = np.zeros(n_steps + 1, dtype=np.int64)
    usage_all = np.zeros(n_steps + 1, dtype=np.int64)
    for v, (start, stop) in spans.items():
        if values[v].alias_of is not None:
            continue
        usage_all[start:] += values[v].nbytes
        if v not in slot_of:
            usage[start : stop + 1] += values[v].nbytes
    if backward:
        # Gradients: each lives from the backward of its last reader to that of its producer.
        producer = {node.out: k for k, node in enumerate(nodes)}
        for k, node in enumerate(nodes):
            for a in node.value_args():
                if values[a].kind == "node" and a in producer and values[a].alias_of is None:
                    born = 2 * len(nodes) - 1 - k
                    dies = 2 * len(nodes) - 1 - producer[a]
                    usage[born : dies + 1] += values[a].nbytes
                    usage_all[born:] += values[a].nbytes
    return MemoryPlan(
        slot_of=slot_of,
        slot_bytes=slot_bytes,
        planned_values_bytes=sum(values[v].nbytes for v in slot_of),
        peak_all_bytes=int(usage_all.max(initial=0)),
        peak_planned_bytes=int(usage.max(initial=0)) + sum(slot_bytes),
    )


# -- the compiled graph ---------------------------------------------------------------------
class StaticGraph:
    """One traced signature: schedule, memory plan, and the replay loops."""

    def __init__(self, fn: Callable, inputs: Sequence[Tensor], params: Sequence[Tensor],
                 training: bool) -> None:
        tracer, outputs = _trace(fn, inputs, params, with_grad=training)
        self.traced_ops = [node.fn for node in tracer.nodes]
        self.values = tracer.values
        self.outputs = outputs
        self.input_indices = [v.index for v in self.values if v.kind == "input"]
        self.training = training
        nodes = kahn_schedule(tracer.nodes, len(self.values))
        nodes = eliminate_dead(nodes, outputs)
        for fusion in FUSION_PASSES:
            nodes = fusion(nodes, outputs)
        self.nodes = nodes
        self.plan = plan_memory(nodes, self.values, outputs, backward=training)
        self._buffers = [np.empty(nbytes, dtype=np.uint8) for nbytes in self.plan.slot_bytes]
        self._program = [self._compile_node(node) for node in nodes]
        self._params = [(v.index, v.tensor) for v in self.values if v.kind == "param"]
        # Each parameter's gradient is complete after the backward of the first node (in
        # schedule order) that reads it: accumulate it into .grad there, so that
        # post-accumulate hooks (e.g. DistributedDataParallel's bucket allreduce) start while
        # the rest of backward runs.
        first_reader: dict[int, int] = {}
        for k, (_, _, _, _, _, grad_slots, _) in enumerate(self._program):
            for slot in grad_slots:
                if slot >= 0 and self.values[slot].kind == "param":
                    first_reader.setdefault(slot, k)
        self._params_done_at: dict[int, list] = collections.defaultdict(list)
        for index, p in self._params:
            if index in first_reader:
                self._params_done_at[first_reader[index]].append((index, p))
        self._consts = [(v.index, v.tensor) for v in self.values if v.kind == "const"]
        self.signature = tuple((x.shape, x.dtype) for x in inputs)

    def _compile_node(self, node: Node) -> tuple:
        """(Function, arg slots, constants, attrs with any planned `out`, out slot, grad slots,
        needs_input_grad): what the replay loops read per node."""
        slots = [a if isinstance(a, int) else -1 for a in node.args]
        consts = [None if isinstance(a, int) else a[1] for a in node.args]
        grad_slots = [
            a if isinstance(a, int) and self.values[a].kind in ("node", "param") and need else -1
            for a, need in zip(node.args, node.needs_input_grad)
        ]
        attrs = dict(node.attrs)
        slot = self.plan.slot_of.get(node.out)
        if slot is not None:
            v = self.values[node.out]
            attrs["out"] = (
                self._buffers[slot][: v.nbytes].view(v.dtype).reshape(v.shape)
            )
        return (node.fn, slots, consts, attrs, node.out, grad_slots, node.needs_input_grad)

    def forward(self, arrays: Sequence[np.ndarray], timings: list | None = None
                ) -> tuple[list, list]:
        vals: list = [None] * len(self.values)
        for index, a in zip(self.input_indices, arrays):
            vals[index] = a
        for index, p in self._params:
            vals[index] = p.data
        for index, c in self._consts:
            vals[index] = c.data
        contexts = []
        clock = time.perf_counter
        for fn, slots, consts, attrs, out, _, needs in self._program:
            ctx = Context(fn, (), needs)
            args = [vals[s] if s >= 0 else c for s, c in zip(slots, consts)]
            if timings is None:
                vals[out] = fn.forward(ctx, *args, **attrs)
            else:
                t0 = clock()
                vals[out] = fn.forward(ctx, *args, **attrs)
                timings.append(clock() - t0)
            contexts.append(ctx)
        return vals, contexts

    def backward(self, vals: list, contexts: list, timings: list | None = None) -> None:
        grads: list = [None] * len(self.values)
        loss = self.outputs[0]
        grads[loss] = np.ones_like(vals[loss])
        clock = time.perf_counter
        for k in range(len(self._program) - 1, -1, -1):
            fn, _, _, _, out, grad_slots, _ = self._program[k]
            g = grads[out]
            grads[out] = None
            if g is None:
                if timings is not None:
                    timings.append(0.0)
                self._accumulate_params(k, grads)
                continue
            if timings is None:
                result = fn.backward(contexts[k], g)
            else:
                t0 = clock()
                result = fn.backward(contexts[k], g)
                timings.append(clock() - t0)
            contexts[k] = None
            if not isinstance(result, tuple):
                result = (result,)
            for slot, pg in zip(grad_slots, result):
                if slot < 0 or pg is None:
                    continue
                previous = grads[slot]
                grads[slot] = pg if previous is None else previous + pg
            self._accumulate_params(k, grads)

    def _accumulate_params(self, k: int, grads: list) -> None:
        """Add the finished gradients of the parameters first read by node k into .grad."""
        for index, p in self._params_done_at.get(k, ()):
            g = grads[index]
            grads[index] = None
            if g is None:
                continue
            if p.grad is None:
                p.grad = Tensor._wrap(np.array(g, copy=True), False)
            else:
                p.grad.data += g
            if graph._post_accumulate_hooks:
                graph.run_post_accumulate_hooks(p)

    def memory_report(self) -> dict:
        return {
            "planned_peak_bytes": self.plan.peak_planned_bytes,
            "keep_all_peak_bytes": self.plan.peak_all_bytes,
            "planned_buffers": len(self.plan.slot_bytes),
            "planned_buffer_bytes": sum(self.plan.slot_bytes),
            "planned_values": len(self.plan.slot_of),
            "planned_values_bytes": self.plan.planned_values_bytes,
        }


class Compiled:
    """A model (and loss) traced into static graphs, one per input signature.

    Call it like the model: `compiled(x)` (inference) or `compiled(x, target)` (training,
    returns the loss after accumulating gradients into the parameters' .grad). The model's
    output of the last call is `compiled.output`.
    """

    def __init__(self, model: Any, loss_fn: Callable | None, example_inputs: Sequence[Any]
                 ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.training = loss_fn is not None
        self.graphs: dict[tuple, StaticGraph] = {}
        self.output: Tensor | None = None
        self.profile_rows: list[dict] | None = None
        self._graph_for([_as_tensor(x) for x in example_inputs])

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
        key = tuple((x.shape, x.dtype) for x in inputs)
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
                g = StaticGraph(self._function(), inputs, self._params(), self.training)
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
                a = a + rng.standard_normal(a.shape).astype(a.dtype) * (np.abs(a).mean() + 1)
            elif a.dtype.kind in "iu" and a.size > 1:
                a = np.roll(a.reshape(-1), 1).reshape(a.shape)
            other.append(Tensor._wrap(np.ascontiguousarray(a), False))
        tracer, _ = _trace(self._function(), other, self._params(), self.training)
        if [n.fn for n in tracer.nodes] != g.traced_ops or len(tracer.values) != len(g.values):
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
        tensors = [_as_tensor(x) for x in inputs]
        g = self._graph_for(tensors)
        fwd_times: list | None = [] if profile else None
        bwd_times: list | None = [] if profile else None
        start = time.perf_counter()
        vals, contexts = g.forward([t.data for t in tensors], fwd_times)
        if self.training:
            g.backward(vals, contexts, bwd_times)
            self.output = Tensor._wrap(vals[g.outputs[1]], False)
        else:
            self.output = Tensor._wrap(vals[g.outputs[0]], False)
        if profile:
            from minidl.profiler import static_rows

            self.profile_rows = static_rows(g, vals, fwd_times, bwd_times[::-1] if bwd_times
                                            else None, time.perf_counter() - start)
        return Tensor._wrap(vals[g.outputs[0]], False)

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
            label = node.name.removesuffix("Op") + (" + relu" if node.attrs.get("relu") else "")
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


def compile(model: Any, loss_fn: Callable | None = None,  # noqa: A001 (the public name)
            example_inputs: Sequence[Any] = ()) -> Compiled:
    """Trace `model` (and `loss_fn(model(x), target)`) into a static graph.

    model: a Module or any callable of tensors built from minidl ops.
    loss_fn: None for an inference graph (the model is traced in eval mode, no gradients), or
        a function (output, target) -> scalar loss for a training step that runs forward and
        backward, accumulating gradients into the parameters' .grad like loss.backward().
    example_inputs: (x,) for inference, (x, target) for training; new shapes trace again.
    Raises TraceError when the function cannot be captured (see the module docstring).
    """
    if not example_inputs:
        raise ValueError("compile: example_inputs must hold the model's inputs (and target)")
    return Compiled(model, loss_fn, example_inputs)
