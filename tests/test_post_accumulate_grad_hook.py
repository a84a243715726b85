"""Tensor.register_post_accumulate_grad_hook: once per leaf per backward, after .grad is final,
in eager and compiled graphs (DistributedDataParallel starts its allreduces from it)."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn import functional as F


def _mlp():
    minidl.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


def _batch():
    rng = np.random.default_rng(1)
    x = minidl.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    y = minidl.tensor(rng.integers(0, 3, 6))
    return x, y


def test_hook_sees_the_final_gradient_of_a_leaf_used_twice():
    a = minidl.tensor([1.5, -2.0], requires_grad=True)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.data.copy()))
    (a * a + a).sum().backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], 2 * a.data + 1)


def test_hook_fires_once_per_backward_and_sees_accumulation():
    a = minidl.tensor([3.0], requires_grad=True)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(float(t.grad.data[0])))
    (a * 2).sum().backward()
    (a * 2).sum().backward()
    assert seen == [2.0, 4.0]


def test_hooks_fire_during_backward_last_layer_first_and_in_registration_order():
    model = _mlp()
    order = []
    names = dict((id(p), n) for n, p in model.named_parameters())
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda t: order.append(names[id(t)]))
    first = model[0].weight
    first.register_post_accumulate_grad_hook(lambda t: order.append("second hook"))
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    assert set(order[:2]) == {"2.weight", "2.bias"}
    assert order.index("0.weight") + 1 == order.index("second hook")
    assert len(order) == 5


def test_removed_hook_is_not_called():
    a = minidl.tensor([1.0], requires_grad=True)
    calls = []
    handle = a.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    handle.remove()
    (a * 3).sum().backward()
    assert calls == []


def test_hook_on_non_leaf_or_no_grad_tensor_raises():
    a = minidl.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (a * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        minidl.tensor([1.0]).register_post_accumulate_grad_hook(lambda t: None)


def test_unreached_leaf_gets_no_hook_call():
    a = minidl.tensor([1.0], requires_grad=True)
    b = minidl.tensor([2.0], requires_grad=True)
    calls = []
    b.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    (a * 2).sum().backward()
    assert calls == []


def test_compiled_step_fires_hooks_with_the_eager_gradients_before_backward_ends():
    x, y = _batch()
    eager = _mlp()
    F.cross_entropy(eager(x), y).backward()
    model = _mlp()
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    seen = {}
    for name, p in model.named_parameters():
        def hook(t, name=name):
            # The other parameters read earlier in the schedule are not accumulated yet.
            seen[name] = (t.grad.data.copy(), model[0].weight.grad is None)
        p.register_post_accumulate_grad_hook(hook)
    step(x, y)
    assert set(seen) == {n for n, _ in model.named_parameters()}
    assert seen["2.weight"][1] and not seen["0.weight"][1]
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        np.testing.assert_array_equal(seen[name][0], q.grad.data)
        np.testing.assert_array_equal(p.grad.data, q.grad.data)
