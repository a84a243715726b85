"""Static graphs: trace a model's forward once, then replay it for every batch.

    step = minidl.compile(model, F.cross_entropy, example_inputs=(images, labels))
    for images, labels in loader:
        optimizer.zero_grad()
        loss = step(images, labels)      # forward + backward into every parameter's .grad
        optimizer.step()

    infer = minidl.compile(model, example_inputs=(images,))   # inference: eval mode, no grad
    logits = infer(images)

Layout: `trace` (the tracer and the IR: Value, Node), `passes` (scheduling, dead-op
elimination, fusion by op traits), `memory` (liveness and the buffer plan), `lower` (the
schedule as one flat program of kernel calls, minidl._kernels.program), `executor`
(StaticGraph: the program, the replay steps and the backward tape for minidl.graph.sweep),
`compiled` (the callable `compile` returns).

How it works. Tracing runs the forward once with a tracer listening to `Function.apply`: every
op becomes a `Node` (its Function class, which values it reads, its attributes) and every tensor
a numbered value (an input, a parameter, a constant, or a node's output). The nodes are put in
order by Kahn's algorithm, ops whose results nothing reads are dropped, and fusion passes
rewrite the graph (a convolution or linear layer followed by a ReLU becomes one op with the
ReLU in its epilogue, so do BatchNorm and a residual add followed by a ReLU; in an inference
graph a BatchNorm after a convolution folds into the convolution's weight and bias, which two
small nodes recompute from the current parameters and running statistics at every call:
equal to eager up to float rounding, ~3e-7 of the output's largest value on ResNet-20). The schedule is then lowered to a flat program: per node the kernel
calls with their pointers, sizes and buffers, all checked once, which one Cython loop runs
without touching a Python object (forward, backward and the loss; ops without a kernel there,
e.g. float64 graphs, run as Python nodes inside the program). An inference call whose
inputs are tensors of the traced shapes and dtypes, on parameters still the arrays the program
was bound to, is one C call (checks, input copies, the run, the output copy: ~1.4 us of a
batch-1 LeNet call's ~13 us); any other call takes the Python path, which traces, binds,
copies or replays as needed. The replay, the reference the
program gives the same bits as (`compile(..., executor="replay")`, and profiling), calls each
node's `forward` and, in reverse, `backward` directly on arrays: no Tensor objects, no graph
recording, no topological sort per step.

Memory plan. A liveness analysis over the schedule gives each activation and gradient the
interval from the step that writes it to the last step that reads it (an activation saved for
backward lives until that backward). Activations of ops that can write into a given array
(`Function.writes_out`) are placed in buffers allocated once and shared by values whose
intervals do not overlap; `memory_report()` gives the plan's peak beside the peak of keeping
every value, which is what eager mode holds until backward.

Limits (checked where possible):
- The traced function must do the same ops for every batch: Python control flow that depends
  on tensor values is out of scope. Calling `.item()`, `bool()` or `.tolist()` on a traced value
  raises TraceError.
- Tensors created inside the forward (other than by ops on the inputs) are captured as
  constants. Compiling traces twice, the second time on perturbed inputs, and raises
  TraceError when the ops or those constants differ (data-dependent control flow, a tensor
  built from `x.data`, random tensors drawn in the forward).
- A call with different input shapes or dtypes traces again (each signature is cached): the
  smaller last batch of an epoch costs one extra trace.
- A compiled graph may be called from several threads at once: each call runs on a program
  (or replay buffers) of its own, taken from a pool of idle ones or built, so each returns the
  values a lone call would.
- Training calls replay instead of running the program while a gradient hook is registered
  on a parameter or a traced value (hooks run in the sweep's order). A backward without a
  contribution to an input that needs one leaves zeros in a program where the sweep leaves
  None.
- Gradient hooks on parameters run at every replay, as in eager mode; hooks registered on
  intermediate tensors while tracing run at every replay too (such values are not fused away).
- Module state changed outside ops (e.g. a Python counter) is not replayed; BatchNorm's running
  statistics are, because its op updates them. Tracing itself leaves no trace: the random
  generator and the module's buffers are restored after it.
"""

from minidl.static.compiled import Compiled, compile  # noqa: A004 (the public name)
from minidl.static.trace import TraceError

__all__ = ["Compiled", "TraceError", "compile"]
