"""minidl.distributed without a running group: import needs no mpi4py, clear errors."""

import os
import subprocess
import sys
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
