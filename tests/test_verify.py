"""``refimpl verify``: comparison, verdict, and the diagnosis that names a convention."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.explain.methods import explain
from refimpl.explain.presets import PRESETS
from refimpl.modelfile import save_model
from refimpl.network import mlp
from refimpl.verify import DEFAULT_RTOL, compare, verify


@pytest.fixture(scope="module")
def case():
    """A 12-8-6-4 ReLU net with biases and inputs in [-1, 1] (6 samples)."""
    rng = np.random.default_rng(3)
    net = mlp([12, 8, 6, 4], activation="relu", bias=True, rng=rng)
    for layer in net.layers:
        if "b" in layer.params:
            layer.params["b"][:] = rng.normal(0, 0.5, layer.params["b"].shape)
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
    R = explain(net, x, "lrp-alpha-beta", alpha=2.0, beta=1.0, inputs="split", bias="split").R
    report = verify(net, x, R, "lrp-alpha-beta", alpha=2.0, beta=1.0, inputs="split")
    assert report.diagnosis_message() == (
        "the candidate matches with bias='split' (as in zennit, toolbox)"
    )
    assert report.to_dict()["diagnosis"]["matches"][0]["changes"] == {"bias": "split"}


def test_epsilon_and_seeding_are_named(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon", eps=0.01).R
    assert "eps=0.01" in verify(net, x, R, "lrp-epsilon").diagnosis_message()
    f = explain(net, x, "lrp-epsilon").f
    R1 = explain(net, x, "lrp-epsilon").R / f[:, None]
    msg = verify(net, x, R1, "lrp-epsilon").diagnosis_message()
    assert msg.startswith("the candidate matches with the output seeded with 1 instead of f(x)")


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


def test_default_tolerance_follows_the_candidate_dtype(case):
    net, x = case
    R = explain(net, x, "lrp-epsilon").R
    assert verify(net, x, R.astype(np.float32), "lrp-epsilon").rtol == 1e-5
    assert verify(net, x, R, "lrp-epsilon").rtol == DEFAULT_RTOL[np.dtype(np.float64)] == 1e-10
    # float32 rounding fails the float64 tolerance when asked for explicitly
    assert not verify(
        net, x, R.astype(np.float32), "lrp-epsilon", rtol=1e-10, diagnose_mismatch=False
    ).passed


def test_bad_candidates_raise(case):
    net, x = case
    with pytest.raises(ValueError, match=r"expected the input's \(6, 12\)"):
        verify(net, x, np.zeros((6, 11)), "lrp-0")
    with pytest.raises(TypeError, match="floating point"):
        verify(net, x, np.zeros((6, 12), dtype=int), "lrp-0")
    with pytest.raises(ValueError, match="rtol must be a positive"):
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
