"""Lowering: a static graph's schedule as one flat program (minidl._kernels.program).

Every value an instruction reads or writes gets a buffer the program owns (inputs are copied
in, graph outputs copied out, a reshape is a view of its input's buffer); node outputs share
buffers as the memory plan lets them (minidl.static.memory, with every node planned), and
gradients have buffers of their own. Parameters are operand slots, re-pointed when a
parameter's array is replaced. Each node becomes kernel instructions when its op names a
lowering (the `Function.lowering` trait, a key of `LOWERINGS`) that accepts the node
(float32, non-empty, a kernel path the op itself would take), otherwise a Python node: a
closure calling the op's `forward` on the program's arrays (when training, another calls its
`backward` on the Context kept). A Python node's result, or gradient, that only Python nodes
read is kept as the op returned it; one an instruction reads is written into its buffer
(through `out=` when the op is `writes_out`, else copied). All checks happen here, once; the
instructions trust what was checked and allocated.

The kernels and their work splits are the ones the ops run (the conv lowerings ask
minidl._kernels.conv.forward_path which kernel the op would take and set up its buffers as
conv._direct_conv / conv._packed_conv do), so a program gives the Python replay's bits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from minidl.backends import conv as conv_backend
from minidl.graph import Context, accumulate
from minidl.static.memory import plan_memory
from minidl.static.trace import Node, Value
from minidl.tensor import Tensor
from minidl.threads import default_num_threads, get_num_threads

_F32 = np.dtype(np.float32)


class Lowered:
    """One compiled signature as a Program plus the arrays it runs on (one per concurrent
    call: the buffers belong to it)."""

    def __init__(self, values: list[Value], nodes: list[Node], outputs: list[int],
                 input_indices: list[int], training: bool = False) -> None:
        from minidl._kernels.program import Program, add_into, copy_into

        self.copy_into, self.add_into_grad = copy_into, add_into
        self.values = values
        self.training = training
        self.program = Program()
        self.conv_algorithm = conv_backend.algorithm
        # value index -> the array the program reads for it (a buffer it owns, a parameter's
        # current array, a constant's array)
        self.arrays: list = [None] * len(values)
        self.params: list[tuple[int, int, object]] = []  # (slot, value index, tensor)
        self.slot_of: dict[int, int] = {}
        for v in values:
            if v.kind == "param":
                slot = self.program.add_slot()
                self.slot_of[v.index] = slot
                self.params.append((slot, v.index, v.tensor))
            elif v.kind == "const":
                self.arrays[v.index] = v.tensor.data
        self.param_tensors = [t for _, _, t in self.params]  # slot k's parameter
        # Node outputs share buffers as the memory plan lets them (every node's output is
        # planned: instructions write into given arrays); a slot is allocated when first used.
        self.plan = plan_memory(nodes, values, outputs, training, every_node=True)
        self.plan_buffers: list = [None] * len(self.plan.slot_bytes)
        self.inputs = [self.buffer(i) for i in input_indices]
        self.python_nodes = 0
        # For benchmarks: the last call's seconds inside the program, and adding the
        # parameters' gradients into their .grad (NumPy, after the program).
        self.run_seconds = self.accumulate_seconds = 0.0
        # Training: the Context of each node run in Python (its backward reads it), and per
        # value the gradient buffer the backward instructions write (allocated at the first
        # contribution in reverse order; later ones are added to it, as the sweep adds them).
        self.contexts: list = [None] * len(nodes)
        self.grads: dict[int, np.ndarray] = {}
        self.pool_codes: dict[int, np.ndarray] = {}  # max-pool output -> its window codes
        self.ce_prob: dict[int, np.ndarray] = {}  # cross-entropy loss -> its probabilities
        # Values a kernel may read so far, and what each Python node's forward writes: its
        # result is kept as it is (no copy) unless an instruction reads the value's buffer,
        # which the node then fills (through `out=` when its op writes into a given array).
        self.produced: set[int] = set()
        self.python_writes: list = [None] * len(nodes)
        python_nodes = []
        lowered = []
        for k, node in enumerate(nodes):
            forward, backward = LOWERINGS.get(node.fn.lowering, (None, None))
            in_c = (forward is not None and (not training or backward is not None)
                    and forward(self, node))
            if not in_c:
                self.python_node(node, k)
                python_nodes.append((k, node))
            self.produced.add(node.out)
            lowered.append(in_c)
        self.outputs = list(outputs)
        if training:
            self._lower_backward(nodes, lowered)
        for k, node in python_nodes:
            buf = self.arrays[node.out]
            attrs = node.attrs
            if buf is not None and node.fn.writes_out:
                attrs = {**attrs, "out": buf}
            self.python_writes[k] = (buf, attrs)
        self.program.set_io(self.param_tensors, Tensor, self.inputs, self.arrays, self.outputs)
        self.bind_params()  # so that the first call can be the C call too

    def _lower_backward(self, nodes: list[Node], lowered: list[bool]) -> None:
        """The backward of every node a gradient reaches, in reverse order. A gradient that
        instructions read or write lives in a buffer of the program (`grads`); one that only
        Python backwards touch is kept as they return it (`grad_arrays`, no copy), summed as
        the sweep sums contributions."""
        loss = self.outputs[0]
        self.pinned_grads = {loss}
        for k, node in enumerate(nodes):
            if lowered[k]:
                self.pinned_grads.add(node.out)
                self.pinned_grads.update(a for i, a in enumerate(node.args)
                                         if self.needs_grad(node, i))
        self.grad_arrays: list = [None] * len(self.values)
        self.reached = {loss}  # values some contribution to whose gradient is emitted
        self.grads[loss] = np.ones(self.values[loss].shape, self.values[loss].dtype)
        # Buffers of gradients no instruction reads any more, by (shape, dtype): a node's
        # output gradient once its backward instructions are emitted (a Python backward may
        # return views of its gradient, so those stay), and contributions' scratch buffers.
        self.free_gradients: dict[tuple, list[np.ndarray]] = {}
        for k in range(len(nodes) - 1, -1, -1):
            node = nodes[k]
            if node.out not in self.reached:
                continue  # no gradient reaches it (the sweep skips it too)
            if lowered[k]:
                LOWERINGS[node.fn.lowering][1](self, node)
                g = self.grads.pop(node.out)
                if node.out != loss and not any(np.may_share_memory(g, other)
                                                for other in self.grads.values()):
                    self.release_gradient(g)
            else:
                self.python_backward(node, k)
        self.param_grads = [(i, self.grads.get(i), t) for _, i, t in self.params
                            if i in self.reached]

    # -- building ------------------------------------------------------------------------
    def buffer(self, index: int) -> np.ndarray:
        """The program's own buffer for value `index` (allocated on first use): a view of
        the memory plan's buffer when the value is planned."""
        a = self.arrays[index]
        if a is None:
            v = self.values[index]
            slot = self.plan.slot_of.get(index)
            if slot is None:
                a = np.zeros(v.shape, v.dtype)
            else:
                memory = self.plan_buffers[slot]
                if memory is None:
                    memory = self.plan_buffers[slot] = np.zeros(self.plan.slot_bytes[slot],
                                                                np.uint8)
                a = memory[: v.nbytes].view(v.dtype).reshape(v.shape)
            self.arrays[index] = a
        return a

    def operand(self, index: int):
        """A pointer operand reading value `index`: its buffer, or the parameter's slot."""
        slot = self.slot_of.get(index)
        if slot is not None:
            return ("slot", slot)
        return self.buffer(index) if self.values[index].kind in ("node", "input") else (
            self.arrays[index])

    def readable(self, index) -> bool:
        """A value a kernel may read: float32, non-empty, and a buffer of the program, a
        parameter, or a C-contiguous constant."""
        if not isinstance(index, int):
            return False
        v = self.values[index]
        if v.dtype != _F32 or v.nbytes == 0:
            return False
        if v.kind == "const":
            return self.arrays[index].flags.c_contiguous
        return v.kind != "node" or index in self.produced

    def python_node(self, node: Node, k: int) -> None:
        """The node as a Python call of its op's forward on the program's arrays (its Context
        kept for its backward when training); what it writes is set once the program is
        built (`python_writes`)."""
        arrays, contexts, writes = self.arrays, self.contexts, self.python_writes
        fn, needs, o = node.fn, node.needs_input_grad, node.out
        sources = [(True, a) if isinstance(a, int) else (False, a[1]) for a in node.args]
        keep = self.training

        def call() -> None:
            ctx = Context(fn, (), needs)
            buf, attrs = writes[k]
            result = fn.forward(ctx, *[arrays[a] if is_value else a for is_value, a in sources],
                                **attrs)
            if buf is None:
                arrays[o] = result
            elif result is not buf:
                np.copyto(buf, result)
            if keep:
                contexts[k] = ctx

        self.program.add_python(call)
        self.python_nodes += 1

    def needs_grad(self, node: Node, i: int) -> bool:
        """Whether the node's i-th argument receives a gradient (as the backward tape)."""
        a = node.args[i]
        return (isinstance(a, int) and node.needs_input_grad[i]
                and self.values[a].kind in ("node", "param"))

    def grad_target(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Where a backward writes its contribution to value `index`'s gradient: (array to
        write, None) for the first one, else (scratch, gradient) with an `add` instruction
        to emit after it."""
        g = self.grads.get(index)
        v = self.values[index]
        self.reached.add(index)
        if g is None:
            g = self.grads[index] = self._gradient_buffer(v)
            return g, None
        return self._gradient_buffer(v), g

    def _gradient_buffer(self, v: Value) -> np.ndarray:
        """A buffer for a gradient of v's shape and dtype: one a dead gradient left (every
        writer of a gradient writes all of it, so none needs zeroing), else a new one."""
        free = self.free_gradients.get((v.shape, v.dtype))
        return free.pop() if free else np.zeros(v.shape, v.dtype)

    def release_gradient(self, g: np.ndarray) -> None:
        """g is read by no instruction emitted from now on: later gradients may reuse it."""
        self.free_gradients.setdefault((g.shape, g.dtype), []).append(g)

    def add_into(self, scratch: np.ndarray, total: np.ndarray | None) -> None:
        if total is not None:
            self.program.add("add", (total, scratch, total), (total.size,))
            self.release_gradient(scratch)

    def python_backward(self, node: Node, k: int) -> None:
        """The node's backward as a Python call on its kept Context; each gradient is cast
        and shape-checked as the sweep does, then written or added into its buffer, or (a
        gradient no instruction touches) kept or summed as the sweep does."""
        from minidl.graph import checked_gradient

        o = node.out
        upstream = self.grads[o] if o in self.pinned_grads else None
        contexts, fn, garrays = self.contexts, node.fn, self.grad_arrays
        what = f"{fn.__name__}.backward"
        targets = []
        for i, a in enumerate(node.args):
            if not self.needs_grad(node, i):
                continue
            v = self.values[a]
            if a in self.pinned_grads:
                # Into its buffer: written by the first contribution, added to by later ones.
                buf = self.grads.get(a)
                if buf is None:
                    buf = self.grads[a] = self._gradient_buffer(v)
                    targets.append((i, a, v, buf, False, False))
                else:
                    targets.append((i, a, v, buf, True, False))
            else:
                targets.append((i, a, v, None, False, a not in self.reached))
            self.reached.add(a)

        def call() -> None:
            result = fn.backward(contexts[k], garrays[o] if upstream is None else upstream)
            contexts[k] = None
            if type(result) is not tuple:
                result = (result,)
            for i, a, v, buf, add, first in targets:
                pg = result[i] if i < len(result) else None
                if pg is not None:
                    pg = checked_gradient(np.asarray(pg), v.dtype, v.shape, what)
                if buf is None:
                    if pg is not None:
                        garrays[a] = pg if first else garrays[a] + pg
                    elif first:
                        # No contribution: zeros (the sweep would leave the gradient unset).
                        garrays[a] = np.zeros(v.shape, v.dtype)
                elif pg is None:
                    if not add:
                        buf[...] = 0
                elif add:
                    np.add(buf, pg, out=buf)  # the sweep's `previous + pg`
                else:
                    buf[...] = pg

        self.program.add_python(call)
        self.python_nodes += 1

    # -- running -------------------------------------------------------------------------
    def bind_params(self) -> bool:
        """Point the program at each parameter's current array; False when one no longer
        fits what the program was built for (shape, dtype, C-contiguous)."""
        if self.program.bound_to(self.param_tensors):
            return True
        # Every one is checked again, the arrays already bound too: one may have changed
        # shape, dtype or memory in place (bound_to sees that, not which one).
        arrays = self.arrays
        for slot, index, tensor in self.params:
            data = tensor.data
            v = self.values[index]
            if (not isinstance(data, np.ndarray) or data.shape != v.shape
                    or data.dtype != v.dtype or not data.flags.c_contiguous or data.size == 0):
                return False
            self.program.bind(slot, data)
            arrays[index] = data
        return True

    def run(self, inputs: Sequence[np.ndarray], n_threads: int) -> list[np.ndarray] | None:
        """One call: the graph outputs (fresh arrays), after accumulating the parameters'
        gradients when training; None when a parameter no longer fits the program or an
        instruction found its inputs invalid (the caller replays in Python, which raises the
        op's error)."""
        if not self.bind_params():
            return None
        for buf, a in zip(self.inputs, inputs):
            if not self.copy_into(buf, a):
                np.copyto(buf, a)
        start = time.perf_counter()
        status = self.program.run(n_threads)
        self.run_seconds = time.perf_counter() - start
        if status:
            return None
        if self.training:
            start = time.perf_counter()
            garrays, add, wrap = self.grad_arrays, self.add_into_grad, Tensor._wrap
            for index, g, tensor in self.param_grads:
                # A program runs only while no parameter has hooks (executor._program_runs),
                # and its gradients have their parameter's shape and dtype by construction:
                # a copy as the new .grad (no setter checks), or an add in C, is all
                # accumulate() would do.
                if g is None:
                    g = garrays[index]
                grad = tensor._grad
                if grad is None:
                    tensor._grad = wrap(np.array(g, order="C"), False)
                elif not add(grad.data, g):
                    accumulate(tensor, g)
            self.accumulate_seconds = time.perf_counter() - start
        arrays = self.arrays
        return [arrays[o].copy() for o in self.outputs]


# -- lowerings (one per op with kernels here; False: run the node in Python) ---------------
def _conv2d(lw: Lowered, node: Node) -> bool:
    x, w, b = node.args
    if not (lw.readable(x) and lw.readable(w)) or (isinstance(b, int) and not lw.readable(b)):
        return False
    if not isinstance(b, int) and b[1] is not None:
        return False
    a = node.attrs
    xv, wv, ov = lw.values[x], lw.values[w], lw.values[node.out]
    if ov.dtype != _F32 or ov.nbytes == 0 or xv.kind not in ("node", "input"):
        return False
    stride, padding, dilation, groups = a["stride"], a["padding"], a["dilation"], a["groups"]
    algorithm = conv_backend.choose("forward", xv.shape, wv.shape, xv.dtype, stride, dilation,
                                    groups)
    if algorithm == "winograd":
        return False
    from minidl._kernels import conv as conv_kernels

    path = conv_kernels.forward_path(_shaped(xv), _shaped(wv), _shaped(ov), *stride,
                                     *dilation, groups, algorithm)
    if path not in ("direct", "packed"):
        return False
    if lw.training and _conv_backward_paths(lw, node) is None:
        return False  # its backward has no kernels here (a Python backward needs a Python forward)
    bias = lw.operand(b) if isinstance(b, int) else None
    out = lw.buffer(node.out)
    if path == "direct":
        _direct_conv(lw, lw.operand(x), xv.shape, None, lw.operand(w), wv.shape, False, bias,
                     out, padding, stride, dilation, a["relu"])
    else:
        _packed_conv(lw, lw.operand(x), xv.shape, lw.operand(w), wv.shape, bias, out, stride,
                     padding, dilation, a["relu"])
    return True


def _conv_backward_paths(lw: Lowered, node: Node) -> tuple | None:
    """(input-gradient path, weight-gradient path) of conv.backward_paths when this program
    has kernels for both (each None when not needed), else None."""
    from minidl._kernels import conv as conv_kernels

    x, w, b = node.args
    xv, wv, ov = lw.values[x], lw.values[w], lw.values[node.out]
    a = node.attrs
    stride, dilation, groups = a["stride"], a["dilation"], a["groups"]
    if any(conv_backend.choose(p, xv.shape, wv.shape, xv.dtype, stride, dilation, groups)
           == "winograd" for p in ("input", "weight")):
        return None
    need_x = lw.needs_grad(node, 0)
    need_w = lw.needs_grad(node, 1) or lw.needs_grad(node, 2)
    paths = conv_kernels.backward_paths(_shaped(xv), _shaped(wv), _shaped(ov), need_x, need_w,
                                        *stride, *dilation, groups, conv_backend._rest())
    if paths is None or paths[0] not in (None, "direct", "images") or paths[1] not in (
            None, "rows", "packed"):
        return None
    return paths


def _conv2d_backward(lw: Lowered, node: Node) -> None:
    """Instructions of conv.conv2d_backward's direct paths: the input gradient by the forward
    kernel on the padded (ReLU-masked) output gradient with flipped weights (or 16 images per
    work item, conv._images_backward_input), the weight and
    bias gradients by chunks of images summed in chunk order (conv._direct_backward_weight or
    conv._packed_backward_weight)."""
    from minidl._kernels import conv as conv_kernels
    from minidl._kernels.program import dw_tb

    x_path, w_path = _conv_backward_paths(lw, node)
    x, w, b = node.args
    xv, wv = lw.values[x], lw.values[w]
    a = node.attrs
    g = lw.grads[node.out]
    mask = lw.arrays[node.out] if a["relu"] else None
    N, C, H, W = xv.shape
    OC, _, KH, KW = wv.shape
    OH, OW = g.shape[2:]
    (ph, pw), (sh, sw), (dh, dw) = a["padding"], a["stride"], a["dilation"]
    T = KH * KW
    if x_path == "direct":
        dst, total = lw.grad_target(x)
        _direct_conv(lw, g, g.shape, mask, lw.operand(w), wv.shape, True, None, dst,
                     (dh * (KH - 1) - ph, dw * (KW - 1) - pw), (1, 1), (dh, dw), False)
        lw.add_into(dst, total)
    elif x_path == "images":  # conv._images_backward_input
        dst, total = lw.grad_target(x)
        packed = _pack_buffer(lw, lw.operand(w), wv.shape, conv_kernels.DX_IMAGES_CB, True)
        threads = max(1, min(get_num_threads(), -(-N // 16)))
        size = conv_kernels.dx_images_scratch(C, OC, OH, OW, H, W)
        scratch = np.zeros(threads * size, np.float32)
        lw.program.add("conv_dx_images", (g, mask, packed, dst, scratch),
                       (N, C, OC, OH, OW, KH, KW, H, W, ph, pw, size, threads,
                        N * C * H * W * OC * KH * KW))
        lw.add_into(dst, total)
    if w_path is None:
        return
    need_w, need_b = lw.needs_grad(node, 1), lw.needs_grad(node, 2)
    gw, gw_total = lw.grad_target(w) if need_w else (np.zeros(wv.shape, np.float32), None)
    gb, gb_total = lw.grad_target(b) if need_b else (None, None)
    chunk = conv_kernels.IMAGES_PER_DW_CHUNK
    nchunks = -(-N // chunk)
    partial_w = np.zeros(nchunks * OC * C * T, np.float32)
    partial_b = np.zeros(nchunks * OC, np.float32)
    program = lw.program
    work = N * OC * OH * OW * C * T
    if w_path == "packed":  # conv._packed_backward_weight
        P = OH * OW
        Hp, Wp = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
        plane, ocp = Hp * Wp, -(-OC // 16) * 16
        slack = (dw_tb(KW) - 1) * dw + 16
        xpad = np.zeros(N * C * plane + slack, np.float32)
        program.add("pad_planes", (lw.operand(x), None, xpad),
                    (N, C, H, W, C, Hp, Wp, ph, pw, slack, 1, 1))
        gt = np.zeros(N * P * ocp, np.float32)
        program.add("conv_transpose_grad", (g, mask, gt), (N, OC, P, ocp, work))
        p = np.arange(P, dtype=np.intp)
        pix_in = (p // OW) * sh * Wp + (p % OW) * sw
        program.add("conv_dw_packed", (xpad, gt, pix_in, partial_w, partial_b),
                    (N, C, OC, KH, KW, dh, dw, Wp, plane, P, ocp, chunk, work))
    else:  # conv._direct_backward_weight: scratch for this many workers, at least the default
        # thread count (a program lowered at 1 thread may run at more); a run with more
        # threads than this uses this many, with the same bits
        workers = max(1, get_num_threads(), default_num_threads())
        scratch = np.zeros(workers * conv_kernels.direct_dw_scratch(
            C, OC, OH, OW, KH, KW, sh, sw, dh, dw, mask is not None), np.float32)
        program.add("conv_dw_direct", (lw.operand(x), g, mask, partial_w, partial_b, scratch),
                    (N, C, H, W, OC, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, workers))
    program.add("sum_chunks", (partial_w, gw), (nchunks, OC * C * T))
    lw.add_into(gw, gw_total)
    if gb is not None:
        program.add("sum_chunks", (partial_b, gb), (nchunks, OC))
        lw.add_into(gb, gb_total)


def _shaped(v: Value) -> np.ndarray:
    """A zero-copy array with v's shape and dtype (for shape rules that read arrays)."""
    return np.broadcast_to(np.zeros((), v.dtype), v.shape)


def _pack_buffer(lw: Lowered, weight, w_shape: tuple, ocb: int, flip: bool) -> np.ndarray:
    """A zeroed [blocks][C][KH*KW][ocb] buffer and the instruction refilling it per call (in
    an inference program, only when the weight's bytes changed since the last call)."""
    OC, C, KH, KW = w_shape
    OCo, Ci = (C, OC) if flip else (OC, C)
    packed = np.zeros(-(-OCo // ocb) * Ci * KH * KW * ocb, np.float32)
    seen, filled = (None, None) if lw.training else (np.empty(OC * C * KH * KW, np.float32),
                                                     np.zeros(1, np.uint8))
    lw.program.add("pack_conv_weights", (weight, packed, seen, filled),
                   (OC, C, KH, KW, ocb, int(flip)))
    return packed


def _direct_conv(lw: Lowered, src, src_shape: tuple, mask, weight, w_shape: tuple, flip: bool,
                 bias, out: np.ndarray, top_left: tuple, stride: tuple, dilation: tuple,
                 relu: bool) -> None:
    """Instructions of conv._direct_conv(src, mask, weight, flip, bias, out, top, left, ...,
    sh, sw) and its _direct_rows (src and mask: arrays of the program), with the buffers and
    work split conv.direct_layout gives it."""
    from minidl._kernels import conv as conv_kernels

    N, C = src_shape[:2]
    KH, KW = w_shape[2:]
    OC, OH, OW = out.shape[1:]
    (sh, sw), (dh, dw) = stride, dilation
    layout = conv_kernels.direct_layout(C, OC, OH, OW, KH, KW, sh, sw, dh, dw,
                                        get_num_threads())
    Hp, Wp, ocb, rows = layout["Hp"], layout["Wp"], layout["ocb"], layout["rows"]
    plane, T = sh * sw * Hp * Wp, KH * KW
    packed = _pack_buffer(lw, weight, w_shape, ocb, flip)
    steps = conv_kernels._tap_offsets(C, KH, KW, Hp, Wp, sh, sw, dh, dw)
    group = layout["group"]
    clips = (conv_kernels.row_clips(OH, KH, KW, top_left[0], src_shape[2], dh) if sh == 1
             else None)
    work = N * OC * OH * OW * C * T
    threads = get_num_threads()
    if conv_kernels.direct_per_image(N, threads):
        # A padded image per thread (the program runs on at most `threads` of them).
        buffers = np.zeros(threads * C * plane, np.float32)
        lw.program.add("conv_rows_images", (buffers, steps, packed, bias, out, clips, src, mask),
                       (N, C * T, layout["block_steps"], ocb, OC, OH, OW, Wp, C * plane,
                        -(-OC // ocb), -(-OH // rows), rows, int(relu), work, C,
                        *src_shape[2:], Hp, *top_left, sh, sw, threads))
        return
    xpad = np.zeros(min(N, group) * C * plane, np.float32)
    for n0 in range(0, N, group):
        n = min(N, n0 + group) - n0
        lw.program.add("pad_planes", (src[n0:n0 + n], None if mask is None else mask[n0:n0 + n],
                                      xpad),
                       (n, C, *src_shape[2:], C, Hp, Wp, *top_left, 0, sh, sw))
        lw.program.add("conv_rows", (xpad, steps, packed, bias, out[n0:n0 + n], clips),
                       (n, C * T, layout["block_steps"], ocb, OC, OH, OW, Wp, C * plane,
                        -(-OC // ocb), -(-OH // rows), rows, int(relu),
                        n * OC * OH * OW * C * T))


def _packed_conv(lw: Lowered, x, x_shape: tuple, weight, w_shape: tuple, bias, out: np.ndarray,
                 stride: tuple, padding: tuple, dilation: tuple, relu: bool) -> None:
    """Instructions of conv._packed_conv(x, weight, bias, out, ...), with the buffers and
    work split conv.packed_layout gives it."""
    from minidl._kernels import conv as conv_kernels

    N, C = x_shape[:2]
    KH, KW = w_shape[2:]
    OC, OH, OW = out.shape[1:]
    (sh, sw), (dh, dw) = stride, dilation
    P, T = OH * OW, KH * KW
    layout = conv_kernels.packed_layout(OC, OH, OW, KH, KW, sh, sw, dh, dw)
    Hp, Wp, nb, pix = layout["Hp"], layout["Wp"], layout["nb"], layout["pix"]
    plane, ocb = Hp * Wp, 16 * nb
    if conv_kernels.packed_reads_input(*x_shape[2:], Hp, Wp, *padding):
        xpad = x
    else:
        xpad = np.zeros(N * C * plane, np.float32)
        lw.program.add("pad_planes", (x, None, xpad),
                       (N, C, *x_shape[2:], C, Hp, Wp, *padding, 0, 1, 1))
    packed = _pack_buffer(lw, weight, w_shape, ocb, False)
    steps = conv_kernels._tap_offsets(C, KH, KW, Hp, Wp, 1, 1, dh, dw)
    lw.program.add("conv_pixels", (xpad, steps, packed, bias, out),
                   (N, C * T, nb, ocb, OC, OH, OW, Wp, sh, sw, C * plane, -(-OC // ocb),
                    -(-P // pix), pix, int(relu), KW if dw == 1 else 0))


def _max_pool(lw: Lowered, node: Node) -> bool:
    (x,) = node.args
    a = node.attrs
    if not lw.readable(x) or a.get("indices_sink") is not None:
        return False
    N, C, H, W = lw.values[x].shape
    OH, OW = a["out_size"]
    if (a["kernel"], a["stride"], a["padding"], a["dilation"]) != ((2, 2), (2, 2), (0, 0),
                                                                  (1, 1)):
        return False
    if (OH, OW) != (H // 2, W // 2) or OH * OW == 0:
        return False
    out = lw.buffer(node.out)
    code = None  # inference: the kernel writes no window codes
    if lw.training:
        code = lw.pool_codes[node.out] = np.zeros(out.shape, np.uint8)
    lw.program.add("max_pool_2x2", (lw.operand(x), out, code), (N * C * OH, H, W, OH, OW,
                                                                 N * C * H * W))
    return True


def _linear(lw: Lowered, node: Node) -> bool:
    x, w, b = node.args
    if not (lw.readable(x) and lw.readable(w)) or (isinstance(b, int) and not lw.readable(b)):
        return False
    if not isinstance(b, int) and b[1] is not None:
        return False
    ov = lw.values[node.out]
    if ov.dtype != _F32 or ov.nbytes == 0:
        return False
    n_out, k = lw.values[w].shape
    out = lw.buffer(node.out)
    lw.program.add("linear", (lw.operand(x), lw.operand(w), lw.operand(b) if isinstance(b, int)
                              else None, out),
                   (out.size // n_out, n_out, k, int(bool(node.attrs.get("relu")))))
    return True


def _relu(lw: Lowered, node: Node) -> bool:
    (x,) = node.args
    if not lw.readable(x):
        return False
    out = lw.buffer(node.out)
    lw.program.add("relu", (lw.operand(x), out), (out.size,))
    return True


def _add(lw: Lowered, node: Node) -> bool:
    """Operands of the output's shape (no broadcasting), float32; relu: the fused epilogue."""
    if len(node.args) != 2 or not all(lw.readable(a) for a in node.args):
        return False
    shape = lw.values[node.out].shape
    if any(lw.values[a].shape != shape for a in node.args):
        return False
    a, b = node.args
    out = lw.buffer(node.out)
    lw.program.add("add", (lw.operand(a), lw.operand(b), out),
                   (out.size, int(bool(node.attrs.get("relu")))))
    return True


def _add_backward(lw: Lowered, node: Node) -> None:
    need = [lw.needs_grad(node, i) for i in range(2)]
    if not any(need):
        return
    targets = [lw.grad_target(a) if n else (None, None) for a, n in zip(node.args, need)]
    g = lw.grads[node.out]
    lw.program.add("add_backward", (g, lw.arrays[node.out] if node.attrs.get("relu") else None,
                                    targets[0][0], targets[1][0]), (g.size,))
    for dst, total in targets:
        if dst is not None:
            lw.add_into(dst, total)


def _max_pool_backward(lw: Lowered, node: Node) -> None:
    (x,) = node.args
    if not lw.needs_grad(node, 0):
        return
    dst, total = lw.grad_target(x)
    N, C, H, W = lw.values[x].shape
    OH, OW = node.attrs["out_size"]
    lw.program.add("max_pool_backward", (lw.grads[node.out], lw.pool_codes[node.out], dst),
                   (N * C * OH, H, W, OH, OW, N * C * H * W))
    lw.add_into(dst, total)


def _linear_backward(lw: Lowered, node: Node) -> None:
    x, w, b = node.args
    need = [lw.needs_grad(node, i) for i in range(3)]
    if not any(need):
        return
    n_out, k = lw.values[w].shape
    g = lw.grads[node.out]
    m = g.size // n_out
    relu = bool(node.attrs.get("relu"))
    targets = [lw.grad_target(a) if n else (None, None) for a, n in zip(node.args, need)]
    lw.program.add("linear_backward",
                   (g, lw.arrays[node.out] if relu else None, lw.operand(w), lw.operand(x),
                    targets[0][0], targets[1][0], targets[2][0],
                    np.zeros(g.size, np.float32) if relu else None),
                   (m, n_out, k))
    for dst, total in targets:
        if dst is not None:
            lw.add_into(dst, total)


def _relu_backward(lw: Lowered, node: Node) -> None:
    (x,) = node.args
    if not lw.needs_grad(node, 0):
        return
    dst, total = lw.grad_target(x)
    lw.program.add("relu_backward", (lw.grads[node.out], lw.arrays[node.out], dst), (dst.size,))
    lw.add_into(dst, total)


def _cross_entropy(lw: Lowered, node: Node) -> bool:
    """The fused path of CrossEntropy.forward (no class weights, no smoothing, mean or sum,
    (N, C) float32 scores, (N,) int64 targets, an ignore_index outside [0, C))."""
    x, target, weight = node.args
    a = node.attrs
    if not lw.readable(x) or not isinstance(target, int) or weight != ("const", None):
        return False
    xv, tv = lw.values[x], lw.values[target]
    if (len(xv.shape) != 2 or tv.dtype != np.int64 or tv.shape != (xv.shape[0],)
            or a["label_smoothing"] != 0.0 or a["reduction"] not in ("mean", "sum")
            or 0 <= a["ignore_index"] < xv.shape[1] or tv.kind != "input"):
        return False
    n, c = xv.shape
    prob = np.zeros(xv.shape, np.float32)
    lw.ce_prob[node.out] = prob
    lw.program.add("softmax_cross_entropy",
                   (lw.operand(x), lw.buffer(target), prob, np.zeros(n, np.float64),
                    lw.buffer(node.out)), (n, c, int(a["reduction"] == "mean")))
    return True


def _cross_entropy_backward(lw: Lowered, node: Node) -> None:
    x, target, _ = node.args
    if not lw.needs_grad(node, 0):
        return
    dst, total = lw.grad_target(x)
    n, c = lw.values[x].shape
    lw.program.add("softmax_cross_entropy_backward",
                   (lw.grads[node.out], lw.ce_prob[node.out], lw.buffer(target), dst),
                   (n, c, int(node.attrs["reduction"] == "mean")))
    lw.add_into(dst, total)


def _reshape_backward(lw: Lowered, node: Node) -> None:
    """The gradient viewed back in the input's shape: a view when it is the input's only
    contribution, else added in."""
    (x,) = node.args
    if not lw.needs_grad(node, 0):
        return
    g = lw.grads[node.out].reshape(lw.values[x].shape)
    total = lw.grads.get(x)
    if total is None:
        lw.grads[x] = g
        lw.reached.add(x)
    else:
        lw.program.add("add", (total, g, total), (total.size,))


def _reshape(lw: Lowered, node: Node) -> bool:
    """A view of the input's buffer: no instruction."""
    (x,) = node.args
    if not isinstance(x, int) or lw.values[x].kind not in ("node", "input"):
        return False
    base = lw.buffer(x)
    lw.arrays[node.out] = base.reshape(lw.values[node.out].shape)
    return True


# An op's `lowering` trait -> (forward lowering: emits instructions and returns True, or
# declines with False; backward lowering: emits the backward's instructions). Training lowers
# an op only when the forward lowering accepts the node knowing its backward must follow.
LOWERINGS: dict[str, tuple[Callable[[Lowered, Node], bool], Callable[[Lowered, Node], None]]] = {
    "conv2d": (_conv2d, _conv2d_backward),
    "max_pool2d": (_max_pool, _max_pool_backward),
    "linear": (_linear, _linear_backward),
    "relu": (_relu, _relu_backward),
    "add": (_add, _add_backward),
    "reshape": (_reshape, _reshape_backward),
    "cross_entropy": (_cross_entropy, _cross_entropy_backward),
}
