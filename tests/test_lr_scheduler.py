"""Learning-rate schedulers against closed forms and torch.optim.lr_scheduler."""

import math

import numpy as np
import pytest

from minidl import nn, optim
from minidl.optim import lr_scheduler as sched


def make_optimizer(cls=optim.SGD, lr=0.1, **kwargs):
    return cls([nn.Parameter(np.ones(2))], lr=lr, **kwargs)


def lrs(scheduler, steps):
    """The lr in force at steps 0..steps-1."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


CLOSED_FORMS = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, lambda t: 0.1 * 0.5 ** (t // 3)),
    ("MultiStepLR", {"milestones": [2, 5, 5], "gamma": 0.1},
     lambda t: 0.1 * 0.1 ** ((t >= 2) + 2 * (t >= 5))),
    ("ExponentialLR", {"gamma": 0.9}, lambda t: 0.1 * 0.9**t),
    ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.01},
     lambda t: 0.01 + 0.09 * (1 + math.cos(math.pi * t / 6)) / 2),
    ("LambdaLR", {"lr_lambda": lambda t: 1 / (t + 1)}, lambda t: 0.1 / (t + 1)),
]


@pytest.mark.parametrize("name,kwargs,form", CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_scheduler_closed_forms(name, kwargs, form):
    s = getattr(sched, name)(make_optimizer(), **kwargs)
    np.testing.assert_allclose(lrs(s, 10), [form(t) for t in range(10)], rtol=1e-12)
    assert s.get_last_lr() == [s.optimizer.param_groups[0]["lr"]]


def test_inverse_decay_is_caffes_inv_policy():
    s = sched.InverseDecayLR(make_optimizer(lr=0.01), gamma=1e-4, power=0.75)
    expected = [0.01 * (1 + 1e-4 * t) ** -0.75 for t in range(20)]
    np.testing.assert_allclose(lrs(s, 20), expected, rtol=1e-14)
    s2 = sched.InverseDecayLR(make_optimizer(lr=0.01), gamma=1e-4, power=0.75)
    for _ in range(10000):
        s2.step()
    assert s2.get_last_lr()[0] == pytest.approx(0.01 * 2**-0.75)


def test_one_cycle_shape_and_momentum():
    s = sched.OneCycleLR(make_optimizer(momentum=0.9), max_lr=1.0, total_steps=10)
    group = s.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1.0 / 25) and group["momentum"] == pytest.approx(0.95)
    values = lrs(s, 10)
    assert np.argmax(values) == 2 and values[2] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(1.0 / 25 / 1e4)
    with pytest.raises(ValueError, match="total_steps"):
        for _ in range(3):
            s.step()


def test_lambda_per_group_and_state_dict_excludes_functions():
    opt = optim.SGD([{"params": [nn.Parameter(np.ones(1))], "lr": 1.0},
                     {"params": [nn.Parameter(np.ones(1))], "lr": 2.0}], lr=0.1)
    s = sched.LambdaLR(opt, [lambda t: 0.5**t, lambda t: 1.0 + t])
    s.step()
    assert s.get_last_lr() == [0.5, 4.0]
    state = s.state_dict()
    assert "lr_lambdas" not in state and "optimizer" not in state and state["last_epoch"] == 1
    with pytest.raises(ValueError, match="2 lr_lambdas"):
        sched.LambdaLR(opt, [lambda t: 1.0])


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", {"step_size": 2, "gamma": 0.5}),
    ("CosineAnnealingLR", {"T_max": 5}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 12, "three_phase": True}),
])
def test_state_dict_round_trip_resumes_the_schedule(name, kwargs):
    cls = getattr(sched, name)
    straight = cls(make_optimizer(momentum=0.9), **kwargs)
    reference = lrs(straight, 10)
    first = cls(make_optimizer(momentum=0.9), **kwargs)
    head = lrs(first, 4)
    state = first.state_dict()
    opt_state = first.optimizer.state_dict()
    opt = make_optimizer(momentum=0.9)
    resumed = cls(opt, **kwargs)
    opt.load_state_dict(opt_state)
    resumed.load_state_dict(state)
    assert head + lrs(resumed, 6) == reference


def test_resume_with_last_epoch_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(make_optimizer(), step_size=2, last_epoch=3)


TORCH_CASES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, {}),
    ("MultiStepLR", {"milestones": [2, 5], "gamma": 0.1}, {}),
    ("ExponentialLR", {"gamma": 0.9}, {}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}, {}),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 20}, {"momentum": 0.9}),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 20, "three_phase": True, "anneal_strategy": "linear"},
     {"momentum": 0.9}),
]


@pytest.mark.parametrize("name,kwargs,opt_kwargs", TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_scheduler_matches_torch(name, kwargs, opt_kwargs):
    torch = pytest.importorskip("torch")
    steps = 20 if name == "OneCycleLR" else 15
    mine = getattr(sched, name)(make_optimizer(**opt_kwargs), **kwargs)
    topt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, **opt_kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    my_lrs, my_momenta, torch_lrs, torch_momenta = [], [], [], []
    for _ in range(steps):
        my_lrs.append(mine.optimizer.param_groups[0]["lr"])
        my_momenta.append(mine.optimizer.param_groups[0]["momentum"])
        torch_lrs.append(topt.param_groups[0]["lr"])
        torch_momenta.append(topt.param_groups[0]["momentum"])
        mine.optimizer.step()
        topt.step()
        mine.step()
        theirs.step()
    np.testing.assert_allclose(my_lrs, torch_lrs, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(my_momenta, torch_momenta, rtol=1e-10)


def test_one_cycle_cycles_adam_beta1():
    s = sched.OneCycleLR(make_optimizer(optim.Adam, lr=0.01), max_lr=0.1, total_steps=10)
    betas = []
    for _ in range(9):
        betas.append(s.optimizer.param_groups[0]["betas"][0])
        s.step()
    assert betas[0] == pytest.approx(0.95) and min(betas) == pytest.approx(0.85)


@pytest.mark.parametrize("chain", [
    [("StepLR", {"step_size": 2, "gamma": 0.5}), ("ExponentialLR", {"gamma": 0.9})],
    [("MultiStepLR", {"milestones": [3, 8, 8], "gamma": 0.3}),
     ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.002})],
    [("CosineAnnealingLR", {"T_max": 4})],
    [("ExponentialLR", {"gamma": 0.95}), ("StepLR", {"step_size": 3})],
], ids=["step+exp", "multistep+cosine", "cosine-past-T_max", "exp+step"])
def test_chained_schedulers_match_torch_bit_for_bit(chain):
    """Two schedulers on one optimizer compose as in PyTorch (each scales the current lr),
    and the chainable forms give PyTorch's values exactly, also past T_max's first period
    (a closed form of the last scheduler alone gave 0.081 for step+exp at step 2: 0.0405)."""
    torch = pytest.importorskip("torch")
    mine_opt = make_optimizer()
    theirs_opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    mine = [getattr(sched, n)(mine_opt, **k) for n, k in chain]
    theirs = [getattr(torch.optim.lr_scheduler, n)(theirs_opt, **k) for n, k in chain]
    for _ in range(25):
        assert mine_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
        assert [s.get_last_lr() for s in mine] == [s.get_last_lr() for s in theirs]
        mine_opt.step()
        theirs_opt.step()
        for s in mine + theirs:
            s.step()
