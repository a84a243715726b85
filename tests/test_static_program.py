"""Compiled programs (minidl.static.lower): the same bits as the Python replay, Python nodes
inside a program, parameters replaced or changed in place, concurrent calls of one graph."""

import threading

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.graph import Function
from minidl.models import LeNet5, resnet20
from minidl.nn import functional as F


def images(n, seed=0, shape=(1, 28, 28), dtype=np.float32):
    rng = np.random.default_rng(seed)
    return minidl.tensor(rng.standard_normal((n,) + shape).astype(dtype))


def both(model, x):
    """(program, replay) compiled inference graphs of one model."""
    program = minidl.compile(model, example_inputs=(x,))
    program.graph.run = replay_forbidden
    replay = minidl.compile(model, example_inputs=(x,), executor="replay")
    return program, replay


def assert_same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), f"max difference {np.max(np.abs(a - b))}"


def opcodes(compiled):
    return compiled.graph.lower().program.opcodes()


@pytest.mark.parametrize("n", [1, 3, 64])
def test_lenet_program_has_no_python_node_and_gives_the_replays_bits(n):
    minidl.manual_seed(0)
    model = LeNet5()
    program, replay = both(model, images(n))
    ops = opcodes(program)
    assert "python" not in ops
    assert {"conv_pixels", "max_pool_2x2", "linear"} <= set(ops)
    # conv1 pads image by image inside the work items with 8+ images per thread (or 1 thread).
    per_image = n >= 8 * minidl.get_num_threads() or minidl.get_num_threads() == 1
    assert ("conv_rows_images" if per_image else "conv_rows") in ops
    for seed in range(3):
        x = images(n, seed=seed)
        out = program(x)
        assert_same_bits(out.data, replay(x).data)
        np.testing.assert_allclose(out.data, model.eval()(x).data, rtol=1e-5, atol=1e-6)


class Mixed(nn.Module):
    """C-lowered ops around ops with no kernel in the program (tanh, a 3x3 stride-1 max pool,
    a stride-2 convolution, leaky ReLU) and a standalone ReLU and reshape."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 5, 3, stride=2)
        # 45 multiply-adds per output: the channel-packed kernel (conv_pixels) takes it.
        self.conv3 = nn.Conv2d(5, 16, 3, padding=1, bias=False)
        self.fc = nn.Linear(16 * 3 * 3, 6)

    def forward(self, x):
        x = F.relu(self.conv1(x)).tanh()
        x = F.max_pool2d(x, 3, stride=1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc(F.relu(x.reshape(x.shape[0], -1)))


def test_python_nodes_inside_a_program_give_the_replays_bits():
    minidl.manual_seed(1)
    model = Mixed()
    x = images(2, shape=(2, 15, 15))
    program, replay = both(model, x)
    ops = opcodes(program)
    assert "python" in ops and "conv_pixels" in ops
    assert "conv_rows" in ops or "conv_rows_images" in ops
    for seed in range(2):
        x = images(2, seed=seed, shape=(2, 15, 15))
        assert_same_bits(program(x).data, replay(x).data)


def test_float64_and_empty_batches_run_as_python_nodes():
    minidl.manual_seed(2)
    model = LeNet5().double()
    x = images(2, dtype=np.float64)
    program, replay = both(model, x)
    assert set(opcodes(program)) == {"python"}
    assert_same_bits(program(x).data, replay(x).data)
    empty = minidl.tensor(np.zeros((0, 5), np.float32))
    model = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
    program, replay = both(model, empty)
    assert set(opcodes(program)) == {"python"}
    assert program(empty).shape == (0, 2)


def test_parameters_changed_in_place_or_replaced_are_read_by_the_next_call():
    minidl.manual_seed(3)
    model = LeNet5()
    x = images(2)
    program, replay = both(model, x)
    program(x)
    with minidl.no_grad():
        model.conv2.weight.data *= 0.5  # in place
    model.fc1.weight.data = model.fc1.weight.data * 2  # a new array
    assert_same_bits(program(x).data, replay(x).data)
    np.testing.assert_allclose(program(x).data, model.eval()(x).data, rtol=1e-5, atol=1e-6)
    # A strided parameter no longer fits the program's operands: that call replays.
    wide = np.zeros((120, 800), np.float32)
    wide[:, ::2] = model.fc1.weight.data
    model.fc1.weight.data = wide[:, ::2]
    with pytest.raises(AssertionError, match="replayed"):
        program(x)
    del program.graph.run
    assert_same_bits(program(x).data, replay(x).data)


def test_bits_do_not_depend_on_the_thread_count():
    minidl.manual_seed(4)
    model = LeNet5()
    x = images(64)
    program = minidl.compile(model, example_inputs=(x,))
    before = minidl.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            results.append(program(x).data)
    finally:
        minidl.set_num_threads(before)
    for r in results[1:]:
        assert_same_bits(r, results[0])


class Rendezvous(Function):
    """Identity whose forward waits for a second thread inside the same compiled graph:
    with calls serialized by a lock it would time out."""

    barrier = None

    @staticmethod
    def forward(ctx, x):
        if Rendezvous.barrier is not None:
            Rendezvous.barrier.wait(timeout=10)
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g


class WithRendezvous(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(Rendezvous.apply(F.relu(self.fc1(x))))


@pytest.mark.parametrize("executor", ["program", "replay"])
def test_two_threads_run_one_compiled_graph_at_once(executor):
    minidl.manual_seed(5)
    model = WithRendezvous()
    rng = np.random.default_rng(0)
    xs = [minidl.tensor(rng.standard_normal((3, 8)).astype(np.float32)) for _ in range(2)]
    compiled = minidl.compile(model, example_inputs=(xs[0],), executor=executor)
    expected = [compiled(x).data for x in xs]
    Rendezvous.barrier = threading.Barrier(2)
    results, errors = {}, []

    def call(k):
        try:
            for _ in range(20):
                out = compiled(xs[k]).data
                assert_same_bits(out, expected[k])
            results[k] = out
        except Exception as e:  # reported below: a failed thread must fail the test
            errors.append(e)

    try:
        threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        Rendezvous.barrier = None
    assert not errors, errors
    assert sorted(results) == [0, 1]


def test_unknown_executor_is_rejected():
    with pytest.raises(ValueError, match="executor must be one of"):
        minidl.compile(LeNet5(), example_inputs=(images(1),), executor="fast")


def replay_forbidden(*args, **kwargs):
    raise AssertionError("the call replayed instead of running the program")


def labels(n, seed=0, classes=10):
    return minidl.tensor(np.random.default_rng(seed + 100).integers(0, classes, n))


def train_steps(make_model, executor, shape, classes, steps=3, n=8, accumulate=False):
    """Losses, outputs and per-step gradients and weights of SGD steps on one compiled graph."""
    from minidl import optim

    minidl.manual_seed(7)
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = minidl.compile(model, F.cross_entropy, example_inputs=(images(n, shape=shape),
                                                                   labels(n, classes=classes)),
                          executor=executor)
    if executor == "program":
        step.graph.run = replay_forbidden  # every call must run the program
    record = []
    for i in range(steps):
        if not accumulate:
            opt.zero_grad()
        loss = step(images(n, seed=i, shape=shape), labels(n, seed=i, classes=classes))
        record.append(loss.data)
        record.append(step.output.data)
        record.extend(p.grad.data.copy() for p in model.parameters())
        opt.step()
        record.extend(p.data.copy() for p in model.parameters())
    return record, step


class MixedTrain(Mixed):
    def forward(self, x):
        return super().forward(x)


@pytest.mark.parametrize("make_model, shape, classes", [(LeNet5, (1, 28, 28), 10),
                                                         (MixedTrain, (2, 15, 15), 6),
                                                         (resnet20, (3, 8, 8), 10)],
                         ids=["lenet5", "python_nodes", "resnet20"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["zero_grad", "accumulate"])
def test_training_program_gives_the_replays_bits(make_model, shape, classes, accumulate):
    program, step = train_steps(make_model, "program", shape, classes, accumulate=accumulate)
    replay, _ = train_steps(make_model, "replay", shape, classes, accumulate=accumulate)
    ops = step.graph.lower().program.opcodes()
    assert {"softmax_cross_entropy", "linear_backward"} <= set(ops)
    assert len(program) == len(replay)
    for a, b in zip(program, replay):
        assert_same_bits(a, b)


def test_training_program_out_of_range_target_raises_like_the_replay():
    minidl.manual_seed(8)
    model = LeNet5()
    x, y = images(4), labels(4)
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    bad = minidl.tensor(np.array([0, 1, 10, 2]))
    with pytest.raises((IndexError, ValueError), match="cross_entropy"):
        step(x, bad)
    model.zero_grad()
    step(x, y)  # the program still runs afterwards
    assert all(p.grad is not None for p in model.parameters())


def test_parameter_hooks_run_in_a_training_step():
    minidl.manual_seed(9)
    model = LeNet5()
    x, y = images(4), labels(4)
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    seen = []
    model.fc3.bias.register_hook(lambda g: seen.append(g.data.copy()))
    step(x, y)
    assert len(seen) == 1
    np.testing.assert_array_equal(model.fc3.bias.grad.data, seen[0])


def test_training_program_bits_do_not_depend_on_the_thread_count():
    before = minidl.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            runs.append(train_steps(LeNet5, "program", (1, 28, 28), 10, steps=1, n=64)[0])
    finally:
        minidl.set_num_threads(before)
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert_same_bits(a, b)


def test_a_program_lowered_at_one_thread_runs_at_more_with_the_same_bits():
    """Per-worker scratch (the row-vector weight gradient's) is sized when the program is
    lowered; a run at more threads than that stays within it."""
    before = minidl.get_num_threads()
    grads = []
    try:
        minidl.set_num_threads(1)
        minidl.manual_seed(7)
        model = LeNet5()
        x, y = images(64), labels(64)
        step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y), executor="program")
        step.graph.run = replay_forbidden
        for n in (1, 3):
            minidl.set_num_threads(n)
            model.zero_grad()
            step(x, y)
            grads.append([p.grad.data.copy() for p in model.parameters()])
    finally:
        minidl.set_num_threads(before)
    for a, b in zip(*grads):
        assert_same_bits(a, b)


def test_a_strided_input_array_is_copied_into_the_program_like_a_contiguous_one():
    minidl.manual_seed(10)
    model = LeNet5()
    x = images(2)
    program, _ = both(model, x)
    lowered = program.graph.lower()
    wide = np.zeros((2, 1, 28, 56), np.float32)
    wide[..., ::2] = x.data
    (strided,) = lowered.run([wide[..., ::2]], 1)
    (contiguous,) = lowered.run([x.data], 1)
    assert_same_bits(strided, contiguous)
    assert_same_bits(contiguous, program(x).data)


def counting_python_path(compiled):
    """A list that gets one entry per call taking the Python path (StaticGraph.execute) of
    any of the compiled callable's graphs, traced so far or later."""
    from minidl.static.executor import StaticGraph

    calls = []
    for g in compiled.graphs.values():
        execute = g.execute
        g.execute = lambda arrays, execute=execute: calls.append(1) or execute(arrays)
    trace = compiled._graph_for

    def graph_for(inputs):
        known = len(compiled.graphs)
        g = trace(inputs)
        if len(compiled.graphs) > known:
            g.execute = lambda arrays: calls.append(1) or StaticGraph.execute(g, arrays)
        return g

    compiled._graph_for = graph_for
    return calls


def test_an_inference_call_runs_in_c_with_the_python_paths_bits():
    minidl.manual_seed(11)
    model = LeNet5()
    program, replay = both(model, images(1))
    calls = counting_python_path(program)
    for seed in range(3):
        x = images(1, seed=seed)
        out = program(x)
        assert program.output is out and out.data.flags.c_contiguous
        assert_same_bits(out.data, replay(x).data)
        # A fresh array per call: the caller keeps it past the next call.
        assert not np.shares_memory(out.data, program(x).data)
        assert_same_bits(out.data, StaticGraph_execute(program, x))
    assert not calls


def StaticGraph_execute(compiled, x):
    from minidl.static.executor import StaticGraph

    return StaticGraph.execute(compiled.graph, [x.data])[0]


def test_inputs_the_c_call_declines_take_the_python_path_with_the_same_bits():
    minidl.manual_seed(12)
    model = LeNet5()
    x = images(2)
    program, replay = both(model, x)
    calls = counting_python_path(program)
    expected = replay(x).data
    wide = np.zeros((2, 1, 28, 56), np.float32)
    wide[..., ::2] = x.data
    strided = minidl.tensor(x.data.copy())
    strided.data = wide[..., ::2]  # a Tensor over a strided array (set behind its back)
    for declined in (x.data, strided, nn.Parameter(x.data.copy()), x.data.tolist()):
        assert_same_bits(program(declined).data, expected)
    assert len(calls) == 4
    assert_same_bits(program(x).data, expected)
    assert len(calls) == 4
    # Another batch size is another graph: each call runs the graph of its input's shape.
    for n in (1, 2, 1, 3, 3):
        xn = images(n, seed=n)
        assert_same_bits(program(xn).data, replay(xn).data)
    assert len(calls) == 8  # the calls whose shape is not the previous call's


def outcome(f):
    """("raises", type, message) or ("returns", bytes) of f()."""
    try:
        return ("returns", np.asarray(f().data).tobytes())
    except Exception as e:  # compared between the program and the replay
        return ("raises", type(e), str(e))


@pytest.mark.parametrize("bad", [(1, 3, 28, 28), (1, 1, 5, 5), np.float64, np.int32])
def test_a_wrong_input_after_c_calls_raises_the_ops_error(bad):
    minidl.manual_seed(13)
    model = LeNet5().eval()
    program = minidl.compile(model, example_inputs=(images(1),))
    program(images(1))
    if isinstance(bad, tuple):
        x = images(bad[0], shape=bad[1:])
    else:
        x = minidl.tensor(images(1).data.astype(bad))
    eager = outcome(lambda: model(x))
    got = outcome(lambda: program(x))
    assert eager[0] == "raises" and got[:2] == eager[:2], (got, eager)
    assert "conv2d" in got[2] or "linear" in got[2], got


def test_a_parameter_array_changed_in_place_is_rebound_or_replayed():
    minidl.manual_seed(14)
    model = LeNet5()
    x = images(1)
    program = minidl.compile(model, example_inputs=(x,))
    replay = minidl.compile(model, example_inputs=(x,), executor="replay")
    program(x)
    w = model.fc1.weight.data
    # Its memory moved (grown then shrunk back in place, keeping the values), then changed:
    # the program must read the new memory.
    shape = w.shape
    w.resize((shape[0] * 1000, shape[1]), refcheck=False)
    w.resize(shape, refcheck=False)
    w *= 2
    assert_same_bits(program(x).data, replay(x).data)
    # Another shape or dtype on the same array object: the call does what the replay does.
    fc3 = model.fc3.weight.data
    for change, undo in ((lambda: setattr(fc3, "shape", (84, 10)),
                          lambda: setattr(fc3, "shape", (10, 84))),
                         (lambda: setattr(fc3, "dtype", np.int32),
                          lambda: setattr(fc3, "dtype", np.float32))):
        change()
        got, expected = outcome(lambda: program(x)), outcome(lambda: replay(x))
        assert got == expected and got[0] == "raises", (got, expected)
        undo()
        assert_same_bits(program(x).data, replay(x).data)


def test_a_conv_algorithm_switch_between_c_calls_relowers_the_program(monkeypatch):
    from minidl.backends import conv as conv_backend

    minidl.manual_seed(15)
    model = LeNet5()
    x = images(1)
    program, replay = both(model, x)
    calls = counting_python_path(program)
    program(x)
    monkeypatch.setattr(conv_backend, "algorithm", "im2col")
    assert_same_bits(program(x).data, replay(x).data)
    assert len(calls) == 1  # the Python path lowered a program for the new algorithm
    assert_same_bits(program(x).data, replay(x).data)
    assert len(calls) == 1
    assert program.graph._idle_programs[0].conv_algorithm == "im2col"


class Recorded(Function):
    """x * 2 from Python (no kernel in the program); remembers the arrays it returned."""

    returned: list = []

    @staticmethod
    def forward(ctx, x):
        out = x * 2
        Recorded.returned.append(out)
        return out

    @staticmethod
    def backward(ctx, g):
        grad = g * 2
        Recorded.returned.append(grad)
        return grad


class PythonChain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(Recorded.apply(Recorded.apply(self.fc1(x)).tanh()))


def test_python_nodes_keep_results_only_python_nodes_read_without_copying_them():
    """A value produced and read by Python nodes only (forward and gradient) is the array
    the op returned; one an instruction reads is copied into the program's buffer."""
    minidl.manual_seed(11)
    model = PythonChain()
    x, y = minidl.tensor(np.ones((4, 6), np.float32)), labels(4, classes=3)
    step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    g = step.graph
    lowered = g.lower()
    Recorded.returned = []
    lowered.run([x.data, y.data], 1)
    first, second = (n.out for n in g.nodes if n.fn is Recorded)
    # Forward: the first result feeds tanh (Python): kept; the second feeds fc2 (a kernel).
    assert lowered.arrays[first] is Recorded.returned[0]
    assert lowered.arrays[second] is not Recorded.returned[1]
    assert_same_bits(lowered.arrays[second], Recorded.returned[1])
    # Backward: the second's input gradient goes to tanh's backward (Python): kept.
    tanh_out = next(n.out for n in g.nodes if first in n.value_args())
    assert lowered.grad_arrays[tanh_out] is Recorded.returned[2]
    replay = minidl.compile(model, F.cross_entropy, example_inputs=(x, y), executor="replay")
    model.zero_grad()
    loss = step(x, y)
    grads = [p.grad.data.copy() for p in model.parameters()]
    model.zero_grad()
    assert_same_bits(loss.data, replay(x, y).data)
    for p, expected in zip(model.parameters(), grads):
        assert_same_bits(p.grad.data, expected)


def test_program_buffers_are_shared_as_the_memory_plan_lets_them():
    minidl.manual_seed(12)
    model = LeNet5()
    program, replay = both(model, images(16))
    lowered = program.graph.lower()
    held = sum(b.nbytes for b in lowered.plan_buffers if b is not None)
    values = program.graph.values
    planned = sum(values[v].nbytes for v in lowered.plan.slot_of)
    assert 0 < held < planned
    x = images(16, seed=1)
    assert_same_bits(lowered.run([x.data], 1)[0], replay(x).data)


def test_training_program_reuses_dead_gradient_buffers_and_keeps_the_replays_bits():
    """Gradient buffers no instruction reads any more (a C node's output gradient after its
    backward, contributions' scratch) serve later gradients; the bits stay the replay's."""
    from minidl.static.lower import Lowered

    handed = []
    original = Lowered._gradient_buffer

    def recording(self, v):
        g = original(self, v)
        handed.append(g)
        return g

    Lowered._gradient_buffer = recording
    try:
        program, step = train_steps(resnet20, "program", (3, 8, 8), 10, steps=2)
    finally:
        Lowered._gradient_buffer = original
    assert len({id(g) for g in handed}) < len(handed)
    replay, _ = train_steps(resnet20, "replay", (3, 8, 8), 10, steps=2)
    for a, b in zip(program, replay):
        assert_same_bits(a, b)


def test_conv_instructions_take_the_kernel_modules_layout(monkeypatch):
    """The program's direct and packed convolutions get their buffers and work split from
    conv.direct_layout / conv.packed_layout, the helpers conv._direct_conv and
    conv._packed_conv use: the two cannot drift apart."""
    from minidl._kernels import conv as conv_kernels

    asked = []
    for name in ("direct_layout", "packed_layout"):
        helper = getattr(conv_kernels, name)

        def recording(*args, helper=helper, name=name):
            asked.append(name)
            return helper(*args)

        monkeypatch.setattr(conv_kernels, name, recording)
    minidl.manual_seed(13)
    model = LeNet5()
    x = images(3)
    program, replay = both(model, x)
    lowered = program.graph.lower()
    assert {"direct_layout", "packed_layout"} <= set(asked)
    assert_same_bits(lowered.run([x.data], 1)[0], replay(x).data)


class TwoPythonReaders(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 9)
        self.fc2 = nn.Linear(9, 3)

    def forward(self, x):
        h = self.fc1(x)  # a kernel's output: its gradient lives in a buffer of the program
        return self.fc2(h.tanh() * h.sigmoid())


def test_python_contributions_are_added_into_a_gradient_buffer_without_scratch():
    from minidl.static.lower import Lowered

    handed = []
    original = Lowered._gradient_buffer

    def recording(self, v):
        handed.append(v.shape)
        return original(self, v)

    minidl.manual_seed(14)
    model = TwoPythonReaders()
    x, y = minidl.tensor(np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)), \
        labels(5, classes=3)
    Lowered._gradient_buffer = recording
    try:
        step = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    finally:
        Lowered._gradient_buffer = original
    # One buffer each for the gradients of the product (fc2 reads it) and of h (both Python
    # contributions go into it; a scratch buffer for the second would make it three).
    assert handed.count((5, 9)) == 2
    replay = minidl.compile(model, F.cross_entropy, example_inputs=(x, y), executor="replay")
    model.zero_grad()
    loss = step(x, y)
    grads = [p.grad.data.copy() for p in model.parameters()]
    model.zero_grad()
    assert_same_bits(loss.data, replay(x, y).data)
    for p, expected in zip(model.parameters(), grads):
        assert_same_bits(p.grad.data, expected)


def test_add_into_adds_only_into_a_c_contiguous_float32_array_of_the_same_shape():
    """The program adds its gradients into an existing .grad in C (the accumulate case of
    test_training_program_gives_the_replays_bits checks the bits); anything else is left to
    accumulate(), untouched."""
    from minidl._kernels.program import add_into

    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 0.5, np.float32)
    assert add_into(a, b) and a[1, 2] == 5.5
    assert not add_into(a, b.reshape(3, 2)) and a[1, 2] == 5.5
    assert not add_into(a, b.astype(np.float64)) and a[1, 2] == 5.5
    assert not add_into(a.astype(np.float64), b)
    assert not add_into(a.T, b.T) and a[1, 2] == 5.5
    assert not add_into(a[:, ::2], b[:, ::2]) and a[1, 2] == 5.5
    b.flags.writeable = False
    assert add_into(a, b) and a[1, 2] == 6.0  # a read-only source is fine
    assert not add_into(b, a)  # a read-only destination is not


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv_rows_images_gives_the_replays_bits_for_any_thread_count(threads):
    # Lowered at 2 threads with 16 images: conv1 (pad 2) and conv2's input gradient (pad 4)
    # run conv_rows_images, whose buffers hold 2 threads' images; run at 1, 2 and 3 threads.
    before = minidl.get_num_threads()
    try:
        minidl.set_num_threads(2)
        minidl.manual_seed(0)
        model = LeNet5()
        x, y = images(16), minidl.tensor(np.arange(16) % 10)
        program = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
        assert "conv_rows_images" in opcodes(program)
        minidl.set_num_threads(threads)
        loss = program(x, y)
        grads = [p.grad.data.copy() for p in model.parameters()]
        model.zero_grad()
        minidl.set_num_threads(1)
        want = F.cross_entropy(model(x), y)
        want.backward()
        assert_same_bits(loss.data, want.data)
        for g, p in zip(grads, model.parameters()):
            assert_same_bits(g, p.grad.data)
    finally:
        minidl.set_num_threads(before)


def test_an_inference_program_repacks_a_conv_weight_after_any_one_byte_changes():
    # Inference programs pack a conv weight only when its bytes differ from the last call's:
    # a change of one element, of a zero's sign or of a NaN's payload must reach the output.
    minidl.manual_seed(5)
    model = LeNet5()
    x = images(2)
    program, replay = both(model, x)
    for change in (lambda w: w.__setitem__((15, 5, 4, 4), w[15, 5, 4, 4] + 1),  # last entry
                   lambda w: w.__setitem__((0, 0, 0, 0), np.float32(np.inf)),
                   lambda w: w.__setitem__((0, 0, 0, 0), np.float32(-0.0)),
                   lambda w: w.__setitem__((0, 0, 0, 0), np.float32(0.0))):
        program(x)
        change(model.conv2.weight.data)
        assert_same_bits(program(x).data, replay(x).data)
    before = program(x).data.copy()
    model.conv1.weight.data[2, 0, 1, 3] *= 3  # conv1's weight: its own copy
    after = program(x).data
    assert after.tobytes() != before.tobytes()
    assert_same_bits(after, replay(x).data)


POOL_SCRIPT = """
import numpy as np, minidl
from minidl.nn import functional as F
rng = np.random.default_rng(7)
values = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 1.0, -1.0, 2.0], np.float32)
x = minidl.tensor(rng.choice(values, size=(3, 2, 10, 37)).astype(np.float32))
x.data[0, 0, :2, :2] = np.float32(np.nan) * -1  # a NaN of the other sign
pool = lambda t: F.max_pool2d(t, 2)
program = minidl.compile(pool, example_inputs=(x,))
assert "max_pool_2x2" in program.graph.lower().program.opcodes()
eager, argmax = F.max_pool2d(x, 2, return_indices=True)
np.savez(OUT, program=program(x).data, eager=eager.data, argmax=argmax.data)
"""


@pytest.mark.parametrize("isa", ["x86-64-v3", "baseline"])
def test_an_inference_pool_without_argmax_gives_the_eager_bits_on_every_isa(isa, tmp_path):
    # An inference program's 2x2 max pool writes no argmax (a path of its own in the kernel):
    # NaN (either sign), +-0 ties, +-inf and partial vectors (37 columns) as the eager op's.
    from childproc import isa_outputs

    default, forced = isa_outputs(POOL_SCRIPT, isa, tmp_path)
    for out in (default, forced):
        assert out["program"].tobytes() == out["eager"].tobytes()
        assert out["program"].tobytes() == default["eager"].tobytes()
