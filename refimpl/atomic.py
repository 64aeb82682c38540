"""Atomic file writes: a temporary file in the target directory, fsync, then ``os.replace``.

A crash (or an exception while writing) never leaves a half-written file at the target path.

- The target is checked first (:func:`refimpl.files.check_output_path`): its directory must exist
  and be writable, and an existing target must be a regular file (never a directory, symbolic
  link, FIFO or device).
- A replaced file keeps its permission bits; a new file gets ``0o666 & ~umask``, as ``open``
  would give it (not the ``0o600`` of ``tempfile.mkstemp``).
- Temporary files are named ``.{name}.{pid}.{random}.tmp`` after the target and the writer's
  process id. Each save first removes the temporary files of the same target left by writers
  that are no longer alive (killed mid-write); a live process's temporary file is never touched.
  Process ids are those of this machine: several machines writing one target in a shared
  directory is not supported.
- A full disk, an exceeded quota or a read-only file system raises ``OSError`` (same ``errno``)
  naming the cause and the path, e.g. ``no space left on device while writing output file
  'x.npz'``; the temporary file is removed and the target left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .files import check_output_path

NEW_FILE_MODE = 0o666
"""Mode bits of a new file before the umask, as ``open`` uses."""

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
# errors the body of the ``with`` block can only have got from writing the file
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_TMP_NAME_CHARS = 200  # of the target's name, so that the temporary name stays under 255 bytes


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, what: str = "output file") -> Iterator[BinaryIO]:
    """Open a temporary binary file beside ``path``; on success rename it to ``path``.

    Parameters
    ----------
    path : str or PathLike
        The final destination. Its directory must exist and be writable; if it exists it must
        be a regular file.
    what : str, optional
        What ``path`` is, for the messages (``"--out"``, ``"model file"``, ...).

    Yields
    ------
    BinaryIO
        A writable binary file object. If the ``with`` block raises, the temporary file is
        removed and ``path`` is left untouched.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError, ValueError
        Before anything is written, as :func:`refimpl.files.check_output_path`.
    OSError
        If writing fails (full disk, quota, read-only file system, ...): the message names the
        cause and ``path``; ``errno`` is the original one.
    """
    path = check_output_path(path, what)
    directory = path.parent
    remove_stale_temps(path)
    mode = _mode_for(path)
    prefix = f".{path.name[:_TMP_NAME_CHARS]}.{os.getpid()}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    except OSError as exc:
        doing = f"creating a temporary file in {str(directory)!r} for"
        raise _write_error(exc, doing, what, path) from exc
    f = os.fdopen(fd, "wb")
    try:
        with contextlib.suppress(OSError):  # e.g. a file system without permission bits
            os.fchmod(f.fileno(), mode)
        try:
            yield f
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise
            raise _write_error(exc, "writing", what, path) from exc
        _finish(f, tmp, path, what)
    except BaseException:
        with contextlib.suppress(OSError):  # closing flushes; a full disk fails that again
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _finish(f: BinaryIO, tmp: str, path: Path, what: str) -> None:
    """Flush, fsync and close ``f``, then rename ``tmp`` over ``path``."""
    try:
        f.flush()
        os.fsync(f.fileno())
        f.close()
    except OSError as exc:
        raise _write_error(exc, "writing", what, path) from exc
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(exc, "renaming the new file over", what, path) from exc


def _write_error(exc: OSError, doing: str, what: str, path: Path) -> OSError:
    """An ``OSError`` with ``exc``'s errno whose message names the cause, the step and the path."""
    cause = _CAUSES.get(exc.errno) or (exc.strerror or str(exc)).lower()
    return OSError(
        exc.errno,
        f"{cause} while {doing} {what} {str(path)!r}; it was left unchanged and the "
        "temporary file removed",
    )


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows.

    Returns
    -------
    int
        The umask bits. Read from ``/proc/self/status`` (Linux 4.7+); elsewhere ``os.umask`` is
        set and restored, which races with other threads creating files at that instant.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """Mode bits of the file to write: the existing target's, or ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE & ~current_umask()


def _temp_pattern(path: Path) -> re.Pattern[str]:
    """Names of the temporary files of ``path``; group 1 is the writer's pid."""
    return re.compile(rf"\.{re.escape(path.name[:_TMP_NAME_CHARS])}\.(\d+)\.[a-z0-9_]+\.tmp")


def pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this machine (``os.kill(pid, 0)``).

    Parameters
    ----------
    pid : int
        A process id.

    Returns
    -------
    bool
        False only if the kernel says there is no such process; a process of another user, or a
        pid that cannot be asked about, counts as alive.
    """
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that are no longer alive.

    Parameters
    ----------
    path : str or PathLike
        A target of :func:`atomic_write`.

    Returns
    -------
    list of pathlib.Path
        The files removed. Temporary files of live processes (this one included) are kept;
        files that cannot be removed are left, silently.
    """
    path = Path(path)
    pattern = _temp_pattern(path)
    removed = []
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
