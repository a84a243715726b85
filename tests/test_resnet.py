"""ResNet-20: the paper's layout and parameter count, option-A shortcuts, He initialization,
eager == compiled, PyTorch twin (where installed) for the forward and every gradient."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.models import BasicBlock, resnet20
from minidl.nn import functional as F

RNG = np.random.default_rng(20)


def test_layout_and_parameter_count():
    model = resnet20()
    # He et al. 2016, table 6: ResNet-20 has 0.27M parameters (option A adds none).
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert sum(p.numel() for p in resnet20(in_channels=1).parameters()) == 269_722 - 2 * 144
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.bias is None for c in convs)
    assert [c.out_channels for c in convs[1::6]] == [16, 32, 64]
    assert [b.stride for b in model.blocks] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    out = model(minidl.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert resnet20(num_classes=7)(minidl.randn(1, 3, 16, 16)).shape == (1, 7)


def test_he_initialization():
    minidl.manual_seed(0)
    model = resnet20()
    conv = model.blocks[8].conv2  # 64 -> 64, 3x3: fan_out = 576
    std = float(conv.weight.numpy().std())
    assert abs(std - math.sqrt(2 / 576)) < 0.05 * math.sqrt(2 / 576)
    np.testing.assert_array_equal(model.bn1.weight.numpy(), 1)
    np.testing.assert_array_equal(model.blocks[0].bn2.bias.numpy(), 0)


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    block = BasicBlock(16, 32, stride=2)
    x = minidl.randn(2, 16, 8, 8)
    sc = block.shortcut(x).numpy()
    assert sc.shape == (2, 32, 4, 4)
    np.testing.assert_array_equal(sc[:, :8], 0)
    np.testing.assert_array_equal(sc[:, 24:], 0)
    np.testing.assert_array_equal(sc[:, 8:24], x.numpy()[:, :, ::2, ::2])
    assert BasicBlock(16, 16).shortcut(x) is x
    with pytest.raises(ValueError, match="stride 1 keeps the channels"):
        BasicBlock(16, 32, stride=1)
    with pytest.raises(ValueError, match="pads channels evenly"):
        BasicBlock(16, 33, stride=2)


def test_block_gradients_reach_input_through_both_paths():
    minidl.manual_seed(1)
    block = BasicBlock(4, 8, stride=2)
    x = minidl.tensor(RNG.standard_normal((3, 4, 6, 6)).astype(np.float32), requires_grad=True)
    block(x).sum().backward()
    # Input positions skipped by the stride-2 shortcut still get gradient through the convs.
    g = x.grad.numpy()
    assert np.abs(g[:, :, 1::2, 1::2]).sum() > 0 and np.abs(g[:, :, ::2, ::2]).sum() > 0


def test_eager_and_compiled_steps_agree():
    minidl.manual_seed(2)
    model, twin = resnet20(), resnet20()
    twin.load_state_dict(model.state_dict())
    x = minidl.tensor(RNG.standard_normal((4, 3, 16, 16)).astype(np.float32))
    y = minidl.tensor(RNG.integers(0, 10, 4))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    loss = step(x, y)
    ref = F.cross_entropy(twin(x), y)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(
            p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )
    np.testing.assert_allclose(
        model.blocks[4].bn1.running_var.numpy(), twin.blocks[4].bn1.running_var.numpy(), rtol=1e-5
    )


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def torch_twin_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "resnet20.py"
    spec = importlib.util.spec_from_file_location("bench_resnet20", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 5e-3)])
def test_matches_pytorch_twin_forward_and_gradients(dtype, tol):
    torch = pytest.importorskip("torch")
    bench = torch_twin_module()
    minidl.manual_seed(3)
    model = resnet20()
    twin = bench.torch_resnet20(torch)
    bench.load_minidl_weights(torch, twin, model)
    if dtype == np.float64:
        twin = twin.double()
        for t in list(model.parameters()) + list(model.buffers()):
            if t.data.dtype == np.float32:
                t.data = t.data.astype(np.float64)
    x = RNG.standard_normal((6, 3, 8, 8)).astype(dtype)
    y = RNG.integers(0, 10, 6)
    mx = minidl.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(model(mx), minidl.tensor(y))
    tloss = torch.nn.functional.cross_entropy(twin(tx), torch.from_numpy(y))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=min(tol, 1e-5))
    # float32 through 20 layers: a ReLU input within rounding of 0 may switch sides, so
    # gradients are compared by relative error norm (float64 agrees to ~1e-14).
    assert relative_error(mx.grad.numpy(), tx.grad.numpy()) < tol
    tparams = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert relative_error(p.grad.numpy(), tparams[name].grad.numpy()) < tol, name
    for name, b in twin.named_buffers():
        np.testing.assert_allclose(
            model.state_dict()[name].numpy(), b.numpy(), rtol=tol, err_msg=name
        )
    model.eval()
    twin.eval()
    with minidl.no_grad(), torch.no_grad():
        out, tout = model(minidl.tensor(x)).numpy(), twin(torch.from_numpy(x)).numpy()
    assert relative_error(out, tout) < tol
