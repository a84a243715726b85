"""Dataset, TensorDataset and DataLoader: batching, shuffling, transforms, resume."""

from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.data import MNIST, DataLoader, Dataset, TensorDataset

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def _dataset(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return TensorDataset(x, y)


def _epoch_labels(loader):
    return np.concatenate([y.data for _, y in loader]) if len(loader) else np.array([], np.int64)


class SquaresDataset(Dataset):
    """A dataset with no batched path: the loader must stack samples."""

    def __init__(self, n):
        self.n = n
        self.fetched = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.fetched += 1
        return np.full((2,), i * i, np.float32), i


# -- TensorDataset --------------------------------------------------------------------------------


def test_tensor_dataset_indexing_and_tensors():
    x = minidl.tensor(np.ones((4, 2), np.float32))
    ds = TensorDataset(x, np.arange(4))
    assert len(ds) == 4
    row, label = ds[2]
    np.testing.assert_array_equal(row, [1, 1])
    assert label == 2
    assert ds.arrays[0] is x.data


def test_tensor_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same first dimension, got shapes \(4, 2\), \(5,\)"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))


def test_tensor_dataset_rejects_empty_and_scalars():
    with pytest.raises(ValueError, match="at least one array"):
        TensorDataset()
    with pytest.raises(ValueError, match="array 1 is a scalar"):
        TensorDataset(np.zeros(3), np.float32(1))


def test_dataset_is_abstract():
    with pytest.raises(TypeError):
        Dataset()


# -- batching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, batch_size, drop_last, expected_sizes",
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (2, 5, False, [2]),
        (2, 5, True, []),
        (0, 4, False, []),
        (7, 1, False, [1] * 7),
    ],
)
def test_batch_counts_and_sizes(n, batch_size, drop_last, expected_sizes):
    loader = DataLoader(_dataset(n), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(expected_sizes)
    sizes = [x.shape[0] for x, _ in loader]
    assert sizes == expected_sizes


def test_batches_are_contiguous_tensors_in_order():
    ds = _dataset(10)
    batches = list(DataLoader(ds, batch_size=4))
    x, y = batches[-1]
    assert isinstance(x, minidl.Tensor) and isinstance(y, minidl.Tensor)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.data.flags.c_contiguous and x.shape == (2, 3)
    np.testing.assert_array_equal(y.data, [8, 9])
    np.testing.assert_array_equal(x.data, ds.arrays[0][8:])


def test_batches_do_not_alias_the_dataset():
    ds = _dataset(6)
    x, _ = next(iter(DataLoader(ds, batch_size=6)))
    x.data[...] = -1
    assert ds.arrays[0].min() == 0


def test_fallback_stacks_samples_of_generic_datasets():
    ds = SquaresDataset(5)
    batches = list(DataLoader(ds, batch_size=2))
    assert [x.shape for x, _ in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][0].data, [[4, 4], [9, 9]])
    np.testing.assert_array_equal(batches[1][1].data, [2, 3])
    assert batches[1][1].dtype == np.int64
    assert ds.fetched == 5


def test_fallback_for_plain_sequences_and_single_field_samples():
    data = [np.array([i, i], np.float32) for i in range(3)]
    x = next(iter(DataLoader(data, batch_size=3)))  # default_collate: a Tensor, as in PyTorch
    np.testing.assert_array_equal(x.data, np.stack(data))


def test_fallback_rejects_ragged_samples():
    data = [(np.zeros(2, np.float32), 0), (np.zeros(3, np.float32), 1)]
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        list(DataLoader(data, batch_size=2))


def test_fast_path_uses_no_per_sample_getitem():
    class Counting(TensorDataset):
        def __getitem__(self, i):
            raise AssertionError("per-sample access on the fast path")

    ds = Counting(np.arange(20, dtype=np.float32), np.arange(20))
    assert sum(x.shape[0] for x, _ in DataLoader(ds, batch_size=6, shuffle=True, seed=0)) == 20


def test_transform_applies_to_first_field_only():
    ds = TensorDataset(np.full((4, 2), 255, np.uint8), np.arange(4))
    loader = DataLoader(ds, batch_size=3, transform=lambda a: a.astype(np.float32) / 255)
    x, y = next(iter(loader))
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x.data, np.ones((3, 2), np.float32))


def test_invalid_arguments():
    ds = _dataset()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(ds, batch_size=True)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        DataLoader(ds, shuffle=True, seed=-1)


# -- shuffling -----------------------------------------------------------------------------------


def test_shuffle_visits_every_sample_once_per_epoch():
    loader = DataLoader(_dataset(103), batch_size=10, shuffle=True, seed=3)
    epochs = [_epoch_labels(loader) for _ in range(3)]
    for labels in epochs:
        assert sorted(labels.tolist()) == list(range(103))
    assert not np.array_equal(epochs[0], np.arange(103))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_shuffle_with_drop_last_never_repeats_a_sample():
    loader = DataLoader(_dataset(103), batch_size=10, shuffle=True, drop_last=True, seed=3)
    labels = _epoch_labels(loader)
    assert len(labels) == 100 and len(set(labels.tolist())) == 100


def test_same_seed_same_sequence_of_epochs():
    a = DataLoader(_dataset(50), batch_size=7, shuffle=True, seed=11)
    b = DataLoader(_dataset(50), batch_size=7, shuffle=True, seed=11)
    c = DataLoader(_dataset(50), batch_size=7, shuffle=True, seed=12)
    for _ in range(3):
        la, lb, lc = _epoch_labels(a), _epoch_labels(b), _epoch_labels(c)
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(la, lc)


def test_epoch_order_is_what_the_loader_yields():
    loader = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=5)
    for epoch in range(2):
        np.testing.assert_array_equal(_epoch_labels(loader), loader.epoch_order(epoch))
    assert loader.epoch == 2


def test_no_shuffle_keeps_order_every_epoch():
    loader = DataLoader(_dataset(10), batch_size=4)
    for _ in range(2):
        np.testing.assert_array_equal(_epoch_labels(loader), np.arange(10))
    assert loader.seed is None


def test_seed_none_draws_from_the_global_generator():
    minidl.random.manual_seed(123)
    a = DataLoader(_dataset(30), batch_size=8, shuffle=True)
    minidl.random.manual_seed(123)
    b = DataLoader(_dataset(30), batch_size=8, shuffle=True)
    c = DataLoader(_dataset(30), batch_size=8, shuffle=True)
    assert a.seed == b.seed != c.seed
    np.testing.assert_array_equal(_epoch_labels(a), _epoch_labels(b))


def test_non_shuffled_loader_does_not_consume_global_randomness():
    minidl.random.manual_seed(7)
    expected = minidl.random.generator().integers(0, 1000)
    minidl.random.manual_seed(7)
    DataLoader(_dataset(), batch_size=2)
    assert minidl.random.generator().integers(0, 1000) == expected


def test_abandoned_iteration_starts_a_fresh_epoch():
    loader = DataLoader(_dataset(20), batch_size=5, shuffle=True, seed=1)
    next(iter(loader))
    assert loader.epoch == 0
    labels = _epoch_labels(loader)
    np.testing.assert_array_equal(labels, loader.epoch_order(1))
    assert loader.epoch == 2


# -- checkpoint resume ---------------------------------------------------------------------------


def test_resume_mid_epoch_continues_the_same_permutations():
    ds = _dataset(40)
    reference = DataLoader(ds, batch_size=6, shuffle=True, seed=9)
    expected = [_epoch_labels(reference) for _ in range(3)]

    first = DataLoader(ds, batch_size=6, shuffle=True, seed=9)
    _epoch_labels(first)
    seen = []
    for k, (_, y) in enumerate(first):
        seen.append(y.data)
        if k == 2:
            state = first.state_dict()
            break
    assert state["epoch"] == 1 and state["batch"] == 3

    resumed = DataLoader(ds, batch_size=6, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    rest = _epoch_labels(resumed)
    np.testing.assert_array_equal(np.concatenate(seen + [rest]), expected[1])
    np.testing.assert_array_equal(_epoch_labels(resumed), expected[2])


def test_resume_after_the_last_batch_starts_the_next_epoch():
    ds = _dataset(12)
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    for _ in loader:
        state = loader.state_dict()
    assert state["batch"] == 3
    resumed = DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    np.testing.assert_array_equal(_epoch_labels(resumed), loader.epoch_order(1))


def test_state_dict_is_plain_python():
    state = DataLoader(_dataset(), batch_size=3, shuffle=True, seed=4).state_dict()
    assert state == {
        "seed": 4,
        "epoch": 0,
        "batch": 0,
        "num_samples": 10,
        "batch_size": 3,
        "shuffle": True,
        "drop_last": False,
    }


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("batch_size", 4, "batch_size=4"),
        ("num_samples", 11, "num_samples=11"),
        ("shuffle", False, "shuffle=False"),
        ("batch", 99, "invalid position"),
    ],
)
def test_load_state_dict_rejects_mismatches(key, value, match):
    loader = DataLoader(_dataset(), batch_size=3, shuffle=True, seed=4)
    state = loader.state_dict()
    state[key] = value
    with pytest.raises(ValueError, match=match):
        loader.load_state_dict(state)


def test_load_state_dict_rejects_missing_keys():
    loader = DataLoader(_dataset(), batch_size=3)
    with pytest.raises(ValueError, match="missing keys"):
        loader.load_state_dict({"epoch": 0})


# -- MNIST through the loader ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test():
    return MNIST(root=REPO_DATA, train=False)


def test_mnist_batches_with_normalization(mnist_test):
    loader = DataLoader(mnist_test, batch_size=256, shuffle=True, seed=0, transform=MNIST.normalize)
    assert len(loader) == 40
    total, seen = 0, np.zeros(10, np.int64)
    for x, y in loader:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == np.int64
        total += x.shape[0]
        seen += np.bincount(y.data, minlength=10)
    assert total == 10000
    np.testing.assert_array_equal(seen, np.bincount(mnist_test.targets, minlength=10))


def test_mnist_batch_matches_samples(mnist_test):
    loader = DataLoader(mnist_test, batch_size=64, shuffle=True, seed=1)
    x, y = next(iter(loader))
    order = loader.epoch_order(0)[:64]
    np.testing.assert_array_equal(x.data, mnist_test.data.numpy()[order][:, None])
    np.testing.assert_array_equal(y.data, mnist_test.targets.numpy()[order])
    assert x.dtype == np.uint8


# -- PyTorch's DataLoader arguments --------------------------------------------------------------


class FailingDataset(SquaresDataset):
    def __getitem__(self, i):
        if i == 5:
            raise KeyError("sample 5 is broken")
        return super().__getitem__(i)


class DyingDataset(SquaresDataset):
    def __getitem__(self, i):
        import os

        if i == 3:
            os._exit(3)
        return super().__getitem__(i)


@pytest.mark.parametrize("persistent", [False, True])
def test_worker_processes_give_the_same_batches_in_order(persistent):
    ds = SquaresDataset(23)
    serial = [(x.data, y.data) for x, y in DataLoader(ds, batch_size=4)]
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=persistent,
                        prefetch_factor=1)
    for _ in range(2):
        got = [(x.data, y.data) for x, y in loader]
        assert len(got) == len(serial)
        for (gx, gy), (sx, sy) in zip(got, serial):
            np.testing.assert_array_equal(gx, sx)
            np.testing.assert_array_equal(gy, sy)
    assert (loader._workers is not None) == persistent
    loader._shutdown_workers()


def test_worker_exception_is_raised_with_its_traceback():
    loader = DataLoader(FailingDataset(8), batch_size=2, num_workers=2)
    with pytest.raises(RuntimeError, match="(?s)worker raised an exception.*sample 5 is broken"):
        list(loader)


def test_dead_worker_raises_instead_of_hanging():
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(DataLoader(DyingDataset(8), batch_size=2, num_workers=1))


def test_sampler_batch_sampler_collate_fn_and_generator():
    from minidl.utils.data import BatchSampler, SequentialSampler, SubsetRandomSampler

    ds = SquaresDataset(6)
    seen = [y.tolist() for _, y in DataLoader(ds, batch_size=2, sampler=SubsetRandomSampler(
        [1, 3, 5], generator=minidl.Generator().manual_seed(0)))]
    assert sorted(sum(seen, [])) == [1, 3, 5]
    batches = BatchSampler(SequentialSampler(ds), batch_size=4, drop_last=False)
    assert [len(y) for _, y in DataLoader(ds, batch_sampler=batches)] == [4, 2]
    assert list(DataLoader(ds, batch_size=3, collate_fn=lambda s: len(s))) == [3, 3]
    orders = [[y.tolist() for _, y in DataLoader(
        TensorDataset(np.zeros(6), np.arange(6)), batch_size=6, shuffle=True,
        generator=minidl.Generator().manual_seed(4))] for _ in range(2)]
    assert orders[0] == orders[1]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_sampler=batches, batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)


def test_tensor_dataset_tensors_are_its_arrays_as_tensors():

    a, b = np.arange(6.0).reshape(3, 2), np.array([0, 1, 2])
    ds = TensorDataset(a, minidl.tensor(b))
    x, y = ds.tensors
    assert isinstance(ds.tensors, tuple) and isinstance(x, minidl.Tensor)
    np.testing.assert_array_equal(x.numpy(), a)
    np.testing.assert_array_equal(y.numpy(), b)
    assert len(ds.tensors) == 2 and y.dtype == np.int64


def test_positional_arguments_mean_what_they_mean_in_torch():
    """DataLoader(dataset, batch_size, shuffle, sampler, batch_sampler, num_workers,
    collate_fn, pin_memory, drop_last, ...) as in PyTorch; minidl's seed and transform are
    keyword-only."""
    ds = TensorDataset(np.arange(10.0))
    loader = DataLoader(ds, 4, False, None, None, 0, None, False, True)
    assert loader.drop_last and len(loader) == 2
    assert not DataLoader(ds).shuffle  # shuffle=None is False, as in PyTorch
    with pytest.raises(TypeError):
        DataLoader(ds, 4, False, None, None, 0, None, False, False, 0, None, None, None, 5)
