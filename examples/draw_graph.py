"""Draw computational graphs the way the lectures do: the (x + y) z circuit and LeNet-5
(eager, and compiled with its fused ops).

    python examples/draw_graph.py       # graphs/circuit.svg, lenet5.svg, lenet5_compiled.svg
    python examples/draw_graph.py --format png --out-dir /tmp/graphs

Every edge carries the shape of its tensor, and for small tensors the forward value (green) and
the gradient of the output with respect to it (red). Rendering needs Graphviz's `dot` program
(Debian/Ubuntu: apt-get install graphviz); without it the DOT text is printed instead, to paste
into any Graphviz viewer.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import minidl
from minidl import viz
from minidl.models import LeNet5
from minidl.nn import functional as F


def lecture_circuit() -> minidl.Tensor:
    """f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4 (CS231n, lecture 4)."""
    x, y, z = (minidl.tensor(v, dtype=np.float64, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    x.name, y.name, z.name = "x", "y", "z"
    f = (x + y) * z
    f.name = "f"
    return f


def lenet_batch(batch: int) -> tuple[LeNet5, minidl.Tensor, minidl.Tensor]:
    """LeNet-5 with its parameters named as in the model, and a random batch."""
    minidl.manual_seed(0)
    model = LeNet5()
    for name, p in model.named_parameters():
        p.name = name
    images = minidl.randn(batch, 1, 28, 28)
    images.name = "images"
    return model, images, minidl.randint(0, 10, (batch,))


def lenet_loss(batch: int) -> minidl.Tensor:
    """Cross-entropy of LeNet-5 on a random batch: the eager graph."""
    model, images, labels = lenet_batch(batch)
    loss = F.cross_entropy(model(images), labels)
    loss.name = "loss"
    return loss


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="graphs", help="folder for the drawings")
    p.add_argument("--format", choices=viz.FORMATS, default="svg")
    p.add_argument("--batch", type=int, default=2, help="LeNet batch size (shapes on edges)")
    args = p.parse_args(argv)

    model, images, labels = lenet_batch(args.batch)
    compiled = minidl.compile(model, F.cross_entropy, example_inputs=(images, labels))
    graphs = {
        "circuit": viz.graph(lecture_circuit()),
        "lenet5": viz.graph(lenet_loss(args.batch)),
        # The same network after minidl.compile's fusion passes.
        "lenet5_compiled": viz.graph(compiled),
    }
    if shutil.which("dot") is None:
        print("Graphviz `dot` not found (apt-get install graphviz): printing the DOT text.\n")
        for name, g in graphs.items():
            print(f"// {name}\n{g.source}")
        return
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, g in graphs.items():
        print(f"wrote {g.render(out_dir / f'{name}.{args.format}')}")


if __name__ == "__main__":
    main()
