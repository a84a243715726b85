"""Checkpoints: `save(obj, path)` / `load(path)` without pickle.

Format (version 1): one uncompressed NumPy .npz archive (a zip of .npy members) written
with allow_pickle=False semantics:

- member "__minidl__": a uint8 array holding UTF-8 JSON, the manifest:
      {"format": "minidl.checkpoint", "version": 1, "root": NODE}
- members "a0", "a1", ...: the arrays, in the order the manifest first refers to them.

NODE is one of
      {"type": "none"} | {"type": "bool", "value": b} | {"type": "int", "value": i}
      {"type": "float", "value": x}   x a JSON number, or "nan" / "inf" / "-inf"
      {"type": "str", "value": s}
      {"type": "list" | "tuple", "items": [NODE, ...]}
      {"type": "dict", "keys": [k, ...], "values": [NODE, ...]}   keys: str or int
      {"type": "array", "key": "a3", "dtype": "<f4", "shape": [2, 3]}   a numpy array
      {"type": "scalar", "key": ..., "dtype": ..., "shape": []}         a numpy scalar
      {"type": "tensor", "key": ..., "dtype": ..., "shape": [...], "requires_grad": b}
Python floats are written with repr() precision and ints at any size, so values (the RNG
state's 128-bit integers included) come back exactly. dtype and shape are recorded so a
mismatched or tampered member is caught on load. Tensors (and Parameters) load as Tensors.

Writes are atomic: the archive goes to a temp file in the target's directory, is fsynced and
renamed over `path` with os.replace; on any failure the temp file is removed and `path` is
untouched. `path` is used as given (no ".npz" is appended).
"""

from __future__ import annotations

import io
import json
import math
import os
import tokenize
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from minidl.atomic import atomic_path
from minidl.device import device
from minidl.ops import contiguous
from minidl.tensor import Tensor

FORMAT = "minidl.checkpoint"
VERSION = 1
MANIFEST = "__minidl__"

__all__ = ["CheckpointError", "load", "save"]


class CheckpointError(ValueError):
    """A file that is not a readable minidl checkpoint (corrupt, truncated, mismatched)."""


def _describe_array(array: np.ndarray, where: str) -> dict:
    if array.dtype.hasobject or array.dtype.kind not in "biufcSU":
        raise TypeError(
            f"save: {where} has dtype {array.dtype}, which cannot be stored without pickle"
        )
    return {"dtype": array.dtype.str, "shape": list(array.shape)}


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = contiguous(array)
        return key

    def encode(self, obj: Any, where: str) -> dict:
        # Tensor first: Parameter is a Tensor subclass; bool before int (bool is an int).
        if isinstance(obj, Tensor):
            node = {"type": "tensor", **_describe_array(obj.data, where)}
            node["requires_grad"] = bool(obj.requires_grad)
            node["key"] = self.add(obj.data)
            return node
        if isinstance(obj, np.ndarray):
            return {"type": "array", **_describe_array(obj, where), "key": self.add(obj)}
        if isinstance(obj, np.generic):
            array = np.asarray(obj)
            return {"type": "scalar", **_describe_array(array, where), "key": self.add(array)}
        if obj is None:
            return {"type": "none"}
        if isinstance(obj, bool):
            return {"type": "bool", "value": obj}
        if isinstance(obj, int):
            return {"type": "int", "value": obj}
        if isinstance(obj, float):
            value = obj if math.isfinite(obj) else repr(obj)
            return {"type": "float", "value": value}
        if isinstance(obj, str):
            return {"type": "str", "value": obj}
        if isinstance(obj, (list, tuple)):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return {"type": "list" if isinstance(obj, list) else "tuple", "items": items}
        if isinstance(obj, dict):
            keys = list(obj)
            for k in keys:
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"save: {where} has a key {k!r}; keys must be str or int")
            values = [self.encode(obj[k], f"{where}[{k!r}]") for k in keys]
            return {"type": "dict", "keys": keys, "values": values}
        raise TypeError(
            f"save: {where} is a {type(obj).__name__}; checkpoints hold dicts, lists, tuples, "
            "numpy arrays and scalars, Tensors, and None/bool/int/float/str"
        )


def save(obj: Any, f: str | os.PathLike | Any, pickle_module: Any = None,
         pickle_protocol: Any = None, _use_new_zipfile_serialization: bool = True) -> None:
    """Write `obj` (nested dicts/lists/tuples of arrays, Tensors and plain values) to the path
    `f` atomically, or into the binary file object `f` (io.BytesIO, an open file) at its
    position. Raises TypeError naming the offending entry for anything else; a whole Module
    (which PyTorch pickles with its code) raises TypeError pointing to state_dict()."""
    from minidl.nn.module import Module

    if isinstance(obj, Module):
        raise TypeError(
            f"save: saving a whole {type(obj).__name__} module is not supported (minidl "
            "checkpoints never hold code); save model.state_dict() and restore it with "
            "model.load_state_dict(minidl.load(path))"
        )
    if pickle_module is not None:
        raise TypeError("save: pickle_module is not supported: minidl checkpoints never pickle")
    writer = _Writer()
    root = writer.encode(obj, "obj")
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root})
    arrays = {MANIFEST: np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)}
    arrays.update(writer.arrays)
    if hasattr(f, "write"):
        np.savez(f, **arrays)
        return
    with atomic_path(f) as tmp, open(tmp, "wb") as out:
        np.savez(out, **arrays)


# Limits that keep a hostile file from exhausting memory (see _Archive).
MAX_MANIFEST_BYTES = 64 << 20
MAX_DEPTH = 256
# A deflated member (minidl writes none) may expand this much, or to MAX_INFLATED_BYTES.
MAX_DEFLATE_RATIO = 32
MAX_INFLATED_BYTES = 64 << 20
_READ_CHUNK = 1 << 20


class _Archive:
    """The zip container of a checkpoint, read member by member with every declared size
    checked against the file before anything is allocated: members must lie inside the file
    without overlapping (their compressed sizes add up to at most the file's size), a stored
    member's size is its compressed size, a deflated one may expand at most MAX_DEFLATE_RATIO
    times (or to MAX_INFLATED_BYTES), and the .npy header's shape and dtype must describe
    exactly the member's bytes. Data is copied in 1 MiB chunks, so peak memory stays the
    arrays' own size. Object (pickled) arrays are refused, never unpickled."""

    def __init__(self, source: Any, path: str, size: int) -> None:
        self.path = path  # the name errors show
        self.zip = zipfile.ZipFile(source)
        self.members = {info.filename: info for info in self.zip.infolist()}
        if sum(info.compress_size for info in self.members.values()) > size:
            raise CheckpointError(
                f"load: {path}: its members claim more bytes than the file holds "
                "(truncated, or overlapping members)"
            )
        for info in self.members.values():
            if info.compress_type == zipfile.ZIP_STORED:
                ok = info.file_size == info.compress_size
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                ok = info.file_size <= max(
                    MAX_DEFLATE_RATIO * info.compress_size, MAX_INFLATED_BYTES
                )
            else:
                ok = False
            if not ok:
                raise CheckpointError(
                    f"load: {path}: member {info.filename!r} declares {info.file_size} bytes "
                    f"from {info.compress_size} stored bytes (compression "
                    f"{info.compress_type}); refused (a decompression bomb or corrupt file)"
                )

    def close(self) -> None:
        self.zip.close()

    def read_array(self, name: str, where: str) -> np.ndarray:
        info = self.members[name]
        with self.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            try:
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except (tokenize.TokenError, SyntaxError) as e:
                # NumPy tokenizes the header dict before parsing it: an unbalanced bracket
                # escapes as a tokenizer error, not as its ValueError.
                raise ValueError(f"member {name!r} has a malformed .npy header ({e})") from e
            if dtype.hasobject or dtype.kind not in "biufcSU":
                raise CheckpointError(
                    f"load: {self.path}: {where}: member {name!r} holds dtype {dtype} "
                    "(pickled objects are never loaded)"
                )
            count = 1
            for d in shape:
                count *= d
            header = f.tell()
            if count * dtype.itemsize != info.file_size - header:
                raise CheckpointError(
                    f"load: {self.path}: {where}: member {name!r} declares shape {shape} of "
                    f"{dtype} ({count * dtype.itemsize} bytes) but holds "
                    f"{info.file_size - header} data bytes"
                )
            array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
            view = memoryview(array.reshape(-1).view(np.uint8)) if count else memoryview(b"")
            pos = 0
            while pos < len(view):
                chunk = f.read(min(_READ_CHUNK, len(view) - pos))
                if not chunk:
                    raise EOFError(f"member {name!r} ends early")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            f.read(1)  # reach the end of the member: its CRC is checked there
        return array.T if fortran else array


class _Reader:
    def __init__(self, archive: _Archive, path: str) -> None:
        self.archive = archive
        self.path = path
        self.loaded: set[str] = set()

    def fail(self, where: str, message: str) -> CheckpointError:
        return CheckpointError(f"load: {self.path}: {where}: {message}")

    def array(self, node: dict, where: str) -> np.ndarray:
        key = node.get("key")
        if not isinstance(key, str) or key + ".npy" not in self.archive.members:
            raise self.fail(where, f"array member {key!r} is missing from the archive")
        if key in self.loaded:
            raise self.fail(where, f"array member {key!r} is referenced twice")
        self.loaded.add(key)
        shape = node.get("shape", ())
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise self.fail(where, f"malformed shape {shape!r}")
        array = self.archive.read_array(key + ".npy", where)
        expected_shape = tuple(shape)
        if array.dtype.str != node.get("dtype") or array.shape != expected_shape:
            raise self.fail(
                where,
                f"member {key!r} holds dtype {array.dtype.str} shape {array.shape}, the "
                f"manifest says dtype {node.get('dtype')} shape {expected_shape}",
            )
        return array

    def decode(self, node: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(where, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict) or "type" not in node:
            raise self.fail(where, "malformed manifest entry")
        kind = node["type"]
        if kind == "none":
            return None
        if kind in ("bool", "int", "str"):
            value = node.get("value")
            expected = {"bool": bool, "int": int, "str": str}[kind]
            if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
                raise self.fail(where, f"expected a {kind} value, got {value!r}")
            return value
        if kind == "float":
            value = node.get("value")
            if isinstance(value, str) and value in ("nan", "inf", "-inf"):
                return float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise self.fail(where, f"expected a float value, got {value!r}")
        if kind in ("list", "tuple"):
            items = node.get("items", [])
            if not isinstance(items, list):
                raise self.fail(where, f"malformed {kind} entry")
            items = [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(items)]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            keys, values = node.get("keys"), node.get("values")
            if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(
                values
            ):
                raise self.fail(where, "malformed dict entry")
            if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys):
                raise self.fail(where, "dict keys must be str or int")
            return {k: self.decode(v, f"{where}[{k!r}]", depth + 1) for k, v in zip(keys, values)}
        if kind == "array":
            return self.array(node, where)
        if kind == "scalar":
            return self.array(node, where)[()]
        if kind == "tensor":
            t = Tensor._wrap(self.array(node, where), False)
            t.requires_grad = bool(node.get("requires_grad", False))
            return t
        raise self.fail(where, f"unknown entry type {kind!r}")


def load(f: str | os.PathLike | Any, map_location: Any = None, pickle_module: Any = None,
         *, weights_only: bool | None = None, mmap: bool | None = None,
         **pickle_load_args: Any) -> Any:
    """Read a checkpoint written by save(), or a state dict written by PyTorch's torch.save
    (its zip format, read by minidl.torch_format without running pickled code), from the
    path `f` or from the binary file object `f` (read from its position to its end).

    map_location: None, 'cpu', a cpu device, a dict or a function (as torch.load's; everything
    loads on the CPU, so they change nothing); a CUDA/MPS location raises RuntimeError.
    weights_only: accepted; minidl loads only tensors and plain values whatever its value.
    Raises FileNotFoundError for a missing file and CheckpointError (a ValueError) naming the
    path and the entry for a corrupt, truncated, foreign, inconsistent or hostile one
    (decompression bombs, deep nesting, pickles), in memory bounded by the arrays the file
    really holds. Never unpickles."""
    from minidl import torch_format
    from minidl.device import check_device

    if isinstance(map_location, (str, device)) or map_location is None:
        check_device("load: map_location", map_location)
    elif not (callable(map_location) or isinstance(map_location, dict)):
        raise TypeError(f"load: map_location must be a device, a str, a dict or a function, "
                        f"got {type(map_location).__name__}")
    if pickle_module is not None or pickle_load_args:
        raise TypeError("load: pickle_module and pickle arguments are not supported: minidl "
                        "never unpickles arbitrary objects")
    if hasattr(f, "read"):
        data = f.read()
        if not isinstance(data, bytes):
            raise TypeError(f"load: the file object must be opened in binary mode, got "
                            f"{type(data).__name__} from read()")
        path, size = "<file object>", len(data)
        source: Any = io.BytesIO(data)
    else:
        source = Path(f)
        if not source.exists():
            raise FileNotFoundError(f"load: no checkpoint at {source}")
        path, size = str(source), source.stat().st_size
    if torch_format.is_torch_zip(source):
        return torch_format.load_torch_zip(source, path, CheckpointError)
    try:
        archive = _Archive(source, path, size)
    except torch_format.ZIP_ERRORS as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            f"load: {path} is not a readable minidl checkpoint (corrupt or truncated?): {e}"
        ) from e
    try:
        return _load_from(archive, path)
    except CheckpointError:
        raise
    except (*torch_format.ZIP_ERRORS, TypeError, RecursionError, MemoryError) as e:
        raise CheckpointError(
            f"load: {path}: unreadable checkpoint ({type(e).__name__}: {e})"
        ) from e
    finally:
        archive.close()


def _load_from(archive: _Archive, path: str) -> Any:
    manifest_name = MANIFEST + ".npy"
    if manifest_name not in archive.members:
        raise CheckpointError(f"load: {path} has no {MANIFEST!r} manifest: not a minidl "
                              "checkpoint")
    if archive.members[manifest_name].file_size > MAX_MANIFEST_BYTES:
        raise CheckpointError(
            f"load: {path}: the manifest is {archive.members[manifest_name].file_size} bytes, "
            f"more than the {MAX_MANIFEST_BYTES} allowed"
        )
    raw = archive.read_array(manifest_name, "the manifest")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"load: {path}: the manifest is not a uint8 vector")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise CheckpointError(f"load: {path}: the manifest is unreadable ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"load: {path}: the manifest is not a {FORMAT} manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise CheckpointError(
            f"load: {path}: format version {version!r}; this minidl reads versions 1 to "
            f"{VERSION}"
        )
    return _Reader(archive, path).decode(manifest.get("root"), "obj")
