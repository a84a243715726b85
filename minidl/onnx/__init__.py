"""ONNX in and out: `export` writes a minidl model as an ONNX file, `load` reads one back as a
trainable `nn.Module`, `backend` runs ONNX's conformance tests on minidl.

Needs the optional `onnx` package (`pip install 'minidl[onnx]'`); importing minidl.onnx
without it works, the functions raise ImportError saying what to install.
"""

from minidl.onnx.export import DEFAULT_OPSET, OPSETS, ExportError, export
from minidl.onnx.load import LoadError, OnnxModule, load

__all__ = ["DEFAULT_OPSET", "OPSETS", "ExportError", "LoadError", "OnnxModule", "export", "load"]
