"""Cross-checks against the real Zennit and Captum (optional extra ``[torch]``).

refimpl with a peer's preset (refimpl/explain/presets.py) must give that peer's relevances on
random dense ReLU nets and inputs. Zennit's built-in composites put ZPlus/AlphaBeta/ZBox on
convolutions only, so every Linear layer gets its rule explicitly, and ReLU gets Zennit's ``Pass``
rule (as its composites do); Captum's rules are set as ``module.rule``
(refimpl/interop/peers.py).

Zero denominators cannot come from random data reliably, so hand-built ones (tests/test_presets.py,
``ZERO_NETS``/``ZERO_CASES``) pin the exact numbers of each peer; LRP-0 (``epsilon=0``) on random
nets is compared on the samples without an exact zero denominator.

Tolerance (tests/tolerance.py): per sample, ``max |R - R_ref| <= RTOL max |R_ref|`` with
``RTOL = 1e-10`` in float64, and in float32 (both sides compute in float32) ``RTOL = 1e-5`` plus
``128 u F`` with ``F`` the rounding scale of the slow twin (a result that cancels is only known to
about ``u F``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.explain.lrp import lrp
from refimpl.explain.methods import explain
from refimpl.explain.presets import preset
from refimpl.nn.layers import Dense
from refimpl.nn.network import Sequential, mlp
from refimpl.verify import verify

from .extras import import_extra
from .nets import dense_relu_case, randomize_biases
from .test_presets import ZERO_CASES, zero_case_net
from .tolerance import assert_close, rounding_scale

torch = import_extra("torch", "torch")
zennit = import_extra("zennit", "torch")
captum = import_extra("captum", "torch")

from captum.attr._utils import lrp_rules as captum_rules  # noqa: E402
from zennit import rules as zrules  # noqa: E402

from refimpl.interop import peers  # noqa: E402
from refimpl.interop.peers import captum_relevance, zennit_relevance  # noqa: E402

# refimpl method -> zero-argument factory of the peer's rule (refimpl/interop/peers.py)
ZENNIT_RULES = {m: (lambda m=m: peers.zennit_rule(m)) for m in peers.ZENNIT_RULES}
CAPTUM_RULES = {m: (lambda m=m: peers.captum_rule(m)) for m in peers.CAPTUM_RULES}


def captum_seeded_with_one(net, x, target, rule_for_linear):
    return captum_relevance(net, x, target, rule_for_linear, seeded_with_one=True)


RTOL = {np.float64: 1e-10, np.float32: 1e-5}


# --- Zennit -------------------------------------------------------------------------------------


def zero_denominator_samples(net, x) -> np.ndarray:
    """Per sample: does any dense layer output an exact 0 (an LRP-0 denominator)? About 8% of
    ``dense_relu_case`` examples do: inputs with exact zeros, no bias, dead hidden layers."""
    hit = np.zeros(len(x), dtype=bool)
    a = x
    for layer in net.layers:
        a = layer.forward(a)[0]
        if isinstance(layer, Dense):
            hit |= (a == 0).any(axis=1)
    return hit


def assert_matches_peer(method, net, x, R, R_ref, rtol=RTOL[np.float64]):
    """``assert_close``; for LRP-0 only on the samples without an exact zero denominator. On the
    others the peer divides by zero (0 / 0 = NaN, or R / 0 = inf, and it spreads to every input)
    where refimpl drops the share: that documented difference is asserted instead."""
    if method == "lrp-0":
        zero = zero_denominator_samples(net, x)
        assert np.isfinite(R).all()
        assert not np.isfinite(R_ref[zero]).all(axis=1).any()
        R, R_ref = R[~zero], R_ref[~zero]
        if not len(R):
            return
    assert_close(R, R_ref, rtol)


@pytest.mark.parametrize("method", sorted(ZENNIT_RULES))
@given(case=dense_relu_case())
def test_zennit_rule_on_every_linear_layer_float64(method, case):
    net, x, target = case
    R_ref = zennit_relevance(net, x, target, ZENNIT_RULES[method])
    R = explain(net, x, method, preset="zennit", target=target).R
    assert_matches_peer(method, net, x, R, R_ref)


@given(case=dense_relu_case())
def test_zennit_zbox_first_layer_epsilon_above_float64(case):
    net, x, target = case
    R_ref = zennit_relevance(
        net, x, target, lambda: zrules.Epsilon(), first=lambda: zrules.ZBox(low=-1.0, high=1.0)
    )
    z = preset("zennit")
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    rules = {i: z.rule("lrp-epsilon") for i in dense}
    rules[dense[0]] = z.rule("lrp-zb", low=-1.0, high=1.0)
    R = explain(net, x, "lrp", preset="zennit", rules=rules, target=target).R
    assert_close(R, R_ref, RTOL[np.float64])


@given(case=dense_relu_case(), seed=st.integers(0, 2**32 - 1))
def test_zennit_zbox_per_feature_bounds_float64(case, seed):
    # refimpl's ZB takes 1-d arrays of per-feature bounds, Zennit's ZBox tensors that broadcast
    # against the input: shape (1, J). Each box holds the inputs with a margin of at least 0.01.
    # On a face (x = l) refimpl's q = (x - l) w+ + (x - h) w- has an exact zero where Zennit's
    # x w - l w+ - h w- leaves rounding, which a 1e-6 denominator then scales up: both are right
    # to within rounding, but not to within 1e-10 of a result that is itself that rounding.
    net, x, target = case
    rng = np.random.default_rng(seed)
    J = x.shape[1]
    low = x.min(axis=0) - rng.uniform(0.01, 1.0, J)
    high = x.max(axis=0) + rng.uniform(0.01, 1.0, J)
    R_ref = zennit_relevance(
        net,
        x,
        target,
        lambda: zrules.Epsilon(),
        first=lambda: zrules.ZBox(
            low=torch.from_numpy(low[None, :]), high=torch.from_numpy(high[None, :])
        ),
    )
    z = preset("zennit")
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    rules = {i: z.rule("lrp-epsilon") for i in dense}
    rules[dense[0]] = z.rule("lrp-zb", low=low, high=high)
    R = explain(net, x, "lrp", preset="zennit", rules=rules, target=target).R
    assert_close(R, R_ref, RTOL[np.float64])


@pytest.mark.parametrize("method", ["lrp-epsilon", "lrp-zplus", "lrp-alpha-beta", "lrp-gamma"])
@given(case=dense_relu_case(dtype=np.float32))
def test_zennit_rule_float32(method, case):
    net, x, target = case
    R_ref = zennit_relevance(net, x, target, ZENNIT_RULES[method])
    R = explain(net, x, method, preset="zennit", target=target).R
    assert R.dtype == np.float32
    assert_close(
        R,
        R_ref,
        RTOL[np.float32],
        rounding_scale(net, x, target, preset("zennit").rule(method), "onehot"),
        np.float32,
    )


# --- Captum -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(CAPTUM_RULES))
@given(case=dense_relu_case())
def test_captum_rule_on_every_linear_layer_float64(method, case):
    net, x, target = case
    R_ref = captum_relevance(net, x, target, CAPTUM_RULES[method])
    R = explain(net, x, method, preset="captum", target=target).R
    assert_matches_peer(method, net, x, R, R_ref)


@pytest.mark.parametrize("method", ["lrp-epsilon", "lrp-gamma", "lrp-zplus"])
@given(case=dense_relu_case(dtype=np.float32))
def test_captum_rule_float32(method, case):
    net, x, target = case
    R_ref = captum_relevance(net, x, target, CAPTUM_RULES[method])
    R = explain(net, x, method, preset="captum", target=target).R
    assert R.dtype == np.float32
    assert_close(
        R,
        R_ref,
        RTOL[np.float32],
        rounding_scale(net, x, target, preset("captum").rule(method), "logit"),
        np.float32,
    )


# --- zero denominators, by hand ----------------------------------------------------------------

HAND_RULES = {
    "zennit": {**ZENNIT_RULES, "lrp-zb": lambda: zrules.ZBox(low=-1.0, high=1.0)},
    "captum": CAPTUM_RULES,
}
PEER_ZERO_CASES = [c for c in ZERO_CASES if c.preset in HAND_RULES]


@pytest.mark.parametrize(
    "case", PEER_ZERO_CASES, ids=[f"{c.preset}-{c.method}-{c.net}" for c in PEER_ZERO_CASES]
)
def test_zero_denominator_by_hand_matches_the_real_peer(case):
    # tests/test_presets.py works out these numbers by hand; the real library must give them
    # (inf where it divides by zero). Captum is read before it multiplies by f(x).
    net, x, R_out = zero_case_net(case.net)
    rule = HAND_RULES[case.preset][case.method]
    if case.preset == "zennit":
        got = zennit_relevance(net, x, None, rule, R_out=R_out)
    else:
        assert R_out.tolist() == [[1.0]]  # Captum's pass is seeded with 1
        _, got = captum_seeded_with_one(net, x, np.array([0]), rule)
    expected = case.R if case.library is None else case.library
    np.testing.assert_allclose(got, [expected], rtol=1e-12, atol=0)


def test_lrp0_on_a_zero_denominator_the_peers_divide_by_zero_and_refimpl_drops_the_share():
    # a documented difference: W = [1, -1], b = 0, x = [1, 1] gives z = 0 exactly
    net, x, _ = zero_case_net("z0")
    target = np.array([0])
    # Zennit, seeded with 1 (one-hot): R = a w (1 / 0) = [inf, -inf]; refimpl drops the 1
    R_z = zennit_relevance(net, x, target, ZENNIT_RULES["lrp-0"])
    np.testing.assert_array_equal(R_z, [[np.inf, -np.inf]])
    e = explain(net, x, "lrp-0", preset="zennit", target=target)
    np.testing.assert_array_equal(e.R, [[0.0, 0.0]])
    np.testing.assert_array_equal(e.budget.dropped, [1.0])
    # Captum: its pass seeded with 1 gives [inf, -inf], and attribute multiplies by f(x) = 0:
    # inf * 0 = NaN. refimpl seeds with f(x) = 0 and drops that share (0); seeded with 1 it
    # drops the 1
    R_c, R_c1 = captum_seeded_with_one(net, x, target, CAPTUM_RULES["lrp-0"])
    np.testing.assert_array_equal(R_c1, [[np.inf, -np.inf]])
    assert np.isnan(R_c).all()
    e = explain(net, x, "lrp-0", preset="captum", target=target)
    np.testing.assert_array_equal(e.f, [0.0])
    np.testing.assert_array_equal(e.R, [[0.0, 0.0]])
    e = lrp(net, x, preset("captum").rule("lrp-0"), R_out=np.ones((1, 1)))
    np.testing.assert_array_equal(e.R, [[0.0, 0.0]])
    np.testing.assert_array_equal(e.budget.dropped, [1.0])


def test_epsilon_on_a_zero_denominator_gives_one_over_eps_in_zennit_captum_and_refimpl():
    # z = 0 -> z + eps sign(0) = +eps (sign(0) = +1 in both): R = a w / eps = [1/eps, -1/eps]
    net, x, _ = zero_case_net("z0")
    target = np.array([0])
    R_z = zennit_relevance(net, x, target, ZENNIT_RULES["lrp-epsilon"])  # eps 1e-6
    np.testing.assert_allclose(R_z, [[1e6, -1e6]], rtol=1e-12, atol=0)
    R = explain(net, x, "lrp-epsilon", preset="zennit", target=target).R
    np.testing.assert_allclose(R, R_z, rtol=1e-12, atol=0)
    # Captum (eps 1e-9): [1e9, -1e9] seeded with 1; attribute multiplies by f(x) = 0, and so
    # does refimpl's captum preset, which seeds with f(x)
    R_c, R_c1 = captum_seeded_with_one(net, x, target, CAPTUM_RULES["lrp-epsilon"])
    np.testing.assert_allclose(R_c1, [[1e9, -1e9]], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(R_c, [[0.0, 0.0]])
    np.testing.assert_array_equal(explain(net, x, "lrp-epsilon", preset="captum").R, R_c)
    R1 = lrp(net, x, preset("captum").rule("lrp-epsilon"), R_out=np.ones((1, 1))).R
    np.testing.assert_allclose(R1, R_c1, rtol=1e-12, atol=0)


# --- where the paper and the peers differ -------------------------------------------------------


def big_bias_net():
    """784-free toy: 4 inputs, 3 hidden ReLUs with large positive biases, 2 outputs."""
    rng = np.random.default_rng(7)
    net = mlp([4, 3, 2], activation="relu", bias=True, rng=rng)
    net.layers[0].params["b"][:] = [2.0, 1.5, 3.0]
    net.layers[2].params["b"][:] = [1.0, -0.5]
    x = np.abs(rng.normal(0, 1, (3, 4)))  # nonnegative: the paper's alpha-beta applies as written
    return net, x, np.zeros(3, dtype=np.int64)


def test_paper_alpha_beta_conserves_where_zennit_and_captum_absorb_into_the_bias():
    net, x, target = big_bias_net()
    paper = explain(net, x, "lrp-alpha-beta", preset="paper", alpha=1.0, beta=0.0, target=target)
    f = paper.f
    np.testing.assert_allclose(paper.R.sum(axis=1), f, rtol=1e-12)  # eq. 4.9, exactly

    R_z = zennit_relevance(net, x, target, lambda: zrules.AlphaBeta(alpha=1.0, beta=0.0))
    R_c = captum_relevance(net, x, target, lambda: captum_rules.Alpha1_Beta0_Rule())
    lost_z = 1 - R_z.sum(axis=1)  # seeded with one-hot: the total is 1
    lost_c = 1 - R_c.sum(axis=1) / f
    assert np.all(lost_z > 0.3) and np.all(lost_c > 0.3), (lost_z, lost_c)
    # and refimpl's budget, under each peer's preset, says exactly where it went: the biases
    for name, R_peer, scale in (("zennit", R_z, 1.0), ("captum", R_c, f)):
        e = explain(net, x, "lrp-alpha-beta", preset=name, alpha=1.0, beta=0.0, target=target)
        assert_close(e.R, R_peer, 1e-10)
        absorbed = (e.budget.bias + e.budget.stabilizer) / scale
        np.testing.assert_allclose(absorbed, 1 - R_peer.sum(axis=1) / scale, rtol=1e-9)


def test_paper_zplus_refuses_negative_inputs_that_the_peers_split_silently():
    net, x, target = big_bias_net()
    x = x - 1.0  # some pixels negative
    with pytest.raises(ValueError, match="negative input"):
        explain(net, x, "lrp-zplus", preset="paper", target=target)
    R_z = zennit_relevance(net, x, target, lambda: zrules.ZPlus())
    R_c = captum_relevance(net, x, target, lambda: captum_rules.Alpha1_Beta0_Rule())
    # the two peers disagree with each other: Zennit splits a w into (a+ w+) + (a- w-), Captum
    # keeps a w+ whatever the sign of a
    assert (
        np.abs(
            R_z * explain(net, x, "lrp-zplus", preset="captum", target=target).f[:, None] - R_c
        ).max()
        > 1e-2
    )
    assert_close(explain(net, x, "lrp-zplus", preset="zennit", target=target).R, R_z, 1e-10)
    assert_close(explain(net, x, "lrp-zplus", preset="captum", target=target).R, R_c, 1e-10)


def test_zennit_alpha_beta_refuses_what_float_rounding_makes_inexact():
    # Zennit checks alpha - beta == 1 exactly; 1.4 - 0.4 = 0.9999999999999999 in binary floats.
    # No option can match a rule that Zennit refuses to build; refimpl accepts it (1e-9 tolerance).
    with pytest.raises(ValueError, match="must equal 1"):
        zrules.AlphaBeta(alpha=1.4, beta=0.4)
    net, x, target = big_bias_net()
    R = explain(net, x, "lrp-alpha-beta", preset="paper", alpha=1.4, beta=0.4, target=target).R
    np.testing.assert_allclose(R.sum(axis=1), net(x)[:, 0], rtol=1e-12)


def test_zennit_gamma_zero_params_still_branches_on_the_biased_output():
    # Pinned difference: Zennit's Gamma(zero_params='bias') drops the bias from its terms but
    # picks the branch by the sign of the unmodified output z + b (its fifth, NoMod, term);
    # refimpl's Gamma(variant='generalized', bias='none') leaves the bias out of the branch too.
    # One unit with z = 1.0 but z + b = -0.25: Zennit takes the negative branch, refimpl the
    # positive one, and the two inputs' shares differ.
    W = np.array([[1.0], [-0.5]])
    b = np.array([-1.25])
    a = np.array([[1.5, 1.0]])  # z = 1.0, z + b = -0.25
    net = Sequential([Dense(W, b)])
    zen = zennit_relevance(
        net, a, np.array([0]), lambda: zrules.Gamma(gamma=0.25, zero_params="bias")
    )
    g = 0.25
    # Zennit, negative branch: contributions a+ (w + g w-) = [1.5, 1.0 * (-0.5 - 0.125)]
    c_neg = np.array([1.5 * 1.0, 1.0 * (-0.5 + g * -0.5)])
    expected_zennit = c_neg / (c_neg.sum() + 1e-6)  # one-hot seed, eps sign(d)
    np.testing.assert_allclose(zen[0], expected_zennit, rtol=1e-12)
    ours = explain(net, a, "lrp-gamma", preset="zennit", bias="none", target=0).R
    c_pos = np.array([1.5 * (1.0 + g * 1.0), 1.0 * -0.5])
    np.testing.assert_allclose(ours[0], c_pos / (c_pos.sum() + 1e-6), rtol=1e-12)
    assert np.abs(ours - zen).max() > 0.1


def test_verify_accepts_zennit_under_its_preset_and_names_it_under_the_paper():
    net, x, target = big_bias_net()
    R_z = zennit_relevance(net, x, target, lambda: zrules.AlphaBeta(alpha=2.0, beta=1.0))
    assert verify(net, x, R_z, "lrp-alpha-beta", preset="zennit", target=target).passed
    report = verify(net, x, R_z, "lrp-alpha-beta", alpha=2.0, beta=1.0, target=target)
    assert not report.passed
    assert report.diagnosis_message().startswith("the candidate matches preset 'zennit'")
    R_c = captum_relevance(net, x, target, lambda: captum_rules.EpsilonRule())
    report = verify(net, x, R_c, "lrp-epsilon", target=target)
    expected = "the candidate matches preset 'captum' (Captum 0.9.0): eps=1e-09"
    assert report.diagnosis_message() == expected


def test_verify_passes_real_float32_peers_on_a_wide_net():
    # Captum's z+ (weights-only clamp, full bias) cancels in float32 on wide layers: the real
    # library is off by far more than 1e-5 max |R|, and verify must still call it correct
    rng = np.random.default_rng(0)
    net = mlp([784, 256, 128, 10], activation="relu", bias=True, rng=rng)
    randomize_biases(net, rng)
    net32 = copy.deepcopy(net).astype(np.float32)
    x = rng.uniform(-1, 1, (20, 784)).astype(np.float32)
    target = rng.integers(0, 10, 20)
    R_c = captum_relevance(net32, x, target, CAPTUM_RULES["lrp-zplus"])
    net64 = copy.deepcopy(net32).astype(np.float64)  # the float32 weights, exactly
    exact = explain(net64, x.astype(np.float64), "lrp-zplus", preset="captum", target=target).R
    rel = np.abs(R_c - exact).max(axis=1) / np.abs(exact).max(axis=1)
    assert rel.max() > 1e-5
    assert verify(net32, x, R_c, "lrp-zplus", preset="captum", target=target).passed
    R_z = zennit_relevance(net32, x, target, ZENNIT_RULES["lrp-alpha-beta"])
    assert verify(net32, x, R_z, "lrp-alpha-beta", preset="zennit", target=target).passed
    # the other library's numbers are not accepted
    assert not verify(
        net32, x, R_c, "lrp-zplus", preset="zennit", target=target, diagnose_mismatch=False
    ).passed


def test_the_peer_drivers_take_any_target_form_and_cast_the_inputs():
    net = mlp([5, 4, 3], activation="relu", bias=True, rng=3)
    x = np.random.default_rng(4).uniform(-1, 1, (4, 5))
    pred = net(x).argmax(axis=1)
    ref = zennit_relevance(net, x, pred, ZENNIT_RULES["lrp-epsilon"])
    for target in ("predicted", pred.tolist()):
        np.testing.assert_array_equal(
            zennit_relevance(net, x, target, ZENNIT_RULES["lrp-epsilon"]), ref
        )
    eps = ZENNIT_RULES["lrp-epsilon"]
    one = zennit_relevance(net, x, 2, eps)
    np.testing.assert_array_equal(one, zennit_relevance(net, x, [2] * 4, eps))
    net32 = copy.deepcopy(net).astype(np.float32)
    assert captum_relevance(net32, x, 1, CAPTUM_RULES["lrp-epsilon"]).dtype == np.float32
    with pytest.raises(ValueError, match="Captum has no counterpart of 'lrp-w2'"):
        peers.captum_rule("lrp-w2")
