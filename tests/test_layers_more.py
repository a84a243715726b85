"""RMSNorm, LocalResponseNorm, Bilinear, ChannelShuffle and the dropout variants (Dropout1d,
Dropout3d, AlphaDropout, FeatureAlphaDropout) against PyTorch 2.13: values and gradients in
float64 and float32, defaults, reprs, initialization, errors; the random dropouts by their
distribution, since minidl's generator is not PyTorch's."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F


def compare(fn_ours, fn_torch, arrays, dtype=np.float64, seed=0, rtol=None):
    """Assert minidl's and torch's values and every input gradient agree."""
    import torch

    ours = [minidl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out, tout = fn_ours(*ours), fn_torch(*theirs)
    g = np.random.default_rng(seed).standard_normal(tout.shape).astype(dtype)
    out.backward(minidl.tensor(g))
    tout.backward(torch.tensor(g))
    tol = {"rtol": rtol or (1e-12 if dtype == np.float64 else 2e-5),
           "atol": 1e-12 if dtype == np.float64 else 2e-5}
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **tol)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,normalized", [((4, 6), (6,)), ((2, 3, 4), (3, 4)),
                                              ((5,), (5,)), ((0, 3), (3,)), ((2, 1), (1,))])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm_matches_torch(shape, normalized, eps, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(shape), rng.standard_normal(normalized)
    compare(lambda a, b: F.rms_norm(a, normalized, b, eps),
            lambda a, b: torch.nn.functional.rms_norm(a, normalized, b, eps), [x, w], dtype)
    compare(lambda a: F.rms_norm(a, list(normalized), eps=eps),
            lambda a: torch.nn.functional.rms_norm(a, list(normalized), eps=eps), [x], dtype)


def test_rms_norm_default_eps_is_the_dtype_epsilon():
    x = np.zeros((1, 3), np.float32)
    x[0, 0] = 1e-4
    got = F.rms_norm(minidl.tensor(x), (3,)).numpy()[0, 0]
    expected = 1e-4 / np.sqrt(1e-8 / 3 + np.finfo(np.float32).eps)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_rms_norm_gradcheck_module_and_errors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = minidl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = minidl.tensor(rng.standard_normal(4), requires_grad=True)
    assert gradcheck(lambda a, b: F.rms_norm(a, (4,), b), [x, w])
    for args in [(3,), ([2, 3], 1e-3, False)]:
        ours, theirs = nn.RMSNorm(*args), torch.nn.RMSNorm(*args)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        if ours.weight is not None:
            np.testing.assert_array_equal(ours.weight.numpy(), theirs.weight.detach().numpy())
    assert nn.RMSNorm(3, dtype=minidl.float64).weight.dtype == np.float64
    with pytest.raises(RuntimeError, match=r"Given normalized_shape=\[2\], expected input"):
        F.rms_norm(minidl.ones(2, 3), (2,))
    with pytest.raises(RuntimeError, match="Expected normalized_shape to be at least 1-dim"):
        F.rms_norm(minidl.ones(2, 3), [])
    with pytest.raises(RuntimeError, match="Expected weight to be of same shape"):
        F.rms_norm(minidl.ones(2, 3), (3,), minidl.ones(2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 4, 3, 3), (1, 3, 2, 2, 2), (3, 1, 4)])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("alpha,beta,k", [(1e-4, 0.75, 1.0), (0.5, 1.5, 2.0)])
def test_local_response_norm_matches_torch(shape, size, alpha, beta, k, dtype):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal(shape) * 3
    compare(lambda a: F.local_response_norm(a, size, alpha, beta, k),
            lambda a: torch.nn.functional.local_response_norm(a, size, alpha, beta, k),
            [x], dtype)


def test_local_response_norm_gradcheck_module_and_errors():
    torch = pytest.importorskip("torch")
    x = minidl.tensor(np.random.default_rng(4).standard_normal((2, 4, 3)), requires_grad=True)
    assert gradcheck(lambda a: F.local_response_norm(a, 3, 0.3, 0.8, 1.5), [x])
    for args in [(2,), (3, 0.1, 0.5, 2.0)]:
        assert repr(nn.LocalResponseNorm(*args)) == repr(torch.nn.LocalResponseNorm(*args))
    assert F.local_response_norm(minidl.ones(0, 3, 2), 2).shape == (0, 3, 2)
    with pytest.raises(ValueError, match="Expected 3D or higher dimensionality input"):
        F.local_response_norm(minidl.ones(2, 3), 2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [(4,), (2, 3), (), (0,), (1,)])
def test_bilinear_matches_torch(batch, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal(batch + (3,)), rng.standard_normal(batch + (5,))
    w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal(2)
    compare(F.bilinear, torch.nn.functional.bilinear, [x1, x2, w, b], dtype)
    compare(F.bilinear, torch.nn.functional.bilinear, [x1, x2, w], dtype)


def test_bilinear_gradcheck_and_errors():
    rng = np.random.default_rng(6)
    args = [minidl.tensor(rng.standard_normal(s), requires_grad=True)
            for s in [(2, 3), (2, 4), (5, 3, 4), (5,)]]
    assert gradcheck(F.bilinear, args)
    x1, x2, w = minidl.ones(2, 3), minidl.ones(2, 4), minidl.ones(5, 3, 4)
    with pytest.raises(RuntimeError, match="input2 size does not match weight size: got 4 but "
                                           "expected 3"):
        F.bilinear(x1, x2, minidl.ones(5, 3, 3))
    with pytest.raises(RuntimeError, match="input1 size does not match"):
        F.bilinear(minidl.ones(2, 2), x2, w)
    with pytest.raises(RuntimeError, match="input batch dimensions do not match at dim 0: got "
                                           "2 and 3"):
        F.bilinear(x1, minidl.ones(3, 4), w)
    with pytest.raises(RuntimeError, match="bias size does not match weight size"):
        F.bilinear(x1, x2, w, minidl.ones(4))


def test_bilinear_module_init_repr_and_state_dict_match_torch():
    torch = pytest.importorskip("torch")
    minidl.manual_seed(0)
    m = nn.Bilinear(16, 3, 200)
    bound = 1 / np.sqrt(16)
    for p in (m.weight.numpy(), m.bias.numpy()):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.95 * bound
    # U(-b, b): variance b^2 / 3
    assert abs(m.weight.numpy().var() - bound ** 2 / 3) < 0.05 * bound ** 2 / 3
    t = torch.nn.Bilinear(16, 3, 200)
    assert repr(m) == repr(t)
    assert [(k, v.shape) for k, v in m.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in t.state_dict().items()]
    assert repr(nn.Bilinear(2, 3, 4, False)) == repr(torch.nn.Bilinear(2, 3, 4, False))
    assert nn.Bilinear(2, 3, 4, False).bias is None
    assert nn.Bilinear(2, 3, 4, dtype=minidl.float64).weight.dtype == np.float64
    with pytest.raises(ValueError, match="in1_features must be > 0"):
        nn.Bilinear(0, 2, 3)


@pytest.mark.parametrize("shape,groups", [((2, 6, 3), 3), ((1, 8, 2, 2), 2), ((2, 4, 1, 1, 2), 4),
                                          ((0, 6, 2), 2), ((2, 5, 3), 1)])
def test_channel_shuffle_matches_torch(shape, groups):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(7).standard_normal(shape)
    compare(lambda a: F.channel_shuffle(a, groups),
            lambda a: torch.nn.functional.channel_shuffle(a, groups), [x])
    assert repr(nn.ChannelShuffle(groups)) == repr(torch.nn.ChannelShuffle(groups))
    np.testing.assert_array_equal(nn.ChannelShuffle(groups)(minidl.tensor(x)).numpy(),
                                  torch.nn.ChannelShuffle(groups)(torch.tensor(x)).numpy())


def test_channel_shuffle_errors():
    with pytest.raises(RuntimeError, match="Number of channels must be divisible by groups. "
                                           "Got 3 channels and 2 groups"):
        F.channel_shuffle(minidl.ones(2, 3, 4), 2)
    with pytest.raises(RuntimeError, match="channel_shuffle expects input with > 2 dims"):
        F.channel_shuffle(minidl.ones(2, 4), 2)
    with pytest.raises(RuntimeError, match="Number of groups to divide channels in must be "
                                           "positive"):
        F.channel_shuffle(minidl.ones(2, 4, 3), 0)


ALPHA = 1.7580993408473766  # SELU's scale * alpha


def test_alpha_dropout_values_are_torchs_two_affine_levels():
    """With x = 0 the output is b alone: alpha * a * p for kept units and alpha * a * (p - 1)
    for dropped ones, a = 1 / sqrt((alpha^2 p + 1)(1 - p)); the same two values as PyTorch."""
    torch = pytest.importorskip("torch")
    for p in (0.2, 0.5, 0.9):
        ours = np.unique(F.alpha_dropout(minidl.zeros(5000), p, True).numpy())
        torch.manual_seed(0)
        theirs = np.unique(torch.nn.functional.alpha_dropout(torch.zeros(5000), p, True).numpy())
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
        a = 1 / np.sqrt((ALPHA ** 2 * p + 1) * (1 - p))
        np.testing.assert_allclose(ours, [ALPHA * a * (p - 1), ALPHA * a * p], rtol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_alpha_dropout_keeps_a_standard_normal_input_standard(p):
    minidl.manual_seed(1)
    x = minidl.tensor(np.random.default_rng(8).standard_normal(200000))
    y = F.alpha_dropout(x, p, training=True).numpy()
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.02
    dropped = np.isclose(y, ALPHA / np.sqrt((ALPHA ** 2 * p + 1) * (1 - p)) * (p - 1))
    assert abs(dropped.mean() - p) < 0.01


def test_alpha_dropout_gradient_is_the_kept_scale_and_gradchecks_with_a_fixed_mask():
    p = 0.3
    x = minidl.tensor(np.random.default_rng(9).standard_normal((50, 4)), requires_grad=True)
    minidl.manual_seed(2)
    y = F.alpha_dropout(x, p, True)
    y.sum().backward()
    a = 1 / np.sqrt((ALPHA ** 2 * p + 1) * (1 - p))
    np.testing.assert_allclose(np.unique(x.grad.numpy()), [0.0, a], rtol=1e-12)

    def fn(t):
        minidl.manual_seed(3)
        return F.feature_alpha_dropout(t, p, True)

    assert gradcheck(fn, [minidl.tensor(x.numpy(), requires_grad=True)])


def test_feature_alpha_dropout_draws_one_value_per_channel():
    minidl.manual_seed(4)
    y = F.feature_alpha_dropout(minidl.zeros(40, 30, 3, 2), 0.5, True).numpy()
    per_channel = y.reshape(40, 30, -1)
    assert np.all(per_channel == per_channel[..., :1])
    assert len(np.unique(per_channel[..., 0])) == 2
    with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
        F.feature_alpha_dropout(minidl.ones(3), 0.5, True)


@pytest.mark.parametrize("fn,shape", [(F.dropout1d, (30, 20, 4)), (F.dropout1d, (50, 4)),
                                      (F.dropout3d, (6, 10, 2, 2, 3)),
                                      (F.dropout3d, (60, 2, 2, 3))])
def test_channel_dropouts_zero_whole_channels(fn, shape):
    minidl.manual_seed(5)
    x = minidl.tensor(np.random.default_rng(10).uniform(1, 2, shape), requires_grad=True)
    y = fn(x, 0.4)
    y.sum().backward()
    channels = 2 if len(shape) in (3, 5) else 1
    scale = (y.numpy() / x.numpy()).reshape(int(np.prod(shape[:channels])), -1)
    np.testing.assert_allclose(scale, np.broadcast_to(scale[:, :1], scale.shape), rtol=1e-12)
    kept = scale[:, 0] > 0
    np.testing.assert_allclose(scale[kept], 1 / 0.6, rtol=1e-12)
    assert abs((~kept).mean() - 0.4) < 0.12
    np.testing.assert_allclose(x.grad.numpy(), y.numpy() / x.numpy(), rtol=1e-12)


def test_dropout_variants_eval_p0_p1_and_errors_as_torch():
    torch = pytest.importorskip("torch")
    x = minidl.ones(2, 3, 4, 5, 6)
    for fn in (F.dropout1d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout):
        tfn = getattr(torch.nn.functional, fn.__name__)
        inp = minidl.ones(2, 3, 4) if fn is F.dropout1d else x
        assert fn(inp, 0.5, False) is inp
        assert fn(inp, 0.0, True) is inp
        tin = torch.ones(tuple(inp.shape))
        np.testing.assert_array_equal(fn(inp, 1.0, True).numpy(), tfn(tin, 1.0, True).numpy())
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, "
                                             "but got 1.5"):
            fn(inp, 1.5)
    # alpha_dropout's functional default is eval (training=False), as PyTorch's.
    assert F.alpha_dropout(x) is x and F.feature_alpha_dropout(x) is x
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input, but received a "
                                           "4D input"):
        F.dropout1d(minidl.ones(2, 3, 4, 5))
    with pytest.warns(UserWarning, match="dropout3d: Received a 3-D input"):
        F.dropout3d(minidl.ones(2, 3, 4))


@pytest.mark.parametrize("name", ["Dropout1d", "Dropout3d", "AlphaDropout",
                                  "FeatureAlphaDropout"])
def test_dropout_modules_repr_train_eval_and_inplace(name):
    torch = pytest.importorskip("torch")
    for args in [(), (0.2, True)]:
        assert repr(getattr(nn, name)(*args)) == repr(getattr(torch.nn, name)(*args))
    m = getattr(nn, name)(0.5, inplace=True)
    x = minidl.tensor(np.random.default_rng(11).uniform(1, 2, (8, 6, 3, 2, 2)))
    x = x.reshape(8, 6, 12) if name == "Dropout1d" else x
    before = x.numpy().copy()
    assert m(x) is x and not np.array_equal(x.numpy(), before)
    m.eval()
    assert m(x) is x
