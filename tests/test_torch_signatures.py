"""Every nn.functional function and nn module class that minidl shares with PyTorch takes the
same parameters in the same order with the same defaults, so PyTorch code that passes
arguments by position means the same thing here. minidl's own additions are listed below;
each is keyword-only or after all of PyTorch's parameters."""

import inspect

import pytest

import minidl
from minidl.nn import functional as F

# name -> parameters minidl adds (always after PyTorch's own, or keyword-only).
EXTRAS = {
    "conv2d": {"relu"},
    "batch_norm": {"num_batches_tracked"},
}
# PyTorch's signature is (*args, **kwargs) for these: nothing to compare.
OPAQUE = {"max_pool2d", "Module", "Sigmoid", "Tanh", "Softsign", "Parameter", "Sequential"}


def parameters(fn):
    """(name, kind, default) of each parameter, without `self`."""
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def shared_names(ours, theirs, classes):
    for name in sorted(dir(ours)):
        if name.startswith("_") or name in OPAQUE or not hasattr(theirs, name):
            continue
        a, b = getattr(ours, name), getattr(theirs, name)
        if classes != isinstance(a, type) or not callable(b):
            continue
        yield name, a, b


def compare(name, ours, theirs):
    try:
        mine, torch_params = parameters(ours), parameters(theirs)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
        return
    if any(p[1] == inspect.Parameter.VAR_POSITIONAL for p in torch_params):
        return
    extras = EXTRAS.get(name, set())
    kept = [p for p in mine if p[0] not in extras]
    assert [p[0] for p in kept] == [p[0] for p in torch_params], name
    for a, b in zip(kept, torch_params):
        assert a[1] == b[1], f"{name}: {a[0]} is {a[1]} here, {b[1]} in PyTorch"
        # A function default (an activation) is each library's own function of that name.
        same = (a[2].__name__ == b[2].__name__ if callable(a[2]) and callable(b[2])
                else a[2] == b[2])
        assert same, f"{name}: {a[0]} defaults to {a[2]!r} here, {b[2]!r} in PyTorch"
    for extra in (p for p in mine if p[0] in extras):
        assert mine.index(extra) >= len(torch_params) or extra[1] == inspect.Parameter.KEYWORD_ONLY


def test_functional_signatures_match_torch():
    torch = pytest.importorskip("torch")
    names = list(shared_names(F, torch.nn.functional, classes=False))
    assert len(names) > 40
    for name, ours, theirs in names:
        compare(name, ours, theirs)


def test_module_constructor_signatures_match_torch():
    torch = pytest.importorskip("torch")
    names = list(shared_names(minidl.nn, torch.nn, classes=True))
    assert len(names) > 40
    for name, ours, theirs in names:
        compare(name, ours.__init__, theirs.__init__)
