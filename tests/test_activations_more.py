"""The activations past the ReLU family (logsigmoid, softmin, Softmax2d, celu, glu, the shrink
functions, threshold, rrelu) and the in-place F aliases, against PyTorch 2.13: values and
gradients in float64 and float32, kinks and NaN, defaults, reprs, errors; float64 numerical
gradient checks for every new op."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

# Inputs with the kinks (0, +-0.5 = the default lambd, +-1), large |x| and a NaN.
SPECIAL = np.array([np.nan, 0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 40.0, -40.0, 800.0,
                    -800.0, 1e-8, -1e-8])

# name -> (call on a functional namespace, input away from kinks for gradcheck)
ELEMENTWISE = {
    "logsigmoid": lambda F_, x: F_.logsigmoid(x),
    "celu": lambda F_, x: F_.celu(x),
    "celu_alpha": lambda F_, x: F_.celu(x, 0.7),
    "celu_negative_alpha": lambda F_, x: F_.celu(x, -1.5),
    "hardshrink": lambda F_, x: F_.hardshrink(x),
    "hardshrink_1": lambda F_, x: F_.hardshrink(x, 1.0),
    "softshrink": lambda F_, x: F_.softshrink(x),
    "softshrink_0": lambda F_, x: F_.softshrink(x, 0.0),
    "tanhshrink": lambda F_, x: F_.tanhshrink(x),
    "threshold": lambda F_, x: F_.threshold(x, 0.5, -3.0),
    "threshold_negative": lambda F_, x: F_.threshold(x, -1.0, 7.0),
    "rrelu_eval": lambda F_, x: F_.rrelu(x),
    "rrelu_eval_bounds": lambda F_, x: F_.rrelu(x, 0.2, 0.6, False),
}
ROWS = {
    "softmin": lambda F_, x: F_.softmin(x, 1),
    "softmin_dim0": lambda F_, x: F_.softmin(x, dim=0),
    "softmin_dtype": lambda F_, x: F_.softmin(x, -1, dtype=np_or_torch_float64(F_)),
    "glu": lambda F_, x: F_.glu(x),
    "glu_dim0": lambda F_, x: F_.glu(x, 0),
}


def np_or_torch_float64(F_):
    return minidl.float64 if F_ is F else __import__("torch").float64


def smooth_input(shape, seed):
    """Values in +-[0.6, 3]: away from every kink of the ops above (0, +-0.5, +-1 excepted
    for hardshrink_1 and threshold_negative, which stay 0.4 away from theirs)."""
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.6, 3.0, shape)
    magnitude = np.where(np.abs(magnitude - 1.0) < 0.4, magnitude + 0.8, magnitude)
    return magnitude * rng.choice([-1.0, 1.0], shape)


def run(fn, namespace, x, g, lib):
    """(value, gradient) of fn over x with upstream gradient g, in minidl or torch."""
    if lib == "torch":
        import torch

        tx = torch.tensor(x, requires_grad=True)
        out = fn(namespace, tx)
        out.backward(torch.tensor(g, dtype=out.dtype))
        return out.detach().numpy(), tx.grad.numpy()
    mx = minidl.tensor(x, requires_grad=True)
    out = fn(namespace, mx)
    out.backward(minidl.tensor(g.astype(out.dtype)))
    return out.numpy(), mx.grad.numpy()


def tolerance(dtype):
    return {"rtol": 1e-12, "atol": 1e-14} if dtype == np.float64 else {"rtol": 2e-6,
                                                                       "atol": 1e-7}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_activation_matches_torch_at_kinks_nan_and_large_inputs(name, dtype):
    torch = pytest.importorskip("torch")
    fn = ELEMENTWISE[name]
    x = np.concatenate([SPECIAL, smooth_input(20, 1) * 2]).astype(dtype)
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ours = run(fn, F, x, g, "minidl")
    theirs = run(fn, torch.nn.functional, x, g, "torch")
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, **tolerance(dtype), err_msg=name)
    # Signed zeros as PyTorch's: celu(-0.0) is -0.0, softshrink's zeros are +0.0.
    numbers = ~np.isnan(theirs[0])
    np.testing.assert_array_equal(np.signbit(ours[0][numbers]), np.signbit(theirs[0][numbers]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_activation_matches_torch(name, dtype):
    torch = pytest.importorskip("torch")
    fn = ROWS[name]
    x = (smooth_input((4, 6), 3) * 5).astype(dtype)
    x[0, :] += 500.0  # large logits: softmin stays finite
    g = np.random.default_rng(4).standard_normal(fn(F, minidl.tensor(x)).shape)
    ours = run(fn, F, x, g, "minidl")
    theirs = run(fn, torch.nn.functional, x, g, "torch")
    assert ours[0].dtype == theirs[0].dtype
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE) + sorted(ROWS))
def test_new_activation_gradcheck(name):
    fn = {**ELEMENTWISE, **ROWS}[name]
    x = minidl.tensor(smooth_input((4, 6), 5), requires_grad=True)
    assert gradcheck(lambda a: fn(F, a), [x])
    fn(F, x).sum().backward()
    assert np.abs(x.grad.numpy()).max() > 0


def test_logsigmoid_is_exact_for_large_inputs():
    x = minidl.tensor(np.array([-1000.0, -40.0, 40.0, 1000.0], np.float32), requires_grad=True)
    y = F.logsigmoid(x)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [-1000.0, -40.0, -np.exp(-40.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0, np.exp(-40.0), 0.0], rtol=1e-6)


def test_softmax2d_is_softmax_over_channels_and_rejects_other_ranks():
    torch = pytest.importorskip("torch")
    for shape in [(2, 3, 4, 5), (3, 4, 5), (1, 1, 1, 1)]:
        x = np.random.default_rng(6).standard_normal(shape)
        g = np.random.default_rng(7).standard_normal(shape)
        ours = run(lambda ns, a: nn.Softmax2d()(a), None, x, g, "minidl")
        theirs = run(lambda ns, a: torch.nn.Softmax2d()(a), None, x, g, "torch")
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="Softmax2d: expected input to be 3D or 4D, got 2D"):
        nn.Softmax2d()(minidl.ones(2, 2))


def test_softmin_without_dim_warns_and_picks_pytorchs_dim():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((2, 3))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        ours = F.softmin(minidl.tensor(x))
    with pytest.warns(UserWarning):
        theirs = torch.nn.functional.softmin(torch.tensor(x))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


def test_glu_shapes_and_errors():
    x = minidl.ones(2, 6, 3)
    assert F.glu(x, 1).shape == (2, 3, 3)
    assert F.glu(minidl.ones(0, 4)).shape == (0, 2)
    with pytest.raises(RuntimeError, match="Halving dimension must be even, but dimension 2 is "
                                           "size 3"):
        F.glu(x)
    with pytest.raises(RuntimeError, match="glu does not support scalars"):
        F.glu(minidl.tensor(1.0))
    with pytest.raises(IndexError, match="glu: dimension out of range"):
        F.glu(x, 3)


def test_argument_errors_match_torch():
    x = minidl.tensor([1.0, -2.0])
    with pytest.raises(RuntimeError, match="alpha cannot be 0 for CELU"):
        F.celu(x, 0.0)
    with pytest.raises(RuntimeError, match="softshrink: lambda must be in range"):
        F.softshrink(x, -1.0)
    with pytest.raises(RuntimeError, match="Lower bound should be less than or equal"):
        F.rrelu(x, 0.5, 0.1)
    with pytest.raises(RuntimeError, match="Lower bound should be less than or equal"):
        F.rrelu(x, 0.5, 0.1, training=True)
    for fn in (F.logsigmoid, F.celu, F.hardshrink, F.softshrink, F.rrelu):
        with pytest.raises(TypeError, match="expected a float32 or float64 input"):
            fn(minidl.tensor([1, 2]))
    with pytest.raises(TypeError, match="threshold: expected a float or integer input"):
        F.threshold(minidl.tensor([True]), 0.5, 0.0)


def test_threshold_on_integers_casts_value_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([1, 2, 3, -4])
    ours = F.threshold(minidl.tensor(x), 1.5, 2.7)
    theirs = torch.nn.functional.threshold(torch.tensor(x), 1.5, 2.7)
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_rrelu_training_draws_one_slope_per_nonpositive_element():
    minidl.manual_seed(0)
    x = minidl.tensor(np.concatenate([-np.ones(20000), np.zeros(10), np.ones(10)]),
                      requires_grad=True)
    y = F.rrelu(x, 0.1, 0.3, training=True)
    y.sum().backward()
    slopes = -y.numpy()[:20000]
    assert 0.1 <= slopes.min() and slopes.max() <= 0.3
    # U(0.1, 0.3): mean 0.2, variance 0.2^2 / 12
    assert abs(slopes.mean() - 0.2) < 0.003
    assert abs(slopes.var() - 0.04 / 12) < 2e-4
    assert len(np.unique(slopes)) > 19000
    # The gradient is each element's slope; x = 0 gets a slope too (PyTorch's x <= 0).
    grad = x.grad.numpy()
    np.testing.assert_array_equal(grad[:20000], slopes)
    assert np.all((grad[20000:20010] >= 0.1) & (grad[20000:20010] <= 0.3))
    np.testing.assert_array_equal(grad[20010:], 1.0)
    np.testing.assert_array_equal(y.numpy()[20000:], [0.0] * 10 + [1.0] * 10)


def test_rrelu_is_reproducible_from_the_seed_and_gradchecks_with_a_fixed_draw():
    x = smooth_input((3, 5), 9)
    minidl.manual_seed(3)
    a = F.rrelu(minidl.tensor(x), training=True).numpy()
    minidl.manual_seed(3)
    b = F.rrelu(minidl.tensor(x), training=True).numpy()
    np.testing.assert_array_equal(a, b)

    def fn(t):
        minidl.manual_seed(4)
        return F.rrelu(t, training=True)

    assert gradcheck(fn, [minidl.tensor(x, requires_grad=True)])


def test_rrelu_module_follows_train_and_eval_modes():
    x = minidl.tensor(-np.ones(1000))
    m = nn.RReLU(0.1, 0.5)
    assert len(np.unique(m(x).numpy())) > 900
    m.eval()
    np.testing.assert_allclose(m(x).numpy(), -0.3, rtol=1e-15)


INPLACE = [
    ("relu_", (), "relu", ()),
    ("elu_", (0.5,), "elu", (0.5,)),
    ("selu_", (), "selu", ()),
    ("celu_", (0.5,), "celu", (0.5,)),
    ("leaky_relu_", (0.2,), "leaky_relu", (0.2,)),
    ("hardtanh_", (-0.5, 0.7), "hardtanh", (-0.5, 0.7)),
    ("threshold_", (0.1, 9.0), "threshold", (0.1, 9.0)),
    ("rrelu_", (), "rrelu", ()),
]


@pytest.mark.parametrize("name,args,out_of_place,out_args", INPLACE,
                         ids=[c[0] for c in INPLACE])
def test_inplace_alias_overwrites_and_returns_its_input(name, args, out_of_place, out_args):
    torch = pytest.importorskip("torch")
    x = smooth_input((3, 4), 10)
    expected = getattr(F, out_of_place)(minidl.tensor(x), *out_args).numpy()
    mx = minidl.tensor(x.copy())
    assert getattr(F, name)(mx, *args) is mx
    np.testing.assert_array_equal(mx.numpy(), expected)
    tx = torch.tensor(x.copy())
    getattr(torch.nn.functional, name)(tx, *args)
    np.testing.assert_allclose(mx.numpy(), tx.numpy(), rtol=1e-12)
    # A leaf that requires grad cannot be overwritten (PyTorch raises too).
    leaf = minidl.tensor(x, requires_grad=True)
    with pytest.raises(RuntimeError):
        getattr(F, name)(leaf, *args)


@pytest.mark.parametrize("name,args,out_of_place,out_args", INPLACE,
                         ids=[c[0] for c in INPLACE])
def test_inplace_alias_on_an_intermediate_backpropagates_as_torch(name, args, out_of_place,
                                                                   out_args):
    """The input is overwritten before backward: the ops save what they need elsewhere. celu_
    differentiates through its result, as PyTorch's (alpha 0.7 is not a float32: the two
    formulas differ by 1e-8)."""
    torch = pytest.importorskip("torch")
    x = smooth_input((3, 4), 11)
    mx = minidl.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    if name == "rrelu_":
        args = (0.3, 0.3, True)  # one slope: training mode with torch's numbers
    args = (0.7,) if name == "celu_" else args
    (getattr(F, name)(mx * 2, *args) * 3).sum().backward()
    (getattr(torch.nn.functional, name)(tx * 2, *args) * 3).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-15)


@pytest.mark.parametrize("inplace", [False, True])
def test_module_inplace_flag(inplace):
    x = minidl.tensor(smooth_input((2, 3), 12))
    before = x.numpy().copy()
    for module in (nn.CELU(inplace=inplace), nn.Threshold(0.0, 1.0, inplace),
                   nn.RReLU(inplace=inplace)):
        x = minidl.tensor(before.copy())
        y = module(x)
        assert (y is x) == inplace
        assert np.array_equal(x.numpy(), before) != inplace


MODULES = [
    ("LogSigmoid", (), {}), ("Softmin", (), {}), ("Softmin", (1,), {}), ("Softmax2d", (), {}),
    ("CELU", (), {}), ("CELU", (0.5, True), {}), ("GLU", (), {}), ("GLU", (1,), {}),
    ("Hardshrink", (), {}), ("Hardshrink", (0.25,), {}), ("Softshrink", (), {}),
    ("Softshrink", (2,), {}), ("Tanhshrink", (), {}), ("Threshold", (0.1, 20), {}),
    ("Threshold", (0.1, 20.0, True), {}), ("RReLU", (), {}),
    ("RReLU", (0.1, 0.3), {"inplace": True}),
]


@pytest.mark.parametrize("name,args,kwargs", MODULES)
def test_module_repr_and_attributes_match_torch(name, args, kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    for attr in ("dim", "alpha", "inplace", "lambd", "threshold", "value", "lower", "upper"):
        assert getattr(ours, attr, None) == getattr(theirs, attr, None), attr


@pytest.mark.parametrize("name,args", [("LogSigmoid", ()), ("Softmin", (1,)), ("CELU", (0.3,)),
                                       ("GLU", (1,)), ("Hardshrink", ()), ("Softshrink", (0.2,)),
                                       ("Tanhshrink", ()), ("Threshold", (0.4, -1.0))])
def test_module_matches_torch_module(name, args):
    torch = pytest.importorskip("torch")
    x = smooth_input((2, 4, 3), 13)
    np.testing.assert_allclose(getattr(nn, name)(*args)(minidl.tensor(x)).numpy(),
                               getattr(torch.nn, name)(*args)(torch.tensor(x)).numpy(),
                               rtol=1e-12, atol=1e-15)


def test_batch_zero_and_size_one_inputs():
    for shape in [(0, 3), (1, 1), (1,)]:
        x = minidl.tensor(np.full(shape, -0.7), requires_grad=True)
        for fn in ELEMENTWISE.values():
            y = fn(F, x)
            assert y.shape == shape
            y.sum().backward()
        assert x.grad.shape == shape
