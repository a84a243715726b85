"""Classify digits with a checkpoint written by minidl-train (examples/train_lenet.py).

    python examples/predict.py checkpoints/lenet.ckpt --index 0 1 2     # MNIST test images
    python examples/predict.py checkpoints/lenet.ckpt --random 5 --seed 1
    python examples/predict.py checkpoints/lenet.ckpt --file digit.png  # 28x28 grayscale PNG
    python examples/predict.py checkpoints/lenet.ckpt --file digits.npy # (28, 28) or (N, 28, 28)

Prints the top classes with their softmax probabilities for each image (and, for test-set
images, the true label). PNG files need Pillow (matplotlib installs it); a dark digit on a light
background (a scan, a drawing) is inverted to MNIST's white-on-black. .npy files are taken as
MNIST-style already: uint8 in 0..255, or floats in 0..1 (scaled to 0..255) or 0..255.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import minidl
from minidl import nn
from minidl.data import MNIST
from minidl.nn import functional as F
from minidl.train import MODELS

SIDE = 28


@dataclass
class Prediction:
    """One image's result: where it came from, its true label if known, and the top classes
    as (class, probability) pairs, most likely first."""

    source: str
    label: int | None
    top: list[tuple[int, float]]


def load_model(path: str | Path) -> tuple[nn.Module, str]:
    """The model saved in a minidl-train checkpoint, in eval mode, and its name ("lenet5")."""
    state = minidl.load(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a minidl-train checkpoint (no 'model' entry)")
    name = state.get("args", {}).get("model", "lenet5")
    if name not in MODELS:
        raise ValueError(f"{path}: unknown model {name!r}; expected one of {sorted(MODELS)}")
    model = MODELS[name]()
    model.load_state_dict(state["model"])
    return model.eval(), name


def load_png(path: str | Path) -> np.ndarray:
    """A 28x28 PNG as uint8 (28, 28), white digit on black (light backgrounds inverted).

    Raises ImportError when Pillow is not installed and ValueError for another size.
    """
    gray = _read_gray(Path(path))
    if gray.shape != (SIDE, SIDE):
        raise ValueError(
            f"{path}: image is {gray.shape[1]}x{gray.shape[0]} pixels, expected {SIDE}x{SIDE} "
            "(MNIST's size: resize it first)"
        )
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() >= 128:
        gray = 255 - gray
    return gray


def _read_gray(path: Path) -> np.ndarray:
    """Grayscale pixels of an image file as uint8 (H, W), read with Pillow. (matplotlib reads
    PNGs through Pillow too, a dependency of it, so it is no fallback.)"""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            f"reading {path} needs Pillow (pip install pillow; matplotlib brings it too), or "
            "save the digits as a .npy array instead"
        ) from None
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def load_npy(path: str | Path) -> np.ndarray:
    """Digits from a .npy file as float32 (N, 28, 28) in 0..255.

    Accepts (28, 28), (N, 28, 28) or (N, 1, 28, 28) of uint8 (0..255) or floats (0..1 or
    0..255); raises ValueError otherwise.
    """
    array = np.load(path, allow_pickle=False)
    if (
        array.shape[-2:] != (SIDE, SIDE)
        or array.ndim not in (2, 3, 4)
        or (array.ndim == 4 and array.shape[1] != 1)
    ):
        raise ValueError(
            f"{path}: array of shape {array.shape}; expected (28, 28), (N, 28, 28) or "
            "(N, 1, 28, 28)"
        )
    if array.dtype == np.uint8:
        images = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        images = array.astype(np.float32)
        if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 255:
            raise ValueError(f"{path}: pixel values must lie in 0..1 or 0..255")
        if images.max() <= 1.0:
            images *= 255.0
    else:
        raise ValueError(f"{path}: dtype {array.dtype} is not a pixel type (uint8 or float)")
    return images.reshape(-1, SIDE, SIDE)


def classify(model: nn.Module, images: np.ndarray, k: int = 3) -> list[list[tuple[int, float]]]:
    """Top-k (class, probability) for each image.  images: (N, 28, 28) in 0..255."""
    x = minidl.from_numpy(MNIST.normalize(images.reshape(-1, 1, SIDE, SIDE)))
    with minidl.no_grad():
        probs = F.softmax(model(x), dim=1).data
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(int(c), float(p[c])) for c in row] for row, p in zip(order, probs)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="written by minidl-train --checkpoint")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--index", type=int, nargs="+", help="MNIST test-set image numbers")
    what.add_argument("--random", type=int, metavar="K", help="K random test-set images")
    what.add_argument("--file", nargs="+", help=".png (28x28 grayscale) or .npy files")
    p.add_argument("--seed", type=int, default=None, help="for --random")
    p.add_argument("--top", type=int, default=3, help="classes to show per image")
    p.add_argument("--data-root", default=None, help="folder holding mnist/ (default: search)")
    return p


def gather(args: argparse.Namespace) -> tuple[np.ndarray, list[str], list[int | None]]:
    """The images the arguments name: (N, 28, 28) in 0..255, a source string and the true
    label (None when unknown) for each."""
    if args.file:
        batches, sources = [], []
        for name in args.file:
            suffix = Path(name).suffix.lower()
            if suffix == ".png":
                batch = load_png(name)[None].astype(np.float32)
            elif suffix == ".npy":
                batch = load_npy(name)
            else:
                raise SystemExit(f"{name}: expected a .png or .npy file")
            batches.append(batch)
            sources += [name] if len(batch) == 1 else [f"{name}[{i}]" for i in range(len(batch))]
        return np.concatenate(batches), sources, [None] * len(sources)
    test_set = MNIST(args.data_root, train=False)
    n = len(test_set)
    if args.random is not None:
        if not 1 <= args.random <= n:
            raise SystemExit(f"--random: expected 1..{n}, got {args.random}")
        indices = np.random.default_rng(args.seed).choice(n, size=args.random, replace=False)
    else:
        indices = np.asarray(args.index)
        bad = [int(i) for i in indices if not 0 <= i < n]
        if bad:
            raise SystemExit(f"--index: the test set has images 0..{n - 1}, got {bad}")
    images = test_set.data.numpy()[indices].astype(np.float32)
    labels = [int(test_set.targets[i]) for i in indices]
    return images, [f"test #{i}" for i in indices], labels


def main(argv: list[str] | None = None) -> list[Prediction]:
    """Run the command line; returns the predictions (also printed)."""
    args = build_parser().parse_args(argv)
    if args.top < 1:
        raise SystemExit("--top: expected at least 1")
    try:
        model, name = load_model(args.checkpoint)
        images, sources, labels = gather(args)
    except (OSError, ImportError, ValueError, RuntimeError) as e:
        # Missing files, no image library, bad shapes, a checkpoint of another model: one line.
        raise SystemExit(f"predict: {e}") from None
    results = [
        Prediction(source, label, top)
        for source, label, top in zip(sources, labels, classify(model, images, args.top))
    ]
    print(f"{name} from {args.checkpoint}: {len(results)} image(s)")
    width = max(len(s) for s in sources)
    for r in results:
        guesses = "  ".join(f"{c}: {100 * p:5.1f}%" for c, p in r.top)
        truth = ""
        if r.label is not None:
            truth = f"  label {r.label} " + ("ok" if r.top[0][0] == r.label else "WRONG")
        print(f"  {r.source:<{width}}  {guesses}{truth}")
    known = [r for r in results if r.label is not None]
    if len(known) > 1:
        right = sum(r.top[0][0] == r.label for r in known)
        print(f"top-1 correct: {right}/{len(known)}")
    return results


if __name__ == "__main__":
    main()
