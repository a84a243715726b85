"""Every core differentiable op: forward against NumPy, backward against a float64 gradcheck."""

import numpy as np
import pytest

import minidl
from minidl.autograd import gradcheck
from minidl.nn import functional as F
from minidl.ops.matmul import LinearOp

rng = np.random.default_rng(1234)


def t64(*shape, low=None, high=None):
    if low is None:
        a = rng.standard_normal(shape)
    else:
        a = rng.uniform(low, high, size=shape)
    return minidl.tensor(a, dtype=np.float64, requires_grad=True)


def away_from(a, points, margin=0.05):
    """Push values away from kinks so central differences are valid."""
    for p in points:
        close = np.abs(a - p) < margin
        a[close] = p + np.where(a[close] >= p, margin, -margin)
    return a


# (name, fn on tensors, numpy reference, input factories)
CASES = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, [lambda: t64(3, 4), lambda: t64(3, 4)]),
    ("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, [lambda: t64(2, 3, 4), lambda: t64(3, 1)]),
    ("radd_scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, [lambda: t64(3)]),
    ("sub_broadcast", lambda a, b: a - b, lambda a, b: a - b, [lambda: t64(4, 1), lambda: t64(5)]),
    ("rsub_scalar", lambda a: 1.0 - a, lambda a: 1.0 - a, [lambda: t64(3)]),
    ("mul_broadcast", lambda a, b: a * b, lambda a, b: a * b, [lambda: t64(2, 3), lambda: t64(1, 3)]),
    ("rmul_scalar", lambda a: 3.0 * a, lambda a: 3.0 * a, [lambda: t64(3)]),
    ("div", lambda a, b: a / b, lambda a, b: a / b, [lambda: t64(3, 2), lambda: t64(2, low=0.5, high=2)]),
    ("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, [lambda: t64(4, low=0.5, high=2)]),
    ("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, [lambda: t64(3, 2)]),
    ("pow_tensor", lambda a, b: a ** b, lambda a, b: a ** b,
     [lambda: t64(3, low=0.5, high=2), lambda: t64(3)]),
    ("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [lambda: t64(3)]),
    ("neg", lambda a: -a, lambda a: -a, [lambda: t64(3)]),
    ("exp", lambda a: a.exp(), np.exp, [lambda: t64(2, 3)]),
    ("log", lambda a: a.log(), np.log, [lambda: t64(2, 3, low=0.2, high=3)]),
    ("sqrt", lambda a: a.sqrt(), np.sqrt, [lambda: t64(5, low=0.2, high=3)]),
    ("reciprocal", lambda a: a.reciprocal(), np.reciprocal, [lambda: t64(5, low=0.3, high=3)]),
    ("abs", lambda a: a.abs(), np.abs, [lambda: minidl.tensor(away_from(rng.standard_normal(6), [0]), requires_grad=True)]),
    ("clip", lambda a: a.clip(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5),
     [lambda: minidl.tensor(away_from(rng.standard_normal(8), [-0.5, 0.5]), requires_grad=True)]),
    ("clip_min_only", lambda a: a.clip(min=0.0), lambda a: np.clip(a, 0.0, None),
     [lambda: minidl.tensor(away_from(rng.standard_normal(8), [0.0]), requires_grad=True)]),
    ("maximum", lambda a, b: minidl.maximum(a, b), np.maximum, [lambda: t64(6), lambda: t64(6)]),
    ("minimum_broadcast", lambda a, b: minidl.minimum(a, b), np.minimum, [lambda: t64(2, 3), lambda: t64(3)]),
    ("where", lambda a, b: minidl.where(np.array([True, False, True]), a, b),
     lambda a, b: np.where([True, False, True], a, b), [lambda: t64(2, 3), lambda: t64(3)]),
    ("sum_all", lambda a: a.sum(), np.sum, [lambda: t64(2, 3)]),
    ("sum_axis", lambda a: a.sum(axis=1), lambda a: a.sum(axis=1), [lambda: t64(2, 3, 4)]),
    ("sum_axes_keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True),
     lambda a: a.sum(axis=(0, 2), keepdims=True), [lambda: t64(2, 3, 4)]),
    ("mean_axis_neg", lambda a: a.mean(axis=-1), lambda a: a.mean(axis=-1), [lambda: t64(3, 5)]),
    ("mean_all", lambda a: a.mean(), np.mean, [lambda: t64(3, 5)]),
    ("max_all", lambda a: a.max(), np.max, [lambda: t64(3, 4)]),
    ("max_axis_keepdims", lambda a: a.max(axis=1, keepdims=True).values,
     lambda a: a.max(axis=1, keepdims=True), [lambda: t64(3, 4, 2)]),
    ("min_axes", lambda a: a.amin(axis=(0, 2)), lambda a: a.min(axis=(0, 2)), [lambda: t64(3, 4, 2)]),
    ("reshape", lambda a: a.reshape(6, 2), lambda a: a.reshape(6, 2), [lambda: t64(3, 4)]),
    ("view_infer", lambda a: a.view(-1), lambda a: a.reshape(-1), [lambda: t64(3, 4)]),
    ("flatten", lambda a: a.flatten(1), lambda a: a.reshape(2, -1), [lambda: t64(2, 3, 4)]),
    ("transpose", lambda a: a.transpose(0, 2), lambda a: a.swapaxes(0, 2), [lambda: t64(2, 3, 4)]),
    ("T", lambda a: a.T, lambda a: a.T, [lambda: t64(2, 3)]),
    ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), [lambda: t64(2, 3, 4)]),
    ("index_basic", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [lambda: t64(3, 5)]),
    ("index_int", lambda a: a[1, 2], lambda a: a[1, 2], [lambda: t64(3, 5)]),
    ("index_array_repeated", lambda a: a[np.array([0, 2, 0, 0])], lambda a: a[[0, 2, 0, 0]], [lambda: t64(3, 2)]),
    ("index_pairs", lambda a: a[np.arange(3), np.array([1, 0, 1])],
     lambda a: a[np.arange(3), [1, 0, 1]], [lambda: t64(3, 2)]),
    ("index_bool", lambda a: a[np.array([True, False, True])], lambda a: a[[True, False, True]], [lambda: t64(3, 2)]),
    ("concatenate", lambda a, b: minidl.concatenate([a, b], axis=1),
     lambda a, b: np.concatenate([a, b], axis=1), [lambda: t64(2, 3), lambda: t64(2, 1)]),
    ("stack", lambda a, b: minidl.stack([a, b], axis=1), lambda a, b: np.stack([a, b], axis=1),
     [lambda: t64(2, 3), lambda: t64(2, 3)]),
    ("pad", lambda a: minidl.pad(a, ((1, 0), (2, 1)), value=0.5),
     lambda a: np.pad(a, ((1, 0), (2, 1)), constant_values=0.5), [lambda: t64(2, 3)]),
    ("matmul_2d", lambda a, b: a @ b, np.matmul, [lambda: t64(3, 4), lambda: t64(4, 5)]),
    ("matmul_vec_mat", lambda a, b: a @ b, np.matmul, [lambda: t64(4), lambda: t64(4, 5)]),
    ("matmul_mat_vec", lambda a, b: a @ b, np.matmul, [lambda: t64(3, 4), lambda: t64(4)]),
    ("matmul_vec_vec", lambda a, b: a @ b, np.matmul, [lambda: t64(4), lambda: t64(4)]),
    ("matmul_3d_2d", lambda a, b: a @ b, np.matmul, [lambda: t64(2, 3, 4), lambda: t64(4, 5)]),
    ("matmul_batch_broadcast", lambda a, b: a @ b, np.matmul, [lambda: t64(2, 1, 3, 4), lambda: t64(3, 4, 2)]),
    ("linear", lambda x, w, b: LinearOp.apply(x, w, b), lambda x, w, b: x @ w.T + b,
     [lambda: t64(5, 4), lambda: t64(3, 4), lambda: t64(3)]),
    ("linear_relu_epilogue", lambda x, w, b: LinearOp.apply(x, w, b, relu=True),
     lambda x, w, b: np.maximum(x @ w.T + b, 0), [lambda: t64(6, 4), lambda: t64(3, 4), lambda: t64(3)]),
    ("linear_3d_no_bias", lambda x, w: LinearOp.apply(x, w, None), lambda x, w: x @ w.T,
     [lambda: t64(2, 5, 4), lambda: t64(3, 4)]),
    ("cast_roundtrip", lambda a: a.float().double() * 2, lambda a: a.astype(np.float32).astype(np.float64) * 2,
     [lambda: t64(3)]),
]


@pytest.mark.parametrize("name, fn, ref, makers", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_numpy(name, fn, ref, makers):
    inputs = [m() for m in makers]
    out = fn(*inputs)
    expected = ref(*[t.data for t in inputs])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, fn, ref, makers", CASES, ids=[c[0] for c in CASES])
def test_backward_gradcheck(name, fn, ref, makers):
    if name == "cast_roundtrip":
        # the float32 hop rounds away the 1e-6 perturbations: check it exactly instead
        a = makers[0]()
        fn(a).sum().backward()
        np.testing.assert_array_equal(a.grad.data, np.full(3, 2.0))
        return
    inputs = [m() for m in makers]
    assert gradcheck(fn, inputs)
    for t in inputs:
        assert t.grad is not None and np.any(t.grad.data != 0), name


def test_float32_ops_stay_float32():
    a = minidl.randn(3, 4)
    b = minidl.randn(4, 2)
    for out in (a + 1.0, a * 2, a / 3, a ** 2, (a @ b), a.exp(), a.sum(), a.mean(axis=0), -a):
        assert out.dtype == np.float32


def test_mixed_precision_promotes_in_elementwise_ops_not_in_products():
    """PyTorch's rules: elementwise ops promote float32 with float64; matmul, linear and conv2d
    raise instead."""
    a = minidl.randn(2, 3)
    b = minidl.randn(3, 2, dtype=np.float64)
    assert (a + b.T).dtype == np.float64
    with pytest.raises(RuntimeError, match="matmul: expected both operands to have the same "
                                           "dtype, got float32 and float64"):
        a @ b
    with pytest.raises(RuntimeError, match="linear: expected both operands"):
        F.linear(a, b.T)
    with pytest.raises(RuntimeError, match="linear: bias is float64 but weight is float32"):
        F.linear(a, b.T.float(), minidl.zeros(2, dtype=np.float64))
    with pytest.raises(RuntimeError, match="matmul: expected both operands"):
        a @ minidl.ones(3, 2, dtype=np.int64)
    torch = pytest.importorskip("torch")
    for left, right in [(torch.ones(2, 3), torch.ones(3, 2, dtype=torch.float64)),
                        (torch.ones(2, 3), torch.ones(3, 2, dtype=torch.int64))]:
        with pytest.raises(RuntimeError):
            left @ right


def test_max_routes_gradient_to_first_of_ties():
    a = minidl.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    a.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(a.grad.data, [[0, 1, 0], [1, 0, 0]])


def test_index_scatter_adds_repeated_indices():
    a = minidl.zeros(3, requires_grad=True)
    a[np.array([0, 0, 2])].sum().backward()
    np.testing.assert_array_equal(a.grad.data, [2, 0, 1])


def test_index_with_tensor_indices():
    a = minidl.arange(10.0).reshape(5, 2)
    idx = minidl.tensor([4, 0])
    np.testing.assert_array_equal(a[idx].data, [[8, 9], [0, 1]])


def test_bad_axes_and_shapes_raise_with_op_name():
    a = minidl.ones(2, 3)
    with pytest.raises(ValueError, match="sum: axis 2"):
        a.sum(axis=2)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape shape \(2, 3\) into \(4,\)"):
        a.reshape(4)
    with pytest.raises(ValueError, match="permute"):
        a.permute(0, 0)
    with pytest.raises(ValueError, match=r"concatenate: cannot join shapes"):
        minidl.concatenate([a, minidl.ones(3, 3)], axis=1)
    with pytest.raises(IndexError, match=r"index: .*\(2, 3\)"):
        a[5]
    with pytest.raises(ValueError, match="pad"):
        minidl.pad(a, ((1, 2, 3),))


def test_matmul_against_numpy_odd_sizes_float32():
    for m, k, n in [(1, 1, 1), (7, 13, 5), (65, 31, 97), (128, 256, 33)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = (minidl.tensor(a) @ minidl.tensor(b)).data
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * k)


@pytest.mark.parametrize("p", [0.5, 1.5, 3, -1, -2.5])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), ((0, 1), True)])
def test_general_p_norm_gradcheck_and_numpy_reference(p, dim, keepdim):
    x = np.random.default_rng(4).uniform(0.5, 2.0, (3, 4)) * np.array([1, -1, 1, -1])
    expected = (np.abs(x) ** p).sum(axis=dim, keepdims=keepdim) ** (1 / p)
    np.testing.assert_allclose(minidl.tensor(x).norm(p, dim, keepdim).numpy(), expected,
                               rtol=1e-13)
    assert gradcheck(lambda t: t.norm(p, dim, keepdim), [minidl.tensor(x, requires_grad=True)])


@pytest.mark.parametrize("p", [0.5, 3, 1.5, 0, -1, -2.5, float("-inf"), float("inf"), 1, 2])
def test_norm_with_zeros_matches_torch_values_and_gradients(p):
    """Zero elements and an all-zero row get gradient 0, as in PyTorch (the composite
    formulas gave NaN there)."""
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.5]])
    for dim in (None, 1):
        ours, theirs = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        a, b = ours.norm(p, dim), theirs.norm(p, dim)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-13)
        a.sum().backward()
        b.sum().backward()
        expected = np.zeros_like(x) if theirs.grad is None else theirs.grad.numpy()
        np.testing.assert_allclose(ours.grad.numpy(), expected, rtol=1e-13)
    assert minidl.ones(3).norm(dtype=np.float64).dtype == np.float64
