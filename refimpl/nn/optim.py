"""Optimizers updating parameter arrays in place: SGD with momentum, and Adam.

Both keep their state in preallocated buffers, so a step allocates no large temporaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._checks import check_positive


class Optimizer:
    """Holds references to the parameter arrays; ``step(grads)`` updates them in place."""

    def __init__(self, params: Sequence[np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self._tmp = [np.empty_like(p) for p in self.params]
        self._gbuf = [np.empty_like(p) for p in self.params] if self.weight_decay else []

    def _check(self, grads: Sequence[np.ndarray]) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, parameter has {p.shape}")

    def _decayed(self, i: int, g: np.ndarray) -> np.ndarray:
        """``g + weight_decay * p`` (L2 penalty gradient), written into a reused buffer."""
        if not self.weight_decay:
            return g
        out = self._gbuf[i]
        np.multiply(self.params[i], self.weight_decay, out=out)
        out += g
        return out

    def step(self, grads: Sequence[np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: ``v <- mu v - lr g``, ``p <- p + v``."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.v = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        self._check(grads)
        for i, (p, v, g) in enumerate(zip(self.params, self.v, grads, strict=True)):
            g = self._decayed(i, g)
            v *= self.momentum
            np.multiply(g, self.lr, out=self._tmp[i])
            v -= self._tmp[i]
            p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; ``weight_decay`` adds an L2 gradient term."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ValueError(f"{name} must be in [0, 1), got {b}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive(eps, "eps")
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads):
        self._check(grads)
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        step = self.lr * np.sqrt(c2) / c1
        for i, (p, m, v, g) in enumerate(zip(self.params, self.m, self.v, grads, strict=True)):
            g = self._decayed(i, g)
            tmp = self._tmp[i]
            m *= self.beta1
            np.multiply(g, 1.0 - self.beta1, out=tmp)
            m += tmp
            v *= self.beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - self.beta2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += self.eps * np.sqrt(c2)
            np.divide(m, tmp, out=tmp)
            tmp *= step
            p -= tmp
