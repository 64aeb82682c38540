"""The reference comparison: per-sample errors against ``rtol max |R_ref| + 32 S`` (``S``
the measured rounding spread) and the population check for systematic errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..explain.rounding import ROUNDING_FACTOR

DEFAULT_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
POPULATION_MIN = 5  # samples beyond rtol needed for the population check
POPULATION_MEDIAN = 3.0  # median error / rounding estimate above which errors are systematic
UNRESOLVED = 1e-2  # allowance / max |R_ref| above which a sample cannot really be checked


@dataclass
class Comparison:
    """Per-sample errors of a candidate against a reference.

    A sample passes when the candidate is finite and ``abs_error <= rtol * scale + allowance``,
    ``scale = max_i |R_ref_i|`` and ``allowance = ROUNDING_FACTOR * estimate`` (``estimate``:
    :func:`refimpl.explain.rounding.rounding_estimate`, what rounding alone moves the result;
    0 if not used). The whole comparison passes when every sample does and the errors are not
    *systematically* above rounding: over the samples whose error exceeds ``rtol * scale`` (at
    least :data:`POPULATION_MIN` of them), the median of ``abs_error / estimate`` must not exceed
    :data:`POPULATION_MEDIAN`. Correct float32 results of the real Zennit and Captum stay below
    1.2 there; a wrong stabilizer epsilon (1e-6 instead of Captum's 1e-9) is at 5 to 12, while
    each of its samples alone may still be within 32 estimates.
    """

    abs_error: np.ndarray
    scale: np.ndarray
    rtol: float
    finite: np.ndarray
    estimate: np.ndarray

    @property
    def allowance(self) -> np.ndarray:
        return ROUNDING_FACTOR * self.estimate

    @property
    def rel_error(self) -> np.ndarray:
        """``abs_error / scale`` (0 where both are 0, inf where only the scale is)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rel = np.where(self.scale > 0, self.abs_error / self.scale, np.inf)
        return np.where(self.abs_error == 0, 0.0, rel)

    @property
    def beyond_rtol(self) -> np.ndarray:
        """Samples whose error exceeds the relative tolerance alone (rounding may explain it)."""
        return self.finite & (self.abs_error > self.rtol * self.scale)

    @property
    def rounding_ratio(self) -> float | None:
        """Median ``abs_error / estimate`` over :attr:`beyond_rtol` (None if too few samples)."""
        sub = self.beyond_rtol & (self.estimate > 0)
        if sub.sum() < POPULATION_MIN:
            return None
        with np.errstate(over="ignore"):  # a huge candidate: an infinite ratio
            return float(np.median(self.abs_error[sub] / self.estimate[sub]))

    @property
    def systematic(self) -> bool:
        """The errors beyond ``rtol`` are systematically larger than rounding explains."""
        ratio = self.rounding_ratio
        return ratio is not None and ratio > POPULATION_MEDIAN

    @property
    def unresolved(self) -> np.ndarray:
        """Samples so ill-conditioned in this precision that errors below 1e-2 ``max |R_ref|``
        cannot be told from rounding."""
        return self.allowance > UNRESOLVED * self.scale

    @property
    def ok(self) -> np.ndarray:
        per_sample = self.finite & (self.abs_error <= self.rtol * self.scale + self.allowance)
        return per_sample & ~self.beyond_rtol if self.systematic else per_sample

    @property
    def passed(self) -> bool:
        return bool(self.ok.all())


def compare(R, R_ref, rtol: float, estimate=None) -> Comparison:
    """Compare ``R`` with ``R_ref`` (both ``(n, ...)``) per sample (see :class:`Comparison`).

    ``estimate`` (n,): the rounding estimate per sample (default 0: no rounding allowance).
    NaN or inf in ``R`` fails that sample.
    """
    R = np.asarray(R, dtype=np.float64).reshape(len(R), -1)
    R_ref = np.asarray(R_ref, dtype=np.float64).reshape(len(R_ref), -1)
    if R.shape != R_ref.shape:
        raise ValueError(f"candidate shape {R.shape} differs from the reference's {R_ref.shape}")
    finite = np.isfinite(R).all(axis=1)
    diff = np.abs(np.where(np.isfinite(R), R, 0.0) - R_ref)
    S = np.zeros(len(R)) if estimate is None else np.broadcast_to(estimate, (len(R),))
    err = np.where(finite, diff.max(axis=1), np.inf)
    return Comparison(err, np.abs(R_ref).max(axis=1), rtol, finite, S)
