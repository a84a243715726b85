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
    atol = rtol * max(1.0, scale, float(np.abs(expected).max(initial=0)))
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
    # Input gradient: the adjoint, as the derivative of <ref(x), g> by finite linearity.
    dwin = np.einsum("ngohw,gocij->ngcijhw", gg, w0.astype(np.float64).reshape(
        groups, oc // groups, c // groups, k[0], k[1]))
    dwin = dwin.reshape(n, c, k[0], k[1], *ref.shape[2:])
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    oh, ow = ref.shape[2:]
    for i in range(k[0]):
        for j in range(k[1]):
            r0, c0 = i * d[0], j * d[1]
            dxp[:, :, r0 : r0 + s[0] * oh : s[0], c0 : c0 + s[1] * ow : s[1]] += dwin[:, :, i, j]
    dx = dxp[:, :, p[0] : p[0] + h, p[1] : p[1] + w]
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


def case_batchnorm(case, rng):
    n, c, h, w = case["x"]
    dtype = np.dtype(np.float32)  # the layer's parameters are float32
    x0 = rng.standard_normal((n, c, h, w)).astype(dtype)
    x = leaf(place(x0, case["layout"]))
    bn = minidl.nn.BatchNorm2d(c)
    if n * h * w <= 1:
        try:
            bn(x)
        except ValueError as e:
            assert "batch" in str(e).lower() or "norm" in str(e).lower()
        return
    y = bn(x)
    x64 = x0.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = x64.var(axis=(0, 2, 3), keepdims=True)
    close(y.data, (x64 - mean) / np.sqrt(var + 1e-5), dtype, "batch_norm", 10.0)
    y.sum().backward()
    assert np.isfinite(x.grad.data).all()


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
    "elementwise": case_elementwise, "batchnorm": case_batchnorm, "idx": case_idx,
    "checkpoint": case_checkpoint,
}


def run_batch(cases: list) -> int:
    for case in cases:
        rng = np.random.default_rng(case["seed"])
        try:
            CASES[case["family"]](case, rng)
        except Exception as e:
            raise AssertionError(f"fuzz case failed: {case!r}") from e
    return len(cases)

