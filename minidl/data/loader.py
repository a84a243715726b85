"""DataLoader: batches of Tensors from a Dataset, shuffled reproducibly, resumable mid-epoch."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from minidl import random as _random
from minidl.data.dataset import stack_samples
from minidl.tensor import Tensor, from_numpy


class DataLoader:
    """Iterate over `dataset` in batches; each batch is a tuple of Tensors, batch axis first.

    dataset: a Dataset (its `get_batch` gathers a batch, by fancy indexing for TensorDataset and
        MNIST) or any object with `__len__`/`__getitem__` (samples fetched and stacked).
    batch_size: samples per batch (>= 1); the last batch is smaller unless `drop_last`.
    shuffle: a new permutation every epoch. Epoch e's permutation depends only on
        (seed, e), so a run is reproducible and a resumed run sees the same permutations.
    seed: int >= 0; None draws one from `minidl.random.generator()` at construction, so
        `minidl.random.manual_seed(s)` before building the loader reproduces the run.
    transform: applied to the first field's batch array (e.g. `MNIST.normalize` to turn
        uint8 images into float32) before it is wrapped in a Tensor.
    sampler: an object giving the indices of an epoch instead of shuffle (e.g. a
        DistributedSampler: the loader asks it for epoch e's indices, `epoch_indices(e)`, so
        a resumed run sees the same ones; any other iterable of indices is iterated).

    Each `iter(loader)` starts the next epoch, except right after `load_state_dict` of a
    mid-epoch state, where it finishes that epoch. The position advances as batches are
    yielded, so `state_dict()` inside a training loop records the batch just received as done.
    Raises ValueError/TypeError for invalid arguments.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        sampler: Any = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if seed is not None:
            if isinstance(seed, bool):
                raise TypeError(f"DataLoader: seed must be an int or None, got {seed!r}")
            seed = operator.index(seed)
            if seed < 0:
                raise ValueError(f"DataLoader: seed must be >= 0, got {seed}")
        elif shuffle:
            seed = int(_random.generator().integers(0, 2**63))
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.transform = transform
        self.sampler = sampler
        self._epoch = 0  # the epoch the next batch belongs to
        self._batch = 0  # batches of that epoch already yielded
        self._resume_pending = False

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    @property
    def epoch(self) -> int:
        """Index of the epoch in progress, or of the next one if none is in progress."""
        return self._epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample indices of `epoch` in the order the loader visits them (int64)."""
        if self.sampler is not None:
            if hasattr(self.sampler, "epoch_indices"):
                return self.sampler.epoch_indices(epoch)
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        # A stream per epoch, keyed by (seed, epoch): no generator state to carry between
        # epochs, and any epoch's order can be rebuilt on resume.
        seq = np.random.SeedSequence(self.seed, spawn_key=(epoch,))
        return np.random.Generator(np.random.PCG64(seq)).permutation(n)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if self._batch > 0 and not self._resume_pending:
            # The previous iteration was abandoned mid-epoch: start a fresh epoch.
            self._epoch += 1
            self._batch = 0
        self._resume_pending = False
        return self._iterate(self._epoch, self._batch)

    def _iterate(self, epoch: int, start: int) -> Iterator[tuple[Tensor, ...]]:
        order = self.epoch_order(epoch)
        n_batches = len(self)
        for b in range(start, n_batches):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            fields = self._gather(indices)
            self._batch = b + 1
            yield fields
        self._epoch = epoch + 1
        self._batch = 0

    def _gather(self, indices: np.ndarray) -> tuple[Tensor, ...]:
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None:
            fields = tuple(get_batch(indices))
        else:
            fields = stack_samples(self.dataset, indices)
        if self.transform is not None:
            fields = (self.transform(fields[0]),) + fields[1:]
        return tuple(from_numpy(np.ascontiguousarray(f)) for f in fields)

    def state_dict(self) -> dict:
        """The loader's position, plain ints and bools (checkpoint-safe).

        keys: seed, epoch, batch (batches of `epoch` already yielded), and the settings a
        resume must match: num_samples, batch_size, shuffle, drop_last.
        """
        return {
            "seed": self.seed,
            "epoch": self._epoch,
            "batch": self._batch,
            "num_samples": len(self.dataset) if self.sampler is None else len(self.sampler),
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`; the next iteration continues from that position.

        Raises ValueError if the state is malformed or was saved with a different dataset
        size, batch size, shuffle or drop_last setting.
        """
        required = ("seed", "epoch", "batch", "num_samples", "batch_size", "shuffle", "drop_last")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: missing keys {missing}")
        current = self.state_dict()
        for key in ("num_samples", "batch_size", "shuffle", "drop_last"):
            if state[key] != current[key]:
                raise ValueError(
                    f"DataLoader.load_state_dict: state has {key}={state[key]!r}, "
                    f"this loader has {current[key]!r}"
                )
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= len(self):
            raise ValueError(
                f"DataLoader.load_state_dict: invalid position epoch={epoch}, batch={batch} "
                f"for {len(self)} batches per epoch"
            )
        if batch == len(self):
            epoch, batch = epoch + 1, 0
        self.seed = None if state["seed"] is None else int(state["seed"])
        self._epoch, self._batch = epoch, batch
        self._resume_pending = batch > 0
