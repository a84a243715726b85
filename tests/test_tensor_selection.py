"""Selection, rearrangement and test functions PyTorch code reaches for (index_select, narrow,
roll, tril/triu, diag, movedim, masked_select, repeat_interleave, nan_to_num, isinf, logical_*,
count_nonzero, new_*, as_tensor, hstack/vstack): values against NumPy, gradients by gradcheck
in float64, both against PyTorch where it is installed, and bad arguments raising."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.autograd import gradcheck

RNG = np.random.default_rng(21)
X = RNG.standard_normal((3, 4, 5))
MASK = RNG.standard_normal((3, 4, 5)) > 0

# name: (minidl/torch call, NumPy reference)
CASES = {
    "index_select": (lambda L, x: x.index_select(1, L.tensor([2, 0, 2])),
                     lambda x: np.take(x, [2, 0, 2], axis=1)),
    "select": (lambda L, x: x.select(2, -1), lambda x: x[:, :, -1]),
    "narrow": (lambda L, x: x.narrow(1, -3, 2), lambda x: x[:, 1:3]),
    "roll": (lambda L, x: x.roll((1, -2), (0, 2)), lambda x: np.roll(x, (1, -2), (0, 2))),
    "roll_flat": (lambda L, x: x.roll(3), lambda x: np.roll(x, 3)),
    "tril": (lambda L, x: x.tril(1), lambda x: np.tril(x, 1)),
    "triu": (lambda L, x: L.triu(x, -1), lambda x: np.triu(x, -1)),
    "diag_of_matrix": (lambda L, x: x[0].diag(1), lambda x: np.diag(x[0], 1)),
    "diag_matrix": (lambda L, x: x[0, 0].diag(-1), lambda x: np.diag(x[0, 0], -1)),
    "movedim": (lambda L, x: L.movedim(x, (0, 1), (2, 0)),
                lambda x: np.moveaxis(x, (0, 1), (2, 0))),
    "swapaxes": (lambda L, x: x.swapaxes(0, 2), lambda x: np.swapaxes(x, 0, 2)),
    "broadcast_to": (lambda L, x: x[:, :1].broadcast_to((2, 3, 4, 5)),
                     lambda x: np.broadcast_to(x[:, :1], (2, 3, 4, 5))),
    "masked_select": (lambda L, x: x.masked_select(L.tensor(MASK[0, 0])),
                      lambda x: x[np.broadcast_to(MASK[0, 0], x.shape)]),
    "repeat_interleave": (lambda L, x: x.repeat_interleave(L.tensor([1, 0, 2]), dim=0),
                          lambda x: np.repeat(x, [1, 0, 2], axis=0)),
    "repeat_interleave_flat": (lambda L, x: L.repeat_interleave(x[0], 2),
                               lambda x: np.repeat(x[0].reshape(-1), 2)),
    "clamp_min_max": (lambda L, x: L.clamp_max(x.clamp_min(-0.5), 0.5),
                      lambda x: np.clip(x, -0.5, 0.5)),
    "hstack": (lambda L, x: L.hstack([x, x[:, :2]]), lambda x: np.hstack([x, x[:, :2]])),
    "vstack": (lambda L, x: L.vstack([x[0, 0], x[1, 1]]), lambda x: np.vstack([x[0, 0], x[1, 1]])),
    "concat": (lambda L, x: L.concat([x, x], dim=2), lambda x: np.concatenate([x, x], 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_gradients_and_torch(name):
    call, reference = CASES[name]
    got = call(minidl, minidl.tensor(X))
    np.testing.assert_array_equal(got.numpy(), reference(X))
    assert gradcheck(lambda x: call(minidl, x), [minidl.tensor(X, requires_grad=True)])
    torch = pytest.importorskip("torch")
    x, tx = minidl.tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    weights = RNG.standard_normal(got.shape)
    (call(minidl, x) * minidl.tensor(weights)).sum().backward()
    (call(torch, tx) * torch.tensor(weights)).sum().backward()
    np.testing.assert_array_equal(call(torch, torch.tensor(X)).numpy(), got.numpy())
    # Within rounding: a broadcast's gradient sums in another order than PyTorch's.
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-14, atol=1e-14)


def test_unbind_and_nan_to_num_gradients():
    x = minidl.tensor(X, requires_grad=True)
    parts = x.unbind(1)
    assert len(parts) == 4 and all(tuple(p.shape) == (3, 5) for p in parts)
    (parts[1] * 2 + parts[3]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, :, 0], [0.0, 2.0, 0.0, 1.0])
    v = minidl.tensor([np.nan, np.inf, -np.inf, 2.0], requires_grad=True)
    out = v.nan_to_num(nan=1.5, neginf=-9.0)
    np.testing.assert_array_equal(out.numpy(), [1.5, np.finfo(np.float32).max, -9.0, 2.0])
    out.sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [0.0, 0.0, 0.0, 1.0])


def test_boolean_tests_counts_and_new_tensors():
    x = minidl.tensor([[np.inf, -np.inf, 0.0], [np.nan, 1.0, 0.0]])
    assert x.isinf().tolist() == [[True, True, False], [False, False, False]]
    assert minidl.isposinf(x).tolist()[0] == [True, False, False]
    assert x.isneginf().tolist()[0] == [False, True, False]
    assert x.isclose(x + 1e-9).tolist()[1] == [False, True, True]
    a, b = x > 0, x < 1
    assert a.logical_and(b).tolist() == (a.numpy() & b.numpy()).tolist()
    assert minidl.logical_or(a, b).tolist() == (a.numpy() | b.numpy()).tolist()
    assert a.logical_xor(b).tolist() == (a.numpy() ^ b.numpy()).tolist()
    assert a.logical_not().tolist() == (~a.numpy()).tolist()
    assert x.count_nonzero().item() == 4 and x.count_nonzero(dim=1).tolist() == [2, 2]
    d = minidl.zeros(2, dtype=minidl.float64)
    assert d.new_zeros(2, 3).dtype == minidl.float64 and tuple(d.new_ones((4,)).shape) == (4,)
    assert d.new_full((2,), 7).tolist() == [7.0, 7.0] and d.new_tensor([1, 2]).dtype == d.dtype
    shared = np.arange(3.0)
    t = minidl.as_tensor(shared)
    shared[0] = 9.0  # as_tensor shares a contiguous array of the same dtype, as PyTorch's
    assert t[0].item() == 9.0 and minidl.as_tensor(t) is t
    assert minidl.as_tensor([1.5, 2.0]).dtype == minidl.float32


@pytest.mark.parametrize("call, error, match", [
    (lambda x: x.index_select(0, minidl.tensor([[0]])), ValueError, "1-d integer tensor"),
    (lambda x: x.index_select(0, minidl.tensor([0.5])), ValueError, "1-d integer tensor"),
    (lambda x: x.index_select(0, minidl.tensor([3])), IndexError, "index"),
    (lambda x: x.narrow(1, 3, 2), IndexError, "exceed dim 1 of size 4"),
    (lambda x: x.select(0, 3), IndexError, "out of range"),
    (lambda x: x.roll((1, 2), 0), ValueError, "2 shifts for 1 dims"),
    (lambda x: x[0, 0].tril(), ValueError, "at least 2 dims"),
    (lambda x: x.diag(), ValueError, "1-d or 2-d"),
    (lambda x: x.movedim((0, 0), (1, 2)), ValueError, "distinct dims"),
    (lambda x: x.masked_select(minidl.tensor([1, 0, 1, 0, 1])), TypeError, "boolean mask"),
    (lambda x: x.repeat_interleave(minidl.tensor([1, 2]), dim=0), ValueError, "one per entry"),
])
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call(minidl.tensor(X))


@pytest.mark.parametrize("name", ["scatter", "scatter_add"])
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_values_gradients_and_torch(name, dim):
    """scatter / scatter_add against a loop over the index (the definition), gradcheck, and
    PyTorch's values and gradients. scatter writes distinct positions (its gradient, like
    PyTorch's, assumes each is written once); scatter_add's index repeats one."""
    a = RNG.standard_normal((3, 5))
    index = (np.array([[0, 1, 2, 0], [2, 0, 1, 1]]) if dim == 0
             else np.array([[1, 4, 0], [3, 0, 2]]))
    if name == "scatter_add":
        index[1, 1] = index[0, 1] if dim == 0 else index[1, 0]
    src = RNG.standard_normal(index.shape)
    want = a.copy()
    for i, j in np.ndindex(*index.shape):
        at = (index[i, j], j) if dim == 0 else (i, index[i, j])
        want[at] = want[at] + src[i, j] if name == "scatter_add" else src[i, j]
    call = getattr(minidl.Tensor, name)
    got = call(minidl.tensor(a), dim, minidl.tensor(index), minidl.tensor(src))
    np.testing.assert_array_equal(got.numpy(), want)
    assert gradcheck(lambda x, s: call(x, dim, minidl.tensor(index), s),
                     [minidl.tensor(a, requires_grad=True), minidl.tensor(src, requires_grad=True)])
    torch = pytest.importorskip("torch")
    weights = RNG.standard_normal(a.shape)
    results = []
    for lib in (minidl, torch):
        x, s = lib.tensor(a, requires_grad=True), lib.tensor(src, requires_grad=True)
        y = getattr(x, name)(dim, lib.tensor(index), s)
        (y * lib.tensor(weights)).sum().backward()
        results.append((y.detach().numpy(), x.grad.numpy(), s.grad.numpy()))
    for mine, theirs in zip(*results):
        np.testing.assert_allclose(mine, theirs, rtol=1e-14, atol=1e-14)


def test_scatter_value_in_place_and_bad_arguments():
    x = minidl.zeros(2, 3)
    x.scatter_(1, minidl.tensor([[2], [0]]), value=5.0)
    assert x.tolist() == [[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]
    counts = minidl.zeros(3, dtype=minidl.int64).scatter_add(0, minidl.tensor([0, 0, 1]),
                                                             minidl.tensor([1, 2, 3]))
    assert counts.tolist() == [3, 3, 0]
    with pytest.raises(IndexError, match=r"index values must be in \[0, 3\)"):
        minidl.zeros(3).scatter(0, minidl.tensor([3]), minidl.tensor([1.0]))
    with pytest.raises(ValueError, match="integer tensor with 1 dims"):
        minidl.zeros(3).scatter(0, minidl.tensor([[0]]), minidl.tensor([1.0]))
    with pytest.raises(RuntimeError, match="self.dtype to be equal to src.dtype"):
        minidl.zeros(3).scatter(0, minidl.tensor([0]), minidl.tensor([1]))
    with pytest.raises(ValueError, match="larger than src"):
        minidl.zeros(3).scatter(0, minidl.tensor([0, 1]), minidl.tensor([1.0]))
