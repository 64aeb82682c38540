"""The conformance set (refimpl/verify/conformance.py): export, layout, atomicity, and consumers.

Consumers here rebuild the nets from the plain ``W{i}.npy``/``b{i}.npy`` arrays, without
refimpl's model loading: one in a few lines of NumPy (the paper's rules), one with Zennit (the
optional extra ``[torch]``). They are held to the manifest's tolerance, per sample
``max_i |R_i - R_ref_i| <= rtol max_i |R_ref_i|`` with ``rtol`` 1e-10 (float64), 1e-5 (float32).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from refimpl.explain.presets import PRESETS
from refimpl.explain.rules import RULES
from refimpl.nn.modelfile import load_model
from refimpl.verify import conformance
from refimpl.verify.conformance import (
    CASES,
    FORMAT,
    MANIFEST,
    VERSION,
    check_conformance,
    compare,
    export_conformance,
    load_manifest,
)

ZENNIT_EXTRA = "needs the optional extra [torch]: pip install '.[torch]'"
NONNEGATIVE = ("lrp-alpha-beta", "lrp-zplus", "lrp-gamma")  # the paper's, assuming a >= 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("conf") / "set"
    lines: list[str] = []
    manifest = export_conformance(root, progress=lines.append)
    assert manifest == root.absolute() / MANIFEST
    assert len(lines) == len(CASES) + 1 and "141 expected relevances" in lines[-1]
    return root


@pytest.fixture(scope="module")
def manifest(exported) -> dict:
    return json.loads((exported / MANIFEST).read_text())


def listed_files(manifest: dict) -> set[str]:
    files = set()
    for case in manifest["cases"]:
        files |= {case["model"], case["x"], case["target"], case["logits"]}
        for layer in case["layers"]:
            if layer["type"] == "dense":
                files.add(layer["W"])
                if layer["b"] is not None:
                    files.add(layer["b"])
        files |= {e["file"] for e in case["entries"]}
    return files


def dense_arrays(root: Path, case: dict) -> list[tuple[np.ndarray, np.ndarray | None]]:
    out = []
    for layer in case["layers"]:
        if layer["type"] == "dense":
            b = None if layer["b"] is None else np.load(root / layer["b"])
            out.append((np.load(root / layer["W"]), b))
    return out


# --- the exported set ---------------------------------------------------------------------------


def test_manifest_header(manifest):
    assert manifest["format"] == FORMAT == "refimpl-conformance"
    assert manifest["version"] == VERSION == 1
    assert isinstance(manifest["refimpl_version"], str)
    tol = manifest["tolerance"]
    assert tol["float64"] == {"rtol": 1e-10} and tol["float32"] == {"rtol": 1e-5}
    assert tol["definition"] == "per sample: max_i |R_i - R_ref_i| <= rtol * max_i |R_ref_i|"
    conv = manifest["conventions"]
    assert "W.T" in conv["layout"] and "unchanged" in conv["activations"]
    assert "logit" in conv["explained"]
    assert set(manifest["presets"]) == set(PRESETS)
    assert [c["name"] for c in manifest["cases"]] == ["relu-bias", "relu-nobias", "edge-cases"]


def test_manifest_is_sorted_indented_json(exported, manifest):
    text = (exported / MANIFEST).read_text()
    assert text == json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def test_every_listed_file_exists_and_nothing_else(exported, manifest):
    listed = listed_files(manifest)
    on_disk = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert on_disk == listed | {MANIFEST}
    assert len({e["id"] for c in manifest["cases"] for e in c["entries"]}) == 47


def test_shapes_dtypes_and_logits_are_consistent(exported, manifest):
    for case in manifest["cases"]:
        x = np.load(exported / case["x"])
        target = np.load(exported / case["target"])
        logits = np.load(exported / case["logits"])
        n, C = case["n_samples"], case["n_classes"]
        assert x.dtype == logits.dtype == np.float64 and target.dtype == np.int64
        assert x.shape == (n, *case["input_shape"]) and target.shape == (n,)
        assert logits.shape == (n, C) and target.min() >= 0 and target.max() < C
        assert np.all(np.abs(x) <= 1)
        a = x
        layers = dense_arrays(exported, case)
        for k, (W, b) in enumerate(layers):
            assert W.dtype == np.float64 and W.shape[0] == a.shape[1]
            assert (b is None) == (not case["bias"]) and (b is None or b.shape == (W.shape[1],))
            z = a @ W + (0.0 if b is None else b)
            a = np.maximum(z, 0) if k < len(layers) - 1 else z
        np.testing.assert_array_equal(a, logits)
        for entry in case["entries"]:
            R = np.load(exported / entry["file"])
            assert R.dtype == np.float64 and R.shape == x.shape, entry["id"]
            assert np.all(np.isfinite(R)), entry["id"]
            for key in ("f", "sum_R"):
                assert len(entry[key]) == n
            np.testing.assert_allclose(entry["sum_R"], R.sum(axis=1), rtol=1e-13, atol=1e-300)
            np.testing.assert_array_equal(entry["f"], logits[np.arange(n), target])


def test_model_file_holds_the_plain_arrays(exported, manifest):
    for case in manifest["cases"]:
        net = load_model(exported / case["model"])
        x = np.load(exported / case["x"])
        np.testing.assert_array_equal(net(x), np.load(exported / case["logits"]))
        dense = [layer for layer in net.layers if hasattr(layer, "W")]
        for layer, (W, b) in zip(dense, dense_arrays(exported, case), strict=True):
            np.testing.assert_array_equal(layer.W, W)
            assert (layer.b is None and b is None) or np.array_equal(layer.b, b)


def test_entries_cover_every_preset_rule_and_method(manifest):
    for case in manifest["cases"]:
        ids = {e["id"] for e in case["entries"]}
        for name, p in PRESETS.items():
            for rule in RULES:
                if rule == "lrp-alpha-beta":
                    assert (f"{name}/lrp-alpha-beta-1-0" in ids) == (rule not in p.missing)
                    has_21 = rule not in p.missing and rule not in p.fixed
                    assert (f"{name}/lrp-alpha-beta-2-1" in ids) == has_21
                else:
                    assert (f"{name}/{rule}" in ids) == (rule not in p.missing), (name, rule)
            assert (f"{name}/sensitivity" in ids) == (p.sensitivity is not None)
            assert f"{name}/gradient_x_input" in ids
            skipped = case["skipped"][name]
            assert set(skipped) == {
                *(r for r in p.missing),
                *(["lrp-alpha-beta-2-1"] if "lrp-alpha-beta" in p.fixed else []),
                *(["sensitivity"] if p.sensitivity is None else []),
            }
    assert "fixes alpha=1.0" in manifest["cases"][0]["skipped"]["captum"]["lrp-alpha-beta-2-1"]


def test_entry_records(manifest):
    for case in manifest["cases"]:
        n_dense = sum(layer["type"] == "dense" for layer in case["layers"])
        for e in case["entries"]:
            p = PRESETS[e["preset"]]
            assert e["file"] == f"{case['name']}/expected/{e['preset']}/{e['name']}.npy"
            if e["kind"] == "gradient":
                assert e["rules"] is None and e["budget"] is None and e["seed"] == "onehot"
                continue
            assert e["seed"] == p.seed
            rules = e["rules"]
            assert [r["dense"] for r in rules] == list(range(n_dense))
            for r in rules:  # the options rebuild the described rule
                assert RULES[r["rule"]](**r["options"]).describe() == r["describe"]
            first = rules[0]["rule"]
            if e["name"] == "lrp-zb":
                assert first == "lrp-zb" and e["method"] == "lrp"
                eps = p.rule("lrp-epsilon").describe()
                assert all(r["describe"] == eps for r in rules[1:])
                assert rules[0]["options"]["low"] == -1.0 and rules[0]["options"]["high"] == 1.0
            elif e["preset"] == "paper" and e["rule"] in NONNEGATIVE:
                # the paper's rules assume a >= 0 and the inputs are in [-1, 1]: z^B below them
                assert first == "lrp-zb" and "nonnegative" in e["first_layer"]
                assert {r["rule"] for r in rules[1:]} == {e["rule"]}
            else:
                assert e["first_layer"] is None and e["method"] == e["rule"]
                assert {r["rule"] for r in rules} == {p.realized_by.get(e["rule"], e["rule"])}
            if e["rule"] == "lrp-alpha-beta":
                alpha, beta = (float(v) for v in e["name"].split("-")[-2:])
                opts = rules[-1]["options"]
                assert (opts["alpha"], opts["beta"]) == (alpha, beta)
            b = e["budget"]
            closure = (np.array(e["sum_R"]) + b["bias"] + b["stabilizer"] + b["dropped"]) - e[
                "output_relevance"
            ]
            scale = np.abs(e["output_relevance"]) + np.abs(b["bias"]) + np.abs(b["stabilizer"])
            assert np.all(np.abs(closure) <= 1e-12 * np.maximum(scale, 1)), e["id"]
            if p.seed == "onehot":
                assert e["output_relevance"] == [1.0] * case["n_samples"]
            else:
                assert e["output_relevance"] == e["f"]


def entry(manifest, case_name, entry_id):
    case = next(c for c in manifest["cases"] if c["name"] == case_name)
    return next(e for e in case["entries"] if e["id"] == entry_id)


def test_the_edge_case_exercises_what_it_says(manifest):
    edge = next(c for c in manifest["cases"] if c["name"] == "edge-cases")
    assert len(edge["exercises"]) == 8
    # a zero logit explained: logit seed gives all-zero relevance
    assert entry(manifest, "edge-cases", "paper/lrp-epsilon")["sum_R"][3] == 0.0
    # ... onehot seed: LRP-0 drops the whole relevance of 1, epsilon's stabilizer absorbs it
    assert entry(manifest, "edge-cases", "zennit/lrp-0")["budget"]["dropped"][3] == 1.0
    assert entry(manifest, "edge-cases", "zennit/lrp-epsilon")["budget"]["stabilizer"][3] == 1.0
    # empty positive denominator of the bias-dominated unit: the paper's z+ drops its share
    assert max(entry(manifest, "edge-cases", "paper/lrp-zplus")["budget"]["dropped"]) > 0.01
    # the zero weight column: w^2 without bias drops, Zennit's w^2 gives it to the bias b^2
    assert max(entry(manifest, "edge-cases", "paper/lrp-w2")["budget"]["dropped"]) > 0.01
    assert max(entry(manifest, "edge-cases", "zennit/lrp-w2")["budget"]["bias"]) > 0.01
    # and none of this happens in the random cases
    for case in ("relu-bias", "relu-nobias"):
        for name in ("paper/lrp-zplus", "paper/lrp-w2", "zennit/lrp-0"):
            assert entry(manifest, case, name)["budget"]["dropped"] == [0.0] * 5


def test_bias_free_case_is_exact_for_gradient_x_input(exported, manifest):
    e = entry(manifest, "relu-nobias", "paper/gradient_x_input")
    np.testing.assert_allclose(e["sum_R"], e["f"], rtol=1e-13)
    gxi = np.load(exported / e["file"])
    lrp0 = np.load(exported / entry(manifest, "relu-nobias", "paper/lrp-0")["file"])
    np.testing.assert_allclose(lrp0, gxi, rtol=1e-12, atol=1e-15)


# --- writing: refusal, overwrite, atomicity, determinism ----------------------------------------


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_refuses_a_non_empty_directory_without_overwrite_and_replaces_with_it(tmp_path):
    target = tmp_path / "set"
    export_conformance(target)
    (target / "stale.txt").write_text("from an older export")
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        export_conformance(target)
    assert (target / "stale.txt").exists()
    export_conformance(target, overwrite=True)
    assert not (target / "stale.txt").exists()
    assert load_manifest(target)["format"] == FORMAT
    assert siblings(target) == []  # no temporary or replaced directory left behind


def test_overwrite_replaces_only_a_conformance_set(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("do not delete")
    with pytest.raises(ValueError, match="holds no conformance set"):
        export_conformance(target, overwrite=True)
    assert (target / "thesis.tex").read_text() == "do not delete"
    assert siblings(target) == []


def test_writes_into_an_empty_directory_and_creates_parents(tmp_path):
    (tmp_path / "empty").mkdir()
    export_conformance(tmp_path / "empty")
    assert (tmp_path / "empty" / MANIFEST).is_file()
    export_conformance(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / MANIFEST).is_file()


def test_bad_arguments(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        export_conformance(tmp_path / "file", overwrite=True)
    with pytest.raises(TypeError, match="directory must be a str or PathLike, got int"):
        export_conformance(3)
    with pytest.raises(TypeError, match="overwrite must be a bool, got 'yes'"):
        export_conformance(tmp_path / "x", overwrite="yes")
    with pytest.raises(TypeError, match="progress must be callable"):
        export_conformance(tmp_path / "x", progress="print")
    with pytest.raises(ValueError, match="directory must name a directory"):
        export_conformance(".")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(ValueError, match="symbolic link"):
        export_conformance(tmp_path / "link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link"]


def interrupt_after(monkeypatch, calls: int) -> None:
    """Make the export raise in the middle: on the ``calls``-th explanation (of 141)."""
    real = conformance._run
    count = [0]

    def run(*args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            raise KeyboardInterrupt("interrupted in the middle of the export")
        return real(*args, **kwargs)

    monkeypatch.setattr(conformance, "_run", run)


def test_an_interrupted_export_leaves_nothing_behind(tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 60)  # in the second case
    target = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        export_conformance(target)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_overwrite_keeps_the_previous_set(tmp_path, monkeypatch):
    target = tmp_path / "set"
    export_conformance(target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    interrupt_after(monkeypatch, 120)
    with pytest.raises(KeyboardInterrupt):
        export_conformance(target, overwrite=True)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert siblings(target) == []


def _watch_renames(monkeypatch, target: Path) -> list[tuple[str, str]]:
    """Record every rename of the export; fail if one leaves ``target`` without a manifest."""
    calls: list[tuple[str, str]] = []
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def watched(src, dst, *args, _real=real, **kwargs):
            _real(src, dst, *args, **kwargs)
            calls.append((str(src), str(dst)))
            assert (target / MANIFEST).is_file(), f"{target} has no manifest after {src} -> {dst}"

        monkeypatch.setattr(os, name, watched)
    return calls


def test_overwrite_swaps_the_sets_so_the_directory_always_holds_one(tmp_path, monkeypatch):
    target = tmp_path / "set"
    export_conformance(target)
    (target / "marker-of-the-old-set").write_text("old")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    if not conformance._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    renames = _watch_renames(monkeypatch, target.absolute())
    swaps, removed = [], []
    real_exchange, real_remove = conformance._exchange, conformance._remove_replaced

    def exchange(x, y):
        assert (target / "marker-of-the-old-set").exists()
        swapped = real_exchange(x, y)
        swaps.append(swapped)
        assert load_manifest(target)["format"] == FORMAT
        return swapped

    def remove(old, say):
        # the previous set sits at ``old``; the new, complete one is already at ``target``
        assert (old / "marker-of-the-old-set").exists() and (old / MANIFEST).is_file()
        assert not (target / "marker-of-the-old-set").exists()
        assert load_manifest(target)["format"] == FORMAT
        removed.append(old)
        real_remove(old, say)

    monkeypatch.setattr(conformance, "_exchange", exchange)
    monkeypatch.setattr(conformance, "_remove_replaced", remove)
    export_conformance(target, overwrite=True)
    assert swaps == [True] and len(removed) == 1
    assert not any(src == str(target.absolute()) for src, _ in renames)  # never moved away
    assert siblings(target) == ["a", "b"]
    assert not (target / "marker-of-the-old-set").exists()


def test_overwrite_falls_back_to_two_renames_without_renameat2(tmp_path, monkeypatch):
    target = tmp_path / "set"
    export_conformance(target)
    (target / "marker-of-the-old-set").write_text("old")
    monkeypatch.setattr(conformance, "_exchange", lambda a, b: False)
    moved = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda s, d: (moved.append(str(s)), real_rename(s, d)))
    export_conformance(target, overwrite=True)
    assert moved[0] == str(target.absolute())  # the previous set was renamed aside first
    assert load_manifest(target)["format"] == FORMAT
    assert not (target / "marker-of-the-old-set").exists()
    assert siblings(target) == []


def test_exchange_reports_unsupported_and_raises_on_other_errors(tmp_path):
    a = tmp_path / "a"
    (a / "inside").mkdir(parents=True)
    assert conformance._exchange(a, a / "inside") is False  # EINVAL: a path inside the other
    assert (a / "inside").is_dir()
    with pytest.raises(OSError, match="cannot swap .*: No such file or directory"):
        conformance._exchange(tmp_path / "missing", a)


def test_an_unwritable_parent_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(conformance, "_run", lambda *a: pytest.fail("work started"))
    with pytest.raises(
        PermissionError,
        match=r"cannot write directory '.*set': '.*' is not "
        "writable",
    ):
        export_conformance(tmp_path / "set")


def test_two_exports_are_byte_identical(tmp_path, exported):
    again = tmp_path / "again"
    export_conformance(again)
    first = {p.relative_to(exported): p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    npy = [k for k in first if k.suffix == ".npy"]
    assert len(npy) == 141 + 3 * 3 + 3 * 3 + 2 * 3  # expected, x/target/logits, W, b
    for k in first:  # every .npy, and the model files and manifest too
        assert first[k] == second[k], k


# --- consumers ----------------------------------------------------------------------------------


def numpy_forward(case: dict, arrays: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inputs and pre-activations of every dense layer, from the plain arrays."""
    n_dense = sum(layer["type"] == "dense" for layer in case["layers"])
    a, inputs, pre = arrays["x"], [], []
    for k in range(n_dense):
        inputs.append(a)
        z = a @ arrays[f"W{k}"] + arrays.get(f"b{k}", 0.0)
        pre.append(z)
        a = np.maximum(z, 0)
    return inputs, pre


def safe_div(R, z):
    return np.divide(R, z, out=np.zeros_like(R), where=z != 0)  # a zero denominator drops


def numpy_paper(case: dict, e: dict, arrays: dict) -> np.ndarray | None:
    """The paper's LRP-0, epsilon, z+, alpha-beta, z^B and the gradients in plain NumPy."""
    if e["preset"] != "paper":
        return None
    inputs, pre = numpy_forward(case, arrays)
    rows, c = np.arange(len(arrays["x"])), arrays["target"]
    if e["kind"] == "gradient":
        g = np.zeros_like(pre[-1])
        g[rows, c] = 1.0
        for k in reversed(range(len(pre))):
            g = g @ arrays[f"W{k}"].T
            g = g * (pre[k - 1] > 0) if k > 0 else g
        return {"gradient_x_input": arrays["x"] * g, "sensitivity": g * g}[e["method"]]
    R = np.zeros_like(pre[-1])
    R[rows, c] = pre[-1][rows, c]  # the paper seeds with the logit
    for k in reversed(range(len(pre))):
        rule, opts = e["rules"][k]["rule"], e["rules"][k]["options"]
        a, W = inputs[k], arrays[f"W{k}"]
        Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
        if rule in ("lrp-0", "lrp-epsilon"):
            assert opts["bias"] == "full" and opts.get("stabilizer_kind", "signed") == "signed"
            z = pre[k] + opts.get("eps", 0.0) * np.where(pre[k] >= 0, 1.0, -1.0)
            R = a * (safe_div(R, z) @ W.T)
        elif rule in ("lrp-zplus", "lrp-alpha-beta"):
            assert opts["bias"] == "none" and opts["inputs"] == "nonnegative" and not opts["eps"]
            alpha, beta = opts.get("alpha", 1.0), opts.get("beta", 0.0)
            R = alpha * a * (safe_div(R, a @ Wp) @ Wp.T) - beta * a * (safe_div(R, a @ Wn) @ Wn.T)
        elif rule == "lrp-zb":
            assert not opts["eps"]
            lo, hi = opts["low"], opts["high"]
            s = safe_div(R, a @ W - lo * Wp.sum(axis=0) - hi * Wn.sum(axis=0))
            R = a * (s @ W.T) - lo * (s @ Wp.T) - hi * (s @ Wn.T)
        else:
            return None
    return R


def test_an_independent_numpy_consumer_matches_the_paper_entries(exported):
    results = check_conformance(exported, numpy_paper)
    done = [r for r in results if not r["skipped"]]
    names = {r["name"] for r in done}
    assert names == {
        "lrp-0",
        "lrp-epsilon",
        "lrp-zplus",
        "lrp-alpha-beta-1-0",
        "lrp-alpha-beta-2-1",
        "lrp-zb",
        "sensitivity",
        "gradient_x_input",
    }
    assert len(done) == 8 * 3 and len(results) == 47 * 3
    bad = [(r["case"], r["id"], r["max_rel_error"]) for r in done if not r["passed"]]
    assert not bad
    assert all(r["rtol"] == 1e-10 and r["dtype"] == "float64" for r in done)


def test_check_conformance_fails_what_is_wrong(exported, manifest):
    def perturbed(factor, dtype=np.float64, seed=None):
        def compute(case, e, arrays):
            if e["id"] != "paper/lrp-epsilon":
                return None
            R = np.load(exported / e["file"])
            if seed is not None:  # the wrong seed: onehot instead of the logit
                if case["name"] == "edge-cases":
                    return None  # it explains a zero logit
                R = R / np.asarray(e["f"])[:, None]
            return (R * factor).astype(dtype)

        return [r for r in check_conformance(exported, compute) if not r["skipped"]]

    assert len(perturbed(1.0)) == 3
    assert all(r["passed"] for r in perturbed(1 + 5e-11))
    # 5x the tolerance; the edge case's sample that explains the zero logit has R = 0 exactly
    assert not any(r["passed"] for r in perturbed(1 + 5e-10))
    assert all(r["passed"] and r["dtype"] == "float32" for r in perturbed(1.0, np.float32))
    assert not any(r["passed"] for r in perturbed(1 + 1e-4, np.float32))
    wrong_seed = perturbed(1.0, seed="onehot")
    assert len(wrong_seed) == 2 and not any(r["passed"] for r in wrong_seed)
    assert all(r["max_rel_error"] > 0.1 for r in wrong_seed)
    shape = r"relu-bias paper/lrp-0: candidate relevance must have shape \(5, 10\), got \(3,\)"
    with pytest.raises(ValueError, match=shape):
        check_conformance(exported, lambda case, e, arrays: np.zeros(3))
    with pytest.raises(TypeError, match="compute must be callable"):
        check_conformance(exported, None)


def test_compare_follows_the_definition():
    ref = np.array([[1.0, -2.0], [0.0, 0.0]])
    assert compare(ref, ref, 1e-10) == (0.0, 0.0, True)
    err, rel, ok = compare(ref + [[0.0, 1e-10], [0.0, 0.0]], ref, 1e-10)
    assert (err, rel, ok) == (pytest.approx(1e-10), pytest.approx(5e-11), True)
    err, rel, ok = compare(ref + [[0.0, 0.0], [1e-300, 0.0]], ref, 1e-10)
    assert rel == np.inf and not ok  # an all-zero reference row must be matched exactly
    assert not compare(ref * np.nan, ref, 1e-10)[2]


def test_load_manifest_refuses_other_files(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": 2}))
    with pytest.raises(ValueError, match="unsupported version 2"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format must be 'refimpl-conformance'"):
        load_manifest(tmp_path / MANIFEST)
    with pytest.raises(FileNotFoundError, match="no conformance manifest"):
        load_manifest(tmp_path / "nowhere")


# --- a PyTorch consumer: Zennit -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_zennit_consumer_passes_the_zennit_entries(exported, dtype):
    torch = pytest.importorskip("torch", reason=ZENNIT_EXTRA)
    pytest.importorskip("zennit", reason=ZENNIT_EXTRA)
    from zennit import rules as zr
    from zennit.attribution import Gradient
    from zennit.core import Composite

    tdtype = getattr(torch, dtype)
    zennit_rules = {
        "lrp-epsilon": lambda: zr.Epsilon(),
        "lrp-zplus": lambda: zr.ZPlus(),
        "lrp-alpha-beta-1-0": lambda: zr.AlphaBeta(alpha=1.0, beta=0.0),
        "lrp-alpha-beta-2-1": lambda: zr.AlphaBeta(alpha=2.0, beta=1.0),
        "lrp-w2": lambda: zr.WSquare(),
        "lrp-flat": lambda: zr.Flat(),
        "lrp-gamma": lambda: zr.Gamma(gamma=0.25),
        "lrp-zb": lambda: zr.Epsilon(),  # above the first layer's ZBox
    }

    def compute(case, e, arrays):
        if e["preset"] != "zennit" or e["name"] not in zennit_rules:
            return None
        modules = []
        for layer in case["layers"]:
            if layer["type"] == "relu":
                modules.append(torch.nn.ReLU())
                continue
            W, b = arrays[f"W{layer['dense']}"], arrays.get(f"b{layer['dense']}")
            linear = torch.nn.Linear(*W.shape, bias=b is not None, dtype=tdtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W.T))  # PyTorch's weight is W.T
                if b is not None:
                    linear.bias.copy_(torch.from_numpy(b))
            modules.append(linear)
        model = torch.nn.Sequential(*modules)

        def module_map(ctx, name, module):
            if isinstance(module, torch.nn.ReLU):
                return zr.Pass()
            if e["name"] == "lrp-zb" and name == "0":
                return zr.ZBox(low=-1.0, high=1.0)
            return zennit_rules[e["name"]]() if isinstance(module, torch.nn.Linear) else None

        x = torch.from_numpy(arrays["x"]).to(tdtype).requires_grad_(True)
        seed = torch.eye(case["n_classes"], dtype=tdtype)[torch.from_numpy(arrays["target"])]
        with Gradient(model=model, composite=Composite(module_map=module_map)) as attributor:
            _, R = attributor(x, seed)
        return R.detach().numpy()

    results = [r for r in check_conformance(exported, compute) if not r["skipped"]]
    assert len(results) == 8 * 3
    bad = [(r["case"], r["id"], r["max_rel_error"]) for r in results if not r["passed"]]
    assert not bad
    assert all(r["dtype"] == dtype for r in results)
