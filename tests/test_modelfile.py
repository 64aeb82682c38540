"""The model file: exact round trips, a catalogue of corruptions, atomic saves."""

from __future__ import annotations

import io
import json
import os
import signal
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.modelfile import ModelFileError, load_model, load_model_with_meta, save_model
from refimpl.nn.network import Sequential, mlp

from .nets import random_mlp


@given(random_mlp(), st.sampled_from([np.float64, np.float32]))
def test_round_trip_is_exact(tmp_path_factory, case, dtype):
    net, x, _ = case
    net.astype(dtype)
    path = tmp_path_factory.mktemp("m") / "net.npz"
    save_model(path, net, meta={"note": "x"})
    loaded, meta = load_model_with_meta(path)
    assert meta == {"note": "x"}
    assert isinstance(loaded, Sequential)
    assert [repr(la) for la in loaded.layers] == [repr(la) for la in net.layers]
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), loaded.named_parameters(), strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype
        np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(loaded(x.astype(dtype)), net(x.astype(dtype)))


def test_file_written_from_plain_arrays_as_in_the_readme(tmp_path):
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = (
        rng.normal(size=(784, 32)),
        np.zeros(32),
        rng.normal(size=(32, 10)),
        np.zeros(10),
    )
    spec = {
        "format": "refimpl-model",
        "version": 1,
        "kind": "sequential",
        "layers": [{"type": "dense"}, {"type": "relu"}, {"type": "dense"}],
    }
    np.savez(
        tmp_path / "net.npz",
        __spec__=json.dumps(spec),
        **{"layers.0.W": W1, "layers.0.b": b1, "layers.2.W": W2, "layers.2.b": b2},
    )
    net = load_model(tmp_path / "net.npz")
    x = rng.normal(size=(2, 784))
    np.testing.assert_allclose(net(x), np.maximum(x @ W1 + b1, 0) @ W2 + b2, rtol=1e-14)


# --- a catalogue of corruptions -------------------------------------------------------------


def _arrays(net):
    return dict(net.named_parameters())


def _spec(net):
    return {
        "format": "refimpl-model",
        "version": 1,
        "kind": "sequential",
        "input_shape": [3],
        "layers": [{"type": la.type_name, **la.config()} for la in net.layers],
    }


def _write(path, spec, arrays):
    np.savez(path, __spec__=json.dumps(spec) if isinstance(spec, dict) else spec, **arrays)


NET = mlp([3, 4, 2], rng=0)


def _corrupt(kind, path):
    spec, arrays = _spec(NET), _arrays(NET)
    if kind == "format":
        spec["format"] = "something-else"
    elif kind == "version":
        spec["version"] = 99
    elif kind == "kind":
        spec["kind"] = "transformer"
    elif kind == "layer type":
        spec["layers"][1]["type"] = "softplus"
    elif kind == "missing array":
        del arrays["layers.2.b"]
    elif kind == "extra array":
        arrays["layers.9.W"] = np.ones((2, 2))
    elif kind == "shapes do not chain":
        arrays["layers.2.W"] = np.ones((5, 2))
    elif kind == "bias shape":
        arrays["layers.0.b"] = np.ones(7)
    elif kind == "nan weight":
        arrays["layers.0.W"] = np.full((3, 4), np.nan)
    elif kind == "inf bias":
        arrays["layers.0.b"] = np.array([0, np.inf, 0, 0])
    elif kind == "integer array":
        arrays["layers.0.W"] = np.ones((3, 4), dtype=np.int64)
    elif kind == "input shape":
        spec["input_shape"] = [5]
    elif kind == "bad json":
        spec = "{not json"
    elif kind == "no spec":
        np.savez(path, **arrays)
        return
    elif kind == "not a zip":
        path.write_bytes(b"hello, I am not an npz file at all")
        return
    elif kind == "truncated":
        _write(path, spec, arrays)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    elif kind == "empty":
        path.write_bytes(b"")
        return
    elif kind == "npy not npz":
        np.save(path.with_suffix(".npy"), np.ones(3))
        path.write_bytes(path.with_suffix(".npy").read_bytes())
        return
    elif kind == "pickled object":
        buf = io.BytesIO()
        np.savez(buf, __spec__=np.array([{"a": 1}], dtype=object), **arrays)
        path.write_bytes(buf.getvalue())
        return
    elif kind == "unknown dense key":
        spec["layers"][0]["activation"] = "relu"
    elif kind == "leaky slope":
        spec["layers"][1] = {"type": "leaky_relu", "slope": -1}
    _write(path, spec, arrays)


CATALOGUE = {
    "format": "format must be 'refimpl-model'",
    "version": "unsupported version 99",
    "kind": "unknown model kind 'transformer'",
    "layer type": "unknown layer type 'softplus'",
    "missing array": r"needs arrays \['W', 'b'\]",
    "extra array": r"extra array\(s\).*layers.9.W",
    "shapes do not chain": "does not chain",
    "bias shape": "b must have shape",
    "nan weight": "NaN or inf",
    "inf bias": "NaN or inf",
    "integer array": "expected float32 or float64",
    "input shape": "does not chain",
    "bad json": "not valid JSON",
    "no spec": "not a refimpl model file",
    "not a zip": "not a readable .npz",
    "truncated": "not a readable .npz",
    "empty": r"is empty \(0 bytes\)",
    "npy not npz": "not an .npz archive",
    "pickled object": "not a readable .npz|0-d string",
    "unknown dense key": "unknown config key",
    "leaky slope": "slope",
}


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_corrupt_model_files_raise_documented_error(tmp_path, kind):
    path = tmp_path / "bad.npz"
    _corrupt(kind, path)
    with pytest.raises(ModelFileError, match=CATALOGUE[kind]) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.npz")


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    save_model(path, NET, meta={"v": 1})
    before = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, mlp([3, 2], rng=1))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.npz"]


def test_save_refuses_nan_and_unknown_objects(tmp_path):
    net = mlp([2, 2], rng=0)
    net.parameters()[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_model(tmp_path / "x.npz", net)
    with pytest.raises(TypeError, match="cannot save a dict"):
        save_model(tmp_path / "y.npz", {"W": 1})
    assert not any(tmp_path.iterdir())


def test_archive_is_a_plain_zip_of_npy_files(tmp_path):
    save_model(tmp_path / "n.npz", NET)
    with zipfile.ZipFile(tmp_path / "n.npz") as z:
        assert sorted(z.namelist()) == sorted(
            ["__spec__.npy"] + [f"{n}.npy" for n, _ in NET.named_parameters()]
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_of_a_net_starting_with_flatten(tmp_path, dtype):
    rng = np.random.default_rng(0)
    net = Sequential(
        [
            Flatten(),
            Dense(rng.normal(size=(24, 5)), rng.normal(size=5)),
            ReLU(),
            Dense(rng.normal(size=(5, 3))),
        ],
        input_shape=(2, 3, 4),
    ).astype(dtype)
    save_model(tmp_path / "f.npz", net)
    with np.load(tmp_path / "f.npz") as data:
        spec = json.loads(str(data["__spec__"]))
    assert spec["input_shape"] == [2, 3, 4]
    assert spec["layers"][0] == {"type": "flatten"}
    loaded = load_model(tmp_path / "f.npz")
    assert loaded.input_shape == (2, 3, 4) and isinstance(loaded.layers[0], Flatten)
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), loaded.named_parameters(), strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype == dtype
        np.testing.assert_array_equal(p1, p2)
    x = rng.normal(size=(4, 2, 3, 4)).astype(dtype)
    np.testing.assert_array_equal(loaded(x), net(x))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda spec, arrays: spec.update(input_shape=[2, 3, 5]), "does not chain"),
        (lambda spec, arrays: spec.update(input_shape=[2, 0, 4]), "positive integers"),
        (lambda spec, arrays: arrays.update({"layers.0.W": np.ones((2, 2))}), "takes no arrays"),
        (
            lambda spec, arrays: spec["layers"][0].update(start_dim=2),
            r"layers\[0\] \(flatten\).*start_dim",
        ),
    ],
    ids=["input shape", "zero dim", "flatten with arrays", "flatten with config"],
)
def test_corrupt_flatten_model_files_raise_documented_error(tmp_path, change, match):
    net = Sequential([Flatten(), Dense(np.ones((24, 2)))], input_shape=(2, 3, 4))
    spec = {**_spec(net), "input_shape": [2, 3, 4]}
    arrays = _arrays(net)
    change(spec, arrays)
    _write(tmp_path / "bad.npz", spec, arrays)
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "bad.npz")


# --- paths that are not files; zip bombs and unexpected members ---------------------------------


def test_a_directory_fifo_or_empty_model_path_says_so(tmp_path):
    with pytest.raises(
        IsADirectoryError,
        match=r"model file '.*' is a directory, expected a "
        r"\.npz model file",
    ):
        load_model(tmp_path)
    os.mkfifo(tmp_path / "pipe.npz")
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(5)  # opening a FIFO for reading blocks: fail instead of hanging
    try:
        with pytest.raises(ModelFileError, match=r"'.*pipe.npz' is not a regular file \(a FIFO"):
            load_model(tmp_path / "pipe.npz")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"model file '.*empty.npz' is empty \(0 bytes\)"):
        load_model(tmp_path / "empty.npz")


def _timeout(signum, frame):
    raise TimeoutError("blocked: the FIFO was opened for reading")


def _write_members(path, members, compression=zipfile.ZIP_DEFLATED):
    """Write a model archive by hand: ``members`` maps a member name to an array or to a
    function that writes the member's bytes into the open zip stream."""
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=1) as zf:
        for name, value in members.items():
            with zf.open(name, "w", force_zip64=True) as m:
                if callable(value):
                    value(m)
                else:
                    np.lib.format.write_array(m, np.asanyarray(value), allow_pickle=False)


def _members(net=NET):
    return {"__spec__.npy": np.array(json.dumps(_spec(net)))} | {
        f"{n}.npy": a for n, a in _arrays(net).items()
    }


def _zeros_after(array, n_bytes):
    def write(m):
        np.lib.format.write_array(m, array)
        for _ in range(n_bytes // 2**20):
            m.write(bytes(2**20))

    return write


def _claims(shape):
    """A member whose header claims ``shape`` float64 zeros, written in 1 MB chunks."""

    def write(m):
        header = {"descr": "<f8", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(m, header)
        left = 8 * int(np.prod(shape))
        while left:
            m.write(bytes(min(left, 2**20)))
            left -= min(left, 2**20)

    return write


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    ("member", "writer", "match"),
    [
        (
            "layers.0.W.npy",
            _zeros_after(_arrays(NET)["layers.0.W"], 50 * 2**20),
            r"member 'layers.0.W.npy' declares 52429024 bytes uncompressed, but its .npy header "
            r"\(shape \(3, 4\), dtype float64\) accounts for 224; refusing to read it",
        ),
        (
            "layers.0.W.npy",
            _claims((1_600_000, 4)),
            r"array 'layers.0.W' of shape \(1600000, 4\) \(per its .npy header\) does not chain: "
            "the layers before it give 3 values",
        ),
        (
            "layers.2.b.npy",
            _claims((6_500_000,)),
            r"array 'layers.2.b' has shape \(6500000,\) \(per its .npy header\); b must have "
            r"shape \(2,\) to match W \(4, 2\)",
        ),
    ],
    ids=["zeros after the array", "W larger than the spec", "b larger than W"],
)
def test_a_zip_bomb_is_refused_before_its_data_is_decompressed(tmp_path, member, writer, match):
    path = tmp_path / "bomb.npz"
    _write_members(path, _members() | {member: writer})
    assert path.stat().st_size < 2**20  # about 50 MB of zeros, compressed

    def load():
        with pytest.raises(ModelFileError, match=match):
            load_model(path)

    assert _peak_bytes(load) < 4 * 2**20


def test_the_total_declared_size_is_capped(tmp_path, monkeypatch):
    from refimpl.nn import modelfile

    save_model(tmp_path / "n.npz", NET)
    assert modelfile.MAX_MODEL_BYTES == 2**30
    monkeypatch.setattr(modelfile, "MAX_MODEL_BYTES", 500)
    with pytest.raises(
        ModelFileError,
        match=r"declare more than 500 bytes uncompressed "
        r"\(MAX_MODEL_BYTES\) by member '.*'.*refusing to decompress",
    ):
        load_model(tmp_path / "n.npz")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"README.txt": lambda m: m.write(b"hello")}, r"unexpected member 'README.txt'; a model"),
        ({"sub/x.npy": np.ones(2)}, r"unexpected member 'sub/x.npy'"),
        ({"layers.1.W.npy": np.ones((4, 4))}, r"layers\[1\] \(relu\): layer 'relu' takes no arr"),
        ({"layers.0.c.npy": np.ones(4)}, r"needs arrays \['W', 'b'\], got \['W', 'b', 'c'\]"),
        ({"layers.0.W.x.npy": np.ones(4)}, r"needs arrays \['W', 'b'\], got \['W', 'W.x', 'b'\]"),
        ({"layers.7.W.npy": np.ones((2, 2))}, r"extra array\(s\) not used by the spec: \['layers"),
        ({"__spec__.npy": np.ones(3)}, r"'__spec__' must be a 0-d string array"),
    ],
    ids=[
        "text file",
        "subdirectory",
        "array of a relu",
        "unknown dense array",
        "nested name",
        "beyond the last layer",
        "numeric spec",
    ],
)
def test_unexpected_members_are_refused_before_reading(tmp_path, extra, match):
    _write_members(tmp_path / "x.npz", _members() | extra)
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "x.npz")


def test_duplicate_and_bzip2_members_are_refused(tmp_path):
    path = tmp_path / "dup.npz"
    _write_members(path, _members())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("layers.0.b.npy", b"anything")
    with pytest.raises(ModelFileError, match="member 'layers.0.b.npy' appears twice"):
        load_model(path)
    _write_members(tmp_path / "bz.npz", _members(), compression=zipfile.ZIP_BZIP2)
    with pytest.raises(ModelFileError, match="compression method 12; expected stored or deflated"):
        load_model(tmp_path / "bz.npz")


def test_compressed_and_nested_model_files_still_load(tmp_path):
    path = tmp_path / "c.npz"
    _write_members(path, _members())
    loaded = load_model(path)
    for (n1, p1), (n2, p2) in zip(NET.named_parameters(), loaded.named_parameters(), strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(p1, p2)
    from refimpl.interpret.gan import GAN

    gan = GAN(mlp([2, 3, 4], rng=0), mlp([4, 3, 1], rng=1))
    save_model(tmp_path / "gan.npz", gan)
    assert type(load_model(tmp_path / "gan.npz")) is GAN
    with np.load(tmp_path / "gan.npz") as data:
        members = {f"{n}.npy": data[n] for n in data.files}
    members["generator.layers.2.W.npy"] = np.ones((5, 4))
    _write_members(tmp_path / "bad-gan.npz", members)
    with pytest.raises(
        ModelFileError,
        match=r"'generator.layers.2.W' of shape \(5, 4\) \(per its "
        r".npy header\) does not chain: the layers before it give 3 values",
    ):
        load_model(tmp_path / "bad-gan.npz")
