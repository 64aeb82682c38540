"""Gradient-based explanations: sensitivity (eq. 4.1) and gradient x input (eq. 4.5-4.6)."""

from __future__ import annotations

import numpy as np

from .._checks import check_result
from ..nn.network import Sequential
from .lrp import Explanation
from .output import check_explainable, target_indices

SENSITIVITY_OUTPUTS = ("squared", "raw", "abs")


def class_gradient(net: Sequential, x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f_c(x)`` (n,) and ``df_c/dx`` (n, d) for class indices ``c`` (n,), by backpropagation.

    Raises ``ValueError`` if the forward pass or the gradient is not finite.
    """
    logits, caches = net.forward(x, check=True)
    return _backprop(net, logits, caches, c)


def _backprop(net, logits, caches, c):
    seed = np.zeros_like(logits)
    rows = np.arange(len(c))
    seed[rows, c] = 1.0
    grad = net.input_gradient(caches, seed)
    check_result(grad, "the gradient df/dx")
    return logits[rows, c], grad


def _prepare(net, x, target):
    check_explainable(net)
    x = net.check_input(x)
    return x, target_indices(net(x), target)


def _target_gradient(net, x, target):
    """Validated ``x``, ``f_c(x)``, ``df_c/dx`` and ``c`` for ``target``, with one forward pass."""
    check_explainable(net)
    x = net.check_input(x)
    logits, caches = net.forward(x, check=True)
    c = target_indices(logits, target)
    f, g = _backprop(net, logits, caches, c)
    return x, f, g, c


@np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
def sensitivity(net: Sequential, x, *, target="predicted", output: str = "squared") -> Explanation:
    """Sensitivity analysis, eq. 4.1: ``R_i = (df/dx_i)^2``, so ``sum_i R_i = ||grad f||^2``.

    ``output="raw"`` returns ``df/dx_i`` (Zennit, iNNvestigate), ``"abs"`` ``|df/dx_i|`` (Captum).
    """
    if output not in SENSITIVITY_OUTPUTS:
        raise ValueError(f"output must be one of {SENSITIVITY_OUTPUTS}, got {output!r}")
    x, f, g, c = _target_gradient(net, x, target)
    R = g * g if output == "squared" else (g if output == "raw" else np.abs(g))
    check_result(
        R,
        "the sensitivity (df/dx)^2",
        "the gradient is too large to square in {dtype}; use output='raw' or 'abs'",
    )
    return Explanation(R, f, c)


@np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
def gradient_x_input(net: Sequential, x, *, target="predicted") -> Explanation:
    """Gradient x input, eq. 4.5-4.6: ``R_i = x_i df/dx_i``.

    This is the Taylor decomposition at the root ``x~ = lim_{eps->0} eps x``; for positively
    homogeneous nets (ReLU, no biases, eq. 4.4) it is exact: ``sum_i R_i = f(x)``.
    """
    x, f, g, c = _target_gradient(net, x, target)
    R = check_result(x * g, "gradient x input")
    return Explanation(R, f, c)
