"""Simple Taylor decomposition (eq. 4.2-4.3) at a root point, given or searched.

``f(x) = f(x~) + sum_i df/dx_i|_{x=x~} (x_i - x~_i) + higher-order terms`` (eq. 4.2), and the
relevance is the first-order part, ``R_i = df/dx_i|_{x~} (x_i - x~_i)`` (eq. 4.3). The result
reports ``f(x~)`` and the residual ``f(x) - sum_i R_i`` (``f(x~)`` plus the higher-order terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_int, check_positive
from ..layers import Dense, Flatten, LeakyReLU, ReLU
from ..network import Sequential
from .gradient import _prepare, class_gradient

ROOTS = ("limit", "search")
DIRECTIONS = ("segment", "gradient")


@dataclass
class TaylorResult:
    """Relevance ``R`` (eq. 4.3), the root point, ``f(root)``, ``f(x)`` and the residual."""

    R: np.ndarray
    root: np.ndarray
    f_root: np.ndarray
    f: np.ndarray
    target: np.ndarray

    @property
    def residual(self) -> np.ndarray:
        """``f(x) - sum_i R_i``: ``f(x~)`` plus the higher-order terms of eq. 4.2."""
        return self.f - self.R.reshape(len(self.f), -1).sum(axis=1)


def is_positively_homogeneous(net: Sequential) -> bool:
    """True for bias-free nets of dense, ReLU, LeakyReLU and Flatten layers: ``f(tx) = t f(x)``
    for ``t >= 0``."""
    for layer in net.layers:
        if isinstance(layer, Dense):
            if layer.b is not None:
                return False
        elif not isinstance(layer, (ReLU, LeakyReLU, Flatten)):
            return False
    return True


def taylor_relevance(
    net: Sequential, x: np.ndarray, root: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-order terms, eq. 4.3: ``R_i = df_c/dx_i|_{x~} (x_i - x~_i)``; also ``f_c(x~)``."""
    f_root, g = class_gradient(net, root, c)
    return g * (x - root), f_root


def taylor(
    net: Sequential,
    x,
    *,
    root="limit",
    target="predicted",
    direction: str = "segment",
    reference=None,
    max_distance: float | None = None,
    grid: int = 64,
    tol: float = 1e-10,
) -> TaylorResult:
    """Simple Taylor decomposition (eq. 4.2-4.3) of ``f_c`` at a root point.

    Parameters
    ----------
    net : Sequential
    x : ndarray (n, *input_shape)
    root : "limit", "search" or ndarray (n, *input_shape)
        ``"limit"``: ``x~ = lim_{eps->0} eps x`` for positively homogeneous nets (eq. 4.4-4.6),
        which gives gradient x input exactly; other nets raise. ``"search"``: the root nearest to
        ``x`` along ``direction``, found by a scan and bisection. An array: that root point.
    target : "predicted", int or int array
    direction : {"segment", "gradient"}
        For ``"search"``: the segment from ``x`` to ``reference`` (default: the origin), or the
        ray ``x - t sign(f(x)) grad f(x) / ||grad f(x)||``, ``0 <= t <= max_distance``.
    reference : ndarray, optional
        End of the segment, one point ``input_shape`` or one per sample ``(n, *input_shape)``.
    max_distance : float, optional
        Length of the searched ray (default ``2 sqrt(d)``, the diagonal of the [-1, 1] box).
    grid : int
        Scan points before bisection; the root found is the first sign change of ``f`` from
        ``x`` on, at this resolution.
    tol : float
        Bisection stops when ``|f(x~)| <= tol max(1, |f(x)|)``.

    Returns
    -------
    TaylorResult
        ``R``, ``root``, ``f_root``, ``f`` and ``residual``.
    """
    x, c = _prepare(net, x, target)
    if isinstance(root, str):
        if root not in ROOTS:
            raise ValueError(f"root must be one of {ROOTS} or an array, got {root!r}")
        if root == "limit":
            if not is_positively_homogeneous(net):
                raise ValueError(
                    "root='limit' (x~ = eps x, eps -> 0) is a root point only for "
                    "positively homogeneous nets (ReLU, no biases, eq. 4.4); use "
                    "root='search' or give a root point"
                )
            f, g = class_gradient(net, x, c)
            zero = np.zeros_like(x)
            return TaylorResult(g * x, zero, np.zeros_like(f), f, c)
        root_point = search_root(
            net,
            x,
            c,
            direction=direction,
            reference=reference,
            max_distance=max_distance,
            grid=grid,
            tol=tol,
        )
    else:
        root_point = net.check_input(_broadcast(root, x.shape, "root"), "root")
    f, _ = class_gradient(net, x, c)
    R, f_root = taylor_relevance(net, x, root_point, c)
    return TaylorResult(R, root_point, f_root, f, c)


def search_root(
    net: Sequential,
    x: np.ndarray,
    c: np.ndarray,
    *,
    direction: str = "segment",
    reference=None,
    max_distance: float | None = None,
    grid: int = 64,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """A root ``f_c(x~) = 0`` along a line from ``x``, vectorized over the batch.

    The line is ``x + t v``, ``t in [0, 1]``: ``v = reference - x`` (segment) or
    ``v = -sign(f(x)) max_distance grad f / ||grad f||`` (down the gradient when ``f(x) > 0``, up
    it when ``f(x) < 0``). A scan at ``grid`` points finds the first sign change of ``f``, and
    bisection narrows it until ``|f(x~)| <= tol max(1, |f(x)|)``. Raises ``ValueError`` naming
    the samples with no sign change on the line, or where the tolerance cannot be met.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    grid = check_int(grid, "grid", low=2)
    tol = check_positive(tol, "tol")
    shape = x.shape
    n = shape[0]
    f0, g = class_gradient(net, x, c)
    if direction == "segment":
        ref = (
            np.zeros_like(x)
            if reference is None
            else net.check_input(_broadcast(reference, shape, "reference"), "reference")
        )
        x, g = x.reshape(n, -1), g.reshape(n, -1)  # search on flat vectors
        v = ref.reshape(n, -1) - x
    else:
        x, g = x.reshape(n, -1), g.reshape(n, -1)  # search on flat vectors
        d = x.shape[1]
        dist = (
            2 * np.sqrt(d) if max_distance is None else check_positive(max_distance, "max_distance")
        )
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        if np.any(norm == 0):
            raise ValueError(
                f"grad f is zero for sample(s) {np.flatnonzero(norm[:, 0] == 0)}: "
                "no gradient direction to search along"
            )
        v = -np.where(f0 >= 0, 1.0, -1.0)[:, None] * dist * g / norm  # toward f = 0
    rows = np.arange(n)

    def f_at(t: np.ndarray) -> np.ndarray:  # t of shape (n, m) -> f(x + t v), shape (n, m)
        pts = x[:, None, :] + t[:, :, None] * v[:, None, :]
        cc = np.repeat(c, t.shape[1])
        return net(pts.reshape(-1, *shape[1:]))[np.arange(cc.size), cc].reshape(t.shape)

    ts = np.broadcast_to(np.linspace(0.0, 1.0, grid), (n, grid))
    fs = f_at(ts)
    scale = tol * np.maximum(1.0, np.abs(f0))
    hit = np.abs(fs) <= scale[:, None]
    candidate = hit.copy()
    candidate[:, :-1] |= np.sign(fs[:, :-1]) * np.sign(fs[:, 1:]) < 0
    missing = np.flatnonzero(~candidate.any(axis=1))
    if missing.size:
        i = missing[0]
        raise ValueError(
            f"no root of f on the search line for sample(s) {missing.tolist()}: f keeps its sign "
            f"from x (f = {f0[i]:.6g}) to the end of the line (f = {fs[i, -1]:.6g}); try another "
            "direction, reference or max_distance"
        )
    first = candidate.argmax(axis=1)
    found = hit[rows, first]
    t = ts[rows, first].copy()
    lo, hi = t.copy(), ts[rows, np.minimum(first + 1, grid - 1)].copy()
    f_lo = fs[rows, first]
    for _ in range(max_iter):
        if found.all():
            break
        mid = 0.5 * (lo + hi)
        f_mid = f_at(mid[:, None])[:, 0]
        newly = ~found & (np.abs(f_mid) <= scale)
        t[newly] = mid[newly]
        found |= newly
        same = np.sign(f_mid) == np.sign(f_lo)
        lo, f_lo = np.where(same, mid, lo), np.where(same, f_mid, f_lo)
        hi = np.where(same, hi, mid)
    if not found.all():
        bad = np.flatnonzero(~found)
        f_end = f_at(lo[bad, None])[:, 0]
        raise ValueError(
            f"root search did not reach |f(x~)| <= tol max(1, |f(x)|) for sample(s) "
            f"{bad.tolist()} (best |f| = {np.abs(f_end).min():.3g}, tol = {tol:g}); f may jump "
            "there or tol is below what this dtype resolves"
        )
    return (x + t[:, None] * v).reshape(shape)


def _broadcast(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` (one sample or one per sample) broadcast to the batch shape ``shape``."""
    try:
        return np.broadcast_to(np.asarray(value, dtype=float), shape)
    except ValueError:
        raise ValueError(
            f"{name} must have shape {shape[1:]} (one point) or {shape} (one per sample), "
            f"got {np.shape(value)}"
        ) from None
