"""``refimpl verify``: comparison, verdict, and the diagnosis that names a convention."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.explain.methods import explain
from refimpl.explain.presets import PRESETS
from refimpl.nn.modelfile import save_model
from refimpl.nn.network import mlp
from refimpl.verify import DEFAULT_RTOL, compare, verify

from .nets import randomize_biases


@pytest.fixture(scope="module")
def case():
    """A 12-8-6-4 ReLU net with biases and inputs in [-1, 1] (6 samples)."""
    rng = np.random.default_rng(3)
    net = mlp([12, 8, 6, 4], activation="relu", bias=True, rng=rng)
    randomize_biases(net, rng)
    x = rng.uniform(-1, 1, (6, 12))
    return net, x


def test_compare_is_per_sample_relative_to_the_reference_maximum():
    R_ref = np.array([[1.0, -2.0], [0.0, 0.0]])
    cmp = compare(R_ref + [[0.0, 1e-10], [0.0, 0.0]], R_ref, 1e-10)
    np.testing.assert_allclose(cmp.rel_error, [5e-11, 0.0], rtol=1e-6)
    assert cmp.passed
    assert not compare(R_ref + [[0.0, 3e-10], [0.0, 0.0]], R_ref, 1e-10).passed
    assert not compare(R_ref + [[0.0, 0.0], [1e-300, 0.0]], R_ref, 1e-10).passed  # 0 is exact


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("method", ["lrp-epsilon", "lrp-zplus", "lrp-flat", "gradient_x_input"])
def test_own_relevances_match_under_every_preset(case, name, method):
    net, x = case
    if method in PRESETS[name].missing:
        with pytest.raises(ValueError, match=f"has no {method} rule"):
            verify(net, x, np.zeros_like(x), method, preset=name)
        return
    opts = {"inputs": "split"} if (name == "paper" and method == "lrp-zplus") else {}
    R = explain(net, x, method, preset=name, **opts).R
    report = verify(net, x, R, method, preset=name, **opts)
    assert report.passed and report.diagnosis is None
    assert report.to_dict()["verdict"] == "match"


@pytest.mark.parametrize(
    "peer, method, paper_options, expected",
    [
        ("zennit", "lrp-alpha-beta", {"alpha": 2.0, "beta": 1.0, "inputs": "split"}, "zennit"),
        ("toolbox", "lrp-alpha-beta", {"alpha": 2.0, "beta": 1.0, "inputs": "split"}, "toolbox"),
        ("captum", "lrp-gamma", {"inputs": "weights"}, "captum"),
        ("innvestigate", "lrp-alpha-beta", {"inputs": "split"}, "innvestigate"),
    ],
)
def test_a_peers_relevances_are_diagnosed_as_that_peer(case, peer, method, paper_options, expected):
    net, x = case
    params = {k: v for k, v in paper_options.items() if k in ("alpha",)}
    R = explain(net, x, method, preset=peer, **params).R
    report = verify(net, x, R, method, preset="paper", **paper_options)
    assert not report.passed
    best = report.diagnosis[0].candidate
    assert expected in best.presets or best.preset == expected, report.diagnosis_message()
    assert expected in report.diagnosis_message()


def test_a_single_option_is_named(case):
    net, x = case
    ab = {"alpha": 2.0, "beta": 1.0}
    R = explain(net, x, "lrp-alpha-beta", inputs="weights", **ab).R
    report = verify(net, x, R, "lrp-alpha-beta", inputs="split", **ab)
    # no library has alpha-beta (2, 1) with the weights-only split: the option alone is named
    assert report.diagnosis_message() == "the candidate matches with inputs='weights'"
    assert report.to_dict()["diagnosis"]["matches"][0]["changes"] == {"inputs": "weights"}


def test_a_whole_preset_ranks_before_its_single_options(case):
    net, x = case
    ab = {"alpha": 2.0, "beta": 1.0, "inputs": "split"}
    R = explain(net, x, "lrp-alpha-beta", bias="split", **ab).R
    report = verify(net, x, R, "lrp-alpha-beta", **ab)
    # the toolbox's alpha-beta is bias='split' with eps=1e-16: both describe these numbers
    assert report.diagnosis_message().startswith("the candidate matches preset 'toolbox'")
    texts = [m.candidate.description for m in report.diagnosis]
    assert "matches with bias='split' (as in zennit, toolbox)" in texts


def test_epsilon_and_seeding_are_named(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon", eps=0.01).R
    assert "eps=0.01" in verify(net, x, R, "lrp-epsilon").diagnosis_message()
    R1 = explain(net, x, "lrp-epsilon", seed="onehot").R
    report = verify(net, x, R1, "lrp-epsilon")
    # Zennit's epsilon rule is the paper's (eps 1e-6), seeded with one-hot
    assert report.diagnosis_message() == (
        "the candidate matches preset 'zennit' (Zennit 0.5.1): output seed 'onehot'"
    )
    R1 = explain(net, x, "lrp-epsilon", eps=0.3, seed="onehot").R
    report = verify(net, x, R1, "lrp-epsilon", eps=0.3)
    assert report.diagnosis_message() == (
        "the candidate matches with the output seeded with 1 instead of f(x) (as in zennit)"
    )


def test_sensitivity_output_and_the_target_are_named(case):
    net, x = case
    R = explain(net, x, "sensitivity", output="abs").R
    assert "output='abs' (as in captum)" in verify(net, x, R, "sensitivity").diagnosis_message()
    R_pred = explain(net, x, "lrp-0").R
    other = (explain(net, x, "lrp-0").target + 1) % 4
    msg = verify(net, x, R_pred, "lrp-0", target=other).diagnosis_message()
    assert "predicted class" in msg


def test_nothing_explains_noise(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon").R
    noisy = R + np.random.default_rng(0).normal(0, 0.1, R.shape)
    report = verify(net, x, noisy, "lrp-epsilon")
    assert report.diagnosis == [] and report.tried > 50
    assert report.diagnosis_message().startswith("no convention explains the difference")


def test_nan_in_the_candidate_is_a_mismatch_that_is_counted(case):
    net, x = case
    R = explain(net, x, "lrp-0").R.copy()
    R[2, 3] = np.nan
    report = verify(net, x, R, "lrp-0", diagnose_mismatch=False)
    assert not report.passed and report.nonfinite == 1
    assert report.comparison.ok.tolist() == [True, True, False, True, True, True]
    assert "1 NaN/inf value(s)" in report.text()


def test_default_tolerance_follows_the_less_precise_of_candidate_and_net(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon").R
    assert verify(net, x, R.astype(np.float32), "lrp-epsilon").rtol == 1e-5
    assert verify(net, x, R, "lrp-epsilon").rtol == DEFAULT_RTOL[np.dtype(np.float64)] == 1e-10
    # rounding R to float32 is within the float32 rounding allowance even at rtol = 1e-10 ...
    assert verify(net, x, R.astype(np.float32), "lrp-epsilon", rtol=1e-10).passed
    # ... but an error of 1e-4 relative is not (32 measured rounding spreads are allowed)
    wrong = (R * (1 + 1e-4)).astype(np.float32)
    assert not verify(net, x, wrong, "lrp-epsilon", rtol=1e-10, diagnose_mismatch=False).passed
    # a float32 net: the reference is still computed in float64, the tolerance is float32's
    net32 = copy.deepcopy(net).astype(np.float32)
    R64 = explain(copy.deepcopy(net32).astype(np.float64), x, "lrp-epsilon").R
    report = verify(net32, x, R64, "lrp-epsilon")
    assert report.rtol == 1e-5 and report.passed
    R32 = explain(net32, x.astype(np.float32), "lrp-epsilon").R
    assert verify(net32, x, R32, "lrp-epsilon").passed


def test_a_correct_float32_result_with_cancellation_is_not_called_a_mismatch():
    # Captum's z+ keeps the full bias with weights-only clamping: denominators that cancel, so
    # a correct float32 result is off by far more than 1e-5 max |R| on some samples
    rng = np.random.default_rng(0)
    net = mlp([784, 256, 128, 10], activation="relu", bias=True, rng=rng)
    randomize_biases(net, rng)
    x = rng.uniform(-1, 1, (20, 784))
    R64 = explain(net, x, "lrp-zplus", preset="captum").R
    net32 = copy.deepcopy(net).astype(np.float32)
    R32 = explain(net32, x.astype(np.float32), "lrp-zplus", preset="captum").R
    rel = np.abs(R32 - R64).max(axis=1) / np.abs(R64).max(axis=1)
    assert rel.max() > 1e-5  # a plain 1e-5 relative test would call this correct result wrong
    report = verify(net, x, R32, "lrp-zplus", preset="captum")
    assert report.passed, report.text()
    # and a wrong convention is still caught in float32 (Zennit's split inputs and bias)
    wrong = explain(net32, x.astype(np.float32), "lrp-zplus", preset="zennit", seed="logit").R
    report = verify(net, x, wrong, "lrp-zplus", preset="captum", diagnose_mismatch=False)
    assert (~report.comparison.ok).sum() >= 15


def test_the_diagnosis_looks_at_the_failing_samples(case):
    rng = np.random.default_rng(9)
    net = mlp([12, 8, 4], activation="relu", bias=True, rng=rng)
    x = rng.uniform(-1, 1, (40, 12))
    R = explain(net, x, "lrp-epsilon").R.copy()
    R[35] = explain(net, x[35:36], "lrp-epsilon", eps=0.1).R[0]  # only sample 35 differs
    report = verify(net, x, R, "lrp-epsilon")
    assert report.comparison.ok.sum() == 39
    assert report.diagnosis_message().startswith("the candidate matches with eps=0.1"), (
        report.diagnosis_message()
    )
    R[35] *= 1.5
    report = verify(net, x, R, "lrp-epsilon")
    assert report.diagnosis == []  # nothing explains it; in particular not the target


def test_a_convention_that_explains_some_failing_samples_says_how_many(case):
    net, _ = case
    x = np.random.default_rng(11).uniform(-1, 1, (80, 12))
    onehot = explain(net, x, "lrp-epsilon", eps=0.3, seed="onehot").R
    R = explain(net, x, "lrp-epsilon", eps=0.3).R
    # 32 samples seeded with 1, 32 sign-flipped: the seeding explains only half of them
    mixed = np.concatenate([onehot[:32], -R[32:64]])
    report = verify(net, x[:64], mixed, "lrp-epsilon", eps=0.3)
    assert report.diagnosis_message() == (
        "the candidate matches with the output seeded with 1 instead of f(x) (as in zennit): "
        "explains 32 of 64 failing samples (samples 0-31); the other 32 are unexplained "
        "(samples 32-63)"
    )
    d = report.to_dict()["diagnosis"]
    assert not d["explained"] and (d["failing_samples"], d["explained_samples"]) == (64, 32)
    assert d["unexplained"] == list(range(32, 64))
    assert d["matches"][0]["explains_samples"] == 32
    assert d["matches"][0]["samples"] == list(range(32))
    # three blocks, the second starting inside the first search's 32 samples: both are named
    eps = explain(net, x, "lrp-epsilon", eps=0.01).R
    mixed = np.concatenate([onehot[:40], eps[40:60], -R[60:]])
    msg = verify(net, x, mixed, "lrp-epsilon", eps=0.3).diagnosis_message()
    assert "seeded with 1 instead of f(x) (as in zennit): explains 40 of 80" in msg, msg
    assert "eps=0.01: explains 20 (samples 40-59)" in msg, msg
    assert msg.endswith("the other 20 are unexplained (samples 60-79)"), msg


def test_an_exact_match_with_another_method_is_named_first(case):
    net, x = case
    R = explain(net, x, "gradient_x_input").R
    report = verify(net, x, R, "lrp-epsilon")
    # LRP-0-like options (zero_only stabilizer, eps=1e-16) also match, within a few ulps
    assert report.diagnosis_message() == (
        "the candidate matches method 'gradient_x_input' under preset 'paper'"
    )
    matches = report.to_dict()["diagnosis"]["matches"]
    assert matches[0]["method"] == "gradient_x_input" and matches[0]["exact"]
    assert len(matches) > 1 and not matches[1]["exact"]


def test_nan_and_inf_are_named_as_the_cause_without_a_search(case, monkeypatch, tmp_path, capsys):
    import refimpl.verify.diagnosis as v

    def no_search(*args, **kwargs):
        raise AssertionError("the conventions were searched")

    monkeypatch.setattr(v, "diagnose", no_search)
    net, _ = case
    x = np.random.default_rng(5).uniform(-1, 1, (9, 12))
    R = explain(net, x, "lrp-epsilon").R.copy()
    R[3, 1] = R[7, 0] = np.nan
    R[2, 5] = -np.inf
    report = verify(net, x, R, "lrp-epsilon")
    assert report.diagnosis is None and not report.passed
    assert report.diagnosis_message().startswith(
        "the candidate has NaN at samples 3, 7 and inf at sample 2 (no convention search"
    )
    save_model(tmp_path / "m.npz", net)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "nan.npy", R)
    args = [str(tmp_path / f) for f in ("m.npz", "x.npy", "nan.npy")]
    assert main(["verify", *args, "--method", "lrp-epsilon"]) == 1
    assert "diagnosis: the candidate has NaN at samples 3, 7" in capsys.readouterr().out


def test_errors_at_float16_rounding_level_are_named_as_a_precision_issue(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon").R
    hint = "a likely precision issue: errors are at {0} rounding level (candidate computed in {0}?)"
    for stored in (np.float64, np.float32):
        R16 = R.astype(np.float16).astype(stored)
        report = verify(net, x, R16, "lrp-epsilon")
        assert report.diagnosis == [] and report.diagnosis_message().endswith(
            hint.format("float16")
        ), report.diagnosis_message()
        assert report.to_dict()["diagnosis"]["precision"] == "float16"
    # a float32 result saved as float64, judged as float64
    report = verify(net, x, R.astype(np.float32).astype(np.float64), "lrp-epsilon")
    assert report.diagnosis_message().endswith(hint.format("float32"))
    # errors far above float16's level are not a precision issue
    noisy = R + np.random.default_rng(0).normal(0, 0.1, R.shape)
    assert "precision" not in verify(net, x, noisy, "lrp-epsilon").diagnosis_message()


def test_a_float32_pass_says_which_epsilons_its_precision_cannot_separate(case):
    net, x = case
    net32, x32 = copy.deepcopy(net).astype(np.float32), x.astype(np.float32)
    R32 = explain(net32, x32, "lrp-epsilon", preset="captum").R
    report = verify(net32, x32, R32, "lrp-epsilon", preset="captum")
    assert report.passed
    # the known limit: Captum's 1e-9 and Zennit's 1e-6 both pass here in float32
    assert verify(net32, x32, R32, "lrp-epsilon", preset="captum", eps=1e-6).passed
    note = report.to_dict()["precision_note"]
    assert note.startswith("the candidate's precision (float32) cannot separate eps=1e-09 from ")
    assert "eps=1e-06 (as in paper, zennit)" in note and "note: " + note in report.text()
    alternatives = [a["alternative"] for a in report.to_dict()["indistinguishable"]]
    assert 1e-6 in alternatives and 1e-9 not in alternatives
    # a wrong epsilon in float32: the matches the precision cannot separate are named
    R32 = explain(net32, x32, "lrp-epsilon", eps=1e-9).R
    msg = verify(net32, x32, R32, "lrp-epsilon", eps=0.3).diagnosis_message()
    assert "the candidate's precision (float32) cannot separate eps=1e-09 from" in msg, msg
    # in float64 the same epsilons are told apart
    R64 = explain(net, x, "lrp-epsilon", preset="captum").R
    report = verify(net, x, R64, "lrp-epsilon", preset="captum")
    assert report.passed and report.indistinguishable == [] and not report.precision_note()


def test_the_toolbox_preset_is_tried_with_alpha_and_beta_given(case):
    net, x = case
    R = explain(net, x, "lrp-alpha-beta", preset="toolbox", alpha=2.0).R
    report = verify(net, x, R, "lrp-alpha-beta", alpha=2.0, beta=1.0, inputs="split")
    presets = [m.candidate.preset.name for m in report.diagnosis if m.candidate.kind == "preset"]
    assert "toolbox" in presets


def test_as_in_names_only_presets_that_have_the_rule_with_these_parameters(case):
    net, x = case
    R = explain(net, x, "lrp-alpha-beta", preset="innvestigate", alpha=2.0, beta=1.0).R
    report = verify(net, x, R, "lrp-alpha-beta", alpha=2.0, beta=1.0, inputs="split")
    assert report.diagnosis_message().startswith("the candidate matches preset 'innvestigate'")
    for m in report.diagnosis:
        assert "captum" not in m.candidate.presets  # Captum has no alpha-beta (2, 1)


def test_a_custom_preset_object_is_diagnosed(case):
    from dataclasses import replace

    net, x = case
    mine = replace(PRESETS["paper"], name="mine", library="my lab's conventions")
    R = explain(net, x, "lrp-epsilon", eps=0.25).R
    report = verify(net, x, R, "lrp-epsilon", preset=mine)
    assert report.preset == "mine" and "eps=0.25" in report.diagnosis_message()


def test_rule_maps_are_verified_but_not_diagnosed(case):
    from refimpl.explain.lrp import RuleMap
    from refimpl.explain.rules import ZB, Epsilon

    net, x = case
    rules = RuleMap(Epsilon(), first=ZB())
    R = explain(net, x, "lrp", rules=rules).R
    assert verify(net, x, R, "lrp", rules=rules).passed
    report = verify(net, x, R * 2, "lrp", rules=rules)
    assert not report.passed and report.diagnosis is None
    assert "verify layer rules one at a time" in report.diagnosis_message()


def test_json_has_no_nan_or_infinity(case):
    net, x = case
    R = explain(net, x, "lrp-0").R.copy()
    R[:] = np.nan
    text = json.dumps(verify(net, x, R, "lrp-0").to_dict(), allow_nan=False)
    assert json.loads(text)["samples"][0]["max_abs_error"] is None


def test_bad_candidates_raise(case):
    net, x = case
    with pytest.raises(ValueError, match=r"expected the input's \(6, 12\)"):
        verify(net, x, np.zeros((6, 11)), "lrp-0")
    with pytest.raises(TypeError, match="must be float32 or float64, got dtype int64"):
        verify(net, x, np.zeros((6, 12), dtype=np.int64), "lrp-0")
    with pytest.raises(TypeError, match="got dtype float16"):
        verify(net, x, np.zeros((6, 12), dtype=np.float16), "lrp-0")
    with pytest.raises(TypeError, match="rtol must be a number"):
        verify(net, x, np.zeros((6, 12)), "lrp-0", rtol="1e-5")
    with pytest.raises(ValueError, match="no samples"):
        verify(net, x[:0], np.zeros((0, 12)), "lrp-0")
    with pytest.raises(ValueError, match="rtol must be finite and > 0"):
        verify(net, x, np.zeros((6, 12)), "lrp-0", rtol=-1.0)


# --- command line -------------------------------------------------------------------------------


@pytest.fixture()
def files(case, tmp_path):
    net, x = case
    save_model(tmp_path / "m.npz", net)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "zen.npy", explain(net, x, "lrp-alpha-beta", preset="zennit").R)
    np.save(tmp_path / "t.npy", np.arange(6) % 4)
    return tmp_path


def test_cli_exit_codes_and_json(files, capsys):
    d = files
    args = [str(d / "m.npz"), str(d / "x.npy"), str(d / "zen.npy"), "--method", "lrp-alpha-beta"]
    assert main(["verify", *args, "--preset", "zennit"]) == 0
    assert "MATCH" in capsys.readouterr().out
    assert main(["verify", *args, "--alpha", "2", "--beta", "1", "--inputs", "split"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH (6 of 6 samples)" in out and "matches preset 'zennit'" in out
    assert main(["verify", *args, "--preset", "captum", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "mismatch" and len(report["samples"]) == 6
    assert set(report["conservation"]) == {
        "expected_total",
        "max_abs_gap",
        "reference_max_abs_gap",
    }
    split = ["--inputs", "split", "--no-diagnosis"]
    assert main(["verify", *args, "--target", str(d / "t.npy"), *split]) == 1


def test_cli_json_of_a_huge_finite_candidate_is_a_valid_mismatch_report(files, capsys):
    d = files
    huge = np.full((6, 12), 1e308)
    huge[:, ::2] = -1e308  # the sums stay finite, errors / estimates overflow
    np.save(d / "huge.npy", huge)
    np.save(d / "huge_sum.npy", np.full((6, 12), 1e308))  # here the sums overflow too
    for name in ("huge.npy", "huge_sum.npy"):
        args = [str(d / "m.npz"), str(d / "x.npy"), str(d / name), "--method", "lrp-epsilon"]
        assert main(["verify", *args, "--json"]) == 1
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert captured.err == "" and report["verdict"] == "mismatch"
        assert report["max_abs_error"] == pytest.approx(1e308)
        assert report["max_rel_error"] is None  # inf: not JSON, so null
        assert report["samples"][0]["error_over_estimate"] is None
        assert report["diagnosis"]["message"].startswith("no convention explains")


def test_cli_usage_errors_exit_2(files, capsys):
    d = files
    base = [str(d / "m.npz"), str(d / "x.npy")]
    assert main(["verify", *base, str(d / "nope.npy"), "--method", "lrp-0"]) == 2
    assert "candidate file" in capsys.readouterr().err
    np.save(d / "short.npy", np.zeros((6, 5)))
    assert main(["verify", *base, str(d / "short.npy"), "--method", "lrp-0"]) == 2
    assert "expected the input's" in capsys.readouterr().err
    assert main(["verify", *base, str(d / "zen.npy"), "--method", "lrp-0", "--target", "x"]) == 2
    np.save(d / "badt.npy", np.zeros(3, dtype=int))
    args = ["verify", *base, str(d / "zen.npy"), "--method", "lrp-0", "--target"]
    assert main([*args, str(d / "badt.npy")]) == 2
    assert "must hold 6 integer class indices" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["verify", *base, str(d / "zen.npy"), "--method", "nope"])
    assert exc.value.code == 2


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        main(["verify", "--help"])
    assert exc.value.code == 0


def test_cli_import_errors_exit_2_and_crashes_exit_3(files, capsys, monkeypatch):
    import sys

    d = files
    np.save(d / "x5.npy", np.zeros((2, 5)))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    argv = ["verify", str(d / "m.onnx"), str(d / "x.npy"), str(d / "zen.npy"), "--method", "lrp-0"]
    assert main(argv) == 2
    assert "[onnx]" in capsys.readouterr().err

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("refimpl.verify.check.explain", boom)
    args = [str(d / "m.npz"), str(d / "x.npy"), str(d / "zen.npy"), "--method", "lrp-0"]
    assert main(["verify", *args]) == 3
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err


@pytest.fixture(scope="module")
def wide():
    """784-512-256-10 with small biases, inputs in [-1, 1], random targets (float32 copies)."""
    rng = np.random.default_rng(7)
    net = mlp([784, 512, 256, 10], rng=rng)
    randomize_biases(net, rng, 0.1)
    x = rng.uniform(-1, 1, (40, 784))
    y = rng.integers(0, 10, 40)
    return copy.deepcopy(net).astype(np.float32), x.astype(np.float32), y


def test_the_rounding_check_catches_a_wrong_epsilon_hidden_in_float32_rounding(wide):
    net32, x32, y = wide
    for method in ("lrp-zplus", "lrp-gamma"):
        good = explain(net32, x32, method, preset="captum", target=y).R
        report = verify(net32, x32, good, method, preset="captum", target=y)
        assert report.passed and not report.comparison.systematic, report.text()
        # Zennit's eps 1e-6 instead of Captum's 1e-9: every sample alone may be within 32 S
        wrong = explain(net32, x32, method, preset="captum", eps=1e-6, target=y).R
        report = verify(net32, x32, wrong, method, preset="captum", target=y)
        assert report.comparison.systematic and not report.passed, report.text()
        assert report.comparison.rounding_ratio > 3
        assert "rounding check" in report.text()
        assert "eps=1e-06" in report.diagnosis_message()


def test_a_near_miss_is_judged_by_the_candidates_own_rounding(wide, monkeypatch):
    import refimpl.verify.check as check
    import refimpl.verify.diagnosis as diagnosis

    net32, x32, y = wide
    calls = []
    real = check.rounding_estimate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(check, "rounding_estimate", counting)
    monkeypatch.setattr(diagnosis, "rounding_estimate", counting)
    R = explain(net32, x32, "lrp-gamma", preset="captum", target=y).R
    report = verify(net32, x32, R, "lrp-gamma", inputs="weights", target=y)
    assert report.diagnosis_message().startswith("the candidate matches preset 'captum'")
    assert len(calls) > 1  # the reference's estimate, then at least one near miss re-judged


def test_the_reference_presets_parameters_carry_over(case):
    net, x = case
    R = explain(net, x, "lrp-alpha-beta", preset="innvestigate", alpha=2.0, beta=1.0).R
    for name in ("zennit", "toolbox"):  # their alpha-beta defaults to (2, 1)
        report = verify(net, x, R, "lrp-alpha-beta", preset=name)
        assert report.diagnosis_message().startswith("the candidate matches preset 'innvestigate'")
        for m in report.diagnosis:
            assert "captum" not in m.candidate.presets


def test_a_closed_output_pipe_keeps_the_mismatch_exit_code(tmp_path):
    import subprocess
    import sys

    net = mlp([4, 3, 2], rng=0)
    save_model(tmp_path / "m.npz", net)
    x = np.random.default_rng(0).uniform(-1, 1, (3000, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "bad.npy", np.ones((3000, 4)))
    argv = [sys.executable, "-m", "refimpl.cli", "verify", str(tmp_path / "m.npz")]
    argv += [str(tmp_path / "x.npy"), str(tmp_path / "bad.npy"), "--method", "lrp-0"]
    proc = subprocess.Popen([*argv, "--json", "--no-diagnosis"], stdout=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()  # like `| head -c 100`: the JSON (about 1 MB) no longer fits
    assert proc.wait(timeout=120) == 1
