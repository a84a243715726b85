"""LinearLR, ConstantLR, MultiplicativeLR, SequentialLR, ChainedScheduler, PolynomialLR,
CosineAnnealingWarmRestarts and CyclicLR against torch.optim.lr_scheduler: the same lr in each
of two parameter groups, to the bit, at every step, and the same errors for bad arguments."""

import inspect
import json

import numpy as np
import pytest

from minidl import nn, optim
from minidl.optim import lr_scheduler as sched

STEPS = 70
LRS = (0.1, 0.037)


def optimizers(torch, momentum=0.0):
    """The same two-group SGD in minidl and in torch."""
    ours = optim.SGD([{"params": [nn.Parameter(np.ones(2))]},
                      {"params": [nn.Parameter(np.ones(2))], "lr": LRS[1]}],
                     lr=LRS[0], momentum=momentum)
    theirs = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.ones(2))]},
                              {"params": [torch.nn.Parameter(torch.ones(2))], "lr": LRS[1]}],
                             lr=LRS[0], momentum=momentum)
    return ours, theirs


def group_values(optimizer, key="lr"):
    return [group[key] for group in optimizer.param_groups]


def assert_same_run(ours, theirs, steps=STEPS, keys=("lr",)):
    """Step both schedulers together; every lr (and momentum, if asked) equal at every step."""
    for t in range(steps):
        for key in keys:
            assert group_values(ours.optimizer, key) == group_values(theirs.optimizer, key), (
                f"step {t}: {key}")
        assert ours.get_last_lr() == theirs.get_last_lr(), f"step {t}"
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()


def both(torch, name, momentum=0.0, **kwargs):
    ours_opt, theirs_opt = optimizers(torch, momentum)
    return (getattr(sched, name)(ours_opt, **kwargs),
            getattr(torch.optim.lr_scheduler, name)(theirs_opt, **kwargs))


def assert_state_keys_are_torchs(ours, theirs):
    """Our state_dict is JSON-able and holds only keys PyTorch's has too."""
    state = ours.state_dict()
    json.dumps(state)
    assert set(state) <= set(theirs.state_dict())


def assert_same_error(torch, name, exc, *args, **kwargs):
    ours_opt, theirs_opt = optimizers(torch)
    with pytest.raises(exc):
        getattr(torch.optim.lr_scheduler, name)(theirs_opt, *args, **kwargs)
    with pytest.raises(exc):
        getattr(sched, name)(ours_opt, *args, **kwargs)


NAMES = ["LinearLR", "ConstantLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler",
         "PolynomialLR", "CosineAnnealingWarmRestarts", "CyclicLR"]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_signature_is_torchs(name):
    torch = pytest.importorskip("torch")
    ours = inspect.signature(getattr(sched, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.optim.lr_scheduler, name).__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()]
    assert name in sched.__all__


# --- LinearLR ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {},
    {"start_factor": 0.05, "total_iters": 40},
    {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 13},
    {"start_factor": 0.3, "end_factor": 0.0, "total_iters": 7},
    {"start_factor": 0.5, "total_iters": 0},
])
def test_linear_lr_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "LinearLR", **kwargs)
    assert_same_run(ours, theirs)
    assert_state_keys_are_torchs(ours, theirs)


@pytest.mark.parametrize("kwargs", [{"start_factor": 0.0}, {"start_factor": 1.5},
                                    {"end_factor": -0.1}, {"end_factor": 1.01}])
def test_linear_lr_rejects_factors_outside_the_unit_interval(kwargs):
    assert_same_error(pytest.importorskip("torch"), "LinearLR", ValueError, **kwargs)


# --- ConstantLR -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"factor": 0.5, "total_iters": 40},
                                    {"factor": 0.7, "total_iters": 0}, {"factor": 1.0}])
def test_constant_lr_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "ConstantLR", **kwargs)
    assert_same_run(ours, theirs)
    assert_state_keys_are_torchs(ours, theirs)


@pytest.mark.parametrize("factor", [-0.1, 1.5])
def test_constant_lr_rejects_factors_outside_the_unit_interval(factor):
    assert_same_error(pytest.importorskip("torch"), "ConstantLR", ValueError, factor=factor)


# --- MultiplicativeLR -------------------------------------------------------------------------

def test_multiplicative_lr_matches_torch_with_one_function_per_group():
    torch = pytest.importorskip("torch")
    fns = [lambda t: 0.95, lambda t: 1.0 / (1 + 0.01 * t)]
    ours, theirs = both(torch, "MultiplicativeLR", lr_lambda=fns)
    assert_same_run(ours, theirs)
    assert "lr_lambdas" not in ours.state_dict()
    assert_state_keys_are_torchs(ours, theirs)
    ours, theirs = both(torch, "MultiplicativeLR", lr_lambda=lambda t: 0.9 if t % 3 else 1.1)
    assert_same_run(ours, theirs)


def test_multiplicative_lr_errors_are_torchs():
    torch = pytest.importorskip("torch")
    assert_same_error(torch, "MultiplicativeLR", ValueError, lr_lambda=[lambda t: 1.0])
    assert_same_error(torch, "MultiplicativeLR", TypeError, lr_lambda=0.9)
    assert_same_error(torch, "MultiplicativeLR", TypeError, lr_lambda=[lambda t: 1.0, 2.0])


# --- PolynomialLR -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"total_iters": 50, "power": 2.0},
                                    {"total_iters": 33, "power": 0.5}, {"total_iters": 0}])
def test_polynomial_lr_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "PolynomialLR", **kwargs)
    assert_same_run(ours, theirs)
    assert_state_keys_are_torchs(ours, theirs)


def test_polynomial_lr_reaches_zero_at_total_iters():
    opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    s = sched.PolynomialLR(opt, total_iters=4, power=1.0)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        s.step()
    np.testing.assert_allclose(seen, [0.1, 0.075, 0.05, 0.025, 0.0, 0.0], atol=1e-16)


# --- SequentialLR and ChainedScheduler --------------------------------------------------------

# (name, kwargs) pairs built on each library's optimizer; every chainable schedule minidl has.
PARTS = {
    "linear": ("LinearLR", {"start_factor": 0.1, "total_iters": 8}),
    "constant": ("ConstantLR", {"factor": 0.5, "total_iters": 4}),
    "step": ("StepLR", {"step_size": 7, "gamma": 0.5}),
    "multistep": ("MultiStepLR", {"milestones": [3, 9, 9, 30], "gamma": 0.3}),
    "exp": ("ExponentialLR", {"gamma": 0.93}),
    "cosine": ("CosineAnnealingLR", {"T_max": 11, "eta_min": 0.001}),
    "poly": ("PolynomialLR", {"total_iters": 25, "power": 1.5}),
    "mult": ("MultiplicativeLR", {"lr_lambda": lambda t: 0.97}),
    "lambda": ("LambdaLR", {"lr_lambda": lambda t: 1.0 / (1 + t)}),
}


def built(module, optimizer, parts):
    return [getattr(module, PARTS[p][0])(optimizer, **PARTS[p][1]) for p in parts]


@pytest.mark.parametrize("parts,milestones", [
    (["linear", "cosine"], [10]),
    (["constant", "exp"], [5]),
    (["linear", "step", "poly"], [6, 20]),
    (["exp", "multistep", "mult"], [4, 15]),
    (["lambda", "cosine"], [12]),
    (["linear", "mult"], [0]),
    (["poly"], []),
])
def test_sequential_lr_matches_torch(parts, milestones):
    torch = pytest.importorskip("torch")
    ours_opt, theirs_opt = optimizers(torch)
    ours = sched.SequentialLR(ours_opt, built(sched, ours_opt, parts), milestones)
    theirs = torch.optim.lr_scheduler.SequentialLR(
        theirs_opt, built(torch.optim.lr_scheduler, theirs_opt, parts), milestones)
    assert_same_run(ours, theirs)
    state = ours.state_dict()
    assert set(state) <= set(theirs.state_dict())
    assert len(state["_schedulers"]) == len(parts)


def test_sequential_lr_state_dict_round_trip_resumes():
    first_opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    first = sched.SequentialLR(first_opt, built(sched, first_opt, ["linear", "exp"]), [10])
    for _ in range(14):
        first.step()
    state = json.loads(json.dumps(first.state_dict()))
    opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    resumed = sched.SequentialLR(opt, built(sched, opt, ["linear", "exp"]), [10])
    resumed.load_state_dict(state)
    opt.load_state_dict(first_opt.state_dict())
    for _ in range(10):
        first.step()
        resumed.step()
        assert resumed.get_last_lr() == first.get_last_lr()


def test_sequential_lr_errors_are_torchs():
    torch = pytest.importorskip("torch")
    for module, opt in zip((sched, torch.optim.lr_scheduler), optimizers(torch)):
        other = type(opt)(opt.param_groups[0]["params"], lr=0.1)
        two = built(module, opt, ["linear", "exp"])
        for schedulers, milestones in [([], []), (two, []), (two, [1, 2]),
                                       ([two[0], module.ExponentialLR(other, 0.9)], [3]),
                                       ([two[0], module.ReduceLROnPlateau(opt)], [3])]:
            with pytest.raises(ValueError):
                module.SequentialLR(opt, schedulers, milestones)
        with pytest.raises(TypeError):
            module.SequentialLR(opt, [two[0], object()], [3])


@pytest.mark.parametrize("parts", [["constant", "exp"], ["linear", "cosine"],
                                   ["step", "poly", "mult"], ["multistep"]])
def test_chained_scheduler_matches_torch(parts):
    torch = pytest.importorskip("torch")
    ours_opt, theirs_opt = optimizers(torch)
    ours = sched.ChainedScheduler(built(sched, ours_opt, parts))
    theirs = torch.optim.lr_scheduler.ChainedScheduler(
        built(torch.optim.lr_scheduler, theirs_opt, parts), theirs_opt)
    assert_same_run(ours, theirs)
    assert_state_keys_are_torchs(ours, theirs)


def test_chained_scheduler_errors_are_torchs():
    torch = pytest.importorskip("torch")
    for module, opt in zip((sched, torch.optim.lr_scheduler), optimizers(torch)):
        other = type(opt)(opt.param_groups[0]["params"], lr=0.1)
        one = module.ExponentialLR(opt, 0.9)
        for schedulers in ([], [one, module.ReduceLROnPlateau(opt)],
                           [one, module.ExponentialLR(other, 0.9)]):
            with pytest.raises(ValueError):
                module.ChainedScheduler(schedulers)
        with pytest.raises(TypeError):
            module.ChainedScheduler([one, object()])


@pytest.mark.parametrize("part", ["linear", "constant", "step", "multistep", "exp", "cosine",
                                  "poly", "lambda", "mult"])
def test_step_with_an_epoch_uses_torchs_closed_form(part):
    torch = pytest.importorskip("torch")
    ours_opt, theirs_opt = optimizers(torch)
    (ours,), (theirs,) = built(sched, ours_opt, [part]), built(
        torch.optim.lr_scheduler, theirs_opt, [part])
    for epoch in [3, 4, 10, 2, 30, 31, 0, 17]:
        with pytest.warns(UserWarning):
            ours.step(epoch)
        with pytest.warns(UserWarning):
            theirs.step(epoch)
        assert group_values(ours_opt) == group_values(theirs_opt), epoch
        assert ours.last_epoch == theirs.last_epoch


# --- CosineAnnealingWarmRestarts --------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"T_0": 10}, {"T_0": 3, "T_mult": 2, "eta_min": 0.002},
                                    {"T_0": 1}, {"T_0": 4, "T_mult": 3, "eta_min": 1}])
def test_cosine_warm_restarts_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "CosineAnnealingWarmRestarts", **kwargs)
    assert_same_run(ours, theirs)
    assert_state_keys_are_torchs(ours, theirs)


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_cosine_warm_restarts_fractional_epochs_match_torch(T_mult):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "CosineAnnealingWarmRestarts", T_0=5, T_mult=T_mult,
                        eta_min=0.001)
    batches = 7
    epochs = [e + b / batches for e in range(12) for b in range(batches)]
    for epoch in epochs + [3.5, 0.25, 40.0, 2, 17]:
        ours.step(epoch)
        theirs.step(epoch)
        assert group_values(ours.optimizer) == group_values(theirs.optimizer), epoch
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert (ours.T_cur, ours.T_i, ours.last_epoch) == (
            theirs.T_cur, theirs.T_i, theirs.last_epoch)
    ours.step()
    theirs.step()
    assert group_values(ours.optimizer) == group_values(theirs.optimizer)


def test_cosine_warm_restarts_errors_are_torchs():
    torch = pytest.importorskip("torch")
    name = "CosineAnnealingWarmRestarts"
    for kwargs in [{"T_0": 0}, {"T_0": 2.5}, {"T_0": 5, "T_mult": 0},
                   {"T_0": 5, "T_mult": 1.5}, {"T_0": 5, "eta_min": "0"}]:
        assert_same_error(torch, name, ValueError, **kwargs)
    for s in both(torch, name, T_0=5):
        with pytest.raises(ValueError):
            s.step(-1)


# --- CyclicLR ---------------------------------------------------------------------------------

class HalfPerCycle:
    """A callable object as scale_fn (PyTorch saves its __dict__; minidl leaves it out)."""

    def __call__(self, x):
        return 0.5**x


@pytest.mark.parametrize("kwargs", [
    {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5},
    {"base_lr": [0.01, 0.002], "max_lr": [0.1, 0.05], "step_size_up": 4, "step_size_down": 7,
     "mode": "triangular2"},
    {"base_lr": 0.001, "max_lr": 0.3, "step_size_up": 6, "mode": "exp_range", "gamma": 0.97},
    {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, "scale_fn": lambda x: 1 / (1 + x)},
    {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, "scale_fn": HalfPerCycle(),
     "scale_mode": "iterations", "mode": "anything"},
    {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 8, "step_size_down": 2,
     "base_momentum": [0.85, 0.7], "max_momentum": [0.95, 0.9]},
    {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5, "cycle_momentum": False},
])
def test_cyclic_lr_and_momentum_match_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = both(torch, "CyclicLR", momentum=0.9, **kwargs)
    keys = ("lr", "momentum")
    assert_same_run(ours, theirs, keys=keys)
    state = ours.state_dict()
    json.dumps(state)
    assert set(state) <= set(theirs.state_dict())


def test_cyclic_lr_state_dict_round_trip_resumes():
    def make():
        opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, momentum=0.9)
        return opt, sched.CyclicLR(opt, 0.01, 0.1, step_size_up=4, mode="exp_range",
                                   gamma=0.9)
    first_opt, first = make()
    for _ in range(9):
        first.step()
    opt, resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for _ in range(12):
        first.step()
        resumed.step()
        assert resumed.get_last_lr() == first.get_last_lr()
        assert opt.param_groups[0]["momentum"] == first_opt.param_groups[0]["momentum"]


def test_cyclic_lr_errors_are_torchs():
    torch = pytest.importorskip("torch")
    assert_same_error(torch, "CyclicLR", ValueError, 0.01, 0.1, mode="square")
    assert_same_error(torch, "CyclicLR", ValueError, [0.01], 0.1)
    assert_same_error(torch, "CyclicLR", ValueError, 0.01, [0.1, 0.2, 0.3])
    assert_same_error(torch, "CyclicLR", ValueError, 0.01, 0.1, max_momentum=[0.9])
    params = [nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError):
        sched.CyclicLR(optim.Adagrad(params), 0.01, 0.1)
    with pytest.raises(ValueError):
        torch.optim.lr_scheduler.CyclicLR(
            torch.optim.Adagrad([torch.nn.Parameter(torch.ones(2))]), 0.01, 0.1)
    with pytest.raises(TypeError):
        sched.CyclicLR(object(), 0.01, 0.1)


def test_cyclic_lr_cycles_adams_beta1_as_torch():
    torch = pytest.importorskip("torch")
    ours = sched.CyclicLR(optim.Adam([nn.Parameter(np.ones(2))], lr=0.1), 0.01, 0.1,
                          step_size_up=3, mode="triangular2")
    theirs = torch.optim.lr_scheduler.CyclicLR(
        torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1), 0.01, 0.1,
        step_size_up=3, mode="triangular2")
    assert_same_run(ours, theirs, keys=("lr", "betas"))
    assert ours.optimizer.param_groups[0]["betas"][1] == 0.999
