"""The LeNet training script: checkpoints, resume after Ctrl-C, eager == compiled, threads."""

import os
import signal

import numpy as np
import pytest

import minidl
from minidl import optim
from minidl.train import run

QUICK = ["--epochs", "2", "--limit", "320", "--batch-size", "32", "--no-progress"]


def final_weights(path):
    state = minidl.load(path)
    return {k: np.asarray(v) for k, v in state["model"].items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.ckpt"
    metrics = run(QUICK + ["--checkpoint", str(path)])
    return path, metrics


def test_training_learns_and_writes_checkpoint(reference):
    path, metrics = reference
    assert path.exists()
    state = minidl.load(path)
    assert state["epoch"] == 2 and not state["interrupted"]
    assert len(state["history"]) == 2
    assert metrics["test_acc"] > 0.25  # 320 images, 2 epochs: well above chance (0.1)
    assert state["history"][1]["train_loss"] < state["history"][0]["train_loss"]


def test_eager_and_compiled_training_give_the_same_weights(reference, tmp_path):
    path, _ = reference
    eager = tmp_path / "eager.ckpt"
    run(QUICK + ["--eager", "--checkpoint", str(eager)])
    assert_same_weights(final_weights(eager), final_weights(path))


def test_one_and_two_threads_give_identical_weights(reference, tmp_path):
    path, _ = reference
    n = minidl.get_num_threads()
    one = tmp_path / "one.ckpt"
    try:
        run(QUICK + ["--threads", "1", "--checkpoint", str(one)])
    finally:
        minidl.set_num_threads(n)
    assert_same_weights(final_weights(one), final_weights(path))


def test_ctrl_c_saves_and_resume_continues_bit_for_bit(reference, tmp_path, monkeypatch):
    path, _ = reference
    ckpt = tmp_path / "interrupted.ckpt"
    original_step = optim.SGD.step
    calls = {"n": 0}

    def step_then_interrupt(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 13:  # mid-way through the second epoch (10 batches per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(optim.SGD, "step", step_then_interrupt)
    assert run(QUICK + ["--checkpoint", str(ckpt)]) == {"interrupted": True}
    state = minidl.load(ckpt)
    assert state["interrupted"] and state["epoch"] == 1
    monkeypatch.setattr(optim.SGD, "step", original_step)
    run(QUICK + ["--checkpoint", str(ckpt), "--resume"])
    assert_same_weights(final_weights(ckpt), final_weights(path))
