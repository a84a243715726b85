"""DistributedSampler: disjoint, complete shards; one permutation per (seed, epoch); the
contiguous-slice layout of reproducible data parallelism; the DataLoader drives it."""

import numpy as np
import pytest

from minidl.data import DataLoader, DistributedSampler, TensorDataset


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


@pytest.mark.parametrize("n, replicas", [(10, 2), (10, 3), (7, 4), (1, 3), (64, 4)])
def test_shards_are_disjoint_complete_and_equal_sized(n, replicas):
    shards = [DistributedSampler(Sized(n), replicas, r, seed=3).epoch_indices(0)
              for r in range(replicas)]
    assert len({len(s) for s in shards}) == 1
    together = np.concatenate(shards)
    assert set(together.tolist()) == set(range(n))
    padding = len(together) - n
    assert 0 <= padding < replicas
    if padding == 0:
        assert len(set(together.tolist())) == n


def test_drop_last_drops_the_tail_and_never_repeats():
    shards = [DistributedSampler(Sized(10), 3, r, drop_last=True).epoch_indices(0)
              for r in range(3)]
    together = np.concatenate(shards)
    assert len(together) == 9 and len(set(together.tolist())) == 9


def test_every_rank_draws_the_same_permutation_and_epochs_differ():
    a = [DistributedSampler(Sized(20), 2, r, seed=5) for r in range(2)]
    interleaved = np.empty(20, dtype=np.int64)
    interleaved[0::2], interleaved[1::2] = a[0].epoch_indices(1), a[1].epoch_indices(1)
    assert sorted(interleaved.tolist()) == list(range(20))
    assert not np.array_equal(a[0].epoch_indices(0), a[0].epoch_indices(1))
    s = DistributedSampler(Sized(20), 2, 0, seed=5)
    s.set_epoch(1)
    assert list(s) == a[0].epoch_indices(1).tolist()
    assert not np.array_equal(DistributedSampler(Sized(20), 2, 0, seed=6).epoch_indices(1),
                              a[0].epoch_indices(1))


def test_contiguous_layout_gives_rank_r_the_rth_slice_of_each_global_batch():
    one = DistributedSampler(Sized(20), 1, 0, seed=1, batch_size=8).epoch_indices(2)
    for replicas in (2, 4):
        local = 8 // replicas
        shards = [DistributedSampler(Sized(20), replicas, r, seed=1, batch_size=8)
                  .epoch_indices(2) for r in range(replicas)]
        for b in range(3):  # 20 samples -> 3 global batches (the last padded)
            rebuilt = np.concatenate([s[b * local : (b + 1) * local] for s in shards])
            np.testing.assert_array_equal(rebuilt, one[b * 8 : (b + 1) * 8])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="rank must be"):
        DistributedSampler(Sized(4), 2, 2)
    with pytest.raises(ValueError, match="multiple of num_replicas"):
        DistributedSampler(Sized(4), 3, 0, batch_size=8)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(TensorDataset(np.zeros((4, 1))), sampler=DistributedSampler(Sized(4), 2, 0),
                   shuffle=True)


def test_dataloader_uses_the_sampler_and_resumes_on_the_same_indices():
    data = np.arange(40, dtype=np.float32).reshape(20, 2)
    sampler = DistributedSampler(Sized(20), 2, 1, seed=2)
    loader = DataLoader(TensorDataset(data), batch_size=3, sampler=sampler)
    assert len(loader) == 4
    epochs = [np.concatenate([b[0].data for b in loader]) for _ in range(2)]
    for e, got in enumerate(epochs):
        np.testing.assert_array_equal(got, data[sampler.epoch_indices(e)])
    resumed = DataLoader(TensorDataset(data), batch_size=3,
                         sampler=DistributedSampler(Sized(20), 2, 1, seed=2))
    it = iter(loader)
    next(it)
    resumed.load_state_dict(loader.state_dict())
    rest = np.concatenate([b[0].data for b in resumed])
    np.testing.assert_array_equal(rest, data[sampler.epoch_indices(2)][3:])
