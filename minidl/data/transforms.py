"""Image transforms in the style of torchvision.transforms, for minidl's channel-first images.

Every transform takes one image (C, H, W) or a batch (N, C, H, W), as a NumPy array or a minidl
Tensor, and returns the same kind (ToTensor always returns a Tensor). A batch is a stack of
independent samples: random transforms draw one crop offset / flip decision per image, all
at once (vectorized), where torchvision given a 4-d tensor would apply one draw to the whole
batch. So the same transform serves a per-sample Dataset (`transform=` of a dataset) and the
DataLoader's batched path (`DataLoader(..., transform=...)`, applied to each gathered batch).

Randomness comes from `minidl.random.generator()` unless a `numpy.random.Generator` is
passed as `generator`: `minidl.manual_seed(s)` reproduces every augmentation of a run, and a
checkpoint's `minidl.get_rng_state()` resumes them.

Layout: minidl's datasets hold images channel-first already, so ToTensor scales and converts
but does not transpose (torchvision's ToTensor also moves a (H, W, C) array's channels first).

    train = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
                     Normalize(CIFAR10.MEAN, CIFAR10.STD)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from minidl import random as _random
from minidl.tensor import Tensor, from_numpy

__all__ = ["Compose", "Normalize", "Pad", "RandomCrop", "RandomHorizontalFlip", "ToTensor"]


def _unwrap(name: str, image: Any) -> tuple[np.ndarray, bool]:
    """(array, was_tensor) for a (C, H, W) or (N, C, H, W) image or batch."""
    was_tensor = isinstance(image, Tensor)
    array = image.data if was_tensor else np.asarray(image)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected an image (C, H, W) or a batch (N, C, H, W), got shape {array.shape}"
        )
    return array, was_tensor


def _wrap(array: np.ndarray, as_tensor: bool) -> Any:
    # from_numpy keeps the dtype (a uint8 batch stays uint8), unlike the Tensor constructor.
    return from_numpy(np.ascontiguousarray(array)) if as_tensor else array


def _pair(name: str, what: str, value: Any) -> tuple[int, int]:
    """(height, width) from an int or a pair of positive ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{name}: {what} must be a positive int or (h, w), got {value!r}")
    return int(pair[0]), int(pair[1])


def _padding(name: str, padding: Any) -> tuple[int, int, int, int]:
    """torchvision's padding forms as (left, top, right, bottom): int, (lr, tb), or 4 ints."""
    p = (padding,) if isinstance(padding, (int, np.integer)) else tuple(padding)
    if len(p) not in (1, 2, 4) or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in p):
        raise ValueError(
            f"{name}: padding must be a non-negative int or a sequence of 2 or 4 of them, got "
            f"{padding!r}"
        )
    if len(p) == 1:
        return (int(p[0]),) * 4
    if len(p) == 2:
        return int(p[0]), int(p[1]), int(p[0]), int(p[1])
    return int(p[0]), int(p[1]), int(p[2]), int(p[3])


_PAD_MODES = {
    "constant": "constant",
    "edge": "edge",
    "reflect": "reflect",
    "symmetric": "symmetric",
}


def _pad_array(name: str, array: np.ndarray, ltrb: tuple, fill: float, mode: str) -> np.ndarray:
    left, top, right, bottom = ltrb
    if not any(ltrb):
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
    if mode == "constant":
        return np.pad(array, widths, mode="constant", constant_values=fill)
    if mode == "reflect" and (
        max(top, bottom) >= array.shape[-2] or max(left, right) >= array.shape[-1]
    ):
        raise ValueError(
            f"{name}: reflect padding {ltrb} must be smaller than the image {array.shape[-2:]}"
        )
    return np.pad(array, widths, mode=_PAD_MODES[mode])


class Compose:
    """Apply transforms in order: Compose([t1, t2])(x) == t2(t1(x))."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def __call__(self, image: Any) -> Any:
        for t in self.transforms:
            image = t(image)
        return image

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class ToTensor:
    """uint8 images in [0, 255] -> float32 Tensor in [0, 1]; float images -> float32 as they
    are (torchvision's rule). (C, H, W) or (N, C, H, W), not transposed (see the module)."""

    def __call__(self, image: Any) -> Tensor:
        array, _ = _unwrap("ToTensor", image)
        if array.dtype == np.uint8:
            out = np.multiply(array, np.float32(1.0 / 255.0), dtype=np.float32)
        elif np.issubdtype(array.dtype, np.floating):
            out = array.astype(np.float32)
        else:
            raise TypeError(f"ToTensor: expected uint8 or float images, got {array.dtype}")
        return from_numpy(np.ascontiguousarray(out))

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """(image - mean[c]) / std[c] per channel c (axis -3). mean, std: one value per channel
    (or one for all); the image must be float (apply ToTensor first). Output keeps its float
    dtype. Raises ValueError for a zero std or a channel-count mismatch."""

    def __init__(
        self, mean: Sequence[float] | float, std: Sequence[float] | float, inplace: bool = False
    ) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError("Normalize: mean and std must be scalars or 1-d sequences")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std {self.std.tolist()} contains a zero")
        self.inplace = inplace

    def __call__(self, image: Any) -> Any:
        array, was_tensor = _unwrap("Normalize", image)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(
                f"Normalize: expected a float image (apply ToTensor first), got {array.dtype}"
            )
        channels = array.shape[-3]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, channels):
                raise ValueError(
                    f"Normalize: {name} has {v.size} values but the image of shape "
                    f"{array.shape} has {channels} channels"
                )
        shape = (-1, 1, 1)
        scale = (1.0 / self.std).astype(array.dtype).reshape(shape)
        shift = (self.mean / self.std).astype(array.dtype).reshape(shape)
        out = array if self.inplace and array.flags.writeable else array.copy()
        out *= scale
        out -= shift
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class Pad:
    """Pad the borders: padding int (all sides), (left/right, top/bottom) or (left, top,
    right, bottom); padding_mode 'constant' (with `fill`), 'edge', 'reflect' or 'symmetric'."""

    def __init__(self, padding: Any, fill: float = 0, padding_mode: str = "constant") -> None:
        self.padding = _padding("Pad", padding)
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"Pad: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}"
            )
        self.fill, self.padding_mode = fill, padding_mode

    def __call__(self, image: Any) -> Any:
        array, was_tensor = _unwrap("Pad", image)
        return _wrap(
            _pad_array("Pad", array, self.padding, self.fill, self.padding_mode), was_tensor
        )

    def __repr__(self) -> str:
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode})"


class RandomCrop:
    """Crop a random size = (h, w) window, after optional padding (torchvision's arguments).

    The window's top-left corner is uniform over every position that fits, drawn per image.
    pad_if_needed pads an image smaller than `size` up to it. Raises ValueError when the
    (padded) image is smaller than `size`.
    """

    def __init__(
        self,
        size: Any,
        padding: Any = None,
        pad_if_needed: bool = False,
        fill: float = 0,
        padding_mode: str = "constant",
        generator: np.random.Generator | None = None,
    ) -> None:
        self.size = _pair("RandomCrop", "size", size)
        self.padding = None if padding is None else _padding("RandomCrop", padding)
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, "
                f"got {padding_mode!r}"
            )
        self.pad_if_needed, self.fill, self.padding_mode = pad_if_needed, fill, padding_mode
        self.generator = generator

    def __call__(self, image: Any) -> Any:
        array, was_tensor = _unwrap("RandomCrop", image)
        if self.padding is not None:
            array = _pad_array("RandomCrop", array, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        if self.pad_if_needed:
            dh, dw = max(th - array.shape[-2], 0), max(tw - array.shape[-1], 0)
            array = _pad_array("RandomCrop", array, (dw, dh, dw, dh), self.fill, self.padding_mode)
        h, w = array.shape[-2:]
        if h < th or w < tw:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the (padded) image ({h}, {w})"
            )
        gen = self.generator if self.generator is not None else _random.generator()
        if array.ndim == 3:
            i, j = int(gen.integers(0, h - th + 1)), int(gen.integers(0, w - tw + 1))
            return _wrap(array[:, i : i + th, j : j + tw].copy(), was_tensor)
        n = array.shape[0]
        rows = gen.integers(0, h - th + 1, size=n)
        cols = gen.integers(0, w - tw + 1, size=n)
        # One gather for the whole batch: a (N, C, h - th + 1, w - tw + 1, th, tw) view of
        # every window, indexed by each image's corner.
        windows = np.lib.stride_tricks.sliding_window_view(array, (th, tw), axis=(2, 3))
        return _wrap(windows[np.arange(n), :, rows, cols], was_tensor)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability p, decided per image."""

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p, self.generator = float(p), generator

    def __call__(self, image: Any) -> Any:
        array, was_tensor = _unwrap("RandomHorizontalFlip", image)
        gen = self.generator if self.generator is not None else _random.generator()
        if array.ndim == 3:
            flip = gen.random() < self.p
            return _wrap(array[..., ::-1].copy() if flip else array, was_tensor)
        flip = gen.random(array.shape[0]) < self.p
        out = array.copy()
        out[flip] = array[flip][..., ::-1]
        return _wrap(out, was_tensor)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"
