"""CNNs against PyTorch and Zennit (extra [torch]): exact conversion both ways of conv, pooling
and batch norm, the forward pass and gradient x input against autograd, and every Zennit rule on
a conv + max-pool net equal to refimpl's zennit preset."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.explain.gradient import gradient_x_input
from refimpl.explain.methods import explain
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential
from refimpl.nn.pool import AvgPool2d, MaxPool2d

from .extras import import_extra

torch = import_extra("torch", "torch")
zennit = import_extra("zennit", "torch")

from refimpl.interop import peers  # noqa: E402
from refimpl.interop.torch import from_torch, to_torch  # noqa: E402


def cnn(rng, batch_norm=True, avg=True):
    layers = [Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4) * 0.1, padding=1)]
    if batch_norm:
        layers.append(
            BatchNorm2d(
                rng.uniform(0.5, 1.5, 4),
                rng.normal(size=4) * 0.1,
                rng.normal(size=4) * 0.1,
                rng.uniform(0.5, 2, 4),
            )
        )
    layers += [ReLU(), MaxPool2d(2)]
    if avg:
        layers += [Conv2d(rng.normal(size=(3, 4, 2, 2)), stride=1), ReLU(), AvgPool2d(2)]
        width = 3
    else:
        width = 4 * 4 * 4
    layers += [Flatten(), Dense(rng.normal(size=(width, 5)), rng.normal(size=5) * 0.1)]
    return Sequential(layers, input_shape=(2, 8, 8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conversion_is_exact_both_ways_and_forward_agrees(dtype):
    rng = np.random.default_rng(0)
    net = cnn(rng).astype(dtype)
    model = to_torch(net)
    back = from_torch(model, input_shape=net.input_shape)
    assert [type(a) for a in back.layers] == [type(a) for a in net.layers]
    for a, b in zip(net.named_parameters(), back.named_parameters(), strict=True):
        assert a[0] == b[0] and a[1].dtype == b[1].dtype
        np.testing.assert_array_equal(a[1], b[1])
    bn, bn_back = net.layers[1], back.layers[1]
    np.testing.assert_array_equal(bn.running_var, bn_back.running_var)
    x = rng.normal(size=(3, 2, 8, 8)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    ours = net(x)
    theirs = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * np.abs(ours).max())


def test_gradient_x_input_equals_autograd():
    rng = np.random.default_rng(1)
    net = cnn(rng)
    x = rng.normal(size=(4, 2, 8, 8))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = to_torch(net)(xt)
    out[:, 3].sum().backward()
    np.testing.assert_allclose(
        gradient_x_input(net, x, target=3).R,
        (xt.grad * xt).detach().numpy(),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("method", sorted(set(peers.ZENNIT_RULES) - {"lrp-zb"}))
def test_zennit_rules_on_a_cnn_equal_the_zennit_preset(method):
    """Zennit's rule on every Conv2d and Linear, the gradient through max pooling (refimpl's
    default WinnerTakesAll), Pass on ReLU: float64, within 1e-10 of max |R|."""
    rng = np.random.default_rng(2)
    net = cnn(rng, batch_norm=False, avg=False)
    x = rng.uniform(0, 1, (5, 2, 8, 8))
    theirs = peers.zennit_relevance(net, x, 1, lambda: peers.zennit_rule(method))
    ours = explain(net, x, method, preset="zennit", target=1).R
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10 * np.abs(ours).max())


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (lambda nn: nn.Conv2d(1, 1, 3, dilation=2), "dilation 1 and groups 1"),
        (lambda nn: nn.Conv2d(2, 2, 3, groups=2), "dilation 1 and groups 1"),
        (lambda nn: nn.Conv2d(1, 1, 3, padding="same"), "only integer values"),
        (lambda nn: nn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
        (lambda nn: nn.AvgPool2d(2, count_include_pad=False), "padding counted"),
        (lambda nn: nn.BatchNorm2d(1), "training mode"),
    ],
)
def test_unconvertible_modules_are_named(module, message):
    m = torch.nn.Sequential(module(torch.nn), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    with pytest.raises(ValueError, match=message):
        from_torch(m, input_shape=(1, 6, 6))
