"""What one generated fuzz case does, run inside a child process (see test_fuzz.py).

A case is plain data (a dict from hypothesis): the op family, shapes, geometry, dtype, the
memory layout of every input and a seed. `run_batch` runs several cases in one interpreter
and checks each against a NumPy reference in float64 (or checks that a clear minidl exception
was raised where the arguments are invalid). Any crash kills the child: the parent test fails.

Layouts: "c" C-order, "f" Fortran-order, "strided" (every other element of a larger array),
"negative" (negative strides), "readonly", "memmap" (a read-only file mapping) and "guard"
(the last byte followed by an unmapped page).
"""

from __future__ import annotations

import gzip
import os
import tempfile

import numpy as np
from childproc import guarded_array

import minidl
import minidl.nn.functional as F
from minidl import Tensor
from minidl._kernels import batchnorm as bn_kernels
from minidl._kernels import winograd as wino_kernels
from minidl.backends import conv as conv_backend
from minidl.backends import winograd as wino_backend
from minidl.data.idx import IDXFormatError, decode_idx, encode_idx
from minidl.serialization import CheckpointError

LAYOUTS = ("c", "f", "strided", "negative", "readonly", "memmap", "guard")
_TMP = tempfile.mkdtemp(prefix="minidl-fuzz-")


def place(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of `a` in the given memory layout."""
    if a.ndim == 0:
        return a.copy()  # ascontiguousarray would make it 1-d; no other layout exists
    if layout == "c":
        return np.ascontiguousarray(a)
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negative":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    if layout == "memmap":
        if a.size == 0:
            return a.copy()
        path = os.path.join(_TMP, f"m{np.random.randint(1 << 30)}.bin")
        np.ascontiguousarray(a).tofile(path)
        return np.memmap(path, a.dtype, "r", shape=a.shape)
    if layout == "guard":
        return guarded_array(a)
    raise ValueError(layout)


def leaf(a: np.ndarray) -> Tensor:
    """A leaf Tensor sharing `a`'s memory (Tensor() would cast to the default float32)."""
    return minidl.from_numpy(a).requires_grad_(True)


def close(actual, expected, dtype, what, scale=1.0):
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    # NaN and +-Inf must sit where the reference has them (assert_allclose checks that); the
    # tolerance comes from the finite values.
    finite = np.abs(expected[np.isfinite(expected)])
    atol = rtol * max(1.0, scale, float(finite.max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# -- references ------------------------------------------------------------------------------
def ref_conv(x, w, stride, pad, dil, groups):
    """(out, windows) of a float64 cross-correlation; windows[n, g, c, kh, kw, oh, ow]."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    win = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dil[0], j * dil[1]
            win[:, :, i, j] = xp[:, :, r0 : r0 + stride[0] * oh : stride[0],
                                 c0 : c0 + stride[1] * ow : stride[1]]
    win = win.reshape(n, groups, cg, kh, kw, oh, ow)
    wg = w.reshape(groups, oc // groups, cg, kh, kw)
    out = np.einsum("ngcijhw,gocij->ngohw", win, wg).reshape(n, oc, oh, ow)
    return out, win


def ref_conv_input_grad(g, w, x_shape, stride, pad, dil, groups):
    """The input gradient of ref_conv for output gradient g: its adjoint, scattering each
    window's share back (the derivative of <ref_conv(x), g> by linearity)."""
    n, c, h, wd = x_shape
    oc, cg, kh, kw = w.shape
    oh, ow = g.shape[2:]
    gg = g.reshape(n, groups, oc // groups, oh, ow)
    dwin = np.einsum("ngohw,gocij->ngcijhw", gg, w.reshape(groups, oc // groups, cg, kh, kw))
    dwin = dwin.reshape(n, c, kh, kw, oh, ow)
    dxp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dil[0], j * dil[1]
            dxp[:, :, r0 : r0 + stride[0] * oh : stride[0],
                c0 : c0 + stride[1] * ow : stride[1]] += dwin[:, :, i, j]
    return dxp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + wd]


def case_conv(case, rng):
    n, c, h, w = case["x"]
    groups = case["groups"] if c % case["groups"] == 0 else 1
    oc = case["oc"] * groups
    k, s, p, d = case["k"], case["stride"], case["pad"], case["dil"]
    dtype = np.dtype(case["dtype"])
    x0 = rng.standard_normal((n, c, h, w)).astype(dtype)
    w0 = rng.standard_normal((oc, c // groups, k[0], k[1])).astype(dtype)
    b0 = rng.standard_normal(oc).astype(dtype)
    extent = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    x = leaf(place(x0, case["layout"]))
    wt = leaf(w0)
    bt = leaf(b0)
    if h + 2 * p[0] < extent[0] or w + 2 * p[1] < extent[1]:
        try:
            F.conv2d(x, wt, bt, stride=s, padding=p, dilation=d, groups=groups)
        except ValueError as e:
            assert "conv2d" in str(e)
            return
        raise AssertionError("conv2d accepted a kernel larger than the padded input")
    y = F.conv2d(x, wt, bt, stride=s, padding=p, dilation=d, groups=groups, relu=case["relu"])
    ref, win = ref_conv(x0.astype(np.float64), w0.astype(np.float64), s, p, d, groups)
    ref = ref + b0.astype(np.float64)[None, :, None, None]
    if case["relu"]:
        ref = np.maximum(ref, 0)
    scale = float(np.sqrt(c * k[0] * k[1]))
    close(y.data, ref, dtype, "conv2d forward", scale)
    g = rng.standard_normal(ref.shape)
    if case["relu"]:
        g = g * (ref > 0)
    y.backward(minidl.from_numpy(g.astype(dtype)))
    gg = g.reshape(n, groups, oc // groups, *ref.shape[2:])
    dw = np.einsum("ngohw,ngcijhw->gocij", gg, win).reshape(w0.shape)
    close(wt.grad.data, dw, dtype, "conv2d weight gradient", scale * max(1, n) * 4)
    close(bt.grad.data, g.sum(axis=(0, 2, 3)), dtype, "conv2d bias gradient", 10 * max(1, n))
    dx = ref_conv_input_grad(g, w0.astype(np.float64), x0.shape, s, p, d, groups)
    close(x.grad.data, dx, dtype, "conv2d input gradient", scale * 4)


def case_pool(case, rng):
    n, c, h, w = case["x"]
    k, s, p = case["k"], case["stride"], case["pad"]
    dtype = np.dtype(case["dtype"])
    x0 = rng.standard_normal((n, c, h, w)).astype(dtype)
    x = leaf(place(x0, case["layout"]))
    kind = case["kind"]
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    oh = (h + 2 * p[0] - k[0]) // s[0] + 1
    ow = (w + 2 * p[1] - k[1]) // s[1] + 1
    if p[0] > k[0] // 2 or p[1] > k[1] // 2 or oh < 1 or ow < 1:
        try:
            fn(x, k, s, p)
        except ValueError as e:
            assert "pool2d" in str(e)
            return
        raise AssertionError("pooling accepted invalid geometry")
    y = fn(x, k, s, p)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x0.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])),
                constant_values=fill)
    win = np.stack([xp[:, :, i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1]]
                    for i in range(k[0]) for j in range(k[1])])
    ref = win.max(axis=0) if kind == "max" else win.mean(axis=0)
    close(y.data, ref, dtype, f"{kind}_pool2d forward")
    y.backward(minidl.from_numpy(np.ones(ref.shape, dtype)))
    # Max: each output routes its 1 to one input. Average: each spreads 1 over its window.
    total = x.grad.data.astype(np.float64).sum()
    if kind == "max":
        assert total == ref.size, (total, ref.size)
    else:
        inside = np.pad(np.ones((h, w)), ((p[0], p[0]), (p[1], p[1])))
        share = np.stack([inside[i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1]]
                          for i in range(k[0]) for j in range(k[1])]).sum(axis=0)
        close(total, n * c * share.sum() / (k[0] * k[1]), dtype, "avg_pool2d gradient", 10.0)


def case_matmul(case, rng):
    m, k, n = case["mkn"]
    dtype = np.dtype(case["dtype"])
    batch = tuple(case["batch"])
    a0 = rng.standard_normal(batch + (m, k)).astype(dtype)
    b0 = rng.standard_normal((k, n)).astype(dtype)
    a = leaf(place(a0, case["layout"]))
    b = leaf(place(b0, case["layout_b"]))
    y = F.linear(a, minidl.from_numpy(b0.T.copy()), None) if case["linear"] else a @ b
    ref = a0.astype(np.float64) @ b0.astype(np.float64)
    close(y.data, ref, dtype, "matmul", float(np.sqrt(max(k, 1))))
    if not case["linear"]:
        g = rng.standard_normal(ref.shape)
        y.backward(minidl.from_numpy(g.astype(dtype)))
        close(a.grad.data, g @ b0.T.astype(np.float64), dtype, "matmul grad a",
              float(np.sqrt(max(n, 1))))
        rows = int(np.prod(a0.shape[:-1]))
        gb = a0.astype(np.float64).reshape(rows, k).T @ g.reshape(rows, n)
        close(b.grad.data, gb, dtype, "matmul grad b", float(np.sqrt(max(m, 1))) * 4)


def case_loss(case, rng):
    n, classes = case["nc"]
    dtype = np.dtype(case["dtype"])
    x0 = (rng.standard_normal((n, classes)) * case["scale"]).astype(dtype)
    t0 = rng.integers(0, max(classes, 1), n)
    ignore = rng.random(n) < case["ignore_frac"]
    t0[ignore] = -100
    if case["bad_target"] and n:
        t0[0] = classes + 3
    x = leaf(place(x0, case["layout"]))
    t = place(t0, case["layout_t"])
    valid = t0 != -100
    if (t0[valid] >= classes).any() or (t0[valid] < 0).any():
        try:
            F.cross_entropy(x, t)
        except ValueError as e:
            assert "cross_entropy" in str(e)
            return
        raise AssertionError("cross_entropy accepted an out-of-range target")
    loss = F.cross_entropy(x, t, reduction=case["reduction"])
    x64 = x0.astype(np.float64)
    if classes:
        lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
        per = np.where(valid, lse - x64[np.arange(n), np.where(valid, t0, 0)], 0)
    else:
        per = np.zeros(n)
    ref = {"sum": per.sum(), "none": per,
           "mean": per.sum() / valid.sum() if valid.sum() else np.nan}[case["reduction"]]
    if np.isnan(ref).all() and case["reduction"] == "mean":
        assert np.isnan(loss.data)
        return
    close(loss.data, ref, dtype, "cross_entropy", 10.0)
    loss.sum().backward()
    assert np.isfinite(x.grad.data).all()


def case_elementwise(case, rng):
    shape = tuple(case["shape"])
    dtype = np.dtype(case["dtype"])
    a0 = rng.standard_normal(shape).astype(dtype)
    b0 = rng.standard_normal(shape[len(shape) // 2 :]).astype(dtype)
    a = leaf(place(a0, case["layout"]))
    b = leaf(place(b0, case["layout_b"]))
    y = (a * b + a.exp() * 0.5 - b).relu()
    ref = np.maximum(a0 * b0 + np.exp(a0) * 0.5 - b0, 0)
    close(y.data, ref, dtype, "elementwise")
    axis = case["axis"] % max(len(shape), 1) if shape else None
    s = y.sum(axis=axis) if shape else y.sum()
    close(s.data, ref.sum(axis=axis), dtype, "sum", 10.0)
    # mean over nothing is a clear ValueError in minidl (README lists it), so sum there.
    (s.sum() + (a.mean() if a0.size else a.sum())).backward()
    assert a.grad.shape == shape and b.grad.shape == b0.shape


def special(a: np.ndarray, kind: str, rng) -> np.ndarray:
    """`a` with one random element set to NaN or +-Inf (kind "nan" / "inf"; "none": as is)."""
    if kind != "none" and a.size:
        a = a.copy()
        a.flat[int(rng.integers(a.size))] = np.nan if kind == "nan" else rng.choice([-1, 1]) * np.inf
    return a


def case_batchnorm(case, rng):
    """F.batch_norm on (N, C, *spatial) in training or eval mode against float64 NumPy (forward,
    input/weight/bias gradients, running statistics), then the kernels of
    minidl._kernels.batchnorm called directly on the placed buffer (kernels_batchnorm)."""
    shape = (case["n"], case["c"], *case["spatial"])
    dtype = np.dtype(case["dtype"])
    c, train = shape[1], case["training"]
    axes = (0,) + tuple(range(2, len(shape)))
    lanes = (1, -1) + (1,) * (len(shape) - 2)
    count = shape[0] * int(np.prod(shape[2:]))
    x0 = special(rng.standard_normal(shape) * 3 + 1, case["special"], rng)
    # Parameters and running statistics in the input's dtype, as a model of that dtype has.
    weight0 = rng.standard_normal(c).astype(dtype) if case["affine"] else None
    bias0 = rng.standard_normal(c).astype(dtype) if case["affine"] else None
    running_mean0 = rng.standard_normal(c).astype(dtype)
    running_var0 = (rng.random(c) + 0.5).astype(dtype)
    xk = place(x0.astype(dtype), case["layout"])
    param = leaf if dtype.kind == "f" else minidl.from_numpy
    x = param(xk)
    w = None if weight0 is None else param(weight0.copy())
    b = None if bias0 is None else param(bias0.copy())
    running_mean, running_var = running_mean0.copy(), running_var0.copy()

    def call():
        return F.batch_norm(x, running_mean, running_var, w, b, training=train, momentum=0.1)

    if dtype.kind != "f":
        try:
            call()
        except TypeError as e:
            assert "batch_norm" in str(e), e
            return
        raise AssertionError("batch_norm accepted an integer input")
    if train and count <= 1:
        try:
            call()
        except ValueError as e:
            assert "batch_norm" in str(e) and "more than 1 value" in str(e), e
            return
        raise AssertionError("batch_norm trained on a single value per channel")
    y = call()
    x64 = x0.astype(dtype).astype(np.float64)
    if train:
        mean, var = x64.mean(axis=axes), x64.var(axis=axes)
        close(running_mean, 0.9 * running_mean0 + 0.1 * mean, dtype, "running_mean")
        close(running_var, 0.9 * running_var0 + 0.1 * var * count / (count - 1), dtype,
              "running_var", 10.0)
    else:
        mean, var = running_mean0.astype(np.float64), running_var0.astype(np.float64)
    invstd = (1 / np.sqrt(var + 1e-5)).reshape(lanes)
    xhat = (x64 - mean.reshape(lanes)) * invstd
    w64 = np.ones(c) if w is None else weight0.astype(np.float64)
    ref = xhat * w64.reshape(lanes) + (0 if b is None else bias0.astype(np.float64).reshape(lanes))
    close(y.data, ref, dtype, "batch_norm forward", 10.0)
    g = rng.standard_normal(shape)
    y.backward(minidl.from_numpy(g.astype(dtype)))
    gxhat = g * w64.reshape(lanes)
    if train:
        gx = invstd * (gxhat - gxhat.sum(axis=axes, keepdims=True) / count
                       - xhat * (gxhat * xhat).sum(axis=axes, keepdims=True) / count)
    else:
        gx = gxhat * invstd
    scale = 10.0 * max(1, count)
    close(x.grad.data, gx, dtype, "batch_norm input gradient", scale)
    if w is not None:
        close(w.grad.data, (g * xhat).sum(axis=axes), dtype, "batch_norm weight gradient", scale)
        close(b.grad.data, g.sum(axis=axes), dtype, "batch_norm bias gradient", scale)
    kernels_batchnorm(xk, rng)


def kernels_batchnorm(xk, rng):
    """The kernels on an (N, C, L) view of the placed buffer (no copy): a non-contiguous view
    must be refused with the kernel's name, a C-contiguous one (read-only, memory-mapped or
    against a guard page included) gives results independent of the thread count and equal to
    NumPy's."""
    if xk.ndim == 2:
        x3 = xk[:, :, None]
    elif xk.ndim == 3:
        x3 = xk
    else:
        rows = int(np.prod(xk.shape[2:]))
        x3 = xk.reshape(xk.shape[0], xk.shape[1], rows) if xk.flags.c_contiguous else xk[:, :, 0]
    c = x3.shape[1]
    if x3.shape[0] * x3.shape[2] == 0:
        return
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)

    def forward(x, threads, out=None):
        vecs = [np.empty(c) for _ in range(5)]  # mean, var, invstd, scale, shift
        out = np.empty(x.shape, x.dtype) if out is None else out
        bn_kernels.batch_norm_forward(x, weight, bias, 1e-5, *vecs, out, True, threads)
        return out, vecs

    if not x3.flags.c_contiguous:
        try:
            forward(x3, 1)
        except ValueError as e:
            assert "batch_norm_forward" in str(e) and "C-contiguous" in str(e), e
            return
        raise AssertionError("batch_norm_forward accepted a non-contiguous buffer")
    out, (mean, var, invstd, scale, shift) = forward(x3, 2)
    out1, vecs1 = forward(np.ascontiguousarray(x3), 1)
    for a, b in zip([out, mean, var, invstd, scale, shift], [out1] + vecs1):
        np.testing.assert_array_equal(a, b)
    x64 = x3.astype(np.float64)
    close(mean, x64.mean(axis=(0, 2)), x3.dtype, "batch_norm_forward mean", 10.0)
    close(var, x64.var(axis=(0, 2)), x3.dtype, "batch_norm_forward var", 10.0)
    lanes = (slice(None), None)
    close(out, x64 * scale.astype(x3.dtype)[lanes] + shift.astype(x3.dtype)[lanes], x3.dtype,
          "batch_norm_forward", 10.0)
    g = guarded_array(rng.standard_normal(x3.shape).astype(x3.dtype))
    gx = np.empty(x3.shape, x3.dtype)
    sum_g, sum_gxc = np.empty(c), np.empty(c)
    bn_kernels.batch_norm_backward(x3, g, mean, invstd, scale, gx, sum_g, sum_gxc, True, 2)
    g64 = g.astype(np.float64)
    close(sum_g, g64.sum(axis=(0, 2)), x3.dtype, "batch_norm_backward sum_g", 10.0 * x3.size)
    close(sum_gxc, (g64 * (x64 - mean[lanes])).sum(axis=(0, 2)), x3.dtype,
          "batch_norm_backward sum_gxc", 10.0 * x3.size)
    other = np.float64 if x3.dtype == np.float32 else np.float32
    try:
        forward(x3, 1, np.empty(x3.shape, other))
    except ValueError as e:
        assert "batch_norm_forward" in str(e), e
    else:
        raise AssertionError("batch_norm_forward wrote into an output of another dtype")


def case_winograd(case, rng):
    """conv2d (3x3, stride 1) with minidl.backends.conv.algorithm = "winograd" against the
    float64 reference: forward, weight, bias and input gradients, NaN/Inf inputs included (as
    in the exact sum: a non-finite Winograd result is recomputed directly). Then the kernels of
    minidl._kernels.winograd called directly on the placed buffer (kernels_winograd)."""
    n, c, h, w = case["x"]
    oc, p = case["oc"], case["pad"]
    dtype = np.dtype(case["dtype"])
    x0 = special(np.maximum(rng.standard_normal((n, c, h, w)), 0), case["special"], rng)
    w0 = rng.standard_normal((oc, c, 3, 3)) * np.sqrt(2 / (9 * c))
    b0 = rng.standard_normal(oc) if case["bias"] else None
    xk = place(x0.astype(dtype), case["layout"])
    x = leaf(xk) if dtype.kind == "f" else minidl.from_numpy(xk)
    wt = leaf(w0.astype(dtype)) if dtype.kind == "f" else minidl.from_numpy(w0.astype(dtype))
    bt = None if b0 is None else leaf(b0.astype(dtype)) if dtype.kind == "f" else \
        minidl.from_numpy(b0.astype(dtype))
    saved = conv_backend.algorithm
    conv_backend.algorithm = "winograd"
    try:
        if dtype.kind != "f" or h + 2 * p[0] < 3 or w + 2 * p[1] < 3:
            try:
                F.conv2d(x, wt, bt, padding=p)
            except (TypeError, ValueError) as e:
                assert "conv2d" in str(e), e
                return
            raise AssertionError(f"conv2d accepted {dtype} input or a kernel past the padding")
        y = F.conv2d(x, wt, bt, padding=p, relu=case["relu"])
        g = rng.standard_normal(y.shape)
        y.backward(minidl.from_numpy(g.astype(dtype)))
    finally:
        conv_backend.algorithm = saved
    x64, w64 = x0.astype(dtype).astype(np.float64), w0.astype(dtype).astype(np.float64)
    ref, win = ref_conv(x64, w64, (1, 1), p, (1, 1), 1)
    if b0 is not None:
        ref = ref + b0.astype(dtype).astype(np.float64)[None, :, None, None]
    if case["relu"]:
        ref = np.maximum(ref, 0)
        # ReLU's backward masks by the output the op computed (NaN outputs pass g, as in
        # torch): where the exact output is 0 (an all-zero patch), Winograd's rounding can
        # give +-1e-10, and the gradient then follows that sign.
        g = np.where(y.data.astype(np.float64) <= 0, 0.0, g)
    scale = float(np.sqrt(9 * c))
    close(y.data, ref, dtype, "winograd conv2d forward", scale)
    close(wt.grad.data, np.einsum("nohw,ncijhw->ocij", g, win.reshape(n, c, 3, 3, *ref.shape[2:])),
          dtype, "winograd conv2d weight gradient", scale * max(1, n) * 4)
    if bt is not None:
        close(bt.grad.data, g.sum(axis=(0, 2, 3)), dtype, "winograd conv2d bias gradient",
              10 * max(1, n))
    close(x.grad.data, ref_conv_input_grad(g, w64, x0.shape, (1, 1), p, (1, 1), 1), dtype,
          "winograd conv2d input gradient", scale * 4)
    kernels_winograd(xk, w0.astype(dtype), b0, y.data if not case["relu"] else None, p, rng)


def kernels_winograd(xk, weight, bias, y, pad, rng):
    """The kernels on the placed buffer itself: accepted exactly when it is a C-contiguous
    float32 array (read-only, memory-mapped and guard-page placements included), and then
    bitwise equal to the op's output `y` (the op runs them on a contiguous copy) unless they
    report a non-finite output, which they do exactly when `y` has one (then the op recomputed
    y directly); the same bits for any thread count; a bias of the wrong length or a mismatched
    U is refused by name."""
    n, c, h, w = xk.shape
    oc = weight.shape[0]
    out = np.empty((n, oc, h + 2 * pad[0] - 2, w + 2 * pad[1] - 2), np.float32)
    # The tile the op ran (F(4x4) on images up to 64 pixels a side).
    u = wino_backend.transform_weight(weight.astype(np.float32), n_threads=1,
                                      tile=conv_backend.winograd_tile_for(xk.shape))
    b = None if bias is None else bias.astype(np.float32)
    if xk.dtype != np.float32 or not xk.flags.c_contiguous:
        try:
            wino_kernels.forward(xk, u, b, out, *pad, False, 1)
        except (TypeError, ValueError):
            return
        raise AssertionError(f"winograd.forward accepted a {xk.dtype} buffer with strides "
                             f"{xk.strides}")
    finite = wino_kernels.forward(xk, u, b, out, *pad, False, 2)
    if y is not None:
        assert finite == bool(np.isfinite(y).all()), "winograd.forward's non-finite report"
        if finite:
            np.testing.assert_array_equal(out, y)
    again = np.empty_like(out)
    wino_kernels.forward(np.ascontiguousarray(xk), u, b, again, *pad, False, 1)
    np.testing.assert_array_equal(out, again)
    for bad_bias in (np.zeros(oc + 1, np.float32), np.zeros(max(oc - 1, 0), np.float32)):
        try:
            wino_kernels.forward(xk, u, bad_bias, out, *pad, False, 1)
        except ValueError as e:
            assert "winograd.forward" in str(e) and "bias" in str(e), e
        else:
            raise AssertionError(f"winograd.forward took a bias of {bad_bias.size} for {oc}")
    try:
        wino_kernels.forward(xk, np.ascontiguousarray(u[:, :, : c - 1]), b, out, *pad, False, 1)
    except ValueError as e:
        assert "winograd.forward" in str(e), e
    else:
        raise AssertionError("winograd.forward took U for another channel count")
    gy = guarded_array(rng.standard_normal(out.shape).astype(np.float32))
    du, du1 = np.empty((16, oc, c), np.float32), np.empty((16, oc, c), np.float32)
    wino_kernels.weight_grad(xk, gy, du, *pad, 2)
    wino_kernels.weight_grad(np.ascontiguousarray(xk), np.ascontiguousarray(gy), du1, *pad, 1)
    np.testing.assert_array_equal(du, du1)


def case_idx(case, rng):
    arr = rng.integers(0, 255, tuple(case["shape"])).astype(np.uint8)
    data = bytearray(encode_idx(arr))
    if case["gzip"]:
        data = bytearray(gzip.compress(bytes(data)))
    for _ in range(case["flips"]):
        if data:
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
    if case["cut"] and data:
        data = data[: int(rng.integers(len(data)))]
    try:
        out = decode_idx(bytes(data), "fuzz.idx")
    except IDXFormatError as e:
        assert str(e).startswith("fuzz.idx: ")
        return
    assert out.flags.c_contiguous


def case_checkpoint(case, rng):
    path = os.path.join(_TMP, f"c{rng.integers(1 << 30)}.ckpt")
    obj = {"w": rng.standard_normal(tuple(case["shape"])), "n": [1, 2.5, "s", None],
           "t": minidl.from_numpy(np.ones(3, np.float32))}
    minidl.save(obj, path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    for _ in range(case["flips"]):
        data[int(rng.integers(len(data)))] = int(rng.integers(256))
    if case["cut"]:
        data = data[: int(rng.integers(len(data)))]
    with open(path, "wb") as f:
        f.write(bytes(data))
    try:
        minidl.load(path)
    except CheckpointError as e:
        assert path in str(e)
    finally:
        os.unlink(path)


CASES = {
    "conv": case_conv, "pool": case_pool, "matmul": case_matmul, "loss": case_loss,
    "elementwise": case_elementwise, "batchnorm": case_batchnorm, "winograd": case_winograd,
    "idx": case_idx, "checkpoint": case_checkpoint,
}


def run_batch(cases: list) -> int:
    for case in cases:
        rng = np.random.default_rng(case["seed"])
        try:
            CASES[case["family"]](case, rng)
        except Exception as e:
            raise AssertionError(f"fuzz case failed: {case!r}") from e
    return len(cases)

