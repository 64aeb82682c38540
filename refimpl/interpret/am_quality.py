"""Prototype quality as numbers (the paper shows prototypes only as pictures).

For each prototype ``x_c`` of class ``c``: the target probability ``p(w_c|x_c)`` under the
classifier that was maximized and under a second, independently trained classifier; the
expert's log-density ``log p(x_c)``; and the distance to the nearest training digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._table import format_table
from ..nn.layers import log_softmax
from ..nn.network import Sequential


def target_probability(classifier: Sequential, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``p(w_c | x)`` (softmax of the logits) for each row of ``x`` and its class ``c``."""
    logp = log_softmax(classifier(x))
    return np.exp(logp[np.arange(len(c)), c])


def nearest_distance(x: np.ndarray, data: np.ndarray, batch: int = 2000) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to its nearest row of ``data``."""
    sq_x = (x * x).sum(axis=1)[:, None]
    best = np.full(len(x), np.inf)
    for start in range(0, len(data), batch):
        block = data[start : start + batch]
        d2 = sq_x + (block * block).sum(axis=1)[None, :] - 2.0 * x @ block.T
        best = np.minimum(best, d2.min(axis=1))
    return np.sqrt(np.maximum(best, 0.0))


@dataclass
class QualityRow:
    """Quality of one variant's prototypes, arrays over the classes ``c``."""

    variant: str
    c: np.ndarray
    p_model: np.ndarray
    p_second: np.ndarray
    log_density: np.ndarray
    nearest: np.ndarray


def prototype_quality(
    variant: str,
    x: np.ndarray,
    c: np.ndarray,
    classifier: Sequential,
    second: Sequential,
    expert,
    train_x: np.ndarray,
) -> QualityRow:
    """All four numbers for the prototypes ``x`` (one per class in ``c``)."""
    return QualityRow(
        variant,
        c,
        target_probability(classifier, x, c),
        target_probability(second, x, c),
        expert.log_density(x),
        nearest_distance(x, train_x),
    )


def quality_table(rows: list[QualityRow]) -> str:
    """One line per variant and class, then per-variant means, as a printable table."""
    lines = [
        (
            "variant",
            "class",
            "p (maximized)",
            "p (second clf)",
            "log p(x) expert",
            "nearest train dist",
        )
    ]
    for r in rows:
        for i, c in enumerate(r.c):
            lines.append(
                (
                    r.variant,
                    str(c),
                    f"{r.p_model[i]:.4f}",
                    f"{r.p_second[i]:.4f}",
                    f"{r.log_density[i]:.1f}",
                    f"{r.nearest[i]:.2f}",
                )
            )
    for r in rows:
        lines.append(
            (
                r.variant,
                "mean",
                f"{r.p_model.mean():.4f}",
                f"{r.p_second.mean():.4f}",
                f"{r.log_density.mean():.1f}",
                f"{r.nearest.mean():.2f}",
            )
        )
    return format_table(lines)
