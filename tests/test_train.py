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


# -- ResNet-20 recipes ----------------------------------------------------------------------
def test_recipe_defaults_depend_on_model_and_dataset():
    from minidl.train import apply_recipe, build_parser

    lenet = apply_recipe(build_parser().parse_args([]))
    assert (lenet.epochs, lenet.batch_size, lenet.lr, lenet.checkpoint) == (
        5, 64, 0.05, "checkpoints/lenet.ckpt")
    resnet = apply_recipe(build_parser().parse_args(["--model", "resnet20"]))
    assert (resnet.epochs, resnet.batch_size, resnet.lr, resnet.weight_decay) == (3, 128, 0.1, 5e-4)
    assert resnet.checkpoint == "checkpoints/resnet20-mnist.ckpt"
    cifar = apply_recipe(build_parser().parse_args(["--model", "resnet20", "--dataset", "cifar10",
                                                    "--lr", "0.05"]))
    assert (cifar.epochs, cifar.lr) == (30, 0.05)
    with pytest.raises(SystemExit):
        run(["--model", "lenet5", "--dataset", "cifar10"])


def test_resnet_on_mnist_gets_padded_single_channel_inputs():
    from minidl.train import apply_recipe, build_parser, load_data

    args = apply_recipe(build_parser().parse_args(["--model", "resnet20"]))
    train_set, _, train_tf, test_tf, channels = load_data(args)
    raw = train_set.get_batch(np.arange(4))[0]  # (4, 1, 28, 28) uint8, as the loader sees
    batch = train_tf(raw)
    assert channels == 1 and batch.shape == (4, 1, 32, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[:, :, :2], -0.1307 / 0.3081, rtol=1e-6)  # background
    np.testing.assert_array_equal(test_tf(raw), batch)  # no augmentation


def test_resnet_trains_on_cifar10_files(tmp_path):
    from test_cifar import dataset_class, make_members, write_archive

    cls = dataset_class(write_archive(tmp_path / "cifar-10-binary.tar.gz", make_members()[0]))
    cls(tmp_path)  # verify and extract the synthetic archive (its MD5 is not the official one)
    metrics = run(["--model", "resnet20", "--dataset", "cifar10", "--data-root", str(tmp_path),
                   "--epochs", "1", "--batch-size", "8", "--no-progress",
                   "--checkpoint", str(tmp_path / "r.ckpt")])
    assert 0.0 <= metrics["test_acc"] <= 1.0 and np.isfinite(metrics["train_loss"])
    state = minidl.load(tmp_path / "r.ckpt")
    assert state["model"]["fc.weight"].shape == (10, 64)
