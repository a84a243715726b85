"""examples/predict.py on a checkpoint from a very short minidl-train run."""

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.data import MNIST
from minidl.nn import functional as F

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "predict.py"


def load_example():
    spec = importlib.util.spec_from_file_location("predict_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


predict = load_example()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from minidl.train import main

    path = tmp_path_factory.mktemp("ckpt") / "lenet.ckpt"
    main(["--epochs", "1", "--limit", "512", "--no-progress", "--checkpoint", str(path)])
    return path


@pytest.fixture(scope="module")
def test_images():
    test_set = MNIST(train=False)
    return test_set.data.numpy()[:5], test_set.targets.numpy()[:5]


def write_png(path, gray):
    """A minimal 8-bit grayscale PNG (no image library needed to write one)."""
    rows = b"".join(b"\x00" + row.tobytes() for row in gray.astype(np.uint8))

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", gray.shape[1], gray.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_npy_file_matches_the_model_and_the_test_set_path(
    checkpoint, test_images, tmp_path, capsys
):
    images, labels = test_images
    np.save(tmp_path / "digits.npy", images)
    from_file = predict.main(
        [str(checkpoint), "--file", str(tmp_path / "digits.npy"), "--top", "10"]
    )
    from_index = predict.main([str(checkpoint), "--index", "0", "1", "2", "3", "4", "--top", "10"])
    out = capsys.readouterr().out
    assert f"label {labels[0]}" in out and "digits.npy[4]" in out

    model, name = predict.load_model(checkpoint)
    assert name == "lenet5"
    with minidl.no_grad():
        x = minidl.from_numpy(MNIST.normalize(images[:, None]))
        expected = F.softmax(model(x), dim=1).data
    for i, (a, b) in enumerate(zip(from_file, from_index)):
        assert a.label is None and b.label == labels[i]
        assert a.top == b.top
        classes = [c for c, _ in a.top]
        probs = np.array([p for _, p in a.top])
        assert sorted(classes) == list(range(10))
        assert np.all(np.diff(probs) <= 0)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(probs, expected[i][classes], rtol=1e-6)


def test_npy_scales_and_shapes(checkpoint, test_images, tmp_path):
    images, _ = test_images
    np.save(tmp_path / "u8.npy", images[0])
    np.save(tmp_path / "unit.npy", images[:1, None] / 255.0)
    a, b = (
        predict.main([str(checkpoint), "--file", str(tmp_path / f)]) for f in ("u8.npy", "unit.npy")
    )
    assert len(a) == len(b) == 1
    assert [c for c, _ in a[0].top] == [c for c, _ in b[0].top]
    np.testing.assert_allclose([p for _, p in a[0].top], [p for _, p in b[0].top], rtol=1e-4)


def test_bad_inputs_exit_with_a_message(checkpoint, tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(SystemExit, match=r"shape \(3, 32, 32\)"):
        predict.main([str(checkpoint), "--file", str(tmp_path / "wrong.npy")])
    with pytest.raises(SystemExit, match="no checkpoint"):
        predict.main([str(tmp_path / "missing.ckpt"), "--index", "0"])
    with pytest.raises(SystemExit, match="0..9999"):
        predict.main([str(checkpoint), "--index", "10000"])


def test_random_is_reproducible_with_a_seed(checkpoint):
    a = predict.main([str(checkpoint), "--random", "4", "--seed", "3"])
    b = predict.main([str(checkpoint), "--random", "4", "--seed", "3"])
    assert [r.source for r in a] == [r.source for r in b]
    assert len({r.source for r in a}) == 4 and all(r.label is not None for r in a)


def have_pillow():
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not have_pillow(), reason="needs Pillow to read PNG")
def test_png_dark_on_light_is_inverted_like_mnist(checkpoint, test_images, tmp_path):
    images, _ = test_images
    write_png(tmp_path / "drawn.png", 255 - images[0])  # black digit on white paper
    np.testing.assert_array_equal(predict.load_png(tmp_path / "drawn.png"), images[0])
    write_png(tmp_path / "mnist.png", images[0])
    np.testing.assert_array_equal(predict.load_png(tmp_path / "mnist.png"), images[0])
    png = predict.main([str(checkpoint), "--file", str(tmp_path / "drawn.png")])
    test = predict.main([str(checkpoint), "--index", "0"])
    assert png[0].top == test[0].top
    write_png(tmp_path / "big.png", np.zeros((32, 30), np.uint8))
    with pytest.raises(ValueError, match="30x32 pixels, expected 28x28"):
        predict.load_png(tmp_path / "big.png")


def test_png_without_pillow_says_what_to_install(tmp_path, monkeypatch):
    write_png(tmp_path / "digit.png", np.zeros((28, 28), np.uint8))
    for name in ("PIL", "PIL.Image"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install pillow"):
        predict.load_png(tmp_path / "digit.png")
