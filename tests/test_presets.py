"""Presets: each library's conventions as a bundle of rule options (refimpl/explain/presets.py).

iNNvestigate and the LRP Toolbox are checked here against line-by-line transcriptions of their
source (tests/peer_transcripts.py); Zennit and Captum against the real libraries in
tests/test_peers_torch.py. Tolerance: tests/tolerance.py, ``RTOL = 1e-10`` in float64 relative
to ``max(max |R_ref|, F)`` (``F`` the rounding scale; the Toolbox computes its negative
alpha-beta denominator as ``Y - Zsp``, which cancels).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from refimpl.explain.gradient import sensitivity
from refimpl.explain.lrp import lrp
from refimpl.explain.methods import explain
from refimpl.explain.presets import PRESETS, Preset, preset, preset_table
from refimpl.explain.rules import RULES, AlphaBeta
from refimpl.layers import Dense
from refimpl.network import mlp

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
