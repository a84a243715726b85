"""minidl.data.transforms: per-sample and batched, against NumPy references, reproducible."""

import numpy as np
import pytest

import minidl
from minidl.data import transforms as T

RNG = np.random.default_rng(5)


def images(n=None, c=3, h=8, w=8):
    shape = (c, h, w) if n is None else (n, c, h, w)
    return RNG.integers(0, 256, shape).astype(np.uint8)


def find_crop(padded, crop):
    """Every (i, j) where `crop` (C, h, w) sits in `padded` (C, H, W)."""
    h, w = crop.shape[-2:]
    return [
        (i, j)
        for i in range(padded.shape[-2] - h + 1)
        for j in range(padded.shape[-1] - w + 1)
        if np.array_equal(padded[:, i : i + h, j : j + w], crop)
    ]


def test_to_tensor_scales_uint8_and_keeps_layout():
    x = images(4)
    out = T.ToTensor()(x)
    assert isinstance(out, minidl.Tensor) and out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), x / 255.0, rtol=1e-6)
    f = RNG.standard_normal((3, 2, 2))
    np.testing.assert_allclose(T.ToTensor()(f).numpy(), f.astype(np.float32))
    with pytest.raises(TypeError, match="ToTensor: expected uint8 or float"):
        T.ToTensor()(np.zeros((1, 2, 2), np.int16))
    with pytest.raises(ValueError, match=r"ToTensor: expected an image \(C, H, W\)"):
        T.ToTensor()(np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("batched", [False, True])
def test_normalize_per_channel(batched):
    x = RNG.random((5, 3, 4, 4) if batched else (3, 4, 4)).astype(np.float32)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = T.Normalize(mean, std)(x)
    shape = (3, 1, 1)
    np.testing.assert_allclose(
        out, (x - np.reshape(mean, shape)) / np.reshape(std, shape), rtol=1e-5, atol=1e-6
    )
    assert out.dtype == np.float32 and not np.shares_memory(out, x)
    as_tensor = T.Normalize(mean, std)(minidl.tensor(x))
    assert isinstance(as_tensor, minidl.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), out)
    same = T.Normalize(mean, std, inplace=True)(x)
    assert np.shares_memory(same, x)


def test_normalize_errors():
    with pytest.raises(ValueError, match="contains a zero"):
        T.Normalize(0.5, 0.0)
    with pytest.raises(ValueError, match="mean has 2 values but the image"):
        T.Normalize((0.1, 0.2), 1.0)(np.zeros((3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="apply ToTensor first"):
        T.Normalize(0.5, 0.5)(images())


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_matches_numpy(mode):
    x = images(2, 1, 5, 6)
    out = T.Pad((1, 2, 3, 0), fill=7, padding_mode=mode)(x)
    widths = ((0, 0), (0, 0), (2, 0), (1, 3))
    kwargs = {"constant_values": 7} if mode == "constant" else {}
    np.testing.assert_array_equal(out, np.pad(x, widths, mode=mode, **kwargs))
    assert T.Pad(2)(images(None, 1, 28, 28)).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="reflect padding"):
        T.Pad(6, padding_mode="reflect")(x)
    with pytest.raises(ValueError, match="padding must be"):
        T.Pad((1, 2, 3))


def test_random_crop_sample_is_a_window_of_the_padded_image():
    minidl.manual_seed(0)
    crop = T.RandomCrop(8, padding=4)
    seen = set()
    for _ in range(300):
        x = images()
        out = crop(x)
        assert out.shape == (3, 8, 8) and out.dtype == np.uint8
        padded = np.pad(x, ((0, 0), (4, 4), (4, 4)))
        spots = find_crop(padded, out)
        assert spots
        seen.update(spots)
    # Corners (0, 0) .. (8, 8) are all reachable, as torchvision's randint(0, 16 - 8 + 1).
    assert {i for i, _ in seen} == set(range(9)) and {j for _, j in seen} == set(range(9))


def test_random_crop_batch_draws_one_window_per_image():
    minidl.manual_seed(1)
    x = images(64)
    out = T.RandomCrop(8, padding=2)(x)
    assert out.shape == (64, 3, 8, 8) and out.flags.c_contiguous
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    corners = [find_crop(padded[k], out[k])[0] for k in range(64)]
    assert len(set(corners)) > 10  # not one window for the whole batch
    assert T.RandomCrop((5, 3))(x).shape == (64, 3, 5, 3)


def test_random_transforms_are_reproducible_from_the_seed():
    x = images(16)
    pipeline = T.Compose([T.RandomCrop(8, padding=4), T.RandomHorizontalFlip()])
    minidl.manual_seed(7)
    first = pipeline(x)
    minidl.manual_seed(7)
    np.testing.assert_array_equal(pipeline(x), first)
    gen_a, gen_b = np.random.default_rng(3), np.random.default_rng(3)
    a = T.RandomCrop(8, padding=4, generator=gen_a)(x)
    np.testing.assert_array_equal(T.RandomCrop(8, padding=4, generator=gen_b)(x), a)


def test_random_crop_pad_if_needed_and_errors():
    x = images(None, 1, 5, 5)
    assert T.RandomCrop(7, pad_if_needed=True)(x).shape == (1, 7, 7)
    with pytest.raises(ValueError, match="larger than the"):
        T.RandomCrop(7)(x)
    with pytest.raises(ValueError, match="size must be a positive int"):
        T.RandomCrop(0)


def test_random_horizontal_flip_per_image():
    minidl.manual_seed(2)
    x = images(400, 1, 2, 3)
    out = T.RandomHorizontalFlip()(x)
    flipped = np.array([np.array_equal(o, im[..., ::-1]) for o, im in zip(out, x)])
    kept = np.array([np.array_equal(o, im) for o, im in zip(out, x)])
    assert np.all(flipped | kept)
    assert 0.4 < flipped.mean() < 0.6
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    single = images()
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(single), single[..., ::-1])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        T.RandomHorizontalFlip(p=1.5)


def test_cifar_pipeline_on_a_sample_and_a_batch():
    pipeline = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ]
    )
    batch = pipeline(images(8, 3, 32, 32))
    sample = pipeline(images(None, 3, 32, 32))
    assert batch.shape == (8, 3, 32, 32) and sample.shape == (3, 32, 32)
    assert batch.dtype == np.float32 and isinstance(sample, minidl.Tensor)
    # Padding zeros come out as (0 - 0.5) / 0.25 = -2 after normalization.
    assert batch.numpy().min() >= -2.0 and batch.numpy().max() <= 2.0
    assert "RandomCrop(size=(32, 32)" in repr(pipeline)
    with pytest.raises(TypeError, match="not callable"):
        T.Compose([1])


def test_tensor_inputs_keep_their_dtype():
    x = minidl.from_numpy(images(4))
    out = T.RandomHorizontalFlip(p=1.0)(T.RandomCrop(6)(x))
    assert isinstance(out, minidl.Tensor) and out.dtype == np.uint8 and out.shape == (4, 3, 6, 6)
