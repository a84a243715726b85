"""IDX reader/writer: round trips for every element type, and clear errors for bad files."""

import gzip
import os

import numpy as np
import pytest

from minidl.data.idx import IDXFormatError, decode_idx, encode_idx, read_idx, write_idx

ALL_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
TYPE_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def _sample(dtype, shape, rng):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (0, 4), (1, 2, 1, 3)])
def test_round_trip_every_dtype(tmp_path, dtype, compressed, shape):
    rng = np.random.default_rng(0)
    a = _sample(dtype, shape, rng)
    path = tmp_path / ("a.idx.gz" if compressed else "a.idx")
    write_idx(path, a)
    assert path.read_bytes().startswith(b"\x1f\x8b") == compressed
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    assert b.flags.c_contiguous and b.flags.writeable
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_encoded_header_is_big_endian_with_type_code(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    data = encode_idx(a)
    assert data[:4] == bytes([0, 0, TYPE_CODES[dtype], 2])
    assert data[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    # Elements big-endian, row-major.
    item = np.dtype(dtype).itemsize
    assert (
        data[12 + item : 12 + 2 * item]
        == np.array(1, dtype=np.dtype(dtype).newbyteorder(">")).tobytes()
    )


def test_reads_hand_built_big_endian_int16():
    raw = bytes([0, 0, 0x0B, 1, 0, 0, 0, 3]) + b"\x01\x02\xff\xfe\x00\x05"
    np.testing.assert_array_equal(decode_idx(raw), np.array([0x0102, -2, 5], dtype=np.int16))


def test_gzip_detected_by_magic_not_extension(tmp_path):
    a = np.arange(10, dtype=np.int32)
    gz_no_ext = tmp_path / "data.idx"
    gz_no_ext.write_bytes(gzip.compress(encode_idx(a)))
    raw_with_gz_ext = tmp_path / "data.gz"
    raw_with_gz_ext.write_bytes(encode_idx(a))
    np.testing.assert_array_equal(read_idx(gz_no_ext), a)
    np.testing.assert_array_equal(read_idx(raw_with_gz_ext), a)


def test_write_compress_flag_overrides_extension(tmp_path):
    a = np.ones((2, 2), np.float32)
    write_idx(tmp_path / "x.gz", a, compress=False)
    write_idx(tmp_path / "y", a, compress=True)
    assert not (tmp_path / "x.gz").read_bytes().startswith(b"\x1f\x8b")
    assert (tmp_path / "y").read_bytes().startswith(b"\x1f\x8b")


def test_write_accepts_non_contiguous_and_foreign_endian(tmp_path):
    a = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    write_idx(tmp_path / "a.idx", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)


def test_write_is_deterministic_for_gzip(tmp_path):
    a = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_leaves_no_temp_files_and_replaces(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros(3, np.uint8))
    write_idx(tmp_path / "a.idx", np.ones(5, np.uint8))
    assert os.listdir(tmp_path) == ["a.idx"]
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), np.ones(5, np.uint8))


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.idx"
    write_idx(path, np.zeros(3, np.uint8))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.ones(5, np.uint8))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.idx"]


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.float16, np.bool_, np.complex64])
def test_write_rejects_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(TypeError, match=f"got dtype {np.dtype(dtype)}"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype))
    assert not (tmp_path / "a.idx").exists()


def test_write_rejects_scalar(tmp_path):
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a.idx", np.array(3, np.uint8))


# -- malformed files: every error names the file and the problem ---------------------------------


def _write(tmp_path, data, name="bad.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _expect_error(path, match):
    with pytest.raises(IDXFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_payload(tmp_path, compressed):
    data = encode_idx(np.arange(12, dtype=np.int32).reshape(3, 4))[:-5]
    path = _write(tmp_path, gzip.compress(data) if compressed else data)
    _expect_error(path, r"truncated: shape \(3, 4\) of int32 needs 48 data bytes, got 43")


def test_trailing_bytes(tmp_path):
    path = _write(tmp_path, encode_idx(np.arange(4, dtype=np.uint8)) + b"\x00")
    _expect_error(path, "trailing bytes: shape \\(4,\\) of uint8 needs 4 data bytes, got 5")


def test_wrong_magic(tmp_path):
    data = bytearray(encode_idx(np.arange(4, dtype=np.uint8)))
    data[1] = 0x01
    _expect_error(_write(tmp_path, bytes(data)), "bad magic.*0x00 0x01")


def test_unknown_type_code(tmp_path):
    data = bytearray(encode_idx(np.arange(4, dtype=np.uint8)))
    data[2] = 0x0A
    _expect_error(_write(tmp_path, bytes(data)), "unknown element type code 0x0A")


def test_zero_dimensions(tmp_path):
    _expect_error(_write(tmp_path, bytes([0, 0, 0x08, 0])), "number of dimensions is 0")


def test_truncated_header(tmp_path):
    data = encode_idx(np.zeros((2, 2, 2), np.uint8))[:10]
    _expect_error(_write(tmp_path, data), "truncated header: 3 dimensions need 16 header bytes")


@pytest.mark.parametrize("size", [0, 3])
def test_too_short_for_magic(tmp_path, size):
    _expect_error(_write(tmp_path, b"\x00" * size), f"too short.*{size} bytes")


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(encode_idx(np.arange(1000, dtype=np.int16))))
    data[len(data) // 2] ^= 0xFF
    _expect_error(_write(tmp_path, bytes(data), "x.gz"), "corrupt or truncated gzip")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(encode_idx(np.arange(1000, dtype=np.int16)))
    _expect_error(_write(tmp_path, data[: len(data) - 20], "x.gz"), "corrupt or truncated gzip")


def test_text_file_is_rejected(tmp_path):
    _expect_error(_write(tmp_path, b"hello world\n"), "bad magic")


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.idx")


def test_empty_payload_with_an_impossible_shape_names_the_file():
    """One zero dimension makes the payload empty, but NumPy still multiplies the others in 64
    bits: (9, 2818572297, 1862270985, 0) is a format error, not NumPy's reshape ValueError
    (found by fuzzing)."""
    shape = (9, 2818572297, 1862270985, 0)
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    with pytest.raises(IDXFormatError, match=r"huge\.idx.*larger than any array"):
        decode_idx(header, "huge.idx")
    ok = bytes([0, 0, 0x08, 2]) + (5).to_bytes(4, "big") + (0).to_bytes(4, "big")
    assert decode_idx(ok, "ok.idx").shape == (5, 0)
