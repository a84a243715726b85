"""Tensor construction, dtypes, factories, seeding and bad input."""

import numpy as np
import pytest

import minidl


def test_python_floats_default_to_float32_and_ints_to_int64():
    assert minidl.tensor([1.0, 2.0]).dtype == np.float32
    assert minidl.tensor([1, 2]).dtype == np.int64
    assert minidl.tensor(np.zeros(2, np.float64)).dtype == np.float64
    assert minidl.tensor([1.0], dtype=np.float64).dtype == np.float64


def test_tensor_copies_but_from_numpy_shares():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = minidl.tensor(a)
    u = minidl.from_numpy(a)
    a[0, 0] = 100
    assert t.data[0, 0] == 0
    assert u.data[0, 0] == 100
    assert u.numpy() is a


def test_from_numpy_makes_non_contiguous_contiguous():
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T
    t = minidl.from_numpy(a)
    assert t.data.flags.c_contiguous
    np.testing.assert_array_equal(t.data, a)


def test_every_tensor_is_c_contiguous_even_0d():
    x = minidl.arange(12.0).reshape(3, 4)
    for t in (x.T, x[:, 1], x[1, 2], x.permute(1, 0), x.sum(), x[None]):
        assert t.data.flags.c_contiguous
    assert x[1, 2].shape == ()
    assert x.sum().shape == ()


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.object_, "U3"])
def test_unsupported_dtypes_are_rejected(dtype):
    with pytest.raises(TypeError, match="unsupported dtype"):
        minidl.tensor(np.zeros(2, dtype=dtype))


def test_only_float_tensors_require_grad():
    with pytest.raises(TypeError, match="float32/float64"):
        minidl.tensor([1, 2], requires_grad=True)


def test_array_protocol_and_scalars():
    t = minidl.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert np.asarray(t) is t.data
    assert t.shape == (2, 2) and t.ndim == 2 and t.size() == (2, 2) and t.size(1) == 2 and t.numel() == 4 and len(t) == 2
    assert t.sum().item() == 10.0
    assert isinstance(t.sum().item(), float)
    with pytest.raises(ValueError, match="4 elements"):
        t.item()
    assert np.add(np.ones(2), minidl.tensor([1.0, 2.0])).data.tolist() == [2.0, 3.0]


def test_factories_shapes_dtypes_and_grad():
    assert minidl.zeros(2, 3).shape == (2, 3)
    assert minidl.zeros((2, 3)).dtype == np.float32
    assert minidl.ones(4, dtype=np.float64).dtype == np.float64
    assert minidl.full((2,), 7.0).data.tolist() == [7.0, 7.0]
    assert minidl.arange(5).dtype == np.int64
    assert minidl.arange(0, 1, 0.25).data.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert minidl.empty(3).shape == (3,)
    z = minidl.zeros_like(minidl.ones(2, dtype=np.float64), requires_grad=True)
    assert z.dtype == np.float64 and z.requires_grad
    assert minidl.eye(3).data.trace() == 3
    assert minidl.linspace(0, 1, 5).shape == (5,)


def test_manual_seed_makes_random_factories_reproducible():
    minidl.manual_seed(123)
    a = minidl.randn(5).data.copy()
    b = minidl.rand(5).data.copy()
    minidl.manual_seed(123)
    np.testing.assert_array_equal(minidl.randn(5).data, a)
    np.testing.assert_array_equal(minidl.rand(5).data, b)
    assert minidl.randn(3, dtype=np.float64).dtype == np.float64
    r = minidl.rand(1000).data
    assert r.min() >= 0 and r.max() < 1


def test_rng_state_round_trip():
    minidl.manual_seed(7)
    state = minidl.get_rng_state()
    a = minidl.randn(4).data.copy()
    minidl.set_rng_state(state)
    np.testing.assert_array_equal(minidl.randn(4).data, a)
    with pytest.raises(ValueError):
        minidl.set_rng_state({"bit_generator": "MT19937"})


def test_comparisons_return_bool_tensors_without_grad():
    a = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for c in (a > 1.5, a >= 2, a < 2, a <= 2, a == 2, a != 2):
        assert c.dtype == np.bool_ and not c.requires_grad
    assert (a > 1.5).data.tolist() == [False, True, True]


def test_broadcast_failure_names_op_and_shapes():
    a = minidl.ones(2, 3)
    b = minidl.ones(4)
    with pytest.raises(RuntimeError, match=r"add: The size of tensor a \(3\) must match the "
                       r"size of tensor b \(4\) at non-singleton dimension 1 \(shapes "
                       r"\(2, 3\) and \(4,\)\)"):
        a + b
    with pytest.raises(RuntimeError, match=r"mul: .*shapes \(2, 3\) and \(4,\)"):
        a * b


def test_matmul_shape_mismatch_names_op():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        minidl.ones(2, 3) @ minidl.ones(4, 5)
    with pytest.raises(RuntimeError, match="matmul: expected both operands to have the same"):
        minidl.ones(2, 3) @ minidl.tensor(np.ones((3, 2), dtype=bool))


def test_integer_matmul_uses_numpy_semantics():
    a = minidl.tensor([[1, 2], [3, 4]])
    np.testing.assert_array_equal((a @ a).data, np.array([[7, 10], [15, 22]]))


def test_num_threads_and_config():
    n = minidl.get_num_threads()
    assert n >= 1
    minidl.set_num_threads(1)
    assert minidl.get_num_threads() == 1
    minidl.set_num_threads(n)
    with pytest.raises(ValueError):
        minidl.set_num_threads(0)
    cfg = minidl.config()
    assert set(cfg) >= {"version", "thread_pool", "num_threads", "compiler", "isa", "malloc_tuned"}
    assert cfg["version"] == minidl.__version__


def test_default_threads_respects_omp_num_threads(monkeypatch):
    from minidl.threads import default_num_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= default_num_threads() <= (minidl.threads.os.cpu_count() or 1)


def test_repr_mentions_grad_fn_and_dtype():
    a = minidl.tensor([1.0], dtype=np.float64, requires_grad=True)
    assert "requires_grad=True" in repr(a) and "float64" in repr(a)
    assert "grad_fn=<MulBackward0>" in repr(a * 2)


def test_setitem_outside_graphs_only():
    a = minidl.zeros(2, 3)
    a[0, 1] = 5.0
    a[1] = minidl.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(a.data, [[0, 5, 0], [1, 2, 3]])
    p = minidl.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        p[0] = 1.0
    with minidl.no_grad():
        p[0] = 1.0
    assert p.data[0] == 1.0
    with pytest.raises(RuntimeError, match="graph"):
        (p * 2)[0] = 3.0


def test_empty_reductions_follow_pytorch():
    """mean/var/std of nothing are NaN (var/std warn about degrees of freedom, as PyTorch);
    max over a non-empty dim of an empty tensor is empty; over an empty dim it raises."""
    assert np.isnan(minidl.zeros(0).mean().item())
    np.testing.assert_array_equal(minidl.zeros(0, 3).mean(0).numpy(), np.full(3, np.nan, np.float32))
    assert minidl.zeros(0, 3).mean(1).shape == (0,)
    with pytest.warns(UserWarning, match=r"var\(\): degrees of freedom is <= 0"):
        assert np.isnan(minidl.zeros(0).var().item())
    with pytest.warns(UserWarning, match=r"std\(\): degrees of freedom is <= 0"):
        assert np.isnan(minidl.tensor([1.0]).std().item())
    with pytest.warns(UserWarning, match="degrees of freedom"):
        assert minidl.tensor([1.0, 2.0]).var(correction=2).item() == np.inf
    values, indices = minidl.zeros(0, 3).max(1)
    assert values.shape == (0,) and indices.shape == (0,) and indices.dtype == np.int64
    for empty in (lambda: minidl.zeros(0, 3).max(0), lambda: minidl.zeros(0).max()):
        with pytest.raises(ValueError, match="max: cannot reduce over an empty dimension"):
            empty()
    x = minidl.zeros(0, 3, requires_grad=True)
    x.mean().backward()
    assert x.grad.shape == (0, 3)


def test_backward_accepts_a_nan_gradient():
    """PyTorch propagates a NaN or infinite incoming gradient; it is not an error."""
    y = minidl.tensor([1.0, 2.0], requires_grad=True)
    (y * 2).backward(minidl.tensor([float("nan"), float("inf")]))
    assert np.isnan(y.grad.numpy()[0]) and y.grad.numpy()[1] == np.inf


def test_ieee_special_values_are_silent_as_in_pytorch():
    """1/0, 0/0, log(-1), exp overflow and inf - inf give inf/NaN without a warning (NumPy
    would warn from inside minidl); the user's own NumPy code still warns."""
    from childproc import run_child

    out, _ = run_child(
        """
        import warnings
        import numpy as np
        import minidl
        with warnings.catch_warnings(record=True) as caught:
            x = minidl.tensor([0.0, 1.0, -1.0], requires_grad=True)
            y = (x / 0).sum() + x.log().sum() + (x * 1e30).exp().sum() + (x / 0 - x / 0).sum()
            y.backward()
            print(y.item(), x.grad.numpy().tolist(), len(caught))
            np.float32(1) / np.float32(0)
            print([str(c.message) for c in caught])
        """
    )
    first, second = out.strip().splitlines()[:2]
    assert first.startswith("nan") and first.endswith(" 0")
    assert second == "['divide by zero encountered in scalar divide']"
