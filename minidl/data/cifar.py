"""CIFAR-10 (Krizhevsky, 2009) from its official binary version: locate, verify, extract, load.

The binary archive `cifar-10-binary.tar.gz` (no pickle anywhere) unpacks to

    cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin,
                         batches.meta.txt, readme.html

Each .bin file is a run of 3073-byte records: one label byte (0-9), then the 32x32 red, green
and blue planes (1024 bytes each, rows top to bottom). The official files hold 10,000 records
each.

Verification: the archive is checked against the MD5 the official page publishes
(https://www.cs.toronto.edu/~kriz/cifar.html) before anything is read from it. Extraction
writes a SHA256SUMS file next to the extracted files (hashes of what the verified archive
held), and every later load checks the files against it. A folder without SHA256SUMS (files
extracted by hand) is refused unless `verify=False`. Whatever `verify` says, each file's
structure is checked (whole records, labels below 10).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from minidl.atomic import atomic_path, atomic_write_bytes
from minidl.data.dataset import Dataset
from minidl.data.mnist import (
    ChecksumError,
    DownloadError,
    cache_dir,
    default_roots,
    read_sha256sums,
    sha256_hex,
)

RECORD_BYTES = 1 + 3 * 32 * 32
_TRAIN_FILES = tuple(f"data_batch_{k}.bin" for k in range(1, 6))
_TEST_FILES = ("test_batch.bin",)
# Every member the official archive holds, under its top folder; nothing else is extracted.
_ARCHIVE_FILES = _TRAIN_FILES + _TEST_FILES + ("batches.meta.txt", "readme.html")
# An official batch file is 30,730,000 bytes; a member larger than this is not CIFAR-10.
_MAX_MEMBER_BYTES = 64 << 20
_MAX_ARCHIVE_BYTES = 256 << 20
_DOWNLOAD_TIMEOUT_S = 60


class CIFAR10(Dataset):
    """The CIFAR-10 images: 50,000 training and 10,000 test 32x32 colour images, 10 classes.

    root: a directory holding `cifar-10-batches-bin/` (or that folder itself), or the archive
        `cifar-10-binary.tar.gz`, which is verified and extracted next to it. None searches
        each of `minidl.data.mnist.default_roots()` the same way.
    train: the five training batches if True, else the test batch.
    download: fetch the archive from `url` into `root` (or the download cache when root is
        None), MD5-checked and written atomically, then extract it.
    transform: applied to images, uint8 (3, 32, 32) in `dataset[i]` and (B, 3, 32, 32) in
        `get_batch` (see minidl.data.transforms, which handle both).
    verify: check the files against the folder's SHA256SUMS (written at extraction); False
        skips the hash checks (not the format checks), for files you extracted yourself.

    Attributes: `data` uint8 (N, 3, 32, 32), `targets` int64 (N,), `classes`, `folder_path`.
    Raises FileNotFoundError if no root has the files or the archive, ChecksumError on a hash
    mismatch or a missing SHA256SUMS, ValueError for malformed files or archives,
    DownloadError if the download fails.
    """

    folder = "cifar-10-batches-bin"
    archive = "cifar-10-binary.tar.gz"
    # The MD5 published on the official page for the binary version (162 MB).
    archive_md5: ClassVar[str] = "c32a1d4ab5d03f1284b67883e8d87530"
    url: ClassVar[str] = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    classes: ClassVar[list[str]] = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    # Per-channel mean and std of the 50,000 training images scaled to [0, 1].
    MEAN: ClassVar[tuple] = (0.4914, 0.4822, 0.4465)
    STD: ClassVar[tuple] = (0.2470, 0.2435, 0.2616)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
        transform: Callable | None = None,
        verify: bool = True,
    ) -> None:
        self.train = bool(train)
        self.transform = transform
        names = _TRAIN_FILES if self.train else _TEST_FILES
        self.folder_path = self._locate(root, names, download)
        sums = read_sha256sums(self.folder_path)
        parts = [self._load(self.folder_path / name, sums, verify) for name in names]
        self.data = np.concatenate([p[0] for p in parts])
        self.targets = np.concatenate([p[1] for p in parts])

    # -- locating, downloading, extracting ----------------------------------------------------

    def _roots(self, root: str | os.PathLike | None) -> list[Path]:
        return default_roots() if root is None else [Path(root)]

    def _locate(self, root, names, download: bool) -> Path:
        roots = self._roots(root)
        # Files lying loose in a shared root must not be taken for CIFAR's: only a root given
        # explicitly may be the folder itself.
        folders = [r / self.folder for r in roots] + ([Path(root)] if root is not None else [])
        for folder in folders:
            if all((folder / n).is_file() for n in names):
                return folder
        for r in roots:
            if (r / self.archive).is_file():
                return self.extract(r / self.archive, r)
        if download:
            target = cache_dir() if root is None else Path(root)
            archive = self.download_archive(target)
            return self.extract(archive, target)
        searched = ", ".join(str(r / self.folder) for r in roots)
        raise FileNotFoundError(
            f"{type(self).__name__}: {', '.join(names)} not found in {searched}, nor "
            f"{self.archive} beside them. Pass root=..., set MINIDL_DATA, or use download=True."
        )

    @classmethod
    def download_archive(cls, folder: Path) -> Path:
        """Fetch `url` into folder/archive, streaming it through an MD5 check into a temporary
        file that is renamed into place only when the hash matches. Returns the path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / cls.archive
        try:
            with (
                urllib.request.urlopen(cls.url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
                atomic_path(path) as tmp,
            ):
                digest = hashlib.md5(usedforsecurity=False)
                size = 0
                with open(tmp, "wb") as out:
                    while chunk := response.read(1 << 20):
                        size += len(chunk)
                        if size > _MAX_ARCHIVE_BYTES:
                            raise DownloadError(
                                f"{cls.url}: more than {_MAX_ARCHIVE_BYTES >> 20} MB, not the "
                                f"CIFAR-10 archive"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                cls._check_md5(cls.url, digest.hexdigest())
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, DownloadError):
                raise
            raise DownloadError(f"{cls.__name__}: could not download {cls.url}: {e}") from e
        return path

    @classmethod
    def _check_md5(cls, source: str, got: str) -> None:
        if got != cls.archive_md5:
            raise ChecksumError(
                f"{source}: MD5 mismatch: expected {cls.archive_md5} (published on the official "
                f"page), got {got} (corrupt, incomplete or different file; delete it and fetch "
                f"it again)"
            )

    @classmethod
    def extract(cls, archive: Path, dest: Path) -> Path:
        """Verify `archive` against the published MD5, then unpack the official members into
        dest/folder with a SHA256SUMS of them. Returns dest/folder.

        Only regular files named like the official members are read; a link, a device, an
        absolute or '..' path, or an oversized member makes the archive invalid (ValueError)
        and nothing is written. The files appear atomically: unpacked into a temporary folder
        beside the target, then renamed into it, SHA256SUMS last.
        """
        digest = hashlib.md5(usedforsecurity=False)
        with open(archive, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        cls._check_md5(str(archive), digest.hexdigest())
        target = dest / cls.folder
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{cls.folder}.", suffix=".part"))
        try:
            hashes = cls._unpack(archive, staging)
            target.mkdir(exist_ok=True)
            # Old hashes must not vouch for a half-replaced folder.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target / "SHA256SUMS")
            for name in hashes:
                os.replace(staging / name, target / name)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(staging)
        sums = "".join(f"{h}  {name}\n" for name, h in sorted(hashes.items()))
        atomic_write_bytes(target / "SHA256SUMS", sums.encode())
        return target

    @classmethod
    def _unpack(cls, archive: Path, staging: Path) -> dict[str, str]:
        """Write the official members of `archive` into `staging`; {name: SHA-256}."""
        hashes: dict[str, str] = {}
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                for member in tar:
                    name = member.name
                    parts = Path(name).parts
                    if name.startswith(("/", "\\")) or ".." in parts:
                        raise ValueError(f"{archive}: unsafe member path {name!r}")
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise ValueError(f"{archive}: member {name!r} is not a regular file")
                    if len(parts) != 2 or parts[0] != cls.folder or parts[1] not in _ARCHIVE_FILES:
                        continue  # not an official member: never written
                    if member.size > _MAX_MEMBER_BYTES:
                        raise ValueError(f"{archive}: member {name!r} is {member.size} bytes")
                    digest = hashlib.sha256()
                    with tar.extractfile(member) as src, open(staging / parts[1], "wb") as out:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                    hashes[parts[1]] = digest.hexdigest()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{archive}: could not unpack it as tar.gz: {e}") from e
        missing = [n for n in _TRAIN_FILES + _TEST_FILES if n not in hashes]
        if missing:
            raise ValueError(f"{archive}: missing members {missing} under {cls.folder}/")
        return hashes

    # -- verification and loading -------------------------------------------------------------

    def _load(self, path: Path, sums: dict, verify: bool) -> tuple[np.ndarray, np.ndarray]:
        payload = path.read_bytes()
        if verify:
            expected = sums.get(path.name)
            if expected is None:
                raise ChecksumError(
                    f"{path}: no SHA256SUMS entry to verify it against: let CIFAR10 extract the "
                    f"official archive (it writes one), or pass verify=False"
                )
            got = sha256_hex(payload)
            if got != expected:
                raise ChecksumError(
                    f"{path}: SHA-256 mismatch against SHA256SUMS: expected {expected}, got "
                    f"{got} (corrupt or modified file; delete the folder and extract again)"
                )
        return decode_batch(payload, str(path), len(self.classes))

    # -- Dataset protocol ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """(image, label): image uint8 (3, 32, 32) (transformed if a transform is set)."""
        image = self.data[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images (B, 3, 32, 32), labels int64 (B,)) gathered by fancy indexing."""
        images = self.data[indices]
        if self.transform is not None:
            images = self.transform(images)
        return images, self.targets[indices]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images, from {self.folder_path})"


def decode_batch(
    payload: bytes, source: str, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one binary batch file's bytes.
    Raises ValueError naming `source` for a partial record, no records, or a label >=
    num_classes."""
    if not payload or len(payload) % RECORD_BYTES:
        raise ValueError(
            f"{source}: {len(payload)} bytes is not a whole number of {RECORD_BYTES}-byte "
            f"CIFAR records (1 label byte + 3 x 32 x 32 pixels)"
        )
    records = np.frombuffer(payload, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise ValueError(
            f"{source}: record {bad} has label {int(labels[bad])}, expected 0-{num_classes - 1}"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels
