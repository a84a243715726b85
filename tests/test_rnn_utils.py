"""minidl.nn.utils.rnn against torch.nn.utils.rnn: pad_sequence, pack_padded_sequence,
pad_packed_sequence, pack_sequence, unpad_sequence, unpack_sequence, PackedSequence and
invert_permutation give PyTorch's values, batch sizes, indices and gradients; errors."""

import numpy as np
import pytest

import minidl
from minidl.nn.utils import rnn

RNG = np.random.default_rng(5)


def both(torch, arrays):
    ours = [minidl.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


def backward_both(torch, got, want):
    weights = RNG.standard_normal(tuple(want.shape))
    (got * minidl.tensor(weights)).sum().backward()
    (want * torch.tensor(weights)).sum().backward()


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pad_sequence_matches_torch_values_and_gradients(batch_first, padding_side):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as torch_rnn

    arrays = [RNG.standard_normal((n, 2, 3)) for n in (3, 1, 4, 4)]
    ours, theirs = both(torch, arrays)
    got = rnn.pad_sequence(ours, batch_first, -2.5, padding_side)
    want = torch_rnn.pad_sequence(theirs, batch_first, -2.5, padding_side)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    backward_both(torch, got, want)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    single = rnn.pad_sequence([minidl.ones(2)])
    assert tuple(single.shape) == (2, 1) and single.dtype == np.float32


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths,enforce_sorted", [([5, 3, 3, 1], True),
                                                    ([3, 5, 1, 3], False),
                                                    ([2, 2, 2, 2], False),
                                                    ([1, 4, 4, 5], False)])
def test_pack_and_pad_packed_match_torch(lengths, enforce_sorted, batch_first):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as torch_rnn

    shape = (4, 5, 3) if batch_first else (5, 4, 3)
    (xm,), (xt,) = both(torch, [RNG.standard_normal(shape)])
    pm = rnn.pack_padded_sequence(xm, lengths, batch_first, enforce_sorted)
    pt = torch_rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first, enforce_sorted)
    assert isinstance(pm, rnn.PackedSequence) and isinstance(pm, tuple)
    for a, b in zip(pm, pt):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == np.dtype(str(b.dtype).replace("torch.", ""))
            np.testing.assert_array_equal(a.numpy(), b.detach().numpy())
    got, got_lengths = rnn.pad_packed_sequence(pm, batch_first, 9.0, total_length=7)
    want, want_lengths = torch_rnn.pad_packed_sequence(pt, batch_first, 9.0, total_length=7)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    np.testing.assert_array_equal(got_lengths.numpy(), want_lengths.numpy())
    assert got_lengths.dtype == np.int64
    backward_both(torch, got, want)
    np.testing.assert_array_equal(xm.grad.numpy(), xt.grad.numpy())


def test_pack_sequence_unpack_and_unpad_match_torch():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as torch_rnn

    arrays = [RNG.standard_normal((n, 2)) for n in (2, 4, 1)]
    ours, theirs = both(torch, arrays)
    pm = rnn.pack_sequence(ours, enforce_sorted=False)
    pt = torch_rnn.pack_sequence(theirs, enforce_sorted=False)
    np.testing.assert_array_equal(pm.data.numpy(), pt.data.detach().numpy())
    for got, want in zip(rnn.unpack_sequence(pm), torch_rnn.unpack_sequence(pt)):
        np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    padded = RNG.standard_normal((4, 3, 2))
    for got, want in zip(rnn.unpad_sequence(minidl.tensor(padded), minidl.tensor([4, 1, 2])),
                         torch_rnn.unpad_sequence(torch.tensor(padded),
                                                  torch.tensor([4, 1, 2]))):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        rnn.pack_sequence(ours)


def test_packed_sequence_constructors_and_invert_permutation():
    data, sizes = minidl.ones(3, 2), minidl.tensor([2, 1])
    from_pair = rnn.PackedSequence((data, sizes))
    assert from_pair.batch_sizes is sizes and from_pair.sorted_indices is None
    assert from_pair.unsorted_indices is None
    packed = rnn.PackedSequence(data, sizes, minidl.tensor([2, 0, 1]))
    np.testing.assert_array_equal(packed.unsorted_indices.numpy(), [1, 2, 0])
    assert rnn.invert_permutation(None) is None
    assert packed.double().data.dtype == np.float64 and packed.float() is packed
    data2, sizes2, sorted2, unsorted2 = packed
    assert data2 is data and sorted2 is packed.sorted_indices
    with pytest.raises(AssertionError, match="list or tuple of length 2"):
        rnn.PackedSequence(data)


def test_errors_like_torch():
    x = minidl.zeros(4, 3, 2)
    with pytest.raises(RuntimeError, match="must be sorted in decreasing order"):
        rnn.pack_padded_sequence(x, [2, 3, 1])
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        rnn.pack_padded_sequence(x, [3, 1, 0])
    with pytest.raises(RuntimeError, match="Expected `len\\(lengths\\)` to be equal to "
                                           "batch_size, but got 2 \\(batch_size=3\\)"):
        rnn.pack_padded_sequence(x, [3, 1])
    with pytest.raises(RuntimeError, match="should be a 1D CPU int64 tensor"):
        rnn.pack_padded_sequence(x, minidl.tensor([[3, 2, 1]]))
    with pytest.raises(ValueError, match="a length of 5 exceeds the padded sequence length 4"):
        rnn.pack_padded_sequence(x, [5, 2, 1])
    with pytest.raises(ValueError, match="Expected total_length to be at least"):
        rnn.pad_packed_sequence(rnn.pack_padded_sequence(x, [3, 2, 1]), total_length=2)
    with pytest.raises(RuntimeError, match="received an empty list of sequences"):
        rnn.pad_sequence([])
    with pytest.raises(RuntimeError, match="Expected padding_side to be one of left or right"):
        rnn.pad_sequence([minidl.ones(2, 3)], padding_side="mid")
    with pytest.raises(RuntimeError, match="trailing dims"):
        rnn.pad_sequence([minidl.ones(2, 3), minidl.ones(2, 4)])
    with pytest.raises(RuntimeError, match="Expected iterable"):
        rnn.pad_sequence(3)
