"""The graph executor: worked examples from the lectures, accumulation, freeing, deep graphs."""

import math
import sys

import numpy as np
import pytest

import minidl
from minidl.autograd import GradcheckError, gradcheck


def scalar(v):
    return minidl.tensor(v, dtype=np.float64, requires_grad=True)


@pytest.mark.parametrize(
    "x, y, z, f, dx, dy, dz",
    [(-2.0, 5.0, -4.0, -12.0, -4.0, -4.0, 3.0), (1.0, -3.0, 4.0, -8.0, 4.0, 4.0, -2.0)],
)
def test_lecture_add_mul_circuit(x, y, z, f, dx, dy, dz):
    tx, ty, tz = scalar(x), scalar(y), scalar(z)
    out = (tx + ty) * tz
    out.backward()
    assert out.item() == f
    assert (tx.grad.item(), ty.grad.item(), tz.grad.item()) == (dx, dy, dz)


def sigmoid_neuron(w, x):
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    return 1.0 / (1.0 + (-dot).exp())


def test_lecture_sigmoid_neuron():
    w = minidl.tensor([2.0, -3.0, -3.0], dtype=np.float64, requires_grad=True)
    x = minidl.tensor([-1.0, -2.0], dtype=np.float64, requires_grad=True)
    f = sigmoid_neuron(w, x)
    f.backward()
    assert round(f.item(), 2) == 0.73
    np.testing.assert_allclose(w.grad.data, [-0.20, -0.39, 0.20], atol=5e-3)
    np.testing.assert_allclose(x.grad.data, [0.39, -0.59], atol=5e-3)
    # local gradient of the sigmoid gate: (1 - f) f
    assert math.isclose(w.grad.data[2], (1 - f.item()) * f.item(), rel_tol=1e-12)
    assert gradcheck(sigmoid_neuron, [w, x])


def test_mean_subtraction_backward_is_mean_subtraction_of_upstream():
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal(7), requires_grad=True)
    h = x - x.mean()
    upstream = rng.standard_normal(7)
    h.backward(upstream)
    np.testing.assert_allclose(x.grad.data, upstream - upstream.mean(), rtol=1e-12)


def test_value_used_twice_sums_gradients():
    a = scalar(3.0)
    b = a + a
    c = b * b
    c.backward()
    # c = 4a^2, dc/da = 8a
    assert a.grad.item() == 24.0


def test_value_used_many_times_sums_every_gradient_and_leaves_retained_ones_alone():
    # From the third consumer on the sweep adds into its own running sum in place: the
    # gradients it received (here the retained y.grad and the ones of the slices) must not
    # change, and the total must be every contribution.
    x = minidl.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    y = x * 1.0
    y.retain_grad()
    rows = [y[k] * float(k + 1) for k in range(4)]
    z = y * 2.0
    (sum(r.sum() for r in rows) + z.sum() + y.sum()).backward()
    want = np.array([[4.0] * 3, [5.0] * 3, [6.0] * 3, [7.0] * 3])
    np.testing.assert_array_equal(x.grad.numpy(), want)
    np.testing.assert_array_equal(y.grad.numpy(), want)


def test_diamond_graph_gradients_meet():
    a = scalar(2.0)
    b = a * 3.0
    c = a.exp()
    d = b * c  # 3a e^a -> derivative 3 e^a (1 + a)
    d.backward()
    assert math.isclose(a.grad.item(), 3 * math.exp(2.0) * 3.0, rel_tol=1e-12)


def test_leaf_gradients_accumulate_across_backward_calls():
    a = scalar(1.5)
    (a * a).backward()
    (a * a).backward()
    assert a.grad.item() == 6.0


def test_second_backward_through_freed_graph_raises():
    a = scalar(1.0)
    b = (a * 2.0).exp()
    b.backward()
    with pytest.raises(RuntimeError, match="freed"):
        b.backward()


def test_retain_graph_allows_second_backward():
    a = scalar(1.0)
    b = (a * 2.0).exp()
    b.backward(retain_graph=True)
    b.backward()
    assert math.isclose(a.grad.item(), 2 * 2 * math.exp(2.0), rel_tol=1e-12)


def test_backward_frees_saved_buffers():
    a = minidl.randn(4, dtype=np.float64, requires_grad=True)
    b = a.exp()
    node = b.grad_fn
    assert node.saved_tensors
    b.sum().backward()
    assert node.saved_tensors == ()


def test_non_scalar_backward_needs_grad():
    a = minidl.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(3,\)"):
        (a * 2).backward()


def test_backward_grad_shape_checked():
    a = minidl.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        (a * 2).backward(np.ones(2))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minidl.ones(2).sum().backward()


def test_deep_graph_does_not_hit_recursion_limit():
    depth = 100_000
    assert depth > sys.getrecursionlimit()
    a = scalar(0.0)
    x = a
    for _ in range(depth):
        x = x + 1.0
    x.backward()
    assert x.item() == depth
    assert a.grad.item() == 1.0


def test_no_grad_and_detach_stop_recording():
    a = minidl.randn(3, requires_grad=True)
    with minidl.no_grad():
        b = a * 2
    assert not b.requires_grad and b.grad_fn is None
    c = a.detach() * 2
    assert not c.requires_grad
    d = a * 2
    assert d.requires_grad and d.grad_fn is not None

    @minidl.no_grad()
    def f(t):
        return t * 3

    assert not f(a).requires_grad


def test_retain_grad_keeps_intermediate_gradient():
    x = scalar(-2.0)
    y = scalar(5.0)
    q = x + y
    q.retain_grad()
    f = q * scalar(-4.0)
    f.backward()
    assert q.grad.item() == -4.0


def test_gradcheck_reports_worst_element():
    class WrongSquare(minidl.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * a  # should be 2 * a * g

    x = minidl.tensor([1.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 .*element \(\d,\).*analytic.*numerical"):
        gradcheck(lambda t: WrongSquare.apply(t), [x])


def test_gradcheck_requires_float64():
    x = minidl.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, [x])


def test_backward_shape_mismatch_from_buggy_op_is_reported():
    class Bad(minidl.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    x = minidl.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad\.backward.*\(1,\).*\(3,\)"):
        Bad.apply(x).sum().backward()


@pytest.mark.parametrize("write", [
    lambda y: y[0].mul_(3), lambda y: y.view(-1).mul_(2), lambda y: y.flatten().relu_(),
    lambda y: y.unsqueeze(0).add_(1), lambda y: y[1].zero_(),
])
def test_inplace_through_a_view_of_a_recorded_tensor_raises(write):
    """PyTorch carries an in-place write into a view back to its base's gradient; minidl's
    graph would not see it (the base's gradient would silently ignore the op), so it raises.
    The same writes under no_grad, and in-place ops on tensors that are not views, work."""
    x = minidl.ones((2, 3), requires_grad=True)
    y = x * 1
    with pytest.raises(RuntimeError, match="is a view .* of a tensor recorded in a graph"):
        write(y)
    with pytest.raises(RuntimeError, match="is a view"):
        write(x)  # a view of a leaf that requires grad: PyTorch raises too
    with minidl.no_grad():
        write(x)
    z = x * 2
    z.mul_(3)
    z.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 6.0))


def test_grad_takes_torchs_deprecated_only_inputs_in_its_position():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    with pytest.warns(FutureWarning, match="only_inputs argument is deprecated"):
        (g,) = minidl.autograd.grad(y, x, None, None, False, False, True)
    np.testing.assert_array_equal(g.numpy(), [2.0, 4.0])
    assert minidl.is_tensor(obj=x)
