"""Tensor: a C-contiguous NumPy array, its gradient, and the graph node that produced it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl import graph
from minidl.dtypes import DEFAULT_DTYPE, FLOAT_DTYPES, check_dtype
from minidl.ops import contiguous
from minidl.ops import elementwise as ew
from minidl.ops import matmul as mm
from minidl.ops import reduce as rd
from minidl.ops import shape as sh


def _as_array(data: Any, dtype: Any, op: str) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = check_dtype(op, dtype)
    if isinstance(data, np.ndarray) or np.isscalar(data) and isinstance(data, np.generic):
        arr = np.asarray(data, dtype=dtype)
    else:
        arr = np.asarray(data, dtype=dtype)
        # Python floats become float32 (the engine's default), as in PyTorch.
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(DEFAULT_DTYPE)
    check_dtype(op, arr.dtype)
    return contiguous(arr)


class Tensor:
    """An n-d array that can record the ops applied to it and carry a gradient.

    `data` is always a C-contiguous numpy array of a supported dtype. Only float32 and float64
    tensors can require a gradient. Tensor implements the value protocol minidl.graph walks.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_ctx", "_retains_grad", "name",
                 "_grad_hooks", "_post_hooks", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        self.data = _as_array(data, dtype, "Tensor")
        self.grad: Tensor | None = None
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
        t = cls.__new__(cls)
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if not array.flags.c_contiguous:
            array = contiguous(array)
        t.data = array
        t.grad = None
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

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> graph.Context | None:
        """The node that produced this tensor (None for leaves and untracked results)."""
        return self._ctx

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
        if self._post_hooks is None:
            self._post_hooks = {}
        handle = graph.RemovableHandle(self._post_hooks)
        self._post_hooks[handle.id] = hook
        return handle

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into every leaf that requires grad.

        grad defaults to 1 for a one-element tensor; otherwise give one of this shape. Leaf
        gradients add up across calls (zero them between steps); the graph's saved buffers are
        freed afterwards unless retain_graph=True, and a second backward through a freed graph
        raises.
        """
        graph.run_backward(self, grad, retain_graph)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, False)

    def zero_grad(self) -> None:
        self.grad = None

    # -- array protocol and attributes ----------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        """Number of elements (as numpy's ndarray.size)."""
        return self.data.size

    def numel(self) -> int:
        return self.data.size

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
        body = np.array2string(self.data, separator=", ", precision=4, threshold=50)
        extra = f", dtype={self.dtype}" if self.dtype != DEFAULT_DTYPE else ""
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.fn.__name__}"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # -- arithmetic -----------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return ew.Add.apply(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ew.Add.apply(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ew.Sub.apply(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ew.Sub.apply(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ew.Mul.apply(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ew.Mul.apply(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ew.Div.apply(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ew.Div.apply(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return ew.Pow.apply(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return ew.Pow.apply(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return mm.MatMul.apply(self, _tensor_operand(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return mm.MatMul.apply(_tensor_operand(other), self)

    def __neg__(self) -> Tensor:
        return ew.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return ew.Abs.apply(self)

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
        return ew.Exp.apply(self)

    def log(self) -> Tensor:
        return ew.Log.apply(self)

    def sqrt(self) -> Tensor:
        return ew.Sqrt.apply(self)

    def abs(self) -> Tensor:
        return ew.Abs.apply(self)

    def clip(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch names)
        return ew.Clip.apply(self, low=min, high=max)

    clamp = clip

    def maximum(self, other: Any) -> Tensor:
        return ew.Maximum.apply(self, other)

    def minimum(self, other: Any) -> Tensor:
        return ew.Minimum.apply(self, other)

    # Activations live in minidl.ops.activation (imported late: it imports this module).
    def relu(self) -> Tensor:
        from minidl.ops.activation import ReLU

        return ReLU.apply(self)

    def sigmoid(self) -> Tensor:
        from minidl.ops.activation import Sigmoid

        return Sigmoid.apply(self)

    def tanh(self) -> Tensor:
        from minidl.ops.activation import Tanh

        return Tanh.apply(self)

    def softmax(self, dim: int = -1) -> Tensor:
        from minidl.ops.activation import Softmax

        return Softmax.apply(self, dim=dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        from minidl.ops.activation import LogSoftmax

        return LogSoftmax.apply(self, dim=dim)

    def astype(self, dtype: Any) -> Tensor:
        dt = check_dtype("astype", dtype)
        if dt == self.dtype:
            return self
        if self._requires_grad and dt not in FLOAT_DTYPES:
            return Tensor._wrap(self.data.astype(dt), False)
        return ew.Cast.apply(self, dtype=dt)

    to = astype

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def long(self) -> Tensor:
        return self.astype(np.int64)

    # -- reductions -----------------------------------------------------------------------
    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return rd.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return rd.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return rd.Max.apply(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return rd.Min.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: int | None = None) -> Tensor:
        return Tensor._wrap(np.asarray(self.data.argmax(axis=axis)), False)

    def argmin(self, axis: int | None = None) -> Tensor:
        return Tensor._wrap(np.asarray(self.data.argmin(axis=axis)), False)

    # -- shape ----------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return sh.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim (PyTorch's semantics)."""
        if self.ndim == 0:
            return self.reshape(1)
        start = start_dim % self.ndim
        end = end_dim % self.ndim
        s = self.shape
        return self.reshape(s[:start] + (-1,) + s[end + 1 :])

    def permute(self, *axes: Any) -> Tensor:
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return sh.Permute.apply(self, axes=axes)

    def transpose(self, dim0: int | None = None, dim1: int | None = None) -> Tensor:
        """Swap two axes (PyTorch); with no arguments reverse all axes (NumPy)."""
        if dim0 is None and dim1 is None:
            return self.permute(tuple(range(self.ndim))[::-1])
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(axes)

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def squeeze(self, axis: int | None = None) -> Tensor:
        if axis is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axis %= self.ndim
        if self.shape[axis] != 1:
            return self
        return self.reshape(self.shape[:axis] + self.shape[axis + 1 :])

    def unsqueeze(self, axis: int) -> Tensor:
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def __getitem__(self, index: Any) -> Tensor:
        return sh.Index.apply(self, index=_plain_index(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        """In-place assignment, for tensors outside any graph (data preparation, or
        parameters under no_grad)."""
        if self._ctx is not None or (self._requires_grad and graph.is_grad_enabled()):
            raise RuntimeError(
                "setitem: assigning into a tensor that is recorded in a graph would corrupt its "
                "gradients; use minidl.where(), or assign under minidl.no_grad() / into detach()"
            )
        self.data[_plain_index(index)] = value.data if isinstance(value, Tensor) else value

    def pad(self, pad_width: Any, value: float = 0.0) -> Tensor:
        return sh.Pad.apply(self, pad_width=pad_width, value=value)

    def matmul(self, other: Any) -> Tensor:
        return self @ other


graph.register_value_type(Tensor)


def _tensor_operand(x: Any) -> Any:
    return x if isinstance(x, Tensor) else Tensor(x)


def _plain_index(index: Any) -> Any:
    """Tensors inside an index become their arrays (integer and boolean indices)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


# -- construction ---------------------------------------------------------------------------
def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (lists, scalars, arrays, tensors).

    Python floats become float32, Python ints int64; numpy arrays keep their dtype.
    """
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


def _factory(op: str, array: np.ndarray, requires_grad: bool) -> Tensor:
    return Tensor._wrap(array, False).requires_grad_(requires_grad)


def _float_dtype(op: str, dtype: Any) -> np.dtype:
    return DEFAULT_DTYPE if dtype is None else check_dtype(op, dtype)


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _factory("zeros", np.zeros(_shape_arg(shape), _float_dtype("zeros", dtype)), requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _factory("ones", np.ones(_shape_arg(shape), _float_dtype("ones", dtype)), requires_grad)


def empty(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _factory("empty", np.empty(_shape_arg(shape), _float_dtype("empty", dtype)), requires_grad)


def full(shape: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    arr = np.full(shape, fill_value, _float_dtype("full", dtype))
    return _factory("full", arr, requires_grad)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Like numpy.arange; integer arguments give int64, any float argument float32."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        dtype = np.int64 if ints else DEFAULT_DTYPE
    arr = np.arange(start, stop, step, dtype=check_dtype("arange", dtype))
    return _factory("arange", arr, requires_grad)


def linspace(start: float, stop: float, num: int, dtype: Any = None,
             requires_grad: bool = False) -> Tensor:
    arr = np.linspace(start, stop, num, dtype=_float_dtype("linspace", dtype))
    return _factory("linspace", arr, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _factory("eye", np.eye(n, m, dtype=_float_dtype("eye", dtype)), requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1), drawn from minidl's seeded generator."""
    from minidl.random import generator

    dt = _float_dtype("rand", dtype)
    return _factory("rand", generator().random(_shape_arg(shape), dtype=dt), requires_grad)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal, drawn from minidl's seeded generator."""
    from minidl.random import generator

    dt = _float_dtype("randn", dtype)
    arr = generator().standard_normal(_shape_arg(shape), dtype=dt)
    return _factory("randn", arr, requires_grad)


def randint(low: int, high: int, shape: Any, dtype: Any = np.int64) -> Tensor:
    from minidl.random import generator

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    arr = generator().integers(low, high, size=shape, dtype=check_dtype("randint", dtype))
    return Tensor._wrap(arr, False)


def zeros_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return zeros(np.shape(t), dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def ones_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return ones(np.shape(t), dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def empty_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return empty(np.shape(t), dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def full_like(t: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return full(np.shape(t), fill_value, dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def rand_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return rand(np.shape(t), dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def randn_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return randn(np.shape(t), dtype=dtype or _dtype_of(t), requires_grad=requires_grad)


def _dtype_of(t: Any) -> np.dtype:
    return t.dtype if isinstance(t, (Tensor, np.ndarray)) else DEFAULT_DTYPE


# -- functions over several tensors --------------------------------------------------------
def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    return sh.Concatenate.apply(*[_as_tensor(t) for t in tensors], axis=axis)


cat = concatenate


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    return sh.Stack.apply(*[_as_tensor(t) for t in tensors], axis=axis)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    cond = condition.data if isinstance(condition, Tensor) else condition
    return ew.Where.apply(cond, a, b)


def maximum(a: Any, b: Any) -> Tensor:
    return ew.Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    return ew.Minimum.apply(a, b)


def matmul(a: Any, b: Any) -> Tensor:
    return mm.MatMul.apply(_as_tensor(a), _as_tensor(b))


def pad(x: Tensor, pad_width: Any, value: float = 0.0) -> Tensor:
    """Constant padding with numpy.pad's pad_width: ((before, after), ...) per axis."""
    return sh.Pad.apply(x, pad_width=pad_width, value=value)
