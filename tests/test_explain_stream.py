"""`refimpl explain --batch-size`: batches stream from a memory-mapped input to the output file
with bounded memory, and give the same relevances, budget and Taylor report as one batch."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.explain.methods import explain
from refimpl.explain.stream import BatchSummary, Progress, explain_batches
from refimpl.nn.modelfile import save_model
from refimpl.nn.network import mlp

from .nets import randomize_biases


@pytest.fixture
def files(tmp_path):
    net = randomize_biases(mlp([16, 8, 6, 3], rng=1), np.random.default_rng(3))
    save_model(tmp_path / "net.npz", net)
    x = np.random.default_rng(2).uniform(-1, 1, (10, 4, 4))
    np.save(tmp_path / "x.npy", x)
    return net, x, tmp_path


def _run(d, *extra):
    argv = ["explain", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "R.npy"), *extra]
    return main(argv)


@pytest.mark.parametrize("method", ["lrp-epsilon", "gradient_x_input", "sensitivity"])
def test_batches_give_the_one_batch_result(files, capsys, method):
    net, x, d = files
    assert _run(d, "--method", method, "--batch-size", "3", "--budget") == 0
    streamed = capsys.readouterr()
    R = np.load(d / "R.npy")
    assert R.shape == x.shape
    whole = explain(net, x.reshape(10, 16), method).R.reshape(x.shape)
    np.testing.assert_allclose(R, whole, rtol=1e-12, atol=1e-15)
    assert "explain: 10/10 samples (100 %)" in streamed.err
    raw = (d / "R.npy").read_bytes()
    assert _run(d, "--method", method, "--batch-size", "3", "--budget") == 0
    assert (d / "R.npy").read_bytes() == raw  # deterministic
    capsys.readouterr()
    assert _run(d, "--method", method, "--batch-size", "100", "--budget") == 0
    one = capsys.readouterr()
    assert "explain:" not in one.err  # one batch: no progress line
    np.save(d / "whole.npy", np.load(d / "R.npy"))  # np.save's own header for the same array
    assert (d / "whole.npy").read_bytes()[:128] == raw[:128]
    # the printed summary (per-sample f(x), sum R, budget over all samples) agrees
    lines = [ln for ln in streamed.out.splitlines() if "sample" in ln or "budget" in ln]
    assert lines == [ln for ln in one.out.splitlines() if "sample" in ln or "budget" in ln]


def test_root_failures_are_numbered_across_batches(files, capsys):
    net, x, d = files
    args = ["--method", "taylor", "--root", "search", "--target", "0", "--batch-size", "4"]
    assert _run(d, *args) == 0
    err = capsys.readouterr().err
    whole = explain(net, x.reshape(10, 16), "taylor", root="search", target=0, missing_root="zero")
    failed = sorted(whole.failures)
    assert failed and max(failed) >= 4  # some failures lie beyond the first batch
    assert f"root search failed for {len(failed)} sample(s)" in err
    assert ", ".join(map(str, failed[:20])) in err
    np.testing.assert_allclose(np.load(d / "R.npy").reshape(10, 16), whole.R, rtol=1e-12, atol=0)


def test_memory_stays_bounded_by_the_batch(tmp_path, capsys):
    """20,000 samples of 256 values (41 MB): the heap holds about one batch of inputs and
    relevances plus a few numbers per sample (f, sum R, the budget's 5 sums per layer), never
    the input or the output."""
    net = mlp([256, 8, 3], rng=0)
    save_model(tmp_path / "net.npz", net)
    x = np.random.default_rng(0).uniform(0, 1, (20_000, 256))
    np.save(tmp_path / "x.npy", x)
    size = x.nbytes
    del x
    tracemalloc.start()
    try:
        argv = ["explain", str(tmp_path / "net.npz"), str(tmp_path / "x.npy"), "--method"]
        assert (
            main([*argv, "lrp-epsilon", "--out", str(tmp_path / "R.npy"), "--batch-size", "500"])
            == 0
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    capsys.readouterr()
    batch = 500 * 256 * 8  # bytes of one batch of inputs (or relevances)
    scalars = 20_000 * 8 * (2 + 5 * 2)  # per sample: f, sum R, 5 budget sums per layer
    assert peak < 4 * batch + 3 * scalars < size / 4, (peak, size)
    assert np.load(tmp_path / "R.npy", mmap_mode="r").shape == (20_000, 256)


def test_batch_size_errors_and_api(files, capsys):
    net, x, d = files
    assert _run(d, "--method", "lrp-0", "--batch-size", "0") == 2
    assert "--batch-size must be in [1, inf]" in capsys.readouterr().err
    assert not (d / "R.npy").exists()
    with pytest.raises(ValueError, match="target must hold 10 indices"):
        list(explain_batches(net, x.reshape(10, 16), "lrp-0", target=np.zeros(3, dtype=int)))
    summary = BatchSummary()
    t = np.arange(10) % 3
    for start, r in explain_batches(net, x.reshape(10, 16), "lrp-0", batch_size=4, target=t):
        summary.add(start, x.reshape(10, 16)[start : start + 4], r)
    whole = explain(net, x.reshape(10, 16), "lrp-0", target=t)
    np.testing.assert_array_equal(summary.get("target"), t)
    np.testing.assert_allclose(
        summary.budget.closure_error(), whole.budget.closure_error(), atol=1e-12
    )
    np.testing.assert_allclose(summary.get("f"), whole.f, rtol=1e-13)


def test_progress_lines(capsys):
    import io

    out = io.StringIO()
    p = Progress("explain", stream=out, interval=0.0)
    p(5, 10)
    p(10, 10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("explain: 5/10 samples (50 %)") and "ETA" in lines[0]
    assert lines[1].startswith("explain: 10/10 samples (100 %)")
