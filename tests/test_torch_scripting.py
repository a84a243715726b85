"""The switches and helpers PyTorch training scripts use around the model: mixed precision
(GradScaler, autocast), backend flags, limits, memory formats, printing, determinism,
anomaly mode, testing.assert_close, IterableDataset. Each is compared with PyTorch when it is
installed."""

import warnings

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.utils import data


def scaler_run(lib, scaler, grads):
    """Steps of SGD on one parameter with the given (unscaled) gradients through scaler;
    returns (scale after each update, parameter after each update, whether each step was
    skipped)."""
    p = lib.nn.Parameter(lib.tensor(np.array([1.0, -2.0], dtype=np.float32)))
    opt = lib.optim.SGD([p], lr=0.1)
    scales, values, skipped = [], [], []
    for g in grads:
        opt.zero_grad()
        loss = scaler.scale((p * lib.tensor(np.asarray(g, dtype=np.float32))).sum())
        loss.backward()
        before = p.detach().numpy().copy()
        scaler.step(opt)
        skipped.append(bool((p.detach().numpy() == before).all()))
        scaler.update()
        scales.append(scaler.get_scale())
        values.append(p.detach().numpy().copy())
    return scales, values, skipped


def test_grad_scaler_matches_torch_on_the_cpu():
    torch = pytest.importorskip("torch")
    grads = [[0.5, 1.0], [np.inf, 1.0], [0.25, -1.0], [1.0, 1.0], [np.nan, 0.0], [2.0, 3.0]]
    kw = dict(init_scale=1024.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2)
    ours = scaler_run(minidl, minidl.amp.GradScaler("cpu", **kw), grads)
    theirs = scaler_run(torch, torch.amp.GradScaler("cpu", **kw), grads)
    assert ours[0] == theirs[0]  # the scale schedule: backoff on inf/NaN, growth every 2
    np.testing.assert_array_equal(np.array(ours[1]), np.array(theirs[1]))
    assert ours[2] == theirs[2] == [False, True, False, False, True, False]  # skipped
    scaler = minidl.amp.GradScaler("cpu", **kw)
    assert scaler.state_dict() == torch.amp.GradScaler("cpu", **kw).state_dict()
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()


def test_cuda_forms_of_amp_disable_themselves_and_cpu_autocast_raises():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = minidl.cuda.amp.GradScaler()
    assert not scaler.is_enabled() and scaler.get_scale() == 1.0
    loss = minidl.tensor(2.0)
    assert scaler.scale(loss) is loss
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert not minidl.amp.GradScaler().is_enabled()  # PyTorch's default device is cuda
    with pytest.warns(UserWarning, match="CUDA is not available"):
        with minidl.autocast("cuda"):
            pass
    with minidl.autocast("cpu", enabled=False):
        pass
    with pytest.raises(NotImplementedError, match="no float16 or bfloat16"):
        minidl.autocast("cpu")


def test_flags_limits_constants_and_formats_match_torch():
    torch = pytest.importorskip("torch")
    minidl.backends.cudnn.benchmark = True
    minidl.backends.cudnn.deterministic = True
    assert not minidl.backends.cudnn.is_available()
    for dt in ("float32", "float64"):
        ours, theirs = minidl.finfo(getattr(minidl, dt)), torch.finfo(getattr(torch, dt))
        for name in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution"):
            assert getattr(ours, name) == getattr(theirs, name), (dt, name)
    for dt in ("int8", "int16", "int32", "int64", "uint8"):
        ours, theirs = minidl.iinfo(getattr(minidl, dt)), torch.iinfo(getattr(torch, dt))
        assert (ours.bits, ours.min, ours.max) == (theirs.bits, theirs.min, theirs.max)
    with pytest.raises(TypeError):
        minidl.iinfo(minidl.float32)
    assert (minidl.e, minidl.pi, minidl.inf) == (torch.e, torch.pi, torch.inf)
    assert np.isnan(minidl.nan) and minidl.newaxis is None
    x = minidl.randn(2, 3, 4, 4)
    assert x.to(memory_format=minidl.channels_last) is x
    assert x.contiguous(memory_format=minidl.contiguous_format) is x
    nn.Conv2d(3, 2, 1).to(memory_format=minidl.channels_last)
    with pytest.raises(TypeError, match="memory_format"):
        x.contiguous(memory_format="channels_last")
    minidl.use_deterministic_algorithms(True)
    assert minidl.are_deterministic_algorithms_enabled()
    minidl.use_deterministic_algorithms(False)
    minidl.set_float32_matmul_precision("high")
    assert minidl.get_float32_matmul_precision() == "high"
    minidl.set_float32_matmul_precision("highest")
    with pytest.raises(RuntimeError, match="Invalid precision"):
        minidl.set_float32_matmul_precision("low")
    minidl.set_num_interop_threads(2)
    assert minidl.get_num_interop_threads() == 2
    minidl.cuda.empty_cache()


def test_set_printoptions_changes_how_tensors_print():
    x = minidl.tensor(np.array([1.123456, 2.0]))
    try:
        minidl.set_printoptions(precision=2)
        assert "1.12," in repr(x)
        minidl.set_printoptions(threshold=5, edgeitems=1)
        assert "..." in repr(minidl.arange(10))
        minidl.set_printoptions(sci_mode=True)
        assert "e+00" in repr(x)
    finally:
        minidl.set_printoptions(profile="default")
    assert "1.1235" in repr(x)
    with pytest.raises(ValueError, match="profile"):
        minidl.set_printoptions(profile="long")


def test_anomaly_mode_names_the_op_whose_gradient_is_nan():
    x = minidl.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="Function 'SqrtBackward0' returned nan values in "
                                           "its 0th output"):
        with minidl.autograd.detect_anomaly():
            (x.sqrt() * 0).sum().backward()
    assert not minidl.is_anomaly_enabled()
    (x.sqrt() * 0).sum().backward()  # outside anomaly mode: NaN gradient, no error
    assert np.isnan(x.grad.numpy()[0])
    minidl.autograd.set_detect_anomaly(True)
    assert minidl.is_anomaly_enabled()
    minidl.autograd.set_detect_anomaly(False)
    v = minidl.autograd.Variable(minidl.ones(2), requires_grad=True)
    assert v.requires_grad


def test_assert_close_uses_torch_default_tolerances():
    torch = pytest.importorskip("torch")
    cases = [(np.float32, 1 + 1e-6), (np.float32, 1 + 1e-4), (np.float64, 1 + 1e-8),
             (np.float64, 1 + 1e-6)]
    for dtype, value in cases:
        a, b = np.ones(3, dtype), np.full(3, value, dtype)
        try:
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b))
            expected = True
        except AssertionError:
            expected = False
        try:
            minidl.testing.assert_close(minidl.tensor(a), minidl.tensor(b))
            got = True
        except AssertionError:
            got = False
        assert got == expected, (dtype, value)
    with pytest.raises(AssertionError, match="dtype"):
        minidl.testing.assert_close(minidl.tensor([1]), minidl.tensor([1.0]))
    minidl.testing.assert_close({"a": [minidl.ones(2)]}, {"a": [minidl.ones(2)]})
    minidl.testing.assert_close(minidl.tensor([np.nan]), minidl.tensor([np.nan]), equal_nan=True)


class Stream(data.IterableDataset):
    def __iter__(self):
        for i in range(7):
            yield np.float32(i), i % 2


def test_iterable_dataset_batches_like_torch():
    batches = list(data.DataLoader(Stream(), batch_size=3))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[1].tolist() for b in batches] == [[0, 1, 0], [1, 0, 1], [0]]
    assert len(list(data.DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        data.DataLoader(Stream(), shuffle=True)
    with pytest.raises(NotImplementedError, match="num_workers"):
        data.DataLoader(Stream(), num_workers=1)
    assert data.get_worker_info() is None


class WorkerIds(data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = data.get_worker_info()
        return np.int64(-1 if info is None else info.id * 10 + info.num_workers)


def test_get_worker_info_inside_workers():
    got = np.concatenate([b.numpy() for b in data.DataLoader(WorkerIds(), batch_size=2,
                                                                num_workers=2)])
    assert sorted(set(got.tolist())) == [2, 12]  # worker ids 0 and 1 of 2
    assert data.DataLoader(WorkerIds(), batch_size=4).__iter__().__next__().tolist() == [-1] * 4


def test_fork_rng_restores_the_generator_and_module_compile_runs_eagerly():
    minidl.manual_seed(3)
    with minidl.random.fork_rng():
        minidl.randn(5)
    after = minidl.randn(2).numpy()
    minidl.manual_seed(3)
    np.testing.assert_array_equal(after, minidl.randn(2).numpy())
    model = nn.Linear(2, 1)
    x = minidl.ones(1, 2)
    before = model(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(mode="max-autotune")
    np.testing.assert_array_equal(model(x).numpy(), before)
