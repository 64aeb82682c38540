"""Issue 9 (hardening) on the command line: Taylor from `explain`, per-sample root failures,
negative option values, validation before work, heatmaps of extreme relevances."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.explain.taylor import search_root, taylor
from refimpl.nn.modelfile import save_model
from refimpl.nn.network import mlp

from .nets import randomize_biases


def _biased_net():
    """A 16-8-6-3 net with biases: f_0(0) > 0, so the segment to 0 of a sample with f_0(x) < 0
    has a root and the others (f_0 > 0 all along) have none."""
    return randomize_biases(mlp([16, 8, 6, 3], rng=1), np.random.default_rng(3))


@pytest.fixture
def files(tmp_path):
    net = _biased_net()
    save_model(tmp_path / "net.npz", net)
    bias_free = mlp([16, 8, 6, 3], rng=1, bias=False)
    save_model(tmp_path / "homog.npz", bias_free)
    x = np.random.default_rng(2).uniform(-1, 1, (6, 16))
    np.save(tmp_path / "x.npy", x)
    return net, bias_free, x, tmp_path


def _explain(d, model, *extra):
    return main(["explain", str(d / model), str(d / "x.npy"), "--out", str(d / "R.npy"), *extra])


def test_taylor_limit_writes_and_reports_the_root(files, capsys):
    """Was: 'TaylorResult' object has no attribute 'budget' (exit 1, traceback) after R.npy."""
    _, net, x, d = files
    assert _explain(d, "homog.npz", "--method", "taylor", "--budget") == 0
    out = capsys.readouterr().out
    assert "f(root)" in out and "residual" in out and "eq. 4.2" in out
    np.testing.assert_allclose(np.load(d / "R.npy"), taylor(net, x).R, rtol=1e-13, atol=0)


def test_budget_with_a_gradient_method_is_a_note(files, capsys):
    _, _, _, d = files
    assert _explain(d, "net.npz", "--method", "sensitivity", "--budget") == 0
    assert "note: --budget is the LRP relevance budget" in capsys.readouterr().out


def test_root_search_reports_samples_without_root_and_writes_the_others(files, capsys):
    net, _, x, d = files
    args = ["--method", "taylor", "--root", "search", "--target", "0"]
    assert _explain(d, "net.npz", *args, "--budget") == 0
    captured = capsys.readouterr()
    assert "root search failed for 5 sample(s)" in captured.err
    assert "0, 2, 3, 4, 5" in captured.err and "--root-reference" in captured.err
    assert "(no root)" in captured.out
    R = np.load(d / "R.npy")
    assert np.all(R[[0, 2, 3, 4, 5]] == 0) and np.all(np.isfinite(R))
    alone = taylor(net, x[1:2], root="search", target=0)  # the one sample with a root
    np.testing.assert_allclose(R[1:2], alone.R, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"sample\(s\) 0\b"):
        search_root(net, x[:1], np.array([0]))


def test_missing_root_zero_in_the_api(files):
    net, _, x, _ = files
    r = taylor(net, x, root="search", target=0, missing_root="zero")
    assert r.found.tolist() == [False, True, False, False, False, False]
    assert sorted(r.failures) == [0, 2, 3, 4, 5]
    np.testing.assert_array_equal(r.root[~r.found], x[~r.found])
    np.testing.assert_allclose(r.residual[~r.found], r.f[~r.found], rtol=1e-15)
    with pytest.raises(ValueError, match="missing_root must be one of"):
        taylor(net, x, root="search", missing_root="nan")


def test_root_search_options_reach_the_search(files, capsys):
    """--root-reference and --max-distance are exposed, since the error message names them."""
    net, _, x, d = files
    ref = np.full(16, -1.0)
    np.save(d / "ref.npy", ref.reshape(4, 4))  # any shape of d values is one point
    for value, expected_ref in (("-1", ref), (str(d / "ref.npy"), ref)):
        args = ["--method", "taylor", "--root", "search", "--root-reference", value]
        assert _explain(d, "net.npz", *args, "--target", "2") == 0
        expected = taylor(
            net, x, root="search", reference=expected_ref, target=2, missing_root="zero"
        )
        np.testing.assert_allclose(np.load(d / "R.npy"), expected.R, rtol=1e-13, atol=1e-15)
    args = ["--method", "taylor", "--root", "search", "--direction", "gradient"]
    assert _explain(d, "net.npz", *args, "--max-distance", "0.5") == 0
    expected = taylor(
        net, x, root="search", direction="gradient", max_distance=0.5, missing_root="zero"
    )
    np.testing.assert_allclose(np.load(d / "R.npy"), expected.R, rtol=1e-13, atol=1e-15)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "taylor", "--root-reference", "-1"], "needs --method taylor --root search"),
        (["--method", "lrp-0", "--direction", "gradient"], "needs --method taylor --root search"),
        (
            ["--method", "taylor", "--root", "search", "--max-distance", "1"],
            "needs --direction gradient",
        ),
        (
            [
                "--method",
                "taylor",
                "--root",
                "search",
                "--direction",
                "gradient",
                "--root-reference",
                "0",
            ],
            "needs --direction segment",
        ),
        (["--method", "taylor", "--root", "search", "--root-reference", "inf"], "finite"),
        (["--method", "taylor", "--root", "search", "--root-reference", "x"], "a number or"),
        (["--method", "lrp-epsilon", "--eps", "-1e-3"], "eps must be finite and > 0, got -0.001"),
        (["--method", "lrp-zb", "--low", "-inf"], "low"),
    ],
)
def test_option_errors_are_named(files, capsys, extra, message):
    _, _, _, d = files
    assert _explain(d, "net.npz", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (d / "R.npy").exists()


def test_outputs_are_checked_before_any_work(files, tmp_path, capsys):
    _, _, _, d = files
    missing = tmp_path / "no" / "such"
    extra = ["--method", "lrp-epsilon", "--heatmap", str(missing / "R.png")]
    assert _explain(d, "net.npz", *extra) == 2
    err = capsys.readouterr().err
    assert "--heatmap" in err and "does not exist" in err
    assert not (d / "R.npy").exists()  # nothing written when a later output would fail
    assert (
        main(
            ["explain", str(d / "net.npz"), str(d / "x.npy"), "--method", "lrp-0", "--out", str(d)]
        )
        == 2
    )
    assert "--out" in capsys.readouterr().err


def test_train_and_am_check_outputs_and_options_before_loading_data(tmp_path, capsys):
    """No data directory exists: an early check must fail first, naming the output or option."""
    nodata = ["--data", str(tmp_path / "nodata"), "--no-download"]
    assert main(["train", *nodata, "--out", str(tmp_path / "no" / "m.npz")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["train", *nodata, "--lr-decay", "1.5"]) == 2
    assert "--lr-decay must be in (0, 1]" in capsys.readouterr().err
    assert main(["train", *nodata, "--lr", "-1e-3"]) == 2
    assert "--lr must be finite and > 0" in capsys.readouterr().err
    am = ["am", *nodata, "--workdir", str(tmp_path / "w")]
    assert main([*am, "--table", str(tmp_path / "no" / "t.txt")]) == 2
    assert "--table" in capsys.readouterr().err
    assert main([*am, "--steps", "0"]) == 2
    assert "steps must be in [1, inf]" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["am", *nodata, "--workdir", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def _red_pixels(png) -> int:
    import matplotlib.image

    img = matplotlib.image.imread(png)
    return int(np.sum((img[..., 0] > 0.6) & (img[..., 1] < 0.2) & (img[..., 2] < 0.2)))


def test_heatmap_draws_the_largest_floats_in_colour(tmp_path, capsys):
    """Was: R = 1e308 drawn white (matplotlib's vmax - vmin overflows)."""
    R = np.zeros((1, 16))
    R[0, :8] = 1e308
    np.save(tmp_path / "R.npy", R)
    np.save(tmp_path / "small.npy", R / 1e308)
    for name in ("R", "small"):
        assert (
            main(["heatmap", str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / f"{name}.png")])
            == 0
        )
    capsys.readouterr()
    reds = _red_pixels(tmp_path / "R.png")
    assert reds > 0 and reds == _red_pixels(tmp_path / "small.png")


@pytest.mark.parametrize(
    ("shape", "extra", "message"),
    [
        ((5, 16), ["--image-shape", "5x5"], "does not hold 5 image(s) of 5x5"),
        ((5, 16), ["--image-shape", "0x16"], "must be positive"),
        ((), [], "expected (n, d)"),
    ],
)
def test_heatmap_shape_errors_are_plain(tmp_path, capsys, shape, extra, message):
    np.save(tmp_path / "R.npy", np.ones(shape))
    assert main(["heatmap", str(tmp_path / "R.npy"), "--out", str(tmp_path / "h.png"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_heatmap_input_of_the_wrong_size(tmp_path, capsys):
    np.save(tmp_path / "R.npy", np.ones((2, 16)))
    np.save(tmp_path / "x.npy", np.ones((3, 16)))
    argv = ["heatmap", str(tmp_path / "R.npy"), "--input", str(tmp_path / "x.npy")]
    assert main([*argv, "--out", str(tmp_path / "h.png")]) == 2
    assert "images of shape (3, 16) does not hold 2 image(s) of 4x4" in capsys.readouterr().err


def test_cli_file_errors_are_named_and_never_hang(files, tmp_path, capsys):
    """A FIFO as input or candidate (was: hangs), a directory as model (was: 'does not exist'),
    an empty .npy (was: traceback), a symlink as --out (was: replaced by a regular file)."""
    import os

    _, _, _, d = files
    os.mkfifo(d / "fifo.npy")
    argv = ["explain", str(d / "net.npz"), str(d / "fifo.npy"), "--method", "lrp-0"]
    assert main([*argv, "--out", str(d / "R.npy")]) == 2
    assert "not a regular file" in capsys.readouterr().err
    verify = ["verify", str(d / "net.npz"), str(d / "x.npy"), str(d / "fifo.npy")]
    assert main([*verify, "--method", "lrp-0"]) == 2
    assert "candidate" in capsys.readouterr().err
    (d / "model_dir").mkdir()
    assert main(["info", str(d / "model_dir")]) == 2
    assert "is a directory" in capsys.readouterr().err
    (d / "empty.npy").write_bytes(b"")
    argv = ["explain", str(d / "net.npz"), str(d / "empty.npy"), "--method", "lrp-0"]
    assert main([*argv, "--out", str(d / "R.npy")]) == 2
    assert "empty" in capsys.readouterr().err
    (d / "keep.txt").write_text("keep")
    os.symlink(d / "keep.txt", d / "link.npy")
    argv = ["explain", str(d / "net.npz"), str(d / "x.npy"), "--method", "lrp-0"]
    assert main([*argv, "--out", str(d / "link.npy")]) == 2
    assert "refusing to replace --out" in capsys.readouterr().err
    assert os.path.islink(d / "link.npy") and (d / "keep.txt").read_text() == "keep"
