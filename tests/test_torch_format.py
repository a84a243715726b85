"""Reading PyTorch checkpoints (minidl.torch_format via minidl.load): files written by torch
when it is installed, and hand-built zip files (always), including hostile ones."""

from __future__ import annotations

import os
import struct
import zipfile

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.serialization import CheckpointError

try:
    import torch
except ImportError:
    torch = None


# -- a tiny pickle writer, so the tests need no torch to build PyTorch-format files ----------
class Global:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class Call:
    """callable(*args) in the pickle (GLOBAL + args tuple + REDUCE)."""

    def __init__(self, fn: Global, *args) -> None:
        self.fn, self.args = fn, args


class Storage:
    """A persistent id ('storage', <type>, key, 'cpu', numel)."""

    def __init__(self, kind: str, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel


def emit(obj) -> bytes:
    if obj is None:
        return b"N"
    if obj is True:
        return b"\x88"
    if obj is False:
        return b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(obj, tuple):
        return b"(" + b"".join(emit(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(emit(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(emit(k) + emit(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, Global):
        return b"c" + f"{obj.module}\n{obj.name}\n".encode()
    if isinstance(obj, Call):
        return emit(obj.fn) + emit(tuple(obj.args)) + b"R"
    if isinstance(obj, Storage):
        pid = ("storage", Global("torch", obj.kind), obj.key, "cpu", obj.numel)
        return emit(pid) + b"Q"
    raise TypeError(obj)


def tensor_ref(key: str, shape: tuple, stride: tuple, kind="FloatStorage", numel=None,
               offset=0, requires_grad=False) -> Call:
    numel = int(np.prod(shape)) if numel is None else numel
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), Storage(kind, key, numel), offset,
                shape, stride, requires_grad, Call(Global("collections", "OrderedDict")))


def write_torch_zip(path, root, storages: dict) -> None:
    pkl = b"\x80\x02" + emit(root) + b"."
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, array in storages.items():
            z.writestr(f"archive/data/{key}", np.ascontiguousarray(array).tobytes())
        z.writestr("archive/version", "3\n")


# -- hand-built files ------------------------------------------------------------------------
def test_hand_built_state_dict_loads_tensors_with_strides(tmp_path):
    weight = np.arange(6, dtype=np.float32)
    root = Call(Global("collections", "OrderedDict"), [
        ("weight", tensor_ref("0", (3, 2), (1, 3))),  # a transposed (2, 3) storage
        ("steps", tensor_ref("1", (), (), kind="LongStorage", numel=1)),
        ("meta", {"lr": 0.5, "names": ["a", "b"], "flag": True, "none": None}),
    ])
    write_torch_zip(tmp_path / "m.pt", root, {"0": weight, "1": np.array([7], np.int64)})
    sd = minidl.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)
    assert list(sd) == ["weight", "steps", "meta"]
    np.testing.assert_array_equal(sd["weight"].numpy(), weight.reshape(2, 3).T)
    assert sd["weight"].dtype == np.float32 and sd["steps"].item() == 7
    assert sd["steps"].shape == ()
    assert sd["meta"] == {"lr": 0.5, "names": ["a", "b"], "flag": True, "none": None}


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"),
                                          ("__main__", "Net"), ("torch.nn", "Linear")])
def test_any_other_global_is_refused_before_anything_runs(tmp_path, module, name):
    marker = tmp_path / "ran"
    root = {"x": Call(Global(module, name), f"touch {marker}")}
    write_torch_zip(tmp_path / "evil.pt", root, {})
    with pytest.raises(CheckpointError, match=f"refers to {module}.{name}"):
        minidl.load(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("case, match", [
    ("past_end", "reaches past its storage"),
    ("missing", "is missing"),
    ("bad_geometry", "malformed tensor geometry"),
    ("expanded", "more elements than its storage"),
    ("half", "HalfStorage"),
    ("size_lie", "has 16 bytes, the file says 1000"),
])
def test_malformed_tensors_are_refused(tmp_path, case, match):
    data = {"0": np.zeros(4, np.float32)}
    refs = {
        "past_end": tensor_ref("0", (4,), (1,), offset=2, numel=4),
        "missing": tensor_ref("9", (2,), (1,)),
        "bad_geometry": tensor_ref("0", (2,), (1, 1), numel=4),
        "expanded": tensor_ref("0", (10**9,), (0,), numel=4),
        "half": tensor_ref("0", (4,), (1,), kind="HalfStorage"),
        "size_lie": tensor_ref("0", (4,), (1,), numel=1000),
    }
    write_torch_zip(tmp_path / "bad.pt", {"w": refs[case]}, data)
    with pytest.raises(CheckpointError, match=match):
        minidl.load(tmp_path / "bad.pt")


def test_truncated_pickle_and_cuda_map_location(tmp_path):
    path = tmp_path / "t.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}(X\x01\x00\x00\x00a")
    with pytest.raises(CheckpointError, match="malformed PyTorch pickle"):
        minidl.load(path)
    with pytest.raises(RuntimeError, match="CPU-only"):
        minidl.load(path, map_location="cuda:0")


def test_saving_a_whole_module_points_to_state_dict(tmp_path):
    with pytest.raises(TypeError, match="state_dict"):
        minidl.save(nn.Linear(2, 2), tmp_path / "m.ckpt")
    assert not os.listdir(tmp_path)


# -- files written by PyTorch ----------------------------------------------------------------
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_state_dict_saved_by_torch_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 3), torch.nn.BatchNorm1d(3))
    tnet.train()
    tnet(torch.randn(8, 1, 8, 8))  # running statistics move
    tnet.eval()
    torch.save(tnet.state_dict(), tmp_path / "net.pt")
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                        nn.BatchNorm1d(3))
    sd = minidl.load(tmp_path / "net.pt", map_location=lambda storage, loc: storage)
    assert sd["4.num_batches_tracked"].dtype == np.int64
    net.load_state_dict(sd)
    net.eval()
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = tnet(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(minidl.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_torch_saved_parameters_dtypes_and_whole_model(tmp_path):
    obj = {"p": torch.nn.Parameter(torch.ones(2, dtype=torch.float64)),
           "b": torch.tensor([True, False]), "u8": torch.arange(3, dtype=torch.uint8),
           "view": torch.arange(10.0)[2:8:2], "n": 3, "t": (1.5, "x")}
    torch.save(obj, tmp_path / "o.pt")
    got = minidl.load(tmp_path / "o.pt")
    assert isinstance(got["p"], nn.Parameter) and got["p"].dtype == np.float64
    assert got["b"].tolist() == [True, False] and got["u8"].dtype == np.uint8
    assert got["view"].tolist() == [2.0, 4.0, 6.0] and got["n"] == 3 and got["t"] == (1.5, "x")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="torch.nn.modules.linear.Linear"):
        minidl.load(tmp_path / "model.pt")
