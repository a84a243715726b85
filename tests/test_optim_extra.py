"""Rprop, ASGD, Adafactor, LBFGS, SparseAdam and optim.swa_utils against PyTorch 2.13: the
same starting values and the same gradients fed to both, step by step, on two parameter
groups; state_dict round trips and resuming; the errors PyTorch raises."""

import contextlib
import copy
import inspect
import itertools

import numpy as np
import pytest

import minidl
from minidl import optim

CASES = [
    ("Rprop", {}), ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.1)}),
    ("Rprop", {"maximize": True}),
    ("ASGD", {}), ("ASGD", {"t0": 5, "lambd": 0.01, "alpha": 0.5}),
    ("ASGD", {"t0": 3, "weight_decay": 0.1, "maximize": True}),
    ("Adafactor", {}), ("Adafactor", {"weight_decay": 0.1, "maximize": True}),
    ("Adafactor", {"eps": (1e-4, 1e-2), "d": 1.5, "beta2_decay": -0.5, "lr": 0.05}),
]
# Adafactor factors the second moment of matrices: its parameters are a matrix and a 3-d
# tensor, besides a vector in the shared cases.
SHAPES = {"Adafactor": ((4, 3), (2, 3, 5))}


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
        trace.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    return np.array(trace)


def inputs(seed=3, steps=30, sign_flips=False, shapes=((5,), (3,))):
    rng = np.random.default_rng(seed)
    start = tuple(rng.standard_normal(shape) for shape in shapes)
    grads = [tuple(rng.standard_normal(shape) for shape in shapes) for _ in range(steps)]
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
    start, grads = inputs(sign_flips=name == "Rprop", shapes=SHAPES.get(name, ((5,), (3,))))
    params, opt = make(minidl, name, options, dtype, start)
    tparams, topt = make(torch, name, options, dtype, start)
    ours = feed(minidl, params, opt, grads, dtype)
    theirs = feed(torch, tparams, topt, grads, dtype)
    if name == "Rprop":
        np.testing.assert_array_equal(ours, theirs)
    else:
        tol = dict(rtol=1e-15, atol=1e-15) if dtype == np.float64 else dict(rtol=5e-7, atol=2e-7)
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
    start, grads = inputs(shapes=SHAPES.get(name, ((5,), (3,))))
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
           ("ASGD", {"weight_decay": -1}), ("Adafactor", {"lr": -1}),
           ("Adafactor", {"beta2_decay": 0.1}), ("Adafactor", {"eps": (-1.0, 1e-3)}),
           ("Adafactor", {"eps": (None, -1.0)}), ("Adafactor", {"d": 0.5}),
           ("Adafactor", {"weight_decay": -1})]
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


def swa_models(torch, dtype=np.float64):
    """The same small BatchNorm model in minidl and in torch."""
    nets = []
    for lib in (minidl, torch):
        nn = lib.nn
        nets.append(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(),
                                  nn.Linear(3, 2)))
    ours, theirs = nets
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours.to(minidl.float64 if dtype == np.float64 else minidl.float32)
    for p, tp in zip(ours.state_dict().values(), theirs.state_dict().values()):
        p.data[...] = tp.numpy()
    return ours, theirs


def perturb(torch, ours, theirs, rng):
    """One "epoch of training": new values for every parameter and BatchNorm buffer."""
    for p, tp in zip(ours.state_dict().values(), theirs.state_dict().values()):
        if p.data.dtype.kind == "f":
            value = rng.standard_normal(p.data.shape).astype(p.data.dtype)
        else:
            value = p.data + rng.integers(1, 5)
        p.data[...] = value
        tp.copy_(torch.from_numpy(np.asarray(value)))


SWA_CASES = [({}, False), ({}, True), ({"avg_fn": "ema"}, False), ({"avg_fn": "ema"}, True),
             ({"multi_avg_fn": "ema"}, False), ({"multi_avg_fn": "ema"}, True),
             ({"multi_avg_fn": "swa"}, False), ({"avg_fn": "swa"}, True)]


def averaging(lib, kind):
    factories = {"avg_fn": {"ema": lambda: lib.optim.swa_utils.get_ema_avg_fn(0.8),
                            "swa": lib.optim.swa_utils.get_swa_avg_fn},
                 "multi_avg_fn": {"ema": lambda: lib.optim.swa_utils.get_ema_multi_avg_fn(0.8),
                                  "swa": lib.optim.swa_utils.get_swa_multi_avg_fn}}
    return {key: factories[key][value]() for key, value in kind.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, use_buffers", SWA_CASES,
                         ids=[f"{'-'.join(f'{k}={v}' for k, v in c.items()) or 'swa'}-{b}"
                              for c, b in SWA_CASES])
def test_averaged_model_matches_torch(kind, use_buffers, dtype):
    """Six updates; every averaged parameter and buffer (incl. the int64
    num_batches_tracked when buffers are averaged) and the averaged model's output equal
    torch's: float64 to 1e-15 (the equal-weight default bit for bit; PyTorch's lerp uses fused
    multiply-adds), float32 to an ulp."""
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils as tswa
    ours, theirs = swa_models(torch, dtype)
    avg = optim.swa_utils.AveragedModel(ours, use_buffers=use_buffers,
                                        **averaging(minidl, kind))
    tavg = tswa.AveragedModel(theirs, use_buffers=use_buffers, **averaging(torch, kind))
    rng = np.random.default_rng(0)
    for _ in range(6):
        perturb(torch, ours, theirs, rng)
        avg.update_parameters(ours)
        tavg.update_parameters(theirs)
    state, tstate = avg.state_dict(), tavg.state_dict()
    assert list(state) == list(tstate)
    assert int(state["n_averaged"].item()) == 6 and state["n_averaged"].dtype == minidl.int64
    tol = dict(rtol=1e-15, atol=1e-16) if dtype == np.float64 else dict(rtol=3e-7, atol=1e-7)
    if not kind and dtype == np.float64:
        tol = dict(rtol=0, atol=0)
    for key in state:
        np.testing.assert_allclose(state[key].numpy(), tstate[key].numpy(), **tol, err_msg=key)
    x = rng.standard_normal((5, 4)).astype(dtype)
    avg.eval()
    tavg.eval()
    np.testing.assert_allclose(avg(minidl.tensor(x)).detach().numpy(),
                               tavg(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-6)


def test_averaged_model_errors_and_state_dict_round_trip():
    torch = pytest.importorskip("torch")
    ours, _ = swa_models(torch)
    swa = optim.swa_utils
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa.AveragedModel(ours, avg_fn=swa.get_swa_avg_fn(),
                          multi_avg_fn=swa.get_swa_multi_avg_fn())
    for factory in (swa.get_ema_avg_fn, swa.get_ema_multi_avg_fn):
        with pytest.raises(ValueError, match="Invalid decay value 1.5"):
            factory(1.5)
    averaged = swa.AveragedModel(ours, multi_avg_fn=swa.get_swa_multi_avg_fn(),
                                 use_buffers=True)
    averaged.update_parameters(ours)
    with pytest.raises(RuntimeError, match="integer"):
        averaged.update_parameters(ours)  # num_batches_tracked is int64, as in torch
    first = swa.AveragedModel(ours)
    first.update_parameters(ours)
    first.update_parameters(ours)
    second = swa.AveragedModel(ours)
    second.load_state_dict(first.state_dict())
    assert int(second.n_averaged.item()) == 2
    assert ours.state_dict().keys() == {k[len("module."):] for k in first.state_dict()
                                        if k != "n_averaged"}


def test_update_bn_matches_torch_and_restores_mode_and_momentum():
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils as tswa
    ours, theirs = swa_models(torch)
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((n, 4)) for n in (6, 3, 9)]
    for model in (ours, theirs):
        model.eval()
        model[1].momentum = 0.3
    optim.swa_utils.update_bn([(minidl.tensor(b), 0) for b in batches], ours)
    tswa.update_bn([(torch.from_numpy(b), 0) for b in batches], theirs)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours[1], name).numpy(),
                                   getattr(theirs[1], name).numpy(), rtol=1e-13, err_msg=name)
    assert not ours.training and not ours[1].training and ours[1].momentum == 0.3
    before = ours[1].running_mean.numpy().copy()
    optim.swa_utils.update_bn([minidl.tensor(b) for b in batches], ours)  # plain tensors
    np.testing.assert_allclose(ours[1].running_mean.numpy(), before, rtol=1e-14)
    no_bn = minidl.nn.Linear(2, 2)
    optim.swa_utils.update_bn([minidl.ones(1, 2)], no_bn)  # nothing to update
    assert no_bn.training


SWALR_CASES = [(0.05, 10, "cos"), (0.05, 3, "linear"), ([0.01, 0.2], 4, "cos"),
               (0.05, 0, "cos"), (0.05, 1, "linear")]


@pytest.mark.parametrize("swa_lr, anneal_epochs, strategy", SWALR_CASES)
def test_swalr_matches_torch_and_resumes(swa_lr, anneal_epochs, strategy):
    torch = pytest.importorskip("torch")
    lrs = {}
    for lib in (minidl, torch):
        params = [lib.nn.Parameter(lib.ones(2)), lib.nn.Parameter(lib.ones(3))]
        opt = lib.optim.SGD([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.3}],
                            lr=0.1)
        sched = lib.optim.swa_utils.SWALR(opt, swa_lr, anneal_epochs, strategy)
        trace = [[g["lr"] for g in opt.param_groups]]
        for _ in range(15):
            opt.step()
            sched.step()
            trace.append(sched.get_last_lr())
        lrs[lib.__name__] = np.array(trace)
        assert [g["swa_lr"] for g in opt.param_groups] == (
            swa_lr if isinstance(swa_lr, list) else [swa_lr] * 2)
    np.testing.assert_array_equal(lrs["minidl"], lrs["torch"])

    opt = optim.SGD([minidl.nn.Parameter(minidl.ones(2))], lr=0.1)
    sched = optim.swa_utils.SWALR(opt, 0.05, anneal_epochs, strategy)
    for _ in range(2):
        sched.step()
    saved = copy.deepcopy(sched.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    assert "anneal_func" not in saved and "optimizer" not in saved
    straight = []
    for _ in range(5):
        sched.step()
        straight.append(opt.param_groups[0]["lr"])
    opt2 = optim.SGD([minidl.nn.Parameter(minidl.ones(2))], lr=0.1)
    sched2 = optim.swa_utils.SWALR(opt2, 0.07, 7, "linear" if strategy == "cos" else "cos")
    sched2.load_state_dict(saved)
    opt2.load_state_dict(saved_opt)
    assert sched2.anneal_func == (sched2._cosine_anneal if strategy == "cos"
                                  else sched2._linear_anneal)
    resumed = []
    for _ in range(5):
        sched2.step()
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == straight


def test_swalr_errors_as_torch():
    torch = pytest.importorskip("torch")
    for lib in (torch, minidl):
        opt = lib.optim.SGD([lib.nn.Parameter(lib.ones(2))], lr=0.1)
        with pytest.raises(ValueError, match="anneal_strategy must be one of"):
            lib.optim.swa_utils.SWALR(opt, 0.05, anneal_strategy="exp")
        with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0"):
            lib.optim.swa_utils.SWALR(opt, 0.05, anneal_epochs=-1)
        with pytest.raises(ValueError, match="anneal_epochs"):
            lib.optim.swa_utils.SWALR(opt, 0.05, anneal_epochs=2.5)
        with pytest.raises(ValueError):
            lib.optim.swa_utils.SWALR(opt, [0.05, 0.01])


@pytest.mark.parametrize("name, options", [("ASGD", {"t0": 3}), ("NAdam", {})])
def test_scalar_state_follows_the_default_dtype_as_torch(name, options):
    """PyTorch keeps ASGD's eta and mu and NAdam's mu_product in float64 when that is the
    default dtype (float32 otherwise): with both libraries' default at float64 the float64
    iterates agree to 1e-15, and the scalars are float64."""
    torch = pytest.importorskip("torch")
    start, grads = inputs()
    old, told = minidl.get_default_dtype(), torch.get_default_dtype()
    minidl.set_default_dtype(minidl.float64)
    torch.set_default_dtype(torch.float64)
    try:
        params, opt = make(minidl, name, options, np.float64, start)
        tparams, topt = make(torch, name, options, np.float64, start)
        ours = feed(minidl, params, opt, grads, np.float64)
        theirs = feed(torch, tparams, topt, grads, np.float64)
    finally:
        minidl.set_default_dtype(old)
        torch.set_default_dtype(told)
    np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=1e-16)
    key = "mu" if name == "ASGD" else "mu_product"
    assert type(opt.state[params[0]][key]) is np.float64
    assert topt.state[tparams[0]][key].dtype == torch.float64


def test_cosine_annealing_get_lr_right_after_resuming_matches_torch():
    """Resumed at last_epoch > 0, a direct get_lr() before any step returns PyTorch's closed
    form at last_epoch (its _step_count == 1 branch), and the steps after it its recurrence."""
    torch = pytest.importorskip("torch")
    traces = {}
    for lib in (minidl, torch):
        opt = lib.optim.SGD([{"params": [lib.nn.Parameter(lib.zeros(1))]},
                             {"params": [lib.nn.Parameter(lib.zeros(1))], "lr": 0.5}], lr=1.0)
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
            group["lr"] *= 0.7
        sched = lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01,
                                                         last_epoch=3)
        with pytest.warns(UserWarning) if lib is torch else contextlib.nullcontext():
            trace = [sched.get_lr()]
        for _ in range(25):
            opt.step()
            sched.step()
            trace.append(sched.get_last_lr())
        traces[lib.__name__] = np.array(trace)
    np.testing.assert_array_equal(traces["minidl"], traces["torch"])


def test_swalr_inside_sequential_lr_matches_torch():
    """SequentialLR hands over to SWALR at the milestone without a step() call, so that
    hand-over is not counted in SWALR's _step_count and the annealing starts one step
    later, as in PyTorch."""
    torch = pytest.importorskip("torch")
    traces = {}
    for lib in (minidl, torch):
        opt = lib.optim.SGD([lib.nn.Parameter(lib.zeros(1))], lr=0.2)
        cosine = lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
        swa = lib.optim.swa_utils.SWALR(opt, swa_lr=0.03, anneal_epochs=4)
        sched = lib.optim.lr_scheduler.SequentialLR(opt, [cosine, swa], milestones=[5])
        trace = [opt.param_groups[0]["lr"]]
        for _ in range(14):
            opt.step()
            sched.step()
            trace.append(opt.param_groups[0]["lr"])
        traces[lib.__name__] = trace
    np.testing.assert_allclose(traces["minidl"], traces["torch"], rtol=1e-15)


def older_optimizer_cases():
    cases = []
    for m, damp, nesterov, wd, mx in itertools.product([0, 0.9], [0, 0.3], [False, True],
                                                      [0, 0.05], [False, True]):
        if not nesterov or (m != 0 and damp == 0):
            cases.append(("SGD", {"lr": 0.1, "momentum": m, "dampening": damp,
                                  "nesterov": nesterov, "weight_decay": wd, "maximize": mx}))
    for name, amsgrad, wd, mx in itertools.product(["Adam", "AdamW"], [False, True], [0, 0.1],
                                                   [False, True]):
        cases.append((name, {"amsgrad": amsgrad, "weight_decay": wd, "maximize": mx}))
    for centered, m, wd, mx in itertools.product([False, True], [0, 0.5], [0, 0.1],
                                                 [False, True]):
        cases.append(("RMSprop", {"centered": centered, "momentum": m, "weight_decay": wd,
                                  "maximize": mx, "alpha": 0.9}))
    for decay, initial, wd, mx in itertools.product([0, 0.01], [0, 0.5], [0, 0.1],
                                                    [False, True]):
        cases.append(("Adagrad", {"lr_decay": decay, "initial_accumulator_value": initial,
                                  "weight_decay": wd, "maximize": mx}))
    for rho, wd, mx, lr in itertools.product([0.9, 0.5], [0, 0.1], [False, True], [1.0, 0.3]):
        cases.append(("Adadelta", {"rho": rho, "weight_decay": wd, "maximize": mx, "lr": lr}))
    return cases


OLDER = older_optimizer_cases()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, options", OLDER,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                              for n, o in OLDER])
def test_older_optimizer_option_combinations_match_torch(name, options, dtype):
    """SGD, Adam, AdamW, RMSprop, Adagrad and Adadelta: every combination of their options
    over 20 steps on two groups (a matrix and a vector) against torch: float64 to 1e-15
    relative to the parameters' scale (measured: at most 3.2e-16), float32 to 1e-6; the same
    state keys."""
    torch = pytest.importorskip("torch")
    start, grads = inputs(seed=7, steps=20, shapes=((4, 3), (5,)))
    params, opt = make(minidl, name, options, dtype, start)
    tparams, topt = make(torch, name, options, dtype, start)
    ours = feed(minidl, params, opt, grads, dtype)
    theirs = feed(torch, tparams, topt, grads, dtype)
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=0,
                               atol=scale * (1e-15 if dtype == np.float64 else 1e-6))
    for p, tp in zip(params, tparams):
        assert list(opt.state[p]) == list(topt.state[tp])


def test_reprs_and_swa_utils_signatures_match_torch():
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils as tswa
    for name in tswa.__all__:
        ours, theirs = getattr(optim.swa_utils, name), getattr(tswa, name)
        if isinstance(theirs, type):
            ours, theirs = ours.__init__, theirs.__init__
        assert [(p.name, p.kind, p.default)
                for p in inspect.signature(ours).parameters.values()] == [
            (p.name, p.kind, p.default)
            for p in inspect.signature(theirs).parameters.values()], name
    for name in ("Rprop", "ASGD", "LBFGS", "SparseAdam", "Adafactor"):
        ours = getattr(optim, name)([minidl.nn.Parameter(minidl.ones(2))], lr=0.5)
        theirs = getattr(torch.optim, name)([torch.ones(2, requires_grad=True)], lr=0.5)
        assert repr(ours) == repr(theirs)


def test_differentiable_raises():
    p = minidl.nn.Parameter(minidl.ones(2))
    for cls in (optim.Rprop, optim.ASGD):
        with pytest.raises(NotImplementedError, match="differentiable=True"):
            cls([p], differentiable=True)
