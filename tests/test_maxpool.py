"""Max pooling (refimpl.nn.pool.MaxPool2d) and its relevance rules (refimpl.explain.pooling):
forward and gradient against a loop twin and finite differences, the closed-form cases of the
libraries (Captum's [[1, 2], [5, 6]], ties first or split), conservation, and LRP-0 with
winner-take-all equal to gradient x input on a bias-free ReLU CNN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl.explain.gradient import gradient_x_input
from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.pooling import MaxAsAverage, WinnerTakesAll
from refimpl.explain.rules import LRP0, Epsilon
from refimpl.nn.conv import Conv2d
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential
from refimpl.nn.pool import MaxPool2d

from .fd import numeric_grad
from .test_conv import ATOL, RTOL
from .test_pool import window_case


def pool_case():
    return window_case((MaxPool2d,))


def loop_max(layer, x):
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    z = np.zeros((*x.shape[:2], Ho, Wo))
    for p in range(Ho):
        for q in range(Wo):
            z[:, :, p, q] = xp[:, :, p * sh : p * sh + kh, q * sw : q * sw + kw].max(axis=(2, 3))
    return z


@given(pool_case())
def test_forward_and_gradient(case):
    layer, x, rng = case
    z, cache = layer.forward(x)
    np.testing.assert_array_equal(z, loop_max(layer, x))
    assert z.shape[1:] == layer.output_shape(x.shape[1:])
    g = rng.normal(size=z.shape)
    w = layer.windows(x)
    top2 = np.sort(w, axis=-1)[..., -2:] if w.shape[-1] > 1 else None
    assume(top2 is None or np.min(top2[..., 1] - top2[..., 0]) > 1e-4)  # no near-ties for FD
    dx, grads = layer.backward(cache, g)
    assert grads == {}
    numeric = numeric_grad(lambda: float(np.sum(g * layer.forward(x)[0])), x)
    np.testing.assert_allclose(dx, numeric, rtol=RTOL, atol=ATOL)


def _pool_net(kernel=2):
    return Sequential([MaxPool2d(kernel), Flatten(), Dense(np.ones((1, 1)))], input_shape=(1, 2, 2))


def test_captums_closed_form_and_ties():
    net = _pool_net()
    x = np.array([[[[1.0, 2.0], [5.0, 6.0]]]])
    R = lrp(net, x, LRP0()).R
    np.testing.assert_array_equal(R, [[[[0, 0], [0, 6.0]]]])  # Captum's own test
    tie = np.array([[[[3.0, 3.0], [1.0, 0.0]]]])
    first = lrp(net, tie, RuleMap(LRP0(), types={"max_pool2d": WinnerTakesAll()})).R
    split = lrp(net, tie, RuleMap(LRP0(), layers={0: WinnerTakesAll("split")})).R
    np.testing.assert_array_equal(first, [[[[3.0, 0], [0, 0]]]])
    np.testing.assert_array_equal(split, [[[[1.5, 1.5], [0, 0]]]])
    avg = lrp(net, x, RuleMap(LRP0(), layers={0: MaxAsAverage()}))
    np.testing.assert_allclose(avg.R, 6.0 * x / x.sum(), rtol=1e-15)
    assert "max-as-average" in avg.budget.layers[-1][1]


@given(case=pool_case(), ties=st.sampled_from(["first", "split"]))
def test_winner_take_all_conserves_every_window(case, ties):
    layer, x, rng = case
    x = np.round(x, 1)  # ties happen
    out = layer.output_shape(x.shape[1:])
    R = rng.normal(size=(len(x), *out))
    R_in, lb = WinnerTakesAll(ties).propagate(layer, x, R)
    assert R_in.shape == x.shape
    np.testing.assert_allclose(lb.relevance_in, lb.relevance_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        R_in.reshape(len(x), -1).sum(1), R.reshape(len(x), -1).sum(1), rtol=1e-12, atol=1e-12
    )
    if ties == "first":  # the gradient of sum(R * maxpool(x))
        np.testing.assert_allclose(R_in, layer.backward(layer.forward(x)[1], R)[0], rtol=1e-15)


def test_lrp0_with_winner_take_all_is_gradient_x_input_on_a_relu_cnn():
    rng = np.random.default_rng(0)
    net = Sequential(
        [
            Conv2d(rng.normal(size=(3, 2, 3, 3)), padding=1),
            ReLU(),
            MaxPool2d(2),
            Flatten(),
            Dense(rng.normal(size=(3 * 3 * 3, 4))),
        ],
        input_shape=(2, 6, 6),
    )
    x = rng.normal(size=(5, 2, 6, 6))
    e = lrp(net, x, LRP0(), target=2)
    np.testing.assert_allclose(e.R, gradient_x_input(net, x, target=2).R, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(e.budget.closure_error(), 0, atol=1e-10)
    assert "max-winner" in RuleMap(LRP0()).table(net)


def test_rule_kinds_are_checked():
    net = _pool_net()
    x = np.ones((1, 1, 2, 2))
    with pytest.raises(TypeError, match="takes a max-pooling rule"):
        lrp(net, x, RuleMap(LRP0(), layers={0: Epsilon()}))
    with pytest.raises(TypeError, match="is linear: it takes an LRP Rule"):
        lrp(net, x, RuleMap(LRP0(), layers={2: WinnerTakesAll()}))
    with pytest.raises(ValueError, match="ties must be one of"):
        WinnerTakesAll("random")
    with pytest.raises(TypeError, match="rule must be a linear LRP Rule"):
        MaxAsAverage(WinnerTakesAll())
