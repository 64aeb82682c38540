"""Central finite differences in float64, the yardstick for every hand-written backward pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

H = 1e-6  # step; truncation error O(H^2), round-off O(eps |f| / H) ~ 1e-10 |f|


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = H) -> np.ndarray:
    """Gradient of the scalar ``f()`` with respect to ``x``, perturbed in place entry by entry."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g
