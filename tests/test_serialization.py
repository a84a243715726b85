"""Checkpoints: round trips, bit-for-bit resumed training, atomic writes, damaged files."""

import json
import os
import zipfile

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.optim import lr_scheduler
from minidl.serialization import CheckpointError


def test_round_trip_of_nested_values(tmp_path):
    obj = {
        "arrays": [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False]),
                   np.array(7, dtype=np.int64), np.zeros((0, 3), dtype=np.uint8),
                   np.array(["ab", "ü"])],
        "scalars": (np.float64(0.1), np.int32(-3), 2**100, -0.0, float("inf"), float("nan")),
        3: {"nested": None, "flag": True, "text": "héllo", "x": 0.1 + 0.2},
        "tensor": minidl.tensor([1.5, -2.0], requires_grad=True),
        "param": nn.Parameter(np.ones((2, 2))),
    }
    path = tmp_path / "state.ckpt"
    minidl.save(obj, path)
    out = minidl.load(path)
    assert list(out) == ["arrays", "scalars", 3, "tensor", "param"]
    for a, b in zip(out["arrays"], obj["arrays"]):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    s = out["scalars"]
    assert isinstance(s, tuple) and type(s[0]) is np.float64 and s[0] == 0.1
    assert type(s[1]) is np.int32 and s[2] == 2**100 and s[4] == float("inf")
    assert np.copysign(1.0, s[3]) == -1.0 and np.isnan(s[5])
    assert out[3] == {"nested": None, "flag": True, "text": "héllo", "x": 0.1 + 0.2}
    assert isinstance(out["tensor"], minidl.Tensor) and out["tensor"].requires_grad
    assert out["tensor"].dtype == np.float32 and out["param"].dtype == np.float64
    np.testing.assert_array_equal(out["tensor"].numpy(), [1.5, -2.0])


def test_rng_state_round_trips_exactly(tmp_path):
    minidl.manual_seed(123)
    minidl.rand(5)
    minidl.save({"rng": minidl.get_rng_state()}, tmp_path / "rng")
    expected = minidl.rand(4).numpy()
    minidl.set_rng_state(minidl.load(tmp_path / "rng")["rng"])
    np.testing.assert_array_equal(minidl.rand(4).numpy(), expected)


@pytest.mark.parametrize("bad,where", [
    ({"a": {1, 2}}, r"obj\['a'\] is a set"),
    ({"a": [np.array([object()], dtype=object)]}, r"obj\['a'\]\[0\] has dtype object"),
    ({(1, 2): 3}, r"keys must be str or int"),
    ({"f": print}, r"obj\['f'\] is a builtin_function_or_method"),
])
def test_unsupported_values_are_rejected_before_writing(tmp_path, bad, where):
    with pytest.raises(TypeError, match=where):
        minidl.save(bad, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_format_is_a_plain_npz_with_a_json_manifest(tmp_path):
    minidl.save({"w": np.ones(3, np.float32)}, tmp_path / "c")
    with np.load(tmp_path / "c", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__minidl__", "a0"]
        manifest = json.loads(archive["__minidl__"].tobytes())
    assert manifest["format"] == "minidl.checkpoint" and manifest["version"] == 1
    assert manifest["root"]["values"][0] == {"type": "array", "dtype": "<f4", "shape": [3],
                                             "key": "a0"}


# -- resuming training --------------------------------------------------------------------
def make_run(seed):
    minidl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(16, 3))
    opt = optim.SGD([{"params": list(model[0].parameters()), "lr": 0.2},
                     {"params": list(model[1].parameters()) + list(model[4].parameters())}],
                    lr=0.1, momentum=0.9, weight_decay=1e-3)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
    return model, opt, sched


DATA_X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
DATA_Y = (DATA_X[:, 0] * DATA_X[:, 1] > 0).astype(np.int64) + (DATA_X[:, 0] > 1)


def train_epoch(model, opt, sched):
    # Shuffling and dropout both draw from minidl's generator: resuming must restore it.
    order = minidl.random.generator().permutation(len(DATA_X))
    model.train()
    for start in range(0, len(order), 16):
        idx = order[start:start + 16]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(minidl.tensor(DATA_X[idx])), DATA_Y[idx])
        loss.backward()
        opt.step()
    sched.step()


def checkpoint(model, opt, sched, epoch):
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch, "rng": minidl.get_rng_state()}


def test_resumed_training_continues_bit_for_bit(tmp_path):
    model, opt, sched = make_run(seed=1)
    for _ in range(6):
        train_epoch(model, opt, sched)
    straight = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    model, opt, sched = make_run(seed=1)
    for _ in range(3):
        train_epoch(model, opt, sched)
    minidl.save(checkpoint(model, opt, sched, epoch=3), tmp_path / "ckpt")
    del model, opt, sched

    model, opt, sched = make_run(seed=999)  # different init and RNG: all must come from disk
    state = minidl.load(tmp_path / "ckpt")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    minidl.set_rng_state(state["rng"])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 0.7)
    for _ in range(state["epoch"], 6):
        train_epoch(model, opt, sched)
    resumed = {k: v.numpy() for k, v in model.state_dict().items()}
    assert resumed.keys() == straight.keys()
    for k, expected in straight.items():
        np.testing.assert_array_equal(resumed[k], expected, err_msg=k)


# -- atomic writes ------------------------------------------------------------------------
def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    minidl.save({"version": 1}, path)
    original = path.read_bytes()

    def crash_mid_write(file, **arrays):
        file.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        minidl.save({"version": 2, "w": np.ones(1000)}, path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # temp file removed
    with pytest.raises(OSError, match="disk full"):
        minidl.save({"w": np.ones(3)}, tmp_path / "new.ckpt")
    assert not (tmp_path / "new.ckpt").exists()


def test_failure_at_fsync_leaves_no_file(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        minidl.save({"w": np.ones(3)}, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_save_writes_to_the_exact_path(tmp_path):
    minidl.save({"a": 1}, str(tmp_path / "weights"))
    assert [p.name for p in tmp_path.iterdir()] == ["weights"]
    assert oct((tmp_path / "weights").stat().st_mode & 0o777) == "0o644"


# -- damaged and foreign files ------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.ckpt"
    minidl.save({"weight": np.arange(4096, dtype=np.float64), "epoch": 3}, path)
    return path


def test_truncated_file_raises_naming_the_path(saved):
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        saved.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="good.ckpt"):
            minidl.load(saved)


def test_corrupted_array_bytes_are_detected(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the 32 KB weight array
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"good.ckpt"):
        minidl.load(saved)


def test_an_unbalanced_npy_header_is_a_checkpoint_error(saved):
    # NumPy tokenizes the header before parsing it: an open bracket there raised the
    # tokenizer's own error, not a CheckpointError (found by the fuzz run).
    data = saved.read_bytes()
    assert data.count(b"(4096,)") == 1
    saved.write_bytes(data.replace(b"(4096,)", b"(4096,,"))
    with pytest.raises(CheckpointError, match=r"good.ckpt.*malformed .npy header"):
        minidl.load(saved)


def test_garbage_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(200))
    with pytest.raises(CheckpointError, match="not a readable minidl checkpoint"):
        minidl.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(CheckpointError, match="no '__minidl__' manifest"):
        minidl.load(foreign)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError):
        minidl.load(pickled)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        minidl.load(tmp_path / "missing")


def rewrite(path, manifest=None, **arrays):
    """Replace the manifest and/or members of a saved checkpoint."""
    with np.load(path, allow_pickle=False) as archive:
        members = {k: archive[k] for k in archive.files}
    if manifest is not None:
        members["__minidl__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    members.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **members)


def read_manifest(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(archive["__minidl__"].tobytes())


def test_mismatched_member_names_key_and_shapes(saved):
    rewrite(saved, a0=np.zeros(10, dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"obj\['weight'\]: member 'a0' holds dtype <f4 "
                                              r"shape \(10,\), the manifest says dtype <f8 "
                                              r"shape \(4096,\)"):
        minidl.load(saved)


def test_missing_member_and_future_version(saved):
    manifest = read_manifest(saved)
    manifest["root"]["values"][0]["key"] = "a7"
    rewrite(saved, manifest)
    with pytest.raises(CheckpointError, match=r"obj\['weight'\]: array member 'a7' is missing"):
        minidl.load(saved)
    manifest["version"] = 99
    rewrite(saved, manifest)
    with pytest.raises(CheckpointError, match="format version 99"):
        minidl.load(saved)


def test_checkpoint_is_a_plain_zip_and_errors_are_value_errors(saved):
    assert zipfile.is_zipfile(saved)
    assert sorted(zipfile.ZipFile(saved).namelist()) == ["__minidl__.npy", "a0.npy"]
    assert issubclass(CheckpointError, ValueError)


def test_save_and_load_take_binary_file_objects_as_torch():
    import io

    state = {"w": minidl.arange(6.0).reshape(2, 3), "step": 7, "names": ["a", "b"]}
    buffer = io.BytesIO()
    minidl.save(state, buffer)
    buffer.seek(0)
    back = minidl.load(buffer)
    np.testing.assert_array_equal(back["w"].numpy(), state["w"].numpy())
    assert back["step"] == 7 and back["names"] == ["a", "b"]
    with pytest.raises(CheckpointError, match="<file object> is not a readable minidl"):
        minidl.load(io.BytesIO(b"not a zip"))
    with pytest.raises(TypeError, match="binary mode"):
        minidl.load(io.StringIO("text"))
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"t": torch.arange(4.0)}, buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(minidl.load(buffer)["t"].numpy(), np.arange(4.0))
