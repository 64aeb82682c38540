"""Checked file access: inputs that are what they claim, outputs that can be written.

Every check runs before any work starts and before any ``open``, so a wrong path fails at once
with a message that names the argument, the path and what was expected, instead of a traceback
half-way through, a hang (opening a FIFO for reading blocks until a writer appears) or a huge
allocation (a ``.npy`` header may declare any shape).

- :func:`check_input_file`: the path exists and is a non-empty regular file;
  :func:`open_input_file` opens it after the check, without blocking.
- :func:`load_npy`: a numeric ``.npy`` array, its header checked against the file size before
  any data is read; never unpickles.
- :func:`check_output_path`: the directory exists and is writable, and the target, if it exists,
  is a regular file (never a directory, symbolic link, FIFO, socket or device node).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

NPY_MAGIC = npy_format.MAGIC_PREFIX
"""The first six bytes of every ``.npy`` file, ``b"\\x93NUMPY"``."""

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
"""The first four bytes of a zip archive (an ``.npz``), non-empty and empty."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """Name the kind of file an ``st_mode`` describes: ``"a FIFO (named pipe)"``, ... .

    Parameters
    ----------
    mode : int
        ``os.stat_result.st_mode`` (from ``os.stat`` or ``os.lstat``).

    Returns
    -------
    str
        An article and a noun, e.g. ``"a regular file"`` or ``"a character device"``.
    """
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _as_path(path: str | os.PathLike, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or PathLike path, got {type(path).__name__}")
    if str(path) == "":
        raise ValueError(f"{what} must name a file, got an empty path")
    return Path(path)


def check_input_file(
    path: str | os.PathLike, what: str, *, expected: str = "a regular file"
) -> Path:
    """Refuse, before any open, an input path that is not a non-empty regular file.

    Parameters
    ----------
    path : str or PathLike
        The file to read.
    what : str
        What the file is, for the messages: ``"input"``, ``"model"``, ``"--target"``, ...
    expected : str, optional
        What a directory was expected to be, e.g. ``"a .npy file"``.

    Returns
    -------
    pathlib.Path
        ``path``, checked.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (or a directory on its way is a file).
    IsADirectoryError
        If ``path`` is a directory.
    PermissionError
        If ``path`` cannot be examined or read.
    ValueError
        If ``path`` is not a regular file (a FIFO, socket or device: opening a FIFO for reading
        would block forever) or is empty.

    Notes
    -----
    ``os.stat`` follows symbolic links: a link to a regular file is accepted.
    """
    path = _as_path(path, what)
    name = f"{what} file {str(path)!r}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} does not exist") from None
    except NotADirectoryError:
        raise FileNotFoundError(f"{name} does not exist (a part of the path is a file)") from None
    except PermissionError:
        raise PermissionError(f"{name} cannot be examined: permission denied") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{name} is a directory, expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{name} is not a regular file ({file_kind(st.st_mode)})")
    if st.st_size == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{name} is not readable: permission denied")
    return path


def open_input_file(
    path: str | os.PathLike, what: str, *, expected: str = "a regular file"
) -> BinaryIO:
    """Check ``path`` with :func:`check_input_file`, then open it for binary reading.

    The file is opened without blocking (``O_NONBLOCK``) and checked again on the open
    descriptor, so a path swapped for a FIFO between the check and the open cannot hang.

    Parameters
    ----------
    path : str or PathLike
    what : str
    expected : str, optional
        As :func:`check_input_file`.

    Returns
    -------
    BinaryIO
        A buffered binary file, positioned at the start.
    """
    path = check_input_file(path, what, expected=expected)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(
                f"{what} file {str(path)!r} is not a regular file ({file_kind(st.st_mode)})"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def load_npy(path: str | os.PathLike, what: str, *, mmap: bool = False) -> np.ndarray:
    """Read one array from a ``.npy`` file, refusing anything else with a clear message.

    Parameters
    ----------
    path : str or PathLike
        The ``.npy`` file (as written by ``np.save``).
    what : str
        What the array is, for the messages: ``"input"``, ``"--target"``, ...
    mmap : bool
        Map the file read-only (``np.load(..., mmap_mode="r")``) instead of reading it, so that
        a large input is read batch by batch (``refimpl explain --batch-size``).

    Returns
    -------
    np.ndarray
        The array, as ``np.load`` would return it (a read-only ``np.memmap`` with ``mmap``).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        As :func:`check_input_file`.
    ValueError
        If the file is not a regular file, is empty, is an ``.npz`` archive, does not start with
        the NumPy magic (a text file, say), has a malformed header, holds Python objects
        (pickled data, never loaded), or is shorter or longer than its header declares. The
        header's size is checked against the file's before any data is read, so a header that
        declares a huge shape allocates nothing.
    """
    name = f"{what} file {str(path)!r}"
    with open_input_file(path, what, expected="a .npy file") as f:
        size = os.fstat(f.fileno()).st_size
        _check_npy_magic(f.read(len(NPY_MAGIC)), Path(path), name)
        f.seek(0)
        dtype, shape, offset = read_npy_header(f, name)
        if dtype.hasobject:
            raise ValueError(
                f"{name} holds Python objects (pickled data, dtype {dtype}), which refimpl never "
                "loads; save a numeric array"
            )
        _check_npy_size(size - offset, dtype, shape, name)
        f.seek(0)
        try:
            if mmap and size > offset:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            return npy_format.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{name} is not a readable .npy array ({exc})") from None


def _check_npy_magic(head: bytes, path: Path, name: str) -> None:
    """Raise ``ValueError`` unless ``head`` starts a ``.npy`` file; say so for an ``.npz``."""
    if head.startswith(NPY_MAGIC):
        return
    if head[:4] in ZIP_MAGICS:
        try:
            with zipfile.ZipFile(path) as z:
                members = [m.removesuffix(".npy") for m in z.namelist()]
        except (zipfile.BadZipFile, OSError, ValueError):
            members = []
        held = f" holding {members[:5]}{' ...' if len(members) > 5 else ''}" if members else ""
        raise ValueError(
            f"{name} is an .npz archive{held}, expected a single .npy array; "
            "np.save the one array you mean"
        )
    raise ValueError(
        f"{name} is not a .npy file: it does not start with the NumPy magic \\x93NUMPY "
        f"(it starts with {head!r}); save the array with np.save"
    )


def read_npy_header(f, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read a ``.npy`` header from the binary stream ``f``; return ``(dtype, shape, data_offset)``.

    Parameters
    ----------
    f : binary file object
        Positioned at the start of the ``.npy`` data (a file or a zip member stream); it must
        support ``tell``.
    name : str
        How to name the file in messages.

    Returns
    -------
    tuple
        The declared dtype, shape, and the number of header bytes read (where the data starts).

    Raises
    ------
    ValueError
        If the magic, version or header is malformed or truncated.
    """
    start = f.tell()
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
    except (ValueError, EOFError) as exc:
        raise ValueError(f"{name} has a malformed or truncated .npy header ({exc})") from None
    return dtype, tuple(shape), f.tell() - start


def npy_data_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes of data a ``.npy`` header with ``dtype`` and ``shape`` declares."""
    return math.prod(shape) * dtype.itemsize


def _check_npy_size(found: int, dtype: np.dtype, shape: tuple[int, ...], name: str) -> None:
    """Raise ``ValueError`` unless the file holds exactly the data its header declares."""
    expected = npy_data_bytes(dtype, shape)
    declared = f"its header declares shape {shape} of {dtype}, {expected} data bytes"
    if found < expected:
        raise ValueError(f"{name} is truncated: {declared}, but the file holds only {found}")
    if found > expected:
        raise ValueError(
            f"{name} has {found - expected} byte(s) after the data: {declared}, but the file "
            f"holds {found} (several arrays appended to one file?)"
        )


def check_output_path(path: str | os.PathLike, what: str) -> Path:
    """Refuse, before any work starts, an output path that cannot or must not be written.

    Parameters
    ----------
    path : str or PathLike
        The file to create or replace.
    what : str
        The argument, for the messages: ``"--out"``, ``"output file"``, ...

    Returns
    -------
    pathlib.Path
        ``path``, checked.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist.
    NotADirectoryError
        If the "directory" is a file.
    PermissionError
        If the directory is not writable (permissions or a read-only file system).
    IsADirectoryError
        If ``path`` is a directory (or ends in a separator).
    ValueError
        If ``path`` exists and is not a regular file: refimpl replaces files by renaming a new
        one over them, which would replace a symbolic link itself (not the file it points to)
        and could never write into a FIFO or a device such as ``/dev/null``.
    """
    path, given = _as_path(path, what), os.fspath(path)
    name = f"{what} {str(given)!r}"
    if str(given).endswith(os.sep) or path.name in ("", ".", ".."):
        raise IsADirectoryError(f"{name} names a directory, expected a file path")
    _check_output_directory(path, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{name} is a directory, expected a file path")
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(
            f"refusing to replace {name}: it is a symbolic link (to {os.readlink(path)!r}); "
            "give the real path or remove the link"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"refusing to replace {name}: it is {file_kind(st.st_mode)}, not a regular file"
        )
    return path


def _check_output_directory(path: Path, name: str) -> None:
    """Raise unless ``path``'s directory exists, is a directory and is writable."""
    directory = path.parent
    shown = repr(str(directory))
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot write {name}: directory {shown} does not exist") from None
    except NotADirectoryError:
        raise NotADirectoryError(
            f"cannot write {name}: a part of directory {shown} is a file"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"cannot write {name}: {shown} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        cause = "permission denied"
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            cause = "read-only file system"
        raise PermissionError(f"cannot write {name}: directory {shown} is not writable ({cause})")
