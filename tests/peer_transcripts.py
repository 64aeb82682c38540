"""Line-by-line NumPy transcriptions of iNNvestigate's and the LRP Toolbox's dense-layer rules.

Neither library runs here (iNNvestigate needs TensorFlow; the Toolbox is not on PyPI), so their
presets are checked against these transcriptions of the source, read at
albermax/innvestigate (src/innvestigate/analyzer/relevance_based/relevance_rule.py,
backend/__init__.py ``safe_divide``) and sebastian-lapuschkin/lrp_toolbox
(python/modules/linear.py). Each function keeps the library's own arithmetic, (n, J, K) arrays
included, so that rounding differences stay visible. Relevance passes ReLU unchanged in both.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn.layers import Dense

na = np.newaxis


# --- iNNvestigate 2.x ----------------------------------------------------------------------------


def innv_safe_divide(A, B, factor=1e-7):
    """``backend.safe_divide``: only an exact zero denominator is replaced (by 1e-7)."""
    return A / (B + factor * (B == 0))


def innv_z(X, W, B, R, bias=True):
    Zs = X @ W + (B if bias else 0)
    return X * (innv_safe_divide(R, Zs) @ W.T)


def innv_epsilon(X, W, B, R, epsilon=1e-7, bias=True):
    Zs = X @ W + (B if bias else 0)
    Zs = Zs + ((Zs >= 0) * 2 - 1) * epsilon  # "sign(0) = 1"; a plain divide follows
    return X * ((R / Zs) @ W.T)


def innv_wsquare(X, W, B, R):
    Zs = np.ones_like(X) @ (W**2)
    return innv_safe_divide(R, Zs) @ (W**2).T


def innv_flat(X, W, B, R):
    ones = np.ones_like(W)
    Zs = np.ones_like(X) @ ones
    return innv_safe_divide(R, Zs) @ ones.T


def innv_alpha_beta(X, W, B, R, alpha, beta, bias=True):
    """AlphaBetaRule: inputs and weights split; ``b+`` with ``w+`` and ``b-`` with ``w-``."""
    Wp, Wn = W * (W > 0), W * (W < 0)
    Bp, Bn = (B * (B > 0), B * (B < 0)) if bias else (0, 0)
    Xp, Xn = X * (X > 0), X * (X < 0)

    def f(W1, B1, W2, B2):  # activator/inhibitor: layer1(X+) + layer2(X-), gradient x input
        Z1, Z2 = Xp @ W1 + B1, Xn @ W2 + B2
        tmp = innv_safe_divide(R, Z1 + Z2)
        return Xp * (tmp @ W1.T) + Xn * (tmp @ W2.T)

    activator = f(Wp, Bp, Wn, Bn)
    if not beta:
        return activator
    inhibitor = f(Wn, Bn, Wp, Bp)
    return alpha * activator - beta * inhibitor


def innv_zplus(X, W, B, R):
    return innv_alpha_beta(X, W, B, R, 1.0, 0.0, bias=False)


def innv_bounded(X, W, B, R, low=-1.0, high=1.0):
    """BoundedRule: three bias-free layers (W, W+, W-), combined as ``A - (B + C)`` twice."""
    low, high = X * 0 + low, X * 0 + high
    Wp, Wn = W * (W > 0), W * (W < 0)
    A, Bz, C = X @ W, low @ Wp, high @ Wn
    Zs = A - (Bz + C)
    tmp = innv_safe_divide(R, Zs)
    tmpA, tmpB, tmpC = X * (tmp @ W.T), low * (tmp @ Wp.T), high * (tmp @ Wn.T)
    return tmpA - (tmpB + tmpC)


# --- LRP Toolbox (python/modules/linear.py) ------------------------------------------------------


def tb_simple(X, W, B, R):
    Y = np.dot(X, W) + B
    Z = W[na, :, :] * X[:, :, na]
    Zs = Y + 1e-16 * ((Y >= 0) * 2 - 1.0)
    return (Z * (R / Zs)[:, na, :]).sum(axis=2)


def tb_epsilon(X, W, B, R, epsilon):
    Y = np.dot(X, W) + B
    Z = W[na, :, :] * X[:, :, na]
    Zs = Y + epsilon * ((Y >= 0) * 2 - 1)
    return (Z * (R / Zs)[:, na, :]).sum(axis=2)


def tb_flat(X, W, B, R):
    Z = np.ones_like(W[na, :, :])
    Zs = Z.sum(axis=1)[:, na, :]
    return ((Z / Zs) * R[:, na, :]).sum(axis=2)


def tb_ww(X, W, B, R):
    Z = W[na, :, :] ** 2
    Zs = Z.sum(axis=1)[:, na, :]
    return ((Z / Zs) * R[:, na, :]).sum(axis=2)


def tb_alphabeta(X, W, B, R, alpha):
    beta = 1 - alpha
    Y = np.dot(X, W) + B
    Z = W[na, :, :] * X[:, :, na]
    Zplus = Z > 0
    if alpha * beta != 0:
        Zp = Z * Zplus
        Zsp = Zp.sum(axis=1) + (B * (B > 0))[na, :] + 1e-16
        Zn = Z - Zp
        Zsn = Y - Zsp - 1e-16
        Ralpha = alpha * (Zp * (R / Zsp)[:, na, :]).sum(axis=2)
        Rbeta = beta * (Zn * (R / Zsn)[:, na, :]).sum(axis=2)
        return Ralpha + Rbeta
    if alpha:
        Zp = Z * Zplus
        Zsp = Zp.sum(axis=1) + (B * (B > 0))[na, :] + 1e-16
        return (Zp * (R / Zsp)[:, na, :]).sum(axis=2)
    raise NotImplementedError("alpha = 0 (toolbox beta = 1) is outside the paper's rule")


# --- whole network ------------------------------------------------------------------------------


def transcribed_lrp(net, x, target, layer_rule, first=None):
    """Relevance with ``layer_rule(X, W, B, R)`` on every dense layer (``first`` on the first
    one), seeded with the logit."""
    first_dense = next(i for i, layer in enumerate(net.layers) if isinstance(layer, Dense))
    acts = [x]
    for layer in net.layers:
        acts.append(layer.forward(acts[-1])[0])
    logits = acts[-1]
    rows = np.arange(len(x))
    R = np.zeros_like(logits)
    R[rows, target] = logits[rows, target]
    for i in reversed(range(len(net.layers))):
        layer = net.layers[i]
        if isinstance(layer, Dense):
            B = layer.b if layer.b is not None else np.zeros(layer.W.shape[1])
            rule = first if (first is not None and i == first_dense) else layer_rule
            R = rule(acts[i], layer.W, B, R)
    return R
