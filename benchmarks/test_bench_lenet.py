"""LeNet-5 on MNIST: one training step at batch 64 and test-set inference at batch 1000.

    pytest benchmarks/test_bench_lenet.py --benchmark-only

minidl eager, minidl compiled (when minidl.compile exists) and PyTorch CPU (when installed) in
one run, grouped so pytest-benchmark prints them side by side. The recipe and the models are
those of benchmarks/lenet.py (the epoch-level comparison).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.data import MNIST
from minidl.nn import functional as F


def _load_sibling(name: str):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_sibling("lenet")
needs_compile = pytest.mark.skipif(not hasattr(minidl, "compile"), reason="no minidl.compile")


@pytest.fixture(scope="module")
def train_batch():
    data = MNIST(train=True)
    return MNIST.normalize(data.data.numpy()[:64, None]), data.targets.numpy()[:64].copy()


@pytest.fixture(scope="module")
def test_chunks():
    images = MNIST.normalize(MNIST(train=False).data)
    return [
        images[i : i + bench.INFERENCE_BATCH] for i in range(0, len(images), bench.INFERENCE_BATCH)
    ]


def minidl_step(compiled: bool, x: np.ndarray, y: np.ndarray):
    model = bench.minidl_model()
    opt, _ = bench.minidl_optimizer(model, 1000)
    xt, yt = minidl.from_numpy(x), minidl.from_numpy(y)
    compiled_step = (
        minidl.compile(model, F.cross_entropy, example_inputs=(xt, yt)) if compiled else None
    )

    def step():
        opt.zero_grad()
        if compiled_step is not None:
            loss = compiled_step(xt, yt)
        else:
            loss = F.cross_entropy(model(xt), yt)
            loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.benchmark(group="lenet-train-step-batch64")
def test_train_step_minidl_eager(benchmark, train_batch):
    step = minidl_step(False, *train_batch)
    step()
    loss = benchmark(step)
    assert np.isfinite(loss.item())


@needs_compile
@pytest.mark.benchmark(group="lenet-train-step-batch64")
def test_train_step_minidl_compiled(benchmark, train_batch):
    step = minidl_step(True, *train_batch)
    step()
    loss = benchmark(step)
    assert np.isfinite(loss.item())


@pytest.mark.benchmark(group="lenet-train-step-batch64")
def test_train_step_torch(benchmark, train_batch):
    torch = pytest.importorskip("torch")
    model = bench.torch_model(torch)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    x, y = (torch.from_numpy(a) for a in train_batch)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step()
    loss = benchmark(step)
    assert np.isfinite(loss.item())


def _minidl_inference(compiled: bool, chunks):
    model = bench.minidl_model().eval()
    tensors = [minidl.from_numpy(c) for c in chunks]
    run = minidl.compile(model, example_inputs=(tensors[0],)) if compiled else model

    def infer():
        with minidl.no_grad():
            return [run(x) for x in tensors]

    return infer


@pytest.mark.benchmark(group="lenet-inference-10k-batch1000")
def test_inference_minidl_eager(benchmark, test_chunks):
    out = benchmark.pedantic(_minidl_inference(False, test_chunks), rounds=5, warmup_rounds=1)
    assert len(out) == len(test_chunks) and out[0].shape == (bench.INFERENCE_BATCH, 10)


@needs_compile
@pytest.mark.benchmark(group="lenet-inference-10k-batch1000")
def test_inference_minidl_compiled(benchmark, test_chunks):
    out = benchmark.pedantic(_minidl_inference(True, test_chunks), rounds=5, warmup_rounds=1)
    assert len(out) == len(test_chunks) and out[0].shape == (bench.INFERENCE_BATCH, 10)


@pytest.mark.benchmark(group="lenet-inference-10k-batch1000")
def test_inference_torch(benchmark, test_chunks):
    torch = pytest.importorskip("torch")
    model = bench.torch_model(torch).eval()
    tensors = [torch.from_numpy(c) for c in test_chunks]

    def infer():
        with torch.inference_mode():
            return [model(x) for x in tensors]

    out = benchmark.pedantic(infer, rounds=5, warmup_rounds=1)
    assert len(out) == len(test_chunks) and tuple(out[0].shape) == (bench.INFERENCE_BATCH, 10)
