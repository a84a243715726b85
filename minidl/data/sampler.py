"""Samplers: which dataset indices a DataLoader visits, in which order (torch.utils.data's).

A sampler is an iterable of indices with a length; BatchSampler groups another sampler's
indices into lists. Random samplers draw from their `generator` (a minidl.Generator) or, without
one, from minidl's global generator when iterated, so `minidl.manual_seed` reproduces them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from minidl.random import numpy_rng


class Sampler:
    """Base class: subclasses define __iter__ (indices) and usually __len__."""

    def __init__(self, data_source: Any = None) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A new permutation each iteration; with replacement=True, num_samples independent draws."""

    def __init__(self, data_source: Any, replacement: bool = False,
                 num_samples: int | None = None, generator: Any = None) -> None:
        super().__init__(data_source)
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.generator = generator
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples must be a positive int, got "
                             f"{num_samples!r}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def indices(self) -> np.ndarray:
        """This iteration's indices as one int64 array (the DataLoader's batched path)."""
        n = len(self.data_source)
        rng = numpy_rng(self.generator)
        if self.replacement:
            return rng.integers(0, n, size=self.num_samples, dtype=np.int64)
        reps = -(-self.num_samples // n) if n else 0
        order = np.concatenate([rng.permutation(n) for _ in range(reps)] or [np.arange(0)])
        return order[: self.num_samples].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each iteration."""

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        super().__init__(None)
        self.indices_ = np.asarray(indices, dtype=np.int64)
        self.generator = generator

    def indices(self) -> np.ndarray:
        return self.indices_[numpy_rng(self.generator).permutation(len(self.indices_))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices_)


class WeightedRandomSampler(Sampler):
    """num_samples indices drawn with probabilities proportional to `weights`."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator: Any = None) -> None:
        super().__init__(None)
        w = np.asarray(getattr(weights, "data", weights), dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or (
                w.sum() <= 0):
            raise ValueError("WeightedRandomSampler: weights must be a non-empty 1-d sequence of "
                             "non-negative finite numbers with a positive sum")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError("WeightedRandomSampler: num_samples exceeds the non-zero weights "
                             "with replacement=False")
        self.weights, self.num_samples = w, int(num_samples)
        self.replacement, self.generator = bool(replacement), generator

    def indices(self) -> np.ndarray:
        return numpy_rng(self.generator).choice(
            len(self.weights), size=self.num_samples, replace=self.replacement,
            p=self.weights / self.weights.sum()).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of batch_size indices from `sampler` (the last one shorter unless drop_last)."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool) -> None:
        super().__init__(None)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchSampler: batch_size must be a positive int, got "
                             f"{batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, bool(drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(int(i))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
