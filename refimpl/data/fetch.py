"""Download the four MNIST IDX files from the canonical mirrors and verify their checksums.

Every file must match the MD5 of the original ``.gz`` file (the values torchvision's
``MNIST.resources`` uses); the two test-split files must also match the SHA-256 of their
decompressed content (listed in ``../shared/data/mnist/README.md``). Files are written atomically,
and files already present with matching checksums are not downloaded again.

A mirror that cannot be reached (no DNS, connection refused, timeout) is skipped for the remaining
files, so a machine without internet fails after one short attempt per mirror.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from refimpl._checks import check_positive
from refimpl.atomic import atomic_write

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Canonical MNIST mirrors, tried in this order."""

DEFAULT_TIMEOUT = 5.0
"""Seconds allowed for connecting and for each read from a mirror."""

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Resource:
    """One MNIST file and its checksums.

    Attributes
    ----------
    filename : str
        The ``.gz`` file name on the mirrors.
    md5 : str
        MD5 of the ``.gz`` file as served (from torchvision ``MNIST.resources``).
    sha256 : str or None
        SHA-256 of the decompressed content, where known (the test-split files).
    """

    filename: str
    md5: str
    sha256: str | None = None


RESOURCES: tuple[Resource, ...] = (
    Resource("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    Resource("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    Resource(
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    Resource(
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
)
"""The four MNIST files, training split first."""


class DownloadError(OSError):
    """No mirror delivered a file with matching checksums."""


def default_cache_dir() -> Path:
    """Return the user cache directory for MNIST.

    Returns
    -------
    Path
        ``$XDG_CACHE_HOME/refimpl/mnist`` if ``XDG_CACHE_HOME`` is an absolute path, else
        ``~/.cache/refimpl/mnist``. It is not created.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "refimpl" / "mnist"


def checksum_problem(data: bytes, resource: Resource) -> str | None:
    """Describe why ``data`` is not a valid copy of ``resource``, or return None if it is.

    Parameters
    ----------
    data : bytes
        The ``.gz`` file content.
    resource : Resource
        The expected file.

    Returns
    -------
    str or None
        A one-line description of the first mismatch, or None when the MD5 (and, where known,
        the SHA-256 of the decompressed content) match.
    """
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 != resource.md5:
        return f"MD5 {md5}, expected {resource.md5}"
    if resource.sha256 is None:
        return None
    try:
        sha = hashlib.sha256(gzip.decompress(data)).hexdigest()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return f"corrupt gzip stream ({exc})"
    if sha != resource.sha256:
        return f"SHA-256 of the decompressed content {sha}, expected {resource.sha256}"
    return None


def fetch_mnist(
    dest: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], object] = print,
) -> list[Path]:
    """Download the four MNIST ``.gz`` files into ``dest``, skipping valid files already there.

    Parameters
    ----------
    dest : str or PathLike, optional
        Target directory, created when the first file arrives. Default:
        :func:`default_cache_dir`.
    mirrors : sequence of str
        Base URLs tried in order for each file; each must end with ``/``.
    timeout : float
        Seconds allowed for connecting and for each read.
    log : callable
        Receives progress and status lines.

    Returns
    -------
    list of Path
        The four files, in the order of :data:`RESOURCES`.

    Raises
    ------
    DownloadError
        If no mirror delivers one of the files with matching checksums. Files completed before
        the failure stay in ``dest``.
    TypeError
        If ``mirrors`` is a single string rather than a sequence of URLs.
    ValueError
        If ``mirrors`` is empty or a mirror does not end with ``/``, or ``timeout`` is not > 0.
    """
    timeout = check_positive(timeout, "timeout")
    mirrors = _check_mirrors(mirrors)
    dest = default_cache_dir() if dest is None else Path(dest)
    unreachable: set[str] = set()
    return [_fetch_one(res, dest, mirrors, unreachable, timeout, log) for res in RESOURCES]


def _check_mirrors(mirrors: Sequence[str]) -> tuple[str, ...]:
    """Return ``mirrors`` as a tuple, or raise if it is a string, empty or malformed."""
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of URLs, got the string {mirrors!r}")
    mirrors = tuple(mirrors)
    if not mirrors:
        raise ValueError("mirrors must hold at least one base URL, got none")
    bad = [m for m in mirrors if not (isinstance(m, str) and m.endswith("/"))]
    if bad:
        raise ValueError(f"each mirror must be a base URL ending with '/', got {bad!r}")
    return mirrors


def _fetch_one(
    res: Resource,
    dest: Path,
    mirrors: tuple[str, ...],
    unreachable: set[str],
    timeout: float,
    log: Callable[[str], object],
) -> Path:
    """Ensure ``dest/res.filename`` is a valid copy; download it if not. See :func:`fetch_mnist`."""
    target = dest / res.filename
    if target.is_file():
        problem = checksum_problem(target.read_bytes(), res)
        if problem is None:
            log(f"{res.filename}: already present and valid, skipped")
            return target
        log(f"{res.filename}: present but invalid ({problem}); downloading again")
    failures = []
    for mirror in mirrors:
        if mirror in unreachable:
            failures.append(f"{mirror}: skipped, unreachable earlier")
            continue
        url = mirror + res.filename
        try:
            data = _download(url, timeout, log)
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
            continue
        except (OSError, http.client.HTTPException) as exc:
            unreachable.add(mirror)
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        problem = checksum_problem(data, res)
        if problem is not None:
            failures.append(f"{url}: {problem}")
            continue
        dest.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as f:
            f.write(data)
        log(f"{res.filename}: checksums ok, saved to {target}")
        return target
    raise DownloadError(f"could not download {res.filename}: " + "; ".join(failures))


def _download(url: str, timeout: float, log: Callable[[str], object]) -> bytes:
    """Return the body of ``url``, logging once connected and at every quarter of the download."""
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        log(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
        chunks: list[bytes] = []
        received, next_quarter = 0, 1
        while chunk := response.read(_CHUNK):
            chunks.append(chunk)
            received += len(chunk)
            while total and next_quarter <= 4 and received * 4 >= next_quarter * total:
                log(f"  {25 * next_quarter:3d}%  {received / 1e6:.1f} of {total / 1e6:.1f} MB")
                next_quarter += 1
    if total and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    log(f"  {received / 1e6:.1f} MB in {time.monotonic() - start:.1f} s")
    return b"".join(chunks)
