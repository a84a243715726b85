"""minidl.autograd.functional (jacobian, vjp, jvp) and autograd.backward against torch 2.13."""

import numpy as np
import pytest

import minidl
from minidl.autograd import functional as AF

torch = pytest.importorskip("torch")
TF = torch.autograd.functional
RNG = np.random.default_rng(0)
X, Y = RNG.uniform(0.5, 1.5, (3, 2)), RNG.uniform(0.5, 1.5, (3, 2))


def two_outputs(x, y):
    return (x * y).sin().sum(0), x.exp() * 2 + y


def one_output(x):
    return (x ** 3).sum(1)


def both(lib, *arrays):
    return tuple(lib.tensor(a) for a in arrays)


def assert_same(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, minidl.Tensor) and ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-14, atol=1e-15)
        return
    assert isinstance(ours, tuple) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_same(a, b)


@pytest.mark.parametrize("func, arrays, tuple_inputs", [
    (two_outputs, (X, Y), True), (one_output, (X,), False), (one_output, (X,), True),
    (lambda x: x.sum() * x.mean(), (X,), False)])
def test_jacobian_matches_torch_in_values_and_nesting(func, arrays, tuple_inputs):
    ins_m, ins_t = both(minidl, *arrays), both(torch, *arrays)
    if not tuple_inputs:
        ins_m, ins_t = ins_m[0], ins_t[0]
    assert_same(AF.jacobian(func, ins_m), TF.jacobian(func, ins_t))
    assert_same(AF.jacobian(func, ins_m, vectorize=True, strategy="forward-mode"),
                TF.jacobian(func, ins_t, vectorize=True, strategy="forward-mode"))


def test_vjp_and_jvp_match_torch():
    v_out = (RNG.standard_normal(2), RNG.standard_normal((3, 2)))
    v_in = (RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2)))
    assert_same(AF.vjp(two_outputs, both(minidl, X, Y), both(minidl, *v_out)),
                TF.vjp(two_outputs, both(torch, X, Y), both(torch, *v_out)))
    assert_same(AF.jvp(two_outputs, both(minidl, X, Y), both(minidl, *v_in)),
                TF.jvp(two_outputs, both(torch, X, Y), both(torch, *v_in)))
    assert_same(AF.vjp(lambda x: x.sum(), minidl.tensor(X)),
                TF.vjp(lambda x: x.sum(), torch.tensor(X)))
    scalar = np.array(0.7)
    assert_same(AF.jvp(lambda x: x * X.sum(), minidl.tensor(scalar)),
                TF.jvp(lambda x: x * X.sum(), torch.tensor(scalar)))


def test_independent_outputs_are_zeros_or_raise_in_strict_mode():
    def first_only(x, y):
        return x * 2

    jac = AF.jacobian(first_only, both(minidl, X, Y))
    assert not jac[1].numpy().any() and jac[0].numpy().any()
    with pytest.raises(RuntimeError, match="Output 0 of the user-provided function is "
                       "independent of input 1"):
        AF.jacobian(first_only, both(minidl, X, Y), strict=True)


def test_functional_errors():
    x = minidl.tensor(X)
    with pytest.raises(RuntimeError, match="v can only be None"):
        AF.vjp(lambda a: a * 2, x)
    with pytest.raises(RuntimeError, match="invalid size"):
        AF.vjp(lambda a: a * 2, x, minidl.ones(2))
    with pytest.raises(TypeError, match="Tensor or a tuple of Tensors"):
        AF.jacobian(lambda a: a, X)
    with pytest.raises(NotImplementedError, match="create_graph"):
        AF.jacobian(lambda a: a, x, create_graph=True)
    with pytest.raises(NotImplementedError, match="forward-mode"):
        AF.jacobian(lambda a: a, x, strategy="forward-mode")
    for name in ("hessian", "hvp", "vhp"):
        with pytest.raises(NotImplementedError, match="second derivatives"):
            getattr(AF, name)(lambda a: a.sum(), x)


def test_autograd_backward_of_several_roots_accumulates_as_torch():
    grads = []
    for lib in (minidl, torch):
        x = lib.tensor(X, requires_grad=True)
        h = x * 3
        a, b = (h ** 2).sum(), h.sin()
        lib.autograd.backward([a, b], [None, lib.ones(3, 2, dtype=lib.float64)])
        grads.append(x.grad.numpy())
        with pytest.warns(FutureWarning, match="grad_variables"):
            lib.autograd.backward(x.sum(), grad_variables=lib.tensor(2.0, dtype=lib.float64))
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[2], rtol=1e-14)
    np.testing.assert_allclose(grads[1], grads[3], rtol=1e-14)
