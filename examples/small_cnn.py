"""A small CNN on synthetic oriented bars: which way does the bar in the image point?

Four classes (horizontal, vertical, diagonal, anti-diagonal), 16x16 images with a bar of
random position and length under Gaussian noise. A fully connected net must learn every
position separately; convolution shares one detector per orientation across the image.
Deterministic from the seed, no downloads, well under a minute:

    python examples/small_cnn.py
"""

from __future__ import annotations

import argparse

import numpy as np

import minidl
from minidl import nn, optim
from minidl.optim import lr_scheduler

SIZE = 16
CLASSES = ("horizontal", "vertical", "diagonal", "anti-diagonal")
DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # (row step, column step) per class


def bars(n: int, rng: np.random.Generator, noise: float = 0.35):
    """n images (n, 1, SIZE, SIZE) float32 and their labels (n,) int64."""
    x = rng.normal(0.0, noise, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, len(CLASSES), n)
    for i in range(n):
        dr, dc = DIRECTIONS[y[i]]
        length = rng.integers(5, 10)
        # A start point from which the whole bar stays inside the image.
        r0 = rng.integers(0, SIZE - dr * (length - 1))
        c_low = (length - 1) if dc < 0 else 0
        c0 = rng.integers(c_low, SIZE - max(dc, 0) * (length - 1))
        steps = np.arange(length)
        x[i, 0, r0 + dr * steps, c0 + dc * steps] += 1.0
    return x, y.astype(np.int64)


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),                    # 4x4
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 4 * 4, len(CLASSES)),
    )


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with minidl.no_grad():
        predictions = np.concatenate([
            model(minidl.tensor(x[i:i + 500])).numpy().argmax(axis=1)
            for i in range(0, len(x), 500)
        ])
    return float((predictions == y).mean())


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    # Keep freed blocks in the heap (minidl.threads.tune_malloc; import minidl leaves it).
    minidl.threads.tune_malloc()

    minidl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = bars(4000, rng)
    x_test, y_test = bars(1000, rng)

    model = make_model()
    print(model)
    optimizer = optim.Adam(model.parameters(), lr=3e-3)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, epochs=args.epochs,
                                        steps_per_epoch=steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = minidl.random.generator().permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(minidl.tensor(x_train[idx])), y_train[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch}  loss {total / len(x_train):.4f}  "
              f"test accuracy {accuracy(model, x_test, y_test):.1%}")

    final = accuracy(model, x_test, y_test)
    print(f"final test accuracy: {final:.1%}")
    return final


if __name__ == "__main__":
    main()
