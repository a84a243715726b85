"""Backpropagation by hand: the lecture's circuits, annotated value/gradient at every node.

    python examples/backprop_by_hand.py

Each line shows a node of the graph in forward order: the op that made it, its forward value
(green on the slides) and the gradient of the output with respect to it (red on the slides).
"""

from __future__ import annotations

import numpy as np

import minidl
from minidl.graph import walk_graph


def show(title: str, out: minidl.Tensor, names: dict[int, str]) -> None:
    """Run backward from `out`, then print every node with its value and gradient."""
    nodes = list(walk_graph(out))
    for t in nodes:
        if not t.is_leaf:
            t.retain_grad()
    out.backward()
    print(title)
    for t in nodes:
        op = "input" if t.is_leaf else t.grad_fn.fn.__name__.lower()
        name = names.get(id(t), "")
        value = np.array2string(t.data, precision=3, suppress_small=True)
        grad = np.array2string(t.grad.data, precision=3, suppress_small=True)
        print(f"  {name:>6} {op:<8} value {value:<22} grad {grad}")
    print()


def add_mul_circuit(x: float, y: float, z: float) -> None:
    tx, ty, tz = (minidl.tensor(v, dtype=np.float64, requires_grad=True) for v in (x, y, z))
    q = tx + ty
    f = q * tz
    show(f"f(x, y, z) = (x + y) z at x={x}, y={y}, z={z}",
         f, {id(tx): "x", id(ty): "y", id(tz): "z", id(q): "q", id(f): "f"})


def sigmoid_neuron() -> None:
    w = [minidl.tensor(v, dtype=np.float64, requires_grad=True) for v in (2.0, -3.0, -3.0)]
    x = [minidl.tensor(v, dtype=np.float64, requires_grad=True) for v in (-1.0, -2.0)]
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1.0 + (-dot).exp())
    names = {id(w[0]): "w0", id(w[1]): "w1", id(w[2]): "w2", id(x[0]): "x0", id(x[1]): "x1",
             id(dot): "dot", id(f): "f"}
    show("f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w=(2,-3,-3), x=(-1,-2)", f, names)


def mean_subtraction() -> None:
    x = minidl.tensor([1.0, 2.0, 6.0], dtype=np.float64, requires_grad=True)
    h = x - x.mean()
    upstream = np.array([1.0, 0.0, -2.0])
    h.backward(upstream)
    print("h = x - mean(x): the backward pass subtracts the mean from the upstream gradient")
    print(f"  upstream {upstream}  ->  dL/dx {x.grad.data}  (= upstream - mean(upstream))")


def main() -> None:
    add_mul_circuit(-2.0, 5.0, -4.0)
    add_mul_circuit(1.0, -3.0, 4.0)
    sigmoid_neuron()
    mean_subtraction()


if __name__ == "__main__":
    main()
