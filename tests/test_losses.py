"""Losses (functional and module forms) against NumPy references, gradcheck and PyTorch."""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

RNG = np.random.default_rng(0)


def t64(a, requires_grad=True):
    return minidl.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def reduce_ref(per_sample, reduction, denominator=None):
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.sum() / (per_sample.size if denominator is None else denominator)


def log_softmax_ref(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def cross_entropy_ref(x, y, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """Straight from the definition, one sample at a time."""
    n, c = x.shape
    w = np.ones(c) if weight is None else weight
    logp = log_softmax_ref(x)
    losses, denominator = np.zeros(n), 0.0
    for i in range(n):
        if y[i] == ignore_index:
            continue
        nll = -w[y[i]] * logp[i, y[i]]
        smooth = -(w * logp[i]).sum()
        losses[i] = (1 - smoothing) * nll + smoothing / c * smooth
        denominator += w[y[i]]
    return reduce_ref(losses, reduction, denominator)


def multi_margin_ref(x, y, p=1, margin=1.0, weight=None, reduction="mean"):
    n, c = x.shape
    losses = np.zeros(n)
    for i in range(n):
        for j in range(c):
            if j != y[i]:
                h = max(0.0, margin - x[i, y[i]] + x[i, j]) ** p
                losses[i] += h * (1.0 if weight is None else weight[y[i]])
        losses[i] /= c
    return reduce_ref(losses, reduction)


def bce_ref(x, y, weight=None, pos_weight=None, reduction="mean"):
    s = 1 / (1 + np.exp(-x))
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    if weight is not None:
        loss = loss * weight
    return reduce_ref(loss, reduction)


# -- cross entropy -------------------------------------------------------------------------
CE_OPTIONS = list(itertools.product(["mean", "sum", "none"], [None, "w"], [-100, 1], [0.0, 0.2]))


@pytest.mark.parametrize("reduction,weighted,ignore_index,smoothing", CE_OPTIONS)
def test_cross_entropy_matches_reference(reduction, weighted, ignore_index, smoothing):
    x = RNG.standard_normal((6, 4))
    y = np.array([0, 1, 2, 3, 1, 2])
    w = np.array([0.5, 2.0, 1.0, 1.5]) if weighted else None
    out = F.cross_entropy(t64(x, False), y, w, ignore_index=ignore_index,
                          reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(out.numpy(), cross_entropy_ref(x, y, w, ignore_index, reduction,
                                                              smoothing), rtol=1e-12)


@pytest.mark.parametrize("reduction,weighted,ignore_index,smoothing", CE_OPTIONS[::3])
def test_cross_entropy_gradcheck(reduction, weighted, ignore_index, smoothing):
    x = t64(RNG.standard_normal((5, 3)))
    y = np.array([0, 1, 2, 1, 1])
    w = np.array([0.5, 2.0, 1.5]) if weighted else None
    assert gradcheck(lambda a: F.cross_entropy(a, y, w, ignore_index=ignore_index,
                                                  reduction=reduction, label_smoothing=smoothing), [x])


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    x = RNG.standard_normal((4, 3))
    y = np.array([2, 0, 1, 1])
    xt = t64(x)
    F.cross_entropy(xt, y).backward()
    p = np.exp(log_softmax_ref(x))
    np.testing.assert_allclose(xt.grad.numpy(), (p - np.eye(3)[y]) / 4, rtol=1e-12, atol=1e-15)


def test_cross_entropy_ignored_rows_get_zero_gradient():
    xt = t64(RNG.standard_normal((3, 4)))
    F.cross_entropy(xt, [1, -100, 3], label_smoothing=0.1).backward()
    assert np.all(xt.grad.numpy()[1] == 0) and np.abs(xt.grad.numpy()[0]).max() > 0


def test_cross_entropy_spatial_and_unbatched_inputs():
    x = RNG.standard_normal((2, 3, 4, 5))
    y = RNG.integers(0, 3, (2, 4, 5))
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 3)
    out = F.cross_entropy(t64(x, False), y, reduction="none")
    assert out.shape == (2, 4, 5)
    np.testing.assert_allclose(out.numpy().reshape(-1),
                               cross_entropy_ref(flat_x, y.reshape(-1), reduction="none"))
    assert gradcheck(lambda a: F.cross_entropy(a, y[:, :2, :2], label_smoothing=0.1),
                     [t64(x[:, :, :2, :2])])
    single = F.cross_entropy(t64(x[0, :, 0, 0], False), np.array(2))
    np.testing.assert_allclose(single.numpy(), -log_softmax_ref(x[0, :, 0, 0][None])[0, 2])


def test_cross_entropy_float32_and_batch_of_one():
    x = RNG.standard_normal((1, 5)).astype(np.float32)
    out = nn.CrossEntropyLoss()(minidl.tensor(x), minidl.tensor([4]))
    assert out.dtype == np.float32 and out.shape == ()
    np.testing.assert_allclose(out.item(), -log_softmax_ref(x.astype(np.float64))[0, 4],
                               rtol=1e-6)


def test_cross_entropy_large_logits_are_stable():
    x = t64([[1000.0, -1000.0], [-1000.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = F.cross_entropy(x, [0, 0])
        loss.backward()
    np.testing.assert_allclose(loss.item(), 1000.0)
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0], [-0.5, 0.5]], atol=1e-12)


@pytest.mark.parametrize("target,error,match", [
    ([0, 3, 1], ValueError, "target 3 is out of range for 3 classes"),
    ([0, -1, 1], ValueError, "target -1 is out of range"),
    ([0.0, 1.0, 2.0], TypeError, "integer class indices"),
    ([0, 1], ValueError, "batch sizes must match"),
])
def test_cross_entropy_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        F.cross_entropy(minidl.randn(3, 3), np.array(target))


def test_cross_entropy_bad_options():
    x = minidl.randn(2, 3)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, [0, 1], reduction="avg")
    with pytest.raises(ValueError, match="weight has shape"):
        F.cross_entropy(x, [0, 1], weight=np.ones(4))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, [0, 1], label_smoothing=1.5)


@pytest.mark.parametrize("reduction,weighted,ignore_index,smoothing", CE_OPTIONS)
def test_cross_entropy_matches_torch(reduction, weighted, ignore_index, smoothing):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((6, 4))
    y = np.array([0, 1, 2, 3, 1, 1])
    w = np.array([0.5, 2.0, 1.0, 1.5]) if weighted else None
    g = RNG.standard_normal(6) if reduction == "none" else 1.0
    mx = t64(x)
    out = nn.CrossEntropyLoss(w, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=smoothing)(mx, y)
    out.backward(np.asarray(g, dtype=np.float64).reshape(out.shape))
    tx = torch.tensor(x, requires_grad=True)
    tw = None if w is None else torch.tensor(w)
    tout = torch.nn.CrossEntropyLoss(tw, ignore_index=ignore_index, reduction=reduction,
                                     label_smoothing=smoothing)(tx, torch.tensor(y))
    tout.backward(torch.tensor(g, dtype=torch.float64).reshape(tout.shape))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-14)


# -- NLL ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_reference_and_gradcheck(reduction):
    logp = log_softmax_ref(RNG.standard_normal((5, 3)))
    y = np.array([0, 2, 1, -100, 2])
    w = np.array([1.0, 0.5, 2.0])
    out = F.nll_loss(t64(logp, False), y, w, reduction=reduction)
    per = np.array([0.0 if t == -100 else -w[t] * logp[i, t] for i, t in enumerate(y)])
    denominator = sum(w[t] for t in y if t != -100)
    np.testing.assert_allclose(out.numpy(), reduce_ref(per, reduction, denominator), rtol=1e-12)
    assert gradcheck(lambda a: F.nll_loss(a, y, w, reduction=reduction), [t64(logp)])


def test_nll_of_log_softmax_equals_cross_entropy():
    x = RNG.standard_normal((4, 5))
    y = np.array([1, 0, 4, 2])
    a = F.nll_loss(F.log_softmax(t64(x, False), 1), y)
    b = F.cross_entropy(t64(x, False), y)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-14)


def test_nll_loss_matches_torch():
    torch = pytest.importorskip("torch")
    logp = log_softmax_ref(RNG.standard_normal((5, 3)))
    y = np.array([0, 2, 1, 1, 2])
    mx = t64(logp)
    F.nll_loss(mx, y, np.array([1.0, 0.5, 2.0])).backward()
    tx = torch.tensor(logp, requires_grad=True)
    torch.nn.functional.nll_loss(tx, torch.tensor(y), torch.tensor([1.0, 0.5, 2.0],
                                 dtype=torch.float64)).backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


# -- MSE, L1 ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse", "l1"])
def test_elementwise_losses(name, reduction):
    x, y = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    fn = F.mse_loss if name == "mse" else F.l1_loss
    per = (x - y) ** 2 if name == "mse" else np.abs(x - y)
    np.testing.assert_allclose(fn(t64(x, False), y, reduction=reduction).numpy(), reduce_ref(per, reduction),
                               rtol=1e-12)
    assert gradcheck(lambda a, b: fn(a, b, reduction=reduction), [t64(x), t64(y)])


def test_elementwise_losses_module_forms_and_errors():
    x = minidl.randn(2, 3)
    np.testing.assert_array_equal(nn.MSELoss(reduction="sum")(x, x * 2).numpy(),
                                  F.mse_loss(x, x * 2, reduction="sum").numpy())
    np.testing.assert_array_equal(nn.L1Loss()(x, x * 2).numpy(), F.l1_loss(x, x * 2).numpy())
    with pytest.raises(RuntimeError, match=r"mse_loss: shapes \(2, 3\), \(3, 2\) do not"):
        F.mse_loss(x, minidl.randn(3, 2))
    # Integer targets are cast to the input's dtype (PyTorch promotes them).
    ints = minidl.tensor(np.ones((2, 3), dtype=np.int64))
    np.testing.assert_array_equal(F.l1_loss(x, ints).numpy(), F.l1_loss(x, ints.float()).numpy())


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_elementwise_losses_match_torch(name):
    torch = pytest.importorskip("torch")
    x, y = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    mx = t64(x)
    getattr(F, name)(mx, y).backward()
    tx = torch.tensor(x, requires_grad=True)
    getattr(torch.nn.functional, name)(tx, torch.tensor(y)).backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


# -- multi margin -------------------------------------------------------------------------
MM_OPTIONS = list(itertools.product([1, 2], [1.0, 0.5], [None, "w"], ["mean", "sum", "none"]))


@pytest.mark.parametrize("p,margin,weighted,reduction", MM_OPTIONS)
def test_multi_margin_matches_reference(p, margin, weighted, reduction):
    x = RNG.standard_normal((5, 4))
    y = np.array([0, 3, 1, 2, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5]) if weighted else None
    out = F.multi_margin_loss(t64(x, False), y, p, margin, w, reduction=reduction)
    np.testing.assert_allclose(out.numpy(), multi_margin_ref(x, y, p, margin, w, reduction),
                               rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_gradcheck_away_from_hinges(p):
    # Scores on a grid of step 0.3 with margin 1.0: no margin - s_y + s_j lands near 0.
    x = np.array([[0.3, 1.2, -0.6, 2.1], [-0.9, 0.6, 0.0, 1.5], [2.4, -0.3, 0.9, 0.6]])
    y = np.array([1, 3, 0])
    assert gradcheck(lambda a: F.multi_margin_loss(a, y, p, 1.0, np.array([1.0, 2, 3, 4])),
                     [t64(x)])


def test_multi_margin_lecture_example():
    # The lectures' SVM loss example: scores of three images, hinge with margin 1.
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    # Sum over j != y of the hinges: 2.9, 0, 12.9; PyTorch also divides by the 3 classes.
    out = F.multi_margin_loss(t64(scores, False), y, reduction="none").numpy()
    np.testing.assert_allclose(out * 3, [2.9, 0.0, 12.9], rtol=1e-12)


@pytest.mark.parametrize("p,margin,weighted,reduction", MM_OPTIONS[::2])
def test_multi_margin_matches_torch(p, margin, weighted, reduction):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((5, 4))
    y = np.array([0, 3, 1, 2, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5]) if weighted else None
    mx = t64(x)
    out = nn.MultiMarginLoss(p, margin, w, reduction=reduction)(mx, y)
    out.sum().backward() if reduction == "none" else out.backward()
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.MultiMarginLoss(p, margin, None if w is None else torch.tensor(w),
                                    reduction=reduction)(tx, torch.tensor(y))
    tout.sum().backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_multi_margin_errors():
    with pytest.raises(ValueError, match="p=1 and p=2"):
        F.multi_margin_loss(minidl.randn(2, 3), [0, 1], p=3)
    with pytest.raises(ValueError, match="out of range"):
        F.multi_margin_loss(minidl.randn(2, 3), [0, 3])


# -- BCE with logits ----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_matches_reference_and_gradcheck(reduction, weighted):
    x = RNG.standard_normal((4, 3)) * 2
    y = RNG.uniform(0, 1, (4, 3))
    w = RNG.uniform(0.5, 2, (1, 3)) if weighted else None
    pw = np.array([1.0, 2.0, 0.5]) if weighted else None
    out = F.binary_cross_entropy_with_logits(t64(x, False), y, w, reduction=reduction,
                                             pos_weight=pw)
    np.testing.assert_allclose(out.numpy(), bce_ref(x, y, w, pw, reduction), rtol=1e-12)
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(
        a, b, w, reduction=reduction, pos_weight=pw),
                     [t64(x), t64(y)])


def test_bce_with_logits_is_stable_for_large_logits():
    x = t64([-500.0, 500.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = F.binary_cross_entropy_with_logits(x, np.array([1.0, 0.0]), reduction="none")
        loss.sum().backward()
    np.testing.assert_allclose(loss.numpy(), [500.0, 500.0])
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 1.0])


def test_bce_with_logits_matches_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 3)) * 3
    y = (RNG.uniform(0, 1, (4, 3)) > 0.5).astype(np.float64)
    pw = np.array([1.0, 3.0, 0.5])
    mx = t64(x)
    out = nn.BCEWithLogitsLoss(pos_weight=pw)(mx, y)
    out.backward()
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw))(tx, torch.tensor(y))
    tout.backward()
    np.testing.assert_allclose(out.item(), tout.item(), rtol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_loss_modules_register_weight_buffers():
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0])
    assert list(loss.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    assert repr(nn.MSELoss(reduction="sum")) == "MSELoss()"   # as torch: no options shown
    loss = nn.L1Loss(reduction="max")   # as torch: raises when called
    with pytest.raises(ValueError, match="reduction"):
        loss(minidl.ones(2), minidl.ones(2))


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient():
    x = t64(RNG.standard_normal((2, 3)))
    with np.errstate(all="raise"):
        loss = F.cross_entropy(x, [-100, -100])
        loss.backward()
    assert np.isnan(loss.item())
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 6), seed=st.integers(0, 2**16),
       smoothing=st.sampled_from([0.0, 0.1, 0.5]), weighted=st.booleans(),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_property_against_reference(n, c, seed, smoothing, weighted, reduction):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * 3
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.2] = -100
    y[0] = rng.integers(0, c)  # at least one counted target, so 'mean' is finite
    w = rng.uniform(0.1, 2.0, c) if weighted else None
    xt = t64(x)
    out = F.cross_entropy(xt, y, w, reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(out.numpy(), cross_entropy_ref(x, y, w, -100, reduction,
                                                              smoothing), rtol=1e-10, atol=1e-12)
    # The analytic gradient of the summed loss against central differences.
    assert gradcheck(lambda a: F.cross_entropy(a, y, w, reduction=reduction,
                                               label_smoothing=smoothing), [xt])


@pytest.mark.parametrize("reduction, expected", [("mean", np.nan), ("sum", 0.0), ("none", [0.0])])
def test_cross_entropy_zero_classes_all_ignored_is_pytorchs(reduction, expected):
    # Found by the fuzz suite: (N, 0) logits whose targets are all ignore_index raised
    # IndexError in forward and backward; PyTorch gives NaN for the mean, 0 otherwise.
    x = minidl.tensor(np.zeros((1, 0), np.float32), requires_grad=True)
    loss = F.cross_entropy(x, minidl.tensor(np.array([-100])), reduction=reduction)
    np.testing.assert_array_equal(loss.data, np.asarray(expected, np.float32))
    loss.sum().backward()
    assert x.grad.shape == (1, 0)


# -- smooth L1 / Huber, BCE on probabilities, KL divergence --------------------------------------


def huber_ref(d, delta):
    return np.where(np.abs(d) < delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))


def bce_prob_ref(x, t, w=None):
    loss = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
    return loss if w is None else loss * w


def kl_ref(x, t, log_target=False):
    if log_target:
        return np.exp(t) * (t - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * np.log(t)) - t * x


def probabilities(shape, seed):
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape)


# name -> (minidl call, NumPy per-element reference, input and target makers); the differences
# keep |d| away from beta/delta so that central differences do not straddle the kinks.
PAIR_LOSSES = {
    "smooth_l1": (lambda F_, a, b, r: F_.smooth_l1_loss(a, b, reduction=r, beta=0.7),
                  lambda x, t: huber_ref(x - t, 0.7) / 0.7),
    "smooth_l1_beta0": (lambda F_, a, b, r: F_.smooth_l1_loss(a, b, reduction=r, beta=0.0),
                        lambda x, t: np.abs(x - t)),
    "huber": (lambda F_, a, b, r: F_.huber_loss(a, b, reduction=r, delta=0.7),
              lambda x, t: huber_ref(x - t, 0.7)),
    "bce": (lambda F_, a, b, r: F_.binary_cross_entropy(a, b, reduction=r), bce_prob_ref),
    "kl_div": (lambda F_, a, b, r: F_.kl_div(a, b, reduction=r), kl_ref),
    "kl_div_log_target": (lambda F_, a, b, r: F_.kl_div(a, b, reduction=r, log_target=True),
                          lambda x, t: kl_ref(x, t, True)),
}


def pair_inputs(name, seed):
    rng = np.random.default_rng(seed)
    if name == "bce":
        return probabilities((3, 4), seed), rng.uniform(0, 1, (3, 4))
    if name.startswith("kl_div"):
        t = probabilities((3, 4), seed + 1)
        t[0, 0] = 0.0  # xlogy: a zero target contributes 0
        return np.log(probabilities((3, 4), seed)), (np.log(t + 0.1) if "log" in name else t)
    x = rng.standard_normal((3, 4))
    d = rng.uniform(0.1, 0.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    d[::2] *= 4  # half the differences beyond beta/delta (0.7)
    return x, x - d


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_pair_losses_match_reference_gradcheck_and_torch(name, reduction):
    if reduction == "batchmean" and not name.startswith("kl_div"):
        return
    fn, ref = PAIR_LOSSES[name]
    x, t = pair_inputs(name, 5)
    per = ref(x, t)
    expected = per.sum() / x.shape[0] if reduction == "batchmean" else reduce_ref(per, reduction)
    np.testing.assert_allclose(fn(F, t64(x, False), t, reduction).numpy(), expected, rtol=1e-12)
    if name.startswith("kl_div"):  # the target gradient is NaN at a zero target (PyTorch's)
        t = np.where(t == 0, 0.2, t)
    assert gradcheck(lambda a, b: fn(F, a, b, reduction), [t64(x), t64(t)])
    torch = pytest.importorskip("torch")
    mx, mt = t64(x), t64(t)
    tx, tt = (torch.tensor(a, requires_grad=True) for a in (x, t))
    out, tout = fn(F, mx, mt, reduction), fn(torch.nn.functional, tx, tt, reduction)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-15)
    g = np.random.default_rng(6).standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mt.grad.numpy(), tt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_pair_losses_at_the_kinks_match_torch():
    """|d| == beta, d == 0, x in {0, 1} for BCE (logs clamped at -100, gradient through the
    1e-12 floor) and a zero KL target (NaN target gradient, as PyTorch's xlogy)."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    d = np.array([-0.5, 0.0, 0.5, 1e-300, 2.0])
    probs = np.array([0.0, 1.0, 1.0, 0.0, 1e-50])
    cases = [(lambda F_, a, b: F_.smooth_l1_loss(a, b, reduction="sum", beta=0.5), d, np.zeros(5)),
             (lambda F_, a, b: F_.smooth_l1_loss(a, b, reduction="sum", beta=0.0), d, np.zeros(5)),
             (lambda F_, a, b: F_.huber_loss(a, b, reduction="sum", delta=0.5), d, np.zeros(5)),
             (lambda F_, a, b: F_.binary_cross_entropy(a, b, reduction="sum"), probs,
              np.array([0.0, 1.0, 0.0, 1.0, 1.0])),
             (lambda F_, a, b: F_.kl_div(a, b, reduction="sum"), -np.ones(5), np.array([0.0, 0.5, 0, 1, 2]))]
    for fn, x, t in cases:
        mx, mt = t64(x), t64(t)
        tx, tt = (torch.tensor(a, requires_grad=True) for a in (x, t))
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            out = fn(F, mx, mt)
            out.backward()
        tout = fn(tf, tx, tt)
        tout.backward()
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(mt.grad.numpy(), tt.grad.numpy(), rtol=1e-12)


def test_bce_weight_and_module_forms():
    torch = pytest.importorskip("torch")
    x, t = probabilities((2, 3), 7), np.random.default_rng(8).uniform(0, 1, (2, 3))
    w = np.array([0.5, 1.0, 2.0])
    mx = t64(x)
    loss = nn.BCELoss(weight=w)(mx, t64(t, False))
    loss.backward()
    np.testing.assert_allclose(loss.numpy(), bce_prob_ref(x, t, w).mean(), rtol=1e-12)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.BCELoss(weight=torch.tensor(w))(tx, torch.tensor(t)).backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    assert "weight" in dict(nn.BCELoss(weight=w).named_buffers())
    a, b = minidl.tensor(x), minidl.tensor(t)
    for module, expected in [(nn.SmoothL1Loss(reduction="sum", beta=0.3),
                              F.smooth_l1_loss(a, b, reduction="sum", beta=0.3)),
                             (nn.HuberLoss(delta=0.2), F.huber_loss(a, b, delta=0.2)),
                             (nn.KLDivLoss(reduction="batchmean", log_target=True),
                              F.kl_div(a, b, reduction="batchmean", log_target=True))]:
        np.testing.assert_array_equal(module(a, b).numpy(), expected.numpy())


def test_new_losses_reject_bad_arguments():
    x = minidl.tensor(np.array([0.2, 0.7]))
    with pytest.raises(RuntimeError, match="binary_cross_entropy: all elements of input should "
                                           "be between 0 and 1"):
        F.binary_cross_entropy(x * 2, x)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(minidl.tensor(np.array([np.nan, 0.5])), x)
    with pytest.raises(ValueError, match="binary_cross_entropy: target has shape"):
        F.binary_cross_entropy(x, minidl.tensor(np.ones(3)))
    with pytest.raises(ValueError, match="huber_loss: delta must be positive"):
        F.huber_loss(x, x, delta=0.0)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must not be negative"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="kl_div: reduction must be one of"):
        F.kl_div(x, x, reduction="average")
    with pytest.raises(ValueError, match="batchmean"):
        F.mse_loss(x, x, reduction="batchmean")
    with pytest.raises(ValueError, match="kl_div: reduction"):   # when called, as torch
        nn.KLDivLoss(reduction="bogus")(x, x)


LEGACY_FLAGS = [(None, None, "mean"), (False, None, "sum"), (None, False, "none"),
                (True, False, "none"), (False, True, "sum"), (True, True, "mean")]


@pytest.mark.parametrize("size_average, reduce, meaning", LEGACY_FLAGS)
def test_legacy_size_average_and_reduce_decide_the_reduction(size_average, reduce, meaning):
    """PyTorch's deprecated flags sit before `reduction` in the argument lists; given
    positionally they must mean what they mean there, not be read as a reduction."""
    x, t = minidl.tensor(RNG.standard_normal((3, 4))), minidl.tensor(RNG.standard_normal((3, 4)))
    probs = minidl.tensor(RNG.uniform(0.1, 0.9, (3, 4)))
    labels = np.array([0, 3, 1])
    cases = [
        lambda sa, rd, r: F.mse_loss(x, t, sa, rd, r),
        lambda sa, rd, r: F.l1_loss(x, t, sa, rd, r),
        lambda sa, rd, r: F.smooth_l1_loss(x, t, sa, rd, r),
        lambda sa, rd, r: F.kl_div(x, probs, sa, rd, r),
        lambda sa, rd, r: F.binary_cross_entropy(probs, probs, None, sa, rd, r),
        lambda sa, rd, r: F.binary_cross_entropy_with_logits(x, probs, None, sa, rd, r),
        lambda sa, rd, r: F.cross_entropy(x, labels, None, sa, -100, rd, r),
        lambda sa, rd, r: F.nll_loss(x, labels, None, sa, -100, rd, r),
        lambda sa, rd, r: F.multi_margin_loss(x, labels, 1, 1.0, None, sa, rd, r),
    ]
    legacy = size_average is not None or reduce is not None
    # Once a flag is given, reduction is ignored (as in PyTorch): pass one that differs.
    ignored = "sum" if meaning != "sum" else "none"
    for case in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = case(size_average, reduce, ignored if legacy else meaning).numpy()
        np.testing.assert_array_equal(got, case(None, None, meaning).numpy())
        assert len(caught) == legacy
        if legacy:
            assert f"reduction='{meaning}'" in str(caught[0].message)
    module = nn.MSELoss(size_average, reduce)
    assert module.reduction == meaning
    assert nn.CrossEntropyLoss(None, size_average, -100, reduce).reduction == meaning


def test_legacy_flags_match_torch():
    torch = pytest.importorskip("torch")
    x, t = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    for size_average, reduce, _ in LEGACY_FLAGS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = F.l1_loss(minidl.tensor(x), minidl.tensor(t), size_average, reduce,
                             "none").numpy()
            theirs = torch.nn.functional.l1_loss(torch.tensor(x), torch.tensor(t),
                                                 size_average, reduce, "none").numpy()
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weighted_elementwise_losses_match_reference_and_gradcheck(name, reduction):
    x, t = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    w = RNG.uniform(0.1, 2.0, (3, 4))
    per = {"mse_loss": (x - t) ** 2, "l1_loss": np.abs(x - t),
           "huber_loss": np.where(np.abs(x - t) < 1, 0.5 * (x - t) ** 2,
                                  np.abs(x - t) - 0.5)}[name] * w
    mean = per.mean() if name == "huber_loss" else per.sum() / w.sum()
    expected = {"none": per, "sum": per.sum(), "mean": mean}[reduction]
    fn = getattr(F, name)
    np.testing.assert_allclose(fn(t64(x, False), t, reduction=reduction, weight=w).numpy(),
                               expected, rtol=1e-12)
    assert gradcheck(lambda a, b, c: fn(a, b, reduction=reduction, weight=c),
                     [t64(x), t64(t), t64(w)])
    torch = pytest.importorskip("torch")
    got = getattr(torch.nn.functional, name)(torch.tensor(x), torch.tensor(t),
                                             reduction=reduction, weight=torch.tensor(w))
    np.testing.assert_allclose(expected, got.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match=f"{name}: weights and input must have the same size"):
        fn(t64(x), t, weight=w[0])


def test_elementwise_losses_broadcast_a_smaller_target_with_a_warning():
    x, t = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    mx = t64(x)
    with pytest.warns(UserWarning, match="different to the input size"):
        loss = F.mse_loss(mx, t)
    np.testing.assert_allclose(loss.numpy(), ((x - t) ** 2).mean(), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(mx.grad.numpy(), 2 * (x - t) / x.size, rtol=1e-12)
    with pytest.raises(RuntimeError, match="l1_loss: shapes .* do not broadcast"):
        F.l1_loss(mx, np.ones(3))


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.int8])
def test_class_targets_of_other_integer_dtypes_raise_as_in_torch(dtype):
    x = minidl.randn(2, 3)
    for fn in (F.cross_entropy, F.nll_loss, F.multi_margin_loss):
        with pytest.raises(RuntimeError, match="expected target dtype to be int64"):
            fn(x, minidl.tensor(np.array([0, 1], dtype=dtype)))
    np.testing.assert_array_equal(
        F.cross_entropy(x, minidl.tensor(np.array([0, 1], dtype=np.uint8))).numpy(),
        F.cross_entropy(x, [0, 1]).numpy())
