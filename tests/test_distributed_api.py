"""minidl.distributed without a running group: import needs no mpi4py, clear errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minidl
import minidl.distributed as dist
from minidl import nn


def test_importing_needs_no_mpi4py_and_init_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import minidl.distributed as dist\n"
        "assert not dist.is_available() and not dist.is_initialized()\n"
        "try:\n"
        "    dist.init_process_group()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    package_parent = str(Path(minidl.__file__).resolve().parents[1])
    # cwd and PYTHONPATH: the minidl under test, not an unbuilt source tree in the cwd.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=package_parent))
    assert "pip install 'minidl[mpi]'" in result.stdout


def test_rank_before_init_raises():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(minidl.zeros(3))


def test_ddp_before_init_raises():
    with pytest.raises(RuntimeError, match="init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_init_rejects_other_backends():
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group(backend="nccl")


class _Comm:
    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 3


class _NeverDone:
    def Test(self) -> bool:
        return False


def test_a_wait_names_the_ranks_of_this_machine_that_ended(monkeypatch):
    """A launcher that leaves the other ranks running (srun without --kill-on-bad-exit) must
    not leave them waiting for the group timeout: a wait notices within PEER_CHECK_SECONDS that
    a rank on its machine has ended, a zombie (killed, not yet reaped) included, and names it
    and the collective."""
    from minidl.distributed import process_group as pg

    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    reaped.wait()
    zombie = subprocess.Popen(["sleep", "60"])
    zombie.send_signal(signal.SIGKILL)
    time.sleep(0.2)  # killed, never waited for
    alive = subprocess.Popen(["sleep", "60"])
    try:
        g = pg._Group(_Comm(), timeout=30.0)
        g.local_peers = [(1, zombie.pid), (2, reaped.pid), (4, alive.pid)]
        monkeypatch.setattr(pg, "_group", g)
        start = time.monotonic()
        with pytest.raises(dist.DistributedError) as caught:
            pg.Work(_NeverDone(), "all_reduce of (5,) float32").wait()
        assert time.monotonic() - start < 5
        assert str(caught.value) == (
            f"rank 0: rank 1 of 3 (pid {zombie.pid}), rank 2 of 3 (pid {reaped.pid}) ended "
            "(killed by a signal or exited) while this rank waited in all_reduce of (5,) float32")
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()
