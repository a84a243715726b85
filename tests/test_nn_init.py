"""minidl.nn.init: distributions, fans, gains, seeding."""

import math

import numpy as np
import pytest

import minidl
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
