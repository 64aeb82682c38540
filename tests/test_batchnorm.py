"""BatchNorm2d in inference mode (refimpl.nn.batchnorm): the formula, finite differences, LRP on
it as a per-channel affine layer equal to its dense-matrix twin, and the merge into the conv
before it exact on the forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.explain.lrp import lrp
from refimpl.explain.rules import LRP0, Epsilon
from refimpl.nn.batchnorm import BatchNorm2d, merge_batch_norm
from refimpl.nn.conv import Conv2d
from refimpl.nn.layers import Dense, Flatten, ReLU
from refimpl.nn.network import Sequential

from .fd import numeric_grad
from .test_conv import ATOL, RTOL, as_dense


def _bn(rng, C):
    return BatchNorm2d(
        rng.normal(size=C), rng.normal(size=C), rng.normal(size=C), rng.uniform(0.1, 2, C)
    )


@given(seed=st.integers(0, 2**32 - 1), C=st.integers(1, 3), H=st.integers(1, 4))
def test_formula_and_finite_differences(seed, C, H):
    rng = np.random.default_rng(seed)
    bn = _bn(rng, C)
    x = rng.normal(size=(2, C, H, H + 1))
    y, cache = bn.forward(x)
    p = bn.params
    expected = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var + bn.eps)[
        :, None, None
    ] * p["weight"][:, None, None] + p["bias"][:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    g = rng.normal(size=y.shape)

    def f():
        return float(np.sum(g * bn.forward(x)[0]))

    dx, grads = bn.backward(cache, g)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=RTOL, atol=ATOL)
    for name, arr in bn.params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(f, arr), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rule", [LRP0(), Epsilon(1e-3), Epsilon(0.5)], ids=lambda r: r.describe())
def test_lrp_through_batch_norm_as_an_affine_layer(rule):
    """Captum's convention: the batch norm takes the rule as a linear layer whose bias absorbs."""
    rng = np.random.default_rng(0)
    bn, shape = _bn(rng, 2), (2, 3, 3)
    head = rng.normal(size=(18, 2))
    net = Sequential([bn, Flatten(), ReLU(), Dense(head)], input_shape=shape)
    twin = Sequential([Flatten(), as_dense(bn, shape), ReLU(), Dense(head)], input_shape=shape)
    x = rng.normal(size=(4, *shape))
    ours = lrp(net, x, {0: rule, 3: Epsilon(0.01)}, target=1)
    ref = lrp(twin, x, {1: rule, 3: Epsilon(0.01)}, target=1)
    np.testing.assert_allclose(ours.R, ref.R.reshape(x.shape), rtol=1e-10, atol=1e-12)
    bias = ours.budget.layers[-1][2].bias
    assert np.any(bias != 0)  # the shift t = beta - mean s takes its share
    np.testing.assert_allclose(ours.budget.closure_error(), 0, atol=1e-10)


def test_merge_is_exact_on_the_forward_pass_and_refuses_what_it_cannot_merge():
    rng = np.random.default_rng(1)
    conv = Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), stride=2, padding=1)
    net = Sequential(
        [conv, _bn(rng, 3), ReLU(), Flatten(), Dense(rng.normal(size=(27, 4)))],
        input_shape=(2, 6, 6),
    )
    merged = merge_batch_norm(net)
    assert [type(layer).__name__ for layer in merged.layers] == [
        "Conv2d",
        "ReLU",
        "Flatten",
        "Dense",
    ]
    x = rng.normal(size=(5, 2, 6, 6))
    np.testing.assert_allclose(merged(x), net(x), rtol=1e-12, atol=1e-12)
    assert net.layers[0].W is conv.W  # the original is untouched
    bare = Sequential([Conv2d(rng.normal(size=(3, 2, 1, 1))), _bn(rng, 3)], input_shape=(2, 2, 2))
    np.testing.assert_allclose(
        merge_batch_norm(bare)(x[:, :, :2, :2]), bare(x[:, :, :2, :2]), rtol=1e-12, atol=1e-12
    )
    with pytest.raises(ValueError, match="does not follow a conv layer"):
        merge_batch_norm(Sequential([ReLU(), _bn(rng, 2)], input_shape=(2, 2, 2)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        BatchNorm2d(np.ones(2), np.zeros(2), np.zeros(2), -np.ones(2))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        BatchNorm2d(np.ones(2), np.zeros(3), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="needs input shape"):
        BatchNorm2d(np.ones(2), np.zeros(2), np.zeros(2), np.ones(2)).output_shape((3, 2, 2))
