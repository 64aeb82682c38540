"""The verification report: verdict, errors, conservation, diagnosis, as text and strict JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._table import format_table
from .comparison import POPULATION_MEDIAN, UNRESOLVED, Comparison
from .diagnosis import Match, _only_eps_differs


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
