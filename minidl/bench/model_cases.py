"""Whole-model cases: LeNet-5 training steps and inference, batch-1 latency, and a training
step sharing the CPU with a busy process (contention).

Inputs are random images and labels (speed does not depend on the pixels, and an installed
minidl has no dataset); the initial weights are minidl's (minidl.manual_seed(0)), loaded into
the PyTorch twin and exported to ONNX for onnxruntime. A training step is minidl-train's recipe
on one fixed batch: zero_grad, forward, cross-entropy, backward, SGD step (lr 0.05, momentum 0.9,
Nesterov, weight decay 5e-4); data loading is not part of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np

from minidl.bench import torch_models
from minidl.bench.case import Absent, Case, Data, rng

PARAM = "param:"  # prefix of the initial weights in a case's data
ONNX = "onnx"  # the exported model's bytes, or ONNX_ABSENT's reason
ONNX_ABSENT = "onnx_absent"

# batch sizes per size: (training, inference)
LENET_BATCH = {"tiny": (4, 4), "quick": (64, 256), "full": (64, 1000)}
RESNET_BATCH = {"tiny": (2, 2), "quick": (16, 64), "full": (128, 256)}


def _model_data(
    make_model: Callable, image: tuple[int, int, int], batch: int, onnx: bool
) -> Callable[[], Data]:
    """Random images (batch, *image), labels in [0, 10), the model's initial weights after
    minidl.manual_seed(0), and (with onnx) the model exported to ONNX."""

    def data() -> Data:
        import minidl

        r = rng(0)
        d = {
            "x": r.standard_normal((batch, *image), dtype=np.float32),
            "y": r.integers(0, 10, batch).astype(np.int64),
        }
        minidl.manual_seed(0)
        model = make_model()
        d.update({PARAM + k: np.array(v.data) for k, v in model.state_dict().items()})
        if onnx:
            d.update(_onnx_model(model, d["x"]))
        return d

    return data


def _onnx_model(model, x: np.ndarray) -> Data:
    """{ONNX: the model's ONNX bytes} via minidl.onnx.export, or {ONNX_ABSENT: why not}."""
    try:
        from minidl.onnx import ExportError, export
    except ImportError as exc:
        return {ONNX_ABSENT: np.array(f"minidl has no ONNX exporter ({exc})")}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        try:
            export(model.eval(), (x,), path)
        except (ImportError, ExportError) as exc:  # no onnx package, or an op ONNX lacks
            return {ONNX_ABSENT: np.array(f"cannot export to ONNX: {exc}")}
        with open(path, "rb") as f:
            return {ONNX: np.frombuffer(f.read(), np.uint8)}


def _params(d: Data) -> dict[str, np.ndarray]:
    return {k[len(PARAM) :]: v for k, v in d.items() if k.startswith(PARAM)}


# -- training step ----------------------------------------------------------------------------
def _minidl_train(make_model: Callable, compiled: bool):
    def build(d: Data, threads: int):
        import minidl
        from minidl import optim
        from minidl.nn import functional as F

        model = make_model()
        model.load_state_dict(_params(d))
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
        x, y = minidl.from_numpy(d["x"]), minidl.from_numpy(d["y"])
        if compiled:
            step_fn = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))

            def step():
                opt.zero_grad()
                step_fn(x, y)
                opt.step()

            return step

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    return build


def _torch_train(make_model: Callable):
    def build(d: Data, threads: int):
        import torch

        model = make_model(torch, _params(d))
        opt = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        return step

    return build


# -- inference --------------------------------------------------------------------------------
def _minidl_infer(make_model: Callable, compiled: bool):
    def build(d: Data, threads: int):
        import minidl

        model = make_model().eval()
        model.load_state_dict(_params(d))
        x = minidl.from_numpy(d["x"])
        run = minidl.compile(model, example_inputs=(x,)) if compiled else model

        def infer():
            with minidl.no_grad():
                return run(x)

        return infer

    return build


def _torch_infer(make_model: Callable):
    def build(d: Data, threads: int):
        import torch

        model = make_model(torch, _params(d)).eval()
        x = torch.from_numpy(d["x"])

        def infer():
            with torch.inference_mode():
                return model(x)

        return infer

    return build


def _onnxruntime_infer(d: Data, threads: int):
    import onnxruntime as ort

    if ONNX not in d:
        raise Absent(str(d[ONNX_ABSENT]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(d[ONNX].tobytes(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: d["x"]}
    return lambda: session.run(None, feed)


def _lenet():
    from minidl.models import LeNet5

    return LeNet5()


def _resnet20():
    from minidl.models import resnet20

    return resnet20()


def _has_resnet20() -> bool:
    import minidl.models

    return hasattr(minidl.models, "resnet20")


def cases(size: str) -> list[Case]:
    """LeNet-5 training and inference, latency and contention cases at `size`."""
    train_batch, infer_batch = LENET_BATCH[size]
    train = _model_data(_lenet, (1, 28, 28), train_batch, onnx=False)
    infer = _model_data(_lenet, (1, 28, 28), infer_batch, onnx=True)
    single = _model_data(_lenet, (1, 28, 28), 1, onnx=True)
    out = []
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        out.append(
            Case(
                name=f"lenet train step b{train_batch} {mode}",
                group="lenet",
                unit="images/s",
                work=train_batch,
                data=train,
                builders={
                    "minidl": _minidl_train(_lenet, compiled),
                    "torch": _torch_train(torch_models.lenet5),
                },
            )
        )
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        out.append(
            Case(
                name=f"lenet inference b{infer_batch} {mode}",
                group="lenet",
                unit="images/s",
                work=infer_batch,
                data=infer,
                builders={
                    "minidl": _minidl_infer(_lenet, compiled),
                    "torch": _torch_infer(torch_models.lenet5),
                    "onnxruntime": _onnxruntime_infer,
                },
            )
        )
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        out.append(
            Case(
                name=f"lenet latency b1 {mode}",
                group="latency",
                unit="us",
                work=1,
                data=single,
                builders={
                    "minidl": _minidl_infer(_lenet, compiled),
                    "torch": _torch_infer(torch_models.lenet5),
                    "onnxruntime": _onnxruntime_infer,
                },
            )
        )
    out.append(
        Case(
            name=f"lenet train step b{train_batch} compiled, busy neighbour",
            group="contention",
            unit="images/s",
            work=train_batch,
            data=train,
            builders={
                "minidl": _minidl_train(_lenet, True),
                "torch": _torch_train(torch_models.lenet5),
            },
            busy=True,
        )
    )
    if _has_resnet20():
        out += _resnet_cases(size)
    return out


def _resnet_cases(size: str) -> list[Case]:
    """ResNet-20 on 3x32x32 images: an eager training step (BatchNorm in training mode) and
    inference (running statistics), minidl eager and compiled, PyTorch, onnxruntime."""
    train_batch, infer_batch = RESNET_BATCH[size]
    train = _model_data(_resnet20, (3, 32, 32), train_batch, onnx=False)
    infer = _model_data(_resnet20, (3, 32, 32), infer_batch, onnx=True)
    out = [
        Case(
            name=f"resnet20 train step b{train_batch} eager",
            group="resnet20",
            unit="images/s",
            work=train_batch,
            data=train,
            builders={
                "minidl": _minidl_train(_resnet20, False),
                "torch": _torch_train(torch_models.resnet20),
            },
        )
    ]
    for compiled in (False, True):
        out.append(
            Case(
                name=f"resnet20 inference b{infer_batch} {'compiled' if compiled else 'eager'}",
                group="resnet20",
                unit="images/s",
                work=infer_batch,
                data=infer,
                builders={
                    "minidl": _minidl_infer(_resnet20, compiled),
                    "torch": _torch_infer(torch_models.resnet20),
                    "onnxruntime": _onnxruntime_infer,
                },
            )
        )
    return out
