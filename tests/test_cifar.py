"""CIFAR-10 from synthetic files in the official binary format: decoding, the MD5-checked
archive, safe extraction, SHA256SUMS verification and the (file://, offline) downloader."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from minidl.data import CIFAR10, ChecksumError, DataLoader, DownloadError
from minidl.data.cifar import RECORD_BYTES, decode_batch

FOLDER = "cifar-10-batches-bin"


def records(rng, n):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)
    return labels, pixels, np.concatenate([labels[:, None], pixels], axis=1).tobytes()


def make_members(seed=0, per_batch=3, test=2):
    rng = np.random.default_rng(seed)
    members, truth = {}, {}
    for name, n in [(f"data_batch_{k}.bin", per_batch) for k in range(1, 6)] + [
        ("test_batch.bin", test)
    ]:
        labels, pixels, data = records(rng, n)
        members[f"{FOLDER}/{name}"] = data
        truth[name] = (labels, pixels)
    members[f"{FOLDER}/batches.meta.txt"] = "\n".join(CIFAR10.classes).encode()
    return members, truth


def write_archive(path, members, extra=()):
    with tarfile.open(path, "w:gz") as tar:
        d = tarfile.TarInfo(FOLDER)
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return path


def dataset_class(archive):
    """CIFAR10 with the synthetic archive's MD5 standing in for the official one."""
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return type(
        "SyntheticCIFAR10", (CIFAR10,), {"archive_md5": md5, "url": archive.resolve().as_uri()}
    )


def test_decode_batch_layout_is_label_then_red_green_blue_planes_row_major():
    rng = np.random.default_rng(1)
    labels, pixels, data = records(rng, 4)
    images, got_labels = decode_batch(data, "x.bin")
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.int64
    # red channel, row 0, column 1 is pixel byte 1; green row 2 col 3 is 1024 + 2 * 32 + 3.
    np.testing.assert_array_equal(images[:, 0, 0, 1], pixels[:, 1])
    np.testing.assert_array_equal(images[:, 1, 2, 3], pixels[:, 1024 + 2 * 32 + 3])
    np.testing.assert_array_equal(images[:, 2, 31, 31], pixels[:, 3071])


def test_decode_batch_rejects_partial_records_and_bad_labels():
    _, _, data = records(np.random.default_rng(2), 2)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        decode_batch(data[:-1], "cut.bin")
    with pytest.raises(ValueError, match="not a whole number"):
        decode_batch(b"", "empty.bin")
    bad = bytearray(data)
    bad[RECORD_BYTES] = 10
    with pytest.raises(ValueError, match="bad.bin: record 1 has label 10"):
        decode_batch(bytes(bad), "bad.bin")


def test_archive_in_root_is_verified_extracted_and_loaded(tmp_path):
    members, truth = make_members()
    archive = write_archive(tmp_path / CIFAR10.archive, members)
    cls = dataset_class(archive)
    train = cls(tmp_path, train=True)
    assert train.data.shape == (15, 3, 32, 32) and train.targets.shape == (15,)
    expected_labels = np.concatenate([truth[f"data_batch_{k}.bin"][0] for k in range(1, 6)])
    np.testing.assert_array_equal(train.targets, expected_labels)
    first = truth["data_batch_1.bin"][1][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(train.data[0], first)
    sums = (tmp_path / FOLDER / "SHA256SUMS").read_text()
    assert "data_batch_3.bin" in sums and "batches.meta.txt" in sums
    assert not list(tmp_path.glob(".*.part"))  # no staging folder left behind
    test = cls(tmp_path, train=False)
    assert len(test) == 2 and test.folder_path == tmp_path / FOLDER
    image, label = test[1]
    assert image.shape == (3, 32, 32) and label == int(truth["test_batch.bin"][0][1])
    # The plain class refuses the synthetic archive: its MD5 is not the published one.
    (tmp_path / FOLDER / "SHA256SUMS").unlink()
    other = tmp_path / "other"
    other.mkdir()
    (other / CIFAR10.archive).write_bytes(archive.read_bytes())
    with pytest.raises(ChecksumError, match="MD5 mismatch: expected c32a1d4ab5d03f1284b67883e8d"):
        CIFAR10(other)
    assert not (other / FOLDER).exists()


def test_extracted_files_are_checked_against_sha256sums(tmp_path):
    members, _ = make_members()
    cls = dataset_class(write_archive(tmp_path / CIFAR10.archive, members))
    cls(tmp_path, train=False)
    (tmp_path / CIFAR10.archive).unlink()
    path = tmp_path / FOLDER / "test_batch.bin"
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="test_batch.bin: SHA-256 mismatch"):
        cls(tmp_path, train=False)
    assert len(cls(tmp_path, train=False, verify=False)) == 2
    (tmp_path / FOLDER / "SHA256SUMS").unlink()
    with pytest.raises(ChecksumError, match="no SHA256SUMS entry"):
        cls(tmp_path, train=False)


def test_hand_extracted_folder_needs_verify_false(tmp_path):
    members, truth = make_members()
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(members[f"{FOLDER}/test_batch.bin"])
    with pytest.raises(ChecksumError, match="pass verify=False"):
        CIFAR10(folder, train=False)
    ds = CIFAR10(folder, train=False, verify=False)  # root may be the folder itself
    np.testing.assert_array_equal(ds.targets, truth["test_batch.bin"][0])


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_archives_are_rejected_and_write_nothing(tmp_path, kind):
    members, _ = make_members()
    info = tarfile.TarInfo(
        {
            "dotdot": f"{FOLDER}/../../evil.bin",
            "absolute": "/tmp/evil.bin",
            "symlink": f"{FOLDER}/link",
            "hardlink": f"{FOLDER}/hard",
            "device": f"{FOLDER}/dev",
        }[kind]
    )
    data = None
    if kind in ("dotdot", "absolute"):
        data = b"x"
        info.size = 1
    elif kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, f"{FOLDER}/test_batch.bin"
    else:
        info.type = tarfile.CHRTYPE
    root = tmp_path / "root"
    root.mkdir()
    cls = dataset_class(write_archive(root / CIFAR10.archive, members, [(info, data)]))
    with pytest.raises(ValueError, match="unsafe member path|not a regular file"):
        cls(root)
    assert sorted(p.name for p in root.iterdir()) == [CIFAR10.archive]
    assert not (tmp_path / "evil.bin").exists()


def test_unknown_members_are_skipped_and_missing_ones_reported(tmp_path):
    members, _ = make_members()
    members[f"{FOLDER}/extra.py"] = b"print('hi')"
    members["elsewhere/data_batch_1.bin"] = b"0"
    cls = dataset_class(write_archive(tmp_path / CIFAR10.archive, members))
    cls(tmp_path, train=False)
    assert not (tmp_path / FOLDER / "extra.py").exists()
    assert not (tmp_path / "elsewhere").exists()
    incomplete = {k: v for k, v in members.items() if not k.endswith("data_batch_4.bin")}
    root = tmp_path / "incomplete"
    root.mkdir()
    cls = dataset_class(write_archive(root / CIFAR10.archive, incomplete))
    with pytest.raises(ValueError, match="missing members.*data_batch_4.bin"):
        cls(root)
    assert not (root / FOLDER).exists()


def test_download_streams_through_the_md5_check_offline(tmp_path):
    members, _ = make_members()
    source = write_archive(tmp_path / "served.tar.gz", members)
    cls = dataset_class(source)
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="download=True"):
        cls(root, train=False)
    ds = cls(root, train=False, download=True)
    assert len(ds) == 2
    assert (root / CIFAR10.archive).read_bytes() == source.read_bytes()
    wrong = type("Wrong", (cls,), {"archive_md5": "0" * 32})
    other = tmp_path / "other"
    with pytest.raises(ChecksumError, match="MD5 mismatch"):
        wrong(other, train=False, download=True)
    assert list(other.iterdir()) == []  # the temporary file is gone, nothing renamed
    missing = type("Missing", (cls,), {"url": (tmp_path / "nowhere.tar.gz").as_uri()})
    with pytest.raises(DownloadError, match="could not download"):
        missing(tmp_path / "third", train=False, download=True)


def test_loader_batches_with_transform(tmp_path):
    members, _ = make_members()
    cls = dataset_class(write_archive(tmp_path / CIFAR10.archive, members))
    ds = cls(tmp_path, transform=lambda im: im.astype(np.float32) / 255)
    images, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32
    np.testing.assert_allclose(images.numpy(), ds.data[:4] / 255, rtol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), ds.targets[:4])
