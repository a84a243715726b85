"""Adamax, NAdam, RAdam and the options every optimizer takes (maximize, foreach, fused,
capturable, differentiable), against PyTorch 2.13 step by step."""

import inspect

import numpy as np
import pytest

import minidl
from minidl import optim

CASES = [
    ("Adamax", {}), ("Adamax", {"weight_decay": 0.1}), ("Adamax", {"maximize": True}),
    ("NAdam", {}), ("NAdam", {"weight_decay": 0.1}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("NAdam", {"momentum_decay": 0.01}),
    ("RAdam", {}), ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"maximize": True}), ("Adam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("AdamW", {"maximize": True, "amsgrad": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "maximize": True}),
    ("RMSprop", {"maximize": True, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"maximize": True}), ("Adadelta", {"maximize": True}),
]


def run(lib, name, options, dtype, grads, start):
    params = [lib.nn.Parameter(lib.tensor(start[0].astype(dtype))),
              lib.nn.Parameter(lib.tensor(start[1].astype(dtype)))]
    opt = getattr(lib.optim, name)([{"params": [params[0]]},
                                    {"params": [params[1]], "lr": 0.005}], **options)
    trace = []
    for g0, g1 in grads:
        params[0].grad = lib.tensor(g0.astype(dtype))
        params[1].grad = lib.tensor(g1.astype(dtype))
        opt.step()
        trace.append(np.concatenate([p.detach().numpy().copy() for p in params]))
    return np.array(trace), opt


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{'-'.join(o)}" for n, o in CASES])
def test_optimizer_steps_match_torch(name, options, dtype):
    """30 steps on two parameter groups. float64 agrees to 1e-14 (most cases bit for bit);
    float32 to a few ulp (NAdam's float32 momentum product and the SGD kernel's fused
    multiply-adds round differently)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    start = (rng.standard_normal(5), rng.standard_normal(3))
    grads = [(rng.standard_normal(5), rng.standard_normal(3)) for _ in range(30)]
    ours, opt = run(minidl, name, options, dtype, grads, start)
    theirs, topt = run(torch, name, options, dtype, grads, start)
    tol = dict(rtol=1e-14, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(ours, theirs, **tol)
    assert list(opt.param_groups[0]) == list(topt.param_groups[0])
    assert {k: v for k, v in opt.param_groups[1].items() if k != "params"} == {
        k: (tuple(v) if isinstance(v, tuple) else v)
        for k, v in topt.param_groups[1].items() if k != "params"}


def test_optimizer_constructor_signatures_match_torch():
    torch = pytest.importorskip("torch")
    for name in optim.__all__:
        ours, theirs = getattr(optim, name), getattr(torch.optim, name, None)
        if not isinstance(ours, type) or theirs is None or name == "Optimizer":
            continue
        mine = [(p.name, p.kind, p.default)
                for p in inspect.signature(ours.__init__).parameters.values()]
        torchs = [(p.name, p.kind, p.default)
                  for p in inspect.signature(theirs.__init__).parameters.values()]
        assert mine == torchs, name


def test_differentiable_raises_and_bad_hyperparameters_are_named():
    p = minidl.nn.Parameter(minidl.ones(2))
    for cls in (optim.Adamax, optim.NAdam, optim.RAdam, optim.Adam, optim.SGD):
        with pytest.raises(NotImplementedError, match="differentiable=True"):
            cls([p], differentiable=True)
    with pytest.raises(ValueError, match="NAdam: betas"):
        optim.NAdam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum_decay"):
        optim.NAdam([p], momentum_decay=-1)
    opt = optim.RAdam([p], foreach=True, capturable=True)
    assert opt.param_groups[0]["foreach"] is True
