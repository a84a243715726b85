"""unfold/fold (im2col and col2im) and lp_pool1d/2d against PyTorch 2.13: values and
gradients in float64 and float32, geometry (kernel, dilation, padding, stride), unbatched
inputs, errors, module reprs; float64 numerical gradient checks of both new ops."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F


def compare(fn_ours, fn_torch, x, dtype=np.float64, seed=0):
    import torch

    mx = minidl.tensor(x.astype(dtype), requires_grad=True)
    tx = torch.tensor(x.astype(dtype), requires_grad=True)
    out, tout = fn_ours(mx), fn_torch(tx)
    g = np.random.default_rng(seed).standard_normal(tout.shape).astype(dtype)
    out.backward(minidl.tensor(g))
    tout.backward(torch.tensor(g))
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5,
                                                                      "atol": 2e-5}
    assert out.shape == tuple(tout.shape) and out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **tol)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **tol)


GEOMETRIES = [
    dict(kernel_size=2),
    dict(kernel_size=(2, 3), dilation=(1, 2), padding=(1, 0), stride=(2, 1)),
    dict(kernel_size=3, dilation=2, padding=2, stride=3),
    dict(kernel_size=1),
    dict(kernel_size=(5, 6)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (3, 5, 6), (0, 2, 5, 6), (1, 1, 5, 6)])
def test_unfold_matches_torch(shape, geometry, dtype):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal(shape)
    compare(lambda a: F.unfold(a, **geometry),
            lambda a: torch.nn.functional.unfold(a, **geometry), x, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("batch", [(2,), (), (0,)])
def test_fold_matches_torch_and_inverts_unfold_counts(batch, geometry, dtype):
    torch = pytest.importorskip("torch")
    size = (5, 6)
    blocks = torch.nn.functional.unfold(torch.zeros((1, 2) + size), **geometry).shape
    x = np.random.default_rng(2).standard_normal(batch + tuple(blocks[1:]))
    compare(lambda a: F.fold(a, size, **geometry),
            lambda a: torch.nn.functional.fold(a, size, **geometry), x, dtype)
    # fold(unfold(ones)) counts how many blocks cover each pixel.
    ones = torch.ones((1, 2) + size)
    counts = torch.nn.functional.fold(torch.nn.functional.unfold(ones, **geometry), size,
                                      **geometry)
    ours = F.fold(F.unfold(minidl.ones(1, 2, *size), **geometry), size, **geometry)
    np.testing.assert_array_equal(ours.numpy(), counts.numpy())


def test_unfold_and_fold_gradcheck():
    rng = np.random.default_rng(3)
    geometry = dict(kernel_size=(2, 3), dilation=(2, 1), padding=1, stride=(1, 2))
    x = minidl.tensor(rng.standard_normal((2, 2, 4, 5)), requires_grad=True)
    assert gradcheck(lambda a: F.unfold(a, **geometry), [x])
    cols = F.unfold(minidl.zeros(2, 2, 4, 5), **geometry)
    c = minidl.tensor(rng.standard_normal(tuple(cols.shape)), requires_grad=True)
    assert gradcheck(lambda a: F.fold(a, (4, 5), **geometry), [c])


def test_unfold_and_fold_errors():
    with pytest.raises(RuntimeError, match="calculated shape of the array of sliding blocks as "
                                           r"\(0, 0\), but its components must be at least one"):
        F.unfold(minidl.ones(1, 2, 3, 3), 4)
    with pytest.raises(RuntimeError, match="kernel size should be greater than zero"):
        F.unfold(minidl.ones(1, 2, 3, 3), 0)
    with pytest.raises(RuntimeError, match="stride should be greater than zero"):
        F.unfold(minidl.ones(1, 2, 3, 3), 2, stride=0)
    with pytest.raises(RuntimeError, match="padding should be non-negative"):
        F.unfold(minidl.ones(1, 2, 3, 3), 2, padding=-1)
    with pytest.raises(RuntimeError, match="unfold: expected a 3-D"):
        F.unfold(minidl.ones(2, 3), 2)
    with pytest.raises(TypeError, match="unfold: expected a float32 or float64 input"):
        F.unfold(minidl.ones(1, 2, 3, 3, dtype=minidl.int64), 2)
    with pytest.raises(RuntimeError, match="divisible by the product of kernel_size, but got "
                                           r"input.size\(1\)=7"):
        F.fold(minidl.ones(1, 7, 4), (3, 3), 2)
    with pytest.raises(RuntimeError, match=r"blocks 2 \* 2 = 4, but got input.size\(2\)=5"):
        F.fold(minidl.ones(1, 8, 5), (3, 3), 2)
    with pytest.raises(RuntimeError, match="Expected 2D or 3D"):
        F.fold(minidl.ones(8), (3, 3), 2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2, 1.5, 1, 3, float("inf"), -float("inf")])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=(2, 3), stride=1),
                                    dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_lp_pool2d_matches_torch(norm_type, kwargs, dtype):
    torch = pytest.importorskip("torch")
    # Positive inputs: x^p of a negative x is NaN for fractional p, in both libraries.
    x = np.random.default_rng(4).uniform(0.2, 2.0, (2, 3, 5, 7))
    compare(lambda a: F.lp_pool2d(a, norm_type, **kwargs),
            lambda a: torch.nn.functional.lp_pool2d(a, norm_type, **kwargs), x, dtype)
    compare(lambda a: F.lp_pool2d(a[0], norm_type, **kwargs),
            lambda a: torch.nn.functional.lp_pool2d(a[0], norm_type, **kwargs), x, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2, 1.5, 3, float("inf")])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=1),
                                    dict(kernel_size=2, stride=3, ceil_mode=True)])
def test_lp_pool1d_matches_torch(norm_type, kwargs, dtype):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).uniform(0.2, 2.0, (2, 3, 8))
    compare(lambda a: F.lp_pool1d(a, norm_type, **kwargs),
            lambda a: torch.nn.functional.lp_pool1d(a, norm_type, **kwargs), x, dtype)
    compare(lambda a: F.lp_pool1d(a[0], norm_type, **kwargs),
            lambda a: torch.nn.functional.lp_pool1d(a[0], norm_type, **kwargs), x, dtype)


def test_lp_pool_integer_power_of_negative_inputs_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 4))
    compare(lambda a: F.lp_pool2d(a, 2, 2), lambda a: torch.nn.functional.lp_pool2d(a, 2, 2), x)


def test_lp_pool_gradcheck_and_modules():
    torch = pytest.importorskip("torch")
    x = minidl.tensor(np.random.default_rng(7).uniform(0.5, 2.0, (1, 2, 4, 4)),
                      requires_grad=True)
    assert gradcheck(lambda a: F.lp_pool2d(a, 2.5, 2, 1), [x])
    for name, args in [("LPPool2d", (2, 3)), ("LPPool2d", (1.5, (2, 3), 1, True)),
                       ("LPPool1d", (2, 3)), ("LPPool1d", (3.0, 2, 1, True)),
                       ("Unfold", (2,)), ("Unfold", ((2, 3), 2, 1, (1, 2))),
                       ("Fold", ((4, 5), 2)), ("Fold", (4, 2, 1, 1, 2))]:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        assert repr(ours) == repr(theirs)
    y = np.random.default_rng(8).uniform(0.5, 2.0, (1, 2, 4, 4))
    np.testing.assert_allclose(nn.LPPool2d(2, 2)(minidl.tensor(y)).numpy(),
                               torch.nn.LPPool2d(2, 2)(torch.tensor(y)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(nn.Unfold(2)(minidl.tensor(y)).numpy(),
                               torch.nn.Unfold(2)(torch.tensor(y)).numpy(), rtol=1e-15)
