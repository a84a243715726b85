"""minidl.nn.init: distributions, fans, gains, seeding."""

import math

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn import init


def weight(*shape):
    return minidl.zeros(*shape, dtype=np.float64)


@pytest.mark.parametrize("name,param,expected", [
    ("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0),
    ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)), ("selu", None, 0.75),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)),
])
def test_calculate_gain(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ("linear", "tanh", "relu", "selu", "leaky_relu"):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_fans_of_linear_and_conv_weights():
    assert init.calculate_fan_in_and_fan_out(weight(30, 20)) == (20, 30)
    assert init.calculate_fan_in_and_fan_out(weight(16, 6, 5, 5)) == (150, 400)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.kaiming_uniform_(weight(5))


@pytest.mark.parametrize("fn,kwargs,kind,scale", [
    # scale: the bound of a uniform or the std of a normal, for a (200, 300, 3, 3) weight.
    (init.kaiming_uniform_, {"a": 0, "nonlinearity": "relu"}, "uniform",
     math.sqrt(2) * math.sqrt(3 / 2700)),
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, "uniform", 1 / math.sqrt(2700)),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, "normal", math.sqrt(2 / 2700)),
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}, "normal",
     math.sqrt(2 / 1800)),
    (init.xavier_uniform_, {"gain": 2.0}, "uniform", 2 * math.sqrt(6 / 4500)),
    (init.xavier_normal_, {}, "normal", math.sqrt(2 / 4500)),
    (init.lecun_normal_, {}, "normal", math.sqrt(1 / 2700)),
])
def test_initializer_distributions(fn, kwargs, kind, scale):
    minidl.manual_seed(0)
    w = fn(weight(200, 300, 3, 3), **kwargs)
    data = w.numpy()
    if kind == "uniform":
        assert np.abs(data).max() <= scale and np.abs(data).max() > 0.999 * scale
        assert data.std() == pytest.approx(scale / math.sqrt(3), rel=0.01)
    else:
        assert data.std() == pytest.approx(scale, rel=0.01)
    assert abs(data.mean()) < 0.01 * scale


def test_simple_fills():
    w = weight(3, 4)
    assert init.ones_(w) is w and np.all(w.numpy() == 1)
    assert np.all(init.zeros_(w).numpy() == 0)
    assert np.all(init.constant_(w, 2.5).numpy() == 2.5)
    minidl.manual_seed(1)
    u = init.uniform_(weight(1000), -2, 3).numpy()
    assert u.min() >= -2 and u.max() < 3 and u.mean() == pytest.approx(0.5, abs=0.1)
    n = init.normal_(weight(10000), 1.0, 0.5).numpy()
    assert n.mean() == pytest.approx(1.0, abs=0.02) and n.std() == pytest.approx(0.5, rel=0.03)


def test_init_keeps_dtype_and_is_seeded():
    w32 = minidl.zeros(4, 4)
    init.kaiming_normal_(w32)
    assert w32.dtype == np.float32
    minidl.manual_seed(7)
    a = init.xavier_uniform_(weight(5, 5)).numpy().copy()
    minidl.manual_seed(7)
    np.testing.assert_array_equal(init.xavier_uniform_(weight(5, 5)).numpy(), a)


def test_eye_and_dirac_equal_torch():
    torch = pytest.importorskip("torch")
    for shape in [(3, 5), (5, 3), (4, 4)]:
        ours, theirs = minidl.empty(*shape), torch.empty(*shape)
        init.eye_(ours)
        torch.nn.init.eye_(theirs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    for shape, groups in [((4, 2, 3, 3), 1), ((6, 2, 3), 2), ((4, 3, 2, 2, 3), 2), ((2, 5, 3, 3), 1)]:
        ours, theirs = minidl.empty(*shape), torch.empty(*shape)
        init.dirac_(ours, groups)
        torch.nn.init.dirac_(theirs, groups)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # dirac_ makes a same-padded convolution the identity on the first channels.
    w = init.dirac_(minidl.empty(3, 3, 3, 3))
    x = minidl.randn(2, 3, 5, 5)
    np.testing.assert_array_equal(F.conv2d(x, w, padding=1).numpy(), x.numpy())
    with pytest.raises(ValueError, match="eye_: only 2-D"):
        init.eye_(minidl.empty(2, 2, 2))


@pytest.mark.parametrize("shape, gain", [((6, 4), 1.0), ((4, 6), 2.0), ((8, 2, 3, 3), 0.5)])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain):
    w = init.orthogonal_(minidl.empty(*shape, dtype=np.float64), gain).numpy().reshape(shape[0], -1)
    small = min(w.shape)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-12)


def test_trunc_normal_stays_within_bounds_with_torch_statistics():
    torch = pytest.importorskip("torch")
    ours = init.trunc_normal_(minidl.empty(200000, dtype=np.float64), 1.0, 2.0, -1.0, 2.5)
    theirs = torch.nn.init.trunc_normal_(torch.empty(200000, dtype=torch.float64), 1.0, 2.0,
                                         -1.0, 2.5)
    a = ours.numpy()
    assert a.min() >= -1.0 and a.max() <= 2.5
    # Both sample the same truncated normal: moments agree to sampling error (~0.005).
    assert abs(a.mean() - theirs.mean().item()) < 0.02
    assert abs(a.std() - theirs.std().item()) < 0.02
    with pytest.raises(ValueError, match="holds"):
        init.trunc_normal_(minidl.empty(3), 0.0, 1.0, 10.0, 11.0)


def test_init_functions_take_a_generator():
    def draw(fn, seed):
        return fn(minidl.empty(4, 3), generator=minidl.Generator().manual_seed(seed)).numpy()

    for fn in (init.uniform_, init.normal_, init.xavier_uniform_, init.xavier_normal_,
               init.kaiming_uniform_, init.kaiming_normal_, init.trunc_normal_,
               init.orthogonal_):
        np.testing.assert_array_equal(draw(fn, 3), draw(fn, 3))
        assert not np.array_equal(draw(fn, 3), draw(fn, 4))


def test_sparse_zeros_the_same_count_in_every_column_and_draws_normal():
    w = minidl.zeros(40, 300, dtype=minidl.float64)
    init.sparse_(w, 0.25, std=0.5)
    zeros_per_column = (w.numpy() == 0).sum(axis=0)
    assert (zeros_per_column == 10).all()   # ceil(0.25 * 40), as torch
    nonzero = w.numpy()[w.numpy() != 0]
    assert abs(nonzero.std() - 0.5) < 0.03 and abs(nonzero.mean()) < 0.03
    with pytest.raises(ValueError, match="2 dimensions"):
        init.sparse_(minidl.zeros(3), 0.1)


def test_deprecated_names_warn_and_call_the_underscore_forms():
    torch = pytest.importorskip("torch")
    names = ["uniform", "normal", "constant", "eye", "dirac", "xavier_uniform", "xavier_normal",
             "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"]
    assert all(hasattr(torch.nn.init, n) for n in names)
    w = minidl.zeros(3, 3)
    with pytest.warns(FutureWarning, match=r"`nn.init.constant` is now deprecated in favor of "
                      r"`nn.init.constant_`"):
        assert init.constant(w, 2.5) is w
    assert (w.numpy() == 2.5).all()
    for n in names:
        assert getattr(init, n).__name__ == n
