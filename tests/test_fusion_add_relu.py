"""Residual add + ReLU fused in compiled graphs (Add's `relu` epilogue): the fused op equals Add
then ReLU bit for bit, forward and backward, NaN and Inf included (eager ReLU keeps NaN), in
the Python replay and in the program's `add` / `add_backward` instructions."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.graph import Context
from minidl.nn import functional as F

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.5], np.float32)


def assert_same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def with_specials(shape, seed):
    """Random values with NaN, +-Inf and +-0 placed at random positions."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(np.float32)
    flat = a.reshape(-1)
    spots = rng.choice(flat.size, size=min(flat.size, 3 * SPECIALS.size), replace=False)
    flat[spots] = np.resize(SPECIALS, spots.size)
    return a


class Residual(nn.Module):
    """conv - BN, plus the identity, then ReLU (a basic block's tail)."""

    def __init__(self, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b_shape", [(3, 4, 5), (4, 5)], ids=["same", "broadcast"])
def test_fused_add_relu_equals_add_then_relu(dtype, b_shape):
    from minidl.ops.activation import ReLUOp
    from minidl.ops.elementwise import AddOp

    a = with_specials((3, 4, 5), 0).astype(dtype)
    b = with_specials(b_shape, 1).astype(dtype)
    g = with_specials((3, 4, 5), 2).astype(dtype)
    needs = (True, True)
    fused_ctx = Context(AddOp, (), needs)
    fused = AddOp.forward(fused_ctx, a, b, relu=True)
    add_ctx, relu_ctx = Context(AddOp, (), needs), Context(ReLUOp, (), (True,))
    plain = ReLUOp.forward(relu_ctx, AddOp.forward(add_ctx, a, b))
    assert_same_bits(fused, plain)
    assert np.isnan(fused).any() and np.isinf(fused).any()  # the specials reach the output
    ga, gb = AddOp.backward(fused_ctx, g)
    ea, eb = AddOp.backward(add_ctx, ReLUOp.backward(relu_ctx, g))
    assert_same_bits(ga, ea)
    assert_same_bits(gb, eb)


def compiled_pair(model, x, y=None):
    """(program, replay) compiled graphs of one model: inference, or training with y."""
    loss = None if y is None else (lambda out, t: (out * t).sum())
    inputs = (x,) if y is None else (x, y)
    return (minidl.compile(model, loss, example_inputs=inputs),
            minidl.compile(model, loss, example_inputs=inputs, executor="replay"))


class ConvResidual(Residual):
    """relu(conv(x) + x): in eval mode BN would fold into the conv, changing its rounding."""

    def forward(self, x):
        return F.relu(self.conv(x) + x)


def test_compiled_residual_add_relu_is_one_instruction_with_eager_bits_and_nans():
    minidl.manual_seed(0)
    model = ConvResidual().eval()
    x = minidl.tensor(with_specials((2, 4, 6, 6), 3))
    program, replay = compiled_pair(model, x)
    fused = [n for n in program.graph.nodes if n.attrs.get("relu") and n.fn.symbol == "+"]
    assert len(fused) == 1 and fused[0].fn.display_name(fused[0].attrs) == "Add + relu"
    assert "add" in program.graph.lower().program.opcodes()
    with minidl.no_grad():
        eager = model(x).data
    assert np.isnan(eager).any()
    assert_same_bits(program(x).data, eager)
    assert_same_bits(replay(x).data, eager)


class ResidualSkip(Residual):
    """relu(bn(conv(x)) + skip): the skip input carries the NaN and Inf, the conv path stays
    finite, so the masked gradient reaching the conv and BN parameters is finite."""

    def forward(self, x, skip):
        return F.relu(self.bn(self.conv(x)) + skip)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compiled_residual_add_relu_backward_gives_eager_bits(threads):
    """Training: the add_backward instruction's gradients (masked by the fused ReLU's output,
    NaN outputs passing the gradient) reach the conv and BN parameters as eager's."""
    minidl.manual_seed(1)
    model = ResidualSkip(channels=8)
    rng = np.random.default_rng(6)
    # 64 x 8 x 24 x 24 elements: past the instructions' parallel threshold.
    x = minidl.tensor(rng.standard_normal((64, 8, 24, 24)).astype(np.float32))
    skip = minidl.tensor(with_specials((64, 8, 24, 24), 4))
    weights = minidl.tensor(rng.standard_normal((64, 8, 24, 24)).astype(np.float32))

    def loss_fn(out, t):
        return (out * t).sum()

    before = minidl.get_num_threads()
    minidl.set_num_threads(threads)
    try:
        inputs = (x, skip, weights)
        program = minidl.compile(model, loss_fn, example_inputs=inputs)
        replay = minidl.compile(model, loss_fn, example_inputs=inputs, executor="replay")
        assert "add_backward" in program.graph.lower().program.opcodes()
        results = []
        for step in (program, replay, None):
            model.zero_grad()
            if step is None:
                out = model(x, skip)
                loss = loss_fn(out, weights)
                loss.backward()
            else:
                loss = step(*inputs)
                out = step.output
            results.append([out.data, loss.data] + [p.grad.data.copy()
                                                    for p in model.parameters()])
    finally:
        minidl.set_num_threads(before)
    assert np.isnan(results[2][0]).any() and np.isinf(results[2][0]).any()
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in results[2][2:])
    for got in results[:2]:
        for a, b in zip(got, results[2]):
            assert_same_bits(a, b)
