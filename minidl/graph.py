"""The computational graph: op nodes, per-thread recording switches and the one reverse sweep.

Every differentiable op is a `Function` subclass with `forward(ctx, *arrays, **attrs)` and
`backward(ctx, grad_out)` side by side, and class attributes (its traits) that the static-graph
passes, the profiler and viz read instead of naming op classes. `Function.apply` runs forward
on the inputs' arrays and, when some input requires a gradient and recording is on, attaches a
`Context` (the graph node) to the output.

Ops are found by name: defining a subclass with a `name` trait registers it, and `op(name)`
returns the class. Only the op's own module names its class; Tensor methods, nn.functional,
nn.Module's hooks and the ONNX exporter look ops up by name once, when they are imported (a
module-level `_add = op("add").apply`, so a call costs no lookup). Adding an op:
  1. one class in its family's module of minidl/ops (a new family is a new module there,
     added to the imports of minidl/ops/__init__.py): `name`, the traits that differ from
     the defaults of Function, forward and backward side by side;
  2. the function or Tensor method that applies it (`op("name").apply`, bound at import);
  3. for ONNX, a translation under the same name in minidl.onnx.export.TRANSLATIONS (an op
     without one raises ExportError naming it).

The graph does not know `Tensor`. It walks values through a small protocol, which
`minidl.tensor.Tensor` implements (and registers with `register_value_type`):

    value.data             the array (its dtype and shape are what gradients are checked against)
    value._ctx             the Context that produced it, or None for a leaf
    value._requires_grad   whether gradients flow into it
    value._retains_grad    a non-leaf that keeps its gradient in .grad
    value.grad             the accumulated gradient (a value of the registered type) or None
    value._grad_hooks      {handle id: hook} run on its gradient (register_hook), or None
    value._post_hooks      {handle id: hook} run after .grad is accumulated, or None

`sweep` is the one reverse pass: eager `backward()`, the replay of a compiled graph
(minidl.static) and fused elementwise chains all hand it a tape of `Step`s. It is the one place
where each gradient is checked against its value's shape and cast to its value's dtype, where
hooks run and where leaves receive their gradient.

Grad mode, the tracer and the profiler are per thread (as PyTorch's grad mode): `no_grad()` in
one thread does not change recording in another, and a thread being traced by
`minidl.compile` does not see the ops of other threads.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from minidl import versions


class _ThreadState(threading.local):
    """Recording switches of the current thread; new threads start with the defaults."""

    grad_enabled = True
    # Observers of every op applied: the static-graph tracer and the profiler set these while
    # they run (see minidl.static and minidl.profiler).
    tracer: Any = None
    profiler: Any = None
    # Whether this thread is counted in _unusual_threads.
    _unusual = False

    def __setattr__(self, name: str, value: Any) -> None:
        global _unusual_threads
        super().__setattr__(name, value)
        unusual = not self.grad_enabled or self.tracer is not None or self.profiler is not None
        if unusual != self._unusual:
            super().__setattr__("_unusual", unusual)
            with _unusual_lock:
                _unusual_threads += 1 if unusual else -1


state = _ThreadState()

# How many threads have recording off, a tracer or a profiler. While none has, Function.apply
# skips its three per-thread lookups (a thread-local attribute costs ~35 ns, a global ~8 ns).
# A thread counts itself before its first op in that state and only it uncounts itself, so a
# thread in an unusual state always sees a nonzero count; others only take the slower path. A
# thread that ends while counted stays counted: that costs speed, never correctness.
_unusual_threads = 0
_unusual_lock = threading.Lock()

# The value type (minidl.tensor.Tensor) registers itself: Function.apply wraps outputs in it.
_value_type: Any = None


def register_value_type(cls: type) -> None:
    """Tell the graph which class wraps op outputs (it must implement the protocol above and a
    `_wrap(array, requires_grad)` classmethod)."""
    global _value_type
    _value_type = cls


def is_grad_enabled() -> bool:
    """Whether ops record nodes for backward in this thread."""
    return state.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.previous: list[bool] = []

    def __enter__(self) -> None:
        self.previous.append(state.grad_enabled)
        state.grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        state.grad_enabled = self.previous.pop()


def no_grad() -> _GradMode:
    """Context manager and decorator: ops inside record nothing (inference, optimizer steps).
    Affects the current thread only."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager and decorator: recording on, even inside `no_grad` (this thread)."""
    return _GradMode(True)


# In-place epochs: an in-place op that makes a new node the producer of an existing tensor
# starts a new epoch (new_inplace_epoch) before recording that node, and every node keeps the
# epoch it was created in. A parent whose node has a later epoch than its consumer's was
# rebased after the consumer used it (see _resolve_parent). Reading a global costs a node less
# than drawing a number from a counter.
_inplace_epoch = 0
_epoch_lock = threading.Lock()


def new_inplace_epoch() -> None:
    """Start a new epoch: call before recording a node that will replace a tensor's node."""
    global _inplace_epoch
    with _epoch_lock:  # += is not atomic: two threads could start the same epoch
        _inplace_epoch += 1


class Context:
    """One node of the eager graph: the op that produced a value, its inputs and what backward
    needs.

    Arrays backward reads go through `save_for_backward` (the static-graph memory plan reads
    `saved_tensors` to know which buffers must live until backward); small non-array facts
    (shapes, axes, flags) may be plain attributes. `release()` drops both after backward so a
    graph that is not retained frees its buffers.
    """

    __slots__ = ("fn", "parents", "needs_input_grad", "released", "epoch", "rebased_from",
                 "__dict__")

    # What save_for_backward stores lives in the instance's __dict__ with these class-level
    # defaults: a node that saves nothing costs no stores for them, and clearing the __dict__
    # releases everything at once.
    saved_tensors: tuple = ()
    saved_versions: tuple = ()  # versions.snapshot of saved_tensors

    def __init__(self, fn: type[Function], parents: tuple, needs_input_grad: tuple) -> None:
        self.fn = fn
        self.parents = parents
        self.needs_input_grad = needs_input_grad
        self.released = False
        self.epoch = _inplace_epoch
        # Set by an in-place op that made this node the new producer of a tensor: a tensor
        # holding the tensor's previous producer, where gradients of earlier consumers go.
        self.rebased_from: Any = None

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved_tensors = arrays
        self.saved_versions = versions.snapshot(arrays)

    def release(self) -> None:
        self.__dict__.clear()
        self.released = True

    def __repr__(self) -> str:
        return f"<{self.fn.__name__} node>"


def size_of(shape: Sequence[int]) -> int:
    """Number of elements of an array of `shape`."""
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


class Function:
    """Base class of every op. Subclasses define two static methods:

    forward(ctx, *arrays, **attrs) -> ndarray     positional inputs arrive as numpy arrays
                                                   (or the non-tensor values passed, e.g. None)
    backward(ctx, grad_out) -> ndarray | tuple     one gradient (or None) per positional input,
                                                   each shaped like that input

    and declare their traits here (the defaults describe a plain op):
    """

    #: the op's identity, unique among ops: `op(name)` returns the class (see the module
    #: docstring). A subclass without its own name is not registered and has name None
    #: (an abstract base, a user's autograd.Function node): a name is not inherited.
    name: str | None = None

    #: output = f(inputs) element by element (with broadcasting): elementwise chains fuse it.
    elementwise = False
    #: forward accepts `out=`, a preallocated output array (the static memory plan uses it).
    writes_out = False
    #: `out` may be one of the inputs' own buffers (ufunc-style overlap handling).
    inplace_ok = False
    #: names of the ops this one can absorb as a boolean attribute of the same name, e.g.
    #: ("relu",): a following op whose `epilogue` is "relu" becomes `attrs["relu"] = True`.
    epilogues: tuple[str, ...] = ()
    #: the epilogue name under which an op with that entry in `epilogues` can absorb this one.
    epilogue: str | None = None
    #: the name of its kernels' lowering in a compiled graph's flat program (a key of
    #: minidl.static.lower.LOWERINGS), or None: the op runs there as a Python node.
    lowering: str | None = None
    #: backward returns arrays it allocated for this call alone (never its upstream gradient
    #: or a view of one, never one array for two inputs): the sweep hands such a gradient to
    #: a leaf's empty .grad without copying it, as PyTorch's AccumulateGrad steals one.
    fresh_gradients = False
    #: display name for viz and the profiler (None: the class name without its "Op" suffix).
    label: str | None = None
    #: the circuit symbol viz draws instead of the name ("+", "*", "@"), or None.
    symbol: str | None = None
    #: (weight, bias) argument positions of an op whose output channel k (axis 1) is linear
    #: in weight[k] (axis 0) and bias[k] (e.g. conv2d), or None: an inference graph folds a
    #: following per-channel affine map (`channel_affine`) into them.
    channel_params: tuple[int, int] | None = None

    @staticmethod
    def channel_affine(weight: Any, bias: Any, dtype: np.dtype, attrs: dict) -> Any:
        """For an op that is y = x * scale + shift per channel (axis 1) with these attributes
        (e.g. BatchNorm at inference), (scale, shift) as float64 (C,) arrays computed from its
        weight and bias arrays (or None) and its current state, for inputs of `dtype`; None
        for any other op."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            cls.name = None
            return
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}: an op's name must be an identifier "
                f"string, got {name!r}"
            )
        taken = _ops.get(name)
        if taken is not None:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}: the op name {name!r} is taken by "
                f"{taken.__module__}.{taken.__qualname__}"
            )
        _ops[name] = cls

    @classmethod
    def display_name(cls, attrs: dict | None = None) -> str:
        """The op's name as drawn and profiled, with any absorbed epilogues ("Conv2d + relu")."""
        name = cls.label or cls.__name__.removesuffix("Op") or cls.__name__
        for e in cls.epilogues:
            if attrs and attrs.get(e):
                name += f" + {e}"
        return name

    @classmethod
    def backward_name(cls) -> str:
        """The name of this op's node in `tensor.grad_fn` and reprs, as PyTorch's: the class
        name without its "Op" suffix, then "Backward0" ("MulBackward0")."""
        return f"{cls.__name__.removesuffix('Op') or cls.__name__}Backward0"

    @classmethod
    def flops(cls, in_shapes: list[tuple], out_shape: tuple, attrs: dict) -> int:
        """Forward FLOPs (a multiply-add counts 2); the default counts 1 per output element."""
        return size_of(out_shape)

    @classmethod
    def backward_flops(cls, forward_flops: int, needs_input_grad: tuple) -> int:
        """Backward FLOPs; the default: as many as forward."""
        return forward_flops

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_out: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **attrs: Any) -> Any:
        arrays = []
        needs = []
        record = False
        value_type = _value_type
        for x in inputs:
            if isinstance(x, value_type):
                arrays.append(x.data)
                needs.append(x._requires_grad)
                record = record or x._requires_grad
            else:
                arrays.append(x)
                needs.append(False)
        ctx = Context(cls, inputs, tuple(needs))
        if not _unusual_threads:  # recording on, no tracer, no profiler (in every thread)
            result = value_type._wrap(cls.forward(ctx, *arrays, **attrs), record)
            if record:
                result._ctx = ctx
            return result
        s = state
        record = record and s.grad_enabled
        if s.profiler is None:
            out = cls.forward(ctx, *arrays, **attrs)
        else:
            out = s.profiler.forward(cls, ctx, arrays, attrs)
        result = value_type._wrap(out, record)
        if record:
            result._ctx = ctx
        if s.tracer is not None:
            s.tracer.record(cls, inputs, attrs, ctx, result)
        return result


# -- the op registry -------------------------------------------------------------------------
# name -> op class, filled by Function.__init_subclass__ as the op modules are imported.
_ops: dict[str, type[Function]] = {}


def op(name: str) -> type[Function]:
    """The op class registered under `name` (its `name` trait), e.g. op("add").

    Raises KeyError listing the registered names when no op has that name (or its module is
    not imported yet: importing minidl.ops registers every family).
    """
    try:
        return _ops[name]
    except KeyError:
        raise KeyError(
            f"no minidl op is named {name!r}; registered: {', '.join(sorted(_ops))}"
        ) from None


def registered_ops() -> dict[str, type[Function]]:
    """Every registered op, name -> class, in registration order (a copy)."""
    return dict(_ops)


# -- hooks ------------------------------------------------------------------------------------
_handle_ids = itertools.count()


class RemovableHandle:
    """Returned by register_hook and friends: `remove()` unregisters the hook."""

    __slots__ = ("_hooks", "id")

    def __init__(self, hooks: dict) -> None:
        self._hooks = hooks
        self.id = next(_handle_ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- the reverse sweep --------------------------------------------------------------------------
class Step(NamedTuple):
    """One node of a tape, as the sweep reads it (a tuple, which the sweep unpacks fast; eager
    backward builds plain tuples in this field order)."""

    fn: type[Function]  # the op: its backward is called with the step's Context
    out: int  # key of the value it produces
    grad_inputs: tuple  # per positional input: key of the value receiving its gradient, or -1
    # keys of leaves whose gradient is complete once this step's backward has run (every
    # reader of a leaf comes at or after its first reader in forward order)
    finished: tuple = ()
    hooks: list | None = None  # gradient hooks of the produced value (array -> array | None)
    keep: bool = False  # hand the produced value's gradient to `deliver` (retained non-leaf)


def checked_gradient(g: Any, dtype: np.dtype, shape: tuple, what: str) -> np.ndarray:
    """`g` as the gradient of a value of `dtype` and `shape`: cast to the value's dtype (as
    PyTorch does: a float32 parameter used in a float64 product gets a float32 gradient);
    RuntimeError naming `what` when the shape differs."""
    if g.shape != shape:
        raise RuntimeError(
            f"{what} returned a gradient of shape {g.shape} for a value of shape {shape}"
        )
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


def run_hooks(hooks: Any, g: np.ndarray, what: str) -> np.ndarray:
    """Apply gradient hooks in registration order; each may return a replacement gradient."""
    wrap = _value_type._wrap
    for hook in list(hooks):
        result = hook(wrap(g, False))
        if result is not None:
            array = result.data if isinstance(result, _value_type) else np.asarray(result)
            g = checked_gradient(array, g.dtype, g.shape, f"a gradient hook on {what}")
    return g


def accumulate(value: Any, g: np.ndarray, owned: bool = False) -> None:
    """Add `g` into `value.grad` after the value's gradient hooks; then its post-accumulate
    hooks (PyTorch's AccumulateGrad: a leaf's hooks see its total gradient once per sweep).
    owned: nothing else references g (the sweep's `owned`), so it may become the .grad."""
    if value._grad_hooks:
        # A hook may keep the array it was given (or return one it keeps).
        g = run_hooks(value._grad_hooks.values(), g, f"a tensor of shape {value.data.shape}")
        owned = False
    _add_to_grad(value, g, owned)
    if value._post_hooks:
        for hook in list(value._post_hooks.values()):
            hook(value)


def _add_to_grad(value: Any, g: np.ndarray, owned: bool = False) -> None:
    if value.grad is None:
        flags = g.flags
        if not (owned and flags.owndata and flags.c_contiguous and flags.writeable):
            # A copy: g may alias the seed or another value's gradient.
            g = np.array(g, order="C", copy=True)
        value.grad = _value_type._wrap(g, False)
    else:
        value.grad.data += g


def sweep(steps: Sequence[Step], contexts: list, grads: list, specs: Sequence[tuple],
          deliver: Callable[[int, np.ndarray], None] | None, release: bool = True,
          timings: list | None = None) -> None:
    """The reverse pass over a tape.

    steps: the tape in forward order; contexts[k]: the Context step k's forward filled;
    grads: per value key, its gradient so far (the seeds set, the rest None); specs[key]:
    an object with the `dtype` and `shape` of that value (its array, or a static graph's
    Value), against which every incoming gradient is checked and cast;
    deliver(key, gradient, owned): receives each leaf's total gradient once it is complete
    (owned: an array only the sweep references, a sum it made or what a `fresh_gradients` op
    returned), and the gradients of steps marked `keep` (owned False: the step's backward
    reads it). Values no step consumes (e.g. a fused chain's inputs)
    keep their total in `grads`. Each context is dropped from `contexts` after its backward;
release: also clear it (eager graphs, whose values still point at their contexts). timings: when
    a list, one backward time per step is appended (0.0 for steps no gradient reached), in
    reverse order.
    """
    profiler = state.profiler
    clock = time.perf_counter
    owned: set[int] = set()  # keys whose gradient array only `grads` references
    for k in range(len(steps) - 1, -1, -1):
        fn, out, grad_inputs, finished, hooks, keep = steps[k]
        g = grads[out]
        if g is not None:
            grads[out] = None
            if hooks is not None:
                g = run_hooks(hooks, g, f"the output of {fn.__name__}")
            if keep:
                deliver(out, g, False)
            ctx = contexts[k]
            if ctx.saved_versions:
                versions.check(ctx.saved_versions, fn.__name__)
            if timings is not None:
                t0 = clock()
                result = fn.backward(ctx, g)
                timings.append(clock() - t0)
            elif profiler is None:
                result = fn.backward(ctx, g)
            else:
                result = profiler.backward(ctx, g)
            contexts[k] = None
            if release:
                ctx.release()
            # One gradient is for the first input; zip() would cost ~130 ns a node.
            pairs = zip(grad_inputs, result) if type(result) is tuple else (
                (grad_inputs[0], result),)
            fresh = fn.fresh_gradients
            for key, pg in pairs:
                if key < 0 or pg is None:
                    continue
                spec = specs[key]
                if pg.dtype is not spec.dtype or pg.shape != spec.shape:
                    pg = checked_gradient(pg, spec.dtype, spec.shape, f"{fn.__name__}.backward")
                previous = grads[key]
                if previous is None:
                    grads[key] = pg
                    if fresh and pg is not g:
                        owned.add(key)
                elif key in owned:
                    # Only the sweep holds this sum: adding in place spares a new array per
                    # consumer (a tensor sliced at each of T steps would cost T full copies).
                    previous += pg
                else:
                    grads[key] = previous + pg
                    owned.add(key)
        elif timings is not None:
            timings.append(0.0)
        if finished:
            for key in finished:
                g = grads[key]
                if g is not None:
                    grads[key] = None
                    deliver(key, g, key in owned)


# -- eager graphs ---------------------------------------------------------------------------
def topological_order(root: Any) -> list:
    """Non-leaf values that `root` depends on through recorded nodes, each after its inputs.

    Depth-first with an explicit stack: each entry is visited once, then emitted once all of
    its inputs have been emitted.
    """
    value_type = _value_type
    order: list = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
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
            if isinstance(p, value_type) and p._ctx is not None and id(p) not in visited:
                stack.append((p, False))
    return order


def _eager_tape(root: Any, keep_all: bool) -> tuple[list, list[tuple], list, list]:
    """(values, steps, contexts, specs) of the recorded graph ending at `root`, in one
    depth-first pass (explicit stack): each non-leaf gets its key when emitted, after all of
    its inputs; a leaf when first read. specs[key] is the value's array (its dtype and shape
    are what the sweep checks gradients against). Only inputs that needed a gradient when
    the node was recorded are followed: no gradient goes to the others."""
    values: list = []
    specs: list = []
    steps: list[tuple] = []
    contexts: list = []
    # id(value) -> its key. The stack holds values to visit and, below the inputs pushed by
    # a visit, a 1-tuple (value,): the value is emitted when the tuple is popped, all of its
    # inputs being emitted by then. A value pushed by several consumers is visited once: its
    # other copies are deeper than its tuple (none can be above it, the graph being acyclic)
    # and are skipped once it is emitted.
    key_of: dict[int, int] = {}
    stack: list = [root]
    while stack:
        t = stack.pop()
        if type(t) is not tuple:
            if id(t) in key_of:
                continue
            stack.append((t,))
            ctx = t._ctx
            epoch = ctx.epoch
            needs = ctx.needs_input_grad
            i = -1
            # An index, not zip(): zip() costs ~130 ns a node.
            for p in ctx.parents:
                i += 1
                # needs_input_grad is True only for values (Function.apply)
                if needs[i]:
                    parent_ctx = p._ctx
                    if parent_ctx is not None:
                        if parent_ctx.epoch > epoch:
                            p = _resolve_parent(p, ctx)
                            if p._ctx is None:
                                continue
                        stack.append(p)
            continue
        t = t[0]
        ctx = t._ctx
        if ctx.released:
            raise RuntimeError(
                f"backward: the graph through {ctx.fn.__name__} was freed by an earlier "
                "backward(); call backward(retain_graph=True) the first time to go "
                "through it again"
            )
        keys = []
        finished: tuple = ()
        epoch = ctx.epoch
        needs = ctx.needs_input_grad
        i = -1
        for p in ctx.parents:
            i += 1
            if not needs[i]:
                keys.append(-1)
                continue
            parent_ctx = p._ctx
            if parent_ctx is not None and parent_ctx.epoch > epoch:
                p = _resolve_parent(p, ctx)
            if not p._requires_grad:  # switched off since the node was recorded
                keys.append(-1)
                continue
            key = key_of.get(id(p))
            if key is None:  # a leaf: non-leaves were emitted before their readers
                key = key_of[id(p)] = len(values)
                values.append(p)
                specs.append(p.data)
                finished += (key,)
            keys.append(key)
        key = key_of[id(t)] = len(values)
        values.append(t)
        specs.append(t.data)
        hooks = t._grad_hooks
        # A plain tuple in Step's field order: a Step per node would cost a constructor call.
        steps.append((ctx.fn, key, keys, finished,
                      list(hooks.values()) if hooks else None, keep_all or t._retains_grad))
        contexts.append(ctx)
    return values, steps, contexts, specs


def _resolve_parent(parent: Any, consumer: Context) -> Any:
    """The version of `parent` that `consumer` used: an in-place op recorded after the
    consumer replaced parent's node, and the gradient belongs to the value before it."""
    while parent._ctx is not None and parent._ctx.epoch > consumer.epoch:
        previous = parent._ctx.rebased_from
        if previous is None:
            break
        parent = previous
    return parent


def run_backward(root: Any, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * grad into every leaf's `.grad` (see Tensor.backward)."""
    if not root._requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no graph "
            f"(shape {root.data.shape}); create its inputs with requires_grad=True"
        )
    seed = _seed(root, grad)
    if root._ctx is None:
        accumulate(root, seed)
        return
    values, steps, contexts, specs = _eager_tape(root, keep_all=False)
    grads: list = [None] * len(values)
    grads[steps[-1][1]] = seed

    def deliver(key: int, g: np.ndarray, owned: bool) -> None:
        value = values[key]
        if value._ctx is None:
            accumulate(value, g, owned)
        else:  # a retained non-leaf: its hooks already ran in the sweep
            _add_to_grad(value, g)

    sweep(steps, contexts, grads, specs, deliver, release=not retain_graph)


def gradients(root: Any, grad: Any = None) -> dict[int, np.ndarray]:
    """d(root)/d(t) for every value t in root's graph, keyed by id(t), without touching any
    `.grad`, running no hooks and keeping the graph (for drawing and inspecting it)."""
    seed = _seed(root, grad)
    if root._ctx is None:
        return {id(root): seed}
    values, steps, contexts, specs = _eager_tape(root, keep_all=True)
    steps = [Step(*step)._replace(hooks=None) for step in steps]
    grads: list = [None] * len(values)
    grads[steps[-1].out] = seed
    found: dict[int, np.ndarray] = {}

    def deliver(key: int, g: np.ndarray, owned: bool) -> None:
        found[id(values[key])] = g

    sweep(steps, contexts, grads, specs, deliver, release=False)
    return found


def _seed(root: Any, grad: Any) -> np.ndarray:
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                "backward: grad can be implicitly created only for a tensor with one element; "
                f"this one has shape {root.data.shape}: pass grad= of that shape"
            )
        return np.ones_like(root.data)
    g = grad.data if isinstance(grad, _value_type) else np.asarray(grad)
    if g.shape != root.data.shape:
        raise ValueError(
            f"backward: grad has shape {g.shape}, expected the tensor's shape {root.data.shape}"
        )
    if not np.issubdtype(g.dtype, np.floating) and not np.issubdtype(g.dtype, np.integer):
        raise TypeError(f"backward: grad must be numeric, got dtype {g.dtype}")
    return g.astype(root.data.dtype, copy=False)


def walk_graph(root: Any) -> Iterator:
    """Every value reachable from `root`, leaves included, inputs before consumers."""
    value_type = _value_type
    seen: set[int] = set()
    for t in topological_order(root) if root._ctx is not None else [root]:
        if t._ctx is not None:
            for p in t._ctx.parents:
                if isinstance(p, value_type) and p._ctx is None and id(p) not in seen:
                    seen.add(id(p))
                    yield p
        if id(t) not in seen:
            seen.add(id(t))
            yield t
