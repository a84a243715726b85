"""Tensor: a C-contiguous NumPy array, its gradient, and the graph node that produced it."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl import graph, return_types, versions
from minidl.device import check_device, cpu
from minidl.dtypes import (
    FLOAT_DTYPES,
    check_dtype,
    get_default_dtype,
    promote_types,
    result_type,
)
from minidl.memory_format import check_memory_format
from minidl.ops import contiguous
from minidl.ops.elementwise import sign
from minidl.ops.reduce import normalize_axes
from minidl.random import numpy_rng

# Tensor._wrap runs once per op output: module-level names spare it two attribute lookups.
_ndarray = np.ndarray
_new_object = object.__new__

# The ops Tensor applies, found by name once (importing minidl.ops above registered them): a
# module-level bound `apply`, so an operator costs no lookup per call.
_add = graph.op("add").apply
_sub = graph.op("sub").apply
_mul = graph.op("mul").apply
_div = graph.op("div").apply
_pow = graph.op("pow").apply
_maximum = graph.op("maximum").apply
_minimum = graph.op("minimum").apply
_where = graph.op("where").apply
_neg = graph.op("neg").apply
_abs = graph.op("abs").apply
_exp = graph.op("exp").apply
_log = graph.op("log").apply
_erf = graph.op("erf").apply
_scatter = graph.op("scatter").apply
_sqrt = graph.op("sqrt").apply
_pnorm = graph.op("pnorm").apply

# How tensors print (set_printoptions): PyTorch's "default" profile.
_PRINT_OPTIONS: dict[str, Any] = {"precision": 4, "threshold": 1000, "edgeitems": 3,
                                  "linewidth": 80, "sci_mode": None}
_PRINT_PROFILES = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80),
                   "full": (4, sys.maxsize, 3, 80)}


def concrete(t: Tensor, what: str) -> np.ndarray:
    """t's values for Python-side logic that picks elements by value (a sort order, a mask).
    Under a tracer a traced t raises TraceError: the static graph would keep the order the
    example input gave and apply it to every later input."""
    if graph.state.tracer is not None:
        graph.state.tracer.data_access(what, t)
    return t.data


def set_printoptions(precision: int | None = None, threshold: float | None = None,
                     edgeitems: int | None = None, linewidth: int | None = None,
                     profile: str | None = None, sci_mode: bool | None = None) -> None:
    """How tensors print, as torch.set_printoptions: digits after the point, the element
    count above which the middle is elided (edgeitems kept at each end), the line width,
    a profile ("default", "short", "full") setting all four, and sci_mode (True: always
    scientific, False: never, None: NumPy's choice). minidl keeps NumPy's number format."""
    if profile is not None:
        if profile not in _PRINT_PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of "
                             f"{sorted(_PRINT_PROFILES)}, got {profile!r}")
        keys = ("precision", "threshold", "edgeitems", "linewidth")
        _PRINT_OPTIONS.update(zip(keys, _PRINT_PROFILES[profile]))
    for key, value in (("precision", precision), ("threshold", threshold),
                       ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            _PRINT_OPTIONS[key] = sys.maxsize if value == float("inf") else int(value)
    _PRINT_OPTIONS["sci_mode"] = sci_mode
_reciprocal = graph.op("reciprocal").apply
_clip = graph.op("clip").apply
_cast = graph.op("cast").apply
_matmul = graph.op("matmul").apply
_sum = graph.op("sum").apply
_mean = graph.op("mean").apply
_max = graph.op("max").apply
_min = graph.op("min").apply
_expand = graph.op("expand").apply
_repeat = graph.op("repeat").apply
_clone = graph.op("clone").apply
_sin = graph.op("sin").apply
_cos = graph.op("cos").apply
_reshape = graph.op("reshape").apply
_permute = graph.op("permute").apply
_index = graph.op("index").apply
_pad = graph.op("pad").apply
_cat = graph.op("cat").apply
_stack = graph.op("stack").apply
_relu = graph.op("relu").apply
_sigmoid = graph.op("sigmoid").apply
_tanh = graph.op("tanh").apply
_softmax = graph.op("softmax").apply
_log_softmax = graph.op("log_softmax").apply


def _as_array(data: Any, dtype: Any, op: str) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = check_dtype(op, dtype)
    if isinstance(data, np.ndarray) or np.isscalar(data) and isinstance(data, np.generic):
        arr = np.asarray(data, dtype=dtype)
    else:
        arr = np.asarray(data, dtype=dtype)
        # Python floats become the default float dtype (float32), as in PyTorch; a float64
        # NumPy value or array inside the list keeps float64 (PyTorch infers from it).
        if dtype is None and arr.dtype == np.float64 and not _holds_float64(data):
            arr = arr.astype(get_default_dtype())
    check_dtype(op, arr.dtype)
    return contiguous(arr)


def _holds_float64(data: Any) -> bool:
    """Whether a (nested) list or tuple holds a float64 NumPy scalar, array or tensor."""
    if isinstance(data, (list, tuple)):
        return any(_holds_float64(item) for item in data)
    if isinstance(data, Tensor):
        data = data.data
    return isinstance(data, (np.ndarray, np.generic)) and data.dtype == np.float64


class Size(tuple):
    """A tensor's shape: a tuple of ints (torch.Size), with numel()."""

    def numel(self) -> int:
        return int(np.prod(self, dtype=np.int64))

    def __repr__(self) -> str:
        return f"minidl.Size({list(self)})"

    def __str__(self) -> str:
        # Messages format shapes as plain tuples: "(2, 3)".
        return tuple.__repr__(self)


class Tensor:
    """An n-d array that can record the ops applied to it and carry a gradient.

    `data` is always a C-contiguous numpy array of a supported dtype. Only float32 and float64
    tensors can require a gradient. Tensor implements the value protocol minidl.graph walks.

    The constructor is PyTorch's `torch.Tensor`: `Tensor(data)` holds `data` converted to the
    default float dtype (float32) unless `dtype` is given, and `Tensor(2, 3)` is a (2, 3)
    tensor of zeros. `minidl.tensor(data)` infers the dtype instead.
    """

    __slots__ = ("data", "_grad", "_requires_grad", "_ctx", "_retains_grad", "name",
                 "_grad_hooks", "_post_hooks", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, *data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        dt = get_default_dtype() if dtype is None else check_dtype("Tensor", dtype)
        if not data:
            self.data = np.zeros((0,), dt)
        elif all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in data):
            self.data = np.zeros(_shape_arg(data), dt)
        elif len(data) == 1:
            src = data[0].data if isinstance(data[0], Tensor) else data[0]
            self.data = _as_array(src, dt, "Tensor")
        else:
            raise TypeError(
                f"Tensor: expected one data argument or integer sizes, got {len(data)} arguments"
            )
        self._grad: Tensor | None = None
        self._ctx: graph.Context | None = None
        self._retains_grad = False
        self.name: str | None = None
        self._grad_hooks: dict | None = None
        self._post_hooks: dict | None = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array: np.ndarray, requires_grad: bool) -> Tensor:
        """Fast path for op outputs: no dtype checks, contiguity enforced cheaply."""
        t = _new_object(cls)
        if not isinstance(array, _ndarray):
            array = np.asarray(array)
        if not array.flags.c_contiguous:
            array = contiguous(array)
        t.data = array
        t._grad = None
        t._ctx = None
        t._retains_grad = False
        t.name = None
        t._grad_hooks = None
        t._post_hooks = None
        t._requires_grad = requires_grad
        return t

    # -- gradient bookkeeping -------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"requires_grad: only float32/float64 tensors can require grad, got {self.dtype}"
            )
        if not value and self._ctx is not None:
            raise RuntimeError("requires_grad: use detach() to cut a non-leaf tensor from its graph")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by backward(), or None."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        # Checked at assignment, as PyTorch does, so an optimizer never meets a scalar or a
        # wrongly shaped gradient.
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}"
                )
            if value.data.shape != self.data.shape:
                raise RuntimeError(
                    f"assigned grad has data of shape {tuple(value.shape)}, the tensor has "
                    f"shape {tuple(self.shape)}"
                )
            if value.data.dtype != self.data.dtype:
                raise TypeError(
                    f"assigned grad has data of dtype {value.dtype}, the tensor has dtype "
                    f"{self.dtype}"
                )
        self._grad = value

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> BackwardNode | None:
        """The node that produced this tensor (None for leaves and untracked results)."""
        return None if self._ctx is None else BackwardNode(self._ctx)

    @property
    def retains_grad(self) -> bool:
        """Whether retain_grad() was called on this non-leaf tensor."""
        return self._retains_grad and self._ctx is not None

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in `.grad` during backward."""
        self._retains_grad = True

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> graph.RemovableHandle:
        """Call `hook(grad)` each time the gradient with respect to this tensor is computed,
        in eager backward() and in compiled replay (PyTorch's Tensor.register_hook).

        The hook may return a tensor (same shape) that replaces the gradient: for a leaf it is
        what gets accumulated into .grad, for a non-leaf what flows on to its inputs. Hooks
        run in registration order. Returns a handle whose remove() unregisters it. Raises
        RuntimeError when the tensor does not require grad.
        """
        if not self._requires_grad:
            raise RuntimeError(
                "register_hook: cannot register a hook on a tensor that doesn't require gradient"
            )
        if not callable(hook):
            raise TypeError(f"register_hook: hook must be callable, got {hook!r}")
        if self._grad_hooks is None:
            self._grad_hooks = {}
        handle = graph.RemovableHandle(self._grad_hooks)
        self._grad_hooks[handle.id] = hook
        return handle

    def register_post_accumulate_grad_hook(
        self, hook: Callable[[Tensor], None]
    ) -> graph.RemovableHandle:
        """Call `hook(tensor)` after this leaf's gradient has been accumulated into .grad in a
        backward pass (eager or compiled), once per pass (PyTorch's hook of that name; e.g. to
        start reducing a gradient while the rest of backward runs). The return value is
        ignored. Raises RuntimeError on a non-leaf tensor or one that does not require grad.
        """
        if self._ctx is not None:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be "
                "registered on non-leaf tensors"
            )
        if not self._requires_grad:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: cannot register a hook on a tensor that "
                "doesn't require gradient"
            )
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got {hook!r}")
        if self._post_hooks is None:
            self._post_hooks = {}
        handle = graph.RemovableHandle(self._post_hooks)
        self._post_hooks[handle.id] = hook
        return handle

    def backward(self, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate the gradient of this tensor into every leaf that requires grad.

        gradient defaults to 1 for a one-element tensor; otherwise give one of this shape. Leaf
        gradients add up across calls (zero them between steps); the graph's saved buffers are
        freed afterwards unless retain_graph=True, and a second backward through a freed graph
        raises.
        """
        if create_graph:
            raise NotImplementedError(
                "backward: create_graph=True (higher-order gradients) is not supported by minidl"
            )
        if inputs is not None:
            raise NotImplementedError(
                "backward: inputs= is not supported by minidl; use minidl.autograd.grad"
            )
        graph.run_backward(self, gradient, bool(retain_graph))

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, False)

    def zero_grad(self) -> None:
        self.grad = None

    # -- array protocol and attributes ----------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def size(self, dim: int | None = None) -> Size | int:
        """The shape (a tuple), or the length of dim `dim` (PyTorch's size(); numel() counts)."""
        if dim is None:
            return Size(self.data.shape)
        return self.data.shape[_dim_index("size", dim, self.data.ndim)]

    def numel(self) -> int:
        return self.data.size

    nelement = numel

    def dim(self) -> int:
        return self.data.ndim

    ndimension = dim

    @property
    def device(self):
        """Always the CPU (minidl is a CPU engine)."""
        return cpu

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def is_cpu(self) -> bool:
        return True

    def get_device(self) -> int:
        """-1: the CPU, PyTorch's device index for it."""
        return -1

    @property
    def itemsize(self) -> int:
        return self.data.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def is_complex(self) -> bool:
        return False  # minidl has no complex dtypes

    def is_signed(self) -> bool:
        return self.data.dtype.kind in "if"

    def is_same_size(self, other: Tensor) -> bool:
        return tuple(self.shape) == tuple(other.shape)

    def is_nonzero(self) -> bool:
        """The truth of a one-element tensor; other sizes raise RuntimeError."""
        if self.data.size == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        if self.data.size > 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.data.reshape(()))

    def element_size(self) -> int:
        return self.data.itemsize

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def item(self) -> float | int | bool:
        if graph.state.tracer is not None:
            graph.state.tracer.data_access("item", self)
        if self.data.size != 1:
            raise ValueError(f"item: tensor has {self.data.size} elements, expected 1")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        if graph.state.tracer is not None:
            graph.state.tracer.data_access("tolist", self)
        return self.data.tolist()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        o = _PRINT_OPTIONS
        formatter = None
        if o["sci_mode"] and self.dtype.kind == "f":
            formatter = {"float_kind": lambda v: f"{v:.{o['precision']}e}"}
        body = np.array2string(self.data, separator=", ", precision=o["precision"],
                               threshold=o["threshold"], edgeitems=o["edgeitems"],
                               max_line_width=o["linewidth"], suppress_small=o["sci_mode"] is False,
                               formatter=formatter, prefix="tensor(")
        # PyTorch prints the dtype when it is not what the values would infer.
        inferred = (get_default_dtype(), np.dtype(np.int64), np.dtype(np.bool_))
        extra = f", dtype=minidl.{self.dtype}" if self.dtype not in inferred else ""
        if self.data.size == 0:
            body = "[]"
            if self.data.ndim != 1:
                extra = f", size={tuple(self.shape)}" + extra
        if self._ctx is not None:
            extra += f", grad_fn=<{self._ctx.fn.backward_name()}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # -- arithmetic (PyTorch's dtype promotion, see minidl.dtypes.result_type) -----------
    def __add__(self, other: Any) -> Tensor:
        return _add(*_promoted(self, other))

    def __radd__(self, other: Any) -> Tensor:
        return _add(*_promoted(other, self))

    def __sub__(self, other: Any) -> Tensor:
        _check_bool_sub(self, other)
        return _sub(*_promoted(self, other))

    def __rsub__(self, other: Any) -> Tensor:
        _check_bool_sub(other, self)
        return _sub(*_promoted(other, self))

    def __mul__(self, other: Any) -> Tensor:
        return _mul(*_promoted(self, other))

    def __rmul__(self, other: Any) -> Tensor:
        return _mul(*_promoted(other, self))

    def __truediv__(self, other: Any) -> Tensor:
        return _div(*_promoted(self, other, true_divide=True))

    def __rtruediv__(self, other: Any) -> Tensor:
        # other / self as PyTorch computes it: self.reciprocal() * other (the same bits, and
        # its backward needs only the reciprocal, so self may change in place before it).
        return self.reciprocal() * other

    def __pow__(self, other: Any) -> Tensor:
        return _pow(*_promoted(self, other))

    def __rpow__(self, other: Any) -> Tensor:
        return _pow(*_promoted(other, self))

    def __floordiv__(self, other: Any) -> Tensor:
        a, b = _integer_divisor_checked("floor_divide", *_promoted(self, other))
        return Tensor._wrap(np.floor_divide(a, b), False)

    def __mod__(self, other: Any) -> Tensor:
        a, b = _integer_divisor_checked("remainder", *_promoted(self, other))
        return Tensor._wrap(np.remainder(a, b), False)

    def __matmul__(self, other: Any) -> Tensor:
        return _matmul(self, _tensor_operand(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _matmul(_tensor_operand(other), self)

    def __neg__(self) -> Tensor:
        return _neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    # & | ^ ~ << >>: minidl.tensor_elementwise binds them (with PyTorch's promotion).

    # Comparisons give bool tensors without gradient.
    def _compare(self, other: Any, fn) -> Tensor:
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(np.asarray(fn(self.data, other)), False)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal)

    def __bool__(self) -> bool:
        if graph.state.tracer is not None:
            graph.state.tracer.data_access("bool", self)
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous"
            )
        return bool(self.data.reshape(()))

    # -- elementwise functions ------------------------------------------------------------
    def exp(self) -> Tensor:
        return _exp(_floating(self))

    def log(self) -> Tensor:
        return _log(_floating(self))

    def sqrt(self) -> Tensor:
        return _sqrt(_floating(self))

    def erf(self) -> Tensor:
        return _erf(_floating(self))

    def reciprocal(self) -> Tensor:
        return _reciprocal(_floating(self))

    def rsqrt(self) -> Tensor:
        return 1.0 / self.sqrt()

    def sin(self) -> Tensor:
        return _sin(_floating(self))

    def cos(self) -> Tensor:
        return _cos(_floating(self))

    def abs(self) -> Tensor:
        if self.dtype == np.bool_:
            raise NotImplementedError('"abs_cpu" not implemented for bool tensors (neither is '
                                      "PyTorch's kernel)")
        return _abs(self)

    def neg(self) -> Tensor:
        return _neg(self)

    def square(self) -> Tensor:
        # PyTorch's pow(x, 2): bool squares as int64.
        x = self.astype(np.int64) if self.dtype == np.bool_ else self
        return x * x

    def add(self, other: Any, alpha: Any = 1) -> Tensor:
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other: Any, alpha: Any = 1) -> Tensor:
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other: Any) -> Tensor:
        return self * other

    def div(self, other: Any) -> Tensor:
        return self / other

    def pow(self, exponent: Any) -> Tensor:
        return self**exponent

    def sign(self) -> Tensor:
        if self.dtype == np.bool_:
            return Tensor._wrap(self.data.copy(), False)
        return Tensor._wrap(sign(self.data), False)

    def _rounded(self, name: str, fn) -> Tensor:
        # Integers are already whole: a copy of their dtype; bool has no kernel in PyTorch.
        if self.dtype == np.bool_:
            raise NotImplementedError(f'"{name}" not implemented for bool tensors (neither is '
                                      "PyTorch's kernel)")
        return Tensor._wrap(fn(self.data) if self.dtype.kind == "f" else self.data.copy(), False)

    def floor(self) -> Tensor:
        return self._rounded("floor", np.floor)

    def ceil(self) -> Tensor:
        return self._rounded("ceil", np.ceil)

    def round(self) -> Tensor:
        return self._rounded("round", np.round)

    def clip(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch names)
        # The result dtype is PyTorch's promotion with each bound (an integer tensor clamped to
        # 0.5 is the default float dtype, not NumPy's float64).
        low, high = _array_of(min), _array_of(max)
        x = self
        for bound in (low, high):
            if bound is not None and (dt := result_type(x.data, bound)) != x.data.dtype:
                x = x.astype(dt)
        return _clip(x, low=low, high=high)

    clamp = clip

    def clamp_min(self, min: Any) -> Tensor:  # noqa: A002
        return self.clip(min, None)

    def clamp_max(self, max: Any) -> Tensor:  # noqa: A002
        return self.clip(None, max)

    def maximum(self, other: Any) -> Tensor:
        return _maximum(*_promoted(self, other))

    def minimum(self, other: Any) -> Tensor:
        return _minimum(*_promoted(self, other))

    def relu(self) -> Tensor:
        return _relu(self)

    def sigmoid(self) -> Tensor:
        return _sigmoid(_floating(self))

    def tanh(self) -> Tensor:
        return _tanh(_floating(self))

    def softmax(self, dim: int = -1) -> Tensor:
        _check_floating("softmax", self, NotImplementedError)
        return _softmax(self, dim=dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        _check_floating("log_softmax", self, NotImplementedError)
        return _log_softmax(self, dim=dim)

    # -- comparisons as methods -------------------------------------------------------------
    def eq(self, other: Any) -> Tensor:
        return self == other

    def ne(self, other: Any) -> Tensor:
        return self != other

    def lt(self, other: Any) -> Tensor:
        return self < other

    def le(self, other: Any) -> Tensor:
        return self <= other

    def gt(self, other: Any) -> Tensor:
        return self > other

    def ge(self, other: Any) -> Tensor:
        return self >= other

    def equal(self, other: Any) -> bool:
        """True when both have one shape and equal values (torch.equal)."""
        b = _array_of(other)
        return self.data.shape == np.shape(b) and bool(np.array_equal(self.data, b))

    def allclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
                 equal_nan: bool = False) -> bool:
        return bool(np.allclose(self.data, _array_of(other), rtol=rtol, atol=atol,
                                equal_nan=equal_nan))

    def isnan(self) -> Tensor:
        return Tensor._wrap(np.isnan(self.data), False)

    def isfinite(self) -> Tensor:
        return Tensor._wrap(np.isfinite(self.data), False)

    def any(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("any", dim, keepdim, aliases)
        return Tensor._wrap(np.asarray(self.data.any(axis=dim, keepdims=keepdim)), False)

    def all(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("all", dim, keepdim, aliases)
        return Tensor._wrap(np.asarray(self.data.all(axis=dim, keepdims=keepdim)), False)

    # -- dtype and device conversions -------------------------------------------------------
    def astype(self, dtype: Any) -> Tensor:
        dt = check_dtype("astype", dtype)
        if dt == self.dtype:
            return self
        if self._requires_grad and dt not in FLOAT_DTYPES:
            return Tensor._wrap(self.data.astype(dt), False)
        return _cast(self, dtype=dt)

    def to(self, *args: Any, dtype: Any = None, device: Any = None, non_blocking: bool = False,
           copy: bool = False, memory_format: Any = None) -> Tensor:
        """to(dtype), to(device), to(device, dtype), to(other_tensor): the tensor with that
        dtype (itself when nothing changes, unless copy=True). Only the CPU exists: any other
        device raises RuntimeError. memory_format: accepted (see minidl.memory_format)."""
        check_memory_format("to", memory_format)
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif _is_device_like(a):
                device = a
            else:
                dtype = a
        check_device("to", device)
        out = self if dtype is None else self.astype(dtype)
        return out.clone() if copy and out is self else out

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        check_device("cuda", "cuda")
        return self

    def type(self, dtype: Any = None) -> Any:
        """type() names the tensor type ('minidl.FloatTensor'); type(dtype) converts."""
        if dtype is None:
            return f"minidl.{_TYPE_NAMES.get(self.dtype, 'Tensor')}"
        if isinstance(dtype, str):
            names = {v: k for k, v in _TYPE_NAMES.items()}
            key = dtype.rsplit(".", 1)[-1]
            if key not in names:
                raise TypeError(f"type: unknown tensor type {dtype!r}")
            dtype = names[key]
        return self.astype(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.astype(other.dtype)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def long(self) -> Tensor:
        return self.astype(np.int64)

    def int(self) -> Tensor:
        return self.astype(np.int32)

    def short(self) -> Tensor:
        return self.astype(np.int16)

    def byte(self) -> Tensor:
        return self.astype(np.uint8)

    def bool(self) -> Tensor:
        return self.astype(np.bool_)

    def half(self) -> Tensor:
        raise TypeError("half: float16 tensors are not supported by minidl (float32/float64 only)")

    bfloat16 = half

    def is_floating_point(self) -> bool:
        return self.dtype.kind == "f"

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def clone(self) -> Tensor:
        return _clone(self)

    def contiguous(self, memory_format: Any = None) -> Tensor:
        """Itself: minidl tensors are always C-contiguous (any memory_format has their
        values; see minidl.memory_format)."""
        check_memory_format("contiguous", memory_format)
        return self

    def is_contiguous(self) -> bool:
        return True

    # -- reductions -----------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False, dtype: Any = None,
            **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("sum", dim, keepdim, aliases)
        x = self if dtype is None else self.astype(dtype)
        if dtype is None and x.dtype.kind in "biu" and x.dtype != np.int64:
            x = x.astype(np.int64)  # PyTorch sums bool and integers as int64
        return _sum(x, axis=dim, keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, dtype: Any = None,
             **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("mean", dim, keepdim, aliases)
        x = self if dtype is None else self.astype(dtype)
        if x.dtype.kind != "f":
            raise TypeError(
                f"mean: input dtype should be a floating point dtype, got {x.dtype} (use "
                ".float().mean() or mean(dtype=...))"
            )
        return _mean(x, axis=dim, keepdims=keepdim)

    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: Any = None, **aliases: Any) -> Tensor:
        """Variance; correction=1 (unbiased, Bessel's) by default as in PyTorch."""
        return self._variance("var", dim, unbiased, keepdim, correction, aliases)

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: Any = None, **aliases: Any) -> Tensor:
        return _sqrt(self._variance("std", dim, unbiased, keepdim, correction, aliases),
                     zero_at_zero=True)

    def _variance(self, name: str, dim: Any, unbiased: bool | None, keepdim: bool,
                  correction: Any, aliases: dict) -> Tensor:
        dim, keepdim = _dim_args(name, dim, keepdim, aliases)
        if correction is None:
            correction = 0 if unbiased is False else 1
        _check_floating(name, self, RuntimeError)
        x = self
        axes = normalize_axes(name, dim, x.ndim)
        count = int(np.prod([x.shape[i] for i in axes])) if axes else 1
        centered = x - x.mean(dim=axes, keepdim=True)
        dof = max(count - correction, 0)
        if dof > 0:
            return (centered * centered).sum(dim=axes, keepdim=keepdim) / dof
        warnings.warn(
            f"{name}(): degrees of freedom is <= 0. Correction should be strictly less than "
            "the reduction factor (input numel divided by output numel).",
            UserWarning,
            stacklevel=3,
        )
        with np.errstate(divide="ignore", invalid="ignore"):  # PyTorch: inf or NaN, silently
            return (centered * centered).sum(dim=axes, keepdim=keepdim) / 0

    def prod(self, dim: int | None = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("prod", dim, keepdim, aliases)
        if self._requires_grad and graph.is_grad_enabled():
            raise NotImplementedError("prod: the gradient of prod is not implemented in minidl")
        return Tensor._wrap(np.asarray(self.data.prod(axis=dim, keepdims=keepdim)), False)

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False,
             dtype: Any = None) -> Tensor:
        """The p-norm over dim (all dims by default): 'fro' or 2, 1, inf (max |x|), -inf
        (min |x|) or any other number (the "pnorm" op; 0 counts the nonzeros). dtype: the
        input is cast to it first."""
        x = _floating(self if dtype is None else self.to(dtype))
        if isinstance(p, bool) or not (p == "fro" or isinstance(p, (int, float))):
            raise ValueError(f"norm: unsupported p={p!r} (use 'fro' or a number)")
        if p in ("fro", 2, 2.0):
            return _sqrt((x * x).sum(dim=dim, keepdim=keepdim), zero_at_zero=True)
        if p in (1, 1.0):
            return x.abs().sum(dim=dim, keepdim=keepdim)
        if p == float("inf"):
            return x.abs().amax(dim=dim, keepdim=keepdim)
        if p == -float("inf"):
            return x.abs().amin(dim=dim, keepdim=keepdim)
        return _pnorm(x, p=float(p), axis=dim, keepdims=keepdim)

    def amax(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        """The maximum over one or several dims (all by default), without indices."""
        dim, keepdim = _dim_args("amax", dim, keepdim, aliases)
        return _max(self, axis=dim, keepdims=keepdim, split_ties=True)

    def amin(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("amin", dim, keepdim, aliases)
        return _min(self, axis=dim, keepdims=keepdim, split_ties=True)

    def max(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Any:
        """max() over all elements; max(dim) the named tuple (values, indices) along dim;
        max(other_tensor) the elementwise maximum (PyTorch's three forms)."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        dim, keepdim = _dim_args("max", dim, keepdim, aliases)
        if dim is None:
            return _max(self, axis=None, split_ties=True)
        return return_types.max(*self._extreme("max", _max, np.argmax, dim, keepdim))

    def min(self, dim: Any = None, keepdim: bool = False, **aliases: Any) -> Any:
        """min(), min(dim) -> (values, indices), min(other_tensor); see max."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        dim, keepdim = _dim_args("min", dim, keepdim, aliases)
        if dim is None:
            return _min(self, axis=None, split_ties=True)
        return return_types.min(*self._extreme("min", _min, np.argmin, dim, keepdim))

    def _extreme(self, name: str, apply: Callable, pick: Callable, dim: Any,
                 keepdim: bool) -> tuple[Tensor, Tensor]:
        axis = _dim_index(name, dim, self.ndim)
        values = apply(self, axis=axis, keepdims=keepdim)
        indices = pick(self.data, axis=axis, keepdims=keepdim) if self.ndim else np.array(0)
        return values, Tensor._wrap(np.asarray(indices, dtype=np.int64), False)

    def argmax(self, dim: int | None = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("argmax", dim, keepdim, aliases)
        return _arg_extreme(self, np.argmax, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False, **aliases: Any) -> Tensor:
        dim, keepdim = _dim_args("argmin", dim, keepdim, aliases)
        return _arg_extreme(self, np.argmin, dim, keepdim)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        """(values, indices) sorted along dim; equal elements keep their order."""
        axis = _dim_index("sort", dim, max(self.ndim, 1))
        if self.ndim == 0:
            return return_types.sort(self, Tensor._wrap(np.array(0), False))
        key = concrete(self, "sort")
        if descending and key.dtype.kind == "f":
            # Negated keys keep a stable sort stable (a flipped ascending sort would not);
            # NaN counts as the largest value, first (PyTorch's order), hence the second key.
            order = np.lexsort((-key, ~np.isnan(key)), axis=axis)
        else:
            if descending:
                key = -key.astype(np.int64) if key.dtype.kind in "bu" else -key
            order = np.argsort(key, axis=axis, kind="stable")
        return return_types.sort(self.gather(axis, order), Tensor._wrap(order, False))

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        return self.sort(dim, descending, stable).indices

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
        """(values, indices) of the k largest (smallest with largest=False) along dim."""
        axis = _dim_index("topk", dim, self.ndim)
        if not 0 <= k <= self.shape[axis]:
            raise ValueError(f"topk: k={k} is out of range for dim {dim} of size "
                             f"{self.shape[axis]}")
        values, indices = self.sort(axis, descending=largest)
        keep = _along(axis, slice(0, k))
        return return_types.topk(values[keep], Tensor._wrap(contiguous(indices.data[keep]), False))

    def gather(self, dim: int, index: Any) -> Tensor:
        """out[i][j][k] = self[i][index[i][j][k]][k] for dim=1 (torch.gather)."""
        idx = _array_of(index)
        axis = _dim_index("gather", dim, self.ndim)
        if np.ndim(idx) != self.ndim or np.asarray(idx).dtype.kind not in "iu":
            raise ValueError(
                f"gather: index must be an integer tensor with {self.ndim} dims, got "
                f"{np.asarray(idx).dtype} of shape {np.shape(idx)}"
            )
        grids = list(np.ogrid[tuple(slice(0, n) for n in np.shape(idx))])
        grids[axis] = np.asarray(idx)
        return self[tuple(grids)]

    # -- selection and rearrangement: composites of index, cat, where and permute, so their
    # gradients are those ops' ----------------------------------------------------------------
    def index_select(self, dim: int, index: Any) -> Tensor:
        """The entries at `index` (a 1-d integer tensor) along dim."""
        idx = np.asarray(_array_of(index))
        if idx.ndim > 1 or idx.dtype.kind not in "iu":
            raise ValueError(f"index_select: index must be a 1-d integer tensor, got "
                             f"{idx.dtype} of shape {idx.shape}")
        axis = _dim_index("index_select", dim, self.ndim)
        return self[_along(axis, idx.reshape(-1))]

    def scatter(self, dim: int, index: Any, src: Any = None, *, value: Any = None) -> Tensor:
        """A copy with src's entries (or the scalar value) written at index along dim:
        out[i][index[i][j]] = src[i][j] for dim 1 (torch.scatter)."""
        return self._scatter("scatter", dim, index, src, value, add=False)

    def scatter_add(self, dim: int, index: Any, src: Any) -> Tensor:
        """A copy with src's entries added at index along dim (repeated indices add up)."""
        return self._scatter("scatter_add", dim, index, src, None, add=True)

    def scatter_(self, dim: int, index: Any, src: Any = None, *, value: Any = None) -> Tensor:
        return self._inplace("scatter_", lambda x: x.scatter(dim, index, src, value=value), src)

    def scatter_add_(self, dim: int, index: Any, src: Any) -> Tensor:
        return self._inplace("scatter_add_", lambda x: x.scatter_add(dim, index, src), src)

    def _scatter(self, name: str, dim: int, index: Any, src: Any, value: Any,
                 add: bool) -> Tensor:
        axis = _dim_index(name, dim, self.ndim)
        if src is None:
            src = value
        if src is None:
            raise TypeError(f"{name}: expected src (a tensor) or value (a number)")
        if isinstance(src, Tensor):
            if src.dtype != self.dtype:
                raise RuntimeError(f"{name}: expected self.dtype to be equal to src.dtype, got "
                                   f"{self.dtype} and {src.dtype}")
        else:  # a number: broadcast to the index's shape
            src = Tensor._wrap(np.full(np.shape(_array_of(index)), src, self.dtype), False)
        return _scatter(self, src, index=np.asarray(_array_of(index)), axis=axis, add=add)

    def select(self, dim: int, index: int) -> Tensor:
        """The slice at `index` along dim, without that dim."""
        axis = _dim_index("select", dim, self.ndim)
        n = self.shape[axis]
        if not -n <= index < n:
            raise IndexError(f"select: index {index} is out of range for dim {dim} of size {n}")
        return self[_along(axis, int(index))]

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """length entries from start along dim (start may count from the end)."""
        axis = _dim_index("narrow", dim, self.ndim)
        n = self.shape[axis]
        begin = start + n if start < 0 else start
        if not (0 <= begin <= n and 0 <= length <= n - begin):
            raise IndexError(f"narrow: start {start} and length {length} exceed dim {dim} of "
                             f"size {n}")
        return self[_along(axis, slice(begin, begin + length))]

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        axis = _dim_index("unbind", dim, self.ndim)
        return tuple(self.select(axis, i) for i in range(self.shape[axis]))

    def roll(self, shifts: Any, dims: Any = None) -> Tensor:
        """Entries shifted cyclically by shifts along dims (the flattened tensor without)."""
        if dims is None:
            if not isinstance(shifts, (int, np.integer)):
                shifts, = shifts
            return self.reshape(-1).roll(int(shifts), 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
        dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
        if len(shifts) != len(dims):
            raise ValueError(f"roll: got {len(shifts)} shifts for {len(dims)} dims")
        out = self
        for shift, dim in zip(shifts, dims):
            axis = _dim_index("roll", dim, self.ndim)
            n = self.shape[axis]
            k = int(shift) % n if n else 0
            if k:
                out = concatenate([out[_along(axis, slice(n - k, None))],
                                   out[_along(axis, slice(0, n - k))]], axis)
        return out

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims (on and below `diagonal`), zeros elsewhere."""
        return self._triangle("tril", np.tril, diagonal)

    def triu(self, diagonal: int = 0) -> Tensor:
        return self._triangle("triu", np.triu, diagonal)

    def _triangle(self, name: str, pick: Callable, diagonal: int) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"{name}: expected a tensor of at least 2 dims, got shape "
                             f"{tuple(self.shape)}")
        keep = pick(np.ones(self.shape[-2:], dtype=bool), int(diagonal))
        return where(keep, self, self.new_zeros(()))

    def diag(self, diagonal: int = 0) -> Tensor:
        """A 1-d tensor's square matrix with it on `diagonal`, or a 2-d tensor's diagonal."""
        k = int(diagonal)
        if self.ndim == 2:
            rows, cols = self.shape
            i = np.arange(max(0, -k), min(rows, cols - k) if cols - k > 0 else 0)
            return self[i, i + k] if i.size else self.reshape(-1)[:0]
        if self.ndim != 1:
            raise ValueError(f"diag: expected a 1-d or 2-d tensor, got shape {tuple(self.shape)}")
        n = self.shape[0]
        square = where(np.eye(n, dtype=bool), self.reshape(1, n), self.new_zeros(()))
        if k == 0:
            return square
        return square.pad(((0, k), (k, 0)) if k > 0 else ((-k, 0), (0, -k)))

    def movedim(self, source: Any, destination: Any) -> Tensor:
        """Dims `source` moved to positions `destination`; the others keep their order."""
        src, dst = ([d] if isinstance(d, (int, np.integer)) else list(d)
                    for d in (source, destination))
        src = [_dim_index("movedim", d, self.ndim) for d in src]
        dst = [_dim_index("movedim", d, self.ndim) for d in dst]
        if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ValueError(f"movedim: source {source!r} and destination {destination!r} "
                             "must be distinct dims, as many of each")
        perm: list = [None] * self.ndim
        for a, b in zip(src, dst):
            perm[b] = a
        rest = iter(a for a in range(self.ndim) if a not in src)
        return self.permute(*[next(rest) if a is None else a for a in perm])

    moveaxis = movedim

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        return self.transpose(axis0, axis1)

    def broadcast_to(self, *shape: Any) -> Tensor:
        return self.expand(*shape)

    def masked_select(self, mask: Any) -> Tensor:
        """The entries where the (broadcast) boolean mask is True, as a 1-d tensor."""
        m = np.asarray(_array_of(mask))
        if m.dtype != bool:
            raise TypeError(f"masked_select: expected a boolean mask, got {m.dtype}")
        shape = np.broadcast_shapes(self.shape, m.shape)
        x = self if tuple(self.shape) == shape else self.expand(shape)
        return x[np.broadcast_to(m, shape)]

    def repeat_interleave(self, repeats: Any, dim: int | None = None) -> Tensor:
        """Each entry repeated `repeats` times (an int, or one count per entry) along dim (of
        the flattened tensor without)."""
        x, axis = (self.reshape(-1), 0) if dim is None else (
            self, _dim_index("repeat_interleave", dim, self.ndim))
        counts = np.asarray(_array_of(repeats))
        if counts.dtype.kind not in "iu" or (counts < 0).any() or counts.ndim > 1 or (
                counts.ndim == 1 and counts.size not in (1, x.shape[axis])):
            raise ValueError(f"repeat_interleave: repeats must be a non-negative int or one per "
                             f"entry of dim {axis} ({x.shape[axis]}), got {counts!r}")
        return x.index_select(axis, np.repeat(np.arange(x.shape[axis]), counts))

    def nan_to_num(self, nan: float = 0.0, posinf: float | None = None,
                   neginf: float | None = None) -> Tensor:
        """NaN, +inf and -inf replaced (by 0, the dtype's largest and smallest finite values by
        default); the gradient is 0 at the replaced entries."""
        if self.dtype.kind != "f":
            return self.clone()
        filled = np.nan_to_num(self.data, nan=nan, posinf=posinf, neginf=neginf)
        return where(np.isfinite(self.data), self, Tensor._wrap(filled, False))

    # -- tests that give boolean tensors (no gradient) ---------------------------------------
    def isinf(self) -> Tensor:
        return Tensor._wrap(np.isinf(self.data), False)

    def isposinf(self) -> Tensor:
        return Tensor._wrap(np.isposinf(self.data), False)

    def isneginf(self) -> Tensor:
        return Tensor._wrap(np.isneginf(self.data), False)

    def isclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
                equal_nan: bool = False) -> Tensor:
        return Tensor._wrap(np.isclose(self.data, _array_of(other), rtol, atol, equal_nan),
                            False)

    def logical_and(self, other: Any) -> Tensor:
        return Tensor._wrap(np.logical_and(self.data, _array_of(other)), False)

    def logical_or(self, other: Any) -> Tensor:
        return Tensor._wrap(np.logical_or(self.data, _array_of(other)), False)

    def logical_xor(self, other: Any) -> Tensor:
        return Tensor._wrap(np.logical_xor(self.data, _array_of(other)), False)

    def logical_not(self) -> Tensor:
        return Tensor._wrap(np.logical_not(self.data), False)

    def count_nonzero(self, dim: Any = None) -> Tensor:
        axes = None if dim is None else normalize_axes("count_nonzero", dim, self.ndim)
        return Tensor._wrap(np.asarray(np.count_nonzero(self.data, axis=axes), np.int64), False)

    # -- new tensors of this one's dtype -----------------------------------------------------
    def new_tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return tensor(data, dtype=self.dtype if dtype is None else dtype,
                      requires_grad=requires_grad)

    def new_zeros(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return zeros(*size, dtype=self.dtype if dtype is None else dtype,
                     requires_grad=requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return ones(*size, dtype=self.dtype if dtype is None else dtype,
                    requires_grad=requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return empty(*size, dtype=self.dtype if dtype is None else dtype,
                     requires_grad=requires_grad)

    def new_full(self, size: Any, fill_value: Any, dtype: Any = None,
                 requires_grad: bool = False) -> Tensor:
        return full(size, fill_value, dtype=self.dtype if dtype is None else dtype,
                    requires_grad=requires_grad)

    def flip(self, dims: Any) -> Tensor:
        """The elements in reverse order along each of dims (a copy, as in PyTorch)."""
        axes = normalize_axes("flip", dims, self.ndim)
        return self[tuple(slice(None, None, -1) if i in axes else slice(None)
                          for i in range(self.ndim))]

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        """log(sum(exp(x))) over dim, computed from x minus its maximum (a constant: the
        gradient is softmax(x) along dim); rows of -inf give -inf, as PyTorch's."""
        x = _floating(self)
        axes = normalize_axes("logsumexp", dim, x.ndim)
        keep = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        m = np.amax(x.data, axis=axes, keepdims=True) if x.data.size else np.zeros(keep)
        m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
        total = (x - Tensor._wrap(m, False)).exp().sum(axes, keepdim=keepdim).log()
        return total + Tensor._wrap(m if keepdim else m.reshape(total.shape), False)

    def nonzero(self, as_tuple: bool = False) -> Any:
        """The indices of the non-zero elements in row-major order: an int64 (count, ndim)
        tensor, or with as_tuple one int64 index tensor per dim (one for a 0-d tensor)."""
        if as_tuple:
            return tuple(Tensor._wrap(i.astype(np.int64), False)
                         for i in np.nonzero(np.atleast_1d(self.data)))
        return Tensor._wrap(np.argwhere(self.data).astype(np.int64), False)

    def cumsum(self, dim: int, **aliases: Any) -> Tensor:
        if self._requires_grad and graph.is_grad_enabled():
            raise NotImplementedError("cumsum: the gradient of cumsum is not implemented")
        axis = _dim_index("cumsum", dim, self.ndim)
        if self.dtype == np.float32:
            # Running sums in float64 rounded at each step, as PyTorch's CPU kernel adds: a
            # float32 accumulator drifts (10^5 times 0.1: 9998.56 instead of 10000).
            return Tensor._wrap(np.cumsum(self.data, axis=axis, dtype=np.float64).astype(
                np.float32), False)
        return Tensor._wrap(np.cumsum(self.data, axis=axis), False)

    # -- shape ----------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _reshape(self, shape=tuple(int(n) for n in shape))

    def view(self, *shape: Any) -> Tensor:
        """A reshape, or with one dtype argument the same bytes read as that dtype (PyTorch's
        view(dtype): no gradient when the dtype changes; the last dim scales by the ratio of
        element sizes)."""
        if len(shape) != 1 or not isinstance(shape[0], (np.dtype, type, str)):
            return self.reshape(*shape)
        dtype = check_dtype("view", np.dtype(shape[0]))
        if dtype == self.data.dtype:
            return self.reshape(self.shape)
        try:
            return Tensor._wrap(self.data.view(dtype), False)
        except ValueError as e:
            raise RuntimeError(f"view: cannot view a {self.data.dtype} tensor of shape "
                               f"{tuple(self.shape)} as {dtype}: {e}") from e

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim (PyTorch's semantics)."""
        if self.ndim == 0:
            return self.reshape(1)
        start = start_dim % self.ndim
        end = end_dim % self.ndim
        s = self.shape
        return self.reshape(s[:start] + (-1,) + s[end + 1 :])

    def unflatten(self, dim: int, sizes: Any) -> Tensor:
        """Split dim into `sizes` (PyTorch's semantics; one size may be -1): a reshape."""
        sizes = tuple(int(n) for n in sizes)
        if self.ndim == 0:
            raise ValueError("unflatten: cannot unflatten a 0-d tensor")
        axis = normalize_axes("unflatten", dim, self.ndim)[0]
        if not sizes or sizes.count(-1) > 1 or any(n < -1 for n in sizes):
            raise ValueError(f"unflatten: sizes must be non-empty with at most one -1 and no "
                             f"other negative size, got {sizes}")
        known = int(np.prod([n for n in sizes if n != -1]))
        n = self.shape[axis]
        if (known == 0 or n % known) if -1 in sizes else known != n:
            raise ValueError(f"unflatten: sizes {sizes} do not multiply to the size {n} of "
                             f"dim {dim}")
        return self.reshape(self.shape[:axis] + sizes + self.shape[axis + 1:])

    def permute(self, *axes: Any) -> Tensor:
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _permute(self, axes=axes)

    def transpose(self, dim0: int | None = None, dim1: int | None = None) -> Tensor:
        """Swap two axes (PyTorch); with no arguments reverse all axes (NumPy)."""
        if dim0 is None and dim1 is None:
            return self.permute(tuple(range(self.ndim))[::-1])
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(axes)

    def t(self) -> Tensor:
        """The transpose of a tensor of at most 2 dims."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with <= 2 dimensions, got {self.ndim}")
        return self.transpose() if self.ndim == 2 else self

    @property
    def T(self) -> Tensor:
        return self.transpose()

    @property
    def mT(self) -> Tensor:
        """The last two dims swapped; a 1-d tensor raises RuntimeError (PyTorch's)."""
        return self._conjugate_transpose("tensor.mT")

    def _conjugate_transpose(self, name: str) -> Tensor:
        # Real tensors: the conjugate transpose is the transpose; PyTorch keeps 0-d tensors
        # as they are, with a deprecation warning (mT, mH, H, adjoint alike).
        if self.ndim == 0:
            warnings.warn(f"{name} is deprecated on 0-D tensors. Consider using x.conj().",
                          UserWarning, stacklevel=3)
            return self
        if self.ndim == 1:
            raise RuntimeError(f"{name} is only supported on matrices or batches of matrices. "
                               "Got 1-D tensor.")
        return self.transpose(-2, -1)

    @property
    def mH(self) -> Tensor:
        return self._conjugate_transpose("tensor.mH")

    def adjoint(self) -> Tensor:
        return self._conjugate_transpose("tensor.adjoint()")

    @property
    def H(self) -> Tensor:
        """The transpose of a matrix (real tensors); other dims raise RuntimeError."""
        if self.ndim != 2 and self.ndim != 0:
            raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors). Got "
                               f"{self.ndim}-D tensor.")
        return self._conjugate_transpose("tensor.H")

    def squeeze(self, dim: Any = None, **aliases: Any) -> Tensor:
        dim, _ = _dim_args("squeeze", dim, False, aliases)
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
        drop = {_dim_index("squeeze", d, max(self.ndim, 1)) for d in dims}
        if self.ndim == 0:
            return self
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (
            i in drop and n == 1)))

    def unsqueeze(self, dim: Any = None, **aliases: Any) -> Tensor:
        dim, _ = _dim_args("unsqueeze", dim, False, aliases)
        axis = _dim_index("unsqueeze", dim, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to `sizes` (-1 keeps a dim); minidl copies (tensors are contiguous)."""
        return _expand(self, shape=_shape_arg(sizes))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def repeat(self, *repeats: Any) -> Tensor:
        return _repeat(self, repeats=_shape_arg(repeats))

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        axis = _dim_index("chunk", dim, self.ndim)
        step = -(-self.shape[axis] // chunks)
        return self.split(step, axis)

    def split(self, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
        axis = _dim_index("split", dim, self.ndim)
        n = self.shape[axis]
        sizes = [split_size] * (-(-n // split_size)) if isinstance(split_size, int) else split_size
        if not isinstance(split_size, int) and sum(int(size) for size in sizes) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's "
                f"size at dimension {axis}), but got split_sizes={list(sizes)}")
        out, start = [], 0
        for size in sizes:
            stop = min(start + int(size), n)
            out.append(self[_along(axis, slice(start, stop))])
            start = stop
        return tuple(out)

    def __getitem__(self, index: Any) -> Tensor:
        index = _plain_index(index)
        split = _split_int_selects(index)
        if split is not None:
            return _index(_index(self, index=split[0]), index=split[1])
        return _index(self, index=index)

    def __setitem__(self, index: Any, value: Any) -> None:
        """In-place assignment, for tensors outside any graph (data preparation, or
        parameters under no_grad)."""
        if self._ctx is not None or (self._requires_grad and graph.is_grad_enabled()):
            raise RuntimeError(
                "setitem: assigning into a tensor that is recorded in a graph would corrupt its "
                "gradients; use minidl.where(), or assign under minidl.no_grad() / into detach()"
            )
        index = _plain_index(index)
        if (isinstance(value, Tensor) and value.ndim and value.data.dtype != self.data.dtype
                and _is_advanced(index)):
            raise RuntimeError(
                f"setitem: Index put requires the source and destination dtypes match, got "
                f"{self.data.dtype} for the destination and {value.data.dtype} for the source")
        split = _split_int_selects(index)
        target, index = (self.data, index) if split is None else (self.data[split[0]], split[1])
        target[index] = value.data if isinstance(value, Tensor) else value
        versions.bump(self.data)

    def pad(self, pad_width: Any, value: float = 0.0) -> Tensor:
        return _pad(self, pad_width=pad_width, value=value)

    def matmul(self, other: Any) -> Tensor:
        return self @ other

    def mm(self, other: Tensor) -> Tensor:
        """Matrix product of two 2-d tensors."""
        if self.ndim != 2 or np.ndim(_array_of(other)) != 2:
            raise ValueError(f"mm: expected 2-d tensors, got shapes {tuple(self.shape)} and "
                             f"{np.shape(_array_of(other))}")
        return self @ other

    def bmm(self, other: Tensor) -> Tensor:
        """Batched matrix product: (B, n, m) @ (B, m, p) -> (B, n, p)."""
        b = _array_of(other)
        if self.ndim != 3 or np.ndim(b) != 3 or self.shape[0] != np.shape(b)[0]:
            raise ValueError(f"bmm: expected 3-d tensors with one batch size, got shapes "
                             f"{tuple(self.shape)} and {np.shape(b)}")
        return self @ other

    def dot(self, other: Tensor) -> Tensor:
        if self.ndim != 1 or np.ndim(_array_of(other)) != 1:
            raise ValueError("dot: expected two 1-d tensors")
        return self @ other

    # -- in-place ops (PyTorch's rules, see _inplace) ---------------------------------------
    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace("add_", lambda x: x + other, other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace("sub_", lambda x: x - other, other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace("mul_", lambda x: x * other, other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace("div_", lambda x: x / other, other)

    def __ipow__(self, other: Any) -> Tensor:
        return self._inplace("pow_", lambda x: x**other, other)

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace("add_", lambda x: x.add(other, alpha=alpha), other)

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._inplace("sub_", lambda x: x.sub(other, alpha=alpha), other)

    def mul_(self, other: Any) -> Tensor:
        return self._inplace("mul_", lambda x: x * other, other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace("div_", lambda x: x / other, other)

    def pow_(self, exponent: Any) -> Tensor:
        return self._inplace("pow_", lambda x: x**exponent, exponent)

    def neg_(self) -> Tensor:
        return self._inplace("neg_", lambda x: -x)

    def abs_(self) -> Tensor:
        return self._inplace("abs_", lambda x: x.abs())

    def exp_(self) -> Tensor:
        return self._inplace("exp_", lambda x: x.exp())

    def sqrt_(self) -> Tensor:
        return self._inplace("sqrt_", lambda x: x.sqrt())

    def reciprocal_(self) -> Tensor:
        return self._inplace("reciprocal_", lambda x: x.reciprocal())

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self._inplace("clamp_", lambda x: x.clamp(min, max), min, max)

    clip_ = clamp_

    def relu_(self) -> Tensor:
        return self._inplace("relu_", lambda x: x.relu())

    def sigmoid_(self) -> Tensor:
        return self._inplace("sigmoid_", lambda x: x.sigmoid())

    def tanh_(self) -> Tensor:
        return self._inplace("tanh_", lambda x: x.tanh())

    def addcmul_(self, t1: Any, t2: Any, value: Any = 1) -> Tensor:
        return self._inplace("addcmul_", lambda x: x + value * t1 * t2, t1, t2)

    def addcdiv_(self, t1: Any, t2: Any, value: Any = 1) -> Tensor:
        return self._inplace("addcdiv_", lambda x: x + value * t1 / t2, t1, t2)

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        self._check_leaf_inplace("fill_")
        return self._overwrite("fill_", lambda out: out.fill(_array_of(value)))

    def copy_(self, src: Any, non_blocking: bool = False) -> Tensor:
        """Copy src's values (broadcast to this shape, cast to this dtype) into this tensor."""
        if isinstance(src, Tensor) and src._requires_grad and graph.is_grad_enabled():
            return self._inplace(
                "copy_", lambda x: _expand(src, shape=self.shape).astype(self.dtype)
                + 0 * x, src)
        self._check_leaf_inplace("copy_")
        array = _array_of(src)
        try:
            np.broadcast_to(array, self.data.shape)
        except ValueError as e:
            raise RuntimeError(f"copy_: source of shape {np.shape(array)} cannot be broadcast "
                               f"to this tensor's shape {tuple(self.shape)}") from e
        return self._overwrite("copy_", lambda out: np.copyto(out, array, casting="unsafe"))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        from minidl.random import generator

        self._check_leaf_inplace("uniform_")
        return self._overwrite(
            "uniform_", lambda out: np.copyto(out, generator().uniform(a, b, out.shape),
                                              casting="unsafe"))

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        from minidl.random import generator

        self._check_leaf_inplace("normal_")
        return self._overwrite(
            "normal_", lambda out: np.copyto(out, generator().normal(mean, std, out.shape),
                                             casting="unsafe"))

    def masked_fill_(self, mask: Any, value: Any) -> Tensor:
        cond = _condition("masked_fill_", mask, allow_uint8=False)
        return self._inplace("masked_fill_", lambda x: where(cond, value, x), value)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """value where mask, in this tensor's dtype (an integer tensor filled with 2.7 holds
        2, as in PyTorch)."""
        if isinstance(value, Tensor):
            value = value if value.dtype == self.dtype else value.astype(self.dtype)
        else:
            value = Tensor._wrap(np.asarray(value).astype(self.dtype), False)
        return where(_condition("masked_fill_", mask, allow_uint8=False), value, self)

    def detach_(self) -> Tensor:
        self._ctx = None
        self._requires_grad = False
        return self

    def _check_leaf_inplace(self, name: str) -> None:
        if self._requires_grad and self._ctx is None and graph.is_grad_enabled():
            raise RuntimeError(
                f"{name}: a leaf tensor that requires grad is being used in an in-place "
                "operation; do it under minidl.no_grad() (e.g. parameter updates) or on "
                "tensor.detach()"
            )

    def _check_view_inplace(self, name: str) -> None:
        """In-place writes into a view (t[0], t.view(-1)) of a tensor recorded in a graph:
        PyTorch rewrites the base's history (CopySlices); minidl's graph would not see the
        write, so the base's gradient would silently ignore it."""
        ctx = self._ctx
        if ctx is not None and self.data.base is not None and any(
                isinstance(p, Tensor) and np.may_share_memory(self.data, p.data)
                for p in ctx.parents):
            raise RuntimeError(
                f"{name}: this tensor is a view (the output of {ctx.fn.display_name()}) of a "
                "tensor recorded in a graph, and minidl's autograd does not carry in-place "
                "writes through views to their base; use the out-of-place op "
                "(y = torch.cat(...), y * mask, torch.where(...)) or write under no_grad()"
            )

    def _overwrite(self, name: str, write) -> Tensor:
        """Write values that do not depend on the graph (fill, copy, random) into self."""
        if self._ctx is not None and graph.is_grad_enabled():
            self._check_view_inplace(name)
            # The old history no longer produced these values: cut it, as PyTorch does for a
            # non-leaf overwritten by a constant.
            self._ctx = None
            self._requires_grad = False
        write(self.data)
        versions.bump(self.data)
        return self

    def _inplace(self, name: str, compute, *operands: Any) -> Tensor:
        """Write compute(self) into self's buffer, keeping PyTorch's rules.

        In-place on a leaf that requires grad while recording raises. When the result is
        recorded, the op is applied to a copy of the old value (which backward may need) and
        this tensor takes over the new node; consumers recorded before keep the old value's
        history (Context.rebased_from). The buffer's version goes up, so a backward that
        needs the overwritten value raises instead of using the new one.
        """
        self._check_leaf_inplace(name)
        record = graph.is_grad_enabled() and (self._requires_grad or any(
            isinstance(o, Tensor) and o._requires_grad for o in operands))
        if record and graph.state.tracer is not None:
            raise RuntimeError(
                f"{name}: in-place ops on tensors that require grad cannot be traced by "
                "minidl.compile; use the out-of-place op"
            )
        if record:
            self._check_view_inplace(name)
            old = Tensor._wrap(self.data.copy(), self._requires_grad)
            old._ctx = self._ctx
            graph.new_inplace_epoch()  # earlier consumers of self keep the node of `old`
            out = compute(old)
        else:
            with graph.no_grad():
                out = compute(self)
        self._check_inplace_result(name, out)
        np.copyto(self.data, out.data, casting="same_kind")
        versions.bump(self.data)
        if out._ctx is not None:
            out._ctx.rebased_from = old
            self._ctx = out._ctx
            self._requires_grad = True
        return self

    def _check_inplace_result(self, name: str, out: Tensor) -> None:
        if out.data.shape != self.data.shape:
            raise RuntimeError(
                f"{name}: the result has shape {tuple(out.shape)}, which does not match this "
                f"tensor's shape {tuple(self.shape)} (in-place ops do not broadcast self)"
            )
        if not np.can_cast(out.dtype, self.dtype, casting="same_kind"):
            raise RuntimeError(
                f"{name}: result type {out.dtype} can't be cast to the desired output type "
                f"{self.dtype}"
            )

    def _inplace_without_grad(self, name: str, compute) -> Tensor:
        """Write compute(self), a result without gradient (floor, a comparison, a bitwise
        op), into self's buffer: as _overwrite, a recorded history is cut (minidl gives these
        results no gradient where PyTorch's is zero); a leaf that requires grad raises while
        recording."""
        self._check_leaf_inplace(name)
        with graph.no_grad():
            out = compute(self)
        self._check_inplace_result(name, out)
        return self._overwrite(name, lambda data: np.copyto(data, out.data, casting="same_kind"))

    @property
    def _version(self) -> int:
        """How many in-place ops have written this tensor's buffer (PyTorch's _version)."""
        return versions.version(self.data)


class BackwardNode:
    """What `tensor.grad_fn` returns: the graph node that produced the tensor, named as
    PyTorch names it (`MulBackward0`), with `next_functions` leading to its inputs' nodes
    (an AccumulateGrad for a leaf that requires grad, None otherwise)."""

    __slots__ = ("_ctx", "variable")

    def __init__(self, ctx: Any, variable: Tensor | None = None) -> None:
        self._ctx = ctx
        self.variable = variable

    def name(self) -> str:
        # PyTorch's names, the leaf node's with its C++ namespace.
        if self._ctx is None:
            return "torch::autograd::AccumulateGrad"
        return self._ctx.fn.backward_name()

    @property
    def next_functions(self) -> tuple:
        if self._ctx is None:
            return ()
        out = []
        for p in self._ctx.parents:
            if isinstance(p, Tensor) and p._ctx is not None:
                out.append((BackwardNode(p._ctx), 0))
            elif isinstance(p, Tensor) and p._requires_grad:
                out.append((BackwardNode(None, p), 0))
            else:
                out.append((None, 0))
        return tuple(out)

    def __getattr__(self, name: str) -> Any:
        # The underlying Context's fields (fn, saved_tensors, ...) for code that inspects them.
        return getattr(object.__getattribute__(self, "_ctx"), name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackwardNode) and other._ctx is self._ctx and (
            other.variable is self.variable)

    def __hash__(self) -> int:
        return hash((id(self._ctx), id(self.variable)))

    def __repr__(self) -> str:
        return f"<{self.name()} object>"


_TYPE_NAMES = {
    np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor",
    np.dtype(np.int64): "LongTensor", np.dtype(np.int32): "IntTensor",
    np.dtype(np.int16): "ShortTensor", np.dtype(np.int8): "CharTensor",
    np.dtype(np.uint8): "ByteTensor", np.dtype(np.bool_): "BoolTensor",
}


def _array_of(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _operand_array(x: Any) -> Any:
    """An operand as promotion sees it: a tensor's array, an ndarray, or a scalar."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, (bool, int, float, np.generic)):
        return x
    return np.asarray(x)


def _promoted(a: Any, b: Any, true_divide: bool = False) -> tuple[Any, Any]:
    """Both operands cast to PyTorch's result dtype (tensors by a recorded Cast, arrays and
    scalars directly)."""
    # Fast paths for the common cases: one dtype (integer true division aside), or a float
    # tensor with a Python number (NumPy's weak scalars keep the tensor's dtype).
    a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_is and b_is:
        if a.data.dtype == b.data.dtype and (not true_divide or a.data.dtype.kind == "f"):
            return a, b
    elif a_is and type(b) in (float, int):
        if a.data.dtype.kind == "f":
            return a, b
    elif b_is and type(a) in (float, int) and b.data.dtype.kind == "f":
        return a, b
    aa, ba = _operand_array(a), _operand_array(b)
    dt = result_type(aa, ba, true_divide)
    return _cast_operand(a, aa, dt), _cast_operand(b, ba, dt)


def _cast_operand(x: Any, array: Any, dt: np.dtype) -> Any:
    if isinstance(x, Tensor):
        return x if x.data.dtype == dt else x.astype(dt)
    if isinstance(array, np.ndarray):
        return array if array.dtype == dt else array.astype(dt)
    if isinstance(array, np.generic) or np.dtype(type(array)).kind != dt.kind:
        return dt.type(array)
    return array


def _is_advanced(index: Any) -> bool:
    """An index NumPy treats as advanced (a mask or integer array): PyTorch's index_put."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, np.ndarray) for part in parts)  # _plain_index made lists arrays


def _check_bool_sub(a: Any, b: Any) -> None:
    """PyTorch refuses `-` with a bool tensor operand (its result would be a sign flip of a
    mask, not the logical operation a caller usually means)."""
    bools = [isinstance(x, Tensor) and x.data.dtype == np.bool_ for x in (a, b)]
    if all(bools):
        raise RuntimeError("sub: Subtraction, the `-` operator, with two bool tensors is not "
                           "supported. Use the `^` or `logical_xor()` operator instead.")
    if any(bools):
        raise RuntimeError("sub: Subtraction, the `-` operator, with a bool tensor is not "
                           "supported. If you are trying to invert a mask, use the `~` or "
                           "`logical_not()` operator instead.")


def _integer_divisor_checked(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    """The promoted operands' arrays; an integer divisor holding 0 raises as in PyTorch
    (NumPy would return 0 with a warning). Float division by zero stays inf/nan."""
    a, b = _array_of(a), _array_of(b)
    dtype = np.result_type(a, b)
    if dtype.kind in "iub" and not np.all(b):
        raise RuntimeError(f"{op}: ZeroDivisionError (integer division by zero, dtype {dtype})")
    return a, b


def _check_floating(op: str, x: Tensor, error: type[Exception]) -> None:
    """Ops PyTorch defines for floating dtypes only raise its exception type for the others
    (rather than computing in the default float dtype)."""
    if x.data.dtype.kind != "f":
        raise error(f"{op}: only floating point dtypes are supported, got {x.data.dtype}")


def _floating(x: Tensor) -> Tensor:
    """Integer and bool tensors become the default float dtype (as in torch.exp etc.)."""
    return x if x.dtype.kind == "f" else x.astype(get_default_dtype())


def _dim_index(op: str, dim: Any, ndim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(
            f"{op}: dimension out of range (expected to be in range of "
            f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})"
        )
    return int(dim) % max(ndim, 1)


def _dim_args(op: str, dim: Any, keepdim: bool, aliases: dict) -> tuple[Any, bool]:
    """PyTorch's dim/keepdim, accepting NumPy's axis/keepdims as aliases."""
    for key in aliases:
        if key not in ("axis", "keepdims"):
            raise TypeError(f"{op}() got an unexpected keyword argument {key!r}")
    if "axis" in aliases:
        if dim is not None:
            raise TypeError(f"{op}: give dim or axis, not both")
        dim = aliases["axis"]
    if "keepdims" in aliases:
        keepdim = aliases["keepdims"]
    if isinstance(dim, list):
        dim = tuple(dim)
    if dim == () and op in _EMPTY_DIM_REDUCES_ALL:
        dim = None
    return dim, bool(keepdim)


# Reductions for which PyTorch reads dim=() (or []) as every dim; any/all reduce none.
_EMPTY_DIM_REDUCES_ALL = frozenset({"sum", "mean", "var", "std", "amax", "amin"})


def _arg_extreme(x: Tensor, pick, dim: Any, keepdim: bool) -> Tensor:
    if dim is None:
        index = pick(x.data)
        if keepdim:
            index = np.asarray(index).reshape((1,) * x.ndim)
    else:
        index = pick(x.data, axis=_dim_index("argmax", dim, x.ndim), keepdims=keepdim)
    return Tensor._wrap(np.asarray(index, dtype=np.int64), False)


def _is_device_like(x: Any) -> bool:
    from minidl.device import device

    return isinstance(x, device) or isinstance(x, str) and x.split(":")[0] in (
        "cpu", "cuda", "mps", "xpu", "meta", "hip", "xla")


graph.register_value_type(Tensor)


def _tensor_operand(x: Any) -> Any:
    return x if isinstance(x, Tensor) else Tensor(x)


def _plain_index(index: Any) -> Any:
    """Tensors inside an index become copies of their arrays (integer and boolean indices:
    the gradient indexes with them later, and the caller may change its own meanwhile);
    uint8 ones are masks, as PyTorch (still) reads them."""
    if isinstance(index, tuple):
        return tuple(_plain_item(i) for i in index)
    return _plain_item(index)


def _plain_item(item: Any) -> Any:
    if isinstance(item, Tensor):
        item = item.data
    if isinstance(item, (list, np.ndarray)):
        item = np.array(item)
        if item.dtype == np.uint8:
            item = item.astype(bool)
    return item


def _along(axis: int, item: Any) -> tuple:
    """An index applying item to dim `axis` and taking every other dim before it whole."""
    return (slice(None),) * axis + (item,)


def _is_int_item(item: Any) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, bool)


def _split_int_selects(index: Any) -> tuple[tuple, tuple] | None:
    """PyTorch applies the integers of an index that also holds arrays first, as selections
    (x[0, :, [1, 2]] of a (2, 3, 4) tensor is x[0][:, [1, 2]], shape (3, 2)); NumPy counts
    them among the advanced indices (shape (2, 3) there). (ints-only index, rest), or None
    when the index mixes no integers with arrays."""
    if not isinstance(index, tuple) or not any(_is_int_item(i) for i in index) or not any(
            isinstance(i, np.ndarray) and i.ndim > 0 for i in index):
        return None
    first: list = []
    for item in index:
        if item is None:
            continue
        if _is_int_item(item) or item is Ellipsis:
            first.append(item)
        elif isinstance(item, np.ndarray) and item.dtype == bool:
            first.extend([slice(None)] * item.ndim)  # a mask spans its own number of dims
        else:
            first.append(slice(None))
    return tuple(first), tuple(i for i in index if not _is_int_item(i))


# -- construction ---------------------------------------------------------------------------
def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
           pin_memory: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (lists, scalars, arrays, tensors).

    Python floats become the default float dtype (float32), Python ints int64; numpy arrays
    keep their dtype.
    """
    check_device("tensor", device)
    src = data.data if isinstance(data, Tensor) else data
    arr = _as_array(src, dtype, "tensor")
    if arr is src or isinstance(src, np.ndarray) and np.shares_memory(arr, src):
        arr = arr.copy()
    return Tensor._wrap(arr, False).requires_grad_(requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap `array` without copying when it is C-contiguous and of a supported dtype."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    check_dtype("from_numpy", array.dtype)
    return Tensor._wrap(contiguous(array), False)


def _shape_arg(shape: Sequence) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


def _size_arg(op: str, shape: tuple, size: Any) -> tuple:
    """Factories take sizes positionally (zeros(2, 3), zeros((2, 3))) or as size=."""
    if size is not None:
        if shape:
            raise TypeError(f"{op}: give the sizes positionally or as size=, not both")
        shape = (size,) if isinstance(size, (int, np.integer)) else (tuple(size),)
    return _shape_arg(shape)


def _factory(op: str, array: np.ndarray, requires_grad: bool, device: Any = None) -> Tensor:
    check_device(op, device)
    return Tensor._wrap(array, False).requires_grad_(requires_grad)


def _float_dtype(op: str, dtype: Any) -> np.dtype:
    return get_default_dtype() if dtype is None else check_dtype(op, dtype)


def zeros(*shape: Any, size: Any = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    arr = np.zeros(_size_arg("zeros", shape, size), _float_dtype("zeros", dtype))
    return _factory("zeros", arr, requires_grad, device)


def ones(*shape: Any, size: Any = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    arr = np.ones(_size_arg("ones", shape, size), _float_dtype("ones", dtype))
    return _factory("ones", arr, requires_grad, device)


def empty(*shape: Any, size: Any = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    arr = np.empty(_size_arg("empty", shape, size), _float_dtype("empty", dtype))
    return _factory("empty", arr, requires_grad, device)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of `size` filled with fill_value; the dtype is inferred from fill_value (bool,
    int64 or the default float dtype) unless given, as in PyTorch."""
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64 if isinstance(
            fill_value, (int, np.integer)) else get_default_dtype()
    arr = np.full(shape, _array_of(fill_value), check_dtype("full", dtype))
    return _factory("full", arr, requires_grad, device)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Like numpy.arange; integer arguments give int64, any float argument the default float
    dtype."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if ints else get_default_dtype()
    arr = np.arange(start, end, step, dtype=check_dtype("arange", dtype))
    return _factory("arange", arr, requires_grad, device)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    arr = np.linspace(start, end, steps, dtype=_float_dtype("linspace", dtype))
    return _factory("linspace", arr, requires_grad, device)


def _inclusive_range(start: float = 0, end: float | None = None, step: float = 1,
                     dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """torch.range (minidl.range; named apart here so as not to shadow the builtin), deprecated
    in PyTorch for arange: start, start + step, ... up to and including end, in the default
    float dtype; warns UserWarning as PyTorch does."""
    warnings.warn("torch.range is deprecated and will be removed in a future release because "
                  "its behavior is inconsistent with Python's range builtin. Instead, use "
                  "torch.arange, which produces values in [start, end).", UserWarning,
                  stacklevel=2)
    if end is None:
        start, end = 0, start
    if step == 0 or (end - start) * step < 0:
        raise RuntimeError(f"range: upper bound and larger bound inconsistent with step sign "
                           f"(start {start}, end {end}, step {step})")
    count = int(np.floor((end - start) / step)) + 1
    dt = _float_dtype("range", dtype) if dtype is None or np.dtype(
        check_dtype("range", dtype)).kind == "f" else check_dtype("range", dtype)
    arr = (start + step * np.arange(count, dtype=np.float64)).astype(dt)
    return _factory("range", arr, requires_grad, device)


def logspace(start: float, end: float, steps: int, base: float = 10.0, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """base ** linspace(start, end, steps), in the default float dtype unless given."""
    dt = _float_dtype("logspace", dtype)
    arr = np.power(float(base), np.linspace(start, end, steps, dtype=np.float64)).astype(dt)
    return _factory("logspace", arr, requires_grad, device)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    return _factory("eye", np.eye(n, m, dtype=_float_dtype("eye", dtype)), requires_grad, device)


def rand(*shape: Any, size: Any = None, dtype: Any = None, device: Any = None,
         generator: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1), drawn from minidl's seeded generator (or `generator`)."""
    dt = _float_dtype("rand", dtype)
    arr = numpy_rng(generator).random(_size_arg("rand", shape, size), dtype=dt)
    return _factory("rand", arr, requires_grad, device)


def randn(*shape: Any, size: Any = None, dtype: Any = None, device: Any = None,
          generator: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal, drawn from minidl's seeded generator (or `generator`)."""
    dt = _float_dtype("randn", dtype)
    arr = numpy_rng(generator).standard_normal(_size_arg("randn", shape, size), dtype=dt)
    return _factory("randn", arr, requires_grad, device)


def randint(*args: Any, size: Any = None, dtype: Any = np.int64, device: Any = None,
            generator: Any = None, requires_grad: bool = False) -> Tensor:
    """randint(high, size) or randint(low, high, size): ints in [low, high) (low defaults to
    0), int64 unless dtype is given."""
    if size is None and args and not isinstance(args[-1], (int, np.integer)):
        *args, size = args
    if len(args) == 1:
        low, high = 0, args[0]
    elif len(args) == 2:
        low, high = args
    else:
        raise TypeError("randint: expected randint(high, size) or randint(low, high, size)")
    if size is None:
        raise TypeError("randint: missing the size argument")
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if requires_grad:
        raise RuntimeError("randint: integer tensors cannot require grad")
    arr = numpy_rng(generator).integers(low, high, size=shape, dtype=check_dtype("randint", dtype))
    return _factory("randint", arr, False, device)


def randperm(n: int, dtype: Any = np.int64, device: Any = None, generator: Any = None,
             requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    arr = numpy_rng(generator).permutation(int(n)).astype(check_dtype("randperm", dtype))
    return _factory("randperm", arr, requires_grad, device)


def zeros_like(t: Any, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return zeros(np.shape(t), dtype=dtype or _dtype_of(t), device=device,
                 requires_grad=requires_grad)


def ones_like(t: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return ones(np.shape(t), dtype=dtype or _dtype_of(t), device=device,
                requires_grad=requires_grad)


def empty_like(t: Any, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return empty(np.shape(t), dtype=dtype or _dtype_of(t), device=device,
                 requires_grad=requires_grad)


def full_like(t: Any, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return full(np.shape(t), fill_value, dtype=dtype or _dtype_of(t), device=device,
                requires_grad=requires_grad)


def rand_like(t: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return rand(np.shape(t), dtype=dtype or _dtype_of(t), device=device,
                requires_grad=requires_grad)


def randn_like(t: Any, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return randn(np.shape(t), dtype=dtype or _dtype_of(t), device=device,
                 requires_grad=requires_grad)


def _dtype_of(t: Any) -> np.dtype:
    return t.dtype if isinstance(t, (Tensor, np.ndarray)) else get_default_dtype()


# -- functions over several tensors --------------------------------------------------------
def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def _joined(op: str, tensors: Sequence[Any]) -> list[Tensor]:
    """The tensors to cat/stack, cast to their promoted dtype."""
    ts = [_as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    dt = ts[0].dtype
    for t in ts[1:]:
        dt = promote_types(dt, t.dtype)
    return [t if t.dtype == dt else t.astype(dt) for t in ts]


def concatenate(tensors: Sequence[Any], dim: int | None = None, **aliases: Any) -> Tensor:
    """Join tensors along an existing dim, 0 by default (torch.cat; axis= is accepted too)."""
    dim, _ = _dim_args("cat", dim, False, aliases)
    dim = 0 if dim is None else dim
    return _cat(*_joined("cat", tensors), axis=dim)


cat = concatenate


def hstack(tensors: Sequence[Any]) -> Tensor:
    """Join along dim 1 (dim 0 for 1-d tensors)."""
    ts = [_as_tensor(t) for t in tensors]
    return concatenate(ts, 0 if ts and ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Any]) -> Tensor:
    """Join along dim 0, 1-d tensors as rows."""
    ts = [_as_tensor(t) for t in tensors]
    return concatenate([t.reshape(1, -1) if t.ndim <= 1 else t for t in ts], 0)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """data itself when it is a tensor of that dtype; a C-contiguous NumPy array of that
    dtype shared, not copied (as torch.as_tensor); anything else converted as tensor()."""
    check_device("as_tensor", device)
    want = None if dtype is None else np.dtype(check_dtype("as_tensor", dtype))
    if isinstance(data, Tensor) and want in (None, data.dtype):
        return data
    if isinstance(data, np.ndarray) and data.flags.c_contiguous and want in (None, data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype)


def stack(tensors: Sequence[Any], dim: int | None = None, **aliases: Any) -> Tensor:
    """Join tensors along a new dim, 0 by default (axis= is accepted too)."""
    dim, _ = _dim_args("stack", dim, False, aliases)
    dim = 0 if dim is None else dim
    return _stack(*_joined("stack", tensors), axis=dim)


def _condition(op: str, condition: Any, allow_uint8: bool) -> np.ndarray:
    """A condition or mask as a bool array; other dtypes raise as in PyTorch (which still
    takes uint8 conditions in where, deprecated)."""
    cond = np.asarray(_array_of(condition))
    if cond.dtype == np.uint8 and allow_uint8:
        return cond.astype(bool)
    if cond.dtype != np.bool_:
        if allow_uint8:
            raise RuntimeError(f"{op} expected condition to be a boolean tensor, but got a "
                               f"tensor with dtype {cond.dtype}")
        raise RuntimeError(f"{op} only supports boolean masks, but got mask with dtype "
                           f"{cond.dtype}")
    return cond


def where(condition: Any, a: Any, b: Any) -> Tensor:
    if not isinstance(a, (Tensor, np.ndarray)) and not isinstance(b, (Tensor, np.ndarray)):
        a, b = tensor(a), tensor(b)  # two Python numbers: PyTorch's default dtypes
    return _where(_condition("where", condition, allow_uint8=True), *_promoted(a, b))


def maximum(a: Any, b: Any) -> Tensor:
    return _maximum(*_promoted(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    return _minimum(*_promoted(a, b))


def matmul(a: Any, b: Any) -> Tensor:
    return _matmul(_as_tensor(a), _as_tensor(b))


def pad(x: Tensor, pad_width: Any, value: float = 0.0) -> Tensor:
    """Constant padding with numpy.pad's pad_width: ((before, after), ...) per axis."""
    return _pad(x, pad_width=pad_width, value=value)
