"""Batch-normalization kernels (minidl._kernels.batchnorm) and the BatchNorm op on top of them:
NumPy references in float64, float64 gradchecks, odd shapes, thread-count determinism, PyTorch
where installed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl import nn
from minidl._kernels import batchnorm as _bn
from minidl.autograd import gradcheck
from minidl.nn import functional as F
from minidl.ops.activation import relu_grad

RNG = np.random.default_rng(12)


def reference(x, g, weight, bias, eps, running=None):
    """Forward output and (gx, gw, gb) in float64 straight from the textbook formulas.
    running: (mean, var) to normalize with instead of the batch statistics."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if running is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = (np.asarray(r, np.float64) for r in running)
    invstd = 1 / np.sqrt(var + eps)
    x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    w = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    b = np.zeros(x.shape[1]) if bias is None else bias.astype(np.float64)
    y = x_hat * w.reshape(shape) + b.reshape(shape)
    gw = (g * x_hat).sum(axis=axes)
    gb = g.sum(axis=axes)
    m = x.size // x.shape[1] if x.shape[1] else 0
    if running is None:
        gx = g - gb.reshape(shape) / m - x_hat * gw.reshape(shape) / m
    else:
        gx = g
    gx = gx * (invstd * w).reshape(shape)
    return y, gx, gw, gb


def run_minidl(x, g, weight, bias, eps=1e-5, training=True, running=None):
    xt = minidl.tensor(x, requires_grad=True)
    wt = None if weight is None else minidl.tensor(weight, requires_grad=True)
    bt = None if bias is None else minidl.tensor(bias, requires_grad=True)
    rm, rv = (None, None) if running is None else (running[0].copy(), running[1].copy())
    out = F.batch_norm(xt, rm, rv, wt, bt, training=training, eps=eps)
    out.backward(g)
    return (
        out.numpy(),
        xt.grad.numpy(),
        None if wt is None else wt.grad.numpy(),
        None if bt is None else bt.grad.numpy(),
    )


def assert_matches(got, want, rtol, atol):
    for a, b in zip(got, want):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# Shapes that cover: 1-d (N, C), a 1x1 image, batch 1, several chunks with a partial last
# one (chunk_rows(1000) = 4 images), rows longer than a chunk, one channel, odd sizes.
SHAPES = [
    (5, 3),
    (7, 4, 3),
    (2, 3, 1, 1),
    (1, 3, 5, 7),
    (9, 2, 40, 25),
    (3, 2, 70, 70),
    (6, 1, 3, 3),
    (4100, 2),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-11), (np.float32, 2e-4, 2e-4)])
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_gradients_match_numpy(shape, dtype, rtol, atol, training):
    c = shape[1]
    x = (RNG.standard_normal(shape) * 2 + 0.5).astype(dtype)
    g = RNG.standard_normal(shape).astype(dtype)
    w, b = RNG.uniform(0.5, 1.5, c).astype(dtype), RNG.standard_normal(c).astype(dtype)
    running = None if training else (RNG.standard_normal(c).astype(dtype),
                                     RNG.uniform(0.5, 2.0, c).astype(dtype))
    got = run_minidl(x, g, w, b, training=training, running=running)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    assert_matches(got, reference(x, g, w, b, 1e-5, running), rtol, atol)


@pytest.mark.parametrize("affine", [(True, True), (False, False), (True, False), (False, True)])
def test_optional_weight_and_bias(affine):
    x, g = RNG.standard_normal((6, 3, 4)), RNG.standard_normal((6, 3, 4))
    w = RNG.uniform(0.5, 1.5, 3) if affine[0] else None
    b = RNG.standard_normal(3) if affine[1] else None
    assert_matches(run_minidl(x, g, w, b), reference(x, g, w, b, 1e-5), 1e-10, 1e-11)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 5),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    training=st.booleans(),
)
def test_hypothesis_shapes_match_numpy(n, c, h, w, eps, training):
    if training and n * h * w < 2:
        return
    rng = np.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    x, g = rng.standard_normal((n, c, h, w)) * 3 - 1, rng.standard_normal((n, c, h, w))
    wt, bt = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    running = None if training else (rng.standard_normal(c), rng.uniform(0.5, 2.0, c))
    got = run_minidl(x, g, wt, bt, eps=eps, training=training, running=running)
    assert_matches(got, reference(x, g, wt, bt, eps, running), 1e-9, 1e-10)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 3, 3), (4, 3), (2, 2, 5)], ids=str)
def test_gradcheck_float64(training, shape):
    x = minidl.tensor(RNG.standard_normal(shape) * 2 + 1, requires_grad=True)
    c = shape[1]
    w = minidl.tensor(RNG.uniform(0.5, 1.5, c), requires_grad=True)
    b = minidl.tensor(RNG.standard_normal(c), requires_grad=True)
    rm, rv = RNG.standard_normal(c), RNG.uniform(0.5, 2.0, c)

    def fn(a, weight, bias):
        return F.batch_norm(a, rm.copy(), rv.copy(), weight, bias, training=training)

    assert gradcheck(fn, [x, w, b])


def forward_kernel(x, threads, weight=None, bias=None, relu=False, y=None):
    """batch_norm_forward with batch statistics: (y, mean, var, invstd, scale, shift)."""
    c = x.shape[1]
    vecs = [np.empty(c) for _ in range(5)]
    y = np.empty_like(x) if y is None else y
    _bn.batch_norm_forward(x, weight, bias, 1e-5, *vecs, y, True, threads, relu)
    return (y, *vecs)


def test_variance_is_accurate_when_the_mean_dwarfs_the_spread():
    # A one-pass E[x^2] - E[x]^2 loses every digit here; chunked centered sums do not.
    x = (1e4 + RNG.standard_normal((64, 2, 30))).astype(np.float64)
    _, mean, var, *_ = forward_kernel(x, 1)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(var, x.var(axis=(0, 2)), rtol=1e-10)
    x32 = x.astype(np.float32)
    _, mean, var, *_ = forward_kernel(x32, 1)
    np.testing.assert_allclose(var, x32.astype(np.float64).var(axis=(0, 2)), rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_map_as_numpy_computes_it(dtype):
    # invstd in the input's precision (PyTorch's float32 1 / sqrt(var + eps)), then float64
    # products; the forward kernel writes the same vectors batch_norm_affine returns.
    x = (RNG.standard_normal((8, 5, 7)) * 3 + 2).astype(dtype)
    w, b = RNG.standard_normal(5), RNG.standard_normal(5)
    for weight, bias in ((w, b), (None, None), (w, None)):
        _, mean, var, invstd, scale, shift = forward_kernel(x, 2, weight, bias)
        want_inv = (1 / np.sqrt(var.astype(dtype) + dtype(1e-5))).astype(np.float64)
        want_scale = want_inv if weight is None else want_inv * weight
        want_shift = -mean * want_scale if bias is None else bias - mean * want_scale
        for got, want in zip((invstd, scale, shift), (want_inv, want_scale, want_shift)):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(_bn.batch_norm_affine(mean, var, weight, bias, 1e-5, dtype),
                             (invstd, scale, shift)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 7, 8, 13])
def test_per_channel_and_chunked_splits_give_the_same_bits(channels, threads):
    # Whole channels as work items or (channel, chunk) ones (_per_channel: 4 channels per
    # thread): the same sums in the same order. 1 thread always takes whole channels.
    x = (RNG.standard_normal((40, channels, 300)) * 2 - 1).astype(np.float32)
    g = RNG.standard_normal(x.shape).astype(np.float32)
    w, b = RNG.uniform(0.5, 1.5, channels), RNG.standard_normal(channels)
    want = forward_kernel(x, 1, w, b, relu=True)
    got = forward_kernel(x, threads, w, b, relu=True)
    for a, b_ in zip(got, want):
        np.testing.assert_array_equal(a, b_)
    y, mean, _, invstd, scale, shift = want
    results = []
    for t in (1, threads):
        sums, gx = [np.empty(channels), np.empty(channels)], np.empty_like(x)
        _bn.batch_norm_backward(x, g, mean, invstd, scale, gx, *sums, True, t, shift)
        results.append([gx, *sums])
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(dtype):
    # 64 images x 4 channels x 1024: parallel (above the threshold), 16 chunks per channel.
    x = (RNG.standard_normal((64, 4, 32, 32)) * 2 + 3).astype(dtype)
    g = RNG.standard_normal(x.shape).astype(dtype)
    w, b = RNG.uniform(0.5, 1.5, 4).astype(dtype), RNG.standard_normal(4).astype(dtype)
    before = minidl.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            minidl.set_num_threads(threads)
            results.append(run_minidl(x, g, w, b))
    finally:
        minidl.set_num_threads(before)
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


def test_non_contiguous_and_memory_mapped_inputs(tmp_path):
    base = RNG.standard_normal((4, 5, 3, 6))
    x = base.transpose(0, 3, 2, 1)  # (4, 6, 3, 5), not contiguous
    g = RNG.standard_normal(x.shape)
    assert_matches(run_minidl(x, g, None, None), reference(x, g, None, None, 1e-5), 1e-10, 1e-11)
    path = tmp_path / "x.npy"
    np.save(path, base)
    mapped = np.load(path, mmap_mode="r")
    out = F.batch_norm(minidl.tensor(mapped), None, None, training=True)
    np.testing.assert_allclose(
        out.numpy(), reference(base, base, None, None, 1e-5)[0], rtol=1e-10, atol=1e-11
    )


def test_empty_batch_in_eval_and_errors():
    m = nn.BatchNorm2d(3)
    m.eval()
    assert m(minidl.zeros(0, 3, 4, 4)).shape == (0, 3, 4, 4)
    m.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(minidl.zeros(0, 3, 4, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.batch_norm(minidl.tensor(np.zeros((4, 3), np.int64)), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight has shape \(2,\)"):
        F.batch_norm(minidl.randn(4, 3), None, None, minidl.ones(2), training=True)


def test_kernels_reject_bad_buffers():
    x = np.zeros((2, 3, 4), np.float32)

    def forward(x, y=None, mean=None, weight=None, batch_stats=True):
        mean = np.empty(3) if mean is None else mean
        _bn.batch_norm_forward(x, weight, None, 1e-5, mean, np.empty(3), np.empty(3),
                               np.empty(3), np.empty(3), np.empty_like(x) if y is None else y,
                               batch_stats, 1)

    with pytest.raises(TypeError, match="batch_norm_forward: expected a 3-D float32/float64"):
        forward(x.astype(np.int32))
    with pytest.raises(ValueError, match="mean must be a C-contiguous float64 array"):
        forward(x, mean=np.empty(2))
    with pytest.raises(ValueError, match="weight must be a C-contiguous float64 array"):
        forward(x, weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        forward(np.zeros((2, 4, 3), np.float32).transpose(0, 2, 1))
    with pytest.raises(ValueError, match="y must be"):
        forward(x, y=np.empty((2, 3, 4)))
    with pytest.raises(ValueError, match="no values per channel"):
        forward(np.zeros((0, 3, 4), np.float32))
    forward(np.zeros((0, 3, 4), np.float32), batch_stats=False)  # eval: only the affine map
    with pytest.raises(ValueError, match="batch_norm_affine: mean must be a 1-D float64"):
        _bn.batch_norm_affine(np.zeros((2, 3)), np.ones(3), None, None, 1e-5, np.float32)
    with pytest.raises(ValueError, match=r"var must be a C-contiguous float64 array of shape \(3,\)"):
        _bn.batch_norm_affine(np.zeros(3), np.ones(2), None, None, 1e-5, np.float32)
    with pytest.raises(ValueError, match="g must be"):
        _bn.batch_norm_backward(
            x, x[:1], np.zeros(3), np.ones(3), np.ones(3), None, np.empty(3), np.empty(3), True, 1
        )


def test_chunk_rows_depends_on_the_row_length_only():
    assert _bn.chunk_rows(1) == 4096
    assert _bn.chunk_rows(1024) == 4
    assert _bn.chunk_rows(5000) == 1


@pytest.mark.parametrize("shape", [(8, 16, 32, 32), (32, 10)], ids=str)
def test_matches_torch_float32_train_then_eval(shape):
    torch = pytest.importorskip("torch")
    c = shape[1]
    cls, tcls = (
        (nn.BatchNorm2d, torch.nn.BatchNorm2d)
        if len(shape) == 4
        else (nn.BatchNorm1d, torch.nn.BatchNorm1d)
    )
    m, tm = cls(c, momentum=0.2), tcls(c, momentum=0.2)
    w = RNG.uniform(0.5, 1.5, c).astype(np.float32)
    m.weight.data[:] = w
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(w))
    for step in range(3):
        if step == 2:
            m.eval()
            tm.eval()
        x = (RNG.standard_normal(shape) * 2 + step).astype(np.float32)
        g = RNG.standard_normal(shape).astype(np.float32)
        mx, tx = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, tout = m(mx), tm(tx)
        out.backward(g)
        tout.backward(torch.from_numpy(g))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.bias.grad.numpy(), tm.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_compiled_graph_replays_batch_norm_with_planned_output():
    minidl.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )
    eager = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )
    eager.load_state_dict(model.state_dict())
    x = minidl.tensor(RNG.standard_normal((6, 2, 5, 5)).astype(np.float32))
    y = minidl.tensor(RNG.integers(0, 3, 6))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    for _ in range(2):
        model.zero_grad()
        eager.zero_grad()
        loss = step(x, y)
        ref = F.cross_entropy(eager(x), y)
        ref.backward()
        np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)
        for p, q in zip(model.parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model[1].running_var.numpy(), eager[1].running_var.numpy(), rtol=1e-6
    )


def near_zero_inputs(shape, dtype, rng):
    """x, weight, bias where a third of x * scale + shift lands within a few ulps of 0, on both
    sides: there a fused multiply-add and a rounded product then sum disagree in sign or
    zero-ness, so a mask not computed as the forward computed it would differ."""
    c = shape[1]
    x = np.moveaxis(rng.standard_normal(shape).astype(dtype), 1, 0).reshape(c, -1)
    x0 = x[:, 0].copy()
    third = rng.random(x.shape) < 1 / 3
    steps = rng.integers(-3, 4, x.shape)  # x0 nudged by 0..3 ulps either way
    x = np.where(third, x0[:, None] + steps * np.spacing(x0)[:, None], x).astype(dtype)
    x = np.ascontiguousarray(np.moveaxis(x.reshape((c, shape[0]) + shape[2:]), 0, 1))
    weight = rng.uniform(0.5, 2, c)
    _, mean, _, _, scale, _ = forward_kernel(x, 1, weight, None)
    # shift = bias - mean * scale = -x0 * scale: x0's output is ~0.
    return x, weight, mean * scale - x0 * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 2, 1), (4, 3, 33), (9, 2, 1000), (2, 1, 64)], ids=str)
def test_fused_relu_backward_equals_relu_then_backward(shape, dtype):
    # The fused ReLU's mask must be ReLU.backward's on the forward output exactly: 0 where the
    # output is <= 0 (a NaN gradient too; -0.0 counts as <= 0), the gradient where it is NaN.
    # The kernel recomputes the output from x, so x is placed where the rounding matters.
    rng = np.random.default_rng(sum(shape))
    finite, weight, bias = near_zero_inputs(shape, dtype, rng)
    g = rng.standard_normal(shape).astype(dtype)
    g.reshape(-1)[2:5] = np.nan
    c = shape[1]
    for batch_stats in (True, False):
        vecs = [np.empty(c) for _ in range(5)]
        x = finite.copy()
        if not batch_stats:  # running statistics: the finite batch's; a NaN output too
            _, vecs[0], vecs[1], *_ = forward_kernel(finite, 1, weight, bias)
            x.reshape(-1)[1] = np.nan
        y = np.empty_like(x)
        _bn.batch_norm_forward(x, weight, bias, 1e-5, *vecs, y, batch_stats, 2, True)
        mean, _, invstd, scale, shift = vecs
        assert (y == 0).any() and (y > 0).any()
        want = [np.empty(c), np.empty(c), np.empty_like(x)]
        _bn.batch_norm_backward(x, relu_grad(y, g), mean, invstd, scale, want[2], want[0],
                                want[1], batch_stats, 2)
        got = [np.empty(c), np.empty(c), np.empty_like(x)]
        _bn.batch_norm_backward(x, g, mean, invstd, scale, got[2], got[0], got[1], batch_stats,
                                2, shift)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_fused_relu_backward_rejects_a_mismatched_shift():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="relu_shift must be a C-contiguous float64 array"):
        _bn.batch_norm_backward(x, x, np.zeros(3), np.ones(3), np.ones(3), None, np.empty(3),
                                np.empty(3), True, 1, np.zeros(3, np.float32))


ISA_SCRIPT = """
import numpy as np
from minidl._kernels import batchnorm as bn
rng = np.random.default_rng(5)
res = {}
for k, shape in enumerate([(3, 2, 1), (5, 3, 31), (4, 2, 32), (6, 2, 97), (9, 4, 1024)]):
    for dt in (np.float32, np.float64):
        x = (rng.standard_normal(shape) * 3 + 1).astype(dt)
        g = rng.standard_normal(shape).astype(dt)
        c = shape[1]
        mean, var, inv, sc, sh = (np.empty(c) for _ in range(5))
        w, b = rng.uniform(0.5, 2, c), rng.standard_normal(c)
        y = np.empty_like(x)
        bn.batch_norm_forward(x, w, b, 1e-5, mean, var, inv, sc, sh, y, True, 2, True)
        sg, sgx, gx = np.empty(c), np.empty(c), np.empty_like(x)
        bn.batch_norm_backward(x, g, mean, inv, sc, gx, sg, sgx, True, 2, sh)
        for name, a in [("mean", mean), ("var", var), ("y", y), ("sg", sg), ("sgx", sgx),
                        ("gx", gx)]:
            res[f"{k}_{np.dtype(dt).name}_{name}"] = a
np.savez(OUT, **res)
"""


@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_narrower_isa_instances_agree_with_the_default(isa, tmp_path):
    """The AVX2 and baseline instances of the kernels (forced with MINIDL_FORCE_ISA) agree with
    the default instance to rounding (FMA contraction differs between them)."""
    from childproc import isa_outputs

    default, forced = isa_outputs(ISA_SCRIPT, isa, tmp_path)
    for key, a in default.items():
        tol = 1e-12 if "float64" in key else 1e-5
        np.testing.assert_allclose(forced[key], a, rtol=tol,
                                   atol=tol * max(1, np.abs(a).max()), err_msg=key)
