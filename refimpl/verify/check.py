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

import numpy as np

from .._checks import check_positive
from ..explain.lrp import RuleMap
from ..explain.methods import explain
from ..explain.prepared import shared_parameters
from ..explain.presets import Preset
from ..explain.presets import preset as get_preset
from ..explain.rounding import rounding_estimate
from ..explain.rules import RULES
from ..nn.network import Sequential
from .comparison import DEFAULT_RTOL, Comparison, compare
from .diagnosis import _diagnose_failing, _indistinguishable, _precision_level, _rule_options
from .report import Report, _nonfinite_note


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
    with shared_parameters(net64):  # reference, rounding estimate and diagnosis
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
