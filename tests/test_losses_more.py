"""The embedding, ranking, multilabel, probabilistic, triplet and CTC losses (losses_functional
and their modules) against PyTorch 2.13: values and the gradient of every differentiable input in
float32 and float64, broadcasting and dtype rules, error types, 0-size batches; float64
numerical gradient checks."""

import math
import warnings

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def rng(seed=0):
    return np.random.default_rng(seed)


def sign_target(shape, seed=1):
    return np.where(rng(seed).random(shape) < 0.5, -1.0, 1.0)


def as_float(a, dtype):
    a = np.asarray(a)
    return a.astype(dtype) if a.dtype.kind == "f" else a


def run_pair(name, arrays, grads, dtype, kwargs, module=None, init=None):
    """Our F.<name> (or nn.<module>(**init)) and PyTorch's on the same inputs: the outputs, and
    the gradients of the inputs marked in `grads` for one random upstream gradient."""
    torch = pytest.importorskip("torch")
    ours = [minidl.tensor(as_float(a, dtype), requires_grad=g) for a, g in zip(arrays, grads)]
    theirs = [torch.tensor(as_float(a, dtype), requires_grad=g) for a, g in zip(arrays, grads)]
    if module is None:
        out = getattr(F, name)(*ours, **kwargs)
        ref = getattr(torch.nn.functional, name)(*theirs, **kwargs)
    else:
        out = getattr(nn, module)(**(init or {}))(*ours, **kwargs)
        ref = getattr(torch.nn, module)(**(init or {}))(*theirs, **kwargs)
    return ours, theirs, out, ref


def check_against_torch(name, arrays, grads, dtype=np.float64, module=None, init=None,
                        **kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs, out, ref = run_pair(name, arrays, grads, dtype, kwargs, module, init)
    assert out.dtype == np.dtype(str(ref.dtype).removeprefix("torch.")), (out.dtype, ref.dtype)
    assert tuple(out.shape) == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL[dtype])
    if any(grads):
        upstream = rng(7).standard_normal(tuple(ref.shape))
        (out * minidl.tensor(upstream.astype(out.dtype))).sum().backward()
        (ref * torch.tensor(upstream, dtype=ref.dtype)).sum().backward()
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if grads[i]:
                assert a.grad is not None, f"input {i} got no gradient"
                np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **TOL[dtype],
                                           err_msg=f"gradient of input {i}")
    return out


def raises_like_torch(name, arrays, **kwargs):
    """Our F.<name> raises the exception type PyTorch's does on the same inputs."""
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as theirs:
        getattr(torch.nn.functional, name)(*[torch.tensor(np.asarray(a)) for a in arrays],
                                           **kwargs)
    with pytest.raises(type(theirs.value)):
        getattr(F, name)(*[minidl.tensor(np.asarray(a)) for a in arrays], **kwargs)


# -- margin_ranking_loss -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_loss_matches_torch(reduction, dtype):
    x1, x2 = rng().standard_normal((2, 7))
    check_against_torch("margin_ranking_loss", [x1, x2, sign_target(7)], [True, True, True],
                        dtype, margin=0.3, reduction=reduction)


def test_margin_ranking_loss_broadcasts_promotes_and_passes_the_gradient_at_the_kink():
    x1 = rng().standard_normal((3, 4))
    # input2 (1, 4) broadcasts; target of floats in float32 against float64 inputs.
    check_against_torch("margin_ranking_loss", [x1, x1[:1] + 0.1, sign_target((3, 1))],
                        [True, True, True], reduction="none")
    # At -t (x1 - x2) + margin == 0 the gradient passes (PyTorch's clamp_min).
    out = check_against_torch("margin_ranking_loss", [[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]],
                              [True, True, True], reduction="sum")
    assert out.item() == 1.0


def test_margin_ranking_loss_errors_match_torch():
    raises_like_torch("margin_ranking_loss", [np.ones(3), np.ones((3, 1)), np.ones(3)])
    raises_like_torch("margin_ranking_loss", [np.ones(3), np.ones(2), np.ones(3)])
    raises_like_torch("margin_ranking_loss", [np.ones(3), np.ones(3), np.ones(3)],
                      reduction="bad")


# -- hinge_embedding_loss ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_embedding_loss_matches_torch(reduction, dtype):
    x = rng().standard_normal((4, 5)) * 2
    # A target of 0 is neither class: PyTorch's formula adds both terms there.
    t = np.where(rng(3).random((4, 5)) < 0.2, 0.0, sign_target((4, 5)))
    check_against_torch("hinge_embedding_loss", [x, t], [True, False], dtype, margin=1.5,
                        reduction=reduction)


def test_hinge_embedding_loss_broadcasts_keeps_the_input_dtype_and_its_kink():
    check_against_torch("hinge_embedding_loss", [rng().standard_normal((2, 3)), [1.0, -1, -1]],
                        [True, False], reduction="none")
    check_against_torch("hinge_embedding_loss", [rng().standard_normal(3), np.array([1, -1, 1])],
                        [True, False], np.float32)
    # margin - x == 0 for target -1: the gradient passes (PyTorch's clamp_min).
    x = minidl.tensor([1.0], requires_grad=True)
    F.hinge_embedding_loss(x, minidl.tensor([-1.0])).backward()
    assert x.grad.tolist() == [-1.0]
    raises_like_torch("hinge_embedding_loss", [np.ones(3), np.ones(2)])
    raises_like_torch("hinge_embedding_loss", [np.ones(3), np.ones(3)], reduction="x")


# -- soft_margin_loss ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_loss_matches_torch(reduction, dtype):
    x = rng().standard_normal((3, 5)) * 3
    check_against_torch("soft_margin_loss", [x, sign_target((3, 5))], [True, False], dtype,
                        reduction=reduction)


def test_soft_margin_loss_is_log1p_and_overflows_like_torch():
    # log1p keeps 4.2e-18 at x = 40 (log(1 + e) would round to 0).
    out = check_against_torch("soft_margin_loss", [[40.0, -30.0, 1e-9], [1.0, 1.0, -1.0]],
                              [True, False], reduction="none")
    assert out.numpy()[0] > 0
    with np.errstate(over="ignore", invalid="ignore"):
        x = minidl.tensor([-800.0], dtype=minidl.float64, requires_grad=True)
        loss = F.soft_margin_loss(x, minidl.tensor([1.0], dtype=minidl.float64))
        loss.backward()
    assert math.isinf(loss.item()) and math.isnan(x.grad.item())  # PyTorch's inf and nan


def test_soft_margin_loss_target_rules_match_torch():
    # The target broadcasts to the input and takes its dtype; the reverse raises.
    check_against_torch("soft_margin_loss", [rng().standard_normal((2, 3)), [1.0, -1.0, 1.0]],
                        [True, False], np.float32)
    raises_like_torch("soft_margin_loss", [np.ones(3), np.ones((2, 3))])
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.nn.functional.soft_margin_loss(torch.ones(3), torch.ones(3, requires_grad=True))
    with pytest.raises(RuntimeError, match="not differentiable with respect to target"):
        F.soft_margin_loss(minidl.ones(3), minidl.ones(3, requires_grad=True))
    with minidl.no_grad():
        F.soft_margin_loss(minidl.ones(3), minidl.ones(3, requires_grad=True))


# -- cosine_embedding_loss -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_loss_matches_torch(reduction, dtype):
    x1, x2 = rng().standard_normal((2, 5, 4))
    t = np.array([1.0, -1.0, 1.0, -1.0, 0.0])
    check_against_torch("cosine_embedding_loss", [x1, x2, t], [True, True, False], dtype,
                        margin=-0.2, reduction=reduction)


def test_cosine_embedding_loss_uses_torchs_float32_epsilon_and_shapes():
    # Magnitudes of 1e-14: the eps of 1e-12f (not 1e-12) decides the 10th digit.
    check_against_torch("cosine_embedding_loss", [[[3e-7, 1e-7]], [[1e-7, 2e-7]], [1.0]],
                        [True, True, False])
    x1, x2 = rng().standard_normal((2, 4))
    check_against_torch("cosine_embedding_loss", [x1, x2, 1], [True, True, False])  # unbatched
    # input2 (1, D) broadcasts; float32 against float64 promotes.
    a = rng().standard_normal((3, 4))
    check_against_torch("cosine_embedding_loss", [a, a[:1] * 2 - 1, [1, -1, 1]],
                        [True, True, False], reduction="none")
    check_against_torch("cosine_embedding_loss", [np.zeros((2, 3)), np.ones((2, 3)), [1, -1]],
                        [True, True, False])
    for arrays in ([np.ones((3, 4)), np.ones(4), np.ones(3)],
                   [np.ones(4), np.ones((3, 4)), np.ones(())],
                   [np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 1))],
                   [np.ones((3, 4)), np.ones((3, 4)), np.ones(2)],
                   [np.ones((3, 4)), np.ones((2, 4)), np.ones(3)]):
        raises_like_torch("cosine_embedding_loss", arrays)


# -- multilabel_soft_margin_loss -----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_multilabel_soft_margin_loss_matches_torch(reduction, dtype, weighted):
    x = rng().standard_normal((4, 5)) * 4
    t = rng(2).random((4, 5))
    arrays, grads = [x, t], [True, True]
    if weighted:
        arrays, grads = arrays + [rng(3).random(5)], grads + [True]
    check_against_torch("multilabel_soft_margin_loss", arrays, grads, dtype,
                        reduction=reduction)


def test_multilabel_soft_margin_loss_shapes_dtypes_and_module_buffer():
    check_against_torch("multilabel_soft_margin_loss", [rng().standard_normal(5), np.ones(5)],
                        [True, True], reduction="none")  # unbatched: a 0-d loss
    check_against_torch("multilabel_soft_margin_loss",
                        [rng().standard_normal((2, 3, 4)), rng().random(4)], [True, True],
                        reduction="none")
    check_against_torch("multilabel_soft_margin_loss",
                        [rng().standard_normal((3, 4)), (rng().random((3, 4)) > 0.5) * 1],
                        [True, False], np.float32)
    check_against_torch("multilabel_soft_margin_loss",
                        [rng().standard_normal((3, 4)), rng().random((3, 4)), np.ones((3, 1))],
                        [True, True, True], reduction="sum")
    raises_like_torch("multilabel_soft_margin_loss", [np.ones(()), np.ones(())])
    raises_like_torch("multilabel_soft_margin_loss", [np.ones((3, 4)), np.ones((3, 4)),
                                                      np.ones(3)])
    raises_like_torch("multilabel_soft_margin_loss", [np.ones((3, 4)), np.ones((3, 4))],
                      reduction="bad")
    weight = np.array([1.0, 2.0, 0.5])
    module = nn.MultiLabelSoftMarginLoss(weight=weight)
    assert list(dict(module.named_buffers())) == ["weight"]
    check_against_torch(None, [rng().standard_normal((2, 3)), rng().random((2, 3))],
                        [True, True], module="MultiLabelSoftMarginLoss",
                        init={"reduction": "sum"})


# -- multilabel_margin_loss ----------------------------------------------------------------
TARGETS = np.array([[3, 0, -1, 1], [0, 1, 2, 3], [1, -1, 2, 2], [2, 2, -1, 0], [-1, 0, 1, 2]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_loss_matches_torch(reduction, dtype):
    x = rng().standard_normal((5, 4))
    check_against_torch("multilabel_margin_loss", [x, TARGETS], [True, False], dtype,
                        reduction=reduction)


def test_multilabel_margin_loss_counts_repeated_targets_and_stops_at_a_zero_margin():
    # Target 0 twice counts twice; 1 - (x0 - x1) == 0 is not a violation (PyTorch's z > 0).
    out = check_against_torch("multilabel_margin_loss", [[1.0, 0.0, 0.5], np.array([0, 0, -1])],
                              [True, False])
    assert out.item() == pytest.approx(1 / 3)
    check_against_torch("multilabel_margin_loss", [rng().standard_normal(4), TARGETS[0]],
                        [True, False], reduction="none")
    check_against_torch("multilabel_margin_loss", [np.array(0.7), np.array(0)], [True, False])


def test_multilabel_margin_loss_gradcheck():
    x = minidl.tensor(rng().standard_normal((5, 4)), requires_grad=True)
    for reduction in REDUCTIONS:
        assert gradcheck(lambda a, r=reduction: F.multilabel_margin_loss(a, TARGETS,
                                                                         reduction=r), [x])


def test_multilabel_margin_loss_errors_match_torch():
    x = rng().standard_normal((3, 4))
    for target in (TARGETS[0], TARGETS[:2], np.array([[4, 0, -1, 1]] * 3),
                   np.array([[-2, 0, -1, 1]] * 3), TARGETS[:3].astype(np.int32),
                   TARGETS[:3].astype(np.float64)):
        raises_like_torch("multilabel_margin_loss", [x, target])
    raises_like_torch("multilabel_margin_loss", [np.ones((2, 0)), np.zeros((2, 0), np.int64)])
    raises_like_torch("multilabel_margin_loss", [np.ones((2, 3, 4)),
                                                 np.zeros((2, 3, 4), np.int64)])
    raises_like_torch("multilabel_margin_loss", [x, TARGETS[:3]], reduction="bad")


# -- poisson_nll_loss ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_input,full", [(True, False), (True, True), (False, False),
                                            (False, True)])
def test_poisson_nll_loss_matches_torch(reduction, dtype, log_input, full):
    x = rng().standard_normal((3, 4)) if log_input else rng().random((3, 4)) * 3
    t = rng(5).poisson(2.0, (3, 4)).astype(np.float64) + 0.5  # no 0: the NaN case is below
    check_against_torch("poisson_nll_loss", [x, t], [True, True], dtype, log_input=log_input,
                        full=full, reduction=reduction)


def test_poisson_nll_loss_edge_values_broadcasting_and_dtypes_match_torch():
    # Target 0 with full: PyTorch's masked Stirling term gives a NaN target gradient; input 0
    # without log_input is the eps case.
    for log_input in (True, False):
        check_against_torch("poisson_nll_loss", [[0.5, 1.0, 2.0, 0.0], [0.0, 1.0, 3.0, 2.0]],
                            [True, True], log_input=log_input, full=True, eps=1e-3,
                            reduction="sum")
    check_against_torch("poisson_nll_loss", [rng().standard_normal(3), rng().random((2, 3))],
                        [True, True], reduction="none")
    check_against_torch("poisson_nll_loss", [rng().standard_normal(3), np.array([0, 2, 5])],
                        [True, False], np.float32, full=True, reduction="none")
    raises_like_torch("poisson_nll_loss", [np.ones(3), np.ones(3)], reduction="bad")
    raises_like_torch("poisson_nll_loss", [np.ones(3), np.ones(2)])


# -- gaussian_nll_loss ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_loss_matches_torch(reduction, dtype, full):
    x, t = rng().standard_normal((2, 4, 3))
    var = rng(4).random((4, 3)) + 0.1
    check_against_torch("gaussian_nll_loss", [x, t, var], [True, True, True], dtype, full=full,
                        reduction=reduction)


@pytest.mark.parametrize("var_shape", [(4,), (4, 1), (1, 3), (3,), ()])
def test_gaussian_nll_loss_var_shapes_match_torch(var_shape):
    torch = pytest.importorskip("torch")
    x, t = rng().standard_normal((2, 4, 3))
    var = rng(4).random(var_shape) + 0.1
    try:
        torch.nn.functional.gaussian_nll_loss(torch.tensor(x), torch.tensor(t),
                                              torch.tensor(var))
    except ValueError:
        with pytest.raises(ValueError, match="incorrect size"):
            F.gaussian_nll_loss(minidl.tensor(x), minidl.tensor(t), minidl.tensor(var))
        return
    check_against_torch("gaussian_nll_loss", [x, t, var], [True, True, True], reduction="none")


def test_gaussian_nll_loss_clamps_var_in_value_only_and_takes_a_float_var():
    # var below eps is clamped to eps, but its gradient is that of the clamped value.
    check_against_torch("gaussian_nll_loss", [np.zeros(2), np.ones(2), [1e-8, 0.5]],
                        [True, True, True], full=True, reduction="none")
    torch = pytest.importorskip("torch")
    x, t = rng().standard_normal((2, 3, 2))
    ours = F.gaussian_nll_loss(minidl.tensor(x, dtype=minidl.float32), minidl.tensor(t), 0.5)
    ref = torch.nn.functional.gaussian_nll_loss(torch.tensor(x, dtype=torch.float32),
                                                torch.tensor(t), 0.5)
    assert ours.dtype == np.float64 and ref.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6)


def test_gaussian_nll_loss_errors_match_torch_in_its_order():
    torch = pytest.importorskip("torch")
    x = np.ones((4, 3))
    # The first failing check names the error: var's sign, then its shape, then reduction.
    for var, kwargs, theirs, ours in [
            (-np.ones((4, 3)), {}, "negative", "negative"),
            (-np.ones(2), {"reduction": "bad"}, "negative", "negative"),
            (np.ones(2), {"reduction": "bad"}, "incorrect size", "incorrect size"),
            (np.ones((4, 3)), {"reduction": "x"}, "not valid", "reduction must be"),
            (np.ones((2, 0)), {}, "incorrect size", "incorrect size")]:
        with pytest.raises(ValueError, match=theirs):
            torch.nn.functional.gaussian_nll_loss(torch.tensor(x), torch.tensor(x),
                                                  torch.tensor(var), **kwargs)
        with pytest.raises(ValueError, match=ours):
            F.gaussian_nll_loss(minidl.tensor(x), minidl.tensor(x), minidl.tensor(var),
                                **kwargs)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(minidl.tensor(x), minidl.tensor(x), -0.5)
    with pytest.raises(TypeError):
        torch.nn.functional.gaussian_nll_loss(torch.tensor(x), torch.tensor(x), 1)
    with pytest.raises(TypeError):
        F.gaussian_nll_loss(minidl.tensor(x), minidl.tensor(x), 1)


# -- triplet losses ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [2, 1, 3, 0.5, math.inf])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_matches_torch(reduction, dtype, p, swap):
    a, pos, neg = rng().standard_normal((3, 6, 4))
    check_against_torch("triplet_margin_loss", [a, pos, neg], [True, True, True], dtype,
                        margin=1.5, p=p, swap=swap, reduction=reduction)


def test_triplet_margin_loss_shapes_and_errors_match_torch():
    a, pos, neg = rng().standard_normal((3, 4, 3))
    check_against_torch("triplet_margin_loss", [a[0], pos[0], neg[0]], [True, True, True])
    check_against_torch("triplet_margin_loss", [a, pos[:1], neg], [True, True, True],
                        reduction="none")
    check_against_torch("triplet_margin_loss", [a, a, neg], [True, True, True], p=-1)
    check_against_torch("triplet_margin_loss", np.ones((3, 2, 3)), [True, True, True],
                        reduction="none")  # equal inputs: distances of eps only
    raises_like_torch("triplet_margin_loss", [a, pos[0], neg])
    raises_like_torch("triplet_margin_loss", [a, pos, neg], margin=-1.0)
    raises_like_torch("triplet_margin_loss", [a, pos, neg], reduction="bad")
    raises_like_torch("triplet_margin_loss", [a, pos[:2], neg])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_with_distance_loss_matches_torch(reduction, swap):
    a, pos, neg = rng().standard_normal((3, 5, 4))
    check_against_torch("triplet_margin_with_distance_loss", [a, pos, neg], [True, True, True],
                        swap=swap, reduction=reduction, margin=2.0)


def test_triplet_margin_with_distance_loss_takes_a_distance_function():
    torch = pytest.importorskip("torch")
    a, pos, neg = rng().standard_normal((3, 5, 4))

    def l1(x, y):
        return (x - y).abs().sum(-1)

    ours = [minidl.tensor(v, requires_grad=True) for v in (a, pos, neg)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a, pos, neg)]
    out = nn.TripletMarginWithDistanceLoss(distance_function=l1, swap=True)(*ours)
    ref = torch.nn.TripletMarginWithDistanceLoss(distance_function=l1, swap=True)(*theirs)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(out.item(), ref.item(), rtol=1e-12)
    for x, y in zip(ours, theirs):
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-12, atol=1e-12)
    for kwargs in ({"margin": 0.0}, {"reduction": "bad"}):
        raises_like_torch("triplet_margin_with_distance_loss", [a, pos, neg], **kwargs)
    raises_like_torch("triplet_margin_with_distance_loss", [a, pos, neg[0]])
    with pytest.raises(ValueError, match="margin"):
        nn.TripletMarginWithDistanceLoss(margin=-1)
    with pytest.raises(ValueError, match="margin"):
        nn.TripletMarginLoss(margin=0)


# -- across the losses ---------------------------------------------------------------------
def gradcheck_inputs(shape, positive=False, seed=0):
    a = rng(seed).standard_normal(shape)
    return minidl.tensor(np.abs(a) + 0.2 if positive else a, requires_grad=True)


def test_composite_losses_pass_gradcheck():
    """Every differentiable input of each composite loss, in float64, away from kinks."""
    x, y, z = (gradcheck_inputs((4, 3), seed=s) for s in range(3))
    t = minidl.tensor(sign_target(4 * 3).reshape(4, 3))
    prob = minidl.tensor(rng(4).random((4, 3)), requires_grad=True)
    cases = [
        (lambda a, b, c: F.margin_ranking_loss(a, b, c, margin=0.1), [x, y, gradcheck_inputs(
            (4, 3), seed=5)]),
        (lambda a: F.hinge_embedding_loss(a, t, margin=0.3), [x]),
        (lambda a: F.soft_margin_loss(a, t), [x]),
        (lambda a, b: F.cosine_embedding_loss(a, b, t[:, 0], margin=-0.9), [x, y]),
        (lambda a, b, w: F.multilabel_soft_margin_loss(a, b, w), [x, prob,
                                                                  gradcheck_inputs(3, True)]),
        (lambda a, b: F.poisson_nll_loss(a, b, full=True), [x, gradcheck_inputs((4, 3), True)]),
        (lambda a, b: F.poisson_nll_loss(a, b, log_input=False),
         [gradcheck_inputs((4, 3), True), gradcheck_inputs((4, 3), True, 1)]),
        (lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=True),
         [x, y, gradcheck_inputs((4, 1), True)]),
        (lambda a, b, c: F.triplet_margin_loss(a, b, c, margin=3.0, p=3, swap=True), [x, y, z]),
        (lambda a, b, c: F.triplet_margin_with_distance_loss(a, b, c, margin=3.0), [x, y, z]),
    ]
    for fn, inputs in cases:
        for i in inputs:
            i.grad = None
        assert gradcheck(fn, inputs)


ZERO_BATCH = [
    ("margin_ranking_loss", [np.ones(0), np.ones(0), np.ones(0)]),
    ("hinge_embedding_loss", [np.ones((0, 3)), np.ones((0, 3))]),
    ("soft_margin_loss", [np.ones(0), np.ones(0)]),
    ("cosine_embedding_loss", [np.ones((0, 4)), np.ones((0, 4)), np.ones(0)]),
    ("multilabel_soft_margin_loss", [np.ones((0, 4)), np.ones((0, 4))]),
    ("poisson_nll_loss", [np.ones((0, 2)), np.ones((0, 2))]),
    ("gaussian_nll_loss", [np.ones((0, 2)), np.ones((0, 2)), np.ones((0, 2))]),
    ("triplet_margin_loss", [np.ones((0, 3))] * 3),
    ("triplet_margin_with_distance_loss", [np.ones((0, 3))] * 3),
]


@pytest.mark.parametrize("name,arrays", ZERO_BATCH, ids=[c[0] for c in ZERO_BATCH])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_size_batches_match_torch(name, arrays, reduction):
    """A mean over no sample is NaN, a sum 0, 'none' an empty tensor; gradients are empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check_against_torch(name, arrays, [True] + [False] * (len(arrays) - 1),
                            reduction=reduction)


def test_multilabel_margin_loss_zero_batch():
    # PyTorch's 'mean' over no sample returns uninitialized memory; minidl's mean is NaN.
    x = minidl.zeros((0, 4), requires_grad=True)
    target = np.zeros((0, 4), np.int64)
    assert F.multilabel_margin_loss(x, target, reduction="none").shape == (0,)
    assert F.multilabel_margin_loss(x, target, reduction="sum").item() == 0
    loss = F.multilabel_margin_loss(x, target)
    assert math.isnan(loss.item())
    loss.backward()
    assert x.grad.shape == (0, 4)


def test_legacy_size_average_and_reduce_override_reduction():
    x1, x2 = rng().standard_normal((2, 5))
    t = sign_target(5)
    for name, arrays in [("margin_ranking_loss", [x1, x2, t]), ("soft_margin_loss", [x1, t]),
                         ("hinge_embedding_loss", [x1, t]),
                         ("multilabel_soft_margin_loss", [x1, (t > 0) * 1.0]),
                         ("poisson_nll_loss", [x1, np.abs(t)])]:
        with pytest.warns(UserWarning, match="reduction='sum'"):
            out = check_against_torch(name, arrays, [True] + [False] * (len(arrays) - 1),
                                      size_average=False)
        tensors = [minidl.tensor(a) for a in arrays]
        with pytest.warns(UserWarning, match="reduction='none'"):
            none = getattr(F, name)(*tensors, reduce=False)
        np.testing.assert_array_equal(none.numpy(),
                                      getattr(F, name)(*tensors, reduction="none").numpy())
        per_sample = () if name == "multilabel_soft_margin_loss" else (5,)
        assert out.ndim == 0 and none.shape == per_sample


def module_inputs():
    x, y, z = rng().random((3, 3, 4)) + 0.1
    signs = sign_target((3, 4))
    return {"pair": [x, y], "signs": [x, signs], "ranking": [x, y, signs],
            "cosine": [x, y - 0.5, np.array([1.0, -1.0, 1.0])], "labels": [x - 0.5, TARGETS[:3]],
            "triple": [x, y, z]}


# module, its options, its functional form, inputs, which inputs get gradients
MODULES = [
    ("MarginRankingLoss", {"margin": 0.5}, "margin_ranking_loss", "ranking", [1, 1, 1]),
    ("HingeEmbeddingLoss", {"margin": 2.0}, "hinge_embedding_loss", "signs", [1, 0]),
    ("SoftMarginLoss", {}, "soft_margin_loss", "signs", [1, 0]),
    ("CosineEmbeddingLoss", {"margin": 0.1}, "cosine_embedding_loss", "cosine", [1, 1, 0]),
    ("MultiLabelSoftMarginLoss", {"weight": np.arange(1.0, 5.0)}, "multilabel_soft_margin_loss",
     "pair", [1, 1]),
    ("MultiLabelMarginLoss", {}, "multilabel_margin_loss", "labels", [1, 0]),
    ("PoissonNLLLoss", {"log_input": False, "full": True, "eps": 1e-4}, "poisson_nll_loss",
     "pair", [1, 1]),
    ("GaussianNLLLoss", {"full": True, "eps": 0.5}, "gaussian_nll_loss", "triple", [1, 1, 1]),
    ("TripletMarginLoss", {"margin": 0.7, "p": 1.0, "swap": True}, "triplet_margin_loss",
     "triple", [1, 1, 1]),
    ("TripletMarginWithDistanceLoss", {"margin": 0.7, "swap": True},
     "triplet_margin_with_distance_loss", "triple", [1, 1, 1]),
]


@pytest.mark.parametrize("module,options,name,inputs,grads", MODULES,
                         ids=[m[0] for m in MODULES])
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_modules_match_torch_and_their_functional_forms(module, options, name, inputs, grads,
                                                        reduction):
    torch = pytest.importorskip("torch")
    arrays = module_inputs()[inputs]
    options = dict(options, reduction=reduction)
    torch_options = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                     for k, v in options.items()}
    out = check_against_torch(None, arrays, [bool(g) for g in grads], module=module,
                              init=torch_options)
    again = getattr(F, name)(*[minidl.tensor(a) for a in arrays], **options)
    np.testing.assert_array_equal(out.numpy(), again.numpy())


def test_module_reprs_and_attributes():
    assert repr(nn.MarginRankingLoss()) == "MarginRankingLoss()"
    assert repr(nn.MultiLabelSoftMarginLoss()) == "MultiLabelSoftMarginLoss()"
    module = nn.TripletMarginLoss(margin=2.0, p=1.0, eps=0.1, swap=True)
    assert (module.margin, module.p, module.eps, module.swap) == (2.0, 1.0, 0.1, True)
    module = nn.PoissonNLLLoss(log_input=False, full=True, eps=0.5)
    assert (module.log_input, module.full, module.eps) == (False, True, 0.5)
    assert nn.MultiLabelSoftMarginLoss().weight is None
    default = nn.TripletMarginWithDistanceLoss()
    assert isinstance(default.distance_function, nn.Module)
    assert dict(default.named_modules()).keys() == {"", "distance_function"}
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.SoftMarginLoss(size_average=False).reduction == "sum"


def test_nll_loss_2d_is_the_deprecated_name_of_nll_loss():
    with pytest.warns(FutureWarning, match="`NLLLoss2d` has been deprecated"):
        module = nn.NLLLoss2d(weight=np.array([1.0, 2.0, 3.0]), ignore_index=1)
    assert isinstance(module, nn.NLLLoss) and module.ignore_index == 1
    x = minidl.tensor(rng().standard_normal((2, 3, 4, 5))).log_softmax(1)
    y = rng().integers(0, 3, (2, 4, 5))
    expected = F.nll_loss(x, y, weight=np.array([1.0, 2.0, 3.0]), ignore_index=1)
    np.testing.assert_array_equal(module(x, y).numpy(), expected.numpy())


# -- ctc_loss ------------------------------------------------------------------------------
def ctc_case(seed, steps=7, batch=4, classes=5, normalized=True):
    """Random log-probabilities, padded targets (repeats included) and lengths, one sample
    with an empty target and one shorter input."""
    r = rng(seed)
    x = r.standard_normal((steps, batch, classes))
    if normalized:
        x = x - np.log(np.exp(x).sum(axis=2, keepdims=True))
    target_lengths = r.integers(0, 4, batch)
    target_lengths[0] = 0
    targets = r.integers(1, classes, (batch, 4))
    targets[1, :2] = targets[1, 0]  # a repeated label needs a blank between
    target_lengths[1] = max(target_lengths[1], 2)
    input_lengths = np.full(batch, steps)
    input_lengths[-1] = steps - 2
    return x, targets, input_lengths, target_lengths


def check_ctc(log_probs, targets, input_lengths, target_lengths, dtype=np.float64, **kwargs):
    torch = pytest.importorskip("torch")
    ours = minidl.tensor(log_probs.astype(dtype), requires_grad=True)
    theirs = torch.tensor(log_probs.astype(dtype), requires_grad=True)
    out = F.ctc_loss(ours, targets, minidl.tensor(input_lengths), minidl.tensor(target_lengths),
                     **kwargs)
    ref = torch.nn.functional.ctc_loss(theirs, torch.tensor(targets), torch.tensor(input_lengths),
                                       torch.tensor(target_lengths), **kwargs)
    assert out.dtype == np.dtype(dtype) and tuple(out.shape) == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL[dtype])
    upstream = rng(9).standard_normal(tuple(ref.shape))
    (out * minidl.tensor(upstream.astype(dtype))).sum().backward()
    (ref * torch.tensor(upstream, dtype=ref.dtype)).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), **TOL[dtype])
    return out, ours.grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_loss_matches_torch(reduction, dtype, seed):
    check_ctc(*ctc_case(seed), dtype, reduction=reduction)


def test_ctc_loss_concatenated_targets_blank_and_list_lengths_match_torch():
    x, targets, input_lengths, target_lengths = ctc_case(3)
    flat = np.concatenate([row[:n] for row, n in zip(targets, target_lengths)])
    padded, _ = check_ctc(x, targets, input_lengths, target_lengths, reduction="none")
    concatenated, _ = check_ctc(x, flat, input_lengths, target_lengths, reduction="none")
    np.testing.assert_array_equal(padded.numpy(), concatenated.numpy())
    # Another blank index; labels may then include 0.
    check_ctc(x, np.where(targets == 4, 0, targets), input_lengths, target_lengths, blank=4,
              reduction="sum")
    lists = F.ctc_loss(minidl.tensor(x), targets, list(input_lengths), tuple(target_lengths),
                       reduction="none")
    np.testing.assert_array_equal(lists.numpy(), padded.numpy())


def test_ctc_loss_gradient_is_torchs_also_for_unnormalized_log_probs():
    # PyTorch's gradient is exp(log_probs) - posteriors, not d loss / d log_probs.
    _, grad = check_ctc(*ctc_case(4, normalized=False), reduction="mean")
    assert np.abs(grad.numpy().sum(axis=2)).max() > 0.1


def test_ctc_loss_gradcheck_through_log_softmax():
    """Through log_softmax PyTorch's gradient is the exact one: central differences agree."""
    x, targets, input_lengths, target_lengths = ctc_case(5, steps=5, batch=3, classes=4)
    logits = minidl.tensor(x, requires_grad=True)
    for reduction in REDUCTIONS:
        assert gradcheck(lambda a, r=reduction: F.ctc_loss(
            a.log_softmax(2), targets, input_lengths, target_lengths, reduction=r), [logits])


def test_ctc_loss_impossible_alignments_and_empty_inputs_match_torch():
    x, _, _, _ = ctc_case(6, steps=4, batch=3)
    # Three repeats need 5 steps: inf and NaN gradients, or 0 and zeros with zero_infinity.
    targets = np.array([[1, 1, 1], [2, 3, 0], [1, 0, 0]])
    input_lengths, target_lengths = np.array([4, 0, 0]), np.array([3, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out, grad = check_ctc(x, targets, input_lengths, target_lengths, reduction="none")
    assert math.isinf(out.numpy()[0]) and np.isnan(grad.numpy()[:, 0]).all()
    assert math.isinf(out.numpy()[1]) and np.signbit(out.numpy()[2])  # PyTorch's -0.0
    for reduction in REDUCTIONS:
        out, grad = check_ctc(x, targets, input_lengths, target_lengths, zero_infinity=True,
                              reduction=reduction)
        assert np.isfinite(out.numpy()).all() and not grad.numpy().any()


def test_ctc_loss_unbatched_matches_torch():
    x, targets, input_lengths, target_lengths = ctc_case(7)
    for reduction in REDUCTIONS:
        check_ctc(x[:, 1], targets[1, :target_lengths[1]], input_lengths[1],
                  target_lengths[1], reduction=reduction)
    check_ctc(x[:, 1], targets[1, :target_lengths[1]], input_lengths[1:2], target_lengths[1:2])


def test_ctc_loss_errors_match_torch():
    torch = pytest.importorskip("torch")
    x, targets, input_lengths, target_lengths = ctc_case(8)
    flat = np.concatenate([row[:n] for row, n in zip(targets, target_lengths)])
    bad = [
        dict(input_lengths=input_lengths + 1), dict(input_lengths=input_lengths * 0 - 1),
        dict(target_lengths=target_lengths + 2), dict(target_lengths=target_lengths - 5),
        dict(input_lengths=input_lengths[:2]), dict(target_lengths=target_lengths[:2]),
        dict(targets=targets[:2]), dict(targets=np.concatenate([flat, [1]])),
        dict(targets=targets[None]), dict(blank=5), dict(blank=-1),
        dict(input_lengths=input_lengths.astype(np.float32)), dict(reduction="bad"),
        dict(log_probs=x[None]), dict(log_probs=x[:, :0]), dict(input_lengths=7),
    ]
    for change in bad:
        args = dict(log_probs=x, targets=targets, input_lengths=input_lengths,
                    target_lengths=target_lengths)
        args.update(change)

        def to(convert, value):
            return convert(value) if isinstance(value, np.ndarray) else value

        with pytest.raises(Exception) as theirs:
            torch.nn.functional.ctc_loss(**{k: to(torch.tensor, v) for k, v in args.items()})
        with pytest.raises(type(theirs.value)):
            F.ctc_loss(**{k: to(minidl.tensor, v) for k, v in args.items()})
    # Out-of-range target values are read out of bounds by PyTorch's CPU kernel; minidl raises.
    with pytest.raises(RuntimeError, match="target values"):
        F.ctc_loss(minidl.tensor(x), np.full((4, 4), 5), input_lengths, target_lengths)


def test_ctc_loss_module():
    x, targets, input_lengths, target_lengths = ctc_case(9)
    module = nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    assert (module.blank, module.reduction, module.zero_infinity) == (0, "sum", True)
    check_against_torch(None, [x, targets, input_lengths, target_lengths],
                        [True, False, False, False], module="CTCLoss",
                        init={"reduction": "sum", "zero_infinity": True})


COMPILED = [(F.soft_margin_loss, {}), (F.multilabel_soft_margin_loss, {}),
            (F.poisson_nll_loss, {}), (F.multilabel_margin_loss, {}), (F.margin_ranking_loss, {}),
            (F.hinge_embedding_loss, {}), (F.poisson_nll_loss, {"full": True})]


@pytest.mark.parametrize("loss_fn,kwargs", COMPILED,
                         ids=[f"{f.__name__}{'_full' if k else ''}" for f, k in COMPILED])
def test_a_compiled_step_reads_each_calls_target_or_refuses_to_trace(loss_fn, kwargs):
    """The targets are graph inputs, not constants of the example batch. A loss that masks by
    comparing its target (Tensor comparisons are not graph nodes) raises TraceError instead."""
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4))

    def data(seed):
        r = rng(seed)
        x = minidl.tensor(r.standard_normal((6, 5)).astype(np.float32))
        if loss_fn is F.multilabel_margin_loss:
            return x, minidl.tensor(np.array([r.permutation(4) for _ in range(6)]))
        if loss_fn is F.multilabel_soft_margin_loss:
            return x, minidl.tensor((r.random((6, 4)) > 0.5).astype(np.float32))
        if kwargs:
            return x, minidl.tensor(r.poisson(2.0, (6, 4)).astype(np.float32))
        return x, minidl.tensor(sign_target((6, 4), seed).astype(np.float32))

    def loss(out, y):
        if loss_fn is F.margin_ranking_loss:
            return loss_fn(out, out.flip(1), y)
        return loss_fn(out, y, **kwargs)

    if loss_fn is F.hinge_embedding_loss or kwargs:
        with pytest.raises(minidl.static.TraceError, match=loss_fn.__name__):
            minidl.compile(model, loss, example_inputs=data(0))
        return
    step = minidl.compile(model, loss, example_inputs=data(0))
    for seed in (1, 2):
        x, y = data(seed)
        model.zero_grad()
        eager = loss(model(x), y)
        eager.backward()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        assert step(x, y).item() == pytest.approx(eager.item(), rel=1e-6)
        for p, g in zip(model.parameters(), grads):
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-7)
