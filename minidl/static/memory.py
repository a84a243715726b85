"""The memory plan of a static graph: liveness intervals over the schedule, and buffers shared
by planned values whose intervals do not overlap.

A liveness analysis gives each activation the interval from the step that writes it to the last
step that reads it (an activation saved for backward lives until that backward; a view keeps
its base alive). Outputs of ops that can write into a given array (`Function.writes_out`) are
placed in buffers allocated once per graph; an op that is `inplace_ok` may take over the buffer
of an input whose life ends with it. Graph outputs, and the values they view, are never
planned: the caller keeps them past the next call.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from minidl.static.trace import Node, Value


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
    for o in outputs:
        if o in interval:
            interval[o][1] = end
    # A view keeps its base's memory alive (after the outputs' extension: an output may be a
    # view, e.g. model(x).reshape(-1)).
    for v in list(interval):
        base = values[v].alias_of
        if base is not None and base in interval:
            interval[base][1] = max(interval[base][1], interval[v][1])
    return {v: (a, b) for v, (a, b) in interval.items()}


def plan_memory(nodes: list[Node], values: list[Value], outputs: list[int],
                backward: bool, every_node: bool = False) -> MemoryPlan:
    """The buffers of the replay (outputs of ops that are `writes_out`) or, with every_node,
    of a lowered program (whose instructions write any node's output into a given array)."""
    spans = liveness(nodes, values, outputs, backward)
    # Outputs get fresh arrays each call: the caller keeps them past the next replay. So do
    # the values outputs are views of.
    escaping = {o if values[o].alias_of is None else values[o].alias_of for o in outputs}
    plannable = {
        node.out for node in nodes
        if (every_node or node.fn.writes_out) and values[node.out].alias_of is None
        and node.out not in escaping
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
        if node.fn.inplace_ok:
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
