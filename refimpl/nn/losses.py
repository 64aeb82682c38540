"""Losses from logits, each returning the value and its gradient with respect to the logits."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .layers import log_softmax


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(z) against integer labels (training loss of eq. 2.7's net).

    ``L = -1/n sum_n log p(w_{y_n} | x_n)``, ``dL/dz = (softmax(z) - onehot(y)) / n``.

    Parameters
    ----------
    z : ndarray, shape (n, C)
        Logits.
    y : ndarray of int, shape (n,)
        Class indices in ``[0, C)``.
    """
    n, n_classes = z.shape
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be {n} integer labels, got shape {y.shape} dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    logp = log_softmax(z)
    rows = np.arange(n)
    loss = -logp[rows, y].mean()
    dz = np.exp(logp)
    dz[rows, y] -= 1.0
    dz /= n
    return float(loss), dz


def binary_cross_entropy_with_logits(z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of sigmoid(z) against targets ``t`` in [0, 1] (soft labels ok).

    ``L = 1/N sum [max(z, 0) - z t + log(1 + exp(-|z|))]``, ``dL/dz = (sigmoid(z) - t) / N``,
    with ``N`` the number of elements.
    """
    t = np.broadcast_to(np.asarray(t, dtype=z.dtype), z.shape)
    if np.any((t < 0) | (t > 1)):
        raise ValueError("t must lie in [0, 1]")
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float(loss.mean()), (expit(z) - t) / z.size
