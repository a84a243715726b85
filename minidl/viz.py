"""Draw a computational graph as Graphviz DOT, the way the CS231n lectures draw circuits.

    import minidl, minidl.viz
    x = minidl.tensor(-2.0, requires_grad=True); x.name = "x"
    ...
    f = (x + y) * z
    minidl.viz.graph(f).render("circuit.svg")   # needs the `dot` program (Debian: graphviz)

One box per op, one ellipse per leaf input, an ellipse for the output, and on every edge the
shape of the tensor it carries, optionally its forward value and the gradient of the output
with respect to it (the value on top, the gradient below, as on the slides).

Two kinds of objects can be drawn:
- a Tensor: the eager graph recorded while computing it;
- any object with a `_viz_graph()` method returning `(nodes, edges)`, where nodes is a list of
  `(node_id, label, kind)` with kind "op", "input" or "output", and edges a list of
  `(src_id, dst_id, label)`. Compiled graphs implement it; `edge_label` formats an edge label
  the same way eager graphs do.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minidl.atomic import atomic_path
from minidl.graph import gradients, topological_order, walk_graph
from minidl.tensor import Tensor

Node = tuple[str, str, str]
Edge = tuple[str, str, str]

KINDS = ("op", "input", "output")
FORMATS = ("svg", "png", "pdf")

_LINE_COLORS = {"value": "#2e7d32", "grad": "#c62828"}

_NODE_STYLE = {
    "op": 'shape=box, style="rounded,filled", fillcolor="#dbe8f7"',
    "input": 'shape=ellipse, style=filled, fillcolor="#eeeeee"',
    "output": 'shape=ellipse, style="filled,bold", fillcolor="#fde9c8"',
}


class Digraph:
    """DOT text of a directed graph, renderable with Graphviz's `dot` program.

    `source` (also `str(graph)`) is the DOT text; `render(path)` writes an SVG, PNG or PDF;
    in a notebook the graph shows as SVG when `dot` is installed.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"<minidl.viz.Digraph: {self.source.count(' -> ')} edges>"

    def pipe(self, fmt: str) -> bytes:
        """The graph rendered by `dot` in format `fmt` ("svg", "png" or "pdf"), as bytes."""
        fmt = _check_format(fmt)
        proc = subprocess.run(
            [_dot_program(), f"-T{fmt}"],
            input=self.source.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"dot failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout

    def render(self, path: str | os.PathLike) -> Path:
        """Write the drawing to `path`, in the format its extension names (.svg, .png, .pdf).

        Raises ValueError for another extension and RuntimeError when `dot` is not installed
        or fails. The file appears complete or not at all: `dot` writes a temporary file in the
        same folder, which then replaces `path`.
        """
        path = Path(path)
        fmt = _check_format(path.suffix.lstrip(".").lower(), path)
        dot = _dot_program()
        with atomic_path(path) as tmp:
            proc = subprocess.run(
                [dot, f"-T{fmt}", "-o", str(tmp)],
                input=self.source.encode("utf-8"),
                capture_output=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"dot failed ({proc.returncode}) writing {path}: "
                    f"{proc.stderr.decode(errors='replace')}"
                )
        return path

    def _repr_svg_(self) -> str | None:
        # None lets a notebook fall back to the text repr when dot is missing.
        if shutil.which("dot") is None:
            return None
        return self.pipe("svg").decode("utf-8")


def graph(obj: Any, values: bool = True, grads: bool = True, max_elements: int = 6) -> Digraph:
    """The graph that computed `obj`, as a `Digraph` (DOT text, `.render(path)`).

    obj: a Tensor (its recorded eager graph) or an object with `_viz_graph()` (see the module
    docstring; values/grads/max_elements then are that object's business).
    values: label each edge with the forward value of its tensor when the tensor has at most
    `max_elements` elements.
    grads: also label it with d(obj)/d(tensor), computed by a reverse sweep that keeps the
    graph and leaves every `.grad` alone; only when obj has one element (a loss), since no
    other seed is implied. After `obj.backward()` freed the graph, the gradients that are
    known are drawn instead: the leaves' and retained tensors' `.grad` (as micrograd's
    draw_dot after backward); the values are drawn either way.
    """
    if isinstance(obj, Tensor):
        nodes, edges = _tensor_graph(obj, values, grads, max_elements)
    elif callable(getattr(obj, "_viz_graph", None)):
        nodes, edges = obj._viz_graph()
    else:
        raise TypeError(
            f"viz.graph: expected a Tensor or an object with _viz_graph(), got {type(obj).__name__}"
        )
    return Digraph(dot_source(nodes, edges))


def dot_source(nodes: Sequence[Node], edges: Sequence[Edge], rankdir: str = "LR") -> str:
    """DOT text for nodes `(id, label, kind)` and edges `(src, dst, label)`, lecture-styled:
    ops as boxes, inputs and outputs as ellipses, edge label lines starting with "value" in
    green and with "grad" in red.

    Raises ValueError for an unknown kind, a repeated node id or an edge to an unknown node.
    """
    lines = [
        "digraph minidl {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
    ]
    known: set[str] = set()
    for node_id, label, kind in nodes:
        if kind not in KINDS:
            raise ValueError(f"viz: node {node_id!r} has kind {kind!r}, expected one of {KINDS}")
        if node_id in known:
            raise ValueError(f"viz: node id {node_id!r} appears twice")
        known.add(node_id)
        lines.append(f"  {_quote(node_id)} [label={_quote(label)}, {_NODE_STYLE[kind]}];")
    for src, dst, label in edges:
        for end in (src, dst):
            if end not in known:
                raise ValueError(f"viz: edge {src!r} -> {dst!r} names the unknown node {end!r}")
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_html_label(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def edge_label(
    shape: Sequence[int], value: Any = None, grad: Any = None, max_elements: int = 6
) -> str:
    """An edge's label: the shape, then "value ..." and "grad ..." lines for the arrays given
    that have at most `max_elements` elements (larger ones are left out)."""
    lines = [format_shape(shape)]
    for title, array in (("value", value), ("grad", grad)):
        if array is not None and np.size(array) <= max_elements:
            lines.append(f"{title} {format_array(array)}")
    return "\n".join(lines)


def format_shape(shape: Sequence[int]) -> str:
    """(64, 1, 28, 28) -> "(64, 1, 28, 28)", (3,) -> "(3,)", () -> "scalar"."""
    return str(tuple(int(n) for n in shape)) if len(shape) else "scalar"


def format_array(array: Any) -> str:
    """Compact numbers: floats with two decimals ("3.00", "-0.50"), scientific when tiny or
    huge ("1.00e-05"), nested lists in brackets."""
    array = np.asarray(array)
    if array.ndim == 0:
        return _format_number(array.item())

    def nest(a: np.ndarray) -> str:
        if a.ndim == 1:
            return "[" + ", ".join(_format_number(v) for v in a.tolist()) + "]"
        return "[" + ", ".join(nest(row) for row in a) + "]"

    return nest(array)


def _format_number(v: Any) -> str:
    if isinstance(v, (bool, int)):
        return str(v)
    if not np.isfinite(v):
        return str(v)
    if v == 0 or 1e-2 <= abs(v) < 1e5:
        return f"{v:.2f}"
    return f"{v:.2e}"


def _tensor_graph(
    root: Tensor, values: bool, grads: bool, max_elements: int
) -> tuple[list[Node], list[Edge]]:
    """Nodes and edges of the eager graph ending at `root` (see `graph`)."""
    order = topological_order(root) if root._ctx is not None else []
    found: dict[int, np.ndarray] = {}
    if grads and root.data.size == 1 and root._requires_grad:
        if any(t._ctx.released for t in order):
            # backward() ran and freed the graph: draw the gradients it left in .grad.
            for t in walk_graph(root):
                if t.grad is not None:
                    found[id(t)] = t.grad.data
        else:
            found = gradients(root)

    def label(array: Any, tensor: Tensor | None) -> str:
        grad = found.get(id(tensor)) if tensor is not None else None
        return edge_label(np.shape(array), array if values else None, grad, max_elements)

    nodes: list[Node] = []
    edges: list[Edge] = []
    producer: dict[int, str] = {}  # id(tensor) -> the node that makes it
    for t in order:
        producer[id(t)] = f"op{len(producer)}"
    inputs = 0

    def input_node(text: str) -> str:
        nonlocal inputs
        node_id = f"in{inputs}"
        inputs += 1
        nodes.append((node_id, text, "input"))
        return node_id

    for t in order:
        op_id = producer[id(t)]
        # The lectures draw the arithmetic gates with their symbols (Function.symbol).
        fn = t._ctx.fn
        nodes.append((op_id, fn.symbol or fn.display_name(), "op"))
        for parent in t._ctx.parents:
            if parent is None:
                continue
            if isinstance(parent, Tensor):
                src = producer.get(id(parent))
                if src is None:  # a leaf: one node however many ops read it
                    src = input_node(parent.name or "input")
                    producer[id(parent)] = src
                edges.append((src, op_id, label(parent.data, parent)))
            else:
                # A constant operand (1.0 in 1 / (1 + e), the labels of a loss).
                text = format_array(parent) if np.size(parent) == 1 else "constant"
                edges.append((input_node(text), op_id, label(parent, None)))

    out_id = "out"
    nodes.append((out_id, root.name or "output", "output"))
    if root._ctx is None:
        src = input_node(root.name or "input")
    else:
        src = producer[id(root)]
    edges.append((src, out_id, label(root.data, root)))
    return nodes, edges


def _quote(text: str) -> str:
    """A DOT double-quoted string (node ids and labels): backslashes and quotes escaped, so
    DOT's own escapes like \\l cannot be triggered by a label; newlines as centered breaks."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text}"'


def _html_label(text: str) -> str:
    """A DOT HTML-like label with one line per line of `text`; "value ..." lines green and
    "grad ..." lines red, the lectures' colors. XML-escaped, so any text is safe."""
    rows = []
    for line in str(text).splitlines() or [""]:
        escaped = html.escape(line, quote=True)
        color = _LINE_COLORS.get(line.split(" ", 1)[0])
        rows.append(f'<font color="{color}">{escaped}</font>' if color else escaped)
    return "<" + "<br/>".join(rows) + ">"


def _check_format(fmt: str, path: Path | None = None) -> str:
    if fmt not in FORMATS:
        where = f" (from {path})" if path is not None else ""
        raise ValueError(f"viz: cannot render format {fmt!r}{where}; use one of {FORMATS}")
    return fmt


def _dot_program() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "viz: the Graphviz `dot` program is not installed (Debian/Ubuntu: "
            "`apt-get install graphviz`; macOS: `brew install graphviz`); the DOT text is in "
            "`.source`"
        )
    return dot
