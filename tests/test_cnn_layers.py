"""The spatial layers past LeNet (minidl.nn.spatial and their functions): transposed
convolution, interpolation, the 1-d convolution and pooling forms. Forward and gradients
against plain NumPy float64 references, gradcheck in float64, PyTorch where installed
(skipped otherwise), odd shapes and the errors bad arguments raise."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

RNG = np.random.default_rng(0)


def _t(a, grad=False):
    return minidl.tensor(a, requires_grad=grad)


# -- conv_transpose2d ---------------------------------------------------------------------------

def conv_transpose_reference(x, w, b, stride, padding, output_padding, groups, dilation):
    """The definition: every input pixel scatters its weighted kernel into the output."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    n, c, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    full = np.zeros((n, ocg * groups, (h - 1) * sh + dh * (kh - 1) + 1 + oph,
                     (wd - 1) * sw + dw * (kw - 1) + 1 + opw))
    cg = c // groups
    for g, i, j in itertools.product(range(groups), range(kh), range(kw)):
        part = np.einsum("nchw,co->nohw", x[:, g * cg:(g + 1) * cg],
                         w[g * cg:(g + 1) * cg, :, i, j])
        full[:, g * ocg:(g + 1) * ocg, i * dh:i * dh + (h - 1) * sh + 1:sh,
             j * dw:j * dw + (wd - 1) * sw + 1:sw] += part
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    return out if b is None else out + b[:, None, None]


CONV_T_CASES = [
    dict(),
    dict(stride=2),
    dict(stride=(2, 3), padding=(1, 2)),
    dict(stride=2, output_padding=1),
    dict(dilation=2, padding=1),
    # output_padding >= stride is allowed below the dilation: rows no input reaches.
    dict(stride=2, dilation=3, output_padding=2),
    dict(groups=2),
    dict(stride=3, padding=1, output_padding=(2, 0), groups=4, dilation=(1, 2)),
    # stride larger than the kernel: gaps of zeros (plus bias) between the kernel copies.
    dict(stride=4),
    # padding beyond the kernel extent crops into the output.
    dict(stride=3, padding=2),
]


def _conv_t_arrays(cfg, n=2, c=4, h=5, w=6, ocg=3, k=(3, 2), dtype=np.float64):
    groups = cfg.get("groups", 1)
    x = RNG.standard_normal((n, c, h, w)).astype(dtype)
    weight = RNG.standard_normal((c, ocg) + k).astype(dtype)
    bias = RNG.standard_normal(ocg * groups).astype(dtype)
    return x, weight, bias


def _full_cfg(cfg):
    pairs = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1}
    out = {name: cfg.get(name, default) for name, default in pairs.items()}
    out = {name: v if isinstance(v, tuple) else (v, v) for name, v in out.items()}
    return out["stride"], out["padding"], out["output_padding"], cfg.get("groups", 1), (
        out["dilation"])


@pytest.mark.parametrize("cfg", CONV_T_CASES)
def test_conv_transpose2d_matches_the_numpy_definition(cfg):
    x, w, b = _conv_t_arrays(cfg)
    out = F.conv_transpose2d(x, w, b, **cfg)
    np.testing.assert_allclose(out.data, conv_transpose_reference(x, w, b, *_full_cfg(cfg)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONV_T_CASES)
def test_conv_transpose2d_gradcheck(cfg):
    x, w, b = _conv_t_arrays(cfg, n=1, h=3, w=2, ocg=2, k=(2, 3))
    tx, tw, tb = _t(x, True), _t(w, True), _t(b, True)
    assert gradcheck(lambda a, c, d: F.conv_transpose2d(a, c, d, **cfg), [tx, tw, tb])
    for t in (tx, tw, tb):
        assert np.abs(t.grad.data).sum() > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", CONV_T_CASES)
def test_conv_transpose2d_matches_torch(cfg, dtype):
    torch = pytest.importorskip("torch")
    x, w, b = _conv_t_arrays(cfg, dtype=dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    expected = torch.nn.functional.conv_transpose2d(tx, tw, tb, **cfg)
    mx, mw, mb = _t(x, True), _t(w, True), _t(b, True)
    out = F.conv_transpose2d(mx, mw, mb, **cfg)
    assert out.dtype == dtype
    gy = RNG.standard_normal(tuple(expected.shape)).astype(dtype)
    expected.backward(torch.tensor(gy))
    out.backward(_t(gy))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=tol, atol=tol)
    for mine, theirs in ((mx, tx), (mw, tw), (mb, tb)):
        np.testing.assert_allclose(mine.grad.data, theirs.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape, cfg", [
    ((8, 32, 8, 8), dict(stride=2, padding=1, output_padding=1)),  # a DCGAN/U-Net upsampler
    ((8, 32, 8, 8), dict(padding=1)),  # 3x3 stride 1: the Winograd-eligible input gradient
])
def test_conv_transpose2d_float32_fast_paths_match_torch(shape, cfg):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal(shape).astype(np.float32)
    w = (RNG.standard_normal((shape[1], 32, 3, 3)) / 17).astype(np.float32)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    expected = torch.nn.functional.conv_transpose2d(tx, tw, **cfg)
    mx, mw = _t(x, True), _t(w, True)
    out = F.conv_transpose2d(mx, mw, **cfg)
    gy = RNG.standard_normal(tuple(expected.shape)).astype(np.float32)
    expected.backward(torch.tensor(gy))
    out.backward(_t(gy))
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-4, atol=5e-4)
    np.testing.assert_allclose(mw.grad.data, tw.grad.numpy(), rtol=1e-4, atol=5e-4)


def test_conv_transpose2d_bitwise_identical_for_1_2_3_threads():
    x = RNG.standard_normal((4, 16, 9, 9)).astype(np.float32)
    w = RNG.standard_normal((16, 8, 4, 4)).astype(np.float32)
    results = []
    before = minidl.get_num_threads()
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            tx, tw = _t(x, True), _t(w, True)
            out = F.conv_transpose2d(tx, tw, stride=2, padding=1)
            out.backward(minidl.ones_like(out))
            results.append((out.data, tx.grad.data, tw.grad.data))
    finally:
        minidl.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_conv_transpose2d_odd_shapes():
    w = RNG.standard_normal((3, 2, 3, 3))
    # A 1x1 image: the output is the kernel itself (times the pixel).
    x = RNG.standard_normal((1, 3, 1, 1))
    np.testing.assert_allclose(F.conv_transpose2d(x, w).data,
                               np.einsum("c,cokl->okl", x[0, :, 0, 0], w)[None])
    # An empty batch: an empty output of the right shape, zero weight gradient.
    tw = _t(w, True)
    out = F.conv_transpose2d(np.zeros((0, 3, 4, 4)), tw, stride=2)
    assert out.shape == (0, 2, 9, 9)
    out.sum().backward()
    assert np.array_equal(tw.grad.data, np.zeros_like(w))
    # Unbatched (C, H, W), as PyTorch accepts.
    x = RNG.standard_normal((3, 4, 5))
    np.testing.assert_allclose(F.conv_transpose2d(x, w, stride=2).data,
                               F.conv_transpose2d(x[None], w, stride=2).data[0])
    # A transposed input (minidl copies it contiguous) gives the transposed array's result.
    base = RNG.standard_normal((2, 3, 6, 5))
    view = _t(base).transpose(2, 3)
    np.testing.assert_allclose(F.conv_transpose2d(view, w).data,
                               conv_transpose_reference(np.swapaxes(base, 2, 3), w, None,
                                                        (1, 1), (0, 0), (0, 0), 1, (1, 1)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(output_padding=1), ValueError, "output_padding must be smaller than either stride"),
    (dict(stride=2, output_padding=2), ValueError, "output_padding must be smaller"),
    (dict(padding=3), ValueError, r"conv_transpose2d: input .* gives an output of size"),
    (dict(groups=3), ValueError, "not divisible by groups=3"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
])
def test_conv_transpose2d_bad_arguments_raise(kwargs, error, match):
    x, w = np.zeros((1, 4, 2, 2)), np.zeros((4, 2, 3, 3))
    with pytest.raises(error, match=match):
        F.conv_transpose2d(x, w, **kwargs)


def test_conv_transpose2d_bad_shapes_and_dtypes_raise():
    w = np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"expects an input with 4 channels, got input \(1, 3"):
        F.conv_transpose2d(np.zeros((1, 3, 2, 2)), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv_transpose2d(np.zeros((1, 4, 2, 2)), w, np.zeros(4))
    with pytest.raises(ValueError, match="expected a 4-D input"):
        F.conv_transpose2d(np.zeros((4, 2)), w)
    # Mixed float dtypes raise RuntimeError, as conv2d's and PyTorch's.
    with pytest.raises(RuntimeError, match="input is float32 but weight is float64"):
        F.conv_transpose2d(np.zeros((1, 4, 2, 2), np.float32), w)
    with pytest.raises(TypeError, match="expected a float32 or float64 input"):
        F.conv_transpose2d(np.zeros((1, 4, 2, 2), np.int64), w)


def test_conv_transpose2d_module_defaults_init_and_output_size():
    torch = pytest.importorskip("torch")
    m = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    t = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert m.weight.shape == tuple(t.weight.shape) == (4, 3, 3, 3)
    assert m.bias.shape == (6,) and m.weight.dtype == np.float32
    # PyTorch's bound: 1 / sqrt(fan_in) with fan_in = out_channels // groups * KH * KW = 27.
    bound = 1 / np.sqrt(27)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.8 * bound
    assert nn.ConvTranspose2d(2, 2, 1, bias=False).bias is None
    t.weight.data = torch.tensor(m.weight.data)
    t.bias.data = torch.tensor(m.bias.data)
    x = RNG.standard_normal((2, 4, 5, 5)).astype(np.float32)
    for size in (None, (10, 9), (2, 4, 9, 10)):
        out = m(_t(x), output_size=size)
        expected = t(torch.tensor(x), output_size=size).detach().numpy()
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="valid sizes range from 9 to 10"):
        m(_t(x), output_size=(11, 9))
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    assert "output_padding" not in repr(m) and "groups=2" in repr(m)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    # <conv2d(y, w), x> == <y, conv_transpose2d(x, w)>: the defining property.
    w = RNG.standard_normal((3, 2, 3, 3))
    y = RNG.standard_normal((2, 2, 9, 8))
    x = RNG.standard_normal(F.conv2d(y, w, stride=2, padding=1).shape)
    lhs = np.sum(F.conv2d(y, w, stride=2, padding=1).data * x)
    ct = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=(0, 1)).data
    assert ct.shape == y.shape
    np.testing.assert_allclose(lhs, np.sum(y * ct), rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=4, stride=2, padding=1, bias=False),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
    dict(kernel_size=(2, 3), stride=(3, 1), dilation=(1, 2), padding=(0, 2)),
])
def test_conv_transpose2d_onnx_export_matches_onnxruntime(tmp_path, kwargs):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from minidl import onnx as mo

    minidl.manual_seed(0)
    model = nn.ConvTranspose2d(4, 6, **kwargs)
    path = tmp_path / "m.onnx"
    x = RNG.standard_normal((2, 4, 5, 6)).astype(np.float32)
    mo.export(model, (x,), path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):  # the traced batch and another (a dynamic batch axis)
        (got,) = session.run(None, {session.get_inputs()[0].name: batch})
        np.testing.assert_allclose(got, model(_t(batch)).data, rtol=1e-5, atol=1e-5)
    assert [n.op_type for n in __import__("onnx").load(str(path)).graph.node] == [
        "ConvTranspose"]


@pytest.mark.parametrize("make", [
    lambda: nn.Upsample(scale_factor=2),
    lambda: nn.Upsample(size=(7, 9), mode="bilinear"),
    lambda: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
    lambda: nn.ReflectionPad2d(2),
    lambda: nn.ReplicationPad2d((1, 0, 2, 1)),
    lambda: nn.PixelShuffle(2),
    lambda: nn.PixelUnshuffle(1),
    # The 1-d layers: the 2-d ops between reshapes.
    lambda: nn.ConvTranspose1d(4, 2, 3, stride=2),
    lambda: nn.Conv1d(4, 2, 3, padding=2, padding_mode="reflect"),
    lambda: nn.MaxPool1d(2),
    lambda: nn.AvgPool1d(3),
    lambda: nn.Upsample(scale_factor=2, mode="linear"),
])
def test_composite_layers_export_to_onnx(tmp_path, make):
    """interpolate and the pad modes are index_select chains (Gather, Mul, Add in ONNX)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from minidl import onnx as mo

    model = make()
    one_d = isinstance(model, (nn.ConvTranspose1d, nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)) or (
        getattr(model, "mode", None) == "linear")
    x = RNG.standard_normal((2, 4, 9) if one_d else (2, 4, 5, 6)).astype(np.float32)
    mo.export(model, (x,), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):
        (got,) = session.run(None, {session.get_inputs()[0].name: batch})
        np.testing.assert_allclose(got, model(_t(batch)).data, rtol=1e-6, atol=1e-6)


def test_adaptive_max_pool_with_unequal_windows_raises_export_error(tmp_path):
    pytest.importorskip("onnx")
    from minidl.onnx import ExportError, export

    with pytest.raises(ExportError, match=r"AdaptiveMaxPool2d: output size \(3, 3\) does not "
                                          r"divide the input's \(4, 4\)"):
        export(nn.AdaptiveMaxPool2d(3), (np.zeros((1, 4, 4, 4), np.float32),), tmp_path / "m")
    assert not (tmp_path / "m").exists()


# -- interpolate --------------------------------------------------------------------------------

def interpolate_reference(x, out_size, mode, align_corners, scales):
    """Per output pixel, in float64: PyTorch's source-position formulas."""
    spatial = x.shape[2:]

    def taps(k, o):
        n, m = spatial[k], out_size[k]
        if mode == "nearest":
            step = 1 / scales[k] if scales[k] else n / m
            return [(min(int(np.floor(o * step)), n - 1), 1.0)]
        if align_corners:
            src = (n - 1) / (m - 1) * o if m > 1 else 0.0
        else:
            step = 1 / scales[k] if scales[k] else n / m
            src = max(step * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n - 1)
        lam = min(max(src - i0, 0.0), 1.0)
        return [(i0, 1 - lam), (min(i0 + 1, n - 1), lam)]

    out = np.zeros(x.shape[:2] + tuple(out_size))
    for pos in itertools.product(*(range(m) for m in out_size)):
        for combo in itertools.product(*(taps(k, o) for k, o in enumerate(pos))):
            weight = np.prod([wt for _, wt in combo])
            out[(...,) + pos] += weight * x[(...,) + tuple(i for i, _ in combo)]
    return out


INTERP_CASES = [
    ((2, 3, 5, 7), "nearest", None, dict(size=(8, 9))),
    ((2, 3, 5, 7), "nearest", None, dict(size=3)),
    ((2, 3, 5, 7), "nearest", None, dict(scale_factor=2)),
    ((2, 3, 5, 7), "nearest", None, dict(scale_factor=(1.5, 0.5))),
    ((2, 3, 5, 7), "bilinear", False, dict(size=(8, 9))),
    ((2, 3, 5, 7), "bilinear", True, dict(size=(8, 9))),
    ((2, 3, 5, 7), "bilinear", False, dict(scale_factor=(1.7, 0.6))),
    ((2, 3, 5, 7), "bilinear", True, dict(scale_factor=2)),
    ((2, 3, 5, 7), "bilinear", False, dict(size=(2, 1))),
    ((1, 1, 1, 1), "bilinear", False, dict(size=(3, 4))),
    ((1, 1, 1, 1), "bilinear", True, dict(size=(3, 1))),
    ((1, 1, 1, 1), "nearest", None, dict(scale_factor=3)),
    ((2, 3, 7), "nearest", None, dict(size=11)),
    ((2, 3, 7), "linear", False, dict(scale_factor=0.5)),
    ((2, 3, 7), "linear", True, dict(size=12)),
    ((1, 2, 3, 4, 5), "trilinear", False, dict(scale_factor=1.5)),
]


@pytest.mark.parametrize("shape, mode, align_corners, kwargs", INTERP_CASES)
def test_interpolate_matches_the_numpy_definition(shape, mode, align_corners, kwargs):
    x = RNG.standard_normal(shape)
    out = F.interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
    scales = kwargs.get("scale_factor")
    dims = len(shape) - 2
    scales = (None,) * dims if scales is None else (
        scales if isinstance(scales, tuple) else (scales,) * dims)
    expected = interpolate_reference(x, out.shape[2:], mode, align_corners, scales)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, mode, align_corners, kwargs", INTERP_CASES)
def test_interpolate_gradcheck(shape, mode, align_corners, kwargs):
    tx = _t(RNG.standard_normal(shape), True)
    assert gradcheck(lambda t: F.interpolate(t, mode=mode, align_corners=align_corners,
                                             **kwargs), [tx])
    assert np.abs(tx.grad.data).sum() > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode, align", [("nearest", None), ("nearest-exact", None),
                                         ("bilinear", False), ("bilinear", True)])
def test_interpolate_matches_torch(mode, align, dtype):
    torch = pytest.importorskip("torch")
    tol = 1e-13 if dtype == np.float64 else 1e-6
    for shape, kwargs in itertools.product(
            [(2, 3, 5, 7), (1, 1, 1, 1), (1, 2, 7, 3)],
            [dict(size=(8, 9)), dict(size=3), dict(scale_factor=2), dict(scale_factor=(1.7, 2.6)),
             dict(scale_factor=3.3, recompute_scale_factor=True), dict(size=(2, 1)),
             dict(scale_factor=0.45)]):
        if shape == (1, 1, 1, 1) and kwargs.get("scale_factor") == 0.45:
            continue  # an empty output: both raise
        x = RNG.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        expected = torch.nn.functional.interpolate(tx, mode=mode, align_corners=align, **kwargs)
        mx = _t(x, True)
        out = F.interpolate(mx, mode=mode, align_corners=align, **kwargs)
        assert out.shape == tuple(expected.shape) and out.dtype == dtype
        if mode.startswith("nearest"):  # the same pixels, bit for bit
            assert np.array_equal(out.data, expected.detach().numpy())
        else:
            np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=tol, atol=tol)
        gy = RNG.standard_normal(out.shape).astype(dtype)
        expected.backward(torch.tensor(gy))
        out.backward(_t(gy))
        np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=tol, atol=tol * 10)


def test_interpolate_1d_and_3d_match_torch():
    torch = pytest.importorskip("torch")
    for shape, mode, kwargs in [((2, 3, 7), "nearest", dict(size=11)),
                                ((2, 3, 7), "linear", dict(scale_factor=0.5)),
                                ((2, 3, 7), "linear", dict(size=12, align_corners=True)),
                                ((2, 3, 3, 4, 5), "nearest", dict(scale_factor=1.5)),
                                ((2, 3, 3, 4, 5), "trilinear", dict(size=(4, 3, 7)))]:
        x = RNG.standard_normal(shape)
        expected = torch.nn.functional.interpolate(torch.tensor(x), mode=mode, **kwargs)
        np.testing.assert_allclose(F.interpolate(x, mode=mode, **kwargs).data,
                                   expected.numpy(), rtol=1e-13, atol=1e-13)


def test_interpolate_odd_inputs():
    # An empty batch keeps its shape; a non-contiguous view resamples its values.
    assert F.interpolate(np.zeros((0, 2, 3, 3)), scale_factor=2).shape == (0, 2, 6, 6)
    base = RNG.standard_normal((1, 2, 4, 3))
    view = _t(base).transpose(2, 3)
    np.testing.assert_allclose(
        F.interpolate(view, size=(5, 5), mode="bilinear").data,
        F.interpolate(np.ascontiguousarray(np.swapaxes(base, 2, 3)), size=(5, 5),
                      mode="bilinear").data)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), ValueError, "either size or scale_factor should be defined"),
    (dict(size=2, scale_factor=2), ValueError, "only one of size or scale_factor"),
    (dict(size=(2, 2, 2)), ValueError, r"one value per spatial dim of the input \[3, 3\]"),
    (dict(size=2, align_corners=True), ValueError, "align_corners option can only be set"),
    (dict(size=2, mode="bicubic"), NotImplementedError, "mode 'bicubic' is not implemented"),
    (dict(size=2, mode="linear"), NotImplementedError, "mode 'linear' needs 3-D input"),
    (dict(size=2, mode="bilinear", antialias=True), NotImplementedError, "antialias"),
    (dict(scale_factor=0.2), ValueError, "sizes should be greater than 0"),
])
def test_interpolate_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.interpolate(np.zeros((1, 1, 3, 3)), **kwargs)


def test_interpolate_nearest_copies_integer_images_and_linear_needs_floats():
    image = RNG.integers(0, 256, (1, 3, 4, 5)).astype(np.uint8)
    out = F.interpolate(image, scale_factor=2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.data, image.repeat(2, axis=2).repeat(2, axis=3))
    with pytest.raises(TypeError, match="mode 'bilinear' needs a float input, got dtype uint8"):
        F.interpolate(image, scale_factor=2, mode="bilinear")


def test_upsample_modules():
    x = RNG.standard_normal((1, 2, 3, 4))
    np.testing.assert_array_equal(nn.Upsample(scale_factor=2)(_t(x)).data,
                                  x.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_allclose(
        nn.UpsamplingBilinear2d(size=(5, 7))(_t(x)).data,
        F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True).data)
    np.testing.assert_array_equal(nn.UpsamplingNearest2d(size=(6, 8))(_t(x)).data,
                                  nn.Upsample(scale_factor=2.0)(_t(x)).data)
    assert "scale_factor=2.0, mode='nearest'" in repr(nn.Upsample(scale_factor=2))


# -- the 1-d forms ------------------------------------------------------------------------------

def conv1d_reference(x, w, b, stride, padding, dilation):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    k = w.shape[2]
    ol = (xp.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], ol))
    for o in range(ol):
        window = xp[:, :, o * stride:o * stride + dilation * (k - 1) + 1:dilation]
        out[:, :, o] = np.einsum("nck,ock->no", window, w)
    return out + b[:, None]


@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (3, 2, 2), (5, 0, 1)])
def test_conv1d_matches_the_numpy_definition_and_gradcheck(stride, padding, dilation):
    x, w, b = RNG.standard_normal((2, 3, 9)), RNG.standard_normal((4, 3, 3)), RNG.standard_normal(4)
    out = F.conv1d(x, w, b, stride, padding, dilation)
    np.testing.assert_allclose(out.data, conv1d_reference(x, w, b, stride, padding, dilation),
                               rtol=1e-12, atol=1e-12)
    tx, tw, tb = _t(x[:1, :, :7], True), _t(w, True), _t(b, True)
    assert gradcheck(lambda a, c, d: F.conv1d(a, c, d, stride, padding, dilation), [tx, tw, tb])
    assert np.abs(tx.grad.data).sum() > 0


def test_1d_layers_match_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x = RNG.standard_normal((2, 4, 11))
    w, b = RNG.standard_normal((6, 2, 3)), RNG.standard_normal(6)
    cases = [
        (lambda m, a, c, d: m.conv1d(a, c, d, stride=2, padding=1, groups=2), True),
        (lambda m, a, c, d: m.conv1d(a, c, d, padding="same", dilation=2, groups=2), True),
        (lambda m, a, c, d: m.max_pool1d(a, 3, stride=2, padding=1), False),
        (lambda m, a, c, d: m.max_pool1d(a, 2, dilation=2, ceil_mode=True), False),
        (lambda m, a, c, d: m.avg_pool1d(a, 3, stride=2, padding=1, count_include_pad=False),
         False),
        (lambda m, a, c, d: m.avg_pool1d(a, 4, ceil_mode=True), False),
    ]
    for fn, with_weights in cases:
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        mx, mw, mb = _t(x, True), _t(w, True), _t(b, True)
        expected, out = fn(tF, tx, tw, tb), fn(F, mx, mw, mb)
        assert out.shape == tuple(expected.shape)
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        gy = RNG.standard_normal(out.shape)
        expected.backward(torch.tensor(gy))
        out.backward(_t(gy))
        pairs = ((mx, tx), (mw, tw), (mb, tb)) if with_weights else ((mx, tx),)
        for mine, theirs in pairs:
            np.testing.assert_allclose(mine.grad.data, theirs.grad.numpy(), rtol=1e-12,
                                       atol=1e-12)
    values, index = F.max_pool1d(x, 3, 2, return_indices=True)
    t_values, t_index = tF.max_pool1d(torch.tensor(x), 3, 2, return_indices=True)
    np.testing.assert_array_equal(values.data, t_values.numpy())
    np.testing.assert_array_equal(index.data, t_index.numpy())


def test_1d_modules_match_torch_defaults():
    torch = pytest.importorskip("torch")
    m, t = nn.Conv1d(4, 6, 3, padding=1, groups=2), torch.nn.Conv1d(4, 6, 3, padding=1, groups=2)
    assert m.weight.shape == tuple(t.weight.shape) and m.kernel_size == t.kernel_size
    assert m.stride == t.stride and m.padding == t.padding and m.dilation == t.dilation
    bound = 1 / np.sqrt(2 * 3)
    assert np.abs(m.weight.data).max() <= bound
    t.weight.data, t.bias.data = torch.tensor(m.weight.data), torch.tensor(m.bias.data)
    x = RNG.standard_normal((2, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(m(_t(x)).data, t(torch.tensor(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert repr(m) == repr(t)
    for mine, theirs in ((nn.MaxPool1d(3, 2), torch.nn.MaxPool1d(3, 2)),
                         (nn.AvgPool1d(3), torch.nn.AvgPool1d(3))):
        np.testing.assert_allclose(mine(_t(x)).data, theirs(torch.tensor(x)).numpy(), rtol=1e-6)
    values, index = nn.MaxPool1d(2, return_indices=True)(_t(x))
    assert values.shape == (2, 4, 4) and index.dtype == np.int64


def test_1d_forms_raise_on_bad_input():
    with pytest.raises(ValueError, match=r"conv1d: expected a 3-D input \(N, C, L\), got shape"):
        F.conv1d(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="conv1d: expected a 3-D weight"):
        F.conv1d(np.zeros((1, 2, 3)), np.zeros((1, 2, 1, 1)))
    with pytest.raises(ValueError, match="max_pool1d: expected a 3-D input"):
        F.max_pool1d(np.zeros((1, 2, 3, 3)), 2)
    with pytest.raises(ValueError, match="kernel_size must be an int or a 1-sequence"):
        F.avg_pool1d(np.zeros((1, 2, 3)), (2, 2))
    with pytest.raises(ValueError, match="Conv1d: stride must be an int or a 1-sequence"):
        nn.Conv1d(1, 1, 3, stride=(1, 2))


# -- adaptive_max_pool2d ------------------------------------------------------------------------

def adaptive_max_reference(x, out_size):
    """Per window [floor(i*H/OH), ceil((i+1)*H/OH)): the maximum and its first flat position."""
    n, c, h, w = x.shape
    out = np.empty((n, c) + out_size)
    index = np.empty((n, c) + out_size, dtype=np.int64)
    for i, j in itertools.product(range(out_size[0]), range(out_size[1])):
        r0, r1 = i * h // out_size[0], -(-(i + 1) * h // out_size[0])
        c0, c1 = j * w // out_size[1], -(-(j + 1) * w // out_size[1])
        window = x[:, :, r0:r1, c0:c1].reshape(n, c, (r1 - r0) * (c1 - c0))
        k = window.argmax(axis=-1)
        out[:, :, i, j] = window.max(axis=-1)
        index[:, :, i, j] = (r0 + k // (c1 - c0)) * w + c0 + k % (c1 - c0)
    return out, index


@pytest.mark.parametrize("shape, output_size", [
    ((2, 3, 7, 6), (3, 4)), ((2, 3, 5, 5), 1), ((1, 1, 1, 1), (2, 3)), ((2, 2, 10, 3), (4, None)),
    ((1, 2, 4, 4), 4), ((0, 2, 4, 4), 2),
])
def test_adaptive_max_pool2d_matches_reference_and_torch(shape, output_size):
    x = RNG.permutation(int(np.prod(shape))).reshape(shape) / 7.0  # no ties
    out, index = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    ref, ref_index = adaptive_max_reference(x, out.shape[2:])
    np.testing.assert_array_equal(out.data, ref)
    np.testing.assert_array_equal(index.data, ref_index)
    assert index.dtype == np.int64
    torch = pytest.importorskip("torch")
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        tx, mx = torch.tensor(xd, requires_grad=True), _t(xd, True)
        t_out, t_index = torch.nn.functional.adaptive_max_pool2d(tx, output_size, True)
        m_out = F.adaptive_max_pool2d(mx, output_size)
        np.testing.assert_array_equal(m_out.data, t_out.detach().numpy())
        np.testing.assert_array_equal(index.data, t_index.numpy())
        gy = RNG.standard_normal(m_out.shape).astype(dtype)
        t_out.backward(torch.tensor(gy))
        m_out.backward(_t(gy))
        np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_adaptive_max_pool2d_gradcheck_and_nan():
    tx = _t(RNG.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0, True)
    assert gradcheck(lambda t: F.adaptive_max_pool2d(t, (3, 4)), [tx])
    assert np.abs(tx.grad.data).sum() > 0
    # A NaN wins its window, the last NaN's position (PyTorch's running-maximum rule).
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [0.0, 0.0, 0.0, 0.0]]]])
    out, index = F.adaptive_max_pool2d(x, 1, return_indices=True)
    assert np.isnan(out.data).all() and index.data.item() == 3
    m = nn.AdaptiveMaxPool2d((1, 2), return_indices=True)
    values, index = m(_t(x))
    np.testing.assert_array_equal(index.data, [[[[1, 3]]]])
    with pytest.raises(ValueError, match="adaptive_max_pool2d: expected a 4-D input"):
        F.adaptive_max_pool2d(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        F.adaptive_max_pool2d(np.zeros((1, 1, 2, 2)), 0)


# -- pad modes and the padding layers ----------------------------------------------------------

def pad_reference(x, amounts, mode):
    """np.pad on the last dims: 'reflect' is NumPy's reflect, 'replicate' its edge, 'circular'
    its wrap (non-negative amounts)."""
    widths = [(0, 0)] * x.ndim
    for k in range(len(amounts) // 2):
        widths[x.ndim - 1 - k] = (amounts[2 * k], amounts[2 * k + 1])
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge",
                                   "circular": "wrap"}[mode])


PAD_CASES = [((2, 3, 6), (1, 2)), ((2, 3, 6), (5, 0)), ((2, 1, 4, 5), (1, 2, 3, 0)),
             ((1, 4, 5), (2, 2, 1, 1)), ((2, 2, 3, 4, 5), (1, 2, 2, 1, 0, 2)), ((3, 4), (3, 1)),
             ((0, 1, 3, 4), (1, 1, 1, 1))]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape, amounts", PAD_CASES)
def test_pad_modes_match_numpy_and_gradcheck(mode, shape, amounts):
    x = RNG.standard_normal(shape)
    if mode == "circular" and shape[-1] < 5:
        amounts = tuple(min(a, 3) for a in amounts)
    np.testing.assert_array_equal(F.pad(x, amounts, mode).data, pad_reference(x, amounts, mode))
    if x.size:
        tx = _t(x[:1], True)
        assert gradcheck(lambda t: F.pad(t, amounts, mode), [tx])
        assert np.abs(tx.grad.data).sum() > 0


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes_match_torch_with_crops(mode):
    torch = pytest.importorskip("torch")
    for shape, amounts in PAD_CASES + [((1, 3, 4), (-1, 2)), ((1, 3, 4), (2, -1)),
                                       ((2, 1, 4, 5), (-2, 1, 1, -1))]:
        x = RNG.standard_normal(shape)
        tx, mx = torch.tensor(x, requires_grad=True), _t(x, True)
        expected = torch.nn.functional.pad(tx, amounts, mode=mode)
        out = F.pad(mx, amounts, mode)
        np.testing.assert_array_equal(out.data, expected.detach().numpy())
        gy = RNG.standard_normal(out.shape)
        expected.backward(torch.tensor(gy))
        out.backward(_t(gy))
        np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode, shape, amounts, error, match", [
    ("reflect", (1, 3, 4), (4, 0), ValueError, "mode 'reflect' needs amounts < the dim's size"),
    ("circular", (1, 3, 4), (5, 5), ValueError, "mode 'circular' needs amounts <="),
    ("replicate", (1, 1, 0, 4), (1, 1, 1, 1), ValueError, "needs a non-empty dim 2"),
    ("reflect", (1, 1, 3, 4), (1, 1), NotImplementedError, "2 amounts are not supported for a "
                                                           "4-D input"),
    ("reflect", (3,), (1, 1), NotImplementedError, "not supported for a 1-D input"),
    ("foo", (1, 3, 4), (1, 1), NotImplementedError, "unrecognised padding mode 'foo'"),
])
def test_pad_modes_bad_arguments_raise(mode, shape, amounts, error, match):
    with pytest.raises(error, match=match):
        F.pad(np.zeros(shape), amounts, mode)
    with pytest.raises(ValueError, match="doesn't take a value"):
        F.pad(np.zeros((1, 3, 4)), (1, 1), "reflect", value=1.0)


def test_padding_layers_match_torch():
    torch = pytest.importorskip("torch")
    x2 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x1 = RNG.standard_normal((2, 3, 6)).astype(np.float32)
    for name, args, x in [("ZeroPad2d", (2,), x2), ("ZeroPad2d", ((1, 0, 2, 3),), x2),
                          ("ConstantPad2d", (1, 3.5), x2), ("ReflectionPad2d", ((1, 2, 3, 0),), x2),
                          ("ReplicationPad2d", (3,), x2), ("ZeroPad1d", (2,), x1),
                          ("ConstantPad1d", ((1, 2), -1.0), x1), ("ReflectionPad1d", ((1, 2),), x1),
                          ("ReplicationPad1d", (3,), x1)]:
        mine, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        np.testing.assert_array_equal(mine(_t(x)).data, theirs(torch.tensor(x)).numpy())
        assert repr(mine) == repr(theirs)
    with pytest.raises(ValueError, match="ReflectionPad2d: padding must be an int or 4 ints"):
        nn.ReflectionPad2d((1, 2))


# -- pixel shuffle ------------------------------------------------------------------------------

def test_pixel_shuffle_definition_inverse_and_torch():
    x = RNG.standard_normal((2, 8, 3, 5))
    out = F.pixel_shuffle(x, 2)
    assert out.shape == (2, 2, 6, 10)
    # Channel c * r**2 + i * r + j lands at pixel (h * r + i, w * r + j) of channel c.
    c, i, j, h, w = 1, 1, 0, 2, 3
    assert out.data[0, c, h * 2 + i, w * 2 + j] == x[0, c * 4 + i * 2 + j, h, w]
    np.testing.assert_array_equal(F.pixel_unshuffle(out, 2).data, x)
    tx = _t(x[:1, :, :2, :2], True)
    assert gradcheck(lambda t: F.pixel_shuffle(t, 2), [tx])
    x5 = RNG.standard_normal((3, 2, 2, 6, 4))  # extra leading dims
    assert F.pixel_unshuffle(x5, 2).shape == (3, 2, 8, 3, 2)
    np.testing.assert_array_equal(nn.PixelUnshuffle(2)(_t(x5)).data,
                                  F.pixel_unshuffle(x5, 2).data)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(out.data, torch.nn.functional.pixel_shuffle(
        torch.tensor(x), 2).numpy())
    np.testing.assert_array_equal(F.pixel_unshuffle(x5, 2).data,
                                  torch.nn.functional.pixel_unshuffle(torch.tensor(x5), 2).numpy())
    assert repr(nn.PixelShuffle(3)) == repr(torch.nn.PixelShuffle(3))


def test_pixel_shuffle_bad_input_raises():
    with pytest.raises(ValueError, match="channels divisible by upscale_factor"):
        F.pixel_shuffle(np.zeros((1, 3, 2, 2)), 2)
    with pytest.raises(ValueError, match="H and W divisible by downscale_factor = 2"):
        F.pixel_unshuffle(np.zeros((1, 3, 3, 2)), 2)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        F.pixel_shuffle(np.zeros((1, 4, 2, 2)), 0)


# -- instance norm ------------------------------------------------------------------------------

def test_instance_norm_definition_and_gradcheck():
    x, w, b = RNG.standard_normal((2, 3, 4, 5)), RNG.standard_normal(3), RNG.standard_normal(3)
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    ref = (x - mean) / np.sqrt(var + 1e-5) * w[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(F.instance_norm(x, weight=w, bias=b).data, ref, rtol=1e-12,
                               atol=1e-12)
    tx, tw, tb = _t(x[:, :, :2, :3], True), _t(w, True), _t(b, True)
    assert gradcheck(lambda a, c, d: F.instance_norm(a, weight=c, bias=d), [tx, tw, tb])
    assert np.abs(tw.grad.data).sum() > 0


def test_instance_norm_matches_torch_functional_and_module():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 4, 5))
    w, b = RNG.standard_normal(3), RNG.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    tx, mx = torch.tensor(x, requires_grad=True), _t(x, True)
    expected = torch.nn.functional.instance_norm(tx, trm, trv, torch.tensor(w), torch.tensor(b),
                                                 momentum=0.3)
    out = F.instance_norm(mx, rm, rv, w, b, momentum=0.3)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    gy = RNG.standard_normal(x.shape)
    expected.backward(torch.tensor(gy))
    out.backward(_t(gy))
    np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        F.instance_norm(x, rm, rv, w, b, use_input_stats=False).data,
        torch.nn.functional.instance_norm(torch.tensor(x), trm, trv, torch.tensor(w),
                                          torch.tensor(b), use_input_stats=False).numpy(),
        rtol=1e-12, atol=1e-12)
    xf = x.astype(np.float32)
    for kwargs in [dict(), dict(affine=True), dict(track_running_stats=True),
                   dict(affine=True, track_running_stats=True), dict(affine=True, bias=False)]:
        mine, theirs = nn.InstanceNorm2d(3, **kwargs), torch.nn.InstanceNorm2d(3, **kwargs)
        assert repr(mine) == repr(theirs)
        assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
        for _ in range(2):  # training, then eval (the running statistics when tracked)
            np.testing.assert_allclose(mine(_t(xf)).data, theirs(torch.tensor(xf)).detach().numpy(),
                                       rtol=1e-5, atol=1e-5)
            mine.eval()
            theirs.eval()
        if kwargs.get("track_running_stats"):
            np.testing.assert_allclose(mine.running_var.data, theirs.running_var.numpy(),
                                       rtol=1e-6)
    # Unbatched (C, H, W) input, as PyTorch accepts.
    np.testing.assert_allclose(nn.InstanceNorm2d(3)(_t(xf[0])).data,
                               torch.nn.InstanceNorm2d(3)(torch.tensor(xf[0])).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_instance_norm_bad_input_raises():
    with pytest.raises(ValueError, match="expected more than 1 spatial element"):
        F.instance_norm(np.zeros((2, 3, 1, 1)))
    with pytest.raises(ValueError, match="instance_norm: expected an input"):
        F.instance_norm(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="expected running_mean and running_var"):
        F.instance_norm(np.zeros((2, 3, 4)), use_input_stats=False)
    with pytest.raises(ValueError, match="InstanceNorm2d: expected a 3-D or 4-D input"):
        nn.InstanceNorm2d(3)(_t(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"match num_features \(3\), but got 4"):
        nn.InstanceNorm2d(3, affine=True)(_t(np.zeros((1, 4, 2, 2), np.float32)))
    with pytest.warns(UserWarning, match="match num_features"):
        nn.InstanceNorm2d(3)(_t(np.ones((1, 4, 2, 2), np.float32)))


# -- property tests -----------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2), groups=st.sampled_from([1, 2]), h=st.integers(1, 5),
       w=st.integers(1, 5), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_conv_transpose2d_property_matches_the_definition(n, groups, h, w, k, stride, dilation,
                                                          data, dtype):
    extent = [d * (kk - 1) + 1 for d, kk in zip(dilation, k)]
    sizes = [(size - 1) * s + e for size, s, e in zip((h, w), stride, extent)]
    padding = tuple(data.draw(st.integers(0, (size - 1) // 2)) for size in sizes)
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation))
    x = RNG.standard_normal((n, 2 * groups, h, w))
    weight = RNG.standard_normal((2 * groups, 3) + k)
    bias = RNG.standard_normal(3 * groups)
    out = F.conv_transpose2d(x.astype(dtype), weight.astype(dtype), bias.astype(dtype), stride,
                             padding, output_padding, groups, dilation)
    expected = conv_transpose_reference(x, weight, bias, stride, padding, output_padding, groups,
                                        dilation)
    assert out.dtype == dtype and out.shape == expected.shape
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out.data, expected, rtol=tol, atol=tol)


def test_1d_adaptive_pools_and_instance_norm_match_torch():
    torch = pytest.importorskip("torch")
    x = RNG.permutation(2 * 3 * 11).reshape(2, 3, 11) / 7.0
    for size in (4, (1,), 11, 13):
        tx, mx = torch.tensor(x, requires_grad=True), _t(x, True)
        t_avg = torch.nn.functional.adaptive_avg_pool1d(tx, size)
        t_max, t_index = torch.nn.functional.adaptive_max_pool1d(tx, size, return_indices=True)
        m_avg = F.adaptive_avg_pool1d(mx, size)
        m_max, m_index = F.adaptive_max_pool1d(mx, size, return_indices=True)
        np.testing.assert_allclose(m_avg.data, t_avg.detach().numpy(), rtol=1e-12)
        np.testing.assert_array_equal(m_max.data, t_max.detach().numpy())
        np.testing.assert_array_equal(m_index.data, t_index.numpy())
        (t_avg.sum() + (t_max * t_max).sum()).backward()
        (m_avg.sum() + (m_max * m_max).sum()).backward()
        np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-12)
    values, index = nn.AdaptiveMaxPool1d(3, return_indices=True)(_t(x))
    assert values.shape == index.shape == (2, 3, 3)
    assert repr(nn.AdaptiveAvgPool1d(3)) == repr(torch.nn.AdaptiveAvgPool1d(3))
    with pytest.raises(ValueError, match="adaptive_avg_pool1d: output_size must be an int or a"):
        F.adaptive_avg_pool1d(x, (2, 2))
    with pytest.raises(ValueError, match="adaptive_max_pool1d: expected a 3-D input"):
        F.adaptive_max_pool1d(x[None], 2)
    xf = x.astype(np.float32)
    for kwargs in [dict(), dict(affine=True, track_running_stats=True)]:
        mine, theirs = nn.InstanceNorm1d(3, **kwargs), torch.nn.InstanceNorm1d(3, **kwargs)
        assert repr(mine) == repr(theirs)
        for batch in (xf, xf[0]):  # batched and unbatched (C, L)
            np.testing.assert_allclose(mine(_t(batch)).data,
                                       theirs(torch.tensor(batch)).detach().numpy(),
                                       rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="InstanceNorm1d: expected a 2-D or 3-D input"):
        nn.InstanceNorm1d(3)(_t(xf[None]))


@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col", "winograd"])
@pytest.mark.parametrize("cfg", [dict(padding=1), dict(stride=2, padding=1, output_padding=1)])
def test_conv_transpose2d_on_every_conv_algorithm(algorithm, cfg, monkeypatch):
    """conv_transpose2d runs on whichever kernels minidl.backends.conv picks for conv2d's
    passes; each of them gives the definition's values and gradients."""
    from minidl.backends import conv as backend

    monkeypatch.setattr(backend, "algorithm", algorithm)
    x = RNG.standard_normal((4, 32, 6, 6)).astype(np.float32)
    w = (RNG.standard_normal((32, 16, 3, 3)) / 17).astype(np.float32)
    tx, tw = _t(x, True), _t(w, True)
    out = F.conv_transpose2d(tx, tw, **cfg)
    expected = conv_transpose_reference(x.astype(np.float64), w.astype(np.float64), None,
                                        *_full_cfg(cfg))
    np.testing.assert_allclose(out.data, expected, rtol=1e-4, atol=1e-4)
    gy = RNG.standard_normal(out.shape).astype(np.float32)
    out.backward(_t(gy))
    # The gradients by the adjoint identities: d<gy, ct(x, w)>/dx = conv2d(gy, w), and the
    # weight gradient of conv2d(gy, w) against upstream x.
    gy64 = gy.astype(np.float64)
    ref_x = F.conv2d(gy64, w.astype(np.float64), stride=cfg.get("stride", 1),
                     padding=cfg["padding"]).data
    np.testing.assert_allclose(tx.grad.data, ref_x, rtol=1e-4, atol=1e-4)
    w64 = _t(w.astype(np.float64), True)
    (F.conv2d(gy64, w64, stride=cfg.get("stride", 1), padding=cfg["padding"]) * _t(
        x.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(tw.grad.data, w64.grad.data, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding, dilation", [(2, 1), ("same", 2), ("same", 1), ("valid", 1)])
def test_conv1d_padding_modes_match_torch(padding_mode, padding, dilation):
    torch = pytest.importorskip("torch")
    mine = nn.Conv1d(4, 6, 4, padding=padding, dilation=dilation, padding_mode=padding_mode,
                     dtype=np.float64)
    theirs = torch.nn.Conv1d(4, 6, 4, padding=padding, dilation=dilation,
                             padding_mode=padding_mode, dtype=torch.float64)
    theirs.weight.data, theirs.bias.data = (torch.tensor(mine.weight.data),
                                            torch.tensor(mine.bias.data))
    assert repr(mine) == repr(theirs)
    x = RNG.standard_normal((2, 4, 9))
    tx, mx = torch.tensor(x, requires_grad=True), _t(x, True)
    expected, out = theirs(tx), mine(mx)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    expected.sum().backward()
    out.sum().backward()
    np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="Conv1d: padding_mode must be"):
        nn.Conv1d(1, 1, 3, padding_mode="mirror")


def test_conv_transpose1d_matches_torch_and_the_2d_definition():
    torch = pytest.importorskip("torch")
    x, w, b = RNG.standard_normal((2, 4, 7)), RNG.standard_normal((4, 3, 3)), RNG.standard_normal(6)
    for cfg in [dict(), dict(stride=2, padding=1, output_padding=1, groups=2),
                dict(stride=3, dilation=2, output_padding=1, groups=2)]:
        bias = b if cfg.get("groups") else b[:3]
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, bias))
        mx, mw, mb = _t(x, True), _t(w, True), _t(bias, True)
        expected = torch.nn.functional.conv_transpose1d(tx, tw, tb, **cfg)
        out = F.conv_transpose1d(mx, mw, mb, **cfg)
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        gy = RNG.standard_normal(out.shape)
        expected.backward(torch.tensor(gy))
        out.backward(_t(gy))
        for mine, theirs in ((mx, tx), (mw, tw), (mb, tb)):
            np.testing.assert_allclose(mine.grad.data, theirs.grad.numpy(), rtol=1e-12,
                                       atol=1e-12)
    mine = nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2)
    theirs = torch.nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2)
    assert mine.weight.shape == tuple(theirs.weight.shape) and repr(mine) == repr(theirs)
    assert mine(_t(x.astype(np.float32)), output_size=(16,)).shape == (2, 6, 16)
    with pytest.raises(ValueError, match="ConvTranspose1d: requested an output size of"):
        mine(_t(x.astype(np.float32)), output_size=(17,))
    with pytest.raises(ValueError, match="conv_transpose1d: expected a 3-D weight"):
        F.conv_transpose1d(x, w[..., None])
    tx = _t(x[:1, :, :3], True)
    assert gradcheck(lambda t: F.conv_transpose1d(t, w, stride=2), [tx])


def test_interpolate_area_is_adaptive_average_pooling():
    torch = pytest.importorskip("torch")
    for shape, kwargs in [((2, 3, 7, 6), dict(size=(3, 4))), ((2, 3, 7, 6), dict(scale_factor=0.5)),
                          ((2, 3, 9), dict(size=4)), ((1, 2, 3, 3), dict(size=(5, 7)))]:
        x = RNG.standard_normal(shape)
        expected = torch.nn.functional.interpolate(torch.tensor(x), mode="area", **kwargs)
        np.testing.assert_allclose(F.interpolate(x, mode="area", **kwargs).data, expected.numpy(),
                                   rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(np.zeros((1, 1, 4, 4)), size=2, mode="area", align_corners=False)


@pytest.mark.parametrize("fn", [
    lambda t: F.adaptive_max_pool2d(t, (2, 3)),
    lambda t: F.pad(t, (1, 2, 2, 1), "reflect"),
    lambda t: F.pad(t, (1, 2, 2, 1), "replicate"),
    lambda t: F.pixel_unshuffle(t, 2),
    lambda t: F.instance_norm(t),
    lambda t: F.interpolate(t, scale_factor=1.5, mode="bilinear"),
    lambda t: F.conv_transpose2d(t, np.ones((3, 2, 2, 2)), stride=2),
])
def test_transposed_inputs_give_the_transposed_copys_result(fn):
    # minidl tensors are C-contiguous (a transpose copies); NumPy views passed in are copied too.
    base = RNG.standard_normal((2, 3, 6, 4))
    leaf = _t(base, True)
    view = leaf.transpose(2, 3)  # (2, 3, 4, 6) from a (2, 3, 6, 4) array
    copy = _t(np.ascontiguousarray(np.swapaxes(base, 2, 3)), True)
    out_view, out_copy = fn(view), fn(copy)
    np.testing.assert_allclose(out_view.data, out_copy.data, rtol=1e-12, atol=1e-12)
    gy = RNG.standard_normal(out_copy.shape)
    out_view.backward(_t(gy))
    out_copy.backward(_t(gy))
    np.testing.assert_allclose(np.swapaxes(leaf.grad.data, 2, 3), copy.grad.data, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name, args, kwargs", [
    ("Upsample", (), dict(scale_factor=2)),
    ("Upsample", (), dict(size=(3, 4), mode="bilinear")),
    ("UpsamplingBilinear2d", (), dict(scale_factor=2)),
    ("UpsamplingNearest2d", (), dict(size=3)),
    ("MaxPool1d", (3, 2, 1), {}),
    ("AvgPool1d", (3, 2, 1), {}),
    ("AdaptiveMaxPool1d", (3,), {}),
    ("ConvTranspose2d", (2, 4, 3), dict(stride=2, padding=1, output_padding=1, bias=False)),
    ("ConvTranspose2d", (2, 4, (2, 3)), dict(dilation=2, groups=2)),
    ("Conv1d", (2, 4, 3), dict(stride=2, padding=1)),
    ("Conv1d", (2, 4, 3), dict(padding="same", dilation=2)),
    ("InstanceNorm2d", (3,), dict(affine=True)),
])
def test_reprs_are_pytorchs(name, args, kwargs):
    torch = pytest.importorskip("torch")
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding, dilation", [((2, 1), 1), ("same", (2, 1)), ("valid", 1)])
def test_conv2d_padding_modes_match_torch(padding_mode, padding, dilation):
    """Conv2d's padding_mode pads with F.pad's modes, then convolves unpadded (PyTorch's)."""
    torch = pytest.importorskip("torch")
    mine = nn.Conv2d(3, 4, (3, 4), padding=padding, dilation=dilation,
                     padding_mode=padding_mode, dtype=np.float64)
    theirs = torch.nn.Conv2d(3, 4, (3, 4), padding=padding, dilation=dilation,
                             padding_mode=padding_mode, dtype=torch.float64)
    theirs.weight.data, theirs.bias.data = (torch.tensor(mine.weight.data),
                                            torch.tensor(mine.bias.data))
    x = RNG.standard_normal((2, 3, 6, 7))
    tx, mx = torch.tensor(x, requires_grad=True), _t(x, True)
    expected, out = theirs(tx), mine(mx)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    gy = RNG.standard_normal(out.shape)
    expected.backward(torch.tensor(gy))
    out.backward(_t(gy))
    np.testing.assert_allclose(mx.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mine.weight.grad.data, theirs.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)
    assert ("padding_mode=" + padding_mode) in repr(mine)


@pytest.mark.parametrize("call", [
    lambda f, x: f.max_pool2d(x, 2, return_indices=True), lambda f, x: f.avg_pool2d(x, 3, 2, 1),
    lambda f, x: f.adaptive_avg_pool2d(x, (2, 3)), lambda f, x: f.adaptive_max_pool2d(x, 2),
    lambda f, x: f.max_pool1d(x.flatten(1), 3, 2), lambda f, x: f.avg_pool1d(x.flatten(1), 2),
    lambda f, x: f.adaptive_avg_pool1d(x.flatten(1), 5),
    lambda f, x: f.adaptive_max_pool1d(x.flatten(1), 4, True)])
def test_pools_take_unbatched_inputs_as_torch(call):
    torch = pytest.importorskip("torch")
    data = np.random.default_rng(3).standard_normal((3, 6, 6))
    x, tx = minidl.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    ours, theirs = call(F, x), call(torch.nn.functional, tx)
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    for a, b in zip(ours, theirs):
        assert a.shape == tuple(b.shape)
        np.testing.assert_array_equal(a.numpy(), b.detach().numpy())
    ours[0].sum().backward()
    theirs[0].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-14)


def test_convolutions_take_unbatched_inputs_as_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for ours_fn, theirs_fn, x_shape, w_shape in (
            (F.conv2d, torch.nn.functional.conv2d, (2, 5, 5), (3, 2, 3, 3)),
            (F.conv1d, torch.nn.functional.conv1d, (2, 7), (3, 2, 3))):
        xd, wd = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        x, tx = minidl.tensor(xd, requires_grad=True), torch.tensor(xd, requires_grad=True)
        out = ours_fn(x, minidl.tensor(wd), None, 1, 1)
        expected = theirs_fn(tx, torch.tensor(wd), None, 1, 1)
        assert out.shape == tuple(expected.shape)
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        out.sum().backward()
        expected.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
