"""Activation maximization (eq. 3.1-3.3): every objective term's gradient against finite
differences (float64), the optimizer, determinism, and bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.interpret.am import (
    ClassScore,
    ExpertPrior,
    L2Penalty,
    ThroughGenerator,
    am_code,
    am_expert,
    am_l2,
    maximize,
    objective,
)
from refimpl.interpret.gan import GAN, Decoder
from refimpl.interpret.grbm import GaussianRBM
from refimpl.nn.network import mlp

from .fd import numeric_grad

ATOL, RTOL = 1e-6, 1e-5  # as tests/test_layers.py (central differences, step 1e-6)


def smooth_classifier(seed=0, d=6):
    return mlp([d, 7, 4], activation="tanh", rng=seed)


def tiny_rbm(seed=0, d=6):
    rng = np.random.default_rng(seed)
    rbm = GaussianRBM.from_data(rng.uniform(-1, 1, (50, d)), n_hidden=5, sigma=0.5, rng=seed)
    rbm.W[:] = rng.normal(0, 0.3, rbm.W.shape)
    rbm.b[:] = rng.normal(0, 0.3, rbm.b.shape)
    return rbm


def assert_term_gradient(term, v):
    value, grad = term(v)
    assert value.shape == (v.shape[0],) and grad.shape == v.shape
    for i in range(v.shape[0]):  # each row is an independent objective
        num = numeric_grad(lambda i=i: float(term(v)[0][i]), v)
        np.testing.assert_allclose(grad[i], num[i], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["log_softmax", "logit"])
@pytest.mark.parametrize("seed", range(3))
def test_class_score_gradient(kind, seed):
    v = np.random.default_rng(seed).uniform(-1, 1, (4, 6))
    assert_term_gradient(ClassScore(smooth_classifier(seed), np.array([0, 1, 2, 3]), kind), v)


def test_class_score_values():
    net = smooth_classifier(1)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 6))
    z = net(x)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ClassScore(net, 2)(x)[0], logp[:, 2], rtol=1e-13)
    np.testing.assert_allclose(ClassScore(net, 2, "logit")(x)[0], z[:, 2], rtol=1e-13)


@pytest.mark.parametrize("ref", [None, "vector", "rows"])
def test_l2_penalty_gradient(ref):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 5))
    r = {None: None, "vector": rng.normal(size=5), "rows": rng.normal(size=(3, 5))}[ref]
    term = L2Penalty(0.3, r)
    assert_term_gradient(term, v)
    expected = -0.3 * ((v - (0 if r is None else r)) ** 2).sum(axis=1)
    np.testing.assert_allclose(term(v)[0], expected, rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_expert_prior_gradient(seed):
    v = np.random.default_rng(seed).uniform(-1, 1, (3, 6))
    assert_term_gradient(ExpertPrior(tiny_rbm(seed), 0.07), v)


@pytest.mark.parametrize("seed", range(3))
def test_code_space_gradient(seed):
    gan = GAN.build(z_dim=3, hidden_g=(5,), hidden_d=(4,), d=6, rng=seed)
    term = ThroughGenerator(gan, ClassScore(smooth_classifier(seed), np.array([1, 3])))
    assert_term_gradient(term, np.random.default_rng(seed).normal(size=(2, 3)))


def test_full_objectives_of_the_three_variants():
    net, rbm = smooth_classifier(2), tiny_rbm(2)
    gan = GAN.build(z_dim=3, hidden_g=(5,), hidden_d=(4,), d=6, rng=2)
    c = np.array([0, 3])
    v = np.random.default_rng(1).uniform(-1, 1, (2, 6))
    z = np.random.default_rng(1).normal(size=(2, 3))
    variants = [
        ([ClassScore(net, c), L2Penalty(0.05)], v),
        ([ClassScore(net, c), ExpertPrior(rbm, 0.1)], v),
        ([ThroughGenerator(gan, ClassScore(net, c)), L2Penalty(0.05, np.ones(3))], z),
    ]
    for terms, x in variants:
        assert_term_gradient(lambda u, terms=terms: objective(terms, u), x)


@pytest.mark.parametrize("method", ["gradient", "lbfgs"])
def test_maximize_increases_the_objective_and_respects_the_box(method):
    net = smooth_classifier(4)
    res = am_l2(net, lam=0.01, steps=200, lr=0.5, method=method)
    first, last = res.history[0], res.history[-1]
    assert np.all(last > first)
    assert res.x.shape == (4, 6) and np.all(np.abs(res.x) <= 1.0)
    assert np.all(net(res.x).argmax(axis=1) == np.arange(4))


def test_am_is_deterministic_for_a_seeded_start():
    net, rbm = smooth_classifier(5), tiny_rbm(5)
    x0 = np.random.default_rng(9).uniform(-1, 1, 6)
    a = am_expert(net, rbm, beta=0.05, x0=x0, steps=50)
    b = am_expert(net, rbm, beta=0.05, x0=x0, steps=50)
    np.testing.assert_array_equal(a.x, b.x)


def test_code_space_am_returns_codes_and_images():
    net = smooth_classifier(6)
    gan = GAN.build(z_dim=3, hidden_g=(5,), hidden_d=(4,), d=6, rng=6)
    res = am_code(net, gan, classes=[1, 2], lam=0.01, steps=100, lr=0.1)
    assert res.z.shape == (2, 3)
    np.testing.assert_allclose(res.x, gan.generate(res.z), rtol=1e-15)
    res_ref = am_code(net, gan, classes=[1, 2], lam=0.01, z_ref=np.ones((4, 3)), steps=5)
    assert res_ref.z.shape == (2, 3)


def test_code_space_am_works_with_the_decoder_too():
    net = smooth_classifier(7)
    dec = Decoder.build(z_dim=3, hidden=(5,), d=6, rng=7)
    term = ThroughGenerator(dec, ClassScore(net, np.array([0, 2])))
    assert_term_gradient(term, np.random.default_rng(7).normal(size=(2, 3)))
    z0 = np.random.default_rng(8).normal(size=(2, 3))  # at z = 0 every ReLU of g is off
    res = am_code(net, dec, classes=[0, 2], lam=0.01, z0=z0, steps=100, lr=0.1)
    np.testing.assert_allclose(res.x, dec.generate(res.z), rtol=1e-15)
    assert np.all(res.history[-1] > res.history[0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda n: am_l2(n, lam=-1.0), ValueError, "lambda must be finite and >= 0"),
        (lambda n: am_l2(n, classes=[4]), ValueError, r"classes must be integers in \[0, 4\)"),
        (lambda n: am_l2(n, classes=[0.5]), ValueError, "classes must be integers"),
        (lambda n: am_l2(n, x0=np.zeros(5)), ValueError, r"x0 must have shape \(6,\) or \(4, 6\)"),
        (lambda n: am_l2(n, steps=0), ValueError, "steps"),
        (lambda n: am_l2(n, method="adam"), ValueError, "method must be"),
        (lambda n: am_expert(n, tiny_rbm(), beta=-0.1), ValueError, "beta must be"),
        (lambda n: ClassScore(n, 0, kind="softmax"), ValueError, "kind must be"),
        (lambda n: maximize([L2Penalty(1.0)], np.full((1, 2), np.nan)), ValueError, "NaN"),
    ],
)
def test_bad_parameters_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(smooth_classifier())
