"""Check another implementation's relevances against the reference, and diagnose a mismatch.

:func:`verify` computes refimpl's relevances in float64 for the same model, inputs, method and
options, and compares the candidate with them per sample::

    max_i |R_i - R_ref_i| <= rtol * max_i |R_ref_i| + 32 S

where ``S`` estimates how far rounding alone moves the result in the precision of the candidate (or
of the model, if that is lower): :mod:`refimpl.explain.rounding`. Where parts cancel, a correct
float32 result differs from the exact one by far more than ``1e-5 max |R|``. It reports the
candidate's conservation (``sum_i R_i`` against ``f(x)``) and, on a mismatch, searches the
conventions on which the libraries differ (README, "Verifying other implementations") for one that
explains the difference: every preset, every single option of the rule (bias, input sign handling,
stabilizer kind and epsilon, gamma variant, output seeding), pairs of them, the predicted class
instead of the given target, and the other methods. The result names what matches, e.g. "matches
with bias='split' (as in zennit, toolbox)", or says that nothing does. A convention is named as
*the* explanation only if it explains every failing sample; otherwise the report says how many it
explains and which, tries the rest again, and counts what stays unexplained. NaN or inf in the
candidate is named as the cause (no search); errors at a lower precision's rounding level
(float16, or float32 for a float64 candidate) are named as a likely precision issue. On a pass
in float32 it says which other presets' stabilizer epsilons would pass too: below the
candidate's resolution they cannot be told apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from itertools import combinations, product

import numpy as np

from ._checks import check_positive
from ._table import format_table
from .explain.gradient import SENSITIVITY_OUTPUTS
from .explain.lrp import RuleMap, lrp
from .explain.methods import METHODS, explain
from .explain.output import SEEDS
from .explain.presets import PRESETS, Preset, effective_options
from .explain.presets import preset as get_preset
from .explain.rounding import ROUNDING_FACTOR, rounding_estimate, unit_roundoff
from .explain.rules import BIAS_OPTIONS, INPUT_OPTIONS, RULES, alpha_beta_sum_error, make_rule
from .explain.stabilizer import KINDS
from .network import Sequential

DEFAULT_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
EPS_GRID = (1e-16, 1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.25, 1.0)
DIAGNOSIS_SAMPLES = 32  # the failing samples each search of the diagnosis looks at
DIAGNOSIS_ROUNDS = 4  # searches: the first failing samples, then those still unexplained
DIAGNOSIS_RETRY = 8  # samples of a retried search, in a batch found to be mixed
PRECISION_BAND = (0.125, 4.0)  # max rel. error / unit roundoff of a lower precision: its level
POPULATION_MIN = 5  # samples beyond rtol needed for the population check
POPULATION_MEDIAN = 3.0  # median error / rounding estimate above which errors are systematic
UNRESOLVED = 1e-2  # allowance / max |R_ref| above which a sample cannot really be checked

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
    """Per-sample errors of a candidate against a reference.

    A sample passes when the candidate is finite and ``abs_error <= rtol * scale + allowance``,
    ``scale = max_i |R_ref_i|`` and ``allowance = ROUNDING_FACTOR * estimate`` (``estimate``:
    :func:`refimpl.explain.rounding.rounding_estimate`, what rounding alone moves the result;
    0 if not used). The whole comparison passes when every sample does and the errors are not
    *systematically* above rounding: over the samples whose error exceeds ``rtol * scale`` (at
    least :data:`POPULATION_MIN` of them), the median of ``abs_error / estimate`` must not exceed
    :data:`POPULATION_MEDIAN`. Correct float32 results of the real Zennit and Captum stay below
    1.2 there; a wrong stabilizer epsilon (1e-6 instead of Captum's 1e-9) is at 5 to 12, while
    each of its samples alone may still be within 32 estimates.
    """

    abs_error: np.ndarray
    scale: np.ndarray
    rtol: float
    finite: np.ndarray
    estimate: np.ndarray

    @property
    def allowance(self) -> np.ndarray:
        return ROUNDING_FACTOR * self.estimate

    @property
    def rel_error(self) -> np.ndarray:
        """``abs_error / scale`` (0 where both are 0, inf where only the scale is)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rel = np.where(self.scale > 0, self.abs_error / self.scale, np.inf)
        return np.where(self.abs_error == 0, 0.0, rel)

    @property
    def beyond_rtol(self) -> np.ndarray:
        """Samples whose error exceeds the relative tolerance alone (rounding may explain it)."""
        return self.finite & (self.abs_error > self.rtol * self.scale)

    @property
    def rounding_ratio(self) -> float | None:
        """Median ``abs_error / estimate`` over :attr:`beyond_rtol` (None if too few samples)."""
        sub = self.beyond_rtol & (self.estimate > 0)
        if sub.sum() < POPULATION_MIN:
            return None
        with np.errstate(over="ignore"):  # a huge candidate: an infinite ratio
            return float(np.median(self.abs_error[sub] / self.estimate[sub]))

    @property
    def systematic(self) -> bool:
        """The errors beyond ``rtol`` are systematically larger than rounding explains."""
        ratio = self.rounding_ratio
        return ratio is not None and ratio > POPULATION_MEDIAN

    @property
    def unresolved(self) -> np.ndarray:
        """Samples so ill-conditioned in this precision that errors below 1e-2 ``max |R_ref|``
        cannot be told from rounding."""
        return self.allowance > UNRESOLVED * self.scale

    @property
    def ok(self) -> np.ndarray:
        per_sample = self.finite & (self.abs_error <= self.rtol * self.scale + self.allowance)
        return per_sample & ~self.beyond_rtol if self.systematic else per_sample

    @property
    def passed(self) -> bool:
        return bool(self.ok.all())


def compare(R, R_ref, rtol: float, estimate=None) -> Comparison:
    """Compare ``R`` with ``R_ref`` (both ``(n, ...)``) per sample (see :class:`Comparison`).

    ``estimate`` (n,): the rounding estimate per sample (default 0: no rounding allowance).
    NaN or inf in ``R`` fails that sample.
    """
    R = np.asarray(R, dtype=np.float64).reshape(len(R), -1)
    R_ref = np.asarray(R_ref, dtype=np.float64).reshape(len(R_ref), -1)
    if R.shape != R_ref.shape:
        raise ValueError(f"candidate shape {R.shape} differs from the reference's {R_ref.shape}")
    finite = np.isfinite(R).all(axis=1)
    diff = np.abs(np.where(np.isfinite(R), R, 0.0) - R_ref)
    S = np.zeros(len(R)) if estimate is None else np.broadcast_to(estimate, (len(R),))
    err = np.where(finite, diff.max(axis=1), np.inf)
    return Comparison(err, np.abs(R_ref).max(axis=1), rtol, finite, S)


@dataclass
class Candidate:
    """One convention tried by the diagnosis: a method under a preset with full options."""

    description: str
    method: str
    preset: Preset
    options: dict  # full rule options plus "seed" for LRP rules; method options otherwise
    changes: dict  # what differs from the reference's configuration
    kind: str = "option"  # "preset", "option", "target" or "method"
    presets: list[str] = field(default_factory=list)  # presets that share the changed values


@dataclass
class Match:
    """A convention that explains failing samples of the candidate.

    ``explained``: indices (into the whole batch) of the failing samples it explains;
    ``max_rel_error``: its largest error there; ``exact``: that error is within the unit
    roundoff of the candidate's dtype (the candidate is this convention's result, rounded);
    ``group``: the search that found it (0: the first failing samples, 1: the samples the best
    match of search 0 left unexplained, ...).
    """

    candidate: Candidate
    max_rel_error: float
    explained: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    exact: bool = False
    group: int = 0


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _json_safe(obj):
    """``obj`` with NumPy scalars and arrays as Python values and NaN/inf as ``None``."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite_or_none(obj)
    return obj


def _sample_list(idx, limit: int = 12) -> str:
    """``"sample 2"``, ``"samples 3, 7"``, ``"samples 0-31, 40"`` (runs of 3 or more as ranges,
    at most ``limit`` items)."""
    idx = [int(i) for i in idx]
    runs, start = [], 0
    for k in range(1, len(idx) + 1):
        if k == len(idx) or idx[k] != idx[k - 1] + 1:
            a, b = idx[start], idx[k - 1]
            runs += [f"{a}-{b}"] if b - a >= 2 else [str(i) for i in range(a, b + 1)]
            start = k
    more = f", ... ({len(idx)} in all)" if len(runs) > limit else ""
    return ("sample " if len(idx) == 1 else "samples ") + ", ".join(runs[:limit]) + more


def _nonfinite_note(R: np.ndarray) -> str:
    """Where the candidate has NaN and inf, e.g. ``"NaN at samples 3, 7 and inf at sample 2"``."""
    R = R.reshape(len(R), -1)
    parts = [
        f"{name} at {_sample_list(np.flatnonzero(test(R).any(axis=1)))}"
        for name, test in (("NaN", np.isnan), ("inf", np.isinf))
        if test(R).any()
    ]
    return "the candidate has " + " and ".join(parts)


@dataclass
class Report:
    """Everything ``refimpl verify`` prints, also as JSON (:meth:`to_dict`)."""

    method: str
    preset: str
    rule: str | None
    seed: str | None
    rtol: float
    f: np.ndarray
    target: np.ndarray | None
    sum_candidate: np.ndarray
    sum_reference: np.ndarray
    reference_max: np.ndarray
    comparison: Comparison
    nonfinite: int
    diagnosis: list[Match] | None = None
    tried: int = 0
    note: str = ""
    precision: str | None = None  # the lower precision the unexplained errors are at
    indistinguishable: list[dict] = field(default_factory=list)  # alternatives that pass too
    dtype: str = "float64"  # the precision the candidate is judged in

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    @property
    def failing(self) -> np.ndarray:
        """Indices of the samples that fail."""
        return np.flatnonzero(~self.comparison.ok)

    def conservation(self) -> dict | None:
        """The candidate's ``sum_i R_i`` against ``f(x)`` (against 1 when seeded with 1)."""
        if self.method == "sensitivity":
            return None  # sum_i R_i is ||grad f||^2 or a norm of it, not f(x)
        expected = np.ones_like(self.f) if self.seed == "onehot" else self.f
        gap = self.sum_candidate - expected
        finite = np.isfinite(gap)
        return {
            "expected_total": "1 (one-hot seed)" if self.seed == "onehot" else "f(x)",
            "max_abs_gap": float(np.abs(gap[finite]).max()) if finite.any() else None,
            "reference_max_abs_gap": float(np.abs(self.sum_reference - expected).max()),
        }

    def to_dict(self) -> dict:
        """The report as strict JSON values: NumPy values as Python ones, and every non-finite
        number (an error or a ratio that overflows, a NaN in the candidate) as ``null``."""
        c = self.comparison
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            over_estimate = np.where(c.estimate > 0, c.abs_error / c.estimate, np.inf)
        out = {
            "verdict": "match" if self.passed else "mismatch",
            "method": self.method,
            "preset": self.preset,
            "rule": self.rule,
            "seed": self.seed,
            "tolerance": {
                "rtol": self.rtol,
                "definition": "per sample: max_i |R_i - R_ref_i| <= rtol * max_i |R_ref_i| + "
                "allowance, allowance = 32 S, S the spread of the result under rounding in the "
                "candidate's precision (refimpl.explain.rounding)",
            },
            "max_abs_error": c.abs_error.max(),
            "max_rel_error": c.rel_error.max(),
            "nonfinite_values": self.nonfinite,
            "rounding_check": {
                "samples_beyond_rtol": int(c.beyond_rtol.sum()),
                "median_error_over_estimate": c.rounding_ratio,
                "systematic": c.systematic,
                "threshold": POPULATION_MEDIAN,
            },
            "unresolved_samples": int(c.unresolved.sum()),
            "conservation": self.conservation(),
            "indistinguishable": self.indistinguishable,
            "precision_note": self.precision_note(),
            "samples": [
                {
                    "index": i,
                    "f": self.f[i],
                    "target": None if self.target is None else int(self.target[i]),
                    "sum_R_candidate": self.sum_candidate[i],
                    "sum_R_reference": self.sum_reference[i],
                    "max_abs_R_reference": self.reference_max[i],
                    "rounding_estimate": c.estimate[i],
                    "rounding_allowance": c.allowance[i],
                    "error_over_estimate": over_estimate[i],
                    "max_abs_error": c.abs_error[i],
                    "max_rel_error": c.rel_error[i],
                    "ok": c.ok[i],
                }
                for i in range(len(self.f))
            ],
        }
        if self.diagnosis is not None or self.note:
            out["diagnosis"] = self._diagnosis_dict()
        return _json_safe(out)

    def _diagnosis_dict(self) -> dict:
        unexplained = self.unexplained()
        return {
            "tried": self.tried,
            "explained": bool(self.diagnosis) and len(unexplained) == 0,
            "failing_samples": len(self.failing),
            "explained_samples": len(self.failing) - len(unexplained),
            "unexplained": unexplained if self.diagnosis is not None else None,
            "precision": self.precision,
            "message": self.diagnosis_message(),
            "matches": [
                {
                    "description": m.candidate.description,
                    "method": m.candidate.method,
                    "preset": m.candidate.preset.name,
                    "changes": m.candidate.changes,
                    "as_in_presets": m.candidate.presets,
                    "max_rel_error": m.max_rel_error,
                    "exact": m.exact,
                    "explains_samples": len(m.explained),
                    "samples": m.explained,
                    "group": m.group,
                }
                for m in self.diagnosis or []
            ],
        }

    def leaders(self) -> list[Match]:
        """The best match of each search (see :attr:`Match.group`)."""
        return [
            m
            for k, m in enumerate(self.diagnosis or [])
            if k == 0 or m.group != self.diagnosis[k - 1].group
        ]

    def unexplained(self) -> np.ndarray:
        """Failing samples that no search's best match explains."""
        explained = [m.explained for m in self.leaders()]
        return np.setdiff1d(self.failing, np.concatenate([[], *explained]).astype(int))

    def diagnosis_message(self) -> str:
        if self.note:
            return self.note
        if self.diagnosis is None:
            return ""
        hint = self._precision_hint()
        if not self.diagnosis:
            return (
                f"no convention explains the difference ({self.tried} tried: every preset, every "
                "single rule option and pairs of them, output seeding, the other methods)"
                + (f"; {hint}" if hint else "")
            )
        n, leaders, rest = len(self.failing), self.leaders(), self.unexplained()
        if len(leaders[0].explained) == n:
            return "the candidate " + leaders[0].candidate.description + self._ties()
        parts = [
            f"{m.candidate.description}: explains {len(m.explained)}"
            + (f" of {n} failing samples" if k == 0 else "")
            + f" ({_sample_list(m.explained)})"
            for k, m in enumerate(leaders)
        ]
        if len(rest):
            parts.append(
                f"the other {len(rest)} are unexplained ({_sample_list(rest)})"
                + (f": {hint}" if hint else "")
            )
        return "the candidate " + "; ".join(parts)

    def _precision_hint(self) -> str:
        if self.precision is None:
            return ""
        return (
            f"a likely precision issue: errors are at {self.precision} rounding level "
            f"(candidate computed in {self.precision}?)"
        )

    def _ties(self) -> str:
        """Other full matches that differ from the best only in eps, in low precision."""
        if self.dtype == "float64":
            return ""
        best = self.diagnosis[0]
        ties = [
            m
            for m in self.diagnosis[1:]
            if len(m.explained) == len(best.explained) and _only_eps_differs(m, best)
        ]
        if not ties:
            return ""
        others = ", ".join(f"eps={m.candidate.changes['eps']!r}" for m in ties)
        return (
            f"; the candidate's precision ({self.dtype}) cannot separate "
            f"eps={best.candidate.changes['eps']!r} from {others}"
        )

    def precision_note(self) -> str:
        """On a pass: the alternatives that the candidate's precision cannot tell apart."""
        if not self.indistinguishable:
            return ""
        first = self.indistinguishable[0]
        others = ", ".join(
            f"{a['option']}={a['alternative']!r}"
            + (f" (as in {', '.join(a['as_in_presets'])})" if a["as_in_presets"] else "")
            for a in self.indistinguishable
        )
        return (
            f"the candidate's precision ({self.dtype}) cannot separate "
            f"{first['option']}={first['reference']!r} from {others}: the candidate passes with "
            + ("that too" if len(self.indistinguishable) == 1 else "those too")
        )

    def text(self, max_rows: int = 10) -> str:
        c = self.comparison
        seeded = {"onehot": ", output seeded with 1", "logit": ", output seeded with f(x)"}
        lines = [
            f"reference: {self.method} (preset {self.preset!r})"
            + (f": {self.rule} on every dense layer" if self.rule else "")
            + seeded.get(self.seed or "", ""),
            f"tolerance: per sample max |R - R_ref| <= {self.rtol:g} x max |R_ref| + rounding "
            "allowance",
        ]
        if self.nonfinite:
            lines.append(f"candidate has {self.nonfinite} NaN/inf value(s)")
        rows = [("sample", "f(x)", "sum R cand.", "sum R ref.", "max abs err", "allowed", "ok")]
        for i in range(min(len(self.f), max_rows)):
            rows.append(
                (
                    str(i),
                    f"{self.f[i]:.6g}",
                    f"{self.sum_candidate[i]:.6g}",
                    f"{self.sum_reference[i]:.6g}",
                    f"{c.abs_error[i]:.3g}",
                    f"{c.rtol * c.scale[i] + c.allowance[i]:.3g}",
                    "yes" if c.ok[i] else "NO",
                )
            )
        lines.append(format_table(rows))
        if len(self.f) > max_rows:
            lines.append(f"... {len(self.f) - max_rows} more sample(s)")
        lines += self._check_lines()
        n_bad = int((~c.ok).sum())
        lines.append(
            f"overall: max abs err {c.abs_error.max():.3g}, max rel err "
            f"{c.rel_error.max():.3g}; "
            + ("MATCH" if self.passed else f"MISMATCH ({n_bad} of {len(c.ok)} samples)")
        )
        if self.precision_note():
            lines.append("note: " + self.precision_note())
        if self.diagnosis is not None or self.note:
            lines += self._diagnosis_lines()
        return "\n".join(lines)

    def _check_lines(self) -> list[str]:
        """Conservation, the rounding check and ill-conditioned samples, for :meth:`text`."""
        c, lines = self.comparison, []
        cons = self.conservation()
        if cons is not None:
            gap = "n/a" if cons["max_abs_gap"] is None else f"{cons['max_abs_gap']:.3g}"
            lines.append(
                f"conservation: max |sum R - {cons['expected_total']}| = {gap} (candidate), "
                f"{cons['reference_max_abs_gap']:.3g} (reference)"
            )
        ratio = c.rounding_ratio
        within = c.beyond_rtol & (c.abs_error <= c.rtol * c.scale + c.allowance)
        if ratio is not None and within.any():  # some samples pass only by the allowance
            lines.append(
                f"rounding check: over the {int(c.beyond_rtol.sum())} samples beyond rtol, the "
                f"median error is {ratio:.3g} rounding estimates (correct float32 peers: below "
                f"1.2; above {POPULATION_MEDIAN:g} the errors are systematic: a mismatch)"
            )
        if c.unresolved.any():
            lines.append(
                f"note: {int(c.unresolved.sum())} sample(s) are so ill-conditioned in this "
                f"precision that errors below {UNRESOLVED:g} max |R_ref| cannot be told from "
                "rounding there"
            )
        return lines

    def _diagnosis_lines(self) -> list[str]:
        full = bool(self.diagnosis) and len(self.diagnosis[0].explained) == len(self.failing)
        message = self.diagnosis_message()
        if full:  # the best match's error right after its description
            head = "the candidate " + self.diagnosis[0].candidate.description
            best = f" [max rel err {self.diagnosis[0].max_rel_error:.2g}]"
            message = head + best + message[len(head) :]
        lines = ["diagnosis: " + message]
        n, leaders = len(self.failing), self.leaders()
        others = [m for m in self.diagnosis or [] if all(m is not b for b in leaders)]
        for m in others[:4]:
            part = "" if len(m.explained) == n else f", explains {len(m.explained)} of {n}"
            lines.append(
                f"  also: {m.candidate.description} [max rel err {m.max_rel_error:.2g}{part}]"
            )
        return lines


def _only_eps_differs(a: Match, b: Match) -> bool:
    """The two matches change the same options, with the same values except ``eps``."""
    ca, cb = a.candidate.changes, b.candidate.changes
    kinds = {a.candidate.kind, b.candidate.kind}
    if not kinds <= {"preset", "option"} or set(ca) != set(cb):
        return False
    return "eps" in ca and ca["eps"] != cb["eps"] and all(ca[k] == cb[k] for k in ca if k != "eps")


# --- the diagnosis ------------------------------------------------------------------------------


def _preset_params(p: Preset, method: str, params: dict) -> dict | None:
    """The user's rule parameters in ``p``'s parameterization, or None if ``p`` cannot take them
    (e.g. Captum's alpha-beta with alpha = 2)."""
    params = dict(params)
    if method == "lrp-alpha-beta":
        alpha, beta = params.get("alpha"), params.get("beta")
        if p.alpha_beta == "alpha-only":
            params.pop("beta", None)
            if beta is not None and alpha is not None and alpha_beta_sum_error(alpha, beta):
                return None
        elif alpha is not None and beta is None:
            params["beta"] = alpha - 1.0
    try:
        p.options(method, **params)
    except ValueError:
        return None
    return params


def _effective(method: str, p: Preset, options: dict) -> dict:
    """Options that change the numbers, keyed by the rule class that realizes ``method``."""
    opts = {k: v for k, v in options.items() if k != "seed"}
    return {"rule": p.realized_by.get(method, method), **effective_options(opts)}


def _presets_with(method: str, changes: dict, params: dict) -> list[str]:
    """Presets that have rule ``method`` with the user's parameters and every changed value."""
    names = []
    for name, p in PRESETS.items():
        if method in p.missing:
            continue
        q = _preset_params(p, method, params)
        if q is None:
            continue
        opts = {**p.full_options(method, **q), "seed": p.seed}
        if all(opts.get(k) == v for k, v in changes.items()):
            names.append(name)
    return names


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


def _changes(changes: dict) -> str:
    return ", ".join(
        ("output seed " + repr(v)) if k == "seed" else f"{k}={v!r}" for k, v in changes.items()
    )


def _rule_candidates(method: str, p: Preset, options: dict, seed: str) -> list[Candidate]:
    """Conventions to try for an LRP rule: presets, single options, pairs of options."""
    current = {**p.full_options(method, **options), "seed": seed}
    # the reference's parameters (given, or the preset's own, e.g. Zennit's alpha=2, beta=1)
    params = {k: current[k] for k in _PARAMETERS if k in current}
    axes: dict[str, tuple] = {k: by[method] for k, by in _DOMAINS.items() if method in by}
    if "eps" in current:
        eps = sorted({0.0, *EPS_GRID, current["eps"]})
        axes["eps"] = tuple(e for e in eps if e > 0) if method == "lrp-epsilon" else tuple(eps)
    axes["seed"] = SEEDS
    out: list[Candidate] = []
    seen = {(_key(_effective(method, p, current)), seed)}

    def add(q: Preset, opts: dict, changes: dict, kind: str, description: str | None = None):
        key = (_key(_effective(method, q, opts)), opts["seed"])
        if key in seen:  # the same numbers as the reference, or as a candidate already listed
            return
        seen.add(key)
        presets = _presets_with(method, changes, params) if kind == "option" else [q.name]
        text = description or _describe(changes, presets)
        out.append(Candidate(text, method, q, opts, changes, kind, presets))

    for name, q in PRESETS.items():
        if name == p.name or method in q.missing:
            continue
        qparams = _preset_params(q, method, params)
        if qparams is None:
            continue
        opts = {**q.full_options(method, **qparams), "seed": q.seed}
        mine = {**_effective(method, p, current), "seed": seed}
        theirs = {**_effective(method, q, opts), "seed": q.seed}
        changes = {k: v for k, v in theirs.items() if k != "rule" and mine.get(k) != v}
        if changes.get("stabilizer_kind") == "signed" and "stabilizer_kind" not in mine:
            del changes["stabilizer_kind"]  # the default kind, where the reference has no eps
        add(
            q,
            opts,
            changes,
            "preset",
            f"matches preset {name!r} ({q.library}): {_changes(changes)}",
        )
    for k, values in axes.items():
        for v in values:
            if v != current.get(k):
                add(p, {**current, k: v}, {k: v}, "option")
    for (k1, v1s), (k2, v2s) in combinations(axes.items(), 2):
        for v1, v2 in product(v1s, v2s):
            if v1 != current.get(k1) and v2 != current.get(k2):
                add(p, {**current, k1: v1, k2: v2}, {k1: v1, k2: v2}, "option")
    return out


def _key(options: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def _method_candidates(method: str, p: Preset, options: dict) -> list[Candidate]:
    """The other methods (and sensitivity outputs) under every preset."""
    out = []
    if method == "sensitivity":
        current = options.get("output", p.sensitivity)
        for value in SENSITIVITY_OUTPUTS:
            if value != current:
                changes = {"output": value}
                names = [n for n, q in PRESETS.items() if q.sensitivity == value]
                out.append(
                    Candidate(
                        _describe(changes, names), method, p, changes, changes, "option", names
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
                opts = {**q.full_options(other), "seed": q.seed}
                key = (_key(_effective(other, q, opts)), q.seed)
            else:
                opts = {"output": q.sensitivity} if other == "sensitivity" else {}
                key = (other, _key(opts))
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Candidate(
                    f"matches method {other!r} under preset {name!r}",
                    other,
                    q,
                    opts,
                    {"method": other, "preset": name},
                    "method",
                )
            )
    return out


def _run(net, x, target, cand: Candidate) -> np.ndarray:
    """The reference under a candidate's conventions."""
    opts = dict(cand.options)
    target = opts.pop("target", target)
    if cand.method in RULES and "seed" in opts:
        seed = opts.pop("seed")
        rule = make_rule(cand.preset.realized_by.get(cand.method, cand.method), **opts)
        return lrp(net, x, rule, target=target, seed=seed).R
    return explain(net, x, cand.method, target=target, preset=cand.preset, **opts).R


def _bind(cand: Candidate, net: Sequential, x: np.ndarray) -> Candidate:
    """``cand`` for the samples ``x``: ``target='predicted'`` becomes the predicted classes,
    fixed once in float64 (a rounding perturbation must not flip a near tie)."""
    if not isinstance(cand.options.get("target"), str):
        return cand
    return replace(cand, options={**cand.options, "target": net(x).argmax(axis=1)})


def _attempt(net, x, classes, cand: Candidate) -> np.ndarray | None:
    """:func:`_run` on ``x``, or None where the convention does not apply (a ValueError, e.g.
    negative inputs for the paper's z+)."""
    try:
        return _run(net, x, classes, _bind(cand, net, x))
    except ValueError:
        return None


def _closer(err: np.ndarray, base: np.ndarray, factor: float = 0.25) -> bool:
    """The median sample's error is at most ``factor`` times the reference's error there."""
    with np.errstate(over="ignore"):
        return bool(np.median(err / np.where(base > 0, base, np.inf)) <= factor)


def _near(cmp: Comparison, factor: float = 1e3) -> np.ndarray:
    """Per sample: within ``factor`` times the tolerance, worth a closer look."""
    return cmp.finite & (cmp.abs_error <= factor * (cmp.rtol * cmp.scale + cmp.allowance))


def _judge(net, x, R, R_try, cand, classes, rtol, estimate, dtype, partial=False) -> Comparison:
    """``R`` against the reference under ``cand`` (``R_try``, on ``x``).

    The candidate's own conventions may be worse conditioned than the reference's: a near miss
    is judged by the candidate's rounding estimate in ``dtype``, on the near samples if
    ``partial``, else only when every sample is near (a match must explain them all).
    """
    cmp = compare(R, R_try, rtol, estimate)
    near = _near(cmp) & ~cmp.ok
    if not near.any() or not (partial or _near(cmp).all()):
        return cmp
    rows = np.flatnonzero(near) if partial else np.arange(len(R))
    bound = _bind(cand, net, x[rows])
    S = rounding_estimate(lambda n_, x_: _run(n_, x_, classes[rows], bound), net, x[rows], dtype)
    est = np.array(estimate, dtype=np.float64)
    est[rows] = np.maximum(est[rows], S)
    return compare(R, R_try, rtol, est)


def _explained(cmp: Comparison) -> np.ndarray:
    """Indices of the samples that pass on their own and, together, pass the rounding check
    (the population check of :class:`Comparison` on the explained samples only)."""
    per = np.flatnonzero(cmp.finite & (cmp.abs_error <= cmp.rtol * cmp.scale + cmp.allowance))
    sub = Comparison(
        cmp.abs_error[per], cmp.scale[per], cmp.rtol, cmp.finite[per], cmp.estimate[per]
    )
    return per[sub.ok]


def _match(cand: Candidate, cmp: Comparison, rows: np.ndarray, dtype, group: int = 0) -> Match:
    """``cand`` as a match of the samples ``rows`` it explains (:func:`_explained`)."""
    local = _explained(cmp)
    err = float(cmp.rel_error[local].max()) if len(local) else np.inf
    return Match(cand, err, rows[local], bool(err <= unit_roundoff(dtype)), group)


_ORDER = {"preset": 0, "target": 1, "option": 2, "method": 3}


def _rank(m: Match) -> tuple:
    """Best first: the most samples explained; then another method that matches exactly (the
    other methods come last otherwise, but a candidate that is, say, gradient x input rounded
    to its dtype was computed with that method, whatever single options come within a few
    ulps); then a whole preset, the target, the fewest changed options, the smallest error."""
    c = m.candidate
    exact_method = m.exact and c.kind == "method"
    return (-len(m.explained), not exact_method, _ORDER[c.kind], len(c.changes), m.max_rel_error)


def _candidates(net, x, method, target, classes, preset, options, seed) -> list[Candidate]:
    """Every convention the diagnosis tries (see :func:`diagnose`)."""
    cands: list[Candidate] = []
    if not (isinstance(target, str) and target == "predicted"):
        if np.any(net(x).argmax(axis=1) != classes):  # in float64
            cands.append(
                Candidate(
                    "matches when the predicted class is explained instead of the given target",
                    method,
                    preset,
                    {"target": "predicted", **options},
                    {"target": "predicted"},
                    "target",
                )
            )
    if method in RULES:
        cands += _rule_candidates(method, preset, _rule_options(options), seed)
    return cands + _method_candidates(method, preset, options)


def diagnose(
    net: Sequential,
    x: np.ndarray,
    R: np.ndarray,
    R_ref: np.ndarray,
    method: str,
    *,
    target,
    classes: np.ndarray,
    preset: Preset,
    options: dict,
    seed: str | None,
    rtol: float,
    estimate: np.ndarray,
    dtype=np.float64,
) -> tuple[list[Match], int]:
    """Search the conventions for ones under which the reference equals ``R`` on every sample.

    ``target`` is the user's (to decide whether the predicted class is worth a try),
    ``classes`` the explained class of every sample, used for every computation (a rounding
    perturbation must not flip a near tie). ``dtype`` is the precision the candidate was
    computed in (for the rounding estimate of a near miss). A match must be within tolerance
    and, on the median sample, at most a quarter of the reference's error. ``x``, ``R``,
    ``R_ref``, ``target`` (if an array) and ``estimate`` are the samples to look at (failing
    ones: :func:`verify` searches up to :data:`DIAGNOSIS_SAMPLES` of them and then checks the
    matches on all). Candidates that give the reference's own numbers there are skipped.
    Returns the matches, best first (:func:`_rank`; ``explained`` indexes these samples), and
    the number of configurations tried.
    """
    cands = _candidates(net, x, method, target, classes, preset, options, seed)
    base = compare(R, R_ref, rtol, estimate).abs_error  # how far off the reference is
    matches, tried = [], 0
    for cand in cands:
        R_try = _attempt(net, x, classes, cand)
        if R_try is None:
            continue
        tried += 1
        if compare(R_try, R_ref, rtol, estimate).abs_error.max() == 0:
            continue  # the reference's own numbers: explains nothing
        cmp = _judge(net, x, R, R_try, cand, classes, rtol, estimate, dtype)
        # a match must explain the difference: typically much closer than the reference
        if cmp.passed and _closer(cmp.abs_error, base):
            matches.append(_match(cand, cmp, np.arange(len(R)), R.dtype))
    matches.sort(key=_rank)
    return matches, tried


def _recheck(m: Match, net, x, R, classes, rtol, estimate, dtype, rows) -> Match:
    """Match ``m`` judged again on the samples ``rows`` (indices into the batch)."""
    R_try = _attempt(net, x[rows], classes[rows], m.candidate)
    if R_try is None:
        return replace(m, explained=rows[:0])
    args = (m.candidate, classes[rows], rtol, estimate[rows], dtype)
    cmp = _judge(net, x[rows], R[rows], R_try, *args, partial=True)
    return _match(m.candidate, cmp, rows, R.dtype, m.group)


def _diagnose_failing(net, x, R, R_ref, failing, *, target, classes, estimate, dtype, **kw):
    """:func:`diagnose` on the failing samples ``failing`` (indices into the batch).

    Each search looks at the first :data:`DIAGNOSIS_SAMPLES` samples still unexplained; its
    matches are then judged on all of them, so that a match names the samples it explains.
    Up to :data:`DIAGNOSIS_ROUNDS` searches, each on what the best matches so far left
    unexplained; in a batch that a first search showed to be mixed, a search that finds
    nothing is retried on the first :data:`DIAGNOSIS_RETRY` (the next block of samples may
    begin within the first 32). Returns the matches (by search, each best first) and the
    configurations tried.
    """
    matches, tried, left, size = [], 0, np.asarray(failing), DIAGNOSIS_SAMPLES
    for _ in range(DIAGNOSIS_ROUNDS):
        rows = left[:size]
        t = target if np.ndim(target) == 0 else np.asarray(target)[rows]
        found, n = diagnose(
            net, x[rows], R[rows], R_ref[rows], target=t, classes=classes[rows],
            estimate=estimate[rows], dtype=dtype, **kw,
        )  # fmt: skip
        tried += n
        found = _on_all(found, matches, rows, left, net, x, R, classes, kw["rtol"], estimate, dtype)
        if not found:
            if not matches or len(rows) <= DIAGNOSIS_RETRY:
                break
            size = DIAGNOSIS_RETRY
            continue
        matches += found
        left, size = np.setdiff1d(left, found[0].explained), DIAGNOSIS_SAMPLES
        if not len(left):
            break
    return matches, tried


def _on_all(found, matches, rows, left, net, x, R, classes, rtol, estimate, dtype) -> list[Match]:
    """The new matches of a search on ``rows``, judged on all of ``left``, best first."""
    group = len({m.group for m in matches})
    known = {m.candidate.description for m in matches}
    found = [replace(m, group=group) for m in found if m.candidate.description not in known]
    if len(rows) == len(left):  # the search saw them all
        found = [replace(m, explained=rows[m.explained]) for m in found]
    else:
        found = [_recheck(m, net, x, R, classes, rtol, estimate, dtype, left) for m in found]
    return sorted((m for m in found if len(m.explained)), key=_rank)


def _precision_level(rel: np.ndarray, dtype) -> str | None:
    """The precision below ``dtype`` at whose rounding level the errors ``rel`` (per sample,
    relative to ``max |R_ref|``) are: their largest within :data:`PRECISION_BAND` times its
    unit roundoff (float16: 2**-11), or None."""
    if not len(rel) or not np.isfinite(rel).all():
        return None
    top = float(rel.max())
    for low in (np.float32, np.float16):
        u = unit_roundoff(low)
        if u > unit_roundoff(dtype) and PRECISION_BAND[0] * u <= top <= PRECISION_BAND[1] * u:
            return np.dtype(low).name
    return None


def _preset_eps(method: str, current: float) -> dict[float, list[str]]:
    """The stabilizer epsilons other than ``current`` that the presets use for ``method``."""
    out: dict[float, list[str]] = {}
    for name, q in PRESETS.items():
        if method in q.missing:
            continue
        eps = q.full_options(method).get("eps")
        if eps is not None and eps != current:
            out.setdefault(eps, []).append(name)
    return dict(sorted(out.items()))


def _indistinguishable(net, x, R, R_ref, method, p, options, seed, classes, rtol, estimate):
    """The presets' other epsilons for ``method`` under which ``R`` passes too.

    Below the candidate's resolution a stabilizer difference does not show: e.g. Captum's
    1e-9 and Zennit's 1e-6 where no denominator is near 1e-6 in float32. Alternatives that give
    the reference's own numbers are left out (they are the same convention here).
    """
    current = {**p.full_options(method, **_rule_options(options)), "seed": seed}
    if "eps" not in current:
        return []
    out = []
    for eps, names in _preset_eps(method, current["eps"]).items():
        cand = Candidate(f"eps={eps!r}", method, p, {**current, "eps": eps}, {"eps": eps})
        R_alt = _attempt(net, x, classes, cand)
        if R_alt is None or np.array_equal(R_alt.reshape(R_ref.shape), R_ref):
            continue
        if compare(R, R_alt, rtol, estimate).passed:
            entry = {"option": "eps", "reference": current["eps"], "alternative": eps}
            out.append({**entry, "as_in_presets": names})
    return out


# --- verify -------------------------------------------------------------------------------------


def _reference_net(net: Sequential) -> Sequential:
    """``net`` in float64 (a copy if it is not): the reference is always computed in float64."""
    return net if net.dtype == np.float64 else copy.deepcopy(net).astype(np.float64)


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
    R : ndarray of float32 or float64, n x d values
        The candidate relevances, any shape holding ``n * d`` values (reshaped per sample).
    method : str
        One of :data:`refimpl.explain.methods.METHODS`.
    target, preset, rules, options
        As for :func:`refimpl.explain.methods.explain`.
    rtol : float, optional
        Per-sample relative tolerance; default 1e-10 when both the candidate and the net are
        float64, else 1e-5 (float32 on either side).
    diagnose_mismatch : bool
        On a mismatch, search the conventions for one that explains it.

    Notes
    -----
    The reference is computed in float64 (on a float64 copy of a float32 net), and each sample's
    tolerance is ``rtol * max |R_ref| + 32 S`` with ``S`` the spread of the result under rounding
    in the less precise of the candidate's and the net's dtypes
    (:func:`refimpl.explain.rounding.rounding_estimate`).

    A candidate with NaN or inf gets that as its diagnosis (where, by sample), with no search.
    Otherwise the diagnosis (:func:`_diagnose_failing`) searches on up to
    :data:`DIAGNOSIS_SAMPLES` failing samples and judges its matches on all of them; each
    :class:`Match` lists the samples it explains. In float32 (or a float32 net) a pass lists in
    :attr:`Report.indistinguishable` the other presets' epsilons for the rule under which the
    candidate passes as well: a stabilizer difference below the candidate's resolution (e.g.
    Captum's 1e-9 against 1e-7) cannot be detected.
    """
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a refimpl Sequential, got {type(net).__name__}")
    R = np.asarray(R)
    if R.dtype not in DEFAULT_RTOL:
        raise TypeError(
            f"candidate relevances must be float32 or float64, got dtype {R.dtype}; cast them "
            "and choose rtol for their precision"
        )
    x = net.check_input(x)
    if len(x) == 0:
        raise ValueError("x holds no samples: nothing to verify")
    if R.size != x.size:
        raise ValueError(
            f"candidate relevances have shape {R.shape} ({R.size} values); expected the input's "
            f"{x.shape} ({x.size} values)"
        )
    R = R.reshape(x.shape)
    if rtol is None:
        rtol = max(DEFAULT_RTOL[R.dtype], DEFAULT_RTOL[net.dtype])
    rtol = check_positive(rtol, "rtol")
    p = get_preset(preset)
    net64, x64 = _reference_net(net), x.astype(np.float64)
    ref = explain(net64, x64, method, target=target, rules=rules, preset=p, **options)
    c = ref.target
    seed = options.get("seed", p.seed) if (method in RULES or method == "lrp") else None
    # the precision the candidate was computed in: the lower of its own and the model's
    low = np.float32 if np.dtype(np.float32) in (R.dtype, net.dtype) else np.float64

    def compute(n_, x_):
        t = target if c is None else c  # fixed classes: a perturbation must not flip them
        return explain(n_, x_, method, target=t, rules=rules, preset=p, **options).R

    S = rounding_estimate(compute, net64, x64, low)
    cmp = compare(R, ref.R, rtol, S)
    R64 = R.astype(np.float64).reshape(len(R), -1)
    R_ref = ref.R.reshape(len(R), -1)
    with np.errstate(over="ignore"):  # a huge but finite candidate: its sums may overflow
        sum_candidate = R64.sum(axis=1)
    report = Report(
        method=method,
        preset=p.name,
        rule=p.rule(method, **_rule_options(options)).describe() if method in RULES else None,
        seed=seed,
        rtol=rtol,
        f=ref.f,
        target=c,
        sum_candidate=sum_candidate,
        sum_reference=R_ref.sum(axis=1),
        reference_max=np.abs(R_ref).max(axis=1),
        comparison=cmp,
        nonfinite=int((~np.isfinite(R64)).sum()),
        dtype=np.dtype(low).name,
    )
    if report.nonfinite:
        report.note = _nonfinite_cause(R64, cmp)
        return report
    if cmp.passed:
        if low != np.float64 and method in RULES and rules is None:
            args = (method, p, options, seed, c, rtol, S)
            report.indistinguishable = _indistinguishable(net64, x64, R, ref.R, *args)
        return report
    if not diagnose_mismatch:
        return report
    if rules is not None or method == "taylor":
        report.note = (
            "the diagnosis covers single-rule LRP methods and the gradient methods; for a rule "
            "map or Taylor, verify layer rules one at a time"
        )
        return report
    report.diagnosis, report.tried = _diagnose_failing(
        net64,
        x64,
        R,
        ref.R,
        report.failing,
        method=method,
        target=target,
        classes=c,
        preset=p,
        options=options,
        seed=seed,
        rtol=rtol,
        estimate=S,
        dtype=low,
    )
    report.precision = _precision_level(cmp.rel_error[report.unexplained()], low)
    return report


def _nonfinite_cause(R: np.ndarray, cmp: Comparison) -> str:
    """The diagnosis of a candidate with NaN or inf: that is the cause; no search is run."""
    others = int((cmp.finite & ~cmp.ok).sum())
    return (
        _nonfinite_note(R)
        + " (no convention search: the reference is finite everywhere; a peer gives NaN or inf "
        "where it divides by a zero denominator, refimpl drops that share)"
        + (f"; {others} finite sample(s) fail too" if others else "")
    )


def _rule_options(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "seed"}
