"""Per-op timing, like `caffe time`: forward and backward time, FLOPs and GFLOP/s per node.

Eager mode:

    with minidl.profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    print(prof.table())

Static graphs: `compiled(x, y, profile=True)`, then `minidl.profiler.format_table(
compiled.profile_rows)`. Both report the share of wall time spent outside the ops (Python
bookkeeping, the optimizer, data loading inside the region).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from minidl import graph


class Profiler:
    """Collects one row per op call of its thread while active (graph.state.profiler points
    at it). FLOPs and names come from each op's traits (Function.flops, display_name)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._row_of: dict[int, dict] = {}
        self.start = 0.0
        self.elapsed = 0.0

    def forward(self, fn, ctx, arrays, attrs) -> np.ndarray:
        t0 = time.perf_counter()
        out = fn.forward(ctx, *arrays, **attrs)
        seconds = time.perf_counter() - t0
        in_shapes = [np.shape(a) for a in arrays if isinstance(a, np.ndarray)]
        out_shape = np.shape(out)
        flops = fn.flops(in_shapes, out_shape, attrs)
        row = {"op": fn.display_name(attrs), "shape": out_shape, "forward_s": seconds,
               "backward_s": 0.0, "forward_flops": flops,
               "backward_flops": fn.backward_flops(flops, ctx.needs_input_grad)}
        self.rows.append(row)
        self._row_of[id(ctx)] = row
        return out

    def backward(self, ctx, grad) -> Any:
        t0 = time.perf_counter()
        result = ctx.fn.backward(ctx, grad)
        seconds = time.perf_counter() - t0
        row = self._row_of.get(id(ctx))
        if row is not None:
            row["backward_s"] += seconds
        return result

    def __enter__(self) -> Profiler:
        if graph.state.profiler is not None:
            raise RuntimeError("profile: already profiling in this thread")
        graph.state.profiler = self
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
        graph.state.profiler = None

    def summary(self) -> list[dict]:
        """Rows merged by (op, output shape), in first-seen order, with call counts."""
        merged: dict[tuple, dict] = {}
        for row in self.rows:
            key = (row["op"], row["shape"])
            m = merged.get(key)
            if m is None:
                merged[key] = {**row, "calls": 1}
            else:
                m["calls"] += 1
                for k in ("forward_s", "backward_s", "forward_flops", "backward_flops"):
                    m[k] += row[k]
        return list(merged.values())

    def table(self) -> str:
        return format_table(self.summary(), self.elapsed)


def profile() -> Profiler:
    """Context manager timing every op's forward and backward inside it."""
    return Profiler()


def static_rows(g: Any, vals: list, fwd_times: list, bwd_times: list | None,
                elapsed: float) -> list[dict]:
    """Profile rows for one replay of a StaticGraph (see minidl.static)."""
    rows = []
    for k, node in enumerate(g.nodes):
        in_shapes = [g.values[a].shape for a in node.value_args()]
        out_shape = g.values[node.out].shape
        flops = node.fn.flops(in_shapes, out_shape, node.attrs)
        rows.append({
            "op": node.fn.display_name(node.attrs), "shape": out_shape, "calls": 1,
            "forward_s": fwd_times[k], "backward_s": bwd_times[k] if bwd_times else 0.0,
            "forward_flops": flops,
            "backward_flops": node.fn.backward_flops(flops, node.needs_input_grad)
            if bwd_times else 0,
        })
    rows.append({"op": "_elapsed", "elapsed": elapsed})
    return rows


def format_table(rows: list[dict], elapsed: float | None = None) -> str:
    """A fixed-width table: op, output shape, calls, ms forward/backward, MFLOP, GFLOP/s."""
    if rows and rows[-1].get("op") == "_elapsed":
        elapsed = rows[-1]["elapsed"] if elapsed is None else elapsed
        rows = rows[:-1]
    header = (f"{'op':<22}{'output shape':<22}{'calls':>6}{'fwd ms':>10}{'bwd ms':>10}"
              f"{'MFLOP':>10}{'GFLOP/s':>9}")
    lines = [header, "-" * len(header)]
    total_f = total_b = total_flops = 0.0
    for r in rows:
        seconds = r["forward_s"] + r["backward_s"]
        flops = r["forward_flops"] + r["backward_flops"]
        rate = flops / seconds / 1e9 if seconds > 0 else 0.0
        lines.append(
            f"{r['op']:<22}{str(tuple(r['shape'])):<22}{r['calls']:>6}"
            f"{1e3 * r['forward_s']:>10.3f}{1e3 * r['backward_s']:>10.3f}"
            f"{flops / 1e6:>10.2f}{rate:>9.1f}"
        )
        total_f += r["forward_s"]
        total_b += r["backward_s"]
        total_flops += flops
    lines.append("-" * len(header))
    in_ops = total_f + total_b
    rate = total_flops / in_ops / 1e9 if in_ops > 0 else 0.0
    lines.append(f"{'total in ops':<50}{1e3 * total_f:>10.3f}{1e3 * total_b:>10.3f}"
                 f"{total_flops / 1e6:>10.2f}{rate:>9.1f}")
    if elapsed:
        outside = max(elapsed - in_ops, 0.0)
        lines.append(f"wall {1e3 * elapsed:.3f} ms; outside ops {1e3 * outside:.3f} ms "
                     f"({100 * outside / elapsed:.1f}%)")
    return "\n".join(lines)
