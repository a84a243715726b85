"""DataLoader: batches of Tensors from a Dataset, shuffled reproducibly, resumable mid-epoch,
optionally fetched by worker processes (torch.utils.data.DataLoader's arguments)."""

from __future__ import annotations

import multiprocessing
import operator
import queue
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from minidl import random as _random
from minidl.data.dataset import Dataset, IterableDataset, Subset
from minidl.tensor import Tensor, from_numpy, tensor


def default_collate(batch: Sequence[Any]) -> Any:
    """Merge a list of samples into a batch, as PyTorch's default_collate: tensors and arrays
    are stacked along a new first dim, Python ints become an int64 tensor, floats a float64
    one, bools a bool one; tuples/lists are collated field by field (giving a list), dicts key
    by key. Raises TypeError for other types and RuntimeError for tensors of unequal shapes."""
    if len(batch) == 0:
        raise ValueError("default_collate: empty batch")
    elem = batch[0]
    if isinstance(elem, (Tensor, np.ndarray)):
        arrays = [b.data if isinstance(b, Tensor) else np.asarray(b) for b in batch]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise RuntimeError(
                f"default_collate: stack expects each tensor to be equal size, got {sorted(shapes)}"
            )
        return from_numpy(np.ascontiguousarray(np.stack(arrays)))
    if isinstance(elem, (bool, np.bool_)):
        return tensor(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, (int, np.integer)):
        return tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, (float, np.floating)):
        return tensor(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([b[key] for b in batch]) for key in elem}
    if isinstance(elem, (tuple, list)):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of "
                               "equal size")
        return [default_collate(list(field)) for field in zip(*batch)]
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        f"found {type(elem).__name__}"
    )


class DataLoader:
    """Iterate over `dataset` in batches of Tensors, batch axis first.

    dataset: a Dataset or any object with `__len__`/`__getitem__`. A dataset with `get_batch`
        and no per-sample `transform` (TensorDataset, MNIST without one) takes the fast path:
        one fancy index per field, a list of Tensors per batch. Other datasets are read
        sample by sample and merged by `collate_fn` (default_collate: a list of Tensors for
        tuple samples, as in PyTorch).
    batch_size: samples per batch (>= 1); the last batch is smaller unless `drop_last`.
    shuffle: a new permutation every epoch. Epoch e's permutation depends only on
        (seed, e), so a run is reproducible and a resumed run sees the same permutations.
    seed: int >= 0; None draws one from `minidl.random.generator()` at construction, so
        `minidl.random.manual_seed(s)` before building the loader reproduces the run.
    transform: (minidl's addition) applied to the first field's batch array on the fast path
        (e.g. `MNIST.normalize` to turn uint8 images into float32) before it becomes a Tensor.
    sampler / batch_sampler: where the indices come from instead (PyTorch's rules: sampler
        excludes shuffle; batch_sampler excludes batch_size, shuffle, sampler and drop_last).
        A sampler with `epoch_indices(e)` (DistributedSampler) gives epoch e's indices, so a
        resumed run sees the same ones.
    generator: a minidl.Generator drawing the shuffle permutations (then each epoch draws a
        new one from it, and resuming mid-epoch is not supported).
    num_workers: 0 reads in this process; N > 0 starts N worker processes (fork) that read and
        collate whole batches of the per-sample path (the fast path needs none), prefetching
        `prefetch_factor` batches each; worker_init_fn(worker_id) runs first in each, whose
        minidl RNG is seeded base_seed + worker_id. persistent_workers keeps them between
        epochs; timeout (s, 0 = none) bounds the wait for a batch. A worker's exception is
        raised here with its traceback; a worker that dies raises RuntimeError.
    pin_memory: accepted; a no-op on the CPU. in_order=False allows out-of-order batches,
        which minidl never needs: batches always come in order.
    The parameters are PyTorch's, in its order; seed and transform (minidl's) are
    keyword-only after them.

    Each `iter(loader)` starts the next epoch, except right after `load_state_dict` of a
    mid-epoch state, where it finishes that epoch. The position advances as batches are
    yielded, so `state_dict()` inside a training loop records the batch just received as done.
    Raises ValueError/TypeError for invalid arguments.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if isinstance(dataset, IterableDataset):
            for name, value in (("shuffle", shuffle), ("sampler", sampler),
                                ("batch_sampler", batch_sampler)):
                if value:
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                     f"{name} option, but got {name}={value!r}")
            if num_workers:
                raise NotImplementedError(
                    "DataLoader: num_workers > 0 with an IterableDataset is not supported by "
                    "minidl (each worker would need its own share of the stream); use "
                    "num_workers=0")
        if batch_size is None:
            raise NotImplementedError("DataLoader: batch_size=None (unbatched loading) is not "
                                      "supported by minidl; use batch_size=1")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be a non-negative int, got "
                             f"{num_workers!r}")
        if num_workers == 0 and (persistent_workers or prefetch_factor is not None):
            raise ValueError("DataLoader: persistent_workers and prefetch_factor need "
                             "num_workers > 0")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout must be >= 0, got {timeout}")
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
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.collate_fn = num_workers, collate_fn
        self.pin_memory, self.timeout = bool(pin_memory), float(timeout)
        self.worker_init_fn, self.generator = worker_init_fn, generator
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        self.persistent_workers = bool(persistent_workers)
        self._workers: _WorkerPool | None = None
        self._epoch = 0  # the epoch the next batch belongs to
        self._batch = 0  # batches of that epoch already yielded
        self._resume_pending = False

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
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
                # DistributedSampler: epoch e's indices, rebuilt exactly on resume.
                return np.asarray(self.sampler.epoch_indices(epoch), dtype=np.int64)
            indices = getattr(self.sampler, "indices", None)
            if callable(indices):
                return np.asarray(indices(), dtype=np.int64)
            return np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if self.shuffle and self.generator is not None:
            return _random.numpy_rng(self.generator).permutation(n)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        # A stream per epoch, keyed by (seed, epoch): no generator state to carry between
        # epochs, and any epoch's order can be rebuilt on resume.
        seq = np.random.SeedSequence(self.seed, spawn_key=(epoch,))
        return np.random.Generator(np.random.PCG64(seq)).permutation(n)

    def __iter__(self) -> Iterator[Any]:
        if self._batch > 0 and not self._resume_pending:
            # The previous iteration was abandoned mid-epoch: start a fresh epoch.
            self._epoch += 1
            self._batch = 0
        self._resume_pending = False
        return self._iterate(self._epoch, self._batch)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self.batch_sampler is not None:
            return [np.asarray(b, dtype=np.int64) for b in self.batch_sampler]
        order = self.epoch_order(epoch)
        return [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(len(self))]

    def _fast_path(self) -> bool:
        """Whether batches come from the dataset's own get_batch (TensorDataset, MNIST without
        a transform, Subsets of them) rather than sample by sample."""
        ds = self.dataset
        while isinstance(ds, Subset):
            ds = ds.dataset
        get_batch = getattr(type(ds), "get_batch", None)
        return (self.collate_fn is None and get_batch is not None
                and get_batch is not Dataset.get_batch
                and getattr(ds, "transform", None) is None)

    def _iterate(self, epoch: int, start: int) -> Iterator[Any]:
        if isinstance(self.dataset, IterableDataset):
            yield from self._stream(epoch)
            return
        batches = self._batches(epoch)[start:]
        if self.num_workers and not self._fast_path():
            if self._workers is None:
                self._workers = _WorkerPool(self)
            try:
                results = self._workers.run(batches)
                for b, fields in enumerate(results, start):
                    self._batch = b + 1
                    yield fields
            finally:
                if not self.persistent_workers:
                    self._shutdown_workers()
        else:
            for b, indices in enumerate(batches, start):
                fields = self._gather(indices)
                self._batch = b + 1
                yield fields
        self._epoch = epoch + 1
        self._batch = 0

    def _stream(self, epoch: int) -> Iterator[Any]:
        """An IterableDataset's samples in batches of batch_size, collated (the last one
        shorter unless drop_last)."""
        collate = self.collate_fn or default_collate
        batch: list = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                self._batch += 1
                yield collate(batch)
                batch = []
        if batch and not self.drop_last:
            self._batch += 1
            yield collate(batch)
        self._epoch = epoch + 1
        self._batch = 0

    def _gather(self, indices: np.ndarray) -> Any:
        if not self._fast_path():
            samples = [self.dataset[int(i)] for i in indices]
            return (self.collate_fn or default_collate)(samples)
        fields = tuple(self.dataset.get_batch(indices))
        if self.transform is not None:
            fields = (self.transform(fields[0]),) + fields[1:]
        # A list, as default_collate gives for tuple samples (PyTorch's batches).
        return [from_numpy(np.ascontiguousarray(f)) for f in fields]

    def _shutdown_workers(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def __del__(self) -> None:
        if getattr(self, "_workers", None) is not None:
            self._shutdown_workers()

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
        size, batch size, shuffle or drop_last setting; NotImplementedError for an
        IterableDataset (a stream has no position to return to).
        """
        if isinstance(self.dataset, IterableDataset):
            raise NotImplementedError("DataLoader.load_state_dict: an IterableDataset's "
                                      "position cannot be restored")
        # A sampler with epoch_indices (DistributedSampler) rebuilds any epoch's order.
        resumable_sampler = self.sampler is None or hasattr(self.sampler, "epoch_indices")
        if self.generator is not None or not resumable_sampler or (
                self.batch_sampler is not None):
            raise ValueError("DataLoader.load_state_dict: resuming needs the loader's own seeded "
                             "order or a sampler with epoch_indices (no generator or batch_sampler)")
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


class WorkerInfo:
    """What get_worker_info() returns inside a worker: id, num_workers, seed, dataset."""

    def __init__(self, id: int, num_workers: int, seed: int, dataset: Any) -> None:  # noqa: A002
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's WorkerInfo inside a DataLoader worker process, None in the main one."""
    return _worker_info


def _worker_loop(loader: DataLoader, worker_id: int, base_seed: int, tasks: Any,
                 results: Any) -> None:
    """A worker process: read and collate the batches it is sent until it gets None."""
    from minidl.threads import set_num_threads

    global _worker_info
    # One thread per worker (as PyTorch's workers): N workers already use N cores.
    set_num_threads(1)
    seed = (base_seed + worker_id) % 2**63
    _random.manual_seed(seed)
    _worker_info = WorkerInfo(worker_id, loader.num_workers, seed, loader.dataset)
    try:
        if loader.worker_init_fn is not None:
            loader.worker_init_fn(worker_id)
    except Exception:
        results.put((None, None, traceback.format_exc()))
        return
    while True:
        task = tasks.get()
        if task is None:
            return
        number, indices = task
        try:
            results.put((number, loader._gather(indices), None))
        except Exception:
            results.put((number, None, traceback.format_exc()))


class _WorkerPool:
    """loader.num_workers processes; batches are dealt round-robin and yielded in order."""

    def __init__(self, loader: DataLoader) -> None:
        context = loader.multiprocessing_context
        if context is None or isinstance(context, str):
            context = multiprocessing.get_context(context or "fork")
        self.loader = loader
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(loader.num_workers)]
        base_seed = int(_random.generator().integers(0, 2**62))
        self.processes = []
        for worker_id, tasks in enumerate(self.tasks):
            p = context.Process(target=_worker_loop, daemon=True,
                                args=(loader, worker_id, base_seed, tasks, self.results))
            p.start()
            self.processes.append(p)

    def run(self, batches: list[np.ndarray]) -> Iterator[Any]:
        ahead = self.loader.prefetch_factor * len(self.processes)
        sent = 0
        done: dict[int, Any] = {}
        for number in range(len(batches)):
            while sent < len(batches) and sent < number + ahead:
                self.tasks[sent % len(self.tasks)].put((sent, batches[sent]))
                sent += 1
            while number not in done:
                got, fields, error = self._receive()
                if error is not None:
                    raise RuntimeError(
                        f"DataLoader worker raised an exception (batch {got}):\n{error}")
                done[got] = fields
            yield done.pop(number)

    def _receive(self) -> tuple:
        waited = 0.0
        while True:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                dead = [p.pid for p in self.processes if not p.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"DataLoader worker (pid(s) {dead}) exited unexpectedly") from None
                if self.loader.timeout and waited >= self.loader.timeout:
                    raise RuntimeError(
                        f"DataLoader timed out after {self.loader.timeout} seconds") from None

    def close(self) -> None:
        for tasks, p in zip(self.tasks, self.processes):
            if p.is_alive():
                tasks.put(None)
        for p in self.processes:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
