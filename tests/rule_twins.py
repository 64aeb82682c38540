"""Slow twins of every LRP rule for one dense layer, written straight from the formulas.

Each ``twin_<rule>(a, W, b, R, **options)`` builds the rule's contributions as explicit
``(n, J, K)`` tensors ``c_njk`` (one per term: alpha-beta has a positive and a negative one) and
redistributes ``R`` (n, K) onto the inputs ``a`` (n, J) with :func:`redistribute`::

    d_nk  = sum_j c_njk + bias_k                 denominator before the stabilizer
    d'_nk = d_nk + delta(d_nk)                   stabilized denominator (delta = 0 without one)
    R_nj += mult c_njk / d'_nk R_nk              for every unit k the term serves
            (nothing where d'_nk == 0: that share is *dropped*, never NaN)

This deliberately avoids refimpl's ``Term``/``propagate_dense`` machinery: contributions are
materialized, nothing is factorized, and every option is a plain ``if`` on the formula of the rule
docstrings in ``refimpl/explain/rules.py``.

Every twin returns a :class:`TwinResult`: the input relevance ``R`` first, then where the rest of
``R`` went (``bias``, ``stabilizer``, ``dropped``, each per sample) and error scales used by the
tests to state rounding tolerances (see :class:`TwinResult`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refimpl.nn.layers import Dense

KINDS = ("signed", "unsigned", "zero_only", "relative")


class TwinResult(NamedTuple):
    """One layer's redistribution, computed the slow way.

    Attributes
    ----------
    R : (n, J)
        Input relevance.
    bias, stabilizer, dropped : (n,)
        Relevance absorbed by the bias, by the stabilizer, and dropped (zero denominators and the
        part of ``R_k`` that no term serves: ``R_k (1 - sum_t mult_t mask_tk)``).
    scale : (n, J)
        Rounding scale of ``R``:
        ``sum_{t,k} m_njk |mult_t| (|R_nk| + E_nk) / |d'_nk| (1 + kappa_nk)``
        with ``m`` the magnitude of the products that make ``c`` (``|c|``, or for z^B
        ``|x w| + |l w+| + |h w-|``), ``E`` the rounding scale of the incoming ``R`` (zero for a
        single layer) and ``kappa = (sum_j m_njk + |bias_k| + |delta_nk|) / |d'_nk|`` the condition
        number of the denominator. A correct float64 implementation differs from the twin by a
        few ``1e-16 * scale``; a wrong formula by O(|R|).
    budget_scale : (n,)
        The same for the budget entries: ``sum_{t,k} |mult_t| (|R_nk| + E_nk) / |d'_nk|
        (sum_j m_njk + |bias_k| + |delta_nk|) (1 + kappa_nk) + sum_k (|R_nk| + E_nk)``.
    """

    R: np.ndarray
    bias: np.ndarray
    stabilizer: np.ndarray
    dropped: np.ndarray
    scale: np.ndarray
    budget_scale: np.ndarray


class Share(NamedTuple):
    """One term: contributions ``c`` (n, J, K), their magnitudes ``m``, bias (K,), mult, mask."""

    c: np.ndarray
    m: np.ndarray
    bias: np.ndarray
    mult: float = 1.0
    mask: np.ndarray | None = None  # (n, K) bool: the units this term serves; None = all


def pos(x):
    return np.maximum(x, 0.0)


def neg(x):
    return np.minimum(x, 0.0)


def sign0(d):
    """``sign(d)`` with ``sign(0) = +1``."""
    return np.where(d >= 0, 1.0, -1.0)


def stabilizer_delta(d: np.ndarray, eps: float, kind: str) -> np.ndarray:
    """What the stabilizer adds to the denominators ``d`` (n, K).

    signed ``eps sign(d)``; unsigned ``eps``; zero_only ``eps`` where ``d == 0`` else 0;
    relative ``eps std_k(d) sign(d)``, the (population) std over the K units of each sample.
    """
    if kind == "signed":
        return eps * sign0(d)
    if kind == "unsigned":
        return np.full_like(d, eps)
    if kind == "zero_only":
        return np.where(d == 0, eps, 0.0)
    if kind == "relative":
        mean = d.mean(axis=1, keepdims=True)
        std = np.sqrt(((d - mean) ** 2).mean(axis=1, keepdims=True))
        return eps * std * sign0(d)
    raise ValueError(kind)


def contributions(a: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``c_njk = a_nj w_jk`` as an explicit (n, J, K) tensor."""
    return a[:, :, None] * W[None, :, :]


def redistribute(shares, R, *, eps=0.0, kind="signed", R_scale=None) -> TwinResult:
    """``R_j = sum_t mult_t sum_k c^t_jk / d'^t_k R_k`` and the budget, for the terms ``shares``."""
    n, K = R.shape
    J = shares[0].c.shape[1]
    E = np.zeros_like(R) if R_scale is None else R_scale
    R_in = np.zeros((n, J))
    scale = np.zeros((n, J))
    bias_taken = np.zeros(n)
    stab_taken = np.zeros(n)
    dropped = np.zeros(n)
    budget_scale = (np.abs(R) + E).sum(axis=1)
    served = np.zeros((n, K))
    for t in shares:
        mask = np.ones((n, K), bool) if t.mask is None else t.mask
        d = t.c.sum(axis=1) + t.bias[None, :]  # (n, K)
        delta = stabilizer_delta(d, eps, kind) if eps else np.zeros_like(d)
        mag = t.m.sum(axis=1) + np.abs(t.bias)[None, :] + np.abs(delta)  # (n, K)
        if eps and kind == "relative":  # delta depends on every unit's denominator
            mag = mag + eps * mag.max(axis=1, keepdims=True)
        d = d + delta
        share = np.where(mask, t.mult * R, 0.0)
        zero = d == 0
        dropped += np.where(zero, share, 0.0).sum(axis=1)
        safe = np.where(zero, 1.0, d)
        s = np.where(zero, 0.0, share / safe)  # per unit: mult R_k / d'_k
        kappa = np.where(zero, 0.0, mag / np.abs(safe))
        w_abs = np.where(zero | ~mask, 0.0, abs(t.mult) * (np.abs(R) + E) / np.abs(safe))
        R_in += np.einsum("njk,nk->nj", t.c, s)
        scale += np.einsum("njk,nk->nj", t.m, w_abs * (1 + kappa))
        bias_taken += (s * t.bias[None, :]).sum(axis=1)
        stab_taken += (s * delta).sum(axis=1)
        budget_scale += (w_abs * mag * (1 + kappa)).sum(axis=1)
        served += np.where(mask, t.mult, 0.0)
    dropped += (R * (1 - served)).sum(axis=1)
    return TwinResult(R_in, bias_taken, stab_taken, dropped, scale, budget_scale)


def _bias_or_zero(b, K, use: bool):
    return np.asarray(b, float) if (use and b is not None) else np.zeros(K)


def _plain(c):
    return Share(c, np.abs(c), None)


# --------------------------------------------------------------------------- the rules


def twin_lrp0(a, W, b, R, *, bias="full", R_scale=None):
    """LRP-0: ``R_j = sum_k a_j w_jk / (sum_j a_j w_jk [+ b_k]) R_k``; bias "full" or "none"."""
    assert bias in ("full", "none")
    c = contributions(a, W)
    return redistribute(
        [Share(c, np.abs(c), _bias_or_zero(b, W.shape[1], bias == "full"))], R, R_scale=R_scale
    )


def twin_epsilon(a, W, b, R, *, eps, stabilizer="signed", bias="full", R_scale=None):
    """LRP-epsilon: LRP-0 with the stabilized denominator ``d + delta(d)`` (stabilizer_delta)."""
    assert bias in ("full", "none") and stabilizer in KINDS and eps > 0
    c = contributions(a, W)
    b_ = _bias_or_zero(b, W.shape[1], bias == "full")
    return redistribute([Share(c, np.abs(c), b_)], R, eps=eps, kind=stabilizer, R_scale=R_scale)


def _signed_contributions(a, W, inputs):
    """Positive and negative contributions for alpha-beta and z+."""
    if inputs == "nonnegative":
        if (a < 0).any():
            raise ValueError("negative input")
        inputs = "weights"  # for a >= 0 both splits agree
    c = contributions(a, W)
    if inputs == "split":  # split on the sign of each product a_j w_jk
        return pos(c), neg(c)
    assert inputs == "weights"  # a_j w+_jk and a_j w-_jk
    return contributions(a, pos(W)), contributions(a, neg(W))


def _signed_biases(b, K, bias):
    if b is None or bias == "none":
        return np.zeros(K), np.zeros(K)
    if bias == "split":
        return pos(b), neg(b)
    assert bias == "full"
    return np.asarray(b, float), np.asarray(b, float)


def twin_alpha_beta(
    a,
    W,
    b,
    R,
    *,
    alpha,
    beta,
    bias="none",
    inputs="nonnegative",
    eps=0.0,
    stabilizer="signed",
    R_scale=None,
):
    """Alpha-beta, eq. 4.10-4.13::

    R_j = sum_k (alpha c+_jk / (sum_j c+_jk + b+_k) - beta c-_jk / (sum_j c-_jk + b-_k)) R_k

    with ``c+ = a w+``, ``c- = a w-`` (inputs "nonnegative"/"weights") or ``c+- = (a w)^+-``
    ("split"), and ``b+- = 0`` ("none"), ``b^+-`` ("split") or ``b`` ("full").
    """
    cp, cn = _signed_contributions(a, W, inputs)
    bp, bn = _signed_biases(b, W.shape[1], bias)
    shares = [Share(cp, np.abs(cp), bp, alpha), Share(cn, np.abs(cn), bn, -beta)]
    return redistribute(shares, R, eps=eps, kind=stabilizer, R_scale=R_scale)


def twin_zplus(
    a, W, b, R, *, bias="none", inputs="nonnegative", eps=0.0, stabilizer="signed", R_scale=None
):
    """z+: ``R_j = sum_k c+_jk / (sum_j c+_jk + b+_k) R_k`` (the positive half of alpha-beta)."""
    cp, _ = _signed_contributions(a, W, inputs)
    bp, _ = _signed_biases(b, W.shape[1], bias)
    return redistribute([Share(cp, np.abs(cp), bp)], R, eps=eps, kind=stabilizer, R_scale=R_scale)


def twin_zb(a, W, b, R, *, low=-1.0, high=1.0, eps=0.0, stabilizer="signed", R_scale=None):
    """z^B: ``c_ij = x_i w_ij - l_i w+_ij - h_i w-_ij``, no bias; bounds scalar or (J,)."""
    J = a.shape[1]
    low = np.broadcast_to(np.asarray(low, float), (J,))
    high = np.broadcast_to(np.asarray(high, float), (J,))
    if ((a < low) | (a > high)).any():
        raise ValueError("input outside the box")
    xw = contributions(a, W)
    lw = (low[:, None] * pos(W))[None]
    hw = (high[:, None] * neg(W))[None]
    c = xw - lw - hw
    m = np.abs(xw) + np.abs(lw) + np.abs(hw)
    return redistribute(
        [Share(c, m, np.zeros(W.shape[1]))], R, eps=eps, kind=stabilizer, R_scale=R_scale
    )


def twin_wsquare(a, W, b, R, *, bias="none", eps=0.0, stabilizer="signed", R_scale=None):
    """w^2: ``R_j = sum_k w_jk^2 / (sum_j w_jk^2 [+ b_k^2]) R_k`` (bias "none" or "squared")."""
    n = a.shape[0]
    c = np.broadcast_to(W * W, (n, *W.shape))
    b_ = (
        np.asarray(b, float) ** 2 if (bias == "squared" and b is not None) else np.zeros(W.shape[1])
    )
    return redistribute([Share(c, c, b_)], R, eps=eps, kind=stabilizer, R_scale=R_scale)


def twin_flat(a, W, b, R, *, eps=0.0, stabilizer="signed", R_scale=None):
    """Flat: ``R_j = sum_k 1 / J R_k`` (every contribution 1, no bias)."""
    c = np.ones((a.shape[0], *W.shape))
    return redistribute(
        [Share(c, c, np.zeros(W.shape[1]))], R, eps=eps, kind=stabilizer, R_scale=R_scale
    )


def twin_gamma(
    a,
    W,
    b,
    R,
    *,
    gamma,
    variant="original",
    bias="full",
    inputs="nonnegative",
    eps=0.0,
    stabilizer="signed",
    R_scale=None,
):
    """Gamma rule.

    original: ``c_jk = a_j (w_jk + gamma w+_jk)``, bias ``b + gamma b+`` ("full"), ``b`` ("raw")
    or none; negative inputs raise with inputs="nonnegative".

    generalized (Zennit): ``z_k = sum_j a_j w_jk + b_k`` (b left out with bias="none");
    units with ``z_k > 0`` get ``c = a+ (w + gamma w+) + a- (w + gamma w-)``, bias ``b + gamma b+``,
    units with ``z_k < 0`` get ``c = a+ (w + gamma w-) + a- (w + gamma w+)``, bias
    ``b + gamma b-`` ("full"; "raw": ``b``; "none": no bias); units with ``z_k = 0`` nothing.
    """
    K = W.shape[1]
    bb = None if (b is None or bias == "none") else np.asarray(b, float)

    def bias_for(clamp):
        if bb is None:
            return np.zeros(K)
        return bb if bias == "raw" else bb + gamma * clamp(bb)

    up, down = W + gamma * pos(W), W + gamma * neg(W)
    if variant == "original":
        if inputs == "nonnegative" and (a < 0).any():
            raise ValueError("negative input")
        c = contributions(a, up)
        return redistribute(
            [Share(c, np.abs(c), bias_for(pos))], R, eps=eps, kind=stabilizer, R_scale=R_scale
        )
    assert variant == "generalized"
    z = contributions(a, W).sum(axis=1) + (0.0 if bb is None else bb[None, :])
    ap, an = pos(a), neg(a)
    c_up = contributions(ap, up) + contributions(an, down)  # one of a+, a- is 0: no cancellation
    c_down = contributions(ap, down) + contributions(an, up)
    shares = [
        Share(c_up, np.abs(c_up), bias_for(pos), 1.0, z > 0),
        Share(c_down, np.abs(c_down), bias_for(neg), 1.0, z < 0),
    ]
    return redistribute(shares, R, eps=eps, kind=stabilizer, R_scale=R_scale)


# --------------------------------------------------------------------------- whole network


class NetTwin(NamedTuple):
    """Whole-network LRP, the slow way.

    ``R``: input relevance; ``f``: explained logit per sample; ``layers[i]``: relevance entering
    ``net.layers[i]`` (``layers[-1]`` the output relevance), as ``lrp(..., keep_layers=True)``;
    ``scales[i]``: the rounding scale of ``layers[i]`` (see :class:`TwinResult`); ``steps[i]``:
    the :class:`TwinResult` of dense layer ``i``.
    """

    R: np.ndarray
    f: np.ndarray
    layers: list
    scales: list
    steps: dict


def twin_lrp_net(net, x, rules, target) -> NetTwin:
    """LRP through ``net`` with ``rules = {dense layer index: (twin function, options)}``.

    Output relevance: the logit of class ``target`` (an int, or one int per sample) in its row,
    zero elsewhere. Dense layers redistribute by their twin; every other layer (activation) passes
    relevance unchanged.
    """
    acts = [np.asarray(x, float)]
    for layer in net.layers:
        acts.append(layer.forward(acts[-1])[0])
    logits = acts[-1]
    n = logits.shape[0]
    c = np.broadcast_to(np.asarray(target), (n,))
    R = np.zeros_like(logits)
    for i in range(n):
        R[i, c[i]] = logits[i, c[i]]
    f = R.sum(axis=1)
    E = np.zeros_like(R)
    layers, scales, steps = [R], [E], {}
    for i in reversed(range(len(net.layers))):
        layer = net.layers[i]
        if isinstance(layer, Dense):
            fn, options = rules[i]
            step = fn(acts[i], layer.W, layer.b, R, R_scale=E, **options)
            R, E = step.R, step.scale
            steps[i] = step
        layers.insert(0, R)
        scales.insert(0, E)
    return NetTwin(R, f, layers, scales, steps)


# --------------------------------------------------------------------------- refimpl rule -> twin


def twin_for(rule):
    """The twin function and its options for a refimpl rule object (reads its public fields)."""
    from refimpl.explain import rules as r

    stab = {}
    if getattr(rule, "eps", 0.0) and not isinstance(rule, r.Epsilon):
        stab = {"eps": rule.eps, "stabilizer": rule.stabilizer_kind}
    if isinstance(rule, r.LRP0):
        return twin_lrp0, {"bias": rule.bias}
    if isinstance(rule, r.Epsilon):
        return twin_epsilon, {
            "eps": rule.eps,
            "stabilizer": rule.stabilizer_kind,
            "bias": rule.bias,
        }
    if isinstance(rule, r.AlphaBeta):
        return twin_alpha_beta, {
            "alpha": rule.alpha,
            "beta": rule.beta,
            "bias": rule.bias,
            "inputs": rule.inputs,
            **stab,
        }
    if isinstance(rule, r.ZPlus):
        return twin_zplus, {"bias": rule.bias, "inputs": rule.inputs, **stab}
    if isinstance(rule, r.ZB):
        return twin_zb, {"low": rule.low, "high": rule.high, **stab}
    if isinstance(rule, r.WSquare):
        return twin_wsquare, {"bias": rule.bias, **stab}
    if isinstance(rule, r.Flat):
        return twin_flat, stab
    if isinstance(rule, r.Gamma):
        return twin_gamma, {
            "gamma": rule.gamma,
            "variant": rule.variant,
            "bias": rule.bias,
            "inputs": rule.inputs,
            **stab,
        }
    raise TypeError(f"no twin for {rule!r}")


def twin_rules(net, default, first=None) -> dict:
    """``{dense layer index: (twin, options)}``: ``first`` on the first dense layer, else
    ``default``."""
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    return {
        i: twin_for(first if (pos_ == 0 and first is not None) else default)
        for pos_, i in enumerate(dense)
    }
