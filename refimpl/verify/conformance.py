"""A conformance set: small nets, inputs and refimpl's relevances, for testing other code.

``export_conformance(DIR)`` (``refimpl conformance export DIR``) writes a versioned directory
that another implementation reads with NumPy and JSON alone, without refimpl installed::

    DIR/manifest.json                  format, version, tolerances, conventions, every case
    DIR/<case>/model.npz               the net as a refimpl model file (refimpl.nn.modelfile)
    DIR/<case>/W0.npy, b0.npy, ...     the same net as plain arrays, W{i} (in, out) per dense layer
    DIR/<case>/x.npy, target.npy, logits.npy
    DIR/<case>/expected/<preset>/<name>.npy   the relevance of every rule and method per preset

Cases: ``relu-bias`` (a random 10-8-6-4 ReLU net with biases), ``relu-nobias`` (bias-free, so
positively homogeneous: gradient x input is exact, eq. 4.4-4.6) and ``edge-cases`` (a net and
inputs built so that zero denominators, exactly-zero inputs, dead ReLUs and a bias-dominated
unit occur; the manifest says where). Everything is float64 and deterministic (fixed seeds).

For every preset (:data:`~refimpl.explain.presets.PRESETS`) the expected relevances hold each
LRP rule the preset has on every dense layer, with two exceptions on the first dense layer,
whose inputs lie in ``[-1, 1]``: ``lrp-zb`` entries put z^B there and the preset's epsilon rule
above, and rules that assume nonnegative inputs (the paper's alpha-beta, z+ and gamma) get z^B
there too. Alpha-beta appears as ``(1, 0)`` and ``(2, 1)`` where the preset allows it. The
gradient methods follow: sensitivity (the preset's output) and gradient x input.

:func:`check_conformance` runs a candidate implementation over the set and compares within the
manifest's tolerance: per sample, ``max_i |R_i - R_ref_i| <= rtol max_i |R_ref_i|``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write
from ..explain.lrp import Explanation
from ..explain.methods import explain
from ..explain.prepared import shared_parameters
from ..explain.presets import PRESETS, Preset
from ..explain.rules import RULES, Rule
from ..nn.layers import Dense, ReLU
from ..nn.modelfile import save_model
from ..nn.network import Sequential, mlp
from .comparison import compare as verify_compare

FORMAT = "refimpl-conformance"
VERSION = 1
MANIFEST = "manifest.json"
RTOL = {"float64": 1e-10, "float32": 1e-5}
TOLERANCE_DEFINITION = "per sample: max_i |R_i - R_ref_i| <= rtol * max_i |R_ref_i|"
ZB_BOX = (-1.0, 1.0)  # the pixel box of every case's inputs

CONVENTIONS = {
    "explained": "the pre-softmax logit f_c(x) of class c = target[n] (logits.npy holds f(x) "
    "for every class); never the softmax",
    "layout": "W{i}.npy has shape (in, out) and z = a @ W + b; PyTorch's nn.Linear(in, out) "
    "stores weight = W.T (shape (out, in)) and bias = b; b{i} is absent (null) for a bias-free "
    "layer",
    "activations": "ReLU between dense layers, none after the last dense layer; LRP passes "
    "relevance through ReLU unchanged (in Zennit: the Pass rule on every ReLU)",
    "seed": "logit: R_L = f_c(x) onehot(c) (the paper, Captum, iNNvestigate, the LRP Toolbox); "
    "onehot: R_L = onehot(c) (Zennit's attr_output = eye(C)[c]), i.e. every relevance divided "
    "by f_c(x)",
    "gradient_methods": "sensitivity and gradient_x_input use df_c/dx, a backward pass seeded "
    "with onehot(c); the ReLU derivative at z = 0 is 0 (as in PyTorch)",
    "rules": "each LRP entry lists the rule of every dense layer, input side first, with "
    "refimpl's options (refimpl.explain.rules); 'describe' is refimpl's one-line description",
    "first_layer": "inputs lie in [-1, 1]; lrp-zb entries and rules that assume nonnegative "
    "inputs (the paper's alpha-beta, z+ and gamma) use z^B (low -1, high 1) on the first dense "
    "layer; the entry's first_layer field says why",
    "zero_denominator": "refimpl drops a share whose denominator is exactly 0 (after any "
    "stabilizer) and books it as 'dropped'; where a library divides by zero instead (NaN), see "
    "presets[name].zero_denominator",
    "budget": "per sample, sum_R + bias + stabilizer + dropped = output_relevance (f(x) when "
    "seeded with the logit, 1 with onehot), up to rounding",
    "dtypes": "every array is float64 except target.npy (int64)",
    "paths": "every path in this manifest is relative to the manifest's directory",
}


@dataclass
class _Case:
    """One net, its inputs and targets, and what the case is for."""

    name: str
    description: str
    net: Sequential
    x: np.ndarray
    target: np.ndarray
    exercises: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Entry:
    """One expected relevance: an explanation method under a preset."""

    name: str
    kind: str  # "lrp" or "gradient"
    method: str  # the refimpl explain method
    rule: str | None = None  # the LRP rule the entry is about
    params: dict[str, float] = field(default_factory=dict)  # overrides of the preset's options
    rules: dict[int, Rule] | None = None  # a rule per dense layer (method "lrp")
    first_layer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # gradient method options


# --- cases --------------------------------------------------------------------------------------


def _random_net(sizes: list[int], seed: int, bias: bool) -> Sequential:
    """A dense ReLU net (:func:`refimpl.nn.network.mlp`, He init) with small normal biases."""
    rng = np.random.default_rng(seed)
    net = mlp(sizes, bias=bias, rng=rng)
    for layer in net.layers:
        if isinstance(layer, Dense) and layer.b is not None:
            layer.params["b"][:] = rng.normal(0.0, 0.3, layer.b.shape)
    return net


def _mixed_targets(logits: np.ndarray) -> np.ndarray:
    """Even samples explain the predicted class, odd ones another class."""
    pred = logits.argmax(axis=1)
    n, n_out = logits.shape
    other = (pred + 1 + np.arange(n) // 2) % n_out
    return np.where(np.arange(n) % 2 == 0, pred, other).astype(np.int64)


def _random_case(name: str, seed: int, bias: bool, description: str) -> _Case:
    net = _random_net([10, 8, 6, 4], seed, bias)
    x = np.random.default_rng(seed + 1000).uniform(-1.0, 1.0, (5, 10))
    case = _Case(name, description, net, x, _mixed_targets(net(x)))
    _check_generic(case)
    return case


def _check_generic(case: _Case) -> None:
    """Raise ``RuntimeError`` unless a random case is free of the edge cases.

    Every hidden layer has an active unit for every sample, every pre-activation and explained
    logit is at least 0.01 away from 0 (so a float32 consumer sees the same ReLU pattern), and
    the explained logits are not 0.
    """
    acts = case.net.activations(case.x)
    dense = _dense_indices(case.net)
    pre = [acts[i + 1] for i in dense]
    f = pre[-1][np.arange(len(case.x)), case.target]
    ok = (
        all(np.all((z > 0).any(axis=1)) for z in pre[:-1])
        and min(float(np.abs(z).min()) for z in pre) >= 0.01
        and float(np.abs(f).min()) >= 0.05
    )
    if not ok:
        raise RuntimeError(f"the random case {case.name!r} is not generic; change its seed")


def _case_relu_bias() -> _Case:
    return _random_case(
        "relu-bias",
        1,
        True,
        "a random 10-8-6-4 dense ReLU net with biases (He-scaled normal weights, normal "
        "biases, seed 1) and 5 inputs uniform in [-1, 1], chosen generic: every pre-activation "
        "and explained logit at least 0.01 away from 0; samples 0, 2, 4 explain the predicted "
        "class, 1 and 3 another class",
    )


def _case_relu_nobias() -> _Case:
    case = _random_case(
        "relu-nobias",
        22,
        False,
        "a random bias-free 10-8-6-4 dense ReLU net (seed 22) and 5 inputs uniform in [-1, 1], "
        "chosen generic as relu-bias; it is "
        "positively homogeneous (eq. 4.4), so gradient x input sums exactly to f(x) and equals "
        "LRP-0; samples 0, 2, 4 explain the predicted class, 1 and 3 another class",
    )
    case.exercises = [
        {
            "what": "positive homogeneity",
            "where": "every layer is bias-free: gradient_x_input and lrp-0 sum to f(x)",
        }
    ]
    return case


# The edge-case net, 6-5-4-3, columns are units (z = a @ W + b).
_EDGE_W0 = np.array(
    [
        [0.8, 0.2, 0.0, 1.0, -0.6],
        [-0.5, 0.1, 0.0, -1.0, 0.9],
        [0.3, -0.3, 0.0, 0.0, 0.4],
        [0.0, 0.25, 0.0, 0.0, -0.3],
        [-0.7, 0.1, 0.0, 0.0, 0.2],
        [0.4, -0.2, 0.0, 0.0, 0.7],
    ]
)
_EDGE_B0 = np.array([0.1, -5.0, 0.5, 0.0, -0.1])
_EDGE_W1 = np.array(
    [
        [0.6, -0.3, 0.5, 0.1],
        [-0.4, -0.2, 0.3, 0.1],
        [0.5, -0.1, 0.2, 0.1],
        [0.7, -0.4, 0.6, 0.1],
        [-0.8, -0.25, 0.4, 0.1],
    ]
)
_EDGE_B1 = np.array([0.05, 2.5, -0.2, -10.0])
_EDGE_W2 = np.array(
    [
        [0.7, -0.6, 0.0],
        [-0.5, 0.8, 0.0],
        [0.9, -0.4, 0.0],
        [0.3, 0.5, 0.0],
    ]
)
_EDGE_B2 = np.array([-0.1, 0.2, 0.0])
_EDGE_X = np.array(
    [
        [0.5, -0.25, 0.0, 0.75, -1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, -1.0, -1.0, 1.0, -1.0],
        [0.3, 0.3, -0.6, 0.2, 0.0, 0.9],
        [-0.8, 0.6, 0.4, -0.2, 0.9, -0.5],
        [0.25, -0.75, 0.5, 0.0, 0.375, 1.0],
    ]
)
_EDGE_TARGET = np.array([0, 1, 0, 2, 1, 1], dtype=np.int64)

_EDGE_EXERCISES = [
    {
        "what": "exactly-zero inputs",
        "where": "x[0, 2], x[0, 5], x[3, 4], x[5, 3] and all of sample 1 are 0.0",
    },
    {
        "what": "inputs on the faces of the z^B box [-1, 1]",
        "where": "sample 2 is all +-1, x[0, 4] = -1, x[5, 5] = 1",
    },
    {
        "what": "a zero weight column (zero denominators of z^B, w^2 and the bias-free rules)",
        "where": "layer 0 unit 2 has all-zero weights and bias 0.5: a constant activation whose "
        "relevance goes to the bias (lrp-0, epsilon) or is dropped (z^B, w^2 without bias)",
    },
    {
        "what": "a ReLU exactly at its kink (pre-activation exactly 0)",
        "where": "layer 0 unit 3 computes x0 - x1, exactly 0 for samples 1, 2 and 3",
    },
    {
        "what": "dead ReLUs",
        "where": "layer 0 unit 1 (bias -5) and layer 1 unit 3 (bias -10) are negative for "
        "every input; they still receive relevance under w^2 and flat",
    },
    {
        "what": "a bias-dominated unit with an empty positive denominator",
        "where": "layer 1 unit 1 has only nonpositive weights and bias 2.5: active for every "
        "input while sum_j a_j w+_jk = 0, so z+ and alpha-beta drop its positive share "
        "(bias 'none') or give it to the bias ('split', 'full')",
    },
    {
        "what": "an empty negative denominator",
        "where": "layer 1 unit 2 has only positive weights: sum_j a_j w-_jk = 0, so the beta "
        "share of alpha-beta (2, 1) is dropped or goes to a negative bias",
    },
    {
        "what": "a zero logit (zero denominator at the output)",
        "where": "output 2 has zero weights and bias: f_2(x) = 0 exactly; sample 3 explains "
        "it, so seeding with the logit gives all-zero relevance and seeding with onehot gives a "
        "relevance of 1 that a zero denominator drops or a stabilizer absorbs; Zennit's "
        "Epsilon(epsilon=0) (its LRP-0) gives NaN for every sample here (0/0 in the output "
        "layer's gradient)",
    },
]


def _case_edge() -> _Case:
    net = Sequential(
        [
            Dense(_EDGE_W0, _EDGE_B0),
            ReLU(),
            Dense(_EDGE_W1, _EDGE_B1),
            ReLU(),
            Dense(_EDGE_W2, _EDGE_B2),
        ]
    )
    case = _Case(
        "edge-cases",
        "a hand-built 6-5-4-3 dense ReLU net with biases and 6 inputs in [-1, 1] in which zero "
        "denominators, exactly-zero inputs, a ReLU at its kink, dead ReLUs and a bias-dominated "
        "unit occur (see exercises); samples 0, 1, 4 explain the predicted class, 2, 3 and 5 "
        "another class (3 the zero logit)",
        net,
        _EDGE_X.copy(),
        _EDGE_TARGET.copy(),
        [dict(e) for e in _EDGE_EXERCISES],
    )
    _check_edge_case(case)
    return case


def _check_edge_case(case: _Case) -> None:
    """Raise ``RuntimeError`` if the edge-case net no longer exercises what the manifest says."""
    x, net = case.x, case.net
    a = net.activations(x)
    z0, a1, z1, logits = a[1], a[2], a[3], a[5]
    W1 = net.layers[2].W
    pred = logits.argmax(axis=1)
    checks = {
        "exact zero inputs": np.all(x[[0, 0, 3, 5], [2, 5, 4, 3]] == 0) and np.all(x[1] == 0),
        "box faces": np.all(np.abs(x[2]) == 1) and x[0, 4] == -1 and x[5, 5] == 1,
        "inputs in the box": np.all(np.abs(x) <= 1),
        "constant bias unit": np.all(z0[:, 2] == 0.5),
        "kink": np.all(z0[[1, 2, 3], 3] == 0) and np.all(z0[[0, 4, 5], 3] != 0),
        "dead units": np.all(z0[:, 1] < 0) and np.all(z1[:, 3] < 0),
        "bias-dominated": np.all(z1[:, 1] > 0) and np.all(a1 @ np.maximum(W1[:, 1], 0) == 0),
        "empty negative denominator": np.all(a1 @ np.minimum(W1[:, 2], 0) == 0),
        "zero logit": np.all(logits[:, 2] == 0) and case.target[3] == 2,
        "targets": np.array_equal(case.target == pred, [True, True, False, False, True, False]),
        # no accidental near-kinks: a float32 consumer must see the same ReLU pattern
        "margins": np.all(np.abs(z0[:, [0, 1, 2, 4]]) >= 0.01) and np.all(np.abs(z1) >= 0.01),
    }
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        raise RuntimeError(f"the edge-case net no longer exercises: {failed}")


CASES: tuple[Callable[[], _Case], ...] = (_case_relu_bias, _case_relu_nobias, _case_edge)


# --- entries ------------------------------------------------------------------------------------


def _needs_nonnegative_inputs(rule: Rule) -> bool:
    """True if ``rule`` raises on a negative input (the paper's alpha-beta, z+, gamma)."""
    if getattr(rule, "inputs", None) != "nonnegative":
        return False
    return getattr(rule, "variant", "original") == "original"


def _dense_indices(net: Sequential) -> list[int]:
    return [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]


_ZB_FIRST = "z^B on the first dense layer (inputs in [-1, 1]), the preset's epsilon rule above"


def _with_zb_first(p: Preset, net: Sequential, rule: Rule) -> dict[int, Rule]:
    """``rule`` on every dense layer but the first, which gets the preset's z^B."""
    dense = _dense_indices(net)
    rules = dict.fromkeys(dense, rule)
    rules[dense[0]] = p.rule("lrp-zb", low=ZB_BOX[0], high=ZB_BOX[1])
    return rules


def _variants(p: Preset) -> list[tuple[str, str, dict[str, float]]]:
    """``(entry name, rule name, options over the preset's)``: alpha-beta as (1, 0) and (2, 1)."""
    out = []
    for rule_name in RULES:
        if rule_name != "lrp-alpha-beta":
            out.append((rule_name, rule_name, {}))
            continue
        for alpha, beta in ((1.0, 0.0), (2.0, 1.0)):
            # a library that takes alpha only (the Toolbox) sets beta = alpha - 1 itself
            params = (
                {"alpha": alpha} if p.alpha_beta == "alpha-only" else {"alpha": alpha, "beta": beta}
            )
            out.append((f"lrp-alpha-beta-{alpha:g}-{beta:g}", rule_name, params))
    return out


def _entries(p: Preset, net: Sequential) -> tuple[list[_Entry], dict[str, str]]:
    """The entries of preset ``p`` on ``net``, and the skipped ones with the reason."""
    entries: list[_Entry] = []
    skipped: dict[str, str] = {}
    for name, rule_name, params in _variants(p):
        try:
            rule = p.rule(rule_name, **params)
            if rule_name == "lrp-zb":
                rule = p.rule("lrp-epsilon")  # the rule above z^B
        except ValueError as exc:  # the library lacks the rule or these parameters
            skipped[name] = str(exc)
            continue
        if rule_name == "lrp-zb":
            first = _ZB_FIRST
        elif _needs_nonnegative_inputs(rule):
            first = (
                f"z^B on the first dense layer: {rule.name} with inputs='nonnegative' (the "
                "paper's assumption) raises on the negative inputs"
            )
        else:
            rules = dict.fromkeys(_dense_indices(net), rule)
            entries.append(_Entry(name, "lrp", rule_name, rule_name, params, rules))
            continue
        if "lrp-zb" in p.missing:
            skipped[name] = f"{rule.describe()} needs nonnegative inputs and {p.library} has no z^B"
            continue
        rules = _with_zb_first(p, net, rule)
        entries.append(_Entry(name, "lrp", "lrp", rule_name, params, rules, first))
    if p.sensitivity is None:
        skipped["sensitivity"] = f"{p.library} has no sensitivity method"
    else:
        entries.append(
            _Entry("sensitivity", "gradient", "sensitivity", options={"output": p.sensitivity})
        )
    entries.append(_Entry("gradient_x_input", "gradient", "gradient_x_input"))
    return entries, skipped


def _run(p: Preset, case: _Case, entry: _Entry) -> Explanation:
    if entry.kind == "gradient":
        return explain(
            case.net, case.x, entry.method, preset=p, target=case.target, **entry.options
        )
    if entry.method == "lrp":
        return explain(case.net, case.x, "lrp", preset=p, rules=entry.rules, target=case.target)
    return explain(case.net, case.x, entry.method, preset=p, target=case.target, **entry.params)


def _jsonable(value: Any) -> Any:
    """Plain JSON types for rule options and per-sample numbers."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rule_record(pos: int, layer: int, rule: Rule) -> dict[str, Any]:
    return {
        "dense": pos,
        "model_layer": layer,
        "rule": rule.name,
        "describe": rule.describe(),
        "options": {f.name: _jsonable(getattr(rule, f.name)) for f in fields(rule)},
    }


def _entry_record(p: Preset, case: _Case, entry: _Entry, e: Explanation, file: str) -> dict:
    rec: dict[str, Any] = {
        "id": f"{p.name}/{entry.name}",
        "preset": p.name,
        "name": entry.name,
        "kind": entry.kind,
        "method": entry.method,
        "rule": entry.rule,
        "params": _jsonable(entry.params),
        "options": _jsonable(entry.options),
        "first_layer": entry.first_layer,
        "seed": p.seed if entry.kind == "lrp" else "onehot",
        "file": file,
        "f": _jsonable(e.f),
        "sum_R": _jsonable(e.R.reshape(len(e.R), -1).sum(axis=1)),
        "rules": None,
        "realized_by": p.realized_by.get(entry.rule) if entry.rule else None,
        "output_relevance": None,
        "budget": None,
    }
    if entry.kind == "lrp":
        dense = _dense_indices(case.net)
        rec["rules"] = [_rule_record(pos, i, entry.rules[i]) for pos, i in enumerate(dense)]
        used = [describe for _, describe, _ in reversed(e.budget.layers)]
        if used != [r["describe"] for r in rec["rules"]]:  # pragma: no cover - internal check
            raise RuntimeError(f"{rec['id']}: refimpl ran {used}, the manifest says otherwise")
        b = e.budget
        rec["output_relevance"] = _jsonable(b.f)
        rec["budget"] = {
            "bias": _jsonable(b.bias),
            "stabilizer": _jsonable(b.stabilizer),
            "dropped": _jsonable(b.dropped),
        }
    return rec


# --- writing ------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def _write_case(root: Path, case: _Case, say: Callable[[str], None]) -> dict[str, Any]:
    """Write one case's files under ``root / case.name``; return its manifest record."""
    d = root / case.name
    (d / "expected").mkdir(parents=True)
    rel = f"{case.name}/"
    save_model(
        d / "model.npz",
        case.net,
        meta={"conformance_case": case.name, "format": FORMAT, "version": VERSION},
    )
    layers: list[dict[str, Any]] = []
    pos = 0
    for i, layer in enumerate(case.net.layers):
        if isinstance(layer, Dense):
            _save_npy(d / f"W{pos}.npy", layer.W)
            if layer.b is not None:
                _save_npy(d / f"b{pos}.npy", layer.b)
            layers.append(
                {
                    "type": "dense",
                    "dense": pos,
                    "model_layer": i,
                    "in": int(layer.W.shape[0]),
                    "out": int(layer.W.shape[1]),
                    "W": f"{rel}W{pos}.npy",
                    "b": None if layer.b is None else f"{rel}b{pos}.npy",
                }
            )
            pos += 1
        elif isinstance(layer, ReLU):
            layers.append({"type": "relu", "model_layer": i})
        else:  # pragma: no cover - the cases are built from Dense and ReLU only
            raise TypeError(f"conformance nets hold Dense and ReLU only, got {layer!r}")
    logits = case.net(case.x)
    _save_npy(d / "x.npy", case.x)
    _save_npy(d / "target.npy", case.target.astype(np.int64))
    _save_npy(d / "logits.npy", logits)
    entries, skipped = [], {}
    for p in PRESETS.values():
        (d / "expected" / p.name).mkdir()
        preset_entries, preset_skipped = _entries(p, case.net)
        skipped[p.name] = preset_skipped
        for entry in preset_entries:
            e = _run(p, case, entry)
            file = f"expected/{p.name}/{entry.name}.npy"
            _save_npy(d / file, e.R)
            entries.append(_entry_record(p, case, entry, e, rel + file))
    say(f"case {case.name}: {len(entries)} expected relevances")
    return {
        "name": case.name,
        "description": case.description,
        "exercises": case.exercises,
        "n_samples": int(case.x.shape[0]),
        "input_shape": list(case.net.input_shape),
        "n_classes": int(case.net.output_shape[0]),
        "bias": any(isinstance(la, Dense) and la.b is not None for la in case.net.layers),
        "model": f"{rel}model.npz",
        "layers": layers,
        "x": f"{rel}x.npy",
        "target": f"{rel}target.npy",
        "logits": f"{rel}logits.npy",
        "entries": entries,
        "skipped": skipped,
    }


def _manifest(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "refimpl_version": __version__,
        "tolerance": {
            "float64": {"rtol": RTOL["float64"]},
            "float32": {"rtol": RTOL["float32"]},
            "definition": TOLERANCE_DEFINITION,
            "note": "compare a float32 result with the float64 reference; a row whose reference "
            "is all zero must be exactly zero",
        },
        "conventions": dict(CONVENTIONS),
        "presets": {
            p.name: {
                "library": p.library,
                "seed": p.seed,
                "sensitivity": p.sensitivity,
                "alpha_beta": p.alpha_beta,
                "zero_denominator": p.zero_denominator,
                "missing": dict(p.missing),
                "notes": list(p.notes),
            }
            for p in PRESETS.values()
        },
        "cases": cases,
    }


def _is_export(path: Path) -> bool:
    """True if ``path`` holds a manifest of a conformance set (any version)."""
    try:
        with open(path / MANIFEST, encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_destination(target: Path, overwrite: bool) -> bool:
    """Raise if ``target`` may not be written; return True if it must be replaced."""
    if target.is_symlink():
        raise ValueError(f"directory {str(target)!r} is a symbolic link; give a real path")
    _check_parent_writable(target)
    if not target.exists():
        return False
    if not target.is_dir():
        raise ValueError(f"directory {str(target)!r} exists and is not a directory")
    if not any(target.iterdir()):
        return False
    if not overwrite:
        raise ValueError(
            f"directory {str(target)!r} exists and is not empty; pass overwrite=True (--force) "
            "to replace it"
        )
    if not _is_export(target):
        raise ValueError(
            f"refusing to replace {str(target)!r}: it is not empty and holds no conformance set "
            f"({MANIFEST} with format {FORMAT!r}); remove it yourself or choose another directory"
        )
    return True


def _check_parent_writable(target: Path) -> None:
    """Raise ``PermissionError`` if the nearest existing parent of ``target`` is not writable."""
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write directory {str(target)!r}: {str(parent)!r} is not writable"
        )


def _sibling(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(6)}.{tag}"


RENAME_EXCHANGE = 2
"""``renameat2`` flag (Linux 3.15+): swap two paths atomically."""
_AT_FDCWD = -100
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` in one step with Linux ``renameat2``.

    Returns
    -------
    bool
        True if swapped; False if ``renameat2`` or ``RENAME_EXCHANGE`` is unavailable (not
        Linux, an old C library, or a file system without support: EINVAL, ENOSYS, EOPNOTSUPP).

    Raises
    ------
    OSError
        Any other failure of ``renameat2``; nothing was changed.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    c_int, c_path = ctypes.c_int, ctypes.c_char_p
    renameat2.argtypes = [c_int, c_path, c_int, c_path, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, f"cannot swap {str(a)!r} and {str(b)!r}: {os.strerror(err)}")


def _move_into_place(tmp: Path, target: Path, overwrite: bool, say) -> None:
    """Move the finished set ``tmp`` to ``target``, replacing a previous set without a gap.

    A previous set is swapped with ``tmp`` in one step (:func:`_exchange`), so ``target``
    always holds a complete set, and then removed from ``tmp``. Where the swap is unavailable,
    the previous set is renamed aside and ``tmp`` renamed to ``target``: between the two renames
    (microseconds) ``target`` does not exist.
    """
    if not _check_destination(target, overwrite):
        os.replace(tmp, target)  # target absent or an empty directory
        return
    if _exchange(tmp, target):
        old = tmp  # now holds the previous set
    else:
        old = _sibling(target, "old")
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
    _remove_replaced(old, say)


def _remove_replaced(old: Path, say: Callable[[str], None]) -> None:
    """Delete the replaced set at ``old``; say so if it cannot be removed."""
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        say(f"could not remove the replaced set, left at {old}")


def _write_shared(root: Path, case: _Case, say: Callable[[str], None]) -> dict[str, Any]:
    """:func:`_write_case` with one PreparedParameters for all of the case's explanations."""
    with shared_parameters(case.net):
        return _write_case(root, case, say)


def export_conformance(
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the conformance set to ``directory``; return the path of its ``manifest.json``.

    The set is built in a temporary sibling directory (``.NAME.XXXX.tmp``) and renamed into
    place at the end, so ``directory`` never holds a partial set: an exception on the way
    removes the temporary directory and leaves ``directory`` as it was. A previous set is
    replaced by swapping the two directories in one step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``), so ``directory`` always holds a complete set; where that is
    unavailable (another OS, or a file system without it) the previous set is renamed aside
    first, leaving a window of microseconds in which ``directory`` does not exist.

    Parameters
    ----------
    directory : str or PathLike
        Destination. It must not exist or be empty, unless ``overwrite``; its parent is
        created if missing.
    overwrite : bool
        Replace an existing non-empty ``directory``. Only a previous conformance set (a
        directory holding a ``manifest.json`` of this format) is replaced; anything else
        raises, so that a wrong path never deletes unrelated files.
    progress : callable(str), optional
        Called with one line of text per step.

    Returns
    -------
    pathlib.Path
        ``directory / "manifest.json"``.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``directory`` exists and is not empty (without ``overwrite``), is not a directory,
        is a symbolic link, or is not a conformance set (with ``overwrite``).
    PermissionError
        If the directory that would hold ``directory`` is not writable.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or PathLike, got {type(directory).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    target = Path(directory)
    if target.name in ("", ".", ".."):
        raise ValueError(f"directory must name a directory, got {str(directory)!r}")
    target = target.absolute()
    say = progress or (lambda line: None)
    _check_destination(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        cases = [_write_shared(tmp, build(), say) for build in CASES]
        _write_json(tmp / MANIFEST, _manifest(cases))
        _move_into_place(tmp, target, overwrite, say)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(len(c["entries"]) for c in cases)
    say(f"wrote {len(cases)} cases, {n} expected relevances to {target}")
    return target / MANIFEST


# --- checking -----------------------------------------------------------------------------------


def load_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read the manifest of a conformance set and check its format and version.

    Parameters
    ----------
    directory : str or PathLike
        The set's directory, or its ``manifest.json``.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    ValueError
        If it is not JSON, not a conformance manifest, or of another version.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or PathLike, got {type(directory).__name__}")
    path = Path(directory)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no conformance manifest at {str(path)!r}")
    with open(path, encoding="utf-8") as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format must be {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"{path}: unsupported version {manifest.get('version')!r}; this refimpl reads "
            f"version {VERSION}"
        )
    return manifest


def _case_arrays(root: Path, case: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {key: np.load(root / case[key]) for key in ("x", "target", "logits")}
    for layer in case["layers"]:
        if layer["type"] == "dense":
            arrays[f"W{layer['dense']}"] = np.load(root / layer["W"])
            if layer["b"] is not None:
                arrays[f"b{layer['dense']}"] = np.load(root / layer["b"])
    return arrays


def compare(R: np.ndarray, R_ref: np.ndarray, rtol: float) -> tuple[float, float, bool]:
    """Compare a candidate relevance with the reference, per the manifest's definition.

    Parameters
    ----------
    R : ndarray
        Candidate, of the reference's shape ``(n, ...)``; any float dtype.
    R_ref : ndarray
        Reference (float64).
    rtol : float
        Relative tolerance.

    Returns
    -------
    max_abs_error : float
        ``max_i |R_i - R_ref_i|``, largest over the samples.
    max_rel_error : float
        The same per sample divided by ``max_i |R_ref_i|`` (0 if both are 0, inf if only the
        reference is 0), largest over the samples.
    passed : bool
        ``max_i |R_i - R_ref_i| <= rtol max_i |R_ref_i|`` for every sample; NaN fails.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    R_ref = np.asarray(R_ref, dtype=np.float64)
    R = np.asarray(R)
    if R.shape != R_ref.shape:
        raise ValueError(f"candidate relevance must have shape {R_ref.shape}, got {R.shape}")
    cmp = verify_compare(R, R_ref, rtol)
    err = np.where(cmp.finite, cmp.abs_error, np.nan)
    rel = np.where(cmp.finite, cmp.rel_error, np.nan)
    return float(np.max(err, initial=0.0)), float(np.max(rel, initial=0.0)), cmp.passed


def check_conformance(
    directory: str | os.PathLike,
    compute: Callable[[dict, dict, dict[str, np.ndarray]], np.ndarray | None],
) -> list[dict[str, Any]]:
    """Run ``compute`` on every entry of a conformance set and compare with the reference.

    Parameters
    ----------
    directory : str or PathLike
        The set's directory (or its ``manifest.json``).
    compute : callable(case, entry, arrays) -> ndarray or None
        ``case`` and ``entry`` are the manifest's records; ``arrays`` maps ``x``, ``target``,
        ``logits``, ``W0``, ``b0``, ... to the case's arrays. Returns the candidate relevance
        of ``x``'s shape, or None to skip the entry. A float32 result is held to the float32
        tolerance, anything else to the float64 one.

    Returns
    -------
    list of dict
        One per entry: ``case``, ``id``, ``preset``, ``name``, ``file``, ``skipped``, and for
        computed entries ``dtype``, ``rtol``, ``max_abs_error``, ``max_rel_error`` (the largest
        per-sample error divided by the sample's ``max |R_ref|``) and ``passed``.
    """
    if not callable(compute):
        raise TypeError(f"compute must be callable, got {type(compute).__name__}")
    manifest = load_manifest(directory)
    root = Path(directory)
    root = root if root.is_dir() else root.parent
    tol = manifest["tolerance"]
    results = []
    for case in manifest["cases"]:
        arrays = _case_arrays(root, case)
        for entry in case["entries"]:
            res: dict[str, Any] = {
                "case": case["name"],
                "id": entry["id"],
                "preset": entry["preset"],
                "name": entry["name"],
                "file": entry["file"],
            }
            R = compute(case, entry, {k: v.copy() for k, v in arrays.items()})
            if R is None:
                results.append({**res, "skipped": True, "passed": None})
                continue
            R = np.asarray(R)
            dtype = "float32" if R.dtype == np.float32 else "float64"
            rtol = tol[dtype]["rtol"]
            try:
                err, rel, ok = compare(R, np.load(root / entry["file"]), rtol)
            except ValueError as exc:
                raise ValueError(f"{case['name']} {entry['id']}: {exc}") from None
            results.append(
                {
                    **res,
                    "skipped": False,
                    "dtype": dtype,
                    "rtol": rtol,
                    "max_abs_error": err,
                    "max_rel_error": rel,
                    "passed": ok,
                }
            )
    return results
