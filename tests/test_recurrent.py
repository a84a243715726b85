"""RNNCell, LSTMCell, GRUCell, RNN, LSTM and GRU: parameters loaded from PyTorch's state_dict
give PyTorch's outputs, final states and every gradient (input, h0, c0, parameters), in
float64 to 1e-12 and float32 to 1e-5, over layers, directions, batch_first, proj_size,
unbatched inputs and size-1 dims; plus PyTorch's parameter names, shapes, init range, reprs,
dropout rule and errors."""

import warnings
import zlib

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck

# PyTorch notes that oneDNN has no projected LSTM and falls back to its own implementation.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")
RNG = np.random.default_rng(11)
TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(autouse=True)
def _draws_fixed_per_test(request):
    """Each test's inputs and torch's initial weights come from seeds of the test's name, so
    a test draws the same numbers whatever runs before it (a ReLU cell on one sample can
    otherwise draw weights that leave every gradient 0)."""
    global RNG
    seed = zlib.crc32(request.node.name.encode())
    RNG = np.random.default_rng(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def load_from_torch(ours, theirs):
    ours.load_state_dict({k: minidl.tensor(v.detach().numpy())
                          for k, v in theirs.state_dict().items()})


def assert_close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


def flat(result):
    """The tensors of (output, h_n) or (output, (h_n, c_n)) (or a cell's result), in order."""
    if isinstance(result, tuple):
        return [t for part in result for t in flat(part)]
    return [result]


def compare_with_torch(torch, ours, theirs, x, states, dtype):
    """Run both modules on x and the initial states (None or arrays), backpropagate the same
    random weights of every result, and compare results and gradients."""
    load_from_torch(ours, theirs)
    xm = minidl.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    hm = None if states is None else [minidl.tensor(s, requires_grad=True) for s in states]
    ht = None if states is None else [torch.tensor(s, requires_grad=True) for s in states]
    pack = (lambda h: h[0]) if states is not None and len(states) == 1 else tuple
    got = flat(ours(xm) if hm is None else ours(xm, pack(hm)))
    want = flat(theirs(xt) if ht is None else theirs(xt, pack(ht)))
    assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
    weights = [RNG.standard_normal(tuple(w.shape)).astype(dtype) for w in want]
    sum((g * minidl.tensor(r)).sum() for g, r in zip(got, weights)).backward()
    sum((w * torch.tensor(r)).sum() for w, r in zip(want, weights)).backward()
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(dtype)
        assert_close(g.numpy(), w.detach().numpy(), dtype)
    assert_close(xm.grad.numpy(), xt.grad.numpy(), dtype)
    for a, b in zip(hm or [], ht or []):
        assert_close(a.grad.numpy(), b.grad.numpy(), dtype)
    named = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(named)
    assert max(np.abs(p.grad.numpy()).max() for p in ours.parameters()) > 0
    for name, p in ours.named_parameters():
        assert_close(p.grad.numpy(), named[name].grad.numpy(), dtype)


LAYER_CASES = [
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2}),
    ("LSTM", {"bidirectional": True}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("LSTM", {"proj_size": 3}),
    ("LSTM", {"proj_size": 2, "num_layers": 2, "bidirectional": True}),
    ("LSTM", {"bias": False, "num_layers": 2}),
    ("GRU", {}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("GRU", {"batch_first": True, "bias": False}),
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}),
    ("RNN", {"batch_first": True, "bias": False}),
]
# (seq_len, batch): batch None is an unbatched (seq_len, input_size) input.
SHAPES = [(5, 3), (1, 1), (4, None)]


def layer_input(options, seq_len, batch, dtype):
    if batch is None:
        return RNG.standard_normal((seq_len, 4)).astype(dtype)
    shape = (batch, seq_len, 4) if options.get("batch_first") else (seq_len, batch, 4)
    return RNG.standard_normal(shape).astype(dtype)


def initial_states(cls, options, batch, dtype):
    stacks = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    sizes = [options.get("proj_size") or 5] + ([5] if cls == "LSTM" else [])
    lead = (stacks,) if batch is None else (stacks, batch)
    return [RNG.standard_normal(lead + (size,)).astype(dtype) for size in sizes]


# (with_states, (seq_len, batch), dtype): float64 over the shapes, float32 once per case.
LAYER_RUNS = [(False, SHAPES[0], "float64"), (True, SHAPES[0], "float64"),
              (True, SHAPES[1], "float64"), (True, SHAPES[2], "float64"),
              (False, SHAPES[2], "float64"), (True, SHAPES[0], "float32")]


@pytest.mark.parametrize("with_states,shape,dtype", LAYER_RUNS,
                         ids=["zero-states", "seq5-batch3", "seq1-batch1", "unbatched",
                              "unbatched-zero-states", "float32"])
@pytest.mark.parametrize("cls,options", LAYER_CASES,
                         ids=[c + "-" + "-".join(f"{k}={v}" for k, v in o.items())
                              for c, o in LAYER_CASES])
def test_layer_matches_torch(cls, options, with_states, shape, dtype):
    torch = pytest.importorskip("torch")
    seq_len, batch = shape
    theirs = getattr(torch.nn, cls)(4, 5, **options).to(getattr(torch, dtype))
    ours = getattr(nn, cls)(4, 5, **options, dtype=dtype)
    x = layer_input(options, seq_len, batch, dtype)
    states = initial_states(cls, options, batch, dtype) if with_states else None
    compare_with_torch(torch, ours, theirs, x, states, dtype)


CELL_CASES = [("LSTMCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {}),
              ("GRUCell", {"bias": False}), ("RNNCell", {}),
              ("RNNCell", {"nonlinearity": "relu"}), ("RNNCell", {"bias": False})]


CELL_RUNS = [(False, 3, "float64"), (True, 3, "float64"), (True, 1, "float64"),
             (True, None, "float64"), (False, None, "float64"), (True, 3, "float32")]


@pytest.mark.parametrize("with_states,batch,dtype", CELL_RUNS,
                         ids=["zero-states", "batch3", "batch1", "unbatched",
                              "unbatched-zero-states", "float32"])
@pytest.mark.parametrize("cls,options", CELL_CASES,
                         ids=[c + "-" + "-".join(f"{k}={v}" for k, v in o.items())
                              for c, o in CELL_CASES])
def test_cell_matches_torch(cls, options, with_states, batch, dtype):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, cls)(4, 5, **options).to(getattr(torch, dtype))
    ours = getattr(nn, cls)(4, 5, **options, dtype=dtype)
    lead = () if batch is None else (batch,)
    x = RNG.standard_normal(lead + (4,)).astype(dtype)
    count = 2 if cls == "LSTMCell" else 1
    states = ([RNG.standard_normal(lead + (5,)).astype(dtype) for _ in range(count)]
              if with_states else None)
    compare_with_torch(torch, ours, theirs, x, states, dtype)


def test_longer_sequence_float32_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True)
    ours = nn.LSTM(6, 8, num_layers=2, bidirectional=True)
    x = RNG.standard_normal((30, 4, 6)).astype("float32")
    compare_with_torch(torch, ours, theirs, x, None, "float32")


def test_empty_batch_matches_torch_shapes():
    torch = pytest.importorskip("torch")
    for cls in ("LSTM", "GRU", "RNN"):
        got = flat(getattr(nn, cls)(3, 4, bidirectional=True)(minidl.zeros(5, 0, 3)))
        want = flat(getattr(torch.nn, cls)(3, 4, bidirectional=True)(torch.zeros(5, 0, 3)))
        assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]


def test_gru_gradcheck_float64():
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    x = minidl.tensor(RNG.standard_normal((3, 2, 3)), requires_grad=True)
    h0 = minidl.tensor(RNG.standard_normal((4, 2, 4)), requires_grad=True)
    assert gradcheck(lambda a, h: gru(a, h)[0], [x, h0])


def test_parameter_names_shapes_and_order_match_torch():
    torch = pytest.importorskip("torch")
    for cls, kwargs in [("LSTM", {"num_layers": 3, "bidirectional": True, "proj_size": 2}),
                        ("GRU", {"num_layers": 2, "bias": False}),
                        ("RNN", {"bidirectional": True}), ("LSTMCell", {}), ("GRUCell", {}),
                        ("RNNCell", {"bias": False})]:
        ours = getattr(nn, cls)(7, 5, **kwargs).state_dict()
        theirs = getattr(torch.nn, cls)(7, 5, **kwargs).state_dict()
        assert [(k, tuple(v.shape)) for k, v in ours.items()] == \
            [(k, tuple(v.shape)) for k, v in theirs.items()], cls
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    assert [[tuple(p.shape) for p in ws] for ws in lstm.all_weights] == \
        [[tuple(p.shape) for p in ws] for ws in torch.nn.LSTM(3, 4, 2, bidirectional=True)
         .all_weights]


def test_init_is_uniform_in_pytorch_range_and_follows_minidl_seed():
    minidl.manual_seed(3)
    a = nn.LSTM(10, 16, num_layers=2)
    minidl.manual_seed(3)
    b = nn.LSTM(10, 16, num_layers=2)
    values = np.concatenate([p.numpy().ravel() for p in a.parameters()])
    assert np.abs(values).max() <= 0.25 and np.abs(values).max() > 0.24
    assert abs(values.mean()) < 0.01 and abs(values.std() - 0.25 / np.sqrt(3)) < 0.005
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    cell = nn.GRUCell(3, 100)
    assert 0.09 < np.abs(cell.weight_hh.numpy()).max() <= 0.1
    assert a.weight_ih_l0.dtype == np.float32


def test_reprs_match_torch():
    torch = pytest.importorskip("torch")
    for cls, args, kwargs in [
            ("LSTM", (3, 4), {}),
            ("LSTM", (3, 4, 2), {"proj_size": 2, "bias": False, "batch_first": True,
                                 "dropout": 0.5, "bidirectional": True}),
            ("GRU", (3, 4), {"num_layers": 2}), ("RNN", (3, 4, 1, "relu"), {}),
            ("RNNCell", (3, 4), {"nonlinearity": "relu", "bias": False}),
            ("LSTMCell", (3, 4), {}), ("GRUCell", (3, 4), {"bias": False})]:
        assert repr(getattr(nn, cls)(*args, **kwargs)) == \
            repr(getattr(torch.nn, cls)(*args, **kwargs))


def test_positional_arguments_mean_what_they_mean_in_torch():
    rnn = nn.RNN(3, 4, 2, "relu", False, True)
    assert (rnn.num_layers, rnn.nonlinearity, rnn.bias, rnn.batch_first) == (2, "relu", False,
                                                                             True)
    lstm = nn.LSTM(3, 4, 2, True, False, 0.0, True, 2)
    assert (lstm.bidirectional, lstm.proj_size) == (True, 2)


def test_dropout_applies_between_layers_in_training_only():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 2, 3))
    theirs = torch.nn.LSTM(3, 5, num_layers=2, dropout=1.0).double()
    ours = nn.LSTM(3, 5, num_layers=2, dropout=1.0).double()
    load_from_torch(ours, theirs)
    # p=1 zeroes the first layer's output: deterministic, so PyTorch's values must match.
    got, want = flat(ours(minidl.tensor(x))), flat(theirs(torch.tensor(x)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), atol=1e-13)
    ours.eval()
    theirs.eval()
    got, want = flat(ours(minidl.tensor(x))), flat(theirs(torch.tensor(x)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), atol=1e-13)
    half = nn.GRU(3, 5, num_layers=2, dropout=0.5).double()
    train_out, train_h = half(minidl.tensor(x))
    half.eval()
    eval_out, eval_h = half(minidl.tensor(x))
    assert not np.allclose(train_out.numpy(), eval_out.numpy())
    np.testing.assert_allclose(train_h.numpy()[0], eval_h.numpy()[0], atol=1e-15)


def test_constructor_errors_like_torch():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size should be a positive integer"):
        nn.LSTM(3, 4, proj_size=-1)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.GRU(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        nn.LSTM(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="input_size should be of type int"):
        nn.LSTM(3.0, 4)
    with pytest.raises(TypeError, match="bias should be of type bool"):
        nn.LSTMCell(3, 4, bias=1)
    with pytest.raises(TypeError, match="batch_first should be of type bool"):
        nn.GRU(3, 4, batch_first=None)
    with pytest.raises(TypeError):
        nn.RNN(3, 4, proj_size=2)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: gelu"):
        nn.RNNCell(3, 4, nonlinearity="gelu")(minidl.zeros(2, 3))


def test_layer_forward_errors_like_torch():
    lstm = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        lstm(minidl.zeros(5, 2, 3, 1))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. "
                                           "Expected 3, got 4"):
        lstm(minidl.zeros(5, 2, 4))
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        lstm(minidl.zeros(0, 2, 3))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 4\), got "
                                           r"\[1, 3, 4\]"):
        lstm(minidl.zeros(5, 2, 3), (minidl.zeros(1, 3, 4), minidl.zeros(1, 2, 4)))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 4\), got "
                                           r"\[1, 2, 5\]"):
        lstm(minidl.zeros(5, 2, 3), (minidl.zeros(1, 2, 4), minidl.zeros(1, 2, 5)))
    with pytest.raises(RuntimeError, match="For batched 3-D input, hx should also be 3-D"):
        lstm(minidl.zeros(5, 2, 3), (minidl.zeros(2, 4), minidl.zeros(2, 4)))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D"):
        nn.GRU(3, 4)(minidl.zeros(5, 3), minidl.zeros(1, 1, 4))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        nn.GRU(3, 4, bidirectional=True)(minidl.zeros(5, 2, 3), minidl.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="input dtype \\(float64\\) does not match weight "
                                         "dtype \\(float32\\)"):
        nn.RNN(3, 4)(minidl.zeros(5, 2, 3, dtype="float64"))


def test_cell_forward_errors_like_torch():
    cell = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D, got 3D"):
        cell(minidl.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"Expected hx\[1\] to be 1D or 2D, got 3D"):
        cell(minidl.zeros(2, 3), (minidl.zeros(2, 4), minidl.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="GRUCell: Expected hidden to be 1D or 2D, got 3D"):
        nn.GRUCell(3, 4)(minidl.zeros(2, 3), minidl.zeros(1, 2, 4))
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 5 "
                                           "expected 3"):
        cell(minidl.zeros(2, 5))
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size: got 3, "
                                           "expected 4"):
        cell(minidl.zeros(2, 3), (minidl.zeros(2, 3), minidl.zeros(2, 4)))
    with pytest.raises(RuntimeError, match="Input batch size 2 doesn't match hidden1 batch "
                                           "size 3"):
        cell(minidl.zeros(2, 3), (minidl.zeros(2, 4), minidl.zeros(3, 4)))
    with pytest.raises(RuntimeError, match="input dtype \\(float64\\)"):
        nn.RNNCell(3, 4)(minidl.zeros(2, 3, dtype="float64"))
    assert tuple(nn.GRUCell(3, 4)(minidl.zeros(0, 3)).shape) == (0, 4)


PACKED_CASES = [("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
                ("LSTM", {"batch_first": True}), ("GRU", {"bidirectional": True}),
                ("RNN", {"nonlinearity": "relu", "num_layers": 2})]


@pytest.mark.parametrize("with_states,enforce_sorted,dtype", [
    (True, False, "float64"), (False, False, "float64"), (False, True, "float64"),
    (True, False, "float32")], ids=["unsorted", "unsorted-zero-states", "sorted", "float32"])
@pytest.mark.parametrize("cls,options", PACKED_CASES,
                         ids=[c + "-" + "-".join(f"{k}={v}" for k, v in o.items())
                              for c, o in PACKED_CASES])
def test_layer_on_packed_sequence_matches_torch(cls, options, with_states, enforce_sorted,
                                                dtype):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as torch_rnn

    from minidl.nn.utils import rnn

    lengths = [6, 4, 4, 2, 1] if enforce_sorted else [2, 6, 4, 1, 4]
    theirs = getattr(torch.nn, cls)(4, 5, **options).to(getattr(torch, dtype))
    ours = getattr(nn, cls)(4, 5, **options, dtype=dtype)
    load_from_torch(ours, theirs)
    batch_first = options.get("batch_first", False)
    x = layer_input(options, 6, 5, dtype)
    states = initial_states(cls, options, 5, dtype) if with_states else None
    xm, xt = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hm = None if states is None else [minidl.tensor(s, requires_grad=True) for s in states]
    ht = None if states is None else [torch.tensor(s, requires_grad=True) for s in states]
    pack = (lambda h: h[0]) if cls != "LSTM" else tuple
    pm = rnn.pack_padded_sequence(xm, lengths, batch_first, enforce_sorted)
    pt = torch_rnn.pack_padded_sequence(xt, lengths, batch_first, enforce_sorted)
    got_packed, got_h = ours(pm) if hm is None else ours(pm, pack(hm))
    want_packed, want_h = theirs(pt) if ht is None else theirs(pt, pack(ht))
    for a, b in zip(got_packed[1:], want_packed[1:]):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    got = [rnn.pad_packed_sequence(got_packed, batch_first)[0]] + flat(got_h)
    want = [torch_rnn.pad_packed_sequence(want_packed, batch_first)[0]] + flat(want_h)
    weights = [RNG.standard_normal(tuple(w.shape)).astype(dtype) for w in want]
    sum((g * minidl.tensor(r)).sum() for g, r in zip(got, weights)).backward()
    sum((w * torch.tensor(r)).sum() for w, r in zip(want, weights)).backward()
    for g, w in zip(got, want):
        assert_close(g.numpy(), w.detach().numpy(), dtype)
    assert_close(xm.grad.numpy(), xt.grad.numpy(), dtype)
    for a, b in zip(hm or [], ht or []):
        assert_close(a.grad.numpy(), b.grad.numpy(), dtype)
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad.numpy(), named[name].grad.numpy(), dtype)


class _SequenceClassifier(nn.Module):
    """A recurrent layer on padded or packed (fixed lengths) input, then a linear head."""

    def __init__(self, cls, lengths=None, **options):
        super().__init__()
        self.rnn = getattr(nn, cls)(4, 5, **options, dtype="float64")
        self.head = nn.Linear(5 * (2 if options.get("bidirectional") else 1), 3,
                              dtype="float64")
        self.lengths = lengths

    def forward(self, x):
        from minidl.nn.utils import rnn

        if self.lengths is None:
            return self.head(self.rnn(x)[0][-1])
        out = self.rnn(rnn.pack_padded_sequence(x, self.lengths, enforce_sorted=False))[0]
        return self.head(rnn.pad_packed_sequence(out)[0].sum(0))


@pytest.mark.parametrize("cls,options,lengths", [
    ("LSTM", {"num_layers": 2, "bidirectional": True}, None), ("GRU", {}, None),
    ("RNN", {"nonlinearity": "relu"}, None), ("LSTM", {"bidirectional": True}, [3, 6, 1])])
def test_compile_traces_the_recurrence_exactly(cls, options, lengths):
    model = _SequenceClassifier(cls, lengths, **options)
    x = minidl.tensor(RNG.standard_normal((6, 3, 4)))
    target = minidl.tensor(RNG.integers(0, 3, 3))
    inference = minidl.compile(model, example_inputs=(x,))
    training = minidl.compile(model, nn.CrossEntropyLoss(), example_inputs=(x, target))
    other = minidl.tensor(RNG.standard_normal((6, 3, 4)))
    model.eval()
    np.testing.assert_array_equal(inference(other).numpy(), model(other).numpy())
    model.train()
    model.zero_grad()
    loss = training(other, target)
    compiled_grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    eager = nn.CrossEntropyLoss()(model(other), target)
    eager.backward()
    assert loss.item() == eager.item()
    for a, p in zip(compiled_grads, model.parameters()):
        np.testing.assert_array_equal(a, p.grad.numpy())


def test_compile_refuses_lengths_that_are_a_traced_input():
    from minidl.nn.utils import rnn
    from minidl.static import TraceError

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5, dtype="float64")

        def forward(self, x, lengths):
            return self.rnn(rnn.pack_padded_sequence(x, lengths, enforce_sorted=False))[1][0]

    x = minidl.tensor(RNG.standard_normal((6, 3, 4)))
    with pytest.raises(TraceError, match="pack_padded_sequence\\(\\) on a traced tensor"):
        minidl.compile(Packed(), example_inputs=(x, minidl.tensor([2, 6, 4])))
