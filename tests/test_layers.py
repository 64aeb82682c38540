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

from refimpl.layers import Dense, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Tanh, log_softmax
from refimpl.losses import binary_cross_entropy_with_logits, softmax_cross_entropy
from refimpl.network import Sequential, mlp

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
