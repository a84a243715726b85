"""minidl model -> ONNX file: trace the model once (twice with a dynamic batch) and translate
each op to standard ONNX operators.

The per-op translations live in `TRANSLATIONS`, keyed by the op's registered name (its `name`
trait, minidl.graph.op); each one emits ONNX nodes through an `_Emitter`, which names values,
turns constants into initializers of the right dtype and inserts Casts where minidl promoted
mixed dtypes. The table is here rather than a method on each op class: the ONNX vocabulary
(node types, the emitter, opset rules) stays in this optional module and out of minidl.ops,
and one table shows what exports (PyTorch's exporter, too, registers translations by op name).
An op without an entry raises ExportError naming it.

Dynamic batch: the model is traced at the example batch size B and at B + 1; dimensions that
differ between the two traces depend on the batch. Shape attributes (Reshape's target) keep
such a dimension symbolic (0 = "copy the input's", or -1), so the file runs at any batch size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl.onnx import _trace
from minidl.onnx._trace import Const, TracedGraph, TracedOp

OPSETS = (17, 18, 19, 20, 21)
DEFAULT_OPSET = 18
# onnxruntime 1.30-1.32 rejects files newer than IR 10; onnx's own defaults are newer.
IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


class ExportError(ValueError):
    """The model holds an op (or an op setting) that has no ONNX translation."""


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("minidl.onnx needs the onnx package: pip install 'minidl[onnx]'") from e
    return onnx


class _Emitter:
    """Builds the ONNX graph: nodes, initializers and the name of every value."""

    def __init__(
        self,
        onnx,
        graph: TracedGraph,
        second: TracedGraph | None,
        opset: int,
        names: dict[int, str],
        buffer_names: dict[int, str],
    ) -> None:
        self.onnx, self.helper = onnx, onnx.helper
        self.graph, self.second, self.opset = graph, second, opset
        self.nodes: list = []
        self.initializers: list = []
        self.names = dict(names)
        self.used = set(names.values())
        self.referenced: set[int] = set()  # values some node reads
        self.buffer_names = buffer_names  # id(array) -> name, for BatchNorm's statistics
        self.buffers_done: dict[int, str] = {}

    def fresh(self, prefix: str) -> str:
        name, k = prefix, 1
        while name in self.used:
            name, k = f"{prefix}_{k}", k + 1
        self.used.add(name)
        return name

    def value_name(self, index: int) -> str:
        self.referenced.add(index)
        if index not in self.names:
            self.names[index] = self.fresh(f"v{index}")
        return self.names[index]

    def constant(self, array: Any, dtype: Any = None, prefix: str = "const") -> str:
        array = np.asarray(array, dtype=dtype)
        name = self.fresh(prefix)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(
        self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any
    ) -> str:
        outputs = outputs or [self.fresh(op_type.lower())]
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs, **attrs))
        return outputs[0]

    def buffer(self, array: np.ndarray, dtype: np.dtype, prefix: str) -> str:
        """An initializer for an array an op got as an attribute (BatchNorm's running
        statistics), named after the model's buffer holding it."""
        key = id(array)
        if key not in self.buffers_done:
            name = self.fresh(self.buffer_names.get(key, prefix))
            self.initializers.append(
                self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name)
            )
            self.buffers_done[key] = name
        return self.buffers_done[key]

    def input(self, op: TracedOp, i: int, dtype: Any = None) -> str:
        """The ONNX name of op's i-th input, cast to `dtype` when given (constants become
        initializers of that dtype: minidl's Python scalars are weak, taking the tensor's)."""
        ref = op.inputs[i]
        if isinstance(ref, Const):
            if ref.value is None:
                return ""
            return self.constant(ref.value, dtype)
        name = self.value_name(ref)
        if dtype is not None and self.graph.values[ref].dtype != np.dtype(dtype):
            name = self.node("Cast", [name], to=_elem_type(self.onnx, dtype))
        return name

    def out(self, op: TracedOp) -> str:
        return self.value_name(op.output)

    def out_dtype(self, op: TracedOp) -> np.dtype:
        return self.graph.values[op.output].dtype

    def shape(self, index: int) -> tuple:
        return self.graph.values[index].shape

    def second_shape(self, index: int) -> tuple:
        """The value's shape in the trace at the other batch size (its own without one)."""
        return (
            self.second.values[index].shape
            if self.second is not None
            else self.graph.values[index].shape
        )


def _elem_type(onnx, dtype: Any) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# -- translations, one per op ---------------------------------------------------------------
def _unary(op_type: str) -> Callable:
    def translate(em: _Emitter, op: TracedOp) -> None:
        em.node(op_type, [em.input(op, 0)], [em.out(op)])

    return translate


def _binary(op_type: str) -> Callable:
    def translate(em: _Emitter, op: TracedOp) -> None:
        dt = em.out_dtype(op)
        em.node(op_type, [em.input(op, 0, dt), em.input(op, 1, dt)], [em.out(op)])

    return translate


def _conv_inputs(em: _Emitter, op: TracedOp) -> list:
    """Conv's and ConvTranspose's inputs: x and weight, and the bias when there is one."""
    dt = em.out_dtype(op)
    inputs = [em.input(op, 0, dt), em.input(op, 1, dt)]
    bias = em.input(op, 2, dt)
    return inputs + [bias] if bias else inputs


def _conv(em: _Emitter, op: TracedOp) -> None:
    a = op.attrs
    x, weight = op.inputs[0], op.inputs[1]
    kh, kw = em.shape(weight)[2:]
    h, w = em.shape(x)[2:]
    end = [
        _end_pad(size, k, s, p, d, o)
        for size, k, s, p, d, o in zip(
            (h, w), (kh, kw), a["stride"], a["padding"], a["dilation"], a["out_size"]
        )
    ]
    inputs = _conv_inputs(em, op)
    em.node(
        "Conv",
        inputs,
        [em.out(op)],
        kernel_shape=[kh, kw],
        strides=list(a["stride"]),
        pads=[*a["padding"], *end],
        dilations=list(a["dilation"]),
        group=a["groups"],
    )


def _conv_transpose(em: _Emitter, op: TracedOp) -> None:
    a = op.attrs
    x, weight = op.inputs[0], op.inputs[1]
    kernel = em.shape(weight)[2:]
    # The op keeps out_size; ONNX wants the output_padding that gives it.
    output_padding = [
        out - ((size - 1) * s - 2 * p + d * (k - 1) + 1)
        for out, size, s, p, d, k in zip(
            a["out_size"], em.shape(x)[2:], a["stride"], a["padding"], a["dilation"], kernel
        )
    ]
    inputs = _conv_inputs(em, op)
    em.node(
        "ConvTranspose",
        inputs,
        [em.out(op)],
        kernel_shape=list(kernel),
        strides=list(a["stride"]),
        pads=[*a["padding"], *a["padding"]],
        dilations=list(a["dilation"]),
        group=a["groups"],
        output_padding=output_padding,
    )


def _end_pad(size: int, kernel: int, stride: int, begin: int, dilation: int, out: int) -> int:
    """Bottom/right padding giving `out` outputs: the begin padding when that does (PyTorch's
    symmetric int padding), else the exact amount (padding='same' with an even kernel)."""
    extent = dilation * (kernel - 1) + 1
    if (size + 2 * begin - extent) // stride + 1 == out:
        return begin
    return max(0, (out - 1) * stride + extent - size - begin)


def _pool_ceil_mode(
    size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, out_size: tuple
) -> int:
    floor = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation)
    )
    return int(floor != tuple(out_size))


def _max_pool(em: _Emitter, op: TracedOp) -> None:
    a = op.attrs
    ceil = _pool_ceil_mode(
        em.shape(op.inputs[0])[2:],
        a["kernel"],
        a["stride"],
        a["padding"],
        a["dilation"],
        a["out_size"],
    )
    em.node(
        "MaxPool",
        [em.input(op, 0)],
        [em.out(op)],
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=[*a["padding"], *a["padding"]],
        dilations=list(a["dilation"]),
        ceil_mode=ceil,
    )


def _avg_pool(em: _Emitter, op: TracedOp) -> None:
    a = op.attrs
    ceil = _pool_ceil_mode(
        em.shape(op.inputs[0])[2:], a["kernel"], a["stride"], a["padding"], (1, 1), a["out_size"]
    )
    em.node(
        "AveragePool",
        [em.input(op, 0)],
        [em.out(op)],
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=[*a["padding"], *a["padding"]],
        ceil_mode=ceil,
        count_include_pad=int(a["count_include_pad"]),
    )


def _adaptive_pool(global_op: str, window_op: str) -> Callable:
    """Adaptive pooling as the global pool (output 1 x 1) or, when the output size divides
    the input's, as plain pooling with equal windows (kernel = stride = input / output)."""

    def translate(em: _Emitter, op: TracedOp) -> None:
        if op.attrs.get("indices_sink") is not None:
            raise ExportError(f"{op.name}: return_indices=True has no ONNX translation "
                              "(ONNX's MaxPool indices count over the whole tensor)")
        h, w = em.shape(op.inputs[0])[2:]
        oh, ow = op.attrs["out_size"]
        if (oh, ow) == (1, 1):
            em.node(global_op, [em.input(op, 0)], [em.out(op)])
        elif h % oh == 0 and w % ow == 0:
            k = [h // oh, w // ow]
            em.node(window_op, [em.input(op, 0)], [em.out(op)], kernel_shape=k, strides=k)
        else:
            raise ExportError(
                f"{op.name}: output size {(oh, ow)} does not divide the input's "
                f"{(h, w)}; the unequal windows have no ONNX operator"
            )

    return translate


def _linear(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    x, weight, bias = em.input(op, 0, dt), em.input(op, 1, dt), em.input(op, 2, dt)
    if len(em.shape(op.inputs[0])) == 2:
        em.node("Gemm", [x, weight] + ([bias] if bias else []), [em.out(op)], transB=1)
        return
    weight_t = em.node("Transpose", [weight], perm=[1, 0])
    if not bias:
        em.node("MatMul", [x, weight_t], [em.out(op)])
        return
    em.node("Add", [em.node("MatMul", [x, weight_t]), bias], [em.out(op)])


def _matmul(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    em.node("MatMul", [em.input(op, 0, dt), em.input(op, 1, dt)], [em.out(op)])


def _leaky_relu(em: _Emitter, op: TracedOp) -> None:
    em.node("LeakyRelu", [em.input(op, 0)], [em.out(op)], alpha=float(op.attrs["negative_slope"]))


def _prelu(em: _Emitter, op: TracedOp) -> None:
    # ONNX broadcasts the slope from the right: (C,) becomes (C, 1, ..., 1) for axis 1.
    x_ndim = len(em.shape(op.inputs[0]))
    slope = em.input(op, 1, em.out_dtype(op))
    if x_ndim > 2 and np.prod(_shape_of(em, op.inputs[1])) > 1:
        shape = em.constant([-1] + [1] * (x_ndim - 2), np.int64, "prelu_shape")
        slope = em.node("Reshape", [slope, shape])
    em.node("PRelu", [em.input(op, 0), slope], [em.out(op)])


def _shape_of(em: _Emitter, ref: Any) -> tuple:
    return em.shape(ref) if isinstance(ref, int) else np.shape(ref.value)


def _elu(em: _Emitter, op: TracedOp) -> None:
    em.node("Elu", [em.input(op, 0)], [em.out(op)], alpha=float(op.attrs["alpha"]))


def _softmax(op_type: str) -> Callable:
    def translate(em: _Emitter, op: TracedOp) -> None:
        em.node(op_type, [em.input(op, 0)], [em.out(op)], axis=int(op.attrs["dim"]))

    return translate


def _dropout(em: _Emitter, op: TracedOp) -> None:
    ratio = em.constant(float(op.attrs["p"]), em.out_dtype(op), "dropout_ratio")
    em.node("Dropout", [em.input(op, 0), ratio], [em.out(op)])


def _batch_norm(em: _Emitter, op: TracedOp) -> None:
    a = op.attrs
    if a["training"]:
        raise ExportError("BatchNorm: export needs the model in eval mode (running statistics)")
    if a["running_mean"] is None or a["running_var"] is None:
        raise ExportError(
            "BatchNorm without running statistics (track_running_stats=False) normalizes with "
            "each batch's statistics; ONNX's inference BatchNormalization cannot express that"
        )
    dt = em.out_dtype(op)
    channels = em.shape(op.inputs[0])[1]
    scale, bias = em.input(op, 1, dt), em.input(op, 2, dt)
    scale = scale or em.constant(np.ones(channels, dt), prefix="bn_scale")
    bias = bias or em.constant(np.zeros(channels, dt), prefix="bn_bias")
    stats = [
        em.buffer(a["running_mean"], dt, "running_mean"),
        em.buffer(a["running_var"], dt, "running_var"),
    ]
    em.node(
        "BatchNormalization",
        [em.input(op, 0), scale, bias, *stats],
        [em.out(op)],
        epsilon=float(a["eps"]),
    )


def _reshape(em: _Emitter, op: TracedOp) -> None:
    x = op.inputs[0]
    in1, in2 = em.shape(x), em.second_shape(x)
    out1, out2 = em.shape(op.output), em.second_shape(op.output)
    if (
        len(out1) == 2
        and len(in1) >= 2
        and out1[0] == in1[0]
        and out2[0] == in2[0]
        and out1[1] == int(np.prod(in1[1:]))
    ):
        em.node("Flatten", [em.input(op, 0)], [em.out(op)], axis=1)
        return
    target = list(out1)
    free = []
    for k, (a, b) in enumerate(zip(out1, out2)):
        if a == b:
            continue
        if k < len(in1) and in1[k] == a and in2[k] == b:
            target[k] = 0  # copy the input's (batch-dependent) size
        else:
            free.append(k)
    if len(free) > 1:
        raise ExportError(
            f"Reshape {in1} -> {out1}: {len(free)} output dimensions depend on the batch size "
            "and none copies an input dimension; export with dynamic_batch=False"
        )
    for k in free:
        target[k] = -1
    shape = em.constant(target, np.int64, "shape")
    em.node("Reshape", [em.input(op, 0), shape], [em.out(op)])


def _expand(em: _Emitter, op: TracedOp) -> None:
    """Expand to the output's shape. A dimension the input already has keeps it (ONNX's
    Expand broadcasts with the target: 1 keeps the input's size, batch-dependent or not); a
    new batch-dependent one is read at run time from a graph input with that size."""
    x = op.inputs[0]
    in1, in2 = em.shape(x), em.second_shape(x)
    out1, out2 = em.shape(op.output), em.second_shape(op.output)
    lead = len(out1) - len(in1)
    pieces: list = []  # per output dim: an int, or the name of a (1,) int64 tensor
    for k, (a, b) in enumerate(zip(out1, out2)):
        if k >= lead and (in1[k - lead], in2[k - lead]) == (a, b):
            pieces.append(1)
        elif a == b:
            pieces.append(a)
        else:
            pieces.append(_dimension_of_input(em, a, b, f"Expand {in1} -> {out1}"))
    if all(isinstance(p, int) for p in pieces):
        shape = em.constant(pieces, np.int64, "shape")
    else:
        shape = em.node("Concat", [p if isinstance(p, str) else em.constant([p], np.int64, "dim")
                                   for p in pieces], axis=0)
    em.node("Expand", [em.input(op, 0), shape], [em.out(op)])


def _dimension_of_input(em: _Emitter, size: int, second_size: int, what: str) -> str:
    """A (1,) int64 tensor holding, at run time, the dimension of a graph input that is
    `size` in the trace and `second_size` in the other batch size's."""
    for index in em.graph.inputs:
        for axis, (a, b) in enumerate(zip(em.shape(index), em.second_shape(index))):
            if (a, b) == (size, second_size):
                return em.node("Shape", [em.value_name(index)], start=axis, end=axis + 1)
    raise ExportError(f"{what}: a new dimension depends on the batch size and is no input's "
                      "dimension; export with dynamic_batch=False")


def _permute(em: _Emitter, op: TracedOp) -> None:
    ndim = len(em.shape(op.inputs[0]))
    em.node(
        "Transpose",
        [em.input(op, 0)],
        [em.out(op)],
        perm=[int(ax) % ndim for ax in op.attrs["axes"]],
    )


def _concat(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    em.node(
        "Concat",
        [em.input(op, i, dt) for i in range(len(op.inputs))],
        [em.out(op)],
        axis=int(op.attrs.get("axis", 0)),
    )


def _pad(em: _Emitter, op: TracedOp) -> None:
    ndim = len(em.shape(op.inputs[0]))
    widths = np.broadcast_to(np.asarray(op.attrs["pad_width"], np.int64), (ndim, 2))
    pads = em.constant(np.concatenate([widths[:, 0], widths[:, 1]]), np.int64, "pads")
    value = em.constant(op.attrs.get("value", 0.0), em.out_dtype(op), "pad_value")
    em.node("Pad", [em.input(op, 0), pads, value], [em.out(op)], mode="constant")


_INT64_MAX, _INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _index(em: _Emitter, op: TracedOp) -> None:
    """Basic indexing (ints, slices with steps, None, ...) as Slice, Gather and Unsqueeze;
    one 1-d integer array after whole slices (index_select: interpolate, F.pad's reflect and
    replicate modes) as a Gather; other integer-array and boolean indices have no
    translation here."""
    index = op.attrs["index"]
    items = list(index) if isinstance(index, tuple) else [index]
    in_shape = em.shape(op.inputs[0])
    last = items[-1] if items else None
    if (isinstance(last, np.ndarray) and last.ndim == 1 and last.dtype.kind in "iu"
            and all(i == slice(None) for i in items[:-1])):
        at = len(items) - 1
        em.node("Gather", [em.input(op, 0), em.constant(last, np.int64, "index")], [em.out(op)],
                axis=at)
        return
    if (
        not all(
            i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) for i in items
        )
        or sum(i is Ellipsis for i in items) > 1
    ):
        raise ExportError(
            f"Index: only basic indexing (ints, slices, None, ...) exports, got {index!r}"
        )
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(in_shape) - sum(i is not None for i in items if i is not Ellipsis)
        items[at : at + 1] = [slice(None)] * fill
    items += [slice(None)] * (len(in_shape) - sum(i is not None for i in items))
    starts, ends, axes, steps, gathers, unsqueeze = [], [], [], [], [], []
    axis = out_axis = 0
    for item in items:
        if item is None:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        if isinstance(item, slice):
            if item != slice(None):
                step = 1 if item.step is None else int(item.step)
                starts.append(
                    (0 if step > 0 else _INT64_MAX) if item.start is None else int(item.start)
                )
                ends.append(
                    (_INT64_MAX if step > 0 else _INT64_MIN)
                    if item.stop is None
                    else int(item.stop)
                )
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        else:
            gathers.append((axis, int(item)))
        axis += 1
    steps_out: list[tuple[str, list[str], dict]] = []
    if axes:
        bounds = [
            em.constant(v, np.int64, n)
            for v, n in ((starts, "starts"), (ends, "ends"), (axes, "axes"), (steps, "steps"))
        ]
        steps_out.append(("Slice", bounds, {}))
    for axis, i in sorted(gathers, reverse=True):  # the highest axis first: lower ones stay put
        steps_out.append(("Gather", [em.constant(i, np.int64, "index")], {"axis": axis}))
    if unsqueeze:
        steps_out.append(("Unsqueeze", [em.constant(unsqueeze, np.int64, "axes")], {}))
    name = em.input(op, 0)
    if not steps_out:
        em.node("Identity", [name], [em.out(op)])
    for k, (op_type, extra, attrs) in enumerate(steps_out):
        last = k == len(steps_out) - 1
        name = em.node(op_type, [name, *extra], [em.out(op)] if last else None, **attrs)


def _reduce(op_type: str) -> Callable:
    def translate(em: _Emitter, op: TracedOp) -> None:
        ndim = len(em.shape(op.inputs[0]))
        axis = op.attrs.get("axis")
        axes = (
            list(range(ndim))
            if axis is None
            else [int(a) % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
        )
        keepdims = int(bool(op.attrs.get("keepdims", False)))
        # ReduceSum took axes as an input from opset 13, the others from opset 18.
        if op_type == "ReduceSum" or em.opset >= 18:
            axes_name = em.constant(axes, np.int64, "axes")
            em.node(op_type, [em.input(op, 0), axes_name], [em.out(op)], keepdims=keepdims)
        else:
            em.node(op_type, [em.input(op, 0)], [em.out(op)], axes=axes, keepdims=keepdims)

    return translate


def _clip(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    low, high = op.attrs["low"], op.attrs["high"]
    inputs = [
        em.input(op, 0),
        "" if low is None else em.constant(low, dt, "clip_min"),
        "" if high is None else em.constant(high, dt, "clip_max"),
    ]
    em.node("Clip", inputs, [em.out(op)])


def _silu(em: _Emitter, op: TracedOp) -> None:
    x = em.input(op, 0)
    em.node("Mul", [x, em.node("Sigmoid", [x])], [em.out(op)])


def _gelu(em: _Emitter, op: TracedOp) -> None:
    approximate = op.attrs["approximate"]
    x = em.input(op, 0)
    if em.opset >= 20:
        em.node("Gelu", [x], [em.out(op)], approximate=approximate)
        return
    dt = em.out_dtype(op)

    def c(value: float) -> str:
        return em.constant(value, dt, "gelu_const")

    # Before opset 20: PyTorch's formulas from standard ops (what its own exporter emits).
    if approximate == "none":  # x * 0.5 * (1 + erf(x / sqrt(2)))
        cdf = em.node("Add", [em.node("Erf", [em.node("Mul", [x, c(1 / np.sqrt(2))])]), c(1.0)])
        em.node("Mul", [em.node("Mul", [x, c(0.5)]), cdf], [em.out(op)])
        return
    # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    cube = em.node("Mul", [em.node("Mul", [x, x]), x])
    inner = em.node("Add", [x, em.node("Mul", [cube, c(0.044715)])])
    t = em.node("Tanh", [em.node("Mul", [inner, c(np.sqrt(2 / np.pi))])])
    em.node("Mul", [em.node("Mul", [x, c(0.5)]), em.node("Add", [t, c(1.0)])], [em.out(op)])


def _layer_norm(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    dims = int(op.attrs["dims"])
    shape = em.shape(op.inputs[0])[len(em.shape(op.inputs[0])) - dims:]
    scale = em.input(op, 1, dt) or em.constant(np.ones(shape, dt), prefix="ln_scale")
    bias = em.input(op, 2, dt)
    em.node(
        "LayerNormalization",
        [em.input(op, 0), scale] + ([bias] if bias else []),
        [em.out(op)],
        axis=-dims,
        epsilon=float(op.attrs["eps"]),
    )


def _group_norm(em: _Emitter, op: TracedOp) -> None:
    """One channel per group (instance norm): InstanceNormalization. Otherwise
    LayerNormalization over each group's values (x viewed as (N, groups, rest)), then the
    per-channel affine: opset 18's GroupNormalization took per-group scales, 21's per-channel
    ones, so the composition exports the same at every opset."""
    dt = em.out_dtype(op)
    shape = em.shape(op.inputs[0])
    groups = int(op.attrs["groups"])
    weight, bias = em.input(op, 1, dt), em.input(op, 2, dt)
    if groups == shape[1]:
        weight = weight or em.constant(np.ones(groups, dt), prefix="in_scale")
        bias = bias or em.constant(np.zeros(groups, dt), prefix="in_bias")
        em.node("InstanceNormalization", [em.input(op, 0), weight, bias], [em.out(op)],
                epsilon=float(op.attrs["eps"]))
        return
    rest = int(np.prod(shape[1:])) // groups
    grouped = em.node("Reshape", [em.input(op, 0), em.constant([0, groups, rest], np.int64,
                                                                "shape")])
    normed = em.node("LayerNormalization", [grouped, em.constant(np.ones(rest, dt),
                                                                  prefix="gn_scale")],
                     axis=-1, epsilon=float(op.attrs["eps"]))
    back = em.constant([0, *shape[1:]], np.int64, "shape")
    affine = [(kind, v) for kind, v in (("Mul", weight), ("Add", bias)) if v]
    y = em.node("Reshape", [normed, back], None if affine else [em.out(op)])
    if affine:  # weight and bias (C,) as (C, 1, ..., 1): ONNX broadcasts from the right
        channel = em.constant([-1] + [1] * (len(shape) - 2), np.int64, "channel_shape")
    for k, (kind, v) in enumerate(affine):
        y = em.node(kind, [y, em.node("Reshape", [v, channel])],
                    [em.out(op)] if k == len(affine) - 1 else None)


def _embedding(em: _Emitter, op: TracedOp) -> None:
    em.node("Gather", [em.input(op, 0), em.input(op, 1, np.int64)], [em.out(op)], axis=0)


def _cast(em: _Emitter, op: TracedOp) -> None:
    em.node("Cast", [em.input(op, 0)], [em.out(op)], to=_elem_type(em.onnx, op.attrs["dtype"]))


def _where(em: _Emitter, op: TracedOp) -> None:
    dt = em.out_dtype(op)
    em.node(
        "Where", [em.input(op, 0, np.bool_), em.input(op, 1, dt), em.input(op, 2, dt)], [em.out(op)]
    )


def _no_equivalent(reason: str) -> Callable:
    def translate(em: _Emitter, op: TracedOp) -> None:
        raise ExportError(f"{op.name}: {reason}")

    return translate


# Keyed by the op's registered name (minidl.graph.Function.name).
TRANSLATIONS: dict[str, Callable] = {
    "conv2d": _conv,
    "conv_transpose2d": _conv_transpose,
    "max_pool2d": _max_pool,
    "avg_pool2d": _avg_pool,
    "adaptive_avg_pool2d": _adaptive_pool("GlobalAveragePool", "AveragePool"),
    "adaptive_max_pool2d": _adaptive_pool("GlobalMaxPool", "MaxPool"),
    "linear": _linear,
    "matmul": _matmul,
    "relu": _unary("Relu"),
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "elu": _elu,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "dropout": _dropout,
    "batch_norm": _batch_norm,
    "add": _binary("Add"),
    "sub": _binary("Sub"),
    "mul": _binary("Mul"),
    "div": _binary("Div"),
    "pow": _binary("Pow"),
    "maximum": _binary("Max"),
    "minimum": _binary("Min"),
    "where": _where,
    "neg": _unary("Neg"),
    "exp": _unary("Exp"),
    "log": _unary("Log"),
    "sqrt": _unary("Sqrt"),
    "reciprocal": _unary("Reciprocal"),
    "abs": _unary("Abs"),
    "clip": _clip,
    "hardtanh": _clip,
    "silu": _silu,
    "gelu": _gelu,
    "erf": _unary("Erf"),
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "embedding": _embedding,
    "cast": _cast,
    "reshape": _reshape,
    "permute": _permute,
    "expand": _expand,
    "cat": _concat,
    "pad": _pad,
    "index": _index,
    "sum": _reduce("ReduceSum"),
    "mean": _reduce("ReduceMean"),
    "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"),
    "locally_connected2d": _no_equivalent(
        "LocallyConnected2d (a convolution with a separate filter bank per output "
        "position) has no ONNX equivalent; it cannot be exported"
    ),
}


# -- the public entry point -----------------------------------------------------------------
def export(
    model: Any,
    example_inputs: Sequence[Any] | Any,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> None:
    """Write `model` as an ONNX file at `path` (atomically: a failed export leaves no file).

    model: a Module (exported in eval mode: BatchNorm uses its running statistics, Dropout is
        the identity) or a callable of tensors built from minidl ops.
    example_inputs: a tensor/array or a tuple of them, e.g. (images,) of shape (N, 1, 28, 28).
    opset: ONNX opset, 17 to 21 (the IR version is set to match: onnxruntime rejects newer).
    dynamic_batch: axis 0 of every input and output is the symbolic dimension "batch".
    input_names, output_names: default "input", "input_1", ... and "output", "output_1", ...

    Each op becomes standard ONNX operators (a fused conv/linear + ReLU becomes Conv/Gemm and
    Relu; minidl's Maxout is Gemm, Reshape, ReduceMax). The model is checked with
    onnx.checker (full_check) before the file is written.
    Raises ExportError naming the op for ops without an ONNX equivalent (LocallyConnected2d),
    ValueError for a bad opset or names, ImportError without the onnx package.
    """
    onnx = _onnx()
    if opset not in OPSETS:
        raise ValueError(f"minidl.onnx.export: opset must be one of {OPSETS}, got {opset!r}")
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    model_proto = build_model(
        onnx, model, list(example_inputs), opset, dynamic_batch, input_names, output_names
    )
    onnx.checker.check_model(model_proto, full_check=True)
    from minidl.atomic import atomic_write_bytes

    atomic_write_bytes(path, model_proto.SerializeToString())


def build_model(
    onnx,
    model: Any,
    example_inputs: list,
    opset: int,
    dynamic_batch: bool,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
):
    """The ModelProto of `model` traced on `example_inputs` (see export)."""
    arrays = [
        np.asarray(x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x)
        for x in example_inputs
    ]
    graph = _trace.trace(model, arrays)
    second = None
    if dynamic_batch:
        if any(a.ndim == 0 or a.shape[0] == 0 for a in arrays):
            raise ValueError(
                "minidl.onnx.export: dynamic_batch needs example inputs with a non-empty batch "
                f"axis 0, got shapes {[a.shape for a in arrays]}"
            )
        # One more sample: dimensions that change with it depend on the batch.
        second = _trace.trace(model, [np.concatenate([a, a[:1]]) for a in arrays])
        if [op.name for op in second.ops] != [op.name for op in graph.ops]:
            raise ExportError(
                "dynamic_batch: the model runs different ops at another batch size; export "
                "with dynamic_batch=False"
            )
    in_names = _names("input", input_names, len(graph.inputs))
    out_names = _names("output", output_names, len(graph.outputs))
    if len(set(in_names) | set(out_names)) != len(in_names) + len(out_names):
        raise ValueError(f"minidl.onnx.export: names must be distinct, got {in_names + out_names}")
    names = dict(zip(graph.inputs, in_names))
    names.update(_parameter_names(model, graph))
    em = _Emitter(onnx, graph, second, opset, names, _buffer_names(model))
    for name in out_names:
        em.used.add(name)
    # Outputs produced by an op take their final name directly; an output that is an input,
    # a parameter or another output's value goes through an Identity.
    pending = []
    for index, name in zip(graph.outputs, out_names):
        if index in em.names or graph.values[index].kind != "node":
            pending.append((index, name))
        else:
            em.names[index] = name
    for op in graph.ops:
        translate = TRANSLATIONS.get(op.fn.name)
        if translate is None:
            raise ExportError(
                f"{op.name}: this minidl op has no ONNX translation (supported: "
                f"{', '.join(sorted(TRANSLATIONS))})"
            )
        translate(em, op)
    for index, name in pending:
        em.node("Identity", [em.value_name(index)], [name])
    params = {}
    for v in graph.values:
        if v.kind in ("param", "const") and v.index in em.referenced:
            params[em.names[v.index]] = v.array
    initializers = [
        onnx.numpy_helper.from_array(np.ascontiguousarray(a), n) for n, a in params.items()
    ] + em.initializers

    def value_info(index: int, name: str):
        v = graph.values[index]
        shape: list = list(v.shape)
        if dynamic_batch and shape and second.values[index].shape[0] != shape[0]:
            shape[0] = "batch"
        return onnx.helper.make_tensor_value_info(name, _elem_type(onnx, v.dtype), shape)

    onnx_graph = onnx.helper.make_graph(
        em.nodes,
        type(model).__name__,
        [value_info(i, n) for i, n in zip(graph.inputs, in_names)],
        [value_info(i, n) for i, n in zip(graph.outputs, out_names)],
        initializers,
    )
    proto = onnx.helper.make_model(
        onnx_graph,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="minidl",
        ir_version=IR_VERSION[opset],
    )
    return proto


def _names(prefix: str, given: Sequence[str] | None, count: int) -> list[str]:
    if given is None:
        return [prefix if k == 0 else f"{prefix}_{k}" for k in range(count)]
    given = list(given)
    if len(given) != count or not all(isinstance(n, str) and n for n in given):
        raise ValueError(
            f"minidl.onnx.export: expected {count} non-empty {prefix} names, got {given!r}"
        )
    return given


def _parameter_names(model: Any, graph: TracedGraph) -> dict[int, str]:
    """Parameters keep their state_dict names (conv1.weight) as initializer names."""
    by_array = {}
    if hasattr(model, "named_parameters"):
        by_array = {id(p.data): name for name, p in model.named_parameters()}
    return {
        v.index: by_array[id(v.array)]
        for v in graph.values
        if v.kind == "param" and id(v.array) in by_array
    }


def _buffer_names(model: Any) -> dict[int, str]:
    if not hasattr(model, "named_buffers"):
        return {}
    return {id(b.data): name for name, b in model.named_buffers() if b is not None}
