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
