"""Conv2d (refimpl.nn.conv): an explicit-loop twin, the adjoint identity, backward against
central finite differences over random shapes, and every LRP rule on a conv layer equal to the
same rule on the conv's dense matrix (the engine's linear/linear_T serve both)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.explain.lrp import lrp
from refimpl.explain.rules import LRP0, ZB, AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZPlus
from refimpl.nn.conv import Conv2d
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential

from .fd import numeric_grad

ATOL, RTOL = 1e-6, 1e-5  # as every other backward pass (tests/test_layers.py)


@st.composite
def conv_case(draw):
    """A random conv layer and input: channels, kernel, stride, padding, sizes that chain."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    C, K = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H = draw(st.integers(max(1, kh - 2 * padding[0]), 7))
    W_ = draw(st.integers(max(1, kw - 2 * padding[1]), 7))
    bias = draw(st.booleans())
    layer = Conv2d(
        rng.normal(size=(K, C, kh, kw)), rng.normal(size=K) if bias else None, stride, padding
    )
    x = rng.normal(size=(draw(st.integers(1, 3)), C, H, W_))
    return layer, x, rng


def loop_conv(layer: Conv2d, x: np.ndarray) -> np.ndarray:
    """The definition, with explicit loops over every output position (the slow twin)."""
    W, b = layer.W, layer.b
    K, C, kh, kw = W.shape
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    z = np.zeros((len(x), K, Ho, Wo))
    for n in range(len(x)):
        for o in range(K):
            for p in range(Ho):
                for q in range(Wo):
                    patch = xp[n, :, p * sh : p * sh + kh, q * sw : q * sw + kw]
                    z[n, o, p, q] = np.sum(patch * W[o]) + (0.0 if b is None else b[o])
    return z


@given(conv_case())
def test_forward_equals_the_loop_twin_and_output_shape(case):
    layer, x, _ = case
    z, _ = layer.forward(x)
    np.testing.assert_allclose(z, loop_conv(layer, x), rtol=1e-12, atol=1e-12)
    assert z.shape[1:] == layer.output_shape(x.shape[1:])


@given(conv_case())
def test_linear_T_is_the_adjoint(case):
    """<linear(x), s> = <x, linear_T(s)> for every x and s, also when the stride leaves input
    rows unused (input_shape given)."""
    layer, x, rng = case
    z = layer.linear(x, layer.W)
    s = rng.normal(size=z.shape)
    back = layer.linear_T(s, layer.W, x.shape[1:])
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(z * s), np.sum(x * back), rtol=1e-10, atol=1e-10)


@given(conv_case())
def test_backward_matches_finite_differences(case):
    layer, x, rng = case
    z, cache = layer.forward(x)
    g = rng.normal(size=z.shape)

    def f():
        return float(np.sum(g * layer.forward(x)[0]))

    dx, grads = layer.backward(cache, g)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=RTOL, atol=ATOL)
    for name, p in layer.params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(f, p), rtol=RTOL, atol=ATOL)
    assert set(layer.backward_params(cache, g)) == set(layer.params)


def as_dense(layer, input_shape: tuple[int, int, int]) -> Dense:
    """Any linear layer's dense matrix: ``linear`` applied to the identity basis (and its bias
    broadcast over the output)."""
    d = int(np.prod(input_shape))
    basis = np.eye(d).reshape(d, *input_shape)
    W = layer.linear(basis, layer.linear_params["W"]).reshape(d, -1)
    b = layer.linear_params.get("b")
    if b is not None:
        b = np.broadcast_to(b[:, None, None], layer.output_shape(input_shape)).reshape(-1)
    return Dense(W, b)


RULES = [
    LRP0(),
    Epsilon(0.1),
    AlphaBeta(2.0, 1.0, bias="split", inputs="split"),
    AlphaBeta(1.0, 0.0),
    ZPlus(),
    ZB(low=-1.0, high=1.0),
    WSquare(),
    WSquare(bias="squared"),
    Gamma(0.25),
    Gamma(0.25, variant="generalized"),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.describe())
@given(case=conv_case())
def test_every_rule_on_conv_equals_the_rule_on_its_dense_matrix(rule, case):
    """The same rule object on Conv2d and on the conv materialized as a Dense layer gives the
    same relevance and the same budget (summed over channels and pixels)."""
    layer, x, rng = case
    shape = x.shape[1:]
    if isinstance(rule, (ZPlus, AlphaBeta, Gamma)) and rule.inputs == "nonnegative":
        x = np.abs(x)  # the paper's a >= 0
    if isinstance(rule, ZB):
        x = np.clip(x, -1.0, 1.0)
    out = layer.output_shape(shape)
    head = rng.normal(size=(int(np.prod(out)), 2))
    conv_net = Sequential([layer, ReLU(), Flatten(), Dense(head)], input_shape=shape)
    dense_net = Sequential(
        [Flatten(), as_dense(layer, shape), ReLU(), Dense(head)], input_shape=shape
    )
    ours = lrp(conv_net, x, {0: rule, 3: Epsilon(0.01)}, target=0)
    twin = lrp(dense_net, x, {1: rule, 3: Epsilon(0.01)}, target=0)
    np.testing.assert_allclose(ours.R, twin.R.reshape(x.shape), rtol=1e-9, atol=1e-12)
    for (_, _, a), (_, _, b) in zip(ours.budget.layers, twin.budget.layers, strict=True):
        for name in ("relevance_out", "relevance_in", "bias", "stabilizer", "dropped"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.budget.closure_error(), 0, atol=1e-9)


@given(case=conv_case())
def test_flat_shares_equally_over_each_receptive_field(case):
    """Flat (w = 1) on a conv is the layer's own ones kernel: each output's relevance is split
    equally over the inputs in its receptive field (not over every input, as on the conv's dense
    matrix, whose zeros are structure): the twin uses the ones kernel's matrix."""
    layer, x, rng = case
    shape = x.shape[1:]
    out = layer.output_shape(shape)
    net = Sequential(
        [layer, ReLU(), Flatten(), Dense(rng.normal(size=(int(np.prod(out)), 2)))],
        input_shape=shape,
    )
    e = lrp(net, x, {0: Flat(), 3: Epsilon(0.01)}, target=0, keep_layers=True)
    ones = Conv2d(np.ones_like(layer.W), None, layer.stride, layer.padding)
    M = as_dense(ones, shape).W  # (d_in, d_out), 1 where an input is in an output's field
    R_out = e.layers[1].reshape(len(x), -1)
    count = M.sum(axis=0)
    share = np.divide(R_out, count, out=np.zeros_like(R_out), where=count > 0)
    np.testing.assert_allclose(e.R.reshape(len(x), -1), share @ M.T, rtol=1e-10, atol=1e-12)
    lb = e.budget.layers[-1][2]
    np.testing.assert_allclose(
        lb.relevance_in + lb.dropped, lb.relevance_out, rtol=1e-10, atol=1e-12
    )


def test_lrp0_on_a_conv_net_is_gradient_x_input():
    from refimpl.explain.gradient import gradient_x_input

    rng = np.random.default_rng(0)
    conv = Conv2d(rng.normal(size=(4, 2, 3, 3)), stride=2, padding=1)  # bias-free: exact
    net = Sequential(
        [conv, ReLU(), Flatten(), Dense(rng.normal(size=(4 * 3 * 3, 3)))], input_shape=(2, 5, 5)
    )
    x = rng.normal(size=(3, 2, 5, 5))
    R = lrp(net, x, LRP0(), target=1).R
    np.testing.assert_allclose(R, gradient_x_input(net, x, target=1).R, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Conv2d(np.ones((2, 3))), "W must have 4 dimensions"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3)), np.ones(3)), "b must have shape (2,)"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3)), stride=0), "stride must be >= 1"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3)), padding=-1), "padding must be in [0, inf]"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3)), stride=(1, 2, 3)), "an int or a pair"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3))).output_shape((2, 5, 5)), "needs input shape (1"),
        (lambda: Conv2d(np.ones((2, 1, 3, 3))).output_shape((1, 2, 2)), "larger than the padded"),
        (lambda: Conv2d(np.full((2, 1, 3, 3), np.nan)), "NaN or infinite"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert message in str(info.value)
