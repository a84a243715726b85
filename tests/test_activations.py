"""Activations (ops, functional and module forms) against NumPy, gradcheck and PyTorch."""

import math

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F


def away_from_zero(shape, seed=0, low=0.1, high=2.0):
    """Inputs with |x| in [low, high]: central differences never straddle the kinks at 0."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def t64(a, requires_grad=True):
    return minidl.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def sigmoid_ref(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


CASES = {
    "relu": (lambda x: F.relu(x), lambda x: np.maximum(x, 0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    "relu6": (lambda x: F.relu6(x), lambda x: np.clip(x, 0, 6)),
    "hardtanh": (lambda x: F.hardtanh(x, -0.75, 1.25), lambda x: np.clip(x, -0.75, 1.25)),
    "silu": (F.silu, lambda x: x / (1 + np.exp(-x))),
    "gelu": (F.gelu, lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    "erf": (lambda x: x.erf(), np.vectorize(math.erf)),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    "sigmoid": (F.sigmoid, sigmoid_ref),
    "softplus": (F.softplus, lambda x: np.log1p(np.exp(x))),
    "softplus_beta": (lambda x: F.softplus(x, beta=2.5, threshold=3.0),
                      lambda x: np.where(2.5 * x > 3.0, x, np.log1p(np.exp(2.5 * x)) / 2.5)),
    "mish": (F.mish, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    "hardswish": (lambda x: F.hardswish(x * 2), lambda x: 2 * x * np.clip(2 * x + 3, 0, 6) / 6),
    "hardsigmoid": (lambda x: F.hardsigmoid(x * 2), lambda x: np.clip(2 * x + 3, 0, 6) / 6),
    "selu": (F.selu, lambda x: 1.0507009873554804934193349852946 * np.where(
        x > 0, x, 1.6732632423543772848170429916717 * np.expm1(x))),
    "softsign": (F.softsign, lambda x: x / (1 + np.abs(x))),
    "tanh": (F.tanh, np.tanh),
    "softmax": (lambda x: F.softmax(x, 1),
                lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
    "log_softmax": (lambda x: F.log_softmax(x, -1),
                    lambda x: x - np.log(np.exp(x).sum(axis=-1, keepdims=True))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_forward_matches_numpy(name):
    fn, ref = CASES[name]
    x = away_from_zero((4, 5), seed=1)
    np.testing.assert_allclose(fn(t64(x, False)).numpy(), ref(x), rtol=1e-12, atol=1e-14)
    out32 = fn(minidl.tensor(x.astype(np.float32)))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.numpy(), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_gradcheck(name):
    fn, _ = CASES[name]
    x = t64(away_from_zero((3, 4), seed=2))
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_gradient_is_not_all_zero(name):
    fn, _ = CASES[name]
    x = t64(away_from_zero((3, 4), seed=3))
    out = fn(x)
    out.backward(np.random.default_rng(0).standard_normal(out.shape))
    assert np.abs(x.grad.numpy()).max() > 1e-3


def test_sigmoid_and_tanh_are_stable_for_large_inputs():
    x = minidl.tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = F.sigmoid(x)
        t = F.tanh(x)
        (s.sum() + t.sum()).backward()
    np.testing.assert_allclose(s.numpy(), [0.0, 1 / (1 + np.exp(50.0)), 0.5, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(t.numpy(), [-1.0, -1.0, 0.0, 1.0, 1.0])
    assert np.all(np.isfinite(x.grad.numpy()))
    assert s.numpy()[1] > 0  # exp(-50) survives: not computed as 1 - 1


def test_softmax_is_stable_for_large_logits():
    x = minidl.tensor(np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]]))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = F.softmax(x, dim=1).numpy()
        logp = F.log_softmax(x, dim=1).numpy()
    e = np.exp([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-12)
    np.testing.assert_allclose(logp, np.log(p), rtol=1e-12)


def test_elu_large_negative_input_saturates_without_overflow():
    x = minidl.tensor(np.array([-800.0, 800.0]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = F.elu(x, alpha=2.0)
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), [-2.0, 800.0])
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0])


def test_relu_gradient_at_zero_is_zero():
    x = minidl.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 16383, 16385, 300001])
def test_relu_backward_kernel_matches_threshold_backward(dtype, n):
    """The backward kernel is PyTorch's threshold_backward: grad where out > 0 or out is NaN,
    0 where out <= 0 even for a NaN gradient; identical bits for 1, 2 and 3 threads, on
    sizes around its 16K-element blocks, with a non-contiguous incoming gradient."""
    from minidl._kernels import elementwise

    rng = np.random.default_rng(n)
    out = np.maximum(rng.standard_normal(n), 0).astype(dtype)
    out[rng.integers(0, max(n, 1), n // 7)] = np.nan
    grad_full = rng.standard_normal(2 * n).astype(dtype)
    grad_full[rng.integers(0, max(2 * n, 1), n // 5)] = np.nan
    grad = grad_full[::2]
    expected = np.where(out <= 0, dtype(0), grad)
    results = []
    for threads in (1, 2, 3):
        gx = np.full(n, 7, dtype)
        elementwise.relu_backward(out, np.ascontiguousarray(grad), gx, threads)
        results.append(gx)
    for gx in results:
        np.testing.assert_array_equal(gx, expected)
        assert gx.tobytes() == results[0].tobytes()
    x = minidl.tensor(out.copy(), requires_grad=True)
    (F.relu(x) * minidl.tensor(grad)).sum().backward()  # the incoming gradient is `grad`
    np.testing.assert_array_equal(x.grad.numpy(), np.where(out <= 0, dtype(0), grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 16383, 16385, 300001])
def test_relu_and_add_forward_kernels(dtype, n):
    """The forward kernels: relu is PyTorch's (0 where x < 0; -0.0 and NaN stay, where
    np.maximum gives +0.0 for -0.0), add is np.add, add + relu relu of that sum; identical bits
    for 1, 2 and 3 threads, on sizes around the 16K-element blocks, also in place."""
    from minidl._kernels import elementwise

    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    x[::5] = -0.0
    x[3::11] = np.nan
    y[::7] = -x[::7]  # sums of exactly +0.0
    want_relu = np.where(x < 0, dtype(0), x)
    total = np.add(x, y)
    want_add_relu = np.where(total < 0, dtype(0), total)
    for threads in (1, 2, 3):
        out = np.full(n, 7, dtype)
        elementwise.relu(x, out, threads)
        assert out.tobytes() == want_relu.tobytes()
        elementwise.add(x, y, out, False, threads)
        assert out.tobytes() == total.tobytes()
        inplace = x.copy()
        elementwise.add(inplace, y, inplace, True, threads)
        assert inplace.tobytes() == want_add_relu.tobytes()
    with pytest.raises(ValueError, match=r"add: operands of 4 and 3 elements into 4"):
        elementwise.add(np.ones(4, dtype), np.ones(3, dtype), np.ones(4, dtype), False, 1)


def test_relu_keeps_negative_zero_and_writes_views_in_place():
    """F.relu(-0.0) is -0.0 as torch.relu gives (np.maximum would give +0.0); inplace=True on
    a view (rows 1: of a matrix) writes only that view."""
    x = minidl.tensor(np.array([-0.0, 0.0, -1.0, np.nan, 2.0], np.float32))
    got = F.relu(x).numpy()
    assert np.signbit(got).tolist() == [True, False, False, False, False]
    assert np.isnan(got[3]) and got[4] == 2.0
    base = np.arange(-6.0, 6.0).reshape(3, 4)
    t = minidl.tensor(base.copy())
    view = t[1:]
    F.relu(view, inplace=True)
    want = base.copy()
    want[1:] = np.maximum(want[1:], 0)
    np.testing.assert_array_equal(t.numpy(), want)


def test_add_of_same_shapes_matches_numpy_and_broadcasting_still_works():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    np.testing.assert_array_equal((minidl.tensor(a) + minidl.tensor(b)).numpy(), a + b)
    a32, b32 = a.astype(np.float32), b[0, 0].astype(np.float32)
    got = minidl.tensor(a32) + minidl.tensor(b32)
    assert got.dtype == minidl.float32
    np.testing.assert_array_equal(got.numpy(), a32 + b32)
    ints = minidl.tensor(np.arange(4)) + minidl.tensor(np.arange(4))
    np.testing.assert_array_equal(ints.numpy(), np.arange(4) * 2)
    mixed = minidl.tensor(a32) + minidl.tensor(a)  # float32 + float64 promotes, as NumPy
    assert mixed.dtype == minidl.float64


def test_relu_backward_kernel_rejects_mismatched_buffers():
    from minidl._kernels import elementwise

    with pytest.raises(ValueError, match=r"relu_backward: out has 4 elements, grad 3"):
        elementwise.relu_backward(np.ones(4, np.float32), np.ones(3, np.float32),
                                  np.ones(4, np.float32), 1)
    with pytest.raises(ValueError, match="dtype mismatch"):
        elementwise.relu_backward(np.ones(4, np.float32), np.ones(4, np.float64),
                                  np.ones(4, np.float32), 1)


def test_softmax_requires_valid_dim():
    with pytest.raises(ValueError, match="softmax"):
        F.softmax(minidl.randn(2, 3), dim=2)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = F.softmax(minidl.randn(2, 3), dim=None)  # PyTorch's implicit dim 1 for 2-d
    np.testing.assert_allclose(out.sum(dim=1).numpy(), [1.0, 1.0], rtol=1e-6)


def test_integer_input_rejected():
    with pytest.raises(TypeError, match="relu"):
        F.relu(minidl.tensor([1, 2, 3]))


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_forward_and_gradcheck(num_parameters):
    x = away_from_zero((2, 3, 4), seed=4)
    m = nn.PReLU(num_parameters, init=0.3, dtype=np.float64)
    m.weight.data[:] = np.linspace(0.1, 0.5, num_parameters)
    slope = m.weight.numpy().reshape(1, -1, 1) if num_parameters > 1 else m.weight.numpy()[0]
    np.testing.assert_allclose(m(t64(x, False)).numpy(), np.where(x > 0, x, slope * x))
    xt = t64(x)
    assert gradcheck(lambda a, w: F.prelu(a, w), [xt, m.weight])
    assert np.abs(m.weight.grad.numpy()).max() > 1e-3


def test_prelu_default_init_and_bad_weight():
    assert np.all(nn.PReLU().weight.numpy() == np.float32(0.25))
    with pytest.raises(ValueError, match="prelu"):
        F.prelu(minidl.randn(2, 3, 4), minidl.tensor([0.1, 0.2]))


def test_maxout_forward_matches_numpy_and_gradcheck():
    minidl.manual_seed(0)
    m = nn.Maxout(4, 3, pieces=2, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((5, 4))
    z = x @ m.weight.numpy().T + m.bias.numpy()
    np.testing.assert_allclose(m(t64(x, False)).numpy(), z.reshape(5, 3, 2).max(axis=2),
                               rtol=1e-12)
    assert gradcheck(lambda a, w, b: F.maxout(a, w, b, 2), [t64(x), m.weight, m.bias])
    assert m.weight.shape == (6, 4) and "pieces=2" in repr(m)


def test_module_forms_match_functional():
    x = minidl.tensor(away_from_zero((2, 6), seed=6))
    pairs = [(nn.ReLU(), F.relu(x)), (nn.LeakyReLU(0.2), F.leaky_relu(x, 0.2)),
             (nn.ELU(0.5), F.elu(x, 0.5)), (nn.Sigmoid(), F.sigmoid(x)), (nn.Tanh(), F.tanh(x)),
             (nn.Softmax(dim=1), F.softmax(x, 1)), (nn.LogSoftmax(dim=0), F.log_softmax(x, 0)),
             (nn.Softplus(2.0, 1.0), F.softplus(x, 2.0, 1.0)), (nn.Mish(), F.mish(x)),
             (nn.Hardswish(), F.hardswish(x)), (nn.Hardsigmoid(), F.hardsigmoid(x)),
             (nn.SELU(), F.selu(x)), (nn.Softsign(), F.softsign(x))]
    for module, expected in pairs:
        np.testing.assert_array_equal(module(x).numpy(), expected.numpy())
    assert nn.LeakyReLU().negative_slope == 0.01


def test_dropout_train_scales_and_eval_is_identity():
    minidl.manual_seed(3)
    x = minidl.ones(200, 100, requires_grad=True)
    drop = nn.Dropout(0.25)
    y = drop(x)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # gradient = mask
    drop.eval()
    assert drop(x) is x


def test_dropout_is_reproducible_from_the_seed():
    x = minidl.ones(10, 10)
    minidl.manual_seed(11)
    a = F.dropout(x, 0.5).numpy()
    minidl.manual_seed(11)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, F.dropout(x, 0.5).numpy())


def test_dropout_edge_probabilities():
    x = minidl.randn(4, 4)
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(-0.1)


torch_cases = [
    ("relu", lambda F_, x: F_.relu(x)),
    ("leaky_relu", lambda F_, x: F_.leaky_relu(x, 0.1)),
    ("elu", lambda F_, x: F_.elu(x, 0.7)),
    ("sigmoid", lambda F_, x: F_.sigmoid(x)),
    ("tanh", lambda F_, x: F_.tanh(x)),
    ("relu6", lambda F_, x: F_.relu6(x * 4)),
    ("hardtanh", lambda F_, x: F_.hardtanh(x, -0.5, 1.5)),
    ("silu", lambda F_, x: F_.silu(x)),
    ("softplus", lambda F_, x: F_.softplus(x)),
    ("softplus_threshold", lambda F_, x: F_.softplus(x, beta=2.0, threshold=4.0)),
    ("mish", lambda F_, x: F_.mish(x)),
    ("hardswish", lambda F_, x: F_.hardswish(x)),
    ("hardsigmoid", lambda F_, x: F_.hardsigmoid(x)),
    ("selu", lambda F_, x: F_.selu(x)),
    ("softsign", lambda F_, x: F_.softsign(x)),
    ("gelu", lambda F_, x: F_.gelu(x)),
    ("gelu_tanh", lambda F_, x: F_.gelu(x, approximate="tanh")),
    ("erf", lambda F_, x: x.erf()),
    ("softmax", lambda F_, x: F_.softmax(x, dim=1)),
    ("log_softmax", lambda F_, x: F_.log_softmax(x, dim=1)),
]


@pytest.mark.parametrize("name,fn", torch_cases, ids=[c[0] for c in torch_cases])
def test_activation_matches_torch(name, fn):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = away_from_zero((4, 7), seed=7) * 3
    g = np.random.default_rng(8).standard_normal((4, 7))
    mx = t64(x)
    fn(F, mx).backward(g)
    tx = torch.tensor(x, requires_grad=True)
    fn(tf, tx).backward(torch.tensor(g))
    np.testing.assert_allclose(fn(F, mx).numpy(), fn(tf, tx).detach().numpy(), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_prelu_matches_torch_per_channel():
    torch = pytest.importorskip("torch")
    x = away_from_zero((2, 3, 5), seed=9)
    w = np.array([0.1, -0.2, 0.3])
    mx, mw = t64(x), t64(w)
    F.prelu(mx, mw).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.prelu(tx, tw).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mw.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


def test_dropout_gradcheck_with_a_fixed_mask():
    def fn(a):
        minidl.manual_seed(4)  # the same mask on every evaluation
        return F.dropout(a, 0.4)

    x = t64(away_from_zero((4, 5), seed=10))
    assert gradcheck(fn, [x])
    assert np.abs(x.grad.numpy()).max() > 0


def test_kinks_and_thresholds_have_pytorchs_gradients():
    """At the kinks PyTorch picks one side: hardswish 0 at -3 and 1 at 3, hardsigmoid 0 at
    both, selu scale * alpha at 0, softsign 1 at 0, softplus 1 above beta * x > threshold and
    sigmoid(beta x) at it."""
    torch = pytest.importorskip("torch")
    x = np.array([-3.0, 3.0, 0.0, -1e-300, 10.0, 10.5, -800.0, 800.0])
    for name in ("hardswish", "hardsigmoid", "selu", "softsign", "mish", "softplus"):
        kwargs = {"beta": 2.0, "threshold": 20.0} if name == "softplus" else {}
        mx = t64(x)
        with np.errstate(over="raise", invalid="raise"):
            out = getattr(F, name)(mx, **kwargs)
            out.sum().backward()
        tx = torch.tensor(x, requires_grad=True)
        tout = getattr(torch.nn.functional, name)(tx, **kwargs)
        tout.sum().backward()
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, err_msg=name)
    mx = t64([-3.0, 3.0])
    F.hardswish(mx).sum().backward()
    np.testing.assert_array_equal(mx.grad.numpy(), [0.0, 1.0])


def test_softplus_float32_keeps_dtype_and_large_inputs_are_linear():
    x = minidl.tensor(np.array([-50.0, 0.0, 30.0, 1e4], np.float32))
    y = F.softplus(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), [np.exp(-50.0), np.log(2.0), 30.0, 1e4], rtol=1e-6)


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, 0), (3.0, -1), (float("inf"), 1)])
def test_normalize_matches_numpy_gradcheck_and_torch(p, dim):
    x = away_from_zero((3, 4), seed=12)
    if p != 3.0:  # (Tensor.norm's general p has a NaN gradient at a zero norm)
        x[0] = 0.0  # a zero row along dim 1: divided by eps, as PyTorch's clamp_min
    norm = np.linalg.norm(x, ord=p, axis=dim, keepdims=True) if p != 3.0 else (
        (np.abs(x) ** 3).sum(axis=dim, keepdims=True) ** (1 / 3))
    np.testing.assert_allclose(F.normalize(t64(x, False), p, dim).numpy(),
                               x / np.maximum(norm, 1e-12), rtol=1e-12)
    y = away_from_zero((3, 4), seed=13)
    assert gradcheck(lambda a: F.normalize(a, p, dim), [t64(y)])
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(14).standard_normal((3, 4))
    for a in (x, y):
        mx, tx = t64(a), torch.tensor(a, requires_grad=True)
        out, tout = F.normalize(mx, p, dim), torch.nn.functional.normalize(tx, p, dim)
        out.backward(g)
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-300)
