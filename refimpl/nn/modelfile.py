"""The native model file: a NumPy ``.npz`` archive with a versioned JSON spec of the layers.

Format (version 1)
------------------
An uncompressed or compressed ``.npz`` holding

- ``__spec__``: a 0-d unicode string array holding JSON::

      {"format": "refimpl-model", "version": 1, "kind": "sequential",
       "input_shape": [784],                    (optional for dense-first nets)
       "layers": [{"type": "dense", "bias": true}, {"type": "relu"}, ...],
       "meta": {...}}

- one array per parameter, named ``layers.{i}.{name}``: ``layers.0.W`` of shape (in, out) and
  ``layers.0.b`` of shape (out,) for the first dense layer, and so on. Weights are laid out
  (in, out): ``z = a @ W + b``. A PyTorch ``nn.Linear`` weight must be transposed.

``kind`` names the model class; models made of several networks (e.g. a GAN) nest specs and
prefix array names (``generator.layers.0.W``). New kinds and layer types register themselves in
``MODEL_KINDS`` and ``refimpl.nn.layers.LAYER_TYPES``; the version changes only when a file that
loads today would load differently.

Loading validates: the archive and its JSON, format and version, the kind, unknown layer types,
missing and extra arrays, array dtypes, NaN/inf values, and that shapes chain through the layers.
Every failure raises ``ModelFileError`` (a ``ValueError``) naming the file and the problem.
Sizes, dtypes and (for sequential nets) shapes are checked from the zip directory and each
member's ``.npy`` header before any data is decompressed, so a zip bomb is refused unread.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from ..atomic import atomic_write
from ..files import NPY_MAGIC, check_input_file, npy_data_bytes, read_npy_header
from .layers import LAYER_TYPES
from .network import Sequential

FORMAT = "refimpl-model"
VERSION = 1
SPEC_KEY = "__spec__"

MAX_MODEL_BYTES = 2**30
"""Cap on the uncompressed size of all members of a model file (1 GiB; a float64
784-1000-1000-1000-10 net is 22 MB). A file declaring more is refused before decompressing."""
MAX_SPEC_BYTES = 2**24
"""Cap on the size of the ``__spec__`` string (16 MiB of UTF-32)."""
MAX_MEMBERS = 10_000
"""Cap on the number of archive members."""
_MAX_NESTING = 16  # nested specs (a GAN holds two nets) walked when planning the arrays
_SIZE_PRESERVING = frozenset({"relu", "leaky_relu", "tanh", "sigmoid", "log_softmax", "flatten"})


class ModelFileError(ValueError):
    """A model file that is not a valid refimpl model file."""


def _sequential_to_spec(net: Sequential, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
    layers = [{"type": layer.type_name, **layer.config()} for layer in net.layers]
    arrays = {prefix + name: value for name, value in net.named_parameters()}
    return {"kind": "sequential", "input_shape": list(net.input_shape), "layers": layers}, arrays


def _sequential_from_spec(spec: dict, arrays: _ArrayPool, prefix: str) -> Sequential:
    layers_spec = _get(spec, "layers", list, prefix)
    input_shape = spec.get("input_shape")
    if input_shape is not None and not (
        isinstance(input_shape, list)
        and input_shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ModelFileError(
            f"{prefix}input_shape must be a list of positive integers, got {input_shape!r}"
        )
    layers = []
    for i, entry in enumerate(layers_spec):
        where = f"{prefix}layers[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ModelFileError(f"{where} must be an object with a string 'type', got {entry!r}")
        config = {k: v for k, v in entry.items() if k != "type"}
        cls = LAYER_TYPES.get(entry["type"])
        if cls is None:
            raise ModelFileError(
                f"{where} has unknown layer type {entry['type']!r}; known types: "
                f"{sorted(LAYER_TYPES)}"
            )
        params = arrays.take_prefix(f"{prefix}layers.{i}.")
        try:
            layers.append(cls.from_config(config, params))
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{where} ({entry['type']}): {exc}") from None
    try:
        return Sequential(layers, input_shape=None if input_shape is None else tuple(input_shape))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{prefix or 'model'}: {exc}") from None


# kind -> (class, encode(model, prefix) -> (spec, arrays), decode(spec, arrays, prefix) -> model)
MODEL_KINDS: dict[str, tuple[type, Callable, Callable]] = {
    "sequential": (Sequential, _sequential_to_spec, _sequential_from_spec),
}


# kinds defined in other modules, imported on first load so callers need not import them first
_KIND_MODULES = {
    "grbm": "refimpl.interpret.grbm",
    "gan": "refimpl.interpret.gan",
    "decoder": "refimpl.interpret.gan",
}


def register_kind(name: str, cls: type, encode: Callable, decode: Callable) -> None:
    """Register a model class for the model file under ``kind`` = ``name``."""
    MODEL_KINDS[name] = (cls, encode, decode)


def encode_model(model: Any, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """Spec dict and named arrays of any registered model (used for nesting, e.g. in a GAN)."""
    for _kind, (cls, encode, _) in MODEL_KINDS.items():
        if type(model) is cls:
            return encode(model, prefix)
    raise TypeError(
        f"cannot save a {type(model).__name__}; registered kinds: {sorted(MODEL_KINDS)}"
    )


def decode_model(spec: Any, arrays: _ArrayPool, prefix: str = "") -> Any:
    """Rebuild a registered model from its spec dict, taking its arrays from ``arrays``."""
    if not isinstance(spec, dict):
        raise ModelFileError(f"{prefix or 'model'} spec must be a JSON object, got {spec!r}")
    kind = _get(spec, "kind", str, prefix)
    if kind not in MODEL_KINDS and kind in _KIND_MODULES:
        importlib.import_module(_KIND_MODULES[kind])
    if kind not in MODEL_KINDS:
        raise ModelFileError(
            f"unknown model kind {kind!r}; known kinds: {sorted({*MODEL_KINDS, *_KIND_MODULES})}"
        )
    return MODEL_KINDS[kind][2](spec, arrays, prefix)


def save_model(path: str | os.PathLike, model: Any, meta: dict | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + rename).

    Parameters
    ----------
    path : str or PathLike
        Destination, conventionally ending in ``.npz``.
    model : Sequential or another registered kind
    meta : dict, optional
        JSON-serializable free-form information (training data, accuracy, seed, ...).
    """
    spec, arrays = encode_model(model)
    spec = {"format": FORMAT, "version": VERSION, **spec, "meta": meta or {}}
    text = json.dumps(spec, indent=1, sort_keys=False)
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"refusing to save: array {name!r} contains NaN or inf")
    path = Path(path)
    with atomic_write(path, "model file") as f:
        np.savez(f, **{SPEC_KEY: np.array(text)}, **arrays)
    return path


class _ArrayPool:
    """The archive's arrays; decoders take theirs, and leftovers are reported as extra."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str):
        self.arrays = dict(arrays)
        self.source = source

    def take_prefix(self, prefix: str) -> dict[str, np.ndarray]:
        names = [n for n in self.arrays if n.startswith(prefix) and "." not in n[len(prefix) :]]
        return {n[len(prefix) :]: self.arrays.pop(n) for n in names}


def load_model(path: str | os.PathLike) -> Any:
    """Load and validate a model file; return the model (e.g. a ``Sequential``).

    Use ``load_model_with_meta`` to get the ``meta`` dict too.
    """
    return load_model_with_meta(path)[0]


def load_model_with_meta(path: str | os.PathLike) -> tuple[Any, dict]:
    """Load and validate a model file; return ``(model, meta)``. Raises ``ModelFileError``.

    Before any array data is decompressed, the archive's members are checked: each is a
    ``.npy`` of float32/float64 (the spec a 0-d string), its uncompressed size is exactly what
    its ``.npy`` header declares, the total is at most :data:`MAX_MODEL_BYTES`, and for
    sequential nets (also nested, as in a GAN) the declared shapes chain through the dense
    layers and no member is left over. A path that is missing, a directory, a FIFO or an empty
    file is refused before it is opened.
    """
    path = _check_model_path(path)
    spec, arrays = _read_npz(path)
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            raise ModelFileError(f"{path}: array {name!r} contains {bad} NaN or inf value(s)")
    pool = _ArrayPool(arrays, str(path))
    try:
        model = decode_model(spec, pool)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    if pool.arrays:
        raise ModelFileError(f"{path}: extra array(s) not used by the spec: {sorted(pool.arrays)}")
    meta = spec.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    return model, meta


def _check_model_path(path: str | os.PathLike) -> Path:
    """The model path, refused before any open if it is not a non-empty regular file."""
    try:
        return check_input_file(path, "model", expected="a .npz model file")
    except ValueError as exc:  # a FIFO, socket or device, or an empty file
        raise ModelFileError(str(exc)) from None


@dataclass(frozen=True)
class _Member:
    """A ``.npy`` member of the archive, as its zip entry and its header declare it."""

    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]


def _read_npz(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The spec and arrays of a model archive, checked before reading; never unpickles."""
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
            raise ModelFileError(f"{path}: a single .npy array, not an .npz archive")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _member_headers(zf, path)
            spec = _parse_spec(path, _read_member(zf, members[SPEC_KEY]))
            _check_planned(spec, members, path)
            arrays = {n: _read_member(zf, m) for n, m in members.items() if n != SPEC_KEY}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        raise ModelFileError(
            f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})"
        ) from None
    return spec, arrays


def _read_member(zf: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with zf.open(member.info) as stream:
        return npy_format.read_array(stream, allow_pickle=False)


def _member_headers(zf: zipfile.ZipFile, path: Path) -> dict[str, _Member]:
    """Every member's ``.npy`` header, read from the zip stream; refuse unexpected members."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: {len(infos)} archive members, more than {MAX_MEMBERS}")
    members: dict[str, _Member] = {}
    total = 0
    for info in infos:
        name = _member_name(info, path)
        if name in members:
            raise ModelFileError(f"{path}: member {info.filename!r} appears twice")
        total += info.file_size
        if total > MAX_MODEL_BYTES:
            raise ModelFileError(
                f"{path}: the members declare more than {MAX_MODEL_BYTES} bytes uncompressed "
                f"(MAX_MODEL_BYTES) by member {info.filename!r} of {info.file_size} bytes; "
                "refusing to decompress them"
            )
        members[name] = _member_header(zf, info, name, path)
    if SPEC_KEY not in members:
        raise ModelFileError(f"{path}: no {SPEC_KEY!r} entry; not a refimpl model file")
    return members


def _member_name(info: zipfile.ZipInfo, path: Path) -> str:
    """The array name of an archive member, or raise if the member is not a plain ``.npy``."""
    where = f"{path}: unexpected member {info.filename!r}"
    if info.is_dir() or not info.filename.endswith(".npy") or "/" in info.filename:
        raise ModelFileError(f"{where}; a model file holds only NAME.npy arrays")
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{where}: it is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(
            f"{where}: compression method {info.compress_type}; expected stored or deflated "
            "(as np.savez and np.savez_compressed write)"
        )
    return info.filename[: -len(".npy")]


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path) -> _Member:
    """Read and check one member's ``.npy`` header; its declared size must match the zip's."""
    where = f"{path}: member {info.filename!r}"
    with zf.open(info) as stream:
        try:
            dtype, shape, offset = read_npy_header(stream, where)
        except ValueError as exc:
            raise ModelFileError(str(exc)) from None
    if name == SPEC_KEY:
        if shape != () or dtype.kind != "U":
            raise ModelFileError(
                f"{path}: {SPEC_KEY!r} must be a 0-d string array, got dtype {dtype} shape {shape}"
            )
        if dtype.itemsize > MAX_SPEC_BYTES:
            raise ModelFileError(
                f"{path}: {SPEC_KEY!r} declares {dtype.itemsize} bytes, more than "
                f"MAX_SPEC_BYTES = {MAX_SPEC_BYTES}"
            )
    elif dtype not in (np.float32, np.float64):
        pickled = " (Python objects, pickled data, never loaded)" if dtype.hasobject else ""
        raise ModelFileError(
            f"{path}: array {name!r} has dtype {dtype}{pickled}; expected float32 or float64"
        )
    expected = offset + npy_data_bytes(dtype, shape)
    if info.file_size != expected:
        raise ModelFileError(
            f"{where} declares {info.file_size} bytes uncompressed, but its .npy header "
            f"(shape {shape}, dtype {dtype}) accounts for {expected}; refusing to read it"
        )
    return _Member(info, dtype, shape)


def _parse_spec(path: Path, raw: np.ndarray) -> dict:
    """The JSON spec of ``__spec__``, with its format and version checked."""
    try:
        spec = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: {SPEC_KEY!r} is not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path}: the spec must be a JSON object")
    if spec.get("format") != FORMAT:
        raise ModelFileError(f"{path}: format must be {FORMAT!r}, got {spec.get('format')!r}")
    if spec.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: unsupported version {spec.get('version')!r}; this refimpl "
            f"reads version {VERSION}"
        )
    return spec


@dataclass
class _Plan:
    """The arrays a sequential spec declares: names under ``owns`` must be ``declared``."""

    owns: str
    declared: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)  # prefixes of layers refimpl cannot plan

    def allows(self, name: str) -> bool:
        return name in self.declared or any(name.startswith(p) for p in self.unknown)


def _check_planned(spec: dict, members: dict[str, _Member], path: Path) -> None:
    """Refuse, from the headers alone, arrays that do not fit the spec's sequential nets.

    Dense weights must chain (``W`` of layer ``i`` has as many rows as the layers before give
    values, ``b`` matches ``W``) and no member under a net's ``layers.`` may be left over.
    Kinds other than sequential are left to their decoders (after reading, within the caps).
    """
    plans: list[_Plan] = []
    _plan(spec, "", members, path, plans, depth=0)
    extra = sorted(
        n
        for n in members
        if any(n.startswith(p.owns) for p in plans) and not any(p.allows(n) for p in plans)
    )
    if extra:
        raise ModelFileError(f"{path}: extra array(s) not used by the spec: {extra}")


def _plan(spec: Any, prefix: str, members: dict, path: Path, plans: list, depth: int) -> None:
    if not isinstance(spec, dict) or depth > _MAX_NESTING:
        return
    if spec.get("kind") == "sequential":
        plans.append(_plan_sequential(spec, prefix, members, path))
        return
    for key, value in spec.items():
        if key != "meta" and isinstance(value, dict) and "kind" in value:
            _plan(value, f"{prefix}{key}.", members, path, plans, depth + 1)


def _plan_sequential(spec: dict, prefix: str, members: dict, path: Path) -> _Plan:
    plan = _Plan(owns=f"{prefix}layers.")
    layers = spec.get("layers")
    if not isinstance(layers, list):
        plan.unknown.append(plan.owns)  # the decoder says what is wrong
        return plan
    width = _width(spec.get("input_shape"))
    for i, entry in enumerate(layers):
        base = f"{prefix}layers.{i}."
        kind = entry.get("type") if isinstance(entry, dict) else None
        bias = entry.get("bias", True) if kind == "dense" else None
        if kind == "dense" and isinstance(bias, bool):
            plan.declared.update([base + "W", base + "b"] if bias else [base + "W"])
            _check_params(members, prefix, i, kind, {"W", "b"} if bias else {"W"}, path)
            width = _plan_dense(base, bias, width, members, path)
        elif kind in _SIZE_PRESERVING:
            _check_params(members, prefix, i, kind, set(), path)
        else:
            plan.unknown.append(base)
            width = None
    return plan


def _check_params(
    members: dict, prefix: str, i: int, kind: str, expected: set[str], path: Path
) -> None:
    """Refuse layer ``i`` if its arrays are not ``expected``, with its decoder's message."""
    base = f"{prefix}layers.{i}."
    found = sorted(n[len(base) :] for n in members if n.startswith(base))
    if set(found) == expected:
        return
    where = f"{path}: {prefix}layers[{i}] ({kind})"
    if not expected:
        raise ModelFileError(f"{where}: layer {kind!r} takes no arrays, got {found}")
    raise ModelFileError(
        f"{where}: dense layer (bias={'b' in expected}) needs arrays {sorted(expected)}, "
        f"got {found}"
    )


def _width(input_shape: Any) -> int | None:
    """Values per sample of a valid ``input_shape``, else None (the decoder reports it)."""
    if not isinstance(input_shape, list) or not input_shape:
        return None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
        return None
    return math.prod(input_shape)


def _plan_dense(base: str, bias: bool, width: int | None, members: dict, path: Path) -> int | None:
    """Check a dense layer's declared shapes; return its output width (None if unknown)."""
    W = members.get(base + "W")
    if W is None:
        return None  # the decoder names the missing array
    if len(W.shape) != 2:
        raise ModelFileError(
            f"{path}: array {base + 'W'!r} has shape {W.shape} (per its .npy header); W must "
            "have 2 dimensions"
        )
    if width is not None and W.shape[0] != width:
        raise ModelFileError(
            f"{path}: array {base + 'W'!r} of shape {W.shape} (per its .npy header) does not "
            f"chain: the layers before it give {width} values"
        )
    b = members.get(base + "b") if bias else None
    if b is not None and b.shape != (W.shape[1],):
        raise ModelFileError(
            f"{path}: array {base + 'b'!r} has shape {b.shape} (per its .npy header); b must "
            f"have shape ({W.shape[1]},) to match W {W.shape}"
        )
    return W.shape[1]


def _get(spec: dict, key: str, typ: type, prefix: str) -> Any:
    if key not in spec:
        raise ModelFileError(f"{prefix}spec is missing {key!r}")
    value = spec[key]
    if not isinstance(value, typ):
        raise ModelFileError(f"{prefix}{key} must be a {typ.__name__}, got {value!r}")
    return value
