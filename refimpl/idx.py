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
from pathlib import Path

import numpy as np

from refimpl.atomic import atomic_write

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
    FileNotFoundError
        If ``path`` does not exist.
    IdxFormatError
        If the file is empty, the gzip stream is corrupt or truncated, the header is short or
        invalid, or the data is shorter or longer than the header says. Nothing partial is
        returned.
    """
    path = Path(path)
    raw = path.read_bytes()
    where = f"IDX file {str(path)!r}"
    if not raw:
        raise IdxFormatError(f"{where} is empty (0 bytes)")
    if raw.startswith(GZIP_MAGIC):
        raw = _gunzip(raw, where)
        where += " (after gzip decompression)"
    dtype, shape, offset = _parse_header(raw, where)
    _check_data_length(len(raw) - offset, dtype, shape, where)
    data = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


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
    with atomic_write(path) as f:
        f.write(payload)


def _gunzip(raw: bytes, where: str) -> bytes:
    """Decompress a whole gzip stream, or raise :class:`IdxFormatError` starting with ``where``."""
    try:
        out = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{where}: corrupt or truncated gzip stream ({exc})") from exc
    if not out:
        raise IdxFormatError(f"{where} is empty after gzip decompression")
    return out


def _parse_header(raw: bytes, where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return ``(dtype, shape, data_offset)`` from the IDX header in ``raw``."""
    if len(raw) < 4:
        raise IdxFormatError(f"{where}: header truncated, {len(raw)} byte(s); expected at least 4")
    if raw[:2] != b"\x00\x00":
        raise IdxFormatError(
            f"{where}: bad magic, first two bytes are {raw[:2].hex(' ')}; "
            "expected 00 00 (not an IDX file?)"
        )
    code, ndim = raw[2], raw[3]
    if code not in DTYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPE_CODES)
        raise IdxFormatError(f"{where}: unknown dtype code 0x{code:02X}; expected {known}")
    if ndim == 0:
        raise IdxFormatError(f"{where}: ndim is 0; expected at least 1 dimension")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise IdxFormatError(
            f"{where}: header truncated, {len(raw)} bytes; ndim={ndim} needs a {offset}-byte header"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return DTYPE_CODES[code], shape, offset


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
