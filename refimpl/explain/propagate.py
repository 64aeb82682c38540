"""One LRP step through any linear layer, shared by every rule, with its relevance budget.

For each term of the rule (see :mod:`refimpl.explain.rules`), with the layer's map ``linear``
(``x @ W`` for a dense layer), its adjoint ``linear_T`` (``s @ W.T``) and the named weight
transforms ``h_m`` (``"w+"``, ...; prepared once, :mod:`refimpl.explain.prepared`)::

    z_k  = sum_m linear(g_m, h_m)_k            contributions summed over inputs
    d_k  = z_k + bias_k + delta(z_k + bias_k)   denominator, delta from the stabilizer
    s_k  = mult R_k mask_k / d_k                (0 where d_k = 0: that share is dropped)
    R_j += sum_m g_m,j linear_T(s, h_m)_j

so ``sum_j R_j = sum_k s_k z_k`` and the rest of each share is booked exactly: ``s_k bias_k``
absorbed by the bias, ``s_k delta_k`` by the stabilizer, the whole share where ``d_k = 0``
dropped, and relevance no term serves (e.g. a unit with ``z_k = 0`` under the generalized gamma
rule) dropped too. Hence, per sample, ``sum_j R_j + bias + stabilizer + dropped = sum_k R_k``,
with every sum over all non-batch axes. Where a term says so (LRP-0 and epsilon with the bias),
``z_k + bias_k`` is the forward pass's pre-activation, reused (bitwise the same).

Finite inputs can still overflow or lose precision here; each step is checked and raises
``ValueError`` naming the quantity: contributions ``z`` that overflow (huge rule options such as
gamma or z^B bounds), subnormal denominators (``0 < |d| < tiny``: shares ``R / d`` would lose
precision or overflow), and shares, relevances or budget sums that are not finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_result, describe_samples
from ..nn.layers import Dense
from .prepared import ONES, PreparedParameters, Transform
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


def batch_sum(x: np.ndarray) -> np.ndarray:
    """Per-sample sum over every non-batch axis, shape ``(n,)``."""
    return x.reshape(len(x), -1).sum(axis=1)


class LinearStep:
    """What a rule may ask of the layer it is applied to (``Rule.terms(a, layer)``).

    Attributes
    ----------
    layer : Layer
        A layer whose ``relevance`` is ``"linear"`` (``linear``, ``linear_T``, ``add_bias``,
        ``bias_dot``).
    has_bias : bool
        Whether the layer has a bias.
    """

    def __init__(self, layer, a: np.ndarray, z: np.ndarray | None, prepared: PreparedParameters):
        self.layer, self.a, self._z, self.prepared = layer, a, z, prepared
        self.has_bias = layer.linear_params.get("b") is not None

    def param(self, t: Transform) -> np.ndarray:
        """The layer's parameter under transform ``t`` (prepared once)."""
        return self.prepared.get(self.layer, t)

    def linear(self, g: np.ndarray, t: Transform) -> np.ndarray:
        """``linear(g, t(W))``: the layer's map of ``g`` with transformed weights, no bias."""
        return self.layer.linear(g, self.param(t))

    def linear_of_ones(self, t: Transform) -> np.ndarray:
        """``linear(ones, t(W))`` (rules that ignore the input), prepared once."""
        return self.prepared.linear_of_ones(self.layer, t, self.a.shape[1:], self.a.dtype)

    def z_forward(self) -> np.ndarray:
        """The forward pre-activation ``linear(a, W) + b`` (from the forward pass if given)."""
        if self._z is None:
            z = self.linear(self.a, "w")
            self._z = self.layer.add_bias(z, self.layer.linear_params["b"]) if self.has_bias else z
        return self._z


@np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
def propagate_linear(
    rule: Rule,
    layer,
    a: np.ndarray,
    R: np.ndarray,
    *,
    z: np.ndarray | None = None,
    prepared: PreparedParameters | None = None,
) -> tuple[np.ndarray, LayerBudget]:
    """Redistribute ``R`` from a linear layer's outputs to its inputs ``a`` by ``rule``.

    Parameters
    ----------
    rule : Rule
    layer : Layer
        With ``relevance == "linear"`` (a dense layer; convolutions alike).
    a : ndarray
        The layer's input, ``(n, ...)``.
    R : ndarray
        Relevance of the layer's outputs, the output's shape.
    z : ndarray, optional
        The forward pass's output of this layer (pre-activation, with bias), reused as the
        denominator where the rule allows; computed when omitted.
    prepared : PreparedParameters, optional
        Transformed parameters to reuse across calls; a fresh one by default.

    Returns
    -------
    R_in, LayerBudget
        The input relevance (``a``'s shape) and where the layer's relevance went.
    """
    step = LinearStep(layer, a, z, PreparedParameters() if prepared is None else prepared)
    n = a.shape[0]
    dt = R.dtype
    R_in = None
    bias_sum = np.zeros(n, dtype=a.dtype)
    stab_sum = np.zeros(n, dtype=a.dtype)
    dropped = np.zeros(n, dtype=a.dtype)
    served = dt.type(0)  # an array once a term has a mask
    shares = []  # (s, d, zero) per term, to name an overflow
    stabilizer = rule.stabilizer
    nonzero = stabilizer is not None and stabilizer.keeps_denominators_normal(dt)
    for term in rule.terms(a, step):
        bias = step.param(term.bias) if term.bias is not None and step.has_bias else None
        if term.forward_z:
            d = step.z_forward()
        else:
            z_t = None
            for g, t in term.parts:
                p = step.linear_of_ones(t) if g is ONES else step.linear(g, t)
                z_t = p if z_t is None else z_t + p
            if not np.isfinite(z_t.sum()):  # one pass; the full check names the samples
                check_result(
                    z_t,
                    "the sum of the rule's contributions z_k",
                    "their sums overflow {dtype} (rule options or weights too large for this rule)",
                )
            d = layer.add_bias(z_t, bias) if bias is not None else np.broadcast_to(z_t, R.shape)
        delta = stabilizer.delta(d) if stabilizer is not None else None
        if delta is not None:
            d = d + delta
        zero = None if nonzero else _zero_denominators(d)
        share = R if term.mult == 1 else term.mult * R
        if term.mask is not None:
            share = share * term.mask
        s = (
            share / d
            if zero is None
            else np.divide(share, d, out=np.zeros_like(share), where=~zero)
        )
        shares.append((s, d, zero))
        for g, t in term.parts:
            contribution = layer.linear_T(s, step.param(t), a.shape[1:])
            if g is not ONES:
                contribution *= g
            if R_in is None:
                R_in = contribution
            else:
                R_in += contribution
        if bias is not None:
            bias_sum += layer.bias_dot(s, bias)
        if delta is not None:
            stab_sum += batch_sum(s * delta)
        if zero is not None:
            dropped += batch_sum(share * zero)
        served = served + (term.mult if term.mask is None else (term.mult * term.mask).astype(dt))
    if np.ndim(served) or served != 1:
        dropped += batch_sum(R * (1 - served))
    budget = LayerBudget(batch_sum(R), batch_sum(R_in), bias_sum, stab_sum, dropped)
    # a NaN or inf anywhere in R_in makes its per-sample sum non-finite: check the sums first
    if not np.isfinite(budget.relevance_in + bias_sum + stab_sum + dropped).all():
        for s, d, zero in shares:  # an overflowing share makes R_in non-finite: name it first
            check_result(
                s,
                "the shares R / z",
                lambda d=d, zero=zero: (
                    f"relevance up to {np.abs(R).max():.3g} divided by denominators as small as "
                    f"{np.abs(d if zero is None else d[~zero]).min():.3g} overflows {d.dtype}"
                ),
            )
        check_result(R_in, "the relevance R_j", "the redistributed relevance overflows {dtype}")
        for name in ("relevance_in", "bias", "stabilizer", "dropped"):
            check_result(
                getattr(budget, name),
                f"the budget's {name.replace('_', ' ')} sum",
                "the per-sample sum overflows {dtype}",
            )
    return R_in, budget


def propagate_dense(
    rule: Rule, a: np.ndarray, W: np.ndarray, b: np.ndarray | None, R: np.ndarray
) -> tuple[np.ndarray, LayerBudget]:
    """:func:`propagate_linear` through a dense layer ``z = a @ W + b`` given as arrays.

    ``R`` (n, K) is redistributed onto the inputs ``a`` (n, J); returns the input relevance
    ``(n, J)`` and the layer's :class:`LayerBudget`.
    """
    return propagate_linear(rule, Dense(W, b), a, R)


def _zero_denominators(d: np.ndarray) -> np.ndarray | None:
    """The mask of exact zero denominators (None if there are none); raise on subnormal ones.

    A subnormal denominator (``0 < |d| < tiny``) would make the shares ``R / d`` lose precision
    or overflow. One pass finds both in the usual case that there are neither.
    """
    tiny = np.finfo(d.dtype).tiny
    small = np.abs(d) < tiny
    if not small.any():
        return None
    zero = d == 0
    sub = small & ~zero
    if sub.any():
        rows = np.flatnonzero(sub.reshape(len(sub), -1).any(axis=1))
        raise ValueError(
            f"denominators z are subnormal (as small as {np.abs(d[sub]).min():.3g}, below "
            f"{tiny:.3g}) for {describe_samples(rows, len(d))}: the shares R / z would lose "
            f"precision or overflow in {d.dtype}; inputs or weights too small for {d.dtype} "
            "(rescale them, or use a stabilizer eps > 0)"
        )
    return zero
