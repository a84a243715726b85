"""Gradient checking by central differences, and the public names of the graph machinery."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from minidl import graph
from minidl.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from minidl.graph import Context
from minidl.tensor import Tensor

__all__ = ["Context", "Function", "FunctionCtx", "GradcheckError", "backward", "enable_grad",
           "functional", "gradcheck", "grad", "inference_mode", "is_grad_enabled", "no_grad",
           "set_grad_enabled"]


class FunctionCtx:
    """The `ctx` a user Function's forward and backward share (PyTorch's FunctionCtx)."""

    def __init__(self, needs_input_grad: tuple) -> None:
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Any) -> None:
        self.saved_tensors = tensors

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)

    def mark_non_differentiable(self, *tensors: Any) -> None:
        for t in tensors:
            t.detach_()

    def mark_dirty(self, *tensors: Any) -> None:
        raise NotImplementedError(
            "FunctionCtx.mark_dirty: in-place custom Functions are not supported by minidl; "
            "return a new tensor from forward"
        )


class _UserFunctionNode(graph.Function):
    """The graph node of a user Function call: forward already ran (on Tensors), backward
    hands Tensors to the user's backward and its results back to the graph as arrays."""

    @classmethod
    def backward_name(cls) -> str:
        # A user class is named by its author ("MyOp" stays "MyOpBackward0").
        return f"{cls.__name__}Backward0"

    @staticmethod
    def forward(ctx: Context, *arrays: Any, user: Any, output: np.ndarray) -> np.ndarray:
        ctx.user = user
        # The versions of what the user saved, so an in-place change to them is caught.
        ctx.save_for_backward(*[t.data for t in user.saved_tensors if isinstance(t, Tensor)])
        return output

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> Any:
        user = ctx.user
        grads = ctx.fn.user_function.backward(user, Tensor._wrap(g, False))
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) != len(ctx.parents):
            raise RuntimeError(
                f"function {ctx.fn.__name__}Backward returned an incorrect number of gradients "
                f"(expected {len(ctx.parents)}, got {len(grads)})"
            )
        return tuple(gi.data if isinstance(gi, Tensor) else gi for gi in grads)


class Function:
    """A differentiable function written by the user, as torch.autograd.Function:

        class Exp(Function):
            @staticmethod
            def forward(ctx, x):              # Tensors in, a Tensor out (recording is off)
                y = x.exp()
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad_output):   # one gradient (Tensor or None) per input
                (y,) = ctx.saved_tensors
                return grad_output * y

        y = Exp.apply(x)

    Non-Tensor arguments get None as their gradient. forward returns one Tensor (several
    outputs raise NotImplementedError). minidl's own ops use the array-level
    minidl.graph.Function instead.
    """

    _nodes: dict = {}

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Function subclasses must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("Function subclasses must define backward(ctx, grad)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        if not isinstance(out, Tensor):
            raise NotImplementedError(
                f"{cls.__name__}.forward returned {type(out).__name__}; minidl's autograd "
                "Function supports one Tensor output"
            )
        if not (any(needs) and graph.is_grad_enabled()) or out.dtype.kind != "f":
            return out
        node = cls._nodes.get(cls)
        if node is None:
            node = type(cls.__name__, (_UserFunctionNode,), {"user_function": cls})
            cls._nodes[cls] = node
        return node.apply(*args, user=ctx, output=out.data)


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, grad_variables: Any = None, inputs: Any = None) -> None:
    """Accumulate d(tensors)/d(leaf) into every leaf's .grad (torch.autograd.backward):
    tensors: a Tensor or a sequence; grad_tensors: one per tensor (None for one-element
    tensors). Several roots are swept one after the other over a kept graph, so their
    gradients add up. grad_variables: PyTorch's deprecated name of grad_tensors (warns)."""
    if grad_variables is not None:
        warnings.warn("`grad_variables` is deprecated. Use `grad_tensors` instead.",
                      FutureWarning, stacklevel=2)
        if grad_tensors is not None:
            raise RuntimeError("`grad_tensors` and `grad_variables` (deprecated) arguments both "
                               "passed to `backward()`. Please only use `grad_tensors`.")
        grad_tensors = grad_variables
    tensors = (tensors,) if isinstance(tensors, Tensor) else tuple(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,) * len(tensors) if grad_tensors is None else (grad_tensors,)
    grad_tensors = tuple(grad_tensors)
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(f"grad can be implicitly created only for scalar outputs: got "
                           f"{len(grad_tensors)} gradients for {len(tensors)} tensors")
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        last = i == len(tensors) - 1
        t.backward(g, retain_graph=retain_graph if last else True, create_graph=create_graph,
                   inputs=inputs)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, only_inputs: bool = True, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False) -> tuple:
    """d(outputs)/d(inputs) as a tuple of Tensors, without touching any `.grad`
    (torch.autograd.grad). grad_outputs: one per output (None for one-element outputs).
    An input the outputs do not depend on raises unless allow_unused (then None, or zeros
    with materialize_grads). The graph is kept (retain_graph is accepted); create_graph=True
    (higher-order gradients) raises NotImplementedError. only_inputs: PyTorch's deprecated,
    ignored flag (with its warning)."""
    if not only_inputs:
        warnings.warn("only_inputs argument is deprecated and is ignored now (defaults to "
                      "True). To accumulate gradient for other parts of the graph, please use "
                      "torch.autograd.backward.", FutureWarning, stacklevel=2)
    if create_graph:
        raise NotImplementedError("autograd.grad: create_graph=True (higher-order gradients) "
                                  "is not supported by minidl")
    if is_grads_batched:
        raise NotImplementedError("autograd.grad: is_grads_batched is not supported by minidl")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    single = isinstance(inputs, Tensor)
    inputs = (inputs,) if single else tuple(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,) * len(outputs) if grad_outputs is None else (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"autograd.grad: {len(grad_outputs)} grad_outputs for "
                         f"{len(outputs)} outputs")
    totals: dict[int, np.ndarray] = {}
    for out, g in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError("autograd.grad: element 0 of tensors does not require grad and "
                               "does not have a grad_fn")
        for key, value in graph.gradients(out, g).items():
            totals[key] = value if key not in totals else totals[key] + value
    result = []
    for i, t in enumerate(inputs):
        g = totals.get(id(t))
        if g is None:
            if not allow_unused and not materialize_grads:
                raise RuntimeError(
                    f"autograd.grad: input {i} was not used in the graph; pass "
                    "allow_unused=True to get None for it"
                )
            result.append(Tensor._wrap(np.zeros_like(t.data), False) if materialize_grads
                          else None)
        else:
            result.append(Tensor._wrap(np.array(g, dtype=t.dtype, copy=True), False))
    return tuple(result)


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Compare backward() of `fn(*inputs)` with central differences, in float64.

    A non-scalar output is projected on a fixed random direction r, checking the vector-Jacobian
    product d(sum(r * out))/d(input) for every input that requires grad. Returns True, or raises
    GradcheckError naming the input, the worst element and both values. Inputs must be float64
    (float32 differences are swamped by rounding).
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")

    out = fn(*inputs)
    direction = np.random.default_rng(seed).standard_normal(out.shape)

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * direction))

    for i in checked:
        inputs[i].grad = None
    with enable_grad():
        out = fn(*inputs)
        if not out.requires_grad:
            raise GradcheckError("gradcheck: the output does not depend on any input")
        out.backward(direction.astype(out.dtype))

    for i in checked:
        t = inputs[i]
        analytic = np.zeros_like(t.data) if t.grad is None else t.grad.data.copy()
        numeric = np.zeros_like(t.data)
        flat = t.data.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if error.size and error.max() > 0:
            worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape))
            raise GradcheckError(
                f"gradcheck: input {i} (shape {t.shape}), element {worst}: "
                f"analytic {analytic[worst]:.8g} vs numerical {numeric[worst]:.8g} "
                f"(atol={atol}, rtol={rtol})"
            )
    return True


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Tensor:  # noqa: N802
    """PyTorch's legacy Variable: the tensor itself (a Tensor is a Variable), marked
    requires_grad when asked; arrays become tensors."""
    t = data if isinstance(data, Tensor) else Tensor._wrap(np.asarray(data), False)
    return t.requires_grad_() if requires_grad else t


class _AnomalyCheck:
    """The op observer of anomaly mode (it takes the profiler's slot, graph.state.profiler):
    forward runs as usual; each backward's results are checked for NaN."""

    def __init__(self, check_nan: bool) -> None:
        self.check_nan = check_nan

    def forward(self, fn: Any, ctx: Context, arrays: Any, attrs: dict) -> np.ndarray:
        return fn.forward(ctx, *arrays, **attrs)

    def backward(self, ctx: Context, grad: np.ndarray) -> Any:
        result = ctx.fn.backward(ctx, grad)
        if self.check_nan:
            for i, r in enumerate(result if isinstance(result, tuple) else (result,)):
                if r is not None and r.dtype.kind == "f" and np.isnan(r).any():
                    raise RuntimeError(f"Function '{ctx.fn.backward_name()}' returned nan "
                                       f"values in its {i}th output.")
        return result


def is_anomaly_enabled() -> bool:
    return isinstance(graph.state.profiler, _AnomalyCheck)


class set_detect_anomaly:  # noqa: N801 (PyTorch's name)
    """Anomaly mode on (mode=True) or off for this thread, as a call or a context manager
    (restoring the previous mode on exit): each eager backward then raises RuntimeError
    naming the op whose gradient holds a NaN. Compiled graphs are not checked. It uses the
    profiler's slot, so it cannot be on while minidl.profile() is."""

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self.previous = graph.state.profiler
        if self.previous is not None and not isinstance(self.previous, _AnomalyCheck):
            raise RuntimeError("set_detect_anomaly: minidl.profile() is active in this thread")
        graph.state.profiler = _AnomalyCheck(check_nan) if mode else None

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        graph.state.profiler = self.previous


class detect_anomaly(set_detect_anomaly):  # noqa: N801 (PyTorch's name)
    """A context manager (or decorator) with anomaly mode on: see set_detect_anomaly."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan

    def __enter__(self) -> None:
        super().__init__(True, self.check_nan)

    def __call__(self, fn: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapped


# Imported last: functional builds on the names above (PyTorch has it as a submodule too).
from minidl.autograd import functional  # noqa: E402
