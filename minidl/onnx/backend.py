"""An ONNX backend (onnx.backend.base) running models on minidl, for ONNX's conformance
tests: `prepare(model)` builds an OnnxModule, `rep.run(inputs)` evaluates it in inference
mode (eval, no gradients) and returns NumPy arrays.

    import onnx.backend.test
    from minidl.onnx import backend
    suite = onnx.backend.test.BackendTest(backend, __name__)
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minidl
from minidl.onnx.export import _onnx
from minidl.onnx.load import OnnxModule

_onnx()
import onnx.backend.base as _base  # noqa: E402 (after the check that onnx is installed)


class MinidlRep(_base.BackendRep):
    def __init__(self, module: OnnxModule) -> None:
        self.module = module.eval()

    def run(self, inputs: Any, **kwargs: Any) -> tuple:
        if isinstance(inputs, dict):
            inputs = [inputs[name] for name in self.module.input_names]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        onnx = _onnx()
        inputs = [
            onnx.numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x for x in inputs
        ]
        with minidl.no_grad():
            out = self.module(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(np.asarray(o.data) for o in outs)


class MinidlBackend(_base.Backend):
    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> MinidlRep:
        super().prepare(model, device, **kwargs)
        return MinidlRep(OnnxModule(model))

    @classmethod
    def run_node(
        cls, node: Any, inputs: Any, device: str = "CPU", outputs_info: Any = None, **kwargs: Any
    ) -> tuple:
        onnx = _onnx()
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        names = [f"input_{k}" for k in range(len(inputs))]
        value_infos = [
            onnx.helper.make_tensor_value_info(
                n, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype), np.shape(x)
            )
            for n, x in zip(names, inputs)
        ]
        renamed = onnx.helper.make_node(
            node.op_type, names[: len(node.input)], list(node.output), domain=node.domain
        )
        renamed.attribute.extend(node.attribute)
        outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output]
        graph = onnx.helper.make_graph([renamed], "node", value_infos, outputs)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        return MinidlRep(OnnxModule(model)).run(list(inputs))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


prepare = MinidlBackend.prepare
run_model = MinidlBackend.run_model
run_node = MinidlBackend.run_node
supports_device = MinidlBackend.supports_device
