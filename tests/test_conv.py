"""conv2d: forward and every gradient against a NumPy float64 reference, PyTorch where installed,
gradcheck, bitwise determinism across thread counts, and argument validation."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl.autograd import gradcheck
from minidl.nn.functional import conv2d, conv2d_relu


def _pad(x, pad):
    (pt, pb), (pl, pr) = pad
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _windows(xp, kh, kw, stride, dilation, out_size):
    """xp[:, :, oh*s + kh*d, ow*s + kw*d] for all (oh, ow): shape (N, C, OH, OW)."""
    h0, w0 = kh * dilation[0], kw * dilation[1]
    return xp[
        :,
        :,
        h0 : h0 + stride[0] * (out_size[0] - 1) + 1 : stride[0],
        w0 : w0 + stride[1] * (out_size[1] - 1) + 1 : stride[1],
    ]


def reference(x, w, b, gy, stride, pad, dilation, groups):
    """(out, grad_x, grad_w, grad_b) by einsum over kernel taps, in float64.

    pad = ((top, bottom), (left, right)); gy may be None (forward only)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    oc, cg, kh_, kw_ = w.shape
    ocg = oc // groups
    xp = _pad(x, pad)
    oh = (xp.shape[2] - dilation[0] * (kh_ - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kw_ - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oc, oh, ow))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for g in range(groups):
        cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * ocg, (g + 1) * ocg)
        for kh in range(kh_):
            for kw in range(kw_):
                win = _windows(xp[:, cs], kh, kw, stride, dilation, (oh, ow))
                out[:, os_] += np.einsum("nchw,oc->nohw", win, w[os_, :, kh, kw])
                if gy is not None:
                    gyg = gy[:, os_].astype(np.float64)
                    gw[os_, :, kh, kw] = np.einsum("nohw,nchw->oc", gyg, win)
                    _windows(gxp[:, cs], kh, kw, stride, dilation, (oh, ow))[...] += np.einsum(
                        "nohw,oc->nchw", gyg, w[os_, :, kh, kw]
                    )
    if b is not None:
        out += b.astype(np.float64)[None, :, None, None]
    if gy is None:
        return out, None, None, None
    (pt, _), (pl, _) = pad
    gx = gxp[:, :, pt : pt + h, pl : pl + wd]
    return out, gx, gw, gy.astype(np.float64).sum(axis=(0, 2, 3))


def run(x, w, b, gy, **kwargs):
    """minidl's (out, grad_x, grad_w, grad_b) for numpy inputs."""
    tx = minidl.tensor(x, requires_grad=True)
    tw = minidl.tensor(w, requires_grad=True)
    tb = None if b is None else minidl.tensor(b, requires_grad=True)
    out = conv2d(tx, tw, tb, **kwargs)
    out.backward(gy)
    return out.data, tx.grad.data, tw.grad.data, None if tb is None else tb.grad.data


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    ocg = draw(st.integers(1, 3))
    if draw(st.booleans()) and groups > 1:
        cg, ocg = 1, draw(st.integers(1, 2))  # depthwise (channel multiplier 1 or 2)
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    ext = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    h = max(1, ext[0] - 2 * pad[0] + draw(st.integers(0, 6)))
    w = max(1, ext[1] - 2 * pad[1] + draw(st.integers(0, 6)))
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return dict(
        shape=(n, cg * groups, h, w),
        wshape=(ocg * groups, cg, kh, kw),
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def _inputs(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal(case["wshape"]).astype(dtype)
    b = rng.standard_normal(case["wshape"][0]).astype(dtype) if case["bias"] else None
    return x, w, b


def _check_against_reference(case, dtype, tol):
    x, w, b = _inputs(case, dtype)
    pad = tuple((p, p) for p in case["padding"])
    out_ref, _, _, _ = reference(
        x, w, b, None, case["stride"], pad, case["dilation"], case["groups"]
    )
    gy = np.random.default_rng(1).standard_normal(out_ref.shape).astype(dtype)
    out_ref, gx_ref, gw_ref, gb_ref = reference(
        x, w, b, gy, case["stride"], pad, case["dilation"], case["groups"]
    )
    out, gx, gw, gb = run(
        x,
        w,
        b,
        gy,
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
    )
    assert out.dtype == dtype and gx.dtype == dtype and gw.dtype == dtype
    scale = max(1.0, float(np.abs(out_ref).max()))
    np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(gx, gx_ref, rtol=tol, atol=tol * max(1.0, np.abs(gx_ref).max()))
    np.testing.assert_allclose(gw, gw_ref, rtol=tol, atol=tol * max(1.0, np.abs(gw_ref).max()))
    if b is not None:
        np.testing.assert_allclose(gb, gb_ref, rtol=tol, atol=tol * max(1.0, np.abs(gb_ref).max()))


@settings(max_examples=60, deadline=None)
@given(conv_case())
def test_conv2d_matches_reference_float64(case):
    _check_against_reference(case, np.float64, 1e-10)


@settings(max_examples=30, deadline=None)
@given(conv_case())
def test_conv2d_matches_reference_float32(case):
    _check_against_reference(case, np.float32, 2e-5)


# Named shapes the kernel dispatch treats specially (LeNet's layers, wide 3x3, 1x1, depthwise)
# plus the edge cases the issue lists.
NAMED = {
    "lenet_conv1": dict(shape=(3, 1, 28, 28), wshape=(6, 1, 5, 5), padding=(2, 2)),
    "lenet_conv2": dict(shape=(3, 6, 14, 14), wshape=(16, 6, 5, 5)),
    "wide_3x3": dict(shape=(2, 32, 9, 11), wshape=(40, 32, 3, 3), padding=(1, 1)),
    "wide_3x3_stride2": dict(
        shape=(2, 20, 9, 8), wshape=(32, 20, 3, 3), padding=(1, 1), stride=(2, 2)
    ),
    "wide_dilated": dict(
        shape=(3, 16, 10, 9), wshape=(33, 16, 3, 3), padding=(2, 1), dilation=(2, 3)
    ),
    "wide_batch1": dict(shape=(1, 32, 6, 7), wshape=(40, 32, 3, 3), padding=(1, 1)),
    # Full 16-lane rows: the row-vector kernel takes this wide layer (forward, input gradient).
    "wide_rowvec": dict(shape=(3, 32, 6, 16), wshape=(48, 32, 3, 3), padding=(1, 1)),
    # 96 channels of 34-float rows: the row-vector kernel splits them into L1-sized blocks.
    "wide_rowvec_blocks": dict(shape=(2, 96, 3, 32), wshape=(96, 96, 3, 3), padding=(1, 1)),
    "pointwise_1x1": dict(shape=(2, 64, 5, 7), wshape=(33, 64, 1, 1)),
    "few_channels_1x1": dict(shape=(2, 3, 5, 7), wshape=(5, 3, 1, 1)),
    "packed_strided": dict(
        shape=(2, 5, 11, 9), wshape=(20, 5, 3, 3), stride=(2, 3), padding=(1, 2), dilation=(1, 2)
    ),
    "packed_17_channels": dict(shape=(2, 2, 6, 5), wshape=(17, 2, 3, 3)),
    # 48 channels: one 64-channel block with AVX-512 (its last 16 lanes padding), two of 32
    # elsewhere; 20 pixels, the last tile of 6 partly past them.
    "packed_48_channels_strided": dict(
        shape=(3, 4, 9, 7), wshape=(48, 4, 3, 3), stride=(2, 2), padding=(1, 1)
    ),
    "direct_dilated": dict(
        shape=(2, 3, 13, 40), wshape=(20, 3, 3, 2), padding=(2, 3), dilation=(2, 3)
    ),
    "depthwise": dict(shape=(2, 8, 7, 7), wshape=(8, 1, 3, 3), padding=(1, 1), groups=8),
    "batch1_image1x1": dict(shape=(1, 3, 1, 1), wshape=(5, 3, 1, 1)),
    "kernel_equals_image": dict(shape=(2, 2, 5, 4), wshape=(3, 2, 5, 4)),
    "stride_larger_than_kernel": dict(shape=(2, 2, 11, 10), wshape=(3, 2, 2, 3), stride=(4, 5)),
    "padding_kernel_minus_1": dict(shape=(1, 2, 3, 3), wshape=(2, 2, 4, 4), padding=(3, 3)),
    "dilation": dict(shape=(2, 3, 12, 10), wshape=(4, 3, 3, 2), dilation=(3, 2), padding=(1, 0)),
    # Stride phases (_pad_planes) under the row-vector kernels: a wide stride-2 layer with full
    # 16-lane rows (forward and input gradient by phases, as ResNet's 16->32 s2), few channels
    # (every pass by phases), odd sizes and paddings, dilation with stride, stride > kernel and
    # padding > kernel.
    "strided_rowvec": dict(
        shape=(2, 16, 9, 32), wshape=(32, 16, 3, 3), stride=(2, 2), padding=(1, 1)
    ),
    "strided_few_channels": dict(
        shape=(3, 3, 13, 33), wshape=(5, 3, 3, 3), stride=(2, 2), padding=(1, 1)
    ),
    "strided_odd": dict(shape=(2, 4, 11, 35), wshape=(6, 4, 3, 4), stride=(2, 3), padding=(2, 0)),
    "strided_dilated": dict(
        shape=(2, 3, 14, 36), wshape=(4, 3, 3, 3), stride=(3, 2), dilation=(2, 1), padding=(1, 2)
    ),
    "strided_beyond_kernel": dict(
        shape=(2, 3, 17, 50), wshape=(4, 3, 2, 2), stride=(3, 3), padding=(1, 0)
    ),
    "strided_padding_beyond_kernel": dict(
        shape=(2, 2, 7, 30), wshape=(3, 2, 2, 2), stride=(2, 2), padding=(3, 3)
    ),
    # A ResNet stem: 3-channel input gradient (4 x 4 register tiles), row-vector weight
    # gradient for 16 output channels.
    "stem": dict(shape=(2, 3, 8, 32), wshape=(16, 3, 3, 3), padding=(1, 1)),
}


def _named(name):
    case = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True)
    case.update(NAMED[name])
    return case


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(NAMED))
def test_conv2d_named_shapes_match_reference(name, dtype):
    _check_against_reference(_named(name), dtype, 2e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (1, 1)])
def test_conv2d_padding_same_and_valid(kernel):
    x, w, b = _inputs(dict(shape=(2, 3, 7, 6), wshape=(4, 3) + kernel, bias=True), np.float64)
    total = (kernel[0] - 1, kernel[1] - 1)
    # PyTorch's 'same' puts the odd pixel of padding at the bottom/right.
    pad = ((total[0] // 2, total[0] - total[0] // 2), (total[1] // 2, total[1] - total[1] // 2))
    gy = np.random.default_rng(2).standard_normal((2, 4, 7, 6))
    refs = reference(x, w, b, gy, (1, 1), pad, (1, 1), 1)
    for got, ref in zip(run(x, w, b, gy, padding="same"), refs):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    out = conv2d(minidl.tensor(x), minidl.tensor(w), padding="valid")
    np.testing.assert_allclose(
        out.data,
        reference(x, w, None, None, (1, 1), ((0, 0),) * 2, (1, 1), 1)[0],
        rtol=1e-10,
        atol=1e-10,
    )


@pytest.mark.parametrize(
    "name",
    [
        "lenet_conv1",
        "lenet_conv2",
        "wide_3x3",
        "wide_rowvec",
        "wide_rowvec_blocks",
        "wide_3x3_stride2",
        "packed_strided",
        "depthwise",
    ],
)
def test_conv2d_relu_is_fused_relu_of_conv2d(name):
    case = _named(name)
    kwargs = dict(
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
    )
    x, w, b = _inputs(case, np.float32)
    plain = conv2d(minidl.tensor(x), minidl.tensor(w), minidl.tensor(b), **kwargs).data
    gy = np.random.default_rng(3).standard_normal(plain.shape).astype(np.float32)
    tx = minidl.tensor(x, requires_grad=True)
    tw = minidl.tensor(w, requires_grad=True)
    tb = minidl.tensor(b, requires_grad=True)
    out = conv2d_relu(tx, tw, tb, **kwargs)
    out.backward(gy)
    _, gx, gw, gb = run(x, w, b, np.where(plain > 0, gy, np.float32(0)), **kwargs)
    assert (out.data >= 0).all() and (out.data == 0).any() and (out.data > 0).any()
    np.testing.assert_array_equal(out.data, np.maximum(plain, 0))
    np.testing.assert_array_equal(tx.grad.data, gx)
    np.testing.assert_array_equal(tw.grad.data, gw)
    np.testing.assert_array_equal(tb.grad.data, gb)


@pytest.mark.parametrize(
    "name", ["lenet_conv2", "dilation", "depthwise", "stride_larger_than_kernel"]
)
def test_conv2d_gradcheck(name):
    case = _named(name)
    n, c, h, w = case["shape"]
    case["shape"] = (1, c, min(h, 7), min(w, 7))
    if name == "lenet_conv2":
        case["wshape"] = (4, 6, 3, 3)
    x, w, b = (minidl.tensor(a, requires_grad=True) for a in _inputs(case, np.float64))
    assert gradcheck(
        lambda x, w, b: conv2d(
            x,
            w,
            b,
            stride=case["stride"],
            padding=case["padding"],
            dilation=case["dilation"],
            groups=case["groups"],
        ),
        [x, w, b],
    )
    assert np.abs(x.grad.data).sum() > 0 and np.abs(w.grad.data).sum() > 0


def test_conv2d_skips_input_gradient_when_not_needed():
    x, w, b = _inputs(_named("lenet_conv1"), np.float32)
    tx, tw = minidl.tensor(x), minidl.tensor(w, requires_grad=True)
    conv2d(tx, tw, padding=2).sum().backward()
    assert tx.grad is None and tw.grad is not None
    _, _, gw_ref, _ = reference(
        x, w, None, np.ones((3, 6, 28, 28)), (1, 1), ((2, 2), (2, 2)), (1, 1), 1
    )
    np.testing.assert_allclose(tw.grad.data, gw_ref, rtol=2e-5, atol=1e-3)


@pytest.mark.parametrize(
    "name",
    [
        "lenet_conv1",
        "lenet_conv2",
        "wide_3x3",
        "wide_batch1",
        "wide_rowvec",
        "wide_rowvec_blocks",
        "pointwise_1x1",
        "packed_strided",
        "depthwise",
        "dilation",
        "strided_rowvec",
        "strided_few_channels",
        "strided_odd",
        "stem",
    ],
)
def test_conv2d_bitwise_identical_for_1_2_3_threads(name):
    case = _named(name)
    case["shape"] = (7,) + case["shape"][1:]
    x, w, b = _inputs(case, np.float32)
    results = []
    before = minidl.get_num_threads()
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            out = conv2d(
                minidl.tensor(x),
                minidl.tensor(w),
                minidl.tensor(b),
                stride=case["stride"],
                padding=case["padding"],
                dilation=case["dilation"],
                groups=case["groups"],
            )
            gy = np.random.default_rng(4).standard_normal(out.shape).astype(np.float32)
            results.append(
                run(
                    x,
                    w,
                    b,
                    gy,
                    stride=case["stride"],
                    padding=case["padding"],
                    dilation=case["dilation"],
                    groups=case["groups"],
                )
            )
    finally:
        minidl.set_num_threads(before)
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            assert a.tobytes() == b_.tobytes()


def test_conv2d_non_contiguous_input_is_made_contiguous():
    x, w, b = _inputs(_named("lenet_conv2"), np.float64)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    out = conv2d(xt, minidl.tensor(w), minidl.tensor(b))
    np.testing.assert_allclose(
        out.data,
        reference(x, w, b, None, (1, 1), ((0, 0),) * 2, (1, 1), 1)[0],
        rtol=1e-12,
        atol=1e-12,
    )


def test_conv2d_rejects_wrong_dtypes():
    x = minidl.tensor(np.ones((1, 2, 5, 5), np.float32))
    w = minidl.tensor(np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="conv2d.*int64"):
        conv2d(minidl.tensor(np.ones((1, 2, 5, 5), np.int64)), w)
    # Mixed float dtypes raise RuntimeError, as in PyTorch.
    with pytest.raises(RuntimeError, match="conv2d.*float64.*float32|conv2d.*float32.*float64"):
        conv2d(x, minidl.tensor(np.ones((3, 2, 3, 3), np.float64)))
    with pytest.raises(RuntimeError, match="conv2d: bias"):
        conv2d(x, w, minidl.tensor(np.ones(3, np.float64)))


@pytest.mark.parametrize(
    "xshape, wshape, kwargs, match",
    [
        ((1, 2, 5, 5), (3, 3, 3, 3), {}, "channels"),
        ((1, 2, 5, 5, 1), (3, 2, 3, 3), {}, "4-D input"),
        ((1, 2, 5, 5), (3, 2, 3), {}, "4-D weight"),
        ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, "divisible by groups"),
        ((1, 6, 5, 5), (4, 3, 3, 3), {"groups": 4}, "channels"),
        ((1, 2, 3, 3), (3, 2, 5, 5), {}, "larger than the padded input"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"dilation": 3}, "larger than the padded input"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"stride": 0}, "stride"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"stride": (1, -1)}, "stride"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"dilation": 0}, "dilation"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"padding": -1}, "padding"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"padding": "same", "stride": 2}, "same"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"padding": "full"}, "padding"),
        ((1, 2, 5, 5), (3, 2, 3, 3), {"groups": 0}, "groups"),
    ],
)
def test_conv2d_invalid_arguments_raise_value_error(xshape, wshape, kwargs, match):
    x = minidl.tensor(np.ones(xshape, np.float32))
    w = minidl.tensor(np.ones(wshape, np.float32))
    with pytest.raises(ValueError, match="conv2d.*" + match):
        conv2d(x, w, **kwargs)


def test_conv2d_bias_shape_checked():
    x = minidl.tensor(np.ones((1, 2, 5, 5), np.float32))
    w = minidl.tensor(np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(3,\)"):
        conv2d(x, w, minidl.tensor(np.ones(4, np.float32)))


TORCH_CASES = [
    "lenet_conv1",
    "lenet_conv2",
    "wide_rowvec",
    "wide_3x3_stride2",
    "wide_dilated",
    "packed_strided",
    "depthwise",
    "dilation",
    "padding_kernel_minus_1",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", TORCH_CASES)
def test_conv2d_matches_torch(name, dtype):
    torch = pytest.importorskip("torch")
    case = _named(name)
    x, w, b = _inputs(case, dtype)
    kwargs = dict(
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
    )
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
    gy = np.random.default_rng(5).standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.tensor(gy))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for got, want in zip(run(x, w, b, gy, **kwargs), (ty, tx.grad, tw.grad, tb.grad)):
        want = want.detach().numpy()
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


ISA_SCRIPT = """
import numpy as np, minidl
from minidl.nn.functional import conv2d
from minidl.nn.functional import max_pool2d
rng = np.random.default_rng(0)
results = {}
for name, xs, ws, pad in [("c1", (3, 1, 28, 28), (6, 1, 5, 5), 2),
                          ("c2", (3, 6, 14, 14), (16, 6, 5, 5), 0),
                          ("c3", (2, 3, 9, 40), (1, 3, 3, 3), 1)]:
    x = minidl.tensor(rng.standard_normal(xs).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal(ws).astype(np.float32), requires_grad=True)
    b = minidl.tensor(rng.standard_normal(ws[0]).astype(np.float32), requires_grad=True)
    y = conv2d(x, w, b, padding=pad, relu=True)
    p, i = max_pool2d(y, 2, return_indices=True)
    (p * minidl.tensor(rng.standard_normal(p.shape).astype(np.float32))).sum().backward()
    results[name] = [a.data for a in (y, p, i, x.grad, w.grad, b.grad)]
np.savez(OUT, **{f"{k}_{j}": a for k, v in results.items() for j, a in enumerate(v)})
"""


@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_narrower_isa_instances_agree_with_the_default(isa, tmp_path):
    """The AVX2 and baseline instances of the direct conv and 2x2 pool kernels (forced with
    MINIDL_FORCE_ISA) agree with the default instance to rounding."""
    from childproc import isa_outputs

    default, forced = isa_outputs(ISA_SCRIPT, isa, tmp_path)
    for key, a in default.items():
        b = forced[key]
        if a.dtype == np.int64:
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            np.testing.assert_allclose(
                a, b, rtol=1e-4, atol=1e-4 * max(1, np.abs(a).max()), err_msg=key
            )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect guard page")
@pytest.mark.parametrize(
    "name",
    [
        "lenet_conv1",
        "lenet_conv2",
        "wide_3x3",
        "pointwise_1x1",
        "packed_strided",
        "packed_48_channels_strided",
        "depthwise",
        "direct_dilated",
        "strided_rowvec",
        "strided_odd",
        "strided_dilated",
        "stem",
    ],
)
def test_conv2d_reads_nothing_past_its_inputs(name):
    from test_pool import guarded_array

    case = _named(name)
    x, w, b = _inputs(case, np.float32)
    gx, _keep_x = guarded_array(x.shape)
    gx[...] = x
    kwargs = dict(
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
    )
    out = conv2d(gx, minidl.tensor(w, requires_grad=True), minidl.tensor(b), **kwargs)
    gy, _keep_g = guarded_array(out.shape)
    gy[...] = np.random.default_rng(6).standard_normal(out.shape)
    tx = minidl.tensor(gx, requires_grad=True)
    tw = minidl.tensor(w, requires_grad=True)
    conv2d_relu(tx, tw, minidl.tensor(b, requires_grad=True), **kwargs).backward(gy)
    ref = reference(
        x,
        w,
        b,
        None,
        case["stride"],
        tuple((p, p) for p in case["padding"]),
        case["dilation"],
        case["groups"],
    )[0]
    np.testing.assert_allclose(out.data, ref, rtol=2e-5, atol=2e-5 * max(1, np.abs(ref).max()))
    assert tx.grad is not None and tw.grad is not None


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
@pytest.mark.parametrize(
    "name",
    [
        "wide_3x3_stride2",
        "strided_rowvec",
        "strided_few_channels",
        "strided_odd",
        "strided_dilated",
        "strided_beyond_kernel",
        "strided_padding_beyond_kernel",
        "stem",
        "packed_strided",
    ],
)
def test_conv2d_forced_algorithm_matches_reference(name, algorithm):
    """Each algorithm of minidl.backends.conv on the strided and stem shapes: "direct" runs the
    row-vector kernels by stride phases for every pass (also on the wide layers, whose weight
    gradient "auto" gives to the GEMM), "im2col" the GEMM for every pass."""
    from minidl.backends import conv as backend

    saved = backend.algorithm
    backend.algorithm = algorithm
    try:
        _check_against_reference(_named(name), np.float32, 2e-5)
    finally:
        backend.algorithm = saved


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 2), (2, 1), (1, 3)])
@pytest.mark.parametrize("top, left", [(0, 0), (1, 1), (2, 3), (-1, 0), (1, 2), (0, 5)])
@pytest.mark.parametrize("width", [7, 32, 33, 64, 70])
def test_pad_planes_splits_stride_phases_like_numpy(stride, top, left, width):
    """_pad_planes (conv_pad_phases_f32, with its whole-plane copy and its two-permute stride-2
    column split) against NumPy slicing of the zero-padded image, planes cut short by Hp, Wp
    included, and the zero slack after the planes."""
    from minidl._kernels import conv as kernels

    sh, sw = stride
    x = np.random.default_rng(width).standard_normal((2, 3, 9, width)).astype(np.float32)
    for hp, wp in [(9 // sh + 2, width // sw + 3), (4, 16 // sw + 2), (9, width)]:
        got = kernels._pad_planes("test_pad", x, None, hp, wp, top, left, 4, 5, 1, sh, sw)
        big = np.zeros((2, 4, 9 + 3 + hp * sh, width + 5 + wp * sw), np.float32)
        r0, c0 = max(top, 0), max(left, 0)
        big[:, :3, r0 : r0 + 9 + min(top, 0), c0 : c0 + width + min(left, 0)] = x[
            :, :, -min(top, 0) :, -min(left, 0) :
        ]
        want = np.stack(
            [
                big[:, :, pr::sh, pc::sw][:, :, :hp, :wp]
                for pr in range(sh)
                for pc in range(sw)
            ],
            axis=2,
        )
        n = want.size
        np.testing.assert_array_equal(got[:n].reshape(want.shape), want)
        np.testing.assert_array_equal(got[n:], 0)


@pytest.mark.parametrize(
    "src_shape,w_shape,top,left,dil,relu_in",
    [
        ((3, 16, 10, 10), (16, 6, 5, 5), 4, 4, 1, False),  # LeNet conv2's input gradient
        ((2, 5, 6, 7), (5, 3, 3, 3), 2, 1, 1, True),
        ((2, 4, 3, 9), (4, 2, 4, 2), 5, 1, 2, False),  # padding past the kernel, dilated rows
        ((1, 40, 12, 40), (40, 3, 3, 3), 1, 1, 1, False),  # several channel blocks
        ((2, 3, 32, 32), (16, 3, 5, 5), 2, 2, 1, False),  # 2 vectors per row: 1-row tiles
    ],
    ids=str,
)
def test_row_clips_skip_only_taps_over_zero_rows(src_shape, w_shape, top, left, dil, relu_in):
    from minidl._kernels import conv as conv_kernels

    # The clipped row-vector kernel leaves out taps that read zero padding rows: equal to the
    # unclipped sum (array_equal takes -0.0 == 0.0), with a fused ReLU mask and a bias too.
    rng = np.random.default_rng(3)
    src = rng.standard_normal(src_shape).astype(np.float32)
    mask = np.maximum(rng.standard_normal(src_shape), 0).astype(np.float32) if relu_in else None
    flip = w_shape[0] == src_shape[1]
    weight = rng.standard_normal(w_shape).astype(np.float32)
    oc = w_shape[1] if flip else w_shape[0]
    kh, kw = w_shape[2:]
    oh = src_shape[2] + 2 * top - dil * (kh - 1)
    ow = src_shape[3] + 2 * left - (kw - 1)
    bias = rng.standard_normal(oc).astype(np.float32)
    clips = conv_kernels.row_clips(oh, kh, kw, top, src_shape[2], dil)
    assert clips is not None
    layout = conv_kernels.direct_layout(src_shape[1], oc, oh, ow, kh, kw, 1, 1, dil, 1, 1)
    Hp, Wp = layout["Hp"], layout["Wp"]
    xpad = conv_kernels._pad_planes("test", src, mask, Hp, Wp, top, left, src_shape[1], 0, 1)
    outs = []
    for table in (None, clips):
        out = np.empty((src_shape[0], oc, oh, ow), np.float32)
        conv_kernels._direct_rows(xpad, Hp, Wp, 0, 1, 1, weight, flip, bias, out, dil, 1, True,
                                  2, None, table)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    # The table is obeyed: with every tap left out of every row, only the bias remains.
    none = clips.copy()
    none[1:] = clips[0]
    conv_kernels._direct_rows(xpad, Hp, Wp, 0, 1, 1, weight, flip, bias, out, dil, 1, True, 2,
                              None, none)
    np.testing.assert_array_equal(out, np.broadcast_to(np.maximum(bias, 0)[:, None, None],
                                                       out.shape))


def test_row_clips_table():
    from minidl._kernels import conv as conv_kernels

    # LeNet conv2's input gradient: 4 zero rows above and below 10 rows of the gradient.
    clips = conv_kernels.row_clips(14, 5, 5, 4, 10, 1)
    assert clips[0] == 25
    assert clips[1::2].tolist() == [20, 15, 10, 5] + [0] * 10
    assert clips[2::2].tolist() == [25] * 10 + [20, 15, 10, 5]
    assert conv_kernels.row_clips(10, 5, 5, 0, 14, 1) is None  # no padding: nothing to skip
    # Padding wider than the kernel: rows with no data read no tap (only the bias).
    clips = conv_kernels.row_clips(9, 2, 3, 4, 1, 1)
    assert clips[1::2].tolist() == [6, 6, 6, 3, 0, 0, 0, 0, 0]
    assert clips[2::2].tolist() == [6, 6, 6, 6, 3, 0, 0, 0, 0]


@pytest.mark.parametrize("stride,pad,flip", [(1, 2, False), (2, 1, False), (1, 4, True)])
def test_direct_conv_per_image_items_equal_image_groups(stride, pad, flip):
    # With 8+ images per thread _direct_conv pads each image inside its work item; with fewer
    # it pads groups of images first. Same kernel calls on the same padded values: same bits.
    from minidl._kernels import conv as conv_kernels

    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 5, 11, 13)).astype(np.float32)
    mask = np.maximum(rng.standard_normal(x.shape), 0).astype(np.float32)
    w = rng.standard_normal((5, 7, 5, 5) if flip else (7, 5, 3, 3)).astype(np.float32)
    kh, kw = w.shape[2:]
    oc = w.shape[1] if flip else w.shape[0]
    oh = (11 + 2 * pad - kh) // stride + 1
    ow = (13 + 2 * pad - kw) // stride + 1
    bias = rng.standard_normal(oc).astype(np.float32)
    outs = []
    for threads in (1, 2, 4):  # per image, per image, groups (16 < 8 * 4)
        out = np.empty((16, oc, oh, ow), np.float32)
        conv_kernels._direct_conv(x, mask, w, flip, bias, out, pad, pad, 1, 1, True, threads,
                                  stride, stride)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("n, c, oc, hw, k, pad", [(33, 6, 16, 14, 5, 0), (40, 7, 5, 9, 5, 1),
                                                  (32, 12, 3, 11, 3, 0), (47, 1, 2, 6, 5, 0)])
def test_images_input_gradient_matches_reference_and_thread_counts(n, c, oc, hw, k, pad):
    # The 16-images-per-lane input gradient (conv._images_backward_input): batches not a
    # multiple of 16, one or two channel passes, a ReLU mask with NaN, against float64.
    from minidl._kernels import conv as kernels

    rng = np.random.default_rng(n + c)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((oc, c, k, k)).astype(np.float32)
    o = hw + 2 * pad - k + 1
    gy = rng.standard_normal((n, oc, o, o)).astype(np.float32)
    mask = rng.standard_normal(gy.shape).astype(np.float32)
    mask[0, 0, 0, 0] = np.nan
    assert kernels.backward_paths(x, w, gy, True, False, 1, 1, 1, 1, 1)[0] == "images"
    g = np.where(mask <= 0, 0, gy).astype(np.float64)
    ref = np.zeros((n, c, hw + 2 * pad, hw + 2 * pad))
    for kh in range(k):
        for kw in range(k):
            ref[:, :, kh:kh + o, kw:kw + o] += np.einsum("nohw,oc->nchw", g, w[:, :, kh, kw])
    ref = ref[:, :, pad:pad + hw, pad:pad + hw]
    results = []
    for threads in (1, 2, 3):
        gx = np.full(x.shape, 7.0, np.float32)
        kernels._images_backward_input(gy, mask, w, gx, pad, pad, threads)
        results.append(gx.tobytes())
    np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("c, oc, hw, k, pad, path", [
    (6, 16, 14, 5, 0, "images"),  # LeNet conv2: the flipped kernel pads a 10x10 gradient by 4
    (6, 16, 14, 3, 0, "images"),  # 12 -> 14 px: the padding is a quarter of the padded row
    (1, 32, 28, 3, 0, "direct"),  # 26 -> 28 px: too little padding to pay for the gather
    (1, 6, 28, 5, 2, "direct"),  # LeNet conv1: flipped padding 2 of 28 + 4
    (16, 16, 14, 5, 0, "direct"),  # three passes of the images kernel's channel block
])
def test_images_input_gradient_rule(c, oc, hw, k, pad, path):
    from minidl._kernels import conv as kernels

    x = np.zeros((64, c, hw, hw), np.float32)
    gy = np.zeros((64, oc, hw + 2 * pad - k + 1, hw + 2 * pad - k + 1), np.float32)
    w = np.zeros((oc, c, k, k), np.float32)
    assert kernels.backward_paths(x, w, gy, True, False, 1, 1, 1, 1, 1)[0] == path


@pytest.mark.parametrize("n, c, oc, h, w, k, stride, pad", [
    (3, 16, 32, 32, 32, 3, 2, 1),  # ResNet-20's 16->32 stride 2: four live phases of 16 x 16
    (2, 3, 5, 7, 9, 3, 2, 1),  # odd sizes: phases of 4 x 5, 4 x 4, 3 x 5, 3 x 4
    (1, 2, 3, 1, 2, 3, 2, 1),  # one row
    (2, 3, 4, 10, 11, 3, 3, 1),  # stride 3: nine phases, odd column count
    (2, 3, 4, 9, 10, 2, 4, 0),  # stride > kernel: 12 of the 16 phases get no tap (zeros)
    (1, 2, 3, 5, 6, 1, 2, 0),  # 1x1 stride 2: one live phase
])
def test_strided_input_gradient_unphase(n, c, oc, h, w, k, stride, pad):
    # Every stride phase is computed apart and each grad_x row is then written once from all
    # of them (conv_unphase_f32), zeros where no tap reaches: every pixel of a NaN-filled
    # grad_x equals the float64 reference, with the same bits for 1-3 threads.
    from minidl._kernels import conv as kernels

    rng = np.random.default_rng(n + c + h + w + k)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c, k, k)).astype(np.float32)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    gy = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    want = reference(x, wt, None, gy, (stride, stride), ((pad, pad), (pad, pad)), (1, 1), 1)[1]
    results = []
    for threads in (1, 2, 3):
        gx = np.full(x.shape, np.nan, np.float32)
        kernels._strided_backward_input(gy, None, wt, gx, stride, stride, pad, pad, threads)
        np.testing.assert_allclose(gx, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        results.append(gx.tobytes())
    assert results[0] == results[1] == results[2]


# (n, c, oc, hw, stride) of 3x3 convolutions (padding 1) whose weight gradient takes 8-channel
# tiles with AVX-512: 16x16 outputs, stride 2, a 7-wide row (tail lanes), three blocks of 8.
DW_TILE_SCRIPT = """
import numpy as np
from minidl._kernels import conv as kernels
rng = np.random.default_rng(5)
out = {}
for n, c, oc, hw, stride in [(9, 3, 16, 16, 1), (5, 4, 32, 31, 2), (3, 2, 8, 7, 1),
                             (2, 3, 24, 12, 1)]:
    o = (hw + 2 - 3) // stride + 1
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    g = rng.standard_normal((n, oc, o, o)).astype(np.float32)
    relu_out = np.maximum(rng.standard_normal((n, oc, o, o)), 0).astype(np.float32)
    out[f"in_{n}_x"], out[f"in_{n}_g"], out[f"in_{n}_relu"] = x, g, relu_out
    out[f"in_{n}_stride"] = np.array(stride)
    gw = np.empty((oc, c, 3, 3), np.float32)
    gb = np.empty(oc, np.float32)
    for threads in (1, 2, 3):
        kernels._direct_backward_weight(x, g, relu_out, gw, gb, stride, stride, 1, 1, 1, 1,
                                        threads)
        out[f"w_{n}_{threads}"] = gw.copy()
        out[f"b_{n}_{threads}"] = gb.copy()
np.savez(OUT, **out)
"""


def test_weight_gradient_tiles_agree_bitwise_across_isas(tmp_path):
    # The row-vector weight gradient takes 8-channel tiles with AVX-512 on small images (4 or 3
    # channels otherwise, as on AVX2): no accumulator changes its order, so the AVX2 instance
    # gives the same bits, for 1-3 threads alike, and both equal the float64 reference.
    from childproc import isa_outputs

    default, forced = isa_outputs(DW_TILE_SCRIPT, "x86-64-v3", tmp_path)
    for key, a in default.items():
        np.testing.assert_array_equal(a, forced[key], err_msg=key)
        if key[0] in "wb":
            assert a.tobytes() == default[key[: key.rindex("_")] + "_1"].tobytes(), key
    for key in [k for k in default if k.startswith("in_") and k.endswith("_x")]:
        n = key.split("_")[1]
        x, g, relu_out = (default[f"in_{n}_{name}"] for name in ("x", "g", "relu"))
        stride = int(default[f"in_{n}_stride"])
        gm = np.where(relu_out > 0, g, 0).astype(np.float32)
        wt = np.zeros((g.shape[1], x.shape[1], 3, 3), np.float32)
        want = reference(x, wt, None, gm, (stride, stride), ((1, 1), (1, 1)), (1, 1), 1)[2]
        np.testing.assert_allclose(default[f"w_{n}_1"], want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max())
        sums = gm.sum(axis=(0, 2, 3))
        np.testing.assert_allclose(default[f"b_{n}_1"], sums, rtol=1e-4,
                                   atol=1e-4 * np.abs(sums).max())


@pytest.mark.parametrize("c, oc, hw, k, stride, pad, path", [
    (32, 64, 16, 3, 2, 1, "packed"),  # ResNet-20's 32->64 stride 2: 8-pixel rows
    (64, 64, 4, 3, 1, 1, "packed"),  # 4-pixel rows
    (32, 64, 12, 5, 1, 0, "packed"),  # 5x5, 8-pixel rows
    (64, 128, 16, 1, 2, 0, "gemm"),  # 1x1: the GEMM ties and stays
    (32, 32, 16, 3, 1, 1, "direct"),  # rows that fill the lanes
])
def test_wide_forward_rule(c, oc, hw, k, stride, pad, path):
    # Wide layers whose rows fill the row-vector lanes badly: the channel-packed kernel, not
    # im2col + GEMM, where the kernel is spatial; and it computes what the reference does.
    from minidl._kernels import conv as kernels

    rng = np.random.default_rng(c + oc + hw)
    o = (hw + 2 * pad - k) // stride + 1
    x = rng.standard_normal((3, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((oc, c, k, k)).astype(np.float32)
    out = np.empty((3, oc, o, o), np.float32)
    assert kernels.forward_path(x, w, out, stride, stride, 1, 1, 1) == path
    want = reference(x, w, None, None, (stride, stride), ((pad, pad), (pad, pad)), (1, 1), 1)[0]
    for threads in (1, 2):
        kernels.conv2d_forward(x, w, None, out, stride, stride, pad, pad, 1, 1, 1, False, threads)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, oc",
    [
        ((17, 64, 5, 7), 33),  # 3 weight-gradient chunks; m, n not multiples of the tile
        ((9, 5, 16, 16), 64),  # P = 256: whole panels
        ((1, 1, 3, 3), 7),  # k = 1 (forward), one image
        ((2, 3, 1, 1), 5),  # one pixel
        ((0, 4, 3, 3), 5),  # empty batch
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_conv_is_the_per_image_gemm_bitwise(shape, oc, dtype, threads, monkeypatch):
    """A 1x1 convolution's three passes on the GEMM path are the per-image GEMMs (the weight
    gradient summed image by image within each chunk of IMAGES_PER_DW_CHUNK, chunks in order)
    to the bit, for any thread count: prefetching the next image (gemm_ahead) changes no
    result."""
    from minidl._kernels import conv as conv_kernels
    from minidl._kernels import gemm
    from minidl.backends import conv as backend

    monkeypatch.setattr(backend, "algorithm", "im2col")  # the GEMM path for few channels too

    rng = np.random.default_rng(11)
    n, c, h, wd = shape
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((oc, c, 1, 1)).astype(dtype)
    gy = rng.standard_normal((n, oc, h, wd)).astype(dtype)
    geometry = ((1, 1), (0, 0), (1, 1), 1)
    out, gx, gw = np.empty_like(gy), np.empty_like(x), np.empty_like(w)
    backend.conv2d_forward(x, w, None, out, *geometry, False, threads)
    backend.conv2d_backward(x, w, gy, None, gx, gw, None, *geometry, threads)

    w2, xs, gs = w.reshape(oc, c), x.reshape(n, c, h * wd), gy.reshape(n, oc, h * wd)
    want_out, want_gx = np.empty_like(gs), np.empty_like(xs)
    for i in range(n):
        gemm.matmul(w2, xs[i], want_out[i])
        gemm.matmul(w2, gs[i], want_gx[i], trans_a=True)
    chunk = conv_kernels.IMAGES_PER_DW_CHUNK
    partials = []
    for start in range(0, n, chunk):
        p = np.empty((oc, c), dtype)
        for i in range(start, min(n, start + chunk)):
            gemm.matmul(gs[i], xs[i], p, trans_b=True, beta=0.0 if i == start else 1.0)
        partials.append(p)
    want_gw = np.zeros((oc, c), dtype)
    if partials:
        want_gw = partials[0].copy()
        for p in partials[1:]:
            want_gw += p
    np.testing.assert_array_equal(out, want_out.reshape(out.shape))
    np.testing.assert_array_equal(gx, want_gx.reshape(gx.shape))
    np.testing.assert_array_equal(gw, want_gw.reshape(gw.shape))
    if n:
        ref_out, ref_gx, ref_gw, _ = reference(x, w, None, gy, (1, 1), ((0, 0),) * 2, (1, 1), 1)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol * np.abs(ref_out).max())
        np.testing.assert_allclose(gw, ref_gw, rtol=tol, atol=tol * np.abs(ref_gw).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_im2col_top_left_padding_past_the_output(stride, dtype):
    """im2col + GEMM (every pass) where the top and left padding (3) exceed what the output
    rows reach of the first kernel row and column, the bottom and right padding being 0 (out's
    size implies it, as for ONNX's asymmetric pads): those column rows are all zeros, and the
    stride-2 chunks start at a lane past their first output."""
    from minidl._kernels import conv as kernels

    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 3, 2, 11)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    pad = ((3, 0), (3, 0))
    oh, ow = (2 + 3 - 3) // stride + 1, (11 + 3 - 3) // stride + 1
    gy = rng.standard_normal((2, 4, oh, ow)).astype(dtype)
    want = reference(x, w, b, gy, (stride, stride), pad, (1, 1), 1)
    out = np.empty((2, 4, oh, ow), dtype)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    assert kernels.forward_path(x, w, out, stride, stride, 1, 1, 1, "im2col") == "gemm"
    kernels.conv2d_forward(x, w, b, out, stride, stride, 3, 3, 1, 1, 1, False, 1, "im2col")
    kernels.conv2d_backward(x, w, gy, None, gx, gw, gb, stride, stride, 3, 3, 1, 1, 1, 1, "im2col")
    for got, ref in zip((out, gx, gw, gb), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
