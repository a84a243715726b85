"""Datasets: indexable collections of samples (Dataset, TensorDataset, Subset, ConcatDataset,
random_split), with a batched fast path for the DataLoader."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl.random import numpy_rng


def as_array(value: Any) -> np.ndarray:
    """A NumPy view of `value`: a minidl Tensor's `.data`, or `np.asarray(value)`."""
    # Duck-typed on purpose: this module must not import the Tensor machinery.
    data = getattr(value, "data", None)
    if isinstance(data, np.ndarray) and not isinstance(value, np.ndarray):
        return data
    return np.asarray(value)


def stack_samples(dataset: Any, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """Batch any indexable dataset by fetching samples one by one and stacking each field.

    A sample is a tuple/list of fields (each array-like, Tensor or scalar) or a single field.
    Returns one array per field with the batch as the first axis. Raises ValueError if samples
    disagree on their number of fields or a field's shape.
    """
    samples = [dataset[int(i)] for i in indices]
    if not samples:
        raise ValueError("stack_samples: empty batch")
    if not isinstance(samples[0], (tuple, list)):
        samples = [(s,) for s in samples]
    n_fields = len(samples[0])
    for i, s in zip(indices, samples):
        if not isinstance(s, (tuple, list)) or len(s) != n_fields:
            raise ValueError(
                f"stack_samples: sample {int(i)} has a different structure than sample "
                f"{int(indices[0])} (expected a tuple of {n_fields} fields, got {type(s).__name__})"
            )
    fields = []
    for k in range(n_fields):
        values = [as_array(s[k]) for s in samples]
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise ValueError(
                f"stack_samples: field {k} has different shapes within one batch: {sorted(shapes)}"
            )
        fields.append(np.stack(values))
    return tuple(fields)


class Dataset(ABC):
    """A map-style dataset: `len(ds)` samples, `ds[i]` the i-th (a tuple of fields).

    Subclasses implement `__len__` and `__getitem__`; those holding their data as arrays also
    override `get_batch` so the DataLoader gathers a batch with one fancy index per field.
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Any: ...

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """The samples at `indices` (1-D int array) as one array per field, batch axis first.

        The default fetches and stacks samples one by one (see `stack_samples`).
        """
        return stack_samples(self, indices)


class IterableDataset:
    """A stream of samples: subclasses implement `__iter__` (and `__len__` if they know it).
    The DataLoader batches what the iterator yields, in order (no shuffle or sampler, as in
    PyTorch)."""

    def __iter__(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define __iter__()")


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: `ds[i] == (a[i], b[i], ...)`.

    arrays: NumPy arrays, array-likes or minidl Tensors (their `.data` is used, not copied),
    each with at least one dimension and the same first dimension.
    Raises ValueError if none are given or their first dimensions differ.
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array")
        converted = tuple(as_array(a) for a in arrays)
        for k, a in enumerate(converted):
            if a.ndim == 0:
                raise ValueError(
                    f"TensorDataset: array {k} is a scalar, expected a first dimension"
                )
        lengths = [a.shape[0] for a in converted]
        if len(set(lengths)) > 1:
            shapes = ", ".join(str(a.shape) for a in converted)
            raise ValueError(
                f"TensorDataset: all arrays need the same first dimension, got shapes {shapes}"
            )
        self.arrays = converted

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    @property
    def tensors(self) -> tuple[Any, ...]:
        """The arrays as Tensors sharing their memory (PyTorch's TensorDataset.tensors)."""
        from minidl.tensor import Tensor

        return tuple(Tensor._wrap(a, False) for a in self.arrays)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        """The index-th row of each array, as Tensors (PyTorch's TensorDataset)."""
        from minidl.tensor import tensor

        return tuple(tensor(a[index]) for a in self.arrays)

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(a[indices] for a in self.arrays)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order: `Subset(ds, [3, 1])[0] == ds[3]`."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist")
                                         else indices)]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, (list, tuple)):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.dataset.get_batch(np.asarray(self.indices, dtype=np.int64)[indices])


class ConcatDataset(Dataset):
    """Several datasets one after the other."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ConcatDataset: index {index} is out of range for length {n}")
        index %= n
        k = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k][index - start]


def random_split(dataset: Any, lengths: Sequence[float], generator: Any = None) -> list[Subset]:
    """Split `dataset` into non-overlapping random Subsets of the given lengths, or of the
    given fractions (summing to 1; the remainder goes round-robin to the first splits, as in
    PyTorch). generator: a minidl.Generator, or None for minidl's global generator."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(0 <= f <= 1 for f in lengths) and math.isclose(sum(lengths), 1) and (
            sum(lengths) != n):
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: the lengths sum to {sum(lengths)}, the dataset has {n} samples"
        )
    order = numpy_rng(generator).permutation(n)
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, order[start : start + int(length)].tolist()))
        start += int(length)
    return out
