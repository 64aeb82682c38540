"""Comparing relevances with a stated tolerance: per sample, relative to max |R_ref|, or to the
computation's rounding scale where cancellation makes the result smaller than its parts.

``max |R - R_ref| <= rtol max |R_ref| + 128 u F`` per sample, where ``u`` is the unit roundoff of
the computation's dtype and ``F`` a rounding scale (omitted: 0). ``F`` is a worst-case bound (every
denominator's condition number), tight on the small nets drawn here; ``refimpl verify`` uses a
measured estimate instead (refimpl/explain/rounding.py), which stays tight on wide nets. ``F``
(:func:`rounding_scale`) is the larger of the explained output's forward pass in absolute values
(``|x| |W_1| ... |W_L| + |b|`` over the active units) and the largest per-input rounding scale of
the slow twin (tests/rule_twins.py: every product weighted by the condition number of its
denominator), divided by ``max(|f(x)|, 1e-6)`` when seeded with one-hot. A result that cancels is
only known to about ``u F`` (``u`` the unit roundoff), so no implementation can do better; a wrong
convention is off by O(max |R|).
"""

from __future__ import annotations

import copy

import numpy as np

from refimpl.nn.layers import Dense

from .rule_twins import twin_lrp_net, twin_rules


def rounding_scale(net, x, target, rule, seed="logit", first=None) -> np.ndarray:
    """``F`` per sample for ``rule`` on every dense layer (``first`` on the first one)."""
    net64, x64 = copy.deepcopy(net).astype(np.float64), np.asarray(x, np.float64)
    twin = twin_lrp_net(net64, x64, twin_rules(net64, rule, first), target)
    a, z = np.abs(x64), x64
    for layer in net64.layers:
        if isinstance(layer, Dense):
            a = a @ np.abs(layer.W) + (0 if layer.b is None else np.abs(layer.b))
            z = z @ layer.W + (0 if layer.b is None else layer.b)
        else:  # ReLU: only active units carry rounding forward
            a, z = a * (z > 0), np.maximum(z, 0)
    rows = np.arange(len(x64))
    target = np.broadcast_to(target, (len(x64),))
    F = np.maximum(a[rows, target], twin.scales[0].max(axis=1))
    # one-hot seeding divides by the logit, never by less than Zennit's eps 1e-6
    return F / np.maximum(np.abs(z[rows, target]), 1e-6) if seed == "onehot" else F


def assert_close(R, R_ref, rtol, F=None, dtype=np.float64):
    """``max |R - R_ref| <= rtol max |R_ref| + 128 u F`` for every sample (``u`` of ``dtype``)."""
    R = np.asarray(R).reshape(len(R), -1)
    R_ref = np.asarray(R_ref).reshape(len(R_ref), -1)
    assert R.shape == R_ref.shape, (R.shape, R_ref.shape)
    err = np.abs(R.astype(np.float64) - R_ref).max(axis=1)
    allowed = rtol * np.abs(R_ref).max(axis=1).astype(np.float64)
    if F is not None:
        allowed = allowed + 128 * np.finfo(dtype).eps / 2 * F
    bad = ~(err <= allowed)  # NaN fails too
    assert not bad.any(), (
        f"samples {np.flatnonzero(bad)}: max |R - R_ref| = {err[bad]} exceeds the allowed "
        f"{allowed[bad]} (rtol {rtol}, rounding scale {None if F is None else F[bad]})"
    )
