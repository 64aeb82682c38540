"""The diagnosis of a mismatch: candidate conventions (presets, single options and pairs,
seeding, target, other methods), judged on every failing sample, ranked."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations, product

import numpy as np

from ..explain.gradient import SENSITIVITY_OUTPUTS
from ..explain.lrp import lrp
from ..explain.methods import METHODS, explain
from ..explain.output import SEEDS
from ..explain.presets import PRESETS, Preset, effective_options
from ..explain.rounding import rounding_estimate, unit_roundoff
from ..explain.rules import (
    CHOICE_OPTIONS,
    RULES,
    alpha_beta_sum_error,
    choices_by_rule,
    make_rule,
)
from ..nn.network import Sequential
from .comparison import Comparison, compare

EPS_GRID = (1e-16, 1e-9, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.25, 1.0)
DIAGNOSIS_SAMPLES = 32  # the failing samples each search of the diagnosis looks at
DIAGNOSIS_ROUNDS = 4  # searches: the first failing samples, then those still unexplained
DIAGNOSIS_RETRY = 8  # samples of a retried search, in a batch found to be mixed
PRECISION_BAND = (0.125, 4.0)  # max rel. error / unit roundoff of a lower precision: its level


# the values each rule option can take, for the search (eps handled separately)
# the conventions tried per rule: each option's declared choices (refimpl.explain.rules.choice)
_DOMAINS = {name: choices_by_rule(name) for name in CHOICE_OPTIONS}
# parameters the user chose (kept when trying other conventions), not conventions
_PARAMETERS = ("alpha", "beta", "gamma", "low", "high")


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


def _rule_options(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "seed"}
