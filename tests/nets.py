"""Hypothesis strategies and helpers for random networks, shared by the test modules."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from refimpl.nn.layers import Dense, LeakyReLU, ReLU, Sigmoid, Tanh
from refimpl.nn.network import mlp

ACTIVATION_NAMES = ["relu", "leaky_relu", "tanh", "sigmoid"]


@st.composite
def random_mlp(draw, *, max_depth: int = 4, max_width: int = 32, bias=None, activations=None):
    """A random float64 dense net (depth 1-4, widths 1-32, any activation) and a random batch."""
    depth = draw(st.integers(1, max_depth))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1))
    activation = draw(st.sampled_from(activations or ACTIVATION_NAMES))
    use_bias = draw(st.booleans()) if bias is None else bias
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 4))
    # slope 0 or >= 1e-3: subnormal slopes make 1e-323 denominators that overflow any LRP-0
    slope = draw(st.one_of(st.just(0.0), st.floats(1e-3, 0.5)))
    extra = {"slope": slope} if activation == "leaky_relu" else {}
    net = mlp(sizes, activation=activation, bias=use_bias, rng=seed, **extra)
    rng = np.random.default_rng(seed + 1)
    randomize_biases(net, rng)  # non-zero biases, so bias gradients are exercised
    x = rng.normal(0, 1, (n, sizes[0]))
    return net, x, rng


@st.composite
def dense_relu_case(draw, dtype=np.float64):
    """A random dense ReLU net (1-3 dense layers, widths 1-12), inputs in [-1, 1], targets."""
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 12), min_size=depth + 1, max_size=depth + 1))
    sizes[-1] = max(sizes[-1], 2)
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 5))
    net = mlp(sizes, activation="relu", bias=bias, rng=seed)
    rng = np.random.default_rng(seed + 1)
    randomize_biases(net, rng)
    x = rng.uniform(-1, 1, (n, sizes[0]))
    x[rng.random(x.shape) < 0.1] = 0.0  # exact zeros: sign(0) conventions matter
    target = rng.integers(0, sizes[-1], n)
    return net.astype(dtype), x.astype(dtype), target


def min_abs_preactivation(net, x) -> float:
    """Smallest ``|z|`` entering a ReLU or LeakyReLU (distance to a kink), ``inf`` if none."""
    smallest = np.inf
    a = x
    for layer in net.layers:
        if isinstance(layer, (ReLU, LeakyReLU)) and a.size:
            smallest = min(smallest, float(np.abs(a).min()))
        a, _ = layer.forward(a)
    return smallest


SMOOTH = (Tanh, Sigmoid)


def randomize_biases(net, rng: np.random.Generator, sd: float = 0.5):
    """Draw every dense layer's bias from ``N(0, sd^2)`` with ``rng`` (in place); return ``net``.

    ``mlp`` starts biases at zero; non-zero ones exercise the bias conventions of every rule.
    """
    for layer in net.layers:
        if isinstance(layer, Dense) and layer.b is not None:
            layer.params["b"][:] = rng.normal(0, sd, layer.b.shape)
    return net
