"""`mpiexec -n N minidl-train --distributed`: reproducible across rank counts, Ctrl-C on every
rank then --resume continues bit for bit, rank-0-only output."""

from __future__ import annotations

import os
import shutil
import signal
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
ROOT = Path(__file__).resolve().parents[1]
# The ranks import the minidl this test run imports (installed or in place), not the tree's.
PACKAGE_PARENT = str(Path(minidl.__file__).resolve().parents[1])


def command(n: int, checkpoint: Path, *extra: str) -> list[str]:
    return [MPIEXEC, "-n", str(n), sys.executable, "-m", "minidl.train", "--distributed",
            "--no-progress", "--data-root", str(ROOT / "data"), "--checkpoint", str(checkpoint),
            "--plot", str(checkpoint.with_suffix(".png")), *extra]


def environment() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]))


def train(n: int, checkpoint: Path, *extra: str) -> str:
    # cwd: not the source tree, whose minidl/ (maybe unbuilt) would shadow the tested one.
    result = subprocess.run(command(n, checkpoint, *extra), capture_output=True, text=True,
                            timeout=300, env=environment(), cwd=checkpoint.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def model_state(checkpoint: Path) -> dict:
    return {k: v.data for k, v in minidl.load(checkpoint)["model"].items()}


def test_reproducible_training_gives_the_same_weights_on_1_and_2_ranks(tmp_path):
    common = ("--reproducible", "--limit", "1024", "--epochs", "1")
    one = train(1, tmp_path / "one.ckpt", *common)
    two = train(2, tmp_path / "two.ckpt", *common)
    assert "2 ranks x 32 images per step, reproducible" in two
    # Rank-0-only logging: one line per epoch, not one per rank.
    assert two.count("epoch 1:") == 1 and one.count("epoch 1:") == 1
    a, b = model_state(tmp_path / "one.ckpt"), model_state(tmp_path / "two.ckpt")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_interrupted_on_every_rank_then_resumed_equals_an_uninterrupted_run(tmp_path):
    # The interrupt must land inside epoch 2: at 8192 images an epoch (0.55 s) could end
    # before mpiexec forwarded the SIGINT to the ranks.
    common = ("--limit", "32768", "--epochs", "2")
    train(2, tmp_path / "full.ckpt", *common)
    checkpoint = tmp_path / "cut.ckpt"
    log = tmp_path / "cut.log"
    with open(log, "w") as out:
        job = subprocess.Popen(command(2, checkpoint, *common), stdout=out,
                               stderr=subprocess.STDOUT, env=environment(), cwd=tmp_path)
        deadline = time.monotonic() + 240
        while "epoch 1:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        job.send_signal(signal.SIGINT)
        job.wait(timeout=120)
    text = log.read_text()
    assert "interrupted: checkpoint saved" in text, text
    state = minidl.load(checkpoint)
    assert state["interrupted"] and state["args"]["world_size"] == 2
    resumed = train(2, checkpoint, *common, "--resume")
    assert "resumed from" in resumed and "(mid-epoch)" in resumed
    a, b = model_state(tmp_path / "full.ckpt"), model_state(checkpoint)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_with_another_rank_count_is_refused(tmp_path):
    checkpoint = tmp_path / "c.ckpt"
    train(2, checkpoint, "--limit", "256", "--epochs", "1")
    result = subprocess.run(command(1, checkpoint, "--limit", "256", "--epochs", "2",
                                    "--resume"), capture_output=True, text=True, timeout=120,
                            env=environment(), cwd=tmp_path)
    assert result.returncode != 0
    assert "written by a run on 2 process(es)" in result.stdout + result.stderr
