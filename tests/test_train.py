"""Optimizers against their textbook formulas, augmentation against a loop twin, and training."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.nn.network import mlp
from refimpl.nn.optim import SGD, Adam
from refimpl.nn.train import evaluate, random_shift, train_classifier


def test_adam_matches_textbook_formula():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 4))
    twin = p.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    opt = Adam([p], lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1)
    for t in range(1, 6):
        g = rng.normal(size=p.shape)
        opt.step([g])
        g = g + 0.1 * twin
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        twin = twin - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-6)
        np.testing.assert_allclose(p, twin, rtol=1e-12, atol=1e-14)


def test_sgd_momentum_matches_textbook_formula():
    rng = np.random.default_rng(1)
    p = rng.normal(size=5)
    twin, vel = p.copy(), np.zeros(5)
    opt = SGD([p], lr=0.1, momentum=0.5, weight_decay=0.01)
    for _ in range(4):
        g = rng.normal(size=5)
        opt.step([g])
        vel = 0.5 * vel - 0.1 * (g + 0.01 * twin)
        twin = twin + vel
        np.testing.assert_allclose(p, twin, rtol=1e-13)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: Adam(p, lr=0), "lr"),
        (lambda p: Adam(p, beta1=1.0), "beta1"),
        (lambda p: SGD(p, momentum=1.5), "momentum"),
        (lambda p: SGD(p, lr=float("nan")), "lr"),
    ],
)
def test_optimizer_parameters_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make([np.zeros(2)])


def test_optimizer_rejects_mismatched_gradients():
    opt = Adam([np.zeros(2)])
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros(3)])


def test_random_shift_equals_loop_twin():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5 * 4))
    out = random_shift(x, 2, np.random.default_rng(9), (5, 4), fill=-1.0)
    dy, dx = np.random.default_rng(9).integers(0, 5, size=(2, 6))
    for n in range(6):
        padded = np.full((9, 8), -1.0)
        padded[2:7, 2:6] = x[n].reshape(5, 4)
        np.testing.assert_array_equal(
            out[n].reshape(5, 4), padded[dy[n] : dy[n] + 5, dx[n] : dx[n] + 4]
        )


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centers[y] + rng.normal(0, 0.5, (n, 4)), y


def test_training_learns_and_is_deterministic():
    x, y = _blobs(300, 0)
    xv, yv = _blobs(200, 1)
    runs = []
    for _ in range(2):
        net = mlp([4, 16, 3], rng=5)
        hist = train_classifier(
            net, x, y, epochs=15, batch_size=32, lr=1e-2, x_val=xv, y_val=yv, rng=7, log=None
        )
        runs.append((net, hist))
    (net, hist), (net2, _) = runs
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
    assert evaluate(net, xv, yv)[1] >= 0.95
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_training_float32_and_sgd():
    x, y = _blobs(200, 2)
    net = mlp([4, 8, 3], rng=0, dtype=np.float32)
    hist = train_classifier(net, x, y, epochs=10, optimizer="sgd", lr=0.05, rng=0, log=None)
    assert net.dtype == np.float32
    assert hist.train_loss[-1] < hist.train_loss[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"shift": -1}, "shift"),
        ({"batch_size": 1.5}, "batch_size"),
    ],
)
def test_training_arguments_are_validated(kwargs, match):
    x, y = _blobs(10, 0)
    with pytest.raises((ValueError, TypeError), match=match):
        train_classifier(mlp([4, 3], rng=0), x, y, log=None, **kwargs)
