"""minidl -> ONNX: onnx.checker (full_check) and onnxruntime agree with minidl, per op and on
whole models, at the traced batch size and another one (dynamic batch)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import minidl  # noqa: E402
from minidl import nn  # noqa: E402
from minidl import onnx as mo  # noqa: E402
from minidl.models import LeNet5  # noqa: E402
from minidl.nn import functional as F  # noqa: E402


def run_ort(path, *inputs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


def assert_close(got, want, rtol=1e-5):
    """Within rtol of the output's scale (elementwise relative error is meaningless near 0)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    assert float(np.abs(got - want).max(initial=0.0)) <= rtol * scale


def check_model(model, x, tmp_path, batches=(1, 5), opset=mo.DEFAULT_OPSET, rtol=1e-5):
    """Export at x's batch size, check the file, and compare onnxruntime with minidl at each
    batch size (the file has a dynamic batch axis)."""
    path = tmp_path / "model.onnx"
    if hasattr(model, "eval"):
        model.eval()
    mo.export(model, (x,), path, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version <= 10 and proto.opset_import[0].version == opset
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    rng = np.random.default_rng(7)
    for b in batches:
        xb = rng.standard_normal((b,) + x.shape[1:]).astype(x.dtype)
        with minidl.no_grad():
            want = model(minidl.tensor(xb)).data
        (got,) = run_ort(path, xb)
        assert_close(got, want, rtol)
    return proto


def ops_of(proto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def randn(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class Lambda(nn.Module):
    def __init__(self, fn, **modules):
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            setattr(self, name, m)

    def forward(self, x):
        return self.fn(self, x)


def test_lenet5(tmp_path):
    minidl.manual_seed(0)
    proto = check_model(LeNet5(), randn(3, 1, 28, 28), tmp_path)
    # The fused conv/linear + ReLU nodes of the compiled graph come out as standard ops.
    assert ops_of(proto) == [
        "Conv",
        "Relu",
        "MaxPool",
        "Conv",
        "Relu",
        "MaxPool",
        "Flatten",
        "Gemm",
        "Relu",
        "Gemm",
        "Relu",
        "Gemm",
    ]
    assert {i.name for i in proto.graph.initializer} == {n for n, _ in LeNet5().named_parameters()}


def test_mlp_with_activations(tmp_path):
    minidl.manual_seed(1)
    model = Lambda(
        lambda m, x: F.log_softmax(F.elu(m.fc2(F.leaky_relu(m.fc1(x), 0.2)), 0.7), dim=1),
        fc1=nn.Linear(20, 32),
        fc2=nn.Linear(32, 10),
    )
    proto = check_model(model, randn(4, 20), tmp_path, batches=(1, 9))
    assert ops_of(proto) == ["Gemm", "LeakyRelu", "Gemm", "Elu", "LogSoftmax"]


@pytest.mark.parametrize("opset", mo.OPSETS)
def test_every_opset(tmp_path, opset):
    minidl.manual_seed(2)
    model = Lambda(
        lambda m, x: F.softmax(m.fc(x).sigmoid().tanh(), dim=-1).sum(axis=1, keepdims=True),
        fc=nn.Linear(6, 5),
    )
    check_model(model, randn(3, 6), tmp_path, opset=opset)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=2, padding=1),
        dict(stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
        dict(padding=3, groups=2),
        dict(stride=3, padding=0, dilation=2, groups=4),
        dict(padding="same", kernel_size=4),
        dict(stride=4, kernel_size=1, bias=False),
    ],
)
def test_conv_geometry(tmp_path, kwargs):
    minidl.manual_seed(3)
    kwargs = {"kernel_size": 3, **kwargs}
    model = nn.Conv2d(4, 8, **kwargs)
    proto = check_model(model, randn(2, 4, 11, 10), tmp_path)
    assert ops_of(proto) == ["Conv"]


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.MaxPool2d(2, 1, dilation=2),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        nn.AvgPool2d(2, 3, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        nn.AdaptiveAvgPool2d(1),
        nn.AdaptiveAvgPool2d((2, 5)),
    ],
)
def test_pools(tmp_path, pool):
    check_model(pool, randn(2, 3, 8, 10), tmp_path)


def test_avg_pool_ceil_mode_counting_padding(tmp_path):
    check_model(nn.AvgPool2d(3, 2, 1, ceil_mode=True), randn(2, 3, 8, 10), tmp_path)


def test_resnet_block_batchnorm_add_global_pool(tmp_path):
    """A residual block with BatchNorm (eval, with trained running statistics), Add and
    global average pooling: ResNet-20's ops."""
    minidl.manual_seed(4)

    def forward(m, x):
        y = F.relu(m.bn1(m.conv1(x)))
        y = m.bn2(m.conv2(y))
        y = F.relu(y + m.down(x))
        return m.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))

    model = Lambda(
        forward,
        conv1=nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        bn1=nn.BatchNorm2d(8),
        conv2=nn.Conv2d(8, 8, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(8, affine=False),
        down=nn.Conv2d(3, 8, 1, stride=2),
        fc=nn.Linear(8, 4),
    )
    for _ in range(3):  # non-trivial running statistics
        model(minidl.tensor(randn(6, 3, 9, 9, seed=_)))
    model.bn1.weight.data[...] = randn(8, seed=9)
    proto = check_model(model, randn(2, 3, 9, 9), tmp_path)
    assert ops_of(proto).count("BatchNormalization") == 2
    assert "GlobalAveragePool" in ops_of(proto) and "Add" in ops_of(proto)
    names = {i.name for i in proto.graph.initializer}
    assert {"bn1.running_mean", "bn1.running_var", "bn2.running_mean"} <= names


def test_reciprocal_and_scalar_division(tmp_path):
    model = Lambda(lambda m, x: 2 / (x * x + 1) + x.reciprocal().abs())
    proto = check_model(model, randn(3, 4) + 3, tmp_path)
    assert "Reciprocal" in ops_of(proto)


def test_shape_ops_and_constants(tmp_path):
    """Reshape with a batch-dependent axis, Transpose, Concat, Pad, Mul/Sub/Div by scalars
    and arrays, MatMul, PReLU (per channel) and Dropout (eval: identity)."""
    minidl.manual_seed(5)
    scale = np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(1, 6, 1, 1)

    def forward(m, x):
        y = m.prelu(x) * scale - 0.25
        y = minidl.concatenate([y, x / 2.0], axis=1)  # (N, 12, 4, 5)
        y = y.pad(((0, 0), (0, 0), (1, 0), (2, 1)), value=0.5)  # (N, 12, 5, 8)
        y = F.dropout(y, 0.3, m.training)
        y = y.permute(0, 2, 1, 3).reshape(y.shape[0], 5, 96)  # (N, 5, 96)
        return minidl.matmul(y, m.w) + 1.0

    model = Lambda(forward, prelu=nn.PReLU(6))
    model.w = nn.Parameter(randn(96, 7, seed=3))
    model.prelu.weight.data[...] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    proto = check_model(model, randn(3, 6, 4, 5), tmp_path)
    assert {"PRelu", "Concat", "Pad", "Transpose", "Reshape", "MatMul"} <= set(ops_of(proto))


def test_linear_on_3d_input_and_maxout_composition(tmp_path):
    """Linear on (N, T, F) becomes MatMul + Add; Maxout exports as Gemm, Reshape, ReduceMax."""
    minidl.manual_seed(6)
    seq = Lambda(lambda m, x: m.fc(x), fc=nn.Linear(5, 3))
    check_model(seq, randn(2, 4, 5), tmp_path)
    w, b = nn.Parameter(randn(12, 5)), nn.Parameter(randn(12))
    maxout = Lambda(lambda m, x: F.maxout(x, m.w, m.b, pieces=3))
    maxout.w, maxout.b = w, b
    proto = check_model(maxout, randn(4, 5), tmp_path)
    assert ops_of(proto) == ["Gemm", "Reshape", "ReduceMax"]


def test_float64_model(tmp_path):
    minidl.manual_seed(7)
    model = nn.Linear(6, 3, dtype=np.float64)
    check_model(model, randn(2, 6, dtype=np.float64), tmp_path, rtol=1e-12)


def test_names_and_static_batch(tmp_path):
    model = nn.Linear(4, 2)
    path = tmp_path / "m.onnx"
    mo.export(
        model,
        randn(3, 4),
        path,
        dynamic_batch=False,
        input_names=["features"],
        output_names=["scores"],
    )
    proto = onnx.load(str(path))
    assert proto.graph.input[0].name == "features" and proto.graph.output[0].name == "scores"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    x = randn(3, 4)
    assert_close(run_ort(path, x)[0], model(minidl.tensor(x)).data)


def test_output_that_is_an_input_goes_through_identity(tmp_path):
    model = Lambda(lambda m, x: (x.relu(), x))
    path = tmp_path / "m.onnx"
    mo.export(model, randn(2, 3), path)
    x = randn(2, 3)
    got = run_ort(path, x)
    assert_close(got[0], np.maximum(x, 0))
    assert_close(got[1], x)


def test_locally_connected_raises_naming_the_op(tmp_path):
    model = nn.LocallyConnected2d(2, 3, (6, 6), 3)
    path = tmp_path / "m.onnx"
    with pytest.raises(mo.ExportError, match="LocallyConnected2d"):
        mo.export(model, randn(1, 2, 6, 6), path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left


def test_unsupported_op_lists_supported_ones(tmp_path):
    model = Lambda(lambda m, x: minidl.stack([x, x]))
    with pytest.raises(mo.ExportError, match="Stack: this minidl op has no ONNX translation"):
        mo.export(model, randn(2, 3), tmp_path / "m.onnx")


def test_integer_array_index_raises(tmp_path):
    # (One 1-d array after whole slices exports as a Gather: tests/test_cnn_layers.py.)
    model = Lambda(lambda m, x: x[:, np.array([[0, 2]])])
    with pytest.raises(mo.ExportError, match="only basic indexing"):
        mo.export(model, randn(2, 3), tmp_path / "m.onnx")


def test_bad_opset_and_names(tmp_path):
    with pytest.raises(ValueError, match="opset must be one of"):
        mo.export(nn.Linear(2, 2), randn(1, 2), tmp_path / "m.onnx", opset=28)
    with pytest.raises(ValueError, match="expected 1 non-empty input names"):
        mo.export(nn.Linear(2, 2), randn(1, 2), tmp_path / "m.onnx", input_names=["a", "b"])


def test_export_rewrites_existing_file_atomically(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(mo.ExportError):
        mo.export(nn.LocallyConnected2d(1, 1, (3, 3), 2), randn(1, 1, 3, 3), path)
    assert path.read_bytes() == b"old"
    mo.export(nn.Linear(2, 2), randn(1, 2), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_export_leaves_training_mode_and_buffers_unchanged(tmp_path):
    model = nn.BatchNorm1d(3)
    model.train()
    before = model.running_mean.data.copy()
    mo.export(model, randn(4, 3), tmp_path / "m.onnx")
    assert model.training
    np.testing.assert_array_equal(model.running_mean.data, before)


def test_minidl_train_export_onnx(tmp_path):
    from minidl.data import MNIST
    from minidl.train import run

    ckpt, path = tmp_path / "lenet.ckpt", tmp_path / "lenet.onnx"
    try:
        run(
            [
                "--epochs",
                "1",
                "--limit",
                "64",
                "--batch-size",
                "32",
                "--no-progress",
                "--checkpoint",
                str(ckpt),
                "--plot",
                str(tmp_path / "c.png"),
                "--export-onnx",
                str(path),
            ]
        )
    except FileNotFoundError as e:
        pytest.skip(f"MNIST not available: {e}")
    model = LeNet5()
    model.load_state_dict(minidl.load(ckpt)["model"])
    model.eval()
    x = MNIST.normalize(np.abs(randn(4, 1, 28, 28)) * 100)
    assert_close(run_ort(path, x)[0], model(minidl.tensor(x)).data)


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2)),
        (Ellipsis, slice(1, -1), slice(None, None, -2)),
        (slice(None), 1, None, slice(2, None)),
        (slice(None), slice(None), -1),
        (slice(None), None, Ellipsis, 0, slice(None, 3)),
        (slice(1, None),),
        0,
    ],
)
def test_basic_indexing(tmp_path, index):
    proto = check_model(
        Lambda(lambda m, x: x[index] * 2.0), randn(3, 4, 5, 6), tmp_path, batches=(3, 5)
    )
    assert "Identity" not in ops_of(proto)


def test_option_a_shortcut_block(tmp_path):
    """ResNet-20's downsampling block: strided slice and zero channels padded around."""
    minidl.manual_seed(8)

    def forward(m, x):
        out = m.bn2(m.conv2(F.relu(m.bn1(m.conv1(x)))))
        return F.relu(out + x[:, :, ::2, ::2].pad(((0, 0), (4, 4), (0, 0), (0, 0))))

    model = Lambda(
        forward,
        conv1=nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        bn1=nn.BatchNorm2d(16),
        conv2=nn.Conv2d(16, 16, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(16),
    )
    model(minidl.tensor(randn(4, 8, 8, 8)))
    check_model(model, randn(2, 8, 8, 8), tmp_path)


def test_resnet20(tmp_path):
    resnet20 = getattr(minidl.models, "resnet20", None)
    if resnet20 is None:
        pytest.skip("minidl.models.resnet20 has not landed")
    minidl.manual_seed(9)
    model = resnet20()
    for k in range(2):  # running statistics away from their initial 0 / 1
        model(minidl.tensor(randn(8, 3, 32, 32, seed=k)))
    proto = check_model(model, randn(2, 3, 32, 32), tmp_path, batches=(1, 3))
    assert ops_of(proto).count("BatchNormalization") == 19


@pytest.mark.parametrize("opset", [17, 20])
def test_transformer_style_activations_and_layer_norm(tmp_path, opset):
    """GELU (both forms: Gelu from opset 20, Erf and Tanh formulas before), SiLU, Hardtanh /
    ReLU6 (Clip), erf and LayerNorm (with and without affine parameters)."""
    minidl.manual_seed(11)

    def forward(m, x):
        y = m.norm(m.fc(x))
        y = F.gelu(y) + F.gelu(y, approximate="tanh") + F.silu(y) + minidl.erf(y)
        y = y + F.relu6(4 * y) + F.hardtanh(y, -0.5, 0.25)
        return m.plain(y.reshape(-1, 2, 4))

    model = Lambda(
        forward, fc=nn.Linear(6, 8), norm=nn.LayerNorm(8),
        plain=nn.LayerNorm([2, 4], elementwise_affine=False),
    )
    model.norm.weight.data[...] = randn(8, seed=3)
    model.norm.bias.data[...] = randn(8, seed=4)
    proto = check_model(model, randn(3, 6), tmp_path, opset=opset)
    ops = ops_of(proto)
    assert ops.count("LayerNormalization") == 2 and ops.count("Clip") == 2
    assert ("Gelu" in ops) == (opset >= 20) and "Erf" in ops and "Sigmoid" in ops


def test_embedding_is_gather(tmp_path):
    minidl.manual_seed(12)
    model = Lambda(lambda m, i: m.emb(i).sum(1), emb=nn.Embedding(10, 4, padding_idx=0)).eval()
    path = tmp_path / "m.onnx"
    indices = np.array([[1, 2, 0], [9, 5, 5]], dtype=np.int64)
    mo.export(model, (indices,), path)
    assert ops_of(onnx.load(str(path))) == ["Gather", "ReduceSum"]
    for batch in (indices[:1], np.array([[3, 3, 8]] * 4)):
        assert_close(run_ort(path, batch)[0], model(minidl.tensor(batch)).data)


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(tmp_path, affine):
    minidl.manual_seed(14)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.GroupNorm(3, 6, affine=affine), nn.ReLU())
    if affine:
        model[1].weight.data[...] = randn(6, seed=5)
        model[1].bias.data[...] = randn(6, seed=6)
    proto = check_model(model, randn(2, 3, 7, 7), tmp_path)
    assert "LayerNormalization" in ops_of(proto)


# -- instance norm, adaptive max pool, attention and the Transformer --------------------------
@pytest.mark.parametrize("make, shape", [
    (lambda: nn.InstanceNorm2d(3), (2, 3, 5, 4)),
    (lambda: nn.InstanceNorm2d(3, affine=True), (2, 3, 5, 4)),
    (lambda: nn.InstanceNorm1d(3, affine=True, bias=False), (2, 3, 7)),
], ids=["2d", "2d-affine", "1d-weight-only"])
def test_instance_norm_is_instance_normalization(tmp_path, make, shape):
    model = make()
    if model.weight is not None:
        model.weight.data[...] = randn(3, seed=5)
    proto = check_model(model, randn(*shape), tmp_path)
    assert ops_of(proto) == ["InstanceNormalization"]


def test_instance_norm_with_running_statistics_is_batch_normalization(tmp_path):
    model = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    model(minidl.tensor(randn(4, 3, 5, 5, seed=2) * 3 + 1))  # running statistics away from 0 / 1
    proto = check_model(model, randn(2, 3, 5, 4), tmp_path)
    assert ops_of(proto) == ["BatchNormalization"]
    assert {i.name for i in proto.graph.initializer} >= {"running_mean", "running_var"}


@pytest.mark.parametrize("size, op", [((2, 3), "MaxPool"), (1, "GlobalMaxPool"),
                                      ((6, None), "MaxPool")])
def test_adaptive_max_pool(tmp_path, size, op):
    proto = check_model(nn.AdaptiveMaxPool2d(size), randn(2, 3, 6, 6), tmp_path)
    assert ops_of(proto) == [op]


def test_adaptive_max_pool_errors(tmp_path):
    with pytest.raises(mo.ExportError, match=r"output size \(4, 3\) does not divide the "
                                             r"input's \(6, 6\); the unequal windows"):
        mo.export(nn.AdaptiveMaxPool2d((4, 3)), (randn(1, 3, 6, 6),), tmp_path / "m.onnx")
    model = Lambda(lambda m, x: m.pool(x)[0], pool=nn.AdaptiveMaxPool2d(2, return_indices=True))
    with pytest.raises(mo.ExportError, match="return_indices=True has no ONNX translation"):
        mo.export(model, (randn(1, 3, 6, 6),), tmp_path / "m.onnx")


def check_inputs(model, inputs, tmp_path, batches=(1, 2, 3), rtol=1e-5):
    """Export (batch_first inputs, dynamic batch) and compare every output of onnxruntime with
    minidl's at each batch size: each input is its rows repeated, cut to the batch size."""
    path = tmp_path / "model.onnx"
    model.eval()
    mo.export(model, tuple(inputs), path)
    proto = onnx.load(str(path))
    for b in batches:
        xs = [np.concatenate([x] * b)[:b] for x in inputs]
        with minidl.no_grad():
            want = model(*[minidl.tensor(x) for x in xs])
        want = want if isinstance(want, tuple) else (want,)
        got = run_ort(path, *xs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_close(g, w.data, rtol)
    return proto


class Attend(nn.Module):
    def __init__(self, mha, **kwargs):
        super().__init__()
        self.mha, self.kwargs = mha, kwargs

    def forward(self, q, kv, padding):
        out, weights = self.mha(q, kv, kv, key_padding_mask=padding, **self.kwargs)
        return out if weights is None else (out, weights)


PADDING = np.array([[False] * 5, [False, False, False, True, True], [True] + [False] * 4])


@pytest.mark.parametrize("options, kwargs", [
    ({}, {}),
    ({"kdim": 6, "vdim": 6, "add_bias_kv": True}, {}),
    ({"add_zero_attn": True}, {"average_attn_weights": False}),
    ({"bias": False}, {"need_weights": False}),
], ids=["default", "kdim-bias_kv", "zero_attn-per-head", "no-bias-no-weights"])
def test_multihead_attention_with_padding_mask_input(tmp_path, options, kwargs):
    minidl.manual_seed(21)
    mha = nn.MultiheadAttention(8, 2, batch_first=True, **options)
    if mha.in_proj_bias is not None:
        mha.in_proj_bias.data[...] = randn(24, seed=1)
    kv = randn(3, 5, options.get("kdim", 8), seed=2)
    model = Attend(mha, **kwargs)
    inputs = [randn(3, 4, 8, seed=3), kv, PADDING]
    proto = check_inputs(model, inputs, tmp_path)
    assert {"MatMul", "Softmax", "Where"} <= set(ops_of(proto))
    assert proto.graph.input[2].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    if not kwargs.get("need_weights", True):
        assert len(proto.graph.output) == 1


class Decode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, a, b, padding):
        mask = nn.Transformer.generate_square_subsequent_mask(4)
        if isinstance(self.model, nn.Transformer):
            return self.model(a, b, tgt_mask=mask, src_key_padding_mask=padding,
                              memory_key_padding_mask=padding)
        return self.model(b, a, tgt_mask=mask, tgt_is_causal=True,
                          memory_key_padding_mask=padding)


@pytest.mark.parametrize("make", [
    lambda: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True),
    lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(
        8, 2, 16, batch_first=True, norm_first=True, activation="gelu"), 2, nn.LayerNorm(8)),
    lambda: nn.Transformer(8, 2, 2, 1, 16, batch_first=True),
], ids=["decoder-layer", "pre-norm-gelu-decoder", "transformer"])
def test_transformer_decoder_and_transformer(tmp_path, make):
    minidl.manual_seed(22)
    model = Decode(make())
    inputs = [randn(3, 5, 8, seed=4), randn(3, 4, 8, seed=5), PADDING]
    proto = check_inputs(model, inputs, tmp_path)
    assert {"LayerNormalization", "Softmax", "MatMul"} <= set(ops_of(proto))


def test_transformer_encoder_layer_with_causal_mask(tmp_path):
    minidl.manual_seed(23)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    model = Lambda(lambda m, x: m.layer(x, src_mask=mask, is_causal=True), layer=layer)
    check_inputs(model, [randn(3, 4, 8, seed=6)], tmp_path)


def test_expand_of_a_new_batch_dimension_without_an_input_of_that_size_raises(tmp_path):
    model = Lambda(lambda m, x: m.w.expand(2 * x.shape[0], 3) + 0,
                   w=nn.Parameter(minidl.tensor(randn(1, 3))))
    with pytest.raises(mo.ExportError, match="Expand .* no input's dimension"):
        mo.export(model, (randn(2, 3),), tmp_path / "m.onnx")
    mo.export(model, (randn(2, 3),), tmp_path / "m.onnx", dynamic_batch=False)
