"""The identities of the paper's sec. 4, asserted on random nets (float64).

Conservation (eq. 4.7-4.9), the relevance budget, positive homogeneity and gradient x input
(eq. 4.4-4.6), LRP-0 = gradient x input, alpha-beta (eq. 4.10-4.13), epsilon -> LRP-0, Taylor
root points (eq. 4.2-4.3), sensitivity (eq. 4.1), and clear errors for bad input.

Tolerances (every identity below is exact in real arithmetic; only rounding is allowed):

- LRP sums: ``RTOL = 1e-12`` times the twin's rounding scale (tests/rule_twins.py,
  ``TwinResult.budget_scale``): the absolute values of every term entering the sum, weighted by
  the condition number of its denominator. About 1e3 times float64 rounding; a rule that leaks
  relevance is off by O(|R|).
- Forward/gradient identities: ``RTOL`` times ``F = |x| |W_1| ... |W_L|`` (+ ``|b|``), the sum
  of the absolute values of every path product, which bounds every intermediate value.
- Finite differences: ``|g - g_fd| <= 1e-6 + 1e-5 |g_fd|`` as in tests/test_layers.py, kinks kept
  >= 1e-3 away.
- Root search: ``|f(x~)| <= tol max(1, |f(x)|)`` with refimpl's ``tol`` (1e-10).
- Results in the subnormal range lose relative precision: absolute floor ``TINY = 1e-300``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl.explain.gradient import gradient_x_input, sensitivity
from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.propagate import propagate_dense
from refimpl.explain.rules import (
    LRP0,
    ZB,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    WSquare,
    ZPlus,
)
from refimpl.explain.taylor import taylor
from refimpl.nn.layers import Dense, LogSoftmax, ReLU
from refimpl.nn.network import Sequential, mlp

from . import rule_twins as tw
from .fd import numeric_grad
from .nets import min_abs_preactivation, random_mlp
from .test_rules import (
    CONFIGS,
    FIRST_RULES,
    STABILIZERS,
    build_rule,
    config_id,
    dense_layers,
    first_rule,
    needs_nonnegative,
    sparse_nets,
)

RTOL = 1e-12
TINY = 1e-300
FD_ATOL, FD_RTOL = 1e-6, 1e-5


def sane_slopes(net) -> bool:
    """LeakyReLU slopes in (0, 1e-6) make subnormal activations (see test_rules.sparse_nets)."""
    return all(not 0 < getattr(layer, "slope", 0) < 1e-6 for layer in net.layers)


def abs_forward(net, x):
    """``F``: the net evaluated with ``|x|``, ``|W|``, ``|b|`` and no activation (n, C).

    Bounds every intermediate value (and thus the rounding) of a ReLU/LeakyReLU net's forward
    pass, class by class.
    """
    a = np.abs(x)
    for layer in net.layers:
        if isinstance(layer, Dense):
            a = a @ np.abs(layer.W) + (0 if layer.b is None else np.abs(layer.b))
    return a


def abs_grad(net, c, upto=0):
    """``|W_upto| ... |W_L e_c|`` per sample: the absolute path sums from the input of layer
    ``upto`` to the logit ``c`` (n, width); bounds the gradient's rounding."""
    v = np.eye(net.output_shape[0])[np.atleast_1d(c)]
    for layer in reversed(net.layers[upto:]):
        if isinstance(layer, Dense):
            v = v @ np.abs(layer.W).T
    return v


def within(actual, expected, scale, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite {actual}"
    err = np.abs(actual - expected)
    bad = err > RTOL * np.asarray(scale) + TINY
    assert not bad.any(), f"{what}: {actual} vs {expected}, |diff| {err} > {RTOL} * {scale}"


def lrp_and_twin(net, x, c, default, first=None):
    ex = lrp(net, x, RuleMap(default, first=first), target=c, keep_layers=True)
    twin = tw.twin_lrp_net(net, x, tw.twin_rules(net, default, first), c)
    return ex, twin


# --------------------------------------------------------------------------- conservation

# (rule, pixel rule first?, activations, nets with biases?) -- every rule that conserves
# relevance exactly under its options (no bias and no stabilizer in its denominators).
CONSERVATIVE = [
    pytest.param(LRP0(bias="none"), False, None, None, id="lrp0-bias-none"),
    pytest.param(LRP0(), False, None, False, id="lrp0-bias-free-net"),
    pytest.param(AlphaBeta(2, 1), True, ["relu"], None, id="ab21"),
    pytest.param(AlphaBeta(1.4, 0.4), True, ["relu", "sigmoid"], None, id="ab-1.4-0.4"),
    pytest.param(AlphaBeta(1.5, 0.5, inputs="split"), False, None, None, id="ab-split"),
    pytest.param(AlphaBeta(3, 2, inputs="weights"), False, None, None, id="ab-weights"),
    pytest.param(ZPlus(), True, ["relu"], None, id="zplus"),
    pytest.param(ZPlus(inputs="split"), False, None, None, id="zplus-split"),
    pytest.param(WSquare(), False, None, None, id="w2"),
    pytest.param(Flat(), False, None, None, id="flat"),
    pytest.param(Gamma(0.25, bias="none"), True, ["relu"], None, id="gamma-bias-none"),
    pytest.param(Gamma(0.5, "generalized", bias="none"), False, None, None, id="gamma-gen"),
]


@pytest.mark.parametrize("rule, pixel_first, activations, bias", CONSERVATIVE)
@given(data=st.data(), first=st.sampled_from(FIRST_RULES))
def test_conservation(rule, pixel_first, activations, bias, data, first):
    """Eq. 4.7-4.9: ``sum_j R_j = sum_k R_k`` at every layer without a zero denominator, and
    ``sum_i R_i = f(x)`` for the samples where no layer dropped anything; nothing is absorbed by
    biases or stabilizers."""
    net, x, _, c = data.draw(sparse_nets(activations=activations, bias=bias, zero_fracs=(0, 0.3)))
    pixel = first_rule(first, x) if pixel_first else None
    ex, twin = lrp_and_twin(net, x, c, rule, pixel)
    total_scale = np.abs(ex.f).copy()
    clean = np.ones(len(x), bool)
    for i, _, lb in ex.budget.layers:
        np.testing.assert_array_equal(lb.bias, 0.0)
        np.testing.assert_array_equal(lb.stabilizer, 0.0)
        ok = lb.dropped == 0
        scale = twin.steps[i].budget_scale
        within(
            ex.layers[i].sum(axis=1)[ok],
            ex.layers[i + 1].sum(axis=1)[ok],
            scale[ok],
            f"layer {i} conservation",
        )
        clean &= ok
        total_scale += scale
    assume(clean.any())  # at least one sample conserves all the way
    within(ex.R.sum(axis=1)[clean], ex.f[clean], total_scale[clean], "sum_i R_i = f(x)")
    within(ex.R.sum(axis=1), ex.f - ex.budget.dropped, total_scale, "sum_i R_i = f(x) - dropped")


@pytest.mark.parametrize(
    "rule",
    [
        LRP0(bias="none"),
        AlphaBeta(2, 1),
        AlphaBeta(1, 0, inputs="split"),
        ZPlus(inputs="weights"),
        ZB(),
        WSquare(),
        Flat(),
        Gamma(0.25, bias="none"),
        Gamma(0.5, "generalized", bias="none"),
    ],
    ids=lambda r: r.describe(),
)
def test_conservative_flag_of_conservative_rules(rule):
    assert rule.conservative


@pytest.mark.parametrize(
    "rule",
    [
        LRP0(),
        Epsilon(1e-6),
        AlphaBeta(2, 1, bias="split"),
        AlphaBeta(eps=1e-9),
        ZPlus(bias="full"),
        ZPlus(eps=1e-9),
        ZB(eps=1e-9),
        WSquare(bias="squared"),
        WSquare(eps=1e-3),
        Flat(eps=1e-3),
        Gamma(0.25),
        Gamma(0.25, bias="raw"),
        Gamma(0.25, bias="none", eps=1e-3),
    ],
    ids=lambda r: r.describe(),
)
def test_conservative_flag_of_absorbing_rules(rule):
    assert not rule.conservative


# --------------------------------------------------------------------------- the budget


@pytest.mark.parametrize("cfg", CONFIGS, ids=config_id)
@given(
    data=st.data(),
    stab=STABILIZERS,
    gamma=st.sampled_from([0.0, 0.25, 1.0]),
    first=st.sampled_from(FIRST_RULES),
)
def test_budget_closes(cfg, data, stab, gamma, first):
    """``f(x) = sum_i R_i + bias + stabilizer + dropped`` for every rule and option, on nets
    with and without biases and with many exact zeros (zero denominators), and per layer
    ``R_out = R_in + bias + stabilizer + dropped``."""
    cls, opts = cfg
    nonneg = needs_nonnegative(cls, opts)
    net, x, rng, c = data.draw(
        sparse_nets(activations=["relu", "sigmoid"] if nonneg else None, max_width=8)
    )
    if cls is LRP0:
        stab = {}
    if cls is ZB:  # a box rule, for the pixel layer only (build_rule's box does not touch x;
        # inputs on the bounds are test_rules.test_zb_on_the_bounds_equals_twin's business)
        default, pixel = Epsilon(0.25), build_rule(cls, opts, stab, gamma, x, rng)
    else:
        default = build_rule(cls, opts, stab, gamma, np.zeros((1, 1)), rng)
        pixel = first_rule(first, x) if nonneg else None
    ex, twin = lrp_and_twin(net, x, c, default, pixel)
    b = ex.budget
    np.testing.assert_array_equal(b.f, net(x)[np.arange(len(x)), c])
    np.testing.assert_array_equal(b.relevance, ex.R.sum(axis=1))
    total_scale = np.abs(b.f).copy()
    for i, _, lb in b.layers:
        scale = twin.steps[i].budget_scale
        within(lb.relevance_out - lb.relevance_in - lb.absorbed, 0.0, scale, f"layer {i}")
        total_scale += scale
    within(b.closure_error(), 0.0, total_scale, "closure error")
    within(b.relevance + b.bias + b.stabilizer + b.dropped, b.f, total_scale, "budget")


# --------------------------------------------------------------------------- homogeneity


@given(
    case=random_mlp(activations=["relu", "leaky_relu"], bias=False),
    t=st.one_of(st.just(0.0), st.floats(1e-3, 1e3)),
)
def test_bias_free_relu_nets_are_positively_homogeneous(case, t):
    """Eq. 4.4: ``f(t x) = t f(x)`` for ``t >= 0``."""
    net, x, _ = case
    within(net(t * x), t * net(x), t * abs_forward(net, x), "f(tx) = t f(x)")


@given(case=random_mlp(activations=["relu", "leaky_relu"], bias=False), data=st.data())
def test_gradient_x_input_sums_to_f_on_homogeneous_nets(case, data):
    """Eq. 4.5-4.6: ``sum_i x_i df/dx_i = f(x)`` (Euler), and Taylor's ``root="limit"`` is
    exactly gradient x input with root 0 and residual 0."""
    net, x, _ = case
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    F = abs_forward(net, x)[:, c]
    gx = gradient_x_input(net, x, target=c)
    np.testing.assert_array_equal(gx.f, net(x)[:, c])
    within(gx.R.sum(axis=1), gx.f, F, "sum_i x_i df/dx_i = f(x)")
    ty = taylor(net, x, root="limit", target=c)
    within(ty.R, gx.R, np.abs(x) * abs_grad(net, c), "taylor limit = gradient x input")
    np.testing.assert_array_equal(ty.root, 0.0)
    np.testing.assert_array_equal(ty.f_root, 0.0)
    within(ty.residual, 0.0, F, "taylor limit residual")


@given(case=random_mlp(activations=["relu", "leaky_relu"], bias=False), data=st.data())
def test_taylor_at_root_eps_x_tends_to_gradient_x_input(case, data):
    """At ``x~ = eps x`` the gradient equals the one at ``x`` (same activation pattern), so
    Taylor gives ``(1 - eps) x df/dx``: it tends to gradient x input linearly in eps."""
    net, x, _ = case
    assume(sane_slopes(net) and min_abs_preactivation(net, x) > 1e-6)
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    gx = gradient_x_input(net, x, target=c).R
    scale = np.abs(x) * abs_grad(net, c)
    for eps in (1e-2, 1e-4, 1e-6, 1e-8):
        ty = taylor(net, x, root=eps * x, target=c)
        within(ty.R, (1 - eps) * gx, scale, f"taylor at {eps} x")
        within(ty.f_root, eps * net(x)[:, c], eps * abs_forward(net, x)[:, c], "f(eps x)")
        assert np.all(np.abs(ty.R - gx) <= eps * np.abs(gx) + RTOL * scale + TINY)


def test_taylor_limit_refuses_nets_with_biases_or_smooth_activations():
    x = np.ones((1, 3))
    for net in (mlp([3, 4, 2], bias=True, rng=0), mlp([3, 4, 2], activation="tanh", bias=False)):
        with pytest.raises(ValueError, match="positively homogeneous"):
            taylor(net, x, root="limit", target=0)


# --------------------------------------------------------------------------- LRP-0


@given(case=random_mlp(activations=["relu"], bias=True), data=st.data())
def test_lrp0_equals_gradient_x_input_on_relu_nets_with_biases(case, data):
    """LRP-0 = gradient x input on ReLU nets, biases or not; the biases absorb
    ``f - sum_i R_i``, and layer l's bias absorbs exactly ``b_l . df/dz_l``."""
    net, x, _ = case
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    ex = lrp(net, x, LRP0(), target=c)
    gx = gradient_x_input(net, x, target=c)
    within(ex.R, gx.R, np.abs(x) * abs_grad(net, c), "LRP-0 = gradient x input")
    np.testing.assert_array_equal(ex.budget.dropped, 0.0)  # R_k != 0 only where z_k > 0
    np.testing.assert_array_equal(ex.budget.stabilizer, 0.0)
    books = {i: lb for i, _, lb in ex.budget.layers}
    for s in range(len(x)):  # df/dz_l = gradient of b_l, one sample at a time
        logits, caches = net.forward(x[s : s + 1])
        seed = np.zeros_like(logits)
        seed[0, c] = 1.0
        _, grads = net.backward(caches, seed)
        names = [name for name, _ in net.named_parameters()]
        for i, layer in enumerate(net.layers):
            if isinstance(layer, Dense):
                g_b = grads[names.index(f"layers.{i}.b")]
                scale = np.abs(layer.b) @ abs_grad(net, c, upto=i + 1)[0]
                within(books[i].bias[s], layer.b @ g_b, scale, f"bias of layer {i}")
    F = abs_forward(net, x)[:, c]
    within(ex.R.sum(axis=1) + ex.budget.bias, ex.f, F, "sum_i R_i + bias = f(x)")


def test_lrp0_sum_is_not_f_with_biases_and_the_budget_says_how_much():
    net = Sequential(
        [
            Dense(np.array([[1.0, -1.0], [2.0, 1.0]]), np.array([0.5, 1.0])),
            ReLU(),
            Dense(np.array([[1.0], [1.0]]), np.array([-0.25])),
        ]
    )
    x = np.array([[1.0, 1.0]])  # z1 = (3.5, 1), a1 = (3.5, 1), f = 4.5 - 0.25 = 4.25
    ex = lrp(net, x, LRP0(), target=0)
    assert ex.f[0] == 4.25
    # top: s = 4.25 / 4.25 = 1, bias takes -0.25; bottom: s_k = 1 per unit, bias 0.5 + 1.0
    np.testing.assert_allclose(ex.R, [[1 * (1 - 1), 1 * (2 + 1)]], rtol=1e-15)
    assert abs(ex.R.sum() - ex.f[0]) > 1  # 3 != 4.25 ... and the biases booked the 1.25:
    np.testing.assert_allclose(ex.budget.bias, [-0.25 + 1.5], rtol=1e-15)
    np.testing.assert_allclose(ex.budget.closure_error(), [0.0], atol=1e-15)
    gx = gradient_x_input(net, x, target=0)
    np.testing.assert_allclose(ex.R, gx.R, rtol=1e-15)


# --------------------------------------------------------------------------- alpha-beta


@pytest.mark.parametrize(
    "alpha, beta, message",
    [
        (2.0, 0.5, "alpha - beta must equal 1"),
        (1.0 + 1e-6, 0.0, "alpha - beta must equal 1"),
        (1.0, 1e-7, "alpha - beta must equal 1"),
        (1e6 + 1, 1e6 + 0.01, "alpha - beta must equal 1"),
        (0.5, -0.5, "beta must be >= 0"),
        (0.0, -1.0, "beta must be >= 0"),
        (np.nan, 0.0, "alpha must be finite"),
        (np.inf, np.inf, "alpha must be finite"),
    ],
)
def test_alpha_beta_rejects_invalid_parameters(alpha, beta, message):
    with pytest.raises(ValueError, match=message):
        AlphaBeta(alpha, beta)


def test_alpha_beta_rejects_non_numbers():
    with pytest.raises(TypeError, match="alpha must be a number, got str '2'"):
        AlphaBeta("2", 1.0)
    with pytest.raises(TypeError, match="beta must be a number, got bool"):
        AlphaBeta(1.0, False)


@given(beta=st.floats(0.0, 1e6))
def test_alpha_beta_accepts_alpha_minus_beta_one_up_to_rounding(beta):
    assert 1.4 - 0.4 != 1.0  # Zennit's exact float equality rejects (1.4, 0.4)
    AlphaBeta(1.4, 0.4)
    AlphaBeta(1.0 + beta, beta)


@pytest.mark.parametrize("inputs", ["nonnegative", "split", "weights"])
@given(layer=dense_layers(), beta=st.sampled_from([0.0, 0.5, 1.0, 2.5]))
def test_alpha_beta_shares_per_upper_neuron(inputs, layer, beta):
    """Eq. 4.12-4.13 with one-hot ``R``: the inputs with positive contributions ``a_j w_jk``
    receive exactly ``alpha R_k``, those with negative ones ``-beta R_k``, the others nothing;
    a share with no contributions of its sign is dropped, and the budget says so."""
    a, W, b, R, _ = layer
    if inputs != "split":
        a = np.abs(a)  # "weights" on a >= 0 is the paper's rule too
    alpha = 1.0 + beta
    rule = AlphaBeta(alpha, beta, inputs=inputs)
    J = a.shape[1]
    for k in range(W.shape[1]):
        r = R[:, k]
        onehot = np.zeros_like(R)
        onehot[:, k] = r
        R_in, lb = propagate_dense(rule, a, W, b, onehot)
        contrib = a * W[:, k]  # (n, J)
        plus, minus = contrib > 0, contrib < 0
        np.testing.assert_array_equal(R_in[~(plus | minus)], 0.0)
        pos_sum = np.where(plus, R_in, 0).sum(axis=1)
        neg_sum = np.where(minus, R_in, 0).sum(axis=1)
        has_p, has_m = plus.any(axis=1), minus.any(axis=1)
        scale = J * (alpha + beta) * np.abs(r)  # the terms of each share have one sign
        within(pos_sum, np.where(has_p, alpha * r, 0.0), scale, "positive share")
        within(neg_sum, np.where(has_m, -beta * r, 0.0), scale, "negative share")
        dropped = np.where(has_p, 0.0, alpha * r) - np.where(has_m, 0.0, beta * r)
        within(lb.dropped, dropped, scale, "dropped share")
        signed = R_in * np.sign(r)[:, None]  # the positive share has the sign of R_k
        assert np.all(signed[plus] >= 0) and np.all(signed[minus] <= 0)


@pytest.mark.parametrize("bias", ["none", "split", "full"])
@pytest.mark.parametrize("inputs", ["nonnegative", "split", "weights"])
@given(layer=dense_layers(), stab=STABILIZERS)
def test_alpha1_beta0_equals_zplus(bias, inputs, layer, stab):
    a, W, b, R, _ = layer
    if inputs == "nonnegative":
        a = np.abs(a)
    R_ab, lb_ab = propagate_dense(AlphaBeta(1, 0, bias=bias, inputs=inputs, **stab), a, W, b, R)
    R_zp, lb_zp = propagate_dense(ZPlus(bias=bias, inputs=inputs, **stab), a, W, b, R)
    np.testing.assert_allclose(R_ab, R_zp, rtol=RTOL, atol=TINY)
    for field in ("relevance_in", "bias", "stabilizer", "dropped"):
        np.testing.assert_allclose(
            getattr(lb_ab, field), getattr(lb_zp, field), rtol=RTOL, atol=TINY
        )


@pytest.mark.parametrize(
    "rule",
    [AlphaBeta(1, 0), AlphaBeta(1, 0, bias="split"), ZPlus(), ZPlus(bias="split")],
    ids=lambda r: r.describe(),
)
@given(data=st.data(), first=st.sampled_from(FIRST_RULES))
def test_beta0_on_nonnegative_inputs_gives_nonnegative_relevance(rule, data, first):
    """With ``a >= 0``, ``R_k >= 0`` and beta = 0 every message ``a_j w+_jk / (z+_k + b+_k) R_k``
    is >= 0: no layer gets a negative relevance (z^B, w^2 and flat keep it too)."""
    net, x, rng, c = data.draw(sparse_nets(activations=["relu"]))
    R_out = np.abs(rng.normal(size=(len(x), net.output_shape[0])))
    ex = lrp(net, x, RuleMap(rule, first=first_rule(first, x)), R_out=R_out, keep_layers=True)
    for i, R in enumerate(ex.layers):
        assert np.all(R >= 0), f"negative relevance entering layer {i}: {R.min()}"


@pytest.mark.parametrize(
    "rule",
    [AlphaBeta(2, 1), ZPlus(), Gamma(0.25), AlphaBeta(1, 0, bias="full")],
    ids=lambda r: r.describe(),
)
def test_nonnegative_inputs_option_rejects_a_negative_input(rule):
    a = np.array([[0.5, -0.25, 1.0]])
    W = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"inputs='nonnegative'.*negative input \(-0\.25\)"):
        propagate_dense(rule, a, W, None, np.ones((1, 2)))
    net = mlp([3, 4, 2], rng=0)
    with pytest.raises(ValueError, match="inputs='nonnegative'.*negative input"):
        lrp(net, a, rule, target=0)  # the rule on the pixel layer too
    lrp(net, np.abs(a), rule, target=0)  # ReLU outputs inside, non-negative pixels: fine


# --------------------------------------------------------------------------- epsilon


@pytest.mark.parametrize("kind", ["signed", "unsigned", "relative"])
@pytest.mark.parametrize("bias", ["full", "none"])
@given(layer=dense_layers())
def test_epsilon_tends_to_lrp0(kind, bias, layer):
    """``|R_eps - R_0|_j <= sum_k |a_j w_jk R_k| |delta_k| / (|d_k| |d_k + delta_k|)``, with
    ``|delta_k| = eps`` (``eps std_k`` for relative) and ``|d_k + delta_k| = |d_k| + |delta_k|``
    (``>= |d_k| - eps`` for unsigned): linear convergence as eps -> 0, checked for
    eps = 1e-1 ... 1e-9. Units with an LRP-0 denominator ``|d_k| < 0.25`` get ``R_k = 0`` (they
    then pass nothing under either rule), so every denominator that matters is not tiny."""
    a, W, b, R, _ = layer
    d = a @ W + (b if (b is not None and bias == "full") else 0)
    R = np.where(np.abs(d) >= 0.25, R, 0.0)
    live = R != 0
    R0, _ = propagate_dense(LRP0(bias=bias), a, W, b, R)
    c = np.abs(a[:, :, None] * W[None] * R[:, None, :])  # |a_j w_jk R_k|
    twin_scale = tw.twin_lrp0(a, W, b, R, bias=bias).scale
    floor = RTOL * twin_scale + TINY
    errors = []
    for eps in 10.0 ** -np.arange(1, 10):
        Reps, _ = propagate_dense(Epsilon(eps, kind, bias=bias), a, W, b, R)
        size = eps * (d.std(axis=1, keepdims=True) if kind == "relative" else 1.0) + 0 * d
        if kind == "unsigned":  # d + eps may move toward 0: |d + eps| >= |d| - eps
            assert np.all(size[live] < np.abs(d[live]))
            gap = np.abs(d) * (np.abs(d) - size)
        else:  # eps sign(d) moves away from 0: |d + delta| = |d| + |delta|
            gap = np.abs(d) * (np.abs(d) + size)
        gap = np.where(live, gap, 1.0)
        bound = (c * (size / gap)[:, None, :]).sum(axis=2)
        err = np.abs(Reps - R0)
        assert np.all(err <= bound * (1 + 1e-9) + floor), eps
        errors.append(err)
    # linear from eps = 1e-5 (second order <= eps std / |d| < 1e-2 relative) down to 1e-9
    assert np.all(errors[-1] <= 1e-4 * errors[4] * 1.01 + floor)


@given(layer=dense_layers())
def test_zero_only_stabilizer_is_lrp0_where_no_denominator_is_zero(layer):
    """Units with ``z_k = 0`` (frequent here) carry no relevance; elsewhere zero_only is LRP-0."""
    a, W, b, R, _ = layer
    R = np.where(a @ W + (0 if b is None else b) != 0, R, 0.0)
    R0, _ = propagate_dense(LRP0(), a, W, b, R)
    Rz, lb = propagate_dense(Epsilon(0.5, "zero_only"), a, W, b, R)
    np.testing.assert_array_equal(Rz, R0)
    np.testing.assert_array_equal(lb.stabilizer, 0.0)


@given(case=random_mlp(activations=["relu", "leaky_relu"], bias=True, max_width=12))
def test_epsilon_tends_to_lrp0_on_nets(case):
    """On a net whose pre-activations all have ``|z| >= 0.1`` (biases shifted to make it so),
    ``|R_eps - R_0| <= B_eps`` at every layer, where ``B`` propagates the single-layer bound
    (signed stabilizer: ``|z + eps sign z| = |z| + eps``)::

        B_j = sum_k |a_j w_jk| (B_k + eps |R0_k| / |z_k|) / (|z_k| + eps),   B = 0 at the output

    so R_eps -> R_0 linearly; checked for eps = 1e-1 ... 1e-10."""
    net, x, _ = case
    assume(sane_slopes(net))
    x = x[:1]
    a = x
    for layer in net.layers:  # push every |z| >= 0.1 (one sample, so one bias shift suffices)
        if isinstance(layer, Dense):
            z = a @ layer.W + layer.b
            layer.params["b"] += np.where(np.abs(z[0]) < 0.1, 0.2 * tw.sign0(z[0]), 0.0)
        a = layer.forward(a)[0]
    acts = net.activations(x)
    ex0, twin = lrp_and_twin(net, x, 0, LRP0())
    for eps in 10.0 ** -np.arange(1, 11):
        ex = lrp(net, x, Epsilon(eps), target=0, keep_layers=True)
        B = np.zeros_like(ex.layers[-1])
        for i in reversed(range(len(net.layers))):
            layer = net.layers[i]
            if isinstance(layer, Dense):
                z = np.abs(acts[i] @ layer.W + layer.b)
                c = np.abs(acts[i][:, :, None] * layer.W[None])
                B = (c * ((B + eps * np.abs(ex0.layers[i + 1]) / z) / (z + eps))[:, None]).sum(2)
            err = np.abs(ex.layers[i] - ex0.layers[i])  # both with rounding <= RTOL * scale
            assert np.all(err <= B * (1 + 1e-9) + 2 * RTOL * twin.scales[i] + TINY), (eps, i)


# --------------------------------------------------------------------------- Taylor roots


def _shift_to_opposite_signs(net, x, end, c, sign_at_x):
    """Shift the last bias so that ``f_c(x)`` has the sign ``sign_at_x`` and ``f_c(end)`` the
    opposite one (n = 1): then ``f_c(x) = (f0 - f1) / 2`` and ``f_c(end) = (f1 - f0) / 2``."""
    f0, f1 = net(x)[0, c], net(end)[0, c]
    assume((f0 - f1) * sign_at_x > 1e-3)
    net.layers[-1].params["b"][c] -= (f0 + f1) / 2


@pytest.mark.parametrize("direction", ["segment", "gradient"])
@given(case=random_mlp(bias=True), data=st.data())
def test_searched_root_is_a_root(direction, case, data):
    """A searched root satisfies ``|f(x~)| <= tol max(1, |f(x)|)``, lies on the search line,
    is the first sign change at the scan's resolution, and the result reports f(x~) and the
    residual. Roots are made to exist: the last bias is shifted so that f has opposite signs at
    the two ends of the line (the gradient line goes down the gradient where f(x) > 0, up it
    where f(x) < 0)."""
    net, x, rng = case
    assume(sane_slopes(net))
    x = x[:1]
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    d = x.shape[1]
    sign = data.draw(st.sampled_from([1.0, -1.0]))  # of f(x)
    if direction == "segment":
        reference = data.draw(st.sampled_from(["origin", "random"]))
        end = np.zeros_like(x) if reference == "origin" else rng.normal(size=x.shape)
        kwargs = {} if reference == "origin" else {"reference": end[0]}
    else:
        _, g = _gradient(net, x, c)
        assume(np.linalg.norm(g) > 1e-6)
        end = x - sign * 2 * np.sqrt(d) * g / np.linalg.norm(g)
        kwargs = {}
    _shift_to_opposite_signs(net, x, end, c, sign)
    fx = net(x)[0, c]
    res = taylor(net, x, root="search", direction=direction, target=c, **kwargs)
    f_root = net(res.root)[0, c]
    assert abs(f_root) <= 1e-10 * max(1.0, abs(fx))
    np.testing.assert_array_equal(res.f_root, [f_root])
    v = end - x
    t = float(((res.root - x) @ v.T / (v @ v.T))[0, 0])
    assert -1e-12 <= t <= 1 + 1e-12
    within(res.root, x + t * v, np.abs(x) + np.abs(v), "root on the line")
    ts = np.linspace(0.0, 1.0, 64)  # refimpl's default scan: no sign change before the root
    fs = net(x + ts[:, None] * v)[:, c]
    change = (np.sign(fs) != np.sign(fx)) | (np.abs(fs) <= 1e-10 * max(1.0, abs(fx)))
    assert t <= ts[np.argmax(change)] + 1e-12
    within(res.residual, fx - res.R.sum(axis=1), abs(fx) + np.abs(res.R).sum(), "residual")


def _gradient(net, x, c):
    logits, caches = net.forward(x)
    seed = np.zeros_like(logits)
    seed[:, c] = 1.0
    g, _ = net.backward(caches, seed)
    return logits[:, c], g


@given(case=random_mlp(activations=["relu", "leaky_relu"], bias=False))
def test_root_search_toward_the_origin_on_bias_free_nets(case):
    """``f(0) = 0`` for bias-free ReLU nets: the segment to the origin always holds a root."""
    net, x, _ = case
    res = taylor(net, x, root="search", target=0)
    f = net(x)[:, 0]
    assert np.all(np.abs(net(res.root)[:, 0]) <= 1e-10 * np.maximum(1.0, np.abs(f)))


@pytest.mark.parametrize("direction", ["segment", "gradient"])
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6))
def test_root_search_without_sign_change_raises(direction, seed, d):
    """f linear with the same sign at both ends of the line: no root, a ValueError."""
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(d, 1)), rng.normal(size=1)
    assume(np.linalg.norm(W) > 1e-3)
    net = Sequential([Dense(W, b)])
    x, ref = rng.normal(size=(1, d)), rng.normal(size=(1, d))
    if direction == "segment":
        b -= min(net(x)[0, 0], net(ref)[0, 0]) - 1.0  # f >= 1 at both ends, so on the segment
        kwargs = {"reference": ref}
    else:
        b -= net(x)[0, 0] - 1.0  # f(x) = 1, f decreases at rate |W| down the gradient
        kwargs = {"max_distance": 0.5 / np.linalg.norm(W)}
    with pytest.raises(ValueError, match="no root of f on the search line"):
        taylor(net, x, root="search", direction=direction, target=0, **kwargs)


def test_gradient_search_goes_up_the_gradient_when_f_is_negative():
    """Regression: the search always went down the gradient, away from the root if f(x) < 0."""
    net = Sequential([Dense(np.array([[1.0], [2.0]]), np.array([-1.0]))])
    x = np.array([[0.1, 0.2]])  # f = -0.5; f = 0 at distance 0.5 / sqrt(5) up the gradient
    res = taylor(net, x, root="search", direction="gradient", target=0)
    assert abs(net(res.root)[0, 0]) <= 1e-10
    np.testing.assert_allclose(res.root - x, 0.5 / 5 * np.array([[1.0, 2.0]]), rtol=1e-9)


def test_root_search_that_cannot_meet_its_tolerance_raises():
    """Regression: bisection that could not reach ``tol`` silently returned a non-root."""
    net = Sequential([Dense(np.array([[1.0], [3.0]]), np.array([-0.1]))])
    x = np.array([[1.0, 1.0]])
    with pytest.raises(ValueError, match="did not reach"):
        taylor(net, x, root="search", target=0, tol=1e-300)


@given(case=random_mlp(activations=["tanh", "sigmoid"]), data=st.data())
def test_taylor_at_a_given_point_is_the_first_order_term(case, data):
    """Eq. 4.3 at a given point x~: ``R_i = df/dx_i|_{x~} (x_i - x~_i)`` (finite differences),
    ``f_root = f(x~)`` and ``residual = f(x) - sum_i R_i``."""
    net, x, rng = case
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    root = rng.normal(size=x.shape)
    res = taylor(net, x, root=root, target=c)
    g_fd = numeric_grad(lambda: float(net(root)[:, c].sum()), root)
    dev = (FD_ATOL + FD_RTOL * np.abs(g_fd)) * np.abs(x - root)  # the FD bound, times |x - x~|
    assert np.all(np.abs(res.R - g_fd * (x - root)) <= dev)
    np.testing.assert_array_equal(res.f_root, net(root)[:, c])
    np.testing.assert_allclose(
        res.residual, net(x)[:, c] - res.R.sum(axis=1), rtol=1e-14, atol=1e-14 * np.abs(res.R).sum()
    )


# --------------------------------------------------------------------------- sensitivity


@given(case=random_mlp(), data=st.data())
def test_sensitivity(case, data):
    """Eq. 4.1: "raw" is df/dx (finite differences), "abs" its modulus, "squared" its square,
    which sums to ``||grad f||^2``."""
    net, x, _ = case
    assume(sane_slopes(net) and min_abs_preactivation(net, x) > 1e-3)
    c = data.draw(st.integers(0, net.output_shape[0] - 1))
    g_fd = numeric_grad(lambda: float(net(x)[:, c].sum()), x)
    raw = sensitivity(net, x, target=c, output="raw")
    np.testing.assert_allclose(raw.R, g_fd, rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_array_equal(raw.f, net(x)[:, c])
    np.testing.assert_array_equal(sensitivity(net, x, target=c, output="abs").R, np.abs(raw.R))
    sq = sensitivity(net, x, target=c).R  # the default is the paper's
    np.testing.assert_array_equal(sq, raw.R**2)
    dev = FD_ATOL + FD_RTOL * np.abs(g_fd)  # |g - g_fd| <= dev, so |g^2 - g_fd^2| <= ...
    bound = (dev * (2 * np.abs(g_fd) + dev)).sum(axis=1)
    assert np.all(np.abs(sq.sum(axis=1) - (g_fd**2).sum(axis=1)) <= bound)


# --------------------------------------------------------------------------- bad input


def _methods():
    return {
        "lrp": lambda net, x, **kw: lrp(net, x, Epsilon(0.1), **kw),
        "sensitivity": lambda net, x, **kw: sensitivity(net, x, **kw),
        "gradient_x_input": lambda net, x, **kw: gradient_x_input(net, x, **kw),
        "taylor": lambda net, x, **kw: taylor(net, x, root="search", **kw),
    }


@pytest.mark.parametrize("method", sorted(_methods()))
@pytest.mark.parametrize(
    "bad, kwargs, error, message",
    [
        (np.nan, {}, ValueError, "NaN or infinite"),
        (np.inf, {}, ValueError, "NaN or infinite"),
        ("shape", {}, ValueError, r"x must have shape \(n, 3\)"),
        ("flat", {}, ValueError, r"x must have shape \(n, 3\)"),
        (None, {"target": 2}, ValueError, r"target must lie in \[0, 2\)"),
        (None, {"target": -1}, ValueError, r"target must lie in \[0, 2\)"),
        (None, {"target": 1.0}, TypeError, "target must be an integer"),
        (None, {"target": "max"}, ValueError, "target must be 'predicted'"),
        (None, {"target": [0, 1, 0]}, ValueError, "one index or 2 indices"),
    ],
)
def test_bad_input_gives_clear_errors(method, bad, kwargs, error, message):
    net = mlp([3, 4, 2], rng=0)
    x = np.random.default_rng(0).normal(size=(2, 3))
    if bad == "shape":
        x = np.ones((2, 4))
    elif bad == "flat":
        x = np.ones(3)
    elif bad is not None:
        x[1, 2] = bad
    with pytest.raises(error, match=message):
        _methods()[method](net, x, **kwargs)


@pytest.mark.parametrize("method", sorted(_methods()))
def test_nets_with_logsoftmax_are_refused(method):
    net = Sequential([*mlp([3, 4, 2], rng=0).layers, LogSoftmax()])
    with pytest.raises(ValueError, match="LogSoftmax"):
        _methods()[method](net, np.ones((1, 3)))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Epsilon(0.0), "eps must be finite and > 0"),
        (lambda: Epsilon(-1e-6), "eps must be finite and > 0"),
        (lambda: Epsilon(np.nan), "eps must be finite and > 0"),
        (lambda: Epsilon(np.inf), "eps must be finite and > 0"),
        (lambda: AlphaBeta(eps=-1.0), "eps must be finite and > 0"),
        (lambda: Gamma(-0.25), "gamma must be finite and >= 0"),
        (lambda: ZB(low=1.0, high=-1.0), "low must be <= high"),
        (lambda: ZB(low=[0.0, 0.0], high=[1.0, -1.0]), "low must be <= high"),
        (lambda: ZB(low=np.zeros((2, 2))), "scalars or 1-d"),
        (lambda: Epsilon(0.1, "log"), "stabilizer must be one of"),
        (lambda: ZPlus(eps=0.1, stabilizer_kind="huge"), "stabilizer must be one of"),
        (lambda: LRP0(bias="split"), "bias must be one of"),
        (lambda: Epsilon(bias="squared"), "bias must be one of"),
        (lambda: AlphaBeta(bias="half"), "bias must be one of"),
        (lambda: AlphaBeta(inputs="abs"), "inputs must be one of"),
        (lambda: ZPlus(inputs="positive"), "inputs must be one of"),
        (lambda: WSquare(bias="full"), "bias must be one of"),
        (lambda: Gamma(variant="zennit"), "variant must be one of"),
        (lambda: Gamma(inputs="split"), "inputs must be one of"),
        (lambda: Gamma(bias="split"), "bias must be one of"),
    ],
)
def test_invalid_rule_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_method_options_raise():
    net = mlp([3, 4, 2], rng=0)
    x = np.ones((1, 3))
    with pytest.raises(ValueError, match="output must be one of"):
        sensitivity(net, x, output="log")
    with pytest.raises(ValueError, match="root must be one of"):
        taylor(net, x, root="nearest")
    with pytest.raises(ValueError, match="direction must be one of"):
        taylor(net, x, root="search", direction="up")
    with pytest.raises(ValueError, match=r"root must have shape \(3,\) \(one point\)"):
        taylor(net, x, root=np.zeros(4))
    with pytest.raises(ValueError, match="root contains 1 NaN"):
        taylor(net, x, root=np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"reference must have shape \(3,\) \(one point\)"):
        taylor(net, x, root="search", reference=np.zeros(4))
    with pytest.raises(TypeError, match="rules must be a Rule"):
        lrp(net, x, "lrp-0")
    with pytest.raises(TypeError, match="must be an LRP Rule"):
        RuleMap(first="zb")
    with pytest.raises(ValueError, match="not dense layers"):
        lrp(net, x, {1: LRP0()})
    with pytest.raises(ValueError, match="R_out must have the output's shape"):
        lrp(net, x, LRP0(), R_out=np.ones((1, 3)))
    with pytest.raises(ValueError, match="R_out contains NaN"):
        lrp(net, x, LRP0(), R_out=np.array([[1.0, np.nan]]))


def test_zb_on_a_hidden_layer_names_the_layer_and_where_zb_belongs():
    # was: "input [0, 1] = ... lies outside" for a hidden activation, with no layer named
    net = mlp([3, 4, 4, 2], rng=0)
    x = np.array([[0.5, -0.5, 0.25]])
    for layer in net.layers[::2]:
        layer.W[:] = 3.0  # hidden activations far above the box's high = 1
    with pytest.raises(
        ValueError, match=r"LRP at layer 4 .*activations of layer 3.*lies outside"
    ) as e:
        lrp(net, x, ZB(), target=0)
    assert "z^B is meant for the first linear layer (layer 0, the pixels)" in str(e.value)


def test_zb_rejects_inputs_outside_its_box():
    x = np.array([[0.5, -1.5, 0.0]])
    with pytest.raises(ValueError, match=r"z\^B needs low <= a <= high .*; a\[0, 1\]"):
        propagate_dense(ZB(), x, np.ones((3, 2)), None, np.ones((1, 2)))
    net = mlp([3, 4, 2], rng=0)
    with pytest.raises(ValueError, match=r"LRP at layer 0 .*the pixels.*z\^B needs low <= a"):
        lrp(net, x, RuleMap(Epsilon(0.1), first=ZB()), target=0)
    with pytest.raises(ValueError, match=r"a\[0, 2\] = 0 lies outside \[0.25, 1\]"):
        lrp(net, x, RuleMap(Epsilon(0.1), first=ZB(low=[-1, -2, 0.25], high=1.0)), target=0)
    with pytest.raises(ValueError, match="z\\^B bounds must be scalars or have 3 entries"):
        lrp(net, x, RuleMap(Epsilon(0.1), first=ZB(low=[-2.0, -2.0])), target=0)
