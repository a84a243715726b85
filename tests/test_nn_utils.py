"""minidl.nn.utils against torch.nn.utils 2.13: gradient clipping, conv/linear + BatchNorm
fusion, weight_norm, skip_init."""

import warnings

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl.nn import utils

torch = pytest.importorskip("torch")


def _pair_of_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in ((3, 4), (5,), (2, 2, 2))]
    grads = [rng.standard_normal(v.shape).astype(dtype) * 3 for v in values]
    ours = [nn.Parameter(v.copy()) for v in values]
    theirs = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = minidl.tensor(g.copy())
        q.grad = torch.tensor(g.copy())
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, theirs = _pair_of_params()
    n_ours = utils.clip_grad_norm_(ours, max_norm, norm_type)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert float(n_ours) == pytest.approx(float(n_theirs), rel=1e-14)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-13)


def test_get_total_norm_and_clip_grads_with_norm_split_the_clip():
    ours, theirs = _pair_of_params(1)
    total = utils.get_total_norm([p.grad for p in ours], 2.0)
    expected = torch.nn.utils.get_total_norm([q.grad for q in theirs], 2.0)
    assert float(total) == pytest.approx(float(expected), rel=1e-14)
    utils.clip_grads_with_norm_(ours, 1.0, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.0, expected)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-13)
    assert float(utils.get_total_norm([p.grad for p in ours])) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_errors_and_warnings():
    p = nn.Parameter(np.ones(3, np.float32))
    p.grad = minidl.tensor([np.inf, 0.0, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.warns(UserWarning, match="empty generator"):
        assert float(utils.clip_grad_norm_((q for q in []), 1.0)) == 0.0
    with pytest.warns(FutureWarning, match="deprecated"):
        utils.clip_grad_norm([nn.Parameter(np.ones(2))], 1.0)


def _bn_pair(features, seed):
    """A minidl and a torch BatchNorm2d with the same, non-trivial statistics and affine."""
    rng = np.random.default_rng(seed)
    theirs = torch.nn.BatchNorm2d(features).double().eval()
    with torch.no_grad():
        theirs.running_mean.copy_(torch.tensor(rng.standard_normal(features)))
        theirs.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, features)))
        theirs.weight.copy_(torch.tensor(rng.standard_normal(features)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(features)))
    ours = nn.BatchNorm2d(features, dtype=minidl.float64).eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("bias", [True, False])
def test_fuse_conv_bn_eval_equals_torch_and_the_unfused_pair(bias):
    theirs_conv = torch.nn.Conv2d(3, 4, 3, bias=bias).double().eval()
    ours_conv = nn.Conv2d(3, 4, 3, bias=bias, dtype=minidl.float64).eval()
    ours_conv.load_state_dict({k: v.numpy() for k, v in theirs_conv.state_dict().items()})
    ours_bn, theirs_bn = _bn_pair(4, 2)
    fused = utils.fuse_conv_bn_eval(ours_conv, ours_bn)
    expected = torch.nn.utils.fuse_conv_bn_eval(theirs_conv, theirs_bn)
    np.testing.assert_array_equal(fused.weight.numpy(), expected.weight.detach().numpy())
    np.testing.assert_array_equal(fused.bias.numpy(), expected.bias.detach().numpy())
    assert fused.bias.requires_grad == expected.bias.requires_grad
    assert fused is not ours_conv and (ours_conv.bias is None) == (not bias)
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6))
    np.testing.assert_allclose(fused(minidl.tensor(x)).numpy(),
                               ours_bn(ours_conv(minidl.tensor(x))).numpy(), atol=1e-12)


def test_fuse_conv_bn_weights_transpose_and_missing_affine():
    rng = np.random.default_rng(4)
    w, rm = rng.standard_normal((3, 5, 2, 2)), rng.standard_normal(5)
    rv = rng.uniform(0.5, 2, 5)
    ours = utils.fuse_conv_bn_weights(minidl.tensor(w), None, minidl.tensor(rm),
                                      minidl.tensor(rv), 1e-5, None, None, transpose=True)
    theirs = torch.nn.utils.fuse_conv_bn_weights(torch.tensor(w), None, torch.tensor(rm),
                                                 torch.tensor(rv), 1e-5, None, None, True)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.detach().numpy())
        assert a.requires_grad == b.requires_grad


@pytest.mark.parametrize("features", [4, 1])
def test_fuse_linear_bn_eval_equals_torch(features):
    theirs_lin = torch.nn.Linear(3, 4).double().eval()
    ours_lin = nn.Linear(3, 4, dtype=minidl.float64).eval()
    ours_lin.load_state_dict({k: v.numpy() for k, v in theirs_lin.state_dict().items()})
    theirs_bn = torch.nn.BatchNorm1d(features).double().eval()
    with torch.no_grad():
        theirs_bn.running_var.fill_(1.7)
        theirs_bn.running_mean.fill_(0.3)
        theirs_bn.weight.fill_(-0.6)
    ours_bn = nn.BatchNorm1d(features, dtype=minidl.float64).eval()
    ours_bn.load_state_dict({k: v.numpy() for k, v in theirs_bn.state_dict().items()})
    fused = utils.fuse_linear_bn_eval(ours_lin, ours_bn)
    expected = torch.nn.utils.fuse_linear_bn_eval(theirs_lin, theirs_bn)
    np.testing.assert_array_equal(fused.weight.numpy(), expected.weight.detach().numpy())
    np.testing.assert_array_equal(fused.bias.numpy(), expected.bias.detach().numpy())


def test_fusion_refuses_training_mode_and_mismatched_features():
    conv, bn = nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        utils.fuse_conv_bn_eval(conv, bn)
    with pytest.raises(AssertionError, match="bn.num_features"):
        utils.fuse_linear_bn_eval(nn.Linear(2, 3).eval(), nn.BatchNorm1d(2).eval())
    no_stats = nn.BatchNorm2d(2, track_running_stats=False).eval()
    with pytest.raises(AssertionError, match="running_mean"):
        utils.fuse_conv_bn_eval(conv.eval(), no_stats)


@pytest.mark.parametrize("dim", [0, 1, None, -2])
def test_weight_norm_matches_torch_in_values_gradients_and_state_dict(dim):
    theirs = torch.nn.Linear(4, 3).double()
    ours = nn.Linear(4, 3, dtype=minidl.float64)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    with pytest.warns(FutureWarning, match="deprecated"):
        utils.weight_norm(ours, dim=dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.nn.utils.weight_norm(theirs, dim=dim)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-15)
    with torch.no_grad(), minidl.no_grad():   # a new direction: the hook recomputes the weight
        theirs.weight_v.mul_(torch.tensor(np.linspace(0.5, 2, 12).reshape(3, 4)))
        ours.weight_v.mul_(minidl.tensor(np.linspace(0.5, 2, 12).reshape(3, 4)))
    x = np.random.default_rng(5).standard_normal((2, 4))
    out, expected = ours(minidl.tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-13)
    (out ** 2).sum().backward()
    (expected ** 2).sum().backward()
    for name in ("weight_g", "weight_v", "bias"):
        np.testing.assert_allclose(getattr(ours, name).grad.numpy(),
                                   getattr(theirs, name).grad.numpy(), rtol=1e-12, atol=1e-14)
    utils.remove_weight_norm(ours)
    torch.nn.utils.remove_weight_norm(theirs)
    assert isinstance(ours.weight, nn.Parameter)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["bias", "weight"]
    np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(), rtol=1e-14)


def test_weight_norm_errors():
    m = nn.Linear(2, 2)
    with pytest.warns(FutureWarning):
        utils.weight_norm(m)
        with pytest.raises(RuntimeError, match="two weight_norm hooks"):
            utils.weight_norm(m)
    with pytest.raises(ValueError, match="weight_norm of 'bias' not found"):
        utils.remove_weight_norm(m, "bias")


def test_skip_init_leaves_parameters_and_generator_untouched():
    minidl.manual_seed(7)
    expected = minidl.rand(3)
    minidl.manual_seed(7)
    m = utils.skip_init(nn.Linear, 5, 2, bias=False)
    assert m.weight.shape == (2, 5) and not m.weight.numpy().any() and m.bias is None
    np.testing.assert_array_equal(minidl.rand(3).numpy(), expected.numpy())

    class NoDevice(nn.Module):
        def __init__(self):
            super().__init__()

    with pytest.raises(RuntimeError, match="'device' arg"):
        utils.skip_init(NoDevice)
