"""The computational graph: op nodes, recording switches and the reverse sweep.

Every differentiable op is a `Function` subclass with `forward(ctx, *arrays, **attrs)` and
`backward(ctx, grad_out)` side by side. `Function.apply` runs forward on the inputs' arrays and,
when some input requires a gradient and recording is on, attaches a `Context` (the graph node)
to the output tensor. `backward` orders the nodes reachable from a tensor topologically (an
explicit stack, so a graph of any depth fits) and sweeps them in reverse, summing the gradients
of values that feed several consumers.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl import versions

if TYPE_CHECKING:
    from minidl.tensor import Tensor

_grad_enabled = True

# Nodes are numbered in creation order: a parent whose node is newer than its consumer's was
# rebased by an in-place op after the consumer used it (see _resolve_parent).
_node_numbers = itertools.count()

# minidl.tensor sets this to its Tensor class on import; a module-level name keeps the import
# cycle (tensor -> ops -> graph) out of the per-op hot path.
_Tensor: Any = None

# Observers of every op applied: the static-graph tracer and the profiler set these while they
# run (see minidl.static and minidl.profiler); None costs one global lookup per op.
_tracer: Any = None
_profiler: Any = None

# id(leaf tensor) -> hooks called once its gradient of a backward pass is fully accumulated
# (Tensor.register_post_accumulate_grad_hook). Keyed by id (Tensor's == is elementwise); the
# entry goes away with its tensor, so a hook does not keep the tensor alive.
_post_accumulate_hooks: dict[int, list] = {}


class RemovableHandle:
    """Returned by hook registrations; `remove()` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable) -> None:
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        for k, h in enumerate(self._hooks):
            if h is self._hook:
                del self._hooks[k]
                return


def register_post_accumulate_grad_hook(t: Tensor, hook: Callable) -> RemovableHandle:
    """See Tensor.register_post_accumulate_grad_hook."""
    if t._ctx is not None:
        raise RuntimeError(
            "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be "
            "registered on non-leaf tensors"
        )
    if not t._requires_grad:
        raise RuntimeError(
            "register_post_accumulate_grad_hook: cannot register a hook on a tensor that "
            "doesn't require gradient"
        )
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got {hook!r}")
    hooks = _post_accumulate_hooks.get(id(t))
    if hooks is None:
        hooks = _post_accumulate_hooks[id(t)] = []
        weakref.finalize(t, _post_accumulate_hooks.pop, id(t), None)
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


def run_post_accumulate_hooks(t: Tensor) -> None:
    """Call t's post-accumulate hooks in registration order (its .grad is final for this pass)."""
    for hook in list(_post_accumulate_hooks.get(id(t), ())):
        hook(t)


def is_grad_enabled() -> bool:
    """Whether ops record nodes for backward."""
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.previous: list[bool] = []

    def __enter__(self) -> None:
        global _grad_enabled
        self.previous.append(_grad_enabled)
        _grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.previous.pop()


def no_grad() -> _GradMode:
    """Context manager and decorator: ops inside record nothing (inference, optimizer steps)."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager and decorator: recording on, even inside `no_grad`."""
    return _GradMode(True)


class Context:
    """One node of the graph: the op that produced a tensor, its inputs and what backward needs.

    `forward` may store any attribute on it; `release()` drops them all after backward so a
    graph that is not retained frees its buffers.
    """

    __slots__ = ("fn", "parents", "needs_input_grad", "saved_tensors", "saved_versions",
                 "released", "number", "rebased_from", "__dict__")

    def __init__(self, fn: type[Function], parents: tuple, needs_input_grad: tuple) -> None:
        self.fn = fn
        self.parents = parents
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple = ()
        self.saved_versions: tuple = ()
        self.released = False
        self.number = next(_node_numbers)
        # Set by an in-place op that made this node the new producer of a tensor: a tensor
        # holding the tensor's previous producer, where gradients of earlier consumers go.
        self.rebased_from: Any = None

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays
        self.saved_versions = versions.snapshot(arrays)

    def release(self) -> None:
        self.saved_tensors = ()
        self.saved_versions = ()
        self.__dict__.clear()
        self.released = True

    def __repr__(self) -> str:
        return f"<{self.fn.__name__} node>"


class Function:
    """Base class of every op. Subclasses define two static methods:

    forward(ctx, *arrays, **attrs) -> ndarray     positional inputs arrive as numpy arrays
                                                   (or the non-tensor values passed, e.g. None)
    backward(ctx, grad_out) -> ndarray | tuple     one gradient (or None) per positional input,
                                                   each shaped like that input
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **attrs: Any) -> Tensor:
        arrays = []
        needs = []
        record = False
        for x in inputs:
            if isinstance(x, _Tensor):
                arrays.append(x.data)
                needs.append(x._requires_grad)
                record = record or x._requires_grad
            else:
                arrays.append(x)
                needs.append(False)
        record = record and _grad_enabled
        ctx = Context(cls, inputs, tuple(needs))
        if _profiler is None:
            out = cls.forward(ctx, *arrays, **attrs)
        else:
            out = _profiler.forward(cls, ctx, arrays, attrs)
        result = _Tensor._wrap(out, record)
        if record:
            result._ctx = ctx
        if _tracer is not None:
            _tracer.record(cls, inputs, attrs, ctx, result)
        return result


def topological_order(root: Tensor) -> list[Tensor]:
    """Non-leaf tensors that `root` depends on through recorded nodes, each after its inputs.

    Depth-first with an explicit stack: each entry is visited once, then emitted once all of
    its inputs have been emitted.
    """
    from minidl.tensor import Tensor

    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        for p in t._ctx.parents:
            if isinstance(p, Tensor) and p._ctx is not None and id(p) not in visited:
                stack.append((p, False))
    return order


def _accumulate_leaf(t: Tensor, g: np.ndarray) -> None:
    from minidl.tensor import Tensor

    if g.dtype != t.data.dtype:
        g = g.astype(t.data.dtype)
    if t.grad is None:
        # A copy: g may alias the seed or another node's gradient.
        t.grad = Tensor._wrap(np.array(g, order="C", copy=True), False)
    else:
        t.grad.data += g


def run_backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * grad into every leaf's `.grad` (see Tensor.backward)."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no graph "
            f"(shape {root.shape}); create its inputs with requires_grad=True"
        )

    def deliver(t: Tensor, g: np.ndarray) -> None:
        if t._ctx is None or t._retains_grad:
            _accumulate_leaf(t, g)

    _sweep(root, _seed(root, grad), retain_graph, deliver,
           run_post_accumulate_hooks if _post_accumulate_hooks else None)


def gradients(root: Tensor, grad: Any = None) -> dict[int, np.ndarray]:
    """d(root)/d(t) for every tensor t in root's graph, keyed by id(t), without touching any
    `.grad` and keeping the graph (for drawing and inspecting it)."""
    found: dict[int, np.ndarray] = {}

    def deliver(t: Tensor, g: np.ndarray) -> None:
        previous = found.get(id(t))
        found[id(t)] = g if previous is None else previous + g

    _sweep(root, _seed(root, grad), True, deliver)
    return found


def _sweep(root: Tensor, grad: np.ndarray, retain_graph: bool, deliver,
           leaf_done: Callable | None = None) -> None:
    """The reverse sweep: call each node's backward in reverse topological order, summing the
    gradients of values with several consumers, and hand every tensor's total gradient to
    `deliver(tensor, gradient)` (leaves once per path into them). `leaf_done(leaf)`, if given,
    is called once per leaf that received a gradient, right after its last path delivered."""
    if root._ctx is None:
        deliver(root, grad)
        if leaf_done is not None:
            leaf_done(root)
        return
    order = topological_order(root)
    # Paths still to come into each leaf: a leaf is done when the last node reading it has
    # been swept (whether or not that node had a gradient to pass on).
    pending: dict[int, int] = {}
    reached: dict[int, Tensor] = {}
    if leaf_done is not None:
        for t in order:
            for p in t._ctx.parents:
                if isinstance(p, _Tensor) and p._ctx is None and p._requires_grad:
                    pending[id(p)] = pending.get(id(p), 0) + 1
    grads: dict[int, np.ndarray] = {id(root): grad}
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            if pending:
                _leaves_swept(t._ctx.parents, pending, reached, leaf_done)
            continue
        deliver(t, g)
        ctx = t._ctx
        if ctx.released:
            raise RuntimeError(
                f"backward: the graph through {ctx.fn.__name__} was freed by an earlier "
                "backward(); call backward(retain_graph=True) the first time to go through it again"
            )
        if ctx.saved_versions:
            versions.check(ctx.saved_versions, ctx.fn.__name__)
        if _profiler is None:
            input_grads = ctx.fn.backward(ctx, g)
        else:
            input_grads = _profiler.backward(ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, pg in zip(ctx.parents, input_grads):
            if pg is None or not isinstance(parent, _Tensor):
                continue
            parent = _resolve_parent(parent, ctx)
            if not parent._requires_grad:
                continue
            if pg.shape != parent.data.shape:
                raise RuntimeError(
                    f"{ctx.fn.__name__}.backward returned a gradient of shape {pg.shape} "
                    f"for an input of shape {parent.data.shape}"
                )
            if parent._ctx is None:
                deliver(parent, pg)
                if pending:
                    reached[id(parent)] = parent
            else:
                key = id(parent)
                previous = grads.get(key)
                grads[key] = pg if previous is None else previous + pg
        if pending:
            _leaves_swept(ctx.parents, pending, reached, leaf_done)
        if not retain_graph:
            ctx.release()


def _resolve_parent(parent: Tensor, consumer: Context) -> Tensor:
    """The version of `parent` that `consumer` used: an in-place op recorded after the
    consumer replaced parent's node, and the gradient belongs to the value before it."""
    while parent._ctx is not None and parent._ctx.number > consumer.number:
        previous = parent._ctx.rebased_from
        if previous is None:
            break
        parent = previous
    return parent


def _leaves_swept(parents: tuple, pending: dict, reached: dict, leaf_done: Callable) -> None:
    for p in parents:
        key = id(p)
        if key in pending:
            pending[key] -= 1
            if pending[key] == 0:
                del pending[key]
                leaf = reached.pop(key, None)
                if leaf is not None:
                    leaf_done(leaf)


def _seed(root: Tensor, grad: Any) -> np.ndarray:
    from minidl.tensor import Tensor

    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                "backward: grad can be implicitly created only for a tensor with one element; "
                f"this one has shape {root.shape}: pass grad= of that shape"
            )
        return np.ones_like(root.data)
    g = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
    if g.shape != root.data.shape:
        raise ValueError(
            f"backward: grad has shape {g.shape}, expected the tensor's shape {root.shape}"
        )
    if not np.issubdtype(g.dtype, np.floating) and not np.issubdtype(g.dtype, np.integer):
        raise TypeError(f"backward: grad must be numeric, got dtype {g.dtype}")
    g = g.astype(root.data.dtype, copy=False)
    if not np.all(np.isfinite(g)):
        raise ValueError("backward: grad contains NaN or infinity")
    return g


def walk_graph(root: Tensor) -> Iterator[Tensor]:
    """Every tensor reachable from `root`, leaves included, inputs before consumers."""
    from minidl.tensor import Tensor

    seen: set[int] = set()
    for t in topological_order(root) if root._ctx is not None else [root]:
        if t._ctx is not None:
            for p in t._ctx.parents:
                if isinstance(p, Tensor) and p._ctx is None and id(p) not in seen:
                    seen.add(id(p))
                    yield p
        if id(t) not in seen:
            seen.add(id(t))
            yield t
