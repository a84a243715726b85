"""Pooling: forward and gradients against NumPy float64 references and PyTorch where installed,
tie routing, gradcheck, bitwise determinism across thread counts, argument validation."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl.autograd import gradcheck
from minidl.nn.functional import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from minidl.ops.pool import pool_out_size


def _window_grid(h, w, out_size, kernel, stride, padding, dilation):
    """For each output (oh, ow), the list of in-bounds (ih, iw) of its window, row-major."""
    grid = {}
    for oh in range(out_size[0]):
        for ow in range(out_size[1]):
            cells = []
            for kh in range(kernel[0]):
                ih = oh * stride[0] - padding[0] + kh * dilation[0]
                for kw in range(kernel[1]):
                    iw = ow * stride[1] - padding[1] + kw * dilation[1]
                    if 0 <= ih < h and 0 <= iw < w:
                        cells.append((ih, iw))
            grid[oh, ow] = cells
    return grid


def max_pool_reference(x, gy, kernel, stride, padding, dilation, out_size):
    """(out, flat argmax, grad_x): first maximum of each window in row-major order."""
    n, c, h, w = x.shape
    out = np.empty((n, c) + out_size)
    index = np.empty((n, c) + out_size, dtype=np.int64)
    gx = np.zeros(x.shape)
    for (oh, ow), cells in _window_grid(h, w, out_size, kernel, stride, padding, dilation).items():
        if not cells:  # a dilated window can miss the input: -inf, no argmax
            out[:, :, oh, ow], index[:, :, oh, ow] = -np.inf, -1
            continue
        values = np.stack([x[:, :, ih, iw] for ih, iw in cells], axis=-1)
        first = np.argmax(values, axis=-1)
        flat = np.array([ih * w + iw for ih, iw in cells])[first]
        out[:, :, oh, ow] = np.take_along_axis(values, first[..., None], -1)[..., 0]
        index[:, :, oh, ow] = flat
    for i in range(n):
        for j in range(c):
            hit = index[i, j] >= 0
            np.add.at(gx[i, j].reshape(-1), index[i, j][hit], gy[i, j][hit])
    return out, index, gx


def avg_pool_reference(x, gy, kernel, stride, padding, out_size, count_include_pad):
    n, c, h, w = x.shape
    out = np.empty((n, c) + out_size)
    gx = np.zeros(x.shape)
    for (oh, ow), cells in _window_grid(h, w, out_size, kernel, stride, padding, (1, 1)).items():
        if count_include_pad:
            # The window clipped to the padded input (PyTorch's divisor).
            h0, w0 = oh * stride[0] - padding[0], ow * stride[1] - padding[1]
            divisor = (min(h0 + kernel[0], h + padding[0]) - h0) * (
                min(w0 + kernel[1], w + padding[1]) - w0
            )
        else:
            divisor = len(cells)
        out[:, :, oh, ow] = sum(x[:, :, ih, iw] for ih, iw in cells) / divisor
        for ih, iw in cells:
            gx[:, :, ih, iw] += gy[:, :, oh, ow] / divisor
    return out, gx


@st.composite
def pool_case(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    ext = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    h = max(1, ext[0] - 2 * padding[0] + draw(st.integers(0, 6)))
    w = max(1, ext[1] - 2 * padding[1] + draw(st.integers(0, 6)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return dict(
        shape=shape,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    )


def _out_size(case, dilation):
    return tuple(
        pool_out_size(
            case["shape"][2 + i],
            case["kernel"][i],
            case["stride"][i],
            case["padding"][i],
            dilation[i],
            case["ceil_mode"],
        )
        for i in range(2)
    )


def _backward(fn, x, gy_seed=1, **kwargs):
    tx = minidl.tensor(x, requires_grad=True)
    out = fn(tx, **kwargs)
    if isinstance(out, tuple):
        out, index = out
    else:
        index = None
    gy = np.random.default_rng(gy_seed).standard_normal(out.shape).astype(x.dtype)
    out.backward(gy)
    return out.data, index, tx.grad.data, gy


@settings(max_examples=60, deadline=None)
@given(pool_case(), st.sampled_from([np.float32, np.float64]))
def test_max_pool2d_matches_reference(case, dtype):
    out_size = _out_size(case, case["dilation"])
    # Distinct values: the reference and the kernel must pick the same argmax.
    x = np.random.default_rng(0).permutation(np.prod(case["shape"])).reshape(case["shape"])
    x = x.astype(dtype)
    out, index, gx, gy = _backward(
        max_pool2d,
        x,
        kernel_size=case["kernel"],
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        ceil_mode=case["ceil_mode"],
        return_indices=True,
    )
    ref, ref_index, ref_gx = max_pool_reference(
        x,
        gy.astype(np.float64),
        case["kernel"],
        case["stride"],
        case["padding"],
        case["dilation"],
        out_size,
    )
    assert out.shape == ref.shape and out.dtype == dtype
    np.testing.assert_array_equal(out, ref)
    assert index.dtype == np.int64
    np.testing.assert_array_equal(index.data, ref_index)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(pool_case(), st.booleans())
def test_avg_pool2d_matches_reference(case, count_include_pad):
    out_size = _out_size(case, (1, 1))
    if min(out_size) < 1:
        return
    x = np.random.default_rng(0).standard_normal(case["shape"])
    out, _, gx, gy = _backward(
        avg_pool2d,
        x,
        kernel_size=case["kernel"],
        stride=case["stride"],
        padding=case["padding"],
        ceil_mode=case["ceil_mode"],
        count_include_pad=count_include_pad,
    )
    ref, ref_gx = avg_pool_reference(
        x, gy, case["kernel"], case["stride"], case["padding"], out_size, count_include_pad
    )
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape, output_size",
    [
        ((2, 3, 7, 5), 1),
        ((2, 3, 7, 5), (3, 2)),
        ((1, 2, 4, 4), (4, 4)),
        ((1, 1, 5, 9), (2, None)),
        ((1, 2, 3, 3), (5, 4)),
    ],
)
def test_adaptive_avg_pool2d_matches_reference(shape, output_size):
    x = np.random.default_rng(0).standard_normal(shape)
    out, _, gx, gy = _backward(adaptive_avg_pool2d, x, output_size=output_size)
    h, w = shape[2:]
    oh, ow = out.shape[2:]
    ref = np.empty(out.shape)
    ref_gx = np.zeros(shape)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            ref[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
            ref_gx[:, :, h0:h1, w0:w1] += gy[:, :, i : i + 1, j : j + 1] / ((h1 - h0) * (w1 - w0))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-12, atol=1e-12)


def test_global_avg_pool_is_plane_mean():
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 5)).astype(np.float32)
    out = adaptive_avg_pool2d(minidl.tensor(x), 1)
    assert out.shape == (3, 4, 1, 1)
    np.testing.assert_allclose(out.data[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-5)


def test_max_pool2d_ties_route_gradient_to_first_maximum():
    # Overlapping 3x3 windows, stride 1, over a constant plane: every window's first element.
    x = np.zeros((1, 1, 4, 4))
    out, index, gx, gy = _backward(max_pool2d, x, kernel_size=3, stride=1, return_indices=True)
    np.testing.assert_array_equal(index.data[0, 0], [[0, 1], [4, 5]])
    expected = np.zeros((4, 4))
    expected[[0, 0, 1, 1], [0, 1, 0, 1]] = gy[0, 0].reshape(-1)
    np.testing.assert_array_equal(gx[0, 0], expected)


def test_max_pool2d_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    tx = minidl.tensor(x, requires_grad=True)
    max_pool2d(tx, 2, stride=1).sum().backward()
    assert tx.grad.data[0, 0, 1, 1] == 4.0 and tx.grad.data.sum() == 4.0


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (max_pool2d, dict(kernel_size=3, stride=2, padding=1)),
        (avg_pool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        (adaptive_avg_pool2d, dict(output_size=(2, 3))),
    ],
)
def test_pool_gradcheck(fn, kwargs):
    # A permutation keeps max-pool away from ties (gradcheck's kinks).
    x = np.random.default_rng(0).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0
    tx = minidl.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: fn(t, **kwargs), [tx])
    assert np.abs(tx.grad.data).sum() > 0


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (max_pool2d, dict(kernel_size=2)),
        (max_pool2d, dict(kernel_size=3, stride=1, padding=1)),
        (avg_pool2d, dict(kernel_size=3, stride=2, padding=1)),
        (adaptive_avg_pool2d, dict(output_size=1)),
    ],
)
def test_pool_bitwise_identical_for_1_2_3_threads(fn, kwargs):
    x = np.random.default_rng(0).standard_normal((8, 6, 28, 28)).astype(np.float32)
    results = []
    before = minidl.get_num_threads()
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            out, _, gx, _ = _backward(fn, x, **kwargs)
            results.append((out.tobytes(), gx.tobytes()))
    finally:
        minidl.set_num_threads(before)
    assert results[0] == results[1] == results[2]


def test_pool_non_contiguous_input_is_made_contiguous():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 8))
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(max_pool2d(xt, 2).data, max_pool2d(minidl.tensor(x), 2).data)
    np.testing.assert_array_equal(avg_pool2d(xt, 2).data, avg_pool2d(minidl.tensor(x), 2).data)


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (max_pool2d, dict(kernel_size=2)),
        (avg_pool2d, dict(kernel_size=2)),
        (adaptive_avg_pool2d, dict(output_size=1)),
    ],
)
def test_pool_rejects_integer_input(fn, kwargs):
    with pytest.raises(TypeError, match=fn.__name__ + ".*int32"):
        fn(minidl.tensor(np.ones((1, 1, 4, 4), np.int32)), **kwargs)


@pytest.mark.parametrize(
    "fn, shape, kwargs, match",
    [
        (max_pool2d, (1, 1, 4, 4), dict(kernel_size=2, padding=2), "padding"),
        (max_pool2d, (1, 1, 4, 4), dict(kernel_size=0), "kernel_size"),
        (max_pool2d, (1, 1, 4, 4), dict(kernel_size=2, stride=0), "stride"),
        (max_pool2d, (1, 1, 4, 4), dict(kernel_size=2, dilation=0), "dilation"),
        (max_pool2d, (1, 1, 2, 2), dict(kernel_size=3), "too small"),
        (max_pool2d, (1, 1, 4, 4, 1), dict(kernel_size=2), "4-D"),
        (avg_pool2d, (1, 1, 4, 4), dict(kernel_size=3, padding=2), "padding"),
        (avg_pool2d, (1, 1, 1, 5), dict(kernel_size=2), "too small"),
        (adaptive_avg_pool2d, (1, 1, 4, 4), dict(output_size=0), "output_size"),
    ],
)
def test_pool_invalid_arguments_raise_value_error(fn, shape, kwargs, match):
    with pytest.raises(ValueError, match=fn.__name__ + ".*" + match):
        fn(minidl.tensor(np.ones(shape, np.float32)), **kwargs)


@pytest.mark.parametrize(
    "case",
    [
        dict(kernel=2, stride=2, padding=0, ceil_mode=False),
        dict(kernel=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel=(3, 2), stride=(1, 3), padding=(1, 0), ceil_mode=True),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(0).standard_normal((2, 3, 11, 9)).astype(dtype)
    args = (case["kernel"], case["stride"], case["padding"])
    for ours, theirs, extra in [
        (max_pool2d, F.max_pool2d, dict(ceil_mode=case["ceil_mode"], return_indices=True)),
        (avg_pool2d, F.avg_pool2d, dict(ceil_mode=case["ceil_mode"], count_include_pad=False)),
        (avg_pool2d, F.avg_pool2d, dict(ceil_mode=case["ceil_mode"], count_include_pad=True)),
    ]:
        tx = minidl.tensor(x, requires_grad=True)
        out = ours(tx, *args, **extra)
        px = torch.tensor(x, requires_grad=True)
        pout = theirs(px, *args, **extra)
        if isinstance(out, tuple):
            np.testing.assert_array_equal(out[1].data, pout[1].numpy())
            out, pout = out[0], pout[0]
        gy = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
        out.backward(gy)
        pout.backward(torch.tensor(gy))
        np.testing.assert_allclose(out.data, pout.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tx.grad.data, px.grad.numpy(), rtol=1e-6, atol=1e-6)
    out = adaptive_avg_pool2d(minidl.tensor(x), (4, 3))
    np.testing.assert_allclose(
        out.data, F.adaptive_avg_pool2d(torch.tensor(x), (4, 3)).numpy(), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 28, 28), (1, 2, 7, 9), (3, 1, 2, 64), (1, 1, 4, 34), (2, 2, 6, 66), (1, 1, 3, 3)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_2x2_stride2_matches_reference_with_ties(shape, dtype):
    # Few distinct values: many windows hold tied maxima (first one must win).
    x = np.random.default_rng(0).integers(0, 3, size=shape).astype(dtype)
    out, index, gx, gy = _backward(max_pool2d, x, kernel_size=2, return_indices=True)
    out_size = (shape[2] // 2, shape[3] // 2)
    ref, ref_index, ref_gx = max_pool_reference(
        x, gy.astype(np.float64), (2, 2), (2, 2), (0, 0), (1, 1), out_size
    )
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(index.data, ref_index)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1)])
def test_max_pool2d_propagates_nan_like_torch(kernel, stride):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 36)).astype(np.float32)
    x[0, 0, 1, 1] = x[1, 2, 4, 33] = x[1, 2, 5, 32] = np.nan
    out, index = max_pool2d(minidl.tensor(x), kernel, stride, return_indices=True)
    pout, pindex = torch.nn.functional.max_pool2d(
        torch.tensor(x), kernel, stride, return_indices=True
    )
    np.testing.assert_array_equal(out.data, pout.numpy())
    np.testing.assert_array_equal(index.data, pindex.numpy())


def guarded_array(shape, dtype=np.float32):
    """A C-contiguous array whose last byte is followed by an inaccessible page, so that a
    kernel reading past the input segfaults instead of passing silently. Returns (array,
    mapping to keep alive)."""
    import ctypes
    import mmap

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    page = mmap.PAGESIZE
    total = (nbytes + page - 1) // page * page + page
    buf = mmap.mmap(-1, total)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if ctypes.CDLL(None).mprotect(ctypes.c_void_p(addr + total - page), page, 0) != 0:
        pytest.skip("mprotect unavailable")
    a = np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape)), offset=total - page - nbytes)
    return a.reshape(shape), buf


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect guard page")
@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 1, 2, 34), (1, 2, 6, 66), (3, 1, 2, 64)])
def test_max_pool2d_2x2_reads_nothing_past_the_input(shape):
    x, _mapping = guarded_array(shape)
    x[...] = np.random.default_rng(0).standard_normal(shape)
    out = max_pool2d(x, 2)
    expected = x.reshape(shape[0], shape[1], shape[2] // 2, 2, shape[3] // 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(out.data, expected)


SPECIALS = np.array([np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, 1.0, -1.0, 2.0], np.float32)


def _generic_2x2(x, gy):
    """The generic kernels' 2x2 stride-2 pool (int64 argmax, zero then scatter-add)."""
    from minidl._kernels import pool as kernels

    N, C, H, W = x.shape
    out = np.empty((N, C, H // 2, W // 2), np.float32)
    index = np.empty(out.shape, np.int64)
    kernels.max_pool2d_forward(x, out, index, 2, 2, 2, 2, 0, 0, 1, 1, 1)
    gx = np.empty(x.shape, np.float32)
    kernels.max_pool2d_backward(gy, index, gx, 1)
    return out, index, gx


@pytest.mark.parametrize(
    "shape", [(2, 3, 28, 28), (1, 2, 7, 9), (1, 1, 3, 37), (2, 1, 5, 2), (1, 1, 1, 6),
              (1, 1, 6, 1), (3, 2, 10, 10), (1, 1, 2, 66)],
)
def test_window_code_kernels_give_the_generic_kernels_bits(shape):
    # Values, argmax and gradient of the 2x2 window-code kernels against the generic scalar
    # kernels: NaN of either sign, +-0 ties, +-inf in x; -0, NaN and +-inf in the gradient
    # (0 + -0 is +0 in a zeroed plane plus a scatter-add); odd sizes (uncovered last row and
    # column get +0) and planes with no window at all.
    from minidl._kernels import pool as kernels
    from minidl.ops.pool import _flat_index

    rng = np.random.default_rng(sum(shape))
    x = rng.choice(SPECIALS, size=shape).astype(np.float32)
    N, C, H, W = shape
    gy = rng.choice(SPECIALS, size=(N, C, H // 2, W // 2)).astype(np.float32)
    want_out, want_index, want_gx = _generic_2x2(x, gy)
    out = np.empty_like(want_out)
    code = np.empty(out.shape, np.uint8)
    kernels.max_pool2d_2x2_forward(x, out, code, 1)
    assert out.tobytes() == want_out.tobytes()
    assert np.array_equal(_flat_index(code, W), want_index)
    assert code.size == 0 or code.max() <= 3
    gx = np.full(shape, 7.0, np.float32)  # every element must be written
    kernels.max_pool2d_2x2_backward(gy, code, gx, 1)
    assert gx.tobytes() == want_gx.tobytes()


def test_window_codes_above_3_route_no_gradient_and_wrong_shapes_raise():
    from minidl._kernels import pool as kernels

    gy = np.ones((1, 1, 2, 3), np.float32)
    code = np.array([[[[0, 3, 200], [4, 1, 2]]]], np.uint8)
    gx = np.full((1, 1, 4, 6), 5.0, np.float32)
    kernels.max_pool2d_2x2_backward(gy, code, gx, 1)
    want = np.zeros((4, 6), np.float32)
    want[0, 0] = want[1, 3] = want[2, 3] = want[3, 4] = 1
    assert np.array_equal(gx[0, 0], want)
    with pytest.raises(ValueError, match="max_pool2d_2x2_backward: grad_out has shape"):
        kernels.max_pool2d_2x2_backward(gy, code, np.zeros((1, 1, 4, 8), np.float32), 1)
    with pytest.raises(ValueError, match="max_pool2d_2x2_backward: code has shape"):
        kernels.max_pool2d_2x2_backward(gy, np.ascontiguousarray(code[..., :2]), gx, 1)
    with pytest.raises(ValueError, match="max_pool2d_2x2_forward: out has shape"):
        kernels.max_pool2d_2x2_forward(gx, np.empty((1, 1, 2, 2), np.float32), None, 1)


@pytest.mark.parametrize("threads", [2, 3])
def test_window_code_kernels_bits_do_not_depend_on_the_thread_count(threads):
    from minidl._kernels import pool as kernels

    rng = np.random.default_rng(3)
    x = rng.choice(SPECIALS, size=(9, 7, 29, 31)).astype(np.float32)
    gy = rng.standard_normal((9, 7, 14, 15)).astype(np.float32)
    results = []
    for n in (1, threads):
        out = np.empty((9, 7, 14, 15), np.float32)
        code = np.empty(out.shape, np.uint8)
        kernels.max_pool2d_2x2_forward(x, out, code, n)
        gx = np.empty_like(x)
        kernels.max_pool2d_2x2_backward(gy, code, gx, n)
        results.append((out.tobytes(), code.tobytes(), gx.tobytes()))
    assert results[0] == results[1]


POOL_ISA_SCRIPT = """
import numpy as np
from minidl._kernels import pool as kernels
rng = np.random.default_rng(11)
specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 1.0, -1.0, 2.0], np.float32)
x = rng.choice(specials, size=(3, 2, 11, 45)).astype(np.float32)
gy = rng.choice(specials, size=(3, 2, 5, 22)).astype(np.float32)
out = np.empty((3, 2, 5, 22), np.float32)
code = np.empty(out.shape, np.uint8)
kernels.max_pool2d_2x2_forward(x, out, code, 1)
gx = np.empty_like(x)
kernels.max_pool2d_2x2_backward(gy, code, gx, 1)
np.savez(OUT, out=out, code=code, gx=gx)
"""


@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_window_code_kernels_give_the_same_bits_on_every_isa(isa, tmp_path):
    from childproc import isa_outputs

    default, forced = isa_outputs(POOL_ISA_SCRIPT, isa, tmp_path)
    for name in default:
        assert default[name].tobytes() == forced[name].tobytes(), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect guard page")
@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 1, 2, 34), (1, 2, 7, 66), (3, 1, 10, 10)])
def test_window_code_backward_reads_nothing_past_its_inputs(shape):
    # grad_out and the codes end at an inaccessible page: partial vectors must not read on.
    from minidl._kernels import pool as kernels

    N, C, H, W = shape
    out_shape = (N, C, H // 2, W // 2)
    gy, _m1 = guarded_array(out_shape)
    code, _m2 = guarded_array(out_shape, np.uint8)
    rng = np.random.default_rng(1)
    gy[...] = rng.standard_normal(out_shape)
    code[...] = rng.integers(0, 4, size=out_shape)
    gx = np.empty(shape, np.float32)
    kernels.max_pool2d_2x2_backward(gy, code, gx, 1)
    want = np.zeros(shape, np.float32)
    n, c, oh, ow = np.indices(out_shape)
    want[n, c, 2 * oh + code // 2, 2 * ow + code % 2] = gy
    assert np.array_equal(gx, want)
