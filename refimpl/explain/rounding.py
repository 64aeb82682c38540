"""How precisely an explanation can be computed in a given precision: a per-sample estimate.

A float32 implementation is only as accurate as the problem is well conditioned: where the
parts of a relevance cancel (a logit small next to its terms, an LRP denominator near zero), a
correct float32 result can differ from the exact one by far more than ``1e-5 max |R|``, and
two correct implementations differ from each other by as much. :func:`rounding_estimate`
measures that spread directly, per sample, as the largest deviation from the float64 result of

- refimpl's own computation in the lower precision, and
- ``trials`` float64 computations on weights and inputs each perturbed by a random relative
  ``+-u`` (a float32 computation is an exact one on data perturbed about this much),

so that :mod:`refimpl.verify` can allow ``ROUNDING_FACTOR`` times it on top of its relative
tolerance. Measured against the real Zennit and Captum in float32 (about 35,000 samples: every
rule, nets from 20-wide to 784-1024-1024-512-10, the trained MNIST classifier), a peer's error
was at most 14.7 times this estimate and its median about 1; an analytic worst-case bound
(condition numbers of every denominator) overestimated it by up to 1e6 on wide nets. Because
a convention that differs only where the result is ill-conditioned (e.g. a stabilizer epsilon)
can hide in such an allowance sample by sample, :mod:`refimpl.verify` also checks that the
errors are not systematically larger than the estimate. The estimate depends somewhat on the
batch (BLAS takes other paths for other shapes): 0.25-2.2 times for a sample between batches.
"""

from __future__ import annotations

import copy

import numpy as np

from ..nn.network import Sequential

ROUNDING_FACTOR = 32  # allowed deviation, in units of the estimate
TRIALS = 4


def unit_roundoff(*dtypes) -> float:
    """``u`` of the least precise of ``dtypes`` (float32: 2**-24, float64: 2**-53)."""
    return max(float(np.finfo(np.dtype(d)).eps) / 2 for d in dtypes)


def rounding_estimate(
    compute, net: Sequential, x: np.ndarray, dtype, *, trials: int = TRIALS, seed: int = 0
) -> np.ndarray:
    """Per-sample spread ``max_i |R_i - R64_i|`` of ``compute`` under rounding in ``dtype``.

    Parameters
    ----------
    compute : callable ``(net, x) -> ndarray (n, ...)``
        The explanation, for a network and inputs of one dtype.
    net, x
        Float64 network and inputs (the reference).
    dtype
        The precision to estimate for (float32 or float64).
    trials : int
        Perturbed float64 recomputations.
    seed : int
        Seed of the perturbations (deterministic).

    Returns
    -------
    ndarray (n,)
        ``max`` over the low-precision computation and the perturbed ones of
        ``max_i |R_i - R64_i|``.
    """
    n = len(x)
    R64 = np.asarray(compute(net, x), dtype=np.float64).reshape(n, -1)
    spread = np.zeros(n)
    dtype = np.dtype(dtype)
    if dtype != np.float64:
        low = compute(copy.deepcopy(net).astype(dtype), x.astype(dtype))
        spread = np.abs(np.asarray(low, dtype=np.float64).reshape(n, -1) - R64).max(axis=1)
    # at least 2**-52: in float64, 1 + 2**-53 rounds back to 1 and would perturb nothing
    u = max(unit_roundoff(dtype), float(np.finfo(np.float64).eps))
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        jittered = copy.deepcopy(net)
        for layer in jittered.layers:
            for p in layer.params.values():
                p *= 1 + u * rng.choice([-1.0, 1.0], p.shape)
        xp = x * (1 + u * rng.choice([-1.0, 1.0], x.shape))
        try:
            R = np.asarray(compute(jittered, xp), dtype=np.float64).reshape(n, -1)
        except ValueError:  # e.g. a Taylor root search that no longer converges: skip
            continue
        spread = np.maximum(spread, np.abs(R - R64).max(axis=1))
    return spread
