"""Layers: forward against NumPy references, float64 gradchecks, PyTorch where installed."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

RNG = np.random.default_rng(0)


def t64(a, requires_grad=True):
    return minidl.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# -- Linear -------------------------------------------------------------------------------
def test_linear_forward_gradcheck_and_batch_of_one():
    minidl.manual_seed(0)
    m = nn.Linear(4, 3, dtype=np.float64)
    x = RNG.standard_normal((1, 4))
    ref = x @ m.weight.numpy().T + m.bias.numpy()
    np.testing.assert_allclose(m(t64(x, False)).numpy(), ref, rtol=1e-12)
    assert gradcheck(lambda a, w, b: F.linear(a, w, b), [t64(x), m.weight, m.bias])
    assert m(t64(RNG.standard_normal((2, 5, 4)), False)).shape == (2, 5, 3)


def test_linear_without_bias_and_float32_default():
    m = nn.Linear(3, 2, bias=False)
    assert m.weight.dtype == np.float32 and m.bias is None
    x = minidl.randn(5, 3)
    np.testing.assert_allclose(m(x).numpy(), x.numpy() @ m.weight.numpy().T, rtol=1e-6)
    assert "bias=False" in repr(m)


def test_linear_and_conv_default_init_bounds():
    minidl.manual_seed(1)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (lin.weight, lin.bias):
        assert np.abs(p.numpy()).max() <= bound
        assert np.abs(p.numpy()).max() > 0.95 * bound
    assert abs(lin.weight.numpy().std() - bound / math.sqrt(3)) < 0.02 * bound
    conv = nn.Conv2d(6, 16, 5)
    conv_bound = 1 / math.sqrt(6 * 25)
    assert np.abs(conv.weight.numpy()).max() <= conv_bound
    assert np.abs(conv.bias.numpy()).max() <= conv_bound


def test_layer_initialization_is_seeded():
    minidl.manual_seed(5)
    a = nn.Linear(3, 3).weight.numpy().copy()
    minidl.manual_seed(5)
    np.testing.assert_array_equal(nn.Linear(3, 3).weight.numpy(), a)


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    m = nn.Linear(5, 3, dtype=np.float64)
    x = RNG.standard_normal((4, 5))
    mx = t64(x)
    m(mx).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(m.weight.numpy(), requires_grad=True)
    tb = torch.tensor(m.bias.numpy(), requires_grad=True)
    torch.nn.functional.linear(tx, tw, tb).sum().backward()
    for mine, theirs in ((mx, tx), (m.weight, tw), (m.bias, tb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


# -- Conv2d and pooling modules -------------------------------------------------------------
def conv2d_ref(x, w, b, stride, padding):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = xp.shape
    oc, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return out + b.reshape(1, -1, 1, 1)


def test_conv2d_module_forward_and_gradcheck():
    minidl.manual_seed(2)
    m = nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64)
    x = RNG.standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(m(t64(x, False)).numpy(),
                               conv2d_ref(x, m.weight.numpy(), m.bias.numpy(), 2, 1), rtol=1e-10)
    assert gradcheck(lambda a, w, b: F.conv2d(a, w, b, 2, 1), [t64(x[:1]), m.weight, m.bias])
    assert "padding=(1, 1)" in repr(m) and "stride=(2, 2)" in repr(m)


def test_conv2d_rejects_groups_mismatch():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_conv_and_pool_modules_match_torch():
    torch = pytest.importorskip("torch")
    minidl.manual_seed(3)
    x = RNG.standard_normal((2, 3, 9, 9))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(4, 4, 2, dtype=np.float64),
                          nn.AvgPool2d(2, stride=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 4, 2),
                                 torch.nn.AvgPool2d(2, stride=1), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten()).double()
    tmodel.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    mx = t64(x)
    out = model(mx)
    out.backward(np.ones(out.shape))
    tx = torch.tensor(x, requires_grad=True)
    tout = tmodel(tx)
    tout.backward(torch.ones(tout.shape, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[0].weight.grad.numpy(), tmodel[0].weight.grad.numpy(),
                               rtol=1e-10, atol=1e-12)


def test_pool_modules_default_stride_is_kernel_size():
    x = minidl.randn(1, 1, 4, 4)
    assert nn.MaxPool2d(2)(x).shape == (1, 1, 2, 2)
    assert nn.AvgPool2d(2)(x).shape == (1, 1, 2, 2)
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(x).numpy().ravel(), [x.numpy().mean()],
                               rtol=1e-6)


# -- BatchNorm ----------------------------------------------------------------------------
def batch_norm_ref(x, mean, var, w, b, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * w.reshape(
        shape) + b.reshape(shape)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                       (nn.BatchNorm2d, (3, 3, 4, 4))])
def test_batch_norm_training_forward_and_running_stats(cls, shape):
    m = cls(3, momentum=0.2, dtype=np.float64)
    m.weight.data[:] = [1.0, 2.0, 0.5]
    m.bias.data[:] = [0.0, -1.0, 1.0]
    x = RNG.standard_normal(shape) * 2 + 1
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    out = m(t64(x, False))
    np.testing.assert_allclose(out.numpy(), batch_norm_ref(x, mean, var, m.weight.numpy(),
                                                           m.bias.numpy(), 1e-5), rtol=1e-10)
    n = x.size // 3
    np.testing.assert_allclose(m.running_mean.numpy(), 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(m.running_var.numpy(), 0.8 + 0.2 * var * n / (n - 1), rtol=1e-12)
    assert m.num_batches_tracked.item() == 1


def test_batch_norm_eval_uses_running_stats():
    m = nn.BatchNorm2d(2, dtype=np.float64)
    m.running_mean.data[:] = [1.0, -1.0]
    m.running_var.data[:] = [4.0, 0.25]
    m.eval()
    x = RNG.standard_normal((1, 2, 3, 3))  # batch of 1 is fine in eval mode
    out = m(t64(x, False))
    np.testing.assert_allclose(out.numpy(), batch_norm_ref(x, m.running_mean.numpy(),
                                                           m.running_var.numpy(), np.ones(2),
                                                           np.zeros(2), 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(m.running_mean.numpy(), [1.0, -1.0])
    assert m.num_batches_tracked.item() == 0


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
def test_batch_norm_gradcheck(training, shape):
    x = t64(RNG.standard_normal(shape))
    w, b = t64([1.5, -0.5, 0.8]), t64([0.1, 0.2, -0.3])
    rm, rv = np.array([0.2, -0.1, 0.0]), np.array([1.5, 0.7, 1.0])

    def fn(a, weight, bias):
        # Fresh copies: a training-mode call updates the running statistics it is given.
        return F.batch_norm(a, rm.copy(), rv.copy(), weight, bias, training=training)

    assert gradcheck(fn, [x, w, b])


def test_batch_norm_training_rejects_one_value_per_channel():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(minidl.randn(1, 3))


def test_batch_norm_options():
    x = minidl.tensor(RNG.standard_normal((8, 2)).astype(np.float32))
    plain = nn.BatchNorm1d(2, affine=False)
    assert list(plain.parameters()) == []
    out = plain(x).numpy()
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-7)
    untracked = nn.BatchNorm1d(2, track_running_stats=False)
    assert untracked.running_mean is None and list(untracked.state_dict()) == ["weight", "bias"]
    untracked.eval()
    np.testing.assert_allclose(untracked(x).numpy(), out, rtol=1e-6)  # batch statistics
    cumulative = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    batches = [RNG.standard_normal((4, 2)) for _ in range(3)]
    for b in batches:
        cumulative(t64(b, False))
    np.testing.assert_allclose(cumulative.running_mean.numpy(),
                               np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="expected 2 channels"):
        nn.BatchNorm1d(2)(minidl.randn(4, 3))
    with pytest.raises(ValueError, match="4-d input"):
        nn.BatchNorm2d(2)(minidl.randn(4, 2))


@pytest.mark.parametrize("shape", [(6, 3), (3, 3, 4, 4)])
def test_batch_norm_matches_torch_over_train_and_eval_steps(shape):
    torch = pytest.importorskip("torch")
    cls, tcls = ((nn.BatchNorm1d, torch.nn.BatchNorm1d) if len(shape) == 2
                 else (nn.BatchNorm2d, torch.nn.BatchNorm2d))
    m = cls(3, momentum=0.3, dtype=np.float64)
    tm = tcls(3, momentum=0.3).double()
    for step in range(4):
        x = RNG.standard_normal(shape) * 3 + step
        g = RNG.standard_normal(shape)
        if step == 3:
            m.eval()
            tm.eval()
        mx, tx = t64(x), torch.tensor(x, requires_grad=True)
        out, tout = m(mx), tm(tx)
        out.backward(g)
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k].numpy(), v.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(m.bias.grad.numpy(), tm.bias.grad.numpy(), rtol=1e-9)


# -- LocallyConnected2d -------------------------------------------------------------------
def locally_connected_ref(x, w, b, stride, padding):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow, oc, _, kh, kw = w.shape
    out = np.zeros((x.shape[0], oc, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w[i, j])
    return out if b is None else out + b


@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), (2, 1, True), (1, 1, False)])
def test_locally_connected_forward_and_gradcheck(stride, padding, bias):
    minidl.manual_seed(4)
    m = nn.LocallyConnected2d(2, 3, input_size=5, kernel_size=3, stride=stride,
                              padding=padding, bias=bias, dtype=np.float64)
    oh = (5 + 2 * padding - 3) // stride + 1
    assert m.weight.shape == (oh, oh, 3, 2, 3, 3) and m.output_size == (oh, oh)
    x = RNG.standard_normal((2, 2, 5, 5))
    b = m.bias.numpy() if bias else None
    np.testing.assert_allclose(m(t64(x, False)).numpy(),
                               locally_connected_ref(x, m.weight.numpy(), b, stride, padding),
                               rtol=1e-10)
    inputs = [t64(x[:1]), m.weight] + ([m.bias] if bias else [])
    assert gradcheck(lambda a, w, *rest: F.locally_connected2d(a, w, rest[0] if rest else None,
                                                               stride, padding), inputs)


def test_locally_connected_does_not_share_weights():
    m = nn.LocallyConnected2d(1, 1, (3, 4), (2, 2), bias=False, dtype=np.float64)
    m.weight.data[:] = 0
    m.weight.data[0, 1] = 1  # only output position (0, 1) sees its window
    x = minidl.tensor(np.arange(12.0).reshape(1, 1, 3, 4))
    out = m(x).numpy()[0, 0]
    expected = np.zeros((2, 3))
    expected[0, 1] = 1 + 2 + 5 + 6
    np.testing.assert_array_equal(out, expected)


def test_locally_connected_errors():
    m = nn.LocallyConnected2d(1, 2, 6, 3)
    with pytest.raises(ValueError, match=r"expected input \(N, 1, 6, 6\)"):
        m(minidl.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="does not fit"):
        nn.LocallyConnected2d(1, 1, 2, 3)
    assert "input_size=(6, 6)" in repr(m)


def test_batch_norm_with_bias_only_keeps_saved_values_intact():
    x = t64(RNG.standard_normal((4, 3)))
    b = t64([0.5, -1.0, 2.0])
    assert gradcheck(lambda a, bias: F.batch_norm(a, None, None, None, bias, training=True),
                     [x, b])


def test_locally_connected_matches_torch_unfold_formulation():
    torch = pytest.importorskip("torch")
    m = nn.LocallyConnected2d(2, 3, (6, 5), 3, stride=2, padding=1, dtype=np.float64)
    x = RNG.standard_normal((2, 2, 6, 5))
    g = RNG.standard_normal((2, 3) + m.output_size)
    mx = t64(x)
    m(mx).backward(g)
    oh, ow = m.output_size
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(m.weight.numpy(), requires_grad=True)
    tb = torch.tensor(m.bias.numpy(), requires_grad=True)
    cols = torch.nn.functional.unfold(tx, 3, padding=1, stride=2)  # (N, C*9, OH*OW)
    weights = tw.reshape(oh * ow, 3, 18)                             # (L, OC, C*9)
    tout = torch.einsum("nkl,lok->nol", cols, weights).reshape(2, 3, oh, ow) + tb
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(m(t64(x, False)).numpy(), tout.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.weight.grad.numpy(), tw.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.bias.grad.numpy(), tb.grad.numpy(), rtol=1e-12)


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")
    pairs = [(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), ("eps", "momentum", "affine",
                                                         "track_running_stats")),
             (nn.LeakyReLU(), torch.nn.LeakyReLU(), ("negative_slope",)),
             (nn.ELU(), torch.nn.ELU(), ("alpha",)),
             (nn.Dropout(), torch.nn.Dropout(), ("p",)),
             (nn.Flatten(), torch.nn.Flatten(), ("start_dim", "end_dim")),
             (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(),
              ("ignore_index", "reduction", "label_smoothing")),
             (nn.MultiMarginLoss(), torch.nn.MultiMarginLoss(), ("p", "margin", "reduction")),
             (nn.MaxPool2d(2), torch.nn.MaxPool2d(2), ("stride", "padding", "dilation",
                                                       "ceil_mode")),
             (nn.AvgPool2d(2), torch.nn.AvgPool2d(2), ("stride", "padding", "ceil_mode",
                                                       "count_include_pad"))]
    for mine, theirs, attributes in pairs:
        for name in attributes:
            assert getattr(mine, name) == getattr(theirs, name), (type(mine).__name__, name)
    assert nn.PReLU().weight.item() == pytest.approx(torch.nn.PReLU().weight.item())


def test_maxout_matches_torch():
    torch = pytest.importorskip("torch")
    m = nn.Maxout(5, 2, pieces=3, dtype=np.float64)
    x = RNG.standard_normal((4, 5))
    mx = t64(x)
    m(mx).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(m.weight.numpy(), requires_grad=True)
    tb = torch.tensor(m.bias.numpy(), requires_grad=True)
    torch.nn.functional.linear(tx, tw, tb).reshape(4, 2, 3).amax(dim=2).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.weight.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), oc=st.integers(1, 3), h=st.integers(1, 7),
       w=st.integers(1, 7), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_locally_connected_property_against_reference(n, c, oc, h, w, k, stride, padding, seed):
    assume(k <= h + 2 * padding and k <= w + 2 * padding)
    minidl.manual_seed(seed)
    m = nn.LocallyConnected2d(c, oc, (h, w), k, stride, padding, dtype=np.float64)
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    xt = t64(x)
    out = m(xt)
    np.testing.assert_allclose(out.numpy(), locally_connected_ref(x, m.weight.numpy(),
                                                                  m.bias.numpy(), stride, padding),
                               rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(g)
    # Adjointness: <d out, g> = <grad_x, d x> for any direction, since the map is linear in x.
    dx = np.random.default_rng(seed + 2).standard_normal(x.shape)
    with minidl.no_grad():
        shifted = m(t64(x + dx, False)).numpy() - out.numpy()
    np.testing.assert_allclose((shifted * g).sum(), (xt.grad.numpy() * dx).sum(), rtol=1e-8,
                               atol=1e-10)


def test_batch_norm_op_owns_every_state_update():
    # A static graph replays the op with the same attributes: the counter and the cumulative
    # average must advance inside the op, not in the module's Python code.
    from minidl.ops.activation import BatchNormOp

    mean, var, count = np.zeros(2), np.ones(2), np.zeros((), np.int64)
    batches = [RNG.standard_normal((5, 2)) for _ in range(3)]
    attrs = {"running_mean": mean, "running_var": var, "num_batches_tracked": count,
             "training": True, "momentum": None, "eps": 1e-5}
    for b in batches:
        BatchNormOp.apply(t64(b, False), None, None, **attrs)
    assert count == 3
    np.testing.assert_allclose(mean, np.mean([b.mean(axis=0) for b in batches], axis=0),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="needs num_batches_tracked"):
        F.batch_norm(t64(batches[0], False), np.zeros(2), np.ones(2), training=True,
                     momentum=None)


@pytest.mark.parametrize("module", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=1, padding=1),
                                    nn.AvgPool2d(2), nn.AvgPool2d(3, 2, 1),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Identity()],
                         ids=lambda m: repr(m).splitlines()[0])
def test_shape_and_pool_modules_gradcheck(module):
    # Distinct values spaced 0.01 apart: no max-pool ties within the finite-difference step.
    x = RNG.permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) * 0.01
    assert gradcheck(module, [t64(x)])


def test_layer_norm_matches_a_reference_gradcheck_and_torch():
    """F.layer_norm / nn.LayerNorm over the last two dims: the float64 reference formula
    (biased variance), gradcheck for input, weight and bias, PyTorch where installed, the
    input's dtype kept, and a normalized_shape that does not end the input's shape raises."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mean = x.mean(axis=(1, 2), keepdims=True)
    ref = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=(1, 2), keepdims=True) + 1e-5) * w + b
    tx, tw, tb = (minidl.tensor(a, requires_grad=True) for a in (x, w, b))
    np.testing.assert_allclose(F.layer_norm(tx, (3, 4), tw, tb).numpy(), ref, rtol=1e-12,
                               atol=1e-12)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), (tx, tw, tb))
    layer = nn.LayerNorm(4)
    assert [tuple(p.shape) for p in layer.parameters()] == [(4,), (4,)]
    assert layer(minidl.tensor(x.astype(np.float32))).dtype == minidl.float32
    with pytest.raises(ValueError, match=r"normalized_shape \(5,\) does not end"):
        F.layer_norm(tx, (5,))
    torch = pytest.importorskip("torch")
    g = rng.standard_normal(x.shape)
    tx, tw, tb = (minidl.tensor(a, requires_grad=True) for a in (x, w, b))
    F.layer_norm(tx, (3, 4), tw, tb).backward(minidl.tensor(g))
    rx, rw, rb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.layer_norm(rx, (3, 4), rw, rb).backward(torch.tensor(g))
    for mine, theirs in ((tx, rx), (tw, rw), (tb, rb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 4), 3), ((3, 4), 2), ((2, 4, 5), 1),
                                          ((1, 6, 2, 2), 6), ((0, 4, 2, 2), 2)])
def test_group_norm_matches_a_reference_gradcheck_and_torch(shape, groups):
    """F.group_norm / nn.GroupNorm: the float64 reference formula (biased variance over each
    group's channels and positions, per-channel affine), gradcheck for input, weight and bias,
    PyTorch where installed (values and every gradient), and bad shapes raise."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    xg = x.reshape(shape[0], groups, x[0].size // groups if shape[0] else 1)
    mean = xg.mean(axis=2, keepdims=True)
    xhat = ((xg - mean) / np.sqrt(((xg - mean) ** 2).mean(axis=2, keepdims=True) + 1e-5))
    channel = (1, c) + (1,) * (len(shape) - 2)
    ref = xhat.reshape(shape) * w.reshape(channel) + b.reshape(channel)
    tx, tw, tb = (minidl.tensor(a, requires_grad=True) for a in (x, w, b))
    np.testing.assert_allclose(F.group_norm(tx, groups, tw, tb).numpy(), ref, rtol=1e-12,
                               atol=1e-12)
    if x.size:
        assert gradcheck(lambda x, w, b: F.group_norm(x, groups, w, b), (tx, tw, tb))
    layer = nn.GroupNorm(groups, c)
    assert [tuple(p.shape) for p in layer.parameters()] == [(c,), (c,)]
    assert layer(minidl.tensor(x.astype(np.float32))).dtype == minidl.float32
    torch = pytest.importorskip("torch")
    g = rng.standard_normal(shape)
    tx, tw, tb = (minidl.tensor(a, requires_grad=True) for a in (x, w, b))
    F.group_norm(tx, groups, tw, tb).backward(minidl.tensor(g))
    rx, rw, rb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    want = torch.nn.functional.group_norm(rx, groups, rw, rb)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(F.group_norm(minidl.tensor(x), groups, minidl.tensor(w),
                                            minidl.tensor(b)).numpy(), want.detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    for mine, theirs in ((tx, rx), (tw, rw), (tb, rb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_group_norm_rejects_bad_groups_and_shapes():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"GroupNorm: expected an input \(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(minidl.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="C divisible by num_groups=4"):
        F.group_norm(minidl.zeros(2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(6,\)"):
        F.group_norm(minidl.zeros(2, 6, 3), 3, minidl.ones(4))
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        F.group_norm(minidl.zeros(2, 6, 3), 0)


def test_embedding_picks_rows_and_adds_their_gradients():
    """F.embedding / nn.Embedding: rows picked by an index tensor of any shape; a row picked
    twice gets both gradients, padding_idx's row none (and starts at zero in the module); the
    indices are copied at forward (changing them afterwards changes no gradient); indices out
    of range or not integers raise naming the op."""
    weight = minidl.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    idx = np.array([[0, 2], [2, 3]])
    out = F.embedding(minidl.tensor(idx), weight, padding_idx=3)
    idx[0, 0] = 1
    np.testing.assert_array_equal(out.numpy(), np.arange(12.0).reshape(4, 3)[[[0, 2], [2, 3]]])
    out.backward(minidl.tensor(np.ones((2, 2, 3))))
    np.testing.assert_array_equal(weight.grad.numpy()[:, 0], [1.0, 0.0, 2.0, 0.0])
    layer = nn.Embedding(5, 2, padding_idx=-1)
    assert layer.padding_idx == 4 and not layer.weight.numpy()[4].any()
    assert tuple(layer(minidl.tensor([[1, 4, 0]])).shape) == (1, 3, 2)
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 4\)"):
        F.embedding(minidl.tensor([4]), weight)
    with pytest.raises(TypeError, match="embedding: indices must be an integer tensor"):
        F.embedding(minidl.tensor([0.5]), weight)


def test_dropout2d_zeroes_whole_channels_and_eval_is_identity():


    minidl.manual_seed(5)
    x = minidl.tensor(np.ones((8, 16, 3, 3)), requires_grad=True)
    drop = nn.Dropout2d(0.25)
    y = drop(x).numpy()
    per_channel = y.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(axis=2) | (per_channel == 1 / 0.75).all(axis=2))
    assert 0.1 < (per_channel[..., 0] == 0).mean() < 0.4
    drop(x).sum().backward()
    assert set(np.unique(x.grad.numpy())) == {0.0, 1 / 0.75}
    minidl.manual_seed(5)
    np.testing.assert_array_equal(nn.Dropout2d(0.25)(x).numpy(), y)  # minidl's own RNG
    with pytest.warns(UserWarning, match=r"interpreted as shape \(N, C, L\)"):
        three_d = nn.Dropout2d(0.5)(minidl.ones(6, 40, 3)).numpy()  # (N, C, L), as torch
    assert np.all((three_d == 0).all(axis=2) | (three_d == 2).all(axis=2))
    assert 0.3 < (three_d[..., 0] == 0).mean() < 0.7
    drop.eval()
    assert drop(x) is x
    np.testing.assert_array_equal(nn.Dropout2d(1.0)(x).numpy(), np.zeros(x.shape))
    with pytest.raises(ValueError, match="Dropout2d: p must be in"):
        nn.Dropout2d(1.5)
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        two_d = nn.Dropout2d()(minidl.ones(200, 3)).numpy()   # one draw per element
    assert 0.3 < (two_d == 0).mean() < 0.7
    with pytest.raises(RuntimeError, match="at least 2 dimensions"), pytest.warns(UserWarning):
        nn.Dropout2d()(minidl.ones(3))


def test_unflatten_module_and_tensor_method():


    x = minidl.tensor(np.arange(24.0).reshape(2, 12), requires_grad=True)
    y = nn.Unflatten(1, (3, -1))(x)
    assert y.shape == (2, 3, 4)
    np.testing.assert_array_equal(y.numpy(), np.arange(24.0).reshape(2, 3, 4))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 12)))
    assert x.unflatten(-1, (2, 2, 3)).shape == (2, 2, 2, 3)
    assert x.unflatten(0, [1, 2]).shape == (1, 2, 12)
    for sizes in [(5, 2), (-1, -1), (5, -1), ()]:
        with pytest.raises(ValueError, match="unflatten"):
            x.unflatten(1, sizes)
    torch = pytest.importorskip("torch")
    assert tuple(torch.zeros(2, 12).unflatten(1, (3, -1)).shape) == y.shape


def test_pytorch_layer_options_match_torch():
    """Options PyTorch's constructors take: device=, bias=False for the norms, MaxPool2d's
    return_indices (before ceil_mode), AvgPool2d's divisor_override, inplace activations."""
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    for ours, theirs in [(nn.BatchNorm2d(3, bias=False), torch.nn.BatchNorm2d(3, bias=False)),
                         (nn.GroupNorm(1, 3, bias=False), torch.nn.GroupNorm(1, 3, bias=False))]:
        assert list(ours.state_dict()) == list(theirs.state_dict())
        np.testing.assert_allclose(ours(minidl.tensor(x)).numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), atol=1e-5)
    out, idx = nn.MaxPool2d(2, 2, 0, 1, True)(minidl.tensor(x))
    t_out, t_idx = torch.nn.MaxPool2d(2, 2, 0, 1, True)(torch.tensor(x))
    np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    x64 = x.astype(np.float64)
    for kw in [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=5),
               dict(kernel_size=3, stride=2, ceil_mode=True, count_include_pad=False,
                    divisor_override=2)]:
        mx, tx = minidl.tensor(x64, requires_grad=True), torch.tensor(x64, requires_grad=True)
        a, b = nn.AvgPool2d(**kw)(mx), torch.nn.AvgPool2d(**kw)(tx)
        g = RNG.standard_normal(tuple(a.shape))
        a.backward(minidl.tensor(g))
        b.backward(torch.tensor(g))
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-14)
    with pytest.raises(RuntimeError, match="divisor must be a nonzero int"):
        F.avg_pool2d(minidl.tensor(x), 2, divisor_override=0)
    for make in (lambda m: m.ELU(0.5, True), lambda m: m.LeakyReLU(0.2, True)):
        xm, xt = minidl.tensor(x64.copy()), torch.tensor(x64.copy())
        make(nn)(xm)
        make(torch.nn)(xt)
        np.testing.assert_allclose(xm.numpy(), xt.numpy(), rtol=1e-14)  # written in place
    assert nn.Hardtanh(min_value=-2.0).min_val == torch.nn.Hardtanh(min_value=-2.0).min_val
    assert nn.Linear(3, 4, True, "cpu").weight.dtype == np.float32
    with pytest.raises(RuntimeError, match="CPU-only"):
        nn.Conv2d(1, 2, 3, device="cuda")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(1, 2, 3, padding_mode="mirror")  # (the other modes: test_cnn_layers.py)


@pytest.mark.parametrize("make", [lambda: nn.BatchNorm2d(3), lambda: nn.GroupNorm(1, 3),
                                  lambda: nn.LayerNorm(5), lambda: nn.PReLU(),
                                  lambda: nn.Linear(5, 2), lambda: nn.Conv2d(3, 2, 1)])
def test_float64_input_to_float32_layer_raises_as_in_torch(make):
    x = minidl.tensor(RNG.standard_normal((2, 3, 4, 5)))
    with pytest.raises(RuntimeError, match="dtype"):
        make()(x)
    make().double()(x)  # one dtype: fine


def test_embedding_max_norm_scale_grad_by_freq_and_from_pretrained_match_torch():
    torch = pytest.importorskip("torch")
    w = RNG.standard_normal((5, 3))
    idx = np.array([[0, 2, 2], [4, 0, 2]])
    for kw in [dict(max_norm=1.0), dict(max_norm=1.5, norm_type=1.0),
               dict(scale_grad_by_freq=True), dict(padding_idx=2, scale_grad_by_freq=True)]:
        mw, tw = minidl.tensor(w.copy(), requires_grad=True), torch.tensor(w.copy(),
                                                                           requires_grad=True)
        a = F.embedding(minidl.tensor(idx), mw, **kw)
        b = torch.nn.functional.embedding(torch.tensor(idx), tw, **kw)
        g = RNG.standard_normal(tuple(a.shape))
        a.backward(minidl.tensor(g))
        b.backward(torch.tensor(g))
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(mw.numpy(), tw.detach().numpy(), rtol=1e-14)  # renormed
        np.testing.assert_allclose(mw.grad.numpy(), tw.grad.numpy(), rtol=1e-14)
    # scale_grad_by_freq is a deliberate rescaling, not a derivative: a NumPy reference.
    mw = minidl.tensor(w, requires_grad=True)
    g = RNG.standard_normal(idx.shape + (3,))
    F.embedding(minidl.tensor(idx), mw, scale_grad_by_freq=True).backward(minidl.tensor(g))
    expected = np.zeros_like(w)
    np.add.at(expected, idx.ravel(), g.reshape(-1, 3))
    expected /= np.maximum(np.bincount(idx.ravel(), minlength=5), 1)[:, None]
    np.testing.assert_allclose(mw.grad.numpy(), expected, rtol=1e-14)
    frozen = nn.Embedding.from_pretrained(minidl.tensor(w))
    assert not frozen.weight.requires_grad and frozen.weight.dtype == np.float64
    np.testing.assert_array_equal(frozen(minidl.tensor([1])).numpy(), w[[1]])
    assert nn.Embedding.from_pretrained(minidl.tensor(w), freeze=False).weight.requires_grad
    with pytest.raises(NotImplementedError, match="sparse=True"):
        nn.Embedding(4, 2, sparse=True)(minidl.tensor([1]))
    with pytest.raises(ValueError, match="_weight has shape"):
        nn.Embedding(4, 2, _weight=minidl.zeros(3, 2))
