"""One LRP step through a dense layer, shared by every rule, with its relevance budget.

For each term of the rule (see :mod:`refimpl.explain.rules`)::

    z_k  = sum_m (g_m @ h_m)_k              contributions summed over inputs
    d_k  = z_k + bias_k + delta(z_k + bias_k)   denominator, delta from the stabilizer
    s_k  = mult R_k mask_k / d_k            (0 where d_k = 0: that share is dropped)
    R_j += sum_m g_m,j (s @ h_m^T)_j

so ``sum_j R_j = sum_k s_k z_k`` and the rest of each share is booked exactly: ``s_k bias_k``
absorbed by the bias, ``s_k delta_k`` by the stabilizer, the whole share where ``d_k = 0``
dropped, and relevance no term serves (e.g. a unit with ``z_k = 0`` under the generalized gamma
rule) dropped too. Hence, per sample, ``sum_j R_j + bias + stabilizer + dropped = sum_k R_k``.

Finite inputs can still overflow or lose precision here; each step is checked and raises
``ValueError`` naming the quantity: contributions ``z`` that overflow (huge rule options such as
gamma or z^B bounds), subnormal denominators (``0 < |d| < tiny``: shares ``R / d`` would lose
precision or overflow), and shares, relevances or budget sums that are not finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_result, describe_samples
from .rules import Rule


@dataclass
class LayerBudget:
    """Where one layer's relevance went, per sample (arrays of shape ``(n,)``).

    ``relevance_out = relevance_in + bias + stabilizer + dropped`` up to rounding.
    """

    relevance_out: np.ndarray
    relevance_in: np.ndarray
    bias: np.ndarray
    stabilizer: np.ndarray
    dropped: np.ndarray

    @property
    def absorbed(self) -> np.ndarray:
        return self.bias + self.stabilizer + self.dropped


@np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
def propagate_dense(
    rule: Rule, a: np.ndarray, W: np.ndarray, b: np.ndarray | None, R: np.ndarray
) -> tuple[np.ndarray, LayerBudget]:
    """Redistribute ``R`` (n, K) from a dense layer's outputs to its inputs ``a`` (n, J).

    Returns the input relevance ``(n, J)`` and the layer's :class:`LayerBudget`.
    """
    n = a.shape[0]
    R_in = np.zeros_like(a)
    bias_sum = np.zeros(n, dtype=a.dtype)
    stab_sum = np.zeros(n, dtype=a.dtype)
    dropped = np.zeros(n, dtype=a.dtype)
    served = np.zeros_like(R)
    stabilizer = rule.stabilizer
    for term in rule.terms(a, W, b):
        z = sum(g @ h for g, h in term.parts)
        check_result(
            z,
            "the sum of the rule's contributions z_k",
            "their sums overflow {dtype} (rule options or weights too large for this rule)",
        )
        d = z + term.bias if term.bias is not None else np.broadcast_to(z, R.shape)
        delta = stabilizer.delta(d) if stabilizer is not None else None
        if delta is not None:
            d = d + delta
        _check_denominator(d)
        share = term.mult * R if term.mask is None else term.mult * R * term.mask
        zero = d == 0
        s = np.divide(share, d, out=np.zeros_like(share), where=~zero)
        check_result(
            s,
            "the shares R / z",
            lambda d=d, zero=zero: (
                f"relevance up to {np.abs(R).max():.3g} divided by "
                f"denominators as small as {np.abs(d[~zero]).min():.3g} overflows {d.dtype}"
            ),
        )
        for g, h in term.parts:
            R_in += g * (s @ h.T)
        if term.bias is not None:
            bias_sum += s @ term.bias
        if delta is not None:
            stab_sum += (s * delta).sum(axis=1)
        dropped += (share * zero).sum(axis=1)
        served += term.mult if term.mask is None else term.mult * term.mask
    dropped += (R * (1 - served)).sum(axis=1)
    check_result(R_in, "the relevance R_j", "the redistributed relevance overflows {dtype}")
    budget = LayerBudget(R.sum(axis=1), R_in.sum(axis=1), bias_sum, stab_sum, dropped)
    for name in ("relevance_in", "bias", "stabilizer", "dropped"):
        check_result(
            getattr(budget, name),
            f"the budget's {name.replace('_', ' ')} sum",
            "the per-sample sum overflows {dtype}",
        )
    return R_in, budget


def _check_denominator(d: np.ndarray) -> None:
    """Raise if a denominator is subnormal: its shares ``R / d`` lose precision or overflow."""
    tiny = np.finfo(d.dtype).tiny
    sub = (np.abs(d) < tiny) & (d != 0)
    if sub.any():
        rows = np.flatnonzero(sub.any(axis=1))
        raise ValueError(
            f"denominators z are subnormal (as small as {np.abs(d[sub]).min():.3g}, below "
            f"{tiny:.3g}) for {describe_samples(rows, len(d))}: the shares R / z would lose "
            f"precision or overflow in {d.dtype}; inputs or weights too small for {d.dtype} "
            "(rescale them, or use a stabilizer eps > 0)"
        )
