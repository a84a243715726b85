"""Optimizers: several steps on a least-squares problem against NumPy reimplementations of
the published update rules, and against torch.optim where installed."""

import math

import numpy as np
import pytest

import minidl
from minidl import nn, optim

X = np.random.default_rng(0).standard_normal((8, 4))
Y = np.random.default_rng(1).standard_normal((8, 3))
W0 = np.random.default_rng(2).standard_normal((3, 4))
STEPS = 6


def loss_grad(w):
    """Gradient of mean((X w^T - Y)^2 summed over outputs) with respect to w."""
    return 2 / len(X) * (X @ w.T - Y).T @ X


def minidl_run(cls, steps=STEPS, **kwargs):
    w = nn.Parameter(W0.copy())
    opt = cls([w], **kwargs)
    x, y = minidl.tensor(X), minidl.tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        (((x @ w.T - y) ** 2).sum() / len(X)).backward()
        opt.step()
    return w.numpy()


# -- NumPy references, written from the papers / PyTorch's documented algorithms -----------
def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    w, b = W0.copy(), None
    for _ in range(STEPS):
        g = loss_grad(w) + weight_decay * w
        if momentum:
            b = g.copy() if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        w = w - lr * g
    return w


def ref_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             decoupled=False):
    b1, b2 = betas
    w = W0.copy()
    m, v, v_max = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t in range(1, STEPS + 1):
        g = loss_grad(w)
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        v_max = np.maximum(v_max, v)
        m_hat = m / (1 - b1**t)
        v_hat = (v_max if amsgrad else v) / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def ref_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    w = W0.copy()
    v, g_avg, buf = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for _ in range(STEPS):
        g = loss_grad(w) + weight_decay * w
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            denom = np.sqrt(v - g_avg**2) + eps
        else:
            denom = np.sqrt(v) + eps
        if momentum:
            buf = momentum * buf + g / denom
            w = w - lr * buf
        else:
            w = w - lr * g / denom
    return w


def ref_adagrad(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                eps=1e-10):
    w = W0.copy()
    s = np.full_like(w, initial_accumulator_value)
    for t in range(1, STEPS + 1):
        g = loss_grad(w) + weight_decay * w
        s = s + g * g
        w = w - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return w


CONFIGS = [
    ("SGD", {"lr": 0.1}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.05, "nesterov": True}, ref_sgd),
    ("Adam", {"lr": 0.05}, ref_adam),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.1, "amsgrad": True}, ref_adam),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1}, lambda **k: ref_adam(decoupled=True, **k)),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True},
     lambda **k: ref_adam(decoupled=True, **k)),
    ("RMSprop", {"lr": 0.01}, ref_rmsprop),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1}, ref_rmsprop),
    ("Adagrad", {"lr": 0.1}, ref_adagrad),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.1, "initial_accumulator_value": 0.5},
     ref_adagrad),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CONFIGS)]


@pytest.mark.parametrize("name,kwargs,ref", CONFIGS, ids=IDS)
def test_optimizer_matches_numpy_reference(name, kwargs, ref):
    mine = minidl_run(getattr(optim, name), **kwargs)
    assert not np.allclose(mine, W0)
    np.testing.assert_allclose(mine, ref(**kwargs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kwargs,ref", CONFIGS, ids=IDS)
def test_optimizer_matches_torch(name, kwargs, ref):
    torch = pytest.importorskip("torch")
    w = torch.tensor(W0.copy(), requires_grad=True)
    opt = getattr(torch.optim, name)([w], **kwargs)
    x, y = torch.tensor(X), torch.tensor(Y)
    for _ in range(STEPS):
        opt.zero_grad()
        (((x @ w.T - y) ** 2).sum() / len(X)).backward()
        opt.step()
    np.testing.assert_allclose(minidl_run(getattr(optim, name), **kwargs),
                               w.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,extra", [
    ("SGD", {"momentum": 0.9, "nesterov": True}), ("Adam", {"amsgrad": True}), ("AdamW", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}), ("Adagrad", {"lr_decay": 0.01}),
], ids=["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_float32_parameters_match_torch_to_1e_6(name, extra):
    torch = pytest.importorskip("torch")
    kwargs = {"lr": 0.01, "weight_decay": 0.01, **extra}
    p = nn.Parameter(W0.astype(np.float32))
    tp = torch.tensor(W0.astype(np.float32), requires_grad=True)
    opt, topt = getattr(optim, name)([p], **kwargs), getattr(torch.optim, name)([tp], **kwargs)
    for step in range(STEPS):
        g = np.random.default_rng(step).standard_normal(W0.shape).astype(np.float32)
        p.grad, tp.grad = minidl.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
        assert p.dtype == np.float32
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=0, atol=1e-6)


def test_sgd_lecture_momentum_update():
    # v = mu * v - lr * dx; x += v  is the same trajectory as PyTorch's buffer form.
    lr, mu = 0.1, 0.9
    w, v = W0.copy(), np.zeros_like(W0)
    for _ in range(STEPS):
        v = mu * v - lr * loss_grad(w)
        w = w + v
    np.testing.assert_allclose(minidl_run(optim.SGD, lr=lr, momentum=mu), w, rtol=1e-10)


def test_param_groups_have_their_own_hyperparameters():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 1.0}], lr=0.1)
    a.grad, b.grad = minidl.ones(3, dtype=np.float64), minidl.ones(3, dtype=np.float64)
    opt.step()
    np.testing.assert_allclose(a.numpy(), 1 - 0.1)
    np.testing.assert_allclose(b.numpy(), 1 - 0.5 * (1 + 1))
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5


def test_parameters_without_gradient_are_skipped():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = minidl.ones(2, dtype=np.float64)
    opt.step()
    assert not np.allclose(a.numpy(), 1) and np.all(b.numpy() == 1)
    assert b not in opt.state or not opt.state[b]


def test_zero_grad_set_to_none_and_zeros():
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1)
    p.grad = minidl.ones(2, dtype=np.float64)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0, 0])
    opt.zero_grad()
    assert p.grad is None


def test_state_dict_round_trip_continues_identically():
    def build():
        w = nn.Parameter(W0.copy())
        return w, optim.Adam([w], lr=0.05, amsgrad=True)

    def train(w, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            w.grad = minidl.tensor(loss_grad(w.numpy()))
            opt.step()

    w1, opt1 = build()
    train(w1, opt1, 6)
    w2, opt2 = build()
    train(w2, opt2, 3)
    state = opt2.state_dict()
    assert state["param_groups"][0]["params"] == [0] and state["state"][0]["step"] == 3
    w3, opt3 = build()
    w3.data[...] = w2.numpy()
    opt3.load_state_dict(state)
    assert opt3.state[w3]["exp_avg"] is not state["state"][0]["exp_avg"]  # copied in
    train(w3, opt3, 3)
    np.testing.assert_array_equal(w3.numpy(), w1.numpy())


def test_load_state_dict_errors():
    w = nn.Parameter(W0.copy())
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = minidl.ones(*W0.shape, dtype=np.float64)
    opt.step()
    state = opt.state_dict()
    other = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(3, 4\)"):
        other.load_state_dict(state)
    two_groups = optim.SGD([{"params": [nn.Parameter(np.ones(2))]},
                            {"params": [nn.Parameter(np.ones(2))]}], lr=0.1)
    with pytest.raises(ValueError, match="1 parameter groups"):
        two_groups.load_state_dict(state)


def test_constructor_errors():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="two groups"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    # Frozen parameters are accepted, as in PyTorch: they never get a gradient.
    frozen = minidl.ones(2)
    optim.SGD([frozen, p], lr=0.1).step()
    assert frozen.tolist() == [1.0, 1.0]


def test_steps_reuse_work_buffers():
    w = nn.Parameter(W0.copy())
    opt = optim.Adam([w], lr=0.01, weight_decay=0.1)
    w.grad = minidl.ones(*W0.shape, dtype=np.float64)
    opt.step()
    buffers = [id(b) for b in opt.scratch(w, 2)]
    exp_avg = opt.state[w]["exp_avg"]
    opt.step()
    assert [id(b) for b in opt.scratch(w, 2)] == buffers
    assert opt.state[w]["exp_avg"] is exp_avg


def test_adamw_default_weight_decay_and_repr():
    opt = optim.AdamW([nn.Parameter(np.ones(2))])
    assert opt.param_groups[0]["weight_decay"] == 0.01
    assert "lr: 0.001" in repr(opt) and math.isclose(opt.defaults["betas"][1], 0.999)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_default_hyperparameters_match_torch(name):
    torch = pytest.importorskip("torch")
    mine = getattr(optim, name)([nn.Parameter(np.ones(2))]).defaults
    theirs = getattr(torch.optim, name)([torch.ones(2, requires_grad=True)]).defaults
    for key, value in mine.items():
        assert theirs[key] == value, key


def test_step_with_closure_returns_the_loss():
    w = nn.Parameter(W0.copy())
    opt = optim.SGD([w], lr=0.1)
    x, y = minidl.tensor(X), minidl.tensor(Y)

    def closure():
        opt.zero_grad()
        loss = ((x @ w.T - y) ** 2).sum() / len(X)
        loss.backward()
        return loss

    with minidl.no_grad():  # the closure records its graph even so
        loss = opt.step(closure)
    np.testing.assert_allclose(loss.item(), ((X @ W0.T - Y) ** 2).sum() / len(X))
    np.testing.assert_allclose(w.numpy(), W0 - 0.1 * loss_grad(W0), rtol=1e-12)
