"""The command line: help for every subcommand, train/info end to end, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.cli import build_parser, main
from refimpl.idx import write_idx
from refimpl.modelfile import load_model_with_meta

SUBCOMMANDS = ["train", "info"]


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
