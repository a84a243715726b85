"""PyTorch idioms run unchanged on minidl (issue 11).

Each idiom is a function of the module namespace `torch` (minidl, or PyTorch itself), written
as PyTorch code; it returns plain values (lists, numbers, strings, dtype names). Every idiom is
checked against fixed expected values always, and against PyTorch 2.13 when it is installed
(skipped cleanly otherwise), so the expected values are known to be PyTorch's.
"""

from __future__ import annotations

import importlib
import math
import types

import numpy as np
import pytest

import minidl

try:
    import torch as real_torch
except ImportError:  # the comparison half is skipped
    real_torch = None


def minidl_namespace() -> types.SimpleNamespace:
    import minidl.nn.functional as F
    from minidl import nn, optim

    return types.SimpleNamespace(torch=minidl, nn=nn, F=F, optim=optim)


def torch_namespace() -> types.SimpleNamespace:
    F = importlib.import_module("torch.nn.functional")
    return types.SimpleNamespace(torch=real_torch, nn=real_torch.nn, F=F, optim=real_torch.optim)


def values(x):
    """A tensor (of either engine), tuple or number as plain Python values."""
    if hasattr(x, "tolist") and hasattr(x, "dtype") and not isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [values(v) for v in x]
    return x


def dtype_name(dt) -> str:
    return str(dt).replace("torch.", "").replace("minidl.", "")


IDIOMS: dict = {}


def idiom(expected):
    """Register an idiom with the values it must return on both engines."""

    def register(fn):
        IDIOMS[fn.__name__] = (fn, expected)
        return fn

    return register


def close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    return a == b


# -- silent wrong results: in-place updates ---------------------------------------------------
@idiom([0.5, 1.5, 2.5])
def manual_sgd_step_updates_in_place(ns):
    torch = ns.torch
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (w * 2).sum().backward()
    with torch.no_grad():
        for p in [w]:  # the loop variable: only an in-place update reaches w
            p -= 0.25 * p.grad
    return values(w)


@idiom([[2.0, 3.0], [0.0, 0.0], [6.0, 4.0], 3])
def inplace_methods_and_versions(ns):
    torch = ns.torch
    a = torch.ones(2)
    before = a._version
    a.add_(1).mul_(torch.tensor([1.0, 1.5]))
    b = torch.tensor([5.0, 6.0])
    b.zero_()
    c = torch.tensor([1.0, 2.0])
    c.copy_(torch.tensor([6.0, 4.0]))
    return [values(a), values(b), values(c), a._version - before + 1]


@idiom([[1.0, 0.0, 9.0], [0.0, 0.0]])
def inplace_clamp_fill_and_grad_zero(ns):
    torch = ns.torch
    x = torch.tensor([3.0, -1.0, 20.0])
    x.clamp_(0.0, 9.0)
    x[0] = 1.0
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    w.grad.zero_()
    return [values(x), values(w.grad)]


@idiom("raises")
def inplace_on_leaf_requiring_grad_raises(ns):
    torch = ns.torch
    w = torch.tensor([1.0], requires_grad=True)
    try:
        w += 1
    except RuntimeError:
        return "raises"
    return "no error"


@idiom("raises")
def modified_saved_tensor_raises_at_backward(ns):
    torch = ns.torch
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    y = a.exp()
    y.mul_(2)  # exp saved its output for backward
    try:
        y.sum().backward()
    except RuntimeError:
        return "raises"
    return "no error"


@idiom([[2.0, 0.0, 2.0], [2.0, 0.0, 6.0]])
def relu_inplace_on_a_non_leaf(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    a = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    h = a * 2
    out = nn.ReLU(inplace=True)(h)
    out.sum().backward()
    g = a.grad.tolist()
    b = torch.tensor([1.0, -2.0, 3.0])
    F.relu(b, inplace=True)
    return [g, values(b * torch.tensor([2.0, 2.0, 2.0]))]


@idiom([4.0, 4.0])
def consumer_before_an_inplace_op_keeps_the_old_value(ns):
    torch = ns.torch
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    y = a * 1
    z = y + 1  # uses y before it is tripled in place
    y.mul_(3)
    (z.sum() + y.sum()).backward()
    return values(a.grad)


# -- named tuples from max/min/sort/topk ---------------------------------------------------------
@idiom([[5.0, 7.0], [1, 0], [1, 0], [0, 1], [[1.0, 0.0], [1, 2]]])
def max_min_with_dim_return_values_and_indices(ns):
    torch = ns.torch
    x = torch.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]])
    v, i = torch.max(x, 1)
    m = x.max(dim=1)
    mn = x.min(1)
    return [values(v), values(i), values(m.indices), values(mn.indices),
            [values(mn.values), values(x.argmin(dim=1, keepdim=False) + 1)]]


@idiom(3)
def accuracy_counting_with_torch_max(ns):
    torch = ns.torch
    out = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([1, 0, 0, 0])
    _, predicted = torch.max(out.data if ns.torch is not minidl else out, 1)
    return (predicted == labels).sum().item()


@idiom([[3, 2, 1], [0, 2, 1], [3.0, 2.0], [0, 2]])
def sort_and_topk(ns):
    torch = ns.torch
    s = torch.tensor([3, 1, 2]).sort(descending=True)
    t = torch.topk(torch.tensor([3.0, 1.0, 2.0]), 2)
    return [values(s.values), values(s.indices), values(t.values), values(t.indices)]


# -- dtype promotion ---------------------------------------------------------------------------
@idiom(["float32", "float32", "float32", "float32", "float32", "uint8", "int64", "float64",
        "float32"])
def dtype_promotion(ns):
    torch = ns.torch
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8)
    i64 = torch.tensor([1, 2, 3])
    f32 = torch.ones(3)
    return [dtype_name(d) for d in (
        (u8 / 255.0).dtype, (i64 * 0.5).dtype, (i64 * f32).dtype, torch.Tensor([1, 2]).dtype,
        (f32 ** i64).dtype, (u8 + 3).dtype, (i64 // 2).dtype,
        (f32.double() + f32).dtype, (f32 + torch.tensor(1.0, dtype=torch.float64)).dtype,
    )]


@idiom(["float64", "float64", "float32"])
def set_default_dtype(ns):
    torch = ns.torch
    torch.set_default_dtype(torch.float64)
    try:
        got = [torch.tensor([1.5]).dtype, torch.ones(2).dtype]
    finally:
        torch.set_default_dtype(torch.float32)
    got.append(torch.get_default_dtype())
    return [dtype_name(d) for d in got]


@idiom(["TypeError", "RuntimeError"])
def grad_assignment_is_checked(ns):
    torch = ns.torch
    p = torch.zeros(3, requires_grad=True)
    errors = []
    for value in (0.0, torch.zeros(2)):
        try:
            p.grad = value
        except (TypeError, RuntimeError) as e:
            errors.append(type(e).__name__)
    return errors


# -- the checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_gives_the_expected_values(name):
    fn, expected = IDIOMS[name]
    got = fn(minidl_namespace())
    assert close(got, expected), f"{name}: minidl gave {got!r}, expected {expected!r}"


@pytest.mark.skipif(real_torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_matches_pytorch(name):
    fn, expected = IDIOMS[name]
    got = fn(torch_namespace())
    assert close(got, expected), f"{name}: PyTorch gave {got!r}, the table says {expected!r}"
