"""Every LRP rule against its slow twin (tests/rule_twins.py), on single layers and whole nets.

The fast rules (``propagate_dense``, ``lrp``) factorize contributions and share one code path; the
twins materialize the ``(n, J, K)`` contribution tensors straight from the formulas. For every
rule and every option, they must agree on the input relevance and on the relevance budget (bias,
stabilizer, dropped).

Data: small float64 layers (n 1-3, J and K 1-6) drawn either on the grid ``{-1, -3/4, ..., 1}``,
where every sum is exact in float64 so zero denominators are exact zeros in both versions, or
from N(0, 1); each entry is zeroed with probability 0, 0.3 or 0.7, so dead inputs, empty weight
columns and zero denominators are common.

Tolerance: ``|fast - twin| <= RTOL * scale`` with ``RTOL = 1e-12`` and ``scale`` the twin's
rounding scale (see ``TwinResult``): the sum of the absolute values of every term added into
an entry, each weighted by ``1 + kappa``, ``kappa`` the condition number of its denominator, and
on nets the propagated scale of the incoming relevance. ``scale >= |twin|``, so this is at least
as strict as ``rtol = 1e-12``, about 1e3 times the float64 rounding of these sums; a wrong
formula, a wrong option or a misplaced bias is off by O(|R|). An absolute floor of 1e-300
covers subnormal underflow (Hypothesis likes LeakyReLU slopes such as 5e-324).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
from refimpl.nn.layers import Dense

from . import rule_twins as tw
from .nets import random_mlp

RTOL = 1e-12
TINY = 1e-300  # absolute floor: results in the subnormal range lose relative precision
KINDS = tw.KINDS


def assert_within(fast, twin, scale, what=""):
    """``|fast - twin| <= RTOL * scale`` elementwise, and everything finite."""
    fast, twin, scale = np.asarray(fast), np.asarray(twin), np.asarray(scale)
    assert np.all(np.isfinite(fast)), f"{what}: non-finite values {fast}"
    err = np.abs(fast - twin)
    bad = err > RTOL * scale + TINY
    assert not bad.any(), (
        f"{what}: fast {fast[bad]} vs twin {twin[bad]} (|diff| {err[bad]}, "
        f"allowed {RTOL * scale[bad]})"
    )


def assert_budget_matches(lb, twin, R_out, R_in, what=""):
    """A fast ``LayerBudget`` against the twin's book-keeping."""
    sc = twin.budget_scale
    assert_within(lb.relevance_out, R_out.sum(axis=1), sc, f"{what} relevance_out")
    assert_within(lb.relevance_in, R_in.sum(axis=1), sc, f"{what} relevance_in")
    assert_within(lb.bias, twin.bias, sc, f"{what} bias")
    assert_within(lb.stabilizer, twin.stabilizer, sc, f"{what} stabilizer")
    assert_within(lb.dropped, twin.dropped, sc, f"{what} dropped")


# --------------------------------------------------------------------------- data


def _sampler(rng, grid, zero_frac):
    def sample(shape):
        v = rng.integers(-4, 5, shape) / 4 if grid else rng.normal(size=shape)
        return np.where(rng.random(shape) < zero_frac, 0.0, v)

    return sample


@st.composite
def dense_layers(draw, max_n=3, max_dim=6):
    """``(a, W, b, R, rng)``: a small layer, its inputs and the relevance of its outputs."""
    n, J, K = (draw(st.integers(1, m)) for m in (max_n, max_dim, max_dim))
    grid = draw(st.booleans())
    zero_frac = draw(st.sampled_from([0.0, 0.3, 0.7]))
    has_bias = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sample = _sampler(rng, grid, zero_frac)
    a, W = sample((n, J)), sample((J, K))
    b = sample((K,)) if has_bias else None
    R = sample((n, K))
    return a, W, b, R, rng


STABILIZERS = st.one_of(
    st.just({}),
    st.builds(
        lambda kind, eps: {"eps": eps, "stabilizer_kind": kind},
        st.sampled_from(KINDS),
        st.sampled_from([1e-6, 0.25]),
    ),
)

# (rule class, options) for every option combination; the stabilizer (none or one of the four
# kinds, eps 1e-6 or 0.25 -- on the grid, z = -0.25 makes the unsigned one hit zero) is drawn.
CONFIGS = (
    [(LRP0, {"bias": bias}) for bias in ("full", "none")]
    + [(Epsilon, {"bias": bias}) for bias in ("full", "none")]
    + [
        (AlphaBeta, {"alpha": al, "beta": be, "bias": bias, "inputs": inputs})
        for al, be in ((1.0, 0.0), (2.0, 1.0), (1.4, 0.4))
        for bias in ("none", "split", "full")
        for inputs in ("nonnegative", "split", "weights")
    ]
    + [
        (ZPlus, {"bias": bias, "inputs": inputs})
        for bias in ("none", "split", "full")
        for inputs in ("nonnegative", "split", "weights")
    ]
    + [(ZB, {"bounds": "scalar"}), (ZB, {"bounds": "per-feature"})]
    + [(WSquare, {"bias": bias}) for bias in ("none", "squared")]
    + [(Flat, {})]
    + [
        (Gamma, {"variant": "original", "bias": bias, "inputs": inputs})
        for bias in ("full", "raw", "none")
        for inputs in ("nonnegative", "weights")
    ]
    + [(Gamma, {"variant": "generalized", "bias": bias}) for bias in ("full", "raw", "none")]
)


def config_id(cfg):
    cls, opts = cfg
    return cls.name + "".join(f"-{v}" for v in opts.values())


def needs_nonnegative(cls, opts):
    return opts.get("inputs") == "nonnegative" and opts.get("variant", "original") == "original"


def build_rule(cls, opts, stab, gamma, a, rng):
    """The rule of a config for inputs ``a`` (z^B bounds are made to contain ``a``)."""
    opts = dict(opts)
    if cls is LRP0:
        return LRP0(**opts)
    if cls is Epsilon:
        stab = stab or {"eps": 0.25, "stabilizer_kind": "signed"}
    if cls is Gamma:
        opts["gamma"] = gamma
    if cls is ZB:
        margin = rng.integers(1, 3, (2, a.shape[1])) / 4  # inputs on the bounds: see below
        if opts.pop("bounds") == "scalar":
            m = np.abs(a).max() + margin[0, 0]
            opts = {"low": -m, "high": m}
        else:
            opts = {"low": a.min(axis=0) - margin[0], "high": a.max(axis=0) + margin[1]}
    return cls(**opts, **stab)


# --------------------------------------------------------------------------- the twins themselves


def test_twins_match_hand_computed_layer():
    """The twins on a 2 -> 2 layer worked out by hand (checks the twin helpers themselves)."""
    a = np.array([[1.0, 2.0]])
    W = np.array([[1.0, -1.0], [1.0, 2.0]])
    R = np.array([[1.0, 3.0]])
    # LRP-0: z = (3, 3); R_1 = 1/3 - 1, R_2 = 2/3 + 4
    r0 = tw.twin_lrp0(a, W, None, R)
    np.testing.assert_allclose(r0.R, [[-2 / 3, 14 / 3]], rtol=1e-15)
    assert r0.dropped[0] == 0
    # alpha=2, beta=1: unit 1 has no negative contribution (its -1 * R_1 share is dropped);
    # unit 2: z+ = 4, z- = -1. R_1 = 2/3 - 3, R_2 = 4/3 + 6.
    ab = tw.twin_alpha_beta(a, W, None, R, alpha=2.0, beta=1.0)
    np.testing.assert_allclose(ab.R, [[-7 / 3, 22 / 3]], rtol=1e-15)
    np.testing.assert_allclose(ab.dropped, [-1.0], rtol=1e-15)
    # epsilon 0.5, signed, bias (0, -3): d = z + b = (3, 0), d' = (3 + 0.5, 0 + 0.5), sign(0) = +1
    b = np.array([0.0, -3.0])
    ep = tw.twin_epsilon(a, W, b, R, eps=0.5)
    np.testing.assert_allclose(ep.R, [[1 / 3.5 - 3 / 0.5, 2 / 3.5 + 4 * 3 / 0.5]], rtol=1e-15)
    np.testing.assert_allclose(ep.bias, [-3 * 3 / 0.5], rtol=1e-15)
    np.testing.assert_allclose(ep.stabilizer, [0.5 / 3.5 + 0.5 * 3 / 0.5], rtol=1e-15)


# --------------------------------------------------------------------------- single layers


def put_on_corner(a, W, low, high):
    """Sample 0 on the corner of the box where unit 0's z^B contributions all vanish:
    ``x_j = l_j`` where ``w_j0 > 0`` and ``x_j = h_j`` where ``w_j0 < 0``."""
    a = a.copy()
    low, high = np.broadcast_to(low, a.shape[1:]), np.broadcast_to(high, a.shape[1:])
    a[0] = np.where(W[:, 0] > 0, low, np.where(W[:, 0] < 0, high, a[0]))
    return a


@pytest.mark.parametrize("cfg", CONFIGS, ids=config_id)
@given(layer=dense_layers(), stab=STABILIZERS, gamma=st.sampled_from([0.0, 0.25, 1.0]))
def test_propagate_dense_equals_twin(cfg, layer, stab, gamma):
    cls, opts = cfg
    a, W, b, R, rng = layer
    if needs_nonnegative(cls, opts):
        a = np.abs(a)
    if cls in (LRP0,):
        stab = {}
    rule = build_rule(cls, opts, stab, gamma, a, rng)
    fn, options = tw.twin_for(rule)
    twin = fn(a, W, b, R, **options)
    R_in, lb = propagate_dense(rule, a, W, b, R)
    assert R_in.shape == a.shape
    assert_within(R_in, twin.R, twin.scale, rule.describe())
    assert_budget_matches(lb, twin, R, R_in, rule.describe())


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c[0] is not Flat], ids=config_id)
def test_empty_weight_column_drops_or_stabilizes_its_relevance(cfg):
    """A unit whose weights are all 0 has a zero denominator (no bias): its R_k is dropped --
    or, with a stabilizer, absorbed by it -- and no input gets NaN or inf."""
    cls, opts = cfg
    a = np.array([[0.5, 1.0, 0.25], [1.0, 0.0, 0.75]])
    W = np.array([[1.0, 0.0, -0.5], [-1.0, 0.0, 2.0], [0.5, 0.0, 1.0]])
    R = np.array([[0.0, 2.0, 0.0], [0.0, -3.0, 0.0]])  # all relevance on the empty unit 1
    kinds = [{"eps": 0.25, "stabilizer_kind": k} for k in KINDS]
    stabs = {LRP0: [{}], Epsilon: kinds}.get(cls, [{}, *kinds])
    for stab in stabs:
        rule = build_rule(cls, opts, stab, 0.25, a, np.random.default_rng(0))
        R_in, lb = propagate_dense(rule, a, W, None, R)
        np.testing.assert_array_equal(R_in, 0.0)  # every contribution of unit 1 is 0
        np.testing.assert_array_equal(lb.bias, 0.0)
        if not stab:  # nothing else can take it: dropped, and reported
            np.testing.assert_allclose(lb.dropped, R.sum(axis=1), rtol=1e-15, err_msg=str(rule))
        np.testing.assert_allclose(
            lb.dropped + lb.stabilizer, R.sum(axis=1), rtol=1e-15, err_msg=str(rule)
        )


@pytest.mark.parametrize("bounds", ["scalar", "per-feature"])
@given(layer=dense_layers(), stab=STABILIZERS)
def test_zb_on_the_bounds_equals_twin(bounds, layer, stab):
    """z^B with inputs on the bounds (common: background pixels at -1): sample 0 sits on the
    corner of the box that zeroes every contribution of unit 0, which carries relevance.

    Regression: refimpl summed ``x w - l w+ - h w-`` as three products, so the exact zero came
    out as +-1e-16 and R_k vanished, neither passed on nor booked."""
    a, W, b, R, rng = layer
    assume(a.shape[1] >= 2 and np.count_nonzero(W[:, 0]) >= 2)
    a = a + 0.1 * rng.normal(size=a.shape)  # off the grid, where sums are no longer exact
    W = W + 0.1 * rng.normal(size=W.shape) * (W != 0)
    R[0, 0] = 1.0
    rule = build_rule(ZB, {"bounds": bounds}, stab, 0.0, a, rng)
    a = put_on_corner(a, W, rule.low, rule.high)
    twin = tw.twin_zb(a, W, b, R, **tw.twin_for(rule)[1])
    R_in, lb = propagate_dense(rule, a, W, b, R)
    assert_within(R_in, twin.R, twin.scale, rule.describe())
    assert_budget_matches(lb, twin, R, R_in, rule.describe())


def test_zb_on_a_corner_of_its_box_drops_the_relevance_and_says_so():
    """Pixels at the bounds of ZB() = [-1, 1]; unit 0 has w+ only on pixels at -1 and w- only on
    pixels at +1, so every q_i0 = (x_i - l) w+_i0 + (x_i - h) w-_i0 is exactly 0: its
    denominator is 0 and R_0 must be dropped, and booked as dropped."""
    x = np.array([[1.0, -1.0, -1.0]])
    W = np.array([[-0.1, 0.5], [0.1, 0.25], [0.1, -1.0]])
    R = np.array([[1.0, 0.0]])
    R_in, lb = propagate_dense(ZB(), x, W, None, R)
    np.testing.assert_array_equal(R_in, 0.0)
    np.testing.assert_array_equal(lb.dropped, [1.0])  # was 0, with closure error 1
    np.testing.assert_array_equal(lb.relevance_out - lb.relevance_in - lb.absorbed, [0.0])


# --------------------------------------------------------------------------- whole networks


@st.composite
def sparse_nets(draw, activations=None, bias=None, max_width=12, zero_fracs=(0.0, 0.3, 0.7)):
    """A random_mlp net and batch with weights and inputs zeroed at a drawn rate.

    LeakyReLU slopes in (0, 1e-6) are rejected: they make subnormal activations, and LRP-0
    denominators of 1e-323 overflow ``R_k / z_k`` to inf in any implementation.
    """
    net, x, rng = draw(random_mlp(max_width=max_width, activations=activations, bias=bias))
    assume(all(not 0 < getattr(layer, "slope", 0) < 1e-6 for layer in net.layers))
    zero_frac = draw(st.sampled_from(zero_fracs))
    for layer in net.layers:
        if isinstance(layer, Dense):
            W = layer.params["W"]
            W[rng.random(W.shape) < zero_frac] = 0.0
    x = np.where(rng.random(x.shape) < zero_frac, 0.0, x)
    c = draw(st.integers(0, net.output_shape[0] - 1))
    return net, x, rng, c


FIRST_RULES = ("zb", "w2", "flat")


def first_rule(name, x):
    """A rule for the pixel layer (inputs of any sign); z^B gets a box around the batch."""
    if name == "zb":
        return ZB(low=x.min(axis=0) - 0.5, high=x.max(axis=0) + 0.5)
    return WSquare() if name == "w2" else Flat()


def check_against_net_twin(net, x, c, default, first=None):
    rules = RuleMap(default, first=first)
    ex = lrp(net, x, rules, target=c, keep_layers=True)
    twin = tw.twin_lrp_net(net, x, tw.twin_rules(net, default, first), c)
    np.testing.assert_array_equal(ex.f, twin.f)
    assert len(ex.layers) == len(twin.layers) == len(net.layers) + 1
    for i, (R_fast, R_twin, scale) in enumerate(
        zip(ex.layers, twin.layers, twin.scales, strict=True)
    ):
        assert_within(R_fast, R_twin, scale, f"relevance entering layer {i}")
    assert_within(ex.R, twin.R, twin.scales[0], "input relevance")
    books = {i: lb for i, _, lb in ex.budget.layers}
    assert sorted(books) == sorted(twin.steps)
    for i, step in twin.steps.items():
        assert_budget_matches(books[i], step, ex.layers[i + 1], ex.layers[i], f"layer {i}")
    return ex


# (rule everywhere, or default with a pixel rule first; which activations keep it valid)
NET_CONFIGS = [
    pytest.param(LRP0(), False, None, id="lrp0"),
    pytest.param(LRP0(bias="none"), False, None, id="lrp0-nobias"),
    pytest.param(Epsilon(0.25), False, None, id="eps-signed"),
    pytest.param(Epsilon(0.25, "relative", bias="none"), False, None, id="eps-relative"),
    pytest.param(Epsilon(0.25, "unsigned"), False, None, id="eps-unsigned"),
    pytest.param(Epsilon(1e-6, "zero_only"), False, None, id="eps-zero-only"),
    pytest.param(AlphaBeta(2, 1), True, ["relu", "sigmoid"], id="ab21"),
    pytest.param(AlphaBeta(1.4, 0.4, bias="split", inputs="split"), False, None, id="ab-split"),
    pytest.param(
        AlphaBeta(2, 1, bias="full", inputs="weights", eps=1e-6),
        False,
        None,
        id="ab-full-weights-eps",
    ),
    pytest.param(ZPlus(), True, ["relu"], id="zplus"),
    pytest.param(ZPlus(bias="split", inputs="split"), False, None, id="zplus-split"),
    pytest.param(WSquare(bias="squared"), False, None, id="w2-squared"),
    pytest.param(Flat(), False, None, id="flat"),
    pytest.param(Gamma(0.25), True, ["relu"], id="gamma"),
    pytest.param(Gamma(0.25, bias="raw", inputs="weights"), False, None, id="gamma-raw"),
    pytest.param(Gamma(0.5, "generalized"), False, None, id="gamma-generalized"),
]


@pytest.mark.parametrize("rule, pixel_first, activations", NET_CONFIGS)
@given(data=st.data(), first=st.sampled_from(FIRST_RULES))
def test_lrp_equals_net_twin(rule, pixel_first, activations, data, first):
    """``lrp`` (rule per layer, activations pass relevance, output = logit of the target) equals
    the twin network LRP at every layer, and its budget equals the twin's, layer by layer."""
    net, x, _, c = data.draw(sparse_nets(activations=activations))
    check_against_net_twin(net, x, c, rule, first_rule(first, x) if pixel_first else None)


@given(case=sparse_nets())
def test_lrp_predicted_target_is_the_argmax(case):
    net, x, _, _ = case
    c = net(x).argmax(axis=1)
    ex = lrp(net, x, Epsilon(0.25), target="predicted")
    ref = lrp(net, x, Epsilon(0.25), target=c)
    np.testing.assert_array_equal(ex.R, ref.R)
    np.testing.assert_array_equal(ex.f, net(x)[np.arange(len(c)), c])


def test_option_choices_are_declared_once_and_read_everywhere():
    """A rule option's values live in the rule's field metadata (rules.choice); validation, the
    command line, verify's diagnosis and the preset table all read them from there."""
    from dataclasses import fields

    from refimpl.cli import build_parser
    from refimpl.explain import rules as rules_module
    from refimpl.explain.presets import preset_table
    from refimpl.explain.rules import CHOICE_OPTIONS, RULES, all_choices, choices_by_rule
    from refimpl.verify import diagnosis

    for cls in RULES.values():
        for f in fields(cls):
            values = f.metadata.get("choices")
            if not values:
                continue
            for v in values:
                cls(**{f.name: v}, **({"eps": 0.1} if f.name == "stabilizer_kind" else {}))
            with pytest.raises(ValueError, match="must be one of"):
                cls(**{f.name: "no-such-value"})
    assert choices_by_rule("bias")["lrp-w2"] == ("none", "squared")
    assert "lrp-0" not in choices_by_rule("stabilizer_kind")  # LRP-0 has no stabilizer
    explain = build_parser()._subparsers._group_actions[0].choices["explain"]
    by_dest = {a.dest: a for a in explain._actions}
    for name, dest in (("bias", "bias"), ("inputs", "inputs"), ("variant", "variant")):
        assert tuple(by_dest[dest].choices) == all_choices(name)
    assert tuple(by_dest["stabilizer_kind"].choices) == all_choices("stabilizer_kind")
    assert diagnosis._DOMAINS == {name: choices_by_rule(name) for name in CHOICE_OPTIONS}
    assert "bias: full / raw / none; inputs: nonnegative / weights" in preset_table()
    assert set(all_choices("bias")) == {"none", "split", "full", "squared", "raw"}
    assert rules_module.option_choices(rules_module.Gamma, "variant") == (
        "original",
        "generalized",
    )
