"""cosine_similarity, pairwise_distance and pdist against PyTorch 2.13: values and gradients
(float64 and float32), eps at tiny and zero norms, broadcasting, zero distances, errors and
the modules; float64 numerical gradient checks."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

P_VALUES = [2.0, 1.0, 0.0, 3.0, 0.5, float("inf"), -1.0]


def both(fn_ours, fn_torch, arrays, dtype=np.float64, seed=0):
    """(value, gradients) of minidl and of torch for the same inputs and upstream gradient."""
    import torch

    ours = [minidl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out, tout = fn_ours(*ours), fn_torch(*theirs)
    g = np.random.default_rng(seed).standard_normal(tout.shape).astype(tout.detach().numpy().dtype)
    out.backward(minidl.tensor(g))
    if tout.requires_grad:
        tout.backward(torch.tensor(g))
    grads = [t.grad.numpy() for t in ours]
    tgrads = [np.zeros(a.shape, dtype) if t.grad is None else t.grad.numpy()
              for a, t in zip(arrays, theirs)]
    return (out.numpy(), grads), (tout.detach().numpy(), tgrads)


def assert_same(ours, theirs, dtype=np.float64):
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-5,
                                                                      "atol": 1e-5}
    assert ours[0].shape == theirs[0].shape and ours[0].dtype == theirs[0].dtype
    np.testing.assert_allclose(ours[0], theirs[0], **tol)
    for a, b in zip(ours[1], theirs[1]):
        assert a.dtype == b.dtype
        assert not np.isnan(a).any()
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dim", [1, 0, -1])
def test_cosine_similarity_matches_torch(dim, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    ours, theirs = both(lambda a, b: F.cosine_similarity(a, b, dim),
                        lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim),
                        [x1, x2], dtype)
    assert_same(ours, theirs, dtype)


def test_cosine_similarity_zero_and_tiny_norms_have_torchs_finite_gradients():
    """Norms below eps are clamped, but the gradient flows through the unclamped norm
    (PyTorch clamps without recording): 1e7-sized, finite, equal to PyTorch's."""
    torch = pytest.importorskip("torch")
    x1 = np.array([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0],
                   [3e-9, -4e-9, 1e-9]])
    x2 = np.array([[1.0, 2.0, 3.0], [0.0, 1e-9, 0.0], [2.0, -1.0, 0.5], [0.0, 0.0, 0.0],
                   [1e-9, 2e-9, -5e-9]])
    ours, theirs = both(F.cosine_similarity, torch.nn.functional.cosine_similarity, [x1, x2])
    assert_same(ours, theirs)
    assert np.abs(ours[1][0]).max() > 1e6  # the zero vector's gradient x2 / (||x2|| eps)
    ours, theirs = both(lambda a, b: F.cosine_similarity(a, b, eps=1e-3),
                        lambda a, b: torch.nn.functional.cosine_similarity(a, b, eps=1e-3),
                        [x1 * 1e5, x2 * 1e5])
    assert_same(ours, theirs)


@pytest.mark.parametrize("shapes,dim", [(((2, 3), (3,)), -1), (((4, 1, 3), (1, 5, 3)), 2),
                                        (((3,), (3,)), 0), (((2, 3, 4), (2, 1, 4)), 1),
                                        (((0, 3), (1, 3)), 1)])
def test_cosine_similarity_broadcasts_as_torch(shapes, dim):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours, theirs = both(lambda a, b: F.cosine_similarity(a, b, dim),
                        lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim), arrays)
    assert_same(ours, theirs)


def test_cosine_similarity_mixed_dtypes_promote_and_grads_keep_each_dtype():
    torch = pytest.importorskip("torch")
    x1 = minidl.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    x2 = minidl.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    out = F.cosine_similarity(x1, x2)
    out.sum().backward()
    t1 = torch.ones(2, 3, requires_grad=True)
    t2 = torch.arange(6.0, dtype=torch.float64).reshape(2, 3).requires_grad_()
    tout = torch.nn.functional.cosine_similarity(t1, t2)
    tout.sum().backward()
    assert out.dtype == np.float64 and x1.grad.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x1.grad.numpy(), t1.grad.numpy(), rtol=1e-6)


def test_cosine_similarity_gradcheck_and_errors():
    rng = np.random.default_rng(3)
    x1 = minidl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x2 = minidl.tensor(rng.standard_normal((1, 4)), requires_grad=True)
    assert gradcheck(lambda a, b: F.cosine_similarity(a, b, dim=1), [x1, x2])
    with pytest.raises(RuntimeError, match="cosine_similarity: the shapes"):
        F.cosine_similarity(minidl.ones(2, 3), minidl.ones(2))
    with pytest.raises(RuntimeError, match="expected common dtype to be floating point"):
        F.cosine_similarity(minidl.ones(2, 3, dtype=minidl.int64),
                            minidl.ones(2, 3, dtype=minidl.int64))
    with pytest.raises(IndexError, match="cosine_similarity: dim 2 is out of range"):
        F.cosine_similarity(minidl.ones(2, 3), minidl.ones(2, 3), dim=2)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", P_VALUES)
def test_pairwise_distance_matches_torch(p, dtype, keepdim):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal((5, 4))
    x2 = rng.standard_normal((5, 4))
    x2[0] = x1[0]  # a zero difference: eps keeps the norm's gradient finite
    ours, theirs = both(
        lambda a, b: F.pairwise_distance(a, b, p, keepdim=keepdim),
        lambda a, b: torch.nn.functional.pairwise_distance(a, b, p, keepdim=keepdim),
        [x1, x2], dtype)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((2, 3), (3,)), ((4, 1, 3), (5, 3)),
                                    ((), ()), ((0, 3), (0, 3)), ((1, 1), (1, 1))])
def test_pairwise_distance_broadcasts_as_torch(shapes):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    arrays = [np.asarray(rng.standard_normal(s)) for s in shapes]
    ours, theirs = both(F.pairwise_distance, torch.nn.functional.pairwise_distance, arrays)
    assert_same(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [2.0, 1.0, 0.0, 3.0, 0.5, float("inf")])
def test_pdist_matches_torch_with_duplicate_rows(p, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3))
    x[3] = x[1]  # a zero distance: gradient 0, not NaN
    x[4, 0] = x[0, 0]  # a zero component of a nonzero difference
    ours, theirs = both(lambda a: F.pdist(a, p), lambda a: torch.nn.functional.pdist(a, p), [x],
                        dtype)
    assert_same(ours, theirs, dtype)


def test_pdist_small_inputs_gradcheck_and_errors():
    for n in (0, 1):
        assert F.pdist(minidl.ones(n, 3)).shape == (0,)
    x = minidl.tensor(np.random.default_rng(7).standard_normal((4, 3)), requires_grad=True)
    assert gradcheck(lambda a: F.pdist(a, 3.0), [x])
    with pytest.raises(RuntimeError, match="pdist only supports 2D tensors, got: 1D"):
        F.pdist(minidl.ones(3))
    with pytest.raises(RuntimeError, match="pdist only supports non-negative p values"):
        F.pdist(minidl.ones(3, 2), -1.0)
    with pytest.raises(RuntimeError, match="pdist only supports floating-point dtypes"):
        F.pdist(minidl.ones(3, 2, dtype=minidl.int64))


def test_pairwise_distance_gradcheck():
    rng = np.random.default_rng(8)
    x1 = minidl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x2 = minidl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda a, b: F.pairwise_distance(a, b, 3.0), [x1, x2])


def test_distance_modules_match_torch_defaults_reprs_and_values():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for name, args in [("CosineSimilarity", ()), ("CosineSimilarity", (0, 1e-3)),
                       ("PairwiseDistance", ()), ("PairwiseDistance", (1.0, 1e-3, True))]:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        assert repr(ours) == repr(theirs)
        for attr in ("dim", "eps", "norm", "keepdim"):
            assert getattr(ours, attr, None) == getattr(theirs, attr, None)
        np.testing.assert_allclose(ours(minidl.tensor(x1), minidl.tensor(x2)).numpy(),
                                   theirs(torch.tensor(x1), torch.tensor(x2)).numpy(),
                                   rtol=1e-12)
