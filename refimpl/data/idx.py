"""Read and write arrays in the IDX format of the MNIST files (LeCun et al.).

Layout: two zero bytes, a dtype code, the number of dimensions ``ndim``, then ``ndim`` big-endian
uint32 sizes, then the data in C order, big-endian. Files may be gzip-compressed; the reader
detects gzip by its magic bytes ``1f 8b``, not by the file name.

Dtype codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
``0x0E`` float64.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from refimpl.atomic import atomic_write
from refimpl.files import open_input_file

DTYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code -> big-endian NumPy dtype of the stored data."""

GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1

MAX_IDX_BYTES = 2**31
"""Most data bytes an IDX header may claim (2 GiB, 45 times MNIST's 47 MB of training images).
A header claiming more is refused before anything is read or decompressed."""
_CHUNK = 2**20  # bytes decompressed at a time
_GZIP_EXTRA_SHOWN = 2**16  # trailing bytes after the claimed data counted before giving up


class IdxFormatError(ValueError):
    """An IDX file is malformed: bad header, wrong length or a corrupt gzip stream."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a new native-endian array.

    Parameters
    ----------
    path : str or PathLike
        The file. Gzip compression is detected from the content (magic bytes ``1f 8b``).

    Returns
    -------
    np.ndarray
        A writable array with the shape and dtype given by the header, in native byte order.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a directory or cannot be read.
    IdxFormatError
        If the file is not a regular file or is empty, the gzip stream is corrupt or truncated,
        the header is short or invalid or claims more than :data:`MAX_IDX_BYTES`, or the data is
        shorter or longer than the header says. Nothing partial is returned.

    Notes
    -----
    The header is read first: a raw file's size is compared with the header's claim before the
    data is read, and a gzip stream is decompressed in chunks and abandoned as soon as its output
    exceeds the claim, so a file (or a gzip bomb) never costs more memory than its header
    claims, and a header never claims more than :data:`MAX_IDX_BYTES`.
    """
    where = f"IDX file {str(path)!r}"
    with _open(path) as f:
        if f.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            f.seek(0)
            return _read_raw(f, where)
        f.seek(0)
        return _read_gzip(f, where)


def _open(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading, refused before any open unless a non-empty regular file."""
    try:
        return open_input_file(path, "IDX", expected="an IDX file")
    except ValueError as exc:  # a FIFO, socket or device, or an empty file
        raise IdxFormatError(str(exc)) from None


def _read_raw(f: BinaryIO, where: str) -> np.ndarray:
    """Read an uncompressed IDX stream: header, size check against the file, then the data."""
    size = os.fstat(f.fileno()).st_size
    dtype, shape, offset = _read_header(f.read, where)
    _check_data_length(size - offset, dtype, shape, where)
    data = np.fromfile(f, dtype=dtype, count=math.prod(shape))
    if data.size != math.prod(shape):  # the file shrank while being read
        _check_data_length(data.nbytes, dtype, shape, where)
    return _native(data.reshape(shape))


def _read_gzip(f: BinaryIO, where: str) -> np.ndarray:
    """Decompress an IDX gzip stream chunk by chunk, never beyond what the header claims."""
    inner = f"{where} (after gzip decompression)"
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            if not g.peek(1):
                raise IdxFormatError(f"{where} is empty after gzip decompression")
            dtype, shape, _offset = _read_header(g.read, inner)
            data = _read_up_to(g, math.prod(shape) * dtype.itemsize)
            _check_data_length(len(data), dtype, shape, inner)
            extra = len(_read_up_to(g, _GZIP_EXTRA_SHOWN + 1))  # reaching the end checks the CRC
            if extra:
                _trailing_gzip(extra, dtype, shape, inner)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{where}: corrupt or truncated gzip stream ({exc})") from exc
    return _native(np.frombuffer(data, dtype=dtype).reshape(shape))


def _native(data: np.ndarray) -> np.ndarray:
    """``data`` in native byte order (a copy only where the byte order changes)."""
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def _read_up_to(g: gzip.GzipFile, n: int) -> bytearray:
    """At most ``n`` decompressed bytes, read in chunks (memory grows with what is there)."""
    out = bytearray()
    while len(out) < n:
        chunk = g.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _trailing_gzip(extra: int, dtype: np.dtype, shape: tuple[int, ...], where: str) -> None:
    """Raise for data after the claimed end of a gzip stream (its rest is never decompressed)."""
    expected = math.prod(shape) * dtype.itemsize
    what = f"header says shape {shape} of {dtype.newbyteorder('=').name}, {expected} data bytes"
    if extra <= _GZIP_EXTRA_SHOWN:
        raise IdxFormatError(
            f"{where}: {extra} trailing extra byte(s), {what} expected, found {expected + extra}"
        )
    raise IdxFormatError(
        f"{where}: more than {_GZIP_EXTRA_SHOWN} trailing extra bytes, {what} expected; "
        "decompression stopped there (a gzip bomb?)"
    )


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, atomically (see :func:`refimpl.atomic.atomic_write`).

    Parameters
    ----------
    path : str or PathLike
        The destination; its directory must exist.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64 (any byte order), with
        1 to 255 dimensions, each smaller than 2**32.
    compress : bool, optional
        Gzip the file. By default, compress when ``path`` ends in ``.gz``.

    Raises
    ------
    TypeError
        If the dtype is not one of the IDX dtypes or ``compress`` is not a bool or None.
    ValueError
        If the array has no dimensions, more than 255, or a dimension of 2**32 or more.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    elif not isinstance(compress, bool):
        raise TypeError(f"compress must be True, False or None, got {compress!r}")
    arr = np.asarray(array)
    stored = _idx_dtype(arr)
    payload = _header(arr, stored) + np.ascontiguousarray(arr, dtype=stored).tobytes()
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_write(path, "IDX file") as f:
        f.write(payload)


def _read_header(read: Callable[[int], bytes], where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return ``(dtype, shape, data_offset)`` from the IDX header read with ``read(n)``."""
    head = read(4)
    if len(head) < 4:
        raise IdxFormatError(f"{where}: header truncated, {len(head)} byte(s); expected at least 4")
    if head[:2] != b"\x00\x00":
        raise IdxFormatError(
            f"{where}: bad magic, first two bytes are {head[:2].hex(' ')}; "
            "expected 00 00 (not an IDX file?)"
        )
    code, ndim = head[2], head[3]
    if code not in DTYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPE_CODES)
        raise IdxFormatError(f"{where}: unknown dtype code 0x{code:02X}; expected {known}")
    if ndim == 0:
        raise IdxFormatError(f"{where}: ndim is 0; expected at least 1 dimension")
    offset = 4 + 4 * ndim
    sizes = read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise IdxFormatError(
            f"{where}: header truncated, {4 + len(sizes)} bytes; ndim={ndim} needs a "
            f"{offset}-byte header"
        )
    shape = tuple(int(d) for d in np.frombuffer(sizes, dtype=">u4"))
    dtype = DTYPE_CODES[code]
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > MAX_IDX_BYTES:
        raise IdxFormatError(
            f"{where}: header claims shape {shape} of {dtype.newbyteorder('=').name}, "
            f"{claimed} data bytes, more than MAX_IDX_BYTES = {MAX_IDX_BYTES}; refusing to read it"
        )
    return dtype, shape, offset


def _check_data_length(found: int, dtype: np.dtype, shape: tuple[int, ...], where: str) -> None:
    """Raise :class:`IdxFormatError` unless ``found`` data bytes match the header exactly."""
    expected = math.prod(shape) * dtype.itemsize
    if found == expected:
        return
    what = f"header says shape {shape} of {dtype.newbyteorder('=').name}, {expected} data bytes"
    if found < expected:
        raise IdxFormatError(f"{where}: data truncated, {what} expected, found {found}")
    raise IdxFormatError(
        f"{where}: {found - expected} trailing extra byte(s), {what} expected, found {found}"
    )


def _idx_dtype(arr: np.ndarray) -> np.dtype:
    """Return the big-endian IDX storage dtype for ``arr``, or raise ``TypeError``."""
    for stored in DTYPE_CODES.values():
        if arr.dtype.newbyteorder("=") == stored.newbyteorder("="):
            return stored
    names = ", ".join(d.newbyteorder("=").name for d in DTYPE_CODES.values())
    raise TypeError(f"array dtype must be one of {names} for IDX, got {arr.dtype}")


def _header(arr: np.ndarray, stored: np.dtype) -> bytes:
    """Return the IDX header for ``arr`` stored as ``stored`` (magic, dtype code, ndim, sizes)."""
    code = next(c for c, d in DTYPE_CODES.items() if d == stored)
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions for IDX, got shape {arr.shape}")
    if max(arr.shape) > _MAX_DIM:
        raise ValueError(f"array dimensions must be < 2**32 for IDX, got shape {arr.shape}")
    sizes = np.asarray(arr.shape, dtype=">u4").tobytes()
    return bytes([0, 0, code, arr.ndim]) + sizes
