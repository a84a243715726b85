"""MNIST-layout datasets: loading the shipped files, verification, root search, downloads.

No test touches the network: an autouse fixture installs a urllib opener that fails on any
request, and the download tests replace it with a fake that serves bytes from a dict.
"""

import email.message
import gzip
import http.client
import io
import shutil
import urllib.error
import urllib.request
import urllib.response
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import minidl
from minidl.data import DataLoader
from minidl.data import mnist as mnist_mod
from minidl.data.idx import IDXFormatError, write_idx
from minidl.data.mnist import KMNIST, MNIST, ChecksumError, DownloadError, FashionMNIST

REPO_DATA = Path(__file__).resolve().parent.parent / "data"
# Where default_roots() looks beside the package: the checkout's data/ for a source or editable
# install, site-packages/data (absent) for a regular install.
PACKAGE_DATA = Path(mnist_mod.__file__).resolve().parents[2] / "data"
MNIST_DIR = REPO_DATA / "mnist"
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class FakeHandler(urllib.request.BaseHandler):
    """Serves `responses[url]` (bytes, or an exception to raise); 404 for anything else."""

    def __init__(self, responses):
        self.responses = responses
        self.requested = []

    def _serve(self, request):
        url = request.full_url
        self.requested.append(url)
        response = self.responses.get(url)
        if response is None:
            raise urllib.error.HTTPError(url, 404, "Not Found", email.message.Message(), None)
        if isinstance(response, Exception):
            raise response
        return urllib.response.addinfourl(io.BytesIO(response), email.message.Message(), url, 200)

    http_open = _serve
    https_open = _serve


class NoNetworkHandler(urllib.request.BaseHandler):
    def _fail(self, request):
        raise AssertionError(f"test tried to access the network: {request.full_url}")

    http_open = _fail
    https_open = _fail
    ftp_open = _fail


def _install(monkeypatch, handler):
    opener = urllib.request.OpenerDirector()
    opener.add_handler(handler)
    monkeypatch.setattr(urllib.request, "_opener", opener)
    return handler


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    _install(monkeypatch, NoNetworkHandler())


@pytest.fixture(scope="module")
def train_set():
    return MNIST(root=REPO_DATA, train=True)


@pytest.fixture(scope="module")
def test_set():
    return MNIST(root=REPO_DATA, train=False)


def _copy_test_split(dest: Path, with_sums: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        shutil.copy(MNIST_DIR / name, dest / name)
    if with_sums:
        lines = [ln for ln in (MNIST_DIR / "SHA256SUMS").read_text().splitlines() if "t10k" in ln]
        (dest / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return dest


def _write_fake_split(folder: Path, n: int, train: bool, n_classes: int = 10) -> tuple:
    """A small synthetic dataset in MNIST's layout (raw .gz IDX files, no SHA256SUMS)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, n_classes, size=n, dtype=np.uint8)
    prefix = "train" if train else "t10k"
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


def _sha256sums(folder: Path) -> None:
    lines = [
        f"{mnist_mod.sha256_hex(p.read_bytes())}  {p.name}" for p in sorted(folder.glob("*-ubyte*"))
    ]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


# -- the shipped files ------------------------------------------------------------------------


def test_train_split_shapes_dtypes_and_labels(train_set):
    assert len(train_set) == 60000
    assert train_set.data.shape == (60000, 28, 28) and train_set.data.dtype == np.uint8
    assert train_set.targets.shape == (60000,) and train_set.targets.dtype == np.int64
    assert isinstance(train_set.data, minidl.Tensor)
    assert isinstance(train_set.targets, minidl.Tensor)
    assert train_set.targets[0] == 5
    assert train_set.targets.min() == 0 and train_set.targets.max() == 9
    # Every digit is well represented (5421 fives is the rarest class in the training set).
    assert np.bincount(train_set.targets.numpy()).min() == 5421
    assert train_set.folder_path == MNIST_DIR


def test_test_split_shapes_dtypes_and_labels(test_set):
    assert len(test_set) == 10000
    assert test_set.data.shape == (10000, 28, 28) and test_set.data.dtype == np.uint8
    assert test_set.targets.dtype == np.int64
    assert test_set.targets[:3].tolist() == [7, 2, 1]
    assert set(np.unique(test_set.targets.numpy())) == set(range(10))


def test_classes_and_repr(test_set):
    assert test_set.classes == [str(d) for d in range(10)]
    assert "test" in repr(test_set) and "10000" in repr(test_set)
    assert len(FashionMNIST.classes) == 10 and FashionMNIST.classes[9] == "Ankle boot"
    assert KMNIST.classes[0] == "o" and len(KMNIST.classes) == 10


def test_getitem_returns_image_and_int_label(test_set):
    image, label = test_set[0]
    assert image.shape == (1, 28, 28) and image.dtype == np.uint8
    assert label == 7 and isinstance(label, int)
    np.testing.assert_array_equal(test_set[-1][0][0], test_set.data[-1].numpy())
    with pytest.raises(IndexError):
        test_set[10000]


def test_get_batch_gathers_by_index(test_set):
    idx = np.array([3, 0, 9999, 3])
    images, labels = test_set.get_batch(idx)
    np.testing.assert_array_equal(images, test_set.data.numpy()[idx][:, None])
    np.testing.assert_array_equal(labels, test_set.targets.numpy()[idx])


def test_normalize_constants_match_training_pixels(train_set):
    mean, std = MNIST.pixel_stats(train_set.data)
    assert abs(mean - MNIST.MEAN) < 1e-4
    assert abs(std - MNIST.STD) < 1e-4


def test_normalize_formula_and_dtype(test_set):
    x = test_set.data.numpy()[:8]
    out = MNIST.normalize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    expected = (x.astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    custom = MNIST.normalize(x, mean=0.5, std=0.5)
    np.testing.assert_allclose(custom, x / 127.5 - 1.0, rtol=1e-6, atol=1e-6)


def test_normalize_without_reference_stats_asks_for_them():
    with pytest.raises(ValueError, match="FashionMNIST.normalize: no reference mean/std"):
        FashionMNIST.normalize(np.zeros((1, 1, 28, 28), np.uint8))
    out = FashionMNIST.normalize(np.full((2, 2), 255, np.uint8), mean=0.5, std=0.25)
    np.testing.assert_allclose(out, 2.0)


def test_transform_applies_per_sample_and_loader_reads_samples(tmp_path):
    ds = MNIST(root=REPO_DATA, train=False, transform=MNIST.normalize,
               target_transform=lambda y: y + 100)
    image, label = ds[0]
    assert image.dtype == np.float32 and image.shape == (1, 28, 28) and label == 107
    images, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert images.dtype == np.float32 and images.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(images.data[0], image)
    assert labels.tolist() == [107, 102, 101, 100]


# -- verification -----------------------------------------------------------------------------


def test_sha256sums_mismatch_names_the_file(tmp_path):
    folder = _copy_test_split(tmp_path / "mnist", with_sums=True)
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="SHA256SUMS") as info:
        MNIST(root=tmp_path, train=False)
    assert str(bad) in str(info.value)


def test_known_hash_mismatch_names_the_file(tmp_path):
    folder = _copy_test_split(tmp_path / "mnist", with_sums=False)
    labels = MNIST(root=tmp_path, train=False).targets.numpy().astype(np.uint8)
    labels[0] = (labels[0] + 1) % 10  # a valid IDX file with different content
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(ChecksumError, match="uncompressed content mismatch") as info:
        MNIST(root=tmp_path, train=False)
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in str(info.value)


def test_verify_false_skips_the_checks(tmp_path):
    folder = _copy_test_split(tmp_path / "mnist", with_sums=False)
    labels = np.zeros(10000, np.uint8)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    assert MNIST(root=tmp_path, train=False, verify=False).targets.max() == 0


def test_raw_uncompressed_files_verified_by_content_hash(tmp_path, test_set):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in TEST_FILES:
        (folder / name[:-3]).write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    ds = MNIST(root=tmp_path, train=False)
    np.testing.assert_array_equal(ds.data, test_set.data)
    np.testing.assert_array_equal(ds.targets, test_set.targets)


def test_regzipped_files_pass_the_content_hash(tmp_path, test_set):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in TEST_FILES:
        content = gzip.decompress((MNIST_DIR / name).read_bytes())
        (folder / name).write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
    np.testing.assert_array_equal(MNIST(root=tmp_path, train=False).targets, test_set.targets)


def test_corrupt_gzip_without_sums_is_a_format_error(tmp_path):
    folder = _copy_test_split(tmp_path / "mnist", with_sums=False)
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(IDXFormatError, match="gzip") as info:
        MNIST(root=tmp_path, train=False)
    assert str(bad) in str(info.value)


def test_malformed_sha256sums_line_is_reported(tmp_path):
    folder = _copy_test_split(tmp_path / "mnist", with_sums=False)
    (folder / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(ValueError, match="SHA256SUMS:1"):
        MNIST(root=tmp_path, train=False)


# -- other datasets in MNIST's layout -----------------------------------------------------------


def test_other_dataset_without_hashes_is_refused_unless_verify_false(tmp_path):
    images, labels = _write_fake_split(tmp_path / "fashion-mnist", 20, train=True)
    # The official .gz files' MD5s are known; a different .gz is refused.
    with pytest.raises(ChecksumError, match="MD5 mismatch against the official file"):
        FashionMNIST(root=tmp_path)
    ds = FashionMNIST(root=tmp_path, verify=False)
    assert ds.data.shape == (20, 28, 28)
    np.testing.assert_array_equal(ds.data, images)
    np.testing.assert_array_equal(ds.targets, labels.astype(np.int64))


@pytest.mark.parametrize("cls", [FashionMNIST, KMNIST])
def test_official_gz_files_verify_by_their_published_md5(tmp_path, cls, monkeypatch):
    import hashlib

    assert len(cls.known_gz_md5) == 4 and all(len(v) == 32 for v in cls.known_gz_md5.values())
    folder = tmp_path / cls.folder
    _, labels = _write_fake_split(folder, 9, train=False)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(cls, "known_gz_md5", md5)
    np.testing.assert_array_equal(cls(root=tmp_path, train=False).targets, labels)
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(gz, "rb") as f:
        raw = f.read()
    gz.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw)
    with pytest.raises(ChecksumError, match="keep the .gz files"):
        cls(root=tmp_path, train=False)


def test_other_dataset_with_sha256sums_loads(tmp_path):
    folder = tmp_path / "kmnist"
    _, labels = _write_fake_split(folder, 12, train=False)
    _sha256sums(folder)
    ds = KMNIST(root=tmp_path, train=False)
    np.testing.assert_array_equal(ds.targets, labels)
    assert ds.folder_path == folder
    # The folder itself works as root too, and through the base class.
    np.testing.assert_array_equal(MNIST(root=folder, train=False).targets, labels)


def test_inconsistent_counts_are_rejected(tmp_path):
    folder = tmp_path / "d"
    _write_fake_split(folder, 10, train=False)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        MNIST(root=folder, train=False, verify=False)


def test_label_out_of_range_is_rejected(tmp_path):
    folder = tmp_path / "d"
    _write_fake_split(folder, 10, train=False)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, np.uint8))
    with pytest.raises(ValueError, match="label 10 out of range for 10 classes"):
        MNIST(root=folder, train=False, verify=False)


def test_wrong_element_type_is_rejected(tmp_path):
    folder = tmp_path / "d"
    _write_fake_split(folder, 10, train=False)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.float32))
    with pytest.raises(IDXFormatError, match="expected uint8 images") as info:
        MNIST(root=folder, train=False, verify=False)
    assert "t10k-images-idx3-ubyte" in str(info.value)


# -- root search --------------------------------------------------------------------------------


def test_default_roots_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert mnist_mod.default_roots() == [
        tmp_path / "env",
        PACKAGE_DATA,
        tmp_path / "data",
        tmp_path / "xdg" / "minidl",
    ]
    monkeypatch.delenv("MINIDL_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME")
    roots = mnist_mod.default_roots()
    assert roots[0] == PACKAGE_DATA and roots[-1] == Path.home() / ".cache" / "minidl"


def test_minidl_data_env_wins_when_it_has_the_files(tmp_path, monkeypatch):
    _copy_test_split(tmp_path / "env" / "mnist", with_sums=True)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env"))
    assert MNIST(train=False).folder_path == tmp_path / "env" / "mnist"


def test_empty_minidl_data_falls_back_to_repository_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path))
    assert MNIST(train=False).folder_path == MNIST_DIR


def test_default_search_ignores_files_loose_in_a_root(tmp_path, monkeypatch):
    _copy_test_split(tmp_path, with_sums=True)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path))
    assert MNIST(train=False).folder_path == MNIST_DIR


def test_missing_files_raise_with_the_searched_places(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        MNIST(root=tmp_path / "nowhere", train=False)
    assert str(tmp_path / "nowhere" / "mnist") in str(info.value)


# -- downloads (fake opener, no network) ----------------------------------------------------------


def _mirror_urls(name):
    return [base + name for base in MNIST.mirrors]


def _good_payloads():
    return {name: (MNIST_DIR / name).read_bytes() for name in TEST_FILES}


def _assert_no_temp_files(folder: Path):
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_download_falls_back_to_next_mirror(tmp_path, monkeypatch, test_set):
    good = _good_payloads()
    responses = {}
    for name, payload in good.items():
        first, second = _mirror_urls(name)
        responses[first] = urllib.error.URLError("connection refused")
        responses[second] = payload
    handler = _install(monkeypatch, FakeHandler(responses))
    ds = MNIST(root=tmp_path, train=False, download=True)
    np.testing.assert_array_equal(ds.targets, test_set.targets)
    folder = tmp_path / "mnist"
    assert ds.folder_path == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(TEST_FILES)
    assert (folder / TEST_FILES[0]).read_bytes() == good[TEST_FILES[0]]
    assert len(handler.requested) == 4
    # A second construction finds the files and does not download again.
    MNIST(root=tmp_path, train=False, download=True)
    assert len(handler.requested) == 4


def test_download_skips_a_corrupt_mirror(tmp_path, monkeypatch):
    good = _good_payloads()
    responses = {}
    for name, payload in good.items():
        first, second = _mirror_urls(name)
        corrupt = gzip.compress(gzip.decompress(payload)[:-1] + b"\x09", compresslevel=1)
        responses[first] = corrupt
        responses[second] = payload
    _install(monkeypatch, FakeHandler(responses))
    ds = MNIST(root=tmp_path, train=False, download=True)
    assert ds.targets[0] == 7
    for name, payload in good.items():
        assert (tmp_path / "mnist" / name).read_bytes() == payload


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "http-error", "dropped-connection"])
def test_failed_download_leaves_no_file(tmp_path, monkeypatch, kind):
    good = _good_payloads()
    responses = {}
    for name, payload in good.items():
        for url in _mirror_urls(name):
            if kind == "corrupt":
                data = bytearray(payload)
                data[len(data) // 2] ^= 0xFF
                responses[url] = bytes(data)
            elif kind == "truncated":
                responses[url] = payload[: len(payload) // 2]
            elif kind == "dropped-connection":
                responses[url] = http.client.IncompleteRead(payload[:100], len(payload) - 100)
    _install(monkeypatch, FakeHandler(responses))
    with pytest.raises(DownloadError, match="could not download t10k-images-idx3-ubyte.gz") as info:
        MNIST(root=tmp_path, train=False, download=True)
    for url in _mirror_urls(TEST_FILES[0]):
        assert url in str(info.value)
    assert not (tmp_path / "mnist").exists()


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    responses = {}
    for name, payload in _good_payloads().items():
        for url in _mirror_urls(name):
            responses[url] = payload
    _install(monkeypatch, FakeHandler(responses))

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnist_mod.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        MNIST(root=tmp_path, train=False, download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_with_no_root_goes_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist_mod, "default_roots", lambda: [mnist_mod.cache_dir()])
    responses = {}
    for name, payload in _good_payloads().items():
        responses[_mirror_urls(name)[0]] = payload
    _install(monkeypatch, FakeHandler(responses))
    ds = MNIST(train=False, download=True)
    assert ds.folder_path == tmp_path / "cache" / "minidl" / "mnist"
    _assert_no_temp_files(ds.folder_path)
    assert len(ds) == 10000


def test_download_refused_without_a_known_hash(tmp_path):
    class Unhashed(MNIST):
        folder = "unhashed"
        known_hashes: ClassVar[dict] = {}
        known_gz_md5: ClassVar[dict] = {}

    with pytest.raises(DownloadError, match="no known hash"):
        Unhashed(root=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []
