"""BatchNorm + ReLU fused in compiled graphs (BatchNorm's `relu` epilogue): the fused op equals
BatchNorm then ReLU bit for bit, forward and backward, and a compiled ResNet-20 training step
fuses every BN+ReLU and matches eager mode."""

import numpy as np
import pytest

import minidl
from minidl.models import resnet20
from minidl.nn import functional as F
from minidl.ops.activation import BatchNormOp


def _bn(x, w, b, relu, training, stats):
    mean, var = (s.copy() for s in stats)
    kwargs = dict(
        running_mean=mean, running_var=var, training=training, momentum=0.1, eps=1e-5
    )
    if relu:
        return BatchNormOp.apply(x, w, b, relu=True, **kwargs), (mean, var)
    return F.relu(BatchNormOp.apply(x, w, b, **kwargs)), (mean, var)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_relu_equals_batchnorm_then_relu(dtype, training):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((5, 4, 3, 7)).astype(dtype)
    x_np[0, 0, 0, :2] = [-0.0, 0.0]
    if not training:  # NaN and signed zeros take the same path (a NaN batch mean would not)
        x_np[0, 1, 0, 0] = np.nan
    stats = (rng.standard_normal(4).astype(dtype), rng.random(4).astype(dtype) + 0.5)
    w_np = rng.standard_normal(4).astype(dtype)
    b_np = np.linspace(-1, 1, 4).astype(dtype)
    gy = rng.standard_normal(x_np.shape).astype(dtype)
    results = []
    for relu in (False, True):
        x = minidl.tensor(x_np, requires_grad=True)
        w = minidl.tensor(w_np, requires_grad=True)
        b = minidl.tensor(b_np, requires_grad=True)
        y, running = _bn(x, w, b, relu, training, stats)
        y.backward(minidl.tensor(gy))
        results.append([y.data, x.grad.data, w.grad.data, b.grad.data, *running])
    assert (results[1][0] >= 0).sum() > 0 and (results[1][0] == 0).sum() > 0
    for plain, fused in zip(*results):
        assert plain.dtype == fused.dtype
        assert plain.tobytes() == fused.tobytes()


def test_compiled_resnet20_fuses_batchnorm_relu_and_matches_eager():
    minidl.manual_seed(0)
    model = resnet20(in_channels=3, num_classes=10)
    rng = np.random.default_rng(2)
    x = minidl.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    y = minidl.tensor(rng.integers(0, 10, 4))
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    fused = [n for n in step.graph.nodes if n.name == "BatchNormOp" and n.attrs.get("relu")]
    assert len(fused) == 10  # the stem and the first BN of each of the 9 blocks
    model.zero_grad()
    loss_c = step(x, y).item()
    grads_c = [p.grad.data.copy() for p in model.parameters()]
    model.zero_grad()
    # Eager on the same running statistics: the compiled step updated them once already.
    loss_e = F.cross_entropy(model(x), y)
    loss_e.backward()
    grads_e = [p.grad.data.copy() for p in model.parameters()]
    assert loss_c == pytest.approx(loss_e.item(), rel=1e-5)
    for gc, ge in zip(grads_c, grads_e):
        np.testing.assert_allclose(gc, ge, rtol=1e-4, atol=1e-6)
