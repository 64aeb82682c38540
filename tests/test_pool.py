"""Average and sum pooling (refimpl.nn.pool): an explicit-loop twin, the adjoint identity,
backward against finite differences, and every LRP rule on them equal to the rule on their dense
matrix (pooling as a linear layer with the layer's rule)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.explain.lrp import lrp
from refimpl.explain.rules import Epsilon
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential
from refimpl.nn.pool import AvgPool2d, SumPool2d

from .fd import numeric_grad
from .test_conv import ATOL, RTOL, RULES, as_dense


@st.composite
def window_case(draw, classes=(AvgPool2d, SumPool2d)):
    """A random pooling layer of one of ``classes`` and an input it fits."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cls = draw(st.sampled_from(classes))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    layer = cls((kh, kw), stride, padding)
    H = draw(st.integers(max(1, kh - 2 * padding[0]), 7))
    W = draw(st.integers(max(1, kw - 2 * padding[1]), 7))
    x = rng.normal(size=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W))
    return layer, x, rng


def loop_pool(layer, x):
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    z = np.zeros((*x.shape[:2], Ho, Wo))
    scale = 1.0 / (kh * kw) if isinstance(layer, AvgPool2d) else 1.0
    for p in range(Ho):
        for q in range(Wo):
            z[:, :, p, q] = scale * xp[:, :, p * sh : p * sh + kh, q * sw : q * sw + kw].sum(
                axis=(2, 3)
            )
    return z


@given(window_case())
def test_forward_equals_the_loop_twin(case):
    layer, x, _ = case
    z, _ = layer.forward(x)
    np.testing.assert_allclose(z, loop_pool(layer, x), rtol=1e-12, atol=1e-12)
    assert z.shape[1:] == layer.output_shape(x.shape[1:])


@given(window_case())
def test_adjoint_and_backward(case):
    layer, x, rng = case
    z, cache = layer.forward(x)
    s = rng.normal(size=z.shape)
    back = layer.linear_T(s, layer.linear_params["W"], x.shape[1:])
    np.testing.assert_allclose(np.sum(z * s), np.sum(x * back), rtol=1e-10, atol=1e-10)
    dx, grads = layer.backward(cache, s)
    assert grads == {} and layer.params == {}
    numeric = numeric_grad(lambda: float(np.sum(s * layer.forward(x)[0])), x)
    np.testing.assert_allclose(dx, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.describe())
@given(case=window_case())
def test_every_rule_on_pooling_equals_the_rule_on_its_dense_matrix(rule, case):
    from refimpl.explain.rules import ZB, AlphaBeta, Gamma, ZPlus

    layer, x, rng = case
    shape = x.shape[1:]
    if isinstance(rule, (ZPlus, AlphaBeta, Gamma)) and rule.inputs == "nonnegative":
        x = np.abs(x)
    if isinstance(rule, ZB):
        x = np.clip(x, -1.0, 1.0)
    head = rng.normal(size=(int(np.prod(layer.output_shape(shape))), 2))
    net = Sequential([layer, Flatten(), ReLU(), Dense(head)], input_shape=shape)
    twin = Sequential([Flatten(), as_dense(layer, shape), ReLU(), Dense(head)], input_shape=shape)
    ours = lrp(net, x, {0: rule, 3: Epsilon(0.01)}, target=0)
    ref = lrp(twin, x, {1: rule, 3: Epsilon(0.01)}, target=0)
    np.testing.assert_allclose(ours.R, ref.R.reshape(x.shape), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.budget.closure_error(), 0, atol=1e-9)


def test_pooling_trains_nothing_and_is_refused_with_bad_options():
    net = Sequential([AvgPool2d(2), Flatten(), Dense(np.ones((4, 2)))], input_shape=(1, 4, 4))
    assert len(net.parameters()) == 1  # only the dense layer's W
    for make, message in (
        (lambda: AvgPool2d(0), "kernel_size and stride must be >= 1"),
        (lambda: SumPool2d(2, padding=2), "at most half the kernel size"),
        (lambda: AvgPool2d(3).output_shape((1, 2, 2)), "larger than the padded input"),
        (lambda: AvgPool2d(2).output_shape((4, 4)), "needs input shape (C, H, W)"),
    ):
        with pytest.raises(ValueError, match=None) as info:
            make()
        assert message in str(info.value)
