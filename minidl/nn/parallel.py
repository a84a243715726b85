"""DistributedDataParallel: the same model on every rank, gradients averaged over the ranks.

    dist.init_process_group(backend="mpi")
    ddp = nn.parallel.DistributedDataParallel(model)
    loss = F.cross_entropy(ddp(images), labels)   # each rank: its own shard of the batch
    loss.backward()                              # buckets allreduced while backward runs
    optimizer.step()                             # every rank holds the averaged gradient

Fast mode (default). At wrap time the ranks compare parameter names, shapes and dtypes, then
rank 0's parameters and buffers are broadcast to all and a checksum confirms every rank holds
the same model. Gradients are grouped into fused buckets (parameters in reverse registration
order, which is roughly the order backward finishes them; the first bucket `first_bucket_mb`,
the others up to `bucket_mb`). A parameter's post-accumulate-grad hook marks it ready; a
bucket whose gradients are all ready is copied into one flat buffer and its non-blocking
allreduce starts, in bucket order (every rank posts the same collectives in the same order),
while backward goes on with the earlier layers. When the last bucket has started, backward's
last hook waits for all of them and writes gradient sum / world_size back into each .grad, so
optimizer.step() sees the average. This works for eager backward and for minidl.compile
training steps (both run the hooks). The result is bitwise reproducible for a fixed number of
ranks (MPI's allreduce is), and equal to one process within float rounding.

Reproducible mode (reproducible=True): N processes at global batch B give bitwise the same
weights as one process at batch B, for every N whose local batch B / N is a multiple of
`chunk_size`. See `chunked_backward`.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from minidl import distributed as dist
from minidl.distributed import DistributedError
from minidl.nn.layers import Dropout, _BatchNorm
from minidl.nn.module import Module
from minidl.tensor import Tensor


class _Bucket:
    """Parameters whose gradients travel in one allreduce, and the flat buffer they share."""

    def __init__(self, params: list, dtype: np.dtype) -> None:
        self.params = params
        self.offsets = np.cumsum([0] + [p.data.size for p in params])
        self.flat = np.zeros(int(self.offsets[-1]), dtype=dtype)
        self.pending = len(params)
        self.work: dist.Work | None = None

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over the default process group.

    module: the model (same architecture on every rank).
    reproducible: False -> bucketed allreduce overlapped with backward; True -> gradients
        combined in a fixed global chunk order (use `chunked_backward`).
    bucket_mb, first_bucket_mb: bucket capacities in MB (fast mode).
    chunk_size: samples per chunk in reproducible mode.
    Raises RuntimeError if the process group is not initialized, DistributedError (on every
    rank) when the ranks' models differ, ValueError for modules reproducible mode cannot make
    reproducible (BatchNorm, Dropout: they mix samples or draw random numbers per batch).
    """

    def __init__(self, module: Module, reproducible: bool = False, bucket_mb: float = 25.0,
                 first_bucket_mb: float = 1.0, chunk_size: int = 8) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: call "
                               "minidl.distributed.init_process_group() first")
        if not bucket_mb > 0 or not first_bucket_mb > 0:
            raise ValueError("DistributedDataParallel: bucket sizes must be > 0 MB")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"DistributedDataParallel: chunk_size must be an int >= 1, "
                             f"got {chunk_size!r}")
        self.module = module
        self.reproducible = bool(reproducible)
        self.chunk_size = chunk_size
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        if self.reproducible:
            _check_reproducible(module)
        self._check_same_model()
        for t in self._state_tensors():
            dist.broadcast(t, src=0)
        self._check_same_values()
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._buckets = self._make_buckets(first_bucket_mb, bucket_mb)
        self._where = {id(p): (b, k) for b, bucket in enumerate(self._buckets)
                       for k, p in enumerate(bucket.params)}
        self._ready: set[int] = set()
        self._next_bucket = 0
        self._sync = True
        self._in_chunked_backward = False
        self._batch_checks: list = []
        self._last_batch: int | None = None
        self.stats = {"steps": 0, "wait_seconds": 0.0, "copy_seconds": 0.0}
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready)
                         for p in self._params]

    # -- wrap-time checks -------------------------------------------------------------------
    def _state_tensors(self) -> list[Tensor]:
        return list(self.module.parameters()) + [b for b in self.module.buffers()
                                                 if b is not None]

    def _check_same_model(self) -> None:
        mine = [(name, tuple(t.shape), str(t.dtype)) for name, t in
                list(self.module.named_parameters()) + list(self.module.named_buffers())]
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        for r, theirs in enumerate(everyone):
            if theirs == everyone[0]:
                continue
            detail = _first_difference(everyone[0], theirs)
            raise DistributedError(
                f"DistributedDataParallel (rank {self.rank}): rank {r}'s model differs from "
                f"rank 0's: {detail}; every rank must build the same model"
            )

    def _check_same_values(self) -> None:
        crc = 0
        for t in self._state_tensors():
            crc = zlib.crc32(t.data.tobytes(), crc)
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, crc)
        bad = [r for r, c in enumerate(everyone) if c != everyone[0]]
        if bad:
            raise DistributedError(
                f"DistributedDataParallel (rank {self.rank}): after broadcasting rank 0's "
                f"parameters, ranks {bad} hold different values (checksum mismatch)"
            )

    def _make_buckets(self, first_mb: float, rest_mb: float) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        by_dtype: dict = {}
        for p in reversed(self._params):
            # The first bucket (the last layers, ready first) is small so that its allreduce
            # starts early; it stays the cap until that bucket closes.
            cap = (first_mb if not buckets else rest_mb) * 2**20
            current = by_dtype.get(p.dtype)
            if current is not None and sum(q.data.nbytes for q in current) + p.data.nbytes > cap:
                buckets.append(_Bucket(current, p.dtype))
                current = None
            if current is None:
                current = by_dtype[p.dtype] = []
            current.append(p)
        for dtype, params in by_dtype.items():
            if params and not any(params is b.params for b in buckets):
                buckets.append(_Bucket(params, dtype))
        return buckets

    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes per bucket, in launch order."""
        return [b.nbytes for b in self._buckets]

    # -- forward ----------------------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """module(*inputs); in training mode also starts a check that every rank's batch
        (first dimension of the first input) has the same size, completed before the
        gradients are averaged. In a compiled step this runs when a signature is traced."""
        if self.training and inputs and hasattr(inputs[0], "shape") and inputs[0].shape:
            self._finish_batch_checks()
            n = int(inputs[0].shape[0])
            self._last_batch = n
            sizes = np.array([n, -n], dtype=np.int64)
            work = dist.all_reduce(sizes, op=dist.ReduceOp.MAX, async_op=True)
            self._batch_checks.append((work, sizes, n))
        return self.module(*inputs, **kwargs)

    def _finish_batch_checks(self) -> None:
        checks, self._batch_checks = self._batch_checks, []
        for work, sizes, n in checks:
            work.wait()
            largest, smallest = int(sizes[0]), -int(sizes[1])
            if largest != smallest:
                raise DistributedError(
                    f"DistributedDataParallel (rank {self.rank}): the ranks' batch sizes differ "
                    f"(this rank {n}, smallest {smallest}, largest {largest}); give every rank "
                    "the same number of samples per step (DistributedSampler does)"
                )

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside: backward accumulates local gradients without communicating (gradient
        accumulation); the first backward after it averages the accumulated sums."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    # -- fast mode: bucketed allreduce from the hooks ----------------------------------------
    def _grad_ready(self, p: Tensor) -> None:
        if self.reproducible:
            if not self._in_chunked_backward:
                raise RuntimeError(
                    "DistributedDataParallel(reproducible=True): gradients must come from "
                    "ddp.chunked_backward(step, *batch), not from loss.backward()"
                )
            return
        if not self._sync:
            return
        key = id(p)
        if key in self._ready:
            names = [n for n, q in self.module.named_parameters()
                     if id(q) not in self._ready and q.requires_grad]
            raise DistributedError(
                f"DistributedDataParallel (rank {self.rank}): a new backward started before "
                f"the previous one reduced every gradient; parameters without a gradient in "
                f"it: {names}. Every parameter must take part in the loss"
            )
        self._ready.add(key)
        b, _ = self._where[key]
        self._buckets[b].pending -= 1
        # Buckets start strictly in order, so every rank posts the same sequence.
        while (self._next_bucket < len(self._buckets)
               and self._buckets[self._next_bucket].pending == 0):
            self._launch(self._buckets[self._next_bucket])
            self._next_bucket += 1
        if self._next_bucket == len(self._buckets):
            self._finish()

    def _launch(self, bucket: _Bucket) -> None:
        t0 = time.perf_counter()
        for p, start, stop in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
            bucket.flat[start:stop] = p.grad.data.reshape(-1)
        self.stats["copy_seconds"] += time.perf_counter() - t0
        bucket.work = dist.all_reduce(bucket.flat, async_op=True)

    def _finish(self) -> None:
        t0 = time.perf_counter()
        self._finish_batch_checks()
        for bucket in self._buckets:
            bucket.work.wait()
        t1 = time.perf_counter()
        for bucket in self._buckets:
            bucket.flat /= bucket.flat.dtype.type(self.world_size)
            for p, start, stop in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
                p.grad.data[...] = bucket.flat[start:stop].reshape(p.shape)
            bucket.pending = len(bucket.params)
            bucket.work = None
        self._ready.clear()
        self._next_bucket = 0
        self.stats["steps"] += 1
        self.stats["wait_seconds"] += t1 - t0
        self.stats["copy_seconds"] += time.perf_counter() - t1

    # -- reproducible mode -------------------------------------------------------------------
    def chunked_backward(self, step: Callable, *batch: Any) -> Tensor:
        """Reproducible mode's backward: the global mean-loss gradient, combined in a fixed
        order that does not depend on the number of ranks; returns the global mean loss.

        step(*chunk) -> loss: runs forward and backward on one chunk of `chunk_size` samples
            with a mean-reduced loss (an eager function calling loss.backward(), or a
            minidl.compile training step compiled at batch chunk_size).
        batch: this rank's contiguous slice of the global batch (rank r holds samples
            r * n .. (r + 1) * n - 1, n the local batch; DistributedSampler(contiguous=True)),
            each Tensor or array with the batch first; n must be a multiple of chunk_size and
            the same on every rank.

        How: the slice is cut into chunks of chunk_size samples; each chunk's gradient is
        computed on its own (the same computation, at the same batch size, whichever rank
        holds it), the ranks all-gather every chunk's gradient and loss, and every rank adds
        them up in global chunk order, then divides by the number of chunks. The gradient is
        added to any existing .grad. Cost against the fast mode: steps run at batch chunk_size
        (more per-op overhead), and the all-gather moves (chunks per rank) x (parameters)
        values per rank instead of an allreduce of the parameters, with no overlap.
        """
        if not self.reproducible:
            raise RuntimeError("chunked_backward: wrap the model with reproducible=True")
        if not batch:
            raise ValueError("chunked_backward: give the batch tensors (inputs, targets)")
        n = int(batch[0].shape[0])
        for t in batch:
            if int(t.shape[0]) != n:
                raise ValueError(f"chunked_backward: batch tensors have different lengths "
                                 f"({[int(t.shape[0]) for t in batch]})")
        sizes = np.array([n, -n], dtype=np.int64)
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
        if int(sizes[0]) != -int(sizes[1]):
            raise DistributedError(
                f"chunked_backward (rank {self.rank}): the ranks' local batch sizes differ "
                f"(this rank {n}, smallest {-int(sizes[1])}, largest {int(sizes[0])})"
            )
        c = self.chunk_size
        if n == 0 or n % c:
            raise ValueError(f"chunked_backward: the local batch ({n} samples) must be a "
                             f"positive multiple of chunk_size={c}")
        dtypes = {p.dtype for p in self._params}
        if len(dtypes) != 1:
            raise TypeError(f"chunked_backward: parameters of one dtype needed, got {dtypes}")
        dtype = dtypes.pop()
        offsets = np.cumsum([0] + [p.data.size for p in self._params])
        n_chunks = n // c
        partial = np.zeros((n_chunks, int(offsets[-1]) + 1), dtype=dtype)
        before = [p.grad for p in self._params]
        self._in_chunked_backward = True
        try:
            for j in range(n_chunks):
                for p in self._params:
                    p.grad = None
                loss = step(*(t[j * c : (j + 1) * c] for t in batch))
                for p, start, stop in zip(self._params, offsets[:-1], offsets[1:]):
                    if p.grad is not None:
                        partial[j, start:stop] = p.grad.data.reshape(-1)
                partial[j, -1] = loss.item() if isinstance(loss, Tensor) else float(loss)
        finally:
            self._in_chunked_backward = False
        t0 = time.perf_counter()
        gathered = np.empty((self.world_size,) + partial.shape, dtype=dtype)
        dist.all_gather_into_tensor(gathered, partial)
        self.stats["wait_seconds"] += time.perf_counter() - t0
        chunks = gathered.reshape(-1, partial.shape[1])
        total = chunks[0].copy()
        for row in chunks[1:]:
            total += row
        total /= dtype.type(len(chunks))
        for p, old, start, stop in zip(self._params, before, offsets[:-1], offsets[1:]):
            g = total[start:stop].reshape(p.shape)
            p.grad = Tensor._wrap(g.copy() if old is None else old.data + g, False)
        self.stats["steps"] += 1
        return Tensor._wrap(np.asarray(total[-1]), False)

def _first_difference(reference: list, other: list) -> str:
    for k in range(max(len(reference), len(other))):
        a = reference[k] if k < len(reference) else None
        b = other[k] if k < len(other) else None
        if a != b:
            return f"entry {k}: rank 0 has {a}, it has {b}"
    return "same entries"


def _check_reproducible(module: Module) -> None:
    for name, m in module.named_modules():
        if isinstance(m, _BatchNorm):
            raise ValueError(
                f"DistributedDataParallel(reproducible=True): {name or 'the model'} is a "
                "BatchNorm layer, whose batch statistics mix the samples of a batch; chunked "
                "gradients cannot reproduce them. Use reproducible=False"
            )
        if isinstance(m, Dropout) and m.p > 0:
            raise ValueError(
                f"DistributedDataParallel(reproducible=True): {name or 'the model'} is a "
                "Dropout layer, whose random masks depend on which rank draws them. Use "
                "reproducible=False or Dropout(p=0)"
            )
