"""Rprop, ASGD, LBFGS, SparseAdam, Adafactor and optim.swa_utils against PyTorch 2.13: the
same starting values and the same gradients fed to both, step by step, on two parameter
groups; state_dict round trips and resuming; the errors PyTorch raises."""

import copy

import numpy as np
import pytest

import minidl
from minidl import optim

CASES = [
    ("Rprop", {}), ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.1)}),
    ("Rprop", {"maximize": True}),
    ("ASGD", {}), ("ASGD", {"t0": 5, "lambd": 0.01, "alpha": 0.5}),
    ("ASGD", {"t0": 3, "weight_decay": 0.1, "maximize": True}),
]


def make(lib, name, options, dtype, start):
    params = [lib.nn.Parameter(lib.tensor(start[0].astype(dtype))),
              lib.nn.Parameter(lib.tensor(start[1].astype(dtype)))]
    opt = getattr(lib.optim, name)([{"params": [params[0]]},
                                    {"params": [params[1]], "lr": 0.005}], **options)
    return params, opt


def feed(lib, params, opt, grads, dtype):
    trace = []
    for g0, g1 in grads:
        params[0].grad = lib.tensor(g0.astype(dtype))
        params[1].grad = lib.tensor(g1.astype(dtype))
        opt.step()
        trace.append(np.concatenate([p.detach().numpy().copy() for p in params]))
    return np.array(trace)


def inputs(seed=3, steps=30, sign_flips=False):
    rng = np.random.default_rng(seed)
    start = (rng.standard_normal(5), rng.standard_normal(3))
    grads = [(rng.standard_normal(5), rng.standard_normal(3)) for _ in range(steps)]
    if sign_flips:
        # A few zero gradients, so Rprop's "product == 0" branch runs too.
        grads[4][0][1] = 0.0
        grads[9][1][2] = 0.0
    return start, grads


def plain(value):
    """A torch state value as NumPy / Python, for comparing with minidl's."""
    if hasattr(value, "numpy"):
        return value.numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, options", CASES,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in CASES])
def test_optimizer_steps_match_torch(name, options, dtype):
    """30 steps on two parameter groups: float64 to 1e-15 (Rprop bit for bit: its steps are
    signs times step sizes), float32 to a few ulp."""
    torch = pytest.importorskip("torch")
    start, grads = inputs(sign_flips=True)
    params, opt = make(minidl, name, options, dtype, start)
    tparams, topt = make(torch, name, options, dtype, start)
    ours = feed(minidl, params, opt, grads, dtype)
    theirs = feed(torch, tparams, topt, grads, dtype)
    if name == "Rprop":
        np.testing.assert_array_equal(ours, theirs)
    else:
        tol = dict(rtol=1e-15, atol=1e-16) if dtype == np.float64 else dict(rtol=5e-7, atol=1e-7)
        np.testing.assert_allclose(ours, theirs, **tol)
    assert list(opt.param_groups[0]) == list(topt.param_groups[0])
    assert {k: v for k, v in opt.param_groups[1].items() if k != "params"} == {
        k: (tuple(v) if isinstance(v, tuple) else v)
        for k, v in topt.param_groups[1].items() if k != "params"}
    for p, tp in zip(params, tparams):
        mine, theirs_state = opt.state[p], topt.state[tp]
        assert list(mine) == list(theirs_state)
        for key in mine:
            np.testing.assert_allclose(np.asarray(mine[key], dtype=np.float64),
                                       plain(theirs_state[key]).astype(np.float64),
                                       rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("name, options", CASES,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in CASES])
def test_state_dict_round_trip_resumes_identically(name, options):
    start, grads = inputs()
    params, opt = make(minidl, name, options, np.float64, start)
    feed(minidl, params, opt, grads[:10], np.float64)
    saved = copy.deepcopy(opt.state_dict())
    snapshot = [p.detach().numpy().copy() for p in params]
    straight = feed(minidl, params, opt, grads[10:], np.float64)

    resumed_params = [minidl.nn.Parameter(minidl.tensor(s)) for s in snapshot]
    resumed = getattr(optim, name)([{"params": [resumed_params[0]]},
                                    {"params": [resumed_params[1]]}])
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == 0.005
    np.testing.assert_array_equal(feed(minidl, resumed_params, resumed, grads[10:],
                                       np.float64), straight)


def test_invalid_hyperparameters_raise_value_error_as_torch():
    torch = pytest.importorskip("torch")
    bad = [("Rprop", {"lr": -1}), ("Rprop", {"etas": (1.0, 1.2)}),
           ("Rprop", {"etas": (0.5, 1.0)}), ("ASGD", {"lr": -0.1}),
           ("ASGD", {"weight_decay": -1})]
    for name, options in bad:
        with pytest.raises(ValueError):
            getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **options)
        with pytest.raises(ValueError, match=name):
            getattr(optim, name)([minidl.nn.Parameter(minidl.zeros(2))], **options)


def lbfgs_problem(lib, dtype, **options):
    """L2-regularised logistic regression on 40 points: smooth and well conditioned, so
    rounding differences stay at rounding level along the iterates."""
    rng = np.random.default_rng(1)
    X = lib.tensor(rng.standard_normal((40, 5)).astype(dtype))
    y = lib.tensor(np.sign(rng.standard_normal((40, 1))).astype(dtype))
    w = lib.nn.Parameter(lib.tensor((0.1 * rng.standard_normal((5, 1))).astype(dtype)))
    b = lib.nn.Parameter(lib.tensor(np.zeros(1, dtype)))
    opt = lib.optim.LBFGS([w, b], **options)

    def closure():
        opt.zero_grad()
        loss = lib.nn.functional.softplus(-y * (X @ w + b)).mean() + 0.01 * (w * w).sum()
        loss.backward()
        return loss

    return [w, b], opt, closure


def lbfgs_steps(params, opt, closure, steps):
    losses, trace = [], []
    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
        trace.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    return np.array(losses), np.array(trace)


LBFGS_CASES = [{"lr": 0.5, "max_iter": 6}, {"line_search_fn": "strong_wolfe", "max_iter": 6},
               {"line_search_fn": "strong_wolfe", "history_size": 2, "max_eval": 9},
               {"lr": 0.2, "history_size": 3, "tolerance_change": 1e-6}]


@pytest.mark.parametrize("options", LBFGS_CASES, ids=lambda o: "-".join(map(str, o.values())))
def test_lbfgs_iterates_and_evaluation_counts_match_torch(options):
    """float64, 5 steps (to convergence): iterates to 1e-15, and the same numbers of
    iterations and closure calls; the state has PyTorch's keys in PyTorch's order."""
    torch = pytest.importorskip("torch")
    params, opt, closure = lbfgs_problem(minidl, np.float64, **options)
    tparams, topt, tclosure = lbfgs_problem(torch, np.float64, **options)
    ours = lbfgs_steps(params, opt, closure, 5)
    theirs = lbfgs_steps(tparams, topt, tclosure, 5)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-14)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-14, atol=1e-15)
    state, tstate = opt.state[params[0]], topt.state[tparams[0]]
    assert list(state) == list(tstate)
    assert (state["func_evals"], state["n_iter"]) == (tstate["func_evals"], tstate["n_iter"])
    assert len(state["old_dirs"]) == len(tstate["old_dirs"])
    np.testing.assert_allclose(state["d"], tstate["d"].numpy(), rtol=1e-9, atol=1e-15)
    assert opt.param_groups[0].keys() == topt.param_groups[0].keys()
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == {
        k: v for k, v in topt.param_groups[0].items() if k != "params"}


@pytest.mark.parametrize("options", LBFGS_CASES[:2], ids=["fixed-lr", "strong-wolfe"])
def test_lbfgs_float32_first_steps_match_torch(options):
    """float32, the first two steps of 4 iterations: within float32 rounding (sums and dot
    products are reduced in another order than PyTorch's, so the last bits differ; near
    the optimum such differences decide the stopping tests, so later steps are not compared)."""
    torch = pytest.importorskip("torch")
    options = {**options, "max_iter": 4}
    ours = lbfgs_steps(*lbfgs_problem(minidl, np.float32, **options), 2)
    theirs = lbfgs_steps(*lbfgs_problem(torch, np.float32, **options), 2)
    assert ours[1].dtype == np.float32
    np.testing.assert_allclose(ours[1], theirs[1], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("options", LBFGS_CASES[:3], ids=["fixed-lr", "wolfe", "wolfe-h2"])
def test_lbfgs_state_dict_resume_is_identical(options):
    params, opt, closure = lbfgs_problem(minidl, np.float64, **{**options, "max_iter": 3})
    lbfgs_steps(params, opt, closure, 2)
    saved = copy.deepcopy(opt.state_dict())
    assert set(saved["state"]) == {0}
    snapshot = [p.detach().numpy().copy() for p in params]
    straight = lbfgs_steps(params, opt, closure, 3)
    params2, opt2, closure2 = lbfgs_problem(minidl, np.float64, max_iter=1)
    for p, value in zip(params2, snapshot):
        p.data[...] = value
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["max_iter"] == 3
    resumed = lbfgs_steps(params2, opt2, closure2, 3)
    np.testing.assert_array_equal(resumed[0], straight[0])
    np.testing.assert_array_equal(resumed[1], straight[1])


def test_lbfgs_errors_as_torch():
    torch = pytest.importorskip("torch")
    p, q = minidl.nn.Parameter(minidl.ones(2)), minidl.nn.Parameter(minidl.ones(2))
    tp, tq = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    for lib, a, b in ((torch, tp, tq), (minidl, p, q)):
        with pytest.raises(ValueError, match="parameter groups"):
            lib.optim.LBFGS([{"params": [a]}, {"params": [b]}])
        with pytest.raises(ValueError):
            lib.optim.LBFGS([a], lr=-1.0)
        opt = lib.optim.LBFGS([a], line_search_fn="armijo")
        with pytest.raises(TypeError):
            opt.step()

        def closure(opt=opt, a=a):
            opt.zero_grad()
            loss = (a * a).sum()
            loss.backward()
            return loss

        with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
            opt.step(closure)
    assert minidl.optim.LBFGS([p], max_iter=8).param_groups[0]["max_eval"] == 10


def test_lbfgs_stops_at_once_when_the_gradient_is_below_tolerance():
    params, opt, closure = lbfgs_problem(minidl, np.float64, tolerance_grad=1e3)
    before = [p.detach().numpy().copy() for p in params]
    opt.step(closure)
    assert opt.state[params[0]] == {"func_evals": 1, "n_iter": 0}
    for p, value in zip(params, before):
        np.testing.assert_array_equal(p.detach().numpy(), value)


def test_sparse_adam_constructs_as_torch_and_refuses_dense_gradients():
    torch = pytest.importorskip("torch")
    p, tp = minidl.nn.Parameter(minidl.ones(3)), torch.ones(3, requires_grad=True)
    opt, topt = optim.SparseAdam([p], lr=0.01), torch.optim.SparseAdam([tp], lr=0.01)
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == {
        k: v for k, v in topt.param_groups[0].items() if k != "params"}
    assert list(opt.param_groups[0]) == list(topt.param_groups[0])
    assert opt.step() is None and topt.step() is None  # no gradients yet: nothing to do
    calls = []

    def closure():
        calls.append(1)
        p.grad = minidl.ones(3)
        return 1.0

    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        opt.step(closure)
    assert calls == [1]
    tp.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        topt.step()
    np.testing.assert_array_equal(p.detach().numpy(), np.ones(3))
    for options in ({"lr": 0.0}, {"eps": 0.0}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)}):
        with pytest.raises(ValueError):
            torch.optim.SparseAdam([tp], **options)
        with pytest.raises(ValueError, match="SparseAdam"):
            optim.SparseAdam([p], **options)
