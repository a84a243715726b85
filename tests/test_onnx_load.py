"""ONNX -> minidl: round trips through minidl.onnx.load, models built with onnx.helper, the
attributes exporters emit, fine-tuning, and hostile files."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_onnx_export import Lambda, assert_close, randn, run_ort  # noqa: E402

import minidl  # noqa: E402
from minidl import nn, optim  # noqa: E402
from minidl import onnx as mo  # noqa: E402
from minidl.models import LeNet5  # noqa: E402
from minidl.nn import functional as F  # noqa: E402


def save(graph, path, opset=18):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def float_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_lenet_round_trip_and_compile(tmp_path):
    minidl.manual_seed(0)
    model = LeNet5().eval()
    path = tmp_path / "lenet.onnx"
    mo.export(model, randn(2, 1, 28, 28), path)
    loaded = mo.load(path)
    assert isinstance(loaded, nn.Module)
    assert sorted(n for n, _ in loaded.named_parameters()) == sorted(
        n.replace(".", "_") for n, _ in model.named_parameters()
    )
    for b in (1, 6):
        x = randn(b, 1, 28, 28, seed=b)
        want = model(minidl.tensor(x)).data
        assert_close(loaded(x).data, want)
        compiled = minidl.compile(loaded, example_inputs=(x,))
        assert_close(compiled(x).data, want)
        assert_close(run_ort(path, x)[0], want)


def test_loaded_model_fine_tunes(tmp_path):
    minidl.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    path = tmp_path / "mlp.onnx"
    mo.export(model, randn(2, 4), path)
    loaded = mo.load(path).train()
    params = list(loaded.parameters())
    assert len(params) == 4 and all(p.requires_grad for p in params)
    x, y = minidl.tensor(randn(16, 4)), minidl.tensor(np.arange(16) % 3)
    opt = optim.SGD(loaded.parameters(), lr=0.5)
    losses = []
    step = minidl.compile(loaded, F.cross_entropy, example_inputs=(x, y))
    for _ in range(30):
        opt.zero_grad()
        losses.append(step(x, y).item())
        opt.step()
    assert losses[-1] < 0.6 * losses[0]
    # The eager module and the gradients agree with the original model's.
    fresh = mo.load(path)
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(fresh(x), y).backward()
    for (name, p), q in zip(fresh.named_parameters(), model.parameters()):
        np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=1e-5, atol=1e-7, err_msg=name)


def test_resnet_block_round_trip(tmp_path):
    minidl.manual_seed(2)

    def forward(m, x):
        y = F.relu(m.bn(m.conv(x)))
        return F.adaptive_avg_pool2d(y + x, 1).flatten(1)

    model = Lambda(forward, conv=nn.Conv2d(4, 4, 3, padding=1), bn=nn.BatchNorm2d(4))
    model(minidl.tensor(randn(8, 4, 6, 6)))
    model.eval()
    path = tmp_path / "block.onnx"
    mo.export(model, randn(2, 4, 6, 6), path)
    loaded = mo.load(path).eval()
    assert {n for n, _ in loaded.named_buffers()} == {"bn_running_mean", "bn_running_var"}
    x = randn(3, 4, 6, 6, seed=5)
    assert_close(loaded(x).data, model(minidl.tensor(x)).data)


def test_helper_built_cnn_with_exporter_idioms(tmp_path):
    """What PyTorch's exporter writes: auto_pad, count_include_pad, Gemm with transA/alpha/beta,
    Constant, Identity, and a Shape -> Gather -> Unsqueeze -> Concat -> Reshape flatten."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4 * 3 * 3, 5)).astype(np.float32)  # used as A^T via transA
    bias = rng.standard_normal((1, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(
            "AveragePool",
            ["r"],
            ["p"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[1, 1, 0, 0],
            count_include_pad=1,
        ),
        helper.make_node("Identity", ["p"], ["p2"]),
        helper.make_node("Shape", ["p2"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=init("z", np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["p2", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["flat_t"], perm=[1, 0]),
        helper.make_node("Gemm", ["flat_t", "fc", "bias"], ["y"], transA=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["y"], ["out"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [float_info("x", ["N", 3, 11, 11])],
        [float_info("out", ["N", 5])],
        [init("w", w), init("fc", fc), init("bias", bias), init("axes0", np.array([0]))],
    )
    path = save(graph, tmp_path / "cnn.onnx", opset=13)
    loaded = mo.load(path)
    for b in (1, 4):
        x = randn(b, 3, 11, 11, seed=b)
        got = loaded(x).data
        assert_close(got, run_ort(path, x)[0])
        compiled = minidl.compile(loaded, example_inputs=(x,))
        assert_close(compiled(x).data, got)


@pytest.mark.parametrize(
    "attrs",
    [
        dict(kernel_shape=[3, 3], pads=[0, 1, 2, 0]),
        dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
        dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, pads=[1, 1, 1, 1]),
        dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2], strides=[3, 3]),
    ],
)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool0", "AveragePool1"])
def test_pool_padding_variants_match_onnxruntime(tmp_path, op, attrs):
    extra = {}
    if op.startswith("AveragePool"):
        extra["count_include_pad"] = int(op[-1])
        op = "AveragePool"
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs, **extra)],
        "pool",
        [float_info("x", [2, 3, 7, 8])],
        [float_info("y", ["n", "c", "h", "w"])],
    )
    path = save(graph, tmp_path / "pool.onnx", opset=19)
    x = randn(2, 3, 7, 8)
    assert_close(mo.load(path)(x).data, run_ort(path, x)[0])


def test_conv_asymmetric_pads_and_groups(tmp_path):
    w = randn(6, 2, 3, 2)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv",
                ["x", "w"],
                ["y"],
                pads=[0, 1, 2, 0],
                group=2,
                dilations=[1, 2],
                strides=[1, 2],
            )
        ],
        "conv",
        [float_info("x", [1, 4, 6, 7])],
        [float_info("y", ["n", "c", "h", "w"])],
        [init("w", w)],
    )
    path = save(graph, tmp_path / "conv.onnx")
    x = randn(1, 4, 6, 7)
    assert_close(mo.load(path)(x).data, run_ort(path, x)[0])


def test_unsupported_ops_are_all_listed_at_load(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Sin", ["a"], ["b"]),
            helper.make_node("LRN", ["b"], ["c"], size=3),
            helper.make_node("Sin", ["c"], ["d"]),
            helper.make_node("Pad", ["d", "pads"], ["e"], mode="reflect"),
            helper.make_node("MaxPool", ["e"], ["y"], kernel_shape=[2, 2, 2]),
        ],
        "g",
        [float_info("x", [1, 2, 3, 3, 3])],
        [float_info("y", ["n", "c", "d", "h", "w"])],
        [init("pads", np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 1], np.int64))],
    )
    path = save(graph, tmp_path / "u.onnx")
    expected = "cannot run: LRN, MaxPool with 3-D kernels, Pad mode=reflect, Sin$"
    with pytest.raises(mo.LoadError, match=expected):
        mo.load(path)


def test_truncated_and_malformed_files(tmp_path):
    minidl.manual_seed(3)
    path = tmp_path / "m.onnx"
    mo.export(LeNet5(), randn(1, 1, 28, 28), path)
    data = path.read_bytes()
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(mo.LoadError, match=f"cut{cut}.onnx"):
            mo.load(bad)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(mo.LoadError, match="garbage.onnx"):
        mo.load(garbage)
    with pytest.raises(mo.LoadError, match="cannot read"):
        mo.load(tmp_path / "missing.onnx")


def external_model(location: str, array: np.ndarray, offset: int = 0):
    tensor = numpy_helper.from_array(array, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        "ext",
        [float_info("x", [3])],
        [float_info("y", [3])],
        [tensor],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_external_data_inside_folder_loads(tmp_path):
    w = np.array([1.0, 2.0, 3.0], np.float32)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.bin").write_bytes(b"pad!" + w.tobytes())
    path = tmp_path / "m.onnx"
    path.write_bytes(external_model("data/w.bin", w, offset=4).SerializeToString())
    out = mo.load(path)(np.ones(3, np.float32))
    np.testing.assert_array_equal(out.data, w)


@pytest.mark.parametrize(
    "location", ["../secret.bin", "/etc/passwd", "data/../../secret.bin", "link/secret.bin"]
)
def test_external_data_cannot_escape_the_folder(tmp_path, location):
    w = np.ones(3, np.float32)
    outside = tmp_path / "secret.bin"
    outside.write_bytes(w.tobytes())
    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "link").symlink_to(tmp_path)
    path = folder / "m.onnx"
    path.write_bytes(external_model(location, w).SerializeToString())
    with pytest.raises(mo.LoadError, match="outside the model's folder"):
        mo.load(path)


def test_external_data_out_of_range(tmp_path):
    w = np.ones(3, np.float32)
    (tmp_path / "w.bin").write_bytes(w.tobytes()[:8])
    path = tmp_path / "m.onnx"
    path.write_bytes(external_model("w.bin", w).SerializeToString())
    with pytest.raises(mo.LoadError, match="asks for bytes"):
        mo.load(path)


def test_dropout_batchnorm_training_mode(tmp_path):
    """In train() the imported BatchNormalization uses batch statistics and updates its
    buffers (ONNX momentum 0.9 = PyTorch momentum 0.1); Dropout drops."""
    c = 3
    graph = helper.make_graph(
        [
            helper.make_node(
                "BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], momentum=0.9, epsilon=1e-3
            ),
            helper.make_node("Dropout", ["bn", "ratio"], ["y"]),
        ],
        "bn",
        [float_info("x", ["N", c, 4, 4])],
        [float_info("y", ["N", c, 4, 4])],
        [
            init("s", np.ones(c, np.float32)),
            init("b", np.zeros(c, np.float32)),
            init("m", np.zeros(c, np.float32)),
            init("v", np.ones(c, np.float32)),
            init("ratio", np.array(0.5, np.float32)),
        ],
    )
    path = save(graph, tmp_path / "bn.onnx")
    loaded = mo.load(path)
    x = randn(4, c, 4, 4) * 2 + 1
    ref = nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)
    loaded.eval()
    assert_close(loaded(x).data, run_ort(path, x)[0])
    loaded.train()
    y = loaded(x).data
    assert 0.2 < (y == 0).mean() < 0.8
    ref(minidl.tensor(x))
    np.testing.assert_allclose(loaded.m.data, ref.running_mean.data, rtol=1e-6)
    np.testing.assert_allclose(loaded.v.data, ref.running_var.data, rtol=1e-6)


def test_slice_with_negative_steps_and_clamped_bounds(tmp_path):
    consts = [
        init("starts", np.array([-1, 1, 100], np.int64)),
        init("ends", np.array([-100, 5, 0], np.int64)),
        init("axes", np.array([1, -1, 2], np.int64)),
        init("steps", np.array([-2, 3, -1], np.int64)),
    ]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
        "slice",
        [float_info("x", [2, 5, 6, 7])],
        [float_info("y", ["n", "c", "h", "w"])],
        consts,
    )
    path = save(graph, tmp_path / "slice.onnx")
    x = randn(2, 5, 6, 7)
    assert_close(mo.load(path)(x).data, run_ort(path, x)[0])


def test_resnet20_round_trip(tmp_path):
    resnet20 = getattr(minidl.models, "resnet20", None)
    if resnet20 is None:
        pytest.skip("minidl.models.resnet20 has not landed")
    minidl.manual_seed(10)
    model = resnet20()
    model(minidl.tensor(randn(8, 3, 32, 32)))
    model.eval()
    path = tmp_path / "resnet20.onnx"
    mo.export(model, randn(2, 3, 32, 32), path)
    loaded = mo.load(path).eval()
    x = randn(3, 3, 32, 32, seed=4)
    want = model(minidl.tensor(x)).data
    assert_close(loaded(x).data, want)
    assert_close(minidl.compile(loaded, example_inputs=(x,))(x).data, want)


def test_layer_norm_gelu_embedding_round_trip(tmp_path):
    """Exported LayerNorm, GELU (Gelu at opset 20, the Erf formula at 17) and Embedding load
    back as minidl ops with the same values, and the loaded embedding table trains."""
    minidl.manual_seed(13)
    model = nn.Sequential(nn.Embedding(12, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 2))
    indices = np.array([[0, 3, 11], [7, 7, 2]], dtype=np.int64)
    want = model(minidl.tensor(indices)).data
    for opset in (17, 20):
        path = tmp_path / f"m{opset}.onnx"
        mo.export(model, (indices,), path, opset=opset)
        loaded = mo.load(path)
        assert_close(loaded(indices).data, want)
        assert_close(run_ort(path, indices)[0], want)
    table = next(p for n, p in loaded.named_parameters() if p.shape == (12, 6))
    loaded(indices).sum().backward()
    rows = np.abs(table.grad.data).sum(axis=1) > 0
    assert rows.tolist() == [i in (0, 2, 3, 7, 11) for i in range(12)]


CONV_TRANSPOSE_ATTRS = [
    {},
    {"strides": [2, 3], "pads": [1, 0, 1, 0]},
    {"strides": [2, 2], "output_padding": [1, 1]},
    {"strides": [3, 2], "output_padding": [2, 1], "pads": [1, 2, 0, 1]},
    {"group": 2, "dilations": [2, 1]},
    {"pads": [0, 1, 2, 0], "strides": [2, 1], "group": 2},
    {"strides": [2, 2], "output_shape": [10, 9]},
    {"strides": [2, 2], "output_shape": [9, 7]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"strides": [2, 3], "auto_pad": "SAME_LOWER", "dilations": [1, 2]},
    {"strides": [3, 3], "auto_pad": "VALID"},
]


@pytest.mark.parametrize("attrs", CONV_TRANSPOSE_ATTRS,
                         ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()) or "plain")
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose_matches_onnxruntime(tmp_path, attrs, bias):
    group = attrs.get("group", 1)
    w = randn(4, 3, 3, 2, seed=1)
    inits = [init("w", w)] + ([init("b", randn(3 * group, seed=2))] if bias else [])
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"],
                          **attrs)],
        "conv_transpose",
        [float_info("x", ["n", 4, 5, 4])],
        [float_info("y", ["n", "c", "h", "w"])],
        inits,
    )
    path = save(graph, tmp_path / "ct.onnx")
    loaded = mo.load(path)
    for batch in (1, 2):
        x = randn(batch, 4, 5, 4, seed=3)
        (want,) = run_ort(path, x)
        got = loaded(x).data
        assert got.shape == want.shape
        assert_close(got, want)


def test_conv_transpose_round_trip_and_gradients(tmp_path):
    minidl.manual_seed(5)
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                             groups=2, dilation=1), nn.ReLU(),
                          nn.ConvTranspose2d(6, 2, (2, 3), stride=(1, 2), dilation=(2, 1)))
    path = tmp_path / "ct.onnx"
    mo.export(model, randn(2, 4, 5, 5), path)
    loaded = mo.load(path)
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("ConvTranspose") == 2
    x = randn(3, 4, 5, 5, seed=4)
    mx, lx = minidl.tensor(x, requires_grad=True), minidl.tensor(x, requires_grad=True)
    want, got = model(mx), loaded(lx)
    assert_close(got.data, want.data)
    assert_close(run_ort(path, x)[0], want.data)
    want.sum().backward()
    got.sum().backward()
    assert_close(lx.grad.data, mx.grad.data)
    # Initializer "0.weight" is the loaded module's attribute "_0_weight".
    grads = {"_" + n.replace(".", "_"): p.grad.data for n, p in model.named_parameters()}
    assert sorted(grads) == sorted(n for n, _ in loaded.named_parameters())
    for name, p in loaded.named_parameters():
        assert_close(p.grad.data, grads[name])


def test_conv_transpose_1d_is_listed_as_unsupported(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3])],
        "conv_transpose_1d",
        [float_info("x", [1, 2, 5])],
        [float_info("y", [1, 3, 7])],
        [init("w", randn(2, 3, 3))],
    )
    path = save(graph, tmp_path / "ct1d.onnx")
    with pytest.raises(mo.LoadError, match="ConvTranspose with 1-D kernels"):
        mo.load(path)


def test_exported_instance_norm_and_transformer_load_back(tmp_path):
    """The files the exporter writes for InstanceNorm (InstanceNormalization) and attention
    (Expand, Shape(start, end), Where on a bool input) load and run at other batch sizes."""
    from test_onnx_export import PADDING, Attend, Decode

    minidl.manual_seed(6)
    norm = nn.InstanceNorm2d(3, affine=True)
    norm.weight.data[...] = randn(3, seed=7)
    mo.export(norm, randn(2, 3, 5, 4), tmp_path / "norm.onnx")
    x = randn(3, 3, 5, 4, seed=8)
    assert_close(mo.load(tmp_path / "norm.onnx")(x).data, norm(minidl.tensor(x)).data)
    cases = [
        (Decode(nn.Transformer(8, 2, 1, 1, 16, batch_first=True)), {"Expand", "Where"}),
        (Attend(nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True)),
         {"Expand", "Shape", "Concat"}),
    ]
    # Decode takes (src, tgt, padding), Attend (query, key and value, padding).
    a, b = randn(3, 5, 8, seed=9), randn(3, 4, 8, seed=10)
    for k, (model, expected_ops) in enumerate(cases):
        inputs = [a, b, PADDING] if k == 0 else [b, a, PADDING]
        path = tmp_path / f"attention{k}.onnx"
        model.eval()
        mo.export(model, tuple(inputs), path)
        assert expected_ops <= {n.op_type for n in onnx.load(str(path)).graph.node}
        loaded = mo.load(path)
        for batch in (1, 2, 3):
            xs = [x[:batch] for x in inputs]
            want = model(*[minidl.tensor(x) for x in xs])
            got = loaded(*xs)
            for g, w in zip(got if isinstance(got, tuple) else (got,),
                            want if isinstance(want, tuple) else (want,)):
                assert_close(g.data, w.data)
