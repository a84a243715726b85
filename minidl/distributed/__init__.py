"""Data-parallel training across processes and machines, on MPI (through mpi4py).

    mpiexec -n 2 python train.py       # every process runs the same script

    import minidl.distributed as dist
    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = minidl.nn.parallel.DistributedDataParallel(model)

PyTorch's names: init_process_group, is_initialized, get_rank, get_world_size, barrier,
broadcast, all_reduce, all_gather, all_gather_into_tensor, all_gather_object,
destroy_process_group, ReduceOp. Collectives act in place on Tensors and C-contiguous NumPy
arrays; async_op=True returns a Work whose wait() is bounded by the group's timeout.
mpi4py is imported only when the group is initialized (`pip install "minidl[mpi]"`).
"""

from minidl.distributed.process_group import (
    DistributedError,
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)

__all__ = [
    "DistributedError",
    "ReduceOp",
    "Work",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
]
