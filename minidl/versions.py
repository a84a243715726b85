"""Version counters of array buffers: how in-place changes to saved tensors are caught.

Every in-place tensor op bumps the counter of the buffer it writes (the root ndarray that owns
the memory, so a view and its base share one counter, as PyTorch's views share their
storage's). `Context.save_for_backward` records the counters of what it saves and backward
compares them before using the values, raising instead of computing a wrong gradient.
Counters exist only for buffers changed in place; an entry goes when its buffer is freed.
"""

from __future__ import annotations

import weakref

import numpy as np

_counts: dict[int, int] = {}


def root(array: np.ndarray) -> np.ndarray:
    """The ndarray that owns `array`'s memory (itself when it is not a view)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def version(array: np.ndarray) -> int:
    """How many in-place ops have written `array`'s buffer."""
    return _counts.get(id(root(array)), 0)


def bump(array: np.ndarray) -> None:
    """Record one in-place write to `array`'s buffer."""
    owner = root(array)
    key = id(owner)
    if key not in _counts:
        weakref.finalize(owner, _counts.pop, key, None)
        _counts[key] = 0
    _counts[key] += 1


def snapshot(values: tuple) -> tuple:
    """(buffer, version) of each ndarray among `values`, for `check`."""
    out = []
    for v in values:
        if isinstance(v, np.ndarray):
            owner = root(v)
            out.append((owner, _counts.get(id(owner), 0)))
    return tuple(out)


def check(saved: tuple, op: str) -> None:
    """Raise if a buffer recorded by `snapshot` was written in place since."""
    for owner, seen in saved:
        now = _counts.get(id(owner), 0)
        if now != seen:
            raise RuntimeError(
                f"backward: one of the variables needed for gradient computation has been "
                f"modified by an inplace operation: {op} saved a tensor of shape "
                f"{owner.shape} at version {seen}; it is now at version {now}. Use an "
                "out-of-place op (x = x + y instead of x += y) or clone() the tensor first"
            )
