"""The LRP engine (issue 10): one ``propagate_linear`` for every linear layer, rules that name
parameter transforms, prepared parameters, forward reuse, and rule maps by layer type."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.explain.lrp import RuleMap, linear_layers, lrp
from refimpl.explain.prepared import PreparedParameters, parse_transform
from refimpl.explain.rules import LRP0, ZB, AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZPlus
from refimpl.nn.layers import Dense, Flatten, Layer, ReLU
from refimpl.nn.network import Sequential, mlp

from .nets import randomize_biases

RULES = [
    LRP0(),
    LRP0(bias="none"),
    Epsilon(0.1),
    Epsilon(0.1, stabilizer_kind="relative"),
    AlphaBeta(2, 1),
    AlphaBeta(2, 1, bias="split", inputs="split", eps=1e-6),
    ZPlus(bias="full", inputs="weights"),
    WSquare(bias="squared"),
    Flat(),
    Gamma(0.25),
    Gamma(0.25, "generalized"),
]


class GridDense(Layer):
    """A linear layer of another kind: it maps a ``(A, B)`` grid to ``K`` units and stores its
    weights as ``(K, A, B)``. It knows nothing about LRP beyond ``linear``/``linear_T``."""

    type_name = "grid_dense"
    relevance = "linear"

    def __init__(self, W3, b):
        super().__init__()
        self.params["W"], self.params["b"] = W3, b

    def forward(self, a):
        return self.linear(a, self.params["W"]) + self.params["b"], a

    def output_shape(self, input_shape):
        return (self.params["W"].shape[0],)

    @staticmethod
    def linear(x, W3):
        return np.einsum("nab,kab->nk", x, W3)

    @staticmethod
    def linear_T(s, W3, input_shape=None):
        return np.einsum("nk,kab->nab", s, W3)

    @staticmethod
    def add_bias(z, b):
        return z + b

    @staticmethod
    def bias_dot(s, b):
        return s @ b


def _grid_twin(seed=0):
    """The same function twice: Flatten + Dense, and GridDense on the (2, 3) grid."""
    rng = np.random.default_rng(seed)
    dense = mlp((6, 5, 4), rng=seed)
    randomize_biases(dense, rng)
    flat = Sequential([Flatten(), *dense.layers], input_shape=(2, 3))
    W, b = dense.layers[0].W, dense.layers[0].b
    grid = Sequential(
        [GridDense(W.T.reshape(5, 2, 3).copy(), b.copy()), *dense.layers[1:]], input_shape=(2, 3)
    )
    x = rng.uniform(0, 1, (4, 2, 3))
    return flat, grid, x


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.describe())
def test_the_same_rule_object_serves_another_linear_layer_kind(rule):
    flat, grid, x = _grid_twin()
    a = lrp(flat, x, rule, target=0)
    b = lrp(grid, x, rule, target=0)
    assert b.R.shape == x.shape
    np.testing.assert_allclose(b.R, a.R, rtol=1e-12, atol=1e-14)
    for (_, _, la), (_, _, lb) in zip(a.budget.layers, b.budget.layers, strict=True):
        for name in ("relevance_out", "relevance_in", "bias", "stabilizer", "dropped"):
            np.testing.assert_allclose(getattr(lb, name), getattr(la, name), atol=1e-12)


def test_zb_on_a_grid_layer_uses_per_sample_shapes():
    flat, grid, x = _grid_twin(1)
    rules = RuleMap(Epsilon(0.1), first=ZB(low=0.0, high=1.0))
    np.testing.assert_allclose(lrp(grid, x, rules).R, lrp(flat, x, rules).R, rtol=1e-12)
    with pytest.raises(ValueError, match=r"a\[3, 1, 2\] = 1\.5 lies outside \[0, 1\]"):
        lrp(grid, np.concatenate([x[:3], [[[0, 0, 0], [0, 0, 1.5]]]]), rules)


def test_a_layer_of_unknown_kind_is_refused_by_name():
    class Mystery(Layer):
        type_name = "mystery"

        def forward(self, a):
            return a * 2.0, None

    net = Sequential([Dense(np.ones((3, 2))), Mystery()])
    with pytest.raises(ValueError, match=r"layer 1 \(Mystery\(\)\) declares no way for relevance"):
        lrp(net, np.ones((1, 3)), LRP0(), target=0)


class CountingDense(Dense):
    calls = {"linear": 0, "linear_T": 0}

    @staticmethod
    def linear(x, W):
        CountingDense.calls["linear"] += 1
        return x @ W

    @staticmethod
    def linear_T(s, W, input_shape=None):
        CountingDense.calls["linear_T"] += 1
        return s @ W.T


@pytest.mark.parametrize(
    "rule, linear_calls", [(Epsilon(0.1), 0), (LRP0(), 0), (LRP0(bias="none"), 1), (ZPlus(), 1)]
)
def test_the_forward_z_is_the_denominator_where_the_rule_allows(rule, linear_calls):
    rng = np.random.default_rng(0)
    net = Sequential(
        [
            CountingDense(rng.normal(size=(4, 3)), rng.normal(size=3)),
            ReLU(),
            CountingDense(rng.normal(size=(3, 2)), rng.normal(size=2)),
        ]
    )
    x = rng.uniform(0, 1, (5, 4))
    CountingDense.calls.update(linear=0, linear_T=0)
    lrp(net, x, rule, target=0)
    assert CountingDense.calls == {"linear": 2 * linear_calls, "linear_T": 2}


def test_prepared_parameters_are_computed_once_and_reused():
    net = mlp((6, 5, 4), rng=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 6))
    prepared = PreparedParameters()
    first = lrp(net, x, AlphaBeta(2, 1, bias="split"), target=0, prepared=prepared)
    wp = prepared.get(net.layers[0], "w+")
    assert len(prepared) == 8  # w+, w-, b+, b- of two layers
    again = lrp(net, x, AlphaBeta(2, 1, bias="split"), target=0, prepared=prepared)
    assert prepared.get(net.layers[0], "w+") is wp
    np.testing.assert_array_equal(again.R, first.R)


def test_prepared_parameters_notice_a_replaced_array_and_can_be_cleared():
    net = mlp((6, 5, 4), rng=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 6))
    prepared = PreparedParameters()
    lrp(net, x, ZPlus(), target=0, prepared=prepared)
    net.layers[0].params["W"] = net.layers[0].W * 2.0  # replaced: noticed
    np.testing.assert_array_equal(
        lrp(net, x, ZPlus(), target=0, prepared=prepared).R, lrp(net, x, ZPlus(), target=0).R
    )
    net.layers[2].W[:] *= -1.0  # in place: a snapshot until cleared (documented)
    stale = lrp(net, x, ZPlus(), target=0, prepared=prepared).R
    prepared.clear()
    fresh = lrp(net, x, ZPlus(), target=0, prepared=prepared).R
    np.testing.assert_array_equal(fresh, lrp(net, x, ZPlus(), target=0).R)
    assert not np.array_equal(stale, fresh)


def test_transforms_are_the_formulas_they_name():
    W = np.array([[-2.0, 0.5], [0.0, 3.0]])
    for name, expected in [
        ("w", W),
        ("w+", np.maximum(W, 0)),
        ("w-", np.minimum(W, 0)),
        ("w^2", W * W),
        ("1", np.ones_like(W)),
        (("w+gw+", 0.5), W + 0.5 * np.maximum(W, 0)),
        (("w+gw-", 0.5), W + 0.5 * np.minimum(W, 0)),
    ]:
        param, fn = parse_transform(name)
        assert param == "W"
        np.testing.assert_array_equal(fn(W), expected)
    assert parse_transform(("b+gb-", 1.0))[0] == "b"
    for bad in ("w*", "x+", ("w+", 1.0), "w+gw+"):
        with pytest.raises(ValueError, match="unknown parameter transform"):
            parse_transform(bad)


def test_rule_maps_by_layer_type_after_index_and_position():
    net = mlp((6, 5, 4, 3), rng=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 6))
    by_type = RuleMap(Epsilon(0.5), types={"dense": ZPlus()})
    assert {i: r for i, r in by_type.resolve(net).items()} == {0: ZPlus(), 2: ZPlus(), 4: ZPlus()}
    np.testing.assert_array_equal(lrp(net, x, by_type).R, lrp(net, x, ZPlus()).R)
    mixed = RuleMap(types={Dense: ZPlus()}, first=Flat(), layers={4: Epsilon(0.1)})
    assert mixed.resolve(net) == {0: Flat(), 2: ZPlus(), 4: Epsilon(0.1)}
    assert linear_layers(net) == [0, 2, 4]
    with pytest.raises(TypeError, match="types keys must be layer type names"):
        RuleMap(types={3: ZPlus()})


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_input_gradient_equals_the_full_backward_pass(activation):
    net = mlp((5, 4, 3, 2), activation=activation, rng=0)
    randomize_biases(net, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(3, 5))
    out, caches = net.forward(x)
    dout = np.random.default_rng(2).normal(size=out.shape)
    np.testing.assert_array_equal(net.input_gradient(caches, dout), net.backward(caches, dout)[0])


def test_verify_computes_each_transform_once_for_its_net(monkeypatch):
    """verify's reference, rounding estimate and ~100 diagnosis candidates share one
    PreparedParameters for the net (shared_parameters): no transform of the net's parameters is
    computed twice; outside the block nothing is kept."""
    from refimpl.explain import prepared as prep
    from refimpl.explain.methods import explain
    from refimpl.verify import verify

    net = mlp([6, 5, 4, 3], rng=0)
    x = np.random.default_rng(1).uniform(0, 1, (4, 6))
    R = explain(net, x, "lrp-alpha-beta", preset="zennit").R  # a mismatch under the paper's
    own = {id(p) for p in net.parameters()}
    computed = []
    real = prep.parse_transform

    def counting(t):
        param, fn = real(t)

        def wrapped(p):
            if id(p) in own:
                computed.append((id(p), t if not isinstance(t, tuple) else t))
            return fn(p)

        return param, wrapped

    monkeypatch.setattr(prep, "parse_transform", counting)
    report = verify(net, x, R, "lrp-alpha-beta")
    assert not report.passed and report.tried > 50  # the diagnosis ran its candidates
    assert len(computed) == len(set(computed)) > 0
    assert prep._SCOPE.get() is None
