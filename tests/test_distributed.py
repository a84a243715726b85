"""minidl.distributed and DistributedDataParallel, run under mpiexec from pytest.

Every case starts `mpiexec -n N python tests/distributed_worker.py ...` in a subprocess with
a time limit; skipped when mpi4py or mpiexec is missing. N = 3 and 4 oversubscribe the machine
(MPICH allows it without flags)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minidl

pytest.importorskip("mpi4py", reason="the mpi extra (mpi4py + an MPI) is not installed")
MPIEXEC = shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not on PATH")
WORKER = Path(__file__).with_name("distributed_worker.py")
# The ranks import the minidl this test run imports (installed or in place), not the tree's.
PACKAGE_PARENT = str(Path(minidl.__file__).resolve().parents[1])


def run_mpi(n: int | None, *args: str, timeout: float = 120, check: bool = True
            ) -> subprocess.CompletedProcess:
    """`mpiexec -n n python worker args` (plain python when n is None), one thread per rank."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(WORKER), *args]
    if n is not None:
        command = [MPIEXEC, "-n", str(n), *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def weights(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist")


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_in_place_on_tensors_and_arrays(out, n):
    run_mpi(n, "collectives", "--out", str(out))
    total = n * (n + 1) / 2
    for rank in range(n):
        with np.load(out / f"collectives_{rank}.npz") as r:
            np.testing.assert_array_equal(r["sum"], np.full((2, 3), total, np.float32))
            np.testing.assert_array_equal(r["bcast"], np.arange(5) * n)
            np.testing.assert_array_equal(r["gathered"], np.repeat(np.arange(n), 3).reshape(n, 3))
            assert r["max"][0] == n - 1 and int(r["world"]) == n


def test_threads_per_rank_default_to_cores_over_ranks(out):
    env_free = dict(os.environ)
    env_free.pop("OMP_NUM_THREADS", None)
    from minidl.threads import default_num_threads

    cores = default_num_threads() if "OMP_NUM_THREADS" not in os.environ else None
    if cores is None:
        pytest.skip("OMP_NUM_THREADS is set for the test run")
    command = [MPIEXEC, "-n", "2", sys.executable, str(WORKER), "collectives", "--out", str(out)]
    env_free["PYTHONPATH"] = PACKAGE_PARENT
    subprocess.run(command, check=True, timeout=60, env=env_free, capture_output=True)
    with np.load(out / "collectives_0.npz") as r:
        assert int(r["threads"]) == max(1, cores // 2)


@pytest.fixture(scope="module")
def reproducible_reference(out) -> dict:
    """One process (no mpiexec), reproducible mode, 50 LeNet steps at batch 64."""
    run_mpi(None, "train", "--mode", "reproducible", "--out", str(out))
    return weights(out / "reproducible_n1.npz")


@pytest.mark.parametrize("n, compiled", [(2, False), (2, True), (4, True)])
def test_reproducible_mode_equals_one_process_bitwise(out, reproducible_reference, n, compiled):
    run_mpi(n, "train", "--mode", "reproducible", "--out", str(out),
            *(["--compiled"] if compiled else []))
    got = weights(out / f"reproducible{'_compiled' if compiled else ''}_n{n}.npz")
    assert got.keys() == reproducible_reference.keys()
    for name, ref in reproducible_reference.items():
        np.testing.assert_array_equal(got[name], ref, err_msg=name)


def test_reproducible_mode_is_plain_training_within_rounding(out, reproducible_reference):
    run_mpi(None, "train", "--mode", "single", "--out", str(out))
    plain = weights(out / "single_n1.npz")
    for name, ref in reproducible_reference.items():
        if name != "losses":
            np.testing.assert_allclose(ref, plain[name], rtol=0, atol=2e-5, err_msg=name)
    assert any(not np.array_equal(ref, plain[k]) for k, ref in reproducible_reference.items()
               if k != "losses")


@pytest.mark.parametrize("compiled, bucket_mb", [(False, 25.0), (True, 0.05)])
def test_fast_mode_equals_one_process_within_rounding(out, compiled, bucket_mb):
    (out / "s").mkdir(exist_ok=True)
    run_mpi(None, "train", "--mode", "single", "--steps", "20", "--out", str(out / "s"))
    single = weights(out / "s" / "single_n1.npz")
    result = run_mpi(2, "train", "--mode", "fast", "--steps", "20", "--bucket-mb",
                     str(bucket_mb), "--out", str(out), *(["--compiled"] if compiled else []))
    got = weights(out / f"fast{'_compiled' if compiled else ''}_n2.npz")
    for name, ref in single.items():
        if name != "losses":
            np.testing.assert_allclose(got[name], ref, rtol=0, atol=1e-5, err_msg=name)
    if bucket_mb < 1:
        assert "buckets [44536, 192000, 10288]" in result.stdout


def test_first_bucket_closes_at_first_bucket_mb(out):
    """The first bucket (LeNet's fully connected layers 3, 2 and 1's bias: 44536 bytes, ready
    first) closes at first_bucket_mb and the rest share a bucket_mb bucket; the first bucket
    used to take bucket_mb as its cap after its first parameter (one 246824-byte bucket)."""
    result = run_mpi(2, "train", "--mode", "fast", "--steps", "2", "--bucket-mb", "25",
                     "--first-bucket-mb", "0.1", "--out", str(out))
    assert "buckets [44536, 202288]" in result.stdout, result.stdout


def test_fast_mode_is_bitwise_reproducible_for_a_fixed_rank_count(out):
    run_mpi(2, "train", "--mode", "fast", "--steps", "10", "--out", str(out))
    first = weights(out / "fast_n2.npz")
    run_mpi(2, "train", "--mode", "fast", "--steps", "10", "--out", str(out))
    for name, ref in weights(out / "fast_n2.npz").items():
        np.testing.assert_array_equal(first[name], ref)


def test_no_sync_accumulates_locally_then_averages_the_sums(out):
    run_mpi(2, "no_sync", "--out", str(out))
    for rank in range(2):
        with np.load(out / f"nosync_{rank}.npz") as r:
            np.testing.assert_array_equal(r["first"], r["first_reference"])
            np.testing.assert_allclose(r["synced"], r["reference"], rtol=1e-6, atol=1e-6)
            assert not np.allclose(r["first"], r["synced"])


@pytest.mark.parametrize("what, message", [
    ("model", "rank 1's model differs from rank 0's"),
    ("batch", "the ranks' batch sizes differ"),
])
def test_mismatch_across_ranks_raises_on_every_rank(what, message):
    result = run_mpi(2, "mismatch", "--what", what, timeout=60)
    for rank in range(2):
        assert f"rank {rank} caught:" in result.stdout
    assert result.stdout.count(message) == 2, result.stdout


@pytest.mark.parametrize("fault", ["--kill-at", "--raise-at", "--hang-at"])
def test_a_failing_rank_ends_the_job_quickly(out, fault):
    start = time.monotonic()
    result = run_mpi(3, "train", "--mode", "fast", "--steps", "20", fault, "3", "--timeout", "5",
                     "--out", str(out), timeout=60, check=False)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 30, elapsed
    text = result.stdout + result.stderr
    if fault == "--raise-at":
        assert "rank 2 of 3 failed with RuntimeError: injected failure" in text
    elif fault == "--hang-at":
        assert "did not complete within" in text
    else:
        # MPICH's launcher names the dead process by pid only; minidl names the rank and the
        # collective it last waited in (the gradient bucket's allreduce of that step).
        assert "minidl.distributed: rank 2 of 3 (pid " in text, text
        assert "died without a Python exception" in text
        assert "its last collective: all_reduce of (61706,) float32" in text, text
    # One report: the other ranks' watchers stay quiet when the launcher ends their ranks.
    assert text.count("died without a Python exception") == (fault == "--kill-at"), text

