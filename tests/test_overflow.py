"""Finite inputs that overflow or underflow: every entry point returns finite numbers or raises a
clear error naming the quantity (issue 9). Each case gave NaN, inf or a silently wrong number
before."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.explain.gradient import gradient_x_input, sensitivity
from refimpl.explain.lrp import lrp
from refimpl.explain.methods import explain
from refimpl.explain.rules import LRP0, ZB, AlphaBeta, Epsilon, Gamma, ZPlus, alpha_beta_sum_error
from refimpl.explain.taylor import taylor
from refimpl.interpret.am import am_l2
from refimpl.nn.network import mlp

from .nets import randomize_biases
from .test_grbm import small_rbm


def _net(dtype=np.float64, bias=True):
    net = mlp((6, 5, 4, 3), rng=0, dtype=dtype, bias=bias)
    if bias:
        randomize_biases(net, np.random.default_rng(1))
    return net


X = np.random.default_rng(0).uniform(0, 1, (4, 6))


def test_huge_but_representable_inputs_give_finite_relevances_whose_budget_closes():
    net = _net(bias=False)
    for scale in (1e200, 1e300):
        e = lrp(net, X * scale, ZPlus(), target=0)
        assert np.all(np.isfinite(e.R))
        ref = lrp(net, X, ZPlus(), target=0)  # bias-free rule on a ReLU net: R scales with x
        np.testing.assert_allclose(e.R / scale, ref.R, rtol=1e-12, atol=1e-300)
        scale_R = np.abs(e.R).sum(axis=1)
        assert np.all(np.abs(e.budget.closure_error()) <= 1e-12 * scale_R)


def test_subnormal_inputs_raise_on_subnormal_denominators_instead_of_nan():
    # z+ has no bias in its denominator: sum_j x_j w+_jk is subnormal for x ~ 1e-310
    with pytest.raises(ValueError, match=r"layer 0 .*denominators z are subnormal.*samples 0, 1"):
        lrp(_net(), X * 1e-310, ZPlus(), target=0)


def test_subnormal_weights_raise_too():
    net = _net()
    net.layers[0].params["W"] *= 1e-310
    with pytest.raises(ValueError, match="subnormal"):
        explain(net, X, "lrp-zplus", target=0)


@pytest.mark.parametrize("method", ["lrp-epsilon", "sensitivity", "gradient_x_input", "taylor"])
def test_weights_set_to_nan_after_construction_are_named(method):
    net = _net(bias=method != "taylor")
    net.layers[2].params["W"][0, 0] = np.nan  # e.g. a diverged training run
    with pytest.raises(ValueError, match=r"parameter layers\.2\.W holds 1 NaN"):
        explain(net, X, method, target=0)


def test_float32_forward_overflow_names_the_layer_and_samples():
    net = _net(np.float32)
    x = (X * 3e38).astype(np.float32)
    with pytest.raises(ValueError, match=r"output of layer 0 .* sample 2: .*large for float32"):
        explain(net, x, "lrp-epsilon", target=0)


def test_cast_to_float32_that_overflows_says_so_not_contains_inf():
    with pytest.raises(ValueError, match=r"x has values up to 9\.\d+e\+38 .* overflow float32"):
        explain(_net(np.float32), X * 1e39, "lrp-epsilon", target=0)


def test_huge_zb_bounds_overflow_is_named_not_silently_zero():
    # was: R == 0 everywhere, exit 0, budget off by f(x)
    with pytest.raises(ValueError, match=r"layer 0 .*contributions z_k is not finite"):
        lrp(_net(), X, {0: ZB(low=-1e308, high=1e308), 2: Epsilon(), 4: Epsilon()}, target=0)


def test_huge_gamma_overflow_is_named():
    net = _net()
    net.layers[0].params["W"] *= 1e154
    with pytest.raises(ValueError, match="contributions z_k is not finite"):
        lrp(net, X, Gamma(gamma=1e200), target=0)


def test_shares_that_overflow_are_named():
    # LRP-0 without bias: z ~ 1e-300 at the top layer while the given output relevance is 1e10
    net = mlp((2, 1), rng=0, bias=False)
    net.layers[0].params["W"][:] = 1.0
    x = np.array([[1e-300, 0.0]])
    with pytest.raises(ValueError, match=r"shares R / z is not finite .*denominators as small"):
        lrp(net, x, LRP0(bias="none"), R_out=np.array([[1e10]]))


def test_gradient_that_overflows_in_backward_is_named():
    # forward ~ 1e-300 * 1e100^4 = 1e100 is finite, the gradient 1e400 is not
    net = mlp((3, 3, 3, 3, 2), rng=0, bias=False)
    for layer in net.layers[::2]:
        layer.params["W"][:] = np.abs(layer.W) * 1e100
    x = np.full((1, 3), 1e-300)
    with pytest.raises(ValueError, match=r"gradient df/dx is not finite"):
        gradient_x_input(net, x, target=0)


def test_sensitivity_that_overflows_when_squared_suggests_raw_output():
    net = _net()
    net.layers[0].params["W"] *= 1e160
    with pytest.raises(ValueError, match=r"sensitivity .* not finite.*output='raw'"):
        sensitivity(net, X, target=0)
    assert np.all(np.isfinite(sensitivity(net, X, target=0, output="raw").R))


def test_taylor_search_on_huge_inputs_is_finite_or_raises():
    net = _net()
    net.layers[0].params["W"] *= 1e160
    with pytest.raises(ValueError, match="not finite"):
        taylor(net, X * 1e160, root="search", target=0)


@pytest.mark.parametrize(
    "alpha, beta, message",
    [
        (2e9, 2e9, r"alpha - beta must equal 1 .*alpha - beta = 0\.0"),  # passed before
        (1e17, 1e17 - 1, "too large: at this magnitude float64 numbers are 16 apart"),
        (2.0**49, 2.0**49 - 1, "cannot be represented"),
    ],
)
def test_alpha_beta_accepts_only_what_floats_cannot_tell_from_one(alpha, beta, message):
    with pytest.raises(ValueError, match=message):
        AlphaBeta(alpha, beta)


def test_alpha_beta_tolerance_is_a_few_ulps():
    assert alpha_beta_sum_error(1.4, 0.4) is None  # 0.9999999999999999
    assert alpha_beta_sum_error(2.0**48, 2.0**48 - 1) is None
    assert alpha_beta_sum_error(3.0 + 4e-15, 2.0) is not None  # 18 ulps of 3: not 1
    assert alpha_beta_sum_error(1 + 1e-12, 0.0) is not None  # passed the old 1e-9 tolerance


def test_alpha_beta_that_rounds_together_in_float32_is_refused_at_use():
    rule = AlphaBeta(1e7 + 1, 1e7)  # fine in float64
    net = _net(np.float32)
    with pytest.raises(
        ValueError, match="float32 numbers are 1 apart.*the net computes in float32"
    ):
        lrp(net, X, {i: rule for i in (0, 2, 4)}, target=0)


def test_am_with_overflowing_classifier_raises_naming_the_logits():
    net = _net()
    for layer in net.layers[::2]:
        layer.params["W"][:] = layer.W * 1e120
    with pytest.raises(ValueError, match=r"the logits .* not finite"):
        am_l2(net, [0], steps=3, x0=np.ones((1, 6)))


def test_grbm_log_density_of_huge_inputs_raises_instead_of_inf():
    rbm = small_rbm()
    x = np.full((2, 5), 1e200)
    with pytest.raises(ValueError, match=r"free energy F\(x\) is not finite .*samples 0, 1"):
        rbm.log_density(x)
    with pytest.raises(ValueError, match=r"d log p\(x\) / dx is not finite"):
        rbm.grad_log_density(np.full((1, 5), 1.7e308))  # / sigma^2 overflows


def test_grbm_weights_set_to_nan_are_named():
    rbm = small_rbm()
    rbm.W[0, 0] = np.nan
    with pytest.raises(ValueError, match="the RBM's W holds NaN"):
        rbm.log_density(np.zeros((1, 5)))
