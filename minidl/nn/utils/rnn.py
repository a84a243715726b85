"""Variable-length sequences for the recurrent layers, as torch.nn.utils.rnn: pad_sequence,
PackedSequence, pack_padded_sequence, pad_packed_sequence, pack_sequence, unpad_sequence,
unpack_sequence. All are composed from differentiable ops (slicing, cat, stack,
index_select), so gradients flow from packed or padded results back to the sequences.

A PackedSequence holds the time steps one after another, each with only the sequences still
running: data (sum(batch_sizes), *), batch_sizes[t] the number of sequences longer than t,
in the order of decreasing length (sorted_indices maps that order to the batch's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from minidl.tensor import Tensor, cat, concrete, full, stack, tensor

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence",
           "pad_packed_sequence", "pad_sequence", "unpad_sequence", "pack_sequence",
           "unpack_sequence"]


class _PackedFields(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


class PackedSequence(_PackedFields):
    """(data, batch_sizes, sorted_indices, unsorted_indices); made by pack_padded_sequence
    or pack_sequence. batch_sizes: int64 (T,); the indices int64 (B,) or None (the batch was
    already sorted). PackedSequence((data, batch_sizes)) is accepted too, as in PyTorch;
    unsorted_indices defaults to the inverse of sorted_indices."""

    def __new__(cls, data: Any, batch_sizes: Tensor | None = None,
                sorted_indices: Tensor | None = None,
                unsorted_indices: Tensor | None = None) -> PackedSequence:
        if batch_sizes is None:
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """data converted by Tensor.to; self when nothing changes."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        return type(self)(data, self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def double(self) -> PackedSequence:
        return self.to(dtype=np.float64)

    def float(self) -> PackedSequence:
        return self.to(dtype=np.float32)

    @property
    def is_cuda(self) -> bool:
        return False


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The permutation q with q[p[i]] = i (int64), or None for None."""
    if permutation is None:
        return None
    p = _int_array(permutation, "invert_permutation")
    inverse = np.empty_like(p, dtype=np.int64)
    inverse[p] = np.arange(p.size, dtype=np.int64)
    return tensor(inverse)


def _int_array(values: Any, what: str) -> np.ndarray:
    """Lengths or batch sizes as int64; a tensor traced by minidl.compile raises TraceError
    (the graph would keep the example's lengths for every later input)."""
    if isinstance(values, Tensor):
        values = concrete(values, what)
    return np.asarray(values).astype(np.int64)


def pad_sequence(sequences: Tensor | Sequence[Tensor], batch_first: bool = False,
                 padding_value: float = 0.0, padding_side: str = "right") -> Tensor:
    """Sequences (L_i, *) padded with padding_value to the longest length T and stacked:
    (T, B, *), or (B, T, *) with batch_first. padding_side "left" puts the padding first.
    Raises RuntimeError for no sequences, another padding_side, or unequal trailing dims."""
    if not isinstance(sequences, Iterable):
        raise RuntimeError(f"pad_sequence: Expected iterable for input sequences, but got arg "
                           f"of type: {type(sequences)}")
    if padding_side not in ("left", "right"):
        raise RuntimeError(f"pad_sequence: Expected padding_side to be one of left or right, "
                           f"but got {padding_side}.")
    seqs = list(sequences)
    if not seqs:
        raise RuntimeError("pad_sequence: received an empty list of sequences")
    trailing, dtype = tuple(seqs[0].shape[1:]), seqs[0].dtype
    for s in seqs:
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"pad_sequence: every sequence must have the trailing dims "
                               f"{trailing} of the first, got shape {tuple(s.shape)}")
    longest = max(s.shape[0] for s in seqs)
    padded = []
    for s in seqs:
        s = s.to(dtype)
        missing = longest - s.shape[0]
        if missing:
            fill = full((missing,) + trailing, padding_value, dtype=dtype)
            s = cat([s, fill] if padding_side == "right" else [fill, s])
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)


def pack_padded_sequence(input: Tensor, lengths: Tensor | list[int], batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack input (T, B, *) ((B, T, *) with batch_first) whose sequence b has lengths[b] valid
    steps. enforce_sorted: lengths must be decreasing (sorted_indices None); otherwise the
    batch is sorted by decreasing length (stable, as PyTorch's sort). Raises RuntimeError
    for unsorted lengths with enforce_sorted, a length < 1, lengths not 1-D or not one per
    sequence, and ValueError for a length above T."""
    lens = _int_array(lengths, "pack_padded_sequence")
    if lens.ndim != 1:
        raise RuntimeError(f"pack_padded_sequence: 'lengths' argument should be a 1D CPU int64 "
                           f"tensor, but got {lens.ndim}D")
    x = input.transpose(0, 1) if batch_first else input
    if lens.size != x.shape[1]:
        raise RuntimeError(f"pack_padded_sequence: Expected `len(lengths)` to be equal to "
                           f"batch_size, but got {lens.size} (batch_size={x.shape[1]})")
    sorted_indices = None
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError("pack_padded_sequence: `lengths` array must be sorted in "
                               "decreasing order when `enforce_sorted` is True. You can pass "
                               "`enforce_sorted=False` to pack_padded_sequence and/or "
                               "pack_sequence to sidestep this requirement if you do not "
                               "need ONNX exportability.")
    else:
        order = np.argsort(-lens, kind="stable")
        lens = lens[order]
        sorted_indices = tensor(order.astype(np.int64))
        x = x.index_select(1, sorted_indices)
    if lens.size and lens[-1] <= 0:
        raise RuntimeError("pack_padded_sequence: Length of all samples has to be greater than "
                           "0, but found an element in 'lengths' that is <= 0")
    if lens.size and lens[0] > x.shape[0]:
        raise ValueError(f"pack_padded_sequence: a length of {lens[0]} exceeds the padded "
                         f"sequence length {x.shape[0]}")
    steps = int(lens[0]) if lens.size else 0
    batch_sizes = np.array([np.count_nonzero(lens > t) for t in range(steps)], dtype=np.int64)
    data = cat([x[t, : int(b)] for t, b in enumerate(batch_sizes)])
    return PackedSequence(data, tensor(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0, total_length: int | None = None
                        ) -> tuple[Tensor, Tensor]:
    """The inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *) with batch_first,
    lengths int64 (B,)), in the batch's original order; T = total_length when given (it
    must be at least the longest length: ValueError otherwise)."""
    batch_sizes = _int_array(sequence.batch_sizes, "pad_packed_sequence")
    steps = batch_sizes.size
    if total_length is not None:
        if total_length < steps:
            raise ValueError("Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {steps}")
        steps = total_length
    data = sequence.data
    batch = int(batch_sizes[0])
    trailing = tuple(data.shape[1:])
    rows, start = [], 0
    for b in batch_sizes:
        b = int(b)
        row = data[start : start + b]
        if b < batch:
            row = cat([row, full((batch - b,) + trailing, padding_value, dtype=data.dtype)])
        rows.append(row)
        start += b
    rows += [full((batch,) + trailing, padding_value, dtype=data.dtype)] * (steps - len(rows))
    padded = stack(rows, 0)
    lengths = np.array([np.count_nonzero(batch_sizes > j) for j in range(batch)], np.int64)
    if sequence.unsorted_indices is not None:
        padded = padded.index_select(1, sequence.unsorted_indices)
        lengths = lengths[_int_array(sequence.unsorted_indices, "pad_packed_sequence")]
    return (padded.transpose(0, 1) if batch_first else padded), tensor(lengths)


def pack_sequence(sequences: list[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """pack_padded_sequence of pad_sequence(sequences) with their lengths."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Tensor, lengths: Tensor, batch_first: bool = False
                   ) -> list[Tensor]:
    """The sequences of a padded (T, B, *) ((B, T, *) with batch_first) batch, each cut to
    its length."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[b, : int(n)] for b, n in enumerate(_int_array(lengths, "unpad_sequence"))]


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The sequences of a PackedSequence, in the batch's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
