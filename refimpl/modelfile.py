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
``MODEL_KINDS`` and ``refimpl.layers.LAYER_TYPES``; the version changes only when a file that
loads today would load differently.

Loading validates: the archive and its JSON, format and version, the kind, unknown layer types,
missing and extra arrays, array dtypes, NaN/inf values, and that shapes chain through the layers.
Every failure raises ``ModelFileError`` (a ``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .layers import LAYER_TYPES
from .network import Sequential

FORMAT = "refimpl-model"
VERSION = 1
SPEC_KEY = "__spec__"


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
_KIND_MODULES = {"grbm": "refimpl.grbm", "gan": "refimpl.gan", "decoder": "refimpl.gan"}


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
    with atomic_write(path) as f:
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
    """Load and validate a model file; return ``(model, meta)``. Raises ``ModelFileError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    arrays = _read_npz(path)
    if SPEC_KEY not in arrays:
        raise ModelFileError(f"{path}: no {SPEC_KEY!r} entry; not a refimpl model file")
    raw = arrays.pop(SPEC_KEY)
    if raw.shape != () or raw.dtype.kind != "U":
        raise ModelFileError(
            f"{path}: {SPEC_KEY!r} must be a 0-d string array, got "
            f"dtype {raw.dtype} shape {raw.shape}"
        )
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
    for name, value in arrays.items():
        if value.dtype not in (np.float32, np.float64):
            raise ModelFileError(
                f"{path}: array {name!r} has dtype {value.dtype}; expected float32 or float64"
            )
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``, without pickles; any corruption becomes ``ModelFileError``."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path}: a single .npy array, not an .npz archive")
        with data:
            return {name: data[name] for name in data.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})"
        ) from None


def _get(spec: dict, key: str, typ: type, prefix: str) -> Any:
    if key not in spec:
        raise ModelFileError(f"{prefix}spec is missing {key!r}")
    value = spec[key]
    if not isinstance(value, typ):
        raise ModelFileError(f"{prefix}{key} must be a {typ.__name__}, got {value!r}")
    return value
