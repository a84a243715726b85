"""The one reverse sweep: eager backward() and compiled replay agree on values, gradients, their
dtypes and shapes; gradient checks and casts; hooks; view outputs; NaN; threads."""

import threading

import numpy as np
import pytest

import minidl
from minidl import graph, nn
from minidl.graph import Function
from minidl.models import LeNet5
from minidl.nn import functional as F


def assert_same(a, b):
    """Equal arrays: same dtype, shape and values (NaN equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, equal_nan=True)


def eager_and_compiled(model, loss_fn, *inputs):
    """(loss, output, [param grads]) of one eager step and of one compiled step."""
    params = list(model.parameters())
    results = []
    for compiled in (False, True):
        model.zero_grad()
        if compiled:
            step = minidl.compile(model, loss_fn, example_inputs=inputs)
            model.zero_grad()
            loss = step(*inputs)
            out = step.output
        else:
            out = model(*inputs[:-1])
            loss = loss_fn(out, inputs[-1])
            loss.backward()
        results.append((loss.data.copy(), out.data.copy(), [p.grad.data.copy() for p in params]))
    return results


class Mixed(nn.Module):
    """A float32 weight cast into float64 arithmetic (a product takes one dtype, as in
    PyTorch): its gradient is float32 in both modes."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(minidl.randn(6, 3))  # float32
        self.v = nn.Parameter(minidl.randn(3, dtype=np.float64))

    def forward(self, x64):
        return (x64 @ self.w.double()).tanh() * self.v


class Branches(nn.Module):
    """h feeds three consumers, a parameter is read twice, two paths meet."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return self.fc2(h) + self.fc2(h * h).sigmoid() + h.sum(axis=1, keepdims=True)


def mlp():
    return nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))


def test_float32_param_in_float64_matmul_gets_float32_grad_in_both_modes():
    minidl.manual_seed(0)
    model = Mixed()
    x = minidl.randn(4, 6, dtype=np.float64)
    target = minidl.randn(4, 3, dtype=np.float64)
    (loss_e, out_e, grads_e), (loss_c, out_c, grads_c) = eager_and_compiled(
        model, F.mse_loss, x, target
    )
    assert grads_e[0].dtype == np.float32 and grads_c[0].dtype == np.float32
    assert grads_e[1].dtype == np.float64
    assert_same(loss_c, loss_e)
    assert_same(out_c, out_e)
    for ge, gc in zip(grads_e, grads_c):
        assert_same(gc, ge)


@pytest.mark.parametrize("make_model, shape, classes",
                         [(LeNet5, (1, 28, 28), 10), (mlp, (5,), 3), (Branches, (6,), 4)],
                         ids=["lenet5", "mlp", "branches_and_reuse"])
def test_eager_and_compiled_agree_on_values_grads_dtypes_shapes(make_model, shape, classes):
    minidl.manual_seed(0)
    model = make_model()
    rng = np.random.default_rng(1)
    x = minidl.tensor(rng.standard_normal((8,) + shape).astype(np.float32))
    y = minidl.tensor(rng.integers(0, classes, 8))
    (loss_e, out_e, grads_e), (loss_c, out_c, grads_c) = eager_and_compiled(
        model, F.cross_entropy, x, y
    )
    assert_same(loss_c, loss_e)
    assert_same(out_c, out_e)
    for ge, gc in zip(grads_e, grads_c):
        assert_same(gc, ge)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_eager_and_compiled_agree_on_nan_and_inf_inputs(bad):
    minidl.manual_seed(0)
    model = LeNet5()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    x[0, 0, 5:9, 5:9] = bad
    x[2, 0, 20, 3] = bad
    x = minidl.tensor(x)
    y = minidl.tensor(rng.integers(0, 10, 4))
    with np.errstate(invalid="ignore", over="ignore"):
        (loss_e, out_e, grads_e), (loss_c, out_c, grads_c) = eager_and_compiled(
            model, lambda out, t: (out * out).sum(axis=1)[1:2].sum(), x, y
        )
        assert_same(out_c, out_e)
        assert np.isnan(out_e[0]).any() or np.isinf(out_e[0]).any() or bad != bad
        assert_same(loss_c, loss_e)
        for ge, gc in zip(grads_e, grads_c):
            assert_same(gc, ge)


def test_fused_conv_relu_and_eager_relu_agree_on_nan_forward_and_backward():
    rng = np.random.default_rng(0)
    cases = [((2, 3, 8, 8), (4, 3, 3, 3)), ((4, 6, 12, 12), (16, 6, 5, 5)),
             ((4, 1, 28, 28), (6, 1, 5, 5)), ((2, 40, 6, 6), (48, 40, 3, 3))]
    for x_shape, w_shape in cases:  # direct, channel-packed and GEMM kernels
        x = rng.standard_normal(x_shape).astype(np.float32)
        x[0, 0, 2:5, 2:5] = np.nan
        w = minidl.tensor(rng.standard_normal(w_shape).astype(np.float32), requires_grad=True)
        b = minidl.tensor(rng.standard_normal(w_shape[0]).astype(np.float32), requires_grad=True)
        out_hw = x_shape[2] - w_shape[2] + 1
        # NaN in the upstream gradient, also where the ReLU cut the output (zero there).
        c = rng.standard_normal((x_shape[0], w_shape[0], out_hw, out_hw)).astype(np.float32)
        c[1, :, 0, :] = np.nan
        results = []
        for fused in (True, False):
            w.grad = b.grad = None
            xt = minidl.tensor(x, requires_grad=True)
            y = F.conv2d_relu(xt, w, b) if fused else F.relu(F.conv2d(xt, w, b))
            (y * minidl.tensor(c)).sum().backward()
            results.append((y.data, xt.grad.data, w.grad.data, b.grad.data))
        assert np.isnan(results[1][0]).any()  # eager ReLU keeps NaN (torch.relu does)
        for fused_array, eager_array in zip(*results):
            assert_same(fused_array, eager_array)


def test_relu_backward_follows_pytorch_on_nan():
    x = minidl.tensor([np.nan, -1.0, 2.0, 0.0], requires_grad=True)
    y = F.relu(x)
    (y * minidl.tensor([1.0, np.nan, 3.0, np.nan])).sum().backward()
    assert np.isnan(y.data[0])
    np.testing.assert_array_equal(x.grad.data, [1.0, 0.0, 3.0, 0.0])


def test_fused_linear_relu_keeps_nan_like_eager():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = minidl.randn(3, 4)
    x.data[1, 2] = np.nan
    infer = minidl.compile(model, example_inputs=(x,))
    assert any(n.attrs.get("relu") for n in infer.graph.nodes)
    with minidl.no_grad():
        assert_same(infer(x).data, model(x).data)


class ViewOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x).relu().reshape(-1)


def test_compiled_view_output_is_not_overwritten_by_the_next_call():
    minidl.manual_seed(0)
    model = ViewOut()
    x1, x2 = minidl.randn(2, 4), minidl.randn(2, 4)
    infer = minidl.compile(model, example_inputs=(x1,))
    first = infer(x1)
    kept = first.data.copy()
    infer(x2)
    np.testing.assert_array_equal(first.data, kept)
    with minidl.no_grad():
        np.testing.assert_array_equal(kept, model(x1).data)


class FlatLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x).reshape(-1)  # Linear's output is planned; its view escapes


def test_compiled_view_output_is_not_corrupted_within_a_call():
    """A later op of the same size must not reuse the buffer the model's output views."""
    minidl.manual_seed(0)
    model = FlatLinear()
    fc = model.fc
    mixer = minidl.randn(4, 4)  # a constant of the loss

    def loss_fn(out, target):
        return (F.linear(out.reshape(2, 4) + 1.0, mixer) * target).sum()

    x, t = minidl.randn(2, 4), minidl.randn(2, 4)
    step = minidl.compile(model, loss_fn, example_inputs=(x, t))
    fc.zero_grad()
    loss = step(x, t)
    grads_c = [p.grad.data.copy() for p in fc.parameters()]
    fc.zero_grad()
    out = model(x)
    loss_e = loss_fn(out, t)
    loss_e.backward()
    np.testing.assert_allclose(step.output.data, out.data, rtol=1e-6)
    np.testing.assert_allclose(loss.data, loss_e.data, rtol=1e-6)
    for p, gc in zip(fc.parameters(), grads_c):
        np.testing.assert_allclose(gc, p.grad.data, rtol=1e-5, atol=1e-7)


def test_sweep_rejects_a_gradient_of_the_wrong_shape_naming_the_op():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    x = minidl.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad.backward returned a gradient of shape \(1,\)"):
        Bad.apply(x).sum().backward()


def test_sweep_casts_gradients_to_each_values_dtype():
    class Widen(Function):
        """Returns a float64 gradient for a float32 input."""

        @staticmethod
        def forward(ctx, a):
            return a.copy()

        @staticmethod
        def backward(ctx, g):
            return g.astype(np.float64)

    x = minidl.randn(3, requires_grad=True)
    h = Widen.apply(x)
    h.retain_grad()
    (Widen.apply(h) * 3.0).sum().backward()
    assert x.grad.dtype == np.float32 and h.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0, 3.0])


# -- hooks ------------------------------------------------------------------------------------
def test_register_hook_on_leaf_replaces_the_accumulated_gradient():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.data.copy()))
    handle = x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    np.testing.assert_array_equal(seen[0], [2.0, 4.0])  # the total gradient, once
    np.testing.assert_array_equal(x.grad.data, [20.0, 40.0])
    handle.remove()
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])
    assert len(seen) == 2


def test_register_hook_on_non_leaf_changes_what_flows_on():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    h.register_hook(lambda g: g + 1)
    (h * h).sum().backward()  # dh = 2h = [6, 12] -> [7, 13]; dx = 3 dh
    np.testing.assert_array_equal(x.grad.data, [21.0, 39.0])


def test_hooks_reject_tensors_without_grad_and_bad_replacements():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        minidl.ones(2).register_hook(lambda g: g)
    x = minidl.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    x.register_hook(lambda g: minidl.ones(3))
    with pytest.raises(RuntimeError, match="hook.*shape"):
        (x * 2).sum().backward()


def test_post_accumulate_grad_hook_sees_the_accumulated_grad_once_per_backward():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    x.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.data.copy()))
    (x * x + x).sum().backward()  # x read three times: one call with the total
    (x * 2).sum().backward()
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[0], [3.0, 5.0])
    np.testing.assert_array_equal(calls[1], [5.0, 7.0])


def test_hooks_run_in_compiled_replay_as_in_eager():
    def run(compiled):
        minidl.manual_seed(0)
        model = mlp()
        order = []
        for name, p in model.named_parameters():
            p.register_hook(lambda g: g * 0.5)
            p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
        x, y = minidl.randn(4, 5), minidl.tensor([0, 1, 2, 0])
        if compiled:
            step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
            step(x, y)
        else:
            F.cross_entropy(model(x), y).backward()
        return order, [p.grad.data.copy() for p in model.parameters()]

    order_e, grads_e = run(False)
    order_c, grads_c = run(True)
    # Every parameter once, the last layer's first (backward order), in both modes.
    assert sorted(order_e) == sorted(order_c) and len(order_e) == 6
    assert order_e[0].startswith("4.") and order_c[0].startswith("4.")
    for ge, gc in zip(grads_e, grads_c):
        assert_same(gc, ge)


def test_hook_on_an_intermediate_inside_a_compiled_function_runs_every_replay():
    w = nn.Parameter(minidl.ones(3))
    calls = []

    class Hooked(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = w

        def forward(self, x):
            h = (x * self.w).relu()
            h.register_hook(lambda g: (calls.append(1), g * 2)[1])
            return h.exp()

    step = minidl.compile(Hooked(), lambda out, t: out.sum(), example_inputs=(minidl.ones(3),
                                                                              minidl.ones(3)))
    calls.clear()
    w.grad = None
    step(minidl.ones(3), minidl.ones(3))
    step(minidl.ones(3), minidl.ones(3))
    assert len(calls) == 2
    np.testing.assert_allclose(w.grad.data, 2 * 2 * np.e * np.ones(3), rtol=1e-6)


# -- threads ----------------------------------------------------------------------------------
def test_grad_mode_is_per_thread():
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait()
        seen["other"] = minidl.is_grad_enabled()
        x = minidl.ones(2, requires_grad=True)
        seen["records"] = (x * 2).requires_grad
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with minidl.no_grad():
        inside.set()
        done.wait()
        assert not minidl.is_grad_enabled()
    t.join()
    assert seen == {"other": True, "records": True}


def test_compile_in_one_thread_while_another_runs_ops():
    minidl.manual_seed(0)
    model = mlp()
    stop = threading.Event()
    errors = []

    def busy():
        x = minidl.randn(4, 5, requires_grad=True)
        while not stop.is_set():
            try:
                (x * 2).sum().backward()
            except Exception as e:  # noqa: BLE001 (the test reports any failure)
                errors.append(e)
                return

    t = threading.Thread(target=busy)
    t.start()
    try:
        for _ in range(40):
            infer = minidl.compile(model, example_inputs=(minidl.randn(64, 5),))
            assert [n.name for n in infer.graph.nodes].count("LinearOp") == 3
    finally:
        stop.set()
        t.join()
    assert not errors


def test_a_compiled_graph_called_from_several_threads_returns_right_values():
    minidl.manual_seed(0)
    model = mlp()
    infer = minidl.compile(model, example_inputs=(minidl.randn(16, 5),))
    rng = np.random.default_rng(0)
    batches = [minidl.tensor(rng.standard_normal((16, 5)).astype(np.float32)) for _ in range(8)]
    with minidl.no_grad():
        expected = [model(b).data.copy() for b in batches]
    wrong = []

    def worker(k):
        for _ in range(30):
            got = infer(batches[k]).data
            if not np.allclose(got, expected[k], rtol=1e-6, atol=1e-7):
                wrong.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_graph_state_defaults_in_a_new_thread():
    result = {}
    with minidl.no_grad():
        t = threading.Thread(target=lambda: result.update(
            grad=graph.is_grad_enabled(), tracer=graph.state.tracer))
        t.start()
        t.join()
    assert result == {"grad": True, "tracer": None}


def test_recording_in_one_thread_while_another_has_it_off():
    inside = threading.Event()
    leave = threading.Event()

    def other():
        with minidl.no_grad():
            inside.set()
            leave.wait()

    t = threading.Thread(target=other)
    t.start()
    inside.wait()
    try:
        x = minidl.ones(2, requires_grad=True)
        y = (x * 3).sum()
        assert y.requires_grad
        y.backward()
        np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    finally:
        leave.set()
        t.join()


def test_a_thread_that_ends_with_recording_off_leaves_the_others_recording():
    seen = {}

    def other():
        minidl.set_grad_enabled(False)
        seen["records"] = (minidl.ones(2, requires_grad=True) * 2).requires_grad

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == {"records": False}
    assert (minidl.ones(2, requires_grad=True) * 2).requires_grad


# -- in-place ops -------------------------------------------------------------------------------
def test_consumers_before_between_and_after_two_inplace_ops_get_the_value_they_read():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = a * 1
    z1 = (y + 0) * 2  # reads a (through a copy: mul saves its inputs)
    y.mul_(3)
    z2 = (y + 0) * 5  # reads 3a
    y.add_(1)
    z3 = (y + 0) * 7  # reads 3a + 1
    (z1.sum() + z2.sum() + z3.sum() + y.sum()).backward()
    # d/da of 2a + 5(3a) + 7(3a + 1) + (3a + 1)
    np.testing.assert_array_equal(a.grad.data, [41.0, 41.0])


def _recording_backward(monkeypatch, op):
    """Make op's backward record the arrays it returns; the list of those results."""
    returned = []
    original = op.backward

    def backward(ctx, g):
        result = original(ctx, g)
        returned.append(result)
        return result

    monkeypatch.setattr(op, "backward", staticmethod(backward))
    return returned


def test_a_fresh_gradient_becomes_the_leafs_grad_without_a_copy(monkeypatch):
    from minidl.ops.conv import Conv2dOp
    from minidl.ops.pool import MaxPool2dOp

    pools = _recording_backward(monkeypatch, MaxPool2dOp)
    convs = _recording_backward(monkeypatch, Conv2dOp)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = minidl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    F.max_pool2d(y, 2).sum().backward()
    assert y.grad.data is pools[0]
    F.conv2d(x, w, padding=1).sum().backward()
    gx, gw, _ = convs[0]
    assert x.grad.data is gx and w.grad.data is gw
    # A second backward adds into the existing .grad (that array stays ours).
    before, first = x.grad.data, gx.copy()
    F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad.data is before and x.grad.data is not convs[1][0]
    np.testing.assert_array_equal(x.grad.data, first + convs[1][0])


def test_gradients_others_may_hold_are_copied_into_grad():
    rng = np.random.default_rng(1)
    x = minidl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    # The seed is the caller's array: a leaf root's .grad is a copy of it.
    seed = np.ones((2, 3, 8, 8), np.float32)
    x.backward(minidl.tensor(seed))
    assert not np.shares_memory(x.grad.data, seed)
    # A hook sees (and may keep) the gradient: .grad is then a copy of what it returned.
    kept = []
    z = minidl.tensor(x.data.copy(), requires_grad=True)
    z.register_hook(lambda g: kept.append(g) or g)
    F.max_pool2d(z, 2).sum().backward()
    assert not np.shares_memory(z.grad.data, kept[0].data)
    z.grad.data += 1
    assert kept[0].data.max() == 1
    # An op that is not fresh_gradients (reshape returns a view of its upstream gradient).
    u = minidl.tensor(x.data.copy(), requires_grad=True)
    out = F.max_pool2d(u, 2)
    out.retain_grad()
    out.reshape(-1).sum().backward()
    assert not np.shares_memory(u.grad.data, out.grad.data)
    # Both inputs of one add get the same upstream array: each .grad is its own.
    a = minidl.tensor(np.zeros(3, np.float32), requires_grad=True)
    b = minidl.tensor(np.zeros(3, np.float32), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
