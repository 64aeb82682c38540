"""Tests for refimpl.data.idx: round trips, the exact byte layout, a catalogue of corrupt files."""

from __future__ import annotations

import gzip
import os
import signal
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.data import idx
from refimpl.data.idx import DTYPE_CODES, IdxFormatError, read_idx, write_idx

NATIVE_DTYPES = [d.newbyteorder("=") for d in DTYPE_CODES.values()]
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)


def idx_bytes_twin(arr: np.ndarray, code: int) -> bytes:
    """Plain re-statement of the IDX layout, to check the writer against."""
    header = bytes([0, 0, code, arr.ndim])
    for size in arr.shape:
        header += int(size).to_bytes(4, "big")
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("idx")


@given(
    arr=st.sampled_from(NATIVE_DTYPES).flatmap(lambda dt: hnp.arrays(dt, SHAPES)),
    compress=st.booleans(),
    big_endian_input=st.booleans(),
)
def test_round_trip_every_dtype_and_shape(scratch, arr, compress, big_endian_input):
    path = scratch / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr.astype(arr.dtype.newbyteorder(">")) if big_endian_input else arr)
    out = read_idx(path)
    assert out.dtype == arr.dtype and out.dtype.isnative
    assert out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()  # bitwise, so NaN payloads and -0.0 count
    assert out.flags.writeable


@given(arr=st.sampled_from(NATIVE_DTYPES).flatmap(lambda dt: hnp.arrays(dt, SHAPES)))
def test_writer_matches_plain_twin(scratch, arr):
    code = next(c for c, d in DTYPE_CODES.items() if d.newbyteorder("=") == arr.dtype)
    write_idx(scratch / "b.idx", arr)
    assert (scratch / "b.idx").read_bytes() == idx_bytes_twin(arr, code)


def test_known_bytes_for_small_uint8_matrix(tmp_path):
    write_idx(tmp_path / "m.idx", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert (tmp_path / "m.idx").read_bytes() == bytes.fromhex(
        "0000 0802 00000002 00000003 010203040506"
    )


@given(arr=hnp.arrays(np.int16, SHAPES), cut=st.floats(0, 1, exclude_max=True))
def test_any_strict_prefix_is_rejected(scratch, arr, cut):
    for compress in (False, True):
        write_idx(scratch / "p.idx", arr, compress=compress)
        data = (scratch / "p.idx").read_bytes()
        (scratch / "p.idx").write_bytes(data[: int(cut * len(data))])
        with pytest.raises(IdxFormatError):
            read_idx(scratch / "p.idx")


def test_gzip_is_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "gz_without_suffix", arr, compress=True)
    write_idx(tmp_path / "raw_with_suffix.gz", arr, compress=False)
    assert (tmp_path / "gz_without_suffix").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "raw_with_suffix.gz").read_bytes()[:2] == b"\x00\x00"
    np.testing.assert_array_equal(read_idx(tmp_path / "gz_without_suffix"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw_with_suffix.gz"), arr)


def test_gzip_output_is_reproducible(tmp_path):
    arr = np.arange(100, dtype=np.float32)
    write_idx(tmp_path / "1.gz", arr)
    write_idx(tmp_path / "2.gz", arr)
    assert (tmp_path / "1.gz").read_bytes() == (tmp_path / "2.gz").read_bytes()


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "match"),
    [
        (np.zeros(3, np.int64), {}, TypeError, "dtype must be one of .* got int64"),
        (np.zeros(3, bool), {}, TypeError, "got bool"),
        (np.zeros(3, np.complex64), {}, TypeError, "got complex64"),
        (np.uint8(3), {}, ValueError, r"1 to 255 dimensions for IDX, got shape \(\)"),
        (np.zeros(3, np.uint8), {"compress": "yes"}, TypeError, "compress must be"),
    ],
)
def test_write_rejects_bad_input(tmp_path, value, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_idx(tmp_path / "x.idx", value, **kwargs)
    assert not (tmp_path / "x.idx").exists()


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_idx(tmp_path / "nope" / "x.idx", np.zeros(2, np.uint8))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")


VALID = bytes.fromhex("0000 0803 00000003 00000004 00000005") + bytes(range(60))
GZ = gzip.compress(VALID, mtime=0)
CORRUPTIONS = {
    "empty file": (b"", "is empty"),
    "header of 2 bytes": (VALID[:2], "header truncated, 2 byte"),
    "dimension sizes cut": (VALID[:10], "header truncated, 10 bytes; ndim=3 needs a 16-byte"),
    "bad magic": (b"\x01\x00" + VALID[2:], "bad magic, first two bytes are 01 00"),
    "unknown dtype code": (VALID[:2] + b"\x0a" + VALID[3:], "unknown dtype code 0x0A"),
    "ndim 0": (VALID[:3] + b"\x00" + VALID[4:], "ndim is 0"),
    "data short by 1 byte": (VALID[:-1], "data truncated.* 60 data bytes expected, found 59"),
    "data short by half": (VALID[:-30], "data truncated.* 60 data bytes expected, found 30"),
    "trailing bytes": (VALID + b"\x00\x07", "2 trailing extra byte.*found 62"),
    "truncated gzip": (GZ[: len(GZ) // 2], "corrupt or truncated gzip"),
    "gzip without trailer": (GZ[:-8], "corrupt or truncated gzip"),
    "corrupt gzip bytes": (GZ[:12] + bytes(b ^ 0xFF for b in GZ[12:20]) + GZ[20:], "corrupt"),
    "gzip CRC mismatch": (GZ[:-8] + b"\0\0\0\0" + GZ[-4:], "corrupt or truncated gzip.*CRC"),
    "empty gzip stream": (gzip.compress(b""), "empty after gzip decompression"),
    "truncated data inside gzip": (
        gzip.compress(VALID[:-1]),
        r"\(after gzip decompression\): data truncated",
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_corrupt_file_raises_naming_file_and_problem(tmp_path, case):
    content, match = CORRUPTIONS[case]
    path = tmp_path / "corrupt.idx"
    path.write_bytes(content)
    with pytest.raises(IdxFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_valid_catalogue_base_reads(tmp_path):
    (tmp_path / "ok.idx").write_bytes(VALID)
    (tmp_path / "ok.idx.gz").write_bytes(GZ)
    expected = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.idx"), expected)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.idx.gz"), expected)


# --- what a header may claim, gzip bombs, special files ----------------------------------------


def test_a_header_claiming_a_terabyte_is_refused_naming_shape_and_bytes(tmp_path):
    header = bytes.fromhex("0000 0802 000f4240 000f4240")  # uint8, (10^6, 10^6): 10^12 bytes
    for name, content in [("raw.idx", header), ("gz.idx.gz", gzip.compress(header))]:
        (tmp_path / name).write_bytes(content + bytes(100))
        with pytest.raises(
            IdxFormatError,
            match=r"header claims shape \(1000000, 1000000\) of uint8, 1000000000000 data bytes, "
            "more than MAX_IDX_BYTES = 2147483648",
        ):
            read_idx(tmp_path / name)
    assert idx.MAX_IDX_BYTES == 2**31


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_gzip_bomb_is_stopped_once_past_the_claimed_size(tmp_path):
    """50 MB of zeros behind a header claiming 10 bytes: a few MB of memory at most."""
    path = tmp_path / "bomb.idx.gz"
    with gzip.open(path, "wb", compresslevel=1) as g:
        g.write(bytes.fromhex("0000 0801 0000000a") + bytes(10))
        for _ in range(50):
            g.write(bytes(2**20))
    assert path.stat().st_size < 2**20

    def read():
        with pytest.raises(
            IdxFormatError,
            match="more than 65536 trailing extra bytes.*10 data "
            "bytes expected; decompression stopped",
        ):
            read_idx(path)

    assert _peak_bytes(read) < 8 * 2**20


def test_a_gzip_stream_shorter_than_its_large_claim_costs_only_what_is_there(tmp_path):
    path = tmp_path / "short.idx.gz"
    path.write_bytes(gzip.compress(bytes.fromhex("0000 0801 40000000") + bytes(1000)))

    def read():
        with pytest.raises(
            IdxFormatError, match="data truncated.*1073741824 data bytes expected, found 1000"
        ):
            read_idx(path)

    assert _peak_bytes(read) < 8 * 2**20


def test_gzip_trailing_bytes_are_counted_exactly_when_few(tmp_path):
    path = tmp_path / "t.idx.gz"
    path.write_bytes(gzip.compress(VALID + bytes(5)))
    with pytest.raises(IdxFormatError, match=r"\(after gzip decompression\): 5 trailing extra"):
        read_idx(path)


def _timeout(signum, frame):
    raise TimeoutError("blocked: the FIFO was opened for reading")


def test_a_directory_or_fifo_is_refused_before_opening(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, expected an IDX file"):
        read_idx(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(5)  # opening a FIFO for reading blocks: fail instead of hanging
    try:
        with pytest.raises(
            IdxFormatError, match=r"IDX file '.*pipe' is not a regular file \(a FIFO"
        ):
            read_idx(tmp_path / "pipe")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_concatenated_gzip_members_still_read(tmp_path):
    path = tmp_path / "two.idx.gz"
    path.write_bytes(gzip.compress(VALID[:30]) + gzip.compress(VALID[30:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
