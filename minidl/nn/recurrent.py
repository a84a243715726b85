"""Recurrent layers: RNNCell, LSTMCell, GRUCell and the multi-layer RNN, LSTM and GRU, with
PyTorch's parameters (names, shapes, order, initialization), arguments, gate order and
results, on padded or packed (minidl.nn.utils.rnn.PackedSequence) sequences. They are
composed from minidl's differentiable ops (linear, sigmoid, tanh, slicing, cat, stack), so
every gradient is exact. A layer projects its whole input sequence with one
matmul (x @ W_ih^T + b_ih for all timesteps), then runs the recurrence step by step.

Gate order within the stacked weights, as PyTorch's: LSTM (i, f, g, o), GRU (r, z, n) with
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
"""

from __future__ import annotations

import math
import numbers
import warnings
from itertools import accumulate
from typing import Any

from minidl.nn import functional as F
from minidl.nn import init
from minidl.nn.layers import empty_parameter, float_dtype
from minidl.nn.module import Module, Parameter
from minidl.nn.utils.rnn import PackedSequence
from minidl.tensor import Tensor, cat, concrete, stack, zeros

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
# A layer-direction's parameters, in PyTorch's registration (and state_dict) order.
_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def _rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, relu: bool) -> Tensor:
    """h' = act(gx + h @ w_hh^T + b_hh), gx the input's projection (N, H)."""
    pre = gx + F.linear(h, w_hh, b_hh)
    return pre.relu() if relu else pre.tanh()


def _lstm_step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None,
               w_hr: Tensor | None) -> tuple[Tensor, Tensor]:
    """(h', c') from gx (N, 4H), h (N, P or H), c (N, H); w_hr (P, H) projects h'."""
    i, f, g, o = (gx + F.linear(h, w_hh, b_hh)).chunk(4, 1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    return (h if w_hr is None else F.linear(h, w_hr)), c


def _gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """h' from gx (N, 3H) and h (N, H); b_hn stays inside r * (...), as in PyTorch."""
    x_r, x_z, x_n = gx.chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n)


def _step(mode: str, gx: Tensor, state: tuple, w_hh: Tensor, b_hh: Tensor | None,
          w_hr: Tensor | None) -> tuple:
    """The next state, (h,) or (h, c) for LSTM, of a cell of this mode."""
    if mode == "LSTM":
        return _lstm_step(gx, state[0], state[1], w_hh, b_hh, w_hr)
    if mode == "GRU":
        return (_gru_step(gx, state[0], w_hh, b_hh),)
    return (_rnn_step(gx, state[0], w_hh, b_hh, mode == "RNN_RELU"),)


def _forward_in_time(mode: str, gx: Tensor, sizes: list[int], state: tuple, w_hh: Tensor,
                     b_hh: Tensor | None, w_hr: Tensor | None) -> tuple[Tensor, tuple]:
    """One direction from the first step: gx (sum(sizes), gates) the input projections of
    the steps one after another, sizes[t] the sequences running at step t (non-increasing,
    longest first); state the initial (h,) or (h, c), sizes[0] rows. Returns the outputs
    (sum(sizes), H_out) and each sequence's state after its last step."""
    outs, ended = [], []
    for start, size in zip(accumulate([0] + sizes), sizes):
        if size < state[0].shape[0]:
            # The last rows' sequences ended at the previous step: their state is final.
            ended.append(tuple(s[size:] for s in state))
            state = tuple(s[:size] for s in state)
        state = _step(mode, gx[start : start + size], state, w_hh, b_hh, w_hr)
        outs.append(state[0])
    if ended:
        state = tuple(cat([s] + [rows[k] for rows in reversed(ended)])
                      for k, s in enumerate(state))
    return cat(outs), state


def _backward_in_time(mode: str, gx: Tensor, sizes: list[int], initial: tuple, w_hh: Tensor,
                      b_hh: Tensor | None, w_hr: Tensor | None) -> tuple[Tensor, tuple]:
    """The reverse direction of _forward_in_time: from each sequence's own last step to its
    first; a sequence joins (from its initial state) at its last step."""
    starts = list(accumulate([0] + sizes))
    state = initial
    if sizes[-1] < initial[0].shape[0]:
        state = tuple(s[: sizes[-1]] for s in initial)
    outs = []
    for t in range(len(sizes) - 1, -1, -1):
        size, running = sizes[t], state[0].shape[0]
        if size > running:
            state = tuple(cat([s, s0[running:size]]) for s, s0 in zip(state, initial))
        state = _step(mode, gx[starts[t] : starts[t] + size], state, w_hh, b_hh, w_hr)
        outs.append(state[0])
    return cat(outs[::-1]), state


def _check_dtype(op: str, x: Tensor, weight: Tensor, error: type[Exception]) -> None:
    if x.dtype != weight.dtype:
        raise error(f"{op}: input dtype ({x.dtype}) does not match weight dtype "
                    f"({weight.dtype}); convert the input with .to({weight.dtype}) or the "
                    f"module with .to({x.dtype})")


def _check_size(op: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{op}: {name} must be greater than zero, got {value}")
    return value


def _check_bool(op: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} should be of type bool, got: {type(value).__name__}")
    return value


class RNNCellBase(Module):
    """The parameters shared by the cells: weight_ih (chunks * hidden, input), weight_hh
    (chunks * hidden, hidden), bias_ih and bias_hh (chunks * hidden,) when bias, all
    U(-1/sqrt(hidden), 1/sqrt(hidden))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        op = type(self).__name__
        dt = float_dtype(op, dtype, device)
        self.input_size = _check_size(op, "input_size", input_size)
        self.hidden_size = _check_size(op, "hidden_size", hidden_size)
        self.bias = _check_bool(op, "bias", bias)
        gates = num_chunks * hidden_size
        self.weight_ih = empty_parameter((gates, input_size), dt)
        self.weight_hh = empty_parameter((gates, hidden_size), dt)
        self.register_parameter("bias_ih", empty_parameter((gates,), dt) if bias else None)
        self.register_parameter("bias_hh", empty_parameter((gates,), dt) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            text += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            text += f", nonlinearity={self.nonlinearity}"
        return text

    def _cell(self, input: Tensor, hx: Any, states: int) -> tuple:
        """The next state of this cell: input (N, input_size) or (input_size,), hx None or a
        tuple of `states` tensors (N, hidden_size) or (hidden_size,)."""
        op = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{op}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if hx is not None:
            for k, h in enumerate(hx):
                if h.ndim not in (1, 2):
                    what = "hidden" if states == 1 else f"hx[{k}]"
                    raise ValueError(f"{op}: Expected {what} to be 1D or 2D, got {h.ndim}D "
                                     "instead")
        _check_dtype(op, input, self.weight_ih, RuntimeError)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"{op}: input has inconsistent input_size: got {x.shape[1]} "
                               f"expected {self.input_size}")
        if hx is None:
            hx = (zeros(x.shape[0], self.hidden_size, dtype=x.dtype),) * states
        elif not batched:
            hx = tuple(h.unsqueeze(0) for h in hx)
        for k, h in enumerate(hx):
            if h.shape[0] != x.shape[0]:
                raise RuntimeError(f"{op}: Input batch size {x.shape[0]} doesn't match "
                                   f"hidden{k} batch size {h.shape[0]}")
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(f"{op}: hidden{k} has inconsistent hidden_size: got "
                                   f"{h.shape[1]}, expected {self.hidden_size}")
        gx = F.linear(x, self.weight_ih, self.bias_ih)
        out = _step(self._mode, gx, hx, self.weight_hh, self.bias_hh, None)
        return out if batched else tuple(h.squeeze(0) for h in out)


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu).  input: (N, input_size) or
    (input_size,); hx: (N, hidden_size) or (hidden_size,), zeros by default; returns h' of
    hx's shape. An unknown nonlinearity raises RuntimeError at the call, as in PyTorch."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    @property
    def _mode(self) -> str:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"RNNCell: Unknown nonlinearity: {self.nonlinearity}")
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell(input, None if hx is None else (hx,), 1)[0]


class LSTMCell(RNNCellBase):
    """i, f, g, o = x W_ih^T + b_ih + h W_hh^T + b_hh split in four (sigmoid, sigmoid, tanh,
    sigmoid); c' = f * c + i * g; h' = o * tanh(c').  input: (N, input_size) or
    (input_size,); hx: (h, c), each (N, hidden_size) or (hidden_size,), zeros by default;
    returns (h', c')."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        return self._cell(input, None if hx is None else tuple(hx), 2)


class GRUCell(RNNCellBase):
    """r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + ...);
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) * n + z * h.
    input: (N, input_size) or (input_size,); hx: (N, hidden_size) or (hidden_size,), zeros
    by default; returns h'."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell(input, None if hx is None else (hx,), 1)[0]


class RNNBase(Module):
    """num_layers stacked recurrent layers of `mode` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"),
    each one or two directions. Parameters per layer l and direction (suffix "_reverse" for
    the backward one), in PyTorch's order: weight_ih_l{l} (gates * hidden, in), weight_hh_l{l}
    (gates * hidden, P), bias_ih_l{l}, bias_hh_l{l} (gates * hidden,) when bias, and
    weight_hr_l{l} (P, hidden) when proj_size; P = proj_size or hidden_size and `in` is
    input_size for layer 0, P * directions above. All U(-1/sqrt(hidden), 1/sqrt(hidden)).
    Raises ValueError/TypeError for bad sizes, dropout outside [0, 1] or proj_size >=
    hidden_size, as PyTorch."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        op = type(self).__name__
        dt = float_dtype(op, dtype, device)
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(f"{op}: dropout should be a number in range [0, 1] representing "
                             f"the probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        self.mode = mode
        self.input_size = _check_size(op, "input_size", input_size)
        self.hidden_size = _check_size(op, "hidden_size", hidden_size)
        self.num_layers = _check_size(op, "num_layers", num_layers)
        self.bias = _check_bool(op, "bias", bias)
        self.batch_first = _check_bool(op, "batch_first", batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        if proj_size < 0:
            raise ValueError(f"{op}: proj_size should be a positive integer or zero to disable "
                             f"projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"{op}: proj_size has to be smaller than hidden_size, got "
                             f"proj_size={proj_size} and hidden_size={hidden_size}")
        self.proj_size = proj_size
        gates = _GATES[mode] * hidden_size
        out_size = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._all_weights = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else out_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [(gates, layer_in), (gates, out_size), (gates,), (gates,),
                          (proj_size, hidden_size)]
                present = [True, True, bias, bias, proj_size > 0]
                names = [kind + suffix for kind, keep in zip(_KINDS, present) if keep]
                for name, shape, keep in zip(_KINDS, shapes, present):
                    if keep:
                        setattr(self, name + suffix, empty_parameter(shape, dt))
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """A no-op: minidl keeps no fused weight buffer (PyTorch's is for cuDNN)."""

    @property
    def all_weights(self) -> list[list[Parameter]]:
        """Each layer-direction's parameters, in state_dict order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.bias is not True:
            text += f", bias={self.bias}"
        if self.batch_first is not False:
            text += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            text += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            text += f", bidirectional={self.bidirectional}"
        return text

    def _state_shapes(self, batch: int) -> list[tuple[int, int, int]]:
        """The expected shapes of h0 (and c0 for LSTM)."""
        stacks = self.num_layers * (2 if self.bidirectional else 1)
        shapes = [(stacks, batch, self.proj_size or self.hidden_size)]
        if self.mode == "LSTM":
            shapes.append((stacks, batch, self.hidden_size))
        return shapes

    def _initial_states(self, hx: tuple | None, batch: int, dtype: Any) -> tuple:
        """hx checked against (layers * directions, batch, *), or zeros when None."""
        shapes = self._state_shapes(batch)
        if hx is None:
            return tuple(zeros(*shape, dtype=dtype) for shape in shapes)
        for k, (h, shape) in enumerate(zip(hx, shapes)):
            if tuple(h.shape) != shape:
                which = "hidden" if len(shapes) == 1 else f"hidden[{k}]"
                raise RuntimeError(f"{type(self).__name__}: Expected {which} size {shape}, "
                                   f"got {list(h.shape)}")
        return hx

    def _check_features(self, x: Tensor) -> None:
        op = type(self).__name__
        _check_dtype(op, x, self.weight_ih_l0, ValueError)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{op}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")

    def _run(self, input: Tensor | PackedSequence, hx: tuple | None
             ) -> tuple[Tensor | PackedSequence, tuple]:
        """input (L, N, H_in) or, with batch_first, (N, L, H_in) or unbatched (L, H_in), or a
        PackedSequence; hx None or a tuple of (layers * directions, N, *) tensors, 2-D when
        unbatched. Returns the last layer's outputs and the final states, shaped (or packed)
        as input and hx."""
        if isinstance(input, PackedSequence):
            return self._run_packed(input, hx)
        op = type(self).__name__
        if input.ndim not in (2, 3):
            raise ValueError(f"{op}: Expected input to be 2D or 3D, got {input.ndim}D tensor "
                             "instead")
        batched = input.ndim == 3
        if hx is not None:
            want = 3 if batched else 2
            if any(h.ndim != want for h in hx):
                dims = ", ".join(f"{h.ndim}-D" for h in hx)
                raise RuntimeError(f"{op}: For {'batched 3-D' if batched else 'unbatched 2-D'}"
                                   f" input, hx should also be {want}-D but got ({dims}) "
                                   "tensor(s)")
        self._check_features(input)
        if not batched:
            x = input.unsqueeze(1)
            hx = None if hx is None else tuple(h.unsqueeze(1) for h in hx)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise RuntimeError(f"{op}: Expected sequence length to be larger than 0 in RNN")
        hx = self._initial_states(hx, batch, x.dtype)
        # Explicit sizes, not -1: a batch of 0 leaves -1 undetermined.
        out, final = self._layers(x.reshape(steps * batch, x.shape[2]), [batch] * steps, hx)
        out = out.reshape(steps, batch, out.shape[-1])
        if not batched:
            return out.squeeze(1), tuple(h.squeeze(1) for h in final)
        return (out.transpose(0, 1) if self.batch_first else out), final

    def _run_packed(self, packed: PackedSequence, hx: tuple | None
                    ) -> tuple[PackedSequence, tuple]:
        """The layers on packed data; hx and the final states in the batch's order (PyTorch
        permutes them by sorted_indices and back)."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        if data.ndim != 2:
            raise RuntimeError(f"{type(self).__name__}: input must have 2 dimensions, got "
                               f"{data.ndim}")
        self._check_features(data)
        sizes = [int(b) for b in concrete(batch_sizes, type(self).__name__)]
        hx = self._initial_states(hx, sizes[0], data.dtype)
        if sorted_indices is not None:
            hx = tuple(h.index_select(1, sorted_indices) for h in hx)
        out, final = self._layers(data, sizes, hx)
        if unsorted_indices is not None:
            final = tuple(h.index_select(1, unsorted_indices) for h in final)
        return PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices), final

    def _layers(self, x: Tensor, sizes: list[int], hx: tuple) -> tuple[Tensor, tuple]:
        """The stacked recurrence on x (sum(sizes), H_in), time step t being the sizes[t]
        rows after those of the steps before (a padded batch has every size N); hx[k]
        (layers * directions, sizes[0], *)."""
        directions = 2 if self.bidirectional else 1
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            outs = []
            for direction in range(directions):
                index = layer * directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih, w_hh, b_ih, b_hh, w_hr = (getattr(self, kind + suffix, None) for kind in
                                                _KINDS)
                gx = F.linear(x, w_ih, b_ih)
                run = _backward_in_time if direction else _forward_in_time
                out, state = run(self.mode, gx, sizes, tuple(h[index] for h in hx), w_hh,
                                 b_hh, w_hr)
                outs.append(out)
                finals.append(state)
            x = outs[0] if directions == 1 else cat(outs, 1)
        return x, tuple(stack([state[k] for state in finals]) for k in range(len(hx)))


class RNN(RNNBase):
    """Elman RNN layers: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).
    input: (L, N, input_size) ((N, L, input_size) with batch_first; unbatched (L,
    input_size); or a PackedSequence); hx: (layers * directions, N, hidden_size), zeros by
    default. Returns (output (L, N, directions * hidden_size), packed for a packed input,
    h_n of hx's shape). Dropout (training only)
    applies to each layer's output but the last. nonlinearity other than "tanh" or "relu"
    raises ValueError."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None
                ) -> tuple[Tensor | PackedSequence, Tensor]:
        out, (h_n,) = self._run(input, None if hx is None else (hx,))
        return out, h_n


class LSTM(RNNBase):
    """LSTM layers (gates i, f, g, o as LSTMCell); with proj_size > 0 each h_t is projected
    by weight_hr to proj_size. input: (L, N, input_size) ((N, L, input_size) with
    batch_first; unbatched (L, input_size); or a PackedSequence); hx: (h_0 (layers *
    directions, N, P), c_0 (layers * directions, N, hidden_size)), zeros by default,
    P = proj_size or hidden_size. Returns (output (L, N, directions * P), packed for a
    packed input, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        return self._run(input, None if hx is None else tuple(hx))


class GRU(RNNBase):
    """GRU layers (gates r, z, n as GRUCell). input: (L, N, input_size) ((N, L, input_size)
    with batch_first; unbatched (L, input_size); or a PackedSequence); hx: (layers *
    directions, N, hidden_size), zeros by default. Returns (output (L, N, directions *
    hidden_size), packed for a packed input, h_n of hx's shape)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None
                ) -> tuple[Tensor | PackedSequence, Tensor]:
        out, (h_n,) = self._run(input, None if hx is None else (hx,))
        return out, h_n
