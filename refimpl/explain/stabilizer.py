"""Denominator stabilizers for LRP rules: what ``epsilon`` does to a rule's denominator ``z_k``.

The paper's epsilon rule writes ``z_k + eps sign(z_k)``; the libraries differ (README,
"Verifying other implementations"), so the kind is an explicit option. Whatever a stabilizer
adds to ``z_k`` absorbs relevance, and the relevance budget reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_positive

KINDS = ("signed", "unsigned", "zero_only", "relative")


def sign0(z: np.ndarray) -> np.ndarray:
    """``sign(z)`` with ``sign(0) = +1``, the convention of the signed stabilizer."""
    return np.where(z >= 0, 1.0, -1.0).astype(z.dtype, copy=False)


@dataclass(frozen=True)
class Stabilizer:
    """A denominator stabilizer ``d -> d + delta(d)``.

    Kinds
    -----
    ``signed``     ``d + eps sign(d)``, ``sign(0) = +1`` (paper, Zennit, Captum, iNNvestigate)
    ``unsigned``   ``d + eps``
    ``zero_only``  ``d`` where ``d != 0``, else ``eps``
    ``relative``   ``d + eps std_k(d) sign(d)``: population std (ddof 0) over all the layer's
                   denominators of that term, per sample
    """

    eps: float
    kind: str = "signed"

    def __post_init__(self):
        check_positive(self.eps, "eps")
        if self.kind not in KINDS:
            raise ValueError(f"stabilizer must be one of {KINDS}, got {self.kind!r}")

    def delta(self, d: np.ndarray) -> np.ndarray:
        """What the stabilizer adds to the denominators ``d`` of shape ``(n, K)``."""
        if self.kind == "signed":
            return self.eps * sign0(d)
        if self.kind == "unsigned":
            return np.full_like(d, self.eps)
        if self.kind == "zero_only":
            return np.where(d == 0, self.eps, 0.0).astype(d.dtype, copy=False)
        return self.eps * d.std(axis=-1, keepdims=True) * sign0(d)
