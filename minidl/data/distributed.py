"""DistributedSampler: each rank of a data-parallel job reads its own shard of the dataset."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from minidl.data.sampler import Sampler


class DistributedSampler(Sampler):
    """Sample indices of this rank's shard, the same permutation on every rank per epoch.

    dataset: anything with len().
    num_replicas, rank: default to the process group's world size and rank.
    shuffle: a new permutation per epoch, a function of (seed, epoch) only, so every rank
        draws the same one without communicating; `set_epoch(e)` selects the epoch (the
        DataLoader does it itself when given this sampler).
    seed: int >= 0, the same on every rank.
    drop_last: drop the tail that does not fill every rank; otherwise the permutation is
        padded with its own first indices so that every rank gets the same number (as
        PyTorch does; a few samples then count twice in that epoch).
    batch_size: None -> rank r takes every num_replicas-th index starting at r (PyTorch's
        layout). An int B (the global batch) -> rank r takes the r-th contiguous slice of
        B / num_replicas indices of each global batch of B, the layout
        DistributedDataParallel(reproducible=True) needs: iterate with a DataLoader of
        batch_size B / num_replicas. B must be divisible by num_replicas.
    The shards of one epoch are disjoint (apart from the padding) and together cover the
    dataset. Raises ValueError for invalid arguments.
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 batch_size: int | None = None) -> None:
        if num_replicas is None or rank is None:
            from minidl import distributed as dist

            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        num_replicas, rank, seed = (operator.index(v) for v in (num_replicas, rank, seed))
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, num_replicas), got rank "
                             f"{rank} with num_replicas {num_replicas}")
        if seed < 0:
            raise ValueError(f"DistributedSampler: seed must be >= 0, got {seed}")
        if batch_size is not None:
            batch_size = operator.index(batch_size)
            if batch_size < 1 or batch_size % num_replicas:
                raise ValueError(f"DistributedSampler: batch_size (the global batch) must be a "
                                 f"positive multiple of num_replicas={num_replicas}, got "
                                 f"{batch_size}")
        super().__init__(dataset)
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.batch_size = batch_size
        self.epoch = 0
        n = len(dataset)
        unit = batch_size if batch_size is not None else num_replicas
        self.total_size = n // unit * unit if drop_last else -(-n // unit) * unit
        self.num_samples = self.total_size // num_replicas

    def __len__(self) -> int:
        """Indices this rank gets per epoch."""
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose permutation the next iteration uses (call it before each epoch)."""
        self.epoch = operator.index(epoch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for `epoch`, in order (int64)."""
        n = len(self.dataset)
        if self.shuffle:
            seq = np.random.SeedSequence(self.seed, spawn_key=(epoch,))
            order = np.random.Generator(np.random.PCG64(seq)).permutation(n)
        else:
            order = np.arange(n, dtype=np.int64)
        if self.total_size > n:
            order = np.resize(order, self.total_size)  # repeats the order from its start
        order = order[: self.total_size]
        if self.batch_size is None:
            return order[self.rank :: self.num_replicas].astype(np.int64)
        local = self.batch_size // self.num_replicas
        batches = order.reshape(-1, self.num_replicas, local)
        return batches[:, self.rank, :].reshape(-1).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch).tolist())
