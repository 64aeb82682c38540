"""Seeded weight initializers. Each returns an ``(n_in, n_out)`` array in the (in, out) layout."""

from __future__ import annotations

import numpy as np

from .._checks import check_float_dtype, check_int


def he_normal(n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """He et al. (2015): ``W ~ N(0, 2 / n_in)``, for ReLU layers."""
    n_in, n_out = check_int(n_in, "n_in", low=1), check_int(n_out, "n_out", low=1)
    std = np.sqrt(2.0 / n_in)
    return (rng.standard_normal((n_in, n_out)) * std).astype(check_float_dtype(dtype))


def glorot_uniform(n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Glorot & Bengio (2010): ``W ~ U(-l, l)`` with ``l = sqrt(6 / (n_in + n_out))``."""
    n_in, n_out = check_int(n_in, "n_in", low=1), check_int(n_out, "n_out", low=1)
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_in, n_out)).astype(check_float_dtype(dtype))


INITIALIZERS = {"he": he_normal, "glorot": glorot_uniform}
