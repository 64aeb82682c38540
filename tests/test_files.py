"""Checked file access (refimpl/files.py) and atomic writes (refimpl/atomic.py).

Inputs: missing paths, directories, FIFOs, devices, empty files, text, truncated and pickled
``.npy`` files, ``.npz`` archives. Outputs: missing or unwritable directories, directories,
symbolic links, FIFOs and devices as targets; a full disk; permission bits; stale temporary
files of dead writers.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from refimpl import atomic
from refimpl.atomic import atomic_write, current_umask, pid_alive, remove_stale_temps
from refimpl.files import check_input_file, check_output_path, file_kind, load_npy

ROOT = os.geteuid() == 0


@pytest.fixture
def no_hang():
    """Fail (instead of blocking forever) if the code under test opens a FIFO for reading."""

    def timeout(signum, frame):
        raise TimeoutError("blocked: a FIFO was opened for reading")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.npy"
    os.mkfifo(path)
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- check_input_file -----------------------------------------------------------------------


def test_input_missing_directory_fifo_device_and_empty_are_named(tmp_path, fifo, no_hang):
    with pytest.raises(FileNotFoundError, match=r"input file '.*nope.npy' does not exist"):
        check_input_file(tmp_path / "nope.npy", "input")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="does not exist .a part of the path is a file"):
        check_input_file(tmp_path / "file" / "x.npy", "input")
    with pytest.raises(IsADirectoryError, match="is a directory, expected a .npy file"):
        check_input_file(tmp_path, "input", expected="a .npy file")
    with pytest.raises(ValueError, match=r"pipe.npy' is not a regular file \(a FIFO"):
        check_input_file(fifo, "input")
    with pytest.raises(ValueError, match=r"'/dev/null' is not a regular file \(a character device"):
        check_input_file("/dev/null", "--target")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"input file '.*empty.npy' is empty \(0 bytes\)"):
        check_input_file(tmp_path / "empty.npy", "input")
    with pytest.raises(TypeError, match="input must be a str or PathLike path, got int"):
        check_input_file(3, "input")


def test_input_regular_file_and_symlink_to_it_pass(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"data")
    (tmp_path / "link.npy").symlink_to(tmp_path / "a.npy")
    assert check_input_file(str(tmp_path / "a.npy"), "input") == tmp_path / "a.npy"
    assert check_input_file(tmp_path / "link.npy", "input") == tmp_path / "link.npy"


def test_file_kind_names():
    assert file_kind(os.stat("/dev/null").st_mode) == "a character device"
    assert file_kind(stat.S_IFREG) == "a regular file"
    assert file_kind(stat.S_IFSOCK) == "a socket"


# --- load_npy -------------------------------------------------------------------------------


def npy_bytes(array: np.ndarray, **kwargs) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(
    "array",
    [np.arange(12.0).reshape(3, 4), np.asfortranarray(np.ones((2, 3))), np.int64(7), np.zeros(0)],
    ids=["c order", "fortran order", "0-d", "empty"],
)
def test_load_npy_round_trips(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    out = load_npy(tmp_path / "a.npy", "input")
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.asarray(array).dtype


def test_load_npy_reads_format_version_2(tmp_path):
    array = np.arange(6.0)
    with open(tmp_path / "v2.npy", "wb") as f:
        npy_format.write_array(f, array, version=(2, 0))
    np.testing.assert_array_equal(load_npy(tmp_path / "v2.npy", "input"), array)


def test_load_npy_refuses_text_with_the_magic_named(tmp_path):
    (tmp_path / "x.npy").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(
        ValueError,
        match=r"input file '.*x.npy' is not a .npy file: it does not "
        r"start with the NumPy magic \\x93NUMPY \(it starts with b'1,2,3",
    ):
        load_npy(tmp_path / "x.npy", "input")


def test_load_npy_refuses_a_truncated_file_with_both_sizes(tmp_path):
    data = npy_bytes(np.arange(12.0).reshape(3, 4))
    (tmp_path / "t.npy").write_bytes(data[:-40])
    with pytest.raises(
        ValueError,
        match=r"is truncated: its header declares shape \(3, 4\) of "
        "float64, 96 data bytes, but the file holds only 56",
    ):
        load_npy(tmp_path / "t.npy", "input")


def test_load_npy_checks_a_huge_declared_shape_before_allocating(tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    with open(tmp_path / "huge.npy", "wb") as f:
        npy_format.write_array_header_1_0(f, header)
        f.write(b"\0" * 80)
    with pytest.raises(ValueError, match=r"8000000000000 data bytes, but the file holds only 80"):
        load_npy(tmp_path / "huge.npy", "--target")


def test_load_npy_refuses_data_after_the_array(tmp_path):
    (tmp_path / "two.npy").write_bytes(npy_bytes(np.ones(3)) + npy_bytes(np.ones(3)))
    with pytest.raises(ValueError, match="has 152 byte.s. after the data.*several arrays"):
        load_npy(tmp_path / "two.npy", "input")


def test_load_npy_refuses_pickled_objects_without_unpickling(tmp_path, monkeypatch):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import pickle

    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(
        ValueError,
        match=r"holds Python objects \(pickled data.*never loads; "
        "save a numeric array",
    ):
        load_npy(tmp_path / "obj.npy", "input")


def test_load_npy_refuses_an_npz_and_lists_its_arrays(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.ones(3), labels=np.zeros(3))
    with pytest.raises(
        ValueError,
        match=r"is an .npz archive holding \['images', 'labels'\], "
        "expected a single .npy array",
    ):
        load_npy(tmp_path / "x.npz", "input")


def test_load_npy_refuses_a_malformed_header(tmp_path):
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': junk }\n")
    with pytest.raises(ValueError, match="malformed or truncated .npy header"):
        load_npy(tmp_path / "h.npy", "input")


def test_load_npy_never_opens_a_fifo(fifo, no_hang):
    with pytest.raises(ValueError, match="not a regular file"):
        load_npy(fifo, "input")


# --- check_output_path ----------------------------------------------------------------------


def test_output_path_refusals(tmp_path, fifo):
    with pytest.raises(
        FileNotFoundError,
        match=r"cannot write --out '.*x.png': directory "
        "'.*nope' does not exist",
    ):
        check_output_path(tmp_path / "nope" / "x.png", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file|is not a directory"):
        check_output_path(tmp_path / "file" / "x.png", "--out")
    with pytest.raises(IsADirectoryError, match="--out '.*' is a directory, expected a file path"):
        check_output_path(tmp_path, "--out")
    with pytest.raises(IsADirectoryError, match="names a directory"):
        check_output_path(f"{tmp_path}/sub/", "--out")
    (tmp_path / "link.png").symlink_to(tmp_path / "file")
    with pytest.raises(ValueError, match="refusing to replace --out .*link.png': it is a symbolic"):
        check_output_path(tmp_path / "link.png", "--out")
    with pytest.raises(ValueError, match="refusing to replace --out .*pipe.npy': it is a FIFO"):
        check_output_path(fifo, "--out")
    with pytest.raises(ValueError, match="'/dev/null': it is a character device, not a regular"):
        check_output_path("/dev/null", "--out")
    assert check_output_path(tmp_path / "file", "--out") == tmp_path / "file"
    assert check_output_path(tmp_path / "new.png", "--out") == tmp_path / "new.png"


def test_output_path_in_an_unwritable_directory(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode)
    )
    with pytest.raises(
        PermissionError,
        match=r"cannot write --out '.*x.npz': directory '.*' is "
        r"not writable \(permission denied\)",
    ):
        check_output_path(tmp_path / "x.npz", "--out")
    with pytest.raises(PermissionError, match="not writable"):
        with atomic_write(tmp_path / "x.npz"):
            pytest.fail("the block must not run")


@pytest.mark.skipif(ROOT, reason="root may write any directory")
def test_output_path_in_a_read_only_directory(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(PermissionError, match="not writable"):
        check_output_path(tmp_path / "ro" / "x.npz", "--out")


# --- atomic_write: refusals, a full disk ---------------------------------------------------


def test_atomic_write_refuses_links_fifos_devices_and_directories(tmp_path, fifo, no_hang):
    (tmp_path / "real.txt").write_text("keep")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    for target, match in [
        (tmp_path / "link.txt", "symbolic link"),
        (fifo, "a FIFO"),
        ("/dev/null", "a character device"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises((ValueError, IsADirectoryError), match=match):
            with atomic_write(target):
                pytest.fail("the block must not run")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "pipe.npy", "real.txt"]


@pytest.mark.parametrize(
    ("where", "code", "cause"),
    [
        ("fsync", errno.ENOSPC, "no space left on device"),
        ("body", errno.ENOSPC, "no space left on device"),
        ("body", errno.EDQUOT, "disk quota exceeded"),
        ("fsync", errno.EIO, "input/output error"),
        ("mkstemp", errno.ENOSPC, "no space left on device while creating a temporary file"),
    ],
)
def test_a_full_disk_names_the_path_and_cause_and_leaves_nothing(
    tmp_path, monkeypatch, where, code, cause
):
    target = tmp_path / "model.npz"
    target.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if where != "body":
        monkeypatch.setattr(os if where == "fsync" else atomic.tempfile, where, fail)
    with pytest.raises(OSError, match=f"{cause}.* '{target}'; it was left unchanged") as info:
        with atomic_write(target, "model file") as f:
            f.write(b"new content")
            if where == "body":
                fail()
    assert info.value.errno == code
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_real_full_device_raises_enospc(tmp_path, monkeypatch):
    """Write into /dev/full (every write fails with ENOSPC) in place of the temporary file."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    fake_tmp = tmp_path / ".x.npy.tmp"
    monkeypatch.setattr(
        atomic.tempfile, "mkstemp", lambda **kw: (os.open("/dev/full", os.O_WRONLY), str(fake_tmp))
    )
    monkeypatch.setattr(os, "fchmod", lambda fd, mode: None)  # never chmod the device node
    with pytest.raises(OSError, match="no space left on device while writing") as info:
        with atomic_write(tmp_path / "x.npy") as f:
            np.save(f, np.ones(10))
    assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "x.npy").exists()


def test_other_errors_of_the_block_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError, match="^some input$"):
        with atomic_write(tmp_path / "x.bin"):
            raise FileNotFoundError("some input")
    with pytest.raises(KeyError):
        with atomic_write(tmp_path / "x.bin"):
            raise KeyError("k")
    assert list(tmp_path.iterdir()) == []


# --- atomic_write: modes and temporary files ---------------------------------------------


def test_a_replaced_file_keeps_its_permission_bits(tmp_path):
    target = tmp_path / "run.sh"
    for mode in (0o640, 0o755, 0o600, 0o444):
        target.write_bytes(b"old")
        target.chmod(mode)
        with atomic_write(target) as f:
            f.write(b"new")
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert target.read_bytes() == b"new"
        target.chmod(0o644)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_a_new_file_gets_0666_less_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_write(tmp_path / f"new{umask:o}") as f:
            f.write(b"x")
        plain = tmp_path / f"plain{umask:o}"
        plain.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / f"new{umask:o}").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_the_umask_fallback_reads_and_restores(monkeypatch):
    previous = os.umask(0o027)
    try:
        import builtins

        real_open = builtins.open

        def no_proc(file, *args, **kwargs):
            if str(file) == "/proc/self/status":
                raise FileNotFoundError(file)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", no_proc)
        assert current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # restored
    finally:
        os.umask(previous)


def test_the_temporary_file_is_named_after_the_target_and_the_pid(tmp_path):
    with atomic_write(tmp_path / "model.npz") as f:
        (tmp,) = [p.name for p in tmp_path.iterdir()]
        f.write(b"x")
    assert tmp.startswith(f".model.npz.{os.getpid()}.") and tmp.endswith(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = dead_pid()
    assert not pid_alive(dead)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".model.npz.{dead}.k3j_x9a2.tmp",
            "live": f".model.npz.{live.pid}.a8d7s6f5.tmp",
            "mine": f".model.npz.{os.getpid()}.zz1100yy.tmp",
            "other target": f".model.npz.bak.{dead}.q1w2e3r4.tmp",
            "old naming": ".model.npz.abcd1234.tmp",
            "not a temp": f"model.npz.{dead}.abcdefgh.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        with atomic_write(tmp_path / "model.npz") as f:
            f.write(b"complete")
        left = {p.name for p in tmp_path.iterdir()}
        assert names["dead"] not in left
        assert left == (set(names.values()) - {names["dead"]}) | {"model.npz"}
        assert remove_stale_temps(tmp_path / "model.npz") == []
        assert pid_alive(live.pid) and pid_alive(os.getpid())
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temps(tmp_path / "model.npz") == [tmp_path / names["live"]]


def test_a_stale_temp_that_is_a_directory_or_link_is_left_alone(tmp_path):
    dead = dead_pid()
    (tmp_path / f".x.npy.{dead}.abcdefgh.tmp").mkdir()
    (tmp_path / "victim").write_text("keep")
    (tmp_path / f".x.npy.{dead}.zyxwvuts.tmp").symlink_to(tmp_path / "victim")
    assert remove_stale_temps(tmp_path / "x.npy") == []
    assert (tmp_path / "victim").read_text() == "keep"


def test_a_path_swapped_for_a_fifo_after_the_check_does_not_hang(fifo, monkeypatch, no_hang):
    from refimpl import files

    monkeypatch.setattr(files, "check_input_file", lambda path, what, expected: Path(path))
    with pytest.raises(ValueError, match=r"input file '.*pipe.npy' is not a regular file \(a FIFO"):
        files.open_input_file(fifo, "input")
