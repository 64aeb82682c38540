"""Heatmaps as the paper draws them: red relevance, blue counter-relevance, white zero.

The color scale is symmetric around zero (``[-m, m]`` with ``m = max |R|`` of each image unless
``scale`` is given), so white always means zero relevance. Figures are written atomically as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._checks import as_float_array
from .._figures import pyplot, save_png

CMAP = "bwr"  # blue (negative) - white (zero) - red (positive)


def symmetric_limit(R: np.ndarray) -> float:
    """``max |R|``, or 1 for an all-zero map (so the scale is never degenerate)."""
    m = float(np.abs(R).max()) if R.size else 0.0
    return m if m > 0 else 1.0


def _check_image_shape(image_shape) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be a pair (h, w), got {image_shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_shape must be positive, got {image_shape!r}")
    return h, w


def _as_images(a: np.ndarray, n: int, h: int, w: int, name: str) -> np.ndarray:
    """``a`` as ``n`` images of ``h x w``, or a message naming both shapes."""
    if a.size != n * h * w:
        raise ValueError(
            f"{name} of shape {a.shape} does not hold {n} image(s) of {h}x{w} "
            f"({n * h * w} values, got {a.size}); give the image shape (--image-shape HxW) that "
            "matches"
        )
    return a.reshape(n, h, w)


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
    R = as_float_array(R, "R")
    if R.ndim < 2 or R.shape[0] == 0:
        raise ValueError(f"R must hold (n, ...) relevance maps with n >= 1, got shape {R.shape}")
    n = R.shape[0]
    h, w = _check_image_shape(image_shape)
    R = _as_images(R, n, h, w, "R")
    if images is not None:
        images = _as_images(as_float_array(images, "images"), n, h, w, "images")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have {n} entries, got {len(titles)}")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    plt = pyplot()
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
        # R / m in [-1, 1]: matplotlib's own normalization computes vmax - vmin, which
        # overflows for |R| near the largest float (R = 1e308 would be drawn white)
        ax.imshow(np.clip(R[i] / m, -1.0, 1.0), cmap=CMAP, vmin=-1, vmax=1, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)
