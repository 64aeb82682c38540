"""The command line: help for every subcommand, train/info end to end, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.cli import build_parser, main
from refimpl.data.idx import write_idx
from refimpl.nn.modelfile import load_model_with_meta

SUBCOMMANDS = ["train", "info", "explain", "heatmap", "am", "verify", "conformance"]


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        main([cmd, "--help"])
    assert info.value.code == 0
    assert "usage: refimpl " + cmd in capsys.readouterr().out


def test_parser_lists_all_subcommands():
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(SUBCOMMANDS)


@pytest.fixture
def tiny_mnist(tmp_path):
    """A directory holding a fake t10k split: 50 random 'digits' in the real IDX format."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 50).astype(np.uint8))
    return tmp_path


def test_train_then_info(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "m.npz"
    args = ["train", "--data", str(tiny_mnist), "--arch", "784-8-10", "--epochs", "2"]
    assert main([*args, "--dtype", "float32", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epoch   2/2" in text and "samples/s" in text
    assert "not the MNIST test set" in text
    model, meta = load_model_with_meta(out)
    assert model.dtype == np.float32 and meta["train_size"] == 40 and meta["epochs"] == 2
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "Dense(784 -> 8, bias=True)" in info and "6,370 parameters" in info


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--arch", "784-x-10"], "architecture must look like"),
        (["train", "--arch", "100-10"], "--arch must start with 784"),
        (["train", "--epochs", "0"], "epochs must be in"),
        (["info", "does-not-exist.npz"], "does not exist"),
    ],
)
def test_errors_exit_2_with_a_message(tiny_mnist, tmp_path, capsys, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--data", str(tiny_mnist), "--out", str(tmp_path / "x.npz")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


@pytest.fixture
def model_and_input(tmp_path):
    from refimpl.nn.modelfile import save_model
    from refimpl.nn.network import mlp

    net = mlp([16, 8, 6, 3], rng=1)
    save_model(tmp_path / "net.npz", net)
    x = np.random.default_rng(2).uniform(-1, 1, (5, 4, 4))
    np.save(tmp_path / "x.npy", x)
    return net, x, tmp_path


def test_explain_writes_relevance_of_the_input_shape(model_and_input, capsys):
    from refimpl.explain.lrp import lrp
    from refimpl.explain.rules import AlphaBeta, Epsilon

    net, x, d = model_and_input
    argv = ["explain", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "R.npy")]
    assert main([*argv, "--method", "lrp-epsilon", "--eps", "0.01", "--budget"]) == 0
    out = capsys.readouterr().out
    assert "closure error" in out and "absorbed by biases" in out
    R = np.load(d / "R.npy")
    assert R.shape == x.shape
    expected = lrp(net, x.reshape(5, 16), Epsilon(eps=0.01)).R
    np.testing.assert_allclose(R.reshape(5, 16), expected, rtol=1e-13, atol=1e-15)
    rules = ["first=lrp-zb", "default=lrp-alpha-beta:alpha=2:beta=1:inputs=split"]
    assert (
        main(
            [
                *argv,
                "--method",
                "lrp",
                "--rules",
                *rules,
                "--target",
                "1",
                "--heatmap",
                str(d / "R.png"),
            ]
        )
        == 0
    )
    assert (d / "R.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from refimpl.explain.lrp import RuleMap
    from refimpl.explain.rules import ZB

    twin = lrp(
        net, x.reshape(5, 16), RuleMap(AlphaBeta(2, 1, inputs="split"), first=ZB()), target=1
    ).R
    np.testing.assert_allclose(np.load(d / "R.npy").reshape(5, 16), twin, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nope"], "invalid choice"),
        (["--method", "lrp-alpha-beta", "--alpha", "1.5", "--beta", "0.4"], "alpha - beta must"),
        (["--method", "lrp-alpha-beta", "--beta", "-1", "--alpha", "0"], "beta must be >= 0"),
        (["--method", "lrp-epsilon", "--eps", "0"], "eps must be finite and > 0"),
        (["--method", "lrp-epsilon", "--alpha", "2"], "takes no option"),
        (["--method", "lrp-zplus"], "negative input"),
        (["--method", "gradient_x_input", "--target", "3"], "target must lie in"),
        (["--method", "gradient_x_input", "--target", "two"], "--target must be"),
        (["--method", "lrp", "--rules", "first=lrp-zb"], "no rule for dense layer"),
        (["--method", "lrp-0", "--rules", "first=lrp-zb"], "--rules needs --method lrp"),
        (["--method", "taylor"], "root='limit'"),
    ],
)
def test_explain_errors(model_and_input, capsys, extra, message):
    _, _, d = model_and_input
    argv = ["explain", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "R.npy"), *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects unknown choices itself
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (d / "R.npy").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: np.full_like(x, np.nan), "NaN or infinite"),
        (lambda x: x[:, :3], "expected (n, 16)"),
        (lambda x: x.astype(str), "numeric"),
    ],
)
def test_explain_rejects_bad_input_files(model_and_input, capsys, make, message):
    _, x, d = model_and_input
    np.save(d / "bad.npy", make(x))
    argv = [
        "explain",
        str(d / "net.npz"),
        str(d / "bad.npy"),
        "--out",
        str(d / "R.npy"),
        "--method",
        "gradient_x_input",
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_explain_with_a_preset_and_a_target_file(model_and_input, capsys):
    from refimpl.explain.methods import explain

    net, x, d = model_and_input
    np.save(d / "t.npy", np.array([0, 1, 2, 0, 1]))
    argv = ["explain", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "R.npy")]
    extra = ["--method", "lrp-alpha-beta", "--preset", "zennit", "--target", str(d / "t.npy")]
    assert main([*argv, *extra]) == 0
    expected = explain(
        net, x.reshape(5, 16), "lrp-alpha-beta", preset="zennit", target=np.array([0, 1, 2, 0, 1])
    ).R
    np.testing.assert_allclose(np.load(d / "R.npy").reshape(5, 16), expected, rtol=1e-13)
    rules = ["--method", "lrp", "--rules", "default=lrp-zplus", "--preset", "captum"]
    assert main([*argv, *rules]) == 0
    expected = explain(net, x.reshape(5, 16), "lrp-zplus", preset="captum").R
    np.testing.assert_allclose(np.load(d / "R.npy").reshape(5, 16), expected, rtol=1e-13)
    assert main([*argv, "--method", "lrp-zb", "--preset", "captum"]) == 2
    assert "Captum 0.9.0 has no lrp-zb rule" in capsys.readouterr().err
    assert main([*argv, "--method", "lrp-epsilon", "--output-seed", "onehot"]) == 0
    assert "output seeded with 1 (one-hot)" in capsys.readouterr().out
    expected = explain(net, x.reshape(5, 16), "lrp-epsilon", seed="onehot").R
    np.testing.assert_allclose(np.load(d / "R.npy").reshape(5, 16), expected, rtol=1e-13)
    assert main([*argv, "--method", "sensitivity", "--output-seed", "onehot"]) == 2
    assert "does not apply to 'sensitivity'" in capsys.readouterr().err


def test_heatmap_command(model_and_input, capsys):
    _, x, d = model_and_input
    np.save(d / "R.npy", x - 0.1)
    argv = ["heatmap", str(d / "R.npy"), "--input", str(d / "x.npy"), "--image-shape", "4x4"]
    assert main([*argv, "--out", str(d / "h.png"), "--shared-scale"]) == 0
    assert (d / "h.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*argv[:2], "--out", str(d / "h2.png"), "--image-shape", "5x5"]) == 2
    assert "does not hold 5 image(s) of 5x5" in capsys.readouterr().err
    np.save(d / "R15.npy", np.ones((2, 15)))
    assert main(["heatmap", str(d / "R15.npy"), "--out", str(d / "h3.png")]) == 2
    assert "as a square image" in capsys.readouterr().err


def test_am_command_with_small_saved_models(tiny_mnist, tmp_path, capsys):
    """`refimpl am` on saved (tiny, untrained) models: grid, table, one row per variant x digit."""
    from refimpl.interpret.gan import GAN
    from refimpl.interpret.grbm import GaussianRBM
    from refimpl.nn.modelfile import save_model
    from refimpl.nn.network import mlp

    work = tmp_path / "work"
    work.mkdir()
    x = np.random.default_rng(0).uniform(-1, 1, (30, 784))
    save_model(work / "classifier.npz", mlp([784, 8, 10], rng=0))
    save_model(work / "classifier2.npz", mlp([784, 8, 10], rng=1))
    save_model(work / "grbm.npz", GaussianRBM.from_data(x, n_hidden=4, rng=0))
    save_model(work / "gan.npz", GAN.build(z_dim=3, hidden_g=(8,), hidden_d=(8,), rng=0))
    out, table = tmp_path / "am.png", tmp_path / "am.txt"
    argv = ["am", "--workdir", str(work), "--data", str(tiny_mnist), "--out", str(out)]
    assert main([*argv, "--table", str(table), "--steps", "5", "--code-ref", "paper"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    text = table.read_text()
    for variant in ("l2 (eq. 3.1)", "expert (eq. 3.2)", "code space (eq. 3.3)"):
        assert sum(line.startswith(variant) for line in text.splitlines()) == 11  # 10 + mean
    assert "GAN classifier score" in capsys.readouterr().out
    assert main([*argv, "--beta", "-1", "--steps", "5", "--code-ref", "paper"]) == 2
    assert "beta must be" in capsys.readouterr().err


def test_explain_refuses_a_model_that_is_not_a_classifier(model_and_input, capsys):
    from refimpl.interpret.gan import GAN
    from refimpl.nn.modelfile import save_model

    _, _, d = model_and_input
    save_model(d / "gan.npz", GAN.build(z_dim=2, hidden_g=(3,), hidden_d=(3,), d=16))
    argv = ["explain", str(d / "gan.npz"), str(d / "x.npy"), "--out", str(d / "R.npy")]
    assert main([*argv, "--method", "lrp-0"]) == 2
    assert "net must be a refimpl Sequential, got GAN" in capsys.readouterr().err


def test_conformance_export_command(tmp_path, capsys):
    import json

    with pytest.raises(SystemExit) as info:
        main(["conformance", "export", "--help"])
    assert info.value.code == 0
    target = tmp_path / "set"
    assert main(["conformance", "export", str(target)]) == 0
    assert f"wrote {target / 'manifest.json'}" in capsys.readouterr().out
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["format"] == "refimpl-conformance" and manifest["version"] == 1
    assert main(["conformance", "export", str(target)]) == 2  # not empty, no --force
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["conformance", "export", str(target), "--force"]) == 0
