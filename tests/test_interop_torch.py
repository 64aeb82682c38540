"""refimpl.interop.torch: exact conversion between nn.Sequential and Sequential (extra [torch]).

Parameters must survive a round trip bit for bit in float32 and float64 (``W = weight.T`` is a
transpose, never a computation). Forward outputs of the two frameworks are compared in float64
to ``1e-12`` times the output scale ``max(1, max |y|)``: the same sums in a possibly different
order (BLAS) differ by a few ulps of the largest partial sum; a wrong layout or activation is off
by O(|y|).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from refimpl.nn.layers import Dense, Flatten, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Tanh
from refimpl.nn.network import Sequential, mlp

from .extras import import_extra

torch = import_extra("torch", "torch")  # skips with a message, or fails in CI (tests/extras.py)

from refimpl.interop.torch import from_torch, to_torch  # noqa: E402

nn = torch.nn
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
RTOL = 1e-12


def _torch_net(dtype=torch.float64, seed=0) -> nn.Sequential:
    """Every supported module, nested, with Identity and Dropout to drop."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(12, 8),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Sequential(nn.Linear(8, 7, bias=False), nn.LeakyReLU(0.2), nn.Identity()),
            nn.Sequential(nn.Sequential(nn.Linear(7, 6), nn.Tanh())),
            nn.Linear(6, 5),
            nn.Sigmoid(),
            nn.Linear(5, 4),
            nn.LogSoftmax(dim=1),
        )
        .to(dtype)
        .eval()
    )


def _assert_same_parameters(module: nn.Module, net: Sequential) -> None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    assert len(linears) == len(dense)
    for lin, layer in zip(linears, dense, strict=True):
        weight = lin.weight.detach().numpy()
        assert layer.W.dtype == weight.dtype
        np.testing.assert_array_equal(layer.W, weight.T)
        if lin.bias is None:
            assert layer.b is None
        else:
            np.testing.assert_array_equal(layer.b, lin.bias.detach().numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_torch_converts_every_supported_module_exactly(dtype):
    module = _torch_net(TORCH_DTYPE[dtype]).eval()
    net = from_torch(module, input_shape=(3, 4))
    assert [type(layer) for layer in net.layers] == [
        Flatten, Dense, ReLU, Dense, LeakyReLU, Dense, Tanh, Dense, Sigmoid, Dense, LogSoftmax
    ]  # fmt: skip
    assert net.input_shape == (3, 4) and net.dtype == dtype
    assert net.layers[4].slope == 0.2  # float(0.2): exact, as nn.LeakyReLU stores it
    _assert_same_parameters(module, net)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trips_are_bit_exact(dtype):
    module = _torch_net(TORCH_DTYPE[dtype])
    net = from_torch(module, input_shape=(3, 4))
    back = to_torch(net)
    assert isinstance(back[0], nn.Flatten) and (back[0].start_dim, back[0].end_dim) == (1, -1)
    _assert_same_parameters(back, net)
    _assert_same_parameters(module, from_torch(back, input_shape=(3, 4)))
    net2 = mlp([5, 4, 3], rng=1, dtype=dtype, bias=False)
    again = from_torch(to_torch(net2))
    assert again.input_shape == (5,)
    for p, q in zip(net2.parameters(), again.parameters(), strict=True):
        assert p.dtype == q.dtype == dtype
        np.testing.assert_array_equal(p, q)


def test_forward_outputs_agree_in_float64():
    module = _torch_net(torch.float64).eval()
    net = from_torch(module, input_shape=(3, 4))
    x = np.random.default_rng(0).normal(size=(6, 3, 4))
    with torch.no_grad():
        y_torch = module(torch.from_numpy(x)).numpy()
    y = net(x)
    scale = max(1.0, float(np.abs(y_torch).max()))
    np.testing.assert_allclose(y, y_torch, rtol=0, atol=RTOL * scale)
    # and back: a refimpl net run by PyTorch
    net2 = mlp([7, 6, 5], activation="tanh", rng=3)
    x2 = np.random.default_rng(1).normal(size=(4, 7))
    with torch.no_grad():
        y2 = to_torch(net2)(torch.from_numpy(x2)).numpy()
    scale2 = max(1.0, float(np.abs(y2).max()))
    np.testing.assert_allclose(net2(x2), y2, rtol=0, atol=RTOL * scale2)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=1)), r"module 1 \(Softmax\)"),
        (nn.Sequential(nn.Conv1d(1, 2, 3)), r"module 0 \(Conv1d\)"),
        (nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), r"module 1 \(BatchNorm1d\)"),
        (nn.Sequential(nn.Linear(3, 2), nn.GELU()), r"module 1 \(GELU\)"),
        (nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(3, 2)), r"Flatten\(start_dim=2"),
        (nn.Sequential(nn.Flatten(1, 2), nn.Linear(3, 2)), r"end_dim=2"),
        (nn.Sequential(nn.Linear(3, 2), nn.LogSoftmax(dim=0)), r"LogSoftmax\(dim=0\)"),
        (nn.Sequential(nn.ReLU(), nn.Identity()), "no Linear layer"),
    ],
    ids=[
        "softmax",
        "conv1d",
        "batchnorm",
        "gelu",
        "flatten start",
        "flatten end",
        "logsoftmax",
        "none",
    ],
)
def test_unsupported_modules_are_refused_by_name(module, match):
    with pytest.raises(ValueError, match=match) as info:
        from_torch(module, input_shape=(3,))
    if "module" in match:
        assert "supported: Linear" in str(info.value)


def test_input_shape_is_required_for_a_leading_flatten_and_checked():
    module = nn.Sequential(nn.Dropout(), nn.Flatten(), nn.Linear(6, 2)).double().eval()
    with pytest.raises(ValueError, match="input_shape is required when the module starts with"):
        from_torch(module)
    with pytest.raises(ValueError, match="does not chain"):
        from_torch(module, input_shape=(2, 4))
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive integers"):
        from_torch(module, input_shape=(2, 0, 3))
    with pytest.raises(TypeError, match="input_shape must be a tuple"):
        from_torch(module, input_shape=6)
    assert from_torch(module, input_shape=[2, 3]).input_shape == (2, 3)
    assert from_torch(nn.Linear(6, 2), input_shape=(6,)).input_shape == (6,)
    with pytest.raises(ValueError, match="does not chain"):
        from_torch(nn.Linear(6, 2), input_shape=(5,))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        from_torch([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="dtype torch.float16"):
        from_torch(nn.Linear(2, 2).half())
    with pytest.raises(TypeError, match="must be a refimpl Sequential"):
        to_torch(nn.Linear(2, 2))


def test_missing_torch_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install '\.\[torch\]'"):
        from_torch(object())


def test_dropout_in_training_mode_is_refused():
    module = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).double()
    with pytest.raises(ValueError, match=r"Dropout\(p=0.5\) in training mode.*module.eval\(\)"):
        from_torch(module)
    assert len(from_torch(module.eval()).layers) == 1
