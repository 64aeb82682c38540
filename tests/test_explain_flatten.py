"""Explanations of nets with a Flatten layer equal those of the same net on flattened input.

Flatten only reorders values (row-major), so every explanation of ``Sequential([Flatten(),
*layers], input_shape=shape)`` must be the explanation of ``Sequential(layers)`` on
``x.reshape(n, -1)``, reshaped to ``x``'s shape. Both compute the same arithmetic on the same
values, so the comparison is exact (bit for bit).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.explain.gradient import gradient_x_input, sensitivity
from refimpl.explain.lrp import RuleMap, lrp
from refimpl.explain.rules import LRP0, ZB, AlphaBeta, Epsilon, Flat, WSquare, ZPlus
from refimpl.explain.taylor import taylor
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential, mlp

from .nets import ACTIVATION_NAMES, randomize_biases

RULES = {
    "lrp-0": LRP0(),
    "epsilon": Epsilon(eps=0.1),
    "alpha2-beta1-split": AlphaBeta(alpha=2, beta=1, inputs="split"),
    "zplus-split": ZPlus(inputs="split"),
    "zb": ZB(low=-10, high=10),
    "w2": WSquare(),
    "flat": Flat(),
    "map": RuleMap(
        first=ZB(low=-10, high=10), middle=ZPlus(inputs="split"), last=Epsilon(eps=0.25)
    ),
}

SHAPES = [(6,), (2, 3), (3, 1, 2), (1, 2, 1, 3)]


def with_flatten(net: Sequential, shape: tuple[int, ...]) -> Sequential:
    """The same layers behind a Flatten, for samples of ``shape``."""
    return Sequential([Flatten(), *net.layers], input_shape=shape)


@st.composite
def flatten_cases(draw):
    """A random float64 dense net on ``prod(shape)`` inputs, a sample shape and a batch."""
    shape = draw(st.sampled_from(SHAPES))
    widths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    activation = draw(st.sampled_from(ACTIVATION_NAMES))
    seed = draw(st.integers(0, 2**32 - 1))
    net = mlp(
        [int(np.prod(shape)), *widths], activation=activation, bias=draw(st.booleans()), rng=seed
    )
    rng = np.random.default_rng(seed + 1)
    randomize_biases(net, rng)
    x = rng.normal(0, 1, (draw(st.integers(1, 4)), *shape))
    return net, shape, x


@pytest.mark.parametrize("rule", RULES.values(), ids=list(RULES))
@given(case=flatten_cases())
def test_lrp_of_flatten_net_equals_lrp_on_flattened_input(rule, case):
    net, shape, x = case
    x_flat = x.reshape(len(x), -1)
    e = lrp(with_flatten(net, shape), x, rule, keep_layers=True)
    ref = lrp(net, x_flat, rule, keep_layers=True)
    assert e.R.shape == x.shape
    np.testing.assert_array_equal(e.R, ref.R.reshape(x.shape))
    np.testing.assert_array_equal(e.f, ref.f)
    np.testing.assert_array_equal(e.target, ref.target)
    assert len(e.layers) == len(ref.layers) + 1 and e.layers[0].shape == x.shape
    for got, want in zip(e.layers[1:], ref.layers, strict=True):
        np.testing.assert_array_equal(got, want)


def test_flatten_between_dense_layers_passes_relevance_unchanged():
    net = mlp([5, 4, 3], rng=0)
    mid = Sequential([net.layers[0], net.layers[1], Flatten(), net.layers[2]])
    x = np.random.default_rng(1).normal(size=(3, 5))
    rule = AlphaBeta(alpha=2, beta=1, inputs="split")
    np.testing.assert_array_equal(lrp(mid, x, rule).R, lrp(net, x, rule).R)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_gradient_methods_of_flatten_net_equal_those_on_flattened_input(shape):
    net = mlp([6, 5, 4], rng=2, bias=False)
    flat = with_flatten(net, shape)
    x_flat = np.random.default_rng(3).normal(size=(4, 6))
    x = x_flat.reshape(4, *shape)
    for method in (sensitivity, gradient_x_input):
        got, want = method(flat, x), method(net, x_flat)
        assert got.R.shape == x.shape
        np.testing.assert_array_equal(got.R, want.R.reshape(x.shape))
    root = np.full(shape, 0.1)
    got, want = taylor(flat, x, root=root), taylor(net, x_flat, root=root.reshape(-1))
    np.testing.assert_array_equal(got.R, want.R.reshape(x.shape))
    np.testing.assert_array_equal(got.residual, want.residual)


# Multi-dimensional inputs through the budget and the Taylor root search


def test_budget_of_flatten_net_is_per_sample():
    net = Sequential([Flatten(), Dense(np.eye(6)[:, :3]), ReLU()], input_shape=(2, 3))
    x = np.arange(12.0).reshape(2, 2, 3)
    e = lrp(net, x, LRP0(), R_out=np.ones((2, 3)))
    assert e.budget.relevance.shape == (2,)
    np.testing.assert_allclose(e.budget.relevance, e.R.reshape(2, -1).sum(axis=1))
    np.testing.assert_allclose(e.budget.closure_error(), 0.0, atol=1e-12)


def test_taylor_root_search_on_flatten_net_equals_the_flat_net():
    flat = mlp([6, 4, 3], rng=0)
    net = with_flatten(flat, (2, 3))
    x = np.random.default_rng(1).uniform(-1, 1, (4, 2, 3))
    for direction in ("segment", "gradient"):
        got = taylor(net, x, root="search", direction=direction, target=0)
        want = taylor(flat, x.reshape(4, 6), root="search", direction=direction, target=0)
        assert got.root.shape == x.shape and got.R.shape == x.shape
        np.testing.assert_array_equal(got.root.reshape(4, 6), want.root)
        np.testing.assert_array_equal(got.R.reshape(4, 6), want.R)
    ref = np.full((2, 3), 0.5)
    got = taylor(net, x, root="search", reference=ref, target=0)
    want = taylor(flat, x.reshape(4, 6), root="search", reference=ref.reshape(6), target=0)
    np.testing.assert_array_equal(got.root.reshape(4, 6), want.root)
    with pytest.raises(ValueError, match=r"reference must have shape \(2, 3\)"):
        taylor(net, x, root="search", reference=np.zeros(5))


def test_taylor_limit_root_on_flatten_net_is_gradient_x_input():
    net = with_flatten(mlp([6, 4, 3], rng=0, bias=False), (2, 3))
    x = np.random.default_rng(2).uniform(-1, 1, (3, 2, 3))
    result = taylor(net, x, root="limit")
    np.testing.assert_allclose(result.R.reshape(3, -1).sum(axis=1), result.f, rtol=1e-12)
