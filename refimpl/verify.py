"""Check another implementation's relevances against the reference, and diagnose a mismatch.

:func:`verify` computes refimpl's relevances for the same model, inputs, method and options,
compares them with the candidate per sample (``max_i |R_i - R_ref_i| <= rtol max_i |R_ref_i|``),
reports the candidate's conservation (``sum_i R_i`` against ``f(x)``), and on a mismatch searches
the conventions (DESIGN.md sec. 2) for one that explains the difference: every preset, every
single option of the rule (bias, input sign handling, stabilizer kind and epsilon, gamma variant,
output seeding), pairs of them, and the other methods. The result names what matches, e.g.
"matches with bias='split' (as in zennit, toolbox)", or says that nothing does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations, product

import numpy as np

from .explain.gradient import SENSITIVITY_OUTPUTS
from .explain.lrp import RuleMap, lrp
from .explain.methods import METHODS, explain
from .explain.output import SEEDS
from .explain.presets import PRESETS, Preset
from .explain.presets import preset as get_preset
from .explain.rules import BIAS_OPTIONS, INPUT_OPTIONS, RULES, make_rule
from .explain.stabilizer import KINDS
from .network import Sequential

DEFAULT_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
EPS_GRID = (1e-16, 1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.25, 1.0)
DIAGNOSIS_SAMPLES = 32

# the values each rule option can take, for the search (eps handled separately)
_DOMAINS = {
    "bias": {
        "lrp-0": ("full", "none"),
        "lrp-epsilon": ("full", "none"),
        "lrp-alpha-beta": BIAS_OPTIONS,
        "lrp-zplus": BIAS_OPTIONS,
        "lrp-w2": ("none", "squared"),
        "lrp-gamma": ("full", "raw", "none"),
    },
    "inputs": {
        "lrp-alpha-beta": INPUT_OPTIONS,
        "lrp-zplus": INPUT_OPTIONS,
        "lrp-gamma": ("nonnegative", "weights"),
    },
    "variant": {"lrp-gamma": ("original", "generalized")},
    "stabilizer_kind": {name: KINDS for name in RULES if name != "lrp-0"},
}
# parameters the user chose (kept when trying other conventions), not conventions
_PARAMETERS = ("alpha", "beta", "gamma", "low", "high")


@dataclass
class Comparison:
    """Per-sample and overall errors of a candidate against a reference."""

    abs_error: np.ndarray  # (n,) max_i |R_i - R_ref_i|
    scale: np.ndarray  # (n,) max_i |R_ref_i|
    rtol: float
    finite: np.ndarray  # (n,) candidate row has no NaN/inf

    @property
    def rel_error(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(self.scale > 0, self.abs_error / self.scale, np.inf)
        return np.where(self.abs_error == 0, 0.0, rel)

    @property
    def ok(self) -> np.ndarray:
        return self.finite & (self.abs_error <= self.rtol * self.scale)

    @property
    def passed(self) -> bool:
        return bool(self.ok.all())


def compare(R: np.ndarray, R_ref: np.ndarray, rtol: float) -> Comparison:
    """Compare ``R`` with ``R_ref`` (both ``(n, ...)``) per sample, relative to ``max |R_ref|``."""
    R = np.asarray(R, dtype=np.float64).reshape(len(R), -1)
    R_ref = np.asarray(R_ref, dtype=np.float64).reshape(len(R_ref), -1)
    finite = np.isfinite(R).all(axis=1)
    diff = np.abs(np.where(np.isfinite(R), R, 0.0) - R_ref)
    return Comparison(diff.max(axis=1), np.abs(R_ref).max(axis=1), rtol, finite)


@dataclass
class Candidate:
    """One convention tried by the diagnosis."""

    description: str
    method: str
    preset: str
    options: dict
    changes: dict  # what differs from the reference's configuration
    presets: list[str] = field(default_factory=list)  # presets that share the changed values


@dataclass
class Match:
    candidate: Candidate
    max_rel_error: float


@dataclass
class Report:
    """Everything ``refimpl verify`` prints, also as JSON (:meth:`to_dict`)."""

    method: str
    preset: str
    rule: str | None
    seed: str
    rtol: float
    f: np.ndarray
    target: np.ndarray | None
    sum_candidate: np.ndarray
    sum_reference: np.ndarray
    comparison: Comparison
    nonfinite: int
    diagnosis: list[Match] | None = None
    tried: int = 0

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    def conservation(self) -> dict:
        """The candidate's ``sum_i R_i`` against ``f(x)`` (and against 1 for one-hot seeding)."""
        expected = np.ones_like(self.f) if self.seed == "onehot" else self.f
        gap = self.sum_candidate - expected
        return {
            "expected_total": "1 (one-hot seed)" if self.seed == "onehot" else "f(x)",
            "max_abs_gap": float(np.nanmax(np.abs(gap))) if gap.size else 0.0,
            "reference_max_abs_gap": float(np.abs(self.sum_reference - expected).max()),
        }

    def to_dict(self) -> dict:
        c = self.comparison
        out = {
            "verdict": "match" if self.passed else "mismatch",
            "method": self.method,
            "preset": self.preset,
            "rule": self.rule,
            "seed": self.seed,
            "tolerance": {
                "rtol": self.rtol,
                "definition": "per sample: max_i |R_i - R_ref_i| <= rtol * max_i |R_ref_i|",
            },
            "max_abs_error": float(np.nanmax(c.abs_error)),
            "max_rel_error": float(np.nanmax(c.rel_error)),
            "nonfinite_values": self.nonfinite,
            "conservation": self.conservation(),
            "samples": [
                {
                    "index": i,
                    "f": float(self.f[i]),
                    "target": None if self.target is None else int(self.target[i]),
                    "sum_R_candidate": float(self.sum_candidate[i]),
                    "sum_R_reference": float(self.sum_reference[i]),
                    "max_abs_error": float(c.abs_error[i]),
                    "max_rel_error": float(c.rel_error[i]),
                    "ok": bool(c.ok[i]),
                }
                for i in range(len(self.f))
            ],
        }
        if self.diagnosis is not None:
            out["diagnosis"] = {
                "tried": self.tried,
                "explained": bool(self.diagnosis),
                "message": self.diagnosis_message(),
                "matches": [
                    {
                        "description": m.candidate.description,
                        "method": m.candidate.method,
                        "preset": m.candidate.preset,
                        "changes": m.candidate.changes,
                        "as_in_presets": m.candidate.presets,
                        "max_rel_error": m.max_rel_error,
                    }
                    for m in self.diagnosis
                ],
            }
        return out

    def diagnosis_message(self) -> str:
        if self.diagnosis is None:
            return ""
        if not self.diagnosis:
            return (
                f"no convention explains the difference ({self.tried} tried: every preset, every "
                "single rule option and pairs of them, output seeding, the other methods)"
            )
        return "the candidate " + self.diagnosis[0].candidate.description

    def text(self, max_rows: int = 10) -> str:
        c = self.comparison
        lines = [
            f"reference: {self.method} (preset {self.preset!r})"
            + (f": {self.rule} on every dense layer" if self.rule else "")
            + f", output seeded with {'1' if self.seed == 'onehot' else 'f(x)'}",
            f"tolerance: per sample max |R - R_ref| <= {self.rtol:g} x max |R_ref|",
        ]
        if self.nonfinite:
            lines.append(f"candidate has {self.nonfinite} NaN/inf value(s)")
        rows = [("sample", "f(x)", "sum R cand.", "sum R ref.", "max abs err", "rel err", "ok")]
        for i in range(min(len(self.f), max_rows)):
            rows.append(
                (
                    str(i),
                    f"{self.f[i]:.6g}",
                    f"{self.sum_candidate[i]:.6g}",
                    f"{self.sum_reference[i]:.6g}",
                    f"{c.abs_error[i]:.3g}",
                    f"{c.rel_error[i]:.3g}",
                    "yes" if c.ok[i] else "NO",
                )
            )
        from ._table import format_table

        lines.append(format_table(rows))
        if len(self.f) > max_rows:
            lines.append(f"... {len(self.f) - max_rows} more sample(s)")
        cons = self.conservation()
        lines.append(
            f"conservation: max |sum R - {cons['expected_total']}| = {cons['max_abs_gap']:.3g} "
            f"(candidate), {cons['reference_max_abs_gap']:.3g} (reference)"
        )
        n_bad = int((~c.ok).sum())
        lines.append(
            f"overall: max abs err {np.nanmax(c.abs_error):.3g}, max rel err "
            f"{np.nanmax(c.rel_error):.3g}; "
            + ("MATCH" if self.passed else f"MISMATCH ({n_bad} of {len(c.ok)} samples)")
        )
        if self.diagnosis is not None:
            lines.append("diagnosis: " + self.diagnosis_message())
            for m in self.diagnosis[1:5]:
                lines.append(f"  also: {m.candidate.description}")
        return "\n".join(lines)


def _presets_with(method: str, changes: dict) -> list[str]:
    """Presets whose version of ``method`` has every value in ``changes``."""
    names = []
    for name, p in PRESETS.items():
        if method not in RULES:
            if set(changes) == {"output"} and p.sensitivity == changes["output"]:
                names.append(name)
            continue
        if method in p.missing:
            continue
        opts = {**_defaults(method), **p.options(method)}
        seed_ok = "seed" not in changes or changes["seed"] == p.seed
        if seed_ok and all(opts.get(k) == v for k, v in changes.items() if k != "seed"):
            names.append(name)
    return names


def _defaults(method: str) -> dict:
    from dataclasses import fields

    return {f.name: f.default for f in fields(RULES[method])}


def _describe(changes: dict, presets: list[str]) -> str:
    parts = []
    for k, v in changes.items():
        if k == "seed":
            parts.append(
                "the output seeded with 1 instead of f(x)"
                if v == "onehot"
                else "the output seeded with f(x) instead of 1"
            )
        else:
            parts.append(f"{k}={v!r}")
    text = "matches with " + ", ".join(parts)
    return text + (f" (as in {', '.join(presets)})" if presets else "")


def _rule_candidates(method: str, preset: Preset, options: dict) -> list[Candidate]:
    """Conventions to try for an LRP rule: single options, presets, pairs of options."""
    base = {**_defaults(method), **preset.options(method, **options)}
    params = {k: v for k, v in options.items() if k in _PARAMETERS}
    axes: dict[str, tuple] = {}
    for key, by_rule in _DOMAINS.items():
        if method in by_rule:
            axes[key] = by_rule[method]
    if "eps" in base:
        axes["eps"] = tuple(sorted({0.0, *EPS_GRID, base["eps"]}))
        if method == "lrp-epsilon":
            axes["eps"] = tuple(e for e in axes["eps"] if e > 0)
    axes["seed"] = SEEDS
    current = {**base, "seed": preset.seed}

    out: list[Candidate] = []
    seen: set = set()

    def add(changes: dict, source_preset: str, description=None, options=None):
        opts = {**current, **changes} if options is None else options
        effective = dict(opts) if opts.get("eps") else {**opts, "stabilizer_kind": None}
        key = (
            source_preset if method in PRESETS[source_preset].realized_by else "",
            _key(effective),
        )
        if key in seen:
            return
        seen.add(key)
        presets = _presets_with(method, changes)
        out.append(
            Candidate(
                description or _describe(changes, presets),
                method,
                source_preset,
                opts,
                changes,
                presets,
            )
        )

    for k, values in axes.items():
        for v in values:
            if v != current.get(k):
                add({k: v}, preset.name)
    for name, p in PRESETS.items():
        if name == preset.name or method in p.missing:
            continue
        try:
            target = p.realized_by.get(method, method)
            popts = {**_defaults(target), **p.options(method, **params), "seed": p.seed}
        except ValueError:  # e.g. Captum's alpha-beta with other parameters
            continue
        changes = {k: v for k, v in popts.items() if current.get(k) != v}
        if changes:
            add(
                changes,
                name,
                f"matches preset {name!r} ({p.library}): " + _changes(changes),
                options=popts,
            )
    for (k1, v1s), (k2, v2s) in combinations(axes.items(), 2):
        for v1, v2 in product(v1s, v2s):
            if v1 != current.get(k1) and v2 != current.get(k2):
                add({k1: v1, k2: v2}, preset.name)
    return out


def _key(options: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def _changes(changes: dict) -> str:
    return ", ".join(
        ("output seed " + repr(v)) if k == "seed" else f"{k}={v!r}" for k, v in changes.items()
    )


def _run(net, x, target, cand: Candidate) -> np.ndarray:
    """The reference under a candidate's conventions (full rule options and seed, or a preset)."""
    opts = dict(cand.options)
    target = opts.pop("target", target)
    if cand.method in RULES and "seed" in opts:
        seed = opts.pop("seed")
        p = get_preset(cand.preset)
        rule = make_rule(p.realized_by.get(cand.method, cand.method), **opts)
        return lrp(net, x, rule, target=target, seed=seed).R
    return explain(net, x, cand.method, target=target, preset=cand.preset, **opts).R


def diagnose(
    net: Sequential,
    x: np.ndarray,
    R: np.ndarray,
    method: str,
    *,
    target,
    preset: str | Preset = "paper",
    options: dict | None = None,
    rtol: float,
) -> tuple[list[Match], int]:
    """Search the conventions for ones under which the reference equals ``R``.

    Returns the matches (fewest changes first) and the number of configurations tried.
    Uses the first :data:`DIAGNOSIS_SAMPLES` samples.
    """
    options = dict(options or {})
    p = get_preset(preset)
    n = min(len(x), DIAGNOSIS_SAMPLES)
    x, R = x[:n], R[:n]
    target = target if np.ndim(target) == 0 else np.asarray(target)[:n]
    cands: list[Candidate] = []
    if not (isinstance(target, str) and target == "predicted"):
        cands.append(
            Candidate(
                "matches when the predicted class is explained instead of the given target",
                method,
                p.name,
                {"target": "predicted", **options},
                {"target": "predicted"},
            )
        )
    if method in RULES:
        cands += _rule_candidates(method, p, options)
    elif method == "sensitivity":
        for out in SENSITIVITY_OUTPUTS:
            if out != options.get("output", p.sensitivity):
                changes = {"output": out}
                cands.append(
                    Candidate(
                        _describe(changes, _presets_with(method, changes)),
                        method,
                        p.name,
                        {"output": out},
                        changes,
                        _presets_with(method, changes),
                    )
                )
    seen = set()
    for other in METHODS:
        if other in (method, "lrp", "taylor"):
            continue
        for name, q in PRESETS.items():
            if other in q.missing or (other == "sensitivity" and q.sensitivity is None):
                continue
            if other in RULES:
                opts = {**q.options(other), "seed": q.seed}
            else:
                opts = {"output": q.sensitivity} if other == "sensitivity" else {}
            key = (q.realized_by.get(other, other), _key(opts))
            if key in seen:
                continue
            seen.add(key)
            cands.append(
                Candidate(
                    f"matches method {other!r} under preset {name!r}",
                    other,
                    name,
                    opts,
                    {"method": other, "preset": name},
                )
            )
    matches = []
    tried = 0
    for cand in cands:
        try:
            R_try = _run(net, x, target, cand)
        except ValueError:  # a convention that does not apply here (e.g. negative inputs)
            continue
        tried += 1
        cmp = compare(R, R_try, rtol)
        if cmp.passed:
            matches.append(Match(cand, float(cmp.rel_error.max())))
    matches.sort(key=lambda m: (len(m.candidate.changes), m.max_rel_error))
    return matches, tried


def verify(
    net: Sequential,
    x,
    R,
    method: str,
    *,
    target="predicted",
    preset: str | Preset = "paper",
    rules: RuleMap | None = None,
    rtol: float | None = None,
    diagnose_mismatch: bool = True,
    **options,
) -> Report:
    """Compare candidate relevances ``R`` for inputs ``x`` with refimpl's ``method``.

    Parameters
    ----------
    net : Sequential
    x : ndarray (n, *input_shape)
    R : ndarray, n x d values
        The candidate relevances, any shape holding ``n * d`` values (reshaped per sample).
    method : str
        One of :data:`refimpl.explain.methods.METHODS`.
    target, preset, rules, options
        As for :func:`refimpl.explain.methods.explain`.
    rtol : float, optional
        Per-sample relative tolerance; default by the candidate's dtype: 1e-10 for float64,
        1e-5 for float32 (and float16).
    diagnose_mismatch : bool
        On a mismatch, search the conventions for one that explains it.
    """
    x = net.check_input(x)
    R = np.asarray(R)
    if not (np.issubdtype(R.dtype, np.floating)):
        raise TypeError(f"candidate relevances must be floating point, got dtype {R.dtype}")
    if R.size != x.size:
        raise ValueError(
            f"candidate relevances have shape {R.shape} ({R.size} values); expected the input's "
            f"{x.shape} ({x.size} values)"
        )
    R = R.reshape(x.shape)
    if rtol is None:
        rtol = DEFAULT_RTOL.get(R.dtype, 1e-5)
    if not (np.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a positive finite number, got {rtol}")
    p = get_preset(preset)
    ref = explain(net, x, method, target=target, rules=rules, preset=p, **options)
    rule = p.rule(method, **options).describe() if method in RULES else None
    seed = p.seed if (method in RULES or method == "lrp") else "logit"
    cmp = compare(R, ref.R, rtol)
    R64 = R.astype(np.float64).reshape(len(R), -1)
    report = Report(
        method=method,
        preset=p.name,
        rule=rule,
        seed=seed,
        rtol=rtol,
        f=ref.f,
        target=ref.target,
        sum_candidate=R64.sum(axis=1),
        sum_reference=ref.R.reshape(len(R), -1).sum(axis=1),
        comparison=cmp,
        nonfinite=int((~np.isfinite(R64)).sum()),
    )
    if not cmp.passed and diagnose_mismatch and rules is None:
        t = ref.target if ref.target is not None else target
        report.diagnosis, report.tried = diagnose(
            net, x, R, method, target=t, preset=p, options=options, rtol=rtol
        )
    elif not cmp.passed and diagnose_mismatch:
        report.diagnosis, report.tried = [], 0
    return report
