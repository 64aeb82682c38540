"""Heatmaps as the paper draws them: red relevance, blue counter-relevance, white zero.

The color scale is symmetric around zero (``[-m, m]`` with ``m = max |R|`` of each image unless
``scale`` is given), so white always means zero relevance. Figures are written atomically as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._checks import as_float_array
from ._figures import pyplot, save_png

CMAP = "bwr"  # blue (negative) - white (zero) - red (positive)


def symmetric_limit(R: np.ndarray) -> float:
    """``max |R|``, or 1 for an all-zero map (so the scale is never degenerate)."""
    m = float(np.abs(R).max()) if R.size else 0.0
    return m if m > 0 else 1.0


def save_heatmaps(
    R,
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] = (28, 28),
    images=None,
    titles: Sequence[str] | None = None,
    scale: float | None = None,
    ncols: int = 8,
) -> Path:
    """Save one heatmap per sample of ``R`` (n, d) as a grid in a PNG file.

    Parameters
    ----------
    R : ndarray (n, d) or (n, h, w)
        Relevance; reshaped to ``image_shape``.
    path : str or PathLike
        PNG file, written atomically.
    images : ndarray (n, d), optional
        Inputs, drawn in grey in a row above each heatmap row.
    titles : sequence of str, optional
        One per sample.
    scale : float, optional
        Common color limit; default: each image's own ``max |R|``.
    ncols : int
        Images per row.
    """
    plt = pyplot()
    R = as_float_array(R, "R")
    n = R.shape[0]
    h, w = image_shape
    if R.size != n * h * w:
        raise ValueError(f"R of shape {R.shape} does not hold images of shape {image_shape}")
    R = R.reshape(n, h, w)
    if images is not None:
        images = as_float_array(images, "images").reshape(n, h, w)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have {n} entries, got {len(titles)}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    per = 2 if images is not None else 1
    fig, axes = plt.subplots(
        nrows * per, ncols, figsize=(1.6 * ncols, 1.7 * nrows * per), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, ncols)
        if images is not None:
            axes[r * per, c].imshow(images[i], cmap="gray", interpolation="nearest")
        m = scale if scale is not None else symmetric_limit(R[i])
        ax = axes[r * per + per - 1, c]
        ax.imshow(R[i], cmap=CMAP, vmin=-m, vmax=m, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)
