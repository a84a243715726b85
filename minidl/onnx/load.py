"""ONNX file -> minidl `nn.Module`: initializers become Parameters, nodes run minidl ops.

The module's forward walks the ONNX nodes in their (topological) order. A value is either a
Tensor (the data path: inputs, Parameters and everything computed from them by ops) or a
NumPy array (shapes and constants: Shape, Constant, integer initializers and what is computed
from them only). Array-only nodes are evaluated with NumPy, so the Shape -> Gather ->
Unsqueeze -> Concat -> Reshape chains exporters emit for a flatten fold to a fixed target
shape; a compiled (traced) module therefore sees plain ops with constant attributes, and
minidl.compile re-traces for each new input shape as usual.

Every node type is checked at load: an error lists all unsupported ops of the file at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import minidl
from minidl import nn
from minidl.nn import functional as F
from minidl.onnx.export import _onnx
from minidl.tensor import Tensor, from_numpy


class LoadError(ValueError):
    """The ONNX file cannot be read as a minidl model (malformed, hostile or unsupported)."""


# -- reading the file -----------------------------------------------------------------------
def read_model(path: str | os.PathLike):
    """Parse and check an ONNX file; external data is read here, confined to its folder."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LoadError(f"minidl.onnx.load: cannot read {path}: {e}") from e
    return parse_model(onnx, data, path.parent, str(path), DecodeError)


def parse_model(onnx, data: bytes, folder: Path | None, where: str, decode_error=None):
    if decode_error is None:
        from google.protobuf.message import DecodeError as decode_error
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (decode_error, RuntimeError, ValueError) as e:
        raise LoadError(
            f"minidl.onnx.load: {where} is not a valid ONNX model (the protobuf does not "
            f"parse: {e}); the file may be truncated or not an ONNX file"
        ) from e
    if not model.HasField("graph") or not model.opset_import:
        raise LoadError(
            f"minidl.onnx.load: {where} holds no ONNX graph/opset (truncated or not an ONNX "
            f"file; {len(data)} bytes)"
        )
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _read_external(onnx, tensor, folder, where)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise LoadError(f"minidl.onnx.load: {where} fails onnx.checker: {e}") from e
    return model


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _read_external(onnx, tensor, folder: Path | None, where: str) -> None:
    """Inline a tensor's external data. The location must name a file inside the model's
    folder: absolute paths, `..` and symlinks leading out are refused."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if folder is None:
        raise LoadError(
            f"minidl.onnx.load: {where}: tensor {tensor.name!r} has external data, "
            "which needs the model's file path"
        )
    base = folder.resolve()
    target = (base / location).resolve()
    if (
        not location
        or os.path.isabs(location)
        or ".." in Path(location).parts
        or os.path.commonpath([base, target]) != str(base)
    ):
        raise LoadError(
            f"minidl.onnx.load: {where}: external data of tensor {tensor.name!r} points to "
            f"{location!r}, outside the model's folder {base}; refused"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
        with open(target, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if (
                offset < 0
                or offset > size
                or (length is not None and (length < 0 or offset + length > size))
            ):
                raise LoadError(
                    f"minidl.onnx.load: {where}: external data of {tensor.name!r} asks for "
                    f"bytes {offset}..{offset + (length or 0)} of {location} ({size} bytes)"
                )
            f.seek(offset)
            raw = f.read(size - offset if length is None else length)
    except OSError as e:
        raise LoadError(f"minidl.onnx.load: {where}: external data {location!r}: {e}") from e
    except ValueError as e:
        raise LoadError(f"minidl.onnx.load: {where}: bad external data entry {info}: {e}") from e
    tensor.raw_data = raw
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def to_array(onnx, tensor, where: str) -> np.ndarray:
    try:
        return onnx.numpy_helper.to_array(tensor).copy()
    except Exception as e:  # noqa: BLE001 (onnx raises several types for corrupt tensors)
        raise LoadError(f"minidl.onnx.load: {where}: tensor {tensor.name!r} is corrupt: {e}") from e


def attributes(onnx, node, where: str) -> dict:
    out = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):
            value = to_array(onnx, value, where)
        out[attr.name] = value
    return out


# -- helpers for the op table ---------------------------------------------------------------
def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _static(x: Any, op: str, what: str) -> np.ndarray:
    if x is None or isinstance(x, Tensor) and x.requires_grad:
        raise LoadError(f"{op}: {what} must be a constant (initializer, Constant or shape)")
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else minidl.tensor(np.asarray(x))


def _elementwise(np_fn: Callable, tensor_fn: Callable) -> Callable:
    def run(ins, attrs, ctx):
        if all(_is_array(x) for x in ins):
            return [np.asarray(np_fn(*ins)).astype(np.result_type(*ins), copy=False)]
        return [tensor_fn(*ins)]

    return run


def _variadic(np_fn: Callable, pair_fn: Callable) -> Callable:
    def run(ins, attrs, ctx):
        ins = [x for x in ins if x is not None]
        out = ins[0]
        for x in ins[1:]:
            out = np_fn(out, x) if _is_array(out) and _is_array(x) else pair_fn(out, x)
        return [out]

    return run


def _unary(tensor_fn: Callable, np_fn: Callable | None = None) -> Callable:
    def run(ins, attrs, ctx):
        x = ins[0]
        if _is_array(x) and np_fn is not None:
            return [np.asarray(np_fn(x), dtype=x.dtype)]
        return [tensor_fn(_tensor(x), attrs)]

    return run


def _spatial(attrs: dict, key: str, default: int, n: int = 2) -> list[int]:
    return list(attrs.get(key, [default] * n))


def _explicit_pads(
    op: str, attrs: dict, in_size: tuple, kernel: list, strides: list, dilations: list
) -> list[int]:
    """[top, left, bottom, right] from pads or auto_pad (SAME_UPPER puts the odd pixel at the
    end, SAME_LOWER at the start, VALID pads nothing)."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(attrs.get("pads", [0, 0, 0, 0]))
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise LoadError(f"{op}: unknown auto_pad {auto!r}")
    begin, end = [], []
    for n, k, s, d in zip(in_size, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def _check_4d(op: str, x: Any) -> None:
    if x.ndim != 4:
        raise LoadError(f"{op}: minidl supports 2-D spatial inputs (N, C, H, W), got {x.shape}")


def _conv(ins, attrs, ctx):
    x, w = _tensor(ins[0]), _tensor(ins[1])
    b = None if len(ins) < 3 or ins[2] is None else _tensor(ins[2])
    _check_4d("Conv", x)
    kernel = list(w.shape[2:])
    strides = _spatial(attrs, "strides", 1)
    dilations = _spatial(attrs, "dilations", 1)
    pads = _explicit_pads("Conv", attrs, x.shape[2:], kernel, strides, dilations)
    if pads[:2] != pads[2:]:
        x = x.pad(((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        pads = [0, 0, 0, 0]
    return [F.conv2d(x, w, b, strides, pads[:2], dilations, int(attrs.get("group", 1)))]


def _conv_transpose(ins, attrs, ctx):
    """ONNX's ConvTranspose: strides, dilations, group, output_padding, and pads, auto_pad or
    output_shape (the total padding then follows from it, split as auto_pad says: the larger
    half at the start unless SAME_UPPER). PyTorch's symmetric case is F.conv_transpose2d's
    own padding; any other is the unpadded result cropped (and zero-extended for
    output_padding, the bias added after)."""
    x, w = _tensor(ins[0]), _tensor(ins[1])
    b = None if len(ins) < 3 or ins[2] is None else _tensor(ins[2])
    _check_4d("ConvTranspose", x)
    kernel = list(w.shape[2:])
    strides = _spatial(attrs, "strides", 1)
    dilations = _spatial(attrs, "dilations", 1)
    extra = _spatial(attrs, "output_padding", 0)
    group = int(attrs.get("group", 1))
    auto = attrs.get("auto_pad", "NOTSET")
    full = [s * (n - 1) + e + d * (k - 1) + 1
            for n, k, s, d, e in zip(x.shape[2:], kernel, strides, dilations, extra)]
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        size = (list(attrs["output_shape"])[-2:] if "output_shape" in attrs
                else [n * s for n, s in zip(x.shape[2:], strides)])
        # A size beyond the unpadded output pads nothing and extends it (onnxruntime's rule).
        total = [max(0, f - o) for f, o in zip(full, size)]
        small = [t // 2 for t in total]
        large = [t - t // 2 for t in total]
        pads = small + large if auto == "SAME_UPPER" else large + small
    elif auto in ("NOTSET", "", "VALID"):
        pads = list(attrs.get("pads", [0, 0, 0, 0])) if auto != "VALID" else [0, 0, 0, 0]
        size = [f - begin - end for f, begin, end in zip(full, pads[:2], pads[2:])]
    else:
        raise LoadError(f"ConvTranspose: unknown auto_pad {auto!r}")
    if size == [f - begin - end for f, begin, end in zip(full, pads[:2], pads[2:])] and (
            pads[:2] == pads[2:]) and all(e < s or e < d for e, s, d in zip(extra, strides,
                                                                           dilations)):
        return [F.conv_transpose2d(x, w, b, strides, pads[:2], extra, group, dilations)]
    y = F.conv_transpose2d(x, w, None, strides, 0, 0, group, dilations)
    # Rows and columns [begin, begin + size) of the unpadded output, zero-extended past its
    # end (output_padding, a larger output_shape): only the bias reaches those.
    base = y.shape[2:]
    grow = [max(0, begin + n - m) for begin, n, m in zip(pads[:2], size, base)]
    y = y.pad(((0, 0), (0, 0), (0, grow[0]), (0, grow[1])))
    y = y[:, :, pads[0]:pads[0] + size[0], pads[1]:pads[1] + size[1]]
    return [y if b is None else y + b.reshape(1, -1, 1, 1)]


def _pool_out(n: int, k: int, s: int, begin: int, end: int, d: int, ceil: bool) -> int:
    """ONNX's output size; with ceil_mode a window starting in the end padding is dropped."""
    span = n + begin + end - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + begin:
        out -= 1
    return out


def _pool(kind: str) -> Callable:
    op = "MaxPool" if kind == "max" else "AveragePool"

    def run(ins, attrs, ctx):
        x = _tensor(ins[0])
        _check_4d(op, x)
        kernel = list(attrs["kernel_shape"])
        strides = _spatial(attrs, "strides", 1)
        dilations = _spatial(attrs, "dilations", 1)
        ceil = bool(attrs.get("ceil_mode", 0))
        pads = _explicit_pads(op, attrs, x.shape[2:], kernel, strides, dilations)
        include_pad = bool(attrs.get("count_include_pad", 0))
        if ctx.wants_extra_outputs:
            if kind != "max" or pads != [0] * 4 or dilations != [1, 1] or ceil:
                raise LoadError(
                    f"{op}: the Indices output is supported without padding, "
                    "dilation or ceil_mode only"
                )
            out, index = F.max_pool2d(x, kernel, strides, return_indices=True)
            n, c, h, w = x.shape
            index = index.data
            if attrs.get("storage_order", 0):  # column-major positions within each plane
                index = (index % w) * h + index // w
            base = (np.arange(n * c, dtype=np.int64) * h * w).reshape(n, c, 1, 1)
            return [out, index + base]
        symmetric = pads[:2] == pads[2:] and all(p <= k // 2 for p, k in zip(pads, kernel))
        if symmetric and (kind == "max" or dilations == [1, 1]):
            if kind == "max":
                return [F.max_pool2d(x, kernel, strides, pads[:2], dilations, ceil)]
            return [F.avg_pool2d(x, kernel, strides, pads[:2], ceil, include_pad)]
        return [_padded_pool(kind, x, kernel, strides, pads, dilations, ceil, include_pad)]

    return run


def _padded_pool(kind, x, kernel, strides, pads, dilations, ceil, include_pad):
    """Pooling with padding minidl's kernels do not take (asymmetric, wider than half the
    window): pad explicitly (and at the end for ceil_mode's last windows), pool unpadded,
    crop to ONNX's output size. Averages divide by the count of cells the window covers
    (real cells, or real and pad cells with count_include_pad) via a pooled mask."""
    h, w = x.shape[2:]
    out = [
        _pool_out(n, k, s, pads[i], pads[i + 2], d, ceil)
        for i, (n, k, s, d) in enumerate(zip((h, w), kernel, strides, dilations))
    ]
    extra = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - (n + pads[i] + pads[i + 2]))
        for i, (o, n, k, s, d) in enumerate(zip(out, (h, w), kernel, strides, dilations))
    ]
    widths = ((0, 0), (0, 0), (pads[0], pads[2] + extra[0]), (pads[1], pads[3] + extra[1]))
    if kind == "max":
        padded = x.pad(widths, value=-np.inf)
        pooled = F.max_pool2d(padded, kernel, strides, 0, dilations)
        return pooled[:, :, : out[0], : out[1]]
    if dilations != [1, 1]:
        raise LoadError("AveragePool: dilations are not supported")
    padded = x.pad(widths)
    mask = np.zeros((1, 1) + padded.shape[2:], dtype=x.dtype)
    if include_pad:
        mask[:, :, : h + pads[0] + pads[2], : w + pads[1] + pads[3]] = 1
    else:
        mask[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + w] = 1
    sums = F.avg_pool2d(padded, kernel, strides)[:, :, : out[0], : out[1]]
    counts = F.avg_pool2d(from_numpy(np.ascontiguousarray(mask)), kernel, strides).data[
        :, :, : out[0], : out[1]
    ]
    return sums / np.where(counts > 0, counts, 1).astype(x.dtype)


def _global_pool(kind: str) -> Callable:
    def run(ins, attrs, ctx):
        x = _tensor(ins[0])
        if x.ndim < 3:
            raise LoadError(f"Global{kind}Pool: expected (N, C, ...), got {x.shape}")
        if kind == "Average" and x.ndim == 4:
            return [F.adaptive_avg_pool2d(x, 1)]
        axes = tuple(range(2, x.ndim))
        return [REDUCTIONS["mean" if kind == "Average" else "max"](x, axis=axes, keepdims=True)]

    return run


def _gemm(ins, attrs, ctx):
    a, b = _tensor(ins[0]), _tensor(ins[1])
    c = ins[2] if len(ins) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    if (
        not trans_a
        and trans_b
        and alpha == 1.0
        and (c is None or beta == 1.0)
        and (c is None or np.ndim(c.data if isinstance(c, Tensor) else c) == 1)
        and a.dtype.kind == "f"
    ):
        return [F.linear(a, b, None if c is None else _tensor(c))]
    y = minidl.matmul(a.permute(1, 0) if trans_a else a, b.permute(1, 0) if trans_b else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        c = _tensor(c)
        y = y + (c * beta if beta != 1.0 else c)
    return [y]


def _batch_norm(ins, attrs, ctx):
    x, scale, bias, mean, var = ins[:5]
    momentum = float(attrs.get("momentum", 0.9))
    eps = float(attrs.get("epsilon", 1e-5))
    if attrs.get("training_mode", 0):
        # ONNX's training mode: batch statistics, and the updated running statistics as
        # extra outputs (its running variance uses the biased batch variance).
        x = _tensor(x)
        axes = (0,) + tuple(range(2, x.ndim))
        batch_mean = x.data.mean(axis=axes)
        batch_var = x.data.var(axis=axes)
        y = F.batch_norm(x, None, None, _tensor(scale), _tensor(bias), training=True, eps=eps)
        old_mean, old_var = (np.asarray(getattr(v, "data", v)) for v in (mean, var))
        return [
            y,
            (old_mean * momentum + batch_mean * (1 - momentum)).astype(x.dtype),
            (old_var * momentum + batch_var * (1 - momentum)).astype(x.dtype),
        ]
    buffers = (
        isinstance(mean, Tensor)
        and not mean.requires_grad
        and isinstance(var, Tensor)
        and not var.requires_grad
    )
    # Training mode updates the running statistics, as minidl's BatchNorm does: ONNX's
    # momentum weighs the old value (PyTorch's weighs the new one).
    training = ctx.training and buffers
    return [
        F.batch_norm(
            _tensor(x),
            mean,
            var,
            _tensor(scale),
            _tensor(bias),
            training=training,
            momentum=1.0 - momentum,
            eps=float(attrs.get("epsilon", 1e-5)),
        )
    ]


def _dropout(ins, attrs, ctx):
    x = ins[0]
    ratio = (
        float(_static(ins[1], "Dropout", "ratio"))
        if len(ins) > 1 and ins[1] is not None
        else float(attrs.get("ratio", 0.5))
    )
    training = ctx.training
    if len(ins) > 2 and ins[2] is not None:
        training = bool(_static(ins[2], "Dropout", "training_mode"))
    y = F.dropout(_tensor(x), ratio, training) if training else x
    mask = np.ones(np.shape(x.data if isinstance(x, Tensor) else x), dtype=bool)
    if training and ratio > 0:
        mask = (y.data != 0) | (np.asarray(x.data) == 0)
    return [y, mask]


def _softmax(fn: Callable) -> Callable:
    def run(ins, attrs, ctx):
        x = _tensor(ins[0])
        axis = int(attrs.get("axis", -1 if ctx.opset >= 13 else 1))
        if ctx.opset >= 13:
            return [fn(x, axis)]
        # Before opset 13 the input was coerced to 2-D at `axis`.
        shape = x.shape
        rows = int(np.prod(shape[: axis % max(x.ndim, 1)]))
        return [fn(x.reshape(rows, -1), 1).reshape(shape)]

    return run


def _flatten(ins, attrs, ctx):
    x = ins[0]
    shape = np.shape(x.data if isinstance(x, Tensor) else x)
    axis = int(attrs.get("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    target = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    return [x.reshape(target)]


def _reshape(ins, attrs, ctx):
    x = ins[0]
    target = [int(v) for v in _static(ins[1], "Reshape", "shape").reshape(-1)]
    shape = np.shape(x.data if isinstance(x, Tensor) else x)
    if not attrs.get("allowzero", 0):
        target = [shape[k] if v == 0 else v for k, v in enumerate(target)]
    return [x.reshape(tuple(target))]


def _transpose(ins, attrs, ctx):
    x = ins[0]
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    perm = list(attrs.get("perm", range(ndim - 1, -1, -1)))
    return [x.transpose(perm) if _is_array(x) else x.permute(perm)]


def _concat(ins, attrs, ctx):
    ins = [x for x in ins if x is not None]
    axis = int(attrs["axis"])
    if all(_is_array(x) for x in ins):
        return [np.concatenate(ins, axis=axis)]
    return [minidl.concatenate([_tensor(x) for x in ins], axis=axis)]


def _pad(ins, attrs, ctx):
    x = ins[0]
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise LoadError(f"Pad: mode {mode!r} is not supported (constant only)")
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    if len(ins) > 1:
        pads = [int(v) for v in _static(ins[1], "Pad", "pads")]
        value = ins[2] if len(ins) > 2 and ins[2] is not None else None
        value = 0.0 if value is None else _static(value, "Pad", "constant_value").item()
        axes = (
            list(range(ndim))
            if len(ins) < 4 or ins[3] is None
            else [int(a) % ndim for a in _static(ins[3], "Pad", "axes")]
        )
    else:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), range(ndim)
    widths = [[0, 0] for _ in range(ndim)]
    for k, axis in enumerate(axes):
        widths[axis] = [pads[k], pads[k + len(axes)]]
    if any(v < 0 for pair in widths for v in pair):
        # Negative pads crop.
        index = tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in widths)
        x = x[index]
        widths = [[max(b, 0), max(e, 0)] for b, e in widths]
    if _is_array(x):
        return [np.pad(x, widths, constant_values=value)]
    return [x.pad(tuple(map(tuple, widths)), value=value)]


def _axes(ins, attrs, ndim: int, op: str, default_all: bool = True) -> tuple | None:
    if len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in _static(ins[1], op, "axes").reshape(-1)]
    elif "axes" in attrs:
        axes = list(attrs["axes"])
    else:
        return None
    return tuple(a % max(ndim, 1) for a in axes)


# The reduction ops by name, applied as the ONNX nodes ask (keepdims, several axes; integer
# sums keep their dtype, unlike Tensor.sum's int64).
REDUCTIONS = {name: minidl.graph.op(name).apply for name in ("sum", "mean", "max", "min")}


def _reduce(name: str) -> Callable:
    op = "Reduce" + name.capitalize()

    def run(ins, attrs, ctx):
        x = ins[0]
        ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
        keepdims = bool(attrs.get("keepdims", 1))
        axes = _axes(ins, attrs, ndim, op)
        if axes == () and attrs.get("noop_with_empty_axes", 0):
            return [x]
        if not axes:
            axes = None
        if _is_array(x):
            return [np.asarray(getattr(np, name)(x, axis=axes, keepdims=keepdims), x.dtype)]
        return [REDUCTIONS[name](x, axis=axes, keepdims=keepdims)]

    return run


def _shape(ins, attrs, ctx):
    x = ins[0]
    shape = np.array(np.shape(x.data if isinstance(x, Tensor) else x), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [shape[start:end]]


def _gather(ins, attrs, ctx):
    data, indices = ins[0], _static(ins[1], "Gather", "indices").astype(np.int64)
    axis = int(attrs.get("axis", 0))
    if _is_array(data):
        return [np.take(data, indices, axis=axis)]
    axis %= data.ndim
    indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return [data[(slice(None),) * axis + (indices,)]]


def _slice(ins, attrs, ctx):
    x = ins[0]
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    if len(ins) > 1:  # opset 10 and later: starts, ends, axes, steps are inputs
        starts, ends = (
            _static(v, "Slice", n).reshape(-1) for v, n in ((ins[1], "starts"), (ins[2], "ends"))
        )
        axes = (
            _static(ins[3], "Slice", "axes").reshape(-1)
            if len(ins) > 3 and ins[3] is not None
            else np.arange(len(starts))
        )
        steps = (
            _static(ins[4], "Slice", "steps").reshape(-1)
            if len(ins) > 4 and ins[4] is not None
            else np.ones(len(starts), np.int64)
        )
    else:
        starts, ends = np.asarray(attrs["starts"]), np.asarray(attrs["ends"])
        axes = np.asarray(attrs.get("axes", range(len(starts))))
        steps = np.ones(len(starts), np.int64)
    index = [slice(None)] * ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        # Python's slices clamp out-of-range bounds (and count negative ones from the end)
        # as ONNX's Slice does.
        index[int(axis) % ndim] = slice(int(start), int(end), int(step))
    return [x[tuple(index)]]


def _unsqueeze(ins, attrs, ctx):
    x = ins[0]
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    axes = [
        int(a)
        for a in (
            _static(ins[1], "Unsqueeze", "axes").reshape(-1) if len(ins) > 1 else attrs["axes"]
        )
    ]
    out_ndim = ndim + len(axes)
    axes = sorted(a % out_ndim for a in axes)
    shape = list(np.shape(x.data if isinstance(x, Tensor) else x))
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(tuple(shape))]


def _squeeze(ins, attrs, ctx):
    x = ins[0]
    shape = list(np.shape(x.data if isinstance(x, Tensor) else x))
    axes = _axes(ins, attrs, len(shape), "Squeeze")
    keep = [n for k, n in enumerate(shape) if not (n == 1 and (axes is None or k in axes))]
    return [x.reshape(tuple(keep))]


def _cast(ins, attrs, ctx):
    onnx = _onnx()
    dtype = onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    x = ins[0]
    return [x.astype(dtype)]


def _constant(ins, attrs, ctx):
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dtype)]
    if "value" in attrs:
        return [np.asarray(attrs["value"])]
    raise LoadError(f"Constant: unsupported attributes {sorted(attrs)}")


def _identity(ins, attrs, ctx):
    return [ins[0]]


def _prelu(ins, attrs, ctx):
    x, slope = _tensor(ins[0]), _tensor(ins[1])
    # minidl's PReLU takes one slope or one per channel (axis 1); other broadcasts compose.
    if slope.numel() == 1 or (
        x.ndim >= 2
        and slope.numel() == x.shape[1]
        and slope.shape == (x.shape[1],) + (1,) * (slope.ndim - 1)
        and slope.ndim <= x.ndim - 1
    ):
        return [F.prelu(x, slope.reshape(-1))]
    return [minidl.where(x.data > 0, x, x * slope)]


def _clip(ins, attrs, ctx):
    x = _tensor(ins[0])
    low = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")
    high = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    low = None if low is None else _static(low, "Clip", "min").item()
    high = None if high is None else _static(high, "Clip", "max").item()
    if low is None and high is None:
        return [x]
    return [x.clip(low, high)]


def _layer_norm(ins, attrs, ctx):
    """Y = (X - mean) / sqrt(var + epsilon) * Scale + B over the axes from `axis` on; the
    optional Mean and InvStdDev outputs, computed only when the graph reads them, are
    constants (no gradient flows through them)."""
    x = _tensor(ins[0])
    axis = int(attrs.get("axis", -1)) % max(x.ndim, 1)
    eps = float(attrs.get("epsilon", 1e-5))
    shape = tuple(x.shape[axis:])
    scale = _tensor(ins[1])
    bias = _tensor(ins[2]) if len(ins) > 2 and ins[2] is not None else None
    if scale.shape == shape and (bias is None or bias.shape == shape):
        y = F.layer_norm(x, shape, scale, bias, eps)
    else:  # Scale and B broadcast against the normalized dims
        y = F.layer_norm(x, shape, eps=eps) * scale
        y = y if bias is None else y + bias
    if not ctx.wants_extra_outputs:
        return [y]
    axes = tuple(range(axis, x.ndim))
    mean = x.data.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(((x.data - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    return [y, mean.astype(x.dtype), inv_std.astype(x.dtype)]


def _instance_norm(ins, attrs, ctx):
    """Each (sample, channel) plane normalized over its spatial entries, then scale and B
    (C,) per channel: group norm with one channel per group."""
    x = _tensor(ins[0])
    if x.ndim < 3:
        raise LoadError(f"InstanceNormalization: expected an input (N, C, D1, ...), got "
                        f"{x.shape}")
    return [F.group_norm(x, x.shape[1], _tensor(ins[1]), _tensor(ins[2]),
                         float(attrs.get("epsilon", 1e-5)))]


def _expand(ins, attrs, ctx):
    """Broadcast against the shape input (ONNX's bidirectional rule: a 1 keeps x's size)."""
    x = ins[0]
    target = np.broadcast_shapes(np.shape(x.data if isinstance(x, Tensor) else x),
                                 tuple(int(n) for n in _static(ins[1], "Expand", "shape")))
    if _is_array(x):
        return [np.broadcast_to(x, target).copy()]
    return [x.expand(*target)]


def _gelu(x: Tensor, attrs: dict) -> Tensor:
    return F.gelu(x, approximate=attrs.get("approximate", "none"))


def _where(ins, attrs, ctx):
    return [minidl.where(_static(ins[0], "Where", "condition").astype(bool), ins[1], ins[2])]


def _pow(ins, attrs, ctx):
    base, exponent = ins
    if _is_array(base) and _is_array(exponent):
        return [np.power(base, exponent).astype(base.dtype)]
    base = _tensor(base)
    if base.dtype.kind == "f" and _is_array(exponent):
        exponent = exponent.astype(base.dtype)
    return [(base**exponent).astype(base.dtype)]


def _same_dtype(fn: Callable) -> Callable:
    """ONNX's binary ops have one type: keep the inputs' dtype, as NumPy's weak scalars do."""

    def run(a, b):
        out = fn(_tensor(a) if not isinstance(a, Tensor) and not isinstance(b, Tensor) else a, b)
        dtype = (a if isinstance(a, Tensor) else b).dtype
        return out if out.dtype == dtype else out.astype(dtype)

    return run


def _int_divide(a, b):
    """ONNX Div on integers truncates toward zero."""
    if np.result_type(a, b).kind in "iu":
        return (np.trunc(np.true_divide(a, b))).astype(np.result_type(a, b))
    return np.true_divide(a, b)


OPS: dict[str, Callable] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("Average"),
    "GlobalMaxPool": _global_pool("Max"),
    "Gemm": _gemm,
    "MatMul": lambda ins, attrs, ctx: [minidl.matmul(_tensor(ins[0]), _tensor(ins[1]))],
    "Relu": _unary(lambda x, a: F.relu(x), lambda x: np.where(x < 0, 0, x)),  # -0.0 stays
    "LeakyRelu": _unary(lambda x, a: F.leaky_relu(x, float(a.get("alpha", 0.01)))),
    "PRelu": _prelu,
    "Elu": _unary(lambda x, a: F.elu(x, float(a.get("alpha", 1.0)))),
    "Sigmoid": _unary(lambda x, a: F.sigmoid(x)),
    "Tanh": _unary(lambda x, a: F.tanh(x)),
    "Softmax": _softmax(F.softmax),
    "LogSoftmax": _softmax(F.log_softmax),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Add": _elementwise(np.add, _same_dtype(lambda a, b: a + b)),
    "Sub": _elementwise(np.subtract, _same_dtype(lambda a, b: a - b)),
    "Mul": _elementwise(np.multiply, _same_dtype(lambda a, b: a * b)),
    "Div": _elementwise(_int_divide, _same_dtype(lambda a, b: a / b)),
    "Pow": _pow,
    "Max": _variadic(np.maximum, minidl.maximum),
    "Min": _variadic(np.minimum, minidl.minimum),
    "Neg": _unary(lambda x, a: -x, np.negative),
    "Exp": _unary(lambda x, a: x.exp()),
    "Log": _unary(lambda x, a: x.log()),
    "Sqrt": _unary(lambda x, a: x.sqrt()),
    "Reciprocal": _unary(lambda x, a: x.reciprocal()),
    "Abs": _unary(lambda x, a: x.abs(), np.abs),
    "Erf": _unary(lambda x, a: x.erf()),
    "Gelu": _unary(_gelu),
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "Expand": _expand,
    "Clip": _clip,
    "Where": _where,
    "BatchNormalization": _batch_norm,
    "Dropout": _dropout,
    "Concat": _concat,
    "Pad": _pad,
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"),
    "Constant": _constant,
    "Identity": _identity,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Cast": _cast,
}


# Inputs that are settings, not data: a float initializer read only there stays a constant.
STATIC_INPUTS: dict[str, tuple[int, ...]] = {
    "Dropout": (1, 2),
    "Clip": (1, 2),
    "Pad": (1, 2, 3),
    "Reshape": (1,),
    "Expand": (1,),
    "Gather": (1,),
    "Unsqueeze": (1,),
    "Slice": (1, 2, 3, 4),
    "Squeeze": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "Where": (0,),
}


# -- the module -----------------------------------------------------------------------------
class _NodeContext:
    """What a node's function may ask besides its inputs."""

    __slots__ = ("training", "opset", "wants_extra_outputs")

    def __init__(self, training: bool, opset: int, wants_extra_outputs: bool) -> None:
        self.training, self.opset = training, opset
        self.wants_extra_outputs = wants_extra_outputs


class OnnxModule(nn.Module):
    """An ONNX graph run with minidl ops. Call it with the graph's inputs in order (Tensors or
    arrays); it returns the one output, or a tuple of them.

    Float initializers are Parameters (trainable; named after the initializer, with
    characters other than letters, digits and '_' replaced by '_'), the running statistics
    of BatchNormalization are buffers, other initializers are constants.
    `input_names` / `output_names` give the graph's names.
    """

    def __init__(self, model, where: str = "<model>") -> None:
        super().__init__()
        onnx = _onnx()
        graph = model.graph
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None
        )
        if self.opset is None:
            raise LoadError(f"minidl.onnx.load: {where} imports no default-domain opset")
        unsupported = sorted(
            {
                (n.domain + "." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                for n in graph.node
                if n.domain not in ("", "ai.onnx") or n.op_type not in OPS
            }
            | {reason for n in graph.node if (reason := _unsupported_setting(onnx, n))}
        )
        if unsupported:
            raise LoadError(
                f"minidl.onnx.load: {where} uses ops minidl cannot run: {', '.join(unsupported)}"
            )
        stats = {
            name for n in graph.node if n.op_type == "BatchNormalization" for name in n.input[3:5]
        }
        data_inputs = {
            name
            for n in graph.node
            for k, name in enumerate(n.input)
            if k not in STATIC_INPUTS.get(n.op_type, ())
        }
        self._sources: dict[str, tuple[str, Any]] = {}  # onnx name -> ("param", attr) ...
        taken: set[str] = set()
        for tensor in graph.initializer:
            array = to_array(onnx, tensor, where)
            attr = _attribute_name(tensor.name, taken)
            if array.dtype.kind == "f" and array.dtype in (np.float32, np.float64):
                if tensor.name in stats:
                    self.register_buffer(attr, from_numpy(np.array(array)))
                    self._sources[tensor.name] = ("buffer", attr)
                elif tensor.name not in data_inputs:
                    self._sources[tensor.name] = ("const", array)
                else:
                    self.register_parameter(attr, nn.Parameter(array))
                    self._sources[tensor.name] = ("param", attr)
            else:
                self._sources[tensor.name] = ("const", array)
        self.input_names = [i.name for i in graph.input if i.name not in self._sources]
        self.output_names = [o.name for o in graph.output]
        self._nodes = []
        for node in graph.node:
            label = f"{node.op_type} node {node.name or len(self._nodes)!r}"
            self._nodes.append(
                (
                    node.op_type,
                    list(node.input),
                    list(node.output),
                    attributes(onnx, node, f"{where}: {label}"),
                    label,
                )
            )
        self._check_wiring(where)

    def _check_wiring(self, where: str) -> None:
        known = set(self._sources) | set(self.input_names) | {""}
        for _, inputs, outputs, _, label in self._nodes:
            missing = [i for i in inputs if i not in known]
            if missing:
                raise LoadError(
                    f"minidl.onnx.load: {where}: {label} reads {missing}, which no "
                    "earlier node, input or initializer defines"
                )
            known.update(outputs)
        missing = [o for o in self.output_names if o not in known]
        if missing:
            raise LoadError(f"minidl.onnx.load: {where}: outputs {missing} are never computed")

    def _value(self, name: str) -> Any:
        kind, ref = self._sources[name]
        if kind == "const":
            return ref
        return self._parameters[ref] if kind == "param" else self._buffers[ref]

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != len(self.input_names):
            raise ValueError(
                f"OnnxModule: expected {len(self.input_names)} inputs "
                f"{self.input_names}, got {len(inputs)}"
            )
        env: dict[str, Any] = {}
        for name, x in zip(self.input_names, inputs):
            env[name] = x if isinstance(x, Tensor) else minidl.tensor(np.asarray(x))
        for op_type, in_names, out_names, attrs, label in self._nodes:
            args = [None if not n else env[n] if n in env else self._value(n) for n in in_names]
            ctx = _NodeContext(self.training, self.opset, any(out_names[1:]))
            try:
                results = OPS[op_type](args, attrs, ctx)
            except LoadError as e:
                raise LoadError(f"{label}: {e}") from e
            for name, value in zip(out_names, results):
                if name:
                    env[name] = value
        outs = [env[n] if n in env else self._value(n) for n in self.output_names]
        outs = [o if isinstance(o, Tensor) else minidl.tensor(np.asarray(o)) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _unsupported_setting(onnx, node) -> str | None:
    """Settings of supported ops that minidl cannot run, found from the attributes alone."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op in ("MaxPool", "AveragePool", "Conv", "ConvTranspose") and len(
            attrs.get("kernel_shape", [0, 0])) != 2:
        return f"{op} with {len(attrs['kernel_shape'])}-D kernels"
    if op == "Pad" and attrs.get("mode", b"constant") not in (b"constant", "constant"):
        mode = attrs["mode"].decode() if isinstance(attrs["mode"], bytes) else attrs["mode"]
        return f"Pad mode={mode}"
    if op == "AveragePool" and any(d != 1 for d in attrs.get("dilations", [])):
        return "AveragePool with dilations"
    return None


def _attribute_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "initializer"
    if base[0].isdigit():
        base = "_" + base
    attr, k = base, 1
    while attr in taken or hasattr(nn.Module, attr):
        attr, k = f"{base}_{k}", k + 1
    taken.add(attr)
    return attr


def load(path: str | os.PathLike) -> OnnxModule:
    """Read an ONNX file as a trainable minidl module (see OnnxModule).

    Raises LoadError for a truncated or malformed file, external data outside the model's
    folder, or ops minidl cannot run (all of them listed); ImportError without onnx.
    """
    return OnnxModule(read_model(path), str(path))
