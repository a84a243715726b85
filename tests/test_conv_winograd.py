"""Winograd F(2x2, 3x3) and F(4x4, 3x3) conv2d and the algorithm switch
(minidl.backends.conv): the transforms' derivation, error bounds against a float64 reference,
hypothesis shapes, odd shapes, bitwise determinism across thread counts, out-of-bounds guards,
narrower instruction sets and the deterministic auto rule."""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from childproc import isa_outputs
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv import reference
from test_pool import guarded_array

import minidl
from minidl.backends import conv as conv_backend
from minidl.backends import winograd
from minidl.nn.functional import conv2d

# The stated bounds in float32 (minidl/backends/conv.py): F(2x2) measured up to 6.5e-7, F(4x4)
# up to 1.2e-5 (the limit for the default algorithm: 1e-4).
BOUNDS = {2: 1e-5, 4: 5e-5}
WINOGRAD_BOUND = BOUNDS[2]
TILES = (2, 4)


@pytest.fixture
def algorithm():
    """Set minidl.backends.conv.algorithm (and optionally winograd_tile) for one test, restored
    afterwards."""
    saved = conv_backend.algorithm, conv_backend.winograd_tile

    def set_(name, tile=None):
        conv_backend.algorithm = name
        conv_backend.winograd_tile = tile

    yield set_
    conv_backend.algorithm, conv_backend.winograd_tile = saved


@pytest.mark.parametrize("tile", TILES)
def test_toom_cook_transforms_compute_the_correlation_exactly(tile):
    """A^T [(G g) . (B^T d)] = the correlation y_i = sum_k d_{i+k} g_k, in exact arithmetic,
    for every pair of unit vectors d, g (so for all d, g by bilinearity)."""
    at, g, bt = winograd.toom_cook(tile, winograd.POINTS[tile])
    n = tile + 2
    for i in range(n):
        for k in range(3):
            gd = [sum(g[j][m] * (m == k) for m in range(3)) for j in range(n)]
            bd = [sum(bt[j][m] * (m == i) for m in range(n)) for j in range(n)]
            y = [sum(at[r][j] * gd[j] * bd[j] for j in range(n)) for r in range(tile)]
            assert y == [Fraction(int(i == r + k)) for r in range(tile)]


def test_f4x4_transforms_are_the_kernels_integer_matrices():
    """B^T and A^T written out in winograd_kernels_isa.h (points 0, 1, -1, 2, -2, infinity)."""
    at, g, bt = winograd.transform_matrices(4)
    assert bt.tolist() == [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ]
    assert at.tolist() == [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ]
    np.testing.assert_allclose(g[:, 0], [1 / 4, -1 / 6, -1 / 6, 1 / 24, 1 / 24, 0])


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("oc, c", [(1, 1), (5, 3), (3, 17), (16, 32)])
def test_weight_transforms_match_float64_einsum(tile, flip, oc, c):
    """The kernels' G g G^T and its adjoint G^T dU G, in float64 rounded once: within one
    float32 rounding of an einsum in float64; an infinite tap spreads only where G reads it."""
    rng = np.random.default_rng(tile * 100 + oc)
    g = winograd._G[tile]
    n = tile + 2
    w = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    w[0, 0, 1, 2] = np.inf
    ww = w.astype(np.float64)
    if flip:
        ww = ww[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    with np.errstate(invalid="ignore"):
        # Zero coefficients read nothing (0 * inf would be NaN): mask the infinite tap's terms.
        finite = np.where(np.isinf(ww), 0.0, ww)
        ref = np.einsum("ij,abjk,lk->ilab", g, finite, g)
        reach = np.einsum("ij,abjk,lk->ilab", g != 0, np.isinf(ww), g != 0) > 0
    ref = ref.reshape(n * n, *ww.shape[:2])
    reach = reach.reshape(ref.shape)
    got = winograd.transform_weight(w, flip=flip, tile=tile, n_threads=1)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.array_equal(np.isinf(got), reach) and not np.isnan(got).any()
    np.testing.assert_allclose(got[~reach], ref[~reach], rtol=2 ** -23, atol=1e-30)
    du = rng.standard_normal((n * n, oc, c)).astype(np.float32)
    ref_w = np.einsum("ij,ilab,lk->abjk", g, du.astype(np.float64).reshape(n, n, oc, c), g)
    got_w = winograd.weight_from_transformed_grad(du, n_threads=1)
    assert got_w.shape == (oc, c, 3, 3) and got_w.dtype == np.float32
    np.testing.assert_allclose(got_w, ref_w, rtol=2 ** -23, atol=1e-30)


def ordered_sums(g, x, contract_g_rows):
    """The kernels' order of operations for one side of a weight transform, in NumPy float64:
    out[i][m] = 0.0 + the products of G's non-zero coefficients with x, added in index order.
    x (r, m, ...) with r = 3 (G x: out[i] sums G[i][j] x[j] over row i's non-zero columns j) or,
    with contract_g_rows, r = n (G^T x: out[j] sums G[i][j] x[i] over column j's non-zero
    rows i)."""
    gm = g.T if contract_g_rows else g
    out = np.empty((gm.shape[0],) + x.shape[1:])
    for i in range(gm.shape[0]):
        out[i] = 0.0
        for j in np.flatnonzero(gm[i]):
            out[i] = out[i] + gm[i, j] * x[j]
    return out


def ordered_weight_transform(w64, g):
    """U (n*n, A, B) = G g G^T of w64 (A, B, 3, 3) in the kernels' order, rounded once."""
    t = ordered_sums(g, w64.transpose(2, 3, 0, 1), False)  # t[i][k] = (G g)[i][k]
    u = ordered_sums(g, t.transpose(1, 0, 2, 3), False)  # u[m][i] = (t G^T)[i][m]
    return u.transpose(1, 0, 2, 3).reshape(-1, *w64.shape[:2]).astype(np.float32)


def ordered_weight_adjoint(du64, g):
    """grad_w (OC, C, 3, 3) = G^T dU G of du64 (n*n, OC, C) in the kernels' order, rounded
    once."""
    n = g.shape[0]
    t = ordered_sums(g, du64.reshape(n, n, *du64.shape[1:]), True)  # t[j][l] = (G^T dU)[j][l]
    gw = ordered_sums(g, t.transpose(1, 0, 2, 3), True)  # gw[k][j] = (t G)[j][k]
    return gw.transpose(2, 3, 1, 0).astype(np.float32)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("oc, c", [(1, 1), (1, 3), (3, 17), (17, 3), (33, 31), (64, 17)])
def test_weight_transforms_are_bitwise_the_ordered_float64_sums_for_any_thread_count(tile, oc, c):
    """The kernels (blocks of pairs vectorized across pairs, run by any thread) give bit for bit
    the float64 sums in the order they promise, for channel counts that leave partial blocks and
    for sizes the pool splits; with +-0, subnormal, infinite and float32-overflowing entries."""
    from minidl._kernels import winograd as kernels

    rng = np.random.default_rng(tile * 1000 + oc * 37 + c)
    g = winograd._G[tile]
    n = tile + 2
    w = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    du = rng.standard_normal((n * n, oc, c)).astype(np.float32)
    for arr in (w, du):
        flat = arr.reshape(-1)
        special = np.array([0.0, -0.0, 1e-40, -3e38, 3e38, np.inf], np.float32)
        flat[: min(flat.size, 6)] = special[: flat.size]
        flat[rng.integers(0, flat.size, flat.size // 10)] = -0.0
        if flat.size > 40:
            flat[-1] = -np.inf
    ref_w = ordered_weight_adjoint(du.astype(np.float64), g)
    for flip in (False, True):
        w64 = w.astype(np.float64)
        if flip:
            w64 = w64[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        ref_u = ordered_weight_transform(w64, g)
        for nt in (1, 2, 3):
            u = np.full(ref_u.shape, np.nan, np.float32)
            kernels.transform_weight(w, g, flip, u, nt)
            np.testing.assert_array_equal(u.view(np.uint32), ref_u.view(np.uint32))
            if not flip:
                gw = np.full(ref_w.shape, np.nan, np.float32)
                kernels.weight_from_transformed(du, g, gw, nt)
                np.testing.assert_array_equal(gw.view(np.uint32), ref_w.view(np.uint32))


def test_weight_transform_kernels_check_their_shapes():
    from minidl._kernels import winograd as kernels

    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="winograd.transform_weight: .* do not match"):
        kernels.transform_weight(w, winograd._G[2], False, np.empty((16, 2, 4), np.float32), 1)
    with pytest.raises(ValueError, match="G must be"):
        kernels.transform_weight(w, np.zeros((7, 3)), False, np.empty((49, 4, 2), np.float32), 1)
    with pytest.raises(ValueError, match="weight_from_transformed: .* do not match"):
        kernels.weight_from_transformed(np.zeros((36, 4, 2), np.float32), winograd._G[2],
                                        np.empty((4, 2, 3, 3), np.float32), 1)


def test_toom_cook_rejects_repeated_points():
    with pytest.raises(ValueError, match="needs 5 distinct points"):
        winograd.toom_cook(4, (0, 1, 1, 2, -2))


def he_relu_inputs(x_shape, w_shape, seed=0):
    """ReLU activations (half zeros) and He-initialised weights, float32."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(x_shape), 0).astype(np.float32)
    w = rng.standard_normal(w_shape) * np.sqrt(2 / np.prod(w_shape[1:]))
    return x, w.astype(np.float32)


def run(x, w, b, gy, padding, relu=False):
    tx = minidl.tensor(x, requires_grad=True)
    tw = minidl.tensor(w, requires_grad=True)
    tb = None if b is None else minidl.tensor(b, requires_grad=True)
    out = conv2d(tx, tw, tb, padding=padding, relu=relu)
    out.backward(gy)
    return out.data, tx.grad.data, tw.grad.data, None if tb is None else tb.grad.data


def scale(ref):
    """max(1, ||ref||_inf), 1 for an empty array."""
    return max(1.0, float(np.abs(ref).max())) if ref.size else 1.0


def rel_inf(a, ref):
    """||a - ref||_inf / ||ref||_inf (0 for an all-zero reference matched exactly)."""
    scale = np.abs(ref).max()
    err = np.abs(a.astype(np.float64) - ref).max()
    return err / scale if scale > 0 else err


def winograd_errors(x_shape, w_shape, padding, seed=0, tile=2):
    """Max relative errors (output, input grad, weight grad) of the Winograd kernels."""
    x, w = he_relu_inputs(x_shape, w_shape, seed)
    pad = ((padding, padding), (padding, padding))
    out_ref = reference(x, w, None, None, (1, 1), pad, (1, 1), 1)[0]
    gy = np.random.default_rng(seed + 1).standard_normal(out_ref.shape).astype(np.float32)
    out_ref, gx_ref, gw_ref, _ = reference(x, w, None, gy, (1, 1), pad, (1, 1), 1)
    out = np.empty(out_ref.shape, np.float32)
    gx, gw = np.empty_like(x), np.empty_like(w)
    winograd.forward(x, w, None, out, (padding, padding), False, 1, tile)
    winograd.backward_input(gy, w, gx, (padding, padding), 1, tile)
    winograd.backward_weight(x, gy, gw, (padding, padding), 1, tile)
    return rel_inf(out, out_ref), rel_inf(gx, gx_ref), rel_inf(gw, gw_ref)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [
        ((16, 16, 32, 32), (16, 16, 3, 3), 1),  # ResNet-20 stage 1
        ((16, 32, 16, 16), (32, 32, 3, 3), 1),  # stage 2
        ((32, 64, 8, 8), (64, 64, 3, 3), 1),  # stage 3
        ((8, 32, 26, 26), (64, 32, 3, 3), 0),  # PyTorch MNIST example conv2
        ((8, 256, 6, 6), (32, 256, 3, 3), 1),  # a long reduction
    ],
)
def test_winograd_error_bound_he_weights_relu_activations(x_shape, w_shape, padding, tile):
    errors = winograd_errors(x_shape, w_shape, padding, tile=tile)
    assert max(errors) <= BOUNDS[tile], errors
    assert min(errors) > 0  # a real float32 computation, not a float64 copy


@st.composite
def winograd_case(draw):
    pad = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    h = max(1, 3 - 2 * pad[0] + draw(st.integers(0, 14)))
    w = max(1, 3 - 2 * pad[1] + draw(st.integers(0, 14)))
    return dict(
        shape=(draw(st.integers(0, 3)), draw(st.integers(1, 9)), h, w),
        oc=draw(st.integers(1, 9)),
        padding=pad,
        bias=draw(st.booleans()),
        relu=draw(st.booleans()),
    )


@pytest.mark.parametrize("tile", TILES)
@settings(max_examples=60, deadline=None)
@given(case=winograd_case())
def test_winograd_matches_float64_reference_on_hypothesis_shapes(case, tile):
    saved = conv_backend.algorithm, conv_backend.winograd_tile
    conv_backend.algorithm, conv_backend.winograd_tile = "winograd", tile
    try:
        x_shape, oc, (ph, pw) = case["shape"], case["oc"], case["padding"]
        x, w = he_relu_inputs(x_shape, (oc, x_shape[1], 3, 3))
        rng = np.random.default_rng(3)
        b = rng.standard_normal(oc).astype(np.float32) if case["bias"] else None
        pad = ((ph, ph), (pw, pw))
        out_ref = reference(x, w, b, None, (1, 1), pad, (1, 1), 1)[0]
        gy = rng.standard_normal(out_ref.shape).astype(np.float32)
        out, gx, gw, gb = run(x, w, b, gy, case["padding"], case["relu"])
        if case["relu"]:
            # The fused ReLU's gradient is masked where the output is not > 0: where the exact
            # output is 0 (a window of zero inputs, no bias) the rounded Winograd one may be
            # ~5e-10, so the mask is the computed output's, which the reference then follows.
            gy_ref = np.where(out > 0, gy, 0)
            out_ref = np.maximum(out_ref, 0)
        else:
            gy_ref = gy
        _, gx_ref, gw_ref, gb_ref = reference(x, w, b, gy_ref, (1, 1), pad, (1, 1), 1)
        assert out.shape == out_ref.shape and gx.shape == x.shape and gw.shape == w.shape
        for got, ref in [(out, out_ref), (gx, gx_ref), (gw, gw_ref), (gb, gb_ref)]:
            if got is None:
                continue
            np.testing.assert_allclose(got, ref, rtol=0, atol=BOUNDS[tile] * scale(ref))
    finally:
        conv_backend.algorithm, conv_backend.winograd_tile = saved


@pytest.mark.parametrize(
    "x_shape, padding",
    [
        ((2, 3, 1, 1), 1),  # 1x1 images
        ((1, 4, 5, 7), 0),  # batch 1, odd sizes
        ((2, 3, 4, 4), 3),  # padding > kernel: the input gradient crops (padding 2 - 3 < 0)
        ((1, 2, 2, 9), 4),
        ((0, 3, 6, 6), 1),  # batch 0
        ((1, 3, 2, 2), 1),  # 2x2 images
        ((2, 3, 7, 18), 1),  # outputs not a multiple of 4 (7 x 18)
    ],
)
@pytest.mark.parametrize("tile", TILES)
def test_winograd_odd_shapes(algorithm, x_shape, padding, tile):
    algorithm("winograd", tile)
    x, w = he_relu_inputs(x_shape, (5, x_shape[1], 3, 3))
    pad = ((padding, padding), (padding, padding))
    out_ref = reference(x, w, None, None, (1, 1), pad, (1, 1), 1)[0]
    gy = np.random.default_rng(2).standard_normal(out_ref.shape).astype(np.float32)
    out_ref, gx_ref, gw_ref, _ = reference(x, w, None, gy, (1, 1), pad, (1, 1), 1)
    out, gx, gw, _ = run(x, w, None, gy, padding)
    for got, ref in [(out, out_ref), (gx, gx_ref), (gw, gw_ref)]:
        np.testing.assert_allclose(got, ref, rtol=0, atol=BOUNDS[tile] * scale(ref))


def test_winograd_non_contiguous_input(algorithm):
    algorithm("winograd")
    x, w = he_relu_inputs((3, 6, 9, 10), (4, 6, 3, 3))
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    out = conv2d(minidl.tensor(xt), minidl.tensor(w), padding=1).data
    ref = reference(x, w, None, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)[0]
    np.testing.assert_allclose(out, ref, rtol=0, atol=WINOGRAD_BOUND * np.abs(ref).max())


@pytest.mark.parametrize(
    "x_shape",
    [(130, 16, 8, 8), (203, 16, 7, 5), (3, 16, 33, 31), (20, 16, 32, 32), (1, 20, 64, 64)],
)
@pytest.mark.parametrize("tile", TILES)
def test_winograd_bitwise_identical_for_1_2_3_threads(algorithm, x_shape, tile):
    """Several blocks and weight-gradient groups (F(2x2), 130 images of 8x8: 9 blocks, 5
    groups of 2 blocks, the last of 1; F(4x4), 20 images of 32x32: one image a block, 4 groups;
    203 images of 7x5: 9 blocks of 24 images, the last of 11, over which the transforms run at
    once, 5 groups)."""
    algorithm("winograd", tile)
    x, w = he_relu_inputs(x_shape, (16, x_shape[1], 3, 3))
    rng = np.random.default_rng(4)
    b = rng.standard_normal(16).astype(np.float32)
    gy = rng.standard_normal((x_shape[0], 16, x_shape[2], x_shape[3])).astype(np.float32)
    saved = minidl.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            results.append(run(x, w, b, gy, 1, relu=True))
    finally:
        minidl.set_num_threads(saved)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert np.array_equal(a, c)


@pytest.mark.parametrize("hw", [(8, 8), (7, 5), (12, 13), (3, 3), (1, 6)])
def test_f4x4_tiles_of_an_image_do_not_depend_on_its_place_in_the_batch(algorithm, hw):
    """F(4x4) on images of fewer than 16 tiles transforms all the images of a block at once (16
    tiles a vector, then 8, 4, 1): an image's output and input gradient are bitwise the same in
    a batch not a multiple of 4 (its tiles in any lanes, blocks ending mid-vector) as alone."""
    algorithm("winograd", 4)
    x, w = he_relu_inputs((37, 6, *hw), (7, 6, 3, 3))
    b = np.random.default_rng(8).standard_normal(7).astype(np.float32)
    gy = np.random.default_rng(9).standard_normal((37, 7, *hw)).astype(np.float32)
    out, gx, _, _ = run(x, w, b, gy, 1, relu=True)
    for i in (0, 1, 5, 18, 23, 36):
        out1, gx1, _, _ = run(x[i : i + 1], w, b, gy[i : i + 1], 1, relu=True)
        assert np.array_equal(out[i : i + 1], out1)
        assert np.array_equal(gx[i : i + 1], gx1)


@pytest.mark.parametrize(
    "hw, padding", [((8, 8), 1), ((5, 8), 1), ((8, 6), 0), ((6, 7), 2), ((7, 7), (1, 0))]
)
def test_f4x4_small_images_match_the_reference_in_every_lane(algorithm, hw, padding):
    """Planes of 2 x 2 tiles put four images' tiles in a vector (winograd_kernels_isa.h picks
    them by permutes on AVX-512): every image of a batch that is not a multiple of 4, in each of
    the four places of a vector, against the float64 reference, all three passes."""
    algorithm("winograd", 4)
    x, w = he_relu_inputs((11, 5, *hw), (6, 5, 3, 3))
    rng = np.random.default_rng(12)
    b = rng.standard_normal(6).astype(np.float32)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    pad = ((ph, ph), (pw, pw))
    out_ref = reference(x, w, b, None, (1, 1), pad, (1, 1), 1)[0]
    gy = rng.standard_normal(out_ref.shape).astype(np.float32)
    out_ref, gx_ref, gw_ref, _ = reference(x, w, b, gy, (1, 1), pad, (1, 1), 1)
    out, gx, gw, _ = run(x, w, b, gy, (ph, pw))
    for got, ref in [(out, out_ref), (gx, gx_ref), (gw, gw_ref)]:
        np.testing.assert_allclose(got, ref, rtol=0, atol=BOUNDS[4] * scale(ref))


@pytest.mark.parametrize("tile", TILES)
def test_winograd_reads_nothing_past_its_inputs(algorithm, tile):
    """Inputs and output gradient end at a protected page (test_pool.guarded_array)."""
    algorithm("winograd", tile)
    x, w = he_relu_inputs((3, 5, 7, 9), (6, 5, 3, 3))
    gx_arr, _keep_x = guarded_array(x.shape)
    gx_arr[...] = x
    tx = minidl.tensor(gx_arr, requires_grad=True)
    tw = minidl.tensor(w, requires_grad=True)
    out = conv2d(tx, tw, padding=1)
    gy, _keep_g = guarded_array(out.shape)
    gy[...] = np.random.default_rng(6).standard_normal(out.shape)
    out.backward(gy)
    ref = reference(x, w, None, np.asarray(gy), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    for got, r in [(out.data, ref[0]), (tx.grad.data, ref[1]), (tw.grad.data, ref[2])]:
        np.testing.assert_allclose(got, r, rtol=0, atol=BOUNDS[tile] * np.abs(r).max())


ISA_SCRIPT = """
import numpy as np
from minidl.backends import winograd
rng = np.random.default_rng(0)
x = np.maximum(rng.standard_normal((5, 7, 13, 11)), 0).astype(np.float32)
w = (rng.standard_normal((9, 7, 3, 3)) * 0.2).astype(np.float32)
gy = rng.standard_normal((5, 9, 13, 11)).astype(np.float32)
arrays = {}
for tile in (2, 4):
    out, gx, gw = np.empty_like(gy), np.empty_like(x), np.empty_like(w)
    winograd.forward(x, w, None, out, (1, 1), True, 2, tile)
    winograd.backward_input(gy, w, gx, (1, 1), 2, tile)
    winograd.backward_weight(x, gy, gw, (1, 1), 2, tile)
    arrays.update({f"out{tile}": out, f"gx{tile}": gx, f"gw{tile}": gw})
# Planes of 2 x 2 F(4x4) tiles (permutes on AVX-512 and AVX2), a batch not a multiple of 4.
x = np.maximum(rng.standard_normal((7, 5, 7, 6)), 0).astype(np.float32)
w = (rng.standard_normal((6, 5, 3, 3)) * 0.2).astype(np.float32)
gy = rng.standard_normal((7, 6, 7, 6)).astype(np.float32)
out, gx, gw = np.empty_like(gy), np.empty_like(x), np.empty_like(w)
winograd.forward(x, w, None, out, (1, 1), False, 2, 4)
winograd.backward_input(gy, w, gx, (1, 1), 2, 4)
winograd.backward_weight(x, gy, gw, (1, 1), 2, 4)
arrays.update({"out_small": out, "gx_small": gx, "gw_small": gw})
np.savez(OUT, **arrays)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gcc ISA dispatch")
@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_winograd_narrower_isa_instances_agree(isa, tmp_path):
    default, forced = isa_outputs(ISA_SCRIPT, isa, tmp_path)
    for key, a in default.items():
        np.testing.assert_allclose(a, forced[key], rtol=0, atol=1e-5 * np.abs(a).max(),
                                   err_msg=key)


def test_algorithms_agree_and_direct_is_the_plain_sum_order(algorithm):
    x, w = he_relu_inputs((4, 16, 10, 10), (32, 16, 3, 3))
    gy = np.random.default_rng(5).standard_normal((4, 32, 10, 10)).astype(np.float32)
    ref = reference(x, w, None, gy, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    outputs = {}
    for name in conv_backend.ALGORITHMS:
        algorithm(name)
        got = outputs[name] = run(x, w, None, gy, 1)
        for a, r in zip(got[:3], ref[:3]):
            bound = WINOGRAD_BOUND if name in ("winograd", "auto") else 1e-6
            assert rel_inf(a, r) <= bound, name
    # The switch reaches the kernels (im2col and direct may share a summation order).
    assert not np.array_equal(outputs["winograd"][0], outputs["direct"][0])


def test_unknown_algorithm_raises(algorithm):
    algorithm("fft")
    x, w = he_relu_inputs((1, 2, 5, 5), (2, 2, 3, 3))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        conv2d(minidl.tensor(x), minidl.tensor(w))


def test_auto_rule_is_deterministic_by_shape(algorithm):
    algorithm("auto")
    f32 = np.float32
    resnet = ((128, 16, 32, 32), (16, 16, 3, 3), f32, (1, 1), (1, 1), 1)
    for pass_ in ("forward", "input", "weight"):
        assert conv_backend.choose(pass_, *resnet) == conv_backend.choose(pass_, *resnet)
    # Never Winograd where it cannot run: float64, stride 2, 5x5, dilation, groups.
    for args in [
        ((8, 16, 8, 8), (16, 16, 3, 3), np.float64, (1, 1), (1, 1), 1),
        ((8, 16, 8, 8), (16, 16, 3, 3), f32, (2, 2), (1, 1), 1),
        ((8, 16, 8, 8), (16, 16, 5, 5), f32, (1, 1), (1, 1), 1),
        ((8, 16, 8, 8), (16, 16, 3, 3), f32, (1, 1), (2, 2), 1),
        ((8, 16, 8, 8), (16, 8, 3, 3), f32, (1, 1), (1, 1), 2),
    ]:
        algorithm("winograd")
        assert conv_backend.choose("forward", *args) == "auto"
    algorithm("direct")
    assert conv_backend.choose("forward", *resnet) == "direct"


def test_auto_rule_follows_the_instance_the_kernels_run(tmp_path):
    # MINIDL_FORCE_ISA=baseline runs the baseline kernels on a wide CPU: the rule must then
    # choose as on a baseline CPU (direct kernels), not by the CPU's own instruction set.
    script = (
        "from minidl._kernels import _runtime\n"
        "from minidl.backends import conv\n"
        "import numpy as np\n"
        "args = ((128, 64, 8, 8), (64, 64, 3, 3), np.float32, (1, 1), (1, 1), 1)\n"
        "print(_runtime.kernel_isa_level(), conv.choose('forward', *args))\n"
    )
    # The minidl this run imports (the checkout or site-packages), not the unbuilt source tree.
    root = os.path.dirname(os.path.dirname(os.path.abspath(minidl.__file__)))
    env = dict(os.environ, PYTHONPATH=root, MINIDL_FORCE_ISA="baseline")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=tmp_path,
                         capture_output=True, text=True).stdout.split()
    assert out == ["0", "auto"]


def test_auto_rule_follows_the_measured_table(algorithm):
    algorithm("auto")
    f32 = np.float32

    def picks(c, oc, size=16):
        args = ((128, c, size, size), (oc, c, 3, 3), f32, (1, 1), (1, 1), 1)
        return tuple(conv_backend.choose(p, *args) for p in ("forward", "input", "weight"))

    if not conv_backend._WIDE_ISA:
        assert picks(64, 64) == ("auto", "auto", "auto")
        return
    wino = ("winograd",) * 3
    assert picks(3, 16) == ("auto", "auto", "auto")
    # F(4x4) (images up to 64 pixels a side) wins every pass from 16 channels on.
    assert picks(16, 16, size=32) == wino
    assert picks(16, 32, size=32) == wino
    assert picks(32, 16, size=32) == wino
    assert picks(32, 32) == wino
    assert picks(32, 64, size=26) == wino
    # F(4x4) on 8x8 images too (transforms over several images).
    assert picks(16, 16, size=8) == wino
    assert picks(32, 32, size=8) == wino
    assert picks(32, 64, size=8) == wino
    assert picks(64, 64, size=8) == wino
    assert picks(32, 64, size=66) == ("winograd", "auto", "auto")  # 1089 tiles > one block

    # Small batches: the threshold counts F(2x2)-sized tiles whatever the tile (16 per 8x8
    # image), so F(4x4) takes 64->64 @8 from batch 16 (4 * 64 tiles), not only from 64.
    def forward_at(n):
        return conv_backend.choose("forward", (n, 64, 8, 8), (64, 64, 3, 3), f32, (1, 1),
                                   (1, 1), 1)

    assert [forward_at(n) for n in (8, 15, 16, 32, 63)] == ["auto", "auto"] + ["winograd"] * 3


def test_winograd_tile_rule_and_override(algorithm):
    assert conv_backend.winograd_tile_for((128, 16, 32, 32)) == 4
    assert conv_backend.winograd_tile_for((64, 32, 26, 26)) == 4
    assert conv_backend.winograd_tile_for((128, 64, 8, 8)) == 4
    assert conv_backend.winograd_tile_for((2, 3, 1, 1)) == 4
    assert conv_backend.winograd_tile_for((1, 3, 65, 8)) == 2
    assert conv_backend.winograd_tile_for((1, 16, 16, 200)) == 2
    algorithm("auto", 2)
    assert conv_backend.winograd_tile_for((128, 16, 32, 32)) == 2
    algorithm("auto", 3)
    with pytest.raises(ValueError, match="winograd_tile must be None, 2 or 4, got 3"):
        conv_backend.winograd_tile_for((128, 16, 32, 32))


def test_forced_tiles_run_different_kernels(algorithm):
    """The override reaches the kernels: F(2x2) and F(4x4) round differently."""
    x, w = he_relu_inputs((2, 16, 16, 16), (16, 16, 3, 3))
    outs = {}
    for tile in TILES:
        algorithm("winograd", tile)
        outs[tile] = conv2d(minidl.tensor(x), minidl.tensor(w), padding=1).data
    assert not np.array_equal(outs[2], outs[4])
    ref = reference(x, w, None, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)[0]
    for tile in TILES:
        assert rel_inf(outs[tile], ref) <= BOUNDS[tile]


def test_winograd_kernel_rejects_a_bias_of_the_wrong_length():
    """The kernel read bias[o] for every output channel without checking the bias's length (a
    short bias: a read past its end)."""
    from minidl._kernels import winograd as kernels

    x, w = he_relu_inputs((1, 2, 6, 6), (4, 2, 3, 3))
    u = winograd.transform_weight(w, n_threads=1)
    out = np.empty((1, 4, 4, 4), np.float32)
    for size in (3, 5, 0):
        with pytest.raises(ValueError, match=f"winograd.forward: bias has {size} entries for 4"):
            kernels.forward(x, u, np.zeros(size, np.float32), out, 0, 0, False, 1)
    # A transformed weight of neither 16 (F(2x2)) nor 36 (F(4x4)) positions.
    with pytest.raises(ValueError, match="do not match"):
        kernels.forward(x, np.zeros((25, 4, 2), np.float32), None, out, 0, 0, False, 1)
    with pytest.raises(ValueError, match="do not match"):
        kernels.weight_grad(x, out, np.zeros((25, 4, 2), np.float32), 0, 0, 1)
    kernels.forward(x, u, np.ones(4, np.float32), out, 0, 0, False, 1)
    ref = reference(x, w, np.ones(4, np.float32), None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)[0]
    assert rel_inf(out, ref) <= WINOGRAD_BOUND


def non_finite_case(hw, value, seed=0):
    """x (2, 4, H, W) >= 0, w (5, 4, 3, 3), gy (2, 5, H, W) with `value` (NaN or +-Inf) in two
    pixels of x (one at an image corner) and one of gy; each finite without them."""
    rng = np.random.default_rng(seed)
    h, w_ = hw
    x = np.abs(rng.standard_normal((2, 4, h, w_))).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 5, h, w_)).astype(np.float32)
    if value is not None:
        x[0, 0, h // 2, w_ // 3] = value
        x[1, 3, 0, w_ - 1] = value
        gy[1, 2, h - 1, w_ // 2] = value
    return x, w, gy


# Each path of the output transform: F(2x2) whole planes (16 px) and runs of tile rows (70 px:
# more tiles than a block), F(4x4) whole planes (16 px) and several images at once (8 px).
NON_FINITE_PATHS = [(2, (16, 16)), (2, (70, 70)), (4, (16, 16)), (4, (8, 8))]


@pytest.mark.parametrize("tile, hw", NON_FINITE_PATHS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_land_where_the_direct_kernels_put_them(algorithm, tile, hw, value):
    # The transforms spread a NaN input over whole output tiles (16 of F(2x2)'s outputs, 36 of
    # F(4x4)'s, for the 9 whose windows hold it) and turn Inf - Inf into NaN: a non-finite
    # Winograd result is recomputed directly, so NaN and +-Inf come out as in PyTorch.
    x, w, gy = non_finite_case(hw, value)
    got = {}
    for algo in ("direct", "winograd"):
        algorithm(algo, tile)
        tx, tw = minidl.tensor(x, requires_grad=True), minidl.tensor(w, requires_grad=True)
        y = conv2d(tx, tw, padding=1)
        y.backward(minidl.tensor(gy))
        got[algo] = (y.data, tx.grad.data, tw.grad.data)
    for name, d, wg in zip(("out", "grad_x", "grad_w"), got["direct"], got["winograd"]):
        for kind in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(kind(wg), kind(d), err_msg=f"{name} {kind.__name__}")
        assert not np.isfinite(d).all(), name  # the case does reach every result
        finite = np.isfinite(d)
        np.testing.assert_allclose(wg[finite], d[finite], rtol=0,
                                   atol=BOUNDS[tile] * np.abs(d[finite]).max())


@pytest.mark.parametrize("tile, hw", NON_FINITE_PATHS)
@pytest.mark.parametrize("value", [None, np.nan, np.inf])
@pytest.mark.parametrize("relu", [False, True])
def test_winograd_kernel_reports_non_finite_outputs(tile, hw, value, relu):
    # True exactly when every output before the ReLU is finite (ReLU(-Inf) = 0 still reports).
    from minidl._kernels import winograd as kernels

    x, w, _ = non_finite_case(hw, value)
    u = winograd.transform_weight(w, tile=tile, n_threads=1)
    out = np.empty((2, 5, *hw), np.float32)
    for threads in (1, 2):
        assert kernels.forward(x, u, None, out, 1, 1, relu, threads) is (value is None)
    w[2, 1, 0, 0] = np.nan  # a NaN tap makes every output of channel 2 NaN, even on zeros
    u = winograd.transform_weight(w, tile=tile, n_threads=1)
    assert kernels.forward(np.zeros_like(x), u, None, out, 1, 1, relu, 1) is False
