"""A 2-layer MLP on the lectures' synthetic spiral (3 interleaved arms, 2-D points).

A linear classifier reaches about 50% here; one hidden ReLU layer of 100 units separates the
arms. Deterministic from the seed, no downloads:

    python examples/mlp_spiral.py
"""

from __future__ import annotations

import argparse

import numpy as np

import minidl
from minidl import nn, optim


def spiral(points_per_class: int, classes: int, rng: np.random.Generator):
    """The CS231n spiral: arm k sweeps angles 4k..4(k+1) with radius 0..1, plus angle noise."""
    n = points_per_class * classes
    x = np.zeros((n, 2), dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    for k in range(classes):
        rows = slice(points_per_class * k, points_per_class * (k + 1))
        radius = np.linspace(0.0, 1, points_per_class)
        theta = np.linspace(k * 4, (k + 1) * 4, points_per_class)
        theta += rng.standard_normal(points_per_class) * 0.2
        x[rows] = np.c_[radius * np.sin(theta), radius * np.cos(theta)]
        y[rows] = k
    return x, y


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    # Keep freed blocks in the heap (minidl.threads.tune_malloc; import minidl leaves it).
    minidl.threads.tune_malloc()

    minidl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_np, y = spiral(100, 3, rng)
    x = minidl.tensor(x_np)
    # Held out: the same arms with fresh angle noise.
    x_test, y_test = spiral(100, 3, rng)

    model = nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 3))
    print(model)
    # Full-batch training; weight_decay is the lectures' L2 regularization (0.5 * reg * W^2
    # has gradient reg * W).
    optimizer = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(args.steps + 1):
        optimizer.zero_grad()
        scores = model(x)
        loss = loss_fn(scores, y)
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            accuracy = (scores.numpy().argmax(axis=1) == y).mean()
            print(f"step {step:5d}  loss {loss.item():.4f}  training accuracy {accuracy:.1%}")

    model.eval()
    with minidl.no_grad():
        train_accuracy = float((model(x).numpy().argmax(axis=1) == y).mean())
        accuracy = float((model(minidl.tensor(x_test)).numpy().argmax(axis=1) == y_test).mean())
    print(f"final accuracy: training {train_accuracy:.1%}, held-out {accuracy:.1%}")
    return accuracy


if __name__ == "__main__":
    main()
