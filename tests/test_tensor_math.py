"""minidl.tensor_math: PyTorch's further tensor functions against a NumPy reference, float64
gradcheck, and PyTorch 2.13 itself (values, dtypes, shapes, gradients, errors) when it is
installed."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl.autograd import gradcheck

rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def spread(*shape):
    """Distinct values at least 0.1 apart (no ties for order statistics, no kinks)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + 0.05 + rng.uniform(0, 0.01, n)).reshape(shape) - n * 0.05


WITH_ZEROS = np.array([[1.5, 0.0, 2.0, -0.5, 0.0, 3.0], [0.7, -1.2, 0.9, 1.1, -0.4, 2.0],
                       [0.0, 1.3, -2.0, 0.5, 1.0, 0.8]])

# (id, fn(lib, *tensors), input arrays): fn is written once against the torch-shaped API, so
# the same call runs on minidl and on torch.
CASES = [
    ("cumprod", lambda m, x: m.cumprod(x, 1), [randn(3, 5)]),
    ("cumprod_zeros", lambda m, x: x.cumprod(dim=-1), [WITH_ZEROS]),
    ("cumprod_zeros_dim0", lambda m, x: m.cumprod(x, 0), [WITH_ZEROS.T.copy()]),
    ("cumprod_int", lambda m, x: m.cumprod(x, 0), [np.array([1, 2, 3, -2], np.int32)]),
    ("cumprod_bool", lambda m, x: m.cumprod(x, 0), [np.array([True, True, False])]),
    ("cumprod_dtype", lambda m, x: m.cumprod(x, 0, dtype=m.float64),
     [np.array([1.5, 2, 3], np.float32)]),
    ("cumprod_scalar", lambda m, x: m.cumprod(x, 0), [np.array(2.5)]),
    ("cumprod_empty", lambda m, x: m.cumprod(x, 1), [np.zeros((2, 0))]),
    ("logcumsumexp", lambda m, x: m.logcumsumexp(x, 0), [randn(5, 3) * 30]),
    ("logcumsumexp_neg_dim", lambda m, x: x.logcumsumexp(-1), [randn(2, 4)]),
    ("cummax", lambda m, x: m.cummax(x, 1), [spread(3, 4)]),
    ("cummin", lambda m, x: x.cummin(0), [spread(4, 3)]),
    ("cummax_ties_nan", lambda m, x: m.cummax(x, 0),
     [np.array([1.0, 3, 3, 2, np.nan, 5, np.nan, 4])]),
    ("cummin_int", lambda m, x: m.cummin(x, 0), [np.array([3, 1, 1, 2, 0])]),
    ("diff", lambda m, x: m.diff(x), [randn(3, 5)]),
    ("diff_n2_dim0", lambda m, x: x.diff(n=2, dim=0), [randn(5, 3)]),
    ("diff_prepend_append", lambda m, x, p, a: m.diff(x, 1, 1, p, a),
     [randn(2, 3), randn(2, 1), randn(2, 2)]),
    ("diff_bool", lambda m, x: m.diff(x), [np.array([True, False, False, True])]),
    ("diff_n_too_large", lambda m, x: m.diff(x, n=5), [np.arange(3)]),
    ("trace", lambda m, x: m.trace(x), [randn(3, 4)]),
    ("trace_int", lambda m, x: x.trace(), [np.arange(6, dtype=np.int32).reshape(2, 3)]),
    ("outer", lambda m, a, b: m.outer(a, b), [randn(3), randn(4)]),
    ("outer_int_float", lambda m, a, b: a.outer(b), [np.arange(3), randn(2, dtype=np.float32)]),
    ("lerp_scalar", lambda m, a, b: m.lerp(a, b, 0.3), [randn(4), randn(4)]),
    ("lerp_scalar_high", lambda m, a, b: a.lerp(b, 0.75), [randn(4), randn(4)]),
    ("lerp_tensor", lambda m, a, b, w: m.lerp(a, b, w), [randn(2, 3), randn(3), randn(2, 3)]),
    ("addmm", lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=2.0),
     [randn(3), randn(2, 4), randn(4, 3)]),
    ("addmm_beta0_ignores_nan", lambda m, c, a, b: m.addmm(c, a, b, beta=0),
     [np.array([np.nan, 1.0, np.inf]), randn(2, 4), randn(4, 3)]),
    ("addmm_defaults", lambda m, c, a, b: c.addmm(a, b), [randn(2, 3), randn(2, 4), randn(4, 3)]),
    ("addmm_int", lambda m, c, a, b: m.addmm(c, a, b, alpha=2),
     [np.arange(3), np.arange(8).reshape(2, 4), np.arange(12).reshape(4, 3)]),
    ("baddbmm", lambda m, c, a, b: m.baddbmm(c, a, b, beta=2.0, alpha=-1.0),
     [randn(1, 2, 3), randn(4, 2, 5), randn(4, 5, 3)]),
    ("addcmul", lambda m, x, a, b: m.addcmul(x, a, b, value=0.5), [randn(3), randn(2, 3), randn(3)]),
    ("addcmul_int", lambda m, x, a, b: x.addcmul(a, b, value=2),
     [np.arange(3), np.arange(3), np.arange(3)]),
    ("addcdiv", lambda m, x, a, b: m.addcdiv(x, a, b, value=-2),
     [randn(3), randn(3), randn(3) + 3]),
    ("take_along_dim", lambda m, x, i: m.take_along_dim(x, i, 1),
     [randn(3, 4), np.array([[0, 3], [1, 1], [2, 0]])]),
    ("take_along_dim_broadcast", lambda m, x, i: x.take_along_dim(i, dim=0),
     [randn(3, 4), np.array([[2], [0]])]),
    ("take_along_dim_flat", lambda m, x, i: m.take_along_dim(x, i),
     [randn(3, 4), np.array([11, 0, 5])]),
    ("tensor_split_sections", lambda m, x: m.tensor_split(x, 3, dim=1), [randn(2, 7)]),
    ("tensor_split_indices", lambda m, x: x.tensor_split([1, 5, 2, 9]), [randn(7, 2)]),
    ("tensor_split_neg_dim", lambda m, x: m.tensor_split(x, (1, -2), -1), [randn(2, 6)]),
    ("unflatten", lambda m, x: m.unflatten(x, 1, (2, -1)), [randn(3, 6)]),
    ("atleast_3d", lambda m, a, b, c: m.atleast_3d(a, b, c),
     [np.array(1.0), randn(3), randn(2, 3)]),
    ("atleast_2d", lambda m, a: m.atleast_2d(a), [randn(3)]),
    ("atleast_1d_list", lambda m, a, b: m.atleast_1d([a, b]), [np.array(2.0), randn(2, 2)]),
    ("column_stack", lambda m, a, b, c: m.column_stack([a, b, c]),
     [randn(3), randn(3, 2), randn(3)]),
    ("dstack", lambda m, a, b: m.dstack([a, b]), [randn(2, 3), randn(2, 3, 2)]),
    ("rot90", lambda m, x: m.rot90(x), [randn(2, 3)]),
    ("rot90_k3_dims", lambda m, x: x.rot90(3, [2, 0]), [randn(2, 3, 4)]),
    ("rot90_k_neg", lambda m, x: m.rot90(x, -2, (0, 1)), [randn(2, 3)]),
    ("rot90_k4", lambda m, x: m.rot90(x, 4), [randn(2, 3)]),
    ("meshgrid_ij", lambda m, a, b: m.meshgrid(a, b, indexing="ij"), [randn(3), randn(2)]),
    ("meshgrid_xy", lambda m, a, b, c: m.meshgrid([a, b, c], indexing="xy"),
     [randn(3), randn(2), np.array(1.5)]),
    ("atan2", lambda m, a, b: m.atan2(a, b), [randn(3, 4), randn(4)]),
    ("arctan2_int", lambda m, a, b: a.arctan2(b), [np.arange(-2, 2), np.array([1, -1, 2, 0])]),
    ("hypot", lambda m, a, b: m.hypot(a, b), [randn(3), randn(2, 3)]),
    ("fmod", lambda m, a, b: m.fmod(a, b), [randn(5) * 4, np.array([1.3, -1.7, 2.1, -0.9, 1.1])]),
    ("fmod_scalar", lambda m, a: a.fmod(-1.5), [randn(5) * 4]),
    ("fmod_int", lambda m, a, b: m.fmod(a, b), [np.array([-7, 7, -3, 5]), np.array([2, -2, 5, 3])]),
    ("remainder", lambda m, a, b: m.remainder(a, b),
     [randn(5) * 4, np.array([1.3, -1.7, 2.1, -0.9, 1.1])]),
    ("remainder_int", lambda m, a: a.remainder(-3), [np.array([-7, 7, -3, 5])]),
    ("remainder_int_float", lambda m, a: m.remainder(a, 1.5), [np.array([-7, 7, -3, 5])]),
    ("frac", lambda m, x: m.frac(x), [randn(6) * 3]),
    ("trunc", lambda m, x: m.trunc(x), [randn(6) * 3]),
    ("trunc_int", lambda m, x: x.trunc(), [np.array([-3, 2], np.int16)]),
    ("fix", lambda m, x: m.fix(x), [randn(6) * 3]),
    ("floor_divide", lambda m, a, b: m.floor_divide(a, b), [randn(6) * 3, randn(6) + 3]),
    ("floor_divide_int", lambda m, a: a.floor_divide(-2), [np.array([-7, 7, -3, 5])]),
    ("expm1", lambda m, x: m.expm1(x), [randn(5) * 1e-3]),
    ("expm1_int", lambda m, x: x.expm1(), [np.arange(3)]),
    ("log1p", lambda m, x: m.log1p(x), [np.abs(randn(5)) * 1e-4]),
    ("log1p_int", lambda m, x: m.log1p(x), [np.arange(3, dtype=np.int8)]),
    ("logaddexp", lambda m, a, b: m.logaddexp(a, b), [randn(4) * 100, randn(4) * 100]),
    ("logaddexp_inf", lambda m, a, b: m.logaddexp(a, b),
     [np.array([-np.inf, -np.inf, 1.0]), np.array([-np.inf, 2.0, np.inf])]),
    ("xlogy", lambda m, a, b: m.xlogy(a, b),
     [np.array([0.0, 1.5, -2.0, 0.0]), np.array([0.5, 2.0, 3.0, np.nan])]),
    ("xlogy_scalar", lambda m, b: m.xlogy(2, b), [np.abs(randn(3)) + 0.5]),
    ("xlogy_int", lambda m, a, b: a.xlogy(b), [np.arange(3), np.arange(1, 4)]),
    ("float_power", lambda m, a, b: m.float_power(a, b),
     [np.abs(randn(3, dtype=np.float32)) + 0.5, randn(3, dtype=np.float32)]),
    ("float_power_int_scalar", lambda m, a: a.float_power(2), [np.arange(4)]),
    ("deg2rad", lambda m, x: m.deg2rad(x), [randn(3) * 180]),
    ("deg2rad_int", lambda m, x: x.deg2rad(), [np.array([90, 180])]),
    ("rad2deg", lambda m, x: m.rad2deg(x), [randn(3, dtype=np.float32)]),
    ("heaviside", lambda m, x, v: m.heaviside(x, v),
     [np.array([-1.0, 0.0, 2.0, np.nan, 0.0]), np.array(0.5)]),
    ("heaviside_int", lambda m, x, v: x.heaviside(v), [np.array([-1, 0, 3]), np.array([7, 8, 9])]),
    ("median_all", lambda m, x: m.median(x), [spread(3, 4)]),
    ("median_all_ties", lambda m, x: x.median(), [np.array([2.0, 1.0, 2.0, 3.0, 2.0, 5.0])]),
    ("median_all_nan", lambda m, x: m.median(x), [np.array([1.0, np.nan, 3.0])]),
    ("median_all_int", lambda m, x: m.median(x), [np.array([4, 1, 3, 2])]),
    ("median_dim", lambda m, x: m.median(x, 1), [spread(3, 4)]),
    ("median_dim_keepdim", lambda m, x: x.median(dim=-2, keepdim=True), [spread(5, 2)]),
    ("median_dim_nan", lambda m, x: m.median(x, 0), [np.array([[1.0, 2], [np.nan, 0], [3, 1]])]),
    ("nanmedian_all", lambda m, x: m.nanmedian(x), [np.array([1.0, np.nan, 3.0, 0.5, 2.0])]),
    ("nanmedian_dim", lambda m, x: x.nanmedian(1),
     [np.array([[1.0, np.nan, 3.0, 0.5], [2.0, 1.0, np.nan, np.nan], [0.5, 0.7, 0.1, 0.3]])]),
    ("nanmedian_int", lambda m, x: m.nanmedian(x, 0), [np.array([[4, 1], [3, 2], [0, 7]])]),
    ("median_dim_int", lambda m, x: m.median(x, -1, True), [np.array([[4, 1, 9, 2], [3, 2, 0, 1]])]),
    ("kthvalue", lambda m, x: m.kthvalue(x, 2), [spread(3, 4)]),
    ("kthvalue_dim_keepdim", lambda m, x: x.kthvalue(3, 0, True), [spread(4, 3)]),
    ("nansum", lambda m, x: m.nansum(x, 1), [np.array([[1.0, np.nan, 2], [np.nan, np.nan, 3]])]),
    ("nansum_int", lambda m, x: x.nansum(), [np.arange(4, dtype=np.int8)]),
    ("nanmean", lambda m, x: m.nanmean(x, dim=0, keepdim=True),
     [np.array([[1.0, np.nan, 2], [np.nan, 4.0, 3]])]),
    ("nanmean_all", lambda m, x: x.nanmean(), [np.array([[1.0, np.nan], [4.0, 2.0]])]),
    ("var_mean", lambda m, x: m.var_mean(x, 1), [randn(3, 4)]),
    ("var_mean_correction", lambda m, x: m.var_mean(x, (0, 1), correction=0, keepdim=True),
     [randn(3, 4)]),
    ("std_mean", lambda m, x: m.std_mean(x), [randn(3, 4)]),
    ("std_mean_unbiased_false", lambda m, x: m.std_mean(x, 0, False), [randn(3, 4)]),
    ("quantile_scalar", lambda m, x: m.quantile(x, 0.3), [spread(3, 4)]),
    ("quantile_dim", lambda m, x: x.quantile(0.7, dim=1), [spread(3, 5)]),
    ("quantile_tensor_q_keepdim", lambda m, x, q: m.quantile(x, q, 0, True), [spread(5, 2),
     np.array([0.05, 0.3, 0.6, 0.95])]),
    *[(f"quantile_{how}", lambda m, x, how=how: m.quantile(
        x, m.tensor([0.1, 0.55, 0.7], dtype=x.dtype), -1, interpolation=how), [spread(2, 6)])
      for how in ("lower", "higher", "nearest", "midpoint")],
    ("quantile_nan", lambda m, x: m.quantile(x, 0.5, 1), [np.array([[1.0, np.nan, 3], [1, 2, 3]])]),
    ("nanquantile", lambda m, x: m.nanquantile(x, 0.4, 1),
     [np.array([[1.0, np.nan, 3, 4], [np.nan] * 4, [1, 2, 3, 5]])]),
    ("unique", lambda m, x: m.unique(x), [np.array([3, 1, 2, 3, 1])]),
    ("unique_inverse_counts", lambda m, x: x.unique(return_inverse=True, return_counts=True),
     [np.array([[3, 1], [2, 3]])]),
    ("unique_nan", lambda m, x: m.unique(x), [np.array([2.0, np.nan, 1, np.nan, 2])]),
    ("unique_dim", lambda m, x: m.unique(x, dim=0, return_inverse=True),
     [np.array([[1, 2], [0, 5], [1, 2]])]),
    ("bincount", lambda m, x: m.bincount(x), [np.array([0, 3, 3, 1])]),
    ("bincount_weights", lambda m, x, w: x.bincount(w, minlength=6),
     [np.array([0, 3, 3, 1]), randn(4, dtype=np.float32)]),
    ("bincount_int_weights", lambda m, x, w: m.bincount(x, weights=w),
     [np.array([0, 3, 3]), np.array([1, 2, 3])]),
    ("bincount_empty", lambda m, x: m.bincount(x), [np.zeros(0, np.int64)]),
    ("searchsorted", lambda m, s, v: m.searchsorted(s, v),
     [np.array([1.0, 2, 2, 3]), np.array([[2.0, 0.5], [3, 9]])]),
    ("searchsorted_right_int32", lambda m, s, v: m.searchsorted(s, v, right=True, out_int32=True),
     [np.array([1.0, 2, 2, 3]), np.array([2.0, 0.5])]),
    ("searchsorted_side_nd", lambda m, s, v: m.searchsorted(s, v, side="right"),
     [np.array([[1.0, 2, 3], [0, 5, 6]]), np.array([[2.0, 3.0], [5.0, -1]])]),
    ("bucketize", lambda m, v, b: m.bucketize(v, b), [np.array([2.0, 0.5, 3]), np.array([1.0, 2, 3])]),
    ("bucketize_right", lambda m, v, b: m.bucketize(v, b, right=True),
     [np.array([[2, 0], [3, 4]]), np.array([1, 2, 3])]),
    ("einsum_matmul", lambda m, a, b: m.einsum("ij,jk->ik", a, b), [randn(2, 3), randn(3, 4)]),
    ("einsum_implicit", lambda m, a, b: m.einsum("ij,kj", a, b), [randn(2, 3), randn(4, 3)]),
    ("einsum_batched_ellipsis", lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
     [randn(2, 1, 3, 4), randn(5, 4, 2)]),
    ("einsum_sum_only_one", lambda m, a, b: m.einsum("ijk,j->i", a, b), [randn(2, 3, 4), randn(3)]),
    ("einsum_three_list", lambda m, a, b, c: m.einsum("i,ij,j->", [a, b, c]),
     [randn(2), randn(2, 3), randn(3)]),
    ("einsum_outer_transpose", lambda m, a, b: m.einsum("i, j -> ji", a, b), [randn(2), randn(3)]),
    ("einsum_broadcast_one", lambda m, a, b: m.einsum("ij,ij->ij", a, b),
     [randn(1, 3), randn(2, 3)]),
    ("einsum_diagonal_no_grad", lambda m, a: m.einsum("ii->i", a.detach()), [randn(3, 3)]),
    ("einsum_diagonal", lambda m, a: m.einsum("ii->i", a), [randn(3, 3)]),
    ("einsum_trace", lambda m, a: m.einsum("ii", a), [randn(4, 4)]),
    ("einsum_repeated_with_other", lambda m, a, b: m.einsum("iij,jk->ik", a, b),
     [randn(2, 2, 3), randn(3, 4)]),
    ("einsum_other_has_diagonal", lambda m, a, b: m.einsum("ij,jj->i", a, b),
     [randn(2, 3), randn(3, 3)]),
    ("einsum_sublist", lambda m, a, b: m.einsum(a, [0, 1], b, [1, 2], [0, 2]),
     [randn(2, 3), randn(3, 4)]),
    ("einsum_sublist_implicit_order", lambda m, a: m.einsum(a, [3, 30]), [randn(2, 3)]),
    ("einsum_sublist_ellipsis", lambda m, a, b: m.einsum(a, [..., 0, 1], b, [1, 2], [..., 2]),
     [randn(5, 2, 3), randn(3, 4)]),
]


NO_GRADIENT = ("trunc", "fix", "floor_divide", "heaviside", "unique", "bincount")


def _numpy_of(x):
    if hasattr(x, "detach"):
        x = x.detach()
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _run(lib, fn, arrays, with_grad):
    inputs = [lib.tensor(a.copy()) for a in arrays]
    if with_grad:
        for t in inputs:
            if t.is_floating_point():
                t.requires_grad_(True)
    out = fn(lib, *inputs)
    return inputs, out


def _backward(inputs, out, lib):
    outs = [o for o in _outputs(out) if o.requires_grad]
    if not outs:
        return None
    total = 0
    for k, o in enumerate(outs):
        direction = np.random.default_rng(k).standard_normal(tuple(o.shape))
        total = total + (o * lib.tensor(direction.astype(_numpy_of(o).dtype))).sum()
    total.backward()
    return [None if t.grad is None else _numpy_of(t.grad) for t in inputs]


def _assert_close(a, b, name, tol=None):
    a, b = _numpy_of(a), _numpy_of(b)
    assert a.shape == b.shape, (name, a.shape, b.shape)
    assert a.dtype == b.dtype, (name, a.dtype, b.dtype)
    if tol is None:
        tol = 2e-5 if a.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True, err_msg=name)


FLOAT32_CASES = [(name, fn, [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays])
                 for name, fn, arrays in CASES if any(a.dtype == np.float64 for a in arrays)]


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, fn, arrays):
    _compare_with_torch(name, fn, arrays, grad_tol=None)


@pytest.mark.parametrize("name,fn,arrays", FLOAT32_CASES, ids=[c[0] for c in FLOAT32_CASES])
def test_matches_torch_float32(name, fn, arrays):
    # float32 gradients go through different (equally rounded) formulas: 1e-4.
    _compare_with_torch(name, fn, arrays, grad_tol=1e-4)


def _compare_with_torch(name, fn, arrays, grad_tol):
    torch = pytest.importorskip("torch")
    with_grad = not name.endswith("no_grad")
    inputs, out = _run(minidl, fn, arrays, with_grad)
    t_inputs, t_out = _run(torch, fn, arrays, with_grad)
    assert type(out).__name__ == type(t_out).__name__
    if hasattr(t_out, "_fields"):
        assert out._fields == tuple(t_out._fields)
    assert len(_outputs(out)) == len(_outputs(t_out))
    for o, t in zip(_outputs(out), _outputs(t_out)):
        _assert_close(o, t, name)
        # Integer-valued results carry no gradient in minidl (as floor and round); PyTorch's
        # are zero or "not implemented".
        assert o.requires_grad == t.requires_grad or name.startswith(NO_GRADIENT), name
    if name.startswith(NO_GRADIENT):
        return
    grads, t_grads = _backward(inputs, out, minidl), _backward(t_inputs, t_out, torch)
    if t_grads is not None:
        for g, tg in zip(grads, t_grads):
            if tg is not None:
                _assert_close(g, tg, name, grad_tol)


def _is_differentiable(name, arrays):
    return all(a.dtype == np.float64 for a in arrays) and not any(
        s in name for s in ("nan", "inf", "no_grad", "trunc", "fix", "floor_divide", "heaviside",
                            "unique", "bincount", "search", "bucketize", "empty", "ties"))


GRAD_CASES = [c for c in CASES if _is_differentiable(c[0], c[2])]


@pytest.mark.parametrize("name,fn,arrays", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradcheck(name, fn, arrays):
    inputs = [minidl.tensor(a.copy(), requires_grad=True) for a in arrays]

    def first_float(*ts):
        outs = [o for o in _outputs(fn(minidl, *ts)) if o.is_floating_point()]
        return minidl.cat([o.reshape(-1) for o in outs])

    assert gradcheck(first_float, inputs)
    first_float(*inputs).sum().backward()
    assert any(t.grad is not None and np.any(t.grad.numpy()) for t in inputs), name


def test_cumprod_gradient_with_zeros_matches_the_product_rule():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    t = minidl.tensor(x, requires_grad=True)
    t.cumprod(0).sum().backward()
    expected = [sum(np.prod(np.delete(x[: j + 1], k)) for j in range(k, 5)) for k in range(5)]
    np.testing.assert_allclose(t.grad.numpy(), expected)
    assert t.grad.numpy()[1] == 2.0 + 2.0 * 3.0  # the first zero's gradient is not 0


def test_numpy_references():
    x = randn(4, 5)
    m = minidl.tensor(x)
    np.testing.assert_allclose(minidl.cumprod(m, 1).numpy(), np.cumprod(x, 1))
    np.testing.assert_allclose(minidl.logcumsumexp(m, 0).numpy(),
                               np.log(np.cumsum(np.exp(x), 0)))
    np.testing.assert_allclose(minidl.diff(m, 2, 0).numpy(), np.diff(x, 2, 0))
    assert minidl.trace(m).item() == pytest.approx(np.trace(x))
    for k in range(-3, 5):
        np.testing.assert_array_equal(minidl.rot90(m, k, (1, 0)).numpy(), np.rot90(x, k, (1, 0)))
    np.testing.assert_allclose(minidl.quantile(m, 0.3, 1).numpy(), np.quantile(x, 0.3, 1))
    for how in ("lower", "higher", "midpoint", "nearest"):
        np.testing.assert_allclose(minidl.quantile(m, 0.55, interpolation=how).numpy(),
                                   np.quantile(x, 0.55, method=how))
    np.testing.assert_array_equal(minidl.median(m, 1).values.numpy(),
                                  np.sort(x, 1)[:, (x.shape[1] - 1) // 2])
    a, b = randn(6) * 5, np.array([2.0, -2.0, 1.5, -1.5, 3.0, -0.7])
    np.testing.assert_array_equal(minidl.remainder(minidl.tensor(a), minidl.tensor(b)).numpy(),
                                  np.remainder(a, b))
    np.testing.assert_array_equal(minidl.fmod(minidl.tensor(a), minidl.tensor(b)).numpy(),
                                  np.fmod(a, b))
    assert (np.sign(minidl.remainder(minidl.tensor(a), minidl.tensor(b)).numpy()) == np.sign(b)).all()
    np.testing.assert_allclose(minidl.einsum("ij,kj->ik", m, m).numpy(),
                               np.einsum("ij,kj->ik", x, x))
    np.testing.assert_array_equal(minidl.triu_indices(3, 4, 1).numpy(),
                                  np.stack(np.triu_indices(3, 1, 4)))
    np.testing.assert_array_equal(minidl.tril_indices(4, 3, -1).numpy(),
                                  np.stack(np.tril_indices(4, -1, 3)))
    np.testing.assert_array_equal(minidl.bincount(minidl.tensor([0, 2, 2])).numpy(), [1, 0, 2])
    np.testing.assert_array_equal(
        minidl.searchsorted(minidl.tensor([1.0, 2, 3]), minidl.tensor([2.5, 0])).numpy(),
        np.searchsorted([1.0, 2, 3], [2.5, 0]))


def test_non_contiguous_and_transposed_inputs():
    x = minidl.tensor(randn(4, 6), requires_grad=True)
    strided = x[:, ::2].t()  # (3, 4), built from a column slice
    values = strided.cumprod(1)
    np.testing.assert_allclose(values.numpy(), np.cumprod(x.detach().numpy()[:, ::2].T, 1))
    values.sum().backward()
    assert x.grad.numpy()[:, 1::2].sum() == 0 and np.any(x.grad.numpy()[:, ::2])


def test_dtype_and_result_type_rules():
    i = minidl.tensor([1, 2, 3])
    f = minidl.tensor([1.0, 2.0, 3.0])
    assert minidl.cumprod(i.int(), 0).dtype == np.int64
    assert minidl.atan2(i, i).dtype == np.float32
    assert minidl.float_power(f, 2).dtype == np.float64
    assert minidl.trunc(i).dtype == np.int64 and minidl.remainder(i, 2).dtype == np.int64
    assert minidl.remainder(i, 1.5).dtype == np.float32
    assert minidl.searchsorted(f, 2.0).shape == () and minidl.bucketize(2.0, f).item() == 1
    assert minidl.bincount(i, weights=i).dtype == np.float64


@pytest.mark.parametrize("call,error,match", [
    (lambda: minidl.cumprod(minidl.ones(2, 3), 2), IndexError, "out of range"),
    (lambda: minidl.tensor_split(minidl.ones(3), 0), RuntimeError, "larger than 0"),
    (lambda: minidl.tensor_split(minidl.tensor(1.0), 2), RuntimeError, "at least a 1-dim"),
    (lambda: minidl.diff(minidl.ones(3), n=-1), RuntimeError, "non-negative"),
    (lambda: minidl.trace(minidl.ones(3)), RuntimeError, "expected a matrix"),
    (lambda: minidl.outer(minidl.ones(3, 1), minidl.ones(3)), RuntimeError, "1-D"),
    (lambda: minidl.lerp(minidl.ones(2), minidl.ones(2, dtype=minidl.float64), 0.5),
     RuntimeError, "expected dtype"),
    (lambda: minidl.lerp(minidl.tensor([1, 2]), minidl.tensor([1, 2]), 0.5),
     NotImplementedError, "not implemented"),
    (lambda: minidl.addmm(minidl.ones(2, 2), minidl.ones(2, 3), minidl.ones(2, 2)),
     ValueError, "shapes"),
    (lambda: minidl.addmm(minidl.ones(3), minidl.ones(2, 2), minidl.ones(2, 2)),
     RuntimeError, "broadcast"),
    (lambda: minidl.addcdiv(minidl.ones(2), minidl.tensor([1, 2]), minidl.tensor([1, 2])),
     RuntimeError, "Integer division"),
    (lambda: minidl.rot90(minidl.ones(3)), RuntimeError, "total dims >= 2"),
    (lambda: minidl.rot90(minidl.ones(2, 2), 1, (0, 0)), RuntimeError, "different"),
    (lambda: minidl.rot90(minidl.ones(2, 2), 1, (0,)), RuntimeError, "== 2"),
    (lambda: minidl.meshgrid(minidl.ones(2), minidl.tensor([1]), indexing="ij"),
     RuntimeError, "same dtype"),
    (lambda: minidl.meshgrid(minidl.ones(2), indexing="yx"), RuntimeError, "indexing"),
    (lambda: minidl.hypot(minidl.tensor([1]), minidl.tensor([2])), NotImplementedError, "hypot"),
    (lambda: minidl.frac(minidl.tensor([1])), NotImplementedError, "frac"),
    (lambda: minidl.logaddexp(minidl.tensor([1]), minidl.tensor([2])), NotImplementedError,
     "not implemented"),
    (lambda: minidl.fmod(minidl.tensor([1]), 0), RuntimeError, "ZeroDivisionError"),
    (lambda: minidl.remainder(minidl.tensor([1]), minidl.tensor([0])), RuntimeError, "Zero"),
    (lambda: minidl.floor_divide(minidl.tensor([1]), 0), RuntimeError, "Zero"),
    (lambda: minidl.heaviside(minidl.ones(2), minidl.ones(2, dtype=minidl.float64)),
     RuntimeError, "different dtypes"),
    (lambda: minidl.median(minidl.ones(2, 0), 1), IndexError, "non-zero size"),
    (lambda: minidl.kthvalue(minidl.ones(3), 4), RuntimeError, "out of range"),
    (lambda: minidl.kthvalue(minidl.ones(3), 0), RuntimeError, "out of range"),
    (lambda: minidl.nanmean(minidl.tensor([1, 2])), RuntimeError, "floating point"),
    (lambda: minidl.var_mean(minidl.tensor([1, 2])), RuntimeError, "floating point"),
    (lambda: minidl.quantile(minidl.ones(3), 1.5), RuntimeError, r"\[0, 1\]"),
    (lambda: minidl.quantile(minidl.tensor([1, 2]), 0.5), RuntimeError, "float or double"),
    (lambda: minidl.quantile(minidl.ones(3), minidl.tensor([0.5], dtype=minidl.float64)),
     RuntimeError, "same dtype"),
    (lambda: minidl.quantile(minidl.ones(3), 0.5, interpolation="cubic"), RuntimeError,
     "interpolation"),
    (lambda: minidl.quantile(minidl.ones(0), 0.5), RuntimeError, "non-empty"),
    (lambda: minidl.logcumsumexp(minidl.tensor([1, 2]), 0), NotImplementedError, "not impl"),
    (lambda: minidl.bincount(minidl.tensor([-1, 2])), RuntimeError, "non-negative"),
    (lambda: minidl.bincount(minidl.ones(2)), NotImplementedError, "bincount"),
    (lambda: minidl.median(minidl.tensor([True])), NotImplementedError, "median"),
    (lambda: minidl.unique(minidl.ones(0, 3), dim=1), RuntimeError, "0-sized"),
    (lambda: minidl.trunc(minidl.tensor([True])), NotImplementedError, "trunc"),
    (lambda: minidl.bincount(minidl.tensor([1]), minidl.ones(2)), RuntimeError, "same length"),
    (lambda: minidl.searchsorted(minidl.ones(3), 1.0, right=True, side="left"), RuntimeError,
     "opposites"),
    (lambda: minidl.searchsorted(minidl.ones(2, 3), minidl.ones(3, 2)), RuntimeError,
     "must match"),
    (lambda: minidl.bucketize(minidl.ones(2), minidl.ones(2, 2)), RuntimeError, "1 dimension"),
    (lambda: minidl.einsum("ij,jk", minidl.ones(2, 3)), ValueError, "operands"),
    (lambda: minidl.einsum("ij", minidl.ones(3)), ValueError, "do not match"),
    (lambda: minidl.einsum("i,i", minidl.ones(3), minidl.ones(3, dtype=minidl.float64)),
     RuntimeError, "same dtype"),
    (lambda: minidl.einsum("i$", minidl.ones(3)), ValueError, "invalid subscript"),
    (lambda: minidl.einsum(minidl.ones(3), [52]), ValueError, r"\[0, 52\)"),
    (lambda: minidl.take_along_dim(minidl.ones(3), minidl.tensor([3]), 0), IndexError, "range"),
    (lambda: minidl.take_along_dim(minidl.ones(3, 2), minidl.tensor([0]), 0), RuntimeError,
     "number of dimensions"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_meshgrid_without_indexing_warns_as_torch_and_uses_ij():
    with pytest.warns(UserWarning, match="indexing argument"):
        a, b = minidl.meshgrid(minidl.ones(2), minidl.ones(3))
    assert a.shape == (2, 3) and b.shape == (2, 3)


def test_zero_size_and_scalar_inputs():
    empty = minidl.ones(0, 3)
    assert minidl.median(empty).numpy().item() != minidl.median(empty).numpy().item()  # NaN
    assert minidl.cummax(empty, 0).values.shape == (0, 3)
    assert minidl.logcumsumexp(empty, 0).shape == (0, 3)
    assert [t.shape for t in minidl.tensor_split(empty, 2, 1)] == [(0, 2), (0, 1)]
    assert minidl.diff(empty, dim=0).shape == (0, 3)
    assert minidl.unique(empty).shape == (0,)
    assert minidl.einsum("ij,j->i", empty, minidl.ones(3)).shape == (0,)
    s = minidl.tensor(2.0, requires_grad=True)
    assert minidl.cummax(s, 0).indices.item() == 0 and minidl.kthvalue(s, 1).values.item() == 2
    assert minidl.median(s, 0).values.item() == 2.0
    assert minidl.atleast_1d(s).shape == (1,) and minidl.logcumsumexp(s, 0).item() == 2.0
    minidl.cumprod(s, 0).backward()
    assert s.grad.item() == 1.0
    assert math.isclose(minidl.quantile(s, 0.5).item(), 2.0)


def test_tensor_methods_are_bound():
    x = minidl.ones(2, 3)
    for name in ("cumprod", "tensor_split", "diff", "trace", "outer", "lerp", "addmm",
                 "addcmul", "addcdiv", "take_along_dim", "rot90", "atan2", "hypot", "fmod",
                 "remainder", "frac", "trunc", "floor_divide", "expm1", "log1p", "logaddexp",
                 "xlogy", "float_power", "deg2rad", "heaviside", "median", "nanmedian", "nanmean",
                 "nansum", "kthvalue", "quantile", "logcumsumexp", "cummax", "cummin",
                 "unique", "bincount"):
        assert callable(getattr(x, name)), name
        assert callable(getattr(minidl, name)), name
    for name in ("einsum", "meshgrid", "atleast_3d", "column_stack", "dstack", "var_mean",
                 "std_mean", "searchsorted", "bucketize", "triu_indices", "tril_indices"):
        assert name in minidl.__all__ and not hasattr(x, name), name


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 7), zeros=st.sets(st.integers(0, 6), max_size=3), seed=st.integers(0, 99))
def test_hypothesis_cumprod_gradient_is_the_product_rule(n, zeros, seed):
    x = np.random.default_rng(seed).uniform(0.5, 2.0, n) * np.random.default_rng(seed).choice(
        [-1, 1], n)
    x[[z for z in zeros if z < n]] = 0.0
    g = np.random.default_rng(seed + 1).standard_normal(n)
    t = minidl.tensor(x, requires_grad=True)
    t.cumprod(0).backward(minidl.tensor(g))
    expected = [sum(g[j] * np.prod(np.delete(x[: j + 1], k)) for j in range(k, n))
                for k in range(n)]
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3), data=st.data())
def test_hypothesis_tensor_split_matches_numpy(shape, data):
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    spec = data.draw(st.one_of(st.integers(1, 6),
                               st.lists(st.integers(-7, 7), max_size=4)))
    parts = minidl.tensor_split(minidl.tensor(x), spec, axis)
    # NumPy's array_split / split with indices: the same parts (NumPy slices negative
    # indices as Python does, as PyTorch does).
    expected = np.array_split(x, spec, axis) if isinstance(spec, int) else np.split(x, spec, axis)
    assert len(parts) == len(expected)
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p.numpy(), e)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), q=st.floats(0, 1),
       seed=st.integers(0, 99))
def test_hypothesis_quantile_and_median_match_numpy(shape, q, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    t = minidl.tensor(x)
    for axis in range(len(shape)):
        np.testing.assert_allclose(minidl.quantile(t, q, axis).numpy(), np.quantile(x, q, axis),
                                   rtol=1e-12, atol=1e-12)
        k = (shape[axis] - 1) // 2
        np.testing.assert_array_equal(minidl.median(t, axis).values.numpy(),
                                      np.take(np.sort(x, axis), k, axis))


def _cummax_loop(row, greater_equal):
    """PyTorch's CPU kernel for cummax/cummin, one element at a time."""
    best, at, values, indices = row[0], 0, [], []
    for i, v in enumerate(row):
        if np.isnan(v) or (not np.isnan(best) and greater_equal(v, best)):
            best, at = v, i
        values.append(best)
        indices.append(at)
    return values, indices


@settings(max_examples=60, deadline=None)
@given(row=st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.0, -1.0, np.nan]), min_size=1,
                    max_size=9))
def test_hypothesis_cummax_cummin_ties_and_nan_follow_torchs_kernel(row):
    x = minidl.tensor(np.array(row))
    for fn, compare in ((minidl.cummax, np.greater_equal), (minidl.cummin, np.less_equal)):
        values, indices = fn(x, 0)
        ref_values, ref_indices = _cummax_loop(row, compare)
        np.testing.assert_array_equal(indices.numpy(), ref_indices)
        np.testing.assert_array_equal(values.numpy(), ref_values)
        assert list(np.signbit(values.numpy())) == list(np.signbit(ref_values))


# Every function on every dtype: the result dtypes and values are PyTorch's, or both raise.
DTYPE_SWEEP = [
 ("cumprod", lambda m, x: m.cumprod(x, 0)), ("logcumsumexp", lambda m, x: m.logcumsumexp(x, 0)),
 ("cummax", lambda m, x: m.cummax(x, 0)), ("cummin", lambda m, x: m.cummin(x, 0)),
 ("diff", lambda m, x: m.diff(x)), ("trace", lambda m, x: m.trace(x.reshape(2, 3))),
 ("outer", lambda m, x: m.outer(x, x)), ("rot90", lambda m, x: m.rot90(x.reshape(2, 3))),
 ("expm1", lambda m, x: m.expm1(x)), ("log1p", lambda m, x: m.log1p(x)), ("frac", lambda m, x: m.frac(x)),
 ("trunc", lambda m, x: m.trunc(x)), ("deg2rad", lambda m, x: m.deg2rad(x)), ("rad2deg", lambda m, x: m.rad2deg(x)),
 ("atan2", lambda m, x: m.atan2(x, x)), ("hypot", lambda m, x: m.hypot(x, x)), ("logaddexp", lambda m, x: m.logaddexp(x, x)),
 ("xlogy", lambda m, x: m.xlogy(x, x)), ("fmod", lambda m, x: m.fmod(x, 3)), ("remainder", lambda m, x: m.remainder(x, 3)),
 ("floor_divide", lambda m, x: m.floor_divide(x, 3)), ("float_power", lambda m, x: m.float_power(x, 2)),
 ("heaviside", lambda m, x: m.heaviside(x, x)), ("median", lambda m, x: m.median(x)), ("median_dim", lambda m, x: m.median(x, 0)),
 ("nanmedian", lambda m, x: m.nanmedian(x)), ("kthvalue", lambda m, x: m.kthvalue(x, 2)), ("nansum", lambda m, x: m.nansum(x)),
 ("nanmean", lambda m, x: m.nanmean(x)), ("var_mean", lambda m, x: m.var_mean(x)), ("std_mean", lambda m, x: m.std_mean(x)),
 ("quantile", lambda m, x: m.quantile(x, 0.5)), ("unique", lambda m, x: m.unique(x, return_counts=True)),
 ("bincount", lambda m, x: m.bincount(x)), ("searchsorted", lambda m, x: m.searchsorted(m.sort(x).values, x)),
 ("bucketize", lambda m, x: m.bucketize(x, m.sort(x).values)), ("lerp", lambda m, x: m.lerp(x, x, 0.5)),
 ("addcmul", lambda m, x: m.addcmul(x, x, x)), ("addcdiv", lambda m, x: m.addcdiv(x, x, x + 1)),
 ("addmm", lambda m, x: m.addmm(x.reshape(2, 3), x.reshape(2, 3), x.reshape(3, 2))),
 ("einsum", lambda m, x: m.einsum("i,i->", x, x)), ("take_along_dim", lambda m, x: m.take_along_dim(x, m.tensor([2, 0]))),
 ("tensor_split", lambda m, x: m.tensor_split(x, 4)), ("meshgrid", lambda m, x: m.meshgrid(x, x, indexing="xy")),
 ("column_stack", lambda m, x: m.column_stack([x, x])), ("dstack", lambda m, x: m.dstack([x, x])),
]


def _sweep_result(lib, fn, array):
    try:
        out = fn(lib, lib.tensor(array))
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError) as e:
        return type(e).__name__
    return [(np.dtype(str(t.dtype).replace("torch.", "")), _numpy_of(t))
            for t in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("name,fn", DTYPE_SWEEP, ids=[n for n, _ in DTYPE_SWEEP])
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                   np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_dtypes_match_torch(name, fn, dtype):
    torch = pytest.importorskip("torch")
    array = np.array([1, 0, 3, 2, 1, 4]).astype(dtype)
    ours, theirs = _sweep_result(minidl, fn, array), _sweep_result(torch, fn, array)
    if isinstance(theirs, str) or isinstance(ours, str):
        assert isinstance(ours, str) and isinstance(theirs, str), (ours, theirs)
        return
    assert [d for d, _ in ours] == [d for d, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.astype(float), b.astype(float), atol=1e-6, equal_nan=True)


# Zero-size inputs, (0, 3) and (3, 0): PyTorch's shapes, dtypes and values, or both raise.
ZERO_SIZE = [
 lambda m, x: m.cumprod(x, 0), lambda m, x: m.logcumsumexp(x, 1), lambda m, x: m.cummax(x, 1), lambda m, x: m.cummin(x, 0),
 lambda m, x: m.diff(x, dim=0), lambda m, x: m.diff(x, dim=1), lambda m, x: m.tensor_split(x, 2, 0), lambda m, x: m.tensor_split(x, [1], 1),
 lambda m, x: m.median(x), lambda m, x: m.median(x, 1), lambda m, x: m.median(x, 0), lambda m, x: m.nanmedian(x, 1), lambda m, x: m.kthvalue(x, 1, 1),
 lambda m, x: m.nansum(x, 0), lambda m, x: m.nanmean(x, 0), lambda m, x: m.nanmean(x, 1), lambda m, x: m.var_mean(x, 1), lambda m, x: m.std_mean(x),
 lambda m, x: m.quantile(x, 0.5, 1), lambda m, x: m.quantile(x, 0.5, 0), lambda m, x: m.unique(x, return_inverse=True), lambda m, x: m.unique(x, dim=1),
 lambda m, x: m.rot90(x), lambda m, x: m.trace(x), lambda m, x: m.einsum("ij->j", x), lambda m, x: m.einsum("ij,ij", x, x),
 lambda m, x: m.take_along_dim(x, m.zeros(0, 1, dtype=m.int64), 1), lambda m, x: m.atan2(x, x), lambda m, x: m.searchsorted(m.tensor([1., 2]), x),
 lambda m, x: m.addmm(m.zeros(3), x.t(), m.zeros(0, 3)), lambda m, x: m.atleast_3d(x), lambda m, x: m.meshgrid(x.reshape(-1), x.reshape(-1), indexing="ij"),
]


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # both engines warn
@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
@pytest.mark.parametrize("fn", ZERO_SIZE, ids=[str(i) for i in range(len(ZERO_SIZE))])
def test_zero_size_matches_torch(fn, shape):
    torch = pytest.importorskip("torch")
    array = np.zeros(shape, np.float32)
    ours, theirs = _sweep_result(minidl, fn, array), _sweep_result(torch, fn, array)
    if isinstance(theirs, str) or isinstance(ours, str):
        assert isinstance(ours, str) and isinstance(theirs, str), (ours, theirs)
        return
    assert [(d, a.shape) for d, a in ours] == [(d, a.shape) for d, a in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
