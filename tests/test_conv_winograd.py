"""Winograd F(2x2, 3x3) conv2d and the algorithm switch (minidl.backends.conv): error bound
against a float64 reference, hypothesis shapes, odd shapes, bitwise determinism across thread
counts, out-of-bounds guards, narrower instruction sets and the deterministic auto rule."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv import reference
from test_pool import guarded_array

import minidl
from minidl.backends import conv as conv_backend
from minidl.backends import winograd
from minidl.nn.functional import conv2d

# The stated bound for F(2x2, 3x3) in float32 (minidl/backends/winograd.py); measured 2e-7 to 6e-7.
WINOGRAD_BOUND = 1e-5


@pytest.fixture
def algorithm():
    """Set minidl.backends.conv.algorithm for one test, restored afterwards."""
    saved = conv_backend.algorithm

    def set_(name):
        conv_backend.algorithm = name

    yield set_
    conv_backend.algorithm = saved


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


def winograd_errors(x_shape, w_shape, padding, seed=0):
    """Max relative errors (output, input grad, weight grad) of the Winograd kernels."""
    x, w = he_relu_inputs(x_shape, w_shape, seed)
    pad = ((padding, padding), (padding, padding))
    out_ref = reference(x, w, None, None, (1, 1), pad, (1, 1), 1)[0]
    gy = np.random.default_rng(seed + 1).standard_normal(out_ref.shape).astype(np.float32)
    out_ref, gx_ref, gw_ref, _ = reference(x, w, None, gy, (1, 1), pad, (1, 1), 1)
    out = np.empty(out_ref.shape, np.float32)
    gx, gw = np.empty_like(x), np.empty_like(w)
    winograd.forward(x, w, None, out, (padding, padding), False, 1)
    winograd.backward_input(gy, w, gx, (padding, padding), 1)
    winograd.backward_weight(x, gy, gw, (padding, padding), 1)
    return rel_inf(out, out_ref), rel_inf(gx, gx_ref), rel_inf(gw, gw_ref)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [
        ((16, 16, 32, 32), (16, 16, 3, 3), 1),  # ResNet-20 stage 1
        ((16, 32, 16, 16), (32, 32, 3, 3), 1),  # stage 2
        ((32, 64, 8, 8), (64, 64, 3, 3), 1),  # stage 3
        ((8, 32, 26, 26), (64, 32, 3, 3), 0),  # PyTorch MNIST example conv2
        ((4, 256, 6, 6), (32, 256, 3, 3), 1),  # a long reduction
    ],
)
def test_winograd_error_bound_he_weights_relu_activations(x_shape, w_shape, padding):
    errors = winograd_errors(x_shape, w_shape, padding)
    assert max(errors) <= WINOGRAD_BOUND, errors
    assert min(errors) > 0  # a real float32 computation, not a float64 copy


@st.composite
def winograd_case(draw):
    pad = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    h = max(1, 3 - 2 * pad[0] + draw(st.integers(0, 9)))
    w = max(1, 3 - 2 * pad[1] + draw(st.integers(0, 9)))
    return dict(
        shape=(draw(st.integers(0, 3)), draw(st.integers(1, 9)), h, w),
        oc=draw(st.integers(1, 9)),
        padding=pad,
        bias=draw(st.booleans()),
        relu=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(winograd_case())
def test_winograd_matches_float64_reference_on_hypothesis_shapes(case):
    saved = conv_backend.algorithm
    conv_backend.algorithm = "winograd"
    try:
        x_shape, oc, (ph, pw) = case["shape"], case["oc"], case["padding"]
        x, w = he_relu_inputs(x_shape, (oc, x_shape[1], 3, 3))
        rng = np.random.default_rng(3)
        b = rng.standard_normal(oc).astype(np.float32) if case["bias"] else None
        pad = ((ph, ph), (pw, pw))
        out_ref = reference(x, w, b, None, (1, 1), pad, (1, 1), 1)[0]
        gy = rng.standard_normal(out_ref.shape).astype(np.float32)
        if case["relu"]:
            # The fused ReLU's gradient is masked where the output is not > 0.
            gy_ref = np.where(out_ref > 0, gy, 0)
            out_ref = np.maximum(out_ref, 0)
        else:
            gy_ref = gy
        _, gx_ref, gw_ref, gb_ref = reference(x, w, b, gy_ref, (1, 1), pad, (1, 1), 1)
        out, gx, gw, gb = run(x, w, b, gy, case["padding"], case["relu"])
        assert out.shape == out_ref.shape and gx.shape == x.shape and gw.shape == w.shape
        for got, ref in [(out, out_ref), (gx, gx_ref), (gw, gw_ref), (gb, gb_ref)]:
            if got is None:
                continue
            np.testing.assert_allclose(got, ref, rtol=0, atol=WINOGRAD_BOUND * scale(ref))
    finally:
        conv_backend.algorithm = saved


@pytest.mark.parametrize(
    "x_shape, padding",
    [
        ((2, 3, 1, 1), 1),  # 1x1 images
        ((1, 4, 5, 7), 0),  # batch 1, odd sizes
        ((2, 3, 4, 4), 3),  # padding > kernel: the input gradient crops (padding 2 - 3 < 0)
        ((1, 2, 2, 9), 4),
        ((0, 3, 6, 6), 1),  # batch 0
    ],
)
def test_winograd_odd_shapes(algorithm, x_shape, padding):
    algorithm("winograd")
    x, w = he_relu_inputs(x_shape, (5, x_shape[1], 3, 3))
    pad = ((padding, padding), (padding, padding))
    out_ref = reference(x, w, None, None, (1, 1), pad, (1, 1), 1)[0]
    gy = np.random.default_rng(2).standard_normal(out_ref.shape).astype(np.float32)
    out_ref, gx_ref, gw_ref, _ = reference(x, w, None, gy, (1, 1), pad, (1, 1), 1)
    out, gx, gw, _ = run(x, w, None, gy, padding)
    for got, ref in [(out, out_ref), (gx, gx_ref), (gw, gw_ref)]:
        np.testing.assert_allclose(got, ref, rtol=0, atol=WINOGRAD_BOUND * scale(ref))


def test_winograd_non_contiguous_input(algorithm):
    algorithm("winograd")
    x, w = he_relu_inputs((3, 6, 9, 10), (4, 6, 3, 3))
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    out = conv2d(minidl.tensor(xt), minidl.tensor(w), padding=1).data
    ref = reference(x, w, None, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)[0]
    np.testing.assert_allclose(out, ref, rtol=0, atol=WINOGRAD_BOUND * np.abs(ref).max())


@pytest.mark.parametrize("x_shape", [(130, 16, 8, 8), (3, 16, 33, 31), (1, 20, 64, 64)])
def test_winograd_bitwise_identical_for_1_2_3_threads(algorithm, x_shape):
    """Several blocks and weight-gradient groups (130 images of 8x8: 9 blocks, 2 groups)."""
    algorithm("winograd")
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


def test_winograd_reads_nothing_past_its_inputs(algorithm):
    """Inputs and output gradient end at a protected page (test_pool.guarded_array)."""
    algorithm("winograd")
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
        np.testing.assert_allclose(got, r, rtol=0, atol=WINOGRAD_BOUND * np.abs(r).max())


ISA_SCRIPT = """
import numpy as np
from minidl.backends import winograd
rng = np.random.default_rng(0)
x = np.maximum(rng.standard_normal((5, 7, 13, 11)), 0).astype(np.float32)
w = (rng.standard_normal((9, 7, 3, 3)) * 0.2).astype(np.float32)
gy = rng.standard_normal((5, 9, 13, 11)).astype(np.float32)
out, gx, gw = np.empty_like(gy), np.empty_like(x), np.empty_like(w)
winograd.forward(x, w, None, out, (1, 1), True, 2)
winograd.backward_input(gy, w, gx, (1, 1), 2)
winograd.backward_weight(x, gy, gw, (1, 1), 2)
np.savez(OUT, out=out, gx=gx, gw=gw)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gcc ISA dispatch")
@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_winograd_narrower_isa_instances_agree(isa, tmp_path):
    # The minidl this run imports (the checkout or site-packages), not the unbuilt source tree.
    root = os.path.dirname(os.path.dirname(os.path.abspath(minidl.__file__)))
    outputs = {}
    for tag, force in [("default", None), ("forced", isa)]:
        env = dict(os.environ, PYTHONPATH=root)
        env.pop("MINIDL_FORCE_ISA", None)
        if force:
            env["MINIDL_FORCE_ISA"] = force
        path = tmp_path / f"{tag}.npz"
        script = f"OUT = {str(path)!r}\n" + ISA_SCRIPT
        subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=tmp_path)
        outputs[tag] = dict(np.load(path))
    for key, a in outputs["default"].items():
        b = outputs["forced"][key]
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max(), err_msg=key)


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


def test_auto_rule_follows_the_measured_table(algorithm):
    algorithm("auto")
    f32 = np.float32

    def picks(c, oc, size=16):
        args = ((128, c, size, size), (oc, c, 3, 3), f32, (1, 1), (1, 1), 1)
        return tuple(conv_backend.choose(p, *args) for p in ("forward", "input", "weight"))

    if not conv_backend._WIDE_ISA:
        assert picks(64, 64) == ("auto", "auto", "auto")
        return
    assert picks(3, 16) == ("auto", "auto", "auto")
    assert picks(16, 16) == ("auto", "auto", "auto")
    assert picks(32, 32) == ("auto", "auto", "winograd")
    assert picks(32, 64) == ("winograd", "auto", "winograd")
    assert picks(32, 64, size=26) == ("winograd", "auto", "auto")  # 169 tiles > one block
    assert picks(64, 64) == ("winograd", "winograd", "winograd")


def test_winograd_kernel_rejects_a_bias_of_the_wrong_length():
    """The kernel read bias[o] for every output channel without checking the bias's length (a
    short bias: a read past its end)."""
    from minidl._kernels import winograd as kernels

    x, w = he_relu_inputs((1, 2, 6, 6), (4, 2, 3, 3))
    u = winograd.transform_weight(w)
    out = np.empty((1, 4, 4, 4), np.float32)
    for size in (3, 5, 0):
        with pytest.raises(ValueError, match=f"winograd.forward: bias has {size} entries for 4"):
            kernels.forward(x, u, np.zeros(size, np.float32), out, 0, 0, False, 1)
    kernels.forward(x, u, np.ones(4, np.float32), out, 0, 0, False, 1)
    ref = reference(x, w, np.ones(4, np.float32), None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)[0]
    assert rel_inf(out, ref) <= WINOGRAD_BOUND
