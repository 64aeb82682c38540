"""Presets: each library's conventions as a bundle of rule options (refimpl/explain/presets.py).

iNNvestigate and the LRP Toolbox are checked here against line-by-line transcriptions of their
source (tests/peer_transcripts.py); Zennit and Captum against the real libraries in
tests/test_peers_torch.py. Tolerance: tests/tolerance.py, ``RTOL = 1e-10`` in float64 relative
to ``max(max |R_ref|, F)`` (``F`` the rounding scale; the Toolbox computes its negative
alpha-beta denominator as ``Y - Zsp``, which cancels).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given

from refimpl.explain.gradient import sensitivity
from refimpl.explain.lrp import lrp
from refimpl.explain.methods import explain
from refimpl.explain.presets import PRESETS, Preset, preset, preset_table
from refimpl.explain.rules import RULES, AlphaBeta
from refimpl.nn.layers import Dense
from refimpl.nn.network import Sequential, mlp

from . import peer_transcripts as pt
from .nets import dense_relu_case
from .tolerance import assert_close, rounding_scale

RTOL = 1e-10

# (preset, refimpl method, options, transcription(X, W, B, R))
TRANSCRIBED = [
    ("innvestigate", "lrp-0", {}, pt.innv_z),
    ("innvestigate", "lrp-epsilon", {}, pt.innv_epsilon),
    ("innvestigate", "lrp-w2", {}, pt.innv_wsquare),
    ("innvestigate", "lrp-flat", {}, pt.innv_flat),
    (
        "innvestigate",
        "lrp-alpha-beta",
        {"alpha": 2.0, "beta": 1.0},
        lambda X, W, B, R: pt.innv_alpha_beta(X, W, B, R, 2.0, 1.0),
    ),
    (
        "innvestigate",
        "lrp-alpha-beta",
        {"alpha": 1.0, "beta": 0.0},
        lambda X, W, B, R: pt.innv_alpha_beta(X, W, B, R, 1.0, 0.0),
    ),
    ("innvestigate", "lrp-zplus", {}, pt.innv_zplus),
    ("toolbox", "lrp-0", {}, pt.tb_simple),
    ("toolbox", "lrp-epsilon", {}, lambda X, W, B, R: pt.tb_epsilon(X, W, B, R, 0.01)),
    ("toolbox", "lrp-w2", {}, pt.tb_ww),
    ("toolbox", "lrp-flat", {}, pt.tb_flat),
    ("toolbox", "lrp-alpha-beta", {}, lambda X, W, B, R: pt.tb_alphabeta(X, W, B, R, 2.0)),
    (
        "toolbox",
        "lrp-alpha-beta",
        {"alpha": 3.0},
        lambda X, W, B, R: pt.tb_alphabeta(X, W, B, R, 3.0),
    ),
    ("toolbox", "lrp-zplus", {}, lambda X, W, B, R: pt.tb_alphabeta(X, W, B, R, 1.0)),
]


@pytest.mark.parametrize(
    "name, method, options, transcript",
    TRANSCRIBED,
    ids=[f"{p}-{m}-{o}" for p, m, o, _ in TRANSCRIBED],
)
@given(case=dense_relu_case())
def test_preset_matches_transcribed_library(name, method, options, transcript, case):
    net, x, target = case
    R_ref = pt.transcribed_lrp(net, x, target, transcript)
    rule = preset(name).rule(method, **options)
    R = explain(net, x, method, preset=name, target=target, **options).R
    assert_close(R, R_ref, RTOL, rounding_scale(net, x, target, rule))


@given(case=dense_relu_case())
def test_innvestigate_bounded_first_layer(case):
    net, x, target = case
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]

    # Bounded on the pixels, Z above (iNNvestigate's LRP(input_layer_rule=(-1, 1)))
    R_ref = pt.transcribed_lrp(net, x, target, pt.innv_z, first=pt.innv_bounded)
    p = preset("innvestigate")
    rules = {i: p.rule("lrp-0") for i in dense}
    rules[dense[0]] = p.rule("lrp-zb")
    R = explain(net, x, "lrp", preset="innvestigate", rules=rules, target=target).R
    F = rounding_scale(net, x, target, p.rule("lrp-0"), first=p.rule("lrp-zb"))
    assert_close(R, R_ref, RTOL, F)


def test_innvestigate_zero_denominator_multiplies_by_1e7_as_in_issue_273():
    # albermax/innvestigate#273: W = [1, -1], b = -1, x = [1, 1]: A1B0 gives [-1e7, 0]
    net = mlp([2, 1], activation="relu", bias=True, rng=0)
    net.layers[0].params["W"][:] = [[1.0], [-1.0]]
    net.layers[0].params["b"][:] = [-1.0]
    x = np.array([[1.0, 1.0]])
    R_out = np.array([[-1.0]])
    got = lrp(net, x, preset("innvestigate").rule("lrp-alpha-beta"), R_out=R_out).R
    np.testing.assert_allclose(got, [[-1e7, 0.0]], rtol=1e-12)
    # the paper's rule (no bias) conserves: all of R_k goes to the positive contribution
    np.testing.assert_allclose(lrp(net, x, AlphaBeta(), R_out=R_out).R, [[-1.0, 0.0]])


# --- zero denominators, by hand --------------------------------------------------------------
#
# Random data never gives an exact zero denominator, so the tests above cannot tell a library's
# zero convention (iNNvestigate's safe_divide, the Toolbox's 1e-16, ...) from none. Here one dense
# layer gets a hand-built zero denominator and a given output relevance R_out, and every number
# is worked out by hand from the library's formula (the comments). refimpl drops a share whose
# denominator is 0 and books it as `dropped`; what a stabilizer adds to it is booked as
# `stabilizer`. Zennit's and Captum's numbers are checked against the real libraries in
# tests/test_peers_torch.py (test_zero_denominator_by_hand_matches_the_real_peer).

INF, NAN = np.inf, np.nan

# name: (W, b, x, R_out), one dense layer
ZERO_NETS = {
    # z = 1 * 1 + 1 * (-1) + 0 = 0
    "z0": ([[1.0], [-1.0]], [0.0], [[1.0, 1.0]], [[1.0]]),
    # contributions a w = [-1, -1]: the positive part is empty, z+ = 0; z- = -2
    "empty-pos": ([[-1.0], [-1.0]], [0.0], [[1.0, 1.0]], [[1.0]]),
    # contributions [1, 1]: z+ = 2; the negative part is empty, z- = 0
    "empty-neg": ([[1.0], [1.0]], [0.0], [[1.0, 1.0]], [[1.0]]),
    # contributions [1, -1], b = 1: z+ = 1, z- = -1, and z- + b = 0 (iNNvestigate's full bias)
    "bias-cancels-neg": ([[1.0], [-1.0]], [1.0], [[1.0, 1.0]], [[1.0]]),
    # w^2: column 0 is all zero, sum_j w_j0^2 = 0; column 1 has w^2 = [1, 4], sum 5
    "zero-column": ([[0.0, 1.0], [0.0, 2.0]], [0.0, 0.0], [[1.0, 1.0]], [[3.0, 5.0]]),
    # z^B on the box [-1, 1]: x = low where w > 0 and x = high where w < 0, so
    # q = (x - l) w+ + (x - h) w- = [0 * 1, 0 * (-1)] = [0, 0] and sum_j q_j = 0
    "box-corner": ([[1.0], [-1.0]], [0.0], [[-1.0, 1.0]], [[1.0]]),
}


class ZeroCase(NamedTuple):
    preset: str
    method: str
    options: dict
    net: str  # key of ZERO_NETS
    R: list  # refimpl under the preset
    dropped: float = 0.0  # budget: the share dropped at the zero denominator
    stabilizer: float = 0.0  # budget: what the preset's stabilizer absorbed
    library: list | None = None  # the library's own number, where it is not R (inf, NaN)
    transcript: Callable | None = None  # tests/peer_transcripts.py, (X, W, B, R)


def _innv_ab(alpha, beta):
    return lambda X, W, B, R: pt.innv_alpha_beta(X, W, B, R, alpha, beta)


def _tb_ab(alpha):
    return lambda X, W, B, R: pt.tb_alphabeta(X, W, B, R, alpha)


A2B1 = {"alpha": 2.0, "beta": 1.0}
Z = ZeroCase
ZERO_CASES = [
    # LRP-0 on z = 0: R_j = a_j w_j R / z.
    # paper, zennit, captum: refimpl drops R = 1. Zennit's Epsilon(0) and Captum's
    # EpsilonRule(0) divide: a w (1 / 0) = [1 * inf, 1 * (-inf)] = [inf, -inf].
    Z("paper", "lrp-0", {}, "z0", [0.0, 0.0], dropped=1.0),
    Z("zennit", "lrp-0", {}, "z0", [0.0, 0.0], dropped=1.0, library=[INF, -INF]),
    Z("captum", "lrp-0", {}, "z0", [0.0, 0.0], dropped=1.0, library=[INF, -INF]),
    # iNNvestigate safe_divide: 1 / (0 + 1e-7) = 1e7, R = a w 1e7 = [1e7, -1e7]; the 1e-7 takes
    # s * 1e-7 = 1e7 * 1e-7 = 1
    Z("innvestigate", "lrp-0", {}, "z0", [1e7, -1e7], stabilizer=1.0, transcript=pt.innv_z),
    # Toolbox simple: Zs = 0 + 1e-16 sign(0) = 1e-16 (sign(0) = +1), R = a w 1e16
    Z("toolbox", "lrp-0", {}, "z0", [1e16, -1e16], stabilizer=1.0, transcript=pt.tb_simple),
    # epsilon on z = 0: d = 0 + eps sign(0) = +eps, R = a w / eps = [1/eps, -1/eps], and the
    # stabilizer takes (1/eps) eps = 1. eps: paper 1e-6, zennit 1e-6, captum 1e-9,
    # innvestigate 1e-7, toolbox 0.01 (its demo's value)
    Z("paper", "lrp-epsilon", {}, "z0", [1e6, -1e6], stabilizer=1.0),
    Z("zennit", "lrp-epsilon", {}, "z0", [1e6, -1e6], stabilizer=1.0),
    Z("captum", "lrp-epsilon", {}, "z0", [1e9, -1e9], stabilizer=1.0),
    Z(
        "innvestigate",
        "lrp-epsilon",
        {},
        "z0",
        [1e7, -1e7],
        stabilizer=1.0,
        transcript=pt.innv_epsilon,
    ),
    Z(
        "toolbox",
        "lrp-epsilon",
        {},
        "z0",
        [100.0, -100.0],
        stabilizer=1.0,
        transcript=lambda X, W, B, R: pt.tb_epsilon(X, W, B, R, 0.01),
    ),
    # z+ with an empty positive part (contributions [-1, -1], b = 0): every numerator a w+ is 0,
    # so R = [0, 0] whatever the convention; only where R = 1 goes differs. paper: z+ = 0,
    # dropped 1. zennit 1e-6, captum 1e-9 (z+ = a W+ + b = 0), innvestigate safe_divide 1e-7,
    # toolbox Zsp = 0 + 0 + 1e-16: d = eps, s = 1/eps, the stabilizer takes s eps = 1
    Z("paper", "lrp-zplus", {}, "empty-pos", [0.0, 0.0], dropped=1.0),
    Z("zennit", "lrp-zplus", {}, "empty-pos", [0.0, 0.0], stabilizer=1.0),
    Z("captum", "lrp-zplus", {}, "empty-pos", [0.0, 0.0], stabilizer=1.0),
    Z(
        "innvestigate",
        "lrp-zplus",
        {},
        "empty-pos",
        [0.0, 0.0],
        stabilizer=1.0,
        transcript=pt.innv_zplus,
    ),
    Z("toolbox", "lrp-zplus", {}, "empty-pos", [0.0, 0.0], stabilizer=1.0, transcript=_tb_ab(1.0)),
    # Captum's only alpha-beta, Alpha1_Beta0, is its z+: the same numbers
    Z("captum", "lrp-alpha-beta", {}, "empty-pos", [0.0, 0.0], stabilizer=1.0),
    # alpha = 2, beta = 1, empty positive part: the positive share alpha R = 2 has numerators 0;
    # negative: z- = -2, s = -beta R / z- = -1 / -2 = 0.5, R = a w- s = [-0.5, -0.5].
    # paper: z+ = 0, dropped 2.
    # zennit: z+ + 1e-6 takes 2; z- - 1e-6 = -2.000001, s = 1 / 2.000001, R = -s per input,
    # stabilizer 2 + s (-1e-6).
    # innvestigate: safe_divide 0 -> 1e-7 takes 2; z- = -2 + b = -2 unchanged.
    # toolbox: Zsp = 0 + 0 + 1e-16 takes 2; Zsn = Y - Zsp - 1e-16 = -2 - 2e-16, which is -2.0 in
    # float64 (half an ulp of 2 is 2.2e-16), so R = [-0.5, -0.5]; refimpl's -2 - 1e-16 = -2.0
    # takes 0.5 * (-1e-16), below the 1e-12 tolerance
    Z("paper", "lrp-alpha-beta", A2B1, "empty-pos", [-0.5, -0.5], dropped=2.0),
    Z(
        "zennit",
        "lrp-alpha-beta",
        {},
        "empty-pos",
        [-1 / 2.000001, -1 / 2.000001],
        stabilizer=2.0 - 1e-6 / 2.000001,
    ),
    Z(
        "innvestigate",
        "lrp-alpha-beta",
        A2B1,
        "empty-pos",
        [-0.5, -0.5],
        stabilizer=2.0,
        transcript=_innv_ab(2.0, 1.0),
    ),
    Z(
        "toolbox",
        "lrp-alpha-beta",
        {},
        "empty-pos",
        [-0.5, -0.5],
        stabilizer=2.0,
        transcript=_tb_ab(2.0),
    ),
    # alpha = 2, beta = 1, empty negative part: z+ = 2, s = alpha R / 2 = 1, R = a w+ s = [1, 1];
    # the negative share -beta R = -1 has numerators 0.
    # paper: z- = 0, dropped -1.
    # zennit: z+ + 1e-6, s = 2 / 2.000001 per input; z- = 0 -> +1e-6 (sign(0) = +1),
    # s = -1 / 1e-6, stabilizer -1 + (2 / 2.000001) 1e-6.
    # innvestigate: z- = 0 -> 1e-7 takes -1.
    # toolbox: Zsp = 2 + 1e-16 = 2.0 in float64, R = [1, 1]; Zsn = 2 - 2 - 1e-16 = -1e-16 and
    # Zn = 0, so the beta term is 0 (refimpl's +1e-16 takes -1 as well)
    Z("paper", "lrp-alpha-beta", A2B1, "empty-neg", [1.0, 1.0], dropped=-1.0),
    Z(
        "zennit",
        "lrp-alpha-beta",
        {},
        "empty-neg",
        [2 / 2.000001, 2 / 2.000001],
        stabilizer=-1.0 + 2e-6 / 2.000001,
    ),
    Z(
        "innvestigate",
        "lrp-alpha-beta",
        A2B1,
        "empty-neg",
        [1.0, 1.0],
        stabilizer=-1.0,
        transcript=_innv_ab(2.0, 1.0),
    ),
    Z(
        "toolbox",
        "lrp-alpha-beta",
        {},
        "empty-neg",
        [1.0, 1.0],
        stabilizer=-1.0,
        transcript=_tb_ab(2.0),
    ),
    # iNNvestigate's full bias b = 1 in the negative denominator: z- + b = -1 + 1 = 0 ->
    # safe_divide 1e-7, s = -beta R / 1e-7 = -1e7, R += a w- s = [0, (-1)(-1e7)] = [0, 1e7];
    # positive: z+ + b = 1 + 1 = 2, s = alpha R / 2 = 1, R += a w+ s = [1, 0]; so [1, 1e7], and
    # the stabilizer takes s 1e-7 = -1 (albermax/innvestigate#273 is the positive side)
    Z(
        "innvestigate",
        "lrp-alpha-beta",
        A2B1,
        "bias-cancels-neg",
        [1.0, 1e7],
        stabilizer=-1.0,
        transcript=_innv_ab(2.0, 1.0),
    ),
    # w^2 with an all-zero weight column (R_out = [3, 5]): column 1 gives [1, 4] / 5 * 5 = [1, 4]
    # everywhere; column 0 has numerators 0 and denominator 0.
    # paper: dropped 3. zennit: b^2 = 0, d = 0 + 1e-6 takes 3; column 1: 5 / (5 + 1e-6) [1, 4],
    # the 1e-6 takes 5e-6 / 5.000001. innvestigate: safe_divide 3 / 1e-7 = 3e7 times w^2 = 0,
    # the 1e-7 takes 3. toolbox: Z / Zs = 0 / 0 = NaN in every input (it sums over the columns);
    # refimpl cannot give NaN, so it drops the 3: a documented difference
    Z("paper", "lrp-w2", {}, "zero-column", [1.0, 4.0], dropped=3.0),
    Z(
        "zennit",
        "lrp-w2",
        {},
        "zero-column",
        [5 / 5.000001, 20 / 5.000001],
        stabilizer=3.0 + 5e-6 / 5.000001,
    ),
    Z(
        "innvestigate",
        "lrp-w2",
        {},
        "zero-column",
        [1.0, 4.0],
        stabilizer=3.0,
        transcript=pt.innv_wsquare,
    ),
    Z(
        "toolbox",
        "lrp-w2",
        {},
        "zero-column",
        [1.0, 4.0],
        dropped=3.0,
        library=[NAN, NAN],
        transcript=pt.tb_ww,
    ),
    # z^B with the input on the box corner: every q_j = 0, so R = [0, 0]; paper: dropped 1;
    # zennit: d = 0 + 1e-6 takes 1; innvestigate: A - (B + C) = -2 - (-1 + -1) = 0 ->
    # safe_divide 1e-7 takes 1
    Z("paper", "lrp-zb", {}, "box-corner", [0.0, 0.0], dropped=1.0),
    Z("zennit", "lrp-zb", {}, "box-corner", [0.0, 0.0], stabilizer=1.0),
    Z(
        "innvestigate",
        "lrp-zb",
        {},
        "box-corner",
        [0.0, 0.0],
        stabilizer=1.0,
        transcript=pt.innv_bounded,
    ),
    # Zennit's generalized gamma on z = 0: the unit is neither positive nor negative, so neither
    # branch serves it: R = [0, 0], and refimpl books R = 1 as dropped
    Z("zennit", "lrp-gamma", {}, "z0", [0.0, 0.0], dropped=1.0),
]


def zero_case_net(name):
    """``(net, x, R_out)`` of ``ZERO_NETS[name]``: one dense layer, float64."""
    W, b, x, R_out = (np.array(v, dtype=np.float64) for v in ZERO_NETS[name])
    return Sequential([Dense(W, b)]), x, R_out


@pytest.mark.parametrize(
    "case", ZERO_CASES, ids=[f"{c.preset}-{c.method}-{c.net}" for c in ZERO_CASES]
)
def test_zero_denominator_by_hand(case):
    net, x, R_out = zero_case_net(case.net)
    e = lrp(net, x, preset(case.preset).rule(case.method, **case.options), R_out=R_out)
    np.testing.assert_allclose(e.R, [case.R], rtol=1e-12, atol=0)
    np.testing.assert_allclose(e.budget.dropped, [case.dropped], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.budget.stabilizer, [case.stabilizer], rtol=1e-12, atol=1e-12)
    if case.transcript is not None:  # the same numbers from the library's own arithmetic
        layer = net.layers[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            got = case.transcript(x, layer.W, layer.b, R_out)
        library = case.R if case.library is None else case.library
        np.testing.assert_allclose(got, [library], rtol=1e-12, atol=0)  # NaN, inf: in place


def test_toolbox_w2_divides_zero_by_zero_where_refimpl_drops_the_share():
    # a documented difference (the preset's zero_denominator): one all-zero weight column makes
    # the Toolbox's ww rule NaN in every input; refimpl gives the other column's [1, 4] and
    # books the lost column's R = 3 as dropped
    net, x, R_out = zero_case_net("zero-column")
    layer = net.layers[0]
    with np.errstate(invalid="ignore"):
        assert np.isnan(pt.tb_ww(x, layer.W, layer.b, R_out)).all()
    e = lrp(net, x, preset("toolbox").rule("lrp-w2"), R_out=R_out)
    np.testing.assert_array_equal(e.R, [[1.0, 4.0]])
    np.testing.assert_array_equal(e.budget.dropped, R_out[:, 0])
    assert "NaN" in preset("toolbox").zero_denominator


# --- the presets' own behaviour -----------------------------------------------------------------


def test_paper_preset_is_refimpl_without_options():
    for name in RULES:
        assert PRESETS["paper"].rule(name) == RULES[name]()


def test_onehot_seeding_divides_by_the_logit():
    net = mlp([5, 4, 3], rng=1)
    x = np.random.default_rng(2).uniform(0, 1, (4, 5))
    logit = lrp(net, x, AlphaBeta(alpha=2, beta=1), target=1)
    onehot = lrp(net, x, AlphaBeta(alpha=2, beta=1), target=1, seed="onehot")
    np.testing.assert_allclose(onehot.R * logit.f[:, None], logit.R, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(onehot.f, logit.f)  # f is the explained logit either way
    np.testing.assert_allclose(onehot.budget.f, 1.0)
    with pytest.raises(ValueError, match="seed must be one of"):
        lrp(net, x, AlphaBeta(), seed="ones")


@pytest.mark.parametrize("name", list(PRESETS))
def test_sensitivity_output_follows_the_preset(name):
    net = mlp([5, 4, 3], rng=1)
    x = np.random.default_rng(2).normal(size=(3, 5))
    p = PRESETS[name]
    if p.sensitivity is None:
        with pytest.raises(ValueError, match="has no sensitivity"):
            explain(net, x, "sensitivity", preset=name)
        return
    R = explain(net, x, "sensitivity", preset=name).R
    np.testing.assert_array_equal(R, sensitivity(net, x, output=p.sensitivity).R)
    # an explicit option wins over the preset
    raw = explain(net, x, "sensitivity", preset=name, output="raw").R
    np.testing.assert_array_equal(raw, sensitivity(net, x, output="raw").R)


def test_captum_has_only_alpha1_beta0():
    with pytest.raises(ValueError, match="fixes alpha=1.0"):
        preset("captum").rule("lrp-alpha-beta", alpha=2.0, beta=1.0)
    assert preset("captum").rule("lrp-alpha-beta") == AlphaBeta(
        1.0, 0.0, bias="full", inputs="weights", eps=1e-9
    )


@pytest.mark.parametrize(
    "name, method", [("captum", "lrp-zb"), ("captum", "lrp-w2"), ("innvestigate", "lrp-gamma")]
)
def test_a_rule_the_library_lacks_is_refused_with_the_reason(name, method):
    with pytest.raises(ValueError, match=f"has no {method} rule"):
        preset(name).rule(method)


def test_toolbox_takes_alpha_only():
    tb = preset("toolbox")
    assert tb.rule("lrp-alpha-beta", alpha=3.0).beta == 2.0
    with pytest.raises(ValueError, match="takes alpha only"):
        tb.rule("lrp-alpha-beta", alpha=2.0, beta=1.0)


def test_explicit_options_win_over_the_preset():
    rule = preset("zennit").rule("lrp-epsilon", eps=0.25)
    assert rule.eps == 0.25 and rule.stabilizer_kind == "signed"


def test_unknown_preset_and_bad_preset_definitions():
    with pytest.raises(ValueError, match="unknown preset 'keras'; known presets: paper"):
        preset("keras")
    with pytest.raises(ValueError, match="unknown rules"):
        Preset("x", "X", rules={"lrp-nope": {}})
    with pytest.raises(ValueError, match="seed must be one of"):
        Preset("x", "X", seed="ones")


def test_readme_table_is_the_generated_one():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    match = re.search(
        r"<!-- preset-table start -->\n(.*?)<!-- preset-table end -->", readme, re.DOTALL
    )
    assert match, "README.md lacks the preset table markers"
    assert match.group(1).strip() == preset_table().strip(), (
        "README preset table is stale; regenerate with: python -m refimpl.explain.presets"
    )


@pytest.mark.parametrize(
    "name, transcript",
    [
        ("innvestigate", lambda X, W, B, R: pt.innv_alpha_beta(X, W, B, R, 1.0, 0.0)),
        ("toolbox", lambda X, W, B, R: pt.tb_alphabeta(X, W, B, R, 1.0)),
    ],
)
def test_paper_alpha_beta_conserves_where_innvestigate_and_the_toolbox_absorb(name, transcript):
    # a small net with large positive biases: the bias terms in the peers' denominators take
    # a large part of the relevance; the paper's rule (no bias, eq. 4.10-4.13) conserves
    rng = np.random.default_rng(7)
    net = mlp([4, 3, 2], activation="relu", bias=True, rng=rng)
    net.layers[0].params["b"][:] = [2.0, 1.5, 3.0]
    net.layers[2].params["b"][:] = [1.0, -0.5]
    x = np.abs(rng.normal(0, 1, (3, 4)))
    target = np.zeros(3, dtype=np.int64)
    paper = explain(net, x, "lrp-alpha-beta", target=target)
    np.testing.assert_allclose(paper.R.sum(axis=1), paper.f, rtol=1e-12)
    R_peer = pt.transcribed_lrp(net, x, target, transcript)
    lost = 1 - R_peer.sum(axis=1) / paper.f
    assert np.all(lost > 0.3), lost
    ours = explain(net, x, "lrp-alpha-beta", preset=name, alpha=1.0, target=target)
    assert_close(ours.R, R_peer, RTOL)
    # the budget under the peer's preset books the loss: biases (and stabilizers) took it
    absorbed = ours.budget.bias + ours.budget.stabilizer + ours.budget.dropped
    np.testing.assert_allclose(absorbed, paper.f - R_peer.sum(axis=1), rtol=1e-9)
