"""minidl.compile called as PyTorch code calls torch.compile: same results, same module."""

import numpy as np
import pytest

import minidl
from minidl import nn


def test_compile_without_example_inputs_wraps_the_model_eagerly():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    compiled = minidl.compile(model, mode="max-autotune", fullgraph=True, backend="inductor")
    assert type(compiled).__name__ == "OptimizedModule" and compiled._orig_mod is model
    assert list(compiled.state_dict()) == ["_orig_mod." + k for k in model.state_dict()]
    assert len(list(compiled.parameters())) == 4
    x = minidl.randn(5, 3)
    out = compiled(x)
    np.testing.assert_array_equal(out.numpy(), model(x).numpy())
    out.sum().backward()
    assert model[0].weight.grad is not None  # it trains like the model
    compiled.eval()
    assert not model.training
    assert compiled.training is False and compiled._modules["_orig_mod"] is model


def test_compile_decorator_disable_and_unknown_options():
    @minidl.compile(fullgraph=True)
    def double(x):
        return x * 2

    np.testing.assert_array_equal(double(minidl.ones(2)).numpy(), [2.0, 2.0])
    model = nn.Linear(2, 2)
    assert minidl.compile(model, disable=True) is model
    with pytest.raises(TypeError):
        minidl.compile(model, bogus=1)
    with pytest.raises(ValueError, match="example_inputs"):
        minidl.compile(model, minidl.nn.functional.mse_loss)


def test_state_dict_of_a_compiled_module_matches_torch_keys():
    torch = pytest.importorskip("torch")
    ours = minidl.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    theirs = torch.compile(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3),
                                               torch.nn.BatchNorm2d(2)))
    assert list(ours.state_dict()) == list(theirs.state_dict())
