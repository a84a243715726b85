"""The IDX file format (MNIST and friends): read, write and validate.

Layout, all big-endian: two zero bytes, one byte element type, one byte number of dimensions,
then one uint32 per dimension, then the elements in row-major order. Files may be gzip-compressed;
compression is detected from the gzip magic bytes, never from the file name.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np

from minidl.atomic import atomic_write_bytes

# IDX type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES: dict[str, int] = {dt.str[1:]: code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1
# NumPy arrays have at most 64 dimensions.
_MAX_NDIM = 64
# Deflate expands at most ~1032x (RFC 1951's longest match per 2-bit code): a header that
# declares more content than its compressed bytes could hold is truncated, known before any
# decompression.
_DEFLATE_MAX_RATIO = 1032
# Cap on the decompressed size (header + data) of one IDX file; MNIST's largest is 47 MB.
MAX_IDX_BYTES = 8 << 30


class IDXFormatError(ValueError):
    """A file or buffer is not valid IDX; the message names the source and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def _declared_size(head: bytes) -> int | None:
    """Header + data bytes an IDX header (its first 4 + 4 * ndim bytes) declares, or None
    when `head` is not a complete, plausible header (decode_idx then says what is wrong)."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        return None
    ndim = head[3]
    if not 1 <= ndim <= _MAX_NDIM or len(head) < 4 + 4 * ndim:
        return None
    count = 1
    for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4):
        count *= int(d)
    return 4 + 4 * ndim + count * IDX_DTYPES[head[2]].itemsize


def decompress(data: bytes, source: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """Return `data` gunzipped if it starts with the gzip magic, else unchanged.

    Streams: the IDX header is decompressed first, and at most the size it declares (plus one
    byte, so that trailing data is still reported) is ever decompressed, so a small file cannot
    expand into gigabytes. Raises IDXFormatError (naming `source`) for a truncated or corrupt
    gzip stream, or a header declaring more than max_bytes or more than the compressed bytes
    could possibly hold.
    """
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            head = stream.read(4)
            if len(head) == 4 and head[3] <= _MAX_NDIM:
                head += stream.read(4 * head[3])
            declared = _declared_size(head)
            if declared is None:
                return head  # not a plausible header: decode_idx names the problem
            if declared > max_bytes:
                raise IDXFormatError(
                    source, f"header declares {declared} bytes, more than the {max_bytes} "
                    "byte limit (max_bytes)"
                )
            if declared > _DEFLATE_MAX_RATIO * len(data) + 4096:
                raise IDXFormatError(
                    source, f"truncated: the header declares {declared} bytes, more than "
                    f"{len(data)} gzip bytes can hold"
                )
            return head + stream.read(declared - len(head) + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise IDXFormatError(source, f"corrupt or truncated gzip stream ({e})") from None


def decode_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (gzip or raw) into a C-contiguous array in native byte order.

    Raises IDXFormatError naming `source` for: a bad magic (first two bytes not zero), an
    unknown type code, zero dimensions, a truncated header, or a payload whose length differs
    from the product of the dimensions times the element size (truncated or trailing bytes).
    """
    data = decompress(data, source)
    if len(data) < 4:
        raise IDXFormatError(source, f"too short for an IDX header: {len(data)} bytes, need 4")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            source,
            f"bad magic: first two bytes must be 0x00 0x00, got 0x{data[0]:02x} 0x{data[1]:02x}",
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(
            source, f"unknown element type code 0x{type_code:02X} (known: {known})"
        )
    if ndim == 0:
        raise IDXFormatError(source, "number of dimensions is 0, IDX needs at least 1")
    if ndim > _MAX_NDIM:
        raise IDXFormatError(
            source, f"{ndim} dimensions: at most {_MAX_NDIM} are supported (NumPy's limit)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(
            source,
            f"truncated header: {ndim} dimensions need {header_len} header bytes, got {len(data)}",
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    count = 1
    for d in shape:
        count *= d
    # NumPy multiplies the non-zero dimensions in 64 bits even when one dimension is 0: an
    # empty payload can still declare a shape no array can have.
    nonzero = 1
    for d in shape:
        nonzero *= max(d, 1)
    if nonzero * dtype.itemsize >= 2**63:
        raise IDXFormatError(
            source, f"shape {shape} of {dtype.name} is larger than any array can be"
        )
    expected = count * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise IDXFormatError(
            source,
            f"{what}: shape {shape} of {dtype.name} needs {expected} data bytes, got {got}",
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header_len)
    # astype copies: the result is writable, C-contiguous and native-endian.
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a C-contiguous native-endian array.

    Element types: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
    Raises IDXFormatError (a ValueError) naming the file for any malformed content, and the
    usual OSError if the file cannot be read.
    """
    path = Path(path)
    return decode_idx(path.read_bytes(), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The raw (uncompressed) IDX bytes of `array`.

    Raises TypeError for a dtype IDX cannot hold and ValueError for 0 or more than 255 dims or
    a dimension above 2**32 - 1.
    """
    array = np.asarray(array)
    code = _TYPE_CODES.get(array.dtype.str[1:])
    if code is None:
        raise TypeError(
            f"write_idx: IDX holds uint8, int8, int16, int32, float32 or float64, "
            f"got dtype {array.dtype}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got shape {array.shape}")
    if any(d > _MAX_DIM for d in array.shape):
        raise ValueError(f"write_idx: every dimension must fit in uint32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file, atomically (temp file in the same directory + os.replace).

    compress: gzip the file; None (default) means gzip if and only if the name ends in ".gz".
    The gzip header carries no timestamp, so equal arrays give byte-identical files.
    Raises like encode_idx.
    """
    path = Path(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
