"""BatchNorm folded into the preceding convolution in compiled inference graphs: conv(w, b) ->
BN(gamma, beta, mean, var, eps) becomes conv(w * scale, b * scale + shift), the folded weight
and bias computed at every call from the current parameters and running statistics.

Tolerance: folding changes the rounding (the scale is applied to the weights in float64 and
rounded once, instead of to the float32 output), so results are compared with eager at
max |compiled - eager| <= 1e-5 * max |eager| (measured ~3e-7 on ResNet-20 in float32) and
1e-12 in float64.
"""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.models import resnet20
from minidl.nn import functional as F

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def randomize_batchnorms(model, seed):
    """Running statistics and affine parameters away from their defaults (identity)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[...] = rng.standard_normal(c) * 0.3
            m.running_var.data[...] = rng.uniform(0.3, 3.0, c)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c)
                m.bias.data[...] = rng.standard_normal(c) * 0.2


def assert_close_to_eager(compiled, model, x, dtype=np.float32):
    with minidl.no_grad():
        expected = model(x).data
    got = compiled(x).data
    assert got.dtype == expected.dtype and got.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(got - expected).max() <= TOLERANCE[dtype] * scale


def images(n, shape=(3, 32, 32), seed=0, dtype=np.float32):
    return minidl.tensor(np.random.default_rng(seed).standard_normal((n,) + shape).astype(dtype))


def op_names(compiled):
    return [node.fn.name for node in compiled.graph.nodes]


@pytest.mark.parametrize("executor", ["program", "replay"])
@pytest.mark.parametrize("n", [1, 8])
def test_resnet20_inference_has_no_batchnorm_and_matches_eager(executor, n):
    minidl.manual_seed(0)
    model = resnet20()
    randomize_batchnorms(model, 1)
    model.eval()
    x = images(n)
    compiled = minidl.compile(model, example_inputs=(x,), executor=executor)
    names = op_names(compiled)
    assert "batch_norm" not in names
    assert names.count("channel_affine_fold") == 2 * 19  # a weight and a bias per conv
    assert_close_to_eager(compiled, model, x)
    assert_close_to_eager(compiled, model, images(n, seed=1))


def test_program_and_replay_give_the_same_bits():
    minidl.manual_seed(2)
    model = resnet20()
    randomize_batchnorms(model, 3)
    x = images(4)
    program = minidl.compile(model, example_inputs=(x,))
    replay = minidl.compile(model, example_inputs=(x,), executor="replay")
    assert program(x).data.tobytes() == replay(x).data.tobytes()


def test_changes_after_compiling_are_read_by_the_next_call():
    """Running statistics and weights changed in place, loaded from a state dict, or a conv
    weight replaced by a new array: the fold reads the current values at every call."""
    minidl.manual_seed(4)
    model = resnet20()
    randomize_batchnorms(model, 5)
    model.eval()
    x = images(4)
    compiled = minidl.compile(model, example_inputs=(x,))
    assert_close_to_eager(compiled, model, x)
    bn = model.blocks[0].bn1
    bn.running_mean.data += 0.5
    bn.running_var.data *= 2.0
    bn.weight.data[...] = -bn.weight.data
    assert_close_to_eager(compiled, model, x)
    other = resnet20()
    randomize_batchnorms(other, 6)
    model.load_state_dict(other.state_dict())
    assert_close_to_eager(compiled, model, x)
    conv = model.blocks[4].conv2
    conv.weight.data = conv.weight.data * 0.5  # a new array
    with minidl.no_grad():
        model.conv1.weight.data *= -1.0  # in place
    assert_close_to_eager(compiled, model, x)


class ConvBN(nn.Module):
    """conv with a bias into a BatchNorm without affine parameters, in float64 or float32,
    then ReLU (absorbed by the folded conv)."""

    def __init__(self, dtype, affine):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=2, bias=True)
        self.bn = nn.BatchNorm2d(5, affine=affine, eps=1e-3)
        if dtype == np.float64:
            self.double()

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_conv_with_bias_and_batchnorm_without_affine(dtype, affine):
    minidl.manual_seed(7)
    model = ConvBN(dtype, affine)
    randomize_batchnorms(model, 8)
    model.eval()
    x = images(3, shape=(3, 9, 7), dtype=dtype)
    compiled = minidl.compile(model, example_inputs=(x,))
    assert op_names(compiled) == ["channel_affine_fold"] * 2 + ["conv2d"]
    assert compiled.graph.nodes[-1].attrs["relu"]
    assert_close_to_eager(compiled, model, x, dtype)


class SharedConvOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_not_folded_when_the_conv_output_has_another_reader_or_in_training():
    minidl.manual_seed(9)
    model = SharedConvOutput()
    randomize_batchnorms(model, 10)
    model.eval()
    x = images(2, shape=(2, 6, 6))
    compiled = minidl.compile(model, example_inputs=(x,))
    assert "batch_norm" in op_names(compiled)
    assert_close_to_eager(compiled, model, x)
    # A training step (here of a model in eval mode) computes gradients through BN: kept.
    net = resnet20().eval()
    step = minidl.compile(net, F.cross_entropy,
                          example_inputs=(images(2), minidl.tensor(np.array([1, 2]))))
    assert "batch_norm" in op_names(step) and "channel_affine_fold" not in op_names(step)
    # Without running statistics BN always normalizes with the batch's: not an affine map.
    batch_stats = BatchStatistics()
    infer = minidl.compile(batch_stats, example_inputs=(x,))
    assert "batch_norm" in op_names(infer) and "channel_affine_fold" not in op_names(infer)
    assert_close_to_eager(infer, batch_stats, x)


class BatchStatistics(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x):
        return F.batch_norm(self.conv(x), None, None)
