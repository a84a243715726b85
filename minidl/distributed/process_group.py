"""The process group: one MPI communicator over every rank of the job, and its collectives.

Collectives work in place on Tensors and C-contiguous NumPy arrays through MPI's buffer
protocol (no pickling, no copies). Every wait is bounded by the group's timeout: a rank that
stops taking part (it raised, was killed, or calls a different collective) makes the others
raise DistributedError naming the operation instead of hanging.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import numpy as np

from minidl.distributed import faults
from minidl.tensor import Tensor


class DistributedError(RuntimeError):
    """A collective failed or timed out, or the ranks disagree (models, batch sizes)."""


class ReduceOp:
    """Reduction operations of all_reduce (PyTorch's names)."""

    SUM = "sum"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


_MISSING_MPI = (
    "minidl.distributed needs mpi4py and an MPI library: pip install 'minidl[mpi]' (mpi4py and "
    "the mpich wheel), or mpi4py built against a system MPI; then start with mpiexec -n N ..."
)


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(_MISSING_MPI) from e
    return MPI


class _Group:
    def __init__(self, comm: Any, timeout: float) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        # (rank, pid) of the other ranks on this machine: a wait that outlives one of them
        # names it (MPI itself only tells the launcher, which reports the pid, not the rank).
        self.local_peers: list[tuple[int, int]] = []

    def gone_peers(self) -> list[tuple[int, int]]:
        """(rank, pid) of this machine's other ranks whose process has ended."""
        return [(r, pid) for r, pid in self.local_peers if not _process_alive(pid)]


def _process_alive(pid: int) -> bool:
    """Whether process `pid` still runs: a zombie (killed, not yet reaped by the launcher's
    proxy) counts as ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no procfs (macOS): signal 0 only probes
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _local_peers(MPI: Any, rank: int) -> list[tuple[int, int]]:
    """(rank, pid) of every other rank sharing this machine (collective over COMM_WORLD)."""
    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    table = np.empty((local.Get_size(), 2), dtype=np.int64)
    local.Allgather(np.array([rank, os.getpid()], dtype=np.int64), table)
    local.Free()
    return [(int(r), int(pid)) for r, pid in table if r != rank]


_group: _Group | None = None
DEFAULT_TIMEOUT = 300.0
SPIN_SECONDS = 0.005
# How often a waiting rank checks that the other ranks on its machine still run.
PEER_CHECK_SECONDS = 0.02


def init_process_group(backend: str = "mpi", timeout: float | None = None,
                       set_threads: bool = True) -> None:
    """Join the job started by `mpiexec -n N`: every process becomes one rank of a group of N.

    backend: "mpi" (the only one; mpi4py over the MPI library found at run time).
    timeout: seconds any collective may wait before raising DistributedError (default 300, or
        MINIDL_DIST_TIMEOUT); a datetime.timedelta is accepted too.
    set_threads: when OMP_NUM_THREADS is not set, give each rank cores // (ranks on this
        machine) kernel threads (at least 1): MPICH does not pin processes, and N ranks with
        all cores each would oversubscribe the machine.
    Also installs an exception hook that aborts the whole job when a rank dies of an uncaught
    exception, so the other ranks never wait for it (see minidl.distributed.faults).
    Raises RuntimeError if already initialized, ValueError for another backend, ImportError
    with install instructions when mpi4py is missing.
    """
    global _group
    if backend != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi', got {backend!r}")
    if _group is not None:
        raise RuntimeError("init_process_group: the default process group is already initialized")
    if timeout is None:
        timeout = float(os.environ.get("MINIDL_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    elif hasattr(timeout, "total_seconds"):
        timeout = timeout.total_seconds()
    if not timeout > 0:
        raise ValueError(f"init_process_group: timeout must be > 0 seconds, got {timeout!r}")
    MPI = _mpi()
    if not MPI.Is_initialized():
        MPI.Init()
    # A private communicator: collectives of user code on COMM_WORLD cannot match ours.
    g = _Group(MPI.COMM_WORLD.Dup(), float(timeout))
    g.local_peers = _local_peers(MPI, g.rank)
    # A name for this job, the same on every rank: rank 0's pid and start time.
    job = np.array([os.getpid(), time.time_ns() // 10**6], dtype=np.int64)
    MPI.COMM_WORLD.Bcast(job, root=0)
    _group = g
    faults.install(g.rank, g.size, f"{job[0]}-{job[1]}")
    if set_threads and not os.environ.get("OMP_NUM_THREADS"):
        from minidl import threads

        on_this_machine = len(g.local_peers) + 1
        threads.set_num_threads(max(1, threads.default_num_threads() // on_this_machine))


def is_available() -> bool:
    """Whether mpi4py can be imported."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


def is_initialized() -> bool:
    return _group is not None


def group() -> _Group:
    if _group is None:
        raise RuntimeError(
            "minidl.distributed: call init_process_group() first (and start the script with "
            "mpiexec -n N)"
        )
    return _group


def get_rank() -> int:
    """This process's rank, 0 .. world_size - 1."""
    return group().rank


def get_world_size() -> int:
    return group().size


def destroy_process_group() -> None:
    """Leave the group (collective: every rank calls it). init_process_group may follow."""
    global _group
    if _group is None:
        return
    barrier()
    _group.comm.Free()
    _group = None


class Work:
    """A collective in flight (async_op=True); `wait()` completes it."""

    def __init__(self, request: Any, what: str, done: Any = None) -> None:
        self.request = request
        self.what = what
        self.done = done
        self.finished = False

    def is_completed(self) -> bool:
        if not self.finished and self.request.Test():
            self._finish()
        return self.finished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the collective completes; DistributedError after `timeout` seconds
        (default: the group's)."""
        if self.finished:
            return True
        g = group()
        limit = g.timeout if timeout is None else timeout
        start = checked = time.monotonic()
        pause = 0.0
        faults.note(self.what)
        while not self.request.Test():
            now = time.monotonic()
            if now - start > limit:
                raise DistributedError(
                    f"rank {g.rank}: {self.what} did not complete within {limit:g} s; another "
                    "rank failed, was killed, or is not calling the same collective"
                )
            if now - checked > PEER_CHECK_SECONDS:
                checked = now
                gone = g.gone_peers()
                if gone:
                    names = ", ".join(f"rank {r} of {g.size} (pid {pid})" for r, pid in gone)
                    raise DistributedError(
                        f"rank {g.rank}: {names} ended (killed by a signal or exited) while "
                        f"this rank waited in {self.what}"
                    )
            # Spin for the first SPIN_SECONDS (a step's allreduce takes microseconds to a few
            # milliseconds, and MPI progresses inside Test), then back off to sleeps of up to
            # 1 ms so that a long wait does not hold a core the other ranks could use.
            if now - start > SPIN_SECONDS:
                pause = min(2 * pause or 5e-5, 1e-3)
                time.sleep(pause)
        self._finish()
        return True

    def _finish(self) -> None:
        self.finished = True
        if self.done is not None:
            self.done()


def _buffer(x: Any, op: str) -> np.ndarray:
    array = x.data if isinstance(x, Tensor) else x
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{op}: expected a Tensor or a NumPy array, got {type(x).__name__}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"{op}: the array must be C-contiguous and writeable (it is updated in "
                         f"place); got shape {array.shape} with strides {array.strides}")
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{op}: unsupported dtype {array.dtype}")
    return array


def _mpi_op(op: str) -> Any:
    MPI = _mpi()
    table = {ReduceOp.SUM: MPI.SUM, ReduceOp.MAX: MPI.MAX, ReduceOp.MIN: MPI.MIN,
             ReduceOp.PRODUCT: MPI.PROD}
    if op not in table:
        raise ValueError(f"all_reduce: op must be one of {sorted(table)}, got {op!r}")
    return table[op]


def _run(request: Any, what: str, async_op: bool, done: Any = None) -> Work | None:
    work = Work(request, what, done)
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor: Any, op: str = ReduceOp.SUM, async_op: bool = False) -> Work | None:
    """Reduce `tensor` (Tensor or array) over all ranks; every rank gets the result in place.
    For a fixed number of ranks the result is bitwise reproducible (MPI's fixed algorithm);
    its summation order depends on the number of ranks."""
    buf = _buffer(tensor, "all_reduce")
    comm = group().comm  # before MPI: without a group the error names init_process_group
    request = comm.Iallreduce(_mpi().IN_PLACE, buf, _mpi_op(op))
    return _run(request, f"all_reduce of {buf.shape} {buf.dtype}", async_op)


def broadcast(tensor: Any, src: int = 0, async_op: bool = False) -> Work | None:
    """Copy rank `src`'s `tensor` into every rank's `tensor` (same shape and dtype), in place."""
    buf = _buffer(tensor, "broadcast")
    g = group()
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {g.size}), got {src}")
    request = g.comm.Ibcast(buf, root=src)
    return _run(request, f"broadcast of {buf.shape} {buf.dtype} from rank {src}", async_op)


def all_gather(tensor_list: list, tensor: Any, async_op: bool = False) -> Work | None:
    """tensor_list[r] <- rank r's `tensor`, on every rank. tensor_list: world_size Tensors or
    arrays of tensor's shape and dtype (written in place)."""
    g = group()
    src = _buffer(tensor, "all_gather")
    if len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list needs {g.size} entries (one per rank), "
                         f"got {len(tensor_list)}")
    outs = [_buffer(t, "all_gather") for t in tensor_list]
    for o in outs:
        if o.shape != src.shape or o.dtype != src.dtype:
            raise ValueError(f"all_gather: every output must have shape {src.shape} and dtype "
                             f"{src.dtype}, got {o.shape} {o.dtype}")
    gathered = np.empty((g.size,) + src.shape, dtype=src.dtype)
    request = g.comm.Iallgather(src, gathered)

    def scatter_back() -> None:
        for o, part in zip(outs, gathered):
            o[...] = part

    return _run(request, f"all_gather of {src.shape} {src.dtype}", async_op, scatter_back)


def all_gather_into_tensor(out: Any, tensor: Any, async_op: bool = False) -> Work | None:
    """out[r] <- rank r's `tensor`, on every rank; out: (world_size, *tensor.shape), one
    contiguous Tensor or array."""
    g = group()
    src = _buffer(tensor, "all_gather_into_tensor")
    dst = _buffer(out, "all_gather_into_tensor")
    if dst.shape != (g.size,) + src.shape or dst.dtype != src.dtype:
        raise ValueError(f"all_gather_into_tensor: out must have shape {(g.size,) + src.shape} and dtype "
                         f"{src.dtype}, got {dst.shape} {dst.dtype}")
    request = g.comm.Iallgather(src, dst)
    return _run(request, f"all_gather of {src.shape} {src.dtype}", async_op)


def barrier(async_op: bool = False) -> Work | None:
    """Wait until every rank has reached the barrier."""
    return _run(group().comm.Ibarrier(), "barrier", async_op)


def all_gather_object(object_list: list, obj: Any) -> None:
    """object_list[r] <- rank r's picklable `obj` (small metadata: shapes, checksums)."""
    g = group()
    if len(object_list) != g.size:
        raise ValueError(f"all_gather_object: object_list needs {g.size} entries, "
                         f"got {len(object_list)}")
    payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
    sizes = np.zeros(g.size, dtype=np.int64)
    all_gather_into_tensor(sizes, np.array(payload.size, dtype=np.int64))
    data = np.zeros(int(sizes.sum()), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    request = g.comm.Iallgatherv(payload, [data, sizes, offsets, _mpi().BYTE])
    _run(request, "all_gather_object", False)
    for r, (o, n) in enumerate(zip(offsets, sizes)):
        object_list[r] = pickle.loads(data[o : o + n].tobytes())
