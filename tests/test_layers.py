"""Every hand-written backward pass against central finite differences (float64).

Tolerance: ``|analytic - numeric| <= ATOL + RTOL |numeric|`` with ATOL = 1e-6, RTOL = 1e-5, for
step H = 1e-6 (see tests/fd.py): truncation O(H^2) and round-off ~1e-10 |f| are far below it,
while a wrong derivative is off by O(1). ReLU kinks are kept at distance >= 1e-3 from the
inputs (``assume``), so a perturbation of 1e-6 never crosses one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl.nn.layers import (
    LAYER_TYPES,
    Dense,
    Flatten,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Tanh,
    log_softmax,
)
from refimpl.nn.losses import binary_cross_entropy_with_logits, softmax_cross_entropy
from refimpl.nn.network import Sequential, mlp

from .fd import numeric_grad
from .nets import min_abs_preactivation, random_mlp

ATOL, RTOL = 1e-6, 1e-5


def close(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


@given(random_mlp())
def test_network_gradients_match_finite_differences(case):
    net, x, rng = case
    assume(min_abs_preactivation(net, x) > 1e-3)
    y, caches = net.forward(x)
    g = rng.normal(size=y.shape)  # upstream gradient: f = sum(g * net(x))

    def f():
        return float(np.sum(g * net(x)))

    dx, grads = net.backward(caches, g)
    close(dx, numeric_grad(f, x))
    for p, dp in zip(net.parameters(), grads, strict=True):
        close(dp, numeric_grad(f, p))


@pytest.mark.parametrize(
    "layer",
    [ReLU(), LeakyReLU(0.1), LeakyReLU(0.0), Tanh(), Sigmoid(), LogSoftmax()],
    ids=repr,
)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_activation_backward_matches_finite_differences(layer, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, scale, (3, 7))
    assume(np.abs(z).min() > 1e-3)
    g = rng.normal(size=z.shape)
    _, cache = layer.forward(z)
    dz, grads = layer.backward(cache, g)
    assert grads == {}
    close(dz, numeric_grad(lambda: float(np.sum(g * layer.forward(z)[0])), z))


def test_dense_equals_its_sum_twin():
    rng = np.random.default_rng(0)
    a, W, b = rng.normal(size=(2, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    z_twin = np.array(
        [[sum(a[n, j] * W[j, k] for j in range(4)) + b[k] for k in range(3)] for n in range(2)]
    )
    z, _ = Dense(W, b).forward(a)
    np.testing.assert_allclose(z, z_twin, rtol=1e-14)
    z0, _ = Dense(W).forward(a)
    np.testing.assert_allclose(z0, z_twin - b, rtol=1e-13, atol=1e-14)


def test_sequential_equals_layer_composition():
    net = mlp([5, 6, 4, 3], activation="tanh", rng=3)
    x = np.random.default_rng(1).normal(size=(4, 5))
    W1, b1, W2, b2, W3, b3 = net.parameters()
    twin = np.tanh(np.tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3
    np.testing.assert_allclose(net(x), twin, rtol=1e-14)
    acts = net.activations(x)
    assert len(acts) == len(net.layers) + 1
    np.testing.assert_array_equal(acts[-1], net(x))


@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 12))
def test_softmax_cross_entropy_gradient(seed, n_classes):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (5, n_classes))
    y = rng.integers(0, n_classes, 5)
    loss, dz = softmax_cross_entropy(z, y)
    twin = -np.mean([np.log(np.exp(z[i, y[i]]) / np.exp(z[i]).sum()) for i in range(5)])
    assert loss == pytest.approx(twin, rel=1e-12)
    close(dz, numeric_grad(lambda: softmax_cross_entropy(z, y)[0], z))


@given(seed=st.integers(0, 2**32 - 1))
def test_binary_cross_entropy_gradient(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (6, 1))
    t = rng.choice([0.0, 0.9, 1.0, 0.3], size=(6, 1))
    loss, dz = binary_cross_entropy_with_logits(z, t)
    p = 1 / (1 + np.exp(-z))
    assert loss == pytest.approx(np.mean(-t * np.log(p) - (1 - t) * np.log(1 - p)), rel=1e-10)
    close(dz, numeric_grad(lambda: binary_cross_entropy_with_logits(z, t)[0], z))


@pytest.mark.parametrize("big", [1e4, -1e4, 1e300])
def test_log_softmax_stays_finite_for_huge_logits(big):
    z = np.array([[big, 0.0, -big], [big, big, 0.0]])
    y = log_softmax(z)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(np.exp(y).sum(axis=1), 1.0, rtol=1e-12)
    # the m tied largest logits each get probability 1/m, to float precision
    is_max = z == z.max(axis=1, keepdims=True)
    expected = -np.log(is_max.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(y[is_max], np.broadcast_to(expected, z.shape)[is_max], atol=1e-15)
    loss, dz = softmax_cross_entropy(z, np.array([2, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    _, dz_bce = binary_cross_entropy_with_logits(z, np.zeros_like(z))
    assert np.all(np.isfinite(dz_bce))


def test_float32_on_request():
    net = mlp([4, 3, 2], rng=0, dtype=np.float32)
    x = net.check_input(np.ones((2, 4)))
    assert x.dtype == np.float32 and net(x).dtype == np.float32
    y, caches = net.forward(x)
    dx, grads = net.backward(caches, np.ones_like(y))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Dense(np.ones((2, 3)), np.ones(2)), "b must have shape"),
        (lambda: Dense(np.ones(3)), "W must have 2 dimensions"),
        (lambda: Dense(np.array([[np.nan]])), "NaN"),
        (lambda: LeakyReLU(-0.1), "slope"),
        (
            lambda: Sequential([Dense(np.ones((2, 3))), ReLU(), Dense(np.ones((4, 1)))]),
            "does not chain",
        ),
        (lambda: Sequential([]), "at least one layer"),
        (lambda: mlp([3]), "at least input and output"),
        (lambda: mlp([3, 2], activation="softplus"), "activation must be one of"),
        (lambda: mlp([3, 2], dtype=np.int32), "float32 or float64"),
        (lambda: mlp([3, 0, 2]), r"sizes\[1\]"),
    ],
)
def test_bad_construction_raises_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_check_input_rejects_bad_batches():
    net = mlp([4, 2], rng=0)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        net.check_input(np.ones((2, 5)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.check_input(np.array([[0, np.inf, 0, 0]]))
    with pytest.raises(TypeError, match="numeric"):
        net.check_input(np.array([["a", "b", "c", "d"]]))


def test_losses_reject_bad_labels():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        softmax_cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="integer labels"):
        softmax_cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_cross_entropy_with_logits(z, 2.0)


# --- Flatten ---------------------------------------------------------------------------------

sample_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(shape=sample_shapes, n=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_flatten_backward_matches_finite_differences(shape, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, *shape))
    layer = Flatten()
    out, cache = layer.forward(a)
    g = rng.normal(size=out.shape)
    da, grads = layer.backward(cache, g)
    assert grads == {}
    assert da.shape == a.shape
    close(da, numeric_grad(lambda: float(np.sum(g * layer.forward(a)[0])), a))


@given(shape=sample_shapes, n=st.integers(0, 3))
def test_flatten_shapes_and_order_equal_a_loop_twin(shape, n):
    a = np.arange(n * int(np.prod(shape)), dtype=np.float64).reshape(n, *shape) - 7.5
    layer = Flatten()
    out, _ = layer.forward(a)
    d = int(np.prod(shape))
    assert out.shape == (n, d) and layer.output_shape(shape) == (d,)
    # row-major: the last axis varies fastest, as numpy's reshape and torch's nn.Flatten
    twin = np.empty((n, d))
    for i in range(n):
        for k, idx in enumerate(np.ndindex(*shape)):
            twin[i, k] = a[(i, *idx)]
    np.testing.assert_array_equal(out, twin)
    back, _ = layer.backward(shape, out)
    np.testing.assert_array_equal(back, a)


def test_flatten_is_a_parameter_free_layer_type():
    assert LAYER_TYPES["flatten"] is Flatten
    layer = Flatten()
    assert layer.params == {} and layer.config() == {} and repr(layer) == "Flatten()"
    assert isinstance(Flatten.from_config({}, {}), Flatten)
    with pytest.raises(ValueError, match="takes no arrays"):
        Flatten.from_config({}, {"W": np.ones(2)})
    with pytest.raises(TypeError):
        Flatten.from_config({"start_dim": 1}, {})


@given(seed=st.integers(0, 2**32 - 1), bias=st.booleans())
def test_network_with_flatten_gradients_match_finite_differences(seed, bias):
    rng = np.random.default_rng(seed)
    shape = (2, 3, 2)
    layers = [
        Flatten(),
        Dense(rng.normal(size=(12, 5)), rng.normal(size=5) if bias else None),
        Tanh(),
        Flatten(),  # on a vector: the identity
        Dense(rng.normal(size=(5, 3)), rng.normal(size=3) if bias else None),
    ]
    net = Sequential(layers, input_shape=shape)
    assert net.shapes == [shape, (12,), (5,), (5,), (5,), (3,)]
    x = net.check_input(rng.normal(size=(4, *shape)))
    y, caches = net.forward(x)
    g = rng.normal(size=y.shape)

    def f():
        return float(np.sum(g * net(x)))

    dx, grads = net.backward(caches, g)
    assert dx.shape == x.shape
    close(dx, numeric_grad(f, x))
    for p, dp in zip(net.parameters(), grads, strict=True):
        close(dp, numeric_grad(f, p))
    np.testing.assert_array_equal(net.activations(x)[1], x.reshape(4, 12))
    d1, d2 = net.layers[1], net.layers[4]
    h = np.tanh(x.reshape(4, 12) @ d1.W + (0 if d1.b is None else d1.b))
    np.testing.assert_allclose(net(x), h @ d2.W + (0 if d2.b is None else d2.b), rtol=1e-14)


def test_sequential_with_multi_dimensional_input_shape():
    net = Sequential([Flatten(), Dense(np.ones((6, 2)))], input_shape=(2, 3))
    assert net.input_shape == (2, 3) and net.output_shape == (2,)
    assert "input (2, 3)" in net.summary()
    assert net(np.ones((5, 2, 3))).shape == (5, 2)
    with pytest.raises(ValueError, match=r"shape \(n, 2, 3\)"):
        net.check_input(np.ones((5, 6)))
    with pytest.raises(ValueError, match=r"shape \(n, 2, 3\)"):
        net.check_input(np.ones((5, 3, 2)))
    with pytest.raises(ValueError, match="does not chain"):
        Sequential([Flatten(), Dense(np.ones((6, 2)))], input_shape=(2, 4))


def test_backward_without_input_gradient_gives_the_same_parameter_gradients():
    """Training skips the first layer's ``dout @ W.T``: the parameter gradients are bitwise the
    same as the full backward pass's, and no input gradient is returned."""
    from refimpl.nn.layers import Flatten, ReLU
    from refimpl.nn.network import Sequential

    rng = np.random.default_rng(0)
    for net in (
        mlp([7, 5, 4, 3], rng=1),
        mlp([7, 5, 3], rng=2, bias=False),
        Sequential([Flatten(), ReLU(), *mlp([6, 4, 2], rng=3).layers], input_shape=(2, 3)),
    ):
        x = rng.normal(size=(4, *net.input_shape))
        z, caches = net.forward(x)
        dz = rng.normal(size=z.shape)
        dx, full = net.backward(caches, dz)
        none, fast = net.backward(caches, dz, input_grad=False)
        assert none is None and dx.shape == x.shape
        assert len(full) == len(fast) == len(net.parameters())
        for a, b in zip(full, fast, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected 1 caches, got 2"):
        mlp([3, 2], rng=0).backward([None, None], np.zeros((1, 2)))
