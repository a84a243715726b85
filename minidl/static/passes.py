"""Graph passes over the traced IR: scheduling (Kahn's algorithm), dead-op elimination and
fusion. The passes read each op's traits (`Function.elementwise`, `epilogues`, `epilogue`,
`channel_params`, `channel_affine`); none names an op class.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

from minidl.graph import Context, Function, Step, sweep
from minidl.static.trace import Node, TraceError, Value


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


def _fusable(values: list[Value], index: int) -> bool:
    """A value that may disappear into a fused op: nobody outside the graph hooks it."""
    return values[index].hooks is None


# -- fusion passes ------------------------------------------------------------------------
class ChannelAffineFold(Function):
    """The weight or the bias of an op with `channel_params` (e.g. conv2d) with the
    per-channel affine map y = x * scale + shift that followed it folded in (BatchNorm at
    inference): weight' = weight * scale along axis 0, bias' = bias * scale + shift (shift
    without a bias), in float64 and rounded once to the weight's dtype. scale and shift come
    from `affine.channel_affine` on the current values at every call, so a graph reads
    parameters and running statistics changed after it was compiled.

    weight: (C, ...); bias, affine_weight, affine_bias: (C,) or None; part: "weight" or "bias".
    """

    name = "channel_affine_fold"
    label = "fold"

    @staticmethod
    def forward(ctx: Context, weight, bias, affine_weight, affine_bias, *, affine, affine_attrs,
                part) -> np.ndarray:
        scale, shift = affine.channel_affine(affine_weight, affine_bias, weight.dtype,
                                             affine_attrs)
        if part == "weight":
            folded = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        else:
            folded = shift if bias is None else bias * scale + shift
        return folded.astype(weight.dtype)


def fold_channel_affine(nodes: list[Node], outputs: list[int], values: list[Value]
                        ) -> list[Node]:
    """An op with `channel_params` whose only reader is an op that is a per-channel affine
    map (`channel_affine` gives its scale and shift, e.g. BatchNorm in eval mode), in a graph
    computing no gradient through them, becomes the op alone on a folded weight and bias
    (two ChannelAffineFold nodes computing them at every call; new values of the graph)."""
    readers = consumers_of(nodes)
    folded_into: dict[int, list[Node]] = {}
    removed: set[int] = set()
    for node in nodes:
        params = node.fn.channel_params
        if params is None or any(node.needs_input_grad) or node.out in outputs:
            continue
        after = readers.get(node.out, [])
        if len(after) != 1 or not _fusable(values, node.out) or values[node.out].alias_of:
            continue
        affine = after[0]
        if affine.args[0] != node.out or node.out in affine.args[1:] or any(
                affine.needs_input_grad) or any(node.attrs.get(e) for e in node.fn.epilogues):
            continue
        w, b = (node.args[i] for i in params)
        if not isinstance(w, int) or not (isinstance(b, int) or b == ("const", None)):
            continue
        affine_params = (affine.args + [("const", None)] * 2)[1:3]
        if not all(isinstance(a, int) or a == ("const", None) for a in affine_params):
            continue
        traced = [values[a].tensor.data if isinstance(a, int) and values[a].tensor is not None
                  else None for a in affine_params]
        if any(isinstance(a, int) and t is None for a, t in zip(affine_params, traced)):
            continue  # an affine parameter computed in the graph: not known here
        if affine.fn.channel_affine(*traced, values[w].dtype, affine.attrs) is None:
            continue
        attrs = {"affine": affine.fn, "affine_attrs": affine.attrs}
        args = [w, b, *affine_params]
        fold_nodes = []
        for part, like in (("weight", values[w]), ("bias", None)):
            shape = like.shape if like is not None else (values[w].shape[0],)
            value = Value(len(values), "node", shape, values[w].dtype)
            values.append(value)
            fold_nodes.append(Node(ChannelAffineFold, list(args), {**attrs, "part": part},
                                   value.index, (False,) * len(args)))
        new_args = list(node.args)
        new_args[params[0]], new_args[params[1]] = (n.out for n in fold_nodes)
        node.args = new_args
        node.out = affine.out
        folded_into[id(node)] = fold_nodes
        removed.add(id(affine))
    result = []
    for node in nodes:
        if id(node) in removed:
            continue
        result.extend(folded_into.get(id(node), []))
        result.append(node)
    return result


def fuse_epilogues(nodes: list[Node], outputs: list[int], values: list[Value]) -> list[Node]:
    """An op followed by an op it can absorb (its `epilogues` holds the follower's
    `epilogue`, e.g. conv2d or linear then ReLU), where the follower is the only reader,
    becomes one op with the flag set: the epilogue runs while the output tile is in
    registers/cache, and backward masks the gradient with the saved output."""
    readers = consumers_of(nodes)
    removed: set[int] = set()
    for node in nodes:
        if not node.fn.epilogues or node.out in outputs or not _fusable(values, node.out):
            continue
        after = readers.get(node.out, [])
        if len(after) != 1:
            continue
        follower = after[0]
        name = follower.fn.epilogue
        if name is None or name not in node.fn.epilogues or node.attrs.get(name):
            continue
        if follower.value_args() != [node.out] or values[node.out].alias_of is not None:
            continue
        node.attrs = {**node.attrs, name: True}
        node.out = follower.out
        # The fused op's backward reads its output (e.g. the ReLU mask).
        node.saves = node.saves | {node.out}
        removed.add(id(follower))
    return [n for n in nodes if id(n) not in removed]


class ElementwiseChain(Function):
    """Several elementwise ops run as one node of a static graph.

    `program` lists the steps: (Function, argument sources, attrs), a source being ("in", i)
    for the node's i-th input, ("step", j) for step j's result, or ("const", value). The last
    step's result is the output; backward is the one reverse sweep (minidl.graph.sweep) over
    the steps (`tape`), with `specs` the static graph's Values of the inputs and of each
    step's result (their dtypes and shapes). The
    chain's intermediates never become graph values, so they need no slots, no scheduling and
    no entries in the memory plan; the arithmetic itself is still one NumPy pass per step.
    """

    name = "elementwise_chain"
    label = "elementwise chain"

    @staticmethod
    def forward(ctx: Context, *inputs, program, tape, specs) -> np.ndarray:
        results: list = []
        contexts = []
        for fn, sources, attrs in program:
            args = [inputs[k] if kind == "in" else results[k] if kind == "step" else k
                    for kind, k in sources]
            sub = Context(fn, (), tuple(kind != "const" for kind, _ in sources))
            results.append(fn.forward(sub, *args, **attrs))
            contexts.append(sub)
        ctx.save_for_backward(*contexts)
        ctx.tape, ctx.specs, ctx.n_inputs = tape, specs, len(inputs)
        return results[-1]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        n = ctx.n_inputs
        grads: list = [None] * len(ctx.specs)
        grads[-1] = g
        sweep(ctx.tape, list(ctx.saved_tensors), grads, ctx.specs, None, release=False)
        return tuple(
            grad if need else None for grad, need in zip(grads[:n], ctx.needs_input_grad)
        )

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        return super().flops(in_shapes, out_shape, attrs) * len(attrs["program"])


def fuse_elementwise_chains(nodes: list[Node], outputs: list[int], values: list[Value]
                            ) -> list[Node]:
    """Merge each maximal run of elementwise nodes, where every intermediate result is read
    only by the next node of the run, into one ElementwiseChain node."""
    readers = consumers_of(nodes)
    producer = {node.out: node for node in nodes}

    def chains_into(node: Node) -> bool:
        after = readers.get(node.out, [])
        return (node.fn.elementwise and node.out not in outputs and len(after) == 1
                and after[0].fn.elementwise and _fusable(values, node.out))

    merged_into: dict[int, list[Node]] = {}
    for node in nodes:
        if not node.fn.elementwise:
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
        fused_at[id(run[-1])] = _chain_node(run, values)
        removed.update(id(n) for n in run[:-1])
    return [fused_at.get(id(n), n) for n in nodes if id(n) not in removed]


def _chain_node(run: list[Node], values: list[Value]) -> Node:
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
    # The sweep's keys: the chain's inputs first, then one per step's result.
    n_in = len(inputs)
    specs = tuple(values[a] for a in inputs) + tuple(values[node.out] for node in run)
    tape = tuple(
        Step(fn, n_in + j, tuple(-1 if kind == "const" else k if kind == "in" else n_in + k
                                 for kind, k in sources))
        for j, (fn, sources, _) in enumerate(program)
    )
    saves = set().union(*(n.saves for n in run)) - set(step_of)
    attrs = {"program": tuple(program), "tape": tape, "specs": specs}
    return Node(ElementwiseChain, list(inputs), attrs, run[-1].out, tuple(needs),
                saves | {run[-1].out})


FUSION_PASSES: list[Callable[[list[Node], list[int], list[Value]], list[Node]]] = [
    fold_channel_affine,
    fuse_epilogues,
    fuse_elementwise_chains,
]
