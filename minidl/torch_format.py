"""Reading checkpoints written by PyTorch's `torch.save` (the zip format of torch >= 1.6),
without torch and without running any code from the file.

A PyTorch checkpoint is a zip holding `<name>/data.pkl` (a pickle of the saved object whose
tensors refer to storages by key) and `<name>/data/<key>` (each storage's raw bytes). The
pickle is read by an unpickler whose `find_class` knows only the few names a state dict needs
and maps each to a function of this module: `collections.OrderedDict`, the tensor and
parameter rebuild functions, and the typed storage classes. Any other global (os.system,
builtins.eval, a model class...) raises CheckpointError before anything is called, so only
tensors, dicts, lists, tuples, strings, numbers, bools and None can come out.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from minidl.tensor import Tensor

# PyTorch's typed storage classes and the dtypes their bytes hold.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# A state dict's pickle holds names and tensor geometry only; this bounds what it may take.
MAX_PICKLE_BYTES = 64 << 20
_UNSUPPORTED_STORAGES = ("HalfStorage", "BFloat16Storage", "ComplexFloatStorage",
                         "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage")


# What zipfile raises on a corrupt archive, besides BadZipFile: a flipped header byte can ask
# for an unknown version or compression (NotImplementedError), claim encryption
# (RuntimeError), or break the deflate stream (zlib.error) or a header field (struct.error).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, NotImplementedError, RuntimeError,
              OSError, EOFError, ValueError, OverflowError, KeyError, UnicodeDecodeError)


def is_torch_zip(path: Any) -> bool:
    """Whether `path` is a zip with a `<name>/data.pkl` member (torch.save's format)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except ZIP_ERRORS:
        return False


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


def _storage_size(shape: tuple, stride: tuple) -> int:
    """Elements a strided view reaches: 1 + sum((n - 1) * s), or 0 when empty."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, where: str,
                 error: type) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.where, self.error = archive, prefix, where, error
        self.storages: dict[str, np.ndarray] = {}

    def fail(self, message: str) -> Exception:
        return self.error(f"load: {self.where}: {message}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _ordered_dict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self.rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _UNSUPPORTED_STORAGES:
            raise self.fail(f"a {name} tensor: minidl supports float32/float64, integer and "
                            "bool tensors only (convert the tensors before torch.save)")
        raise self.fail(
            f"the checkpoint refers to {module}.{name}; only tensors, dicts, lists, tuples and "
            "numbers can be read from a PyTorch file (save model.state_dict(), not the model "
            "or other objects)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise self.fail(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        cached = self.storages.get(key)
        if cached is None:
            member = f"{self.prefix}data/{key}"
            try:
                info = self.archive.getinfo(member)
            except KeyError:
                raise self.fail(f"storage {key!r} ({member}) is missing") from None
            # The pickle says how big the storage is: read no more than that (zip members
            # stop at their declared size, so a decompression bomb cannot grow past it).
            expected = numel * storage_type.dtype.itemsize if isinstance(numel, int) else -1
            if info.file_size != expected:
                raise self.fail(f"storage {key!r} has {info.file_size} bytes, the file says "
                                f"{numel} {storage_type.dtype} elements")
            raw = self.archive.read(member)
            if len(raw) % storage_type.dtype.itemsize:
                raise self.fail(f"storage {key!r} has {len(raw)} bytes, not a whole number of "
                                f"{storage_type.dtype} elements")
            cached = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
            if isinstance(numel, int) and cached.size < numel:
                raise self.fail(f"storage {key!r} holds {cached.size} elements, the file says "
                                f"{numel}")
            self.storages[key] = cached
        if cached.dtype.newbyteorder("=") != storage_type.dtype:
            raise self.fail(f"storage {key!r} is used with two dtypes")
        return cached

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> Tensor:
        if not isinstance(storage, np.ndarray):
            raise self.fail("a tensor without a storage")
        ints = (offset,) + tuple(size) + tuple(stride) if isinstance(size, tuple) and (
            isinstance(stride, tuple)) else None
        if ints is None or not all(isinstance(v, int) and v >= 0 for v in ints) or (
                len(size) != len(stride)):
            raise self.fail(f"malformed tensor geometry (offset {offset!r}, size {size!r}, "
                            f"stride {stride!r})")
        if int(np.prod(size, dtype=np.int64)) > storage.size:
            # Bounds what a file can make us allocate: no tensor bigger than its storage.
            raise self.fail(f"a tensor of size {size} has more elements than its storage "
                            f"({storage.size}); expanded (stride 0) tensors are not supported")
        if offset + _storage_size(size, stride) > storage.size:
            raise self.fail(f"a tensor of size {size} and stride {stride} at offset {offset} "
                            f"reaches past its storage of {storage.size} elements")
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:] if storage.size else storage, shape=size,
            strides=tuple(s * item for s in stride), writeable=False)
        # A copy in native order (np.ascontiguousarray would turn a 0-d view 1-d).
        t = Tensor._wrap(np.array(view, dtype=storage.dtype.newbyteorder("="), copy=True,
                                  order="C"), False)
        if requires_grad is True and t.dtype.kind == "f":
            t.requires_grad = True
        return t

    def rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> Any:
        from minidl.nn.module import Parameter

        if not isinstance(data, Tensor):
            raise self.fail("a parameter without tensor data")
        return Parameter(data, requires_grad=bool(requires_grad))


def load_torch_zip(path: Any, where: str, error: type) -> Any:
    """The object in PyTorch checkpoint `path` (see the module docstring); raises `error`
    naming `where` for anything but tensors, dicts, lists, tuples and plain values."""
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        raise error(f"load: {where} is not a readable zip file: {e}") from e
    try:
        obj = _load_archive(archive, where, error)
    except error:
        raise
    except ZIP_ERRORS as e:
        raise error(f"load: {where}: unreadable PyTorch archive ({type(e).__name__}: {e})"
                    ) from e
    finally:
        archive.close()
    _check_plain(obj, where, error, "obj")
    return obj


def _load_archive(archive: zipfile.ZipFile, where: str, error: type) -> Any:
    """The unpickled object of an open PyTorch archive (not yet checked to be plain data)."""
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
        raise error(f"load: {where}: expected one data.pkl in the PyTorch archive, found "
                    f"{len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = f"{prefix}byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
        raise error(f"load: {where}: big-endian PyTorch checkpoints are not supported")
    if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
        raise error(f"load: {where}: data.pkl is larger than {MAX_PICKLE_BYTES} bytes; a "
                    "state dict's pickle is small (the tensors live in separate members)")
    unpickler = _Unpickler(archive.read(pickles[0]), archive, prefix, where, error)
    try:
        obj = unpickler.load()
    except error:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise error(f"load: {where}: malformed PyTorch pickle ({type(e).__name__}: {e})"
                    ) from e
    return obj


def _check_plain(obj: Any, where: str, error: type, path: str) -> None:
    """Only the kinds of values a state dict holds may come out of the pickle."""
    stack = [(obj, path)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, f"{at}[{k!r}]") for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(value))
        elif not (value is None or isinstance(value, (Tensor, str, bytes, int, float, bool))):
            raise error(f"load: {where}: {at} is a {type(value).__name__}, which a minidl load "
                        "of a PyTorch file does not accept")
