"""MNIST and datasets in its layout (Fashion-MNIST, KMNIST): locate, verify, download, load.

A dataset folder holds the four standard files, gzip-compressed or raw:

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

and optionally a SHA256SUMS file (`sha256sum` format) covering them as stored.

Verification, before anything is parsed: a file listed in the folder's SHA256SUMS must match that
hash (of the bytes on disk). Otherwise the class's table of known hashes applies; those are hashes
of the *uncompressed* IDX content, because the same content circulates in differently made gzip
wrappers (mirrors and re-compressions differ byte-wise, the data does not). A file covered by
neither is refused unless `verify=False`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from minidl.atomic import atomic_write_bytes
from minidl.data.dataset import Dataset
from minidl.data.idx import IDXFormatError, decode_idx, decompress
from minidl.tensor import from_numpy

_SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DOWNLOAD_TIMEOUT_S = 60


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the expected one; the message names the file."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected hash; the message lists every attempt."""


def cache_dir() -> Path:
    """Where downloads go by default: `$XDG_CACHE_HOME/minidl`, else `~/.cache/minidl`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minidl"


def default_roots() -> list[Path]:
    """The roots searched, in order, when a dataset is created with root=None.

    `$MINIDL_DATA` (if set), the repository's `data/` (exists in a source checkout or editable
    install), `./data` in the current directory, then the download cache (`cache_dir()`).
    """
    roots = []
    env = os.environ.get("MINIDL_DATA")
    if env:
        roots.append(Path(env))
    # minidl/data/mnist.py -> the directory holding the minidl package.
    roots.append(Path(__file__).resolve().parents[2] / "data")
    roots.append(Path.cwd() / "data")
    roots.append(cache_dir())
    return roots


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sha256sums(folder: Path) -> dict[str, str]:
    """Parse `folder/SHA256SUMS` (`<hex>  <name>` per line, `*name` for binary mode) if present."""
    path = folder / "SHA256SUMS"
    if not path.is_file():
        return {}
    sums = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{path}:{lineno}: expected '<sha256 hex>  <file name>', got {line!r}")
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


class MNIST(Dataset):
    """The MNIST handwritten digits (LeCun, Cortes, Burges), or any dataset in its layout.

    root: a directory holding a `mnist/` folder (`folder` for subclasses) with the files, or the
        folder itself. None searches `<r>/mnist` for each r in `default_roots()` and uses the
        first that has the split's files.
    train: the 60,000-image training split if True, else the 10,000-image test split.
    download: fetch missing files from `mirrors` into `root` (or `cache_dir()` when root is
        None), verified against the known hashes and written atomically.
    transform: applied to each image as torchvision does: `dataset[i]` is
        `(transform(image), label)` where image is a uint8 array (1, 28, 28), channel first
        (torchvision's PIL image; `transforms.ToTensor()` turns it into a float (1, 28, 28)
        tensor in [0, 1], as torchvision's does).
        With a transform the DataLoader reads sample by sample.
    target_transform: applied to each label (an int).
    verify: check every file against its SHA256SUMS entry or known hash and refuse files neither
        covers; False skips all checks (for data you made or modified yourself).

    Attributes (as torchvision's): `data` a uint8 Tensor (N, 28, 28), `targets` an int64
    Tensor (N,), `classes` (list of names), `folder_path` (the folder the files were read from).
    Without a transform, `get_batch` (the DataLoader's fast path) gives uint8 (B, 1, 28, 28)
    arrays.
    Raises FileNotFoundError if no root has the files, ChecksumError on a hash mismatch,
    IDXFormatError for malformed files, DownloadError if no mirror delivers a valid file.
    """

    folder = "mnist"
    classes: ClassVar[list[str]] = [str(d) for d in range(10)]
    # Mean and std of the training pixels scaled to [0, 1] (0.130660 and 0.308108 measured on
    # the 60,000 training images); the values everyone uses for MNIST normalization.
    MEAN: ClassVar[float | None] = 0.1307
    STD: ClassVar[float | None] = 0.3081
    # SHA-256 of the uncompressed IDX content. The published MD5s of the same content
    # (6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...) were checked against the files these
    # hashes were computed from.
    known_hashes: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }
    # MD5s of the official .gz files, as published (and checked by torchvision); MNIST's own
    # files are pinned by the SHA-256s above.
    known_gz_md5: ClassVar[dict[str, str]] = {}
    # Base URLs serving `<name>.gz`; tried in order.
    mirrors: ClassVar[Sequence[str]] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
        transform: Callable[[np.ndarray], Any] | None = None,
        verify: bool = True,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform
        names = _SPLIT_FILES[self.train]
        self.folder_path = self._locate(root, names, download)
        sums = read_sha256sums(self.folder_path)
        images, labels = (self._load(self.folder_path, name, sums, verify) for name in names)
        images, labels = self._check_arrays(images, labels)
        self._images, self._labels = images, labels
        self.data, self.targets = from_numpy(images), from_numpy(labels)

    # -- locating and downloading -------------------------------------------------------------

    def _locate(self, root: str | os.PathLike | None, names: Sequence[str], download: bool) -> Path:
        if root is None:
            # Only `<root>/<folder>` in the shared roots: files lying loose in $MINIDL_DATA must
            # not be taken for another dataset's.
            candidates = [r / self.folder for r in default_roots()]
        else:
            # torchvision keeps its downloads in <root>/<ClassName>/raw.
            candidates = [Path(root) / self.folder, Path(root) / type(self).__name__ / "raw",
                          Path(root)]
        for folder in candidates:
            if all(_find_file(folder, n) is not None for n in names):
                return folder
        if download:
            target = (cache_dir() if root is None else Path(root)) / self.folder
            self._download(target, names)
            return target
        searched = ", ".join(str(f) for f in candidates)
        raise FileNotFoundError(
            f"{type(self).__name__}: {' and '.join(names)} (.gz or raw) not found; searched "
            f"{searched}. Pass root=..., set MINIDL_DATA, or use download=True."
        )

    def _download(self, folder: Path, names: Sequence[str]) -> None:
        sums = read_sha256sums(folder)
        for name in names:
            if _find_file(folder, name) is not None:
                continue
            file_name = name + ".gz"
            if (file_name not in sums and name not in self.known_hashes
                    and file_name not in self.known_gz_md5):
                raise DownloadError(
                    f"{type(self).__name__}: no known hash for {file_name}, so a download could "
                    f"not be verified; put the files in {folder} yourself."
                )
            if not self.mirrors:
                raise DownloadError(f"{type(self).__name__}: no download mirrors are known")
            errors = []
            for base in self.mirrors:
                url = base + file_name
                try:
                    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                        payload = response.read()
                    self._verify(url, file_name, name, payload, sums, verify=True)
                # OSError covers URLError/HTTPError/timeouts; HTTPException a dropped connection
                # mid-body (IncompleteRead); ValueError a hash or gzip failure.
                except (OSError, http.client.HTTPException, ValueError) as e:
                    errors.append(f"{url}: {e}")
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(folder / file_name, payload)
                break
            else:
                raise DownloadError(
                    f"{type(self).__name__}: could not download {file_name} into {folder}:\n  "
                    + "\n  ".join(errors)
                )

    # -- verification and loading -------------------------------------------------------------

    def _verify(
        self, source: str, file_name: str, name: str, payload: bytes, sums: dict, verify: bool
    ) -> bytes:
        """Check `payload` (the bytes of `file_name`, IDX content `name`); return it gunzipped."""
        if not verify:
            return decompress(payload, source)
        if file_name in sums:
            got = sha256_hex(payload)
            if got != sums[file_name]:
                raise ChecksumError(
                    f"{source}: SHA-256 mismatch against SHA256SUMS: expected {sums[file_name]}, "
                    f"got {got} (corrupt or incomplete file; delete it and fetch it again)"
                )
            return decompress(payload, source)
        if file_name.endswith(".gz") and file_name in self.known_gz_md5:
            got = hashlib.md5(payload, usedforsecurity=False).hexdigest()
            if got != self.known_gz_md5[file_name]:
                raise ChecksumError(
                    f"{source}: MD5 mismatch against the official file: expected "
                    f"{self.known_gz_md5[file_name]}, got {got} (corrupt or different file; "
                    "delete it and fetch it again)"
                )
            return decompress(payload, source)
        content = decompress(payload, source)
        expected = self.known_hashes.get(name)
        if expected is not None:
            got = sha256_hex(content)
            if got != expected:
                raise ChecksumError(
                    f"{source}: SHA-256 of the uncompressed content mismatch: expected "
                    f"{expected}, got {got} (corrupt or different file; delete it and fetch it "
                    f"again)"
                )
        else:
            known = " (only the official .gz files' MD5s are known: keep the .gz files)" if (
                name + ".gz" in self.known_gz_md5) else ""
            raise ChecksumError(
                f"{source}: no hash to verify it against{known}: add a SHA256SUMS file to its "
                f"folder (`sha256sum *-ubyte* > SHA256SUMS`) or pass verify=False"
            )
        return content

    def _load(self, folder: Path, name: str, sums: dict, verify: bool) -> np.ndarray:
        path = _find_file(folder, name)
        payload = path.read_bytes()
        content = self._verify(str(path), path.name, name, payload, sums, verify)
        return decode_idx(content, str(path))

    def _check_arrays(
        self, images: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        img_name, lbl_name = _SPLIT_FILES[self.train]
        source = str(self.folder_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise IDXFormatError(
                f"{source}/{img_name}",
                f"expected uint8 images (N, H, W), got {images.dtype} {images.shape}",
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise IDXFormatError(
                f"{source}/{lbl_name}",
                f"expected uint8 labels (N,), got {labels.dtype} {labels.shape}",
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{source}: {len(images)} images but {len(labels)} labels in the "
                f"{'train' if self.train else 'test'} split"
            )
        if labels.size and labels.max() >= len(self.classes):
            raise ValueError(
                f"{source}/{lbl_name}: label {int(labels.max())} out of range for "
                f"{len(self.classes)} classes"
            )
        return np.ascontiguousarray(images), labels.astype(np.int64)

    # -- Dataset protocol ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """(image, label): image a uint8 array (1, 28, 28), or transform(image); label an int,
        or target_transform(label)."""
        image = self._images[index][None]
        label = int(self._labels[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 (B, 1, 28, 28), labels int64 (B,)) gathered by fancy indexing (the
        DataLoader uses it when there is no transform)."""
        return self._images[indices][:, None], self._labels[indices]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images, from {self.folder_path})"

    # -- normalization ------------------------------------------------------------------------

    @classmethod
    def normalize(
        cls, images: np.ndarray, mean: float | None = None, std: float | None = None
    ) -> np.ndarray:
        """float32 `(images / 255 - mean) / std`, any shape; mean/std default to cls.MEAN/STD.

        Raises ValueError if the class has no reference statistics and none are given (see
        `pixel_stats`).
        """
        mean = cls.MEAN if mean is None else mean
        std = cls.STD if std is None else std
        if mean is None or std is None:
            raise ValueError(
                f"{cls.__name__}.normalize: no reference mean/std for this dataset; pass them, "
                f"e.g. from {cls.__name__}.pixel_stats(train_set.data)"
            )
        # One multiply-subtract in float32: the same value as the formula, without a float64
        # temporary the size of the batch.
        out = np.multiply(images, np.float32(1.0 / (255.0 * std)), dtype=np.float32)
        out -= np.float32(mean / std)
        return out

    @staticmethod
    def pixel_stats(images: np.ndarray) -> tuple[float, float]:
        """(mean, std) of uint8 `images` scaled to [0, 1]. Raises TypeError for other dtypes."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"pixel_stats: expected uint8 images, got {images.dtype}")
        if images.size == 0:
            raise ValueError("pixel_stats: no pixels")
        # A 256-bin histogram makes the moments exact and avoids a float64 copy of the data;
        # bincount casts its input to intp, so feed it chunks that stay in cache.
        flat = images.ravel()
        counts = np.zeros(256, dtype=np.float64)
        for start in range(0, flat.size, 1 << 20):
            counts += np.bincount(flat[start : start + (1 << 20)], minlength=256)
        values = np.arange(256, dtype=np.float64) / 255.0
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        return float(mean), float(np.sqrt(var))


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando Research) in a `fashion-mnist/` folder, MNIST's layout.

    The official .gz files are verified against their published MD5s (as torchvision
    does); uncompressed files need a SHA256SUMS next to them (or verify=False). Normalize with
    explicit statistics from `pixel_stats`.
    """

    folder = "fashion-mnist"
    classes: ClassVar[list[str]] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    MEAN = None
    STD = None
    known_hashes: ClassVar[dict[str, str]] = {}
    known_gz_md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    mirrors: ClassVar[Sequence[str]] = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )


class KMNIST(MNIST):
    """Kuzushiji-MNIST (CODH) in a `kmnist/` folder, MNIST's layout; romanized class names.

    Verified as FashionMNIST: the official .gz files by their published MD5s.
    """

    folder = "kmnist"
    classes: ClassVar[list[str]] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
    MEAN = None
    STD = None
    known_hashes: ClassVar[dict[str, str]] = {}
    known_gz_md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }
    mirrors: ClassVar[Sequence[str]] = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)


def _find_file(folder: Path, name: str) -> Path | None:
    """`folder/name.gz` or `folder/name`, whichever exists first."""
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None
